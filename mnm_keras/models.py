"""The four recurrent models the paper compares, behind one constructor."""

from __future__ import annotations

import keras

from mnm_keras._utils import derive_seed
from mnm_keras.mnm_layer import MNM
from mnm_keras.salu_layer import SALU

MODEL_NAMES = ("mnm_p", "mnm_g", "salu", "lstm")


def recurrent_layer(
    model,
    units=100,
    memory_units=100,
    memory_layers=3,
    key_size=100,
    value_size=100,
    num_heads=1,
    max_length=None,
    return_sequences=False,
    seed=None,
    normalize_writes=True,
    meta_loss_weight=1.0,
    **layer_kwargs,
):
    """A recurrent layer for one of the paper's models.

    Args:
      model: ``"mnm_p"`` (MNM, local write), ``"mnm_g"`` (MNM, gradient write), ``"salu"``
        (LSTM + soft-attention look-up table, `SALU`) or ``"lstm"`` (`keras.layers.LSTM`).
      units: controller (or LSTM) size.
      memory_units, memory_layers, key_size, value_size, num_heads: MNM memory sizes
        (SALU uses key_size, value_size and num_heads).
      max_length: SALU only: the longest sequence (table size).
      return_sequences: return every step's output.
      seed: seed of the MNM initial memory and of seedable initializers (each weight's
        own sub-seed, `mnm_keras._utils.derive_seed`).
      normalize_writes: MNM only: `MNMCell`'s normalised writes (default True; False: the
        paper's writes; ignored, like the memory sizes, by ``"lstm"`` and ``"salu"``).
      meta_loss_weight: MNM only: the weight of the meta loss in the training loss
        (equation 6; default 1.0; ignored by ``"lstm"`` and ``"salu"``, which have none).
      **layer_kwargs: further arguments of the layer built: `MNM` (and `MNMCell`) for the
        MNM models, `SALU` (and `SALUCell`) for ``"salu"``, `keras.layers.LSTM` for
        ``"lstm"``.

    Returns:
      A Keras layer taking ``[batch, time, features]``.
    """
    if model not in MODEL_NAMES:
        raise ValueError(f"`model` must be one of {MODEL_NAMES}; received model={model!r}.")
    if model == "lstm":
        return keras.layers.LSTM(
            units,
            return_sequences=return_sequences,
            kernel_initializer=keras.initializers.GlorotUniform(
                seed=derive_seed(seed, "lstm/kernel")
            ),
            recurrent_initializer=keras.initializers.Orthogonal(
                seed=derive_seed(seed, "lstm/recurrent_kernel")
            ),
            **layer_kwargs,
        )
    if model == "salu":
        if max_length is None:
            raise ValueError("`max_length` is required for model='salu' (the table size).")
        return SALU(
            units,
            max_length=max_length,
            key_size=key_size,
            value_size=value_size,
            num_heads=num_heads,
            seed=seed,
            return_sequences=return_sequences,
            **layer_kwargs,
        )
    return MNM(
        units,
        memory_units=memory_units,
        memory_layers=memory_layers,
        key_size=key_size,
        value_size=value_size,
        num_heads=num_heads,
        write_rule="local" if model == "mnm_p" else "gradient",
        return_sequences=return_sequences,
        seed=seed,
        normalize_writes=normalize_writes,
        meta_loss_weight=meta_loss_weight,
        **layer_kwargs,
    )
