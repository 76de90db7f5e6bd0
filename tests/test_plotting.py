"""Curve plots: `plot_curves` and `examples/plot_runs.py` write PNG files."""

import json

import pytest

from examples import plot_runs
from mnm_keras.plotting import plot_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_curves_writes_a_png(tmp_path):
    path = tmp_path / "c.png"
    plot_curves(str(path), [1, 2, 3], {"a": [3, 2, 1], "b": [1, 1, 1]}, reference=("chance", 2))
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_runs_overlays_runs(tmp_path):
    dirs = []
    for model in ("lstm", "mnm_p"):
        run = tmp_path / model
        run.mkdir()
        history = [{"epoch": e, "val_accuracy": 0.2 * e} for e in range(3)]
        metrics = {"model": model, "train_steps": 300, "history": history, "chance_error": 0.9}
        (run / "metrics.json").write_text(json.dumps(metrics))
        dirs.append(str(run))
    out = tmp_path / "runs.png"
    plot_runs.plot_runs(dirs, str(out), "t")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(FileNotFoundError):
        plot_runs.plot_runs([str(tmp_path / "missing")], str(out))
