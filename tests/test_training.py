"""examples.training: resumed runs train at the requested learning rate and log it; budgets
that are not whole epochs; the run record over several invocations."""

import dataclasses
import json
import os
import sys

import keras
import numpy as np
import pytest

from examples import training


def _model(learning_rate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(learning_rate), "mse")
    return model


def _fit(model, model_dir, epochs, train_steps=None):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model.fit(
        x,
        x[:, :1],
        epochs=epochs,
        batch_size=4,
        verbose=0,
        callbacks=training.resumable_callbacks(model_dir, train_steps),
    )


def test_resumed_run_trains_at_the_new_learning_rate(tmp_path):
    model_dir = str(tmp_path)
    _fit(_model(1e-2), model_dir, epochs=1)
    # A rerun with a larger budget and a lower rate: BackupAndRestore restores the first
    # run's optimizer (learning rate 1e-2 included); the second epoch must use 1e-3.
    model = _model(1e-3)
    _fit(model, model_dir, epochs=2)
    history = training.read_history(model_dir)
    assert [row["epoch"] for row in history] == [0, 1]
    np.testing.assert_allclose([row["learning_rate"] for row in history], [1e-2, 1e-3])
    np.testing.assert_allclose(float(model.optimizer.learning_rate.numpy()), 1e-3)
    # The restore did happen: the optimizer's step counter went on from the first run.
    assert int(model.optimizer.iterations.numpy()) == 4


def test_warm_start_takes_the_weights_and_not_the_optimizer(tmp_path):
    source = str(tmp_path / "source")
    trained = _model(1e-2)
    _fit(trained, source, epochs=2)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    assert not np.allclose(model.get_weights()[0], trained.get_weights()[0])
    training.warm_start(model, source)
    for a, b in zip(model.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(a, b)
    # A new optimizer: no steps, the compiled learning rate.
    assert int(model.optimizer.iterations.numpy()) == 0
    np.testing.assert_allclose(float(model.optimizer.learning_rate.numpy()), 1e-3)
    # A weights file works as well as a model_dir.
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    training.warm_start(other, training.checkpoint_path(source))
    np.testing.assert_array_equal(other.get_weights()[0], trained.get_weights()[0])


def test_warm_start_errors_name_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`init_from` \('.*nowhere'\): no checkpoint"):
        training.warm_start(_model(1e-3), str(tmp_path / "nowhere"))
    source = str(tmp_path / "source")
    _fit(_model(1e-2), source, epochs=1)
    wider = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"`init_from` \('.*source'\): the checkpoint .* does not"):
        training.warm_start(wider, source)


def test_a_checkpoint_cut_short_by_a_kill_resumes_from_the_previous_one(tmp_path):
    model_dir = str(tmp_path)
    _fit(_model(1e-2), model_dir, epochs=2)
    latest = training.checkpoint_path(model_dir)
    with open(latest, "r+b") as f:  # as a process killed while writing it leaves it
        f.truncate(96)
    model = _model(1e-2)
    _fit(model, model_dir, epochs=3)
    # The rerun restored the checkpoint of the first epoch and trained epochs 1 and 2.
    assert int(model.optimizer.iterations.numpy()) == 6
    assert [row["epoch"] for row in training.read_history(model_dir)] == [0, 1, 2]


def test_plan_budget_of_a_new_run_counts_whole_and_partial_epochs(tmp_path):
    model_dir = str(tmp_path / "new")
    assert training.plan_budget(model_dir, 10, 5) == training.Budget(done_steps=0, epochs=2)
    assert training.plan_budget(model_dir, 7, 5) == training.Budget(0, 2)  # 5 + 2
    assert training.plan_budget(model_dir, 2, 500) == training.Budget(0, 1)
    assert not os.path.exists(model_dir)  # planning writes nothing
    for name, value in (("train_steps", 0), ("steps_per_epoch", -1), ("train_steps", 2.5)):
        args = {"train_steps": 4, "steps_per_epoch": 2, name: value}
        with pytest.raises(ValueError, match=f"`{name}` must be a positive integer"):
            training.plan_budget(model_dir, **args)


