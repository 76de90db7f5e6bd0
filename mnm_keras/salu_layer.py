"""`SALU`: the LSTM+SALU baseline as a sequence layer (like `keras.layers.LSTM`)."""

from __future__ import annotations

import keras
from keras import ops

from mnm_keras import _utils, salu_core
from mnm_keras._sequence_layer import LAYER_KWARGS, CellSequenceLayer
from mnm_keras.salu_cell import SALUCell


@keras.saving.register_keras_serializable(package="mnm_keras")
class SALU(CellSequenceLayer):
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
      stateful: must be False (the attribute exists for `keras.layers.Bidirectional`).
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
        if stateful:
            raise ValueError(
                "`stateful=True` is not supported by SALU: every sequence starts from an "
                "empty table; pass the state explicitly with `initial_state` and "
                "`return_state=True` to carry it across batches."
            )
        for name, value in (("memory_efficient", memory_efficient), ("jit_compile", jit_compile)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")
        layer_kwargs = {k: kwargs.pop(k) for k in LAYER_KWARGS if k in kwargs}
        super().__init__(**layer_kwargs)
        self._set_cell(
            SALUCell(units, max_length, dtype=self.dtype_policy, name="salu_cell", **kwargs),
            return_sequences,
            return_state,
            go_backwards,
            unroll,
        )
        self.memory_efficient = memory_efficient
        self.jit_compile = jit_compile

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if self.memory_efficient and not self.unroll:
            config = self.cell.config
            if initial_state is None:
                state = salu_core.initial_state(config, ops.shape(sequences)[0])
            else:
                state = salu_core.unpack(config, initial_state)
            outputs, final = salu_core.unroll(
                config,
                self.cell.params(),
                sequences,
                state,
                mask=mask,
                reverse=self.go_backwards,
                jit_compile=self.jit_compile,
            )
            output = outputs if self.return_sequences else outputs[:, -1]
            states = salu_core.pack(config, final)
        else:
            outputs = self.rnn(sequences, initial_state=initial_state, mask=mask, training=training)
            output, states = outputs[0], list(outputs[1:])
        output = ops.cast(output, self.compute_dtype)
        if self.return_state:
            return (output, *states)
        return output

    def get_config(self):
        return self._sequence_config(
            memory_efficient=self.memory_efficient, jit_compile=self.jit_compile
        )
