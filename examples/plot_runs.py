r"""Overlays the held-out error curves of several runs (their metrics.json) in one PNG.

python examples/plot_runs.py --runs=runs/lstm,runs/mnm_p --out=curves.png
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from mnm_keras.plotting import plot_curves

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list("runs", [], "Run directories, each with a metrics.json.")
    flags.DEFINE_string("out", "curves.png", "PNG to write.")
    flags.DEFINE_string("title", "", "Plot title.")


def plot_runs(run_dirs, out, title=""):
    """Plots ``1 - val_accuracy`` per epoch of every run; labels are the runs' models."""
    curves, steps, chance = {}, None, None
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        history = metrics["history"]
        per_epoch = metrics["train_steps"] // len(history)
        steps = [(row["epoch"] + 1) * per_epoch for row in history]
        curves[metrics["model"]] = [1 - row["val_accuracy"] for row in history]
        chance = metrics.get("chance_error", chance)
    reference = None if chance is None else ("chance", chance)
    plot_curves(out, steps, curves, title, "training step", "held-out error", reference)


def main(argv):
    del argv
    if not FLAGS.runs:
        raise app.UsageError("--runs must name at least one run directory.")
    plot_runs(FLAGS.runs, FLAGS.out, FLAGS.title)


if __name__ == "__main__":
    define_flags()
    app.run(main)
