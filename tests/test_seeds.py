"""Independent seeds: no two runs (seeds 0-4) share a random weight tensor, a data stream or a
maze, and the same seed rebuilds the same weights (`mnm_keras._utils.derive_seed`).

Keras's seeded initializers draw the same stream for the same integer whatever the shape, so
sub-seeds made as ``seed + offset`` repeat one run's tensors (or their leading elements) in
another run's; the checks below look for such repeats and for correlated leading elements.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from examples import algorithmic, associative_recall, maze_training
from mnm_keras import _controller, datasets, models, tasks
from mnm_keras._utils import derive_seed
from tf_agents_ext import maze, networks

SEEDS = range(5)
SIZES = dict(memory_units=8, memory_layers=3, key_size=8, value_size=8)
INPUT_SIZE = 5
OBSERVATION_SPEC = tf.TensorSpec([7], tf.float32)
ACTION_SPEC = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 3)


def _random_tensors(prefix, weights, name_of):
    """``{prefix/index/name: flat float64 array}`` of the randomly initialised weights (no bias)."""
    tensors = {}
    for index, weight in enumerate(weights):
        # The weight's own name, without the auto-numbered names of the layers around it.
        name = f"{prefix}/{index}/{name_of(weight).split('/')[-1]}"
        if "bias" in name:
            continue
        values = np.asarray(weight.numpy(), np.float64).ravel()
        assert np.std(values) > 0, f"{name} is constant"
        tensors[name] = values
    return tensors


def _keras3_tensors(seed):
    """The random weights of the Keras 3 models (`mnm_keras.models.recurrent_layer`)."""
    tensors = {}
    for model in models.MODEL_NAMES:
        layer = models.recurrent_layer(model, units=8, max_length=6, seed=seed, **SIZES)
        layer.build((None, 6, INPUT_SIZE))
        tensors.update(_random_tensors(model, layer.weights, lambda w: w.path))
    return tensors


def _agent_tensors(seed):
    """The random weights of the tf-keras actor-critic networks (`tf_agents_ext.networks`)."""
    tensors = {}
    for core in networks.CORES:
        sizes = {"units": 8} if core == "lstm" else {"units": 8, "num_heads": 1, **SIZES}
        net = networks.actor_critic_network(core, OBSERVATION_SPEC, ACTION_SPEC, seed=seed, **sizes)
        net.create_variables()
        tensors.update(_random_tensors(f"agent_{core}", net.variables, lambda w: w.name))
    return tensors


@pytest.fixture(scope="module")
def tensors_per_seed():
    return {seed: {**_keras3_tensors(seed), **_agent_tensors(seed)} for seed in SEEDS}


def test_derive_seed_is_a_stable_31_bit_function():
    assert derive_seed(None, "interface/kernel") is None
    values = [derive_seed(seed, name) for seed in (-1, 0, 1, 2**40) for name in ("a", "b")]
    assert all(isinstance(v, int) and 0 <= v < 2**31 for v in values)
    assert len(set(values)) == len(values)
    assert derive_seed(3, "a") == derive_seed(np.int64(3), "a")
    with pytest.raises(ValueError, match="seed"):
        derive_seed(1.5, "a")
    with pytest.raises(ValueError, match="name"):
        derive_seed(1, "")


def test_every_model_has_random_tensors(tensors_per_seed):
    prefixes = {name.split("/")[0] for name in tensors_per_seed[0]}
    expected = set(models.MODEL_NAMES) | {f"agent_{core}" for core in networks.CORES}
    assert prefixes == expected
    # MNM: controller (2), interface, rate, output, phi_0 (3), and MNM-p's feedback (3).
    assert sum(name.startswith("mnm_p/") for name in tensors_per_seed[0]) == 11


def _overlap(a, b):
    """``(n, r)``: the leading elements both tensors have and their Pearson correlation."""
    n = min(a.size, b.size)
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    scale = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return n, float(np.dot(a, b) / scale) if scale > 0 else 0.0


def test_no_random_tensor_is_repeated_or_correlated_across_seeds(tensors_per_seed):
    """Every random tensor of one seed against every random tensor of another: no repeated
    leading elements, and no correlation (|r| > 0.5 over >= 256 shared leading elements,
    > 0.9 over 16-255, where chance correlations that large are vanishingly rare)."""
    found = []
    for first, second in itertools.combinations(SEEDS, 2):
        for (name_a, a), (name_b, b) in itertools.product(
            tensors_per_seed[first].items(), tensors_per_seed[second].items()
        ):
            n, r = _overlap(a, b)
            repeated = np.array_equal(a[:n], b[:n])
            limit = 0.5 if n >= 256 else 0.9 if n >= 16 else None
            if repeated or (limit is not None and abs(r) > limit):
                found.append(f"seed {first} {name_a} ~ seed {second} {name_b} (n={n}, r={r:.3f})")
    assert not found, f"{len(found)} shared tensors:\n" + "\n".join(found[:20])


def test_same_seed_rebuilds_the_same_weights(tensors_per_seed):
    again = {**_keras3_tensors(2), **_agent_tensors(2)}
    assert again.keys() == tensors_per_seed[2].keys()
    for name, values in again.items():
        np.testing.assert_array_equal(values, tensors_per_seed[2][name], err_msg=name)


# ------------------------------------------------------------------------ data streams
class _Stop(Exception):
    """Ends an example's `run` once it has asked for its data."""


