"""`mnm_keras.core`: the state's packing, one step compiled or not, and one unroll for all.

The NumPy reference of one step is in `tests/test_mnm_cell.py` (through `MNMCell.call`,
which runs `core.compiled_step`); the memory-efficient backward pass against
`keras.layers.RNN` is in `tests/test_mnm_layer.py`. Here: that every way of running the
core computes the same thing, in float32 and in float64 (the reference precision, where
the memory-efficient backward pass is checked against numerical gradients).
"""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

import mnm_keras
from mnm_keras import core, memory

BATCH, TIME, FEATURES = 3, 6, 4
OPTIONS = [
    dict(write_rule="local"),
    dict(write_rule="gradient", normalize_writes=True),
    dict(write_rule="local", recall_delay=2, targets_from_values=True),
    dict(write_rule="gradient", recall_delay=1, memory_activation="sigmoid"),
]
IDS = ["local", "gradient-normalized", "local-delay2-targets", "gradient-delay1-sigmoid"]


def _cell(**options):
    sizes = dict(memory_units=5, key_size=4, value_size=3, num_heads=2, seed=4)
    cell = mnm_keras.MNMCell(6, **{**sizes, **options})
    cell.build((None, FEATURES))
    return cell


def _inputs(seed=0, time=TIME):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(size=(BATCH, time, FEATURES)).astype("float32"))


def _random_state(config, seed=1):
    """A state with every entry non-trivial (so that packing mistakes show)."""
    rng = np.random.default_rng(seed)
    sizes = core.state_sizes(config)
    flat = [tf.constant(rng.normal(size=(BATCH, size)).astype("float32")) for size in sizes]
    if config.recall_delay:
        flat[-1] = tf.constant(rng.integers(0, 2, size=(BATCH, sizes[-1])).astype("float32"))
    return core.unpack(config, flat), flat


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_pack_and_unpack_are_inverse(options):
    config = _cell(**options).config
    state, flat = _random_state(config)
    assert len(state.memory) == config.memory_layers
    for matrix, rows, columns in zip(
        state.memory, config.memory_sizes[1:], config.memory_sizes[:-1]
    ):
        assert matrix.shape == (BATCH, rows, columns)
    assert len(state.history) == (3 if config.recall_delay else 0)
    for packed, original in zip(core.pack(config, state), flat):
        np.testing.assert_array_equal(packed, original)
    with pytest.raises(ValueError, match="has 7 tensors"):
        core.unpack(_cell().config, flat[:3])


def test_memory_layout_is_row_major_per_sequence():
    cell = _cell()
    state = core.initial_state(cell.config, cell.params(), BATCH)
    flat = core.pack(cell.config, state)
    for index, matrix in enumerate(cell.params().initial_memory):
        np.testing.assert_array_equal(
            np.asarray(flat[3 + index]).reshape((BATCH,) + tuple(matrix.shape))[1],
            np.asarray(matrix),
        )


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_compiled_step_equals_the_plain_step(options):
    cell = _cell(**options)
    config, params = cell.config, cell.params()
    state, _ = _random_state(config)
    x = _inputs()[:, 0]
    y, new_state, interactions = core.step(config, params, x, state)
    compiled_y, compiled_state = core.compiled_step(config, params, x, state)
    np.testing.assert_allclose(compiled_y, y, rtol=1e-5, atol=1e-5)
    for a, b in zip(tf.nest.flatten(compiled_state), tf.nest.flatten(new_state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # The interactions describe the write that was made.
    written = memory.apply_write(list(state.memory), interactions.write_factors)
    for a, b in zip(written, new_state.memory):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_every_unroll_equals_keras_rnn(options, reverse):
    """The memory-efficient loop (XLA or not), the Python loop of ``on_step`` and
    ``keras.layers.RNN(cell)`` agree, with Keras' masking (leading masked steps give
    zero outputs, later ones repeat the previous output and keep the state)."""
    cell = _cell(**options)
    config, params = cell.config, cell.params()
    x = _inputs(2)
    mask = np.ones((BATCH, TIME), bool)
    mask[0, :2] = False  # leading padding
    mask[1, 3] = False  # a gap
    mask[2, -2:] = False  # trailing padding
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True, go_backwards=reverse)
    expected = rnn(x, mask=tf.constant(mask))
    expected_outputs, expected_states = expected[0], expected[1:]
    start = core.initial_state(config, params, BATCH)
    calls = []
    results = {
        # The reference loop (the fused kernel has its own tests against it).
        "xla": core.unroll(
            config, params, x, start, mask=mask, reverse=reverse, implementation="xla"
        ),
        "no_xla": core.unroll(
            config,
            params,
            x,
            start,
            mask=mask,
            reverse=reverse,
            jit_compile=False,
            implementation="xla",
        ),
        "on_step": core.unroll(
            config,
            params,
            x,
            start,
            mask=mask,
            reverse=reverse,
            on_step=lambda t, *_: calls.append(t),
        ),
    }
    assert calls == list(range(TIME))
    for name, (outputs, final) in results.items():
        np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-5, atol=1e-5, err_msg=name)
        for a, b in zip(core.pack(config, final), expected_states):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)
    if not reverse:  # the padding is processed first
        np.testing.assert_array_equal(results["xla"][0].numpy()[0, :2], 0.0)


