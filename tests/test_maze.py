"""The grid maze: specs, layout, rewards and teleports, batched == single, random policy.

Runs in the suite's single pytest process; ``tests/conftest.py`` sets
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported (TF-Agents needs tf-keras).
"""

import collections

import numpy as np
import pytest
from tf_agents.environments import utils as env_utils

from tf_agents_ext import maze


def _shortest_path(layout, start, goal):
    """Actions of a shortest path from ``start`` to ``goal`` (breadth-first search)."""
    previous = {tuple(start): None}
    queue = collections.deque([tuple(start)])
    while queue:
        cell = queue.popleft()
        if cell == tuple(goal):
            break
        for action, (dr, dc) in enumerate(maze.MOVES):
            nxt = (cell[0] + int(dr), cell[1] + int(dc))
            if layout[nxt] == 0 and nxt not in previous:
                previous[nxt] = (cell, action)
                queue.append(nxt)
    actions, cell = [], tuple(goal)
    while previous[cell] is not None:
        cell, action = previous[cell]
        actions.append(action)
    return actions[::-1]


def test_layout_has_41_free_cells_and_8_pillars():
    layout = maze.maze_layout(9)
    assert layout.shape == (9, 9)
    assert int((layout == 0).sum()) == 41
    assert int(layout[1:8, 1:8].sum()) == 8  # pillars
    assert layout[4, 4] == 0 and layout[2, 2] == 1 and layout[2, 4] == 1 and layout[3, 3] == 0
    assert np.all(layout[0] == 1) and np.all(layout[:, -1] == 1)
    assert len(maze.free_cells(layout)) == 41


@pytest.mark.parametrize("options", [{}, {"normalize_time": True, "previous_action_one_hot": True}])
def test_validate_py_environment(options):
    env = maze.MazeEnvironment(episode_length=20, seed=0, **options)
    env_utils.validate_py_environment(env, episodes=3)


def test_validate_batched_py_environment():
    env = maze.BatchedMazeEnvironment(4, episode_length=20, seed=0)
    env_utils.validate_py_environment(env, episodes=3)


def test_first_observation_and_step_types():
    env = maze.MazeEnvironment(episode_length=3, seed=1)
    first = env.reset()
    assert first.is_first() and first.reward == 0.0
    expected = np.zeros(17, np.float32)
    # The centre's neighbours all have an odd coordinate: no wall in sight.
    expected[16] = 1.0
    np.testing.assert_array_equal(first.observation, expected)
    types = [env.step(np.int32(2)).step_type for _ in range(3)]
    assert [int(t) for t in types] == [1, 1, 2]  # MID, MID, LAST
    assert env.current_time_step().discount == 0.0
    assert env.step(np.int32(0)).is_first()  # auto-reset after LAST


def test_wall_bump_and_observation_fields():
    env = maze.MazeEnvironment(seed=3)
    env.reset()
    if env.goal in ((3, 4), (4, 4)):
        pytest.skip("goal on the scripted path")  # not the case for seed 3
    step = env.step(np.int32(0))  # centre (4, 4) -> (3, 4)
    assert env.position == (3, 4) and step.reward == np.float32(0.0)
    step = env.step(np.int32(0))  # (2, 4) is a pillar: -0.1, stays
    assert env.position == (3, 4)
    assert step.reward == np.float32(-0.1)
    assert step.observation[14] == np.float32(-0.1)  # previous reward
    assert step.observation[15] == 2.0  # raw step count
    assert step.observation[4] == 0.0  # centre of the neighbourhood
    assert step.observation[1] == 1.0  # the pillar above


def test_goal_reward_and_teleport_on_a_scripted_path():
    env = maze.MazeEnvironment(seed=5)
    env.reset()
    free = {tuple(cell) for cell in maze.free_cells(env.layout)}
    for _ in range(3):  # reach the goal three times, from wherever the agent is put
        actions = _shortest_path(env.layout, env.position, env.goal)
        if not actions:  # teleported onto the goal: step off and back
            continue
        for action in actions[:-1]:
            assert env.step(np.int32(action)).reward == 0.0
        step = env.step(np.int32(actions[-1]))
        assert step.reward == np.float32(10.0)
        assert step.observation[14] == np.float32(10.0)
        assert env.position in free


def test_goal_reached_while_bumping_gives_9_9():
    env = maze.MazeEnvironment(seed=0)
    env.reset()
    env._goal = (3, 4)  # teleported onto the goal, then bumping into a wall
    env._position = (3, 4)
    step = env.step(np.int32(0))  # (2, 4) is a pillar
    assert step.reward == np.float32(-0.1 + 10.0)


