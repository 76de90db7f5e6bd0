"""`MNMCell`: the Keras 3 recurrent cell of Metalearned Neural Memory (paper, section 3)."""

from __future__ import annotations

import keras
import tensorflow as tf

from mnm_keras import memory
from mnm_keras._controller import ControllerCell
from mnm_keras._utils import check_bool, check_positive_int, seeded

WRITE_RULES = ("local", "gradient")


@keras.saving.register_keras_serializable(package="mnm_keras")
class MNMCell(ControllerCell):
    """Metalearned Neural Memory cell: an LSTM controller with a writable MLP memory.

    One step (paper section 3), for input ``x_t``:

    1. Controller (3.1): ``h_t = LSTM([x_t; v^r_{t-1}], h_{t-1})``.
    2. Interface (equation 1): ``tanh(W_v h_t + b_v)`` is split into H read keys, H write
       keys, H target values and a rate vector ``beta'_t``; the rate is
       ``beta_t = sigmoid(W_beta beta'_t + b_beta)`` (one scalar for MNM-g, one per memory
       layer for MNM-p).
    3. **Write first**: the memory weights phi_{t-1} become phi_t, by one gradient step
       (``write_rule="gradient"``, MNM-g, equations 2-3, `memory.gradient_write`) or by the
       local perceptron rule (``write_rule="local"``, MNM-p, equation 4,
       `memory.local_write`) whose per-layer targets come from the backward feedback
       prediction functions ``q^l(v^w)``, single-layer MLPs of the target values (3.4).
    4. **Then read**: ``v^r_t`` is the mean over heads of ``f_{phi_t}(k^r_{t,i})``.
    5. Output: ``y_t = W_y [h_t; v^r_t] + b_y``.
    6. Meta objective (equation 5): the recall error of the pairs just written (and, with
       ``recall_delay > 0``, of those written up to ``recall_delay`` steps earlier) under
       phi_t is accumulated in the state.

    The memory weights are part of the recurrent state, one copy per sequence, and every
    sequence starts from the same fixed random weights phi_0 (non-trainable, drawn from
    ``seed``, saved with the model), as section 3.5 prescribes. Because the state must be a
    flat list of vectors for `keras.layers.RNN`, each ``[D_{l+1}, D_l]`` matrix is stored
    flattened.

    The meta loss cannot leave a `keras.layers.RNN` loop through ``add_loss``, so the cell
    accumulates ``(sum of per-step meta losses, number of steps)`` in its last state.
    `mnm_keras.MNM` (the sequence layer, like `keras.layers.LSTM` beside
    `keras.layers.LSTMCell`) reads it at the end of the sequence and adds
    ``meta_loss_weight * mean`` to the model's losses; with a bare
    ``keras.layers.RNN(MNMCell(...), return_state=True)`` it is the last returned state.

    Mixed precision: the cell's state (controller h and c, read-out, memory weights) and
    the memory read, write and meta loss are always float32: a write changes the weights by
    small rank-H steps that float16 or bfloat16 would round away over a long sequence, and
    `keras.layers.RNN` casts states to the cell's compute dtype, so the cell's own policy is
    float32. The controller LSTM, the interface, rate, feedback and output projections
    (the bulk of the matrix products) follow ``controller_dtype``, which defaults to the
    ``dtype`` argument or the global policy (e.g. ``mixed_bfloat16``).

    Args:
      units: controller LSTM size d_h.
      memory_units: hidden width D_l of the memory MLP (default 100).
      memory_layers: number L of memory layers (default 3).
      key_size: d_k (default 100).
      value_size: d_v (default 100).
      num_heads: H, read/write heads per step (default 1).
      write_rule: ``"local"`` (MNM-p) or ``"gradient"`` (MNM-g).
      output_units: d_o, size of ``y_t`` (default ``units``).
      meta_loss_weight: weight of the meta objective in the training loss (used by
        `mnm_keras.MNM`; default 1.0, as in equation 6).
      recall_delay: maximum recall delay T of equation 5 (default 0).
      recall_decay: the weights ``lambda_0..lambda_T`` (default all ones).
      targets_from_values: MNM-p only: use the target values themselves as the last
        layer's target instead of a learned feedback function (default False).
      normalize_writes: divide each write step by the squared norms of the memory layers'
        inputs (`memory.gradient_write_factors`, `memory.local_write_factors`), which
        makes the write strength independent of the scale of the keys. Not in the paper
        (default False); the README's design notes give the measurements behind it.
      memory_activation: hidden activation of the memory (default ``"tanh"``).
      memory_output_activation: activation of the memory's last layer (default linear).
      memory_initializer: initializer of phi_0 (default ``"glorot_uniform"``).
      seed: seed of phi_0 and of the default initializers (``None``: not seeded).
      kernel_initializer, recurrent_initializer, bias_initializer: of the controller and
        the interface/output projections.
      rate_bias_initializer: initial bias of the rate projection (default -2.0, i.e. a
        small initial rate sigmoid(-2) = 0.12 so early writes do not overshoot).
      kernel_regularizer, bias_regularizer: of every trainable kernel and bias.
      controller_dtype: dtype policy of the sublayers (default: ``dtype`` or the global
        policy); the cell itself always computes in float32 (see above).

    Call arguments:
      inputs: ``[batch, input_dim]``.
      states: the list given by `get_initial_state`.
      training: passed to the controller.

    Example:

    ```python
    import keras, mnm_keras
    layer = keras.layers.RNN(mnm_keras.MNMCell(32, memory_units=16, key_size=16,
                                               value_size=16, write_rule="local"))
    y = layer(keras.random.normal((2, 5, 8)))  # [2, 32]
    ```
    """

    def __init__(
        self,
        units,
        memory_units=100,
        memory_layers=3,
        key_size=100,
        value_size=100,
        num_heads=1,
        write_rule="local",
        output_units=None,
        meta_loss_weight=1.0,
        recall_delay=0,
        recall_decay=None,
        targets_from_values=False,
        normalize_writes=False,
        memory_activation="tanh",
        memory_output_activation=None,
        memory_initializer="glorot_uniform",
        seed=None,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        rate_bias_initializer=-2.0,
        kernel_regularizer=None,
        bias_regularizer=None,
        controller_dtype=None,
        **kwargs,
    ):
        # keras.layers.RNN casts every state to the cell's compute dtype, so the cell itself
        # always computes in float32 (its state holds the memory weights); the requested
        # (possibly mixed) policy applies to the controller and projection sublayers.
        requested = kwargs.pop("dtype", None)
        policy = controller_dtype if controller_dtype is not None else requested
        super().__init__(
            units,
            key_size,
            value_size,
            num_heads,
            output_units,
            seed,
            kernel_initializer,
            recurrent_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            sublayer_dtype=(
                keras.config.dtype_policy() if policy is None else keras.dtype_policies.get(policy)
            ),
            dtype="float32",
            **kwargs,
        )
        check_positive_int("memory_units", memory_units)
        check_positive_int("memory_layers", memory_layers)
        if write_rule not in WRITE_RULES:
            raise ValueError(
                f"`write_rule` must be one of {WRITE_RULES} ('local' = MNM-p, 'gradient' = "
                f"MNM-g); received write_rule={write_rule!r}."
            )
        if (
            isinstance(meta_loss_weight, bool)
            or not isinstance(meta_loss_weight, (int, float))
            or meta_loss_weight < 0
        ):
            raise ValueError(
                f"`meta_loss_weight` must be a non-negative number; received {meta_loss_weight!r}."
            )
        if isinstance(recall_delay, bool) or not isinstance(recall_delay, int) or recall_delay < 0:
            raise ValueError(
                f"`recall_delay` must be a non-negative integer; received {recall_delay!r}."
            )
        if recall_decay is None:
            recall_decay = [1.0] * (recall_delay + 1)
        recall_decay = [float(x) for x in recall_decay]
        if len(recall_decay) != recall_delay + 1:
            raise ValueError(
                f"`recall_decay` must hold recall_delay + 1 = {recall_delay + 1} weights "
                f"(lambda_0..lambda_{recall_delay}); received {recall_decay!r}."
            )
        if targets_from_values and write_rule != "local":
            raise ValueError(
                "`targets_from_values=True` applies to write_rule='local' (MNM-p) only; "
                f"received write_rule={write_rule!r}."
            )
        self.memory_units = memory_units
        self.memory_layers = memory_layers
        self.write_rule = write_rule
        self.meta_loss_weight = float(meta_loss_weight)
        self.recall_delay = recall_delay
        self.recall_decay = recall_decay
        self.targets_from_values = bool(targets_from_values)
        check_bool("normalize_writes", normalize_writes)
        self.normalize_writes = normalize_writes
        self.memory_activation = keras.activations.get(memory_activation)
        self.memory_output_activation = keras.activations.get(memory_output_activation)
        self.memory_initializer = keras.initializers.get(memory_initializer)
        self.rate_bias_initializer = keras.initializers.get(
            keras.initializers.Constant(rate_bias_initializer)
            if isinstance(rate_bias_initializer, (int, float))
            else rate_bias_initializer
        )

        # Layer sizes D_0..D_L of the memory MLP.
        self.memory_sizes = [key_size] + [memory_units] * (memory_layers - 1) + [value_size]
        self.num_rates = 1 if write_rule == "gradient" else memory_layers
        state_size = [units, units, value_size]
        state_size += [
            self.memory_sizes[i + 1] * self.memory_sizes[i] for i in range(memory_layers)
        ]
        state_size += [2]  # (sum of per-step meta losses, number of steps)
        if recall_delay:
            state_size += [
                recall_delay * num_heads * key_size,
                recall_delay * num_heads * value_size,
                recall_delay,
            ]
        self.state_size = state_size

    @property
    def controller_dtype(self):
        """The dtype policy of the controller and projection sublayers."""
        return self.sublayer_dtype

    # ----------------------------------------------------------------------------- build
    def build(self, input_shape):
        self._build_controller(input_shape)
        heads, dk, dv = self.num_heads, self.key_size, self.value_size
        # Equation 1: H read keys, H write keys, H target values and beta'_t (size d_k).
        self.interface = self._dense(
            2 * heads * dk + heads * dv + dk, "tanh", "interface", 1, self.units
        )
        self.rate = self._dense(
            self.num_rates, "sigmoid", "rate", 2, dk, bias_initializer=self.rate_bias_initializer
        )
        self.output_projection = self._dense(self.output_size, None, "output", 3, self.units + dv)
        # Backward feedback prediction functions q^l (section 3.4), MNM-p only.
        self.feedback = []
        if self.write_rule == "local":
            last = self.memory_layers - 1
            count = last if self.targets_from_values else self.memory_layers
            for index in range(count):
                activation = (
                    self.memory_output_activation if index == last else self.memory_activation
                )
                self.feedback.append(
                    self._dense(
                        self.memory_sizes[index + 1], activation, f"feedback_{index}", 4 + index, dv
                    )
                )
        # phi_0: the fixed random initial memory, not trained (section 3.5).
        self.initial_memory = []
        for index in range(self.memory_layers):
            self.initial_memory.append(
                self.add_weight(
                    shape=(self.memory_sizes[index + 1], self.memory_sizes[index]),
                    initializer=seeded(self.memory_initializer, self._seed(100 + index)),
                    trainable=False,
                    dtype="float32",
                    name=f"initial_memory_{index}",
                )
            )

    # ----------------------------------------------------------------------------- state
    def get_initial_state(self, batch_size=None, dtype=None):
        """The state at the start of every sequence: zeros, and phi_0 for every sequence."""
        if not self.built:
            raise ValueError(
                "MNMCell.get_initial_state needs the cell to be built first (it holds the "
                "initial memory phi_0): call `cell.build((None, input_dim))` or run the "
                "RNN layer once."
            )
        if batch_size is None:
            raise ValueError("`batch_size` must be given to MNMCell.get_initial_state.")
        dtype = "float32"  # see __init__: the whole state is float32
        states = [
            tf.zeros([batch_size, self.units], dtype),
            tf.zeros([batch_size, self.units], dtype),
            tf.zeros([batch_size, self.value_size], dtype),
        ]
        for matrix in self.initial_memory:
            flat = tf.reshape(tf.convert_to_tensor(matrix), [1, -1])
            states.append(tf.tile(flat, [batch_size, 1]))
        states.append(tf.zeros([batch_size, 2], "float32"))
        if self.recall_delay:
            delay, heads = self.recall_delay, self.num_heads
            states += [
                tf.zeros([batch_size, delay * heads * self.key_size], "float32"),
                tf.zeros([batch_size, delay * heads * self.value_size], "float32"),
                tf.zeros([batch_size, delay], "float32"),
            ]
        return states

    def unflatten_memory(self, states):
        """The memory weights phi as ``[batch, D_{l+1}, D_l]`` matrices, from a state list."""
        return [
            tf.reshape(states[3 + i], [-1, self.memory_sizes[i + 1], self.memory_sizes[i]])
            for i in range(self.memory_layers)
        ]

    # ------------------------------------------------------------------------------ call
    def _interface(self, h):
        """Equation 1: keys, values and rates from the controller state, in float32."""
        heads, dk, dv = self.num_heads, self.key_size, self.value_size
        vectors = tf.cast(self.interface(h), "float32")
        read_keys, write_keys, values, rate_vector = tf.split(
            vectors, [heads * dk, heads * dk, heads * dv, dk], axis=-1
        )
        rates = tf.cast(self.rate(rate_vector), "float32")
        return (
            tf.reshape(read_keys, [-1, heads, dk]),
            tf.reshape(write_keys, [-1, heads, dk]),
            tf.reshape(values, [-1, heads, dv]),
            rates,
        )

    def _write_factors(self, weights, write_keys, values, rates):
        """The write of this step as rank-H factors (see `memory.apply_write`)."""
        hidden, output = self.memory_activation, self.memory_output_activation
        if self.write_rule == "gradient":
            return memory.gradient_write_factors(
                weights, write_keys, values, rates[:, 0], hidden, output, self.normalize_writes
            )
        targets = [tf.cast(q(values), "float32") for q in self.feedback]
        if self.targets_from_values:
            targets.append(values)
        return memory.local_write_factors(
            weights, write_keys, targets, rates, hidden, output, self.normalize_writes
        )

    def call(self, inputs, states, training=False):
        """One MNM step; returns ``y_t`` and the new state list."""
        y, new_states, _ = self.step(inputs, states, training=training)
        return y, new_states

    def step(self, inputs, states, training=False):
        """One MNM step that also returns the memory interaction vectors of the step.

        The same computation as `call` (which calls it), for inspection: the returned dict
        holds ``read_keys``, ``write_keys`` and ``values`` (``[batch, heads, size]``),
        ``rates`` (``[batch, 1]`` for MNM-g, ``[batch, memory_layers]`` for MNM-p) and
        ``read_values`` (``[batch, heads, value_size]``, before the mean over heads) and
        ``write_factors``, the L pairs ``(a^l, b^l)`` of the write
        ``M^l_t = M^l_{t-1} - sum_i a^l_i (b^l_i)^T`` (`memory.apply_write`).

        Returns:
          ``(y_t, new_states, interactions)``.
        """
        h, c, previous_read = states[0], states[1], states[2]
        weights = self.unflatten_memory(states)
        meta = states[3 + self.memory_layers]
        controller_input = tf.concat([tf.cast(inputs, "float32"), previous_read], axis=-1)
        _, (h, c) = self.controller(controller_input, [h, c], training=training)
        h, c = tf.cast(h, "float32"), tf.cast(c, "float32")
        read_keys, write_keys, values, rates = self._interface(h)

        factors = self._write_factors(weights, write_keys, values, rates)
        new_weights = memory.apply_write(weights, factors)
        hidden, output = self.memory_activation, self.memory_output_activation
        read_values = memory.read(new_weights, read_keys, hidden, output)
        read_value = tf.reduce_mean(read_values, axis=1)

        extra_states = []
        if self.recall_delay:
            key_history, value_history, valid = self._history(states, write_keys, values)
            step_meta = memory.meta_loss(
                new_weights, key_history, value_history, self.recall_decay, valid, hidden, output
            )
            extra_states = [
                tf.reshape(key_history[:, :-1], [-1, self.state_size[-3]]),
                tf.reshape(value_history[:, :-1], [-1, self.state_size[-2]]),
                valid[:, :-1],
            ]
        else:
            step_meta = memory.recall_error(new_weights, write_keys, values, hidden, output)
        meta = meta + tf.stack([step_meta, tf.ones_like(step_meta)], axis=-1)

        y = tf.cast(self.output_projection(tf.concat([h, read_value], axis=-1)), "float32")
        new_states = [h, c, read_value]
        new_states += [tf.reshape(w, [-1, w.shape[1] * w.shape[2]]) for w in new_weights]
        new_states.append(meta)
        interactions = {
            "read_keys": read_keys,
            "write_keys": write_keys,
            "values": values,
            "rates": rates,
            "read_values": read_values,
            "write_factors": factors,
        }
        return y, new_states + extra_states, interactions

    def _history(self, states, write_keys, values):
        """Write pairs of steps t, t-1, ..., t-T as ``[batch, T + 1, heads, size]``."""
        delay, heads = self.recall_delay, self.num_heads
        old_keys = tf.reshape(states[-3], [-1, delay, heads, self.key_size])
        old_values = tf.reshape(states[-2], [-1, delay, heads, self.value_size])
        key_history = tf.concat([write_keys[:, None], old_keys], axis=1)
        value_history = tf.concat([values[:, None], old_values], axis=1)
        valid = tf.concat([tf.ones_like(states[-1][:, :1]), states[-1]], axis=1)
        return key_history, value_history, valid

    # --------------------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "memory_units": self.memory_units,
                "memory_layers": self.memory_layers,
                "write_rule": self.write_rule,
                "meta_loss_weight": self.meta_loss_weight,
                "recall_delay": self.recall_delay,
                "recall_decay": self.recall_decay,
                "targets_from_values": self.targets_from_values,
                "normalize_writes": self.normalize_writes,
                "memory_activation": keras.activations.serialize(self.memory_activation),
                "memory_output_activation": keras.activations.serialize(
                    self.memory_output_activation
                ),
                "memory_initializer": keras.initializers.serialize(self.memory_initializer),
                "rate_bias_initializer": keras.initializers.serialize(self.rate_bias_initializer),
                "controller_dtype": keras.dtype_policies.serialize(self.sublayer_dtype),
            }
        )
        return config
