"""examples/algorithmic.py: every task with every model, the run record, budgets, resume."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from examples import algorithmic, training
from mnm_keras import datasets, models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(units=8, memory_units=6, key_size=6, eval_episodes=8, batch_size=4)


def train(model_dir, callbacks=(), **fields):
    config = algorithmic.Config(model_dir=str(model_dir), **fields)
    return algorithmic.run(config, verbose=0, callbacks=callbacks)


@pytest.mark.parametrize("task", sorted(datasets.TASKS))
@pytest.mark.parametrize("model", models.MODEL_NAMES)
def test_every_task_and_model_trains_and_reports(tmp_path, task, model):
    # MNM-g runs with normalised writes, MNM-p with the paper's writes (both options covered).
    normalize = model == "mnm_g"
    record = train(
        tmp_path,
        task=task,
        model=model,
        train_steps=2,
        steps_per_epoch=1,
        normalize_writes=normalize,
        **TINY,
    )
    with open(tmp_path / "metrics.json") as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(record))
    for key in ("eval_sequence_error", "eval_symbol_error"):
        assert 0.0 <= written["results"][key] <= 1.0
    config = written["config"]
    assert written["task"] == "algorithmic" and written["train_steps"] == 2
    assert config["task"] == task and config["model"] == model
    assert config["normalize_writes"] == normalize
    assert (config["units"], config["memory_units"], config["memory_layers"]) == (8, 6, 3)
    assert [row["epoch"] for row in written["history"]] == [0, 1]
    assert [row["step"] for row in written["history"]] == [1, 2]
    (invocation,) = written["invocations"]
    assert invocation["config"] == config and invocation["start_step"] == 0
    assert invocation["wall_seconds"] > 0 and invocation["hardware"]["cpu_count"] >= 1
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert os.listdir(tmp_path / "logs")  # TensorBoard


class _FinalWeights(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.weights = self.model.get_weights()


def test_resumed_run_continues_the_training_stream(tmp_path):
    # Two epochs in one run, or one epoch and then a rerun with the larger budget: the same
    # episodes in the same order, so the same weights (a rerun that restarted the stream
    # would train its second epoch on the first epoch's episodes again).
    args = dict(task="double_copy", model="lstm", steps_per_epoch=2, **TINY)
    straight, resumed = _FinalWeights(), _FinalWeights()
    train(str(tmp_path / "a"), train_steps=4, callbacks=[straight], **args)
    train(str(tmp_path / "b"), train_steps=2, **args)
    assert training.completed_epochs(str(tmp_path / "b")) == 1
    train(str(tmp_path / "b"), train_steps=4, callbacks=[resumed], **args)
    assert training.completed_epochs(str(tmp_path / "b")) == 2
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _StartWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()


def test_curriculum_run_starts_from_another_runs_weights(tmp_path):
    # Dictionary (4, 1), then (8, 4) from its weights: the second run's first step starts
    # from the first run's final weights, with a new optimizer (its steps count from 0).
    args = dict(task="dictionary", model="mnm_g", steps_per_epoch=1, **TINY)
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    finished = _FinalWeights()
    train(first, train_steps=2, callbacks=[finished], **args)
    start = _StartWeights()
    record = train(
        second,
        support_size=8,
        sequence_length=4,
        train_steps=1,
        init_from=first,
        callbacks=[start],
        **args,
    )
    for a, b in zip(start.weights, finished.weights):
        np.testing.assert_array_equal(a, b)
    assert record["config"]["init_from"] == first and record["config"]["support_size"] == 8
    assert [row["epoch"] for row in record["history"]] == [0]
    # Resuming uses the run's own checkpoint: the source is no longer read.
    os.rename(first, str(tmp_path / "moved"))
    resumed = _StartWeights()
    train(
        second,
        support_size=8,
        sequence_length=4,
        train_steps=2,
        init_from=first,
        callbacks=[resumed],
        **args,
    )
    assert training.completed_epochs(second) == 2
    assert not all(np.array_equal(a, b) for a, b in zip(resumed.weights, finished.weights))
    # A new run from a missing source is an error that names it.
    with pytest.raises(FileNotFoundError, match="init_from"):
        train(str(tmp_path / "third"), train_steps=1, init_from=first, **args)


class _ClipBound(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.bound = self.model.optimizer.global_clipnorm


def test_gradient_clipping_bounds_the_step_and_a_rerun_may_change_it(tmp_path):
    # Adam's first step moves each weight by about the learning rate whatever the gradient's
    # scale, unless the gradient is far below Adam's epsilon (1e-7): clipped to a global
    # norm of 1e-9, the step is at most about 1e-2 of the learning rate.
    args = dict(task="dictionary", model="lstm", steps_per_epoch=1, learning_rate=1e-2, **TINY)
    moves = {}
    for bound in (None, 1e-9):
        start, finished = _StartWeights(), _FinalWeights()
        model_dir = str(tmp_path / f"clip_{bound}")
        record = train(
            model_dir, train_steps=1, gradient_clipping=bound, callbacks=[start, finished], **args
        )
        assert record["config"]["gradient_clipping"] == bound
        moves[bound] = max(np.abs(a - b).max() for a, b in zip(start.weights, finished.weights))
    assert moves[None] > 0.5e-2 and moves[1e-9] < 0.2e-3
    # A rerun that continues the clipped run trains under the bound it is given.
    probe = _ClipBound()
    train(
        str(tmp_path / "clip_1e-09"),
        train_steps=2,
        gradient_clipping=5.0,
        callbacks=[probe],
        **args,
    )
    assert probe.bound == 5.0
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"`gradient_clipping`.*" + str(bad)):
            train(tmp_path / "bad", train_steps=1, gradient_clipping=bad, **args)
    assert not os.path.exists(tmp_path / "bad")


class _CountBatches(keras.callbacks.Callback):
    batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_a_budget_below_the_finished_steps_is_an_error(tmp_path):
    # A 2-step run rerun with --train_steps=1 would train nothing and be reported as a
    # 1-step run with its 2-step weights; with --train_steps=2 it is evaluated, not trained.
    args = dict(task="dictionary", model="lstm", steps_per_epoch=1, **TINY)
    first = train(str(tmp_path), train_steps=2, **args)
    with pytest.raises(ValueError, match=r"`train_steps` \(1\) is below the 2 steps"):
        train(str(tmp_path), train_steps=1, **args)
    count = _CountBatches()
    again = train(str(tmp_path), train_steps=2, callbacks=[count], **args)
    assert count.batches == 0 and again["train_steps"] == 2
    assert again["results"] == first["results"]
    assert [i["start_step"] for i in again["invocations"]] == [0, 2]


def test_a_budget_that_is_not_whole_epochs_ends_with_a_shorter_epoch(tmp_path):
    # 2 steps in epochs of 500, then 7 steps in epochs of 3: the last epoch of each is
    # short, evaluated and logged, and the rerun continues from the step where it stopped.
    args = dict(task="dictionary", model="lstm", **TINY)
    count = _CountBatches()
    record = train(tmp_path, train_steps=2, steps_per_epoch=500, callbacks=[count], **args)
    assert count.batches == 2 and record["train_steps"] == 2
    assert [row["step"] for row in record["history"]] == [2]
    assert "val_sequence_error" in record["history"][0]
    assert training.plan_budget(str(tmp_path), 7, 3) == training.Budget(2, 3)
    count = _CountBatches()
    record = train(tmp_path, train_steps=7, steps_per_epoch=3, callbacks=[count], **args)
    assert count.batches == 5 and record["train_steps"] == 7
    assert [row["step"] for row in record["history"]] == [2, 5, 7]


@pytest.mark.parametrize(
    "field, value",
    [
        ("train_steps", -1),
        ("train_steps", 0),
        ("batch_size", 0),
        ("units", 2.5),
        ("learning_rate", 0.0),
        ("task", "sorting"),
        ("model", "gru"),
    ],
)
def test_a_config_that_makes_no_sense_is_refused_by_name(tmp_path, field, value):
    with pytest.raises(ValueError, match=f"`{field}`.*{value}"):
        algorithmic.Config(model_dir=str(tmp_path), **{field: value})


def test_flags_are_the_config_fields_and_a_bad_value_ends_with_usage(tmp_path):
    from absl import flags

    from examples import config_flags

    values = flags.FlagValues()
    config_flags.define_flags(algorithmic.Config, values)
    names = {field.name for field in dataclasses.fields(algorithmic.Config)}
    assert names <= set(values)
    values(["prog", "--train_steps=7", "--gradient_clipping=1.5", "--nonormalize_writes"])
    config = config_flags.config_from_flags(algorithmic.Config, values)
    assert config == algorithmic.Config(
        train_steps=7, gradient_clipping=1.5, normalize_writes=False
    )
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "algorithmic.py"),
            "--train_steps=-1",
            f"--model_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    # absl's usage message: the script's docstring, then the config's error.
    assert algorithmic.__doc__.splitlines()[0] in done.stderr
    assert "`train_steps` must be a positive integer; received train_steps=-1" in done.stderr
    assert "Traceback" not in done.stderr
    assert not os.path.exists(tmp_path / "metrics.json")


def _history_rows(model_dir):
    path = os.path.join(model_dir, "history.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().strip().splitlines()


def test_killed_run_resumes_without_losing_finished_epochs(tmp_path):
    model_dir = str(tmp_path / "run")
    command = [
        sys.executable,
        os.path.join(ROOT, "examples", "algorithmic.py"),
        "--task=dictionary",
        "--model=mnm_p",
        "--units=8",
        "--memory_units=6",
        "--key_size=6",
        "--batch_size=4",
        "--eval_episodes=8",
        "--train_steps=400",
        "--steps_per_epoch=20",
        f"--model_dir={model_dir}",
    ]
    env = {**os.environ, "PYTHONPATH": ROOT}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while len(_history_rows(model_dir)) < 2 and time.time() < deadline:
        if process.poll() is not None:
            pytest.fail("the training process ended before it could be killed")
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = _history_rows(model_dir)
    assert 2 <= len(finished) < 20, "killed mid-run, after some epochs had finished"

    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    rows = _history_rows(model_dir)
    # The finished epochs are kept as they were, and only the others were trained.
    assert rows[: len(finished)] == finished
    assert len(rows) == 20
    assert [json.loads(row)["epoch"] for row in rows] == list(range(20))
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert len(metrics["history"]) == 20
    # Training time counts every epoch, including those of the killed process.
    assert metrics["wall_seconds"] == pytest.approx(
        sum(row["epoch_seconds"] for row in metrics["history"]), abs=0.1
    )


def test_a_diverging_run_stops_keeps_its_last_finite_checkpoint_and_resumes(tmp_path):
    # MNM-g with the paper's writes, keys of 64 (|k|^2 up to 64: a write overshoots) and
    # learning rate 1: the loss of step 2 is non-finite (with normalised writes the same
    # run stays finite for 8 steps).
    sizes = dict(units=8, memory_units=64, key_size=64, memory_layers=1, batch_size=4)
    diverging = dict(task="dictionary", model="mnm_g", steps_per_epoch=1, eval_episodes=8, **sizes)
    with pytest.raises(training.NonFiniteTrainingError, match=r"optimizer step \d") as error:
        train(tmp_path, train_steps=6, learning_rate=1.0, normalize_writes=False, **diverging)
    step = error.value.step
    assert step >= 2 and error.value.quantity.startswith(("loss", "meta_loss", "weight "))
    assert f"optimizer step {step}" in str(error.value)
    # Its record says where and how it diverged, with no results.
    with open(tmp_path / "metrics.json") as f:
        record = json.load(f)
    assert record["results"] == {} and record["train_steps"] == step
    assert record["diverged"] == {
        "step": step,
        "quantity": error.value.quantity,
        "message": str(error.value),
    }
    assert len(record["history"]) == step - 1  # one epoch per step, the finite ones
    assert record["invocations"][-1]["wall_seconds"] is not None
    # The backup holds the finite steps before it (one per epoch).
    assert training.completed_epochs(str(tmp_path)) == step - 1
    config = algorithmic.Config(**diverging)
    network = algorithmic.build_model(algorithmic.make_task(config), config)
    training.warm_start(network, str(tmp_path))
    assert all(np.isfinite(w).all() for w in network.get_weights())
    # A rerun resumes from them: with the budget of the finite steps, it records them.
    finite = step - 1
    record = train(
        tmp_path, train_steps=finite, learning_rate=1.0, normalize_writes=False, **diverging
    )
    assert record["train_steps"] == finite
    assert record["invocations"][-1]["start_step"] == finite
    assert 0 <= record["results"]["eval_symbol_error"] <= 1
