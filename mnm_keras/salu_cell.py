"""`SALUCell`: the LSTM + soft-attention look-up table baseline of the paper (section 4.1)."""

from __future__ import annotations

import keras
from keras import ops

from mnm_keras import _utils, core
from mnm_keras._controller import ControllerCell
from mnm_keras._utils import check_positive_int


def soft_attention_read(table_keys, table_values, queries, valid):
    """Soft-attention read from a look-up table, for every query head.

    ``r_i = sum_s softmax_s(q_i . K_s / sqrt(d_k)) V_s`` over the valid slots s only.

    Args:
      table_keys: ``[batch, slots, d_k]``.
      table_values: ``[batch, slots, d_v]``.
      queries: ``[batch, heads, d_k]``.
      valid: ``[batch, slots]``, 1.0 for slots that hold a written pair, else 0.0. Every
        row must have at least one valid slot.

    Returns:
      ``[batch, heads, d_v]``.
    """
    scale = ops.rsqrt(ops.cast(queries.shape[-1], queries.dtype))
    scores = ops.einsum("bhk,bsk->bhs", queries, table_keys) * scale
    scores += (1.0 - valid[:, None, :]) * ops.cast(-1e9, scores.dtype)
    weights = ops.softmax(scores, axis=-1)
    return ops.einsum("bhs,bsv->bhv", weights, table_values)


@keras.saving.register_keras_serializable(package="mnm_keras")
class SALUCell(ControllerCell):
    """LSTM controller with a soft-attention look-up table (the paper's LSTM+SALU baseline).

    The same controller and interface as `MNMCell` (equation 1 without the rate), with the
    neural memory replaced by a table: at step t every write head appends its
    ``(k^w_{t,i}, v^w_{t,i})`` to the table, then every read head reads by softmax attention
    (`soft_attention_read`) over all slots written so far, and ``v^r_t`` is the mean over
    heads. Output ``y_t = W_y [h_t; v^r_t] + b_y``.

    The table holds ``max_length * num_heads`` slots; a step costs O(slots), so a sequence
    of T <= max_length steps costs O(T * max_length): set ``max_length`` to the longest
    sequence. Past ``max_length`` steps the table is a ring buffer: each step overwrites the
    pairs of the step written ``max_length`` steps earlier.

    Args:
      units: controller LSTM size.
      max_length: number of steps the table holds (required).
      key_size, value_size, num_heads: d_k, d_v and H.
      output_units: size of ``y_t`` (default ``units``).
      seed: seed of the default initializers.
      kernel_initializer, recurrent_initializer, bias_initializer, kernel_regularizer,
      bias_regularizer: as in `keras.layers.LSTMCell`.

    Example:

    ```python
    import keras, mnm_keras
    layer = keras.layers.RNN(mnm_keras.SALUCell(32, max_length=5, key_size=8, value_size=8))
    y = layer(keras.random.normal((2, 5, 8)))  # [2, 32]
    ```
    """

    def __init__(
        self,
        units,
        max_length,
        key_size=100,
        value_size=100,
        num_heads=1,
        output_units=None,
        seed=None,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        _utils.check_backend("SALUCell")
        super().__init__(
            units,
            key_size,
            value_size,
            num_heads,
            output_units,
            seed,
            kernel_initializer,
            recurrent_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            **kwargs,
        )
        check_positive_int("max_length", max_length)
        self.max_length = max_length
        self.slots = max_length * num_heads
        self.state_size = [
            units,
            units,
            value_size,
            self.slots * key_size,
            self.slots * value_size,
            1,  # number of steps written
        ]

    def build(self, input_shape):
        self._build_controller(input_shape)
        heads, dk, dv = self.num_heads, self.key_size, self.value_size
        self.interface = self._dense(heads * (2 * dk + dv), "tanh", "interface", 1, self.units)
        self.output_projection = self._dense(self.output_size, None, "output", 2, self.units + dv)

    def get_initial_state(self, batch_size=None, dtype=None):
        if batch_size is None:
            raise ValueError("`batch_size` must be given to SALUCell.get_initial_state.")
        dtype = dtype or self.compute_dtype
        return [ops.zeros((batch_size, size), dtype) for size in self.state_size]

    def call(self, inputs, states, training=False):
        h, c, previous_read, flat_keys, flat_values, count = states
        heads, dk, dv = self.num_heads, self.key_size, self.value_size
        controller_input = ops.concatenate([inputs, ops.cast(previous_read, inputs.dtype)], axis=-1)
        h, (h, c) = self.controller(controller_input, [h, c], training=training)
        read_keys, write_keys, values = core._split(
            self.interface(h), [heads * dk, heads * dk, heads * dv]
        )
        table_keys = ops.reshape(flat_keys, (-1, self.max_length, heads * dk))
        table_values = ops.reshape(flat_values, (-1, self.max_length, heads * dv))
        # Append this step's pairs at slot (count mod max_length).
        step = ops.cast(count[:, 0], "int32")
        slot = ops.one_hot(step % self.max_length, self.max_length, dtype=table_keys.dtype)
        slot = slot[:, :, None]
        table_keys = table_keys * (1.0 - slot) + slot * write_keys[:, None, :]
        table_values = table_values * (1.0 - slot) + slot * values[:, None, :]
        filled = ops.minimum(step + 1, self.max_length)
        valid = ops.cast(ops.arange(self.max_length)[None, :] < filled[:, None], table_keys.dtype)
        valid = ops.repeat(valid, heads, axis=1)
        read = soft_attention_read(
            ops.reshape(table_keys, (-1, self.slots, dk)),
            ops.reshape(table_values, (-1, self.slots, dv)),
            ops.reshape(read_keys, (-1, heads, dk)),
            valid,
        )
        read_value = ops.mean(read, axis=1)
        y = self.output_projection(ops.concatenate([h, read_value], axis=-1))
        new_states = [
            h,
            c,
            read_value,
            ops.reshape(table_keys, (-1, self.slots * dk)),
            ops.reshape(table_values, (-1, self.slots * dv)),
            count + 1.0,
        ]
        return y, new_states

    def get_config(self):
        config = super().get_config()
        config["max_length"] = self.max_length
        return config