def test_plan_budget_resumes_after_a_partial_last_epoch(tmp_path):
    # 3 steps in epochs of 2 (an epoch of 2, then one of 1): a rerun with 6 steps starts at
    # step 3 and needs epochs of 2 + 1, so fit's epochs count is 2 restored + 2 more.
    model_dir = str(tmp_path)
    budget = training.plan_budget(model_dir, 3, 2)
    assert budget == training.Budget(0, 2)
    model = _model(1e-2)
    _fit(model, model_dir, budget.epochs, train_steps=3)
    assert int(model.optimizer.iterations.numpy()) == 3
    assert [row["step"] for row in training.read_history(model_dir)] == [2, 3]
    assert training.completed_epochs(model_dir) == 2
    budget = training.plan_budget(model_dir, 6, 2)
    assert budget == training.Budget(done_steps=3, epochs=4)
    model = _model(1e-2)
    _fit(model, model_dir, budget.epochs, train_steps=6)
    assert int(model.optimizer.iterations.numpy()) == 6
    assert [row["step"] for row in training.read_history(model_dir)] == [2, 3, 5, 6]
    # An equal budget evaluates without training; a smaller one is refused.
    assert training.plan_budget(model_dir, 6, 2) == training.Budget(6, 4)
    with pytest.raises(ValueError, match=r"`train_steps` \(5\) is below the 6 steps"):
        training.plan_budget(model_dir, 5, 2)


@dataclasses.dataclass(frozen=True)
class _Config:
    learning_rate: float = 1e-2
    model_dir: str = ""


def test_run_recorder_keeps_every_invocation_and_a_killed_one_has_no_wall_time(tmp_path):
    model_dir = str(tmp_path)
    config = _Config(model_dir=model_dir)
    # A first invocation that is killed: it is recorded, but never finishes.
    training.RunRecorder(model_dir, "toy", config, start_step=0)
    with open(tmp_path / "invocations.json") as f:
        (killed,) = json.load(f)
    assert killed["wall_seconds"] is None and killed["start_step"] == 0
    assert killed["config"] == {"learning_rate": 1e-2, "model_dir": model_dir}
    assert not os.path.exists(tmp_path / "metrics.json")
    # Two more invocations (a resume from step 4, then one from step 8) that finish.
    for start, steps in ((4, 8), (8, 12)):
        recorder = training.RunRecorder(model_dir, "toy", config, start_step=start)
        history = [
            {"epoch": e, "step": 4 * (e + 1), "epoch_seconds": 1.5} for e in range(steps // 4)
        ]
        record = recorder.finish({"error": 0.25}, history=history)
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f) == json.loads(json.dumps(record))
    assert record["task"] == "toy" and record["config"] == dataclasses.asdict(config)
    assert record["results"] == {"error": 0.25} and record["train_steps"] == 12
    assert record["wall_seconds"] == 4.5  # the epochs' time, over every invocation
    assert [i["start_step"] for i in record["invocations"]] == [0, 4, 8]
    walls = [i["wall_seconds"] for i in record["invocations"]]
    assert walls[0] is None and all(w is not None and w >= 0 for w in walls[1:])
    assert all(i["hardware"]["cpu_count"] >= 1 for i in record["invocations"])
    assert record["hardware"] == record["invocations"][-1]["hardware"]
    assert record["history"] == history
    assert not os.path.exists(tmp_path / "curve.png")  # no curves asked for


def test_run_recorder_reads_the_fit_history_and_draws_the_curves(tmp_path):
    model_dir = str(tmp_path)
    recorder = training.RunRecorder(model_dir, "toy", {"learning_rate": 1e-2})
    _fit(_model(1e-2), model_dir, epochs=2)
    record = recorder.finish(
        {"loss": 0.5}, {"train loss": lambda row: row["loss"]}, title="toy", ylabel="loss"
    )
    assert [row["step"] for row in record["history"]] == [2, 4]
    assert record["train_steps"] == 4 and record["config"] == {"learning_rate": 1e-2}
    assert record["wall_seconds"] == pytest.approx(
        sum(row["epoch_seconds"] for row in record["history"]), abs=0.1
    )
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_the_record_names_the_script_relative_to_the_repository(tmp_path, monkeypatch):
    root = os.path.dirname(os.path.dirname(os.path.abspath(training.__file__)))
    script = os.path.join(root, "examples", "maze_a2c.py")
    monkeypatch.setattr(sys, "argv", [script, "--seed=1"])
    recorder = training.RunRecorder(str(tmp_path), "maze", {"seed": 1})
    assert recorder._invocations[-1]["argv"] == ["examples/maze_a2c.py", "--seed=1"]


