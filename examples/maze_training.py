"""Training A2C agents on the grid maze: rollouts, the agent, held-out evaluation, a resumable loop.

The pieces of `train`, each usable alone (``benchmarks/maze_throughput.py`` times
`make_iteration`):

* `build_agent`: an `tf_agents_ext.a2c_agent.A2CAgent` on a new actor-critic network
  (`tf_agents_ext.networks.actor_critic_network`) with the reference's Adam (epsilon 1e-4);
* `make_rollout`: one whole episode in every maze of a batched environment, as a function to
  compile; `make_iteration`: a rollout with the sampling policy, then one update, as one
  `tf.function`;
* `make_evaluation`: the mean reward per episode of the greedy (argmax action) and of the
  sampling policy on a fixed set of held-out mazes (`held_out_maze_seeds`), the same mazes at
  every evaluation of a run and in every invocation of a resumed one;
* `train`: the loop. It trains in intervals of ``eval_interval`` episodes; after each it
  evaluates and appends one row to the history (``model_dir/history.jsonl``), then saves a
  checkpoint. A run killed at any point and started again with the same arguments resumes
  from its last checkpoint: the episodes and rows written after it are dropped and trained
  again, the earlier ones are kept. A non-finite loss or weight after an update ends it with
  `examples.training.NonFiniteTrainingError` (naming the update and the quantity) before
  the interval is written or checkpointed, so the last checkpoint stays finite.

What `train` writes in ``model_dir``:

* ``checkpoints/`` (`tf_agents.utils.common.Checkpointer`: agent, optimizer, episodes done);
* ``rewards.csv``: ``episode, reward`` of every training episode (sampling policy);
* ``history.jsonl``: one JSON row per interval with ``epoch`` (0, 1, ...), ``step``
  (episodes trained so far), ``epoch_seconds`` (the interval's wall time, evaluation
  included), ``train_reward`` (mean reward per episode of the interval's training episodes),
  ``eval_greedy_reward``, ``eval_sampling_reward``, ``loss``, ``episodes_per_second``
  (training only) and ``learning_rate``;
* ``policy/``: the trained sampling policy as a SavedModel (`PolicySaver`).

The training mazes come from ``seed`` and the episodes done (`training_maze_seeds`): the
environment's generators are not checkpointed, so a resumed run draws new goals from a seed
derived from where it resumes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time

import numpy as np
import tensorflow as tf
from tf_agents.environments import tf_py_environment
from tf_agents.policies import policy_saver
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.utils import common

from mnm_keras._utils import derive_seed
from mnm_keras.core import check_positive_int
from tf_agents_ext import a2c_agent, maze, networks

try:  # imported as examples.maze_training, or as maze_training by a script run as a file
    from examples.results import HISTORY_FILE, read_history
    from examples.training import check_finite
except ImportError:  # pragma: no cover
    from training import check_finite

    from results import HISTORY_FILE, read_history

__all__ = [
    "build_agent",
    "check_budget",
    "TrainOptions",
    "check_options",
    "completed_episodes",
    "held_out_maze_seeds",
    "make_evaluation",
    "make_iteration",
    "make_rollout",
    "random_policy_reward",
    "read_rewards",
    "train",
    "training_maze_seeds",
]

# The default learning rate per episode of an update: the reference's 1e-4 at one episode
# per update, scaled with the episodes per update (docs/tasks/maze.md, "Episodes per
# update": at 16 per update and 1e-4 neither agent left the random policy's reward in
# 20,000 episodes; at 1.6e-3 both did within 8,000).
LEARNING_RATE_PER_EPISODE = 1e-4


def default_learning_rate(batch_size):
    """``LEARNING_RATE_PER_EPISODE x batch_size``: the learning rate when none is given."""
    return LEARNING_RATE_PER_EPISODE * batch_size


# --------------------------------------------------------------------------- arguments
@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The options of `train` (every argument but ``model_dir`` and ``verbose``), checked.

    Raises a ``ValueError`` naming the option that makes no sense (before anything is
    built): positive sizes and budgets, a budget (``num_episodes``) and an evaluation
    interval that are whole numbers of updates of ``batch_size`` episodes, the model's
    name, the optimizer's and the loss's options, the maze's size; a ``TypeError`` for an
    unknown option.
    """

    model: str = "mnm_p"
    num_episodes: int = 2000
    batch_size: int = 16
    eval_interval: int = 400
    eval_mazes: int = 32
    learning_rate: float | None = None
    seed: int = 0
    units: int = 200
    memory_units: int = 100
    memory_layers: int = 3
    num_heads: int = 3
    normalize_writes: bool = True
    entropy_weight: float = 0.0
    gradient_clipping: float | None = None
    gae_lambda: float | None = None
    size: int = 9
    episode_length: int = 250
    normalize_time: bool = False

    def __post_init__(self):
        if self.model not in networks.CORES:
            raise ValueError(
                f"`model` must be one of {networks.CORES}; received model={self.model!r}."
            )
        for name, value in (
            ("num_episodes", self.num_episodes),
            ("batch_size", self.batch_size),
            ("eval_interval", self.eval_interval),
            ("eval_mazes", self.eval_mazes),
            ("units", self.units),
            ("memory_units", self.memory_units),
            ("memory_layers", self.memory_layers),
            ("num_heads", self.num_heads),
            ("episode_length", self.episode_length),
        ):
            check_positive_int(name, value)
        for name, value in (
            ("num_episodes", self.num_episodes),
            ("eval_interval", self.eval_interval),
        ):
            if value % self.batch_size:
                raise ValueError(
                    f"`{name}` must be a multiple of `batch_size` (every update trains on "
                    f"batch_size={self.batch_size} episodes); received {name}={value}."
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer; received seed={self.seed!r}.")
        if (
            isinstance(self.size, bool)
            or not isinstance(self.size, int)
            or self.size < 3
            or self.size % 2 == 0
        ):
            raise ValueError(f"`size` must be an odd integer >= 3; received size={self.size!r}.")
        if self.learning_rate is not None and (
            isinstance(self.learning_rate, bool)
            or not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0)
        ):
            raise ValueError(
                f"`learning_rate` must be positive; received learning_rate={self.learning_rate!r}."
            )
        if isinstance(self.entropy_weight, bool) or not (
            isinstance(self.entropy_weight, (int, float)) and self.entropy_weight >= 0
        ):
            raise ValueError(
                f"`entropy_weight` must be a non-negative number; received "
                f"entropy_weight={self.entropy_weight!r}."
            )
        if self.gradient_clipping is not None and not (
            isinstance(self.gradient_clipping, (int, float)) and self.gradient_clipping > 0
        ):
            raise ValueError(
                "`gradient_clipping` must be None or a positive global norm; received "
                f"gradient_clipping={self.gradient_clipping!r}."
            )
        if self.gae_lambda is not None and not (
            isinstance(self.gae_lambda, (int, float)) and 0 <= self.gae_lambda <= 1
        ):
            raise ValueError(
                "`gae_lambda` must be None or a number in [0, 1]; received "
                f"gae_lambda={self.gae_lambda!r}."
            )
        for name, value in (
            ("normalize_writes", self.normalize_writes),
            ("normalize_time", self.normalize_time),
        ):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")


