r"""A2C on the grid maze (MNM paper, section 4.3 and figure 6) with TF-Agents.

    python examples/maze_a2c.py --network=mnm_p --num_episodes=4000 --root_dir=runs/maze_mnm_p

Trains `tf_agents_ext.a2c_agent.A2CAgent` (the maze reference's loss: Monte-Carlo returns
with gamma 0.9, 0.03 value weight, 0.1 Simpson penalty; Adam, epsilon 1e-4) with an MNM
(``mnm_p``, ``mnm_g``: controller 200, memory 3 x 100, H = 3) or LSTM (``lstm``, 200 units)
actor-critic network on `tf_agents_ext.maze.BatchedMazeEnvironment` (9 x 9, 250 steps,
the reference's observation). Each iteration runs ``--num_parallel_episodes`` episodes at
once and makes one update on them; the rollout (policy and environment for 250 steps)
and the update are one compiled `tf.function`.

Writes to ``--root_dir``: ``rewards.csv`` (episode, total reward), ``rewards.png`` (moving
average), ``metrics.json`` (``network``, ``episodes``, ``wall_seconds``,
``episodes_per_second``, ``mean_reward_last_1000``, ...), checkpoints
(``checkpoints/``, `tf_agents.utils.common.Checkpointer`) and, at the end, the trained
(sampling) policy as a SavedModel (``policy/``, `PolicySaver`). A rerun with the same
``--root_dir`` resumes from the last checkpoint, keeping the episodes finished before it
(``rewards.csv`` is cut back to the checkpointed episode count).

With several ``--seeds`` every seed trains in ``--root_dir/seed_<k>`` and
``--root_dir/rewards.png`` shows the median and inter-quartile range over seeds.
``--plot=label=dir1+dir2,label2=dir3 --plot_out=file.png`` only plots finished runs.
"""

from __future__ import annotations

import csv
import json
import os
import time

# isort: off
import tf_agents_ext  # noqa: F401  (first: sets TF_USE_LEGACY_KERAS=1 before tf.keras is used)
# isort: on

import numpy as np
import tensorflow as tf
from absl import app, flags
from matplotlib.figure import Figure
from tf_agents.environments import tf_py_environment
from tf_agents.policies import policy_saver
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.utils import common

from mnm_keras.plotting import split_label
from tf_agents_ext import a2c_agent, maze, networks

FLAGS = flags.FLAGS
RANDOM_POLICY_REWARD = 9.3  # maze.md: a uniformly random policy, 9 x 9, 250 steps


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_enum("network", "mnm_p", list(networks.CORES), "Recurrent core.")
    flags.DEFINE_integer("num_episodes", 2000, "Episodes to train (in total, over resumes).")
    flags.DEFINE_integer("num_parallel_episodes", 16, "Episodes per update (batch).")
    flags.DEFINE_float("learning_rate", 1e-4, "Adam learning rate (reference: 1e-4).")
    flags.DEFINE_list("seeds", ["0"], "Seeds; several train one run each in root_dir/seed_<k>.")
    flags.DEFINE_integer("units", 200, "Controller / LSTM units (paper: 200).")
    flags.DEFINE_integer("memory_units", 100, "MNM memory width, d_k = d_v (paper: 100).")
    flags.DEFINE_integer("memory_layers", 3, "MNM memory layers L (paper: 3).")
    flags.DEFINE_integer("num_heads", 3, "MNM heads H (paper: 3).")
    flags.DEFINE_bool("normalize_writes", False, "MNM: normalised writes (not in the paper).")
    flags.DEFINE_float("entropy_weight", 0.0, "Weight of the entropy bonus (reference: 0).")
    flags.DEFINE_float(
        "gradient_clipping", None, "Global-norm bound of the gradient (reference: none)."
    )
    flags.DEFINE_float(
        "gae_lambda", None, "Lambda of generalised advantage estimation (reference: none)."
    )
    flags.DEFINE_bool(
        "normalize_time",
        False,
        "Observation [15] = step / 250 (default: the raw step, as the reference).",
    )
    flags.DEFINE_integer("log_interval", 200, "Episodes between progress lines.")
    flags.DEFINE_integer("checkpoint_interval", 500, "Episodes between checkpoints.")
    flags.DEFINE_string("root_dir", "runs/maze", "Output directory.")
    flags.DEFINE_list("plot", [], "Only plot: label=dir1+dir2,... (runs with rewards.csv).")
    flags.DEFINE_string("plot_out", "rewards.png", "PNG written by --plot.")


# ------------------------------------------------------------------------------- outputs
def read_rewards(root_dir):
    """``rewards.csv`` of a run as a float array (episode order), empty if absent."""
    path = os.path.join(root_dir, "rewards.csv")
    if not os.path.exists(path):
        return np.zeros([0])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([float(row["reward"]) for row in rows])


