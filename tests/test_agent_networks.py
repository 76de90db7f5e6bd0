"""`TFKerasMNMCell` and the recurrent actor-critic networks of tf_agents_ext.

The cell's steps are checked against the Keras 3 `mnm_keras.MNMCell` on the same weights,
with several option sets (both call `mnm_keras.core.step`). Runs in the suite's single pytest process;
``tests/conftest.py`` sets ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported, so
``tf.keras`` is tf-keras here while ``import keras`` is Keras 3.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

import mnm_keras
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
    for name in ("controller", "interface", "rate", "output_projection"):
        getattr(cell, name).set_weights(getattr(reference, name).get_weights())
    assert len(cell.feedback) == len(reference.feedback)
    for mine, theirs in zip(cell.feedback, reference.feedback):
        mine.set_weights(theirs.get_weights())
    for mine, theirs in zip(cell.initial_memory, reference.initial_memory):
        mine.assign(np.asarray(theirs))
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


def test_paper_defaults():
    net = networks.mnm_actor_critic(tf.TensorSpec([17], tf.float32), ACTION_SPEC)
    cell = net.cell
    assert (cell.units, cell.memory_units, cell.memory_layers, cell.num_heads) == (200, 100, 3, 3)
    assert cell.write_rule == "local"
    assert networks.mnm_actor_critic(OBSERVATION_SPEC, ACTION_SPEC, "gradient").cell.num_rates == 1
