r"""Overlays the held-out error curves of several runs (their metrics.json) in one PNG.

python examples/plot_runs.py --runs=runs/lstm,runs/mnm_p --out=curves.png
python examples/plot_runs.py --runs='"(12, 8)=runs/d12","(16, 12)=runs/d16"' --out=curves.png

(``--runs`` is read as one CSV row: an item with a comma goes in double quotes.)

Reads the run records (`examples.training.RunRecorder`: ``config``, ``results``,
``history``) of ``examples/algorithmic.py`` (held-out sequence error
``val_sequence_error``), ``examples/babi.py`` (validation answer-word error
``val_word_error``) and ``examples/associative_recall.py`` (held-out error
``1 - val_accuracy``, with its chance level). Every flag is a field of `Config`.
"""

from __future__ import annotations

import dataclasses
import json
import os

try:  # run as a script (python examples/plot_runs.py) or as a module (-m)
    from examples.config_flags import main, option
    from examples.plotting import plot_curves
except ImportError:  # pragma: no cover
    from config_flags import main, option
    from plotting import plot_curves


@dataclasses.dataclass(frozen=True)
class Config:
    """Which runs, and the plot; every field is a flag of the same name."""

    runs: tuple[str, ...] = option(
        (), "Run directories, each with a metrics.json, as DIR or LABEL=DIR."
    )
    out: str = option("curves.png", "PNG to write.")
    title: str = option("", "Plot title.")
    log_panel: bool = option(False, "Add a panel with a log-scale error axis.")
    metric: str | None = option(
        None, "History column to plot (e.g. val_symbol_error); default: see held_out_error."
    )

    def __post_init__(self):
        if not self.runs:
            raise ValueError(
                f"`runs` must name at least one run directory; received runs={self.runs!r}."
            )
        object.__setattr__(self, "runs", tuple(self.runs))  # a list given in Python


def split_label(item, argument, form, required=False):
    """Splits a command-line item ``LABEL=VALUE`` at its first ``=`` into (label, value).

    An item without ``=`` is ``(None, item)`` unless ``required``. ``argument`` (the flag's
    name) and ``form`` (e.g. ``"DIR or LABEL=DIR"``) word the error on a malformed item.
    """
    label, sep, value = item.partition("=")
    if not sep and not required:
        return None, item
    if not sep or not label or not value:
        raise ValueError(f"`{argument}` items must be {form}; received {item!r}.")
    return label, value


def held_out_error(row):
    """A history row's held-out error: ``val_sequence_error``, else ``val_word_error``,
    else ``1 - val_accuracy``."""
    for name in ("val_sequence_error", "val_word_error"):
        if name in row:
            return row[name]
    return 1 - row["val_accuracy"]


def plot_runs(run_dirs, out, title="", log_panel=False, metric=None):
    """Plots the held-out error per epoch of every run (each over its own steps).

    ``run_dirs`` items are ``DIR`` (labelled with the run's model) or ``LABEL=DIR`` (the
    label ends at the first ``=``); two curves may not share a label. ``metric`` names a
    history column to plot instead of `held_out_error`. A run whose ``results`` have a
    ``chance_error`` draws it as a reference line. Returns the figure.
    """
    curves, steps, chance = {}, {}, None
    for item in run_dirs:
        label, run_dir = split_label(item, "runs", "DIR or LABEL=DIR")
        with open(os.path.join(run_dir, "metrics.json")) as f:
            record = json.load(f)
        history = record["history"]
        label = label or record["config"]["model"]
        if label in curves:
            raise ValueError(
                f"`runs` item {item!r}: the label {label!r} is taken by an earlier run; "
                "name each run as LABEL=DIR."
            )
        steps[label] = [row["step"] for row in history]
        if metric is not None and any(metric not in row for row in history):
            raise ValueError(f"`metric` {metric!r} is not in the history of {run_dir}.")
        curves[label] = [row[metric] if metric else held_out_error(row) for row in history]
        chance = record["results"].get("chance_error", chance)
    reference = None if chance is None else ("chance", chance)
    ylabel = metric or "held-out error"
    return plot_curves(out, steps, curves, title, "training step", ylabel, reference, log_panel)


def run(config):
    """`plot_runs` with the fields of ``config``; returns the figure."""
    return plot_runs(config.runs, config.out, config.title, config.log_panel, config.metric)


if __name__ == "__main__":
    main(Config, run)
