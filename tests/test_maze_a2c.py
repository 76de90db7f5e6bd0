"""examples/maze_a2c.py: its Config and flags, a tiny run and its resume, the reward plot.

The training loop itself is tested in ``tests/test_maze_training.py``. Runs in the suite's
single pytest process; ``tests/conftest.py`` sets ``TF_USE_LEGACY_KERAS=1`` before
TensorFlow is imported (TF-Agents needs tf-keras). Tiny networks and 12-step episodes keep
it fast.
"""

import dataclasses
import importlib
import json
import os

import numpy as np
import pytest
from absl import app, flags

from examples import config_flags, plotting

TINY = {"units": 8, "memory_units": 4, "num_heads": 1, "episode_length": 12, "eval_mazes": 3}
EVAL_COLUMNS = ("eval_greedy_reward", "eval_sampling_reward")


@pytest.fixture(scope="module")
def example():
    # Its dependencies first: TensorFlow and TF-Agents define flags of their own at import.
    importlib.import_module("examples.maze_training")
    before = set(flags.FLAGS)
    module = importlib.import_module("examples.maze_a2c")
    assert set(flags.FLAGS) == before  # flags are defined only under __main__
    return module


def _parse(example, argv):
    flag_values = flags.FlagValues()
    config_flags.define_flags(example.Config, flag_values)
    flag_values(["maze_a2c", *argv])
    return flag_values


def test_flags_are_the_config_fields(example):
    flag_values = _parse(
        example,
        [
            "--model=lstm",
            "--model_dir=runs/x",
            "--batch_size=4",
            "--num_episodes=8",
            "--seed=3",
            "--gae_lambda=0.9",
            "--normalize_writes",
            "--eval_interval=4",
        ],
    )
    config = config_flags.config_from_flags(example.Config, flag_values)
    assert config == example.Config(
        model="lstm",
        model_dir="runs/x",
        batch_size=4,
        num_episodes=8,
        seed=3,
        gae_lambda=0.9,
        normalize_writes=True,
        eval_interval=4,
    )
    defined = set(flag_values)
    assert {field.name for field in dataclasses.fields(example.Config)} <= defined
    # The old names: one run per invocation, the shared vocabulary of the other scripts.
    assert not {"root_dir", "network", "seeds", "num_parallel_episodes", "plot"} & defined
    assert example.Config().model == "mnm_p"  # the defaults make sense together
    # The learning rate defaults to 1e-4 per episode of an update, and the config (so the
    # run record) holds the rate itself.
    assert config.learning_rate == pytest.approx(4e-4)
    assert example.Config().learning_rate == pytest.approx(1.6e-3)
    assert example.Config(batch_size=1, num_episodes=5).learning_rate == pytest.approx(1e-4)
    assert example.Config(learning_rate=3e-4).learning_rate == 3e-4


