"""The fused kernel (`mnm_keras.fused`, ops of `mnm_keras/kernels/`) against the
TensorFlow/XLA reference (`core`'s memory-efficient loop), in float64.

Every test compares the two implementations of `core.unroll` on the same float64 weights,
inputs and initial state: the outputs, the final state (memory and meta loss included) and
the gradient of a loss that reads all of them with respect to the inputs, the initial
state and every weight. A float64 numerical gradient checks the kernel's gradient
independently of the reference. The machine must be able to build the kernel (g++): a
failed build fails these tests rather than skipping them.
"""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import mnm_keras
from mnm_keras import core, fused, kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, TIME, FEATURES = 3, 5, 4

CASES = {
    "h1-l1": dict(num_heads=1, memory_layers=1),
    "h3-l3": dict(num_heads=3, memory_layers=3),
    "h2-l2-paper-writes": dict(num_heads=2, memory_layers=2, normalize_writes=False),
    "h2-l2-targets-from-values": dict(num_heads=2, memory_layers=2, targets_from_values=True),
    "h1-l1-targets-from-values": dict(num_heads=1, memory_layers=1, targets_from_values=True),
    # MNM-g: the write's gradient through a gradient step (second order).
    "gradient-h1-l1": dict(write_rule="gradient", num_heads=1, memory_layers=1),
    "gradient-h3-l3": dict(write_rule="gradient", num_heads=3, memory_layers=3),
    "gradient-h2-l2-paper-writes": dict(
        write_rule="gradient", num_heads=2, memory_layers=2, normalize_writes=False
    ),
}


def _float64(cell):
    """``cell``'s config and weights in float64 (the reference computes in float64 then)."""
    config = dataclasses.replace(cell.config, compute_dtype="float64")
    params = tf.nest.map_structure(lambda t: tf.cast(t, tf.float64), cell.params())
    return config, params


def _cell(**options):
    sizes = dict(memory_units=5, key_size=4, value_size=3, seed=4)
    cell = mnm_keras.MNMCell(6, **{**sizes, **options})
    cell.build((None, FEATURES))
    return cell


def _mask(kind, batch=BATCH, time=TIME):
    """None, or ragged lengths with leading padding, a gap and trailing padding."""
    if kind is None:
        return None
    mask = np.ones((batch, time), bool)
    mask[0, :2] = False
    mask[1, 3] = False
    mask[2, -2:] = False
    return tf.constant(mask)


def _run(config, params, x, mask, reverse, implementation, compute_meta_loss=True, state=None):
    """Outputs, final state and the gradients of a loss reading all of them."""
    flat_params = tf.nest.flatten(params)
    start = state or core.initial_state(config, params, x.shape[0])
    flat_start = tf.nest.flatten(start)
    with tf.GradientTape() as tape:
        tape.watch([x, flat_params, flat_start])
        params_ = tf.nest.pack_sequence_as(params, flat_params)
        start_ = tf.nest.pack_sequence_as(start, flat_start)
        outputs, final = core.unroll(
            config,
            params_,
            x,
            start_,
            mask=mask,
            reverse=reverse,
            compute_meta_loss=compute_meta_loss,
            implementation=implementation,
        )
        loss = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(final.meta[:, 0])
        loss += tf.reduce_sum(tf.cos(final.c)) + tf.reduce_sum(tf.sin(final.h) * final.read[:, :1])
        loss += sum(tf.reduce_sum(tf.cos(m)) for m in final.memory)
    grads = tape.gradient(
        loss, [x, flat_params, flat_start], unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    return outputs, final, tf.nest.flatten(grads)


def _assert_same(reference, kernel, rtol=1e-10):
    (out_a, final_a, grads_a), (out_b, final_b, grads_b) = reference, kernel
    assert out_b.dtype == tf.float64
    np.testing.assert_allclose(out_b, out_a, rtol=rtol, atol=rtol)
    for a, b in zip(tf.nest.flatten(final_a), tf.nest.flatten(final_b)):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol)
    assert len(grads_a) == len(grads_b)
    for index, (a, b) in enumerate(zip(grads_a, grads_b)):
        scale = float(np.max(np.abs(a))) + 1e-12
        np.testing.assert_allclose(
            np.asarray(b) / scale, np.asarray(a) / scale, atol=rtol, err_msg=f"gradient {index}"
        )


