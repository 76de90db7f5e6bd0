"""The functional core of LSTM+SALU (paper section 4.1): one step and a whole sequence.

`SALUCell` (inside ``keras.layers.RNN``) and the sequence layer `SALU` own the variables
and call these pure functions. The controller is `core`'s (section 3.1); the memory is a
look-up table that every step appends its write pairs to and reads by soft attention.

Shapes: batch B, steps T, controller d_h, heads H, d_k and d_v, table rows L
(``max_length``; row ``s mod L`` holds step s's H pairs, so the table is a ring buffer past
L steps), output d_o.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import keras
import tensorflow as tf
from keras import ops

from mnm_keras import core, memory, reversible


class SALUConfig(NamedTuple):
    """The sizes of a SALU model (hashable: the compiled loops are cached by it)."""

    units: int
    key_size: int
    value_size: int
    num_heads: int
    max_length: int
    compute_dtype: str = "float32"

    @property
    def state_dtype(self):
        """The dtype of the state (as `core.MNMConfig.state_dtype`): float64 for a float64
        computation, float32 otherwise (mixed precision included)."""
        return "float64" if self.compute_dtype == "float64" else "float32"


class SALUParams(NamedTuple):
    """The weights, as tensors (`SALUCell.params`)."""

    controller_kernel: object  # [input_dim + d_v, 4 d_h], gates i, f, g, o
    controller_recurrent_kernel: object  # [d_h, 4 d_h]
    controller_bias: object  # [4 d_h]
    interface_kernel: object  # [d_h, H (2 d_k + d_v)]: read keys, write keys, values
    interface_bias: object  # [H (2 d_k + d_v)]
    output_kernel: object  # [d_h + d_v, d_o]
    output_bias: object  # [d_o]


class SALUState(NamedTuple):
    """The recurrent state (float32)."""

    h: object  # [B, d_h]
    c: object  # [B, d_h]
    read: object  # [B, d_v], v^r_t: the mean over heads of the read values
    keys: object  # [B, L, H d_k]: the table's keys, row s mod L for step s
    values: object  # [B, L, H d_v]
    count: object  # [B, 1]: steps written so far


def state_sizes(config):
    """The flat state's sizes, in `pack`'s order (`SALUCell.state_size`)."""
    rows, heads = config.max_length, config.num_heads
    return [
        config.units,
        config.units,
        config.value_size,
        rows * heads * config.key_size,
        rows * heads * config.value_size,
        1,
    ]


def pack(config, state):
    """`SALUState` -> the flat list of ``[B, size]`` tensors that ``keras.layers.RNN`` carries."""
    rows, heads = config.max_length, config.num_heads
    return [
        state.h,
        state.c,
        state.read,
        ops.reshape(state.keys, (-1, rows * heads * config.key_size)),
        ops.reshape(state.values, (-1, rows * heads * config.value_size)),
        state.count,
    ]


def unpack(config, flat):
    """The flat list of `pack` -> `SALUState`."""
    h, c, read, keys, values, count = flat
    rows, heads = config.max_length, config.num_heads
    return SALUState(
        h,
        c,
        read,
        ops.reshape(keys, (-1, rows, heads * config.key_size)),
        ops.reshape(values, (-1, rows, heads * config.value_size)),
        count,
    )


def initial_state(config, batch_size):
    """The state at the start of every sequence: zeros, an empty table."""
    rows, heads = config.max_length, config.num_heads
    return SALUState(
        ops.zeros((batch_size, config.units)),
        ops.zeros((batch_size, config.units)),
        ops.zeros((batch_size, config.value_size)),
        ops.zeros((batch_size, rows, heads * config.key_size)),
        ops.zeros((batch_size, rows, heads * config.value_size)),
        ops.zeros((batch_size, 1)),
    )


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


def _rows(config, count):
    """``[B, 2]`` indices ``(b, count_b mod L)``: the table row each sequence's step writes."""
    row = ops.cast(count[:, 0], "int32") % config.max_length
    return ops.stack([ops.arange(ops.shape(row)[0], dtype="int32"), row], axis=1)


def recurrent_step(config, params, projected_input, state):
    """One step without the output projection: the new `SALUState`.

    1. controller ``h_t, c_t = LSTM([x_t; v^r_{t-1}], (h_{t-1}, c_{t-1}))`` (3.1);
    2. interface ``[k^r_t; k^w_t; v^w_t] = tanh(W h_t + b)``, H heads each (equation 1
       without the rate);
    3. append: row ``count mod L`` of the table takes this step's H pairs
       ``(k^w_{t,i}, v^w_{t,i})``;
    4. read: every read head attends over every pair written so far
       (`soft_attention_read`), ``v^r_t`` is the mean over heads.

    Args:
      config: a `SALUConfig`.
      params: a `SALUParams`.
      projected_input: ``x_t W_x``, ``[B, 4 d_h]`` (`core.project_inputs`).
      state: the `SALUState` after step t - 1.
    """
    heads, dk, dv, rows = config.num_heads, config.key_size, config.value_size, config.max_length
    h, c = core.lstm_controller(config, params, projected_input, state)
    vectors = core.dense(config, h, params.interface_kernel, params.interface_bias, ops.tanh)
    read_keys, write_keys, values = core.split_last(vectors, [heads * dk, heads * dk, heads * dv])
    rows_written = _rows(config, state.count)
    table_keys = ops.scatter_update(state.keys, rows_written, write_keys)
    table_values = ops.scatter_update(state.values, rows_written, values)
    filled = ops.minimum(ops.cast(state.count[:, 0], "int32") + 1, rows)
    valid = ops.cast(ops.arange(rows)[None, :] < filled[:, None], table_keys.dtype)
    read = soft_attention_read(
        ops.reshape(table_keys, (-1, rows * heads, dk)),
        ops.reshape(table_values, (-1, rows * heads, dv)),
        ops.reshape(read_keys, (-1, heads, dk)),
        ops.repeat(valid, heads, axis=1),
    )
    read_value = memory.mean(read, axis=1)
    return SALUState(h, c, read_value, table_keys, table_values, state.count + 1.0)


