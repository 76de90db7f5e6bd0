"""Curve plots: `plot_curves` and `examples/plot_runs.py` write PNG files."""

import json

import pytest

from examples import plot_runs
from examples.plotting import plot_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_curves_writes_a_png(tmp_path):
    path = tmp_path / "c.png"
    plot_curves(str(path), [1, 2, 3], {"a": [3, 2, 1], "b": [1, 1, 1]}, reference=("chance", 2))
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_log_panel_shows_the_same_curves_on_a_log_axis(tmp_path):
    path = tmp_path / "log.png"
    figure = plot_curves(str(path), [1, 2, 3], {"a": [0.5, 0.01, 0.0]}, log_panel=True)
    assert path.read_bytes()[:8] == PNG_MAGIC
    linear, log = figure.axes
    assert (linear.get_yscale(), log.get_yscale()) == ("linear", "symlog")
    for axes in (linear, log):
        (line,) = axes.get_lines()
        assert list(line.get_ydata()) == [0.5, 0.01, 0.0]
    assert len(plot_curves(str(path), [1], {"a": [1.0]}).axes) == 1


def test_plot_runs_overlays_runs(tmp_path):
    dirs = []
    for model, epochs in (("lstm", 3), ("mnm_p", 5)):  # runs of different lengths
        run = tmp_path / model
        run.mkdir()
        history = [
            {"epoch": e, "step": 100 * (e + 1), "val_accuracy": 0.2 * e} for e in range(epochs)
        ]
        metrics = {
            "config": {"model": model},
            "results": {"chance_error": 0.9},
            "train_steps": 100 * epochs,
            "history": history,
        }
        (run / "metrics.json").write_text(json.dumps(metrics))
        dirs.append(str(run))
    out = tmp_path / "runs.png"
    plot_runs.plot_runs(dirs, str(out), "t")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert plot_runs.held_out_error({"val_accuracy": 0.75}) == pytest.approx(0.25)
    assert plot_runs.held_out_error({"val_sequence_error": 0.004, "val_accuracy": 0.1}) == 0.004
    assert plot_runs.held_out_error({"val_word_error": 0.03, "val_accuracy": 0.1}) == 0.03
    plot_runs.plot_runs(dirs, str(out), log_panel=True)
    with pytest.raises(ValueError, match="val_symbol_error"):
        plot_runs.plot_runs(dirs, str(out), metric="val_symbol_error")
    plot_runs.plot_runs(dirs, str(out), metric="val_accuracy")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(FileNotFoundError):
        plot_runs.plot_runs([str(tmp_path / "missing")], str(out))


def test_plot_runs_takes_labels_and_rejects_a_label_twice(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    history = [
        {"epoch": e, "step": 100 * (e + 1), "val_sequence_error": 1.0 - 0.1 * e} for e in range(4)
    ]
    metrics = {"config": {"model": "mnm_g"}, "results": {}, "train_steps": 400, "history": history}
    (run / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "labelled.png"
    figure = plot_runs.plot_runs([f"(12, 8)={run}", f"(16, 12)={run}"], str(out))
    assert out.read_bytes()[:8] == PNG_MAGIC
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["(12, 8)", "(16, 12)"]
    with pytest.raises(ValueError, match="'mnm_g' is taken"):
        plot_runs.plot_runs([str(run), str(run)], str(out))
    with pytest.raises(ValueError, match="'a' is taken"):
        plot_runs.plot_runs([f"a={run}", f"a={run}"], str(out))
    with pytest.raises(ValueError, match="LABEL=DIR"):
        plot_runs.plot_runs([f"={run}"], str(out))


def test_panels_side_by_side_with_shared_curves(tmp_path):
    from examples.plotting import plot_panels

    figure = plot_panels(
        str(tmp_path / "panels.png"),
        {"a": {"seed 0": ([1, 2], [3.0, 4.0])}, "b": {"seed 0": ([1], [5.0])}},
        shared={"baseline": ([0, 2], [1.0, 1.0])},
        title="t",
    )
    assert (tmp_path / "panels.png").stat().st_size > 1000
    axes = figure.get_axes()
    assert [a.get_title() for a in axes] == ["a", "b"]
    # Each panel: its own curve and the shared one.
    assert [[line.get_label() for line in a.get_lines()] for a in axes] == [
        ["seed 0", "baseline"],
        ["seed 0", "baseline"],
    ]
    with pytest.raises(ValueError, match="`panels` must hold at least one panel"):
        plot_panels(str(tmp_path / "none.png"), {})


def test_a_panels_curve_may_carry_its_line_style(tmp_path):
    from examples.plotting import plot_panels

    style = {"color": "C3", "linestyle": ":", "alpha": 0.4}
    figure = plot_panels(
        str(tmp_path / "styled.png"),
        {"a": {"styled": ([1, 2], [3.0, 4.0], style), "plain": ([1, 2], [1.0, 2.0])}},
        xscale="log",
    )
    assert figure.get_axes()[0].get_xscale() == "log"
    styled, plain = figure.get_axes()[0].get_lines()
    assert (styled.get_color(), styled.get_linestyle(), styled.get_alpha()) == ("C3", ":", 0.4)
    assert (plain.get_linestyle(), plain.get_alpha()) == ("-", None)
