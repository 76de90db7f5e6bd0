"""The models that `tests/test_backends.py` and `tests/test_jax_backend.py` save on one
Keras backend and load on the other, with the inputs they are compared on."""

import keras
import numpy as np

import mnm_keras

# name -> a function building the (unbuilt) recurrent layer.
LAYERS = {
    "rnn_mnm_cell_p": lambda: keras.layers.RNN(
        mnm_keras.MNMCell(8, memory_units=6, key_size=5, value_size=4, num_heads=2),
        return_sequences=True,
    ),
    "mnm_g": lambda: mnm_keras.MNM(
        8, memory_units=6, key_size=5, value_size=4, write_rule="gradient", return_sequences=True
    ),
    "mnm_p_delay": lambda: mnm_keras.MNM(
        8,
        memory_units=6,
        memory_layers=2,
        key_size=5,
        value_size=4,
        recall_delay=2,
        memory_activation="sigmoid",
        targets_from_values=True,
        return_sequences=True,
    ),
    "rnn_salu": lambda: keras.layers.RNN(
        mnm_keras.SALUCell(8, max_length=6, key_size=5, value_size=4, num_heads=2),
        return_sequences=True,
    ),
    "salu": lambda: mnm_keras.SALU(
        8, max_length=4, key_size=5, value_size=4, num_heads=2, return_sequences=True
    ),
}

INPUT_SIZE = 3


def build(name):
    """A model ``[batch, 6, 3] -> [batch, 6, 2]`` around the recurrent layer ``name``."""
    inputs = keras.Input((6, INPUT_SIZE))
    features = LAYERS[name]()(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(features))


def inputs():
    """The inputs both backends compute on: ``[2, 6, 3]`` float32."""
    return np.random.default_rng(0).normal(size=(2, 6, INPUT_SIZE)).astype("float32")
