"""The neural memory of MNM as pure functions of Keras 3 operations (paper, section 3).

This module is the only implementation of the memory equations in mnm_keras: the Keras 3
`MNMCell`, `MNM` and the tf-keras cell used by TF-Agents all call these functions. They
are written with `keras.ops`, so they run on every Keras backend (TensorFlow and JAX are
tested): on TensorFlow they take and return `tf.Tensor`s and run eagerly, inside
`tf.function` and under XLA (`jit_compile=True`); on JAX they take and return `jax.Array`s
and run under `jax.jit`. They are differentiable with respect to every argument, so a
training loss can be back-propagated through a write (second order for `gradient_write`).

Notation (paper section 3.2). The memory is an L-layer perceptron f_phi with weights
phi = {M^0, ..., M^{L-1}} (the paper numbers them from 1). Each sequence of a batch has its
own copy, so

  * ``weights[l]`` has shape ``[batch, D_{l+1}, D_l]``, with ``D_0`` the key size and
    ``D_L`` the value size;
  * layer l computes ``z^{l+1} = act_l(M^l z^l)`` with ``z^0 = key``; hidden layers use
    ``hidden_activation`` (tanh in the paper) and the last layer ``output_activation``
    (linear by default, as appendix C assumes);
  * ``keys`` have shape ``[batch, heads, D_0]`` and ``values`` ``[batch, heads, D_L]``: the
    H heads are processed in parallel.

Activations are callables mapping a tensor to a tensor, or ``None`` for the identity.

MNM-g's write needs the gradient of the recall loss at every layer's pre-activation, the
deltas of back-propagation. `recall_deltas` writes them out in closed form from the
activations and pre-activations that `forward_with_pre_activations` returns (the default,
``method="closed_form"`` of `gradient_write`); ``method="tape"`` takes them with
`tf.GradientTape` instead and is kept as the reference (TensorFlow backend only).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

Tensor = Any  # a tensor of the Keras backend (tf.Tensor, jax.Array, ...)
Activation = Callable[[Tensor], Tensor] | None

__all__ = [
    "forward",
    "forward_with_pre_activations",
    "recall_deltas",
    "read",
    "recall_error",
    "gradient_write",
    "gradient_write_factors",
    "local_write",
    "local_write_factors",
    "apply_write",
    "meta_loss",
    "weighted_recall_error",
]


# epsilon of the normalised writes (``normalize=True``): keeps the step finite for an
# all-zero layer input; small against the squared norm of a key of tanh units.
NORMALIZATION_EPSILON = 1e-3

# How `gradient_write_factors` takes the deltas: written out (`recall_deltas`) or with
# `tf.GradientTape` (the reference).
DELTA_METHODS = ("closed_form", "tape")

# The activations whose derivative `recall_deltas` writes out, recognised by identity (the
# TensorFlow functions) or by name (Keras' `keras.activations.tanh` etc. are plain functions
# of these names); any other callable is differentiated by the backend's autodiff.
_KNOWN_ACTIVATIONS = {
    "tanh": (ops.tanh, tf.tanh, tf.math.tanh, tf.nn.tanh),
    "sigmoid": (ops.sigmoid, tf.sigmoid, tf.math.sigmoid, tf.nn.sigmoid),
    "relu": (ops.relu, tf.nn.relu),
}


def _squared_norm(z: Tensor) -> Tensor:
    """``||z||^2 + NORMALIZATION_EPSILON`` over the last axis, kept: ``[batch, heads, 1]``."""
    return ops.sum(ops.square(z), axis=-1, keepdims=True) + NORMALIZATION_EPSILON


def _apply(activation: Activation, x: Tensor) -> Tensor:
    return x if activation is None else activation(x)


def _activation_kind(activation: Activation) -> str:
    """``"identity"``, ``"tanh"``, ``"sigmoid"``, ``"relu"`` or ``"other"``."""
    if activation is None:
        return "identity"
    for kind, functions in _KNOWN_ACTIVATIONS.items():
        if any(activation is function for function in functions):
            return kind
    name = getattr(activation, "__name__", None)
    if name == "linear":  # Keras' identity (keras.activations.get(None) returns it)
        return "identity"
    return name if name in _KNOWN_ACTIVATIONS else "other"


def _activation_backward(
    activation: Activation, pre: Tensor, out: Tensor, upstream: Tensor
) -> Tensor:
    """Back-propagates ``upstream = dL/d(out)`` through ``out = act(pre)``: ``dL/d(pre)``.

    ``upstream * act'(pre)``, with the derivative from the output for tanh (``1 - out^2``)
    and sigmoid (``out (1 - out)``), the step of ``pre`` for relu and 1 for the identity.
    Any other activation is differentiated by the backend's own autodiff on the
    activation alone (`_activation_vjp`: its vector-Jacobian product with ``upstream``,
    the elementwise derivative times ``upstream`` for an elementwise activation), which an
    enclosing gradient differentiates again. All three tensors have the same shape,
    ``[batch, heads, D]``.
    """
    kind = _activation_kind(activation)
    if kind == "identity":
        return upstream
    if kind == "tanh":
        return upstream * (1.0 - ops.square(out))
    if kind == "sigmoid":
        return upstream * out * (1.0 - out)
    if kind == "relu":
        return upstream * ops.cast(pre > 0, upstream.dtype)
    return _activation_vjp(activation, pre, upstream)


def _activation_vjp(activation: Activation, pre: Tensor, upstream: Tensor) -> Tensor:
    """``upstream^T d act(pre) / d pre`` with the backend's autodiff (TensorFlow, JAX)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(pre)
            recomputed = activation(pre)
        return tape.gradient(
            recomputed,
            pre,
            output_gradients=upstream,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
    if backend == "jax":
        import jax

        _, vjp = jax.vjp(activation, pre)
        return vjp(upstream)[0]
    raise NotImplementedError(
        f"The derivative of the memory activation {activation!r} is written out for the "
        "identity, tanh, sigmoid and relu only; any other activation needs the TensorFlow "
        f"or JAX backend to differentiate it (Keras runs on {backend!r})."
    )


def mean(x: Tensor, axis: int) -> Tensor:
    """The mean over ``axis`` in ``x``'s own dtype (Keras's JAX `ops.mean` computes in
    float32 whatever the dtype, which breaks float64 gradient checks)."""
    return ops.sum(x, axis=axis) / ops.cast(ops.shape(x)[axis], x.dtype)


def _rank(tensor: Tensor) -> int | None:
    """The static rank of ``tensor`` (None for a TensorFlow tensor of unknown rank)."""
    shape = tensor.shape
    return shape.rank if hasattr(shape, "rank") else len(shape)


def _check_rank(name: str, tensor: Tensor, rank: int, layout: str) -> None:
    if _rank(tensor) is not None and _rank(tensor) != rank:
        raise ValueError(
            f"`{name}` must have rank {rank} ({layout}); received shape {tensor.shape}."
        )


def _check_memory(weights: Sequence[Tensor], keys: Tensor) -> tuple:
    """Converts ``weights`` and ``keys`` to tensors and checks that their shapes chain."""
    weights = [ops.convert_to_tensor(w) for w in weights]
    keys = ops.convert_to_tensor(keys)
    if not weights:
        raise ValueError("`weights` must hold at least one layer matrix; received none.")
    for index, matrix in enumerate(weights):
        _check_rank(f"weights[{index}]", matrix, 3, "[batch, D_{l+1}, D_l]")
    _check_rank("keys", keys, 3, "[batch, heads, key_size]")
    key_size = keys.shape[-1]
    first_in = weights[0].shape[-1]
    if key_size is not None and first_in is not None and key_size != first_in:
        raise ValueError(
            f"`keys` have size {key_size} in their last axis but `weights[0]` expects "
            f"{first_in} (its shape is {weights[0].shape}, [batch, D_1, D_0])."
        )
    for index in range(1, len(weights)):
        previous_out = weights[index - 1].shape[1]
        this_in = weights[index].shape[2]
        if previous_out is not None and this_in is not None and previous_out != this_in:
            raise ValueError(
                f"`weights[{index}]` takes inputs of size {this_in} but `weights[{index - 1}]` "
                f"produces {previous_out}: shapes {weights[index - 1].shape} and "
                f"{weights[index].shape} do not chain."
            )
    return weights, keys


def _check_layer_outputs(name: str, weights: Sequence[Tensor], tensors: Sequence) -> None:
    """Checks that ``tensors[l]`` is ``[batch, heads, D_{l+1}]``, the size layer l outputs."""
    for index, (matrix, tensor) in enumerate(zip(weights, tensors)):
        _check_rank(f"{name}[{index}]", tensor, 3, "[batch, heads, D_{l+1}]")
        size, out = tensor.shape[-1], matrix.shape[1]
        if size is not None and out is not None and size != out:
            raise ValueError(
                f"`{name}[{index}]` has size {size} in its last axis but layer {index} "
                f"outputs {out}."
            )


def _check_values(weights: list, values: Tensor, name: str = "values") -> Tensor:
    values = ops.convert_to_tensor(values)
    _check_rank(name, values, 3, "[batch, heads, value_size]")
    value_size = values.shape[-1]
    last_out = weights[-1].shape[1]
    if value_size is not None and last_out is not None and value_size != last_out:
        raise ValueError(
            f"`{name}` have size {value_size} in their last axis but the memory outputs "
            f"{last_out} (`weights[-1]` has shape {weights[-1].shape})."
        )
    return values


def forward_with_pre_activations(
    weights: Sequence[Tensor],
    keys: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
) -> tuple:
    """The memory MLP's activations ``[z^0, ..., z^L]`` and pre-activations ``M^l z^l``.

    ``z^0 = keys``, ``pre^l = M^l z^l`` and ``z^{l+1} = act_l(pre^l)``, computed for every
    head in parallel; `recall_deltas` back-propagates through them.

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]``.
      keys: ``[batch, heads, D_0]``.
      hidden_activation: activation of layers 0..L-2 (tanh in the paper).
      output_activation: activation of the last layer (``None``: linear).

    Returns:
      ``(activations, pre_activations)``: L + 1 tensors ``z^l`` of shape
      ``[batch, heads, D_l]`` and L tensors ``pre^l = M^l z^l`` of shape
      ``[batch, heads, D_{l+1}]``.
    """
    weights, keys = _check_memory(weights, keys)
    activations, pre_activations = [keys], []
    last = len(weights) - 1
    z = keys
    for index, matrix in enumerate(weights):
        pre = ops.einsum("bij,bhj->bhi", matrix, z)
        z = _apply(output_activation if index == last else hidden_activation, pre)
        pre_activations.append(pre)
        activations.append(z)
    return activations, pre_activations


def forward(
    weights: Sequence[Tensor],
    keys: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
) -> list:
    """All activations of the memory MLP: ``[z^0, z^1, ..., z^L]`` (section 3.2).

    ``z^0 = keys`` and ``z^{l+1} = act_l(M^l z^l)``, computed for every head in parallel.

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]``.
      keys: ``[batch, heads, D_0]``.
      hidden_activation: activation of layers 0..L-2 (tanh in the paper).
      output_activation: activation of the last layer (``None``: linear).

    Returns:
      A list of L + 1 tensors, ``z^l`` of shape ``[batch, heads, D_l]``.
    """
    return forward_with_pre_activations(weights, keys, hidden_activation, output_activation)[0]


def read(
    weights: Sequence[Tensor],
    keys: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
) -> Tensor:
    """Reads the memory: the forward pass ``f_phi(k)`` for every head (section 3.2).

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]``.
      keys: read keys ``k^r``, ``[batch, heads, D_0]``.
      hidden_activation, output_activation: as in `forward`.

    Returns:
      The read-out values, ``[batch, heads, D_L]``.
    """
    return forward(weights, keys, hidden_activation, output_activation)[-1]


def recall_error(
    weights: Sequence[Tensor],
    keys: Tensor,
    values: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
) -> Tensor:
    """Per-sequence recall error ``(1/H) sum_i ||f_phi(k_i) - v_i||_2^2`` (equation 2).

    With the pre-write weights phi_{t-1} this is the memory objective L^up_t of equation 2;
    with the post-write weights phi_t it is the tau = 0 term of the meta objective
    (equation 5).

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]``.
      keys: ``[batch, heads, D_0]``.
      values: ``[batch, heads, D_L]``.
      hidden_activation, output_activation: as in `forward`.

    Returns:
      ``[batch]``: squared L2 norm over the value axis, mean over the heads.
    """
    weights, keys = _check_memory(weights, keys)
    values = _check_values(weights, values)
    prediction = read(weights, keys, hidden_activation, output_activation)
    return mean(ops.sum(ops.square(prediction - values), axis=-1), axis=-1)


def recall_deltas(
    weights: Sequence[Tensor],
    activations: Sequence[Tensor],
    pre_activations: Sequence[Tensor],
    values: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
) -> list:
    """Back-propagation of the recall loss through the memory: ``delta^{l+1} = dL/d(pre^l)``.

    ``L = (1/H) sum_b sum_i ||z^L_{b,i} - v_{b,i}||^2``, the recall error of equation 2
    summed over the batch (each sequence's loss depends only on its own weights, so slice b
    of a delta is the gradient of sequence b's own loss), and ``pre^l = M^l z^l``:

      * ``delta^L = (2/H) (z^L - v) * act_out'(pre^{L-1})``;
      * ``delta^l = ((M^l)^T delta^{l+1}) * act_hidden'(pre^{l-1})`` for l = L-1, ..., 1.

    The derivatives are written out for the identity, tanh, sigmoid and relu (TensorFlow's
    or Keras' functions) and taken with the backend's autodiff for any other activation.
    Built from ordinary ops, so an enclosing gradient differentiates the deltas again
    (second order).

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]``.
      activations: ``[z^0, ..., z^L]``, ``z^l`` of shape ``[batch, heads, D_l]``, as
        `forward_with_pre_activations` returns them.
      pre_activations: ``[pre^0, ..., pre^{L-1}]``, ``pre^l`` of shape
        ``[batch, heads, D_{l+1}]``, as `forward_with_pre_activations` returns them.
      values: target values ``v``, ``[batch, heads, D_L]``.
      hidden_activation, output_activation: as in `forward`.

    Returns:
      L tensors ``[delta^1, ..., delta^L]``, ``delta^{l+1}`` of shape
      ``[batch, heads, D_{l+1}]``.
    """
    activations = [ops.convert_to_tensor(z) for z in activations]
    pre_activations = [ops.convert_to_tensor(pre) for pre in pre_activations]
    if not activations:
        raise ValueError("`activations` must hold z^0 .. z^L; received none.")
    weights, _ = _check_memory(weights, activations[0])
    values = _check_values(weights, values)
    layers = len(weights)
    if len(activations) != layers + 1:
        raise ValueError(
            f"`activations` must hold one tensor per memory layer plus the keys "
            f"({layers + 1}); received {len(activations)}."
        )
    if len(pre_activations) != layers:
        raise ValueError(
            f"`pre_activations` must hold one tensor per memory layer ({layers}); "
            f"received {len(pre_activations)}."
        )
    _check_layer_outputs("pre_activations", weights, pre_activations)
    heads = ops.cast(ops.shape(values)[1], values.dtype)
    upstream = (2.0 / heads) * (activations[-1] - values)  # dL / dz^L
    deltas = [None] * layers
    for index in reversed(range(layers)):
        activation = output_activation if index == layers - 1 else hidden_activation
        deltas[index] = _activation_backward(
            activation, pre_activations[index], activations[index + 1], upstream
        )
        if index > 0:
            # dL / dz^index = (M^index)^T delta^{index+1}; an einsum rather than a matrix
            # transpose, which XLA failed to differentiate.
            upstream = ops.einsum("bij,bhi->bhj", weights[index], deltas[index])
    return deltas


def gradient_write(
    weights: Sequence[Tensor],
    keys: Tensor,
    values: Tensor,
    rate: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
    normalize: bool = False,
    method: str = "closed_form",
) -> list:
    """MNM-g write: one modulated gradient step on the memory objective (equations 2, 3).

    ``phi_t = phi_{t-1} - rate * grad_phi L^up_t`` with
    ``L^up_t = (1/H) sum_i ||f_{phi_{t-1}}(k^w_i) - v^w_i||_2^2``, for every sequence of the
    batch with its own weights and rate.

    The gradient is back-propagated in closed form (`recall_deltas`) or, with
    ``method="tape"``, taken with `tf.GradientTape`; either way the step is built from
    ordinary differentiable ops, so an enclosing tape can differentiate the new weights with
    respect to ``keys``, ``values``, ``rate`` and ``weights`` (second-order gradients), which
    is how the controller learns to write (equation 6).

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]`` (phi_{t-1}).
      keys: write keys ``k^w``, ``[batch, heads, D_0]``.
      values: target values ``v^w``, ``[batch, heads, D_L]``.
      rate: update rate ``beta_t``, ``[batch]``.
      hidden_activation, output_activation: as in `forward`.
      normalize: divide the step by ``sum_l (||z^l||^2 + eps)`` (see `gradient_write_factors`;
        not in the paper, default False).
      method: how the deltas are taken: ``"closed_form"`` (`recall_deltas`, the default) or
        ``"tape"`` (`tf.GradientTape`, the reference); both give the same write.

    Returns:
      The new weights phi_t: a list of L tensors with the shapes of ``weights``.
    """
    return apply_write(
        weights,
        gradient_write_factors(
            weights,
            keys,
            values,
            rate,
            hidden_activation,
            output_activation,
            normalize,
            method=method,
        ),
    )


def gradient_write_factors(
    weights: Sequence[Tensor],
    keys: Tensor,
    values: Tensor,
    rate: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
    normalize: bool = False,
    method: str = "closed_form",
) -> list:
    """The MNM-g write as rank-H factors: ``rate * grad_{M^l} L^up_t = sum_i a^l_i (b^l_i)^T``.

    The gradient of equation 2 with respect to layer l's weights is a sum of H outer
    products, ``sum_i delta^{l+1}_i (z^l_i)^T``, where ``z^l_i`` is head i's input to layer l
    and ``delta^{l+1}_i = dL^up_t / d(M^l z^l_i)`` is the gradient at that layer's
    pre-activation. The deltas are back-propagated in closed form by `recall_deltas`
    (``method="closed_form"``, the default) or taken with `tf.GradientTape` with respect to
    the pre-activations (``method="tape"``, the reference); an enclosing tape gets
    second-order gradients through either. The factors are ``a^l = rate * delta^{l+1}`` and ``b^l = z^l``. `apply_write` turns them
    into the new weights; `mnm_keras.MNM`'s memory-efficient path stores them instead of
    the weights to rebuild phi_{t-1} from phi_t during back-propagation.

    Normalised write (``normalize=True``, not in the paper): head i's step is divided by
    ``n_i = sum_l (||z^l_i||^2 + eps)``, i.e. ``a^l_i = rate * delta^{l+1}_i / n_i``. The
    change of the pre-activations that the unnormalised step makes at the written key
    grows with ``||z^l||^2`` (for a linear one-layer memory the recall error is multiplied
    by ``1 - 2 rate ||k||^2``), so with the small keys of a freshly initialised controller
    a write barely changes the memory, and with large ones it overshoots for any rate near
    1. Normalised, the step is invariant to the scale of the keys and activations, like
    the normalised least-mean-squares rule: for a linear one-layer memory and one head a rate
    of 0.5 writes the pair exactly (up to eps).

    Args: as `gradient_write`.

    Returns:
      L pairs ``(a^l, b^l)``, ``a^l`` of shape ``[batch, heads, D_{l+1}]`` and ``b^l`` of
      shape ``[batch, heads, D_l]``.
    """
    if method not in DELTA_METHODS:
        raise ValueError(
            f"`method` must be one of {', '.join(repr(m) for m in DELTA_METHODS)}; "
            f"received {method!r}."
        )
    weights, keys = _check_memory(weights, keys)
    values = _check_values(weights, values)
    rate = ops.convert_to_tensor(rate, dtype=keys.dtype)
    _check_rank("rate", rate, 1, "[batch]")
    if method == "closed_form":
        activations, pre_activations = forward_with_pre_activations(
            weights, keys, hidden_activation, output_activation
        )
        inputs = activations[:-1]
        deltas = recall_deltas(
            weights, activations, pre_activations, values, hidden_activation, output_activation
        )
    else:
        inputs, deltas = _tape_recall_deltas(
            weights, keys, values, hidden_activation, output_activation
        )
    step = rate[:, None, None]
    if normalize:
        step = step / functools.reduce(operator.add, [_squared_norm(z_in) for z_in in inputs])
    return [(step * delta, z_in) for delta, z_in in zip(deltas, inputs)]


def _tape_recall_deltas(
    weights: list,
    keys: Tensor,
    values: Tensor,
    hidden_activation: Activation,
    output_activation: Activation,
) -> tuple:
    """The reference for `recall_deltas`: the deltas taken with `tf.GradientTape`.

    Returns ``(inputs, deltas)``: the L layer inputs ``z^l`` (``[batch, heads, D_l]``) and
    the L deltas ``dL/d(M^l z^l)`` (``[batch, heads, D_{l+1}]``).
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "`method='tape'` takes the deltas with tf.GradientTape and needs Keras's "
            f"TensorFlow backend; Keras runs on {keras.backend.backend()!r}. Use "
            "`method='closed_form'` (the default), which runs on every backend."
        )
    last = len(weights) - 1
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        inputs, pre_activations = [], []
        z = keys
        for index, matrix in enumerate(weights):
            inputs.append(z)
            pre = ops.einsum("bij,bhj->bhi", matrix, z)
            tape.watch(pre)
            pre_activations.append(pre)
            z = _apply(output_activation if index == last else hidden_activation, pre)
        heads = ops.cast(ops.shape(keys)[1], keys.dtype)
        # Each sequence's loss depends only on its own weights, so the gradient of the sum
        # over the batch is, slice by slice, the gradient of each sequence's own loss.
        total = tf.reduce_sum(tf.square(z - values)) / heads
    return inputs, tape.gradient(total, pre_activations)


def apply_write(weights: Sequence[Tensor], factors: Sequence[tuple]) -> list:
    """Applies a rank-H write: ``M^l_t = M^l_{t-1} - sum_i a^l_i (b^l_i)^T``.

    Both write rules change every layer by H outer products (equations 3 and 4); their
    ``*_write_factors`` functions return the factors.

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]``.
      factors: L pairs ``(a^l, b^l)`` of shapes ``[batch, heads, D_{l+1}]`` and
        ``[batch, heads, D_l]``.

    Returns:
      The new weights, L tensors with the shapes of ``weights``.
    """
    if len(factors) != len(weights):
        raise ValueError(
            f"`factors` must hold one (a, b) pair per memory layer ({len(weights)}); "
            f"received {len(factors)}."
        )
    return [
        matrix - ops.einsum("bhi,bhj->bij", left, right)
        for matrix, (left, right) in zip(weights, factors)
    ]


def local_write(
    weights: Sequence[Tensor],
    keys: Tensor,
    layer_targets: Sequence[Tensor],
    rates: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
    normalize: bool = False,
) -> list:
    """MNM-p write: the learned local (perceptron) update of every layer at once (equation 4).

    ``M^l_t = M^l_{t-1} - rate_l * (1/H) sum_i (z^{l+1}_i - target^l_i) (z^l_i)^T``

    where ``z`` are the activations of the write keys under the pre-write weights and
    ``target^l`` is the activation that the backward feedback prediction function q^l
    expects of layer l's output. Every layer is updated from the same forward pass, with no
    back-propagation through the memory and no tape: the layers are written in parallel.

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]`` (phi_{t-1}).
      keys: write keys ``k^w``, ``[batch, heads, D_0]``.
      layer_targets: L tensors, ``layer_targets[l]`` of shape ``[batch, heads, D_{l+1}]``.
      rates: per-layer update rates ``beta^l_t``, ``[batch, L]``.
      hidden_activation, output_activation: as in `forward`.
      normalize: divide layer l's step by ``||z^l||^2 + eps`` (see `local_write_factors`;
        not in the paper, default False).

    Returns:
      The new weights phi_t: a list of L tensors with the shapes of ``weights``.
    """
    return apply_write(
        weights,
        local_write_factors(
            weights, keys, layer_targets, rates, hidden_activation, output_activation, normalize
        ),
    )


def local_write_factors(
    weights: Sequence[Tensor],
    keys: Tensor,
    layer_targets: Sequence[Tensor],
    rates: Tensor,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
    normalize: bool = False,
) -> list:
    """The MNM-p write as rank-H factors: ``M^l_t = M^l_{t-1} - sum_i a^l_i (b^l_i)^T``.

    ``a^l_i = (rate_l / H) (z^{l+1}_i - target^l_i)`` and ``b^l_i = z^l_i`` (equation 4);
    see `gradient_write_factors` for their use.

    Normalised write (``normalize=True``, not in the paper): ``a^l_i`` is further divided by
    ``||z^l_i||^2 + eps``, the normalised least-mean-squares form of the perceptron rule:
    each layer's local regression step is then invariant to the scale of its input, and a
    rate of 1 moves the pre-activation ``M^l z^l_i`` of a single head by the whole error
    ``z^{l+1}_i - target^l_i`` (for a linear layer: onto the target).

    Args: as `local_write`.

    Returns:
      L pairs ``(a^l, b^l)`` of shapes ``[batch, heads, D_{l+1}]`` and ``[batch, heads, D_l]``.
    """
    weights, keys = _check_memory(weights, keys)
    layer_targets = [ops.convert_to_tensor(t) for t in layer_targets]
    rates = ops.convert_to_tensor(rates, dtype=keys.dtype)
    if len(layer_targets) != len(weights):
        raise ValueError(
            f"`layer_targets` must hold one tensor per memory layer ({len(weights)}); "
            f"received {len(layer_targets)}."
        )
    _check_rank("rates", rates, 2, "[batch, layers]")
    if rates.shape[-1] is not None and rates.shape[-1] != len(weights):
        raise ValueError(
            f"`rates` must have one column per memory layer ({len(weights)}); received "
            f"shape {rates.shape}."
        )
    _check_layer_outputs("layer_targets", weights, layer_targets)
    activations = forward(weights, keys, hidden_activation, output_activation)
    heads = ops.cast(ops.shape(keys)[1], keys.dtype)
    factors = []
    for index, target in enumerate(layer_targets):
        error = activations[index + 1] - target
        step = rates[:, index, None, None] / heads
        if normalize:
            step = step / _squared_norm(activations[index])
        factors.append((step * error, activations[index]))
    return factors


def weighted_recall_error(
    predictions: Tensor,
    value_history: Tensor,
    decay: Sequence[float] | None = None,
    valid: Tensor | None = None,
) -> Tensor:
    """Equation 5's sum over delays from the memory's predictions, per sequence.

    ``sum_tau lambda_tau (1/H) sum_i ||prediction_{tau,i} - v^w_{t-tau,i}||^2``.

    Args:
      predictions: ``[batch, delay + 1, heads, D_L]``, ``f_{phi_t}`` of the write keys of
        steps t, t-1, ... (`meta_loss` reads them; a caller that reads other keys in the
        same pass passes its own).
      value_history: ``[batch, delay + 1, heads, D_L]``.
      decay: the weights ``lambda_tau`` (default all ones).
      valid: optional ``[batch, delay + 1]`` mask, 1 where step t - tau exists.

    Returns:
      ``[batch]``.
    """
    steps = value_history.shape[1]
    if steps is None:
        raise ValueError("`value_history` must have a static delay axis (axis 1).")
    if decay is None:
        decay = [1.0] * steps
    decay = list(decay)
    if len(decay) != steps:
        raise ValueError(
            f"`decay` must hold one weight per recall delay 0..{steps - 1} ({steps}); "
            f"received {len(decay)}."
        )
    squared = ops.sum(ops.square(predictions - value_history), axis=-1)
    per_delay = mean(squared, axis=-1)  # [batch, delay + 1]
    weighting = ops.convert_to_tensor(decay, dtype=per_delay.dtype)[None, :]
    if valid is not None:
        weighting = weighting * ops.cast(valid, per_delay.dtype)
    return ops.sum(per_delay * weighting, axis=-1)


def meta_loss(
    weights: Sequence[Tensor],
    key_history: Tensor,
    value_history: Tensor,
    decay: Sequence[float] | None = None,
    valid: Tensor | None = None,
    hidden_activation: Activation = ops.tanh,
    output_activation: Activation = None,
) -> Tensor:
    """One time step's term of the meta objective (equation 5), per sequence.

    ``sum_{tau=0}^{T} lambda_tau (1/H) sum_i ||f_{phi_t}(k^w_{t-tau,i}) - v^w_{t-tau,i}||^2``

    read with the weights phi_t *after* the write of step t. Equation 5 averages this over
    the T steps of the sequence (``1/T sum_t``); `mnm_keras.MNM` does that averaging.
    With the default maximum recall delay of 0 (as in every experiment of the paper) this
    is `recall_error` of the pairs just written.

    Args:
      weights: L tensors, ``weights[l]`` of shape ``[batch, D_{l+1}, D_l]`` (phi_t).
      key_history: ``[batch, delay + 1, heads, D_0]``: index tau holds the write keys of
        step t - tau (tau = 0 is the current step).
      value_history: ``[batch, delay + 1, heads, D_L]``, indexed like ``key_history``.
      decay: the weights ``lambda_tau``, ``delay + 1`` numbers (default all ones).
      valid: optional ``[batch, delay + 1]`` mask, 1 where step t - tau exists (it is 0 for
        the first steps of a sequence, before anything was written).

    Returns:
      ``[batch]``.
    """
    key_history = ops.convert_to_tensor(key_history)
    value_history = ops.convert_to_tensor(value_history)
    _check_rank("key_history", key_history, 4, "[batch, delay + 1, heads, key_size]")
    _check_rank("value_history", value_history, 4, "[batch, delay + 1, heads, value_size]")
    steps = key_history.shape[1]
    if steps is None:
        raise ValueError("`key_history` must have a static delay axis (axis 1).")
    heads = key_history.shape[2]
    if heads is None:
        raise ValueError("`key_history` must have a static heads axis (axis 2).")
    keys = ops.reshape(key_history, (-1, steps * heads, key_history.shape[-1]))
    weights, keys = _check_memory(weights, keys)
    values = ops.reshape(value_history, (-1, steps * heads, value_history.shape[-1]))
    _check_values(weights, values, "value_history")
    prediction = read(weights, keys, hidden_activation, output_activation)
    prediction = ops.reshape(prediction, (-1, steps, heads, value_history.shape[-1]))
    return weighted_recall_error(prediction, value_history, decay, valid)
