"""What the example scripts share: resumable `fit` callbacks, history, curves, metrics."""

from __future__ import annotations

import csv
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


class KeepLearningRate(keras.callbacks.Callback):
    """Trains at the learning rate the model was compiled with, also after a restore.

    `keras.callbacks.BackupAndRestore` restores the optimizer's variables, its learning
    rate among them, so without this callback a resumed run would keep the learning rate of
    the interrupted one whatever the new command asked for (and report the new one). Put
    after `BackupAndRestore`: at the start of training it sets the compiled learning rate
    again (saying so when it differs from the restored one), and it adds the epoch's
    ``learning_rate`` to the logs. Optimizers with a schedule are left alone.
    """

    def set_model(self, model):
        super().set_model(model)
        # The first call comes before BackupAndRestore's on_train_begin: the compiled rate.
        rate = _rate_variable(model)
        if rate is not None and not hasattr(self, "_compiled"):
            self._compiled = float(rate.numpy())

    def on_train_begin(self, logs=None):
        rate = _rate_variable(self.model)
        if rate is None or not hasattr(self, "_compiled"):
            return
        restored = float(rate.numpy())
        if not np.isclose(restored, self._compiled, rtol=1e-6, atol=0.0):
            print(
                f"KeepLearningRate: the restored optimizer had learning rate {restored:g}; "
                f"training on at the requested {self._compiled:g}.",
                flush=True,
            )
            rate.assign(self._compiled)

    def on_epoch_end(self, epoch, logs=None):
        rate = _rate_variable(self.model)
        if logs is not None and rate is not None:
            logs["learning_rate"] = float(rate.numpy())


def _rate_variable(model):
    """The optimizer's learning-rate variable, or None (no optimizer, or a schedule)."""
    rate = getattr(getattr(model, "optimizer", None), "learning_rate", None)
    return rate if isinstance(rate, keras.Variable) else None


