r"""Overlays the held-out error curves of several runs (their metrics.json) in one PNG.

python examples/plot_runs.py --runs=runs/lstm,runs/mnm_p --out=curves.png
python examples/plot_runs.py --runs='"(12, 8)=runs/d12","(16, 12)=runs/d16"' --out=curves.png

(``--runs`` is read as one CSV row: an item with a comma goes in double quotes.)

Works for the runs of ``examples/babi.py`` (held-out error ``1 - val_accuracy``) and of
``examples/algorithmic.py`` (held-out sequence error ``val_sequence_error``).
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from mnm_keras.plotting import plot_curves, split_label

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list("runs", [], "Run directories, each with a metrics.json, as DIR or LABEL=DIR.")
    flags.DEFINE_string("out", "curves.png", "PNG to write.")
    flags.DEFINE_string("title", "", "Plot title.")
    flags.DEFINE_bool("log_panel", False, "Add a panel with a log-scale error axis.")
    flags.DEFINE_string(
        "metric",
        None,
        "History column to plot (e.g. val_symbol_error); default: see held_out_error.",
    )


def held_out_error(row):
    """A history row's held-out error: ``val_sequence_error``, else ``1 - val_accuracy``."""
    if "val_sequence_error" in row:
        return row["val_sequence_error"]
    return 1 - row["val_accuracy"]


def plot_runs(run_dirs, out, title="", log_panel=False, metric=None):
    """Plots the held-out error per epoch of every run (each over its own steps).

    ``run_dirs`` items are ``DIR`` (labelled with the run's model) or ``LABEL=DIR`` (the
    label ends at the first ``=``); two curves may not share a label. ``metric`` names a
    history column to plot instead of `held_out_error`. Returns the figure.
    """
    curves, steps, chance = {}, {}, None
    for item in run_dirs:
        label, run_dir = split_label(item, "runs", "DIR or LABEL=DIR")
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        history = metrics["history"]
        per_epoch = metrics["train_steps"] // len(history)
        label = label or metrics["model"]
        if label in curves:
            raise ValueError(
                f"`runs` item {item!r}: the label {label!r} is taken by an earlier run; "
                "name each run as LABEL=DIR."
            )
        steps[label] = [(row["epoch"] + 1) * per_epoch for row in history]
        if metric is not None and any(metric not in row for row in history):
            raise ValueError(f"`metric` {metric!r} is not in the history of {run_dir}.")
        curves[label] = [row[metric] if metric else held_out_error(row) for row in history]
        chance = metrics.get("chance_error", chance)
    reference = None if chance is None else ("chance", chance)
    ylabel = metric or "held-out error"
    return plot_curves(out, steps, curves, title, "training step", ylabel, reference, log_panel)


def main(argv):
    del argv
    if not FLAGS.runs:
        raise app.UsageError("--runs must name at least one run directory.")
    plot_runs(FLAGS.runs, FLAGS.out, FLAGS.title, FLAGS.log_panel, FLAGS.metric)


if __name__ == "__main__":
    define_flags()
    app.run(main)
