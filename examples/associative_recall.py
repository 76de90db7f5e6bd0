r"""Train a model on associative recall (the demo): store key -> value pairs, recall one.

    python examples/associative_recall.py --model=mnm_p --model_dir=runs/demo

The task is `mnm_keras.tasks.associative_recall`: every episode shows ``num_pairs`` random
(key, value) pairs, one per step, then a query key; the answer is the value stored with
it. The pairs change every episode, so only a memory of the episode answers above chance.

Every flag is a field of `Config`. Rerunning the same command resumes from the last
finished epoch (checkpoints in ``--model_dir/backup``; the training stream skips the
batches already trained on); a budget that is not a whole number of epochs ends with a
shorter epoch. At the end the script writes the run record ``--model_dir/metrics.json``
(`examples.training.RunRecorder`), ``--model_dir/curve.png`` and TensorBoard logs in
``--model_dir/logs``.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from mnm_keras import models, tasks
from mnm_keras._utils import derive_seed

try:  # run as a script (python examples/associative_recall.py) or as a module (-m)
    from examples import training
    from examples.config_flags import main, option
except ImportError:  # pragma: no cover
    import training
    from config_flags import main, option

TASK_NAME = "associative_recall"


@dataclasses.dataclass(frozen=True)
class Config:
    """One run of associative recall; every field is a flag of the same name."""

    model: str = option("mnm_p", "Model.", choices=models.MODEL_NAMES)
    train_steps: int = option(1200, "Optimizer steps.")
    steps_per_epoch: int = option(100, "Steps between evaluations and checkpoints.")
    batch_size: int = option(32, "Episodes per step.")
    learning_rate: float = option(1e-2, "Adam learning rate.")
    num_pairs: int = option(4, "Pairs stored per episode.")
    num_symbols: int = option(8, "Number of key symbols and of value symbols.")
    units: int = option(64, "Controller (or LSTM) units.")
    memory_units: int = option(32, "MNM memory width.")
    memory_layers: int = option(3, "MNM memory layers.")
    key_size: int = option(32, "d_k = d_v (MNM and SALU).")
    num_heads: int = option(1, "Heads H (MNM and SALU).")
    normalize_writes: bool = option(
        True, "MNM: normalised writes (default); --nonormalize_writes: the paper's writes."
    )
    meta_loss_weight: float = option(
        1.0, "MNM: weight of the meta loss beside the task loss (equation 6: 1.0)."
    )
    eval_episodes: int = option(1000, "Held-out episodes.")
    seed: int = option(0, "Seed of data, initialisation and shuffling.")
    model_dir: str = option("runs/associative_recall", "Checkpoints, logs and the run record.")

    def __post_init__(self):
        for name in (
            "train_steps",
            "steps_per_epoch",
            "batch_size",
            "num_pairs",
            "num_symbols",
            "units",
            "memory_units",
            "memory_layers",
            "key_size",
            "num_heads",
            "eval_episodes",
        ):
            training.check_positive_int(name, getattr(self, name))
        if not self.learning_rate > 0:
            raise ValueError(
                f"`learning_rate` must be positive; received learning_rate={self.learning_rate!r}."
            )
        if not self.meta_loss_weight >= 0:
            raise ValueError(
                "`meta_loss_weight` must be a non-negative number; received "
                f"meta_loss_weight={self.meta_loss_weight!r}."
            )
        if self.num_symbols < 2 or self.num_pairs > self.num_symbols:
            raise ValueError(
                f"`num_symbols` must be at least 2 and at least `num_pairs` ({self.num_pairs}); "
                f"received num_symbols={self.num_symbols}."
            )
        if self.model not in models.MODEL_NAMES:
            raise ValueError(
                f"`model` must be one of {list(models.MODEL_NAMES)}; received {self.model!r}."
            )


def build_model(config, length, input_size):
    """A compiled classifier of the query step's value: recurrent layer, then logits.

    Every episode has one answer, the query step's value, and no other target, so the
    mean over the batch (no sample weights) is the mean over answers; the loss says so with
    ``reduction="mean_with_sample_weight"``, which a copy with answer weights needs (see
    ``examples/algorithmic.py``). MNM adds ``config.meta_loss_weight`` times its meta loss
    (equation 6).
    """
    inputs = keras.Input((None, input_size))
    features = models.recurrent_layer(
        config.model,
        units=config.units,
        memory_units=config.memory_units,
        memory_layers=config.memory_layers,
        key_size=config.key_size,
        value_size=config.key_size,
        num_heads=config.num_heads,
        max_length=length,
        seed=config.seed,
        normalize_writes=config.normalize_writes,
        meta_loss_weight=config.meta_loss_weight,
    )(inputs)
    network = keras.Model(
        inputs, keras.layers.Dense(config.num_symbols)(features), name=config.model
    )
    network.compile(
        keras.optimizers.Adam(config.learning_rate),
        keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        metrics=["accuracy"],
    )
    return network


def run(config, verbose=1, callbacks=()):
    """Trains ``config.model`` on associative recall, evaluates it on held-out episodes.

    Rerunning with the same ``model_dir`` resumes from the last finished epoch: after an
    interruption it continues the same run, and after a finished run it only trains the
    steps that a larger ``train_steps`` adds.

    Args:
      callbacks: extra Keras callbacks for `fit`.

    Returns:
      The run record written to ``model_dir/metrics.json`` (`training.RunRecorder`); its
      ``results`` are ``eval_accuracy``, ``eval_error`` and ``chance_error``.
    """
    budget = training.plan_budget(config.model_dir, config.train_steps, config.steps_per_epoch)
    recorder = training.RunRecorder(config.model_dir, TASK_NAME, config, budget.done_steps)
    keras.utils.set_random_seed(config.seed)
    task = dict(
        num_pairs=config.num_pairs, num_keys=config.num_symbols, num_values=config.num_symbols
    )
    x_train, y_train = tasks.associative_recall(
        config.train_steps * config.batch_size,
        seed=derive_seed(config.seed, "training_episodes"),
        **task,
    )
    # Held-out episodes come from another sub-seed.
    x_eval, y_eval = tasks.associative_recall(
        config.eval_episodes, seed=derive_seed(config.seed, "held_out_episodes"), **task
    )
    network = build_model(config, x_train.shape[1], x_train.shape[-1])
    # A resumed run skips the batches of the steps already trained.
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .batch(config.batch_size, drop_remainder=True)
        .repeat()
        .skip(budget.done_steps)
    )
    with training.closing_streams(), training.recording_divergence(recorder):
        network.fit(
            train,
            epochs=budget.epochs,
            steps_per_epoch=config.steps_per_epoch,
            validation_data=(x_eval, y_eval),
            callbacks=[
                *training.resumable_callbacks(config.model_dir, config.train_steps),
                *callbacks,
            ],
            verbose=verbose,
            shuffle=False,  # the stream is already random
        )
    evaluation = network.evaluate(x_eval, y_eval, verbose=0, return_dict=True)
    chance = 1.0 - 1.0 / config.num_symbols
    return recorder.finish(
        {
            "eval_accuracy": float(evaluation["accuracy"]),
            "eval_error": 1.0 - float(evaluation["accuracy"]),
            "chance_error": chance,
        },
        {
            "train error": lambda row: 1 - row["accuracy"],
            "held-out error": lambda row: 1 - row["val_accuracy"],
        },
        title=f"associative recall, {config.model}",
        ylabel="error",
        reference=("chance", chance),
        model=network,
    )


def summary(record):
    config, results = record["config"], record["results"]
    return (
        f"\n{config['model']}: held-out error {results['eval_error']:.3f} "
        f"(chance {results['chance_error']:.3f}) after {record['train_steps']} steps, "
        f"{record['wall_seconds']:.0f} s. Metrics: {config['model_dir']}/metrics.json, "
        f"curve: {config['model_dir']}/curve.png"
    )


if __name__ == "__main__":
    main(Config, run, summary)