def check_options(**options):
    """The `TrainOptions` of ``options`` (`train`'s keyword arguments); a ``ValueError``
    naming the option that makes no sense, a ``TypeError`` for an unknown one."""
    return TrainOptions(**options)


def _checkpoint_dir(model_dir):
    return os.path.join(model_dir, "checkpoints")


def completed_episodes(model_dir):
    """Episodes trained by the run in ``model_dir`` (its last checkpoint's); 0 if none."""
    path = tf.train.latest_checkpoint(_checkpoint_dir(model_dir))
    if path is None:
        return 0
    return int(tf.train.load_variable(path, "episodes/.ATTRIBUTES/VARIABLE_VALUE"))


def check_budget(model_dir, num_episodes):
    """The episodes already trained in ``model_dir``; raises if ``num_episodes`` is below them.

    A budget equal to them evaluates the run without training it.
    """
    check_positive_int("num_episodes", num_episodes)
    done = completed_episodes(model_dir)
    if done > num_episodes:
        raise ValueError(
            f"`num_episodes` ({num_episodes}) is below the {done} episodes that {model_dir!r} "
            f"has already trained; pass num_episodes >= {done} (equal evaluates the run "
            "without training)."
        )
    return done


# ------------------------------------------------------------------------------ mazes
def training_maze_seeds(seed, episodes_done, batch_size):
    """Seeds of the ``batch_size`` training mazes of a run resumed at ``episodes_done``.

    Maze ``i`` uses the sub-seed ``derive_seed(seed, f"training_maze_{episodes_done}_{i}")``
    (`mnm_keras._utils.derive_seed`), so no two runs, resumes or mazes share one.
    """
    return [derive_seed(seed, f"training_maze_{episodes_done}_{i}") for i in range(batch_size)]


