"""The grid maze of Miconi, Clune & Stanley (ICML 2018) as TF-Agents environments.

The task of the MNM paper's section 4.3 (figure 6), identical by default to the public
reference code (uber-research/differentiable-plasticity, ``maze/maze.py``, default
arguments):

* **Layout** (fixed): an ``size x size`` grid (odd ``size``, 9 by default) with a wall
  border, a wall ("pillar") at every interior cell whose row and column are both even, and
  the centre cleared again; a 9 x 9 maze has 41 free cells.
* **Episode**: exactly ``episode_length`` (250) actions, no early end. The goal is drawn
  uniformly from the free cells at the start (it is invisible) and the agent starts at the
  centre. Actions 0 up (row - 1), 1 down (row + 1), 2 left (column - 1), 3 right
  (column + 1). Moving into a wall gives -0.1 and the agent stays. After every action, if
  the agent stands on the goal it gets +10 and is moved to a uniformly random free cell
  (possibly the goal itself; the goal is only checked again after the next action).
* **Observation**, 17 float32: ``[0:9]`` the 3 x 3 neighbourhood, row-major, 1.0 = wall;
  ``[9:14]`` zeros; ``[14]`` the previous step's reward (0 at the first step); ``[15]`` the
  step number, raw (0, 1, ..., the number of actions taken so far); ``[16]`` 1.0.

Two named options change the observation (both off by default, the faithful mode):
``normalize_time`` puts ``step / episode_length`` in ``[15]``, and
``previous_action_one_hot`` puts a one-hot of the previous action in ``[9:13]`` (zeros at
the first step).

TF-Agents conventions: `reset` returns a FIRST time step (reward 0); each of the
``episode_length`` calls of `step` returns the reward of that action, MID with discount 1
and, for the last action, LAST with discount 0; the next `step` starts a new episode.

`MazeEnvironment` is one maze written step by step like the reference; `BatchedMazeEnvironment`
runs ``batch_size`` mazes at once in vectorised NumPy (``batched=True``). Given the same
seeds and actions, the two produce identical trajectories (``tests/test_maze.py``).
"""

from __future__ import annotations

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from mnm_keras._utils import derive_seed

OBSERVATION_SIZE = 17
NUM_ACTIONS = 4
WALL_PENALTY = -0.1
GOAL_REWARD = 10.0
# Row and column change of actions 0 up, 1 down, 2 left, 3 right.
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)
# Observation layout.
NEIGHBOURHOOD = slice(0, 9)
PREVIOUS_ACTION = slice(9, 13)
PREVIOUS_REWARD = 14
TIME = 15
BIAS = 16

__all__ = [
    "BatchedMazeEnvironment",
    "MazeEnvironment",
    "free_cells",
    "maze_layout",
]


