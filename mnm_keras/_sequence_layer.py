"""What the sequence layers `MNM` and `SALU` share: `keras.layers.RNN` with a fused loop."""

from __future__ import annotations

import keras
from keras import ops, tree

# The base `Layer` arguments a sequence layer takes for itself; the rest go to its cell.
LAYER_KWARGS = ("name", "dtype", "trainable", "autocast")


class FusedRNN(keras.layers.RNN):
    """Base of `MNM` and `SALU`: ``keras.layers.RNN(cell)`` whose inner loop is the model's
    fused sequence path.

    `keras.layers.RNN` gives the options (``return_sequences``, ``return_state``,
    ``go_backwards``, ``stateful``, masks, ``initial_state``) and the output shapes, as it
    does for `keras.layers.LSTM`; this class overrides its ``inner_loop`` (as
    `keras.layers.LSTM` does for cuDNN): with ``memory_efficient`` (and not ``unroll``) the
    subclass's `_fused_loop` runs the whole sequence, otherwise `keras.layers.RNN`'s own loop
    calls the cell step by step. With ``stateful=True`` each call starts from the state the
    previous call ended in, so that a sequence fed in pieces gives the outputs of one call
    on the whole; ``reset_state()`` sets it back to the cell's initial state (for MNM, the
    initial memory phi_0: not zeros).

    Subclasses set ``memory_efficient`` and define ``_fused_loop(sequences, initial_state,
    mask)``, which returns ``(last output, outputs [batch, time, units], final state
    list)`` as `keras.layers.RNN.inner_loop` does; their config is the cell's
    arguments and the layer's options, flat (``MNM(units, key_size=..., ...)``).
    """

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape [batch, time, features]; "
                f"received shape {sequences_shape}."
            )
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if sequences.shape[1] == 0:
            raise ValueError(
                f"`sequences` must have at least one time step; received shape "
                f"{tuple(sequences.shape)} [batch, time, features]."
            )
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def reset_state(self):
        """Sets a stateful layer's state to the cell's initial state (``get_initial_state``)."""
        if self.states is None:
            return
        variables = tree.flatten(self.states)
        batch_size = ops.shape(variables[0])[0]
        for variable, value in zip(variables, self.get_initial_state(batch_size)):
            variable.assign(ops.cast(value, variable.dtype))

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if tree.is_nested(mask):
            mask = mask[0]
        if self.memory_efficient and not self.unroll:
            return self._fused_loop(sequences, list(initial_state), mask)
        return super().inner_loop(sequences, initial_state, mask, training=training)

    def _sequence_config(self, **options):
        """The cell's config, the layer's own and the RNN's options, with ``options``."""
        config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            config.pop(key, None)
        config.update(keras.layers.Layer.get_config(self))
        config.update(
            {
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "go_backwards": self.go_backwards,
                "stateful": self.stateful,
                "unroll": self.unroll,
                **options,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
