"""`mnm_keras.MNM`'s memory-efficient path equals the plain `keras.layers.RNN(MNMCell)` path.

The memory-efficient path (`mnm_keras.core.unroll`) stores the rank-H write factors instead of
the memory weights and rebuilds phi_{t-1} from phi_t while back-propagating. These tests run
both paths on the same weights and compare outputs, final states (memory included) and the
gradients of a loss that touches every output and every state, with respect to the inputs,
the initial state and every trainable weight.
"""

import numpy as np
import pytest
import tensorflow as tf

import mnm_keras
from mnm_keras import memory

SIZES = dict(memory_units=6, key_size=5, value_size=4, num_heads=2, seed=1)


def _pair(**kwargs):
    options = {**SIZES, **kwargs}
    fast = mnm_keras.MNM(7, return_sequences=True, return_state=True, **options)
    plain = mnm_keras.MNM(
        7, return_sequences=True, return_state=True, memory_efficient=False, **options
    )
    return fast, plain


def _inputs(batch=3, steps=6, features=4, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(size=(batch, steps, features)).astype("float32"))


def _outputs_and_gradients(layer, x, mask=None, initial_state=None):
    with tf.GradientTape() as tape:
        tape.watch(x)
        if initial_state is not None:
            tape.watch(initial_state)
        results = layer(x, mask=mask, initial_state=initial_state)
        loss = tf.reduce_sum(tf.sin(results[0]))
        loss += sum(tf.reduce_sum(tf.cos(state)) for state in results[1:])
        loss += sum(layer.losses)
    sources = [x] + layer.trainable_variables
    if initial_state is not None:
        sources += list(initial_state)
    return results, tape.gradient(loss, sources)


def _assert_same(
    fast, plain, x, mask=None, with_initial_state=False, compile_fast=None, gradient_atol=2e-5
):
    fast(x)
    plain(x)
    plain.set_weights(fast.get_weights())
    initial = None
    if with_initial_state:
        rng = np.random.default_rng(5)
        initial = [
            tf.constant(0.3 * rng.normal(size=s.shape).astype("float32"))
            for s in fast.cell.get_initial_state(batch_size=x.shape[0])
        ]
    run_fast = _outputs_and_gradients
    if compile_fast is not None:
        run_fast = tf.function(_outputs_and_gradients, jit_compile=compile_fast)
    fast_results, fast_grads = run_fast(fast, x, mask, initial)
    plain_results, plain_grads = _outputs_and_gradients(plain, x, mask, initial)
    assert len(fast_results) == len(plain_results)
    for a, b in zip(fast_results, plain_results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert len(fast_grads) == len(plain_grads)
    for a, b in zip(fast_grads, plain_grads):
        assert a is not None and b is not None
        scale = float(np.max(np.abs(b))) + 1e-6
        np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=gradient_atol)


@pytest.mark.parametrize("rule", ["local", "gradient"])
@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_outputs_and_gradients_equal_the_plain_rnn(rule, mode):
    fast, plain = _pair(write_rule=rule)
    compile_fast = {"eager": None, "function": False, "xla": True}[mode]
    _assert_same(fast, plain, _inputs(), compile_fast=compile_fast)


@pytest.mark.parametrize("rule", ["local", "gradient"])
def test_masks_recall_delay_and_go_backwards(rule):
    fast, plain = _pair(write_rule=rule, recall_delay=2, go_backwards=True)
    rows = [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 1, 0]]
    mask = tf.constant(np.array(rows, bool))
    _assert_same(fast, plain, _inputs(), mask=mask, compile_fast=False)


@pytest.mark.parametrize("rule", ["local", "gradient"])
def test_normalized_writes_equal_the_plain_rnn(rule):
    fast, plain = _pair(write_rule=rule, normalize_writes=True)
    _assert_same(fast, plain, _inputs(), compile_fast=False)


def test_initial_state_gets_its_gradient():
    fast, plain = _pair(write_rule="local", targets_from_values=True)
    _assert_same(fast, plain, _inputs(), with_initial_state=True, compile_fast=False)


def test_long_sequence_rebuilds_the_memory_accurately():
    # 200 steps of rebuilding phi_{t-1} = phi_t + a b^T in float32 must not drift. The two
    # paths sum the same float32 terms in different orders over 200 steps: the rate bias's
    # gradient differs by 2.3e-5 of its size on some CPUs (oneDNN's kernels differ by
    # instruction set), so the bound is 1e-4; a rebuild that drifts is off by far more.
    fast, plain = _pair(write_rule="gradient", rate_bias_initializer=2.0)
    x = _inputs(batch=2, steps=200, seed=3)
    _assert_same(fast, plain, x, compile_fast=False, gradient_atol=1e-4)


