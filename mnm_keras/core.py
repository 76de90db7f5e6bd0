"""The MNM step and sequence as pure functions (paper, section 3).

Every MNM cell and layer of mnm_keras computes through this module: the Keras 3
`mnm_keras.MNMCell` and `mnm_keras.MNM`, the tf-keras cell of `tf_agents_ext.networks`,
`mnm_keras.interactions.trace_interactions` and the examples' diagnostics. Those classes
own variables; they build an `MNMParams` of plain tensors from them and call `step` or
`unroll`. The memory equations themselves (read, both writes, recall error) are in
`mnm_keras.memory`, which this module calls.

* `MNMConfig`: the frozen sizes and options of one MNM (`make_config` validates them);
* `MNMParams`: the trainable weights (and phi_0) as a named tuple of tensors;
* `MNMState`: the recurrent state as a named tuple, `pack` / `unpack` to the flat list of
  ``[batch, size]`` vectors that `keras.layers.RNN` carries (`state_sizes`);
* `step`: one time step; `unroll`: a whole sequence, by default with the memory-efficient
  backward pass (the memory weights of each step are rebuilt, not kept).

The step is written with `keras.ops` and runs on every Keras backend (TensorFlow and JAX
are tested). The sequence loop is backend-specific: on TensorFlow a `tf.while_loop` with a
custom gradient (the memory-efficient backward pass) compiled with XLA, and
`cell_step`, the XLA-compiled step that `MNMCell` runs inside `keras.layers.RNN`; on
other backends `keras.ops.scan` over the same step, differentiated by the backend.

Shapes: B batch, T time, d_h = ``units``, d_k / d_v key and value sizes, H heads,
D_0..D_L the memory layer sizes (``D_0 = d_k``, ``D_L = d_v``).

Dtypes: the controller and the projections compute in ``MNMConfig.compute_dtype``
(float16 or bfloat16 under mixed precision), the state, the memory and the outputs are
in `MNMConfig.state_dtype`: float32, or float64 when ``compute_dtype`` is float64 (the
whole computation in float64: the reference that gradients and other implementations
are checked against).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import tensorflow as tf
from keras import ops

from mnm_keras import fused, memory, reversible

WRITE_RULES = ("local", "gradient")

__all__ = [
    "WRITE_RULES",
    "Interactions",
    "MNMConfig",
    "MNMParams",
    "MNMState",
    "initial_state",
    "interface",
    "make_config",
    "output",
    "pack",
    "state_sizes",
    "step",
    "unpack",
    "unroll",
]


@dataclasses.dataclass(frozen=True)
class MNMConfig:
    """Sizes and options of one MNM; see `mnm_keras.MNMCell` for their meaning.

    ``memory_sizes`` is ``(D_0, ..., D_L)``; ``compute_dtype`` is the dtype of the
    controller and the dense projections; the state and the memory are in
    `state_dtype` (float32, or float64 when ``compute_dtype`` is float64).
    """

    units: int
    memory_sizes: tuple
    num_heads: int
    write_rule: str
    output_units: int
    recall_delay: int = 0
    recall_decay: tuple = (1.0,)
    targets_from_values: bool = False
    normalize_writes: bool = True
    memory_activation: Callable | None = ops.tanh
    memory_output_activation: Callable | None = None
    compute_dtype: str = "float32"

    @property
    def state_dtype(self):
        """The dtype of the state and the memory: float64 for reference computations
        (``compute_dtype="float64"``), float32 otherwise, mixed precision included
        (a float16 or bfloat16 controller with a float32 state)."""
        return "float64" if self.compute_dtype == "float64" else "float32"

    @property
    def key_size(self):
        return self.memory_sizes[0]

    @property
    def value_size(self):
        return self.memory_sizes[-1]

    @property
    def memory_layers(self):
        return len(self.memory_sizes) - 1

    @property
    def num_rates(self):
        """1 for MNM-g (one beta_t), L for MNM-p (one beta^l_t per layer)."""
        return 1 if self.write_rule == "gradient" else self.memory_layers

    @property
    def feedback_layers(self):
        """Number of learned feedback functions q^l (MNM-p; the last one is the values
        themselves with ``targets_from_values``)."""
        if self.write_rule != "local":
            return 0
        return self.memory_layers - 1 if self.targets_from_values else self.memory_layers

    @property
    def interface_size(self):
        """Width of equation 1's output: H read keys, H write keys, H values, beta'_t."""
        heads, dk, dv = self.num_heads, self.key_size, self.value_size
        return 2 * heads * dk + heads * dv + dk


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {name}={value!r}.")


def check_non_negative_number(name, value):
    """A finite number >= 0 (an int or a float, not a bool), or ValueError naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"`{name}` must be a non-negative number; received {name}={value!r}.")


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")


