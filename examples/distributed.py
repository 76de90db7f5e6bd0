r"""Train an MNM model with `fit` under a `tf.distribute` strategy.

One machine, two logical CPU devices (or two GPUs), synchronous data parallelism:

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
batch; every replica gets ``global_batch / replicas`` episodes per step. The script writes
``--model_dir/losses.json`` (the replica count and the per-step training loss, as Keras logs it: the running mean
over the epoch) and ``--model_dir/weights.npz``
(the trained weights), which the tests compare across strategies and workers.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_enum("strategy", "one_device", ["one_device", "mirrored", "multi_worker"], "")
    flags.DEFINE_integer("logical_cpus", 1, "Split the CPU into this many logical devices.")
    flags.DEFINE_enum("model", "mnm_p", ["mnm_p", "mnm_g"], "Write rule.")
    flags.DEFINE_integer("train_steps", 5, "Optimizer steps.")
    flags.DEFINE_integer("global_batch_size", 8, "Episodes per step, over all replicas.")
    flags.DEFINE_integer("seed", 0, "Seed.")
    flags.DEFINE_string("model_dir", "runs/distributed", "Output directory.")


def configure_logical_cpus(count):
    """Splits the first CPU into ``count`` logical devices (before TensorFlow starts)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    if count > 1:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
        )


def make_strategy(name):
    import tensorflow as tf

    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


def train(model_dir, strategy, model="mnm_p", train_steps=5, global_batch_size=8, seed=0):
    """Trains a small MNM model under ``strategy``; returns the per-step losses."""
    import keras
    import numpy as np
    import tensorflow as tf

    from mnm_keras import models, tasks

    keras.utils.set_random_seed(seed)
    x, y = tasks.associative_recall(train_steps * global_batch_size, seed=seed)
    with strategy.scope():
        inputs = keras.Input((x.shape[1], x.shape[2]))
        features = models.recurrent_layer(
            model, units=16, memory_units=8, key_size=8, value_size=8, seed=seed
        )(inputs)
        network = keras.Model(inputs, keras.layers.Dense(8)(features))
        network.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch_size)
    options = tf.data.Options()
    # Every worker reads the same stream and keeps its share of each global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.with_options(options)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        losses = _custom_loop(strategy, network, data, train_steps, global_batch_size)
    else:
        losses = _fit(network, data, train_steps)
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "losses.json"), "w") as f:
        json.dump({"replicas": strategy.num_replicas_in_sync, "losses": losses}, f)
    np.savez(
        os.path.join(model_dir, "weights.npz"),
        *[np.asarray(w) for w in network.get_weights()],
    )
    return losses


def _fit(network, data, train_steps):
    """`fit`; returns the loss logged after every step (the running mean of the epoch)."""
    import keras

    class PerStepLoss(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    record = PerStepLoss()
    network.fit(data, epochs=1, steps_per_epoch=train_steps, callbacks=[record], verbose=0)
    return record.losses


def _custom_loop(strategy, network, data, train_steps, global_batch_size):
    """Synchronous data-parallel steps with `strategy.run`; returns each step's loss."""
    import tensorflow as tf

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
    return [float(train_step(iterator)) for _ in range(train_steps)]


def main(argv):
    del argv
    configure_logical_cpus(FLAGS.logical_cpus)
    losses = train(
        FLAGS.model_dir,
        make_strategy(FLAGS.strategy),
        model=FLAGS.model,
        train_steps=FLAGS.train_steps,
        global_batch_size=FLAGS.global_batch_size,
        seed=FLAGS.seed,
    )
    print("losses:", " ".join(f"{v:.6f}" for v in losses))


if __name__ == "__main__":
    define_flags()
    app.run(main)
