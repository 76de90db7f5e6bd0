"""Recurrent actor-critic networks for TF-Agents: an MNM core (tf-keras) and an LSTM core.

TF-Agents networks are tf-keras (Keras 2) layers, and a Keras 3 layer such as
`mnm_keras.MNMCell` cannot live inside one (its variables, ``get_initial_state`` signature
and `Sequential` checks differ). `TFKerasMNMCell` is therefore a tf-keras cell with the
arguments, weights and state layout of the Keras 3 cell that computes its step with the
same pure function, `mnm_keras.core.step`: the step exists once. A test copies the weights
of a Keras 3 `mnm_keras.MNMCell` into this cell and checks that the steps agree.

`ActorCriticRnnNetwork` is a `tf_agents.networks.Network`: the recurrent core is the shared
trunk, unrolled step by step with `DynamicUnroll` (which resets the state to the cell's
initial state at FIRST steps), followed by two linear heads, action logits and state value.
With ``whole_episodes=True`` (the A2C agent's training batches: each row one episode, FIRST
at most at its first step) a `TFKerasMNMCell` core runs the sequence at once instead, through
`TFKerasMNMCell.unroll` (the fused C++ kernel or the XLA loop).

Shapes: observations ``[B, T, obs]`` (or ``[B, obs]`` for one step), step types ``[B, T]``;
outputs ``(logits [B, T, num_actions], value [B, T])`` (time axis dropped for one step).
"""

from __future__ import annotations

import inspect

import tensorflow as tf
from tf_agents.keras_layers import dynamic_unroll_layer
from tf_agents.networks import network
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import nest_utils

from mnm_keras import arguments, core, mnm_cell, weights
from mnm_keras._utils import check_positive_int, derive_seed
from mnm_keras.mnm_cell import MNMCell

CORES = ("mnm_p", "mnm_g", "lstm")

__all__ = [
    "ActorCriticRnnNetwork",
    "CORES",
    "TFKerasMNMCell",
    "actor_critic_network",
    "lstm_actor_critic",
    "mnm_actor_critic",
]


# Where the cells that held Keras sublayers kept each weight in a `tf.train.Checkpoint`:
# field -> (sublayer, weight); a tuple field's layer ``l`` at ``(sublayer, l, weight)``.
CHECKPOINT_PATHS = {
    "controller_kernel": ("controller", "kernel"),
    "controller_recurrent_kernel": ("controller", "recurrent_kernel"),
    "controller_bias": ("controller", "bias"),
    "interface_kernel": ("interface", "kernel"),
    "interface_bias": ("interface", "bias"),
    "rate_kernel": ("rate", "kernel"),
    "rate_bias": ("rate", "bias"),
    "output_kernel": ("output_projection", "kernel"),
    "output_bias": ("output_projection", "bias"),
    "feedback_kernels": ("feedback", "kernel"),
    "feedback_biases": ("feedback", "bias"),
}


