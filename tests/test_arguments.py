"""The cells' constructor arguments (`mnm_keras.arguments`): every argument of a cell's
signature is stored, checked and serialised from that one declaration."""

import inspect

import keras
import pytest

import mnm_keras
from mnm_keras import arguments
from tests.cell_arguments import MNM_VALUES, SALU_VALUES, serialized


@pytest.mark.parametrize(
    "cell_class, values", [(mnm_keras.MNMCell, MNM_VALUES), (mnm_keras.SALUCell, SALU_VALUES)]
)
def test_every_argument_is_serialised_and_round_trips(cell_class, values):
    assert set(values) == set(arguments.names(cell_class))  # every argument is set here
    cell = cell_class(**values)
    config = cell.get_config()
    assert set(config) == set(values) | {"name", "trainable", "dtype"}
    for name, value in values.items():
        assert config[name] == serialized(name, value), name
    clone = cell_class.from_config(config)
    assert clone.get_config() == config
    for name in ("seed", "units", "key_size", "num_heads", "output_units"):
        assert getattr(clone, name) == values[name]


def test_stored_arguments_are_objects():
    cell = mnm_keras.MNMCell(**MNM_VALUES)
    assert isinstance(cell.rate_bias_initializer, keras.initializers.Constant)
    assert cell.rate_bias_initializer.get_config()["value"] == -1.0
    assert cell.memory_activation is keras.activations.sigmoid
    assert isinstance(cell.kernel_regularizer, keras.regularizers.L2)
    assert cell.controller_dtype.name == "mixed_bfloat16"
    assert cell.meta_loss_weight == 0.5 and isinstance(cell.meta_loss_weight, float)


def test_bind_splits_the_signature_from_the_rest_and_names_the_caller():
    values, rest = arguments.bind(
        mnm_keras.SALUCell, (8, 3), {"key_size": 2, "name": "n"}, layer_name="Mine"
    )
    assert rest == {"name": "n"}
    assert values["units"] == 8 and values["max_length"] == 3 and values["key_size"] == 2
    assert values["value_size"] == 100  # the default
    with pytest.raises(ValueError, match="Mine does not take `seed`"):
        arguments.bind(
            mnm_keras.SALUCell, (8, 3), {"seed": 1}, exclude=("seed",), layer_name="Mine"
        )
    with pytest.raises(TypeError, match="Mine takes the arguments"):
        arguments.bind(mnm_keras.SALUCell, tuple(range(20)), {}, layer_name="Mine")
    assert "self" not in arguments.names(mnm_keras.MNMCell)
    assert "kwargs" not in arguments.names(mnm_keras.MNMCell)
    assert arguments.names(mnm_keras.MNMCell)[:2] == ("units", "memory_units")
    assert list(arguments.signature(mnm_keras.MNMCell).parameters) == list(
        arguments.names(mnm_keras.MNMCell)
    )
    assert inspect.signature(mnm_keras.MNMCell).parameters["write_rule"].default == "local"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(units=0), "`units` must be a positive integer; received units=0"),
        (dict(units=8, max_length=-1), "`max_length` must be a positive integer"),
        (dict(units=8, output_units=0), "`output_units` must be a positive integer"),
        (dict(units=8, seed=1.5), "`seed` must be an integer or None; received seed=1.5"),
        (dict(units=8, meta_loss_weight=-1), "`meta_loss_weight` must be a non-negative"),
        (dict(units=8, jit_compile=1), "`jit_compile` must be True or False"),
        (dict(units=8, implementation="cuda"), "`implementation` must be one of"),
    ],
)
def test_check_names_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        arguments.check(kwargs)