def make_config(
    units,
    memory_units=100,
    memory_layers=3,
    key_size=100,
    value_size=100,
    num_heads=1,
    write_rule="local",
    output_units=None,
    recall_delay=0,
    recall_decay=None,
    targets_from_values=False,
    normalize_writes=True,
    memory_activation=ops.tanh,
    memory_output_activation=None,
    compute_dtype="float32",
):
    """A validated `MNMConfig`; every error names the argument and the value received."""
    for name, value in (
        ("units", units),
        ("memory_units", memory_units),
        ("memory_layers", memory_layers),
        ("key_size", key_size),
        ("value_size", value_size),
        ("num_heads", num_heads),
    ):
        check_positive_int(name, value)
    if output_units is not None:
        check_positive_int("output_units", output_units)
    if write_rule not in WRITE_RULES:
        raise ValueError(
            f"`write_rule` must be one of {WRITE_RULES} ('local' = MNM-p, 'gradient' = "
            f"MNM-g); received write_rule={write_rule!r}."
        )
    if isinstance(recall_delay, bool) or not isinstance(recall_delay, int) or recall_delay < 0:
        raise ValueError(
            f"`recall_delay` must be a non-negative integer; received {recall_delay!r}."
        )
    if recall_decay is None:
        recall_decay = [1.0] * (recall_delay + 1)
    recall_decay = tuple(float(x) for x in recall_decay)
    if len(recall_decay) != recall_delay + 1:
        raise ValueError(
            f"`recall_decay` must hold recall_delay + 1 = {recall_delay + 1} weights "
            f"(lambda_0..lambda_{recall_delay}); received {list(recall_decay)!r}."
        )
    check_bool("targets_from_values", targets_from_values)
    check_bool("normalize_writes", normalize_writes)
    if targets_from_values and write_rule != "local":
        raise ValueError(
            "`targets_from_values=True` applies to write_rule='local' (MNM-p) only; "
            f"received write_rule={write_rule!r}."
        )
    sizes = (key_size,) + (memory_units,) * (memory_layers - 1) + (value_size,)
    return MNMConfig(
        units=units,
        memory_sizes=sizes,
        num_heads=num_heads,
        write_rule=write_rule,
        output_units=output_units or units,
        recall_delay=recall_delay,
        recall_decay=recall_decay,
        targets_from_values=targets_from_values,
        normalize_writes=normalize_writes,
        memory_activation=memory_activation,
        memory_output_activation=memory_output_activation,
        compute_dtype=str(compute_dtype),
    )


def config_arguments(arguments, **overrides):
    """The `make_config` arguments found in ``arguments`` (a cell's constructor's
    ``locals()``), updated with ``overrides``: every cell passes every option to the core
    by construction."""
    names = inspect.signature(make_config).parameters
    chosen = {name: value for name, value in arguments.items() if name in names}
    return {**chosen, **overrides}


class MNMParams(NamedTuple):
    """The weights of one MNM as tensors (the variables of the cell that owns them).

    Kernels are ``[inputs, outputs]``, applied as ``x @ kernel + bias``:

    * ``controller_kernel`` ``[input_dim + d_v, 4 d_h]``, ``controller_recurrent_kernel``
      ``[d_h, 4 d_h]``, ``controller_bias`` ``[4 d_h]``: the LSTM over ``[x_t; v^r_{t-1}]``
      (section 3.1), gates in the order input, forget, cell, output (as Keras' LSTMCell);
    * ``interface_kernel`` ``[d_h, 2 H d_k + H d_v + d_k]`` and bias: equation 1;
    * ``rate_kernel`` ``[d_k, 1 or L]`` and bias: ``beta_t = sigmoid(W_beta beta'_t + b)``;
    * ``output_kernel`` ``[d_h + d_v, d_o]`` and bias: ``y_t = W_y [h_t; v^r_t] + b_y``;
    * ``feedback_kernels`` / ``feedback_biases``: the feedback prediction functions q^l
      of MNM-p (section 3.4), ``[d_v, D_{l+1}]`` (empty tuples for MNM-g);
    * ``initial_memory``: phi_0, L matrices ``[D_{l+1}, D_l]`` (not trained).
    """

    controller_kernel: Any
    controller_recurrent_kernel: Any
    controller_bias: Any
    interface_kernel: Any
    interface_bias: Any
    rate_kernel: Any
    rate_bias: Any
    output_kernel: Any
    output_bias: Any
    feedback_kernels: tuple
    feedback_biases: tuple
    initial_memory: tuple


