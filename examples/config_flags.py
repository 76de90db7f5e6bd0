"""Command-line flags generated from an example's config dataclass.

Every example script has one frozen dataclass, ``Config``, whose fields are its
hyperparameters (each with a default and a help text), and a function ``run(config)``.
This module turns the fields into absl flags of the same names and the parsed flags back
into a ``Config``, so that a hyperparameter is written once: in the dataclass. The run's
record (``metrics.json``) stores the same dataclass (`examples.training.RunRecorder`).

    @dataclasses.dataclass(frozen=True)
    class Config:
        train_steps: int = option(2000, "Optimizer steps.")
        model: str = option("mnm_p", "Model.", choices=("mnm_p", "lstm"))

    if __name__ == "__main__":
        config_flags.main(Config, run)

A ``ValueError`` raised by the config's ``__post_init__`` (a size or budget that makes no
sense) ends the script with absl's usage message instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from absl import app, flags


def option(default, help, choices=None):  # noqa: A002 (absl's name for it)
    """A config field with its default, its flag's help text and, for a string, its choices."""
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if isinstance(default, list):
        raise TypeError("Use a tuple, not a list, as a default: configs are frozen.")
    return dataclasses.field(default=default, metadata=metadata)


def _field_kind(annotation):
    """(base type, optional, sequence) of a field's annotation."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) != 1:
            raise TypeError(f"Unsupported config field type {annotation!r}.")
        optional = True
        annotation = arguments[0]
        origin = typing.get_origin(annotation)
    if origin is tuple:
        element = typing.get_args(annotation)[0]
        return element, optional, True
    return annotation, optional, False


def define_flags(config_class, flag_values=flags.FLAGS):
    """Defines one flag per field of ``config_class``, with the field's default and help."""
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        base, _, sequence = _field_kind(hints[field.name])
        default = field.default
        help_text = field.metadata.get("help", field.name)
        choices = field.metadata.get("choices")
        if sequence:
            value = None if default is None else [str(v) for v in default]
            flags.DEFINE_list(field.name, value, help_text, flag_values=flag_values)
        elif base is bool:
            flags.DEFINE_bool(field.name, default, help_text, flag_values=flag_values)
        elif base is int:
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif base is float:
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        elif base is str and choices:
            flags.DEFINE_enum(field.name, default, choices, help_text, flag_values=flag_values)
        elif base is str:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)
        else:
            raise TypeError(f"Config field {field.name!r} has an unsupported type {base!r}.")


def config_from_flags(config_class, flag_values=flags.FLAGS):
    """The ``config_class`` instance the parsed flags describe.

    Raises:
      app.UsageError: the config refuses the values (its ``__post_init__`` raised a
        ``ValueError``), so that absl prints the message with the usage line.
    """
    hints = typing.get_type_hints(config_class)
    values = {}
    for field in dataclasses.fields(config_class):
        base, _, sequence = _field_kind(hints[field.name])
        value = flag_values[field.name].value
        if sequence and value is not None:
            try:
                value = tuple(base(v) for v in value)
            except ValueError as error:
                raise app.UsageError(
                    f"--{field.name}={','.join(value)}: expected a comma-separated list of "
                    f"{base.__name__} values ({error})."
                ) from error
        values[field.name] = value
    try:
        return config_class(**values)
    except ValueError as error:
        raise app.UsageError(str(error)) from error


def main(config_class, run, summary=None):
    """Defines the flags of ``config_class`` and runs ``run(config)`` under ``absl.app``.

    Args:
      summary: optional function of what ``run`` returned, giving the line printed last.
    """
    define_flags(config_class)

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        result = run(config_from_flags(config_class))
        if summary is not None:
            print(summary(result), flush=True)

    app.run(_main)
