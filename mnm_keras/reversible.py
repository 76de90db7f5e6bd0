"""The reversible sequence loop that MNM and LSTM+SALU share (TensorFlow).

Both models carry a large part of their state that each step changes by a small amount:
MNM's memory weights phi_t, changed by a rank-H write per layer (equations 2-4), and
SALU's table, one row per step. `keras.layers.RNN` keeps every step's state for
back-propagation, O(T x the large part) per sequence. `unroll` keeps, per step, only the
small part of the state before the step and the step's record (MNM: the write factors;
SALU: the table rows the step overwrote):

* forward (`_forward`): one `tf.while_loop` over `Recurrence.step`; it returns every
  step's ``h`` and read-out, the final state, the small states and the records;
* backward (`_backward`): a second loop from the last step to the first rebuilds the
  large part before step t from the part after it and the step's record
  (`Recurrence.undo`), recomputes the step under a `tf.GradientTape` and takes its
  vector-Jacobian product;
* `unroll`: both, as one `tf.custom_gradient` (the forward loop alone when no tape
  records, so that a traced serving function keeps no gradient function); with
  ``jit_compile`` each loop is compiled with XLA, once per `Recurrence` (the compiled
  loops are cached by it, so it is hashable and holds no variables).

Memory: O(T B x (small state + record)) beside one large state; each step's forward pass
runs twice. The models' mathematics stays in their modules (`mnm_keras.core`,
`mnm_keras.salu_core`), each of which describes its step to this loop as a `Recurrence`.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import tensorflow as tf


class Recurrence(Protocol):
    """A model's step as the reversible loop runs it (hashable: the compiled loops are
    cached by it).

    * ``large``: the names of the state's fields that the backward loop rebuilds;
    * ``state_template()`` / ``params_template()``: named tuples of placeholders with the
      structure of the state and of the parameters the loop reads (`tf.nest`);
    * ``step(params, x_t, state, keep)``: ``(new_state, record)``, with Keras' masking rule
      (where ``keep`` ``[B]`` is False the state is kept); ``record`` a list of tensors from
      which ``undo`` rebuilds the large fields before the step;
    * ``record_shapes(state)``: ``(dtype, shape)`` of each tensor of a step's record;
    * ``undo(state_after, record)``: the flat list of the large fields before the step, from
      ``state_after`` (the small fields: those before the step; the large: after it).
    The new state's ``h`` and ``read`` are the loop's per-step outputs.
    """

    large: tuple

    def state_template(self) -> Any: ...

    def params_template(self) -> Any: ...

    def step(self, params, x_t, state, keep) -> tuple: ...

    def record_shapes(self, state) -> list: ...

    def undo(self, state_after, record) -> list: ...


def with_shape(tensor, template):
    """``tensor`` with ``template``'s static shape (what a `tf.while_loop` body returns)."""
    tensor = tf.convert_to_tensor(tensor)
    tensor.set_shape(template.shape)
    return tensor


def _large_indices(recurrence):
    """Positions of the large fields' tensors in the flattened state."""
    template = recurrence.state_template()
    count = len(tf.nest.flatten(template))
    indexed = tf.nest.pack_sequence_as(template, list(range(count)))
    return [i for name in recurrence.large for i in tf.nest.flatten(getattr(indexed, name))]


def _merge(recurrence, small, large):
    """The flat state of ``small`` (the small fields' tensors) and ``large``, in order."""
    large_indices = _large_indices(recurrence)
    small, large = iter(small), iter(large)
    count = len(tf.nest.flatten(recurrence.state_template()))
    return [next(large) if i in large_indices else next(small) for i in range(count)]


def _pack(recurrence, flat):
    return tf.nest.pack_sequence_as(recurrence.state_template(), list(flat))


