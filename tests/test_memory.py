"""`mnm_keras.memory` against a hand-written NumPy reference, the paper's properties, and
numerical gradients; every function eagerly, in `tf.function` and under XLA."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from mnm_keras import memory
from tests import numpy_reference as ref

SIZES = [5, 7, 6, 4]  # D_0 (key) .. D_L (value): three layers
BATCH, HEADS = 3, 2
MODES = ["eager", "function", "xla"]


def run(fn, mode, *args):
    if mode == "eager":
        return fn(*args)
    return tf.function(fn, jit_compile=(mode == "xla"))(*args)


def random_memory(rng, sizes=SIZES, batch=BATCH, heads=HEADS, dtype=np.float32, scale=0.5):
    weights = [
        (scale * rng.standard_normal((batch, sizes[i + 1], sizes[i]))).astype(dtype)
        for i in range(len(sizes) - 1)
    ]
    keys = np.tanh(rng.standard_normal((batch, heads, sizes[0]))).astype(dtype)
    values = np.tanh(rng.standard_normal((batch, heads, sizes[-1]))).astype(dtype)
    return weights, keys, values


def as_tf(arrays):
    return [tf.constant(a) for a in arrays]


@pytest.mark.parametrize("mode", MODES)
def test_read_matches_numpy(mode):
    weights, keys, _ = random_memory(np.random.default_rng(0))
    got = run(lambda w, k: memory.read(w, k), mode, as_tf(weights), tf.constant(keys))
    assert got.shape == (BATCH, HEADS, SIZES[-1])
    np.testing.assert_allclose(got.numpy(), ref.read(weights, keys), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_recall_error_matches_numpy(mode):
    weights, keys, values = random_memory(np.random.default_rng(1))
    got = run(memory.recall_error, mode, as_tf(weights), tf.constant(keys), tf.constant(values))
    np.testing.assert_allclose(got.numpy(), ref.recall_error(weights, keys, values), rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_gradient_write_matches_hand_derived_backprop(mode):
    rng = np.random.default_rng(2)
    weights, keys, values = random_memory(rng)
    rate = rng.uniform(0.1, 0.9, BATCH).astype(np.float32)
    got = run(
        memory.gradient_write,
        mode,
        as_tf(weights),
        tf.constant(keys),
        tf.constant(values),
        tf.constant(rate),
    )
    want = ref.gradient_write(weights, keys, values, rate)
    assert len(got) == len(weights)
    for g, w, old in zip(got, want, weights):
        assert g.shape == old.shape
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-6)
        assert not np.allclose(w, old)  # the write did change every layer


@pytest.mark.parametrize("mode", MODES)
def test_local_write_matches_numpy(mode):
    rng = np.random.default_rng(3)
    weights, keys, _ = random_memory(rng)
    targets = [
        np.tanh(rng.standard_normal((BATCH, HEADS, SIZES[i + 1]))).astype(np.float32)
        for i in range(len(SIZES) - 1)
    ]
    rates = rng.uniform(0, 1, (BATCH, len(weights))).astype(np.float32)

    def write(w, k, t, r):
        return memory.local_write(w, k, t, r)

    got = run(write, mode, as_tf(weights), tf.constant(keys), as_tf(targets), tf.constant(rates))
    want = ref.local_write(weights, keys, targets, rates)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_meta_loss_with_delay_decay_and_mask(mode):
    rng = np.random.default_rng(4)
    weights, _, _ = random_memory(rng)
    delay = 2
    key_history = np.tanh(rng.standard_normal((BATCH, delay + 1, HEADS, SIZES[0])))
    value_history = np.tanh(rng.standard_normal((BATCH, delay + 1, HEADS, SIZES[-1])))
    key_history, value_history = key_history.astype(np.float32), value_history.astype(np.float32)
    decay = [1.0, 0.5, 0.25]
    valid = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], np.float32)

    def loss(w, k, v, m):
        return memory.meta_loss(w, k, v, decay, m)

    got = run(loss, mode, as_tf(weights), *as_tf([key_history, value_history, valid]))
    want = sum(
        decay[tau]
        * valid[:, tau]
        * ref.recall_error(weights, key_history[:, tau], value_history[:, tau])
        for tau in range(delay + 1)
    )
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    # tau = 0 alone is the recall error of the pairs just written.
    tau0 = memory.meta_loss(as_tf(weights), key_history[:, :1], value_history[:, :1])
    np.testing.assert_allclose(
        tau0.numpy(), ref.recall_error(weights, key_history[:, 0], value_history[:, 0]), rtol=1e-5
    )


def test_appendix_c_last_layer_update_is_sdm_like():
    """Two layers, linear output, one head, rate 1/2: M^2 <- M^2 + v a^T - v_hat a^T."""
    rng = np.random.default_rng(5)
    weights, keys, values = random_memory(rng, sizes=[6, 9, 5], heads=1, dtype=np.float64)
    new = memory.gradient_write(
        as_tf(weights),
        tf.constant(keys),
        tf.constant(values),
        tf.constant([0.5] * BATCH, tf.float64),
    )
    a = np.tanh(np.einsum("bij,bhj->bhi", weights[0], keys))[:, 0]  # [B, D_1]
    v_hat = np.einsum("bij,bj->bi", weights[1], a)
    v = values[:, 0]
    want = weights[1] + np.einsum("bi,bj->bij", v, a) - np.einsum("bi,bj->bij", v_hat, a)
    np.testing.assert_allclose(new[1].numpy(), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ["gradient", "local"])
def test_write_makes_recall_closer_to_target(rule):
    """Self-consistency: after a write with a large rate, reading the written key returns a
    value closer to the target than before."""
    rng = np.random.default_rng(6)
    weights, keys, values = random_memory(rng, heads=1, scale=0.3)
    weights, keys, values = as_tf(weights), tf.constant(keys), tf.constant(values)
    if rule == "gradient":
        new = memory.gradient_write(weights, keys, values, tf.fill([BATCH], 0.2))
    else:
        # Hidden layers keep their activations as targets; the last layer aims at the value.
        activations = memory.forward(weights, keys)
        targets = activations[1:-1] + [values]
        new = memory.local_write(weights, keys, targets, tf.fill([BATCH, len(weights)], 1.0))
    before = memory.recall_error(weights, keys, values).numpy()
    after = memory.recall_error(new, keys, values).numpy()
    assert np.all(after < 0.75 * before), (before, after)


@pytest.mark.parametrize("mode", MODES)
def test_normalized_writes_match_numpy(mode):
    rng = np.random.default_rng(11)
    weights, keys, values = random_memory(rng)
    rate = rng.uniform(0.1, 0.9, BATCH).astype(np.float32)
    targets = [
        np.tanh(rng.standard_normal((BATCH, HEADS, SIZES[i + 1]))).astype(np.float32)
        for i in range(len(SIZES) - 1)
    ]
    rates = rng.uniform(0, 1, (BATCH, len(weights))).astype(np.float32)

    def write(w, k, v, r, t, rs):
        return (
            memory.gradient_write(w, k, v, r, normalize=True),
            memory.local_write(w, k, t, rs, normalize=True),
        )

    got_g, got_l = run(
        write,
        mode,
        as_tf(weights),
        *as_tf([keys, values, rate]),
        as_tf(targets),
        tf.constant(rates),
    )
    want_g = ref.gradient_write(weights, keys, values, rate, normalize=True)
    want_l = ref.local_write(weights, keys, targets, rates, normalize=True)
    for got, want in zip(got_g + got_l, want_g + want_l):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    # and they differ from the unnormalised writes (the keys here are not of unit norm)
    plain = ref.gradient_write(weights, keys, values, rate)
    assert not np.allclose(plain[0], want_g[0], atol=1e-3)


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0])
def test_normalized_gradient_write_is_exact_for_linear_memory_at_rate_one_half(scale):
    """One linear layer, one head: rate 1/2 stores the pair whatever the key's scale;
    the unnormalised step is tiny for small keys and overshoots for large ones."""
    rng = np.random.default_rng(12)
    weights, keys, values = random_memory(rng, sizes=[6, 5], heads=1, dtype=np.float64)
    keys = keys / np.linalg.norm(keys, axis=-1, keepdims=True) * scale
    weights, keys, values = as_tf(weights), tf.constant(keys), tf.constant(values)
    rate = tf.constant([0.5] * BATCH, tf.float64)
    before = memory.recall_error(weights, keys, values).numpy()
    normalized = memory.gradient_write(weights, keys, values, rate, normalize=True)
    after = memory.recall_error(normalized, keys, values).numpy()
    # exact up to eps: residual factor eps / (scale^2 + eps), squared
    bound = (memory.NORMALIZATION_EPSILON / (scale**2 + memory.NORMALIZATION_EPSILON)) ** 2
    np.testing.assert_array_less(after, before * bound * 1.01 + 1e-12)
    plain_after = memory.recall_error(
        memory.gradient_write(weights, keys, values, rate), keys, values
    ).numpy()
    if scale == 0.01:
        assert np.all(plain_after > 0.99 * before)  # the paper's step barely writes
    if scale == 30.0:
        assert np.all(plain_after > 100 * before)  # and overshoots for large keys


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0])
def test_normalized_local_write_at_rate_one_reaches_the_target(scale):
    """One linear layer, one head: the normalised perceptron step of rate 1 moves the read
    at the written key onto the layer's target, whatever the key's scale."""
    rng = np.random.default_rng(13)
    weights, keys, values = random_memory(rng, sizes=[6, 5], heads=1, dtype=np.float64)
    keys = keys / np.linalg.norm(keys, axis=-1, keepdims=True) * scale
    weights, keys, values = as_tf(weights), tf.constant(keys), tf.constant(values)
    rates = tf.constant(np.ones((BATCH, 1)))
    before = memory.recall_error(weights, keys, values).numpy()
    new = memory.local_write(weights, keys, [values], rates, normalize=True)
    after = memory.recall_error(new, keys, values).numpy()
    bound = (memory.NORMALIZATION_EPSILON / (scale**2 + memory.NORMALIZATION_EPSILON)) ** 2
    np.testing.assert_array_less(after, before * bound * 1.01 + 1e-12)


def test_gradient_through_gradient_write_matches_finite_differences():
    """Second-order path: d/d(values, rate, keys) of a loss read after a gradient write."""
    rng = np.random.default_rng(7)
    weights, keys, values = random_memory(rng, dtype=np.float64)
    query = tf.constant(np.tanh(rng.standard_normal((BATCH, HEADS, SIZES[0]))))
    probe = tf.constant(rng.standard_normal((BATCH, HEADS, SIZES[-1])))
    weights, keys = as_tf(weights), tf.constant(keys)

    def loss_of(values, rate):
        new = memory.gradient_write(weights, keys, values, rate)
        return tf.reduce_sum(memory.read(new, query) * probe)

    values = tf.constant(values)
    rate = tf.constant(rng.uniform(0.2, 0.8, BATCH))
    theoretical, numerical = tf.test.compute_gradient(loss_of, [values, rate], delta=1e-6)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-8)

    def loss_of_keys(keys):
        new = memory.gradient_write(weights, keys, values, rate)
        return tf.reduce_sum(memory.read(new, query) * probe)

    theoretical, numerical = tf.test.compute_gradient(loss_of_keys, [keys], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", MODES)
def test_second_order_gradient_compiles(mode):
    weights, keys, values = random_memory(np.random.default_rng(8))

    def grads(w, k, v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            new = memory.gradient_write(w, k, v, tf.fill([BATCH], 0.5))
            loss = tf.reduce_sum(memory.read(new, k))
        return tape.gradient(loss, v)

    got = run(grads, mode, as_tf(weights), tf.constant(keys), tf.constant(values))
    assert got is not None and np.all(np.isfinite(got.numpy()))
    assert np.abs(got.numpy()).sum() > 0


def test_sequences_of_a_batch_do_not_interact():
    weights, keys, values = random_memory(np.random.default_rng(9))
    keys_nan = keys.copy()
    keys_nan[0] = np.nan
    clean = memory.gradient_write(as_tf(weights), keys, values, tf.fill([BATCH], 0.5))
    dirty = memory.gradient_write(as_tf(weights), keys_nan, values, tf.fill([BATCH], 0.5))
    for c, d in zip(clean, dirty):
        assert np.all(np.isnan(d.numpy()[0]))
        np.testing.assert_array_equal(c.numpy()[1:], d.numpy()[1:])


def test_bad_shapes_name_the_argument():
    weights, keys, values = random_memory(np.random.default_rng(10))
    weights = as_tf(weights)
    with pytest.raises(ValueError, match="`keys` have size 3"):
        memory.read(weights, tf.zeros([BATCH, HEADS, 3]))
    with pytest.raises(ValueError, match="`keys` must have rank 3"):
        memory.read(weights, tf.zeros([BATCH, SIZES[0]]))
    with pytest.raises(ValueError, match="`values` have size 9"):
        memory.gradient_write(weights, keys, tf.zeros([BATCH, HEADS, 9]), tf.ones([BATCH]))
    with pytest.raises(ValueError, match="`rate` must have rank 1"):
        memory.gradient_write(weights, keys, values, tf.ones([BATCH, 1]))
    with pytest.raises(ValueError, match="`rates` must have one column per memory layer"):
        memory.local_write(
            weights, keys, [tf.zeros([BATCH, HEADS, d]) for d in SIZES[1:]], tf.ones([BATCH, 2])
        )
    with pytest.raises(ValueError, match="`layer_targets` must hold one tensor per memory layer"):
        memory.local_write(weights, keys, [], tf.ones([BATCH, 3]))
    with pytest.raises(ValueError, match="do not chain"):
        memory.read([weights[0], weights[0]], keys)
    with pytest.raises(ValueError, match="`decay` must hold one weight"):
        memory.meta_loss(weights, keys[:, None], values[:, None], decay=[1.0, 0.5])


# --------------------------------------------------- closed-form deltas against the tape
LAYER_SIZES = {1: [3, 2], 2: [3, 4, 2], 3: [3, 4, 3, 2]}  # D_0 .. D_L, tiny


def swish(x):  # not recognised: its derivative is taken with a tape
    return x * tf.sigmoid(x)


ACTIVATIONS = {  # (hidden, output)
    "default": (tf.tanh, None),
    "sigmoid-tanh": (tf.sigmoid, tf.tanh),
    "relu": (tf.nn.relu, None),
    "custom": (lambda x: x * tf.sigmoid(x), swish),
    "keras": (keras.activations.get("tanh"), keras.activations.get("sigmoid")),
}


def small_write_inputs(seed, layers, heads, dtype=np.float64):
    rng = np.random.default_rng(seed)
    weights, keys, values = random_memory(
        rng, sizes=LAYER_SIZES[layers], batch=2, heads=heads, dtype=dtype, scale=0.8
    )
    rate = rng.uniform(0.2, 0.8, 2).astype(dtype)
    return as_tf(weights), tf.constant(keys), tf.constant(values), tf.constant(rate)


def test_activations_are_recognised_by_identity_and_by_keras_name():
    for fn in [tf.tanh, tf.math.tanh, tf.nn.tanh, keras.activations.tanh]:
        assert memory._activation_kind(fn) == "tanh"
    for fn in [tf.sigmoid, tf.math.sigmoid, tf.nn.sigmoid, keras.activations.get("sigmoid")]:
        assert memory._activation_kind(fn) == "sigmoid"
    for fn in [tf.nn.relu, keras.activations.get("relu")]:
        assert memory._activation_kind(fn) == "relu"
    assert memory._activation_kind(None) == "identity"
    assert memory._activation_kind(keras.activations.get(None)) == "identity"  # "linear"
    assert memory._activation_kind(swish) == "other"
    assert memory._activation_kind(lambda x: x) == "other"


def test_forward_with_pre_activations_chains_the_layers():
    weights, keys, _, _ = small_write_inputs(20, 3, 2)
    activations, pre_activations = memory.forward_with_pre_activations(
        weights, keys, tf.sigmoid, tf.tanh
    )
    assert len(activations) == 4 and len(pre_activations) == 3
    for index, (matrix, pre) in enumerate(zip(weights, pre_activations)):
        assert pre.shape == (2, 2, matrix.shape[1])
        want = np.einsum("bij,bhj->bhi", matrix.numpy(), activations[index].numpy())
        np.testing.assert_allclose(pre.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(activations[-1].numpy(), np.tanh(pre_activations[-1].numpy()))
    for a, b in zip(activations, memory.forward(weights, keys, tf.sigmoid, tf.tanh)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_recall_deltas_of_a_linear_layer_are_the_scaled_error():
    weights, keys, values, _ = small_write_inputs(21, 1, 2)
    activations, pre_activations = memory.forward_with_pre_activations(weights, keys)
    (delta,) = memory.recall_deltas(weights, activations, pre_activations, values)
    want = np.einsum("bij,bhj->bhi", weights[0].numpy(), keys.numpy()) - values.numpy()
    np.testing.assert_allclose(delta.numpy(), (2 / 2) * want, rtol=1e-12)
    with pytest.raises(ValueError, match="`pre_activations` must hold one tensor per"):
        memory.recall_deltas(weights, activations, [], values)
    with pytest.raises(ValueError, match="`activations` must hold one tensor per"):
        memory.recall_deltas(weights, activations[:1], pre_activations, values)


@pytest.mark.parametrize("activations", list(ACTIVATIONS))
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_closed_form_factors_equal_the_tape(layers, heads, normalize, activations):
    weights, keys, values, rate = small_write_inputs(22 + layers, layers, heads)
    hidden, output = ACTIVATIONS[activations]

    def factors(method):
        return memory.gradient_write_factors(
            weights, keys, values, rate, hidden, output, normalize, method=method
        )

    closed, tape = factors("closed_form"), factors("tape")
    assert len(closed) == len(tape) == layers
    for (a, b), (a_ref, b_ref) in zip(closed, tape):
        assert a.shape == a_ref.shape and b.shape == b_ref.shape
        np.testing.assert_allclose(a.numpy(), a_ref.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b.numpy(), b_ref.numpy(), rtol=1e-6, atol=1e-6)
    assert np.abs(closed[0][0].numpy()).sum() > 0
    # the default is the closed form
    for (a, _), (a_default, _) in zip(
        closed,
        memory.gradient_write_factors(weights, keys, values, rate, hidden, output, normalize),
    ):
        np.testing.assert_array_equal(a.numpy(), a_default.numpy())


def second_order_gradients(method, weights, keys, values, rate, hidden, output, normalize):
    """d/d(keys, values, rate, weights) of sum(sin(W_new)) after a gradient write."""
    with tf.GradientTape() as tape:
        tape.watch([keys, values, rate, weights])
        factors = memory.gradient_write_factors(
            weights, keys, values, rate, hidden, output, normalize, method=method
        )
        new = memory.apply_write(weights, factors)
        loss = tf.add_n([tf.reduce_sum(tf.sin(w)) for w in new])
    return tape.gradient(loss, [keys, values, rate, *weights])


@pytest.mark.parametrize("activations", list(ACTIVATIONS))
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("layers", [1, 3])
def test_second_order_gradients_equal_the_tape(layers, normalize, activations):
    weights, keys, values, rate = small_write_inputs(30 + layers, layers, 2)
    hidden, output = ACTIVATIONS[activations]
    args = (weights, keys, values, rate, hidden, output, normalize)
    closed = second_order_gradients("closed_form", *args)
    tape = second_order_gradients("tape", *args)
    for name, c, t in zip(["keys", "values", "rate"] + ["weights"] * layers, closed, tape):
        assert c is not None and t is not None, name
        np.testing.assert_allclose(c.numpy(), t.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
    assert np.abs(closed[0].numpy()).sum() > 0  # the keys do get a gradient


@pytest.mark.parametrize("activations", ["default", "sigmoid-tanh", "custom"])
def test_closed_form_write_matches_finite_differences(activations):
    weights, keys, values, rate = small_write_inputs(40, 2, 2)
    hidden, output = ACTIVATIONS[activations]
    rng = np.random.default_rng(41)
    query = tf.constant(np.tanh(rng.standard_normal(keys.shape)))
    probe = tf.constant(rng.standard_normal(values.shape))

    def loss_of(keys, values):
        new = memory.gradient_write(
            weights, keys, values, rate, hidden, output, method="closed_form"
        )
        return tf.reduce_sum(memory.read(new, query, hidden, output) * probe)

    theoretical, numerical = tf.test.compute_gradient(loss_of, [keys, values], delta=1e-6)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("activations", ["default", "sigmoid-tanh", "relu", "custom"])
def test_closed_form_compiles_under_xla(activations):
    weights, keys, values, rate = small_write_inputs(50, 3, 2, dtype=np.float32)
    hidden, output = ACTIVATIONS[activations]

    def write_and_grads(weights, keys, values, rate):
        with tf.GradientTape() as tape:
            tape.watch([keys, values, rate, weights])
            factors = memory.gradient_write_factors(
                weights, keys, values, rate, hidden, output, method="closed_form"
            )
            new = memory.apply_write(weights, factors)
            loss = tf.add_n([tf.reduce_sum(tf.sin(w)) for w in new])
        return new, tape.gradient(loss, [keys, values, rate, *weights])

    eager_new, eager_grads = run(write_and_grads, "eager", weights, keys, values, rate)
    xla_new, xla_grads = run(write_and_grads, "xla", weights, keys, values, rate)
    for e, x in zip(eager_new + eager_grads, xla_new + xla_grads):
        np.testing.assert_allclose(x.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_method_names_it():
    weights, keys, values, rate = small_write_inputs(60, 1, 1)
    message = re.escape("`method` must be one of 'closed_form', 'tape'; received 'autodiff'")
    with pytest.raises(ValueError, match=message):
        memory.gradient_write_factors(weights, keys, values, rate, method="autodiff")
    with pytest.raises(ValueError, match=message):
        memory.gradient_write(weights, keys, values, rate, method="autodiff")


@pytest.mark.parametrize("rule", ["gradient", "local"])
def test_normalized_write_at_an_all_zero_key_has_finite_exact_gradients(rule):
    # At an all-zero key every layer's input norm is 0 and the normalisation divides by
    # its epsilon alone: the write, its gradient and a float64 numerical gradient stay
    # finite and agree (no 0/0 anywhere).
    rng = np.random.default_rng(3)
    weights, _, values = random_memory(rng, dtype=np.float64)
    weights = as_tf(weights)
    keys = tf.zeros((BATCH, HEADS, SIZES[0]), tf.float64)
    query = tf.constant(np.tanh(rng.standard_normal((BATCH, HEADS, SIZES[0]))))
    probe = tf.constant(rng.standard_normal((BATCH, HEADS, SIZES[-1])))
    rate = tf.constant(rng.uniform(0.2, 0.8, BATCH))
    rates = tf.constant(rng.uniform(0.2, 0.8, (BATCH, len(SIZES) - 1)))
    targets = [tf.constant(rng.standard_normal((BATCH, HEADS, size))) for size in SIZES[1:]]

    def loss_of(keys, values):
        if rule == "gradient":
            new = memory.gradient_write(weights, keys, values, rate, normalize=True)
        else:
            new = memory.local_write(weights, keys, [*targets[:-1], values], rates, normalize=True)
        return tf.reduce_sum(memory.read(new, query) * probe)

    values = tf.constant(values)
    assert np.isfinite(loss_of(keys, values).numpy())
    theoretical, numerical = tf.test.compute_gradient(loss_of, [keys, values], delta=1e-6)
    for t, n in zip(theoretical, numerical):
        assert np.all(np.isfinite(t)) and np.all(np.isfinite(n))
        np.testing.assert_allclose(t, n, rtol=1e-5, atol=1e-7)
