"""A2C (advantage actor-critic) as a TF-Agents `TFAgent`, with the maze reference's loss.

TF-Agents has no A2C agent (its issue 426 asks for one), and its REINFORCE and PPO agents
differ from the learning rule of the maze reference (Miconi et al. 2018, ``maze/maze.py``),
which the MNM paper (section 4.3) follows. The default loss here is exactly that rule: for
each episode of T steps, with Monte-Carlo returns ``R_t = r_t + gamma R_{t+1}``
(``R_T = 0``, gamma 0.9),

    L = (1/T) sum_t [ - log pi(a_t|s_t) (R_t - stop_gradient(V_t))
                      + value_weight (V_t - R_t)^2           (value_weight 0.03)
                      + simpson_weight sum_a pi(a|s_t)^2 ]   (simpson_weight 0.1)

averaged over the episodes of a batch. Options: an entropy bonus
``- entropy_weight H(pi(.|s_t))``, generalised advantage estimation (``gae_lambda``: the
advantage becomes GAE(lambda) and the value target ``A_t + V_t``), and, for networks with a
metalearned memory, ``meta_loss_weight`` times the memory's meta loss (equation 5 of the
MNM paper, `ActorCriticRnnNetwork.meta_loss`).

The loss pieces are module-level functions (`discounted_returns`, `gae_advantages`,
`policy_gradient_loss`, `value_loss`, `simpson_penalty`, `entropy_bonus`,
`episode_mean`), so that tests check them against hand computations.

Experience: a `Trajectory` with outer shape ``[B, T]`` holding whole episodes, each
starting with a FIRST step (the network's state is reset there); boundary steps (LAST ->
FIRST, as written by TF-Agents drivers) are masked out. A network whose ``call`` takes
``whole_episodes`` (`tf_agents_ext.networks.ActorCriticRnnNetwork`) is called with
``whole_episodes=True``, so that an MNM core runs each episode through its fused sequence.
"""

from __future__ import annotations

import collections
import inspect

import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.agents import tf_agent
from tf_agents.policies import greedy_policy, tf_policy
from tf_agents.trajectories import policy_step
from tf_agents.utils import value_ops

__all__ = [
    "A2CAgent",
    "A2CLossInfo",
    "ActorCriticPolicy",
    "discounted_returns",
    "entropy_bonus",
    "episode_mean",
    "gae_advantages",
    "policy_gradient_loss",
    "simpson_penalty",
    "value_loss",
]

A2CLossInfo = collections.namedtuple(
    "A2CLossInfo",
    ["policy_gradient_loss", "value_loss", "simpson_penalty", "entropy_bonus", "meta_loss"],
)


# ---------------------------------------------------------------------------- loss pieces
def discounted_returns(rewards, discounts, gamma):
    """Monte-Carlo returns ``R_t = r_t + gamma d_t R_{t+1}``, ``R_T = 0``: ``[B, T]``.

    Args:
      rewards: ``[B, T]``, the reward of the action at t.
      discounts: ``[B, T]``, the environment's discount of the step after t (0 at the end
        of an episode, so returns do not cross episodes).
      gamma: the discount factor (0.9 in the reference).
    """
    return value_ops.discounted_return(
        rewards, gamma * discounts, final_value=None, time_major=False, provide_all_returns=True
    )


def gae_advantages(rewards, values, discounts, gamma, gae_lambda):
    """Generalised advantage estimation ``A_t = sum_k (gamma lambda)^k delta_{t+k}``: ``[B, T]``.

    ``delta_t = r_t + gamma d_t V_{t+1} - V_t``, with ``V_T = 0`` after the last step (the
    experience holds whole episodes). ``gae_lambda = 1`` gives ``R_t - V_t``.
    """
    final_value = tf.zeros_like(values[:, -1])
    return value_ops.generalized_advantage_estimation(
        values, final_value, gamma * discounts, rewards, td_lambda=gae_lambda, time_major=False
    )


def policy_gradient_loss(log_probs, advantages):
    """``- log pi(a_t|s_t) stop_gradient(A_t)`` per step: ``[B, T]``."""
    return -log_probs * tf.stop_gradient(advantages)


def value_loss(values, targets, weight):
    """``weight (V_t - R_t)^2`` per step: ``[B, T]`` (targets carry no gradient)."""
    return weight * tf.square(values - tf.stop_gradient(targets))