def _forward(recurrence, projected, keeps, flat_state, flat_params):
    """The forward loop; records nothing for autodiff.

    Returns ``(hs [T, B, d_h], reads [T, B, d_v], final flat state, the small state's
    tensors before every step [T, ...], the records [T, ...])``.
    """
    params = tf.nest.pack_sequence_as(recurrence.params_template(), list(flat_params))
    large = set(_large_indices(recurrence))
    small_start = [x for i, x in enumerate(flat_state) if i not in large]
    steps = tf.shape(projected)[0]

    def array(dtype, shape):
        return tf.TensorArray(dtype, size=steps, element_shape=shape)

    state = _pack(recurrence, flat_state)
    small_tas = [array(x.dtype, x.shape) for x in small_start]
    record_tas = [array(dtype, shape) for dtype, shape in recurrence.record_shapes(state)]
    h_ta, read_ta = array(state.h.dtype, state.h.shape), array(state.read.dtype, state.read.shape)

    def body(t, current, small_tas, record_tas, h_ta, read_ta):
        keep = None if keeps is None else keeps[t]
        new, record = recurrence.step(params, projected[t], _pack(recurrence, current), keep)
        small = [x for i, x in enumerate(current) if i not in large]
        small_tas = [ta.write(t, x) for ta, x in zip(small_tas, small)]
        record_tas = [ta.write(t, r) for ta, r in zip(record_tas, record)]
        new_flat = [with_shape(n, o) for n, o in zip(tf.nest.flatten(new), flat_state)]
        h_ta, read_ta = h_ta.write(t, new.h), read_ta.write(t, new.read)
        return t + 1, new_flat, small_tas, record_tas, h_ta, read_ta

    _, final, small_tas, record_tas, h_ta, read_ta = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (0, list(flat_state), small_tas, record_tas, h_ta, read_ta),
        parallel_iterations=1,
        maximum_iterations=steps,
    )
    return (
        h_ta.stack(),
        read_ta.stack(),
        final,
        [ta.stack() for ta in small_tas],
        [ta.stack() for ta in record_tas],
    )