def test_the_record_has_the_protocol_and_a_run_of_another_is_not_resumed(tmp_path):
    from examples import results

    model_dir = str(tmp_path / "run")
    recorder = training.RunRecorder(model_dir, "toy", {"seed": 0})
    history = [{"epoch": 0, "step": 1, "epoch_seconds": 1.0}]
    record = recorder.finish({"error": 0.5}, history=history)
    assert record["protocol"] == results.PROTOCOL
    assert recorder._invocations[-1]["protocol"] == results.PROTOCOL
    training.RunRecorder(model_dir, "toy", {"seed": 0})  # a resume of the same protocol
    # Invocations written before the protocol existed are protocol 1.
    path = os.path.join(model_dir, "invocations.json")
    with open(path) as f:
        invocations = json.load(f)
    del invocations[0]["protocol"]
    with open(path, "w") as f:
        json.dump(invocations, f)
    with pytest.raises(ValueError, match=r"holds a run of training protocol 1.*new model_dir"):
        training.RunRecorder(model_dir, "toy", {"seed": 0})


class _Inject(keras.callbacks.Callback):
    """Puts a NaN into ``what`` (a weight, or the logged loss) after optimizer step ``at``."""

    def __init__(self, what, at):
        super().__init__()
        self.what, self.at = what, at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) != self.at:
            return
        if self.what == "loss":
            logs["loss"] = float("nan")
        else:
            kernel = self.model.layers[0].kernel
            kernel.assign(np.where(np.eye(3, 1) > 0, np.nan, kernel.numpy()))


@pytest.mark.parametrize("what, quantity", [("loss", "loss"), ("kernel", "weight sequential")])
def test_a_non_finite_loss_or_weight_ends_fit_and_keeps_the_last_finite_checkpoint(
    tmp_path, what, quantity
):
    model_dir = str(tmp_path)
    model = _model(1e-2)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    callbacks = [_Inject(what, at=5), *training.resumable_callbacks(model_dir)]
    with pytest.raises(training.NonFiniteTrainingError, match="optimizer step 5") as error:
        model.fit(x, x[:, :1], epochs=4, batch_size=4, verbose=0, callbacks=callbacks)
    assert error.value.step == 5 and error.value.quantity.startswith(quantity)
    assert what != "kernel" or error.value.quantity.endswith("/kernel")
    # Steps 1-4 (two epochs of 2) were checkpointed; the NaN of step 5 was not.
    assert training.completed_epochs(model_dir) == 2
    assert [row["epoch"] for row in training.read_history(model_dir)] == [0, 1]
    restored = _model(1e-2)
    training.warm_start(restored, model_dir)
    assert all(np.isfinite(w).all() for w in restored.get_weights())


def test_the_run_recorder_refuses_non_finite_results_and_weights(tmp_path):
    recorder = training.RunRecorder(str(tmp_path), "test", {"a": 1})
    with pytest.raises(training.NonFiniteTrainingError, match=r"errors\[1\]"):
        recorder.finish({"error": 0.5, "errors": [0.1, float("nan")]})
    model = _model(1e-2)
    model.layers[0].bias.assign([np.inf])
    with pytest.raises(training.NonFiniteTrainingError, match="bias"):
        recorder.finish({"error": 0.5}, model=model)
    assert not os.path.exists(tmp_path / "metrics.json")
    recorder.finish({"error": 0.5, "errors": [0.1, None]}, history=[])
    assert os.path.exists(tmp_path / "metrics.json")


def test_the_history_is_one_json_row_per_epoch_read_by_the_one_reader(tmp_path):
    model_dir = str(tmp_path / "run")
    _fit(_model(1e-2), model_dir, epochs=2)
    with open(os.path.join(model_dir, "history.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert [row["epoch"] for row in rows] == [0, 1]
    assert {"loss", "step", "epoch_seconds", "learning_rate"} <= set(rows[0])
    assert [row["step"] for row in rows] == [2, 4]
    assert training.read_history(model_dir) == rows
    # NaN is written as null; an epoch logged again (a resumed run) keeps its last row.
    logger = training.HistoryLogger(str(tmp_path))
    logger.on_epoch_end(0, {"loss": float("nan"), "step": 3})
    with open(tmp_path / "history.jsonl") as f:
        assert json.loads(f.read()) == {"epoch": 0, "loss": None, "step": 3.0}
    logger.on_epoch_end(1, {"loss": 1.0})
    logger.on_epoch_end(0, {"loss": 2.0})
    assert training.read_history(str(tmp_path)) == [
        {"epoch": 0, "loss": 2.0},
        {"epoch": 1, "loss": 1.0},
    ]


def test_a_model_dir_with_the_earlier_csv_history_is_refused(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ValueError, match="holds history.csv, the per-epoch log of an earlier"):
        training.resumable_callbacks(str(tmp_path))