def simpson_penalty(logits, weight):
    """``weight sum_a pi(a|s_t)^2`` (the reference's "Simpson index" penalty): ``[B, T]``."""
    return weight * tf.reduce_sum(tf.square(tf.nn.softmax(logits)), axis=-1)


def entropy_bonus(logits, weight):
    """``- weight H(pi(.|s_t))`` per step (a bonus: lower loss for higher entropy): ``[B, T]``."""
    log_pi = tf.nn.log_softmax(logits)
    entropy = -tf.reduce_sum(tf.exp(log_pi) * log_pi, axis=-1)
    return -weight * entropy


def episode_mean(per_step, mask):
    """``mean_b [ sum_t mask per_step / sum_t mask ]``: a per-episode sum divided by its
    length, averaged over the batch (``per_step``, ``mask``: ``[B, T]``)."""
    mask = tf.cast(mask, per_step.dtype)
    lengths = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    return tf.reduce_mean(tf.reduce_sum(per_step * mask, axis=1) / lengths)


# --------------------------------------------------------------------------------- policy
class ActorCriticPolicy(tf_policy.TFPolicy):
    """Samples actions from ``Categorical(logits)`` of an actor-critic network.

    The network (e.g. `tf_agents_ext.networks.ActorCriticRnnNetwork`) maps
    ``(observation, step_type, state)`` to ``((logits, value), new_state)``; the policy
    state is the network state. Wrap it in `tf_agents.policies.GreedyPolicy` for the most
    probable action.
    """

    def __init__(self, time_step_spec, action_spec, actor_critic_network, name=None):
        actor_critic_network.create_variables()
        super().__init__(
            time_step_spec,
            action_spec,
            policy_state_spec=actor_critic_network.state_spec,
            clip=False,
            name=name,
        )
        self._network = actor_critic_network

    def _variables(self):
        return self._network.variables

    def _distribution(self, time_step, policy_state):
        (logits, _), new_state = self._network(
            time_step.observation, time_step.step_type, policy_state, training=False
        )
        distribution = tfp.distributions.Categorical(logits=logits, dtype=self.action_spec.dtype)
        return policy_step.PolicyStep(distribution, new_state, ())