def step(config, params, inputs, state):
    """One step: ``(y_t [B, d_o], new_state)``, ``y_t = W_y [h_t; v^r_t] + b_y``.

    ``inputs`` is ``x_t`` ``[B, input_dim]``; see `recurrent_step`.
    """
    # Matrix products, not `core.project_inputs` and `core.output` (tensordot): XLA
    # compiles the gradient of a loop over this step only with static transposes.
    kernel = params.controller_kernel[: inputs.shape[-1]]
    new_state = recurrent_step(config, params, core.dense(config, inputs, kernel), state)
    features = ops.concatenate([new_state.h, new_state.read], axis=-1)
    y = core.dense(config, features, params.output_kernel, params.output_bias)
    return y, new_state


def _masked_step(config, params, projected_input, state, keep):
    """`recurrent_step` with Keras' masking rule: where ``keep`` is False the state is kept."""
    new_state = recurrent_step(config, params, projected_input, state)
    if keep is None:
        return new_state
    return keras.tree.map_structure(lambda n, o: core.select(keep, n, o), new_state, state)


# --------------------------------------------------------------------------- sequence
@dataclasses.dataclass(frozen=True)
class _Recurrence:
    """SALU's step as `reversible.unroll` runs it: each step's record is the table rows it
    overwrote, which the backward loop writes back (the table before the step, exactly;
    at a masked step the rows are unchanged)."""

    config: SALUConfig

    @property
    def large(self):
        return ("keys", "values")

    def state_template(self):
        return SALUState(*(0,) * len(SALUState._fields))

    def params_template(self):
        return SALUParams(**dict.fromkeys(SALUParams._fields, 0))._replace(
            output_kernel=(), output_bias=()
        )

    def step(self, params, x_t, state, keep):
        indices = _rows(self.config, state.count)
        evicted = [tf.gather_nd(state.keys, indices), tf.gather_nd(state.values, indices)]
        return _masked_step(self.config, params, x_t, state, keep), evicted

    def record_shapes(self, state):
        return [
            (state.keys.dtype, state.keys[:, 0].shape),
            (state.values.dtype, state.values[:, 0].shape),
        ]

    def undo(self, state_after, record):
        indices = _rows(self.config, state_after.count)  # the count before the step
        tables = (state_after.keys, state_after.values)
        return [tf.tensor_scatter_nd_update(t, indices, r) for t, r in zip(tables, record)]


def _loop_memory_efficient(config, params, projected, state, keeps, jit_compile):
    """The loop over `recurrent_step` whose backward pass does not keep the tables
    (`reversible.unroll` of `_Recurrence`).

    ``keras.layers.RNN`` keeps every step's table for back-propagation, O(T L H (d_k +
    d_v)) per sequence. Here the forward loop keeps, per step, the small state and the
    table rows the step overwrote; the backward loop restores those rows. Memory: O(T B
    (d_h + H (d_k + d_v))) beside one table; each step's forward pass runs twice. With
    ``jit_compile`` both loops are compiled with XLA.

    Returns ``(hs [T, B, d_h], reads [T, B, d_v], final_state)``.
    """
    loop_params = params._replace(output_kernel=(), output_bias=())
    return reversible.unroll(
        reversible.recurrence(_Recurrence, config),
        loop_params,
        projected,
        state,
        keeps,
        jit_compile,
    )


def _loop_scan(config, params, projected, state, keeps):
    """The loop on a backend other than TensorFlow: `keras.ops.scan` over `_masked_step`,
    differentiated by the backend's autodiff (which keeps every step's table)."""

    def body(current, inputs):
        x_t, keep = inputs if keeps is not None else (inputs, None)
        new = _masked_step(config, params, x_t, current, keep)
        return new, (new.h, new.read)

    sequence = projected if keeps is None else (projected, keeps)
    final, (hs, reads) = ops.scan(body, state, sequence)
    return hs, reads, final


def unroll(config, params, inputs, state, mask=None, reverse=False, jit_compile=True):
    """Runs LSTM+SALU over a sequence: ``(outputs [B, T, d_o], final_state)``.

    Computes what ``keras.layers.RNN(SALUCell(...), return_sequences=True,
    go_backwards=reverse)`` computes, Keras' masking convention included (at a masked step
    the state is kept and the output repeats the previous one; outputs before the first
    unmasked step are zeros). The input's part of the controller is one product for all
    steps before the loop and the output projection one product after it; on TensorFlow
    the loop has the memory-efficient backward pass (`_loop_memory_efficient`).

    Args:
      config, params: `SALUConfig` and `SALUParams`.
      inputs: ``[B, T, input_dim]``, T >= 1.
      state: the `SALUState` to start from (`initial_state`).
      mask: optional ``[B, T]`` booleans, True at real steps.
      reverse: process the steps from the last to the first (outputs in that order).
      jit_compile: compile the loop and its backward pass with XLA (TensorFlow only).
    """
    time_major, keeps = core.time_major_inputs(inputs, mask, reverse)
    projected = core.project_inputs(config, params, time_major)  # [T, B, 4 d_h]
    if keras.backend.backend() == "tensorflow":
        hs, reads, final = _loop_memory_efficient(
            config, params, projected, state, keeps, jit_compile
        )
    else:
        hs, reads, final = _loop_scan(config, params, projected, state, keeps)
    outputs = core.output(config, params, hs, reads)  # [T, B, d_o]
    return core.batch_major_outputs(outputs, keeps), final