@pytest.fixture(scope="module", autouse=True)
def _kernel_is_built():
    kernels.load()  # fails the module (not skips it) where the kernel cannot be built


# Every case with ragged lengths; two of them backwards too, and one without a mask.
COMBINATIONS = [(case, "ragged", False) for case in CASES] + [
    ("h3-l3", "ragged", True),
    ("h2-l2-paper-writes", "ragged", True),
    ("gradient-h3-l3", "ragged", True),
    ("h1-l1", None, False),
    ("gradient-h1-l1", None, False),
]


@pytest.mark.parametrize(("case", "mask", "reverse"), COMBINATIONS)
def test_kernel_equals_the_reference_in_float64(case, mask, reverse):
    config, params = _float64(_cell(**CASES[case]))
    x = tf.constant(np.random.default_rng(0).normal(size=(BATCH, TIME, FEATURES)))
    reference = _run(config, params, x, _mask(mask), reverse, "xla")
    kernel = _run(config, params, x, _mask(mask), reverse, "kernel")
    _assert_same(reference, kernel)


@pytest.mark.parametrize("write_rule", ["local", "gradient"])
def test_kernel_from_a_random_state_without_the_meta_loss(write_rule):
    """From a random state (every entry non-trivial), and with the meta loss off."""
    config, params = _float64(_cell(num_heads=2, memory_layers=2, write_rule=write_rule))
    rng = np.random.default_rng(1)
    flat = [tf.constant(rng.normal(size=(BATCH, n))) for n in core.state_sizes(config)]
    state = core.unpack(config, flat)
    x = tf.constant(rng.normal(size=(BATCH, TIME, FEATURES)))
    for compute_meta_loss in (True, False):
        reference = _run(config, params, x, None, False, "xla", compute_meta_loss, state)
        kernel = _run(config, params, x, None, False, "kernel", compute_meta_loss, state)
        _assert_same(reference, kernel)
    np.testing.assert_array_equal(kernel[1].meta, state.meta)  # untouched without it


