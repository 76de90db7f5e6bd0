"""`MNMCell` and `MNM`: one step against NumPy, unrolling, state handling, training, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mnm_keras
from tests import numpy_reference as ref

RULES = ["local", "gradient"]
BATCH, TIME, FEATURES = 3, 5, 4


def make_cell(rule, **kwargs):
    config = dict(memory_units=5, key_size=4, value_size=3, num_heads=2, write_rule=rule, seed=3)
    config.update(kwargs)
    return mnm_keras.MNMCell(6, **config)


def built(cell, features=FEATURES):
    cell.build((None, features))
    return cell


def sequences(seed=0, batch=BATCH, time=TIME):
    return np.random.default_rng(seed).standard_normal((batch, time, FEATURES)).astype(np.float32)


def numpy_step(cell, x, states):
    """One MNM step in NumPy with the cell's own weights (section 3, equations 1-5)."""
    h, c, previous_read = (np.asarray(s) for s in states[:3])
    sizes = cell.memory_sizes
    weights = [
        np.asarray(states[3 + i]).reshape(-1, sizes[i + 1], sizes[i])
        for i in range(cell.memory_layers)
    ]
    p = {
        k: v if isinstance(v, tuple) else np.asarray(v) for k, v in cell.params()._asdict().items()
    }
    kernel, recurrent, bias = (p[f"controller_{n}"] for n in ("kernel", "recurrent_kernel", "bias"))
    h, c = ref.lstm_step(np.concatenate([x, previous_read], -1), h, c, kernel, recurrent, bias)
    interface = np.tanh(h @ p["interface_kernel"] + p["interface_bias"])
    H, dk, dv = cell.num_heads, cell.key_size, cell.value_size
    read_keys = interface[:, : H * dk].reshape(-1, H, dk)
    write_keys = interface[:, H * dk : 2 * H * dk].reshape(-1, H, dk)
    values = interface[:, 2 * H * dk : 2 * H * dk + H * dv].reshape(-1, H, dv)
    rate_vector = interface[:, 2 * H * dk + H * dv :]
    rates = ref.sigmoid(rate_vector @ p["rate_kernel"] + p["rate_bias"])
    if cell.write_rule == "gradient":
        new_weights = ref.gradient_write(
            weights, write_keys, values, rates[:, 0], cell.normalize_writes
        )
    else:
        targets = []
        for index, (q, b) in enumerate(zip(p["feedback_kernels"], p["feedback_biases"])):
            pre = values @ np.asarray(q) + np.asarray(b)
            targets.append(pre if index == cell.memory_layers - 1 else np.tanh(pre))
        if cell.targets_from_values:
            targets.append(values)
        new_weights = ref.local_write(weights, write_keys, targets, rates, cell.normalize_writes)
    read_value = ref.read(new_weights, read_keys).mean(axis=1)
    y = np.concatenate([h, read_value], -1) @ p["output_kernel"] + p["output_bias"]
    meta = np.asarray(states[3 + cell.memory_layers]).copy()
    meta[:, 0] += ref.recall_error(new_weights, write_keys, values)
    meta[:, 1] += 1
    return y, [h, c, read_value] + [w.reshape(len(x), -1) for w in new_weights] + [meta]


@pytest.mark.parametrize(
    "rule, targets_from_values, normalize",
    [
        ("local", False, False),
        ("local", True, False),
        ("gradient", False, False),
        ("local", False, True),
        ("gradient", False, True),
    ],
)
def test_one_step_matches_numpy(rule, targets_from_values, normalize):
    cell = built(
        make_cell(rule, targets_from_values=targets_from_values, normalize_writes=normalize)
    )
    x = sequences()[:, 0]
    states = cell.get_initial_state(batch_size=BATCH)
    # A second step from a non-trivial state exercises the read-out feedback too.
    y1, states1 = cell(x, states)
    want_y1, want_states1 = numpy_step(cell, x, states)
    np.testing.assert_allclose(y1.numpy(), want_y1, rtol=1e-4, atol=1e-5)
    y2, states2 = cell(x * 0.5, states1)
    want_y2, want_states2 = numpy_step(cell, x * 0.5, want_states1)
    np.testing.assert_allclose(y2.numpy(), want_y2, rtol=1e-4, atol=1e-5)
    assert len(states2) == len(want_states2) == len(cell.state_size)
    for got, want, size in zip(states2, want_states2, cell.state_size):
        assert got.shape == (BATCH, size)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rule", RULES)
