"""What `MNMCell` and `SALUCell` share: arguments, weights from a table (`weights`), config."""

from __future__ import annotations

import random

import keras
from keras import ops

from mnm_keras import _legacy_loading, arguments, weights
from mnm_keras._utils import derive_seed, seeded


class ControllerCell(keras.layers.Layer):
    """Base of the memory cells: an LSTM controller over ``[x_t; v^r_{t-1}]`` (section 3.1).

    Holds the arguments every memory cell has (sizes, seed, initializers, regularizers),
    validates them, creates the weights of the subclass's table (`mnm_keras.weights`) with
    sub-seeds derived from ``seed`` and each weight's name (`derive_seed`), builds the
    params named tuple from them by field, and serialises the arguments of the subclass's
    constructor (`mnm_keras.arguments`). Subclasses add the memory.
    """

    def __init__(self, cell_arguments, *, controller_policy=None, **kwargs):
        """``cell_arguments``: the subclass's constructor arguments by name (every one of
        its signature, `mnm_keras.arguments.names`), checked and stored on the cell as
        attributes of the same names, and serialised by ``get_config``."""
        super().__init__(**kwargs)
        arguments.take(self, keras, cell_arguments)
        self.controller_policy = controller_policy or self.dtype_policy
        self.output_size = self.output_units or self.units

    def _seed(self, name):
        """The sub-seed of the weight ``name`` (`derive_seed`; None when ``seed`` is None)."""
        return derive_seed(self.seed, name)

    def _input_dim(self, input_shape):
        """The input feature size of ``input_shape`` (its last axis), or an error."""
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__} needs a known input feature size (last axis); "
                f"received input shape {input_shape}."
            )
        return int(input_dim)

    def _add_weights(self, table):
        """Creates the variables of ``table`` (rows of `mnm_keras.weights`) in its order:
        kernels and biases in the controller's dtype policy, phi_0 in float32; each
        initializer seeded as the ``LSTMCell`` and ``Dense`` sublayers of the cells before
        seeded theirs."""
        if weights.built_before(self, getattr(self, "weight_table", None), table):
            return
        # The cells with sublayers built a Keras ``LSTMCell``, whose dropout seed generator
        # drew one number from Python's global random stream (`keras.utils.set_random_seed`
        # seeds it). The same draw here keeps the weights that unseeded layers built after
        # the cell draw from that stream (a model's output layer) those of the runs
        # recorded before; it changes nothing else.
        random.randint(1, int(1e9))
        self.weight_table = table
        self._table_variables = []
        for row in table:
            initializer = weights.initializer(
                self,
                row,
                seeded=lambda chosen, name: seeded(chosen, self._seed(name)),
                ones=keras.initializers.Ones(),
                concatenate=ops.concatenate,
            )
            dtype = self.controller_policy.variable_dtype if row.trainable else "float32"
            self._table_variables.append(
                self.add_weight(
                    name=row.name,
                    shape=row.shape,
                    initializer=initializer,
                    regularizer=weights.regularizer(self, row),
                    trainable=row.trainable,
                    dtype=dtype,
                )
            )

    def _params(self, params_class):
        """``params_class`` of the variables' values, each by its field."""
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}.params needs the cell to be built first: call "
                "`cell.build((None, input_dim))` or run the RNN layer once."
            )
        values = [variable.value for variable in self._table_variables]
        return weights.to_params(params_class, self.weight_table, values)

    def load_own_variables(self, store):
        """Loads the cell's variables; a file saved when the cells kept them in
        sublayers loads too (`mnm_keras._legacy_loading`)."""
        _legacy_loading.load_own_variables(self, store, self.weight_table, self._table_variables)

    def get_config(self):
        """The base layer's config and every constructor argument as the cell holds it
        (`mnm_keras.arguments.config`)."""
        return {
            **super().get_config(),
            **arguments.config(self, keras, self._argument_names),
        }
