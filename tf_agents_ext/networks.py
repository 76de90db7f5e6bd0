"""Recurrent actor-critic networks for TF-Agents: an MNM core (tf-keras) and an LSTM core.

TF-Agents networks are tf-keras (Keras 2) layers, and a Keras 3 layer such as
`mnm_keras.MNMCell` cannot live inside one (its variables, ``get_initial_state`` signature
and `Sequential` checks differ). `MNMCell` here is therefore a tf-keras cell with the same
structure, state layout and sublayer names as the Keras 3 cell, and it computes the memory
with the same functions, `mnm_keras.memory` (`local_write` or `gradient_write`, `read`,
`recall_error`): the equations exist once, in `mnm_keras.memory`. A test copies the weights
of a Keras 3 `mnm_keras.MNMCell` into this cell and checks that the steps agree.

`ActorCriticRnnNetwork` is a `tf_agents.networks.Network`: the recurrent core is the shared
trunk, unrolled with `DynamicUnroll` (which resets the state to the cell's initial state at
FIRST steps), followed by two linear heads, action logits and state value.

Shapes: observations ``[B, T, obs]`` (or ``[B, obs]`` for one step), step types ``[B, T]``;
outputs ``(logits [B, T, num_actions], value [B, T])`` (time axis dropped for one step).
"""

from __future__ import annotations

import tensorflow as tf
from tf_agents.keras_layers import dynamic_unroll_layer
from tf_agents.networks import network
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import nest_utils

from mnm_keras import memory
from mnm_keras._utils import check_bool, check_positive_int

WRITE_RULES = ("local", "gradient")
CORES = ("mnm_p", "mnm_g", "lstm")

__all__ = [
    "ActorCriticRnnNetwork",
    "CORES",
    "MNMCell",
    "actor_critic_network",
    "lstm_actor_critic",
    "mnm_actor_critic",
]


