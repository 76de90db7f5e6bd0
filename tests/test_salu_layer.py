"""`SALU`: the same outputs, final state and gradients as ``keras.layers.RNN(SALUCell)``."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mnm_keras

BATCH, FEATURES = 3, 5


def make_layer(max_length=6, heads=2, **kwargs):
    return mnm_keras.SALU(
        7,
        max_length=max_length,
        key_size=4,
        value_size=3,
        num_heads=heads,
        seed=0,
        return_sequences=True,
        return_state=True,
        **kwargs,
    )


def outputs_and_gradients(function, layer, x, mask):
    """The outputs and final state of ``function(x)``, and the gradients of a random
    projection of all of them with respect to ``x`` and every weight."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        results = function(x, mask=mask)
        rng = np.random.default_rng(1)
        loss = sum(
            tf.reduce_sum(r * rng.standard_normal(r.shape).astype(np.float32)) for r in results
        )
    gradients = tape.gradient(loss, [x] + layer.trainable_weights)
    return [r.numpy() for r in results], [g.numpy() for g in gradients]


CASES = {
    "plain": dict(time=6),
    "ring buffer past max_length": dict(time=9, max_length=4),
    "masked holes and padding": dict(time=6, mask=[[1, 1, 0, 1, 1, 1], [1, 0, 0, 1, 0, 0]] * 2),
    "backwards, one head": dict(time=6, heads=1, go_backwards=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_the_rnn_of_the_cell(case):
    options = dict(CASES[case])
    time, mask = options.pop("time"), options.pop("mask", None)
    layer = make_layer(**options)
    x = tf.constant(np.random.default_rng(0).standard_normal((BATCH, time, FEATURES)), tf.float32)
    if mask is not None:
        mask = tf.constant(np.array(mask[:BATCH], bool))
    layer(x)  # build
    fast, fast_grads = outputs_and_gradients(layer, layer, x, mask)
    rnn = keras.layers.RNN(
        layer.cell, return_sequences=True, return_state=True, go_backwards=layer.go_backwards
    )
    slow, slow_grads = outputs_and_gradients(rnn, layer, x, mask)
    assert len(fast) == len(slow) == 7  # outputs, then the 6 state parts
    for got, want in zip(fast, slow):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # x, then the controller's, interface's and output projection's weights.
    assert len(fast_grads) == len(slow_grads) == 1 + 7
    for got, want in zip(fast_grads, slow_grads):
        assert np.abs(want).max() > 0
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_eager_tf_function_and_xla_agree():
    x = tf.constant(np.random.default_rng(2).standard_normal((BATCH, 6, FEATURES)), tf.float32)
    compiled = make_layer()
    plain = make_layer(jit_compile=False)
    compiled(x), plain(x)
    plain.set_weights(compiled.get_weights())
    want, want_grads = outputs_and_gradients(plain, plain, x, None)
    for function, layer in (
        (compiled, compiled),
        (tf.function(plain), plain),
        (tf.function(compiled, jit_compile=True), compiled),
    ):
        got, got_grads = outputs_and_gradients(function, layer, x, None)
        for a, b in zip(got + got_grads, want + want_grads):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Without a tape (inference) the loop runs alone, with the same outputs.
    np.testing.assert_allclose(compiled(x)[0], want[0], rtol=1e-5, atol=1e-6)


def test_trains_saves_and_loads(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = mnm_keras.tasks.associative_recall(128, num_pairs=2, num_keys=4, num_values=4, seed=0)
    inputs = keras.Input(x.shape[1:])
    features = mnm_keras.SALU(24, max_length=x.shape[1], key_size=16, value_size=16, seed=0)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(features))
    model.compile(
        keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(x, y, batch_size=32, epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.5 * np.log(4), history.history["loss"]
    path = str(tmp_path / "salu.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[1], mnm_keras.SALU)
    np.testing.assert_allclose(loaded(x[:8]), model(x[:8]), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(jit_compile="yes"),
            "`jit_compile` must be True or False; received jit_compile='yes'",
        ),
        (dict(max_length=0), "`max_length` must be a positive integer; received max_length=0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mnm_keras.SALU(4, **{"max_length": 3, **kwargs})


def test_inputs_must_be_sequences():
    with pytest.raises(ValueError, match=r"SALU expects inputs of shape \[batch, time, features\]"):
        mnm_keras.SALU(4, max_length=3)(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("memory_efficient", [True, False])
def test_stateful_streams_a_sequence_in_pieces(memory_efficient):
    # A sequence fed in pieces to a stateful layer gives the outputs and the final state of
    # one call on the whole (with a mask); reset_state() starts over from an empty table.
    options = dict(max_length=9, memory_efficient=memory_efficient)
    whole = make_layer(**options)
    pieces = make_layer(stateful=True, **options)
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((BATCH, 9, FEATURES)), tf.float32)
    mask = tf.constant(rng.random((BATCH, 9)) > 0.3)
    whole(x), pieces(x[:, :4])
    pieces.set_weights(whole.get_weights())
    pieces.reset_state()
    want = whole(x, mask=mask)
    got = [pieces(x[:, a:b], mask=mask[:, a:b]) for a, b in ((0, 4), (4, 5), (5, 9))]
    # At a masked step the output repeats the call's previous output (zeros at the start
    # of a call, as in every Keras RNN), so the outputs are compared where the mask is on.
    streamed = np.concatenate([g[0] for g in got], axis=1)
    np.testing.assert_allclose(
        streamed[mask.numpy()], np.asarray(want[0])[mask.numpy()], rtol=1e-5, atol=1e-6
    )
    for final, state in zip(want[1:], got[-1][1:]):
        np.testing.assert_allclose(state, final, rtol=1e-5, atol=1e-6)
    pieces.reset_state()
    again = pieces(x[:, :4], mask=mask[:, :4])
    np.testing.assert_allclose(again[0], got[0][0], rtol=1e-6, atol=1e-7)
