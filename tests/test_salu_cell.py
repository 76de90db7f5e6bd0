"""`SALUCell`: attention against NumPy, one step against NumPy, ring buffer, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mnm_keras
from tests import numpy_reference as ref

BATCH, TIME, FEATURES = 2, 4, 3


def test_soft_attention_read_matches_numpy():
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((BATCH, 5, 4)).astype(np.float32)
    values = rng.standard_normal((BATCH, 5, 3)).astype(np.float32)
    queries = rng.standard_normal((BATCH, 2, 4)).astype(np.float32)
    valid = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float32)
    got = mnm_keras.soft_attention_read(keys, values, queries, valid).numpy()
    scores = np.einsum("bhk,bsk->bhs", queries, keys) / 2.0  # sqrt(d_k) = 2
    scores = np.where(valid[:, None, :] > 0, scores, -np.inf)
    want = np.einsum("bhs,bsv->bhv", ref.softmax(scores), values)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Invalid slots get no weight: changing them changes nothing.
    values[0, 3:] = 1e6
    again = mnm_keras.soft_attention_read(keys, values, queries, valid).numpy()
    np.testing.assert_allclose(again, got, rtol=1e-6)


def make_cell(max_length=TIME, heads=2):
    return mnm_keras.SALUCell(
        6, max_length=max_length, key_size=4, value_size=3, num_heads=heads, seed=0
    )


def test_unrolled_cell_matches_numpy():
    cell = make_cell()
    x = np.random.default_rng(1).standard_normal((BATCH, TIME, FEATURES)).astype(np.float32)
    outputs = keras.layers.RNN(cell, return_sequences=True)(x).numpy()
    p = {k: np.asarray(v) for k, v in cell.params()._asdict().items()}
    kernel, recurrent, bias = (p[f"controller_{n}"] for n in ("kernel", "recurrent_kernel", "bias"))
    h = c = np.zeros((BATCH, 6), np.float32)
    read = np.zeros((BATCH, 3), np.float32)
    table_k, table_v = [], []
    H = cell.num_heads
    for t in range(TIME):
        h, c = ref.lstm_step(np.concatenate([x[:, t], read], -1), h, c, kernel, recurrent, bias)
        iface = np.tanh(h @ p["interface_kernel"] + p["interface_bias"])
        queries = iface[:, : H * 4].reshape(BATCH, H, 4)
        table_k.append(iface[:, H * 4 : 2 * H * 4].reshape(BATCH, H, 4))
        table_v.append(iface[:, 2 * H * 4 :].reshape(BATCH, H, 3))
        keys = np.concatenate(table_k, axis=1)
        values = np.concatenate(table_v, axis=1)
        weights = ref.softmax(np.einsum("bhk,bsk->bhs", queries, keys) / 2.0)
        read = np.einsum("bhs,bsv->bhv", weights, values).mean(axis=1)
        y = np.concatenate([h, read], -1) @ p["output_kernel"] + p["output_bias"]
        np.testing.assert_allclose(outputs[:, t], y, rtol=1e-4, atol=1e-5)


def test_table_is_a_ring_buffer_past_max_length():
    cell = make_cell(max_length=2, heads=1)
    x = np.random.default_rng(2).standard_normal((BATCH, 5, FEATURES)).astype(np.float32)
    _, *states = keras.layers.RNN(cell, return_state=True)(x)
    np.testing.assert_array_equal(states[-1].numpy()[:, 0], [5, 5])
    assert np.all(np.isfinite(states[3].numpy()))


def test_salu_trains_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((TIME, FEATURES))
    model = keras.Model(inputs, keras.layers.RNN(make_cell())(inputs))
    model.compile("adam", "mse", jit_compile=True)
    x = np.random.default_rng(3).standard_normal((8, TIME, FEATURES)).astype(np.float32)
    history = model.fit(x, np.zeros((8, 6)), epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = str(tmp_path / "salu.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x), model(x), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(units=4, max_length=0),
            "`max_length` must be a positive integer; received max_length=0",
        ),
        (dict(units=4, max_length=3, num_heads=0), "`num_heads` must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mnm_keras.SALUCell(**kwargs)


def test_xla_matches_eager():
    layer = keras.layers.RNN(make_cell(), return_sequences=True)
    x = tf.constant(np.random.default_rng(4).standard_normal((BATCH, TIME, FEATURES)), tf.float32)
    eager = layer(x)
    np.testing.assert_allclose(tf.function(layer, jit_compile=True)(x), eager, rtol=1e-4, atol=1e-5)
