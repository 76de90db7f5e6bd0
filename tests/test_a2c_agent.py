"""A2CAgent: the loss against numbers computed by hand (NumPy) on a tiny fixed network.

Runs in the suite's single pytest process; ``tests/conftest.py`` sets
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported (TF-Agents needs tf-keras).
"""

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.networks import network
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from tf_agents_ext import a2c_agent, networks

RNG = np.random.default_rng(0)
W_LOGITS = RNG.normal(size=(3, 4)).astype("float32")
B_LOGITS = RNG.normal(size=4).astype("float32")
W_VALUE = RNG.normal(size=(3, 1)).astype("float32")
OBSERVATION = RNG.normal(size=(2, 4, 3)).astype("float32")
ACTIONS = np.array([[0, 3, 1, 2], [2, 2, 0, 1]], np.int32)
REWARDS = np.array([[0.0, -0.1, 10.0, 0.0], [-0.1, 0.0, 0.0, 9.9]], np.float32)
DISCOUNTS = np.array([[1, 1, 1, 0], [1, 1, 1, 0]], np.float32)
OBSERVATION_SPEC = tf.TensorSpec([3], tf.float32)
ACTION_SPEC = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 3)


class TinyActorCritic(network.Network):
    """``logits = x W + b``, ``value = x w``: no state, fixed weights."""

    def __init__(self):
        super().__init__(OBSERVATION_SPEC, state_spec=(), name="Tiny")
        constant = tf.keras.initializers.Constant
        self._logits = tf.keras.layers.Dense(
            4, kernel_initializer=constant(W_LOGITS), bias_initializer=constant(B_LOGITS)
        )
        self._value = tf.keras.layers.Dense(1, use_bias=False, kernel_initializer=constant(W_VALUE))

    def call(self, observation, step_type, network_state=(), training=False):
        return (self._logits(observation), tf.squeeze(self._value(observation), -1)), network_state


def _experience():
    first, mid, last = ts.StepType.FIRST, ts.StepType.MID, ts.StepType.LAST
    return trajectory.Trajectory(
        step_type=tf.constant([[first, mid, mid, mid]] * 2),
        observation=tf.constant(OBSERVATION),
        action=tf.constant(ACTIONS),
        policy_info=(),
        next_step_type=tf.constant([[mid, mid, mid, last]] * 2),
        reward=tf.constant(REWARDS),
        discount=tf.constant(DISCOUNTS),
    )


def _agent(**kwargs):
    return a2c_agent.A2CAgent(
        ts.time_step_spec(OBSERVATION_SPEC),
        ACTION_SPEC,
        TinyActorCritic(),
        tf.keras.optimizers.SGD(0.1),
        **kwargs,
    )


