"""Models saved by an earlier mnm_keras load and give the outputs recorded when they were saved.

`tests/fixtures/*.keras` were written by `tests/fixtures/make_saved_models.py` with earlier
code, whose cells held Keras ``LSTMCell`` and ``Dense`` sublayers (the MNM files with
mnm_keras 0.1.0, whose cells also computed their step with them; ``salu.keras`` just before
the cells came to own their weights, `mnm_keras.weights`). A change of variable names,
shapes, order or configuration keys, of the loading of those files
(`mnm_keras._legacy_loading`), or of the mathematics, makes these loads fail or differ.
"""

import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

import mnm_keras

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
NAMES = ("mnm_local", "mnm_gradient", "rnn_cell_local", "salu")


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_loads_and_gives_the_recorded_outputs(name):
    recorded = np.load(os.path.join(FIXTURES, "saved_model_outputs.npz"))
    model = keras.models.load_model(os.path.join(FIXTURES, f"{name}.keras"))
    outputs = np.asarray(model(recorded["inputs"]))
    np.testing.assert_allclose(outputs, recorded[name], rtol=1e-5, atol=1e-5)


def _groups(path):
    """The groups of a ``.keras`` file's weights that hold variables."""
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as handle:
        with h5py.File(handle) as weights:
            found = []
            weights.visititems(
                lambda name, item: (
                    found.append(name)
                    if isinstance(item, h5py.Group) and name.endswith("/vars") and len(item)
                    else None
                )
            )
            return found


@pytest.mark.parametrize("name", ("mnm_local", "salu"))
def test_an_old_file_saved_again_holds_the_cell_weights_under_the_cell(name, tmp_path):
    recorded = np.load(os.path.join(FIXTURES, "saved_model_outputs.npz"))
    old = os.path.join(FIXTURES, f"{name}.keras")
    model = keras.models.load_model(old)
    assert any("/cell/interface/vars" in group for group in _groups(old))
    path = str(tmp_path / "again.keras")
    model.save(path)
    layer = "salu" if name == "salu" else "mnm"
    cell_groups = [g for g in _groups(path) if g.startswith(f"layers/{layer}/")]
    assert cell_groups == [f"layers/{layer}/cell/vars"]  # no sublayer paths
    again = keras.models.load_model(path)
    outputs = np.asarray(again(recorded["inputs"]))
    np.testing.assert_allclose(outputs, recorded[name], rtol=1e-5, atol=1e-5)
    # The optimizer's slots, in the order of the trainable weights, load too.
    for a, b in zip(model.optimizer.variables, again.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_file_with_other_variables_is_refused_naming_the_counts():
    cell = mnm_keras.MNMCell(6, memory_units=5, memory_layers=2, key_size=4, value_size=3)
    cell.build((None, 7))
    count = len(cell.weight_table)
    with pytest.raises(ValueError, match=f"expects {count} saved variables .* holds 1"):
        cell.load_own_variables({"0": np.zeros((5, 4), "float32")})
    values = {str(i): np.asarray(v) for i, v in enumerate(cell.weights)}
    values["0"] = np.zeros((3, 3), "float32")
    with pytest.raises(ValueError, match=r"saved variable 0 has shape \(3, 3\)"):
        cell.load_own_variables(values)