class TFKerasMNMCell(tf.keras.layers.Layer):
    """The MNM recurrent cell as a tf-keras (Keras 2) layer, for TF-Agents networks.

    TF-Agents networks are tf-keras layers, and a Keras 3 layer such as
    `mnm_keras.MNMCell` cannot live inside one. This class is that cell for tf-keras: it
    takes the same arguments (see `mnm_keras.MNMCell` for their meaning, all of them
    supported here), creates the same variables from the same table
    (`mnm_keras.weights.mnm_weights`, ``weight_table``), drawn the same way, and computes
    with the same function, `mnm_keras.core.step`: the step exists once.

    One difference, on purpose: the per-step meta loss (equation 5) is added to the
    accumulator ``(sum, count)`` only when ``training`` is true (acting needs no meta
    loss, and it costs a memory read per step); `ActorCriticRnnNetwork.meta_loss` reads
    the mean at the end of an unroll, and `tf_agents_ext.a2c_agent.A2CAgent` adds it times
    ``meta_loss_weight`` (this cell's, default 1.0 as in equation 6) times the agent's own
    ``meta_loss_weight``. The state is the flat list of `mnm_keras.core.pack`
    (`unpack_state` gives the `mnm_keras.core.MNMState`).

    ``implementation`` (``"auto"``, ``"kernel"`` or ``"xla"``) chooses the fused C++ step
    or the TensorFlow/XLA one, as for `mnm_keras.MNMCell`.

    Call arguments: ``inputs [B, input_dim]``, ``states`` (list as above), ``training``.
    Returns ``(y [B, output_units], new_states)``.
    """

    def __init__(self, *args, **kwargs):
        # The arguments are `mnm_keras.MNMCell`'s (its signature declares them once; this
        # class's ``__signature__`` shows them); the rest go to the tf-keras `Layer`.
        cell_arguments, layer_kwargs = arguments.bind(
            MNMCell, args, kwargs, exclude=_NOT_TAKEN, layer_name="TFKerasMNMCell"
        )
        super().__init__(**layer_kwargs)
        arguments.take(self, tf.keras, cell_arguments)
        mnm_cell.configure(self, cell_arguments)
        self.output_size = self.config.output_units

    def _seeded(self, initializer, name):
        """A new instance of ``initializer``, seeded with the sub-seed of the weight ``name``
        (`mnm_keras._utils.derive_seed`, the names of `mnm_keras.MNMCell`) when it takes a
        seed (tf-keras gives equal values from one unseeded instance called twice)."""
        config = initializer.get_config()
        if self.seed is not None and "seed" in config:
            config["seed"] = derive_seed(self.seed, name)
        return initializer.__class__.from_config(config)

    def build(self, input_shape):
        input_dim = tf.TensorShape(input_shape)[-1]
        if input_dim is None:
            raise ValueError(
                "TFKerasMNMCell needs a known input feature size; received input shape "
                f"{input_shape}."
            )
        # The weights of `mnm_keras.MNMCell`, from the same table, drawn the same way.
        table = weights.mnm_weights(self.config, int(input_dim))
        # `DynamicUnroll.build` builds its cell again: it keeps its variables.
        if weights.built_before(self, getattr(self, "weight_table", None), table):
            return
        self.weight_table = table
        self._table_variables = [
            self.add_weight(
                name=row.name,
                shape=row.shape,
                initializer=weights.initializer(
                    self,
                    row,
                    seeded=self._seeded,
                    ones=tf.keras.initializers.Ones(),
                    concatenate=lambda parts: tf.concat(parts, 0),
                ),
                regularizer=weights.regularizer(self, row),
                trainable=row.trainable,
            )
            for row in self.weight_table
        ]
        self._track_checkpoint_paths()
        super().build(input_shape)

    def _track_checkpoint_paths(self):
        """Adds each weight to the checkpoint paths of the cells that held sublayers
        (`CHECKPOINT_PATHS`: ``controller/kernel``, ``feedback/0/bias``, ...), so that
        `tf.train.Checkpoint`s written before, the maze runs' among them, restore; the
        holders are checkpoint dependencies only (not attributes, not layers)."""
        holders = {}
        for row, variable in zip(self.weight_table, self._table_variables, strict=True):
            path = CHECKPOINT_PATHS.get(row.field)
            if path is None:  # phi_0: the cell's own dependency ``initial_memory_l``
                continue
            *groups, name = path if row.index is None else (path[0], str(row.index), path[1])
            parent, prefix = self, ""
            for group in groups:
                prefix += f"{group}/"
                if prefix not in holders:
                    holders[prefix] = tf.Module(name=group if group[0].isalpha() else None)
                    parent._track_trackable(holders[prefix], name=group, overwrite=True)
                parent = holders[prefix]
            parent._track_trackable(variable, name=name, overwrite=True)

    def params(self):
        """The cell's weights as a `mnm_keras.core.MNMParams` of tensors."""
        if not self.built:
            raise ValueError("TFKerasMNMCell.params needs the cell to be built first.")
        values = [tf.convert_to_tensor(v) for v in self._table_variables]
        return weights.to_params(core.MNMParams, self.weight_table, values)

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """Zeros and phi_0 for every sequence: the list of `state_size` tensors ``[B, size]``."""
        if not self.built:
            raise ValueError(
                "TFKerasMNMCell.get_initial_state needs the cell to be built first (it holds "
                "phi_0)."
            )
        if batch_size is None:
            if inputs is None:
                raise ValueError("`batch_size` or `inputs` must be given to get_initial_state.")
            batch_size = tf.shape(inputs)[0]
        return core.pack(self.config, core.initial_state(self.config, self.params(), batch_size))

    def unpack_state(self, states):
        """A flat state list -> `mnm_keras.core.MNMState`."""
        return core.unpack(self.config, states)

    def call(self, inputs, states, training=False):
        """One MNM step (`mnm_keras.core.cell_step`); returns ``y_t`` and the new state list."""
        return core.cell_step(
            self.config,
            self.params(),
            inputs,
            states,
            compute_meta_loss=bool(training),
            jit_compile=self.jit_compile,
            implementation=self.implementation,
        )

    def unroll(self, inputs, states, training=False):
        """The whole sequence at once: ``inputs [B, T, input_dim]`` -> ``(y [B, T, d_o], states)``.

        Equal to calling the cell step after step from ``states`` (no resets inside the
        sequence), but through `mnm_keras.core.unroll`: the fused C++ sequence or the
        XLA loop with the memory-efficient backward pass (``implementation``), the input
        and output projections one product each.
        """
        outputs, final = core.unroll(
            self.config,
            self.params(),
            inputs,
            core.unpack(self.config, states),
            compute_meta_loss=bool(training),
            jit_compile=self.jit_compile,
            implementation=self.implementation,
        )
        return outputs, core.pack(self.config, final)

    def get_config(self):
        return {
            **super().get_config(),
            **arguments.config(self, tf.keras, self._argument_names),
        }