# The functions the fakes below stand in for (taken before any test replaces them).
_DATASET = datasets.algorithmic.AlgorithmicTask.dataset
_ARRAYS = datasets.algorithmic.AlgorithmicTask.arrays
_ASSOCIATIVE_RECALL = tasks.associative_recall


def _algorithmic_stream_seeds(tmp_path, monkeypatch, seed):
    """``(training, held-out)`` seeds that examples/algorithmic.py draws episodes from."""
    asked = {}
    task_class = datasets.algorithmic.AlgorithmicTask

    def dataset(self, batch_size, seed=None, *args, **kwargs):
        asked["training"] = seed
        if "held_out" in asked:
            raise _Stop
        return _DATASET(self, batch_size, seed=seed, num_episodes=batch_size)

    def arrays(self, num_episodes, seed=None, *args, **kwargs):
        asked["held_out"] = seed
        if "training" in asked:
            raise _Stop
        return _ARRAYS(self, 2, seed=seed)

    monkeypatch.setattr(task_class, "dataset", dataset)
    monkeypatch.setattr(task_class, "arrays", arrays)
    config = algorithmic.Config(
        model_dir=str(tmp_path / f"algorithmic{seed}"), model="lstm", units=4, seed=seed
    )
    with pytest.raises(_Stop):
        algorithmic.run(config, verbose=0)
    return asked["training"], asked["held_out"]


def _associative_recall_stream_seeds(tmp_path, monkeypatch, seed):
    """``(training, held-out)`` seeds of examples/associative_recall.py's episodes."""
    asked = []

    def recorded(num_examples, seed=None, **task):
        asked.append(seed)
        if len(asked) == 2:
            raise _Stop
        return _ASSOCIATIVE_RECALL(2, seed=seed, **task)

    monkeypatch.setattr(associative_recall.tasks, "associative_recall", recorded)
    config = associative_recall.Config(
        model_dir=str(tmp_path / f"recall{seed}"), model="lstm", units=4, seed=seed
    )
    with pytest.raises(_Stop):
        associative_recall.run(config, verbose=0)
    return tuple(asked)


@pytest.mark.parametrize(
    "streams",
    [_algorithmic_stream_seeds, _associative_recall_stream_seeds],
    ids=lambda f: f.__name__,
)
def test_data_streams_of_different_seeds_do_not_overlap(tmp_path, monkeypatch, streams):
    """The training and held-out episode seeds of seeds 0-4 and of a few larger seeds (an
    offset from one seed to its held-out stream would make one run's held-out episodes
    another run's training episodes) are all different."""
    seeds = [*SEEDS, 10_000, 1_000_003]
    drawn = [s for seed in seeds for s in streams(tmp_path, monkeypatch, seed)]
    assert len(set(drawn)) == len(drawn) == 2 * len(seeds), drawn


def test_maze_seeds_of_different_seeds_do_not_overlap():
    """Training mazes (fresh and resumed runs), held-out mazes and the batched environment's
    own per-maze seeds: no maze seed is used twice over seeds 0-4."""
    drawn = []
    for seed in SEEDS:
        for done in (0, 16, 32):
            drawn += maze_training.training_maze_seeds(seed, done, 16)
        drawn += maze_training.held_out_maze_seeds(seed, 32)
        drawn += maze._batch_seeds(seed, 16)
    assert len(set(drawn)) == len(drawn)
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in drawn)


