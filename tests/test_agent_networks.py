"""`TFKerasMNMCell` and the recurrent actor-critic networks of tf_agents_ext.

The cell's steps are checked against the Keras 3 `mnm_keras.MNMCell` on the same weights,
with several option sets (both call `mnm_keras.core.step`). Runs in the suite's single pytest process;
``tests/conftest.py`` sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported, so
``tf.keras`` is tf-keras here while ``import keras`` is Keras 3.
"""

import dataclasses
import inspect

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

import mnm_keras
from mnm_keras import arguments, core, kernels
from mnm_keras.arguments import KINDS
from tests.cell_arguments import MNM_VALUES, serialized
from tf_agents_ext import networks

SIZES = {"memory_units": 6, "key_size": 5, "value_size": 4, "num_heads": 2}
OBSERVATION_SPEC = tf.TensorSpec([7], tf.float32)
ACTION_SPEC = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 3)


def _twin_cells(**options):
    """A Keras 3 MNMCell and a TFKerasMNMCell holding the same weights."""
    options = {**SIZES, **options}
    reference = mnm_keras.MNMCell(8, seed=1, **options)
    reference.build((None, 7))
    cell = networks.TFKerasMNMCell(8, seed=2, **options)
    cell.build((None, 7))
    assert cell.weight_table == reference.weight_table
    for mine, theirs in zip(cell.weights, reference.weights, strict=True):
        assert mine.name.split(":")[0].split("/")[-1] == theirs.name
        mine.assign(np.asarray(theirs))
    mine, theirs = cell.params(), reference.params()
    for field in core.MNMParams._fields:  # every weight copied
        for a, b in zip(
            tf.nest.flatten(getattr(mine, field)), tf.nest.flatten(getattr(theirs, field))
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=field)
    return reference, cell


TWIN_OPTIONS = [
    dict(write_rule="local"),
    dict(write_rule="gradient"),
    dict(write_rule="local", normalize_writes=True, targets_from_values=True),
    dict(write_rule="gradient", normalize_writes=True, recall_delay=2, recall_decay=[1, 0.5, 0.25]),
    dict(
        write_rule="local",
        recall_delay=2,
        memory_activation="sigmoid",
        memory_output_activation="tanh",
        memory_layers=2,
        output_units=5,
    ),
    dict(write_rule="gradient", memory_activation="relu", memory_output_activation="sigmoid"),
]


@pytest.mark.parametrize("options", TWIN_OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_cell_steps_equal_keras3_mnm_cell(options):
    reference, cell = _twin_cells(**options)
    assert cell.state_size == reference.state_size
    # Every option reaches both cells (the activations are each framework's own functions).
    plain = dict(memory_activation=None, memory_output_activation=None)
    assert dataclasses.replace(cell.config, **plain) == dataclasses.replace(
        reference.config, **plain
    )
    inputs = np.random.default_rng(0).normal(size=(4, 3, 7)).astype("float32")
    ref_states = [tf.convert_to_tensor(s) for s in reference.get_initial_state(batch_size=3)]
    states = cell.get_initial_state(batch_size=3)
    for a, b in zip(ref_states, states):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), atol=0)
    for step in range(4):
        ref_y, ref_states = reference(inputs[step], ref_states, training=True)
        y, states = cell(inputs[step], states, training=True)
        np.testing.assert_allclose(y.numpy(), np.asarray(ref_y), rtol=1e-5, atol=1e-5)
        for index, (a, b) in enumerate(zip(ref_states, states)):
            np.testing.assert_allclose(
                b.numpy(), np.asarray(a), rtol=1e-5, atol=1e-5, err_msg=f"state {index}"
            )
    meta = cell.unpack_state(states).meta.numpy()
    assert np.all(meta[:, 1] == 4.0)  # four meta-loss terms accumulated
    assert np.all(meta[:, 0] > 0.0)


