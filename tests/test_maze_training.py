"""examples.maze_training: held-out mazes, greedy evaluation, the resumable training loop.

Runs in the suite's single pytest process; ``tests/conftest.py`` sets
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported (TF-Agents needs tf-keras).
Tiny networks and 12-step episodes keep it fast.
"""

import importlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment

import tf_agents_ext
from examples import maze_training
from tests.diverging_maze import diverge_after
from tf_agents_ext import maze

TINY = {"units": 8, "memory_units": 4, "num_heads": 1, "episode_length": 12}
EVAL_COLUMNS = ("eval_greedy_reward", "eval_sampling_reward")


def _goals(seeds, resets=4):
    """The goals of ``resets`` successive episodes of the mazes of ``seeds``: [resets, B, 2]."""
    env = maze.BatchedMazeEnvironment(len(seeds), episode_length=2, seed=seeds)
    goals = []
    for _ in range(resets):
        env.reset()
        goals.append(env.goals)
    return np.array(goals)


def _reload_and_act(model_dir, batch=3):
    policy = tf.saved_model.load(os.path.join(model_dir, "policy"))
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


def test_the_package_imports_its_modules_on_first_use():
    assert tf_agents_ext.networks is importlib.import_module("tf_agents_ext.networks")
    assert set(tf_agents_ext.__all__) == {"a2c_agent", "maze", "networks"}


def test_held_out_mazes_are_fixed_and_not_the_training_mazes():
    held_out = maze_training.held_out_maze_seeds(3, 8)
    assert held_out == maze_training.held_out_maze_seeds(3, 8)  # every call, every resume
    assert maze_training.held_out_maze_seeds(3, 4) == held_out[:4]
    assert maze_training.held_out_maze_seeds(4, 8) != held_out  # another run's
    for done in (0, 16, 4000):  # the training mazes of a run resumed at `done`
        training_seeds = maze_training.training_maze_seeds(3, done, 8)
        assert not set(training_seeds) & set(held_out)
        # Different seeds, different episodes (goals of four episodes of eight mazes).
        assert not np.array_equal(_goals(training_seeds), _goals(held_out))
    np.testing.assert_array_equal(_goals(held_out), _goals(held_out))
    assert maze_training.training_maze_seeds(3, 0, 8) != maze_training.training_maze_seeds(3, 16, 8)


def test_random_policy_reward_is_the_random_policys_mean_on_those_mazes():
    # The same mazes played one by one (MazeEnvironment follows BatchedMazeEnvironment's
    # maze i given the same actions) with the same action draws, repeat by repeat.
    seeds, length, repeats = maze_training.held_out_maze_seeds(2, 3), 40, 2
    rng = np.random.default_rng(5)
    actions = [
        np.stack([rng.integers(maze.NUM_ACTIONS, size=len(seeds)) for _ in range(length)])
        for _ in range(repeats)
    ]
    totals = []
    for draws in actions:
        for i, seed in enumerate(seeds):
            env = maze.MazeEnvironment(episode_length=length, seed=seed)
            env.reset()
            totals.append(sum(float(env.step(int(a)).reward) for a in draws[:, i]))
    got = maze_training.random_policy_reward(
        seeds, episode_length=length, repeats=repeats, policy_seed=5
    )
    np.testing.assert_allclose(got, np.mean(totals), rtol=1e-6)
    assert got != maze_training.random_policy_reward(
        seeds, episode_length=length, repeats=repeats, policy_seed=6
    )
    with pytest.raises(
        ValueError, match="`repeats` must be a positive integer; received repeats=0"
    ):
        maze_training.random_policy_reward(seeds, repeats=0)


def test_greedy_evaluation_is_deterministic():
    agent, _ = maze_training.build_agent(
        "lstm",
        1e-4,
        seed=0,
        episode_length=12,
        units=8,
        train_step_counter=tf.Variable(0, dtype=tf.int64),
    )
    seeds = maze_training.held_out_maze_seeds(0, 5)
    evaluate = maze_training.make_evaluation(agent, seeds, episode_length=12)
    first, second = evaluate(), evaluate()
    assert set(first) == set(EVAL_COLUMNS)
    assert first["eval_greedy_reward"] == second["eval_greedy_reward"]  # same weights, mazes
    # Another evaluation function on the same mazes agrees too (a resumed run builds one).
    again = maze_training.make_evaluation(agent, seeds, episode_length=12)()
    assert again["eval_greedy_reward"] == first["eval_greedy_reward"]
    for result in (first, second):  # 12 steps: at most 12 wall bumps, a few goals
        for value in result.values():
            assert -1.2 - 1e-6 <= value <= 120