@pytest.mark.parametrize("options", OPTIONS[:2], ids=IDS[:2])
def test_memory_efficient_gradients_equal_plain_autodiff(options):
    cell = _cell(**options)
    config = cell.config
    x = _inputs(3)

    def loss_and_gradients(**kwargs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            params = cell.params()
            start = core.initial_state(config, params, BATCH)
            outputs, final = core.unroll(config, params, x, start, **kwargs)
            loss = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(final.meta[:, 0])
            loss += sum(tf.reduce_sum(tf.cos(m)) for m in final.memory)
        return loss, tape.gradient(loss, [x] + cell.trainable_variables)

    plain_loss, plain = loss_and_gradients(on_step=lambda *_: None)
    # The reference loop (the fused kernel has its own tests against it).
    for kwargs in ({}, {"jit_compile": False}):
        loss, grads = loss_and_gradients(implementation="xla", **kwargs)
        np.testing.assert_allclose(loss, plain_loss, rtol=1e-5)
        for a, b in zip(grads, plain):
            scale = float(np.max(np.abs(b))) + 1e-6
            np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=2e-5)


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="`write_rule`.*'hebbian'"):
        core.make_config(4, write_rule="hebbian")
    with pytest.raises(ValueError, match="`recall_decay` must hold recall_delay \\+ 1 = 2"):
        core.make_config(4, recall_delay=1, recall_decay=[1.0])
    with pytest.raises(ValueError, match="`memory_layers`"):
        core.make_config(4, memory_layers=0)
    with pytest.raises(ValueError, match="`targets_from_values=True` applies"):
        core.make_config(4, write_rule="gradient", targets_from_values=True)
    with pytest.raises(ValueError, match="`jit_compile` must be True or False"):
        mnm_keras.MNMCell(4, jit_compile="yes")
    cell = _cell()
    with pytest.raises(ValueError, match="`inputs` must have shape"):
        core.unroll(cell.config, cell.params(), tf.zeros([2, 4]), None)
    start = core.initial_state(cell.config, cell.params(), 2)
    with pytest.raises(ValueError, match=r"at least one time step; received shape \(2, 0, 4\)"):
        core.unroll(cell.config, cell.params(), tf.zeros([2, 0, 4]), start)
    with pytest.raises(ValueError, match="at least one time step"):
        mnm_keras.MNM(6, memory_units=5, key_size=4, value_size=3)(tf.zeros([2, 0, 4]))

    @tf.function(input_signature=[tf.TensorSpec([2, None, 4])])
    def unknown_length(x):
        return core.unroll(cell.config, cell.params(), x, start)[0]

    with pytest.raises(tf.errors.InvalidArgumentError, match="at least one time step"):
        unknown_length(tf.zeros([2, 0, 4]))
    assert unknown_length(tf.zeros([2, 3, 4])).shape == (2, 3, 6)


def test_mnm_without_xla_computes_the_same():
    x = _inputs(5)
    compiled = mnm_keras.MNM(6, memory_units=5, key_size=4, value_size=3, seed=0)
    plain = mnm_keras.MNM(6, memory_units=5, key_size=4, value_size=3, seed=0, jit_compile=False)
    compiled(x)
    plain(x)
    plain.set_weights(compiled.get_weights())
    np.testing.assert_allclose(plain(x), compiled(x), rtol=1e-5, atol=1e-5)
    assert plain.get_config()["jit_compile"] is False
    assert mnm_keras.MNM.from_config(plain.get_config()).cell.jit_compile is False