def test_acting_skips_the_meta_loss_but_not_the_step():
    reference, cell = _twin_cells(write_rule="local")
    x = tf.random.stateless_normal([2, 7], seed=[0, 1])
    acting_y, acting = cell(x, cell.get_initial_state(batch_size=2), training=False)
    training_y, trained = cell(x, cell.get_initial_state(batch_size=2), training=True)
    np.testing.assert_allclose(acting_y.numpy(), training_y.numpy(), atol=1e-6)
    np.testing.assert_array_equal(cell.unpack_state(acting).meta.numpy(), 0.0)
    assert np.all(cell.unpack_state(trained).meta.numpy()[:, 1] == 1.0)
    for a, b in zip(cell.unpack_state(acting).memory, cell.unpack_state(trained).memory):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_cell_argument_errors():
    with pytest.raises(ValueError, match="write_rule"):
        networks.TFKerasMNMCell(8, write_rule="hebbian")
    with pytest.raises(ValueError, match="num_heads"):
        networks.TFKerasMNMCell(8, num_heads=0)
    with pytest.raises(ValueError, match="`normalize_writes` must be True or False"):
        networks.TFKerasMNMCell(8, normalize_writes=1)
    with pytest.raises(ValueError, match="core"):
        networks.actor_critic_network("gru", OBSERVATION_SPEC, ACTION_SPEC)


def test_cell_takes_the_keras3_cells_arguments_declared_once():
    mnm_names = arguments.names(mnm_keras.MNMCell)
    assert list(inspect.signature(networks.TFKerasMNMCell).parameters) == [
        *(name for name in mnm_names if name != "controller_dtype"),
        "kwargs",
    ]
    values = {k: v for k, v in MNM_VALUES.items() if k != "controller_dtype"}
    cell = networks.TFKerasMNMCell(**values, name="agent_cell")
    config = cell.get_config()
    assert set(config) == set(values) | {"name", "trainable", "dtype"}
    reference = mnm_keras.MNMCell(**MNM_VALUES).get_config()
    for name, value in values.items():  # the values as given, serialised by tf-keras
        assert config[name] == serialized(name, value, tf.keras), name
        if name not in KINDS:  # plain values: as the Keras 3 cell holds them
            assert config[name] == reference[name], name
    assert networks.TFKerasMNMCell.from_config(config).get_config() == config
    positional = networks.TFKerasMNMCell(8, 4, 2, name="p")
    assert (positional.units, positional.memory_units, positional.memory_layers) == (8, 4, 2)
    with pytest.raises(ValueError, match="TFKerasMNMCell does not take `controller_dtype`"):
        networks.TFKerasMNMCell(8, controller_dtype="mixed_bfloat16")
    with pytest.raises(TypeError, match="TFKerasMNMCell takes the arguments"):
        networks.TFKerasMNMCell(*range(1, 40))


def test_cell_meta_loss_weight_is_checked_and_saved():
    cell = networks.TFKerasMNMCell(8, meta_loss_weight=0.5, **SIZES)
    assert cell.meta_loss_weight == 0.5
    assert networks.TFKerasMNMCell(8, **SIZES).meta_loss_weight == 1.0  # equation 6
    config = cell.get_config()
    assert config["meta_loss_weight"] == 0.5
    assert networks.TFKerasMNMCell.from_config(config).meta_loss_weight == 0.5
    for bad in (-1.0, "1", True):
        with pytest.raises(ValueError, match="`meta_loss_weight` must be a non-negative"):
            networks.TFKerasMNMCell(8, meta_loss_weight=bad)
    net = networks.mnm_actor_critic(OBSERVATION_SPEC, ACTION_SPEC, meta_loss_weight=0.25)
    assert net.cell.meta_loss_weight == 0.25


def _network(core):
    sizes = {"units": 8}
    if core != "lstm":
        sizes.update(SIZES)
    net = networks.actor_critic_network(core, OBSERVATION_SPEC, ACTION_SPEC, seed=0, **sizes)
    net.create_variables()
    return net


@pytest.mark.parametrize("core", networks.CORES)
def test_network_shapes(core):
    net = _network(core)
    observation = tf.random.stateless_normal([3, 5, 7], seed=[1, 2])
    step_type = tf.constant([[0, 1, 1, 1, 1]] * 3)
    (logits, value), state = net(observation, step_type, net.get_initial_state(3))
    assert logits.shape == (3, 5, 4) and value.shape == (3, 5)
    assert [s.shape[-1] for s in state] == [spec.shape[-1] for spec in net.state_spec]
    (logits, value), _ = net(observation[:, 0], step_type[:, 0], net.get_initial_state(3))
    assert logits.shape == (3, 4) and value.shape == (3,)
    if core == "lstm":
        assert net.meta_loss(state) is None
    else:
        assert net.meta_loss(state).shape == (3,)