def test_train_writes_one_row_per_evaluation(tmp_path):
    """MNM-g, a two-layer memory, normalised writes and every loss option of the agent."""
    model_dir = str(tmp_path / "mnm_g")
    outcome = maze_training.train(
        model_dir,
        model="mnm_g",
        num_episodes=6,
        batch_size=2,
        eval_interval=4,
        eval_mazes=3,
        seed=1,
        memory_layers=2,
        normalize_writes=True,
        entropy_weight=0.01,
        gradient_clipping=1.0,
        gae_lambda=0.95,
        verbose=0,
        **TINY,
    )
    history = outcome["history"]
    # A budget that is not whole intervals ends with a shorter one.
    assert [(row["epoch"], row["step"]) for row in history] == [(0, 4), (1, 6)]
    for row in history:
        assert row["epoch_seconds"] > 0 and row["episodes_per_second"] > 0
        for key in ("train_reward", "loss", "learning_rate", *EVAL_COLUMNS):
            assert np.isfinite(row[key])
    assert history == maze_training.read_history(model_dir)
    rewards = maze_training.read_rewards(model_dir)
    assert len(rewards) == 6
    np.testing.assert_allclose(history[1]["train_reward"], rewards[4:].mean(), atol=0.06)
    results = outcome["results"]
    assert {key: results[key] for key in EVAL_COLUMNS} == {
        key: history[-1][key] for key in EVAL_COLUMNS
    }
    assert results["train_reward"] == history[-1]["train_reward"]
    assert results["episodes"] == 6 and outcome["start_episodes"] == 0
    assert results["random_policy_reward"] == maze_training.random_policy_reward(
        maze_training.held_out_maze_seeds(1, 3), episode_length=12
    )
    state = _reload_and_act(model_dir)
    # The saved policy's state: h, c, the last read, one flat matrix per memory layer and
    # the meta-loss pair; the last layer maps to the value size (4 x 4 here).
    flat = tf.nest.flatten(state)
    assert len(flat) == 4 + 2
    assert [int(t.shape[-1]) for t in flat[3:-1]] == [16] * 2


def test_a_checkpoint_without_a_variable_of_the_agent_is_refused(tmp_path, monkeypatch):
    """Resuming restores every variable of the agent or fails: a checkpoint matched only in
    part would train on from fresh weights (as if a cell's variables had moved)."""
    model_dir = str(tmp_path / "lstm")
    options = dict(model="lstm", batch_size=2, eval_interval=2, eval_mazes=3, verbose=0, **TINY)
    maze_training.train(model_dir, num_episodes=2, **options)

    class WithAnotherWeight(tf.keras.layers.LSTMCell):
        def build(self, input_shape):
            super().build(input_shape)
            self.another = self.add_weight(name="another", shape=(1,), trainable=False)

    monkeypatch.setattr(tf.keras.layers, "LSTMCell", WithAnotherWeight)
    with pytest.raises(AssertionError):
        maze_training.train(model_dir, num_episodes=4, **options)
    monkeypatch.undo()
    assert maze_training.train(model_dir, num_episodes=4, **options)["start_episodes"] == 2