def test_write_factors_rebuild_the_previous_weights():
    rng = np.random.default_rng(0)
    weights = [tf.constant(rng.normal(size=(2, 4, 3)).astype("float32"))]
    left = tf.constant(rng.normal(size=(2, 2, 4)).astype("float32"))
    right = tf.constant(rng.normal(size=(2, 2, 3)).astype("float32"))
    written = memory.apply_write(weights, [(left, right)])
    np.testing.assert_allclose(
        written[0], weights[0] - np.einsum("bhi,bhj->bij", left, right), rtol=1e-6, atol=1e-6
    )
    rebuilt = memory.apply_write(written, [(-left, right)])
    np.testing.assert_allclose(rebuilt[0], weights[0], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="one \\(a, b\\) pair per memory layer"):
        memory.apply_write(weights, [])


def test_fit_and_config_round_trip():
    import keras

    inputs = keras.Input((5, 3))
    layer = mnm_keras.MNM(8, memory_units=6, key_size=6, value_size=6, seed=0)
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(8, 5, 3)).astype("float32")
    y = np.zeros((8,), "int32")
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert layer.get_config()["memory_efficient"] is True
    clone = mnm_keras.MNM.from_config(
        {**layer.get_config(), "memory_efficient": False, "name": "clone"}
    )
    assert clone.memory_efficient is False


def test_bidirectional_mnm_trains_saves_and_loads(tmp_path):
    import keras

    layer = mnm_keras.MNM(8, memory_units=6, memory_layers=1, key_size=4, value_size=4, seed=0)
    inputs = keras.Input((None, 3))
    both = keras.layers.Bidirectional(layer, merge_mode="concat")
    model = keras.Model(inputs, keras.layers.Dense(2)(both(inputs)))
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32")
    y = np.ones((4, 2), "float32")
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    before = model.evaluate(x, y, verbose=0)[0]
    model.fit(x, y, epochs=5, verbose=0)
    after = model.evaluate(x, y, verbose=0)[0]
    assert after < before
    assert both.backward_layer.go_backwards and not both.forward_layer.go_backwards
    # The backward layer reads the sequence from its end: not the forward layer's output.
    forward, backward = both.forward_layer(x), both.backward_layer(x)
    assert not np.allclose(forward, backward)
    path = str(tmp_path / "bidirectional.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("memory_efficient", [True, False])
@pytest.mark.parametrize("rule", ["local", "gradient"])
def test_stateful_streams_a_sequence_in_pieces(rule, memory_efficient):
    # A sequence fed in pieces to a stateful layer gives the outputs and the final state
    # (memory weights included) of one call on the whole, with a mask; each call's meta
    # loss is that of its own steps; reset_state() starts over from phi_0, not zeros.
    options = dict(SIZES, write_rule=rule, memory_efficient=memory_efficient)
    whole = mnm_keras.MNM(7, return_sequences=True, return_state=True, **options)
    pieces = mnm_keras.MNM(7, return_sequences=True, return_state=True, stateful=True, **options)
    x = _inputs(steps=9)
    mask = tf.constant(np.random.default_rng(4).random((3, 9)) > 0.3)
    whole(x), pieces(x[:, :4])
    pieces.set_weights(whole.get_weights())
    pieces.reset_state()
    initial = whole.cell.get_initial_state(batch_size=3)
    for variable, value in zip(pieces.states, initial):
        np.testing.assert_array_equal(variable, value)
    assert any(np.abs(value).max() > 0 for value in initial)  # phi_0
    want = whole(x, mask=mask)
    got, meta = [], []
    for a, b in ((0, 4), (4, 5), (5, 9)):
        got.append(pieces(x[:, a:b], mask=mask[:, a:b]))
        meta.append(float(pieces.losses[-1]))
    # At a masked step the output repeats the call's previous output (zeros at the start
    # of a call, as in every Keras RNN), so the outputs are compared where the mask is on.
    streamed = np.concatenate([g[0] for g in got], axis=1)
    np.testing.assert_allclose(
        streamed[mask.numpy()], np.asarray(want[0])[mask.numpy()], rtol=1e-5, atol=1e-5
    )
    for final, state in zip(want[1:], got[-1][1:]):
        np.testing.assert_allclose(state, final, rtol=1e-5, atol=1e-5)
    # The meta loss of the last piece: each sequence's sum of per-step meta losses over
    # that piece's own (unmasked) steps, over their number, then the batch mean.
    after_five = pieces.cell.unpack_state(got[1][1:])
    final = pieces.cell.unpack_state(got[2][1:])
    added = np.asarray(final.meta) - np.asarray(after_five.meta)
    np.testing.assert_array_equal(added[:, 1], np.sum(mask[:, 5:], axis=1))
    expected = np.mean(added[:, 0] / np.maximum(added[:, 1], 1.0))
    weight = pieces.cell.meta_loss_weight
    np.testing.assert_allclose(meta[-1], weight * expected, rtol=1e-5)
    pieces.reset_state()
    again = pieces(x[:, :4], mask=mask[:, :4])
    np.testing.assert_allclose(again[0], got[0][0], rtol=1e-6, atol=1e-7)


def test_output_shapes_are_declared():
    layer = mnm_keras.MNM(4, memory_units=6, key_size=5, value_size=3, return_state=True)
    shapes = layer.compute_output_shape((2, 7, 3))
    outputs = layer(np.zeros((2, 7, 3), "float32"))
    assert [tuple(o.shape) for o in outputs] == [tuple(s) for s in shapes]


@pytest.mark.parametrize("return_state", [False, True])
def test_keras_layer_conformance(return_state):
    # Keras's own conformance check: build, call, serialisation, masking, one training step;
    # with return_state the outputs are flat, (output, *states), as Keras RNN layers return.
    from keras.src import testing

    class Case(testing.TestCase):
        def runTest(self):
            pass

    sizes = dict(units=4, memory_units=6, memory_layers=1, key_size=3, value_size=3)
    Case().run_layer_test(
        mnm_keras.MNM,
        init_kwargs=dict(**sizes, return_sequences=True, return_state=return_state),
        input_shape=(2, 5, 3),
        expected_output_shape=None if return_state else (2, 5, 4),
        expected_num_losses=1,
        supports_masking=True,
        run_mixed_precision_check=False,
    )
    layer = mnm_keras.MNM(**sizes, return_state=return_state)
    outputs = layer(np.zeros((2, 5, 3), "float32"))
    if return_state:
        assert isinstance(outputs, tuple) and len(outputs) == 1 + len(layer.cell.state_size)
        assert all(o.shape.rank == 2 for o in outputs)


@pytest.mark.parametrize("memory_efficient", [True, False])
def test_export_serves_other_batch_and_time_sizes(tmp_path, memory_efficient):
    import keras

    inputs = keras.Input((None, 3))
    sizes = dict(memory_units=6, memory_layers=1, key_size=4, value_size=4, seed=0)
    layer = mnm_keras.MNM(8, return_sequences=True, memory_efficient=memory_efficient, **sizes)
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))
    path = str(tmp_path / "exported")
    model.export(path, verbose=False)
    served = tf.saved_model.load(path)
    for shape in ((2, 5, 3), (3, 9, 3)):
        x = np.random.default_rng(0).normal(size=shape).astype("float32")
        np.testing.assert_allclose(served.serve(x).numpy(), model.predict(x, verbose=0), atol=1e-5)


