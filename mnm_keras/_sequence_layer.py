"""What the sequence layers `MNM` and `SALU` share: a cell, its `keras.layers.RNN`, shapes."""

from __future__ import annotations

import keras

# The base `Layer` arguments a sequence layer takes for itself; the rest go to its cell.
LAYER_KWARGS = ("name", "dtype", "trainable", "autocast")


class CellSequenceLayer(keras.layers.Layer):
    """Base of `MNM` and `SALU`: a cell run over a sequence by the layer's own loop, with
    ``keras.layers.RNN(cell)`` (``self.rnn``) for the options that loop does not cover.

    Subclasses call `_set_cell` in ``__init__`` and write ``call``; this class builds the
    RNN, gives the output shapes and the mask, and serialises the RNN's options.
    """

    def _set_cell(self, cell, return_sequences, return_state, go_backwards, unroll):
        self.cell = cell
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = False  # read by keras.layers.Bidirectional
        self.unroll = unroll
        self.rnn = keras.layers.RNN(
            cell,
            return_sequences=return_sequences,
            return_state=True,
            go_backwards=go_backwards,
            unroll=unroll,
            dtype="float32",  # keeps the returned state in float32
            name="rnn",
        )
        self.supports_masking = True

    def build(self, sequences_shape):
        if len(sequences_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape [batch, time, features]; "
                f"received shape {sequences_shape}."
            )
        self.rnn.build(sequences_shape)

    def compute_output_shape(self, sequences_shape):
        batch, time = sequences_shape[0], sequences_shape[1]
        size = self.cell.output_size
        output = (batch, time, size) if self.return_sequences else (batch, size)
        if self.return_state:
            return (output, *[(batch, n) for n in self.cell.state_size])
        return output

    def compute_mask(self, sequences, mask=None):
        return self.rnn.compute_mask(sequences, mask)

    def _sequence_config(self, **options):
        """The cell's config, the layer's own and the RNN's options, with ``options``."""
        config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            config.pop(key, None)
        config.update(super().get_config())
        config.update(
            {
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "unroll": self.unroll,
                **options,
            }
        )
        return config
