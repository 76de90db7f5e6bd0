"""`SALU`: the LSTM+SALU baseline as a sequence layer (like `keras.layers.LSTM`)."""

from __future__ import annotations

import keras

from mnm_keras import _utils, salu_core
from mnm_keras._sequence_layer import LAYER_KWARGS, FusedRNN
from mnm_keras.salu_cell import SALUCell


@keras.saving.register_keras_serializable(package="mnm_keras")
class SALU(FusedRNN):
    """Runs a `SALUCell` over a sequence, with a loop that does not keep its tables.

    Computes what ``keras.layers.RNN(SALUCell(...))`` computes (tested: outputs, final
    state and gradients, with masks, past ``max_length`` and backwards), but
    ``keras.layers.RNN`` keeps every step's table for back-propagation, which grows with
    the square of the length. Here (`salu_core.unroll`, on TensorFlow) the input's part of
    the controller is one product before the loop and the output projection one after
    it, the loop is compiled with XLA, and its backward pass restores the table row by
    row from the last step to the first, keeping per step only the small state and the
    overwritten rows.

    Args:
      units: controller size.
      max_length: the number of steps the table holds (`SALUCell`): the longest sequence.
      return_sequences: return ``y_t`` for every step (``[batch, time, output_units]``)
        rather than only the last (``[batch, output_units]``).
      return_state: also return the final state list of the cell.
      go_backwards, unroll: as in `keras.layers.RNN`.
      memory_efficient: run the loop of `salu_core.unroll` (default True); ``False`` (or
        ``unroll=True``) uses `keras.layers.RNN` itself.
      jit_compile: compile that loop and its backward pass with XLA (default True).
      stateful: as in `keras.layers.RNN`: each call starts from the state the previous
        call ended in (the batch size must then be fixed), so that a sequence fed in pieces
        gives the outputs of one call on the whole (while the pieces together fit in
        ``max_length``); ``layer.reset_state()`` starts over from an empty table.
      **kwargs: `SALUCell` arguments (``key_size``, ``value_size``, ``num_heads``, ...)
        and base `Layer` arguments (``name``, ``dtype``).

    Call arguments:
      sequences: ``[batch, time, features]``.
      initial_state: optional state list (default `SALUCell.get_initial_state`).
      mask: optional ``[batch, time]`` boolean mask; masked steps leave the state
        unchanged.
      training: passed to the cell.

    Example:

    ```python
    import keras, mnm_keras
    inputs = keras.Input((20, 8))
    features = mnm_keras.SALU(32, max_length=20, key_size=16, value_size=16)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(features))
    ```
    """

    def __init__(
        self,
        units,
        max_length,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        unroll=False,
        memory_efficient=True,
        jit_compile=True,
        stateful=False,
        **kwargs,
    ):
        _utils.check_backend("SALU")
        for name, value in (("memory_efficient", memory_efficient), ("jit_compile", jit_compile)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")
        layer_kwargs = {k: kwargs.pop(k) for k in LAYER_KWARGS if k in kwargs}
        policy = keras.dtype_policies.get(layer_kwargs.get("dtype") or keras.config.dtype_policy())
        super().__init__(
            SALUCell(units, max_length, dtype=policy, name="salu_cell", **kwargs),
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            **layer_kwargs,
        )
        self.memory_efficient = memory_efficient
        self.jit_compile = jit_compile

    def _fused_loop(self, sequences, initial_state, mask):
        config = self.cell.config
        outputs, final = salu_core.unroll(
            config,
            self.cell.params(),
            sequences,
            salu_core.unpack(config, initial_state),
            mask=mask,
            reverse=self.go_backwards,
            jit_compile=self.jit_compile,
        )
        return outputs[:, -1], outputs, salu_core.pack(config, final)

    def get_config(self):
        return self._sequence_config(
            memory_efficient=self.memory_efficient, jit_compile=self.jit_compile
        )