@pytest.mark.parametrize(
    "overrides, name",
    [
        ({"num_episodes": 0}, "num_episodes"),
        ({"num_episodes": 20, "batch_size": 16}, "num_episodes"),  # not whole updates
        ({"batch_size": 0}, "batch_size"),
        ({"eval_interval": 24, "batch_size": 16}, "eval_interval"),
        ({"eval_mazes": 0}, "eval_mazes"),
        ({"units": -1}, "units"),
        ({"size": 8}, "size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"gradient_clipping": -1.0}, "gradient_clipping"),
        ({"gae_lambda": 1.5}, "gae_lambda"),
        ({"model": "gru"}, "model"),
    ],
)
def test_config_refuses_values_that_make_no_sense(example, overrides, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        example.Config(**overrides)
    argv = [f"--{key}={value}" for key, value in overrides.items() if key != "model"]
    if argv:  # the flags end with absl's usage error (model: the enum flag refuses "gru")
        with pytest.raises(app.UsageError, match=f"`{name}`"):
            config_flags.config_from_flags(example.Config, _parse(example, argv))


def test_run_writes_the_record_and_a_resume_extends_it(example, tmp_path):
    model_dir = str(tmp_path / "mnm_p")
    config = example.Config(
        model="mnm_p",
        num_episodes=4,
        batch_size=2,
        eval_interval=2,
        memory_layers=1,
        seed=1,
        model_dir=model_dir,
        **TINY,
    )
    record = example.run(config, verbose=0)
    with open(os.path.join(model_dir, "metrics.json")) as f:
        assert json.load(f) == json.loads(json.dumps(record))
    assert {"config", "results", "history", "invocations"} <= set(record)
    assert record["task"] == "maze" and record["config"] == dataclasses.asdict(config)
    assert [(row["epoch"], row["step"]) for row in record["history"]] == [(0, 2), (1, 4)]
    for row in record["history"]:
        assert row["epoch_seconds"] > 0
        assert all(np.isfinite(row[key]) for key in ("train_reward", *EVAL_COLUMNS))
    results = record["results"]
    assert {"train_reward", *EVAL_COLUMNS} <= set(results) and results["episodes"] == 4
    assert record["train_steps"] == 4
    assert os.path.getsize(os.path.join(model_dir, "rewards.png")) > 1000
    assert "held-out reward" in example.summary(record)

    # The same command with a larger budget resumes: one more invocation, the rows go on.
    resumed = example.run(dataclasses.replace(config, num_episodes=6), verbose=0)
    assert [row["step"] for row in resumed["history"]] == [2, 4, 6]
    assert resumed["history"][:2] == record["history"]
    assert [i["start_step"] for i in resumed["invocations"]] == [0, 4]
    assert all(i["wall_seconds"] is not None for i in resumed["invocations"])
    assert resumed["wall_seconds"] >= record["wall_seconds"]
    with pytest.raises(ValueError, match="below the 6 episodes"):  # before a new invocation
        example.run(dataclasses.replace(config, num_episodes=4), verbose=0)
    with open(os.path.join(model_dir, "invocations.json")) as f:
        assert len(json.load(f)) == 2


def test_plot_maze_rewards_median_iqr_and_evaluations(tmp_path):
    runs = {"a": [np.arange(50.0), np.arange(60.0) + 5, np.ones(55)], "b": [np.zeros(40)]}
    path = str(tmp_path / "curve.png")
    figure = plotting.plot_maze_rewards(
        path,
        runs,
        window=10,
        evaluations={"held-out, greedy": ([20, 40], [1.0, 3.0])},
        reference=("random policy", 9.3),
    )
    assert os.path.getsize(path) > 1000
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert {"a (median of 3)", "b", "held-out, greedy", "random policy"} <= set(lines)
    # The moving average: the mean of the last `window` episodes (fewer at the start).
    np.testing.assert_allclose(lines["b"].get_ydata(), np.zeros(40))
    median = lines["a (median of 3)"].get_ydata()
    assert len(median) == 50  # the episodes that every seed has
    np.testing.assert_allclose(median[:3], [1.0, 1.0, 1.0])  # median of (0, 5, 1), ...


def test_a_run_that_diverges_writes_its_record_and_fails(example, tmp_path, monkeypatch):
    from examples import training
    from tests.diverging_maze import diverge_after

    diverge_after(monkeypatch, 3)  # the third update diverges
    model_dir = str(tmp_path / "lstm")
    config = example.Config(
        model="lstm", num_episodes=8, batch_size=2, eval_interval=4, model_dir=model_dir, **TINY
    )
    with pytest.raises(training.NonFiniteTrainingError, match="optimizer step 3") as error:
        example.run(config, verbose=0)
    with open(os.path.join(model_dir, "metrics.json")) as f:
        record = json.load(f)
    assert record["results"] == {} and record["train_steps"] == 3
    assert record["diverged"]["step"] == 3 and record["diverged"]["message"] == str(error.value)
    assert [row["step"] for row in record["history"]] == [4]  # the finite interval
