r"""The paper's algorithmic tasks (section 4.1): dictionary inference, double copy, sort.

    python examples/algorithmic.py --task=dictionary --support_size=8 --sequence_length=4 \
        --model=mnm_p --train_steps=20000 --model_dir=runs/dict_8_4_mnm_p

Models: ``mnm_p``, ``mnm_g``, ``salu``, ``lstm`` with the sizes of the paper's table 2
(controller 100, memory 3 x 100, d_k = d_v = 100, H = 1; output layer on every step). Adam
with learning rate 1e-3, batch 32 (appendix A). The loss and the metrics count only the
answer positions: the task loss is the mean cross-entropy per answer position, and MNM
adds ``--meta_loss_weight`` (default 1.0, equation 6) times its meta loss. Evaluation uses ``--eval_episodes`` held-out episodes drawn from another
seed; ``eval_sequence_error`` is the fraction of them with any wrong answer symbol (bit,
for priority sort) and ``eval_symbol_error`` the fraction of wrong answer symbols (bits).

Every flag is a field of `Config`. Rerunning the same command resumes from the last
finished epoch (``--model_dir/backup``); a budget that is not a whole number of epochs ends
with a shorter epoch. At the end: the run record ``--model_dir/metrics.json``
(`examples.training.RunRecorder`), ``--model_dir/curve.png``, TensorBoard logs in
``--model_dir/logs``.
"""

from __future__ import annotations

import dataclasses

import keras

from mnm_keras import datasets, models
from mnm_keras._utils import derive_seed
from mnm_keras.metrics import SequenceError, SymbolError

try:  # run as a script (python examples/algorithmic.py) or as a module (-m)
    from examples import training
    from examples.config_flags import main, option
except ImportError:  # pragma: no cover
    import training
    from config_flags import main, option


@dataclasses.dataclass(frozen=True)
class Config:
    """One run of an algorithmic task; every field is a flag of the same name."""

    task: str = option("dictionary", "Task.", choices=sorted(datasets.TASKS))
    model: str = option("mnm_p", "Model.", choices=models.MODEL_NAMES)
    support_size: int = option(4, "Dictionary inference: support examples k.")
    sequence_length: int = option(1, "Dictionary inference: letters per sequence l.")
    train_steps: int = option(2000, "Optimizer steps.")
    steps_per_epoch: int = option(200, "Steps between evaluations and checkpoints.")
    batch_size: int = option(32, "Episodes per step (paper: 32).")
    learning_rate: float = option(1e-3, "Adam learning rate (paper: 1e-3).")
    gradient_clipping: float | None = option(
        None, "Bound on the gradient's global norm (paper: none)."
    )
    units: int = option(100, "Controller (or LSTM) units d_h (paper: 100).")
    memory_units: int = option(100, "Memory width D_l (paper: 100).")
    memory_layers: int = option(3, "Memory layers (paper: 3).")
    key_size: int = option(100, "d_k = d_v (paper: 100).")
    num_heads: int = option(1, "Heads H (paper: 1).")
    normalize_writes: bool = option(
        True, "MNM: normalised writes (default); --nonormalize_writes: the paper's writes."
    )
    meta_loss_weight: float = option(
        1.0, "MNM: weight of the meta loss beside the task loss (equation 6: 1.0)."
    )
    eval_episodes: int = option(500, "Held-out episodes.")
    seed: int = option(0, "Seed of data and initialisation.")
    model_dir: str = option("runs/algorithmic", "Checkpoints, logs and the run record.")
    init_from: str | None = option(
        None,
        "A new run starts from the weights of this run's model_dir (its latest checkpoint) "
        "or this .weights.h5 file, with a new optimizer: e.g. dictionary (12, 8) from a "
        "(8, 4) run. Same model and sizes. Ignored when --model_dir resumes.",
    )

    def __post_init__(self):
        for name in (
            "support_size",
            "sequence_length",
            "train_steps",
            "steps_per_epoch",
            "batch_size",
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
        if self.gradient_clipping is not None and not self.gradient_clipping > 0:
            raise ValueError(
                "`gradient_clipping` must be a positive global norm or None; received "
                f"gradient_clipping={self.gradient_clipping!r}."
            )
        if self.task not in datasets.TASKS:
            raise ValueError(
                f"`task` must be one of {sorted(datasets.TASKS)}; received {self.task!r}."
            )
        if self.model not in models.MODEL_NAMES:
            raise ValueError(
                f"`model` must be one of {list(models.MODEL_NAMES)}; received {self.model!r}."
            )


def build_model(task, config):
    """A compiled Keras model for ``task``: recurrent layer, then a per-step output layer.

    The task loss is the mean over answer positions: the task's weights (1 at the answers,
    0 elsewhere) are the sample weights, and ``reduction="mean_with_sample_weight"``
    divides the weighted sum by the sum of the weights (Keras' default would divide by
    every position, B x T). For priority sort the loss of one position is the mean
    over its bits. MNM adds ``config.meta_loss_weight`` times its meta loss, a mean over
    steps (equation 6; docs/design.md, "Task loss and meta loss").

    ``config.gradient_clipping``: if set, Adam rescales each step's gradients to at most
    this global norm (``keras.optimizers.Adam(global_clipnorm=...)``); None (the paper)
    does not.
    """
    binary = task.output_type == "binary"
    inputs = keras.Input((task.length, task.input_size))
    features = models.recurrent_layer(
        config.model,
        units=config.units,
        memory_units=config.memory_units,
        memory_layers=config.memory_layers,
        key_size=config.key_size,
        value_size=config.key_size,
        num_heads=config.num_heads,
        max_length=task.length,
        return_sequences=True,
        seed=config.seed,
        normalize_writes=config.normalize_writes,
        meta_loss_weight=config.meta_loss_weight,
    )(inputs)
    logits = keras.layers.Dense(task.output_size, name="logits")(features)
    network = keras.Model(inputs, logits, name=f"{task.name}_{config.model}")
    loss_class = (
        keras.losses.BinaryCrossentropy if binary else keras.losses.SparseCategoricalCrossentropy
    )
    loss = loss_class(from_logits=True, reduction="mean_with_sample_weight")
    network.compile(
        keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.gradient_clipping),
        loss,
        weighted_metrics=[SymbolError(binary), SequenceError(binary)],
    )
    return network


