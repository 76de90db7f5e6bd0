"""Process-wide test setup: ``TF_USE_LEGACY_KERAS=1`` before any test imports TensorFlow.

The whole suite runs in one pytest process. The TF-Agents tests (``tests/test_maze*.py``,
``tests/test_agent_networks.py``, ``tests/test_a2c*.py``) need TensorFlow's ``tf.keras`` to
be tf-keras, which TensorFlow decides from this variable when ``tf.keras`` is first used;
the other tests use Keras 3 through ``import keras``, which the variable does not change.
Setting it here, before any test module is imported, lets both kinds share the process.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
