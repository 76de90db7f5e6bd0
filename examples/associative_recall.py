r"""Train a model on associative recall (the demo): store key -> value pairs, recall one.

    python examples/associative_recall.py --model=mnm_p --model_dir=runs/demo

The task is `mnm_keras.tasks.associative_recall`: every episode shows ``num_pairs`` random
(key, value) pairs, one per step, then a query key; the answer is the value stored with
it. The pairs change every episode, so only a memory of the episode answers above chance.

Rerunning the same command resumes from the last finished epoch (checkpoints in
``--model_dir/backup``); at the end the script writes ``--model_dir/metrics.json``,
``--model_dir/curve.png`` and TensorBoard logs in ``--model_dir/logs``.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf
from absl import app, flags

from mnm_keras import models, tasks, training

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_enum("model", "mnm_p", list(models.MODEL_NAMES), "Model to train.")
    flags.DEFINE_string("model_dir", "runs/associative_recall", "Checkpoints, logs, metrics.")
    flags.DEFINE_integer("train_steps", 1200, "Optimizer steps.")
    flags.DEFINE_integer("steps_per_epoch", 100, "Steps between evaluations and checkpoints.")
    flags.DEFINE_integer("batch_size", 32, "Episodes per step.")
    flags.DEFINE_float("learning_rate", 1e-2, "Adam learning rate.")
    flags.DEFINE_integer("num_pairs", 4, "Pairs stored per episode.")
    flags.DEFINE_integer("num_symbols", 8, "Number of key symbols and of value symbols.")
    flags.DEFINE_integer("units", 64, "Controller (or LSTM) units.")
    flags.DEFINE_integer("memory_units", 32, "MNM memory width; also key and value size.")
    flags.DEFINE_integer("seed", 0, "Seed of data, initialisation and shuffling.")


def train_and_evaluate(
    model_dir,
    model="mnm_p",
    train_steps=1200,
    steps_per_epoch=100,
    batch_size=32,
    learning_rate=1e-2,
    num_pairs=4,
    num_symbols=8,
    units=64,
    memory_units=32,
    seed=0,
    eval_episodes=1000,
    verbose=1,
    callbacks=(),
):
    """Trains ``model`` on associative recall and evaluates it on held-out episodes.

    Rerunning with the same ``model_dir`` resumes from the last finished epoch: after an
    interruption it continues the same run, and after a finished run it only trains the
    epochs that a larger ``train_steps`` adds.

    Args:
      callbacks: extra Keras callbacks for `fit`.

    Returns:
      The metrics dict also written to ``model_dir/metrics.json``: ``model``,
      ``train_steps``, ``wall_seconds``, ``eval_accuracy``, ``eval_error``,
      ``chance_error`` and the per-epoch ``history``.
    """
    training.check_budget(model_dir, train_steps, steps_per_epoch)
    keras.utils.set_random_seed(seed)
    task = dict(num_pairs=num_pairs, num_keys=num_symbols, num_values=num_symbols)
    x_train, y_train = tasks.associative_recall(train_steps * batch_size, seed=seed, **task)
    # Held-out episodes come from another seed.
    x_eval, y_eval = tasks.associative_recall(eval_episodes, seed=seed + 10_000, **task)

    inputs = keras.Input((None, x_train.shape[-1]))
    features = models.recurrent_layer(
        model,
        units=units,
        memory_units=memory_units,
        key_size=memory_units,
        value_size=memory_units,
        max_length=x_train.shape[1],
        seed=seed,
    )(inputs)
    network = keras.Model(inputs, keras.layers.Dense(num_symbols)(features), name=model)
    network.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .batch(batch_size, drop_remainder=True)
        .repeat()
    )
    callbacks = [*training.resumable_callbacks(model_dir), *callbacks]
    start = time.time()
    network.fit(
        train,
        epochs=train_steps // steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        validation_data=(x_eval, y_eval),
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the stream is already random
    )
    wall_seconds = time.time() - start
    evaluation = network.evaluate(x_eval, y_eval, verbose=0, return_dict=True)
    metrics = {
        "task": "associative_recall",
        "model": model,
        "train_steps": train_steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "num_pairs": num_pairs,
        "num_symbols": num_symbols,
        "seed": seed,
        "wall_seconds": round(wall_seconds, 1),
        "eval_accuracy": float(evaluation["accuracy"]),
        "eval_error": 1.0 - float(evaluation["accuracy"]),
        "chance_error": 1.0 - 1.0 / num_symbols,
    }
    return training.finish_run(
        model_dir,
        metrics,
        steps_per_epoch,
        {
            "train error": lambda row: 1 - row["accuracy"],
            "held-out error": lambda row: 1 - row["val_accuracy"],
        },
        title=f"associative recall, {model}",
        ylabel="error",
        reference=("chance", metrics["chance_error"]),
    )


def main(argv):
    del argv
    metrics = train_and_evaluate(
        FLAGS.model_dir,
        model=FLAGS.model,
        train_steps=FLAGS.train_steps,
        steps_per_epoch=FLAGS.steps_per_epoch,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        num_pairs=FLAGS.num_pairs,
        num_symbols=FLAGS.num_symbols,
        units=FLAGS.units,
        memory_units=FLAGS.memory_units,
        seed=FLAGS.seed,
    )
    print(
        f"\n{metrics['model']}: held-out error {metrics['eval_error']:.3f} "
        f"(chance {metrics['chance_error']:.3f}) after {metrics['train_steps']} steps, "
        f"{metrics['wall_seconds']:.0f} s. Metrics: {FLAGS.model_dir}/metrics.json, "
        f"curve: {FLAGS.model_dir}/curve.png"
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