# ---------------------------------------------------------------------------------- agent
class A2CAgent(tf_agent.TFAgent):
    """Advantage actor-critic with the maze reference's loss (module docstring).

    Args:
      time_step_spec, action_spec: the environment's specs (one discrete action).
      actor_critic_network: a network returning ``((logits, value), state)``, e.g.
        `tf_agents_ext.networks.mnm_actor_critic` or ``lstm_actor_critic``.
      optimizer: a tf-keras optimizer (the reference: Adam, learning rate 1e-4,
        epsilon 1e-4).
      gamma: discount of the returns (0.9).
      value_weight: weight of the squared value error (0.03).
      simpson_weight: weight of ``sum_a pi^2`` (0.1).
      entropy_weight: weight of the entropy bonus (0: off, as in the reference).
      gae_lambda: None (Monte-Carlo advantage ``R_t - V_t``, the reference) or the lambda
        of generalised advantage estimation in [0, 1].
      meta_loss_weight: weight of the network's meta loss (MNM networks only; 1.0 as in
        equation 6 of the MNM paper; ignored for networks without one). It multiplies the
        cell's own ``meta_loss_weight`` (`TFKerasMNMCell`, default 1.0).
      gradient_clipping: None (the reference) or a global-norm bound.
      train_step_counter: optional int64 variable, incremented by every `train`.
      name: agent name.

    ``agent.collect_policy`` samples from the policy; ``agent.policy`` is its greedy
    version. ``agent.train(experience)`` returns a `LossInfo` whose ``extra`` is an
    `A2CLossInfo` of the (weighted, episode-averaged) pieces.
    """

    def __init__(
        self,
        time_step_spec,
        action_spec,
        actor_critic_network,
        optimizer,
        gamma=0.9,
        value_weight=0.03,
        simpson_weight=0.1,
        entropy_weight=0.0,
        gae_lambda=None,
        meta_loss_weight=1.0,
        gradient_clipping=None,
        train_step_counter=None,
        name="A2CAgent",
    ):
        for arg, value in (
            ("gamma", gamma),
            ("value_weight", value_weight),
            ("simpson_weight", simpson_weight),
            ("entropy_weight", entropy_weight),
            ("meta_loss_weight", meta_loss_weight),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"`{arg}` must be a non-negative number; received {arg}={value!r}."
                )
        if gamma > 1:
            raise ValueError(f"`gamma` must be in [0, 1]; received gamma={gamma!r}.")
        if gae_lambda is not None and not (
            isinstance(gae_lambda, (int, float)) and 0 <= gae_lambda <= 1
        ):
            raise ValueError(
                f"`gae_lambda` must be None or a number in [0, 1]; received {gae_lambda!r}."
            )
        if gradient_clipping is not None and not (
            isinstance(gradient_clipping, (int, float)) and gradient_clipping > 0
        ):
            raise ValueError(
                f"`gradient_clipping` must be None or positive; received {gradient_clipping!r}."
            )
        tf.Module.__init__(self, name=name)
        self._network = actor_critic_network
        # Networks that can run whole episodes at once (`ActorCriticRnnNetwork`) are told so.
        accepts = "whole_episodes" in inspect.signature(actor_critic_network.call).parameters
        self._episodes = {"whole_episodes": True} if accepts else {}
        self._optimizer = optimizer
        self._gamma = float(gamma)
        self._value_weight = float(value_weight)
        self._simpson_weight = float(simpson_weight)
        self._entropy_weight = float(entropy_weight)
        self._gae_lambda = None if gae_lambda is None else float(gae_lambda)
        self._meta_loss_weight = float(meta_loss_weight)
        self._gradient_clipping = gradient_clipping
        collect_policy = ActorCriticPolicy(time_step_spec, action_spec, actor_critic_network)
        policy = greedy_policy.GreedyPolicy(collect_policy)
        super().__init__(
            time_step_spec,
            action_spec,
            policy,
            collect_policy,
            train_sequence_length=None,
            train_step_counter=train_step_counter,
        )

    @property
    def network(self):
        return self._network

    def _initialize(self):
        pass

    def _loss_terms(self, experience, training):
        """Per-episode-averaged loss pieces of a ``[B, T]`` batch of whole episodes."""
        observation = experience.observation
        batch_size = tf.shape(experience.step_type)[0]
        initial_state = self._network.get_initial_state(batch_size)
        (logits, values), final_state = self._network(
            observation, experience.step_type, initial_state, training=training, **self._episodes
        )
        mask = tf.logical_not(experience.is_boundary())
        rewards = tf.cast(experience.reward, tf.float32)
        discounts = tf.cast(experience.discount, tf.float32)
        if self._gae_lambda is None:
            returns = discounted_returns(rewards, discounts, self._gamma)
            advantages = returns - values
            targets = returns
        else:
            advantages = gae_advantages(
                rewards, tf.stop_gradient(values), discounts, self._gamma, self._gae_lambda
            )
            targets = advantages + values
        log_probs = -tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(experience.action, tf.int32), logits=logits
        )
        pieces = [
            episode_mean(policy_gradient_loss(log_probs, advantages), mask),
            episode_mean(value_loss(values, targets, self._value_weight), mask),
            episode_mean(simpson_penalty(logits, self._simpson_weight), mask),
            episode_mean(entropy_bonus(logits, self._entropy_weight), mask),
        ]
        meta = self._network.meta_loss(final_state) if hasattr(self._network, "meta_loss") else None
        if meta is None or not training:
            pieces.append(tf.constant(0.0))
        else:
            # Equation 6's weight: the agent's times the cell's (both 1.0 by default).
            weight = self._meta_loss_weight * getattr(
                getattr(self._network, "cell", None), "meta_loss_weight", 1.0
            )
            pieces.append(weight * tf.reduce_mean(meta))
        return A2CLossInfo(*pieces)

    def _loss(self, experience, weights=None, training=False):
        del weights  # every episode counts equally, as in the reference
        extra = self._loss_terms(experience, training)
        return tf_agent.LossInfo(tf.add_n(list(extra)), extra)

    def _train(self, experience, weights=None):
        variables = self._network.trainable_variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            loss_info = self._loss(experience, weights, training=True)
        gradients = tape.gradient(loss_info.loss, variables)
        if self._gradient_clipping is not None:
            gradients, _ = tf.clip_by_global_norm(gradients, self._gradient_clipping)
        self._optimizer.apply_gradients(zip(gradients, variables))
        self.train_step_counter.assign_add(1)
        return loss_info
