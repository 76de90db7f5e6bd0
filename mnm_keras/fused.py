"""The MNM recurrence through the fused C++ kernels of `mnm_keras.kernels`.

`core.unroll` runs the recurrence of a sequence (the controller's recurrent part, the
interface, the write, the read and the meta loss of every step) either as a `tf.while_loop`
compiled with XLA (the reference, `implementation="xla"`) or, on a CPU, through one fused
op for the whole sequence and one hand-written gradient op (`implementation="kernel"`).
This module is the kernel's side: which configurations it computes (`unsupported`) and
the recurrence with its custom gradient (`recurrence`).

The gradient op rebuilds each step's memory by undoing that step's rank-H write,
``phi_{t-1} = phi_t + sum_i a_i b_i^T``, from the write factors the forward op returns,
as the reference's memory-efficient backward pass does: no step's memory is kept.

Shapes: T steps, B batch, d_h units, d_v value size, H heads, L memory layers.
"""

from __future__ import annotations

import tensorflow as tf

from mnm_keras import memory, reversible

IMPLEMENTATIONS = ("auto", "kernel", "xla")

__all__ = ["IMPLEMENTATIONS", "check_implementation", "choose", "recurrence", "step", "unsupported"]


# Loading the library (at first use: the compiler's version, the cache's files, perhaps a
# build) is plain Python, often reached while a tf.function with AutoGraph traces a
# network (TF-Agents' `common.function`): it is kept out of AutoGraph's conversion, which
# would try, and fail with warnings, to convert `subprocess` and `os.path`.
@tf.autograph.experimental.do_not_convert
def _library():
    """The loaded op library (compiled at first use; `mnm_keras.kernels`)."""
    from mnm_keras import kernels

    return kernels.load()


def unsupported(config):
    """What of ``config`` (an `MNMConfig`) the kernel does not compute, or None.

    The kernel covers MNM-p (``write_rule="local"``, with or without
    ``targets_from_values``) and MNM-g (``write_rule="gradient"``) with tanh hidden memory
    layers and a linear last layer, normalised or paper writes, any H and L, no recall
    delay, in float32 or float64.
    """
    missing = []
    if config.write_rule not in ("local", "gradient"):
        missing.append(
            f"write_rule={config.write_rule!r} (the kernel computes 'local' and 'gradient')"
        )
    if config.recall_delay:
        missing.append(f"recall_delay={config.recall_delay} (the kernel computes 0)")
    if memory._activation_kind(config.memory_activation) != "tanh":
        missing.append(
            f"memory_activation={_name(config.memory_activation)!r} (the kernel computes tanh)"
        )
    if memory._activation_kind(config.memory_output_activation) != "identity":
        missing.append(
            f"memory_output_activation={_name(config.memory_output_activation)!r} (the kernel "
            "computes None, linear)"
        )
    if config.compute_dtype not in ("float32", "float64"):
        missing.append(
            f"compute_dtype={config.compute_dtype!r} (the kernel computes float32 and float64)"
        )
    return "; ".join(missing) or None


def _name(activation):
    """An activation as a user names it: ``"relu"`` for ``keras.activations.relu``."""
    return getattr(activation, "__name__", activation)


def check_implementation(implementation):
    """``implementation`` if it is one of `IMPLEMENTATIONS`, else ValueError naming it."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"`implementation` must be one of {IMPLEMENTATIONS} ('auto': the fused kernel "
            "on a CPU when it is built and covers the configuration, else 'xla'); received "
            f"implementation={implementation!r}."
        )
    return implementation


def _not_here():
    """Why the kernel cannot run in this process, or None."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return f"Keras runs on {keras.backend.backend()!r} (the kernel is a TensorFlow op)"
    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return "an accelerator is present (the kernel runs on CPUs only)"
    if _in_xla_function():
        return (
            "the call is inside a function compiled with XLA (jit_compile=True), which cannot "
            "run custom ops"
        )
    from mnm_keras import kernels

    if not kernels.available():
        return kernels.unavailable_reason()
    return None


def _in_xla_function():
    """True while tracing a function compiled with XLA (``tf.function(jit_compile=True)``,
    `Model.compile(jit_compile=True)`): TensorFlow marks its graph with an XLA context."""
    if tf.executing_eagerly():
        return False
    from tensorflow.python.ops import control_flow_util

    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


@tf.autograph.experimental.do_not_convert
def choose(config, implementation, single_step=False):
    """``"kernel"`` or ``"xla"``: what runs ``config`` with ``implementation``.

    ``"auto"`` gives the kernel when it covers ``config`` and can run here (TensorFlow, no
    accelerator, the library built), else the TensorFlow/XLA reference; ``"kernel"`` raises
    a ValueError naming what is missing instead of falling back; ``"xla"`` is the reference.
    For a ``single_step`` (a cell's step in `keras.layers.RNN`) ``"auto"`` gives the
    reference: the kernel's step was measured slower than the XLA step there
    (benchmarks/results/kernel, docs/performance.md), while over a whole sequence the
    kernel is faster.
    """
    check_implementation(implementation)
    if implementation == "xla" or (implementation == "auto" and single_step):
        return "xla"
    reason = unsupported(config) or _not_here()
    if reason is None:
        return "kernel"
    if implementation == "kernel":
        raise ValueError(f"implementation='kernel' cannot run here: {reason}.")
    return "xla"


def _weights(config, params, dtype):
    """The weights the ops read, in their order, as tensors of ``dtype``."""
    cast = lambda x: tf.cast(tf.convert_to_tensor(x), dtype)  # noqa: E731
    return [
        cast(params.controller_kernel)[-config.value_size :],  # W_r, the read-out's rows
        cast(params.controller_recurrent_kernel),
        cast(params.controller_bias),
        cast(params.interface_kernel),
        cast(params.interface_bias),
        cast(params.rate_kernel),
        cast(params.rate_bias),
    ]


