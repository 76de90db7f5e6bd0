r"""The paper's algorithmic tasks (section 4.1): dictionary inference, double copy, sort.

    python examples/algorithmic.py --task=dictionary --support_size=8 --sequence_length=4 \
        --model=mnm_p --train_steps=20000 --model_dir=runs/dict_8_4_mnm_p

Models: ``mnm_p``, ``mnm_g``, ``salu``, ``lstm`` with the sizes of the paper's table 2
(controller 100, memory 3 x 100, d_k = d_v = 100, H = 1; output layer on every step). Adam
with learning rate 1e-3, batch 32 (appendix A). The loss and the metrics count only the
answer positions. Evaluation uses ``--eval_episodes`` held-out episodes drawn from another
seed; ``eval_sequence_error`` is the fraction of them with any wrong answer symbol (bit,
for priority sort) and ``eval_symbol_error`` the fraction of wrong answer symbols (bits).

Rerunning the same command resumes from the last finished epoch (``--model_dir/backup``).
At the end: ``--model_dir/metrics.json``, ``--model_dir/curve.png``, TensorBoard logs in
``--model_dir/logs``.
"""

from __future__ import annotations

import time

import keras
from absl import app, flags

from mnm_keras import datasets, models, training
from mnm_keras.metrics import SequenceError, SymbolError

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_enum("task", "dictionary", sorted(datasets.TASKS), "Task.")
    flags.DEFINE_enum("model", "mnm_p", list(models.MODEL_NAMES), "Model.")
    flags.DEFINE_integer("support_size", 4, "Dictionary inference: support examples k.")
    flags.DEFINE_integer("sequence_length", 1, "Dictionary inference: letters per sequence l.")
    flags.DEFINE_integer("train_steps", 2000, "Optimizer steps.")
    flags.DEFINE_integer("steps_per_epoch", 200, "Steps between evaluations and checkpoints.")
    flags.DEFINE_integer("batch_size", 32, "Episodes per step (paper: 32).")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (paper: 1e-3).")
    flags.DEFINE_float(
        "gradient_clipping", None, "Bound on the gradient's global norm (paper: none)."
    )
    flags.DEFINE_integer("units", 100, "Controller (or LSTM) units d_h (paper: 100).")
    flags.DEFINE_integer("memory_units", 100, "Memory width D_l (paper: 100).")
    flags.DEFINE_integer("memory_layers", 3, "Memory layers (paper: 3).")
    flags.DEFINE_integer("key_size", 100, "d_k = d_v (paper: 100).")
    flags.DEFINE_integer("num_heads", 1, "Heads H (paper: 1).")
    flags.DEFINE_bool("normalize_writes", False, "MNM: normalised writes (not in the paper).")
    flags.DEFINE_integer("eval_episodes", 500, "Held-out episodes.")
    flags.DEFINE_integer("seed", 0, "Seed of data and initialisation.")
    flags.DEFINE_string("model_dir", "runs/algorithmic", "Checkpoints, logs, metrics.")
    flags.DEFINE_string(
        "init_from", None,
        "A new run starts from the weights of this run's model_dir (its latest checkpoint) or "
        "this .weights.h5 file, with a new optimizer: e.g. dictionary (12, 8) from a (8, 4) "
        "run. Same model and sizes. Ignored when --model_dir resumes.",
    )  # fmt: skip


