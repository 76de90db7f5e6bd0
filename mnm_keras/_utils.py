"""Small helpers shared by the cells: argument checks and seeded initializers."""

import keras

from mnm_keras.core import check_bool, check_positive_int

__all__ = ["check_backend", "check_bool", "check_positive_int", "seeded"]


def seeded(initializer, seed):
    """An initializer instance, reseeded with `seed` when it is a seedable default."""
    initializer = keras.initializers.get(initializer)
    if seed is not None and hasattr(initializer, "seed"):
        config = initializer.get_config()
        config["seed"] = seed
        initializer = initializer.__class__.from_config(config)
    return initializer


# The Keras backends the layers are tested on.
SUPPORTED_BACKENDS = ("tensorflow", "jax")


def check_backend(layer_name):
    """Raises unless Keras runs on a backend that mnm_keras's layers are tested on.

    The layers compute with `keras.ops` and run on TensorFlow (with the memory-efficient,
    XLA-compiled sequence loop) and on JAX (`keras.ops.scan`); on any other backend Keras
    would fail later inside ``call``, or compute something untested.
    """
    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise RuntimeError(
            f"{layer_name} runs on Keras's TensorFlow and JAX backends; Keras runs on "
            f"{backend!r} (KERAS_BACKEND={backend}). Set KERAS_BACKEND=tensorflow or "
            "KERAS_BACKEND=jax before importing keras."
        )
