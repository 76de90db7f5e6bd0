"""`SALUCell`: the LSTM + soft-attention look-up table baseline of the paper (section 4.1)."""

from __future__ import annotations

import keras

from mnm_keras import _utils, arguments, salu_core, weights
from mnm_keras._controller import ControllerCell
from mnm_keras.salu_core import soft_attention_read

__all__ = ["SALUCell", "soft_attention_read"]


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
        cell_arguments = {name: value for name, value in locals().items() if name in ARGUMENTS}
        super().__init__(cell_arguments, **kwargs)
        self.slots = max_length * num_heads
        self.state_size = salu_core.state_sizes(self.config)

    @property
    def config(self):
        """The cell's sizes as a `salu_core.SALUConfig`."""
        return salu_core.SALUConfig(
            self.units,
            self.key_size,
            self.value_size,
            self.num_heads,
            self.max_length,
            self.controller_policy.compute_dtype,
        )

    def build(self, input_shape):
        # The controller, the interface (equation 1 without the rate) and the output.
        config, input_dim = self.config, self._input_dim(input_shape)
        self._add_weights(weights.salu_weights(config, input_dim, self.output_size))

    def params(self):
        """The cell's weights as a `salu_core.SALUParams` of tensors."""
        return self._params(salu_core.SALUParams)

    def get_initial_state(self, batch_size=None, dtype=None):
        """Zeros: an empty table (a flat list, `salu_core.pack`; float32)."""
        if batch_size is None:
            raise ValueError("`batch_size` must be given to SALUCell.get_initial_state.")
        return salu_core.pack(self.config, salu_core.initial_state(self.config, batch_size))

    def call(self, inputs, states, training=False):
        config = self.config
        y, new_state = salu_core.step(
            config, self.params(), inputs, salu_core.unpack(config, states)
        )
        return y, salu_core.pack(config, new_state)


# The constructor arguments, in order (`mnm_keras.arguments`).
ARGUMENTS = arguments.names(SALUCell)