def held_out_maze_seeds(seed, count):
    """Seeds of the ``count`` held-out evaluation mazes: ``derive_seed(seed,
    f"held_out_maze_{i}")`` (`mnm_keras._utils.derive_seed`).

    They depend on nothing else, so every evaluation of a run (resumes included) plays the
    same episodes; they are not the seeds of the training mazes (`training_maze_seeds`).
    """
    return [derive_seed(seed, f"held_out_maze_{i}") for i in range(count)]


# -------------------------------------------------------------------- agent and rollout
def make_rollout(tf_env, policy, episode_length):
    """A function running one episode in every environment of ``tf_env`` with ``policy``.

    Returns ``(experience, episode_rewards)``: a `Trajectory` ``[B, episode_length]`` (one
    whole episode per row, starting at FIRST) and the total rewards ``[B]``. Wrap it in a
    `tf.function` (`make_iteration`, `make_evaluation` do).
    """
    batch_size = tf_env.batch_size

    def rollout():
        time_step = tf_env.reset()
        policy_state = policy.get_initial_state(batch_size)
        fields = ("step_type", "observation", "action", "next_step_type", "reward", "discount")
        arrays = {
            name: tf.TensorArray(dtype, size=episode_length)
            for name, dtype in zip(
                fields, (tf.int32, tf.float32, tf.int32, tf.int32, tf.float32, tf.float32)
            )
        }
        for t in tf.range(episode_length):
            action_step = policy.action(time_step, policy_state)
            next_time_step = tf_env.step(action_step.action)
            values = (
                time_step.step_type,
                time_step.observation,
                action_step.action,
                next_time_step.step_type,
                next_time_step.reward,
                next_time_step.discount,
            )
            arrays = {name: arrays[name].write(t, v) for name, v in zip(fields, values)}
            time_step, policy_state = next_time_step, action_step.state
        batch_major = {name: common.transpose_batch_time(a.stack()) for name, a in arrays.items()}
        experience = trajectory.Trajectory(
            step_type=batch_major["step_type"],
            observation=batch_major["observation"],
            action=batch_major["action"],
            policy_info=(),
            next_step_type=batch_major["next_step_type"],
            reward=batch_major["reward"],
            discount=batch_major["discount"],
        )
        return experience, tf.reduce_sum(batch_major["reward"], axis=1)

    return rollout


def build_agent(
    model,
    learning_rate,
    seed,
    size=9,
    episode_length=250,
    units=200,
    memory_units=100,
    memory_layers=3,
    num_heads=3,
    normalize_writes=True,
    **agent_options,
):
    """``(agent, optimizer)``: an `A2CAgent` on a new actor-critic network for the maze.

    The network is `tf_agents_ext.networks.actor_critic_network` (``model`` in
    `networks.CORES`; for MNM ``d_k = d_v = memory_units``) seeded with ``seed``; the
    optimizer is Adam with the reference's epsilon 1e-4. ``agent_options`` go to
    `A2CAgent` (``entropy_weight``, ``gradient_clipping``, ``gae_lambda``,
    ``train_step_counter``), which checks them.
    """
    probe = maze.MazeEnvironment(size=size, episode_length=episode_length)
    observation_spec = tensor_spec.from_spec(probe.observation_spec())
    action_spec = tensor_spec.from_spec(probe.action_spec())
    sizes = {"units": units}
    if model != "lstm":
        sizes.update(
            memory_units=memory_units,
            memory_layers=memory_layers,
            num_heads=num_heads,
            key_size=memory_units,
            value_size=memory_units,
            normalize_writes=normalize_writes,
        )
    net = networks.actor_critic_network(model, observation_spec, action_spec, seed=seed, **sizes)
    optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate, epsilon=1e-4)
    agent = a2c_agent.A2CAgent(
        ts.time_step_spec(observation_spec), action_spec, net, optimizer, **agent_options
    )
    return agent, optimizer