@pytest.mark.parametrize("write_rule", ["local", "gradient"])
def test_kernel_in_float32_is_close_to_the_reference(write_rule):
    cell = _cell(num_heads=2, memory_layers=2, write_rule=write_rule)
    x = tf.constant(np.random.default_rng(2).normal(size=(BATCH, TIME, FEATURES)), tf.float32)
    reference = _run(cell.config, cell.params(), x, _mask("ragged"), False, "xla")
    kernel = _run(cell.config, cell.params(), x, _mask("ragged"), False, "kernel")
    assert kernel[0].dtype == tf.float32
    _assert_same_float32 = dict(rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(kernel[0], reference[0], **_assert_same_float32)
    for a, b in zip(reference[2], kernel[2]):
        scale = float(np.max(np.abs(a))) + 1e-6
        np.testing.assert_allclose(np.asarray(b) / scale, np.asarray(a) / scale, atol=5e-5)


@pytest.mark.parametrize(
    ("write_rule", "normalize_writes"),
    [("local", True), ("local", False), ("gradient", True), ("gradient", False)],
)
def test_kernel_gradient_equals_a_numerical_gradient_in_float64(write_rule, normalize_writes):
    """Central differences of the kernel's own forward op, independent of the reference
    (for MNM-g, of the gradient step inside the write: second order)."""
    config, params = _float64(
        _cell(
            num_heads=2,
            memory_layers=2,
            normalize_writes=normalize_writes,
            write_rule=write_rule,
        )
    )
    rng = np.random.default_rng(3)
    x0 = rng.normal(size=(2, 3, FEATURES))
    mask = tf.constant([[True, True, True], [False, True, True]])
    feedback = bool(params.feedback_kernels)

    def loss(x, interface_kernel, rate_kernel, *feedback_kernel):
        p = params._replace(
            interface_kernel=interface_kernel,
            rate_kernel=rate_kernel,
            feedback_kernels=tuple(feedback_kernel) + params.feedback_kernels[1:],
        )
        start = core.initial_state(config, p, 2)
        outputs, final = core.unroll(config, p, x, start, mask=mask, implementation="kernel")
        total = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(final.meta[:, 0])
        return total + sum(tf.reduce_sum(tf.cos(m)) for m in final.memory)

    arguments = [tf.constant(x0), params.interface_kernel, params.rate_kernel]
    arguments += [params.feedback_kernels[0]] if feedback else []
    theoretical, numerical = tf.test.compute_gradient(loss, arguments, delta=1e-4)
    for index, (a, b) in enumerate(zip(theoretical, numerical)):
        scale = float(np.max(np.abs(b))) + 1e-12
        np.testing.assert_allclose(a / scale, b / scale, atol=1e-6, err_msg=f"argument {index}")


THREADS_SCRIPT = """
import json, sys
import numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(int(sys.argv[1]))
import mnm_keras
from mnm_keras import core
cell = mnm_keras.MNMCell(8, memory_units=6, memory_layers=2, key_size=5, value_size=4,
                         num_heads=2, seed=0, implementation="kernel")
cell.build((None, 3))
x = tf.constant(np.random.default_rng(0).normal(size=(19, 6, 3)).astype("float32"))
with tf.GradientTape() as tape:
    tape.watch(x)
    start = core.initial_state(cell.config, cell.params(), 19)
    outputs, final = core.unroll(cell.config, cell.params(), x, start, implementation="kernel")
    loss = tf.reduce_sum(tf.sin(outputs)) + tf.reduce_sum(final.meta[:, 0])
grads = tape.gradient(loss, [x] + cell.trainable_variables)
values = [outputs] + [g for g in grads if g is not None]
print(json.dumps([np.asarray(v).ravel().tolist() for v in values]))
"""


def test_one_and_two_threads_give_the_same_results():
    """Blocks of the batch run on the op's thread pool; the weights' gradients are summed
    in block order, so the result does not depend on the number of threads (bit for bit)."""
    results = []
    for threads in (1, 2):
        process = subprocess.run(
            [sys.executable, "-c", THREADS_SCRIPT, str(threads)],
            env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert process.returncode == 0, process.stderr[-3000:]
        results.append(json.loads(process.stdout.strip().splitlines()[-1]))
    assert len(results[0]) > 5
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- the implementation argument
def test_the_implementation_argument_is_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match=r"implementation=.fast."):
        mnm_keras.MNMCell(4, memory_layers=1, implementation="fast")
    with pytest.raises(ValueError, match=r"memory_activation=.relu."):
        mnm_keras.MNMCell(4, memory_layers=2, memory_activation="relu", implementation="kernel")
    with pytest.raises(ValueError, match=r"recall_delay=1"):
        mnm_keras.MNMCell(4, memory_layers=1, recall_delay=1, implementation="kernel")
    inputs = keras.Input((None, 3))
    layer = mnm_keras.MNM(
        6, memory_units=4, memory_layers=1, key_size=4, value_size=4, seed=0, implementation="xla"
    )
    model = keras.Model(inputs, layer(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[-1].cell.implementation == "xla"
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def test_auto_takes_the_reference_inside_an_xla_function():
    """Custom ops cannot be compiled by XLA: inside ``jit_compile=True`` "auto" takes the
    reference and "kernel" says why it cannot run."""
    sizes = dict(memory_units=5, key_size=4, value_size=3, num_heads=2, memory_layers=2)
    layer = mnm_keras.MNM(6, return_sequences=True, seed=4, **sizes)
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 4, FEATURES)).astype("float32"))
    eager = layer(x)
    compiled = tf.function(layer, jit_compile=True)(x)
    np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)
    forced = keras.layers.RNN(_cell(num_heads=2, memory_layers=2, implementation="kernel"))
    with pytest.raises(ValueError, match="compiled with XLA"):
        tf.function(forced, jit_compile=True)(x)


