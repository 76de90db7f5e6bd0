"""examples/babi.py: the joint pipeline runs on the real data and reports in paper format."""

import json

import keras
import pytest

from examples import babi as babi_example
from tests.babi_data import SHARED, needs_release


@needs_release
def test_joint_pipeline_runs_on_real_data(tmp_path):
    returned = babi_example.train_and_evaluate(
        SHARED,
        str(tmp_path),
        version="en",
        tasks=[1, 8, 19],
        model="mnm_p",
        train_steps=2,
        steps_per_epoch=1,
        batch_size=8,
        units=12,
        memory_units=6,
        key_size=6,
        num_heads=2,
        verbose=0,
        test_stories_per_task=10,
    )
    with open(tmp_path / "metrics.json") as f:
        written = json.load(f)
    assert len(written["task_errors"]) == 20
    for task in range(1, 21):
        error = written["task_errors"][task - 1]
        assert (error is None) == (task not in (1, 8, 19))
        assert error is None or 0.0 <= error <= 100.0
    assert written["mean_error"] == pytest.approx(
        sum(written["task_errors"][t - 1] for t in (1, 8, 19)) / 3
    )
    assert written["train_steps"] == 2 and written["wall_seconds"] > 0
    assert returned["task_errors"] == written["task_errors"]
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n") == 2 + 20 + 2
    assert "| 16: basic-induction | - | 55.1 | 0.4 | 51.2 | 0.7 |" in table
    assert (tmp_path / "curve.png").exists()
    # the trained model and its word ids are saved for examples/memory_pictures.py
    saved = json.loads((tmp_path / "vocabulary.json").read_text())
    assert saved["version"] == "en" and len(saved["words"]) == 1 + 159  # <pad> + 159 words
    network = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert network.output_shape == (None, None, 160)


def test_results_table_counts_failed_tasks():
    table = babi_example.results_table({1: 0.0, 2: 12.5}, "mnm_p")
    assert "| 2: two-supporting-facts | 12.5 |" in table
    assert "| Mean error | 6.25 |" in table
    assert "| Failed tasks (> 5%) | 1 |" in table
