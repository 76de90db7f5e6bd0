"""The weights of the memory cells, as one table: name, shape, initializer, seed name.

`MNMCell` and `SALUCell` create their variables from these tables (no sublayers), and their
`core.MNMParams` / `salu_core.SALUParams` are built from them by field name. Pure Python:
sizes in, `Weight` rows out.

Kernels are ``[inputs, outputs]``, applied as ``x @ kernel + bias``:

======================  ==============================  =============================
field (index)           shape                           what (paper)
======================  ==============================  =============================
controller_kernel       ``[d_x + d_v, 4 d_h]``          LSTM over ``[x_t; v^r_{t-1}]`` (3.1)
controller_recurrent_   ``[d_h, 4 d_h]``                its recurrent kernel
kernel
controller_bias         ``[4 d_h]``                     gates i, f, g, o; f starts at 1
interface_kernel, bias  ``[d_h, W]``, ``[W]``           equation 1 (W: `interface_size`)
rate_kernel, bias       ``[d_k, R]``, ``[R]``           ``beta_t`` (MNM only; R = 1 or L)
output_kernel, bias     ``[d_h + d_v, d_o]``, ``[d_o]`` ``y_t = W_y [h_t; v^r_t] + b_y``
feedback_kernels (l),   ``[d_v, D_{l+1}]``,             q^l of MNM-p (3.4)
feedback_biases (l)     ``[D_{l+1}]``
initial_memory (l)      ``[D_{l+1}, D_l]``              phi_0 (3.5), not trained
======================  ==============================  =============================

The rows come in the order in which the cells create the variables: the order of
``cell.trainable_weights`` (and of an optimizer's slots), which is the order of the cells
that held Keras ``LSTMCell`` and ``Dense`` sublayers (mnm_keras 0.1.0 and the code after
it until this table). ``legacy`` says where those saved each weight in a ``.keras`` file (the sublayer's path and the variable's
position there), so that those files still load (`mnm_keras._legacy_loading`).
"""

from __future__ import annotations

from typing import NamedTuple

# How a weight is initialised and regularised (`ControllerCell` maps each to its
# initializer and regularizer arguments).
ROLES = ("kernel", "recurrent_kernel", "bias", "lstm_bias", "rate_bias", "initial_memory")

# The cell argument (attribute) that gives a weight of each role its initializer, and its
# regularizer (none for the recurrent kernel, as Keras' LSTMCell by default, and for phi_0).
INITIALIZER_ARGUMENT = {
    "kernel": "kernel_initializer",
    "recurrent_kernel": "recurrent_initializer",
    "bias": "bias_initializer",
    "lstm_bias": "bias_initializer",
    "rate_bias": "rate_bias_initializer",
    "initial_memory": "memory_initializer",
}
REGULARIZER_ARGUMENT = {
    "kernel": "kernel_regularizer",
    "bias": "bias_regularizer",
    "lstm_bias": "bias_regularizer",
    "rate_bias": "bias_regularizer",
}

# The fields of `core.MNMParams` that hold one tensor per layer.
TUPLE_FIELDS = ("feedback_kernels", "feedback_biases", "initial_memory")


class Weight(NamedTuple):
    """One weight of a cell.

    * ``field``: its field of the params named tuple; ``index``: its position in a tuple
      field (``feedback_kernels``, ``initial_memory``), None for a single tensor;
    * ``shape``: a tuple of ints;
    * ``role``: one of `ROLES` (which initializer and regularizer it takes);
    * ``seed_name``: the name its sub-seed is derived from (`_utils.derive_seed`); the
      names of the sublayers' weights (``"interface/kernel"``), so that a seed draws the same weights;
    * ``legacy``: ``(path, position)`` of the weight in a ``.keras`` file of the sublayer layout, relative
      to the cell (``("controller", 0)``; ``("", 0)``: the cell's own variables).
    """

    field: str
    index: int | None
    shape: tuple
    role: str
    seed_name: str | None
    legacy: tuple

    @property
    def name(self):
        """The variable's name: the field, with its index for a tuple field."""
        return self.field if self.index is None else f"{self.field}_{self.index}"

    @property
    def trainable(self):
        return self.role != "initial_memory"


def _controller(input_dim, units, value_size):
    """The LSTM controller over ``[x_t; v^r_{t-1}]`` (section 3.1)."""
    gates = 4 * units
    return [
        Weight(
            "controller_kernel",
            None,
            (input_dim + value_size, gates),
            "kernel",
            "controller/kernel",
            ("controller", 0),
        ),
        Weight(
            "controller_recurrent_kernel",
            None,
            (units, gates),
            "recurrent_kernel",
            "controller/recurrent_kernel",
            ("controller", 1),
        ),
        Weight("controller_bias", None, (gates,), "lstm_bias", None, ("controller", 2)),
    ]