def test_rnn_unroll_equals_manual_loop_and_resets_state(rule):
    cell = make_cell(rule)
    layer = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    x = sequences(1)
    outputs, *final = layer(x)
    states = cell.get_initial_state(batch_size=BATCH)
    # A fresh sequence starts from phi_0, the fixed initial memory, for every sequence.
    for index, matrix in enumerate(cell.params().initial_memory):
        memory_state = np.asarray(states[3 + index]).reshape((BATCH,) + tuple(matrix.shape))
        for b in range(BATCH):
            np.testing.assert_array_equal(memory_state[b], np.asarray(matrix))
    for t in range(TIME):
        y, states = cell(x[:, t], states)
        np.testing.assert_allclose(outputs[:, t], y, rtol=1e-5, atol=1e-6)
    for got, want in zip(final, states):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The memory did change during the sequence, and a second call starts afresh.
    assert not np.allclose(np.asarray(final[3]), np.asarray(cell.get_initial_state(BATCH)[3]))
    again, *_ = layer(x)
    np.testing.assert_allclose(again, outputs, rtol=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_each_sequence_has_its_own_memory(rule):
    layer = keras.layers.RNN(make_cell(rule), return_sequences=True)
    x = sequences(2)
    clean = np.asarray(layer(x))
    changed = x.copy()
    changed[0] = np.nan
    dirty = np.asarray(layer(changed))
    assert np.all(np.isnan(dirty[0]))
    np.testing.assert_array_equal(clean[1:], dirty[1:])
    changed[0] = 7.0
    np.testing.assert_array_equal(clean[1:], np.asarray(layer(changed))[1:])


def small_model(rule, jit_compile=False, meta_loss_weight=1.0, **kwargs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((TIME, FEATURES))
    features = mnm_keras.MNM(
        6,
        memory_units=5,
        key_size=4,
        value_size=3,
        write_rule=rule,
        seed=1,
        meta_loss_weight=meta_loss_weight,
        **kwargs,
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(features))
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


@pytest.mark.parametrize("rule", RULES)
def test_meta_loss_is_logged_and_reaches_the_controller(rule):
    model = small_model(rule, meta_loss_weight=0.5)
    x, y = sequences(3, batch=8), np.arange(8) % 2
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert "meta_loss" in history.history
    assert all(np.isfinite(history.history["meta_loss"])) and history.history["meta_loss"][0] > 0

    layer = model.layers[1]
    with tf.GradientTape() as tape:
        model(x, training=True)
        (meta_term,) = model.losses
    cell = layer.cell
    variables = {w.name: w for w in cell.weights}
    gradients = tape.gradient(
        meta_term, [variables["controller_kernel"], variables["interface_kernel"]]
    )
    for gradient in gradients:
        assert gradient is not None and np.abs(np.asarray(gradient)).sum() > 0
    # The added loss is meta_loss_weight times the per-sequence mean of equation 5.
    _, *states = keras.layers.RNN(cell, return_state=True)(x)
    meta_state = np.asarray(states[3 + cell.memory_layers])
    expected = 0.5 * np.mean(meta_state[:, 0] / meta_state[:, 1])
    np.testing.assert_allclose(float(meta_term), expected, rtol=1e-5)
    assert np.all(meta_state[:, 1] == TIME)


def test_meta_loss_counts_only_unmasked_steps():
    cell = make_cell("local")
    x = sequences(4)
    mask = np.ones((BATCH, TIME), bool)
    mask[0, 3:] = False
    _, *states = keras.layers.RNN(cell, return_state=True)(x, mask=mask)
    counts = np.asarray(states[3 + cell.memory_layers])[:, 1]
    np.testing.assert_array_equal(counts, [3, TIME, TIME])


@pytest.mark.parametrize("rule", RULES)
def test_recall_delay_history(rule):
    cell = make_cell(rule, recall_delay=2, recall_decay=[1.0, 0.5, 0.25])
    layer = keras.layers.RNN(cell, return_state=True)
    _, *states = layer(sequences(5))
    *_, keys, values, valid = states
    assert keys.shape == (BATCH, 2 * cell.num_heads * cell.key_size)
    assert values.shape == (BATCH, 2 * cell.num_heads * cell.value_size)
    np.testing.assert_array_equal(valid, np.ones((BATCH, 2)))
    meta = np.asarray(states[3 + cell.memory_layers])
    assert np.all(meta[:, 0] > 0) and np.all(meta[:, 1] == TIME)


@pytest.mark.parametrize("rule", RULES)
def test_eager_function_and_xla_agree(rule):
    layer = keras.layers.RNN(make_cell(rule), return_sequences=True)
    x = tf.constant(sequences(6))
    eager = layer(x)
    compiled = tf.function(lambda v: layer(v))(x)
    xla = tf.function(lambda v: layer(v), jit_compile=True)(x)
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xla, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_training_step_compiles_and_reduces_loss(rule, jit_compile):
    model = small_model(rule, jit_compile=jit_compile)
    x = sequences(7, batch=16)
    y = (x[:, 0, 0] > 0).astype(np.int32)
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("rule", RULES)
def test_save_and_load_round_trip(tmp_path, rule):
    model = small_model(rule, num_heads=2)
    x = sequences(8)
    model.fit(x, np.arange(BATCH) % 2, epochs=1, verbose=0)
    path = str(tmp_path / "mnm.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    cell, loaded_cell = model.layers[1].cell, loaded.layers[1].cell
    assert loaded_cell.get_config() == cell.get_config()
    for a, b in zip(cell.params().initial_memory, loaded_cell.params().initial_memory):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bare_rnn_cell_save_and_load(tmp_path):
    inputs = keras.Input((TIME, FEATURES))
    model = keras.Model(inputs, keras.layers.RNN(make_cell("gradient"))(inputs))
    path = str(tmp_path / "rnn.keras")
    model.save(path)
    x = sequences(9)
    np.testing.assert_allclose(keras.models.load_model(path)(x), model(x), rtol=1e-6)


def test_seed_fixes_the_initial_memory():
    a, b, c = (
        built(make_cell("local")),
        built(make_cell("local")),
        built(make_cell("local", seed=4)),
    )
    phi_0 = [np.asarray(cell.params().initial_memory[0]) for cell in (a, b, c)]
    np.testing.assert_array_equal(phi_0[0], phi_0[1])
    assert not np.allclose(phi_0[0], phi_0[2])
    initial_memory = [w for w in a.weights if w.name.startswith("initial_memory_")]
    assert len(initial_memory) == a.memory_layers
    assert not any(w.trainable for w in initial_memory)
    non_trainable = {id(w) for w in a.non_trainable_weights}
    assert all(id(w) in non_trainable for w in initial_memory)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(units=0), "`units` must be a positive integer; received units=0"),
        (dict(units=4, memory_layers=1.5), "`memory_layers` must be a positive integer"),
        (dict(units=4, num_heads=-1), "received num_heads=-1"),
        (dict(units=4, write_rule="hebb"), "`write_rule` must be one of"),
        (dict(units=4, recall_delay=-1), "`recall_delay` must be a non-negative integer"),
        (dict(units=4, recall_delay=1, recall_decay=[1.0]), "`recall_decay` must hold"),
        (dict(units=4, meta_loss_weight=-1.0), "`meta_loss_weight` must be a non-negative"),
        (dict(units=4, meta_loss_weight=float("nan")), "`meta_loss_weight` must be a non-neg"),
        (dict(units=4, write_rule="gradient", targets_from_values=True), "targets_from_values"),
        (dict(units=4, seed="x"), "`seed` must be an integer"),
        (dict(units=4, normalize_writes="yes"), "`normalize_writes` must be True or False"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mnm_keras.MNMCell(**kwargs)


def test_bad_input_shapes_are_reported():
    with pytest.raises(ValueError, match=r"MNM expects inputs of shape \[batch, time, features\]"):
        mnm_keras.MNM(4, memory_units=3, key_size=3, value_size=3)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="needs a known input feature size"):
        make_cell("local").build((None, None))
    with pytest.raises(ValueError, match="needs the cell to be built first"):
        make_cell("local").get_initial_state(batch_size=2)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_memory_in_float32(tmp_path, policy):
    keras.mixed_precision.set_global_policy(policy)
    half = policy.split("_")[1]
    try:
        cell = make_cell("local")
        layer = keras.layers.RNN(cell)
        output = layer(sequences(10))
        assert output.dtype == half
        assert cell.compute_dtype == "float32"
        assert cell.controller_dtype.compute_dtype == half
        assert cell.config.compute_dtype == half
        y, states = cell(sequences(10)[:, 0], cell.get_initial_state(batch_size=BATCH))
        assert all(s.dtype == tf.float32 for s in states)
        assert np.all(np.isfinite(np.asarray(tf.cast(output, tf.float32))))
        model = small_model("gradient")
        x = sequences(11, batch=8)
        history = model.fit(x, np.arange(8) % 2, epochs=3, batch_size=8, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        path = str(tmp_path / "mixed.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        assert loaded.layers[1].cell.controller_dtype.name == policy
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mnm_layer_return_state_and_mask():
    layer = mnm_keras.MNM(
        6, memory_units=5, key_size=4, value_size=3, return_sequences=True, return_state=True
    )
    x = sequences(12)
    mask = np.ones((BATCH, TIME), bool)
    mask[1, 2:] = False
    outputs, *states = layer(x, mask=mask)
    assert outputs.shape == (BATCH, TIME, 6)
    assert len(states) == len(layer.cell.state_size)
    meta = np.asarray(states[3 + layer.cell.memory_layers])
    np.testing.assert_array_equal(meta[:, 1], [TIME, 2, TIME])
    # The masked sequence's final state is its state after its last unmasked step.
    _, *short = keras.layers.RNN(layer.cell, return_state=True)(x[1:2, :2])
    for got, want in zip(states, short):
        np.testing.assert_allclose(np.asarray(got)[1], np.asarray(want)[0], rtol=1e-5, atol=1e-6)


def test_recurrent_layer_names_the_models():
    from mnm_keras import models

    with pytest.raises(ValueError, match="`model` must be one of"):
        models.recurrent_layer("gru")
    with pytest.raises(ValueError, match="`max_length` is required"):
        models.recurrent_layer("salu")
    assert isinstance(models.recurrent_layer("mnm_g", units=4), mnm_keras.MNM)


def test_recurrent_layer_passes_further_arguments_to_the_layer():
    from mnm_keras import models

    salu = models.recurrent_layer("salu", units=4, max_length=3, memory_efficient=False)
    assert isinstance(salu, mnm_keras.SALU) and not salu.memory_efficient
    assert not models.recurrent_layer("mnm_p", units=4, jit_compile=False).cell.jit_compile
    assert models.recurrent_layer("lstm", units=4, dropout=0.25).dropout == 0.25


@pytest.mark.parametrize("layer", ["MNMCell", "MNM", "SALUCell", "SALU"])
def test_an_untested_keras_backend_is_refused_at_construction_by_name(monkeypatch, layer):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(RuntimeError, match=f"{layer} runs on Keras's TensorFlow and JAX .*'torch'"):
        getattr(mnm_keras, layer)(4, **({"max_length": 3} if layer.startswith("SALU") else {}))


def test_building_the_cell_again_keeps_its_variables():
    cell = make_cell("local")
    cell.build((None, FEATURES))
    first = [id(v) for v in cell.weights]
    cell.build((None, FEATURES))
    assert [id(v) for v in cell.weights] == first
    with pytest.raises(ValueError, match=f"built for {FEATURES} input features"):
        cell.build((None, FEATURES + 1))