def plot_runs(specs, path, window=500):
    """Plots finished runs: ``specs`` items ``label=dir1+dir2+...`` (several dirs: seeds).

    The label ends at the first ``=``; every dir must hold a ``rewards.csv``.
    """
    runs = {}
    for item in specs:
        label, dirs = split_label(item, "plot", "label=dir1+dir2+...", required=True)
        directories = dirs.split("+")
        for directory in directories:
            if not os.path.exists(os.path.join(directory, "rewards.csv")):
                raise ValueError(
                    f"`plot` item {item!r}: {directory!r} holds no rewards.csv (expected the "
                    "--root_dir of a run)."
                )
        runs[label] = [read_rewards(d) for d in directories]
    plot_rewards(path, runs, window)


def _write_rewards(root_dir, rewards):
    path = os.path.join(root_dir, "rewards.csv")
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "reward"])
        writer.writerows((i + 1, f"{r:.1f}") for i, r in enumerate(rewards))
    os.replace(path + ".tmp", path)


def moving_average(values, window):
    """Mean of the last ``window`` values at every point (fewer at the start): ``[N]``."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (sums[index] - sums[start]) / (index - start)


def plot_rewards(path, runs, window=500, title="Grid maze 9 x 9 (A2C)"):
    """Writes the moving-average reward curves of ``runs`` (label -> list of per-seed
    reward arrays) to ``path``: one line per label, or with several seeds their median
    and inter-quartile range (over the common number of episodes)."""
    figure = Figure(figsize=(6.5, 4), dpi=100)
    axes = figure.subplots()
    for label, seeds in runs.items():
        length = min(len(r) for r in seeds)
        if length == 0:
            continue
        curves = np.stack([moving_average(r[:length], window) for r in seeds])
        episodes = np.arange(1, length + 1)
        if len(seeds) == 1:
            axes.plot(episodes, curves[0], label=label)
        else:
            low, median, high = np.percentile(curves, [25, 50, 75], axis=0)
            (line,) = axes.plot(episodes, median, label=f"{label} (median of {len(seeds)})")
            axes.fill_between(episodes, low, high, color=line.get_color(), alpha=0.25)
    axes.axhline(RANDOM_POLICY_REWARD, linestyle="--", color="grey", label="random policy")
    axes.set_title(title)
    axes.set_xlabel("episode")
    axes.set_ylabel(f"reward per episode (moving average, {window})")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)


# ------------------------------------------------------------------------------ training
def make_rollout(tf_env, policy, episode_length):
    """A function running one episode in every environment of ``tf_env`` with ``policy``.

    Returns ``(experience, episode_rewards)``: a `Trajectory` ``[B, episode_length]`` (one
    whole episode per row, starting at FIRST) and the total rewards ``[B]``.
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
    network,
    learning_rate,
    seed,
    size=9,
    episode_length=250,
    units=200,
    memory_units=100,
    memory_layers=3,
    num_heads=3,
    normalize_writes=False,
    **agent_options,
):
    """``(agent, optimizer)``: an `A2CAgent` on a new actor-critic network for the maze.

    The network is `tf_agents_ext.networks.actor_critic_network` (``network`` in
    `networks.CORES`; for MNM ``d_k = d_v = memory_units``) seeded with ``seed``; the
    optimizer is Adam with the reference's epsilon 1e-4. ``agent_options`` go to
    `A2CAgent` (``entropy_weight``, ``gradient_clipping``, ``gae_lambda``,
    ``train_step_counter``).
    """
    probe = maze.MazeEnvironment(size=size, episode_length=episode_length)
    observation_spec = tensor_spec.from_spec(probe.observation_spec())
    action_spec = tensor_spec.from_spec(probe.action_spec())
    sizes = {"units": units}
    if network != "lstm":
        sizes.update(
            memory_units=memory_units,
            memory_layers=memory_layers,
            num_heads=num_heads,
            key_size=memory_units,
            value_size=memory_units,
            normalize_writes=normalize_writes,
        )
    net = networks.actor_critic_network(network, observation_spec, action_spec, seed=seed, **sizes)
    optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate, epsilon=1e-4)
    agent = a2c_agent.A2CAgent(
        ts.time_step_spec(observation_spec), action_spec, net, optimizer, **agent_options
    )
    return agent, optimizer


def make_iteration(tf_env, agent, episode_length):
    """One compiled training iteration: a rollout of every environment, then one update.

    Returns a `tf.function` returning ``(episode_rewards [B], loss)``.
    """
    rollout = make_rollout(tf_env, agent.collect_policy, episode_length)

    @tf.function
    def iteration():
        experience, episode_rewards = rollout()
        return episode_rewards, agent.train(experience).loss

    return iteration


