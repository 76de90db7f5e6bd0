"""Learning: on associative recall, both MNM write rules beat the LSTM on a short budget;
the example script resumes an interrupted run and writes its record and curve."""

import json
import os
import re
import subprocess
import sys

import keras
import pytest

from examples import associative_recall

BUDGET = dict(train_steps=1200, steps_per_epoch=200, eval_episodes=500, seed=0)


def train(model_dir, callbacks=(), **fields):
    config = associative_recall.Config(model_dir=str(model_dir), **fields)
    return associative_recall.run(config, verbose=0, callbacks=callbacks)


@pytest.fixture(scope="module")
def lstm_error(tmp_path_factory):
    record = train(tmp_path_factory.mktemp("lstm"), model="lstm", **BUDGET)
    return record["results"]["eval_error"]


@pytest.mark.parametrize("model", ["mnm_p", "mnm_g"])
def test_mnm_learns_associative_recall_well_below_lstm(tmp_path, model, lstm_error):
    record = train(tmp_path, model=model, **BUDGET)
    results = record["results"]
    chance = results["chance_error"]  # 0.875 with 8 values
    # Seen here (seed 0, 1,200 steps, 4 pairs over 8 symbols): LSTM 0.178, MNM-p 0.038,
    # MNM-g 0.082 held-out error; chance is 0.875.
    assert results["eval_error"] < 0.15, results["eval_error"]
    assert results["eval_error"] < 0.65 * lstm_error, (results["eval_error"], lstm_error)
    assert lstm_error < chance  # the baseline learns something too: a fair comparison
    assert os.path.getsize(tmp_path / "curve.png") > 1000
    with open(tmp_path / "metrics.json") as f:
        written = json.load(f)
    assert written["task"] == "associative_recall" and written["config"]["model"] == model
    assert written["train_steps"] == 1200 and written["results"] == results
    assert [row["step"] for row in written["history"]] == [200, 400, 600, 800, 1000, 1200]


class _Interrupt(keras.callbacks.Callback):
    """Stops training in the middle of an epoch, as a killed process would."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt


SMALL = dict(
    model="mnm_p", steps_per_epoch=20, eval_episodes=50, units=16, memory_units=8, key_size=8
)


def _history_lines(model_dir):
    with open(model_dir / "history.jsonl") as f:
        return 1 + len(f.read().strip().splitlines())  # as the CSV log counted (a header)


def test_rerun_after_interruption_resumes_without_losing_finished_epochs(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, train_steps=60, callbacks=[_Interrupt(2, 5)], **SMALL)
    assert _history_lines(tmp_path) == 1 + 2  # epochs 0 and 1 finished
    record = train(tmp_path, train_steps=60, **SMALL)
    assert [row["epoch"] for row in record["history"]] == [0, 1, 2]
    assert _history_lines(tmp_path) == 1 + 3  # only epoch 2 was trained again
    # The interrupted invocation is kept, with no wall time; the resume started at step 40.
    assert [i["start_step"] for i in record["invocations"]] == [0, 40]
    assert record["invocations"][0]["wall_seconds"] is None
    assert record["invocations"][1]["wall_seconds"] > 0
    # Rerunning a finished run trains nothing more; a larger budget adds only new steps,
    # here half an epoch.
    record = train(tmp_path, train_steps=70, **SMALL)
    assert [row["epoch"] for row in record["history"]] == [0, 1, 2, 3]
    assert [row["step"] for row in record["history"]] == [20, 40, 60, 70]
    assert record["train_steps"] == 70 and _history_lines(tmp_path) == 1 + 4


def test_a_config_that_makes_no_sense_is_refused_by_name(tmp_path):
    for field, value in (("batch_size", 0), ("learning_rate", -1.0), ("num_symbols", 3)):
        with pytest.raises(ValueError, match=f"`{field}`.*{value}"):
            associative_recall.Config(model_dir=str(tmp_path), **{field: value})


def test_the_demo_command_prints_its_summary_line(tmp_path):
    # `make demo` runs examples/associative_recall.py --model=mnm_p --model_dir=runs/demo;
    # here with a budget of two steps.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(root, "examples", "associative_recall.py"),
            "--model=mnm_p",
            f"--model_dir={tmp_path}",
            "--train_steps=2",
            "--eval_episodes=8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"mnm_p: held-out error 0\.\d{3} \(chance 0\.875\) after 2 steps, \d+ s\. "
        rf"Metrics: {re.escape(str(tmp_path))}/metrics\.json, "
        rf"curve: {re.escape(str(tmp_path))}/curve\.png",
        last,
    ), last
