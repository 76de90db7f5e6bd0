"""Packaging for mnm_keras: Metalearned Neural Memory for Keras 3 / TensorFlow."""

from setuptools import find_packages, setup

# The core install is what the layers (MNMCell, MNM, SALUCell) and the memory functions need.
# Plotting, TFDS, TensorBoard logs, the example scripts and TF-Agents are extras (below);
# the modules that use them import them lazily or say which extra to install.
INSTALL_REQUIRES = [
    # TF-Agents needs tf-keras of TensorFlow's own minor version (stack.md), so TensorFlow is
    # held to the 2.21 series that tf-keras 2.21 and tf-agents 0.19 were checked with here.
    "tensorflow>=2.21,<2.22",
    # MNMCell is a Keras 3 layer (keras.saving, keras.ops); Keras 2 is not supported.
    "keras>=3.10,<4",
    # NumPy 2.4 breaks TF-Agents' CategoricalProjectionNetwork (stack.md); the same bound
    # keeps the core and the agents extra on one resolvable NumPy.
    "numpy<2.4",
]

BABI = [
    # mnm_keras.datasets.babi_tfds: the TFDS builder of bAbI.
    "tensorflow-datasets>=4.9,<5",
    # tensorflow-datasets 4.9.10 imports it when it builds a dataset but does not require it.
    "importlib_resources",
]

EXAMPLES = [
    # Command-line flags of examples/ and benchmarks/ (mnm_keras itself does not import absl).
    "absl-py>=2.0",
    # Plots of training curves and benchmarks (examples/plotting.py).
    "matplotlib>=3.8",
    # keras.callbacks.TensorBoard (the examples' training logs) fails without it.
    "tensorboard>=2.15",
    # examples/babi.py can read bAbI through the TFDS builder.
    *BABI,
]

AGENTS = [
    # 0.19.0 is the last TF-Agents release; it works with TF 2.21 under the conditions below.
    "tf-agents==0.19.0",
    # Keras 2 for TF-Agents: must match TensorFlow's minor version (2.21).
    "tf-keras>=2.21,<2.22",
    # NumPy 2.4 breaks CategoricalProjectionNetwork (stack.md).
    "numpy<2.4",
    # TF-Agents' summaries fail without tensorboard (stack.md).
    "tensorboard",
]

# Keras's JAX backend (KERAS_BACKEND=jax), on which the layers are tested too: 0.10 is the
# last JAX series that installs on Python 3.11 (0.11 needs 3.12).
JAX = ["jax>=0.10,<0.11"]

EXTRAS = {
    "agents": AGENTS,
    "jax": JAX,
    "babi": BABI,
    "examples": EXAMPLES,
    "test": [
        "pytest>=8",
        # One formatter and linter, pinned so that `ruff format --check` gives the same
        # verdict on every machine (formatting changes between ruff releases).
        "ruff==0.17.6",
        # tests/test_packaging.py builds the wheel with --no-build-isolation, so the build
        # backend of pyproject.toml (setuptools>=68, wheel) must be in the test environment.
        "setuptools>=68",
        "wheel",
        # The suite runs the example scripts and benchmarks, tests tf_agents_ext, and runs
        # the backend-independent tests on JAX too (tests/test_backends.py).
        *EXAMPLES,
        *AGENTS,
        *JAX,
    ],
}
# Everything above: what `make demo` and `make test` install.
EXTRAS["all"] = sorted({requirement for extra in EXTRAS.values() for requirement in extra})

setup(
    name="mnm_keras",
    version="0.1.0",
    description="Metalearned Neural Memory (Munkhdalai et al., NeurIPS 2019) for Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(
        include=["mnm_keras", "mnm_keras.*", "tf_agents_ext", "tf_agents_ext.*"]
    ),
    # The C++ sources of the fused kernels, compiled at first use (mnm_keras.kernels).
    package_data={"mnm_keras.kernels": ["*.cc", "*.h"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