def make_iteration(tf_env, agent, episode_length):
    """One compiled training iteration: a rollout of every environment, then one update.

    The rollout samples from ``agent.collect_policy``. Returns a `tf.function` returning
    ``(episode_rewards [B], loss)``.
    """
    rollout = make_rollout(tf_env, agent.collect_policy, episode_length)

    @tf.function
    def iteration():
        experience, episode_rewards = rollout()
        return episode_rewards, agent.train(experience).loss

    return iteration


def make_evaluation(agent, seeds, size=9, episode_length=250, normalize_time=False):
    """A function evaluating ``agent`` on the mazes of ``seeds`` (one episode each).

    Every call replays the same episodes' mazes (goals and teleports: the environment is
    re-seeded before each rollout), first with the greedy policy (``agent.policy``, the
    most probable action), then with the sampling policy (``agent.collect_policy``). The
    greedy result depends only on the weights. Nothing is trained.

    Returns:
      A function of no arguments returning ``{"eval_greedy_reward": ...,
      "eval_sampling_reward": ...}``, each the mean total reward per episode.
    """
    seeds = list(seeds)
    py_env = maze.BatchedMazeEnvironment(
        len(seeds), size=size, episode_length=episode_length, normalize_time=normalize_time
    )
    tf_env = tf_py_environment.TFPyEnvironment(py_env)
    rollouts = {
        "eval_greedy_reward": tf.function(make_rollout(tf_env, agent.policy, episode_length)),
        "eval_sampling_reward": tf.function(
            make_rollout(tf_env, agent.collect_policy, episode_length)
        ),
    }

    def evaluate():
        results = {}
        for name, rollout in rollouts.items():
            py_env.seed(seeds)
            _, episode_rewards = rollout()
            results[name] = float(np.mean(episode_rewards.numpy()))
        return results

    return evaluate


def random_policy_reward(seeds, size=9, episode_length=250, repeats=8, policy_seed=0):
    """The mean total reward per episode of the uniformly random policy on the mazes of
    ``seeds`` (one episode each, as `make_evaluation` plays them), over ``repeats`` draws of
    its actions (from ``numpy.random.default_rng(policy_seed)``): the reference an agent's
    held-out reward is read against (maze.md gives 9.3 for the reference's 9 x 9 maze with
    250 steps).

    Runs the vectorised environment alone (no agent, no TensorFlow): about 0.2 s per
    repeat for 64 mazes.
    """
    check_positive_int("repeats", repeats)
    seeds = list(seeds)
    env = maze.BatchedMazeEnvironment(len(seeds), size=size, episode_length=episode_length)
    rng = np.random.default_rng(policy_seed)
    totals = []
    for _ in range(repeats):
        env.seed(seeds)
        env.reset()
        total = np.zeros(len(seeds))
        for _ in range(episode_length):
            total += env.step(rng.integers(maze.NUM_ACTIONS, size=len(seeds))).reward
        totals.append(total)
    return float(np.mean(totals))


# ----------------------------------------------------------------------- run directory
def read_rewards(model_dir):
    """``model_dir/rewards.csv`` as a float array (episode order); empty if absent."""
    path = os.path.join(model_dir, "rewards.csv")
    if not os.path.exists(path):
        return np.zeros([0])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([float(row["reward"]) for row in rows])


def _replace(path, write):
    """Writes ``path`` through a temporary file, so that a kill leaves the old or the new."""
    with open(path + ".tmp", "w", newline="") as f:
        write(f)
    os.replace(path + ".tmp", path)


def _write_rewards(model_dir, rewards):
    def write(f):
        writer = csv.writer(f)
        writer.writerow(["episode", "reward"])
        writer.writerows((i + 1, f"{r:.1f}") for i, r in enumerate(rewards))

    _replace(os.path.join(model_dir, "rewards.csv"), write)


def _write_history(model_dir, history):
    def write(f):
        f.writelines(json.dumps(row) + "\n" for row in history)

    _replace(os.path.join(model_dir, HISTORY_FILE), write)