@pytest.mark.parametrize("model", ["mnm_p", "mnm_g", "salu"])
def test_a_seed_draws_the_weights_that_the_sublayers_drew(model):
    """The cells own their weights (`mnm_keras.weights`); with a seed they draw what the
    ``LSTMCell`` and ``Dense`` sublayers drew (the same sub-seed names, initializers and the
    LSTM's forget-gate bias of 1), so that a seed reproduces the runs recorded before."""
    import keras

    from mnm_keras._utils import seeded

    seed, units, input_dim = 4, 8, INPUT_SIZE
    layer = models.recurrent_layer(model, units=units, max_length=6, seed=seed, **SIZES)
    layer.build((None, 6, input_dim))
    cell = layer.cell
    params = cell.params()._asdict()

    def draw(initializer, name):
        return seeded(initializer, derive_seed(seed, name))

    controller = keras.layers.LSTMCell(
        units,
        kernel_initializer=draw("glorot_uniform", "controller/kernel"),
        recurrent_initializer=draw("orthogonal", "controller/recurrent_kernel"),
    )
    controller.build((None, input_dim + cell.value_size))
    expected = {
        "controller_kernel": controller.kernel,
        "controller_recurrent_kernel": controller.recurrent_kernel,
        "controller_bias": controller.bias,
    }
    for field, seed_name in [("interface", "interface"), ("output", "output")] + (
        [("rate", "rate")] if model != "salu" else []
    ):
        kernel = params[f"{field}_kernel"]
        dense = keras.layers.Dense(
            kernel.shape[1],
            kernel_initializer=draw("glorot_uniform", f"{seed_name}/kernel"),
            bias_initializer=keras.initializers.Constant(-2.0) if field == "rate" else "zeros",
        )
        dense.build((None, kernel.shape[0]))
        expected[f"{field}_kernel"], expected[f"{field}_bias"] = dense.kernel, dense.bias
    if model == "mnm_p":
        for index, kernel in enumerate(params["feedback_kernels"]):
            dense = keras.layers.Dense(
                kernel.shape[1],
                kernel_initializer=draw("glorot_uniform", f"feedback_{index}/kernel"),
            )
            dense.build((None, kernel.shape[0]))
            expected[f"feedback_kernels/{index}"] = dense.kernel
            expected[f"feedback_biases/{index}"] = dense.bias
    if model != "salu":
        for index, phi in enumerate(params["initial_memory"]):
            initializer = draw("glorot_uniform", f"initial_memory_{index}")
            expected[f"initial_memory/{index}"] = initializer(phi.shape)
    assert np.asarray(controller.bias)[units : 2 * units].tolist() == [1.0] * units
    for name, value in expected.items():
        field, _, index = name.partition("/")
        got = params[field][int(index)] if index else params[field]
        np.testing.assert_array_equal(np.asarray(got), np.asarray(value), err_msg=name)
    assert len(expected) == len(cell.weight_table)


@pytest.mark.parametrize("model", ["mnm_p", "salu"])
def test_building_a_cell_draws_from_the_global_stream_as_the_sublayer_cells_did(model, monkeypatch):
    """Unseeded layers built after a cell (a model's output layer) draw from the global
    stream that `keras.utils.set_random_seed` seeds; the cells with sublayers built a
    Keras ``LSTMCell``, which drew one number from it. Building a cell draws the same, so
    those layers start from the weights of the runs recorded before."""
    import keras

    def head_after(build):
        keras.utils.set_random_seed(0)
        layer = models.recurrent_layer(model, units=8, max_length=6, seed=1, **SIZES)
        build(layer)
        head = keras.layers.Dense(3)
        head.build((None, 8))
        return np.asarray(head.kernel)

    def as_before(layer):  # the layer's build without the cell's draw, and the LSTMCell
        with monkeypatch.context() as patch:
            patch.setattr(_controller.random, "randint", lambda low, high: low)
            layer.build((None, 6, INPUT_SIZE))
        # With initializer instances, as they passed (a string would draw a seed for each).
        zeros = keras.initializers.Zeros()
        keras.layers.LSTMCell(8, kernel_initializer=zeros, recurrent_initializer=zeros)

    mine = head_after(lambda layer: layer.build((None, 6, INPUT_SIZE)))
    np.testing.assert_array_equal(mine, head_after(as_before))