# `mnm_keras.MNMCell`'s arguments that the tf-keras cell does not take: it computes in its
# layer dtype (tf-keras has no per-layer mixed policy for the controller alone).
_NOT_TAKEN = ("controller_dtype",)
_SIGNATURE = inspect.signature(MNMCell.__init__)
TFKerasMNMCell.__init__.__signature__ = _SIGNATURE.replace(
    parameters=[p for p in _SIGNATURE.parameters.values() if p.name not in _NOT_TAKEN]
)


class ActorCriticRnnNetwork(network.Network):
    """Recurrent actor-critic: a shared recurrent trunk, a logits head and a value head.

    ``core = DynamicUnroll(cell)`` runs over the observations, resetting the state to
    ``cell.get_initial_state`` wherever the step type is FIRST; then
    ``logits = W_pi y_t + b_pi`` (``[.., num_actions]``) and ``value = w_V . y_t + b_V``.

    Args:
      input_tensor_spec: the observation spec (a single ``[obs]`` float tensor spec).
      action_spec: a scalar, bounded integer action spec (``num_actions = max - min + 1``).
      cell: a tf-keras RNN cell with ``state_size``, ``output_size`` and
        ``get_initial_state(batch_size=, dtype=)``, e.g. `TFKerasMNMCell` or
        ``tf.keras.layers.LSTMCell``.
      seed: seed of the heads' initializers (each kernel its own sub-seed,
        `mnm_keras._utils.derive_seed`).
      fused_sequence: run calls with ``whole_episodes=True`` through the cell's ``unroll``
        where it has one (default); False unrolls every call step by step.

    Call: ``network(observation, step_type, network_state=(), training=False)`` with
    ``observation [B, T, obs]`` / ``step_type [B, T]`` (or without the time axis) returns
    ``((logits, value), new_network_state)``; an empty ``network_state`` means the cell's
    initial state. ``whole_episodes=True`` promises that no row has a FIRST step after its
    first (checked): the core then runs each row's steps at once through ``cell.unroll``
    where the cell has one (`TFKerasMNMCell`), which equals the step-by-step unroll.
    """

    def __init__(
        self,
        input_tensor_spec,
        action_spec,
        cell,
        seed=None,
        fused_sequence=True,
        name="ActorCriticRnn",
    ):
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
        self.fused_sequence = fused_sequence
        init = lambda name: tf.keras.initializers.GlorotUniform(  # noqa: E731
            seed=derive_seed(seed, name)
        )
        self._logits = tf.keras.layers.Dense(
            self._num_actions, kernel_initializer=init("logits/kernel"), name="logits"
        )
        self._value = tf.keras.layers.Dense(
            1, kernel_initializer=init("value/kernel"), name="value"
        )

    @property
    def cell(self):
        return self._cell

    @property
    def fused_sequence(self):
        """Whether ``whole_episodes=True`` calls run through the cell's ``unroll``."""
        return self._fused_sequence

    @fused_sequence.setter
    def fused_sequence(self, value):
        if not isinstance(value, bool):
            raise ValueError(f"`fused_sequence` must be True or False; received {value!r}.")
        self._fused_sequence = value

    @property
    def num_actions(self):
        return self._num_actions

    def call(self, observation, step_type, network_state=(), training=False, whole_episodes=False):
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
        fused = self._fused_sequence and hasattr(self._cell, "unroll")
        if whole_episodes and has_time and fused:
            outputs, new_state = self._sequence(observation, reset_mask, initial_state, training)
        else:
            outputs, new_state = self._unroll(
                observation, initial_state=initial_state, reset_mask=reset_mask, training=training
            )
        logits = self._logits(outputs)
        value = tf.squeeze(self._value(outputs), -1)
        if not has_time:
            logits, value = tf.squeeze(logits, 1), tf.squeeze(value, 1)
        return (logits, value), list(new_state)

    def _sequence(self, observation, reset_mask, initial_state, training):
        """The core over ``[B, T]`` steps through the cell's fused sequence (``cell.unroll``).

        The state is reset in the rows whose first step is FIRST; a FIRST step later in
        the sequence is an error (checked in the graph).
        """
        tf.debugging.assert_equal(
            tf.reduce_any(reset_mask[:, 1:]),
            False,
            message=(
                "`whole_episodes=True` needs every row to hold one episode: a FIRST step "
                "after the first step of a row was found."
            ),
        )
        batch_size = tf.shape(observation)[0]
        zero_state = self._cell.get_initial_state(batch_size=batch_size, dtype=tf.float32)
        if initial_state is None:
            initial_state = zero_state
        first = tf.reshape(reset_mask[:, 0], [-1, 1])
        state = [tf.where(first, zero, given) for zero, given in zip(zero_state, initial_state)]
        return self._cell.unroll(observation, state, training=training)

    def meta_loss(self, network_state):
        """Mean per-step meta loss ``[B]`` held in an MNM state (None for other cores).

        The mean over the steps since the last reset of the accumulator ``(sum, count)``
        (the last state entry of `TFKerasMNMCell`), computed by unrolls with ``training=True``.
        """
        if not isinstance(self._cell, TFKerasMNMCell):
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
    normalize_writes=True,
    meta_loss_weight=1.0,
    seed=None,
):
    """The paper's MNM maze agent (controller 200, memory 3 x 100, H = 3) as a network."""
    cell = TFKerasMNMCell(
        units,
        memory_units=memory_units,
        memory_layers=memory_layers,
        key_size=key_size,
        value_size=value_size,
        num_heads=num_heads,
        write_rule=write_rule,
        normalize_writes=normalize_writes,
        meta_loss_weight=meta_loss_weight,
        seed=seed,
    )
    name = "MnmP" if write_rule == "local" else "MnmG"
    return ActorCriticRnnNetwork(observation_spec, action_spec, cell, seed=seed, name=name)


def lstm_actor_critic(observation_spec, action_spec, units=200, seed=None):
    """The LSTM baseline: the same network with a ``tf.keras.layers.LSTMCell(units)`` core."""
    check_positive_int("units", units)
    cell = tf.keras.layers.LSTMCell(
        units,
        kernel_initializer=tf.keras.initializers.GlorotUniform(
            seed=derive_seed(seed, "lstm/kernel")
        ),
        recurrent_initializer=tf.keras.initializers.Orthogonal(
            seed=derive_seed(seed, "lstm/recurrent_kernel")
        ),
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