class MNMCell(tf.keras.layers.Layer):
    """The MNM recurrent cell as a tf-keras layer (paper section 3), for TF-Agents networks.

    The step is the one of the Keras 3 `mnm_keras.MNMCell` (see its docstring): LSTM
    controller over ``[x_t; v^r_{t-1}]``, interface (equation 1), **write** with
    `mnm_keras.memory.local_write` (MNM-p, per-layer targets from the feedback functions
    q^l) or `mnm_keras.memory.gradient_write` (MNM-g), **then read** with
    `mnm_keras.memory.read` (mean over the H heads), output ``W_y [h_t; v^r_t] + b_y``.
    The per-step meta loss (equation 5, recall delay 0) is `mnm_keras.memory.recall_error`
    of the pairs just written under the new weights; like the Keras 3 cell, the cell adds it
    to ``(sum, count)`` in its last state, so that a caller can read the mean at the end of
    an unroll (`ActorCriticRnnNetwork.meta_loss`). It is computed only when ``training`` is
    true (acting needs no meta loss; the accumulator is then left unchanged).

    State (a list, the Keras 3 cell's layout): ``[h [B, units], c [B, units],
    v^r [B, value_size], M^0 [B, D_1 * D_0], ..., M^{L-1} [B, D_L * D_{L-1}],
    meta [B, 2]]``, the memory matrices flattened. `get_initial_state` gives zeros and the
    fixed random initial memory phi_0 (a non-trainable weight drawn from ``seed``) for
    every sequence.

    Args:
      units: controller LSTM size (default 200, the paper's maze agent).
      memory_units: hidden width D_l of the memory MLP (default 100).
      memory_layers: number L of memory layers (default 3).
      key_size, value_size: d_k and d_v (default 100).
      num_heads: H (default 3, the paper's maze agent).
      write_rule: ``"local"`` (MNM-p) or ``"gradient"`` (MNM-g).
      output_units: size of the output ``y_t`` (default ``units``).
      rate_bias: initial bias of the rate projection (default -2.0, rate 0.12).
      normalize_writes: normalised writes, as `mnm_keras.MNMCell`'s argument (default
        False, the paper's rule).
      seed: seed of phi_0 and of the kernels' initializers (None: not seeded).

    Call arguments: ``inputs [B, input_dim]``, ``states`` (list as above), ``training``.
    Returns ``(y [B, output_units], new_states)``.
    """

    def __init__(
        self,
        units=200,
        memory_units=100,
        memory_layers=3,
        key_size=100,
        value_size=100,
        num_heads=3,
        write_rule="local",
        output_units=None,
        rate_bias=-2.0,
        normalize_writes=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("units", units),
            ("memory_units", memory_units),
            ("memory_layers", memory_layers),
            ("key_size", key_size),
            ("value_size", value_size),
            ("num_heads", num_heads),
        ):
            check_positive_int(name, value)
        if output_units is not None:
            check_positive_int("output_units", output_units)
        if write_rule not in WRITE_RULES:
            raise ValueError(
                f"`write_rule` must be one of {WRITE_RULES} ('local' = MNM-p, 'gradient' = "
                f"MNM-g); received write_rule={write_rule!r}."
            )
        if isinstance(rate_bias, bool) or not isinstance(rate_bias, (int, float)):
            raise ValueError(f"`rate_bias` must be a number; received rate_bias={rate_bias!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an integer or None; received seed={seed!r}.")
        self.units = units
        self.memory_units = memory_units
        self.memory_layers = memory_layers
        self.key_size = key_size
        self.value_size = value_size
        self.num_heads = num_heads
        self.write_rule = write_rule
        self.output_units = output_units
        self.rate_bias = float(rate_bias)
        check_bool("normalize_writes", normalize_writes)
        self.normalize_writes = normalize_writes
        self.seed = seed
        self.output_size = output_units or units
        self.memory_sizes = [key_size] + [memory_units] * (memory_layers - 1) + [value_size]
        self.num_rates = 1 if write_rule == "gradient" else memory_layers
        self.state_size = (
            [units, units, value_size]
            + [self.memory_sizes[i + 1] * self.memory_sizes[i] for i in range(memory_layers)]
            + [2]
        )

    def _initializer(self, offset):
        seed = None if self.seed is None else self.seed + offset
        return tf.keras.initializers.GlorotUniform(seed=seed)

    def _dense(self, units, activation, name, offset, input_dim, bias_initializer="zeros"):
        layer = tf.keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=self._initializer(offset),
            bias_initializer=bias_initializer,
            name=name,
        )
        layer.build((None, input_dim))
        return layer

    def build(self, input_shape):
        input_dim = tf.TensorShape(input_shape)[-1]
        if input_dim is None:
            raise ValueError(
                f"MNMCell needs a known input feature size; received input shape {input_shape}."
            )
        heads, dk, dv = self.num_heads, self.key_size, self.value_size
        self.controller = tf.keras.layers.LSTMCell(
            self.units,
            kernel_initializer=self._initializer(0),
            recurrent_initializer=tf.keras.initializers.Orthogonal(seed=self.seed),
            name="controller",
        )
        self.controller.build((None, input_dim + dv))
        self.interface = self._dense(
            2 * heads * dk + heads * dv + dk, "tanh", "interface", 1, self.units
        )
        self.rate = self._dense(
            self.num_rates,
            "sigmoid",
            "rate",
            2,
            dk,
            bias_initializer=tf.keras.initializers.Constant(self.rate_bias),
        )
        self.output_projection = self._dense(self.output_size, None, "output", 3, self.units + dv)
        self.feedback = []
        if self.write_rule == "local":
            last = self.memory_layers - 1
            for index in range(self.memory_layers):
                activation = None if index == last else "tanh"
                self.feedback.append(
                    self._dense(
                        self.memory_sizes[index + 1], activation, f"feedback_{index}", 4 + index, dv
                    )
                )
        self.initial_memory = [
            self.add_weight(
                name=f"initial_memory_{index}",
                shape=(self.memory_sizes[index + 1], self.memory_sizes[index]),
                initializer=self._initializer(100 + index),
                trainable=False,
            )
            for index in range(self.memory_layers)
        ]
        super().build(input_shape)

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """Zeros and phi_0 for every sequence: the list of `state_size` tensors ``[B, size]``."""
        if not self.built:
            raise ValueError(
                "MNMCell.get_initial_state needs the cell to be built first (it holds phi_0)."
            )
        if batch_size is None:
            if inputs is None:
                raise ValueError("`batch_size` or `inputs` must be given to get_initial_state.")
            batch_size = tf.shape(inputs)[0]
        states = [
            tf.zeros([batch_size, self.units]),
            tf.zeros([batch_size, self.units]),
            tf.zeros([batch_size, self.value_size]),
        ]
        for matrix in self.initial_memory:
            states.append(
                tf.tile(tf.reshape(tf.convert_to_tensor(matrix), [1, -1]), [batch_size, 1])
            )
        states.append(tf.zeros([batch_size, 2]))
        return states

    def unflatten_memory(self, states):
        """The memory weights phi as ``[B, D_{l+1}, D_l]`` matrices, from a state list."""
        return [
            tf.reshape(states[3 + i], [-1, self.memory_sizes[i + 1], self.memory_sizes[i]])
            for i in range(self.memory_layers)
        ]

    def call(self, inputs, states, training=False):
        """One MNM step; returns ``y_t`` and the new state list."""
        states = list(states)
        h, c, previous_read = states[0], states[1], states[2]
        weights = self.unflatten_memory(states)
        meta = states[3 + self.memory_layers]
        heads, dk, dv = self.num_heads, self.key_size, self.value_size

        controller_input = tf.concat([inputs, previous_read], axis=-1)
        _, (h, c) = self.controller(controller_input, [h, c], training=training)
        read_keys, write_keys, values, rate_vector = tf.split(
            self.interface(h), [heads * dk, heads * dk, heads * dv, dk], axis=-1
        )
        read_keys = tf.reshape(read_keys, [-1, heads, dk])
        write_keys = tf.reshape(write_keys, [-1, heads, dk])
        values = tf.reshape(values, [-1, heads, dv])
        rates = self.rate(rate_vector)

        if self.write_rule == "gradient":
            new_weights = memory.gradient_write(
                weights, write_keys, values, rates[:, 0], normalize=self.normalize_writes
            )
        else:
            targets = [q(values) for q in self.feedback]
            new_weights = memory.local_write(
                weights, write_keys, targets, rates, normalize=self.normalize_writes
            )
        read_value = tf.reduce_mean(memory.read(new_weights, read_keys), axis=1)
        if training:
            step_meta = memory.recall_error(new_weights, write_keys, values)
            meta = meta + tf.stack([step_meta, tf.ones_like(step_meta)], axis=-1)

        y = self.output_projection(tf.concat([h, read_value], axis=-1))
        new_states = [h, c, read_value]
        new_states += [tf.reshape(w, [-1, w.shape[1] * w.shape[2]]) for w in new_weights]
        new_states.append(meta)
        return y, new_states

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "memory_units": self.memory_units,
                "memory_layers": self.memory_layers,
                "key_size": self.key_size,
                "value_size": self.value_size,
                "num_heads": self.num_heads,
                "write_rule": self.write_rule,
                "output_units": self.output_units,
                "rate_bias": self.rate_bias,
                "normalize_writes": self.normalize_writes,
                "seed": self.seed,
            }
        )
        return config