# ------------------------------------------------------------------------------- loop
def train(model_dir, verbose=1, **options):
    """Trains one A2C agent on the maze until ``num_episodes`` episodes are done; resumable.

    See the module docstring for what it writes and how a rerun resumes.

    Args:
      model_dir: the run's directory; resumed if it holds a checkpoint.
      model: ``"mnm_p"``, ``"mnm_g"`` or ``"lstm"``.
      num_episodes: total episodes over every invocation (a multiple of ``batch_size``); not
        below those already trained (equal: evaluate only).
      batch_size: episodes per update, run in parallel mazes.
      eval_interval: episodes between evaluations, history rows and checkpoints (a multiple
        of ``batch_size``); the last interval ends at ``num_episodes``.
      eval_mazes: held-out mazes of every evaluation (`held_out_maze_seeds`).
      learning_rate: Adam's (epsilon 1e-4, as in the reference); None (default):
        `default_learning_rate` (1e-4 per episode of an update). A resumed run trains at
        the one it is given, whatever the checkpoint's optimizer had.
      seed: seed of the network's initial weights, the action sampling and the mazes.
      units, memory_units, memory_layers, num_heads, normalize_writes: the network (the MNM
        memory is ``memory_layers`` layers of ``memory_units``, ``d_k = d_v =
        memory_units``; the paper's agent: 200, 100, 3, 3, no normalised writes).
      entropy_weight, gradient_clipping, gae_lambda: `A2CAgent`'s options (the reference:
        0, None, None).
      size, episode_length, normalize_time: the maze (`maze.MazeEnvironment`).
      verbose: 0 silent, 1 one progress line per interval.

    Returns:
      A dict: ``results`` (the final ``eval_greedy_reward``, ``eval_sampling_reward`` (a
      call with nothing left to train evaluates the restored weights), ``train_reward`` (of
      the last interval), ``train_reward_last_1000``, ``episodes``,
      ``episodes_per_second`` (over every invocation), ``random_policy_reward``),
      ``history`` (every row, earlier invocations' included), ``rewards`` (every training
      episode's reward) and ``start_episodes`` (the episodes done before this call).
    """
    o = check_options(**options)
    learning_rate = (
        default_learning_rate(o.batch_size) if o.learning_rate is None else o.learning_rate
    )
    check_budget(model_dir, o.num_episodes)
    os.makedirs(model_dir, exist_ok=True)

    tf.random.set_seed(o.seed)
    train_step = tf.Variable(0, dtype=tf.int64, name="train_step")
    episodes = tf.Variable(0, dtype=tf.int64, name="episodes")
    agent, optimizer = build_agent(
        o.model,
        learning_rate,
        o.seed,
        size=o.size,
        episode_length=o.episode_length,
        units=o.units,
        memory_units=o.memory_units,
        memory_layers=o.memory_layers,
        num_heads=o.num_heads,
        normalize_writes=o.normalize_writes,
        entropy_weight=o.entropy_weight,
        gradient_clipping=o.gradient_clipping,
        gae_lambda=o.gae_lambda,
        train_step_counter=train_step,
    )
    # The optimizer's slots exist before the restore, so that it restores them all (also
    # for a run that only evaluates).
    optimizer.build(agent.network.trainable_variables)
    checkpointer = common.Checkpointer(
        ckpt_dir=_checkpoint_dir(model_dir),
        max_to_keep=2,
        agent=agent,
        optimizer=optimizer,
        episodes=episodes,
    )
    status = checkpointer.initialize_or_restore()
    if checkpointer.checkpoint_exists:
        # Every variable of the agent and the optimizer from the checkpoint, or an error:
        # a checkpoint that matched only in part would train on from fresh weights.
        status.assert_existing_objects_matched()
    done = started_at = int(episodes.numpy())
    # The checkpoint restores the optimizer's learning rate with its other variables; a
    # resumed run trains at the one this call asks for (e.g. lower, to fine-tune).
    restored_rate = float(tf.keras.backend.get_value(optimizer.learning_rate))
    if done and not np.isclose(restored_rate, learning_rate, rtol=1e-6, atol=0.0):
        if verbose:
            print(
                f"maze: the checkpoint's optimizer had learning rate {restored_rate:g}; "
                f"training on at the requested {learning_rate:g}.",
                flush=True,
            )
        optimizer.learning_rate.assign(learning_rate)
    # Drop what was written after the last checkpoint (a killed run): trained again below.
    rewards = list(read_rewards(model_dir)[:done])
    if len(rewards) != done:
        raise RuntimeError(
            f"{model_dir}/rewards.csv holds {len(rewards)} episodes but the checkpoint {done}."
        )
    history = [row for row in read_history(model_dir) if row["step"] <= done]
    _write_rewards(model_dir, rewards)
    _write_history(model_dir, history)

    tf_env = tf_py_environment.TFPyEnvironment(
        maze.BatchedMazeEnvironment(
            o.batch_size,
            size=o.size,
            episode_length=o.episode_length,
            normalize_time=o.normalize_time,
            seed=training_maze_seeds(o.seed, done, o.batch_size),
        )
    )
    iteration = make_iteration(tf_env, agent, o.episode_length)
    evaluate = make_evaluation(
        agent, held_out_maze_seeds(o.seed, o.eval_mazes), o.size, o.episode_length, o.normalize_time
    )

    if verbose and done < o.num_episodes:
        print(
            f"maze {o.model}: {'resuming at' if done else 'starting'} episode {done}, target "
            f"{o.num_episodes}, {o.batch_size} per update, evaluation every {o.eval_interval} on "
            f"{o.eval_mazes} held-out mazes",
            flush=True,
        )
    while done < o.num_episodes:
        start = time.perf_counter()
        end = min((done // o.eval_interval + 1) * o.eval_interval, o.num_episodes)
        interval_rewards, losses = [], []
        while done < end:
            episode_rewards, loss = iteration()
            # A non-finite loss or weight ends the run before the interval's checkpoint.
            check_finite(
                int(train_step.numpy()),
                {"loss": float(loss)},
                agent.network.variables,
                where=f"maze (episode {done + o.batch_size})",
            )
            interval_rewards.extend(float(r) for r in episode_rewards.numpy())
            losses.append(float(loss))
            done += o.batch_size
        train_seconds = time.perf_counter() - start
        evaluation = evaluate()
        history.append(
            {
                "epoch": len(history),
                "step": done,
                "epoch_seconds": time.perf_counter() - start,
                "train_reward": float(np.mean(interval_rewards)),
                **evaluation,
                "loss": float(np.mean(losses)),
                "episodes_per_second": len(interval_rewards) / train_seconds,
                "learning_rate": float(tf.keras.backend.get_value(optimizer.learning_rate)),
            }
        )
        rewards.extend(interval_rewards)
        # First the episodes and the row, then the checkpoint that makes them count.
        episodes.assign(done)
        _write_rewards(model_dir, rewards)
        _write_history(model_dir, history)
        checkpointer.save(train_step)
        if verbose:
            row = history[-1]
            print(
                f"episode {done}: train reward {row['train_reward']:.1f}, held-out greedy "
                f"{row['eval_greedy_reward']:.1f}, sampling {row['eval_sampling_reward']:.1f}, "
                f"loss {row['loss']:.3f}, {row['episodes_per_second']:.2f} episodes/s",
                flush=True,
            )

    policy_dir = os.path.join(model_dir, "policy")
    if started_at < done or not os.path.exists(policy_dir):
        policy_saver.PolicySaver(agent.collect_policy, batch_size=None, train_step=train_step).save(
            policy_dir
        )
    if started_at < done:  # the last row's evaluation is of the final weights
        final = {key: history[-1][key] for key in ("eval_greedy_reward", "eval_sampling_reward")}
    else:  # nothing to train: evaluate the restored weights
        final = evaluate()
    if history and history[-1]["step"] == done:
        train_reward = history[-1]["train_reward"]
    else:  # a run without a row for its last episodes
        train_reward = float(np.mean(rewards[-o.eval_interval :]))
    seconds = sum(row["epoch_seconds"] for row in history)
    results = {
        **final,
        "train_reward": train_reward,
        "train_reward_last_1000": float(np.mean(rewards[-1000:])),
        "episodes": done,
        "episodes_per_second": done / seconds if seconds else 0.0,
        "random_policy_reward": random_policy_reward(
            held_out_maze_seeds(o.seed, o.eval_mazes), o.size, o.episode_length
        ),
    }
    return {
        "results": results,
        "history": history,
        "rewards": np.array(rewards),
        "start_episodes": started_at,
    }