def test_a_killed_run_resumes_and_keeps_what_was_checkpointed(tmp_path):
    model_dir = str(tmp_path / "lstm")
    options = dict(model="lstm", batch_size=2, eval_interval=2, eval_mazes=3, verbose=0, **TINY)
    first = maze_training.train(model_dir, num_episodes=4, **options)
    assert maze_training.completed_episodes(model_dir) == 4
    kept_rewards, kept_rows = maze_training.read_rewards(model_dir), first["history"]
    # The default learning rate: 1e-4 per episode of an update (2 here).
    assert [row["learning_rate"] for row in kept_rows] == pytest.approx([2e-4, 2e-4])
    # A run killed after writing an episode and a row, before their checkpoint.
    with open(os.path.join(model_dir, "rewards.csv"), "a") as f:
        f.write("5,99.0\n")
    with open(os.path.join(model_dir, "history.jsonl"), "a") as f:
        f.write(json.dumps({**kept_rows[-1], "epoch": 2, "step": 6, "train_reward": 99.0}) + "\n")
    # Resumed at another learning rate: the checkpoint restores the optimizer's (1e-4), the
    # run must train at the requested one.
    second = maze_training.train(model_dir, num_episodes=8, learning_rate=3e-4, **options)
    history = second["history"]
    assert second["start_episodes"] == 4
    assert [(row["epoch"], row["step"]) for row in history] == [(0, 2), (1, 4), (2, 6), (3, 8)]
    assert history[:2] == kept_rows and history[2]["train_reward"] != 99.0
    assert [row["learning_rate"] for row in history[2:]] == pytest.approx([3e-4, 3e-4])
    assert history == maze_training.read_history(model_dir)
    rewards = maze_training.read_rewards(model_dir)
    assert len(rewards) == 8 and rewards[4] != 99.0
    np.testing.assert_array_equal(rewards[:4], kept_rewards)
    _reload_and_act(model_dir)

    # The budget reached: the run is evaluated (restored weights, the same held-out mazes:
    # the same greedy reward as its last row), not trained.
    third = maze_training.train(model_dir, num_episodes=8, **options)
    assert third["history"] == history and third["start_episodes"] == 8
    assert third["results"]["eval_greedy_reward"] == history[-1]["eval_greedy_reward"]
    with pytest.raises(ValueError, match="below the 8 episodes"):
        maze_training.check_budget(model_dir, 6)
    with pytest.raises(ValueError, match="below the 8 episodes"):
        maze_training.train(model_dir, num_episodes=6, **options)


@pytest.mark.parametrize(
    "name, value",
    [
        ("model", "gru"),
        ("num_episodes", 0),
        ("num_episodes", 17),  # not whole updates of 16
        ("batch_size", 0),
        ("eval_interval", 24),  # not whole updates of 16
        ("eval_mazes", 0),
        ("units", 0),
        ("memory_layers", 1.5),
        ("episode_length", 0),
        ("size", 8),
        ("seed", -1),
        ("learning_rate", 0.0),
        ("entropy_weight", -0.1),
        ("gradient_clipping", 0.0),
        ("gae_lambda", 2.0),
        ("normalize_time", 1),
    ],
)
def test_check_options_names_the_argument(tmp_path, name, value):
    with pytest.raises(ValueError, match=f"`{name}`.*{value!r}"):
        maze_training.check_options(**{name: value})
    with pytest.raises(ValueError, match=f"`{name}`"):  # before anything is built or written
        maze_training.train(str(tmp_path / "run"), **{name: value})
    assert not os.path.exists(tmp_path / "run")


def test_a_non_finite_weight_stops_the_loop_and_keeps_the_last_finite_checkpoint(
    tmp_path, monkeypatch
):
    from examples.training import NonFiniteTrainingError

    model_dir = str(tmp_path)
    make_iteration = diverge_after(monkeypatch, 3)  # the third update diverges
    options = dict(model="lstm", batch_size=2, eval_interval=4, eval_mazes=2, verbose=0, **TINY)
    with pytest.raises(NonFiniteTrainingError, match="optimizer step 3") as error:
        maze_training.train(model_dir, num_episodes=8, **options)
    assert error.value.quantity.startswith("weight ")
    # The first interval (updates 1-2, episodes 0-3) was checkpointed, the third update not.
    assert maze_training.completed_episodes(model_dir) == 4
    assert len(maze_training.read_rewards(model_dir)) == 4
    assert [row["step"] for row in maze_training.read_history(model_dir)] == [4]
    # A rerun resumes from the finite checkpoint (here: evaluates it).
    monkeypatch.setattr(maze_training, "make_iteration", make_iteration)
    outcome = maze_training.train(model_dir, num_episodes=4, **options)
    assert outcome["start_episodes"] == 4
    assert all(np.isfinite(outcome["results"][key]) for key in EVAL_COLUMNS)
