"""`MNM`: the sequence layer of Metalearned Neural Memory (like `keras.layers.LSTM`)."""

from __future__ import annotations

import keras
from keras import ops

from mnm_keras import _utils, core
from mnm_keras._sequence_layer import LAYER_KWARGS, FusedRNN
from mnm_keras.mnm_cell import MNMCell


@keras.saving.register_keras_serializable(package="mnm_keras")
class MNM(FusedRNN):
    """Runs an `MNMCell` over a sequence and adds its meta loss (equation 5) to the model.

    A `keras.layers.RNN` of an `MNMCell` whose inner loop runs the whole sequence at once
    (`mnm_keras.core.unroll`: the fused kernel or the XLA loop). A loss cannot leave a
    recurrent loop through ``add_loss``, so the cell accumulates, per sequence, the sum of
    its per-step meta losses and the number of (unmasked) steps in its state; at the end of
    each call this layer takes what the call added to them and

    * adds ``meta_loss_weight * mean_batch(sum / steps)`` with ``add_loss``, so `fit`
      minimises ``L_task + meta_loss_weight * L_meta`` (equation 6; the gradient reaches the
      controller through the writes);
    * tracks the unweighted meta loss in a metric named ``meta_loss``, which `fit` prints
      and writes to its history and TensorBoard logs (not on the JAX backend, where Keras'
      trainer cannot update a layer's metric: keras-team/keras#21639).

    Args:
      units: controller size; every other `MNMCell` argument is accepted by keyword.
      return_sequences: return ``y_t`` for every step (``[batch, time, output_units]``)
        rather than only the last (``[batch, output_units]``).
      return_state: also return the final state list of the cell.
      go_backwards, unroll: as in `keras.layers.RNN`.
      stateful: as in `keras.layers.RNN`: each call starts from the state the previous
        call ended in (the batch size must then be fixed), so that a long sequence, or an
        agent's episode, can be fed in pieces with the outputs of one call on the whole;
        ``layer.reset_state()`` starts over from the initial state (phi_0). The meta loss
        of a call is that of its own steps.
      memory_efficient: run the sequence with the memory-efficient backward pass
        (default True): instead of keeping every step's memory weights for
        back-propagation, it keeps the rank-H factors of each write and rebuilds the
        weights backwards, step by step (see `mnm_keras.core.unroll`). Outputs and gradients
        are those of ``keras.layers.RNN(MNMCell(...))`` (tested); training memory grows with
        the sequence length by the size of the controller state and the factors rather
        than the memory weights, and each step's forward pass runs twice. ``False``
        (or ``unroll=True``) uses `keras.layers.RNN` itself.
      **kwargs: `MNMCell` arguments (``write_rule``, ``num_heads``, ...) and base `Layer`
        arguments (``name``, ``dtype``).

    Call arguments:
      sequences: ``[batch, time, features]``.
      initial_state: optional state list (default `MNMCell.get_initial_state`).
      mask: optional ``[batch, time]`` boolean mask; masked steps leave the state unchanged
        and do not count in the meta loss.
      training: passed to the cell.

    Example:

    ```python
    import keras, mnm_keras
    inputs = keras.Input((None, 8))
    features = mnm_keras.MNM(32, memory_units=16, key_size=16, value_size=16)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(features))
    ```
    """

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        unroll=False,
        memory_efficient=True,
        stateful=False,
        **kwargs,
    ):
        _utils.check_backend("MNM")
        layer_kwargs = {k: kwargs.pop(k) for k in LAYER_KWARGS if k in kwargs}
        # Mixed precision: the requested policy (``controller_dtype``, else ``dtype``, else
        # the global policy) goes to the cell's controller and projections; the layer
        # itself computes in float32 so that no variable it reads (phi_0, the weights the
        # memory-efficient path binds) is rounded to half precision, and it casts its
        # output to the policy's compute dtype.
        requested = layer_kwargs.pop("dtype", None)
        policy = kwargs.pop("controller_dtype", None) or requested
        policy = keras.dtype_policies.get(policy or keras.config.dtype_policy())
        super().__init__(
            MNMCell(units, controller_dtype=policy, name="mnm_cell", **kwargs),
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            dtype="float32",
            **layer_kwargs,
        )
        self.output_dtype = policy.compute_dtype
        self.memory_efficient = bool(memory_efficient)
        # On JAX a metric that a layer updates inside `call` breaks `fit` (Keras' JAX
        # trainer does not pass a layer's metric variables through its stateless forward
        # pass: keras-team/keras#21639), so there the meta loss is trained but not tracked.
        self.meta_loss_tracker = (
            None if keras.backend.backend() == "jax" else keras.metrics.Mean(name="meta_loss")
        )

    @property
    def meta_loss_weight(self):
        return self.cell.meta_loss_weight

    def call(self, sequences, initial_state=None, mask=None, training=False):
        result = super().call(sequences, initial_state=initial_state, mask=mask, training=training)
        if self.return_state:
            return (ops.cast(result[0], self.output_dtype), *result[1:])
        return ops.cast(result, self.output_dtype)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        last, outputs, states = super().inner_loop(sequences, initial_state, mask, training)
        config = self.cell.config
        start, final = core.unpack(config, initial_state), core.unpack(config, states)
        # This call's own steps: what it added to the accumulated sum and count.
        meta = final.meta - start.meta
        meta_loss = ops.mean(meta[:, 0] / ops.maximum(meta[:, 1], 1.0))
        if self.cell.meta_loss_weight:
            self.add_loss(self.cell.meta_loss_weight * meta_loss)
        if self.meta_loss_tracker is not None:
            self.meta_loss_tracker.update_state(meta_loss)
        return last, outputs, states

    def _fused_loop(self, sequences, initial_state, mask):
        cell, config = self.cell, self.cell.config
        outputs, final = core.unroll(
            config,
            cell.params(),
            sequences,
            core.unpack(config, initial_state),
            mask=mask,
            reverse=self.go_backwards,
            jit_compile=cell.jit_compile,
            implementation=cell.implementation,
        )
        return outputs[:, -1], outputs, core.pack(config, final)

    def get_config(self):
        return self._sequence_config(memory_efficient=self.memory_efficient)