def test_inference_under_a_tape_still_has_gradients():
    # Outside a tape the memory-efficient loop runs forward only; under one (even with
    # training=False) its gradient is the plain RNN's.
    fast, plain = _pair()
    x = tf.constant(_inputs())
    fast(x), plain(x)
    plain.set_weights(fast.get_weights())
    grads = []
    for layer in (fast, plain):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=False)[0] ** 2)
        grads.append(tape.gradient(loss, x))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast(x)[0], plain(x)[0], rtol=1e-5, atol=1e-6)


def test_inference_of_a_new_model_after_another_was_deleted():
    # The compiled forward loop is shared by every layer of the same config: it must take
    # the weights as inputs, not capture the first layer's variables.
    import gc

    x = tf.constant(_inputs())
    outputs = []
    for seed in (0, 1):
        layer = mnm_keras.MNM(7, **{**SIZES, "seed": seed})
        outputs.append(np.asarray(layer(x)))
        del layer
        gc.collect()
    assert not np.allclose(outputs[0], outputs[1])


@pytest.mark.parametrize("memory_efficient", [True, False])
@pytest.mark.parametrize("rule", ["local", "gradient"])
def test_masked_padding_counts_in_no_meta_loss(rule, memory_efficient):
    # Two sequences of 4 and 6 steps, padded to 9 with zeros and masked: the meta loss the
    # layer adds is the mean over the batch of each sequence's own per-step mean, with
    # the steps counted per sequence, exactly as without the padding.
    layer = mnm_keras.MNM(
        7, return_sequences=True, write_rule=rule, memory_efficient=memory_efficient, **SIZES
    )
    lengths, padded_length = (4, 6), 9
    x = _inputs(batch=2, steps=padded_length)
    layer(x)
    alone = []
    for row, length in enumerate(lengths):
        layer(x[row : row + 1, :length])
        alone.append(float(layer.losses[-1]))
    mask = tf.constant(np.arange(padded_length)[None, :] < np.array(lengths)[:, None])
    padded = tf.where(mask[:, :, None], x, 0.0)
    outputs = layer(padded, mask=mask)
    np.testing.assert_allclose(float(layer.losses[-1]), np.mean(alone), rtol=1e-5)
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(
            outputs[row, :length], layer(x[row : row + 1, :length])[0], rtol=1e-5, atol=1e-6
        )
