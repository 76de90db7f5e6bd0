r"""Train an MNM model with `fit` under a `tf.distribute` strategy.

One machine, two logical CPU devices, synchronous data parallelism:

    python examples/distributed.py --strategy=mirrored --logical_cpus=2 --model_dir=runs/mirrored

Several machines (or several processes on one machine): start the same command on every
worker, each with its own ``TF_CONFIG`` (the cluster's ``host:port`` list and this
worker's index), e.g. for two workers on hosts ``a`` and ``b``:

    TF_CONFIG='{"cluster": {"worker": ["a:12345", "b:12345"]}, "task": {"type": "worker", "index": 0}}' \
        python examples/distributed.py --strategy=multi_worker --model_dir=runs/mw
    # on b: the same with "index": 1

`fit` trains under ``one_device`` and ``mirrored``. Under ``multi_worker`` Keras 3.15's
`fit` fails before the first step (it reduces a batch of `PerReplica` inputs while
building; keras-team/keras#20585, open), so that strategy trains with a short custom loop
over `strategy.run` with the same model, loss, meta loss (``model.losses``) and optimizer.

The model is MNM on the associative-recall task (`mnm_keras.tasks`), with a fixed global
batch (``--batch_size``); every replica gets ``batch_size / replicas`` episodes per step.
Every flag is a field of `Config`. The run trains ``--train_steps`` steps in one epoch,
without checkpoints (it does not resume: a ``--model_dir`` that holds a run is refused),
and writes the run record ``--model_dir/metrics.json`` (`examples.training.RunRecorder`;
its ``results``: the ``replicas``, the ``step_losses``, each step's training loss as Keras
logs it, the running mean over the epoch, and the ``final_loss``) and
``--model_dir/weights.npz`` (the trained weights), which the tests compare across
strategies and workers.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from mnm_keras import models, tasks
from mnm_keras._utils import derive_seed

try:  # run as a script (python examples/distributed.py) or as a module (-m)
    from examples import training
    from examples.config_flags import main, option
except ImportError:  # pragma: no cover
    import training
    from config_flags import main, option

TASK_NAME = "distributed"
STRATEGIES = ("one_device", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class Config:
    """One distributed run; every field is a flag of the same name."""

    strategy: str = option("one_device", "tf.distribute strategy.", choices=STRATEGIES)
    logical_cpus: int = option(1, "Split the CPU into this many logical devices.")
    model: str = option("mnm_p", "Write rule.", choices=("mnm_p", "mnm_g"))
    train_steps: int = option(5, "Optimizer steps.")
    batch_size: int = option(
        8, "The global batch: episodes per step over all replicas (each gets its share)."
    )
    learning_rate: float = option(1e-2, "Adam learning rate.")
    units: int = option(16, "Controller units.")
    memory_units: int = option(8, "Memory width.")
    memory_layers: int = option(3, "Memory layers.")
    key_size: int = option(8, "d_k = d_v.")
    num_heads: int = option(1, "Heads H.")
    normalize_writes: bool = option(
        True, "MNM: normalised writes (default); --nonormalize_writes: the paper's writes."
    )
    seed: int = option(0, "Seed of data and initialisation.")
    model_dir: str = option("runs/distributed", "The run record and the trained weights.")

    def __post_init__(self):
        for name in (
            "logical_cpus",
            "train_steps",
            "batch_size",
            "units",
            "memory_units",
            "memory_layers",
            "key_size",
            "num_heads",
        ):
            training.check_positive_int(name, getattr(self, name))
        if not self.learning_rate > 0:
            raise ValueError(
                f"`learning_rate` must be positive; received learning_rate={self.learning_rate!r}."
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"`strategy` must be one of {list(STRATEGIES)}; received {self.strategy!r}."
            )
        if self.model not in ("mnm_p", "mnm_g"):
            raise ValueError(f"`model` must be mnm_p or mnm_g; received {self.model!r}.")


def configure_logical_cpus(count):
    """Splits the first CPU into ``count`` logical devices (before TensorFlow starts)."""
    cpus = tf.config.list_physical_devices("CPU")
    if count > 1:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
        )


def make_strategy(name):
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


def run(config, verbose=1, callbacks=()):
    """Trains a small MNM model under ``config.strategy``.

    Call it before TensorFlow has started (``config.logical_cpus`` splits the CPU first).

    Args:
      callbacks: extra Keras callbacks for `fit` (``one_device`` and ``mirrored`` only:
        ``multi_worker`` trains with a custom loop).

    Returns:
      The run record written to ``model_dir/metrics.json`` (`training.RunRecorder`).

    Raises:
      ValueError: ``model_dir`` already holds a run (these runs do not resume), or
        ``callbacks`` with ``multi_worker``.
    """
    if os.path.exists(os.path.join(config.model_dir, "invocations.json")):
        raise ValueError(
            f"`model_dir` ({config.model_dir!r}) already holds a run; distributed runs do "
            "not resume: pass a new model_dir."
        )
    if callbacks and config.strategy == "multi_worker":
        raise ValueError("`callbacks` are for `fit`; strategy='multi_worker' trains without it.")
    configure_logical_cpus(config.logical_cpus)
    recorder = training.RunRecorder(config.model_dir, TASK_NAME, config)
    strategy = make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    x, y = tasks.associative_recall(
        config.train_steps * config.batch_size, seed=derive_seed(config.seed, "training_episodes")
    )
    with strategy.scope():
        inputs = keras.Input((x.shape[1], x.shape[2]))
        features = models.recurrent_layer(
            config.model,
            units=config.units,
            memory_units=config.memory_units,
            memory_layers=config.memory_layers,
            key_size=config.key_size,
            value_size=config.key_size,
            num_heads=config.num_heads,
            seed=config.seed,
            normalize_writes=config.normalize_writes,
        )(inputs)
        network = keras.Model(inputs, keras.layers.Dense(8)(features))
        # One answer per episode and no sample weights: the mean over the batch is the
        # mean over answers (with answer weights, mean_with_sample_weight divides by their
        # sum on each replica; docs/design.md, "Task loss and meta loss").
        network.compile(
            keras.optimizers.Adam(config.learning_rate),
            keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"
            ),
        )
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(config.batch_size)
    options = tf.data.Options()
    # Every worker reads the same stream and keeps its share of each global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(options)
    start = time.perf_counter()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        losses = _custom_loop(strategy, network, data, config.train_steps, config.batch_size)
    else:
        with training.closing_streams():
            losses = _fit(network, data, config.train_steps, verbose, callbacks)
    seconds = time.perf_counter() - start
    np.savez(
        os.path.join(config.model_dir, "weights.npz"),
        *[np.asarray(w) for w in network.get_weights()],
    )
    return recorder.finish(
        {
            "replicas": strategy.num_replicas_in_sync,
            "final_loss": losses[-1],
            "step_losses": losses,
        },
        history=[
            {"epoch": 0, "step": config.train_steps, "epoch_seconds": seconds, "loss": losses[-1]}
        ],
        model=network,
    )


def _fit(network, data, train_steps, verbose=0, callbacks=()):
    """`fit`; returns the loss logged after every step (the running mean of the epoch)."""

    class PerStepLoss(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    record = PerStepLoss()
    network.fit(
        data,
        epochs=1,
        steps_per_epoch=train_steps,
        callbacks=[training.StopOnNonFinite(), record, *callbacks],
        verbose=verbose,
    )
    return record.losses


def _custom_loop(strategy, network, data, train_steps, global_batch_size):
    """Synchronous data-parallel steps with `strategy.run`; returns each step's loss."""
    loss_fn = network.loss
    optimizer = network.optimizer

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            logits = network(x, training=True)
            per_example = loss_fn.call(y, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            # The meta loss (added by the MNM layer) is a per-replica mean already.
            loss += tf.add_n(network.losses) / strategy.num_replicas_in_sync
        gradients = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(gradients, network.trainable_variables))
        return loss

    @tf.function
    def train_step(iterator):
        x, y = next(iterator)
        return strategy.reduce("SUM", strategy.run(replica_step, args=(x, y)), axis=None)

    iterator = iter(strategy.experimental_distribute_dataset(data))
    losses = []
    for step in range(1, train_steps + 1):
        losses.append(float(train_step(iterator)))
        training.check_finite(step, {"loss": losses[-1]}, network.weights, where="multi_worker")
    return losses


def summary(record):
    results = record["results"]
    losses = " ".join(f"{v:.6f}" for v in results["step_losses"])
    return f"{results['replicas']} replica(s), losses: {losses}"


if __name__ == "__main__":
    main(Config, run, summary)
