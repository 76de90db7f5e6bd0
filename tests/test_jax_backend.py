"""mnm_keras on Keras's JAX backend: the memory functions, the step, the layers and `fit`.

These tests run only when Keras runs on JAX. `tests/test_backends.py` runs this module in a
subprocess with ``KERAS_BACKEND=jax`` as part of the ordinary (TensorFlow) test run, and
hands it, in ``MNM_CROSS_BACKEND_DIR``, models saved on TensorFlow with their outputs; the
cross-backend tests here load them, and save models of their own for the TensorFlow side.
"""

import os
import pathlib
import re

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="runs with KERAS_BACKEND=jax (tests/test_backends.py)"
)

if keras.backend.backend() == "jax":
    import jax
    import jax.numpy as jnp

import mnm_keras  # noqa: E402
from mnm_keras import core, memory, models  # noqa: E402
from tests import backend_models, numpy_reference  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _memory(rng, sizes=(4, 5, 3), batch=2, heads=2, dtype="float32"):
    weights = [
        rng.normal(size=(batch, sizes[i + 1], sizes[i])).astype(dtype) * 0.5
        for i in range(len(sizes) - 1)
    ]
    keys = rng.normal(size=(batch, heads, sizes[0])).astype(dtype)
    values = rng.normal(size=(batch, heads, sizes[-1])).astype(dtype)
    return weights, keys, values


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("normalize", [False, True])
def test_memory_functions_match_numpy(compiled, normalize):
    rng = np.random.default_rng(1)
    weights, keys, values = _memory(rng)
    rate = np.array([0.3, 0.7], "float32")
    rates = np.array([[0.2, 0.5], [0.9, 0.1]], "float32")
    targets = [rng.normal(size=(2, 2, 5)).astype("float32"), values]

    def run(weights, keys, values, rate, rates, targets):
        return (
            memory.read(weights, keys),
            memory.recall_error(weights, keys, values),
            memory.gradient_write(weights, keys, values, rate, normalize=normalize),
            memory.local_write(weights, keys, targets, rates, normalize=normalize),
        )

    if compiled:
        run = jax.jit(run)
    read, error, gradient_written, local_written = run(weights, keys, values, rate, rates, targets)
    assert isinstance(read, jax.Array)
    np.testing.assert_allclose(read, numpy_reference.read(weights, keys), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        error, numpy_reference.recall_error(weights, keys, values), rtol=1e-5, atol=1e-5
    )
    expected = numpy_reference.gradient_write(weights, keys, values, rate, normalize)
    for got, want in zip(gradient_written, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    expected = numpy_reference.local_write(weights, keys, targets, rates, normalize)
    for got, want in zip(local_written, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_closed_form_deltas_equal_jax_grad_in_float64(activation):
    """recall_deltas (tanh written out; softplus through jax.vjp) against jax.grad.

    The activations are JAX's own: Keras's JAX `ops.tanh` computes in float32 whatever the
    input's dtype.
    """
    hidden = {"tanh": jnp.tanh, "softplus": jax.nn.softplus}[activation]
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        weights, keys, values = _memory(rng, dtype="float64")
        activations, pres = memory.forward_with_pre_activations(weights, keys, hidden)
        deltas = memory.recall_deltas(weights, activations, pres, values, hidden)

        def loss(pres_in):
            # The recall loss as a function of the pre-activations, summed over the batch.
            z = pres_in[-1]
            return jnp.sum((z - values) ** 2) / keys.shape[1]

        # d loss / d pre^{L-1} directly; the earlier layers through the chain rule below.
        np.testing.assert_allclose(deltas[-1], jax.grad(loss)(pres)[-1], rtol=1e-12)

        def total(weights):
            return jnp.sum(memory.recall_error(weights, keys, values, hidden))

        # The factors' outer products are the gradient with respect to the weights.
        factors = memory.gradient_write_factors(
            weights, keys, values, np.ones(2), hidden, normalize=False
        )
        for (a, b), grad in zip(factors, jax.grad(total)(weights)):
            np.testing.assert_allclose(jnp.einsum("bhi,bhj->bij", a, b), grad, rtol=1e-10)


def test_gradient_through_gradient_write_matches_finite_differences_in_float64():
    """Second order: d recall(after write) / d keys, against central differences."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        weights, keys, values = _memory(rng, dtype="float64")
        probe = rng.normal(size=keys.shape)
        rate = np.array([0.4, 0.8])

        def objective(keys):
            written = memory.gradient_write(weights, keys, values, rate, jnp.tanh, normalize=True)
            return jnp.sum(memory.recall_error(written, keys, values, jnp.tanh))

        # Traced (jit, grad), the computation stays in float64; run eagerly on concrete
        # arrays, some of Keras's JAX ops return float32.
        objective = jax.jit(objective)
        analytic = jnp.sum(jax.grad(objective)(keys) * probe)
        step = 1e-6
        numeric = (objective(keys + step * probe) - objective(keys - step * probe)) / (2 * step)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


@pytest.mark.parametrize("rule", ["gradient", "local"])
def test_normalized_write_at_an_all_zero_key_has_finite_gradients(rule):
    rng = np.random.default_rng(4)
    weights, _, values = _memory(rng)
    keys = np.zeros((2, 2, 4), "float32")

    def objective(weights):
        if rule == "gradient":
            written = memory.gradient_write(weights, keys, values, np.ones(2), normalize=True)
        else:
            targets = [np.zeros((2, 2, 5), "float32"), values]
            written = memory.local_write(weights, keys, targets, np.ones((2, 2)), normalize=True)
        return sum(jnp.sum(w**2) for w in written)

    for grad in jax.grad(objective)(weights):
        assert np.all(np.isfinite(grad))


def test_the_tape_method_is_refused_by_name():
    weights, keys, values = _memory(np.random.default_rng(5))
    with pytest.raises(ValueError, match="method='tape'.*TensorFlow backend.*'jax'"):
        memory.gradient_write(weights, keys, values, np.ones(2, "float32"), method="tape")


def _mnm(**options):
    return mnm_keras.MNM(6, memory_units=5, key_size=4, value_size=3, **options)


@pytest.mark.parametrize("rule", ["local", "gradient"])
@pytest.mark.parametrize("reverse", [False, True])
def test_mnm_equals_the_rnn_of_its_cell_with_a_mask(rule, reverse):
    """The JAX loop (`keras.ops.scan` in core.unroll) against keras.layers.RNN's."""
    x = np.random.default_rng(6).normal(size=(3, 5, 2)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], bool)
    layer = _mnm(write_rule=rule, return_sequences=True, go_backwards=reverse, recall_delay=1)
    fast = np.asarray(layer(x, mask=mask))
    rnn = keras.layers.RNN(layer.cell, return_sequences=True, go_backwards=reverse)
    slow = np.asarray(rnn(x, mask=mask))
    # Keras's JAX RNN outputs the cell's first state (h) at a masked step, where the
    # TensorFlow RNN (and MNM on both backends) repeats the previous output; the real
    # steps, and the state carried across masked ones, agree.
    steps = mask[:, ::-1] if reverse else mask
    np.testing.assert_allclose(fast[steps], slow[steps], rtol=1e-5, atol=1e-6)
    for b, t in zip(*np.nonzero(~steps)):
        np.testing.assert_array_equal(fast[b, t], fast[b, t - 1] if t else 0.0)
    # jit of the layer's stateless call computes the same.
    variables = [v.value for v in layer.trainable_variables]
    others = [v.value for v in layer.non_trainable_variables]
    jitted = jax.jit(lambda a, b, x: layer.stateless_call(a, b, x, mask=mask)[0])
    np.testing.assert_allclose(jitted(variables, others, x), fast, rtol=1e-5, atol=1e-6)


def test_the_step_matches_numpy_lstm_controller():
    """core.step's controller against the NumPy LSTM: h and c of one step."""
    cell = mnm_keras.MNMCell(6, memory_units=5, key_size=4, value_size=3)
    cell.build((None, 2))
    params = cell.params()
    x = np.random.default_rng(7).normal(size=(2, 2)).astype("float32")
    state = core.initial_state(cell.config, params, 2)
    _, new, _ = core.step(cell.config, params, x, state)
    h, c = numpy_reference.lstm_step(
        np.concatenate([x, np.zeros((2, 3), "float32")], -1),
        np.zeros((2, 6)),
        np.zeros((2, 6)),
        np.asarray(params.controller_kernel),
        np.asarray(params.controller_recurrent_kernel),
        np.asarray(params.controller_bias),
    )
    np.testing.assert_allclose(new.h, h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.c, c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["mnm_p", "mnm_g", "salu"])
def test_each_model_learns_associative_recall_with_fit(model):
    """A small budget with a seed: the training loss falls well below chance (ln 4)."""
    keras.utils.set_random_seed(0)
    x, y = mnm_keras.tasks.associative_recall(256, num_pairs=2, num_keys=4, num_values=4, seed=0)
    options = dict(units=24, memory_units=16, key_size=16, value_size=16, seed=0)
    if model == "salu":
        options["max_length"] = x.shape[1]
    inputs = keras.Input(x.shape[1:])
    features = models.recurrent_layer(model, **options)(inputs)
    network = keras.Model(inputs, keras.layers.Dense(4)(features))
    network.compile(
        keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = network.fit(x, y, batch_size=32, epochs=25, verbose=0)
    assert history.history["loss"][-1] < 0.5 * np.log(4), history.history["loss"]


@pytest.mark.parametrize("return_state", [False, True])
def test_keras_layer_conformance_on_jax(return_state):
    """Keras's own conformance check (build, call, serialisation, masking, one training
    step) of MNM, as on TensorFlow (tests/test_mnm_layer.py)."""
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


def test_bidirectional_mnm_trains_on_jax():
    x = np.random.default_rng(8).normal(size=(4, 5, 3)).astype("float32")
    inputs = keras.Input((5, 3))
    layer = keras.layers.Bidirectional(_mnm(return_sequences=True))
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    model.compile("adam", "mse")
    history = model.fit(x, np.zeros((4, 5, 1), "float32"), epochs=3, verbose=0)
    assert model.output_shape == (None, 5, 1)
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize("layer_class", ["MNM", "SALU"])
def test_stateful_streaming_equals_one_call_on_jax(layer_class):
    options = dict(key_size=4, value_size=4, seed=0, return_sequences=True)
    if layer_class == "MNM":
        options.update(memory_units=6, memory_layers=1)
    else:
        options.update(max_length=6)
    make = getattr(mnm_keras, layer_class)
    whole, pieces = make(8, **options), make(8, stateful=True, **options)
    x = np.random.default_rng(9).normal(size=(2, 6, 3)).astype("float32")
    whole(x), pieces(x[:, :2])
    pieces.set_weights(whole.get_weights())
    pieces.reset_state()
    streamed = [np.asarray(pieces(x[:, a:b])) for a, b in ((0, 3), (3, 4), (4, 6))]
    np.testing.assert_allclose(np.concatenate(streamed, 1), whole(x), rtol=1e-5, atol=1e-5)


def test_readme_usage_example_runs_on_jax(capsys):
    text = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "(2, 7, 64)" in printed and "(2, 1, 3)" in printed


# ------------------------------------------------------------------ across backends
CROSS = os.environ.get("MNM_CROSS_BACKEND_DIR")
cross_backend = pytest.mark.skipif(
    CROSS is None, reason="needs MNM_CROSS_BACKEND_DIR (tests/test_backends.py sets it)"
)


@cross_backend
@pytest.mark.parametrize("name", sorted(backend_models.LAYERS))
def test_a_model_saved_on_tensorflow_loads_and_computes_the_same(name):
    directory = pathlib.Path(CROSS)
    model = keras.saving.load_model(directory / f"tensorflow_{name}.keras")
    expected = np.load(directory / f"tensorflow_{name}.npy")
    np.testing.assert_allclose(model(backend_models.inputs()), expected, rtol=1e-5, atol=1e-5)


@cross_backend
@pytest.mark.parametrize("name", sorted(backend_models.LAYERS))
def test_save_a_model_on_jax_for_tensorflow(name):
    """Builds and trains a model here; tests/test_backends.py loads it on TensorFlow."""
    keras.utils.set_random_seed(1)
    model = backend_models.build(name)
    model.compile("adam", "mse")
    x = backend_models.inputs()
    model.fit(x, np.ones((2, 6, 2), "float32"), epochs=2, verbose=0)
    directory = pathlib.Path(CROSS)
    model.save(directory / f"jax_{name}.keras")
    np.save(directory / f"jax_{name}.npy", np.asarray(model(x)))