class ActorCriticRnnNetwork(network.Network):
    """Recurrent actor-critic: a shared recurrent trunk, a logits head and a value head.

    ``core = DynamicUnroll(cell)`` runs over the observations, resetting the state to
    ``cell.get_initial_state`` wherever the step type is FIRST; then
    ``logits = W_pi y_t + b_pi`` (``[.., num_actions]``) and ``value = w_V . y_t + b_V``.

    Args:
      input_tensor_spec: the observation spec (a single ``[obs]`` float tensor spec).
      action_spec: a scalar, bounded integer action spec (``num_actions = max - min + 1``).
      cell: a tf-keras RNN cell with ``state_size``, ``output_size`` and
        ``get_initial_state(batch_size=, dtype=)``, e.g. `MNMCell` or
        ``tf.keras.layers.LSTMCell``.
      seed: seed of the heads' initializers.

    Call: ``network(observation, step_type, network_state=(), training=False)`` with
    ``observation [B, T, obs]`` / ``step_type [B, T]`` (or without the time axis) returns
    ``((logits, value), new_network_state)``; an empty ``network_state`` means the cell's
    initial state.
    """

    def __init__(self, input_tensor_spec, action_spec, cell, seed=None, name="ActorCriticRnn"):
        if tf.nest.is_nested(input_tensor_spec) or input_tensor_spec.shape.rank != 1:
            raise ValueError(
                "`input_tensor_spec` must be a single rank-1 observation spec; received "
                f"{input_tensor_spec!r}."
            )
        flat_actions = tf.nest.flatten(action_spec)
        if len(flat_actions) != 1 or not tensor_spec.is_discrete(flat_actions[0]):
            raise ValueError(f"`action_spec` must be one discrete spec; received {action_spec!r}.")
        action_spec = flat_actions[0]
        if action_spec.shape.rank != 0:
            raise ValueError(f"`action_spec` must be scalar; received shape {action_spec.shape}.")
        self._num_actions = int(action_spec.maximum) - int(action_spec.minimum) + 1
        if not getattr(cell, "built", False):
            cell.build((None, input_tensor_spec.shape[-1]))
        unroll = dynamic_unroll_layer.DynamicUnroll(cell)
        state_spec = [
            tf.TensorSpec([size], tf.float32, name=f"network_state_{index}")
            for index, size in enumerate(tf.nest.flatten(cell.state_size))
        ]
        super().__init__(input_tensor_spec=input_tensor_spec, state_spec=state_spec, name=name)
        self._cell = cell
        self._unroll = unroll
        init = lambda offset: tf.keras.initializers.GlorotUniform(  # noqa: E731
            seed=None if seed is None else seed + offset
        )
        self._logits = tf.keras.layers.Dense(
            self._num_actions, kernel_initializer=init(1000), name="logits"
        )
        self._value = tf.keras.layers.Dense(1, kernel_initializer=init(1001), name="value")

    @property
    def cell(self):
        return self._cell

    @property
    def num_actions(self):
        return self._num_actions

    def call(self, observation, step_type, network_state=(), training=False):
        outer_rank = nest_utils.get_outer_rank(observation, self.input_tensor_spec)
        if outer_rank not in (1, 2):
            raise ValueError(
                "`observation` must have outer dimensions [batch] or [batch, time]; received "
                f"shape {observation.shape}."
            )
        has_time = outer_rank == 2
        if not has_time:
            observation = tf.expand_dims(observation, 1)
            step_type = tf.expand_dims(step_type, 1)
        reset_mask = tf.equal(step_type, ts.StepType.FIRST)
        initial_state = list(network_state) if network_state else None
        outputs, new_state = self._unroll(
            observation, initial_state=initial_state, reset_mask=reset_mask, training=training
        )
        logits = self._logits(outputs)
        value = tf.squeeze(self._value(outputs), -1)
        if not has_time:
            logits, value = tf.squeeze(logits, 1), tf.squeeze(value, 1)
        return (logits, value), list(new_state)

    def meta_loss(self, network_state):
        """Mean per-step meta loss ``[B]`` held in an MNM state (None for other cores).

        The mean over the steps since the last reset of the accumulator ``(sum, count)``
        (the last state entry of `MNMCell`), computed by unrolls with ``training=True``.
        """
        if not isinstance(self._cell, MNMCell):
            return None
        accumulated = network_state[-1]
        return accumulated[:, 0] / tf.maximum(accumulated[:, 1], 1.0)


