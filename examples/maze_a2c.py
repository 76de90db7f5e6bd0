r"""A2C on the grid maze (MNM paper, section 4.3 and figure 6) with TF-Agents.

    python examples/maze_a2c.py --model=mnm_p --num_episodes=4000 --model_dir=runs/maze_mnm_p

Trains `tf_agents_ext.a2c_agent.A2CAgent` (the maze reference's loss: Monte-Carlo returns
with gamma 0.9, 0.03 value weight, 0.1 Simpson penalty; Adam, epsilon 1e-4) with an MNM
(``mnm_p``, ``mnm_g``: controller 200, memory 3 x 100, H = 3) or LSTM (``lstm``, 200 units)
actor-critic network on `tf_agents_ext.maze.BatchedMazeEnvironment` (9 x 9, 250 steps, the
reference's observation). Each update trains on ``--batch_size`` episodes run at once in
parallel mazes; the rollout and the update are one compiled `tf.function`. The loop is
`examples.maze_training.train`.

Every ``--eval_interval`` episodes (and at the end) the greedy policy (the most probable
action) and the sampling policy play ``--eval_mazes`` held-out mazes, the same ones at every
evaluation (their own seeds, derived from ``--seed``); their mean rewards per episode sit
beside the training reward in the run's history, one row per interval.

Every flag is a field of `Config`. Rerunning the same command resumes from the last
checkpoint (one after each evaluation), keeping every episode and history row before it.
In ``--model_dir``: the run record ``metrics.json`` (`examples.training.RunRecorder`:
config, results, history, invocations), ``history.jsonl``, ``rewards.csv`` (every training
episode's reward), ``rewards.png`` (moving average of the training reward and the held-out
evaluations), ``checkpoints/`` and the trained sampling policy as a SavedModel
(``policy/``).
"""

from __future__ import annotations

import dataclasses
import os

# TF-Agents needs tf.keras to be tf-keras: set before TensorFlow is imported (tf_agents_ext).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tf_agents_ext import networks

try:  # run as a script (python examples/maze_a2c.py) or as a module (-m)
    from examples import maze_training, plotting, training
    from examples.config_flags import main, option
except ImportError:  # pragma: no cover
    import maze_training
    import plotting
    import training
    from config_flags import main, option

PLOT_WINDOW = 500  # episodes in the moving average of rewards.png


@dataclasses.dataclass(frozen=True)
class Config:
    """One maze run; every field is a flag of the same name."""

    model: str = option("mnm_p", "Recurrent core.", choices=networks.CORES)
    num_episodes: int = option(
        2000, "Episodes to train, over every invocation (a multiple of batch_size)."
    )
    batch_size: int = option(16, "Episodes per update, run in parallel (the reference: 1).")
    learning_rate: float | None = option(
        None,
        "Adam learning rate; default 1e-4 x batch_size (the reference: 1e-4 at one episode "
        "per update).",
    )
    units: int = option(200, "Controller / LSTM units (paper: 200).")
    memory_units: int = option(100, "MNM memory width, d_k = d_v (paper: 100).")
    memory_layers: int = option(3, "MNM memory layers L (paper: 3).")
    num_heads: int = option(3, "MNM heads H (paper: 3).")
    normalize_writes: bool = option(
        True, "MNM: normalised writes (default); --nonormalize_writes: the paper's writes."
    )
    entropy_weight: float = option(0.0, "Weight of the entropy bonus (the reference: 0).")
    gradient_clipping: float | None = option(
        None, "Global-norm bound of the gradient (the reference: none)."
    )
    gae_lambda: float | None = option(
        None, "Lambda of generalised advantage estimation (the reference: none)."
    )
    normalize_time: bool = option(
        False, "Observation [15] = step / episode_length (default: the raw step, as the reference)."
    )
    size: int = option(9, "Side of the square maze, odd (paper: 9).")
    episode_length: int = option(250, "Actions per episode (paper: 250).")
    eval_interval: int = option(
        400,
        "Episodes between held-out evaluations, history rows and checkpoints (a multiple of "
        "batch_size).",
    )
    eval_mazes: int = option(32, "Held-out mazes of every evaluation.")
    seed: int = option(0, "Seed of the initial weights, the action sampling and the mazes.")
    model_dir: str = option("runs/maze", "Checkpoints, history and the run record.")

    def __post_init__(self):
        maze_training.check_options(**_train_options(self))
        if self.learning_rate is None:  # the record holds the rate the run trains at
            rate = maze_training.default_learning_rate(self.batch_size)
            object.__setattr__(self, "learning_rate", rate)


def _train_options(config):
    """The keyword arguments of `examples.maze_training.train` (every field but model_dir)."""
    return {
        field.name: getattr(config, field.name)
        for field in dataclasses.fields(config)
        if field.name != "model_dir"
    }


def run(config, verbose=1):
    """Trains (or resumes) the run of ``config`` and evaluates it on the held-out mazes.

    Returns:
      The run record written to ``model_dir/metrics.json`` (`training.RunRecorder`); its
      ``results`` are ``eval_greedy_reward``, ``eval_sampling_reward``, ``train_reward``
      (the last interval's), ``train_reward_last_1000``, ``episodes``,
      ``episodes_per_second`` and ``random_policy_reward``; its ``history`` has one row per
      evaluation (`examples.maze_training`).
    """
    done = maze_training.check_budget(config.model_dir, config.num_episodes)
    recorder = training.RunRecorder(config.model_dir, "maze", config, done)
    with training.recording_divergence(recorder):  # a diverged run's record, then the error
        outcome = maze_training.train(config.model_dir, **_train_options(config), verbose=verbose)
    history = outcome["history"]
    steps = [row["step"] for row in history]
    plotting.plot_maze_rewards(
        os.path.join(config.model_dir, "rewards.png"),
        {f"{config.model} (training)": [outcome["rewards"]]},
        window=PLOT_WINDOW,
        evaluations={
            "held-out, greedy": (steps, [row["eval_greedy_reward"] for row in history]),
            "held-out, sampling": (steps, [row["eval_sampling_reward"] for row in history]),
        },
        title=f"Grid maze {config.size} x {config.size} (A2C), {config.model}",
        # The uniformly random policy's reward on the same held-out mazes (measured).
        reference=("random policy", outcome["results"]["random_policy_reward"]),
    )
    return recorder.finish(outcome["results"], curves=None, history=history)


def summary(record):
    config, results = record["config"], record["results"]
    return (
        f"\nmaze / {config['model']}: held-out reward per episode {results['eval_greedy_reward']:.1f} "
        f"(greedy), {results['eval_sampling_reward']:.1f} (sampling); training "
        f"{results['train_reward']:.1f}, after {results['episodes']} episodes "
        f"({record['wall_seconds']:.0f} s). {config['model_dir']}/metrics.json"
    )


if __name__ == "__main__":
    main(Config, run, summary)