def build_model(task, model, units=100, memory_units=100, memory_layers=3, key_size=100,
                num_heads=1, seed=0, learning_rate=1e-3, normalize_writes=False,
                gradient_clipping=None):  # fmt: skip
    """A compiled Keras model for ``task``: recurrent layer, then a per-step output layer.

    ``gradient_clipping``: if set, Adam rescales each step's gradients to at most this
    global norm (``keras.optimizers.Adam(global_clipnorm=...)``); None (the paper) does not.
    """
    if gradient_clipping is not None and not gradient_clipping > 0:
        raise ValueError(
            f"`gradient_clipping` must be a positive global norm or None, got "
            f"{gradient_clipping!r}."
        )
    binary = task.output_type == "binary"
    inputs = keras.Input((task.length, task.input_size))
    features = models.recurrent_layer(
        model,
        units=units,
        memory_units=memory_units,
        memory_layers=memory_layers,
        key_size=key_size,
        value_size=key_size,
        num_heads=num_heads,
        max_length=task.length,
        return_sequences=True,
        seed=seed,
        normalize_writes=normalize_writes,
    )(inputs)
    logits = keras.layers.Dense(task.output_size, name="logits")(features)
    network = keras.Model(inputs, logits, name=f"{task.name}_{model}")
    loss = (
        keras.losses.BinaryCrossentropy(from_logits=True)
        if binary
        else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    network.compile(
        keras.optimizers.Adam(learning_rate, global_clipnorm=gradient_clipping),
        loss,
        weighted_metrics=[SymbolError(binary), SequenceError(binary)],
    )
    return network


def make_task(task, support_size=4, sequence_length=1):
    if task == "dictionary":
        return datasets.get_task(task, support_size=support_size, sequence_length=sequence_length)
    return datasets.get_task(task)


def train_and_evaluate(
    model_dir,
    task="dictionary",
    model="mnm_p",
    support_size=4,
    sequence_length=1,
    train_steps=2000,
    steps_per_epoch=200,
    batch_size=32,
    learning_rate=1e-3,
    units=100,
    memory_units=100,
    memory_layers=3,
    key_size=100,
    num_heads=1,
    eval_episodes=500,
    seed=0,
    verbose=1,
    callbacks=(),
    normalize_writes=False,
    init_from=None,
    gradient_clipping=None,
):
    """Trains ``model`` on ``task`` with `fit`, evaluates on held-out episodes.

    ``init_from`` (a run's model_dir or a ``.weights.h5`` file) starts a new run from those
    weights with a new optimizer (`mnm_keras.training.warm_start`); a run that resumes from
    its own checkpoint in ``model_dir`` does not use it. ``gradient_clipping`` bounds the
    global norm of each step's gradients (`build_model`); a resumed run may change it.

    Returns:
      The metrics written to ``model_dir/metrics.json``: ``task``, ``model``,
      ``train_steps``, ``wall_seconds``, ``eval_sequence_error``, ``eval_symbol_error``,
      the configuration and the per-epoch ``history``.
    """
    done = training.check_budget(model_dir, train_steps, steps_per_epoch)
    keras.utils.set_random_seed(seed)
    spec = make_task(task, support_size, sequence_length)
    network = build_model(
        spec, model, units, memory_units, memory_layers, key_size, num_heads, seed, learning_rate,
        normalize_writes, gradient_clipping,
    )  # fmt: skip
    # Training episodes stream from `seed` (a resumed run skips those of its finished
    # epochs); held-out episodes come from another seed.
    skipped = done * batch_size
    if init_from and not skipped:
        training.warm_start(network, init_from)
        if verbose:
            print(f"Starting from the weights of {init_from}.", flush=True)
    if skipped and verbose:
        print(
            f"Resuming after {skipped // batch_size} steps: the training stream skips the "
            f"{skipped} episodes already trained on.",
            flush=True,
        )
    train_data = spec.dataset(batch_size, seed=seed, start=skipped)
    x_eval, y_eval, w_eval = spec.arrays(eval_episodes, seed=seed + 1_000_003)
    start = time.time()
    network.fit(
        train_data,
        epochs=train_steps // steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        validation_data=(x_eval, y_eval, w_eval),
        callbacks=[*training.resumable_callbacks(model_dir), *callbacks],
        verbose=verbose,
        shuffle=False,  # the stream is already random
    )
    wall_seconds = time.time() - start
    evaluation = network.evaluate(
        x_eval, y_eval, sample_weight=w_eval, verbose=0, return_dict=True, batch_size=batch_size
    )
    metrics = {
        "task": task,
        "model": model,
        "support_size": support_size if task == "dictionary" else None,
        "sequence_length": sequence_length if task == "dictionary" else None,
        "train_steps": train_steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "gradient_clipping": gradient_clipping,
        "seed": seed,
        "units": units,
        "memory_units": memory_units,
        "memory_layers": memory_layers,
        "key_size": key_size,
        "num_heads": num_heads,
        "normalize_writes": normalize_writes,
        "init_from": init_from,
        "eval_episodes": eval_episodes,
        "wall_seconds": round(wall_seconds, 1),
        "eval_sequence_error": float(evaluation["sequence_error"]),
        "eval_symbol_error": float(evaluation["symbol_error"]),
    }
    return training.finish_run(
        model_dir,
        metrics,
        steps_per_epoch,
        {
            "train symbol error": lambda row: row["symbol_error"],
            "held-out symbol error": lambda row: row["val_symbol_error"],
            "held-out sequence error": lambda row: row["val_sequence_error"],
        },
        title=f"{task}, {model}",
        ylabel="error",
    )


def main(argv):
    del argv
    metrics = train_and_evaluate(
        FLAGS.model_dir,
        task=FLAGS.task,
        model=FLAGS.model,
        support_size=FLAGS.support_size,
        sequence_length=FLAGS.sequence_length,
        train_steps=FLAGS.train_steps,
        steps_per_epoch=FLAGS.steps_per_epoch,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        units=FLAGS.units,
        memory_units=FLAGS.memory_units,
        memory_layers=FLAGS.memory_layers,
        key_size=FLAGS.key_size,
        num_heads=FLAGS.num_heads,
        eval_episodes=FLAGS.eval_episodes,
        seed=FLAGS.seed,
        normalize_writes=FLAGS.normalize_writes,
        init_from=FLAGS.init_from,
        gradient_clipping=FLAGS.gradient_clipping,
    )
    print(
        f"\n{metrics['task']} / {metrics['model']}: held-out sequence error "
        f"{metrics['eval_sequence_error']:.3f}, symbol error {metrics['eval_symbol_error']:.3f} "
        f"after {metrics['train_steps']} steps ({metrics['wall_seconds']:.0f} s). "
        f"{FLAGS.model_dir}/metrics.json"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
