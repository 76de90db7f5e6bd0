"""The wheel installs on its own, and the core install stays light.

A wheel is built from the checkout and installed (``--no-deps --no-index``) into a fresh
virtual environment, which sees this environment's third-party packages through a ``.pth``
file (no network); a process started outside the checkout then imports and runs the
installed `mnm_keras` and `tf_agents_ext`. The wheel's metadata must require only
TensorFlow, Keras and NumPy outside the extras, and `mnm_keras` must import, build and train
its layers with matplotlib and tensorflow_datasets made unimportable.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("mnm_keras", "tf_agents_ext")
CORE = {"tensorflow", "keras", "numpy"}
# Not copied to the build tree: the environment, VCS data and build or run outputs
# (.gitignore). Building in a copy keeps build/ and *.egg-info out of the shared checkout.
NOT_SOURCES = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "build",
    "dist",
    ".pytest_cache",
    ".ruff_cache",
    "runs",
    "tmp",
)
# Run by the fresh environment's Python, from a folder outside the checkout.
INSTALLED_SCRIPT = """
import json, sys
import tf_agents_ext  # first: it needs tf.keras to become tf-keras (its docstring)
import keras
import numpy as np
import mnm_keras

layer = keras.layers.RNN(mnm_keras.MNMCell(8, memory_units=8, memory_layers=1, key_size=4))
outputs = layer(np.zeros((2, 3, 5), "float32"))
print(json.dumps({
    "mnm_keras": mnm_keras.__file__,
    "tf_agents_ext": tf_agents_ext.__file__,
    "version": mnm_keras.__version__,
    "shape": list(outputs.shape),
}))
"""
# matplotlib and tensorflow_datasets made unimportable before mnm_keras is imported.
WITHOUT_EXTRAS_SCRIPT = """
import json, sys
sys.modules["matplotlib"] = None
sys.modules["tensorflow_datasets"] = None
import keras
import numpy as np
import mnm_keras
import mnm_keras.datasets

model = keras.Sequential([
    keras.Input((3, 5)),
    keras.layers.RNN(mnm_keras.MNMCell(8, memory_units=8, memory_layers=1, key_size=4)),
    keras.layers.Dense(2),
])
model.compile(optimizer="adam", loss="mse")
history = model.fit(
    np.ones((4, 3, 5), "float32"), np.zeros((4, 2), "float32"), batch_size=4, verbose=0
)
inputs = np.ones((2, 3, 5), "float32")
mnm = mnm_keras.MNM(8, memory_units=8, memory_layers=1, key_size=4)
salu = keras.layers.RNN(mnm_keras.SALUCell(8, max_length=3, key_size=4, value_size=4))
shapes = [list(mnm(inputs).shape), list(salu(inputs).shape)]
errors = {}
try:
    import mnm_keras.datasets.babi_tfds
except ImportError as error:
    errors["babi_tfds"] = str(error)
print(json.dumps({
    "loss": history.history["loss"],
    "shapes": shapes,
    "errors": errors,
    "loaded": sorted(m for m in ("matplotlib", "tensorflow_datasets") if sys.modules.get(m)),
}))
"""


def _run(command, cwd, **kwargs):
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, **kwargs
    )
    assert result.returncode == 0, (
        f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_USE_LEGACY_KERAS="1",  # what tests/conftest.py sets; tf_agents_ext needs it
    )
    return env


def _last_json_line(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--quiet", "-w", tmp / "dist", "."],
        cwd=source,
        env=_environment(),
    )
    (path,) = (tmp / "dist").glob("mnm_keras-*.whl")
    return path


@pytest.fixture(scope="module")
def fresh_venv(wheel):
    tmp = wheel.parent.parent
    venv = tmp / "venv"
    # No pip of its own: this environment's pip installs into it (--python), offline.
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps"]
        + ["--no-index", "--quiet", wheel],
        cwd=tmp,
        env=_environment(),
    )
    site = pathlib.Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
        ).strip()
    )
    # After the install, so that pip never sees this environment's (editable) mnm_keras.
    # Appended to sys.path after the fresh site-packages: the wheel's mnm_keras comes first.
    paths = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "third_party.pth").write_text("".join(f"{p}\n" for p in paths))
    run_dir = tmp / "run"
    run_dir.mkdir()
    return venv, python, run_dir


def _metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode(), archive.namelist()


def _requirement_name(line):
    return re.match(r"[A-Za-z0-9._-]+", line).group(0).lower().replace("_", "-")


def test_wheel_requires_only_tensorflow_keras_and_numpy(wheel):
    metadata, names = _metadata(wheel)
    requires = re.findall(r"^Requires-Dist: (.+)$", metadata, flags=re.MULTILINE)
    core = {_requirement_name(r) for r in requires if "extra ==" not in r}
    assert core == CORE, requires

    def extra(name):
        return {_requirement_name(r) for r in requires if f'extra == "{name}"' in r}

    assert "tf-agents" in extra("agents")
    assert {"tensorflow-datasets", "importlib-resources"} <= extra("babi")
    assert {"absl-py", "matplotlib", "tensorboard", "tensorflow-datasets"} <= extra("examples")
    assert {"pytest", "ruff"} <= extra("test")
    assert extra("all") == extra("agents") | extra("babi") | extra("examples") | extra("test")
    # Every module of both packages is in the wheel (find_packages found the subpackages).
    modules = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    assert modules <= set(names), sorted(modules - set(names))
    # The experiment tooling (run records, results rendering, plots, the maze's training
    # loop) stays in the repository's examples/, out of the wheel.
    assert not [n for n in names if n.startswith(("examples/", "benchmarks/", "tests/"))]
    tooling = ("results.py", "training.py", "plotting.py", "memory_pictures.py")
    assert not [n for n in names if n.startswith(PACKAGES) and n.endswith(tooling)]


def test_installed_wheel_imports_and_runs_outside_the_checkout(fresh_venv):
    venv, python, run_dir = fresh_venv
    out = _last_json_line(
        _run([python, "-c", textwrap.dedent(INSTALLED_SCRIPT)], run_dir, env=_environment())
    )
    print("installed mnm_keras", out["version"], "at", out["mnm_keras"])
    for package in PACKAGES:
        path = pathlib.Path(out[package]).resolve()
        assert path.is_relative_to(venv.resolve()), (package, path)
        assert not path.is_relative_to(ROOT), (package, path)
    assert out["version"] == "0.1.0"
    assert out["shape"] == [2, 8]


def test_layers_train_without_matplotlib_and_tfds(fresh_venv):
    _, python, run_dir = fresh_venv
    out = _last_json_line(
        _run([python, "-c", textwrap.dedent(WITHOUT_EXTRAS_SCRIPT)], run_dir, env=_environment())
    )
    assert out["loaded"] == []
    assert len(out["loss"]) == 1 and out["loss"][0] >= 0
    assert out["shapes"] == [[2, 8], [2, 8]]
    assert "pip install 'mnm_keras[babi]'" in out["errors"]["babi_tfds"]
