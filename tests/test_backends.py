"""The layers on Keras's JAX backend, and `.keras` files across TensorFlow and JAX.

One test drives the rest: it saves the models of `tests/backend_models.py` here (on
TensorFlow) with their outputs, runs `tests/test_jax_backend.py` in a subprocess with
``KERAS_BACKEND=jax`` (the memory functions against NumPy, float64 gradient checks, the
layers' loop, `fit` learning, the README's usage block, and loading the TensorFlow models),
then loads the models that the JAX run saved and compares their outputs here.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import backend_models

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _save_tensorflow_models(directory):
    for index, name in enumerate(sorted(backend_models.LAYERS)):
        keras.utils.set_random_seed(index)
        model = backend_models.build(name)
        model.compile("adam", "mse")
        x = backend_models.inputs()
        # A few training steps, so that the weights are not the initializers' draws.
        model.fit(x, np.ones((2, 6, 2), "float32"), epochs=2, verbose=0)
        model.save(directory / f"tensorflow_{name}.keras")
        np.save(directory / f"tensorflow_{name}.npy", np.asarray(model(x)))


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """The JAX test run: ``(completed process, directory of the exchanged models)``."""
    pytest.importorskip("jax", reason="the `jax` extra (installed by `make test`)")
    directory = tmp_path_factory.mktemp("cross_backend")
    _save_tensorflow_models(directory)
    environment = dict(
        os.environ, KERAS_BACKEND="jax", MNM_CROSS_BACKEND_DIR=str(directory), PYTHONPATH=str(ROOT)
    )
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
    completed = subprocess.run(
        [*command, "tests/test_jax_backend.py"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return completed, directory


def test_the_jax_backend_tests_pass(jax_run):
    completed, _ = jax_run
    report = completed.stdout[-6000:] + completed.stderr[-3000:]
    assert completed.returncode == 0, report
    assert " passed" in completed.stdout and "skipped" not in completed.stdout, report


@pytest.mark.parametrize("name", sorted(backend_models.LAYERS))
def test_a_model_saved_on_jax_loads_and_computes_the_same(jax_run, name):
    _, directory = jax_run
    path = directory / f"jax_{name}.keras"
    assert path.exists(), f"the JAX run did not save {path.name}"
    model = keras.saving.load_model(path)
    expected = np.load(directory / f"jax_{name}.npy")
    np.testing.assert_allclose(model(backend_models.inputs()), expected, rtol=1e-5, atol=1e-5)
