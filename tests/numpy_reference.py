"""Independent NumPy implementations of the MNM equations, for the tests.

Nothing here calls TensorFlow: the gradient write is back-propagated by hand, layer by
layer, so the tests compare `mnm_keras.memory` against a derivation, not against itself.
Hidden activation tanh, output activation linear (the library's defaults).
"""

import numpy as np


def forward(weights, keys):
    """[z^0..z^L] for weights[l] [B, D_{l+1}, D_l] and keys [B, H, D_0]."""
    activations = [keys]
    z = keys
    for index, matrix in enumerate(weights):
        pre = np.einsum("bij,bhj->bhi", matrix, z)
        z = pre if index == len(weights) - 1 else np.tanh(pre)
        activations.append(z)
    return activations


def read(weights, keys):
    return forward(weights, keys)[-1]


def recall_error(weights, keys, values):
    prediction = read(weights, keys)
    return np.mean(np.sum((prediction - values) ** 2, axis=-1), axis=-1)


EPSILON = 1e-3  # mnm_keras.memory.NORMALIZATION_EPSILON, written out independently


def update_gradients(weights, keys, values, head_scale=None):
    """Hand-derived d L^up / d M^l of equation 2, per sequence.

    ``head_scale`` ([B, H]) multiplies head i's outer products (the normalised write).
    """
    activations = forward(weights, keys)
    if head_scale is None:
        head_scale = np.ones(keys.shape[:2])
    heads = keys.shape[1]
    # L = (1/H) sum_i ||z^L_i - v_i||^2  =>  dL/dz^L = (2/H)(z^L - v); last layer linear.
    delta = 2.0 / heads * (activations[-1] - values)
    gradients = [None] * len(weights)
    for index in reversed(range(len(weights))):
        gradients[index] = np.einsum("bhi,bh,bhj->bij", delta, head_scale, activations[index])
        if index > 0:
            upstream = np.einsum("bij,bhi->bhj", weights[index], delta)
            delta = upstream * (1.0 - activations[index] ** 2)  # tanh'
    return gradients


def gradient_write(weights, keys, values, rate, normalize=False):
    head_scale = None
    if normalize:  # 1 / (sum over the L layer inputs z^0..z^{L-1} of ||z^l_i||^2 + eps)
        inputs = forward(weights, keys)[:-1]
        head_scale = 1.0 / sum(np.sum(z**2, axis=-1) + EPSILON for z in inputs)
    gradients = update_gradients(weights, keys, values, head_scale)
    return [m - rate[:, None, None] * g for m, g in zip(weights, gradients)]


def local_write(weights, keys, targets, rates, normalize=False):
    activations = forward(weights, keys)
    heads = keys.shape[1]
    new = []
    for index, matrix in enumerate(weights):
        error = activations[index + 1] - targets[index]
        if normalize:
            error = error / (np.sum(activations[index] ** 2, axis=-1, keepdims=True) + EPSILON)
        delta = np.einsum("bhi,bhj->bij", error, activations[index]) / heads
        new.append(matrix - rates[:, index, None, None] * delta)
    return new


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    """Keras LSTMCell step (gate order i, f, c, o; sigmoid gates, tanh candidate)."""
    z = x @ kernel + h @ recurrent_kernel + bias
    i, f, g, o = np.split(z, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    return h, c


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
