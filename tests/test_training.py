"""mnm_keras.training: resumed runs train at the requested learning rate and log it."""

import csv
import os

import keras
import numpy as np
import pytest

from mnm_keras import training


def _model(learning_rate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(learning_rate), "mse")
    return model


def _fit(model, model_dir, epochs):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model.fit(
        x, x[:, :1], epochs=epochs, batch_size=4, verbose=0,
        callbacks=training.resumable_callbacks(model_dir),
    )  # fmt: skip


def test_resumed_run_trains_at_the_new_learning_rate(tmp_path):
    model_dir = str(tmp_path)
    _fit(_model(1e-2), model_dir, epochs=1)
    # A rerun with a larger budget and a lower rate: BackupAndRestore restores the first
    # run's optimizer (learning rate 1e-2 included); the second epoch must use 1e-3.
    model = _model(1e-3)
    _fit(model, model_dir, epochs=2)
    history = training.read_history(model_dir)
    assert [row["epoch"] for row in history] == [0, 1]
    np.testing.assert_allclose([row["learning_rate"] for row in history], [1e-2, 1e-3])
    np.testing.assert_allclose(float(model.optimizer.learning_rate.numpy()), 1e-3)
    # The restore did happen: the optimizer's step counter went on from the first run.
    assert int(model.optimizer.iterations.numpy()) == 4


def test_older_history_without_learning_rate_gets_the_column(tmp_path):
    model_dir = str(tmp_path)
    _fit(_model(1e-2), model_dir, epochs=1)
    path = os.path.join(model_dir, "history.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    # Rewrite it as an older version logged it: no learning_rate column.
    keys = [key for key in rows[0] if key != "learning_rate"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    _fit(_model(1e-2), model_dir, epochs=2)
    history = training.read_history(model_dir)
    assert [row["epoch"] for row in history] == [0, 1]
    assert history[0]["learning_rate"] is None
    np.testing.assert_allclose(history[1]["learning_rate"], 1e-2)
    np.testing.assert_allclose(history[0]["loss"], float(rows[0]["loss"]))
    assert all(np.isfinite(row["loss"]) for row in history)


def test_warm_start_takes_the_weights_and_not_the_optimizer(tmp_path):
    source = str(tmp_path / "source")
    trained = _model(1e-2)
    _fit(trained, source, epochs=2)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    assert not np.allclose(model.get_weights()[0], trained.get_weights()[0])
    training.warm_start(model, source)
    for a, b in zip(model.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(a, b)
    # A new optimizer: no steps, the compiled learning rate.
    assert int(model.optimizer.iterations.numpy()) == 0
    np.testing.assert_allclose(float(model.optimizer.learning_rate.numpy()), 1e-3)
    # A weights file works as well as a model_dir.
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    training.warm_start(other, training.checkpoint_path(source))
    np.testing.assert_array_equal(other.get_weights()[0], trained.get_weights()[0])


def test_warm_start_errors_name_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`init_from` \('.*nowhere'\): no checkpoint"):
        training.warm_start(_model(1e-3), str(tmp_path / "nowhere"))
    source = str(tmp_path / "source")
    _fit(_model(1e-2), source, epochs=1)
    wider = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"`init_from` \('.*source'\): the checkpoint .* does not"):
        training.warm_start(wider, source)


def test_a_checkpoint_cut_short_by_a_kill_resumes_from_the_previous_one(tmp_path):
    model_dir = str(tmp_path)
    _fit(_model(1e-2), model_dir, epochs=2)
    latest = training.checkpoint_path(model_dir)
    with open(latest, "r+b") as f:  # as a process killed while writing it leaves it
        f.truncate(96)
    model = _model(1e-2)
    _fit(model, model_dir, epochs=3)
    # The rerun restored the checkpoint of the first epoch and trained epochs 1 and 2.
    assert int(model.optimizer.iterations.numpy()) == 6
    assert [row["epoch"] for row in training.read_history(model_dir)] == [0, 1, 2]
