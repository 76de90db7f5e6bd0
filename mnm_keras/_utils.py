"""Small helpers shared by the cells: argument checks and seeded initializers."""

import keras

from mnm_keras.core import check_bool, check_positive_int

__all__ = ["check_bool", "check_positive_int", "seeded"]


def seeded(initializer, seed):
    """An initializer instance, reseeded with `seed` when it is a seedable default."""
    initializer = keras.initializers.get(initializer)
    if seed is not None and hasattr(initializer, "seed"):
        config = initializer.get_config()
        config["seed"] = seed
        initializer = initializer.__class__.from_config(config)
    return initializer
