"""TF-Agents extensions of mnm_keras: the grid maze, MNM actor-critic networks, an A2C agent.

Modules (paper section 4.3):

* `tf_agents_ext.maze`: `MazeEnvironment`, the grid maze of Miconi et al. (2018) as a
  `PyEnvironment`, single or batched (vectorised NumPy).
* `tf_agents_ext.networks`: `MNMCell` (a tf-keras cell calling `mnm_keras.memory`),
  `ActorCriticRnnNetwork` (shared recurrent trunk, logits and value heads) and the
  constructors `mnm_actor_critic` and `lstm_actor_critic`.
* `tf_agents_ext.a2c_agent`: `A2CAgent`, the reference A2C learning rule as a `TFAgent`, and
  its loss pieces as functions.

The modules are imported on first use (``tf_agents_ext.networks``, or ``from tf_agents_ext
import networks``). The training loop on the maze, with its held-out evaluation and run
records, is experiment tooling of the repository (``examples/maze_training.py``, run by
``examples/maze_a2c.py``), not of this package.

**tf-keras.** TF-Agents is built on Keras 2 (tf-keras), which TensorFlow serves as
``tf.keras`` only when the environment variable ``TF_USE_LEGACY_KERAS=1`` is set before
``tf.keras`` is first used; ``import keras`` stays Keras 3, so `mnm_keras` works beside it.
This package does not change the process: a program that uses it sets the variable before
TensorFlow is imported (``TF_USE_LEGACY_KERAS=1 python ...``, or
``os.environ["TF_USE_LEGACY_KERAS"] = "1"`` at its top, as ``examples/maze_a2c.py`` does).
Importing this package without it raises an `ImportError` that says so.
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["a2c_agent", "maze", "networks"]

_VARIABLE = "TF_USE_LEGACY_KERAS"


def _check_legacy_keras():
    """Raises ImportError unless ``tf.keras`` is (or will be) tf-keras in this process."""
    advice = (
        f"Set the environment variable {_VARIABLE}=1 before TensorFlow is imported (e.g. "
        f"`{_VARIABLE}=1 python ...`, or os.environ['{_VARIABLE}'] = '1' at the top of "
        "your program, before importing tensorflow, keras, mnm_keras or tf_agents_ext); "
        "also `pip install tf-keras` (mnm_keras[agents])."
    )
    if "tensorflow" not in sys.modules:
        if os.environ.get(_VARIABLE) != "1":
            raise ImportError(
                "tf_agents_ext needs TensorFlow's tf.keras to be tf-keras (Keras 2), which "
                f"TensorFlow serves only when {_VARIABLE}=1; in this process it is "
                f"{os.environ.get(_VARIABLE)!r}. " + advice
            )
        return  # TensorFlow will read the variable when tf.keras is first used.
    import tensorflow as tf

    # tf.keras is a lazy loader that reads TF_USE_LEGACY_KERAS on its first use: if nothing
    # has used it yet, this attribute access binds it to tf-keras.
    name = tf.keras.layers.Layer.__module__.split(".")[0]
    if name != "tf_keras":
        raise ImportError(
            "tf_agents_ext needs TensorFlow's tf.keras to be tf-keras (Keras 2), but in this "
            f"process tf.keras is already the {name!r} package: {_VARIABLE} was not '1' "
            "when tf.keras was first used. " + advice
        )


_check_legacy_keras()


def __getattr__(name):
    """The submodules of `__all__`, imported on first use (``tf_agents_ext.networks``)."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