def maze_layout(size: int = 9) -> np.ndarray:
    """The fixed wall layout: ``[size, size]`` int array, 1 = wall, 0 = free.

    Walls everywhere, the interior (rows and columns 1..size-2) cleared, a pillar at every
    interior cell with both coordinates even, then the centre cleared again.
    """
    _check_size(size)
    layout = np.ones((size, size), dtype=np.int64)
    layout[1 : size - 1, 1 : size - 1] = 0
    for row in range(1, size - 1):
        for column in range(1, size - 1):
            if row % 2 == 0 and column % 2 == 0:
                layout[row, column] = 1
    layout[size // 2, size // 2] = 0
    return layout


def free_cells(layout: np.ndarray) -> np.ndarray:
    """The free cells of ``layout`` in row-major order: ``[num_free, 2]`` (row, column)."""
    return np.argwhere(layout == 0)


def _check_size(size):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3:
        raise ValueError(f"`size` must be an odd integer >= 3; received size={size!r}.")
    if size % 2 == 0:
        raise ValueError(f"`size` must be odd (the agent starts at the centre); received {size}.")


def _check_episode_length(episode_length):
    if (
        isinstance(episode_length, bool)
        or not isinstance(episode_length, (int, np.integer))
        or episode_length < 1
    ):
        raise ValueError(
            f"`episode_length` must be a positive integer; received episode_length={episode_length!r}."
        )


def _check_seed(name, seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"`{name}` must be an integer or None; received {name}={seed!r}.")


def _batch_seeds(seed, batch_size):
    """The ``batch_size`` per-maze seeds of `BatchedMazeEnvironment`'s ``seed`` argument.

    An integer gives maze ``i`` the sub-seed ``derive_seed(seed, f"maze_{i}")``, so that the
    mazes of two batch seeds are all different (``seed + i`` would share B - 1 of them)."""
    if seed is None or isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed is None:
            return [None] * batch_size
        return [derive_seed(int(seed), f"maze_{i}") for i in range(batch_size)]
    seeds = list(seed)
    if len(seeds) != batch_size:
        raise ValueError(
            f"`seed` must be an integer, None or a sequence of batch_size={batch_size} "
            f"integers; received {len(seeds)} seeds."
        )
    for index, value in enumerate(seeds):
        _check_seed(f"seed[{index}]", value)
    return seeds


def _specs():
    observation_spec = array_spec.ArraySpec((OBSERVATION_SIZE,), np.float32, name="observation")
    action_spec = array_spec.BoundedArraySpec(
        (), np.int32, minimum=0, maximum=NUM_ACTIONS - 1, name="action"
    )
    return observation_spec, action_spec


class MazeEnvironment(py_environment.PyEnvironment):
    """One grid maze (see the module docstring for the task), a TF-Agents `PyEnvironment`.

    Args:
      size: odd side of the square maze (default 9, the paper's).
      episode_length: actions per episode (default 250).
      normalize_time: put ``step / episode_length`` instead of the raw step number in
        observation ``[15]`` (default False: the reference's raw count).
      previous_action_one_hot: put a one-hot of the previous action in observation
        ``[9:13]`` (default False: zeros, as in the reference).
      seed: seed of the goal and teleport draws (a `numpy.random.Generator`); None: not
        seeded.

    Specs: observation ``float32 [17]``; action ``int32 []`` in 0..3; reward ``float32 []``.

    Example:

    ```python
    env = MazeEnvironment(seed=0)
    time_step = env.reset()          # FIRST, observation [17]
    time_step = env.step(np.int32(0))  # reward of moving up
    ```
    """

    def __init__(
        self,
        size=9,
        episode_length=250,
        normalize_time=False,
        previous_action_one_hot=False,
        seed=None,
    ):
        _check_size(size)
        _check_episode_length(episode_length)
        _check_seed("seed", seed)
        super().__init__(handle_auto_reset=True)
        self.size = int(size)
        self.episode_length = int(episode_length)
        self.normalize_time = bool(normalize_time)
        self.previous_action_one_hot = bool(previous_action_one_hot)
        self.layout = maze_layout(self.size)
        self.free = free_cells(self.layout)
        self._rng = np.random.default_rng(seed)
        self._observation_spec, self._action_spec = _specs()
        self._position = None
        self._goal = None
        self._step_count = 0

    def observation_spec(self):
        return self._observation_spec

    def action_spec(self):
        return self._action_spec

    def seed(self, seed):
        """Restarts the goal and teleport draws from ``seed`` (as the constructor's ``seed``).

        The next episode (after `reset`) is then the one a new ``MazeEnvironment(seed=seed)``
        would play first.
        """
        _check_seed("seed", seed)
        self._rng = np.random.default_rng(seed)

    @property
    def position(self):
        """The agent's cell ``(row, column)``."""
        return self._position

    @property
    def goal(self):
        """The goal cell ``(row, column)`` (hidden from the agent)."""
        return self._goal

    def _random_free_cell(self):
        return tuple(int(x) for x in self.free[self._rng.integers(len(self.free))])

    def _observation(self, previous_reward, previous_action):
        row, column = self._position
        observation = np.zeros(OBSERVATION_SIZE, np.float32)
        observation[NEIGHBOURHOOD] = self.layout[row - 1 : row + 2, column - 1 : column + 2].ravel()
        if self.previous_action_one_hot and previous_action is not None:
            observation[PREVIOUS_ACTION.start + previous_action] = 1.0
        observation[PREVIOUS_REWARD] = previous_reward
        step = self._step_count
        observation[TIME] = step / self.episode_length if self.normalize_time else step
        observation[BIAS] = 1.0
        return observation

    def _reset(self):
        self._goal = self._random_free_cell()
        self._position = (self.size // 2, self.size // 2)
        self._step_count = 0
        return ts.restart(self._observation(0.0, None))

    def _step(self, action):
        action = int(action)
        if not 0 <= action < NUM_ACTIONS:
            raise ValueError(f"`action` must be in 0..{NUM_ACTIONS - 1}; received {action}.")
        reward = 0.0
        row = self._position[0] + int(MOVES[action, 0])
        column = self._position[1] + int(MOVES[action, 1])
        if self.layout[row, column] == 1:
            reward += WALL_PENALTY
        else:
            self._position = (row, column)
        if self._position == self._goal:
            reward += GOAL_REWARD
            self._position = self._random_free_cell()
        self._step_count += 1
        observation = self._observation(reward, action)
        reward = np.float32(reward)
        if self._step_count >= self.episode_length:
            return ts.termination(observation, reward)
        return ts.transition(observation, reward, discount=np.float32(1.0))


class BatchedMazeEnvironment(py_environment.PyEnvironment):
    """``batch_size`` independent mazes stepped together in vectorised NumPy (``batched=True``).

    Maze ``i`` draws its goals and teleports from its own `numpy.random.Generator` seeded with
    ``seeds[i]``, in the same order as `MazeEnvironment`, so maze ``i`` follows exactly the
    trajectory of ``MazeEnvironment(seed=seeds[i])`` given the same actions. Every episode
    has the same fixed length, so all mazes start and end their episodes together.

    Args:
      batch_size: number of mazes B.
      size, episode_length, normalize_time, previous_action_one_hot: as in
        `MazeEnvironment`.
      seed: an integer (maze ``i`` uses its sub-seed ``mnm_keras._utils.derive_seed(seed,
        f"maze_{i}")``), a sequence of ``batch_size``
        integers, or None (not seeded).

    Time steps have outer shape ``[B]``: observation ``[B, 17]``, reward ``[B]``; `step`
    takes actions ``int32 [B]``.
    """

    def __init__(
        self,
        batch_size,
        size=9,
        episode_length=250,
        normalize_time=False,
        previous_action_one_hot=False,
        seed=None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise ValueError(f"`batch_size` must be a positive integer; received {batch_size!r}.")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer; received {batch_size!r}.")
        _check_size(size)
        _check_episode_length(episode_length)
        seeds = _batch_seeds(seed, batch_size)
        super().__init__(handle_auto_reset=True)
        self._batch_size = int(batch_size)
        self.size = int(size)
        self.episode_length = int(episode_length)
        self.normalize_time = bool(normalize_time)
        self.previous_action_one_hot = bool(previous_action_one_hot)
        self.layout = maze_layout(self.size)
        self.free = free_cells(self.layout)
        self._rngs = [np.random.default_rng(s) for s in seeds]
        self._observation_spec, self._action_spec = _specs()
        offsets = np.array([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)], np.int64)
        self._offset_rows, self._offset_columns = offsets[:, 0], offsets[:, 1]
        self._rows = self._columns = None
        self._goal_rows = self._goal_columns = None
        self._step_count = 0

    @property
    def batched(self):
        return True

    @property
    def batch_size(self):
        return self._batch_size

    def observation_spec(self):
        return self._observation_spec

    def action_spec(self):
        return self._action_spec

    def seed(self, seed):
        """Restarts every maze's goal and teleport draws from ``seed`` (as the constructor's).

        The next episodes (after `reset`) are then the ones a new environment with this
        ``seed`` would play first: e.g. the same held-out mazes for every evaluation.
        """
        self._rngs = [np.random.default_rng(s) for s in _batch_seeds(seed, self._batch_size)]

    @property
    def positions(self):
        """The agents' cells, ``[B, 2]`` (row, column)."""
        return np.stack([self._rows, self._columns], axis=-1)

    @property
    def goals(self):
        """The goal cells, ``[B, 2]`` (row, column)."""
        return np.stack([self._goal_rows, self._goal_columns], axis=-1)

    def _draw(self, index):
        return self.free[self._rngs[index].integers(len(self.free))]

    def _observation(self, previous_reward, previous_action):
        batch = self._batch_size
        observation = np.zeros((batch, OBSERVATION_SIZE), np.float32)
        rows = self._rows[:, None] + self._offset_rows[None, :]
        columns = self._columns[:, None] + self._offset_columns[None, :]
        observation[:, NEIGHBOURHOOD] = self.layout[rows, columns]
        if self.previous_action_one_hot and previous_action is not None:
            observation[np.arange(batch), PREVIOUS_ACTION.start + previous_action] = 1.0
        observation[:, PREVIOUS_REWARD] = previous_reward
        step = self._step_count
        observation[:, TIME] = step / self.episode_length if self.normalize_time else step
        observation[:, BIAS] = 1.0
        return observation

    def _reset(self):
        goals = np.stack([self._draw(i) for i in range(self._batch_size)])
        self._goal_rows, self._goal_columns = goals[:, 0].copy(), goals[:, 1].copy()
        centre = self.size // 2
        self._rows = np.full(self._batch_size, centre, np.int64)
        self._columns = np.full(self._batch_size, centre, np.int64)
        self._step_count = 0
        return ts.restart(
            self._observation(np.zeros(self._batch_size, np.float32), None),
            batch_size=self._batch_size,
        )

    def _step(self, action):
        action = np.asarray(action).astype(np.int64).reshape(-1)
        if action.shape != (self._batch_size,):
            raise ValueError(
                f"`action` must hold one action per maze, shape ({self._batch_size},); "
                f"received shape {np.shape(action)}."
            )
        if np.any((action < 0) | (action >= NUM_ACTIONS)):
            raise ValueError(f"`action` must be in 0..{NUM_ACTIONS - 1}; received {action}.")
        rows = self._rows + MOVES[action, 0]
        columns = self._columns + MOVES[action, 1]
        hit = self.layout[rows, columns] == 1
        reward = np.where(hit, WALL_PENALTY, 0.0)
        self._rows = np.where(hit, self._rows, rows)
        self._columns = np.where(hit, self._columns, columns)
        on_goal = (self._rows == self._goal_rows) & (self._columns == self._goal_columns)
        reward = reward + np.where(on_goal, GOAL_REWARD, 0.0)
        for index in np.flatnonzero(on_goal):
            self._rows[index], self._columns[index] = self._draw(index)
        self._step_count += 1
        observation = self._observation(reward, action)
        reward = reward.astype(np.float32)
        if self._step_count >= self.episode_length:
            return ts.termination(observation, reward, outer_dims=[self._batch_size])
        return ts.transition(
            observation,
            reward,
            discount=np.ones(self._batch_size, np.float32),
            outer_dims=[self._batch_size],
        )
