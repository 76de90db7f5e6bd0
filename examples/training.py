"""What the example scripts share: resumable `fit` callbacks, history, curves, metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import typing

import keras
import numpy as np

from mnm_keras.core import check_positive_int

try:  # imported as examples.training, or as training by a script run as a file
    from examples.results import HISTORY_FILE, PROTOCOL, last_step, read_history
except ImportError:  # pragma: no cover
    from results import HISTORY_FILE, PROTOCOL, last_step, read_history


class RunProgress(keras.callbacks.Callback):
    """Logs each epoch's wall time and step; stops training after ``train_steps`` steps.

    Adds ``epoch_seconds`` (the epoch's wall time, evaluation included) and ``step`` (the
    optimizer steps taken so far, over every invocation of a resumed run) to the epoch's
    logs. With ``train_steps``, training stops once the optimizer has taken that many
    steps: a budget that is not a whole number of epochs ends with a shorter epoch, which
    is evaluated, logged and checkpointed like the others.
    """

    def __init__(self, train_steps=None):
        super().__init__()
        self._train_steps = train_steps

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._train_steps is not None and self._step() >= self._train_steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start
            logs["step"] = self._step()


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


class NonFiniteTrainingError(RuntimeError):
    """Training produced a non-finite loss, metric or weight (NaN or infinity).

    Attributes:
      step: the optimizer step (1 for the first update) after which it was seen.
      quantity: what was non-finite first: ``"loss"``, ``"meta_loss"``, another logged
        quantity, or ``"weight PATH"``.
    """

    def __init__(self, message, step=None, quantity=None):
        super().__init__(message)
        self.step = step
        self.quantity = quantity


def _variable_name(variable):
    return getattr(variable, "path", None) or getattr(variable, "name", repr(variable))


def non_finite_variables(variables):
    """``[(name, non-finite entries, entries)]`` of the variables holding a NaN or an
    infinity, in the order given (a Keras 3 or a TensorFlow variable: its ``path`` or
    ``name``)."""
    found = []
    for variable in variables:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        if not np.issubdtype(value.dtype, np.floating):
            continue
        bad = int(value.size - np.count_nonzero(np.isfinite(value)))
        if bad:
            found.append((_variable_name(variable), bad, int(value.size)))
    return found


def check_finite(step, quantities=None, variables=(), where="training"):
    """Raises `NonFiniteTrainingError` if a quantity or a variable is not finite.

    Args:
      step: the optimizer step just taken (named in the error).
      quantities: dict from name (``"loss"``, ``"meta_loss"``) to a number; checked first,
        in order (None values are skipped).
      variables: the weights to check after the step's update (checked when every
        quantity is finite; the error names the first non-finite one and counts the others).
      where: what is training, for the message (``"fit"``, ``"maze"``).

    Raises:
      NonFiniteTrainingError: naming the step and the first non-finite quantity or weight.
    """
    for name, value in (quantities or {}).items():
        if value is None:
            continue
        value = float(np.asarray(keras.ops.convert_to_numpy(value)))
        if not math.isfinite(value):
            raise NonFiniteTrainingError(
                f"{where}: non-finite {name} ({value}) at optimizer step {step}. Training "
                f"stops; the last checkpoint holds finite weights. {_ADVICE}",
                step=step,
                quantity=name,
            )
    bad = non_finite_variables(variables)
    if bad:
        name, count, size = bad[0]
        others = f" (and {len(bad) - 1} other weights)" if len(bad) > 1 else ""
        raise NonFiniteTrainingError(
            f"{where}: the weight {name!r} has {count} non-finite entries of {size}{others} "
            f"after the update of optimizer step {step} (its losses were finite). Training "
            f"stops; the last checkpoint holds finite weights. {_ADVICE}",
            step=step,
            quantity=f"weight {name}",
        )


_ADVICE = (
    "See docs/design.md, 'Non-finite training': normalised writes, a smaller rate bias or "
    "gradient clipping (--gradient_clipping) keep the memory's writes bounded."
)


class StopOnNonFinite(keras.callbacks.Callback):
    """Ends `fit` with `NonFiniteTrainingError` at the first non-finite loss or weight.

    Like ``keras.callbacks.TerminateOnNaN(raise_error=True)``, but it also checks the
    logged ``meta_loss`` (the MNM's equation 5) and every weight after each step, and its
    error names the optimizer step and the first non-finite quantity (``loss``,
    ``meta_loss`` or the weight's path). Raised from ``on_train_batch_end``, it comes
    before the epoch's end, so `keras.callbacks.BackupAndRestore` never checkpoints a
    non-finite state; at the epoch's end it checks the weights again before the
    callbacks after it (put it first).

    Args:
      quantities: the logged values checked after every step, in this order.
    """

    def __init__(self, quantities=("loss", "meta_loss")):
        super().__init__()
        self._quantities = tuple(quantities)

    def _check(self, logs):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        logs = logs or {}
        check_finite(
            step,
            {name: logs.get(name) for name in self._quantities},
            self.model.weights,
            where="fit",
        )

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check({})


@contextlib.contextmanager
def closing_streams():
    """Frees the training streams' iterators when the block ends, also on an error.

    `fit` leaves its data iterator in a reference cycle, so it lives on until a garbage
    collection, or until the interpreter exits: a ``tf.data`` prefetch thread inside a
    Python generator (``Dataset.from_generator``) then keeps the process from exiting.
    Wrap `fit` in this block: the iterators are collected while the interpreter is alive
    (after an error too, whose traceback would otherwise hold `fit`'s frame).
    """
    try:
        yield
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)
        raise
    finally:
        gc.collect()


@contextlib.contextmanager
def recording_divergence(recorder):
    """Writes ``recorder``'s record of a diverged run (`RunRecorder.diverged`) when the
    block raises `NonFiniteTrainingError`, which then goes on (the script fails, and its
    ``model_dir/metrics.json`` says where and how training diverged)."""
    try:
        yield
    except NonFiniteTrainingError as error:
        recorder.diverged(error)
        raise


class HistoryLogger(keras.callbacks.Callback):
    """Appends each epoch's logs to ``model_dir/history.jsonl`` as one JSON row.

    The row holds ``epoch`` and every value of the epoch's logs (those `RunProgress` and
    `KeepLearningRate` add among them) as numbers, NaN as None; the file is opened, appended
    and closed at every epoch, so that a killed run loses no finished epoch, and a resumed
    run appends the epochs it trains again (`read_history` keeps an epoch's last row).
    """

    def __init__(self, model_dir):
        super().__init__()
        self.path = os.path.join(model_dir, HISTORY_FILE)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": int(epoch)}
        for name, value in sorted((logs or {}).items()):
            value = np.asarray(keras.ops.convert_to_numpy(value), np.float64)
            value = [None if np.isnan(v) else float(v) for v in value.reshape(-1)]
            row[name] = value[0] if len(value) == 1 else value
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def resumable_callbacks(model_dir, train_steps=None):
    """Callbacks that make a rerun of the same command resume, and log the run.

    * `StopOnNonFinite` first: a non-finite loss, meta loss or weight ends the run with
      `NonFiniteTrainingError` before the epoch is checkpointed, so the backup keeps the
      last finite state;
    * `keras.callbacks.BackupAndRestore` in ``model_dir/backup``, kept after a finished run
      (``delete_checkpoint=False``) so that a rerun continues from the last finished epoch
      instead of starting again (after an interruption: the same run; after a finished
      run: only the epochs a larger budget adds), with the previous epoch's checkpoint
      beside the latest (``double_checkpoint``), so that a process killed while it writes
      a checkpoint resumes from the one before;
    * `KeepLearningRate`: a rerun trains at the learning rate the new command compiled
      (a finished run can be continued at a lower one), logged per epoch;
    * `RunProgress` and `HistoryLogger`, appending one row per epoch (with its
      ``epoch_seconds``, ``step`` and ``learning_rate``) to ``model_dir/history.jsonl``;
      with ``train_steps``, training stops after that many optimizer steps (see
      `plan_budget` for the number of epochs to pass to `fit`);
    * `keras.callbacks.TensorBoard` logs in ``model_dir/logs``.
    """
    os.makedirs(model_dir, exist_ok=True)
    legacy = os.path.join(model_dir, "history.csv")
    if os.path.exists(legacy) and not os.path.exists(os.path.join(model_dir, HISTORY_FILE)):
        raise ValueError(
            f"{model_dir!r} holds history.csv, the per-epoch log of an earlier version of "
            f"these scripts, which log to {HISTORY_FILE}: train in a new model_dir, or "
            "convert the log (one JSON object per row) to resume it."
        )
    return [
        StopOnNonFinite(),  # first: before the backup checkpoints the epoch
        # double_checkpoint: a kill while the latest checkpoint is written leaves an
        # unreadable file; the rerun then resumes from the previous one.
        keras.callbacks.BackupAndRestore(
            backup_dir(model_dir), delete_checkpoint=False, double_checkpoint=True
        ),
        KeepLearningRate(),  # after the restore; before the logger
        RunProgress(train_steps),  # before the logger, which writes the logs it adds
        HistoryLogger(model_dir),
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


class SelectBest(keras.callbacks.Callback):
    """Model selection on a validation metric (lower is better), across resumed runs.

    Like ``keras.callbacks.EarlyStopping(monitor, patience=patience, mode="min",
    restore_best_weights=True)``, but its state is on disk, so that a run resumed by
    `resumable_callbacks` selects over all its epochs: at every epoch whose ``monitor``
    is below the best so far it writes the weights to ``model_dir/best.weights.h5`` and
    the epoch and value to ``model_dir/best.json``; it stops training once ``patience``
    epochs have passed without improvement; and at the end of training (also of a `fit`
    that trains no epoch) it sets the network's weights to the best epoch's (`warm_start`:
    the optimizer's state stays the latest). Put it after `resumable_callbacks`, whose
    `keras.callbacks.BackupAndRestore` must have restored the run first.

    A non-finite value is never selected.

    Args:
      model_dir: the run's directory.
      monitor: the key of the epoch logs to minimise, e.g. ``"val_word_error"``.
      patience: epochs without improvement before training stops.
    """

    def __init__(self, model_dir, monitor, patience):
        super().__init__()
        check_positive_int("patience", patience)
        self.model_dir, self.monitor, self.patience = model_dir, monitor, patience
        self.weights_path = os.path.join(model_dir, "best.weights.h5")
        self._note_path = os.path.join(model_dir, "best.json")

    def best(self):
        """``{"epoch", "monitor", "value"}`` of the run's best epoch so far, or None
        (before its first epoch; a selection left by an earlier run in ``model_dir`` that
        no checkpoint continues is not this run's)."""
        if not (completed_epochs(self.model_dir) and os.path.exists(self._note_path)):
            return None
        with open(self._note_path) as f:
            return json.load(f)

    def has_stopped(self):
        """Whether the run in ``model_dir`` has already run out of patience."""
        best = self.best()
        waited = completed_epochs(self.model_dir) - 1 - (best or {}).get("epoch", 0)
        return best is not None and waited >= self.patience

    def on_train_begin(self, logs=None):
        self._best = self.best()

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in (logs or {}):
            raise ValueError(
                f"SelectBest: `monitor` {self.monitor!r} is not in the epoch logs; "
                f"they have {sorted(logs or {})}."
            )
        value = float(logs[self.monitor])
        best = self._best
        if math.isfinite(value) and (best is None or value < best["value"]):
            self.model.save_weights(self.weights_path)
            self._best = {"epoch": epoch, "monitor": self.monitor, "value": value}
            with open(self._note_path, "w") as f:
                json.dump(self._best, f)
        elif best is not None and epoch - best["epoch"] >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best is not None:
            warm_start(self.model, self.weights_path, argument="best weights")


class Budget(typing.NamedTuple):
    """How a run of ``train_steps`` optimizer steps continues (`plan_budget`).

    Attributes:
      done_steps: steps already trained in ``model_dir`` (0 for a new run); a data stream
        that is not part of the checkpoint skips the batches of these steps.
      epochs: the ``epochs`` argument of `fit` (it counts the restored epochs too).
    """

    done_steps: int
    epochs: int


def plan_budget(model_dir, train_steps, steps_per_epoch):
    """The `Budget` of a run of ``train_steps`` steps in epochs of ``steps_per_epoch``.

    The example scripts call it first, before building data or models. The last epoch is
    shorter when ``train_steps`` is not a multiple of ``steps_per_epoch`` (`RunProgress`
    stops it). A budget below the steps ``model_dir`` has already trained is refused: `fit`
    would train nothing and the run would be reported as ``train_steps`` long while its
    weights are those of its last checkpoint. A budget equal to them evaluates the run
    without training it.

    Raises:
      ValueError: ``train_steps`` or ``steps_per_epoch`` is not a positive integer, or
        ``train_steps`` is below the steps already trained.
    """
    check_positive_int("train_steps", train_steps)
    check_positive_int("steps_per_epoch", steps_per_epoch)
    epochs = completed_epochs(model_dir)
    done = epochs * steps_per_epoch
    for row in read_history(model_dir):
        # The logged step of the last restored epoch (shorter when it ended a budget).
        if row["epoch"] == epochs - 1 and row.get("step") is not None:
            done = int(row["step"])
    if done > train_steps:
        raise ValueError(
            f"`train_steps` ({train_steps}) is below the {done} steps that {model_dir!r} "
            f"has already trained ({epochs} epochs); pass `train_steps` >= {done} (equal "
            "evaluates the run without training)."
        )
    return Budget(done, epochs + math.ceil((train_steps - done) / steps_per_epoch))


def _commit():
    """The checkout's commit (with ``-dirty`` for uncommitted changes), or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def _command_line():
    """``sys.argv`` with the script's path relative to the repository (``examples/X.py``),
    so that a record names no directory of the machine that ran it."""
    argv = list(sys.argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if argv and os.path.isabs(argv[0]) and argv[0].startswith(root + os.sep):
        argv[0] = os.path.relpath(argv[0], root)
    return argv


def hardware():
    """What ran the run: CPU, cores, accelerators, Python, TensorFlow and Keras versions."""
    import tensorflow as tf

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def _non_finite_results(results, prefix=""):
    """The names (``key`` or ``key[i]``) of the non-finite numbers in ``results``."""
    bad = []
    for key, value in results.items():
        if isinstance(value, (list, tuple)):
            items = [(f"{prefix}{key}[{i}]", item) for i, item in enumerate(value)]
        else:
            items = [(f"{prefix}{key}", value)]
        for name, item in items:
            if isinstance(item, dict):
                bad += _non_finite_results(item, prefix=f"{name}.")
            elif isinstance(item, (int, float, np.number)) and not math.isfinite(float(item)):
                bad.append(name)
    return bad


def _config_dict(config):
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def check_protocol(model_dir, invocations):
    """Raises ValueError when ``model_dir`` holds a run started under another training
    protocol (`examples.results.PROTOCOL`; an invocation without one is protocol 1):
    resuming it would train one run under two objectives."""
    protocols = sorted({int(i.get("protocol", 1)) for i in invocations} - {PROTOCOL})
    if protocols:
        raise ValueError(
            f"`model_dir` ({model_dir!r}) holds a run of training protocol "
            f"{protocols[0]}, and this is protocol {PROTOCOL} "
            "(examples.results.PROTOCOLS says what changed): resuming it would train one "
            "run under two objectives. Start the run in a new model_dir, or move the old one "
            "away."
        )


class RunRecorder:
    """Writes a run's record, ``model_dir/metrics.json``, from its config and results.

    Made at the start of every invocation of a run (the first and each resume): it adds
    the invocation (command line, configuration, commit, hardware, the step it started
    from, the training protocol) to ``model_dir/invocations.json``, and refuses to resume a
    run of another training protocol (`check_protocol`); `finish` adds its wall time and
    writes the record:

    * ``task``, ``config`` (every field of the run's config), ``results`` (the final
      evaluation), ``train_steps`` (the steps trained), ``wall_seconds`` (the training time
      over every invocation: the sum of the logged epoch times);
    * ``history``: the per-epoch rows of ``history.jsonl``;
    * ``invocations``: every invocation, resumes included, each with its command line,
      configuration, commit, hardware, first step and wall time (None for one that was
      killed before it finished);
    * ``commit`` and ``hardware`` of the last invocation;
    * ``protocol``: the training protocol (`examples.results.PROTOCOL`), which the docs'
      tables keep apart.

    `examples.results` renders the documentation's tables and figures from these records.
    """

    def __init__(self, model_dir, task, config, start_step=0):
        self.model_dir = model_dir
        self.task = task
        self.config = _config_dict(config)
        os.makedirs(model_dir, exist_ok=True)
        self._start = time.perf_counter()
        self._invocations = self._read_invocations()
        check_protocol(model_dir, self._invocations)
        self._invocations.append(
            {
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "argv": _command_line(),
                "config": self.config,
                "start_step": int(start_step),
                "commit": _commit(),
                "hardware": hardware(),
                "wall_seconds": None,
                "protocol": PROTOCOL,
            }
        )
        self._write_invocations()

    @property
    def _invocations_path(self):
        return os.path.join(self.model_dir, "invocations.json")

    def _read_invocations(self):
        if not os.path.exists(self._invocations_path):
            return []
        with open(self._invocations_path) as f:
            return json.load(f)

    def _write_invocations(self):
        with open(self._invocations_path, "w") as f:
            json.dump(self._invocations, f, indent=2)

    def _write(self, results, history=None, **fields):
        """Writes and returns the record (``fields`` added or replacing its own), ending
        the invocation."""
        self._invocations[-1]["wall_seconds"] = round(time.perf_counter() - self._start, 1)
        self._write_invocations()
        if history is None:
            history = read_history(self.model_dir)
        last = self._invocations[-1]
        record = {
            "task": self.task,
            "config": self.config,
            "results": results,
            "train_steps": int(history[-1]["step"]) if history else 0,
            "wall_seconds": round(sum(row["epoch_seconds"] for row in history), 1),
            "commit": last["commit"],
            "hardware": last["hardware"],
            "invocations": self._invocations,
            "history": history,
            "protocol": PROTOCOL,
            **fields,
        }
        with open(os.path.join(self.model_dir, "metrics.json"), "w") as f:
            json.dump(record, f, indent=2)
        return record

    def diverged(self, error, history=None):
        """Writes the record of a run that training stopped at a non-finite loss, metric or
        weight (`NonFiniteTrainingError`), and returns it.

        Such a run is an outcome, not a failure to record: the same seed diverges again at
        the same step, so the tables count it (a seed that did not solve the task) instead
        of leaving it out. Its ``results`` are empty, ``train_steps`` is the step at which
        training diverged, ``history`` holds the epochs before it, and ``diverged`` is
        ``{"step", "quantity", "message"}`` from the error.
        """
        history = read_history(self.model_dir) if history is None else history
        step = error.step if error.step is not None else last_step(history)
        return self._write(
            {},
            history,
            train_steps=int(step),
            diverged={"step": int(step), "quantity": error.quantity, "message": str(error)},
        )

    def finish(
        self,
        results,
        curves=None,
        title=None,
        ylabel=None,
        reference=None,
        history=None,
        model=None,
        stopped_early=False,
    ):
        """Writes ``metrics.json`` and, with ``curves``, ``curve.png``; returns the record.

        A result from non-finite weights is refused: nothing is written when a number of
        ``results`` or a weight of ``model`` is NaN or infinite.

        Args:
          results: the final evaluation, a dict of metric name to number (or to lists of
            numbers, None for a value not measured).
          model: the trained network (its weights are checked), or None.
          history: the per-epoch rows, for a run that does not train with `fit` and
            `resumable_callbacks` (default: ``model_dir/history.jsonl``); each row has an
            ``epoch``, the ``step`` it ended at and its ``epoch_seconds``.
          curves: dict from legend label to a function of a history row giving its y value;
            ``curve.png`` has a linear panel and a log-scale one (the tail of an error
            near zero).
          stopped_early: whether early stopping (`SelectBest`) ended training: the record
            then has ``stopped_early``, ``{"step"}`` (its ``train_steps``), and the run is
            over at any budget above that step (`examples.reproduce`).
        """
        bad = _non_finite_results(results)
        if bad:
            raise NonFiniteTrainingError(
                f"{self.model_dir}: non-finite results {bad}; no record is written.",
                quantity=bad[0],
            )
        if model is not None:
            check_finite(None, variables=model.weights, where=f"{self.model_dir} (final weights)")
        if stopped_early:
            history = read_history(self.model_dir) if history is None else history
            record = self._write(results, history, stopped_early={"step": last_step(history)})
        else:
            record = self._write(results, history)
        history = record["history"]
        if history and curves:
            try:
                from examples.plotting import plot_curves
            except ImportError:  # pragma: no cover (a script run as a file)
                from plotting import plot_curves

            plot_curves(
                os.path.join(self.model_dir, "curve.png"),
                [row["step"] for row in history],
                {label: [fn(row) for row in history] for label, fn in curves.items()},
                title=title,
                xlabel="training step",
                ylabel=ylabel,
                reference=reference,
                log_panel=True,
            )
        return record