def test_auto_falls_back_to_the_reference_where_the_kernel_does_not_compute():
    for options in (dict(memory_activation="relu"), dict(recall_delay=1)):
        cell = _cell(num_heads=2, memory_layers=2, **options)
        assert fused.choose(cell.config, "auto") == "xla"
        assert fused.choose(cell.config, "xla") == "xla"
    for write_rule in ("local", "gradient"):
        config = _cell(num_heads=2, memory_layers=2, write_rule=write_rule).config
        assert fused.choose(config, "auto") == "kernel"
    # A single step (a cell in keras.layers.RNN): the XLA step, measured faster.
    assert fused.choose(config, "auto", single_step=True) == "xla"
    assert fused.choose(config, "kernel", single_step=True) == "kernel"


@pytest.mark.parametrize("implementation", ["kernel", "xla"])
def test_training_with_fit_gives_the_same_losses(implementation):
    """`fit` on `MNM` through the kernel and through the reference (float32)."""
    x = np.random.default_rng(0).normal(size=(8, 7, 5)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=(8,))

    def losses(implementation):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((None, 5))
        features = mnm_keras.MNM(
            8,
            memory_units=6,
            memory_layers=2,
            key_size=4,
            value_size=4,
            num_heads=2,
            seed=1,
            implementation=implementation,
        )(inputs)
        model = keras.Model(inputs, keras.layers.Dense(3)(features))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model.fit(x, y, epochs=3, batch_size=4, verbose=0).history["loss"]

    reference = losses("xla")
    np.testing.assert_allclose(losses(implementation), reference, rtol=1e-4)
    assert reference[-1] < reference[0]


@pytest.mark.parametrize("write_rule", ["local", "gradient"])
def test_the_cell_in_keras_rnn_runs_the_kernel_step(write_rule):
    x = np.random.default_rng(0).normal(size=(3, 6, 4)).astype("float32")
    mask = np.ones((3, 6), bool)
    mask[0, :2] = False
    results = {}
    for implementation in ("xla", "kernel"):
        cell = _cell(
            num_heads=2, memory_layers=2, write_rule=write_rule, implementation=implementation
        )
        rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
        results[implementation] = rnn(x, mask=tf.constant(mask))
    for a, b in zip(results["xla"], results["kernel"]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("jit_compile", "expected"), [("auto", "kernel"), (True, "xla")])
def test_fit_under_compile_takes_the_kernel_unless_xla_compiles_the_step(
    monkeypatch, jit_compile, expected
):
    """Keras's default `compile()` (``jit_compile="auto"``, which Keras resolves to no XLA
    for this model on TensorFlow) trains through the kernel, as examples/distributed.py
    does; ``jit_compile=True`` compiles the train step with XLA, which takes the reference."""
    chosen = []
    choose = fused.choose

    def spy(config, implementation, single_step=False):
        chosen.append(choose(config, implementation, single_step))
        return chosen[-1]

    monkeypatch.setattr(fused, "choose", spy)
    inputs = keras.Input((5, 3))
    features = mnm_keras.MNM(
        6, memory_units=4, memory_layers=1, key_size=4, value_size=4, write_rule="gradient"
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(features))
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32")
    model.fit(x, np.zeros(4), epochs=1, verbose=0)
    assert chosen and set(chosen) == {expected}


def _choose_for_autograph(config):
    return fused.choose(config, "auto")


def test_choosing_inside_an_autograph_function_is_not_converted(monkeypatch):
    """A tf.function with AutoGraph (as TF-Agents' `common.function` traces the agent's
    networks) that first asks for the kernel runs the library's loading (the compiler's
    version, the cache's files) as plain Python: AutoGraph does not try to convert it and
    logs no "could not transform" warning."""
    import logging

    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = tf.get_logger()
    logger.addHandler(handler)
    monkeypatch.setattr(kernels, "_LIBRARY", kernels.KernelLibrary(source_dir=kernels.SOURCE_DIR))
    config = _cell(num_heads=1, memory_layers=1).config

    @tf.function(autograph=True)
    def traced(x):
        return x + (1.0 if _choose_for_autograph(config) == "kernel" else 2.0)

    try:
        assert float(traced(tf.constant(0.0))) == 1.0
    finally:
        logger.removeHandler(handler)
    messages = [record.getMessage() for record in records]
    assert not [m for m in messages if "AutoGraph could not transform" in m], messages[:3]
