"""The task loss is the mean over answer positions, beside MNM's meta loss (equation 6).

Each example's model, built as its script builds it, starts at ln(number of classes) per
answer (ln 2 per bit for priority sort), the loss equals ``sum(w * l) / sum(w)`` computed
in NumPy for an uneven weight mask, through `evaluate` and `fit`, and MNM adds
``meta_loss_weight`` times its meta loss. Keras's default reduction,
``sum_over_batch_size``, would divide by every position (dictionary (4, 1): ln 26 / 19).
"""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from examples import algorithmic, associative_recall
from mnm_keras import MNM, datasets, tasks

TINY = dict(units=8, memory_units=6, memory_layers=2, key_size=6, num_heads=1)
BATCH = 4


def _algorithmic(task, model, meta_loss_weight=0.0):
    """``(task spec, network)`` as examples/algorithmic.py builds them (seed 0)."""
    config = algorithmic.Config(
        task=task, model=model, meta_loss_weight=meta_loss_weight, batch_size=BATCH, **TINY
    )
    spec = algorithmic.make_task(config)
    keras.utils.set_random_seed(0)
    return spec, algorithmic.build_model(spec, config)


def _chance_loss(spec):
    """ln(classes) per answer; ln 2 per bit (the loss of a position is its bits' mean)."""
    return math.log(2 if spec.output_type == "binary" else spec.output_size)


@pytest.mark.parametrize("model", ["lstm", "mnm_p", "mnm_g"])
@pytest.mark.parametrize("task", sorted(datasets.TASKS))
def test_initial_loss_is_ln_classes_per_answer(task, model):
    # meta_loss_weight=0: the loss is the task loss alone.
    spec, network = _algorithmic(task, model)
    x, y, w = spec.arrays(BATCH, seed=5)
    loss = network.evaluate(x, y, sample_weight=w, batch_size=BATCH, verbose=0, return_dict=True)[
        "loss"
    ]
    assert loss == pytest.approx(_chance_loss(spec), rel=0.1), (loss, _chance_loss(spec))


@pytest.mark.parametrize("model", ["lstm", "mnm_p"])
def test_associative_recall_initial_loss_is_ln_values(model):
    config = associative_recall.Config(model=model, meta_loss_weight=0.0, **TINY)
    x, y = tasks.associative_recall(
        BATCH, seed=5, num_pairs=4, num_keys=config.num_symbols, num_values=config.num_symbols
    )
    keras.utils.set_random_seed(0)
    network = associative_recall.build_model(config, x.shape[1], x.shape[-1])
    loss = network.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(math.log(config.num_symbols), rel=0.1)


def _per_position_loss(spec, logits, targets):
    """``l [B, T]`` in NumPy: cross-entropy, or for bits the mean binary cross-entropy."""
    logits = logits.astype("float64")
    if spec.output_type == "binary":
        # -z log sigmoid(x) - (1 - z) log(1 - sigmoid(x)) = softplus(x) - z x
        return np.mean(np.logaddexp(0.0, logits) - targets * logits, -1)
    log_probs = logits - np.logaddexp.reduce(logits, -1, keepdims=True)
    return -np.take_along_axis(log_probs, targets[..., None].astype(int), -1)[..., 0]


@pytest.mark.parametrize(
    "task, model", [("dictionary", "lstm"), ("priority_sort", "lstm"), ("dictionary", "mnm_g")]
)
def test_loss_is_the_weighted_mean_over_answer_positions(task, model):
    # Weights that differ by episode and by position, non-binary included: the loss is
    # sum(w l) / sum(w), not sum(w l) / (B T). MNM adds meta_loss_weight (0.5) times its
    # meta loss, which `evaluate` reports unweighted.
    spec, network = _algorithmic(task, model, meta_loss_weight=0.5)
    x, y, _ = spec.arrays(BATCH, seed=7)
    rng = np.random.default_rng(0)
    w = (rng.random(y.shape[:2]) < 0.3) * rng.choice([0.5, 1.0, 2.0], y.shape[:2])
    w = w.astype("float32")
    w[:, -1] = 1.0  # every episode has an answer
    assert len(set(w.sum(1))) > 1  # episodes weigh differently
    losses = _per_position_loss(spec, np.asarray(network(x)), y)
    expected = np.sum(w * losses) / np.sum(w)
    result = network.evaluate(x, y, sample_weight=w, batch_size=BATCH, verbose=0, return_dict=True)
    meta = 0.5 * result["meta_loss"] if model.startswith("mnm") else 0.0
    if meta:
        assert meta > 1e-4  # the meta loss is counted, and is no rounding error here
    assert result["loss"] == pytest.approx(expected + meta, rel=1e-4)
    # `fit` logs the loss of its batch before the update; here from a tf.data stream of
    # (inputs, targets, weights), as examples/algorithmic.py trains.
    stream = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(BATCH)
    history = network.fit(stream, epochs=1, verbose=0, shuffle=False)
    assert history.history["loss"][0] == pytest.approx(expected + meta, rel=1e-4)


def test_mnm_layer_takes_the_configured_meta_loss_weight():
    for script, config in (
        (algorithmic, algorithmic.Config(model="mnm_p", meta_loss_weight=0.25, **TINY)),
        (
            associative_recall,
            associative_recall.Config(model="mnm_p", meta_loss_weight=0.25, **TINY),
        ),
    ):
        if script is algorithmic:
            network = algorithmic.build_model(algorithmic.make_task(config), config)
        else:
            network = associative_recall.build_model(config, 9, 17)
        (layer,) = [layer for layer in network.layers if isinstance(layer, MNM)]
        assert layer.meta_loss_weight == 0.25
        # The default is equation 6's plain sum.
        (field,) = [f for f in dataclasses.fields(script.Config) if f.name == "meta_loss_weight"]
        assert field.default == 1.0
        with pytest.raises(ValueError, match=r"`meta_loss_weight`.*-1\.0"):
            script.Config(meta_loss_weight=-1.0)
        with pytest.raises(ValueError, match=r"`meta_loss_weight`.*nan"):
            script.Config(meta_loss_weight=float("nan"))
    # The LSTM has no meta loss and ignores the field.
    config = algorithmic.Config(model="lstm", meta_loss_weight=0.25, **TINY)
    algorithmic.build_model(algorithmic.make_task(config), config)
