"""Importing `tf_agents_ext` changes nothing in the process, and without tf-keras says why."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = """
import os
before = dict(os.environ)
try:
    import tf_agents_ext
except ImportError as error:
    print("ImportError:", error)
else:
    print("imported; environment unchanged:", dict(os.environ) == before)
"""


def _run(**environment):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(environment, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_import_without_tf_keras_names_the_variable_and_sets_nothing():
    out = _run()
    assert "ImportError: tf_agents_ext needs TensorFlow's tf.keras to be tf-keras" in out
    assert "TF_USE_LEGACY_KERAS=1 before TensorFlow is imported" in out
    assert "in this process it is None" in out
    assert "ImportError" in _run(TF_USE_LEGACY_KERAS="0")


def test_import_with_tf_keras_leaves_the_environment_as_it_was():
    assert "imported; environment unchanged: True" in _run(TF_USE_LEGACY_KERAS="1")
