"""examples/babi.py: the joint pipeline runs on the real data and reports in paper format."""

import json
import os
import subprocess
import sys

import keras
import pytest

from examples import babi as babi_example
from tests.babi_data import SHARED, needs_release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
    data_dir=SHARED,
    version="en",
    tasks=(1, 8, 19),
    model="mnm_p",
    batch_size=8,
    units=12,
    memory_units=6,
    memory_layers=2,
    key_size=6,
    num_heads=2,
    test_stories_per_task=10,
)


def train(model_dir, **fields):
    config = babi_example.Config(model_dir=str(model_dir), **{**TINY, **fields})
    return babi_example.run(config, verbose=0)


@needs_release
def test_joint_pipeline_runs_on_real_data(tmp_path):
    returned = train(tmp_path, train_steps=2, steps_per_epoch=1)
    with open(tmp_path / "metrics.json") as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(returned))
    results = written["results"]
    assert len(results["task_errors"]) == 20
    for task in range(1, 21):
        error = results["task_errors"][task - 1]
        assert (error is None) == (task not in (1, 8, 19))
        assert error is None or 0.0 <= error <= 100.0
    assert results["mean_error"] == pytest.approx(
        sum(results["task_errors"][t - 1] for t in (1, 8, 19)) / 3
    )
    assert written["task"] == "babi" and written["train_steps"] == 2
    assert written["wall_seconds"] > 0
    assert written["config"]["tasks"] == [1, 8, 19] and written["config"]["memory_layers"] == 2
    assert [row["step"] for row in written["history"]] == [1, 2]
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n") == 2 + 20 + 2
    assert "| 16: basic-induction | - | 55.1 | 0.4 | 51.2 | 0.7 |" in table
    assert table in babi_example.summary(written)
    assert (tmp_path / "curve.png").exists()
    # the trained model and its word ids are saved for examples/memory_pictures.py
    saved = json.loads((tmp_path / "vocabulary.json").read_text())
    assert saved["version"] == "en" and len(saved["words"]) == 1 + 159  # <pad> + 159 words
    network = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert network.output_shape == (None, None, 160)


@needs_release
def test_a_budget_below_one_epoch_trains_that_many_steps(tmp_path):
    # --train_steps=2 with the default 500 steps per epoch: one short epoch of 2 steps.
    record = train(tmp_path, tasks=(1,), train_steps=2)
    assert record["config"]["steps_per_epoch"] == 500
    assert record["train_steps"] == 2
    assert [(row["epoch"], row["step"]) for row in record["history"]] == [(0, 2)]
    assert "val_word_error" in record["history"][0]
    # A rerun with a larger budget continues from step 2.
    record = train(tmp_path, tasks=(1,), train_steps=3)
    assert [row["step"] for row in record["history"]] == [2, 3]
    assert [i["start_step"] for i in record["invocations"]] == [0, 2]


def test_results_table_counts_failed_tasks():
    table = babi_example.results_table({1: 0.0, 2: 12.5}, "mnm_p")
    assert "| 2: two-supporting-facts | 12.5 |" in table
    assert "| Mean error | 6.25 |" in table
    assert "| Failed tasks (> 5%) | 1 |" in table


@pytest.mark.parametrize(
    "field, value",
    [
        ("data_dir", None),
        ("tasks", (0,)),
        ("tasks", (1, 1)),
        ("memory_layers", 0),
        ("patience", 0),
        ("test_stories_per_task", 0),
        ("learning_rate", 0.0),
    ],
)
def test_a_config_that_makes_no_sense_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"`{field}`.*{value}"):
        babi_example.Config(**{**TINY, field: value})


def test_missing_data_is_an_error_before_the_run_is_recorded(tmp_path):
    with pytest.raises(FileNotFoundError, match="bAbI file"):
        train(tmp_path / "run", data_dir=str(tmp_path), train_steps=2)
    assert not os.path.exists(tmp_path / "run")


def test_without_data_dir_the_script_ends_with_usage(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "examples.babi", f"--model_dir={tmp_path}", "--train_steps=2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert babi_example.__doc__.splitlines()[0] in done.stderr
    assert "`data_dir` is required" in done.stderr and "Traceback" not in done.stderr