def train_eval(
    root_dir,
    network="mnm_p",
    num_episodes=2000,
    num_parallel_episodes=16,
    learning_rate=1e-4,
    seed=0,
    units=200,
    memory_units=100,
    memory_layers=3,
    num_heads=3,
    episode_length=250,
    size=9,
    normalize_time=False,
    log_interval=200,
    checkpoint_interval=500,
    plot_window=500,
    normalize_writes=False,
    entropy_weight=0.0,
    gradient_clipping=None,
    gae_lambda=None,
):
    """Trains one A2C agent on the maze until ``num_episodes`` episodes are done; resumable.

    Args:
      root_dir: output directory (see the module docstring); resumed if it holds a run.
      network: ``"mnm_p"``, ``"mnm_g"`` or ``"lstm"``.
      num_episodes: total episodes; training runs whole iterations of
        ``num_parallel_episodes``, so it stops at the first multiple at or above it.
      num_parallel_episodes: episodes per update.
      learning_rate: Adam learning rate (epsilon 1e-4, as in the reference).
      seed: seed of the network's initial weights, the action sampling and the mazes.
      units, memory_units, memory_layers, num_heads: network sizes (the MNM memory is
        ``memory_layers`` layers of ``memory_units``, ``d_k = d_v = memory_units``; the
        paper's agent: 200, 100, 3, 3).
      episode_length, size: the maze (250 steps, 9 x 9).
      normalize_time: the maze's named option (observation ``[15]`` = step / length
        instead of the reference's raw step count).
      log_interval, checkpoint_interval: in episodes.
      plot_window: moving-average window of ``rewards.png``.
      normalize_writes: MNM networks: `mnm_keras.MNMCell`'s normalised writes (not in the
        paper).
      entropy_weight, gradient_clipping, gae_lambda: `tf_agents_ext.a2c_agent.A2CAgent`'s
        options (the reference: 0, None, None); checked by the agent. A resumed run may
        change them.

    Returns:
      The metrics dict written to ``metrics.json``.
    """
    for name, value in (
        ("num_episodes", num_episodes),
        ("num_parallel_episodes", num_parallel_episodes),
        ("log_interval", log_interval),
        ("checkpoint_interval", checkpoint_interval),
        ("plot_window", plot_window),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer; received {name}={value!r}.")
    if network not in networks.CORES:
        raise ValueError(f"`network` must be one of {networks.CORES}; received {network!r}.")
    if not learning_rate > 0:
        raise ValueError(f"`learning_rate` must be positive; received {learning_rate!r}.")
    os.makedirs(root_dir, exist_ok=True)
    batch = num_parallel_episodes

    tf.random.set_seed(seed)
    recorded_sizes = {}  # also in metrics.json
    if network != "lstm":
        recorded_sizes = dict(
            memory_units=memory_units, memory_layers=memory_layers, num_heads=num_heads
        )
    train_step = tf.Variable(0, dtype=tf.int64, name="train_step")
    episodes = tf.Variable(0, dtype=tf.int64, name="episodes")
    wall_seconds = tf.Variable(0.0, dtype=tf.float64, name="wall_seconds")
    agent, optimizer = build_agent(
        network,
        learning_rate,
        seed,
        size=size,
        episode_length=episode_length,
        units=units,
        normalize_writes=normalize_writes,
        entropy_weight=entropy_weight,
        gradient_clipping=gradient_clipping,
        gae_lambda=gae_lambda,
        train_step_counter=train_step,
        **recorded_sizes,
    )
    checkpointer = common.Checkpointer(
        ckpt_dir=os.path.join(root_dir, "checkpoints"),
        max_to_keep=1,
        agent=agent,
        optimizer=optimizer,
        episodes=episodes,
        wall_seconds=wall_seconds,
    )
    checkpointer.initialize_or_restore()
    done = int(episodes.numpy())
    # The checkpoint restores the optimizer's learning rate with its other variables; a
    # resumed run trains at the one this call asks for (e.g. lower, to fine-tune).
    restored_rate = float(tf.keras.backend.get_value(optimizer.learning_rate))
    if done and not np.isclose(restored_rate, learning_rate, rtol=1e-6, atol=0.0):
        print(
            f"maze_a2c: the checkpoint's optimizer had learning rate {restored_rate:g}; "
            f"training on at the requested {learning_rate:g}.",
            flush=True,
        )
        optimizer.learning_rate.assign(learning_rate)
    rewards = list(read_rewards(root_dir)[:done])
    if len(rewards) != done:
        raise RuntimeError(
            f"{root_dir}/rewards.csv holds {len(rewards)} episodes but the checkpoint {done}."
        )
    _write_rewards(root_dir, rewards)  # drops episodes finished after the last checkpoint

    # The mazes' generators are not checkpointed: a resumed run draws goals from a seed
    # derived from (seed, episodes done).
    env_seed = int(np.random.SeedSequence([seed, done]).generate_state(1)[0])
    tf_env = tf_py_environment.TFPyEnvironment(
        maze.BatchedMazeEnvironment(
            batch,
            size=size,
            episode_length=episode_length,
            normalize_time=normalize_time,
            seed=env_seed,
        )
    )
    iteration = make_iteration(tf_env, agent, episode_length)

    if done < num_episodes:
        print(
            f"maze_a2c {network}: {'resuming at' if done else 'starting'} episode {done}, "
            f"target {num_episodes}, {batch} per update",
            flush=True,
        )
    start = segment_start = time.perf_counter()
    started_at = done
    last_log, last_log_time, last_checkpoint = done, start, done
    while done < num_episodes:
        episode_rewards, loss = iteration()
        rewards.extend(float(r) for r in episode_rewards.numpy())
        done += batch
        now = time.perf_counter()
        if done - last_log >= log_interval or done >= num_episodes:
            rate = (done - last_log) / (now - last_log_time)
            recent = np.mean(rewards[-min(len(rewards), 1000) :])
            print(
                f"episode {done}: {rate:.2f} episodes/s, mean reward (last "
                f"{min(len(rewards), 1000)}) {recent:.1f}, loss {float(loss):.3f}",
                flush=True,
            )
            last_log, last_log_time = done, now
        if done - last_checkpoint >= checkpoint_interval or done >= num_episodes:
            episodes.assign(done)
            wall_seconds.assign_add(now - segment_start)
            segment_start = now
            _write_rewards(root_dir, rewards)  # first the episodes, then the checkpoint
            checkpointer.save(train_step)
            last_checkpoint = done
    run_seconds = time.perf_counter() - start

    policy_dir = os.path.join(root_dir, "policy")
    if started_at < done or not os.path.exists(policy_dir):
        policy_saver.PolicySaver(agent.collect_policy, batch_size=None, train_step=train_step).save(
            policy_dir
        )
    plot_rewards(os.path.join(root_dir, "rewards.png"), {network: [np.array(rewards)]}, plot_window)
    trained_here = done - started_at
    metrics = {
        "network": network,
        "episodes": done,
        "num_parallel_episodes": batch,
        # The rate the optimizer trained at (this invocation's; a resumed run may differ
        # from the earlier ones).
        "learning_rate": float(tf.keras.backend.get_value(optimizer.learning_rate)),
        "seed": seed,
        "units": units,
        **recorded_sizes,
        "normalize_time": normalize_time,
        "normalize_writes": normalize_writes,
        # This invocation's loss options, like the learning rate.
        "entropy_weight": entropy_weight,
        "gradient_clipping": gradient_clipping,
        "gae_lambda": gae_lambda,
        "train_steps": int(train_step.numpy()),
        "wall_seconds": float(wall_seconds.numpy()),
        "episodes_per_second": done / float(wall_seconds.numpy()) if done else 0.0,
        "episodes_per_second_this_run": trained_here / run_seconds if trained_here else None,
        "mean_reward_last_1000": float(np.mean(rewards[-1000:])) if rewards else None,
        "random_policy_reward": RANDOM_POLICY_REWARD,
    }
    with open(os.path.join(root_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def main(argv):
    del argv
    if FLAGS.plot:
        plot_runs(FLAGS.plot, FLAGS.plot_out)
        return
    seeds = [int(s) for s in FLAGS.seeds]
    results = []
    for seed in seeds:
        root = FLAGS.root_dir if len(seeds) == 1 else os.path.join(FLAGS.root_dir, f"seed_{seed}")
        results.append(
            train_eval(
                root,
                network=FLAGS.network,
                num_episodes=FLAGS.num_episodes,
                num_parallel_episodes=FLAGS.num_parallel_episodes,
                learning_rate=FLAGS.learning_rate,
                seed=seed,
                units=FLAGS.units,
                memory_units=FLAGS.memory_units,
                memory_layers=FLAGS.memory_layers,
                num_heads=FLAGS.num_heads,
                normalize_time=FLAGS.normalize_time,
                normalize_writes=FLAGS.normalize_writes,
                entropy_weight=FLAGS.entropy_weight,
                gradient_clipping=FLAGS.gradient_clipping,
                gae_lambda=FLAGS.gae_lambda,
                log_interval=FLAGS.log_interval,
                checkpoint_interval=FLAGS.checkpoint_interval,
            )
        )
        print(json.dumps(results[-1]), flush=True)
    if len(seeds) > 1:
        runs = {
            FLAGS.network: [read_rewards(os.path.join(FLAGS.root_dir, f"seed_{s}")) for s in seeds]
        }
        plot_rewards(os.path.join(FLAGS.root_dir, "rewards.png"), runs)


if __name__ == "__main__":
    define_flags()
    app.run(main)