def _backward(
    recurrence, projected, keeps, flat_params, final, smalls, records, d_hs, d_reads, d_final
):
    """The backward loop: from the last step to the first, rebuild the large state before
    step t (`Recurrence.undo`), recompute the step under a tape and take its
    vector-Jacobian product. Returns the gradients of ``projected``, of the initial flat
    state and of the flat parameters."""
    large_indices = _large_indices(recurrence)
    steps = tf.shape(projected)[0]
    d_values = [tf.zeros_like(v) for v in flat_params]
    d_projected_ta = tf.TensorArray(projected.dtype, size=steps, element_shape=projected.shape[1:])
    final_large = [final[i] for i in large_indices]

    def back(t, large, d_state, d_values, d_projected_ta):
        small = [x[t] for x in smalls]
        after = _pack(recurrence, _merge(recurrence, small, large))
        previous = recurrence.undo(after, [r[t] for r in records])
        previous = [with_shape(p, x) for p, x in zip(previous, final_large)]
        flat_before = _merge(recurrence, small, previous)
        # The outputs at step t are the new state's h and read-out.
        d_new = _pack(recurrence, d_state)
        d_new = d_new._replace(h=d_new.h + d_hs[t], read=d_new.read + d_reads[t])
        x_t = projected[t]
        with tf.GradientTape() as tape:
            tape.watch([x_t, flat_before, flat_params])
            params = tf.nest.pack_sequence_as(recurrence.params_template(), list(flat_params))
            keep = None if keeps is None else keeps[t]
            new, _ = recurrence.step(params, x_t, _pack(recurrence, flat_before), keep)
        d_x, d_before, d_step_values = tape.gradient(
            tf.nest.flatten(new),
            [x_t, flat_before, list(flat_params)],
            output_gradients=tf.nest.flatten(d_new),
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        d_before = [with_shape(g, s) for g, s in zip(d_before, final)]
        d_values = [a + b for a, b in zip(d_values, d_step_values)]
        return t - 1, previous, d_before, d_values, d_projected_ta.write(t, d_x)

    _, _, d_initial, d_values, d_projected_ta = tf.while_loop(
        lambda t, *_: t >= 0,
        back,
        (steps - 1, final_large, list(d_final), d_values, d_projected_ta),
        parallel_iterations=1,
        maximum_iterations=steps,
    )
    return d_projected_ta.stack(), d_initial, d_values


def may_be_differentiated():
    """False only when no gradient tape is recording: then nothing differentiates the loop.

    Under `tf.GradientTape` (eager, or traced inside a tape as in `Model.fit`'s train step)
    it is True. TensorFlow has no public test for an active tape; this is the one its own
    `tf.custom_gradient` machinery uses.
    """
    from tensorflow.python.eager import record

    return record.could_possibly_record()


@functools.cache
def recurrence(kind, *arguments):
    """The one ``kind(*arguments)`` (a `Recurrence`) per equal ``arguments``.

    `tf.function` tells a Python object argument apart from another by identity, not by
    equality: a new `Recurrence` for every call would trace and compile the loops again
    each time. Equal configurations share one instance, so their compiled loops too."""
    return kind(*arguments)


@functools.cache
def compiled(function, jit_compile):
    """``function`` as a `tf.function` (XLA with ``jit_compile``), one per function."""
    return tf.function(function, jit_compile=jit_compile, reduce_retracing=False)


def unroll(recurrence, params, projected, state, keeps, jit_compile):
    """Runs ``recurrence`` over ``projected`` ``[T, B, ...]`` from ``state`` with the
    reversible backward pass: ``(hs [T, B, d_h], reads [T, B, d_v], final_state)``.

    ``params`` has the structure of ``recurrence.params_template()``, ``state`` that of
    ``state_template()``; ``keeps``: ``[T, B]`` booleans (Keras' masking rule) or None.
    Rebuilding undoes each step exactly up to rounding (tested against plain autodiff and,
    in float64, against numerical gradients).
    """
    flat_params = tf.nest.flatten(params)
    flat_state = tf.nest.flatten(state)
    n_state = len(flat_state)
    forward = compiled(_forward, jit_compile) if jit_compile else _forward
    backward = compiled(_backward, jit_compile) if jit_compile else _backward

    @tf.custom_gradient
    def run(projected, *flat):
        # No tape may record the loop (the gradient is grad_fn's), or a compiled loop
        # would have to return its while-loop accumulators across the XLA boundary.
        projected = tf.stop_gradient(projected)
        flat = [tf.stop_gradient(x) for x in flat]
        start, values = flat[:n_state], flat[n_state:]
        hs, reads, final, smalls, records = forward(recurrence, projected, keeps, start, values)

        def grad_fn(d_hs, d_reads, *d_final):
            d_hs = tf.zeros_like(hs) if d_hs is None else d_hs
            d_reads = tf.zeros_like(reads) if d_reads is None else d_reads
            d_final = [tf.zeros_like(s) if d is None else d for s, d in zip(final, d_final)]
            d_projected, d_initial, d_values = backward(
                recurrence, projected, keeps, values, final, smalls, records, d_hs, d_reads, d_final
            )
            return [d_projected] + list(d_initial) + list(d_values)

        return [hs, reads] + list(final), grad_fn

    if not may_be_differentiated():
        # Inference (a serving function being traced for export, say): the forward loop
        # alone, so that no gradient function holding the loop's tensors is saved.
        # Tensors, not variables: the compiled loop is shared by every model with this
        # recurrence, so it must not capture one model's variables.
        flat_state = [tf.convert_to_tensor(x) for x in flat_state]
        flat_params = [tf.convert_to_tensor(x) for x in flat_params]
        hs, reads, final, _, _ = forward(recurrence, projected, keeps, flat_state, flat_params)
        return hs, reads, tf.nest.pack_sequence_as(state, list(final))
    results = run(projected, *flat_state, *flat_params)
    return results[0], results[1], tf.nest.pack_sequence_as(state, list(results[2:]))
