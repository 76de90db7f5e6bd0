"""A value other than the default for every constructor argument of the cells, and the
serialised form `get_config` should hold (`tests/test_arguments.py`,
`tests/test_agent_networks.py`)."""

import keras

import mnm_keras
from mnm_keras import arguments

# A value other than the default for every argument of MNMCell and SALUCell.
MNM_VALUES = dict(
    units=8,
    memory_units=4,
    memory_layers=2,
    key_size=5,
    value_size=6,
    num_heads=2,
    write_rule="local",
    output_units=7,
    meta_loss_weight=0.5,
    recall_delay=1,
    recall_decay=[1.0, 0.5],
    targets_from_values=True,
    normalize_writes=False,
    memory_activation="sigmoid",
    memory_output_activation="tanh",
    memory_initializer="he_normal",
    seed=5,
    kernel_initializer="lecun_normal",
    recurrent_initializer="glorot_normal",
    bias_initializer="ones",
    rate_bias_initializer=-1.0,
    kernel_regularizer="l2",
    bias_regularizer="l1",
    controller_dtype="mixed_bfloat16",
    jit_compile=False,
    implementation="xla",
)
SALU_VALUES = {
    **{
        name: MNM_VALUES[name] for name in arguments.names(mnm_keras.SALUCell) if name in MNM_VALUES
    },
    "max_length": 9,
}


def serialized(name, value, module=keras):
    """``value`` as get_config should hold it, by Keras' own functions."""
    if name.endswith("_initializer"):
        if isinstance(value, float):
            value = module.initializers.Constant(value)
        return module.initializers.serialize(module.initializers.get(value))
    if name.endswith("_activation"):
        return module.activations.serialize(module.activations.get(value))
    if name.endswith("_regularizer"):
        return module.regularizers.serialize(module.regularizers.get(value))
    if name == "controller_dtype":
        return keras.dtype_policies.serialize(keras.dtype_policies.get(value))
    return value
