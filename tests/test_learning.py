"""Learning: on associative recall, both MNM write rules beat the LSTM on a short budget;
the example script resumes an interrupted run and writes its metrics and curve."""

import json
import os

import keras
import pytest

from examples import associative_recall

BUDGET = dict(train_steps=1200, steps_per_epoch=200, eval_episodes=500, seed=0, verbose=0)


@pytest.fixture(scope="module")
def lstm_error(tmp_path_factory):
    metrics = associative_recall.train_and_evaluate(
        str(tmp_path_factory.mktemp("lstm")), model="lstm", **BUDGET
    )
    return metrics["eval_error"]


@pytest.mark.parametrize("model", ["mnm_p", "mnm_g"])
def test_mnm_learns_associative_recall_well_below_lstm(tmp_path, model, lstm_error):
    metrics = associative_recall.train_and_evaluate(str(tmp_path), model=model, **BUDGET)
    chance = metrics["chance_error"]  # 0.875 with 8 values
    # Seen here (seed 0, 1,200 steps, 4 pairs over 8 symbols): LSTM 0.178, MNM-p 0.038,
    # MNM-g 0.082 held-out error; chance is 0.875.
    assert metrics["eval_error"] < 0.15, metrics["eval_error"]
    assert metrics["eval_error"] < 0.65 * lstm_error, (metrics["eval_error"], lstm_error)
    assert lstm_error < chance  # the baseline learns something too: a fair comparison
    assert os.path.getsize(tmp_path / "curve.png") > 1000
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f)["model"] == model


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


def test_rerun_after_interruption_resumes_without_losing_finished_epochs(tmp_path):
    small = dict(steps_per_epoch=20, eval_episodes=50, units=16, memory_units=8, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        associative_recall.train_and_evaluate(
            str(tmp_path), model="mnm_p", train_steps=60, callbacks=[_Interrupt(2, 5)], **small
        )
    with open(tmp_path / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 2  # epochs 0 and 1 finished
    metrics = associative_recall.train_and_evaluate(
        str(tmp_path), model="mnm_p", train_steps=60, **small
    )
    assert [row["epoch"] for row in metrics["history"]] == [0, 1, 2]
    with open(tmp_path / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 3  # only epoch 2 was trained again
    # Rerunning a finished run trains nothing more; a larger budget adds only new epochs.
    metrics = associative_recall.train_and_evaluate(
        str(tmp_path), model="mnm_p", train_steps=80, **small
    )
    assert [row["epoch"] for row in metrics["history"]] == [0, 1, 2, 3]
    with open(tmp_path / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 4
