"""Small helpers shared by the cells: argument checks, sub-seeds and seeded initializers."""

import hashlib

import keras
import numpy as np

from mnm_keras.core import check_bool, check_positive_int

__all__ = ["check_backend", "check_bool", "check_positive_int", "derive_seed", "seeded"]

# Sub-seeds are below 2**31, so that every consumer (Keras 3 and tf-keras initializers,
# NumPy generators, int32 seed tensors) takes them.
_SEED_BITS = 31


def derive_seed(seed, name):
    """The sub-seed of the weight or stream ``name`` of a run seeded with ``seed``.

    ``numpy.random.SeedSequence`` over the seed (its sign and magnitude) and the SHA-256
    digest of ``name`` (UTF-8), reduced to an integer in ``[0, 2**31)``; None when ``seed``
    is None (unseeded). A pure function: the same ``(seed, name)`` gives the same sub-seed
    in every process and Python version (unlike ``hash``).

    Why not ``seed + offset``: Keras's seeded initializers draw the same stream for the
    same integer whatever the shape, so with offsets one run's sub-seeds are another run's
    (seed 0's ``seed + 1`` is seed 1's ``seed + 0``) and the two runs start from shared, or
    leading parts of shared, weight tensors. Hashing the name with the seed gives every
    (seed, name) pair its own stream.

    Args:
      seed: an integer (any sign) or None.
      name: a stable name of the weight or stream, e.g. ``"interface/kernel"`` or
        ``"held_out_episodes"``.

    Returns:
      An int in ``[0, 2**31)``, or None.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an integer or None; received seed={seed!r}.")
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string; received name={name!r}.")
    seed = int(seed)
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    words = np.frombuffer(digest, dtype="<u4").tolist()  # 8 words of 32 bits
    entropy = [int(seed < 0), abs(seed), *words]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0]
    return int(state) >> (32 - _SEED_BITS)


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