def _hand(gamma=0.9, entropy_weight=0.0, gae_lambda=None):
    """The reference loss, step by step, in NumPy."""
    logits = OBSERVATION @ W_LOGITS + B_LOGITS
    pi = np.exp(logits - logits.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    values = (OBSERVATION @ W_VALUE)[..., 0]
    batch, steps = REWARDS.shape
    returns = np.zeros_like(REWARDS)
    advantages = np.zeros_like(REWARDS)
    for b in range(batch):
        following, gae = 0.0, 0.0
        for t in reversed(range(steps)):
            following = REWARDS[b, t] + gamma * DISCOUNTS[b, t] * following
            returns[b, t] = following
            next_value = values[b, t + 1] if t + 1 < steps else 0.0
            delta = REWARDS[b, t] + gamma * DISCOUNTS[b, t] * next_value - values[b, t]
            gae = delta + gamma * (gae_lambda or 0.0) * DISCOUNTS[b, t] * gae
            advantages[b, t] = gae
    if gae_lambda is None:
        advantages = returns - values
    else:
        returns = advantages + values
    log_pi = np.log(pi[np.arange(batch)[:, None], np.arange(steps)[None, :], ACTIONS])
    entropy = -(pi * np.log(pi)).sum(-1)
    per_step = (
        -log_pi * advantages
        + 0.03 * (values - returns) ** 2
        + 0.1 * (pi**2).sum(-1)
        - entropy_weight * entropy
    )
    return per_step.sum(1).mean() / steps, values, returns


def test_returns_by_hand():
    returns = a2c_agent.discounted_returns(tf.constant(REWARDS), tf.constant(DISCOUNTS), 0.9)
    # Episode 0: R_3 = 0, R_2 = 10, R_1 = -0.1 + 9 = 8.9, R_0 = 0.9 * 8.9 = 8.01.
    np.testing.assert_allclose(returns[0], [8.01, 8.9, 10.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(
        returns[1], [-0.1 + 0.729 * 9.9, 0.81 * 9.9, 0.9 * 9.9, 9.9], rtol=1e-6
    )


def test_pieces_by_hand():
    logits = tf.constant([[[0.0, np.log(3.0)]]])  # pi = (1/4, 3/4)
    np.testing.assert_allclose(a2c_agent.simpson_penalty(logits, 0.1), [[0.1 * 10 / 16]], rtol=1e-6)
    entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(a2c_agent.entropy_bonus(logits, 0.5), [[-0.5 * entropy]], rtol=1e-6)
    np.testing.assert_allclose(
        a2c_agent.value_loss(tf.constant([[2.0]]), tf.constant([[5.0]]), 0.03), [[0.27]], rtol=1e-6
    )
    np.testing.assert_allclose(
        a2c_agent.policy_gradient_loss(tf.constant([[-2.0]]), tf.constant([[3.0]])), [[6.0]]
    )
    per_step = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = tf.constant([[True, True, False], [True, True, True]])
    np.testing.assert_allclose(a2c_agent.episode_mean(per_step, mask), (1.5 + 5.0) / 2)


@pytest.mark.parametrize(
    "options",
    [{}, {"entropy_weight": 0.01}, {"gae_lambda": 0.5}, {"gae_lambda": 1.0}],
    ids=["reference", "entropy", "gae_0.5", "gae_1"],
)
def test_agent_loss_equals_hand_computation(options):
    agent = _agent(**options)
    loss_info = agent.loss(_experience())
    expected, _, _ = _hand(**options)
    np.testing.assert_allclose(float(loss_info.loss), expected, rtol=1e-5)
    assert float(loss_info.extra.meta_loss) == 0.0


def _mnm_agent(sizes, **agent_options):
    """An A2C agent on a tiny seeded MNM network (``sizes`` beside units 8, memory 2 x 6)."""
    net = networks.mnm_actor_critic(
        OBSERVATION_SPEC,
        ACTION_SPEC,
        units=8,
        memory_units=6,
        memory_layers=2,
        key_size=5,
        seed=0,
        **sizes,
    )
    return a2c_agent.A2CAgent(
        ts.time_step_spec(OBSERVATION_SPEC),
        ACTION_SPEC,
        net,
        tf.keras.optimizers.SGD(0.1),
        **agent_options,
    )


def test_meta_loss_piece_is_the_agents_weight_times_the_cells():
    # The same MNM network (same seed) with the cell's meta_loss_weight 1 and 0.5: the
    # agent's meta piece is agent weight x cell weight x the network's mean meta loss.
    pieces = {}
    for cell_weight, agent_weight in ((1.0, 1.0), (0.5, 1.0), (0.5, 3.0)):
        agent = _mnm_agent(
            dict(value_size=4, num_heads=1, meta_loss_weight=cell_weight),
            meta_loss_weight=agent_weight,
        )
        pieces[cell_weight, agent_weight] = float(
            agent.loss(_experience(), training=True).extra.meta_loss
        )
    unweighted = pieces[1.0, 1.0]
    assert unweighted > 0.0
    np.testing.assert_allclose(pieces[0.5, 1.0], 0.5 * unweighted, rtol=1e-5)
    np.testing.assert_allclose(pieces[0.5, 3.0], 1.5 * unweighted, rtol=1e-5)


def _counting(function, calls):
    def counted(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)

    return counted


def test_mnm_update_through_the_fused_sequence_equals_step_by_step():
    """The agent asks for whole episodes; its loss and gradients equal the step-by-step unroll."""
    results = []
    for fused_sequence in (True, False):
        agent = _mnm_agent(dict(value_size=5, num_heads=2))
        net = agent.network
        net.fused_sequence = fused_sequence
        calls = []
        net.cell.unroll = _counting(net.cell.unroll, calls)
        with tf.GradientTape() as tape:
            loss_info = agent.loss(_experience(), training=True)
        gradients = tape.gradient(loss_info.loss, net.trainable_variables)
        assert bool(calls) == fused_sequence
        results.append([loss_info.loss, loss_info.extra.meta_loss] + gradients)
    assert float(results[0][1]) > 0.0
    for fused, steps in zip(*results):
        np.testing.assert_allclose(fused.numpy(), steps.numpy(), rtol=1e-4, atol=1e-6)


def test_value_gradient_is_only_the_value_loss():
    """The advantage's value is stop-gradient: d loss / d w_V = mean_b (1/T) sum_t 0.06 (V - R) x."""
    agent = _agent()
    with tf.GradientTape() as tape:
        loss = agent.loss(_experience(), training=True).loss
    value_kernel = agent.network._value.kernel
    gradient = tape.gradient(loss, value_kernel)
    _, values, returns = _hand()
    expected = np.einsum("bt,bti->i", 0.06 * (values - returns), OBSERVATION) / (2 * 4)
    np.testing.assert_allclose(gradient.numpy()[:, 0], expected, rtol=1e-5)


def test_train_step_updates_and_counts():
    agent = _agent()
    before = agent.network._value.kernel.numpy().copy()
    loss_info = agent.train(_experience())
    np.testing.assert_allclose(float(loss_info.loss), _hand()[0], rtol=1e-5)
    assert int(agent.train_step_counter.numpy()) == 1
    assert not np.allclose(agent.network._value.kernel.numpy(), before)


def test_argument_errors():
    with pytest.raises(ValueError, match="gamma"):
        _agent(gamma=1.5)
    with pytest.raises(ValueError, match="gae_lambda"):
        _agent(gae_lambda=2.0)
    with pytest.raises(ValueError, match="value_weight"):
        _agent(value_weight=-1.0)
