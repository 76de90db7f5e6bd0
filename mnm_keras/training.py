"""What the example scripts share: resumable `fit` callbacks, history, curves, metrics."""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np

from mnm_keras.plotting import plot_curves


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (the epoch's wall time, evaluation included) to the logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


def resumable_callbacks(model_dir):
    """Callbacks that make a rerun of the same command resume, and log the run.

    * `keras.callbacks.BackupAndRestore` in ``model_dir/backup``, kept after a finished run
      (``delete_checkpoint=False``) so that a rerun continues from the last finished epoch
      instead of starting again (after an interruption: the same run; after a finished
      run: only the epochs a larger budget adds);
    * `EpochTimer` and `keras.callbacks.CSVLogger`, appending one row per epoch (with its
      ``epoch_seconds``) to ``model_dir/history.csv``;
    * `keras.callbacks.TensorBoard` logs in ``model_dir/logs``.
    """
    os.makedirs(model_dir, exist_ok=True)
    return [
        keras.callbacks.BackupAndRestore(
            os.path.join(model_dir, "backup"), delete_checkpoint=False
        ),
        EpochTimer(),  # before the CSV logger, which writes the logs it adds
        keras.callbacks.CSVLogger(os.path.join(model_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
    ]


def read_history(model_dir):
    """Per-epoch rows of ``model_dir/history.csv``, one per epoch, in order.

    The log survives restarts; an epoch logged twice (resumed) keeps its last row.
    """
    path = os.path.join(model_dir, "history.csv")
    if not os.path.exists(path):
        return []
    rows = {}
    data = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
    for record in data:
        row = {name: float(record[name]) for name in data.dtype.names}
        row["epoch"] = int(row["epoch"])
        rows[row["epoch"]] = row
    return [rows[k] for k in sorted(rows)]


def finish_run(model_dir, metrics, steps_per_epoch, curves, title, ylabel, reference=None):
    """Writes ``metrics.json`` (with the per-epoch ``history``) and ``curve.png``.

    ``wall_seconds`` becomes the sum of the logged epoch times, so that a resumed run
    reports all of its training time (this invocation's time is kept as
    ``session_wall_seconds``).

    Args:
      curves: dict from legend label to a function of a history row giving its y value.
    """
    history = read_history(model_dir)
    metrics = {**metrics, "history": history}
    if history and all("epoch_seconds" in row for row in history):
        # Training time over every invocation of a resumed run, not only the last one.
        metrics["session_wall_seconds"] = metrics.get("wall_seconds")
        metrics["wall_seconds"] = round(sum(row["epoch_seconds"] for row in history), 1)
    with open(os.path.join(model_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    if history:
        steps = [(row["epoch"] + 1) * steps_per_epoch for row in history]
        plot_curves(
            os.path.join(model_dir, "curve.png"),
            steps,
            {label: [fn(row) for row in history] for label, fn in curves.items()},
            title=title,
            xlabel="training step",
            ylabel=ylabel,
            reference=reference,
        )
    return metrics
