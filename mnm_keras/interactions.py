"""What the memory does over a sequence: per-step keys, values and rates, and their similarities.

Paper section 4.2, "Analyzing learned memory operations" and figure 5: the cosine similarity
between the memory interaction vectors of two time steps ``t1 < t2`` shows which content
stored at ``t1`` is retrieved or overwritten at ``t2``.

* `trace_interactions` runs an `MNMCell` (or the `MNM` layer holding it) over sequences and
  returns, beside the outputs, every step's read keys ``k^r_t``, write keys ``k^w_t``,
  written (target) values ``v^w_t``, rates ``beta_t`` and read values ``v^r_t``; it runs
  `mnm_keras.core.unroll` with a callback at every step, the computation of `MNM` and of
  `MNMCell.call`, so the outputs are those of
  ``keras.layers.RNN(cell, return_sequences=True)``.
* `cosine_similarity_matrix` and `similarity_maps` turn one sequence's trace into the three
  maps of figure 5b (`MAPS`), as NumPy arrays with NaN where ``t1`` is not earlier.

Conventions of `similarity_maps` (rows are the later step ``t2``, columns the earlier step
``t1``):

* ``read_vs_written``: ``cos(v^r_{t2}, v^w_{t1})`` for ``t1 <= t2``, diagonal included,
  because within one step the memory is written first and read afterwards, so the pair
  written at ``t2`` is already in the memory that the read at ``t2`` sees.
* ``written_vs_written``: ``cos(v^w_{t2}, v^w_{t1})`` for ``t1 < t2`` (the diagonal is
  always 1 and is left out).
* ``write_keys_vs_write_keys``: ``cos(k^w_{t2}, k^w_{t1})`` for ``t1 < t2``.
* With H heads, ``heads="mean"`` averages over heads the similarity of the same head's
  vectors (head i at t2 against head i at t1); ``heads="pairs"`` averages over all H x H
  head pairs (every head reads and writes the same memory); an integer takes that head
  only. Read values are the per-head reads ``f_phi_t(k^r_{t,i})``, before the model's mean
  over heads.

Whether the memory is written at all is a different question from whether it is read:
the trace also holds, per step, the recall error of the step's write pair before and
after its write (``recall_before``, ``recall_after``; equation 2 with phi_{t-1} and
equation 5's tau = 0 term with phi_t). A ratio ``recall_after / recall_before`` near 0
means the write stores the pair almost exactly; near 1, that it barely changes the
memory.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mnm_keras import core, memory
from mnm_keras.mnm_cell import MNMCell
from mnm_keras.mnm_layer import MNM

INTERACTIONS = ("read_keys", "write_keys", "values", "rates", "read_values")
RECALL = ("recall_before", "recall_after")
# name -> (later-step vectors, earlier-step vectors, diagonal included)
MAPS = {
    "read_vs_written": ("read_values", "values", True),
    "written_vs_written": ("values", "values", False),
    "write_keys_vs_write_keys": ("write_keys", "write_keys", False),
}
MAP_TITLES = {
    "read_vs_written": "read values v^r(t2) vs written values v^w(t1), t1 <= t2",
    "written_vs_written": "written values v^w(t2) vs written values v^w(t1), t1 < t2",
    "write_keys_vs_write_keys": "write keys k^w(t2) vs write keys k^w(t1), t1 < t2",
}


def _as_cell(cell):
    if isinstance(cell, MNM):
        if cell.go_backwards:
            raise ValueError(
                "`cell` is an MNM layer with go_backwards=True; trace_interactions runs "
                "forward only: pass the reversed sequences instead."
            )
        return cell.cell
    if not isinstance(cell, MNMCell):
        raise ValueError(
            f"`cell` must be an mnm_keras.MNMCell or mnm_keras.MNM layer; received "
            f"{type(cell).__name__}."
        )
    return cell


def trace_interactions(cell, sequences, mask=None, training=False):
    """Runs ``cell`` over ``sequences`` and returns every step's memory interactions.

    Starts from phi_0 for every sequence and runs `mnm_keras.core.unroll` (the
    computation of `MNM` and of `MNMCell`) with an ``on_step`` callback that records each
    step, under ``tf.function``. With ``mask``, a masked
    step leaves the state unchanged and repeats the previous output, as
    ``keras.layers.RNN`` does, and its interaction vectors are zeros.

    Args:
      cell: an `MNMCell`, or an `MNM` layer (its ``.cell`` is used). Built if it is not.
      sequences: ``[batch, time, features]`` inputs of the cell (e.g. embedded tokens).
      mask: optional ``[batch, time]`` booleans, True at real steps.
      training: passed to the cell (dropout-free cells compute the same either way).

    Returns:
      A dict of float32 tensors:
        ``outputs``: ``[batch, time, output_units]``, the y_t of every step;
        ``read_keys``, ``write_keys``: ``[batch, time, heads, key_size]``;
        ``values`` (the written target values v^w): ``[batch, time, heads, value_size]``;
        ``read_values`` (per head, before the mean): ``[batch, time, heads, value_size]``;
        ``rates``: ``[batch, time, 1]`` (MNM-g) or ``[batch, time, memory_layers]`` (MNM-p);
        ``recall_before``, ``recall_after``: ``[batch, time]``, the recall error
        ``(1/H) sum_i ||f_phi(k^w_{t,i}) - v^w_{t,i}||^2`` of step t's write pair with the
        weights before (phi_{t-1}) and after (phi_t) step t's write (`memory.recall_error`).
        Masked steps have zeros in every interaction and recall entry.
    """
    cell = _as_cell(cell)
    sequences = tf.convert_to_tensor(sequences)
    if sequences.shape.rank != 3:
        raise ValueError(
            f"`sequences` must have shape [batch, time, features]; received shape "
            f"{sequences.shape}."
        )
    if not cell.built:
        cell.build((None, sequences.shape[-1]))
    if mask is not None:
        mask = tf.cast(tf.convert_to_tensor(mask), tf.bool)
        if mask.shape.rank != 2:
            raise ValueError(f"`mask` must have shape [batch, time]; received shape {mask.shape}.")
    if sequences.shape[1] is None:
        raise ValueError("`sequences` must have a static number of time steps (axis 1).")
    del training  # the step has no dropout: training and inference compute the same
    traced = _trace(cell, sequences, mask)
    return {name: tf.convert_to_tensor(value) for name, value in traced.items()}


@tf.function
def _trace(cell, sequences, mask):
    config, params = cell.config, cell.params()
    hidden, output_activation = config.memory_activation, config.memory_output_activation
    state = core.initial_state(config, params, tf.shape(sequences)[0])
    keeps = tf.ones(tf.shape(sequences)[:2], tf.bool) if mask is None else mask
    records = {name: [] for name in INTERACTIONS + RECALL}

    def on_step(t, x_t, before, after, interactions):
        pair = (interactions.write_keys, interactions.values, hidden, output_activation)
        vectors = {
            **{name: getattr(interactions, name) for name in INTERACTIONS},
            "recall_before": memory.recall_error(before.memory, *pair),
            "recall_after": memory.recall_error(after.memory, *pair),
        }
        for name, value in vectors.items():
            value = tf.cast(value, "float32")
            records[name].append(core.select(keeps[:, t], value, tf.zeros_like(value)))

    outputs, _ = core.unroll(config, params, sequences, state, mask=mask, on_step=on_step)
    traced = {"outputs": outputs}
    for name, values in records.items():
        traced[name] = tf.stack(values, axis=1)  # [batch, time, ...]
    return traced


def cosine_similarity_matrix(a, b, epsilon=1e-8):
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    ``result[i, j] = <a_i, b_j> / (max(|a_i|, epsilon) * max(|b_j|, epsilon))``, so a zero
    vector has similarity 0 with everything.

    Args:
      a: ``[time_a, d]`` array-like.
      b: ``[time_b, d]`` array-like.

    Returns:
      ``[time_a, time_b]`` float64 NumPy array with values in [-1, 1].
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`a` and `b` must have shapes [time_a, d] and [time_b, d] with the same d; "
            f"received {a.shape} and {b.shape}."
        )
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), epsilon)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), epsilon)
    return np.clip(a @ b.T, -1.0, 1.0)


def earlier_mask(length, include_diagonal):
    """``[length, length]`` booleans, True where the column step is earlier than the row step
    (lower triangle; with ``include_diagonal``, the diagonal too)."""
    return np.tri(length, length, 0 if include_diagonal else -1, dtype=bool)


def similarity_maps(trace, index=0, heads="mean", length=None):
    """The figure-5 similarity maps of one sequence of a `trace_interactions` result.

    Args:
      trace: the dict returned by `trace_interactions` (tensors or arrays).
      index: which sequence of the batch.
      heads: ``"mean"`` (same-head similarities averaged over heads), ``"pairs"`` (all
        head pairs averaged) or an integer head index (see the module docstring).
      length: use only the first ``length`` steps (e.g. the unpadded story length);
        default all.

    Returns:
      A dict from each name in `MAPS` to a ``[length, length]`` float64 array, rows the
      later step t2, columns the earlier step t1, NaN where t1 is not earlier than t2
      (above the diagonal; also on it except for ``read_vs_written``).
    """
    vectors = {name: np.asarray(trace[name])[index] for name in ("read_values", "values")}
    vectors["write_keys"] = np.asarray(trace["write_keys"])[index]
    steps, num_heads = vectors["values"].shape[:2]
    if length is None:
        length = steps
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise ValueError(f"`length` must be an integer or None; received {length!r}.")
    if not 1 <= length <= steps:
        raise ValueError(f"`length` must be in [1, {steps}]; received length={length}.")
    if isinstance(heads, (int, np.integer)) and not isinstance(heads, bool):
        if not 0 <= heads < num_heads:
            raise ValueError(
                f"`heads` must be 'mean', 'pairs' or a head index in [0, {num_heads}); "
                f"received heads={heads}."
            )
    elif heads not in ("mean", "pairs"):
        raise ValueError(
            f"`heads` must be 'mean', 'pairs' or a head index in [0, {num_heads}); "
            f"received heads={heads!r}."
        )
    maps = {}
    for name, (later, earlier, diagonal) in MAPS.items():
        x, y = vectors[later][:length], vectors[earlier][:length]  # [length, heads, d]
        if heads == "pairs":
            flat = cosine_similarity_matrix(x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]))
            similarity = flat.reshape(length, num_heads, length, num_heads).mean(axis=(1, 3))
        elif heads == "mean":
            similarity = np.mean(
                [cosine_similarity_matrix(x[:, h], y[:, h]) for h in range(num_heads)], axis=0
            )
        else:
            similarity = cosine_similarity_matrix(x[:, heads], y[:, heads])
        maps[name] = np.where(earlier_mask(length, diagonal), similarity, np.nan)
    return maps