def _with_last(sequence, last):
    """``sequence`` ``[T, ...]`` with ``last`` added to its last step."""
    if last is None:
        return sequence
    return tf.concat([sequence[:-1], sequence[-1:] + last[None]], axis=0)


def recurrence(config, params, projected, state, keeps, compute_meta_loss=True):
    """The recurrence over a sequence through the fused ops: ``(hs, reads, final_state)``.

    What `core._loop_memory_efficient` computes, for a configuration the kernel covers
    (`unsupported` returns None).

    Args:
      config: an `MNMConfig`.
      params: an `MNMParams` (the output projection and phi_0 are not read).
      projected: ``x_t W_x`` for every step, ``[T, B, 4 d_h]``.
      state: the `MNMState` before the first step (no history).
      keeps: ``[T, B]`` booleans (False at masked steps) or None.
      compute_meta_loss: accumulate the meta loss in ``state.meta``.

    Returns:
      ``hs [T, B, d_h]``, ``reads [T, B, d_v]`` and the final `MNMState`.
    """
    library = _library()
    projected = tf.convert_to_tensor(projected)
    dtype = projected.dtype
    steps_and_batch = tf.shape(projected)[:2]
    keeps = tf.ones(steps_and_batch, dtype) if keeps is None else tf.cast(keeps, dtype)
    layers, feedback = config.memory_layers, config.feedback_layers
    weights = _weights(config, params, dtype)
    feedback_kernels = [tf.cast(k, dtype) for k in params.feedback_kernels]
    feedback_biases = [tf.cast(b, dtype) for b in params.feedback_biases]
    start = [tf.cast(x, dtype) for x in (state.h, state.c, state.read, state.meta)]
    start_memory = [tf.cast(m, dtype) for m in state.memory]
    options = dict(
        num_heads=config.num_heads,
        normalize=config.normalize_writes,
        compute_meta=bool(compute_meta_loss),
        gradient_write=config.write_rule == "gradient",
    )

    def inputs(projected, start, start_memory, weights, feedback_kernels, feedback_biases):
        h, c, read, meta = start
        return dict(
            projected=projected,
            keeps=keeps,
            h=h,
            c=c,
            read=read,
            meta=meta,
            memory=list(start_memory),
            read_kernel=weights[0],
            recurrent_kernel=weights[1],
            controller_bias=weights[2],
            interface_kernel=weights[3],
            interface_bias=weights[4],
            rate_kernel=weights[5],
            rate_bias=weights[6],
            feedback_kernels=list(feedback_kernels),
            feedback_biases=list(feedback_biases),
        )

    def split(flat):
        flat = list(flat)
        start, flat = flat[:4], flat[4:]
        start_memory, flat = flat[:layers], flat[layers:]
        weights, flat = flat[:7], flat[7:]
        return start, start_memory, weights, flat[:feedback], flat[feedback:]

    @tf.custom_gradient
    def run(projected, *flat):
        arguments = inputs(projected, *split(flat))
        hs, cs, reads, meta, final_memory, factors_a, factors_b = library.mnm_local_forward(
            **arguments, **options
        )

        def grad(d_hs, d_reads, d_h, d_c, d_read, d_meta, *d_memory):
            zeros = tf.zeros_like
            d_hs = _with_last(zeros(hs) if d_hs is None else d_hs, d_h)
            d_reads = _with_last(zeros(reads) if d_reads is None else d_reads, d_read)
            d_c = zeros(cs[-1]) if d_c is None else d_c
            d_meta = zeros(meta) if d_meta is None else d_meta
            d_memory = [zeros(m) if d is None else d for m, d in zip(final_memory, d_memory)]
            grads = library.mnm_local_backward(
                **arguments,
                **options,
                hs=hs,
                cs=cs,
                reads=reads,
                final_memory=final_memory,
                factors_a=factors_a,
                factors_b=factors_b,
                grad_hs=d_hs,
                grad_reads=d_reads,
                grad_c=d_c,
                grad_meta=d_meta,
                grad_memory=d_memory,
            )
            d = list(grads)
            return [*d[:5], *d[5], *d[6:13], *d[13], *d[14]]

        outputs = [hs, reads, hs[-1], cs[-1], reads[-1], meta, *final_memory]
        return outputs, grad

    flat = [*start, *start_memory, *weights, *feedback_kernels, *feedback_biases]
    if reversible.may_be_differentiated():
        results = run(projected, *flat)
    else:  # inference (a serving function traced for export, say): no gradient function
        hs, cs, reads, meta, final_memory, _, _ = library.mnm_local_forward(
            **inputs(projected, *split(flat)), **options
        )
        results = [hs, reads, hs[-1], cs[-1], reads[-1], meta, *final_memory]
    hs, reads, h, c, read, meta = results[:6]
    final = state._replace(h=h, c=c, read=read, meta=meta, memory=tuple(results[6:]))
    return hs, reads, final


def step(config, params, inputs, state, compute_meta_loss=True):
    """One step through the fused ops (a sequence of one step): ``(y_t, new_state)``.

    What `core.compiled_step` computes, for a configuration the kernel covers.
    ``inputs`` is ``x_t`` ``[B, input_dim]``.
    """
    from mnm_keras import core

    projected = core.project_inputs(config, params, inputs)[None]
    _, _, new_state = recurrence(config, params, projected, state, None, compute_meta_loss)
    return core.output(config, params, new_state.h, new_state.read), new_state
