"""`MNMCell`: the Keras 3 recurrent cell of Metalearned Neural Memory (paper, section 3)."""

from __future__ import annotations

import keras

from mnm_keras import _utils, arguments, core, fused, weights
from mnm_keras._controller import ControllerCell

WRITE_RULES = core.WRITE_RULES


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
    ``seed``, saved with the model), as section 3.5 prescribes. The step itself is
    `mnm_keras.core.step`: this class owns the variables and passes them to it
    (`params`). The state is a `core.MNMState`; `keras.layers.RNN` carries it as the flat
    list of `core.pack` (each ``[D_{l+1}, D_l]`` matrix flattened), and `unpack_state`
    turns such a list back into the named tuple.

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
        makes the write strength independent of the scale of the keys. Not in the paper;
        the default (True) because with the paper's writes MNM-p does not learn
        dictionary inference (4, 1) in 2,000 steps and with normalised writes it does
        (docs/design.md, "Normalised writes", has the measurement). ``False`` gives the
        paper's writes, equations 3 and 4 exactly.
      memory_activation: hidden activation of the memory (default ``"tanh"``).
      memory_output_activation: activation of the memory's last layer (default linear).
      memory_initializer: initializer of phi_0 (default ``"glorot_uniform"``).
      seed: seed of phi_0 and of the default initializers (``None``: not seeded); each
        weight draws from its own sub-seed of ``(seed, its name)`` (`_utils.derive_seed`).
      kernel_initializer, recurrent_initializer, bias_initializer: of the controller and
        the interface/output projections.
      rate_bias_initializer: initial bias of the rate projection (default -2.0, i.e. a
        small initial rate sigmoid(-2) = 0.12 so early writes do not overshoot).
      kernel_regularizer, bias_regularizer: of every trainable kernel and bias.
      jit_compile: compile the step (and `mnm_keras.MNM`'s whole loop with its backward
        pass) with XLA (default True; on a CPU a training step of `MNM` is then about 3x faster,
        docs/performance.md); ``False`` runs the same operations without XLA.
      implementation: ``"auto"`` (default), ``"kernel"`` or ``"xla"``: run the step (and
        `mnm_keras.MNM`'s whole sequence) through the fused C++ kernel of
        `mnm_keras.fused` or through TensorFlow/XLA operations, the reference. For
        `mnm_keras.MNM`'s sequence ``"auto"`` takes the kernel on a CPU when it is built and
        covers the configuration (MNM-p with tanh memory layers and a linear last one, no
        recall delay, float32 or float64); for this cell's single step in
        `keras.layers.RNN` it takes XLA, measured faster there. ``"kernel"`` forces the
        kernel and raises an error naming what is missing where it cannot run. Both
        compute the same outputs and gradients (tested in float64).
      controller_dtype: dtype policy of the controller and projection weights (default:
        ``dtype`` or the global policy); the state and the memory are float32 (see above).

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
        normalize_writes=True,
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
        jit_compile=True,
        implementation="auto",
        **kwargs,
    ):
        _utils.check_backend("MNMCell")
        cell_arguments = {name: value for name, value in locals().items() if name in ARGUMENTS}
        # keras.layers.RNN casts every state to the cell's compute dtype, so the cell itself
        # always computes in float32 (its state holds the memory weights); the requested
        # (possibly mixed) policy applies to the controller and projection weights.
        requested = kwargs.pop("dtype", None)
        policy = controller_dtype if controller_dtype is not None else requested
        super().__init__(
            cell_arguments,
            controller_policy=(
                keras.config.dtype_policy() if policy is None else keras.dtype_policies.get(policy)
            ),
            dtype="float32",
            **kwargs,
        )
        configure(self, cell_arguments, compute_dtype=self.controller_policy.compute_dtype)

    @property
    def controller_dtype(self):
        """The dtype policy of the controller and projection weights."""
        return self.controller_policy

    # ----------------------------------------------------------------------------- build
    def build(self, input_shape):
        # Every weight of `weights.mnm_weights`: the controller, the interface of equation 1,
        # the rate, the output, MNM-p's feedback functions q^l (section 3.4) and phi_0, the
        # fixed random initial memory, not trained (section 3.5).
        self._add_weights(weights.mnm_weights(self.config, self._input_dim(input_shape)))

    # ----------------------------------------------------------------------------- state
    def params(self):
        """The cell's weights as a `core.MNMParams` of tensors (what `core` computes with)."""
        return self._params(core.MNMParams)

    def get_initial_state(self, batch_size=None, dtype=None):
        """The state at the start of every sequence: zeros, and phi_0 for every sequence.

        A flat list (`core.pack` of `core.initial_state`); the whole state is float32
        whatever ``dtype`` says (see the class docstring).
        """
        if not self.built:
            raise ValueError(
                "MNMCell.get_initial_state needs the cell to be built first (it holds the "
                "initial memory phi_0): call `cell.build((None, input_dim))` or run the "
                "RNN layer once."
            )
        if batch_size is None:
            raise ValueError("`batch_size` must be given to MNMCell.get_initial_state.")
        return core.pack(self.config, core.initial_state(self.config, self.params(), batch_size))

    def unpack_state(self, states):
        """A flat state list (as `keras.layers.RNN` carries it) -> `core.MNMState`."""
        return core.unpack(self.config, states)

    # ------------------------------------------------------------------------------ call
    def call(self, inputs, states, training=False):
        """One MNM step (`core.cell_step`); returns ``y_t`` and the new state list."""
        return core.cell_step(
            self.config,
            self.params(),
            inputs,
            states,
            jit_compile=self.jit_compile,
            implementation=self.implementation,
        )


# The constructor arguments, in order (`mnm_keras.arguments`).
ARGUMENTS = arguments.names(MNMCell)


def configure(cell, cell_arguments, compute_dtype="float32"):
    """Sets what an MNM cell derives from its stored arguments (``cell_arguments``, those of
    `MNMCell`'s constructor): the validated `core.MNMConfig` (``config``), the recall
    weights, the memory's layer sizes D_0..D_L, the number of rates and the state sizes.
    Shared by `MNMCell` and the tf-keras cell of `tf_agents_ext.networks`."""
    cell.config = core.make_config(
        **core.config_arguments(
            cell_arguments,
            memory_activation=cell.memory_activation,
            memory_output_activation=cell.memory_output_activation,
            compute_dtype=compute_dtype,
        )
    )
    if cell.implementation == "kernel":
        fused.choose(cell.config, "kernel")  # an error now, naming what is missing
    cell.recall_decay = list(cell.config.recall_decay)
    cell.memory_sizes = list(cell.config.memory_sizes)
    cell.num_rates = cell.config.num_rates
    cell.state_size = core.state_sizes(cell.config)
