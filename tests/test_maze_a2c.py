"""examples/maze_a2c.py: a few episodes of each network, resume, reload of the saved policy.

Runs in the suite's single pytest process; ``tests/conftest.py`` sets
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported (TF-Agents needs tf-keras).
Tiny networks and 12-step episodes keep it fast.
"""

import csv
import importlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from tf_agents.environments import tf_py_environment

from tf_agents_ext import maze

TINY = {"units": 8, "memory_units": 4, "num_heads": 1, "episode_length": 12}


@pytest.fixture(scope="module")
def example():
    before = set(flags.FLAGS)
    module = importlib.import_module("examples.maze_a2c")
    assert set(flags.FLAGS) == before  # flags are defined only under __main__
    return module


def _rewards(root):
    with open(os.path.join(root, "rewards.csv"), newline="") as f:
        return [(int(r["episode"]), float(r["reward"])) for r in csv.DictReader(f)]


def _reload_and_act(root, batch=3):
    policy = tf.saved_model.load(os.path.join(root, "policy"))
    env = tf_py_environment.TFPyEnvironment(
        maze.BatchedMazeEnvironment(batch, episode_length=TINY["episode_length"], seed=0)
    )
    time_step = env.reset()
    state = policy.get_initial_state(batch_size=batch)
    for _ in range(3):
        step = policy.action(time_step, state)
        assert step.action.shape == (batch,)
        assert np.all((step.action.numpy() >= 0) & (step.action.numpy() <= 3))
        time_step, state = env.step(step.action), step.state
    return state


@pytest.mark.parametrize("network, memory_layers", [("mnm_p", 1), ("mnm_g", 2)])
def test_mnm_networks_train_a_few_episodes(example, tmp_path, network, memory_layers):
    root = str(tmp_path / network)
    # MNM-g with normalised writes, MNM-p with the paper's (both options covered).
    normalize = network == "mnm_g"
    # MNM-g also with the agent's loss options (the reference's defaults for MNM-p).
    options = dict(entropy_weight=0.01, gradient_clipping=1.0, gae_lambda=0.95) if normalize else {}
    metrics = example.train_eval(
        root, network=network, num_episodes=4, num_parallel_episodes=2, seed=1,
        normalize_writes=normalize, memory_layers=memory_layers, **options, **TINY,
    )  # fmt: skip
    assert metrics["episodes"] == 4 and metrics["train_steps"] == 2
    assert metrics["normalize_writes"] == normalize
    expected = options or dict(entropy_weight=0.0, gradient_clipping=None, gae_lambda=None)
    assert {k: metrics[k] for k in expected} == expected
    assert (metrics["memory_layers"], metrics["num_heads"]) == (memory_layers, 1)
    assert len(_rewards(root)) == 4
    state = _reload_and_act(root)
    # The saved policy's state: h, c, the last read, one flat matrix per memory layer and
    # the meta-loss pair; the last layer maps to the value size (4 x 4 here).
    flat = tf.nest.flatten(state)
    assert len(flat) == 4 + memory_layers
    assert [int(t.shape[-1]) for t in flat[3:-1]] == [16] * memory_layers


def test_lstm_trains_resumes_and_saves(example, tmp_path):
    root = str(tmp_path / "lstm")
    first = example.train_eval(
        root, network="lstm", num_episodes=4, num_parallel_episodes=2, checkpoint_interval=2, **TINY
    )
    assert first["episodes"] == 4
    assert first["units"] == 8 and "memory_layers" not in first
    kept = _rewards(root)
    # An interrupted run: an episode written to rewards.csv after the last checkpoint.
    with open(os.path.join(root, "rewards.csv"), "a") as f:
        f.write("5,99.0\n")
    assert first["learning_rate"] == pytest.approx(1e-4)
    # Resumed at another learning rate: the checkpoint restores the optimizer's (1e-4), the
    # run must train at the requested one.
    second = example.train_eval(
        root, network="lstm", num_episodes=8, num_parallel_episodes=2, checkpoint_interval=2,
        learning_rate=3e-4, **TINY,
    )  # fmt: skip
    assert second["learning_rate"] == pytest.approx(3e-4)
    rows = _rewards(root)
    assert second["episodes"] == 8 and second["train_steps"] == 4
    assert [r[0] for r in rows] == list(range(1, 9))
    assert rows[:4] == kept and rows[4][1] != 99.0
    assert second["wall_seconds"] >= first["wall_seconds"]
    with open(os.path.join(root, "metrics.json")) as f:
        metrics = json.load(f)
    for key in (
        "network",
        "episodes",
        "wall_seconds",
        "episodes_per_second",
        "mean_reward_last_1000",
    ):
        assert key in metrics
    assert os.path.getsize(os.path.join(root, "rewards.png")) > 0
    _reload_and_act(root)


def test_plot_median_and_iqr(example, tmp_path):
    runs = {"a": [np.arange(50.0), np.arange(60.0) + 5, np.ones(55)], "b": [np.zeros(40)]}
    path = str(tmp_path / "curve.png")
    example.plot_rewards(path, runs, window=10)
    assert os.path.getsize(path) > 0
    np.testing.assert_allclose(example.moving_average([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])


def test_plot_runs_reads_rewards_and_rejects_bad_items(example, tmp_path):
    for name, values in (("a", [1.0, 2.0, 3.0]), ("b", [4.0, 5.0])):
        os.makedirs(tmp_path / name)
        example._write_rewards(str(tmp_path / name), values)
    path = str(tmp_path / "runs.png")
    example.plot_runs([f"lstm={tmp_path / 'a'}+{tmp_path / 'b'}"], path, window=2)
    assert os.path.getsize(path) > 1000
    with pytest.raises(ValueError, match="holds no rewards.csv"):
        example.plot_runs([f"H=3={tmp_path / 'a'}"], path)  # the label ends at the first '='
    with pytest.raises(ValueError, match="label=dir1"):
        example.plot_runs([str(tmp_path / "a")], path)


def test_argument_errors(example, tmp_path):
    with pytest.raises(ValueError, match="network"):
        example.train_eval(str(tmp_path), network="gru")
    with pytest.raises(ValueError, match="num_parallel_episodes"):
        example.train_eval(str(tmp_path), num_parallel_episodes=0)
    # The agent's options reach the agent, which names them in its errors.
    for name, value in (("entropy_weight", -0.1), ("gradient_clipping", 0.0), ("gae_lambda", 2.0)):
        with pytest.raises(ValueError, match=name):
            example.train_eval(str(tmp_path / name), network="lstm", **{name: value}, **TINY)
