"""The memory cells' constructor arguments: declared once, checked, stored and serialised.

A cell's constructor signature is the one declaration of its arguments
(`mnm_keras.MNMCell.__init__`, `mnm_keras.SALUCell.__init__`). From it:

* `check` validates the values every cell shares (each error names the argument, the value
  and what was expected);
* `store` sets them on the layer, an identifier turned into its object by `KINDS`
  (``"tanh"`` into an activation, ``-2.0`` into a constant initializer, ...);
* `config` gives ``get_config``'s entries: every argument, read back from the layer and
  serialised by its kind;
* `bind` lets another cell take a signature's arguments without declaring them again: the
  tf-keras cell of `tf_agents_ext.networks` takes `MNMCell`'s.

Each function takes the Keras module the layer belongs to (``keras`` or ``tf.keras``), whose
``initializers``, ``activations`` and ``regularizers`` do the conversions, so one table
serves Keras 3 and tf-keras.
"""

from __future__ import annotations

import inspect

from mnm_keras import fused
from mnm_keras.core import check_bool, check_non_negative_number, check_positive_int

__all__ = ["KINDS", "bind", "check", "config", "names", "signature", "store", "take"]

# How an argument that is not a plain value is stored and serialised; others as given.
KINDS = {
    "memory_activation": "activations",
    "memory_output_activation": "activations",
    "memory_initializer": "initializers",
    "kernel_initializer": "initializers",
    "recurrent_initializer": "initializers",
    "bias_initializer": "initializers",
    "rate_bias_initializer": "initializers",
    "kernel_regularizer": "regularizers",
    "bias_regularizer": "regularizers",
    "controller_dtype": "dtype_policies",
}

_POSITIVE_INTS = ("units", "key_size", "value_size", "num_heads", "max_length")


def signature(cell_class, exclude=()):
    """The signature of ``cell_class``'s constructor, without ``self``, ``**kwargs`` and
    the arguments ``exclude``."""
    parameters = inspect.signature(cell_class.__init__).parameters.values()
    return inspect.Signature(
        [
            parameter
            for parameter in parameters
            if parameter.name != "self"
            and parameter.name not in exclude
            and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
        ]
    )


def names(cell_class, exclude=()):
    """The names of ``cell_class``'s constructor arguments, in order (see `signature`)."""
    return tuple(signature(cell_class, exclude).parameters)


def bind(cell_class, args, kwargs, exclude=(), layer_name=None):
    """Splits a call's arguments into ``cell_class``'s constructor arguments (with their
    defaults) and the rest (base `Layer` arguments such as ``name`` and ``dtype``).

    Args:
      cell_class: the class whose constructor declares the arguments.
      args: positional arguments, in the signature's order.
      kwargs: keyword arguments.
      exclude: arguments of the signature that the caller does not take; passing one is an
        error that names it.
      layer_name: the calling layer's name in errors (default ``cell_class``'s).

    Returns:
      ``(arguments, rest)``: two dicts.
    """
    layer_name = layer_name or cell_class.__name__
    for name in exclude:
        if name in kwargs:
            raise ValueError(
                f"{layer_name} does not take `{name}` (an argument of "
                f"{cell_class.__name__}); received {name}={kwargs[name]!r}."
            )
    own = signature(cell_class, exclude)
    chosen = {name: value for name, value in kwargs.items() if name in own.parameters}
    rest = {name: value for name, value in kwargs.items() if name not in own.parameters}
    try:
        bound = own.bind(*args, **chosen)
    except TypeError as error:
        raise TypeError(
            f"{layer_name} takes the arguments {own}; {error} (received {len(args)} "
            "positional arguments)."
        ) from None
    bound.apply_defaults()
    return dict(bound.arguments), rest


def check(values):
    """Validates the arguments in ``values`` (a dict) that every cell shares; every error
    is a ValueError naming the argument, the value and what was expected. Arguments of the
    memory (sizes, write rule, recall) are checked by `mnm_keras.core.make_config`."""
    for name in _POSITIVE_INTS:
        if name in values:
            check_positive_int(name, values[name])
    if values.get("output_units") is not None:
        check_positive_int("output_units", values["output_units"])
    seed = values.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"`seed` must be an integer or None; received seed={seed!r}.")
    if "meta_loss_weight" in values:
        check_non_negative_number("meta_loss_weight", values["meta_loss_weight"])
    if "jit_compile" in values:
        check_bool("jit_compile", values["jit_compile"])
    if "implementation" in values:
        fused.check_implementation(values["implementation"])


def _get(module, name, value):
    """``value`` as the layer stores it: by the argument's kind (`KINDS`)."""
    kind = KINDS.get(name)
    if kind is None:
        return value
    if kind == "initializers" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = module.initializers.Constant(value)
    return getattr(module, kind).get(value)


def store(layer, module, values):
    """Sets ``layer.<name>`` for each argument of ``values`` (a dict), converted by its
    kind with ``module`` (``keras`` or ``tf.keras``); ``meta_loss_weight`` as a float. An
    argument that the layer exposes as a read-only property (``controller_dtype``) is
    skipped: the layer sets what the property reads."""
    for name, value in values.items():
        if isinstance(getattr(type(layer), name, None), property):
            continue
        if name == "meta_loss_weight":
            value = float(value)
        setattr(layer, name, _get(module, name, value))


def take(layer, module, values):
    """What a cell does with its constructor arguments ``values`` (a dict, every argument of
    its signature): `check` them, `store` them as attributes, and remember their names
    (``layer._argument_names``) for ``get_config`` (`config`)."""
    check(values)
    layer._argument_names = tuple(values)
    store(layer, module, values)


def config(layer, module, argument_names):
    """``get_config``'s entries for the arguments ``argument_names``: each read from
    ``layer`` (the attribute of its name) and serialised by its kind."""
    entries = {}
    for name in argument_names:
        value = getattr(layer, name)
        kind = KINDS.get(name)
        entries[name] = value if kind is None else getattr(module, kind).serialize(value)
    return entries
