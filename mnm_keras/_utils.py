"""Small helpers shared by the cells: argument checks and seeded initializers."""

import keras


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; received {name}={value!r}.")


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; received {name}={value!r}.")


def seeded(initializer, seed):
    """An initializer instance, reseeded with `seed` when it is a seedable default."""
    initializer = keras.initializers.get(initializer)
    if seed is not None and hasattr(initializer, "seed"):
        config = initializer.get_config()
        config["seed"] = seed
        initializer = initializer.__class__.from_config(config)
    return initializer