class MNMState(NamedTuple):
    """The recurrent state of MNM after step t.

    * ``h``, ``c``: the controller LSTM's state, ``[B, d_h]``;
    * ``read``: the read-out ``v^r_t`` (mean over heads), ``[B, d_v]``;
    * ``memory``: the memory weights phi_t, L tensors ``[B, D_{l+1}, D_l]``;
    * ``meta``: ``[B, 2]``, (sum of the per-step meta losses, number of steps);
    * ``history``: with ``recall_delay`` T > 0, the write pairs of the T previous steps
      ``(keys [B, T, H, d_k], values [B, T, H, d_v], valid [B, T])`` (index 0 is step
      t); an empty tuple otherwise.
    """

    h: Any
    c: Any
    read: Any
    memory: tuple
    meta: Any
    history: tuple = ()


class Interactions(NamedTuple):
    """What one step did to the memory (for inspection; `unroll`'s ``on_step``).

    ``read_keys`` / ``write_keys`` ``[B, H, d_k]``, ``values`` (targets v^w)
    ``[B, H, d_v]``, ``rates`` ``[B, 1 or L]``, ``read_values`` (per head, before the mean)
    ``[B, H, d_v]``, ``write_factors`` the L pairs ``(a^l, b^l)`` of the write
    ``M^l_t = M^l_{t-1} - sum_i a^l_i (b^l_i)^T``.
    """

    read_keys: Any
    write_keys: Any
    values: Any
    rates: Any
    read_values: Any
    write_factors: tuple


# ------------------------------------------------------------------------------ state
def state_sizes(config):
    """The sizes of the flat state vectors of `pack`, as `keras.layers.RNN` wants them."""
    sizes = config.memory_sizes
    flat = [config.units, config.units, config.value_size]
    flat += [sizes[i + 1] * sizes[i] for i in range(config.memory_layers)]
    flat += [2]
    if config.recall_delay:
        delay, heads = config.recall_delay, config.num_heads
        flat += [delay * heads * config.key_size, delay * heads * config.value_size, delay]
    return flat


def pack(config, state):
    """`MNMState` -> the flat list of ``[B, size]`` tensors of `state_sizes`.

    Order: h, c, read-out, the L memory matrices (flattened row-major), the meta-loss
    accumulator, and with a recall delay the key, value and valid histories.
    """
    flat = [state.h, state.c, state.read]
    flat += [ops.reshape(m, (-1, m.shape[1] * m.shape[2])) for m in state.memory]
    flat.append(state.meta)
    if config.recall_delay:
        keys, values, valid = state.history
        flat += [
            ops.reshape(keys, (-1, keys.shape[1] * keys.shape[2] * keys.shape[3])),
            ops.reshape(values, (-1, values.shape[1] * values.shape[2] * values.shape[3])),
            valid,
        ]
    return flat


def unpack(config, flat):
    """The flat list of `pack` (or `keras.layers.RNN`'s states) -> `MNMState`."""
    flat = list(flat)
    expected = len(state_sizes(config))
    if len(flat) != expected:
        raise ValueError(
            f"An MNM state has {expected} tensors ({state_sizes(config)}); received {len(flat)}."
        )
    sizes, layers = config.memory_sizes, config.memory_layers
    weights = tuple(ops.reshape(flat[3 + i], (-1, sizes[i + 1], sizes[i])) for i in range(layers))
    history = ()
    if config.recall_delay:
        delay, heads = config.recall_delay, config.num_heads
        keys, values, valid = flat[-3:]
        history = (
            ops.reshape(keys, (-1, delay, heads, config.key_size)),
            ops.reshape(values, (-1, delay, heads, config.value_size)),
            valid,
        )
    return MNMState(flat[0], flat[1], flat[2], weights, flat[3 + layers], history)