def make_task(config):
    if config.task == "dictionary":
        return datasets.get_task(
            "dictionary", support_size=config.support_size, sequence_length=config.sequence_length
        )
    return datasets.get_task(config.task)


def run(config, verbose=1, callbacks=()):
    """Trains ``config.model`` on ``config.task`` with `fit`, evaluates on held-out episodes.

    ``config.init_from`` (a run's model_dir or a ``.weights.h5`` file) starts a new run from
    those weights with a new optimizer (`examples.training.warm_start`); a run that
    resumes from its own checkpoint in ``model_dir`` does not use it.

    Returns:
      The run record written to ``model_dir/metrics.json`` (`training.RunRecorder`); its
      ``results`` are ``eval_sequence_error`` and ``eval_symbol_error``.
    """
    budget = training.plan_budget(config.model_dir, config.train_steps, config.steps_per_epoch)
    recorder = training.RunRecorder(config.model_dir, "algorithmic", config, budget.done_steps)
    keras.utils.set_random_seed(config.seed)
    spec = make_task(config)
    network = build_model(spec, config)
    # Training episodes stream from a sub-seed of `seed` (a resumed run skips those of its
    # finished epochs); held-out episodes come from another.
    skipped = budget.done_steps * config.batch_size
    if config.init_from and not skipped:
        training.warm_start(network, config.init_from)
        if verbose:
            print(f"Starting from the weights of {config.init_from}.", flush=True)
    if skipped and verbose:
        print(
            f"Resuming after {budget.done_steps} steps: the training stream skips the "
            f"{skipped} episodes already trained on.",
            flush=True,
        )
    # The stream ends with the budget: no prefetch is left inside its generator at exit.
    train_data = spec.dataset(
        config.batch_size,
        seed=derive_seed(config.seed, "training_episodes"),
        num_episodes=(config.train_steps - budget.done_steps) * config.batch_size,
        start=skipped,
    )
    x_eval, y_eval, w_eval = spec.arrays(
        config.eval_episodes, seed=derive_seed(config.seed, "held_out_episodes")
    )
    with training.closing_streams(), training.recording_divergence(recorder):
        network.fit(
            train_data,
            epochs=budget.epochs,
            steps_per_epoch=config.steps_per_epoch,
            validation_data=(x_eval, y_eval, w_eval),
            callbacks=[
                *training.resumable_callbacks(config.model_dir, config.train_steps),
                *callbacks,
            ],
            verbose=verbose,
            shuffle=False,  # the stream is already random
        )
    evaluation = network.evaluate(
        x_eval,
        y_eval,
        sample_weight=w_eval,
        verbose=0,
        return_dict=True,
        batch_size=config.batch_size,
    )
    return recorder.finish(
        {
            "eval_sequence_error": float(evaluation["sequence_error"]),
            "eval_symbol_error": float(evaluation["symbol_error"]),
        },
        {
            "train symbol error": lambda row: row["symbol_error"],
            "held-out symbol error": lambda row: row["val_symbol_error"],
            "held-out sequence error": lambda row: row["val_sequence_error"],
        },
        title=f"{config.task}, {config.model}",
        ylabel="error",
        model=network,
    )


def summary(record):
    config, results = record["config"], record["results"]
    return (
        f"\n{config['task']} / {config['model']}: held-out sequence error "
        f"{results['eval_sequence_error']:.3f}, symbol error {results['eval_symbol_error']:.3f} "
        f"after {record['train_steps']} steps ({record['wall_seconds']:.0f} s). "
        f"{config['model_dir']}/metrics.json"
    )


if __name__ == "__main__":
    main(Config, run, summary)