@pytest.mark.parametrize("rule", ["local", "gradient"])
def test_recall_delay_meta_loss_against_numpy(rule):
    # Equation 5 with T = 2 recomputed in NumPy from what each step wrote: at step t the
    # memory phi_t (after its write) recalls the pairs written at t, t-1 and t-2 (those
    # that exist), weighted by lambda_tau, averaged over heads.
    decay = [1.0, 0.5, 0.25]
    cell = _cell(write_rule=rule, recall_delay=2, recall_decay=decay)
    config, params = cell.config, cell.params()
    steps = []

    def on_step(t, x, before, after, interactions):
        memory_after = [np.asarray(m, np.float64) for m in after.memory]
        keys = np.asarray(interactions.write_keys, np.float64)
        steps.append((memory_after, keys, np.asarray(interactions.values, np.float64)))

    state = core.initial_state(config, params, BATCH)
    _, final = core.unroll(config, params, _inputs(), state, on_step=on_step)

    def recall(weights, keys):  # [B, H, d_k] through the tanh MLP, linear last layer
        z = keys
        for layer, matrix in enumerate(weights):
            z = np.einsum("boi,bhi->bho", matrix, z)
            if layer < len(weights) - 1:
                z = np.tanh(z)
        return z

    total = np.zeros(BATCH)
    for t, (weights, _, _) in enumerate(steps):
        for tau, weight in enumerate(decay):
            if t - tau < 0:
                continue
            _, keys, values = steps[t - tau]
            error = np.sum((recall(weights, keys) - values) ** 2, axis=-1).mean(axis=-1)
            total += weight * error
    np.testing.assert_allclose(final.meta[:, 0], total, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(final.meta[:, 1], np.full(BATCH, TIME))


def _float64(cell):
    """``cell``'s config and weights in float64: the core's reference precision."""
    config = dataclasses.replace(cell.config, compute_dtype="float64")
    params = tf.nest.map_structure(lambda t: tf.cast(t, tf.float64), cell.params())
    return config, params


def test_state_dtype_follows_the_compute_dtype():
    assert core.make_config(4).state_dtype == "float32"
    assert core.make_config(4, compute_dtype="float64").state_dtype == "float64"
    for mixed in ("float16", "bfloat16"):  # mixed precision keeps a float32 state
        assert core.make_config(4, compute_dtype=mixed).state_dtype == "float32"


@pytest.mark.parametrize("rule", ["local", "gradient"])
@pytest.mark.parametrize("reverse", [False, True])
def test_float64_unroll_is_float64_and_equals_float32(rule, reverse):
    """Every loop runs entirely in float64 for a float64 config: outputs and the whole
    final state are float64, equal to float32's up to float32 rounding, the three loops
    agree to float64 rounding, and the outputs resolve a change of the inputs far below
    float32's resolution (a float32 intermediate would round it away)."""
    cell = _cell(write_rule=rule)
    config64, params64 = _float64(cell)
    x = _inputs(6)
    mask = np.ones((BATCH, TIME), bool)
    mask[0, :2] = False  # leading padding
    mask[1, 3] = False  # a gap
    mask[2, -2:] = False  # trailing padding
    start32 = core.initial_state(cell.config, cell.params(), BATCH)
    outputs32, final32 = core.unroll(
        cell.config, cell.params(), x, start32, mask=mask, reverse=reverse
    )
    start = core.initial_state(config64, params64, BATCH)
    assert {t.dtype for t in tf.nest.flatten(start)} == {tf.float64}
    loops = {
        "xla": {"implementation": "xla"},
        "no_xla": {"jit_compile": False, "implementation": "xla"},
        "on_step": {"on_step": lambda *_: None},
    }

    def run(loop, inputs):
        return core.unroll(
            config64, params64, inputs, start, mask=mask, reverse=reverse, **loops[loop]
        )

    x64 = tf.cast(x, tf.float64)
    reference_outputs, reference_final = run("xla", x64)
    real = reference_outputs.numpy() != 0.0  # not the zeros before the first real step
    for loop in loops:
        outputs, final = run(loop, x64)
        assert outputs.dtype == tf.float64, loop
        assert {t.dtype for t in tf.nest.flatten(final)} == {tf.float64}, loop
        np.testing.assert_allclose(outputs, outputs32, rtol=1e-5, atol=1e-5, err_msg=loop)
        for a, b in zip(core.pack(config64, final), core.pack(cell.config, final32)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=loop)
        np.testing.assert_allclose(outputs, reference_outputs, rtol=1e-12, atol=1e-12, err_msg=loop)
        for a, b in zip(tf.nest.flatten(final), tf.nest.flatten(reference_final)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=loop)
        change = np.abs(run(loop, x64 * (1.0 + 1e-10))[0].numpy() - outputs.numpy())
        assert np.all(change[real] > 0.0), loop
        assert np.max(change) < 1e-8, loop


GRADIENT_CHECKS = [
    dict(write_rule="local", normalize_writes=True),
    dict(write_rule="local", normalize_writes=False),
    dict(write_rule="gradient", normalize_writes=True),
]


@pytest.mark.parametrize(
    "options", GRADIENT_CHECKS, ids=["local-normalized", "local-unnormalized", "gradient"]
)
def test_float64_memory_efficient_gradients_equal_numerical_gradients(options):
    """The custom gradient of the XLA loop (the backward loop that rebuilds the memory)
    against central differences, in float64, with a mask: with respect to the inputs,
    the controller's recurrent kernel, the interface and rate kernels and (MNM-p) the
    first feedback kernel, of a loss that reads the outputs, the meta loss and the final
    memory."""
    batch, time, features = 2, 4, 3
    cell = mnm_keras.MNMCell(
        3,
        memory_units=5,
        memory_layers=2,
        key_size=4,
        value_size=3,
        num_heads=2,
        seed=7,
        **options,
    )
    cell.build((None, features))
    config, params = _float64(cell)
    rng = np.random.default_rng(8)
    x = tf.constant(rng.normal(size=(batch, time, features)))
    mask = np.array([[False, True, True, False], [True, False, True, True]])
    names = ["controller_recurrent_kernel", "interface_kernel", "rate_kernel"]
    checked = [x] + [getattr(params, name) for name in names]
    if config.feedback_layers:
        checked.append(params.feedback_kernels[0])

    def loss(x, recurrent, interface, rate, *feedback):
        changed = params._replace(
            controller_recurrent_kernel=recurrent, interface_kernel=interface, rate_kernel=rate
        )
        if feedback:
            changed = changed._replace(feedback_kernels=feedback + changed.feedback_kernels[1:])
        start = core.initial_state(config, changed, batch)
        outputs, final = core.unroll(config, changed, x, start, mask=mask, implementation="xla")
        total = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(final.meta[:, 0])
        return total + sum(tf.reduce_sum(tf.sin(m)) for m in final.memory)

    assert loss(*checked).dtype == tf.float64
    # delta 1e-4: the loss's float64 rounding is then ~1e-10 of a derivative and the
    # central differences' truncation error ~1e-8 (smaller deltas are noisier).
    theoretical, numerical = tf.test.compute_gradient(loss, checked, delta=1e-4)
    for index, (a, b) in enumerate(zip(theoretical, numerical)):
        scale = float(np.max(np.abs(b)))
        assert scale > 1e-4, index  # every checked tensor matters to the loss
        np.testing.assert_allclose(a / scale, b / scale, atol=1e-6, err_msg=str(index))
    # The padded steps' inputs have no effect.
    d_x = theoretical[0].reshape(batch, time, features)
    np.testing.assert_array_equal(d_x[~mask], 0.0)


def test_the_reference_loop_is_traced_once_per_configuration():
    """`tf.function` tells Python arguments apart by identity: a new recurrence object per
    call would trace and compile the loop again on every call (`reversible.recurrence`)."""
    from mnm_keras import reversible

    forward = reversible.compiled(reversible._forward, True)
    cells = [
        _cell(write_rule="gradient", memory_layers=2),
        _cell(write_rule="gradient", memory_layers=2),
    ]
    x = _inputs(4)

    def call(cell):
        params = cell.params()
        start = core.initial_state(cell.config, params, BATCH)
        return core.unroll(cell.config, params, x, start, implementation="xla")[0]

    call(cells[0])
    traced = forward.experimental_get_tracing_count()
    for cell in cells * 2:  # equal configurations, another cell's object included
        call(cell)
    assert forward.experimental_get_tracing_count() == traced
