"""Error metrics counted only at answer positions (``sample_weight`` = answer mask).

Both take ``sample_weight`` of shape ``[batch, time]`` (1 at answers, 0 elsewhere), as the
`mnm_keras.datasets` pipelines give it; pass them to ``compile(weighted_metrics=[...])``.
Predictions are logits: class logits ``[batch, time, classes]`` with integer targets
``[batch, time]``, or bit logits ``[batch, time, bits]`` with 0/1 targets of that shape
(``binary=True``).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _wrong(y_true, y_pred, binary):
    """Per answer unit: ``[batch, time]`` wrong symbols, or ``[batch, time, bits]`` bits."""
    if binary:
        return tf.cast(tf.cast(y_pred > 0.0, y_true.dtype) != y_true, tf.float32)
    predicted = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    return tf.cast(predicted != tf.cast(y_true, tf.int32), tf.float32)


class _AnswerError(keras.metrics.Metric):
    """Counts ``wrong`` out of ``total`` answer units; subclasses say what a unit is."""

    def __init__(self, binary=False, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.binary = binary
        self.wrong = self.add_variable(shape=(), initializer="zeros", name="wrong")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def result(self):
        return tf.math.divide_no_nan(self.wrong, self.total)

    def reset_state(self):
        self.wrong.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "binary": self.binary}


@keras.saving.register_keras_serializable(package="mnm_keras")
class SymbolError(_AnswerError):
    """Fraction of wrong answer symbols (or bits, with ``binary=True``)."""

    def __init__(self, binary=False, name="symbol_error", **kwargs):
        super().__init__(binary=binary, name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        wrong = _wrong(y_true, y_pred, self.binary)
        weight = tf.ones_like(wrong[..., 0] if self.binary else wrong)
        if sample_weight is not None:
            weight = tf.cast(tf.reshape(sample_weight, tf.shape(weight)), tf.float32)
        if self.binary:
            weight = weight[..., None] * tf.ones_like(wrong)
        self.wrong.assign_add(tf.reduce_sum(wrong * weight))
        self.total.assign_add(tf.reduce_sum(weight))


@keras.saving.register_keras_serializable(package="mnm_keras")
class SequenceError(_AnswerError):
    """Fraction of episodes with at least one wrong answer symbol (or bit)."""

    def __init__(self, binary=False, name="sequence_error", **kwargs):
        super().__init__(binary=binary, name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        wrong = _wrong(y_true, y_pred, self.binary)
        if self.binary:
            wrong = tf.reduce_max(wrong, axis=-1)
        if sample_weight is not None:
            wrong *= tf.cast(tf.reshape(sample_weight, tf.shape(wrong)), tf.float32)
        episode_wrong = tf.cast(tf.reduce_max(wrong, axis=-1) > 0, tf.float32)
        self.wrong.assign_add(tf.reduce_sum(episode_wrong))
        self.total.assign_add(tf.cast(tf.shape(episode_wrong)[0], tf.float32))
