"""What `MNMCell` and `SALUCell` share: the LSTM controller, seeded projections, config."""

from __future__ import annotations

import keras

from mnm_keras._utils import check_positive_int, derive_seed, seeded


class ControllerCell(keras.layers.Layer):
    """Base of the memory cells: an LSTM controller over ``[x_t; v^r_{t-1}]`` (section 3.1).

    Holds the arguments every memory cell has (sizes, seed, initializers, regularizers),
    validates them, builds the controller and the dense projections with sub-seeds derived
    from ``seed`` and each weight's name (`derive_seed`), and serialises them. Subclasses add
    the memory.
    """

    def __init__(
        self,
        *,
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
        sublayer_dtype=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("units", units),
            ("key_size", key_size),
            ("value_size", value_size),
            ("num_heads", num_heads),
        ):
            check_positive_int(name, value)
        if output_units is not None:
            check_positive_int("output_units", output_units)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an integer or None; received seed={seed!r}.")
        self.units = units
        self.key_size = key_size
        self.value_size = value_size
        self.num_heads = num_heads
        self.output_units = output_units
        self.seed = seed
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.sublayer_dtype = sublayer_dtype or self.dtype_policy
        self.output_size = output_units or units

    def _seed(self, name):
        """The sub-seed of the weight ``name`` (`derive_seed`; None when ``seed`` is None)."""
        return derive_seed(self.seed, name)

    def _dense(self, units, activation, name, input_dim, bias_initializer=None):
        """A built Dense sublayer ``name`` whose kernel initializer is seeded from ``seed``
        and the name (sub-seed of ``"{name}/kernel"``)."""
        layer = keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=seeded(self.kernel_initializer, self._seed(f"{name}/kernel")),
            bias_initializer=bias_initializer or self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            dtype=self.sublayer_dtype,
            name=name,
        )
        layer.build((None, input_dim))
        return layer

    def _build_controller(self, input_shape):
        """Builds ``self.controller``, the LSTM over ``[x_t; v^r_{t-1}]``."""
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"{type(self).__name__} needs a known input feature size (last axis); "
                f"received input shape {input_shape}."
            )
        self.controller = keras.layers.LSTMCell(
            self.units,
            kernel_initializer=seeded(self.kernel_initializer, self._seed("controller/kernel")),
            recurrent_initializer=seeded(
                self.recurrent_initializer, self._seed("controller/recurrent_kernel")
            ),
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            dtype=self.sublayer_dtype,
            name="controller",
        )
        self.controller.build((None, input_dim + self.value_size))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "key_size": self.key_size,
                "value_size": self.value_size,
                "num_heads": self.num_heads,
                "output_units": self.output_units,
                "seed": self.seed,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