@pytest.mark.parametrize("core", networks.CORES)
def test_state_resets_at_first(core):
    """An unroll across an episode boundary equals a fresh unroll of the second episode."""
    net = _network(core)
    observation = tf.random.stateless_normal([2, 6, 7], seed=[3, 4])
    step_type = tf.constant([[0, 1, 1, 0, 1, 1]] * 2)
    (logits, value), _ = net(observation, step_type, net.get_initial_state(2))
    (fresh_logits, fresh_value), _ = net(
        observation[:, 3:], step_type[:, 3:], net.get_initial_state(2)
    )
    np.testing.assert_allclose(logits[:, 3:].numpy(), fresh_logits.numpy(), atol=1e-6)
    np.testing.assert_allclose(value[:, 3:].numpy(), fresh_value.numpy(), atol=1e-6)
    # The initial state itself is replaced at FIRST: a garbage state changes nothing.
    garbage = [tf.fill(tf.shape(s), 0.5) for s in net.get_initial_state(2)]
    (garbage_logits, _), _ = net(observation[:, 3:], step_type[:, 3:], garbage)
    np.testing.assert_allclose(garbage_logits.numpy(), fresh_logits.numpy(), atol=1e-6)
    # ... and without a FIRST step it does matter (the test can fail).
    (carried, _), _ = net(observation[:, 3:], tf.ones([2, 3], tf.int32), garbage)
    assert not np.allclose(carried.numpy(), fresh_logits.numpy(), atol=1e-4)


def _fused_network(core, implementation):
    net = networks.actor_critic_network(
        core, OBSERVATION_SPEC, ACTION_SPEC, seed=0, units=8, memory_layers=2, **SIZES
    )
    net.cell.implementation = implementation
    net.create_variables()
    return net


def _step_by_step(net, observation, step_type, state, training):
    """The network's output through tf-agents' `DynamicUnroll` alone (the reference)."""
    reset_mask = tf.equal(step_type, 0)
    outputs, final = net._unroll(
        observation, initial_state=state, reset_mask=reset_mask, training=training
    )
    return (net._logits(outputs), tf.squeeze(net._value(outputs), -1)), list(final)


@pytest.mark.parametrize(
    "core,implementation",
    [("mnm_p", "kernel"), ("mnm_p", "xla"), ("mnm_g", "xla")],
)
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "function"])
def test_whole_episodes_run_through_the_fused_sequence(core, implementation, compiled):
    """Episodes that start at their first step run through ``cell.unroll``, equal to steps.

    With ``whole_episodes=True``: rows 0 and 2 start with FIRST (their state is reset),
    row 1 carries the given state; outputs, the final state, the meta loss and every weight's gradient agree with the
    step-by-step `DynamicUnroll`.
    """
    if implementation == "kernel" and not kernels.available():
        pytest.skip(kernels.unavailable_reason())
    net = _fused_network(core, implementation)
    observation = tf.random.stateless_normal([3, 6, 7], seed=[5, 6])
    step_type = tf.constant([[0, 1, 1, 1, 1, 2], [1, 1, 1, 1, 1, 2], [0, 1, 1, 1, 1, 1]])
    state = [
        tf.random.stateless_uniform(tf.shape(s), seed=[7, i], minval=-0.3, maxval=0.3)
        for i, s in enumerate(net.get_initial_state(3))
    ]
    state[-1] = tf.constant([[0.0, 0.0], [1.5, 2.0], [0.0, 0.0]])  # the meta accumulator
    calls = []
    unroll = net.cell.unroll

    def spy(*args, **kwargs):
        calls.append(1)
        return unroll(*args, **kwargs)

    net.cell.unroll = spy

    def run(through_network):
        with tf.GradientTape() as tape:
            if through_network:
                (logits, value), final = net(
                    observation, step_type, state, training=True, whole_episodes=True
                )
            else:
                (logits, value), final = _step_by_step(net, observation, step_type, state, True)
            loss = (
                tf.reduce_sum(tf.sin(logits))
                + tf.reduce_sum(value**2)
                + tf.reduce_sum(net.meta_loss(final))
            )
        gradients = tape.gradient(loss, net.trainable_variables)
        return [logits, value] + list(final) + gradients

    fused = (tf.function(run) if compiled else run)(True)
    reference = run(False)
    assert calls, "the network did not run the fused sequence"
    assert len(fused) == len(reference)
    for mine, theirs in zip(fused, reference):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=2e-4, atol=2e-5)
    assert net.meta_loss(fused[2 : -len(net.trainable_variables)])[1] > 0.0


