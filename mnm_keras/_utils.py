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


def check_backend(layer_name):
    """Raises unless Keras runs on its TensorFlow backend, which mnm_keras's layers need.

    The step and its memory-efficient sequence loop are TensorFlow programs (a
    `tf.while_loop` with a custom gradient, compiled with XLA); on another backend Keras
    would fail later inside ``call`` with an error that does not say why.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{layer_name} needs Keras's TensorFlow backend; Keras runs on {backend!r} "
            f"(KERAS_BACKEND={backend}). Set KERAS_BACKEND=tensorflow before importing "
            "keras. The pure memory functions of mnm_keras.memory and mnm_keras.core are "
            "TensorFlow functions too."
        )