def _add_history_column(path, name):
    """Adds an empty column ``name`` to an existing ``history.csv`` that lacks it.

    `keras.callbacks.CSVLogger` appends rows under the file's first header with its keys in
    sorted order; a log written before ``name`` was logged would otherwise get misaligned
    rows.
    """
    if not os.path.exists(path) or not os.path.getsize(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    if name in header:
        return
    new_header = ["epoch", *sorted([*header[1:], name])]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(new_header)
        for row in rows[1:]:
            values = dict(zip(header, row))
            writer.writerow([values.get(key, "") for key in new_header])


def resumable_callbacks(model_dir):
    """Callbacks that make a rerun of the same command resume, and log the run.

    * `keras.callbacks.BackupAndRestore` in ``model_dir/backup``, kept after a finished run
      (``delete_checkpoint=False``) so that a rerun continues from the last finished epoch
      instead of starting again (after an interruption: the same run; after a finished
      run: only the epochs a larger budget adds), with the previous epoch's checkpoint
      beside the latest (``double_checkpoint``), so that a process killed while it writes
      a checkpoint resumes from the one before;
    * `KeepLearningRate`: a rerun trains at the learning rate the new command compiled
      (a finished run can be continued at a lower one), logged per epoch;
    * `EpochTimer` and `keras.callbacks.CSVLogger`, appending one row per epoch (with its
      ``epoch_seconds`` and ``learning_rate``) to ``model_dir/history.csv``;
    * `keras.callbacks.TensorBoard` logs in ``model_dir/logs``.
    """
    os.makedirs(model_dir, exist_ok=True)
    _add_history_column(os.path.join(model_dir, "history.csv"), "learning_rate")
    return [
        # double_checkpoint: a kill while the latest checkpoint is written leaves an
        # unreadable file; the rerun then resumes from the previous one.
        keras.callbacks.BackupAndRestore(
            backup_dir(model_dir), delete_checkpoint=False, double_checkpoint=True
        ),
        KeepLearningRate(),  # after the restore; before the CSV logger
        EpochTimer(),  # before the CSV logger, which writes the logs it adds
        keras.callbacks.CSVLogger(os.path.join(model_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
    ]


def backup_dir(model_dir):
    """Where `resumable_callbacks`' `BackupAndRestore` keeps the run's latest state
    (``latest.weights.h5``, ``training_metadata.json``)."""
    return os.path.join(model_dir, "backup")


def checkpoint_path(source):
    """The weights file of ``source``: a run's ``model_dir`` (its latest checkpoint,
    ``model_dir/backup/latest.weights.h5``) or a ``.weights.h5`` file."""
    if source.endswith(".weights.h5"):
        return source
    return os.path.join(backup_dir(source), "latest.weights.h5")


def warm_start(model, source, argument="init_from"):
    """Sets ``model``'s weights to those of another run's checkpoint; its optimizer stays new.

    For a run that starts from where another stopped on a different task (a curriculum:
    dictionary inference with a larger support set, say) or with another optimizer: only
    the network's weights are taken (the Adam moments, step counter and learning rate of
    ``source`` are not), so the new run counts its steps from 0. The two networks must have
    the same layers and shapes. Also what loads a finished run's network for analysis.

    Args:
      model: a built Keras model.
      source: a run's ``model_dir`` (its latest checkpoint, see `resumable_callbacks`) or
        a ``.weights.h5`` file.
      argument: the caller's name for ``source``, used in the errors.

    Raises:
      FileNotFoundError: no checkpoint at ``source``.
      ValueError: the checkpoint's layers or shapes differ from ``model``'s.
    """
    path = checkpoint_path(source)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"`{argument}` ({source!r}): no checkpoint at {path!r}; expected a run's "
            "model_dir (with backup/latest.weights.h5) or a .weights.h5 file."
        )
    # The checkpoint may hold an optimizer's variables too: load it into an uncompiled
    # copy of the network, which has none, and take only the network's weights from it.
    twin = model.__class__.from_config(model.get_config())
    try:
        twin.load_weights(path)
    except ValueError as error:
        raise ValueError(
            f"`{argument}` ({source!r}): the checkpoint {path!r} does not fit the network "
            f"{model.name!r} (another model or other sizes?): {error}"
        ) from error
    model.set_weights(twin.get_weights())


def completed_epochs(model_dir):
    """Epochs that `keras.callbacks.BackupAndRestore` (in ``model_dir/backup``, see
    `resumable_callbacks`) will restore: the epoch a rerun of `fit` starts from (0 for a
    new run). A data stream that is not part of the checkpoint resumes from it."""
    path = os.path.join(backup_dir(model_dir), "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f)["epoch"])


def check_budget(model_dir, train_steps, steps_per_epoch):
    """Raises unless ``train_steps`` is a whole number of epochs not below the finished ones.

    The example scripts call it first, before building data or models. Below the steps
    that ``model_dir`` has already trained, `fit` would train nothing and the run would be
    reported as ``train_steps`` long while its weights are those of its last checkpoint. A
    budget equal to the finished steps evaluates the run without training it.

    Returns:
      The steps already trained (0 for a new run).
    """
    if train_steps % steps_per_epoch:
        raise ValueError(
            f"`train_steps` ({train_steps}) must be a multiple of `steps_per_epoch` "
            f"({steps_per_epoch})."
        )
    done = completed_epochs(model_dir) * steps_per_epoch
    if done > train_steps:
        raise ValueError(
            f"`train_steps` ({train_steps}) is below the {done} steps that {model_dir!r} "
            f"has already trained ({done // steps_per_epoch} epochs of {steps_per_epoch}); "
            f"pass `train_steps` >= {done} (equal evaluates the run without training)."
        )
    return done


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
        # An empty cell (a column added to an older log) reads as NaN: kept as None.
        row = {name: float(record[name]) for name in data.dtype.names}
        row = {name: None if np.isnan(value) else value for name, value in row.items()}
        row["epoch"] = int(row["epoch"])
        rows[row["epoch"]] = row
    return [rows[k] for k in sorted(rows)]


def finish_run(model_dir, metrics, steps_per_epoch, curves, title, ylabel, reference=None):
    """Writes ``metrics.json`` (with the per-epoch ``history``) and ``curve.png``.

    ``curve.png`` has a linear panel and a log-scale one (the tail of an error near zero).

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
            log_panel=True,
        )
    return metrics