def test_options_change_only_their_fields():
    plain = maze.MazeEnvironment(seed=2)
    options = maze.MazeEnvironment(seed=2, normalize_time=True, previous_action_one_hot=True)
    plain.reset(), options.reset()
    for action in [3, 1, 1, 2]:
        a = plain.step(np.int32(action)).observation
        b = options.step(np.int32(action)).observation
        np.testing.assert_array_equal(
            np.delete(a, [9, 10, 11, 12, 15]), np.delete(b, [9, 10, 11, 12, 15])
        )
        assert np.all(a[9:14] == 0)
        np.testing.assert_array_equal(b[9:13], np.eye(4)[action])
        assert b[15] == np.float32(a[15] / 250)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="size"):
        maze.MazeEnvironment(size=8)
    with pytest.raises(ValueError, match="episode_length"):
        maze.MazeEnvironment(episode_length=0)
    with pytest.raises(ValueError, match="seed"):
        maze.BatchedMazeEnvironment(3, seed=[1, 2])
    with pytest.raises(ValueError, match="batch_size"):
        maze.BatchedMazeEnvironment(0)


@pytest.mark.parametrize("options", [{}, {"normalize_time": True, "previous_action_one_hot": True}])
def test_batched_equals_single_for_same_seeds_and_actions(options):
    seeds, length = [11, 7, 2024, 3], 40
    batched = maze.BatchedMazeEnvironment(len(seeds), episode_length=length, seed=seeds, **options)
    singles = [maze.MazeEnvironment(episode_length=length, seed=s, **options) for s in seeds]
    actions = np.random.default_rng(0).integers(0, 4, size=(3 * length + 3, len(seeds)))
    steps = [batched.reset()], [[env.reset() for env in singles]]
    for row in actions:  # three episodes and the start of a fourth (auto-reset)
        steps[0].append(batched.step(row.astype(np.int32)))
        steps[1].append([env.step(np.int32(a)) for env, a in zip(singles, row)])
    hits = 0
    for b, ss in zip(*steps):
        for i, s in enumerate(ss):
            assert b.step_type[i] == s.step_type
            assert b.reward[i] == s.reward and b.discount[i] == s.discount
            np.testing.assert_array_equal(b.observation[i], s.observation)
        hits += int(np.sum(b.reward >= 9.0))
    assert hits > 0  # the comparison covered goal hits and teleports


def _goals_and_rewards(env, actions):
    """Goals after each reset and every reward of ``actions`` (rows: episodes of steps)."""
    goals, rewards = [], []
    for episode in actions:
        env.reset()
        goals.append(np.array(env.goals if env.batched else env.goal))
        rewards.append([env.step(a).reward for a in episode])
    return np.array(goals), np.array(rewards)


@pytest.mark.parametrize("batched", [False, True])
def test_seed_replays_the_episodes_of_a_new_environment(batched):
    """`seed` restarts the draws: the same goals and teleports as a fresh environment."""

    def make(seed):
        if batched:
            return maze.BatchedMazeEnvironment(3, episode_length=30, seed=seed)
        return maze.MazeEnvironment(episode_length=30, seed=seed)

    shape = (3, 30, 3) if batched else (3, 30)  # episodes, steps (, mazes)
    actions = np.random.default_rng(0).integers(0, 4, size=shape).astype(np.int32)
    env = make(5)
    first = _goals_and_rewards(env, actions)
    env.seed(5)
    again = _goals_and_rewards(env, actions)
    fresh = _goals_and_rewards(make(5), actions)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first, fresh):
        np.testing.assert_array_equal(a, b)
    env.seed(6)
    assert not np.array_equal(_goals_and_rewards(env, actions)[0], first[0])
    with pytest.raises(ValueError, match="seed"):
        env.seed(1.5 if not batched else [1, 2])


def test_random_policy_collects_about_9_3():
    """1,000 episodes of a uniformly random policy (reference: about +9.3)."""
    env = maze.BatchedMazeEnvironment(1000, seed=0)
    rng = np.random.default_rng(0)
    env.reset()
    total = np.zeros(1000)
    for _ in range(250):
        total += env.step(rng.integers(0, 4, size=1000).astype(np.int32)).reward
    assert env.current_time_step().is_last().all()
    assert abs(total.mean() - 9.3) < 1.0, total.mean()