def test_whole_episodes_refuses_a_reset_inside_a_row():
    net = _fused_network("mnm_p", "xla")
    observation = tf.random.stateless_normal([2, 6, 7], seed=[8, 9])
    step_type = tf.constant([[0, 1, 1, 0, 1, 1], [0, 1, 1, 1, 1, 1]])
    state = net.get_initial_state(2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="whole_episodes=True"):
        net(observation, step_type, state, training=True, whole_episodes=True)
    net.fused_sequence = False  # the promise is then not needed: steps cross the reset
    (logits, _), _ = net(observation, step_type, state, training=True, whole_episodes=True)
    (reference, _), _ = _step_by_step(net, observation, step_type, state, True)
    np.testing.assert_allclose(logits.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="fused_sequence"):
        net.fused_sequence = "yes"
    net.fused_sequence = True
    # Without the promise the row is unrolled step by step, across its reset.
    (logits, _), _ = net(observation, step_type, state, training=True)
    (reference, _), _ = _step_by_step(net, observation, step_type, state, True)
    np.testing.assert_allclose(logits.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)


def test_paper_defaults():
    net = networks.mnm_actor_critic(tf.TensorSpec([17], tf.float32), ACTION_SPEC)
    cell = net.cell
    assert (cell.units, cell.memory_units, cell.memory_layers, cell.num_heads) == (200, 100, 3, 3)
    assert cell.write_rule == "local"
    assert networks.mnm_actor_critic(OBSERVATION_SPEC, ACTION_SPEC, "gradient").cell.num_rates == 1


def test_a_checkpoint_of_the_cell_with_sublayers_restores_and_gives_its_steps(tmp_path):
    """``tests/fixtures/tf_keras_cell.*`` was written when the cell held ``LSTMCell`` and
    ``Dense`` sublayers (`tests/fixtures/make_tf_keras_checkpoint.py`); the cell that owns
    its weights keeps their checkpoint paths (``controller/kernel``, ``feedback/0/bias``),
    so such checkpoints (the maze runs' resume archives) restore, every value consumed."""
    import os

    fixtures = os.path.join(os.path.dirname(__file__), "fixtures")
    recorded = np.load(os.path.join(fixtures, "tf_keras_cell_outputs.npz"))
    cell = networks.TFKerasMNMCell(
        6, memory_units=5, memory_layers=3, key_size=4, value_size=3, num_heads=2, seed=3
    )
    cell.build((None, 7))
    status = tf.train.Checkpoint(cell=cell).read(os.path.join(fixtures, "tf_keras_cell"))
    status.assert_consumed()
    inputs = recorded["inputs"]
    states = cell.get_initial_state(batch_size=inputs.shape[0])
    outputs = []
    for t in range(inputs.shape[1]):
        y, states = cell(inputs[:, t], states, training=True)
        outputs.append(np.asarray(y))
    np.testing.assert_allclose(np.stack(outputs, 1), recorded["outputs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(states[-1]), recorded["meta"], rtol=1e-5, atol=1e-6)
    # Written again, it restores into a fresh cell, every value consumed.
    path = tf.train.Checkpoint(cell=cell).write(str(tmp_path / "again"))
    fresh = networks.TFKerasMNMCell(
        6, memory_units=5, memory_layers=3, key_size=4, value_size=3, num_heads=2, seed=4
    )
    fresh.build((None, 7))
    tf.train.Checkpoint(cell=fresh).read(path).assert_consumed()
    for mine, theirs in zip(fresh.weights, cell.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


def test_building_the_cell_again_keeps_its_variables():
    """`DynamicUnroll.build` builds its cell again: the cell keeps its variables (one
    set, those the network trains), and refuses other input features."""
    cell = networks.TFKerasMNMCell(6, memory_units=5, key_size=4, value_size=3)
    cell.build((None, 7))
    first = [id(v) for v in cell.weights]
    cell.build((None, 7))
    assert [id(v) for v in cell.weights] == first
    with pytest.raises(ValueError, match="built for 7 input features"):
        cell.build((None, 8))