def initial_state(config, params, batch_size):
    """The state at the start of every sequence: zeros, and phi_0 for every sequence."""
    dtype = config.state_dtype
    zeros = lambda *shape: ops.zeros((batch_size, *shape), dtype)  # noqa: E731
    weights = tuple(
        ops.tile(ops.cast(m, dtype)[None], (batch_size, 1, 1)) for m in params.initial_memory
    )
    history = ()
    if config.recall_delay:
        delay, heads = config.recall_delay, config.num_heads
        history = (
            zeros(delay, heads, config.key_size),
            zeros(delay, heads, config.value_size),
            zeros(delay),
        )
    return MNMState(
        zeros(config.units),
        zeros(config.units),
        zeros(config.value_size),
        weights,
        zeros(2),
        history,
    )


# ------------------------------------------------------------------------------- step
def split_last(x, sizes):
    """``x`` cut along its last axis into pieces of the given (static) sizes."""
    bounds = [0]
    for size in sizes:
        bounds.append(bounds[-1] + size)
    return [x[..., start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]


def dense(config, x, kernel, bias=None, activation=None):
    """``activation(x @ kernel + bias)`` in the controller's dtype, returned in the
    state's (`MNMConfig.state_dtype`)."""
    dtype = config.compute_dtype
    y = ops.matmul(ops.cast(x, dtype), ops.cast(kernel, dtype))
    if bias is not None:
        y = y + ops.cast(bias, dtype)
    if activation is not None:
        y = activation(y)
    return ops.cast(y, config.state_dtype)


def project_inputs(config, params, inputs):
    """The input's part of the controller's gates, ``x_t W_x`` for any leading axes.

    ``inputs`` ``[..., input_dim]`` -> ``[..., 4 d_h]`` (controller dtype). `unroll`
    computes it for every step at once, before its loop.
    """
    dtype = config.compute_dtype
    input_dim = inputs.shape[-1]
    kernel = ops.cast(params.controller_kernel[:input_dim], dtype)
    return ops.tensordot(ops.cast(inputs, dtype), kernel, axes=1)


def lstm_controller(config, params, projected_input, state):
    """Section 3.1: ``h_t, c_t = LSTM([x_t; v^r_{t-1}], (h_{t-1}, c_{t-1}))``."""
    dtype = config.compute_dtype
    read_kernel = params.controller_kernel[-config.value_size :]
    gates = (
        ops.cast(projected_input, dtype)
        + ops.matmul(ops.cast(state.read, dtype), ops.cast(read_kernel, dtype))
        + ops.matmul(ops.cast(state.h, dtype), ops.cast(params.controller_recurrent_kernel, dtype))
        + ops.cast(params.controller_bias, dtype)
    )
    i, f, g, o = split_last(gates, [config.units] * 4)
    c = ops.sigmoid(f) * ops.cast(state.c, dtype) + ops.sigmoid(i) * ops.tanh(g)
    h = ops.sigmoid(o) * ops.tanh(c)
    return ops.cast(h, config.state_dtype), ops.cast(c, config.state_dtype)


def interface(config, params, h):
    """Equation 1: read keys, write keys, target values ``[B, H, size]`` and rates."""
    heads, dk, dv = config.num_heads, config.key_size, config.value_size
    vectors = dense(config, h, params.interface_kernel, params.interface_bias, ops.tanh)
    read_keys, write_keys, values, rate_vector = split_last(
        vectors, [heads * dk, heads * dk, heads * dv, dk]
    )
    rates = dense(config, rate_vector, params.rate_kernel, params.rate_bias, ops.sigmoid)
    return (
        ops.reshape(read_keys, (-1, heads, dk)),
        ops.reshape(write_keys, (-1, heads, dk)),
        ops.reshape(values, (-1, heads, dv)),
        rates,
    )


def _write_factors(config, params, weights, write_keys, values, rates):
    """This step's write as rank-H factors: MNM-g (equations 2-3) or MNM-p (equation 4)."""
    hidden, output = config.memory_activation, config.memory_output_activation
    if config.write_rule == "gradient":
        return memory.gradient_write_factors(
            weights, write_keys, values, rates[:, 0], hidden, output, config.normalize_writes
        )
    last = config.memory_layers - 1
    targets = [
        dense(config, values, kernel, bias, output if index == last else hidden)
        for index, (kernel, bias) in enumerate(zip(params.feedback_kernels, params.feedback_biases))
    ]
    if config.targets_from_values:
        targets.append(values)
    return memory.local_write_factors(
        weights, write_keys, targets, rates, hidden, output, config.normalize_writes
    )


def _recall_history(config, state, write_keys, values):
    """The write pairs of steps t, t-1, ..., t-T ``[B, T + 1, H, size]`` and their
    validity ``[B, T + 1]`` (equation 5's sum over delays), and the next state's history."""
    if not config.recall_delay:
        return write_keys[:, None], values[:, None], None, ()
    old_keys, old_values, old_valid = state.history
    keys = ops.concatenate([write_keys[:, None], old_keys], axis=1)
    vals = ops.concatenate([values[:, None], old_values], axis=1)
    valid = ops.concatenate([ops.ones_like(old_valid[:, :1]), old_valid], axis=1)
    return keys, vals, valid, (keys[:, :-1], vals[:, :-1], valid[:, :-1])


def recurrent_step(config, params, projected_input, state, compute_meta_loss=True):
    """One MNM step without the output projection: ``(new_state, interactions)``.

    1. controller (3.1), 2. interface (equation 1), 3. write phi_{t-1} -> phi_t
    (equations 2-4), 4. read ``v^r_t`` = mean over heads of ``f_{phi_t}(k^r_t)``,
    5. the meta loss of equation 5 added to ``state.meta`` (when ``compute_meta_loss``;
    otherwise the accumulator is left as it is).

    Args:
      config: an `MNMConfig`.
      params: an `MNMParams` (only the controller, interface, rate and feedback weights
        are read).
      projected_input: ``x_t W_x``, ``[B, 4 d_h]`` (`project_inputs`).
      state: the `MNMState` after step t - 1.
      compute_meta_loss: accumulate the meta loss (the tf-keras agent cell skips it when
        acting).
    """
    h, c = lstm_controller(config, params, projected_input, state)
    read_keys, write_keys, values, rates = interface(config, params, h)
    factors = _write_factors(config, params, state.memory, write_keys, values, rates)
    weights = memory.apply_write(state.memory, factors)
    hidden, output = config.memory_activation, config.memory_output_activation
    read_values = memory.read(weights, read_keys, hidden, output)
    keys, vals, valid, history = _recall_history(config, state, write_keys, values)
    meta = state.meta
    if compute_meta_loss:
        step_meta = memory.meta_loss(
            weights, keys, vals, config.recall_decay, valid, hidden, output
        )
        meta = meta + ops.stack([step_meta, ops.ones_like(step_meta)], axis=-1)
    read_value = memory.mean(read_values, axis=1)
    new_state = MNMState(h, c, read_value, tuple(weights), meta, history)
    interactions = Interactions(read_keys, write_keys, values, rates, read_values, tuple(factors))
    return new_state, interactions


def output(config, params, h, read):
    """Output: ``y_t = W_y [h_t; v^r_t] + b_y`` for any leading axes, in the state's dtype
    (`MNMConfig.state_dtype`)."""
    features = ops.concatenate([h, read], axis=-1)
    dtype = config.compute_dtype
    y = ops.tensordot(ops.cast(features, dtype), ops.cast(params.output_kernel, dtype), axes=1)
    return ops.cast(y + ops.cast(params.output_bias, dtype), config.state_dtype)


def step(config, params, inputs, state, compute_meta_loss=True):
    """One MNM step (section 3): ``(y_t [B, d_o], new_state, interactions)``.

    ``inputs`` is ``x_t`` ``[B, input_dim]``; ``state`` an `MNMState`. See
    `recurrent_step` for the order of the computation.
    """
    projected = project_inputs(config, params, inputs)
    new_state, interactions = recurrent_step(config, params, projected, state, compute_meta_loss)
    return output(config, params, new_state.h, new_state.read), new_state, interactions


def _packed_step(config, compute_meta_loss, inputs, states, flat_params):
    """`step` on the flat state list of `pack` (as a recurrent cell carries it) and the
    flattened `MNMParams`: ``(y_t, new state list)``. The state is unpacked once and the
    new one packed once."""
    params = tf.nest.pack_sequence_as(_full_params_template(config), list(flat_params))
    y, new_state, _ = step(config, params, inputs, unpack(config, states), compute_meta_loss)
    return y, pack(config, new_state)


def _packed_step_vjp(config, compute_meta_loss, inputs, states, flat_params, d_y, d_states):
    """The vector-Jacobian product of `_packed_step`, recomputing the step under a tape."""
    with tf.GradientTape() as tape:
        tape.watch([inputs, states, flat_params])
        y, new_states = _packed_step(config, compute_meta_loss, inputs, states, flat_params)
    return tape.gradient(
        [y] + list(new_states),
        [inputs, list(states), list(flat_params)],
        output_gradients=[d_y] + list(d_states),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )


def cell_step(
    config,
    params,
    inputs,
    states,
    *,
    compute_meta_loss=True,
    jit_compile=True,
    implementation="auto",
):
    """One step as a recurrent cell runs it: ``(y_t, new state list)``, the states the flat
    list of `pack` (what `keras.layers.RNN` carries) in and out. What `MNMCell.call` and
    the tf-keras cell run.

    ``implementation`` (`fused.choose`): the fused kernel's step where it is chosen; else
    `step`, compiled with XLA (``jit_compile``, on TensorFlow). The compiled step's
    gradient recomputes the step (also compiled) instead of keeping the step's
    intermediate tensors, so a loop over it (`keras.layers.RNN`) keeps for
    back-propagation only each step's inputs and state, not the written weights phi_t
    beside phi_{t-1}.
    """
    if fused.choose(config, implementation, single_step=True) == "kernel":
        y, new_state = fused.step(config, params, inputs, unpack(config, states), compute_meta_loss)
        return y, pack(config, new_state)
    if not jit_compile or keras.backend.backend() != "tensorflow":
        y, new_state, _ = step(config, params, inputs, unpack(config, states), compute_meta_loss)
        return y, pack(config, new_state)
    states, flat_params = list(states), tf.nest.flatten(params)
    n_state = len(states)
    forward = reversible.compiled(_packed_step, True)
    backward = reversible.compiled(_packed_step_vjp, True)

    @tf.custom_gradient
    def run(inputs, *flat):
        flat = [tf.stop_gradient(x) for x in flat]
        inputs = tf.stop_gradient(inputs)
        y, new_states = forward(config, compute_meta_loss, inputs, flat[:n_state], flat[n_state:])

        def grad_fn(d_y, *d_new):
            d_y = tf.zeros_like(y) if d_y is None else d_y
            d_new = [tf.zeros_like(n) if d is None else d for n, d in zip(new_states, d_new)]
            d_inputs, d_states, d_params = backward(
                config, compute_meta_loss, inputs, flat[:n_state], flat[n_state:], d_y, d_new
            )
            return [d_inputs] + list(d_states) + list(d_params)

        return [y] + list(new_states), grad_fn

    results = run(inputs, *states, *flat_params)
    return results[0], list(results[1:])


def compiled_step(config, params, inputs, state, compute_meta_loss=True, jit_compile=True):
    """`step` compiled with XLA (``jit_compile``), without the interactions, on an
    `MNMState`: ``(y_t, new_state)`` (`cell_step` on ``pack(config, state)``, the XLA
    implementation)."""
    y, states = cell_step(
        config,
        params,
        inputs,
        pack(config, state),
        compute_meta_loss=compute_meta_loss,
        jit_compile=jit_compile,
        implementation="xla",
    )
    return y, unpack(config, states)


# --------------------------------------------------------------------------- sequence
def select(keep, new, old):
    """``new`` where ``keep`` (``[B]`` booleans), else ``old``, for any trailing shape."""
    keep = ops.reshape(keep, (-1,) + (1,) * (len(new.shape) - 1))
    return ops.where(keep, new, old)


def _masked_step(config, params, projected_input, state, keep, compute_meta_loss):
    """`recurrent_step`, with Keras' masking rule: where ``keep`` is False the state is
    kept (the write factors are zero, so the memory-efficient backward pass rebuilds the
    same memory)."""
    new_state, interactions = recurrent_step(
        config, params, projected_input, state, compute_meta_loss
    )
    if keep is None:
        return new_state, interactions
    new_state = keras.tree.map_structure(lambda n, o: select(keep, n, o), new_state, state)
    scale = ops.cast(keep, config.state_dtype)[:, None, None]
    factors = tuple((a * scale, b) for a, b in interactions.write_factors)
    return new_state, interactions._replace(write_factors=factors)


def _recurrent_params(params):
    """The part of ``params`` the loop reads (the output projection and phi_0 are not)."""
    return params._replace(output_kernel=(), output_bias=(), initial_memory=())


@dataclasses.dataclass(frozen=True)
class _Recurrence:
    """MNM's step as `reversible.unroll` runs it: the backward loop rebuilds the memory
    weights, ``phi_{t-1} = phi_t + sum_i a_i b_i^T`` layer by layer, from each step's
    write factors (its record), which `_masked_step` zeroes at masked steps. Rebuilding
    undoes a subtraction (in `MNMConfig.state_dtype`) with an addition."""

    config: MNMConfig
    compute_meta_loss: bool

    @property
    def large(self):
        return ("memory",)

    def state_template(self):
        return _state_template(self.config)

    def params_template(self):
        return _params_template(self.config)

    def step(self, params, x_t, state, keep):
        new, interactions = _masked_step(
            self.config, params, x_t, state, keep, self.compute_meta_loss
        )
        return new, [p for pair in interactions.write_factors for p in pair]

    def record_shapes(self, state):
        config = self.config
        return [
            (config.state_dtype, [None, config.num_heads, size])
            for index in range(config.memory_layers)
            for size in (config.memory_sizes[index + 1], config.memory_sizes[index])
        ]

    def undo(self, state_after, record):
        layers = range(self.config.memory_layers)
        written = [(-record[2 * i], record[2 * i + 1]) for i in layers]
        return memory.apply_write(list(state_after.memory), written)


def _state_template(config):
    """An `MNMState` of placeholders with the structure of ``config``'s state."""
    history = (0, 0, 0) if config.recall_delay else ()
    return MNMState(0, 0, 0, (0,) * config.memory_layers, 0, history)


def _params_template(config):
    """An `MNMParams` of placeholders with the structure of the loop's parameters."""
    count = config.feedback_layers
    return MNMParams(
        **dict.fromkeys(MNMParams._fields, 0),
    )._replace(
        feedback_kernels=(0,) * count,
        feedback_biases=(0,) * count,
        initial_memory=(),
        output_kernel=(),
        output_bias=(),
    )


def _full_params_template(config):
    """An `MNMParams` of placeholders with the structure of all of ``config``'s weights."""
    count = config.feedback_layers
    return MNMParams(**dict.fromkeys(MNMParams._fields, 0))._replace(
        feedback_kernels=(0,) * count,
        feedback_biases=(0,) * count,
        initial_memory=(0,) * config.memory_layers,
    )


def _loop_memory_efficient(config, params, projected, state, keeps, compute_meta_loss, jit_compile):
    """The loop over `recurrent_step` whose backward pass rebuilds the memory
    (`reversible.unroll` of `_Recurrence`): per step it keeps the state without the memory
    and the write factors, not phi_t. Memory: O(T B (d_h + H sum_l (D_{l+1} + D_l)))
    instead of O(T B sum_l D_{l+1} D_l); each step's forward pass runs twice. With
    ``jit_compile`` both loops are compiled with XLA.

    Returns ``(hs [T, B, d_h], reads [T, B, d_v], final_state)``.
    """
    recurrence = reversible.recurrence(_Recurrence, config, bool(compute_meta_loss))
    return reversible.unroll(
        recurrence, _recurrent_params(params), projected, state, keeps, jit_compile
    )


def _loop_python(config, params, projected, inputs, state, keeps, compute_meta_loss, on_step):
    """The loop as Python over a static number of steps, calling ``on_step`` each step."""
    hs, reads = [], []
    for t in range(projected.shape[0]):
        keep = None if keeps is None else keeps[t]
        new, interactions = _masked_step(
            config, params, projected[t], state, keep, compute_meta_loss
        )
        if on_step is not None:
            on_step(t, inputs[t], state, new, interactions)
        state = new
        hs.append(new.h)
        reads.append(new.read)
    return ops.stack(hs), ops.stack(reads), state


def _loop_scan(config, params, projected, state, keeps, compute_meta_loss):
    """The loop on a backend other than TensorFlow: `keras.ops.scan` over `_masked_step`
    (`jax.lax.scan` on JAX), differentiated by the backend's autodiff, which keeps every
    step's memory weights for the backward pass."""

    def body(current, inputs):
        x_t, keep = inputs if keeps is not None else (inputs, None)
        new, _ = _masked_step(config, params, x_t, current, keep, compute_meta_loss)
        return new, (new.h, new.read)

    sequence = projected if keeps is None else (projected, keeps)
    final, (hs, reads) = ops.scan(body, state, sequence)
    return hs, reads, final


def time_major_inputs(inputs, mask=None, reverse=False):
    """``inputs`` ``[B, T, F]`` (checked: rank 3, T >= 1) and ``mask`` ``[B, T]`` as time
    major ``[T, B, F]`` and ``[T, B]`` booleans (None without a mask), flipped in time for
    ``reverse``: what a sequence loop (`unroll`, `salu_core.unroll`) runs over."""
    inputs = ops.convert_to_tensor(inputs)
    if memory._rank(inputs) != 3:
        raise ValueError(
            f"`inputs` must have shape [batch, time, features]; received shape {inputs.shape}."
        )
    empty = (
        f"`inputs` must have at least one time step; received shape {inputs.shape} "
        "[batch, time, features]."
    )
    if inputs.shape[1] == 0:
        raise ValueError(empty)
    if inputs.shape[1] is None:  # a TensorFlow graph with a dynamic number of steps
        with tf.control_dependencies([tf.debugging.assert_positive(tf.shape(inputs)[1], empty)]):
            inputs = tf.identity(inputs)
    time_major = ops.transpose(inputs, (1, 0, 2))
    keeps = None if mask is None else ops.transpose(ops.cast(mask, "bool"), (1, 0))
    if reverse:
        time_major = ops.flip(time_major, axis=0)
        keeps = None if keeps is None else ops.flip(keeps, axis=0)
    return time_major, keeps


def batch_major_outputs(outputs, keeps):
    """A loop's outputs ``[T, B, d]`` as ``[B, T, d]``, with Keras' masking rule: before
    the first real step (``keeps`` ``[T, B]``) the outputs are zeros."""
    if keeps is not None:
        seen = ops.cast(ops.cumsum(ops.cast(keeps, "int32"), axis=0) > 0, outputs.dtype)
        outputs = outputs * seen[:, :, None]
    return ops.transpose(outputs, (1, 0, 2))


def unroll(
    config,
    params,
    inputs,
    state,
    mask=None,
    reverse=False,
    on_step=None,
    compute_meta_loss=True,
    jit_compile=True,
    implementation="auto",
):
    """Runs MNM over a sequence: ``(outputs [B, T, d_o], final_state)``.

    Computes what ``keras.layers.RNN(MNMCell(...), return_sequences=True,
    go_backwards=reverse)`` computes, Keras' masking convention included (at a masked
    step the state is kept and the output repeats the previous one; outputs before the
    first unmasked step are zeros), but faster: the input's part of the controller
    (``x_t W_x``) is one product for all steps before the loop and the output projection
    one product after it.

    Without ``on_step`` the loop is a `tf.while_loop` with the memory-efficient backward
    pass (`_loop_memory_efficient`). With ``on_step``, the loop is Python over the
    (static) steps and ``on_step(t, x_t, state_before, state_after, interactions)`` is
    called after each step (``t`` counts processed steps; with ``reverse`` the first is
    the sequence's last), for inspection; it is differentiated by plain autodiff.

    Args:
      config, params: `MNMConfig` and `MNMParams`.
      inputs: ``[B, T, input_dim]``.
      state: the `MNMState` to start from (`initial_state`).
      mask: optional ``[B, T]`` booleans, True at real steps.
      reverse: process the steps from the last to the first (outputs in that order).
      on_step: optional callback, see above.
      compute_meta_loss: as in `recurrent_step`.
      jit_compile: compile the loop and its backward pass with XLA (default True: on
        CPU a training step is about 3x faster so; see docs/performance.md). Without
        effect with ``on_step`` and on the kernel.
      implementation: ``"auto"`` (default), ``"kernel"`` or ``"xla"``: the loop through
        the fused C++ ops of `mnm_keras.fused` (on a CPU, for the configurations they
        cover) or the `tf.while_loop` above, the reference (`fused.choose`). Without
        effect with ``on_step`` and on other backends than TensorFlow (``"kernel"`` is then
        an error).
    """
    time_major, keeps = time_major_inputs(inputs, mask, reverse)
    projected = project_inputs(config, params, time_major)  # [T, B, 4 d_h]
    if on_step is not None:
        if time_major.shape[0] is None:
            raise ValueError("`unroll` with `on_step` needs a static number of time steps.")
        hs, reads, final = _loop_python(
            config, params, projected, time_major, state, keeps, compute_meta_loss, on_step
        )
    elif fused.choose(config, implementation) == "kernel":
        hs, reads, final = fused.recurrence(
            config, params, projected, state, keeps, compute_meta_loss
        )
    elif keras.backend.backend() == "tensorflow":
        hs, reads, final = _loop_memory_efficient(
            config, params, projected, state, keeps, compute_meta_loss, jit_compile
        )
    else:
        hs, reads, final = _loop_scan(config, params, projected, state, keeps, compute_meta_loss)
    outputs = output(config, params, hs, reads)  # [T, B, d_o]
    return batch_major_outputs(outputs, keeps), final