def _dense(field, path, seed_prefix, input_dim, units, bias_role="bias"):
    """``x @ kernel + bias``: the fields ``{field}_kernel`` and ``{field}_bias``."""
    return [
        Weight(f"{field}_kernel", None, (input_dim, units), "kernel", f"{seed_prefix}/kernel",
               (path, 0)),
        Weight(f"{field}_bias", None, (units,), bias_role, None, (path, 1)),
    ]  # fmt: skip


def mnm_weights(config, input_dim):
    """The weights of an `MNMCell` of ``config`` (a `core.MNMConfig`) on ``input_dim``
    input features, in creation order."""
    units, dk, dv = config.units, config.key_size, config.value_size
    sizes = config.memory_sizes
    rows = _controller(input_dim, units, dv)
    rows += _dense("interface", "interface", "interface", units, config.interface_size)
    rows += _dense("rate", "rate", "rate", dk, config.num_rates, bias_role="rate_bias")
    rows += _dense("output", "output_projection", "output", units + dv, config.output_units)
    for index in range(config.feedback_layers):
        # The sublayer layout kept the feedback layers in a list, which Keras 3 saves by class name.
        path = "feedback/dense" + (f"_{index}" if index else "")
        name = f"feedback_{index}"
        rows += [
            Weight("feedback_kernels", index, (dv, sizes[index + 1]), "kernel",
                   f"{name}/kernel", (path, 0)),
            Weight("feedback_biases", index, (sizes[index + 1],), "bias", None, (path, 1)),
        ]  # fmt: skip
    rows += [
        Weight(
            "initial_memory",
            index,
            (sizes[index + 1], sizes[index]),
            "initial_memory",
            f"initial_memory_{index}",
            ("", index),
        )
        for index in range(config.memory_layers)
    ]
    return tuple(rows)


def salu_weights(config, input_dim, output_units):
    """The weights of a `SALUCell` of ``config`` (a `salu_core.SALUConfig`) with
    ``output_units`` outputs."""
    units, heads, dk, dv = config.units, config.num_heads, config.key_size, config.value_size
    rows = _controller(input_dim, units, dv)
    rows += _dense("interface", "interface", "interface", units, heads * (2 * dk + dv))
    rows += _dense("output", "output_projection", "output", units + dv, output_units)
    return tuple(rows)


def initializer(cell, row, seeded, ones, concatenate):
    """The initializer of the weight ``row`` of ``cell`` (a Keras 3 or a tf-keras cell):
    the cell's argument for its role (`INITIALIZER_ARGUMENT`), reseeded by
    ``seeded(initializer, name)`` with the sub-seed of ``row.seed_name`` when it has one;
    the controller's bias as Keras' ``LSTMCell(unit_forget_bias=True)``: the bias
    initializer's values with the forget gate's (the second quarter) at 1 (``ones``, an
    initializer of ones; ``concatenate``, of a list of tensors)."""
    chosen = getattr(cell, INITIALIZER_ARGUMENT[row.role])
    if row.seed_name is not None:
        chosen = seeded(chosen, row.seed_name)
    if row.role != "lstm_bias":
        return chosen
    units = row.shape[0] // 4

    def lstm_bias(shape, dtype=None):
        parts = [chosen((units,), dtype=dtype), ones((units,), dtype=dtype)]
        return concatenate(parts + [chosen((2 * units,), dtype=dtype)])

    return lstm_bias


def regularizer(cell, row):
    """The regularizer of the weight ``row`` of ``cell`` (`REGULARIZER_ARGUMENT`)."""
    argument = REGULARIZER_ARGUMENT.get(row.role)
    return None if argument is None else getattr(cell, argument)


def built_before(cell, built, table):
    """Whether ``cell``, asked to build the weights of ``table``, holds them already
    (``built``: the table it was built with, None if not built): True to keep its
    variables; a ValueError naming both input sizes if it was built for other inputs."""
    if built is None:
        return False
    if built != table:
        raise ValueError(
            f"{type(cell).__name__} was built for {built[0].shape[0] - cell.value_size} input "
            f"features; received {table[0].shape[0] - cell.value_size} (build a new cell)."
        )
    return True


def to_params(params_class, table, values):
    """``params_class`` (a named tuple of fields) from ``values``, one per row of ``table``
    (same order): single fields by name, tuple fields (`TUPLE_FIELDS`) in index order; a
    tuple field without rows (MNM-g's feedback) is ``()``."""
    fields = {name: [] for name in TUPLE_FIELDS if name in params_class._fields}
    for row, value in zip(table, values, strict=True):
        if row.index is None:
            fields[row.field] = value
        else:
            fields[row.field].append(value)
    return params_class(**{k: tuple(v) if k in TUPLE_FIELDS else v for k, v in fields.items()})