def mnm_actor_critic(
    observation_spec,
    action_spec,
    write_rule="local",
    units=200,
    memory_units=100,
    memory_layers=3,
    key_size=100,
    value_size=100,
    num_heads=3,
    normalize_writes=False,
    seed=None,
):
    """The paper's MNM maze agent (controller 200, memory 3 x 100, H = 3) as a network."""
    cell = MNMCell(
        units,
        memory_units=memory_units,
        memory_layers=memory_layers,
        key_size=key_size,
        value_size=value_size,
        num_heads=num_heads,
        write_rule=write_rule,
        normalize_writes=normalize_writes,
        seed=seed,
    )
    name = "MnmP" if write_rule == "local" else "MnmG"
    return ActorCriticRnnNetwork(observation_spec, action_spec, cell, seed=seed, name=name)


def lstm_actor_critic(observation_spec, action_spec, units=200, seed=None):
    """The LSTM baseline: the same network with a ``tf.keras.layers.LSTMCell(units)`` core."""
    check_positive_int("units", units)
    cell = tf.keras.layers.LSTMCell(
        units,
        kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed),
        recurrent_initializer=tf.keras.initializers.Orthogonal(seed=seed),
    )
    return ActorCriticRnnNetwork(observation_spec, action_spec, cell, seed=seed, name="Lstm")


def actor_critic_network(core, observation_spec, action_spec, seed=None, **sizes):
    """``core`` in `CORES` (``"mnm_p"``, ``"mnm_g"``, ``"lstm"``) -> the actor-critic network.

    ``sizes`` are passed on (``units``, and for MNM ``memory_units``, ``memory_layers``,
    ``key_size``, ``value_size``, ``num_heads``, ``normalize_writes``).
    """
    if core == "lstm":
        return lstm_actor_critic(observation_spec, action_spec, seed=seed, **sizes)
    if core in ("mnm_p", "mnm_g"):
        rule = "local" if core == "mnm_p" else "gradient"
        return mnm_actor_critic(observation_spec, action_spec, rule, seed=seed, **sizes)
    raise ValueError(f"`core` must be one of {CORES}; received core={core!r}.")
