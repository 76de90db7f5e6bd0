"""Models saved by an earlier mnm_keras load and give the outputs recorded when they were saved.

`tests/fixtures/*.keras` were written by `tests/fixtures/make_saved_models.py` with mnm_keras
0.1.0, whose cells computed their step with Keras sublayers; the step now lives in
`mnm_keras.core` and the cells only own the variables. A change of variable names, shapes,
order or configuration keys, or of the mathematics, makes these loads fail or differ.
"""

import os

import keras
import numpy as np
import pytest

import mnm_keras  # noqa: F401  (registers the serializable classes)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
NAMES = ("mnm_local", "mnm_gradient", "rnn_cell_local")


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_loads_and_gives_the_recorded_outputs(name):
    recorded = np.load(os.path.join(FIXTURES, "saved_model_outputs.npz"))
    model = keras.models.load_model(os.path.join(FIXTURES, f"{name}.keras"))
    outputs = np.asarray(model(recorded["inputs"]))
    np.testing.assert_allclose(outputs, recorded[name], rtol=1e-5, atol=1e-5)
