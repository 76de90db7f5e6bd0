"""The memory-efficient training path of `mnm_keras.MNM`: the memory is rebuilt, not stored.

A plain ``keras.layers.RNN(MNMCell(...))`` keeps, for back-propagation, every step's
intermediate tensors, among them the memory weights phi_t of every step: batch x
sum_l D_{l+1} D_l floats per step (about 3.8 MB at batch 32 and 3 x 100 x 100), 3.9 GB
for 1,024 steps. Both write rules change each memory layer by a rank-H product
(``M^l_t = M^l_{t-1} - sum_i a^l_i (b^l_i)^T``, `memory.apply_write`), so this path stores
only the factors ``(a^l, b^l)`` of each step (batch x H x (D_{l+1} + D_l) floats per layer)
and the small part of the state (controller h and c, read-out, meta-loss accumulator):

* forward: one `tf.while_loop` over the steps that records nothing for back-propagation
  (it runs inside `tf.custom_gradient`) and writes the outputs, the small states and the
  write factors to `tf.TensorArray`s;
* backward: a second loop from the last step to the first. At step t it rebuilds
  ``phi_{t-1} = phi_t + sum_i a_i b_i^T`` from the stored factors, recomputes that one step
  under a `tf.GradientTape` (the same `MNMCell.step`, with the trainable weights bound to
  tensors by `keras.StatelessScope`) and takes the vector-Jacobian product of the step's
  outputs and new state with the incoming gradients. The gradients of the weights are
  summed over the steps; the gradient of the state, memory included, is carried to step
  t - 1.

Peak memory is therefore one step's intermediates plus O(T x batch x (units + H sum_l
(D_{l+1} + D_l))) instead of O(T x batch x sum_l D_{l+1} D_l), at the price of computing
the forward pass of each step twice. Rebuilding phi_{t-1} from phi_t undoes a float32
subtraction with an addition, which is exact up to rounding (relative error of the order
of 1e-7 per step); `tests/test_mnm_layer.py` checks outputs and gradients against the
plain RNN path, both write rules, with masks, recall delay and ``go_backwards``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mnm_keras import memory


def _memory_indices(cell):
    return range(3, 3 + cell.memory_layers)


def _unflatten(cell, flat, index):
    sizes = cell.memory_sizes
    return tf.reshape(flat, [-1, sizes[index + 1], sizes[index]])


def _flatten(matrix):
    return tf.reshape(matrix, [-1, matrix.shape[1] * matrix.shape[2]])


def _like(tensor, template):
    tensor = tf.convert_to_tensor(tensor)
    tensor.set_shape(template.shape)
    return tensor


def run(cell, sequences, initial_states, mask=None, training=False, go_backwards=False):
    """Runs ``cell`` over ``sequences`` with the memory-efficient backward pass.

    Computes what ``keras.layers.RNN(cell, return_sequences=True, return_state=True,
    go_backwards=go_backwards)`` computes (including Keras' masking convention: at a masked
    step the state is kept and the output repeats the previous one).

    Args:
      cell: a built `MNMCell`.
      sequences: ``[batch, time, features]``.
      initial_states: the cell's state list (`MNMCell.get_initial_state`).
      mask: optional ``[batch, time]`` boolean mask.
      training: passed to the cell.
      go_backwards: process the sequence from its last step to its first.

    Returns:
      ``(outputs, final_states)``: ``outputs`` is ``[batch, time, output_units]`` in the
      order the steps were processed; ``final_states`` the state list after the last step.
    """
    variables = list(cell.trainable_variables)
    memory_indices = list(_memory_indices(cell))
    small_indices = [i for i in range(len(initial_states)) if i not in memory_indices]
    inputs = tf.transpose(sequences, [1, 0, 2])
    masks = None if mask is None else tf.transpose(tf.cast(mask, tf.bool), [1, 0])
    if go_backwards:
        inputs = tf.reverse(inputs, [0])
        masks = None if masks is None else tf.reverse(masks, [0])
    steps = inputs.shape[0] if inputs.shape[0] is not None else tf.shape(inputs)[0]
    output_size = cell.output_size

    def step(x_t, states, mask_t, previous_output, values):
        """One masked step with the weights bound to ``values``: (y, states, factors)."""
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            y, new_states, interactions = cell.step(x_t, list(states), training=training)
        factors = interactions["write_factors"]
        if mask_t is not None:
            keep = mask_t[:, None]
            y = tf.where(keep, y, previous_output)
            new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
            scale = tf.cast(mask_t, factors[0][0].dtype)[:, None, None]
            factors = [(left * scale, right) for left, right in factors]
        return y, new_states, factors

    @tf.custom_gradient
    def forward(inputs, *flat):
        initial = list(flat[: len(initial_states)])
        values = list(flat[len(initial_states) :])
        batch = tf.shape(inputs)[1]
        outputs_ta = tf.TensorArray(tf.float32, size=steps, element_shape=[None, output_size])
        small_tas = [
            tf.TensorArray(initial[i].dtype, size=steps, element_shape=initial[i].shape)
            for i in small_indices
        ]
        factor_tas = [
            tf.TensorArray(tf.float32, size=steps, element_shape=[None, cell.num_heads, size])
            for index in range(cell.memory_layers)
            for size in (cell.memory_sizes[index + 1], cell.memory_sizes[index])
        ]
        previous_output = tf.zeros([batch, output_size], tf.float32)

        def body(t, states, previous_output, outputs_ta, small_tas, factor_tas):
            mask_t = None if masks is None else masks[t]
            y, new_states, factors = step(inputs[t], states, mask_t, previous_output, values)
            outputs_ta = outputs_ta.write(t, y)
            small_tas = [ta.write(t, states[i]) for ta, i in zip(small_tas, small_indices)]
            flat_factors = [part for pair in factors for part in pair]
            factor_tas = [ta.write(t, part) for ta, part in zip(factor_tas, flat_factors)]
            return t + 1, new_states, y, outputs_ta, small_tas, factor_tas

        _, final, last_output, outputs_ta, small_tas, factor_tas = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (0, initial, previous_output, outputs_ta, small_tas, factor_tas),
            parallel_iterations=1,
        )
        del last_output
        outputs = outputs_ta.stack()

        def grad_fn(d_outputs, *d_final):
            d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
            d_states = [tf.zeros_like(s) if d is None else d for s, d in zip(final, d_final)]
            d_values = [tf.zeros_like(v) for v in values]
            memory_states = [final[i] for i in memory_indices]
            d_inputs_ta = tf.TensorArray(inputs.dtype, size=steps, element_shape=inputs.shape[1:])
            d_previous = tf.zeros([batch, output_size], tf.float32)

            def back(t, memory_states, d_states, d_previous, d_values, d_inputs_ta):
                # phi_{t-1} = phi_t + sum_i a_i b_i^T, layer by layer.
                previous_memory = []
                for index, flat_matrix in enumerate(memory_states):
                    left = factor_tas[2 * index].read(t)
                    right = factor_tas[2 * index + 1].read(t)
                    matrix = _unflatten(cell, flat_matrix, index)
                    previous_memory.append(
                        _flatten(memory.apply_write([matrix], [(-left, right)])[0])
                    )
                states = [None] * len(final)
                for ta, i in zip(small_tas, small_indices):
                    states[i] = ta.read(t)
                for flat_matrix, i in zip(previous_memory, memory_indices):
                    states[i] = flat_matrix
                x_t = inputs[t]
                mask_t = None if masks is None else masks[t]
                previous_output = (
                    tf.zeros([batch, output_size], tf.float32)
                    if masks is None
                    else tf.where(t > 0, outputs_ta.read(tf.maximum(t - 1, 0)), 0.0)
                )
                with tf.GradientTape() as tape:
                    tape.watch([x_t, states, previous_output, values])
                    y, new_states, _ = step(x_t, states, mask_t, previous_output, values)
                grads = tape.gradient(
                    [y] + new_states,
                    [x_t, states, previous_output, values],
                    output_gradients=[d_outputs[t] + d_previous] + d_states,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                d_x, d_states, d_previous, d_step_values = grads
                # Loop variables must keep their static shapes across iterations.
                d_states = [_like(g, s) for g, s in zip(d_states, final)]
                d_previous = _like(d_previous, outputs[0])
                previous_memory = [
                    _like(m, final[i]) for m, i in zip(previous_memory, memory_indices)
                ]
                d_values = [a + b for a, b in zip(d_values, d_step_values)]
                d_inputs_ta = d_inputs_ta.write(t, d_x)
                return t - 1, previous_memory, d_states, d_previous, d_values, d_inputs_ta

            _, _, d_initial, _, d_values, d_inputs_ta = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (steps - 1, memory_states, d_states, d_previous, d_values, d_inputs_ta),
                parallel_iterations=1,
            )
            return [d_inputs_ta.stack()] + list(d_initial) + d_values

        return [outputs] + list(final), grad_fn

    values = [tf.convert_to_tensor(v) for v in variables]
    results = forward(inputs, *initial_states, *values)
    outputs, final_states = results[0], list(results[1:])
    return tf.transpose(outputs, [1, 0, 2]), final_states
