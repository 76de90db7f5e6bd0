"""Synthetic memory tasks that ship with the library (used by the demo and the tests)."""

from __future__ import annotations

import numpy as np


def associative_recall(
    num_examples: int,
    num_pairs: int = 4,
    num_keys: int = 8,
    num_values: int = 8,
    seed: int = 0,
):
    """Store a few random key -> value pairs, then answer a query for one stored key.

    An episode is a sequence of ``2 * num_pairs + 2`` one-hot vectors over
    ``num_keys + num_values + 1`` symbols (keys, then values, then a query marker):

    ``k_1 v_1 k_2 v_2 ... k_n v_n ? k_q``

    The ``n = num_pairs`` keys of an episode are distinct, drawn from ``num_keys`` key
    symbols, and each gets a value drawn uniformly (with replacement) from ``num_values``
    value symbols, so the mapping changes in every episode and only a memory of the
    episode can answer. ``k_q`` is one of the episode's keys, chosen uniformly; the target
    is its value, an integer in ``[0, num_values)``. Chance accuracy is ``1 / num_values``.

    Args:
      num_examples: number of episodes.
      num_pairs: n, pairs stored per episode (at most ``num_keys``).
      num_keys, num_values: sizes of the key and value vocabularies.
      seed: NumPy seed; the same arguments always give the same episodes.

    Returns:
      ``(inputs, targets)``: float32 ``[num_examples, 2 n + 2, num_keys + num_values + 1]``
      and int32 ``[num_examples]``.
    """
    if num_pairs < 1 or num_pairs > num_keys:
        raise ValueError(
            f"`num_pairs` must be in [1, num_keys={num_keys}]; received num_pairs={num_pairs}."
        )
    if num_values < 2:
        raise ValueError(f"`num_values` must be at least 2; received num_values={num_values}.")
    rng = np.random.default_rng(seed)
    depth = num_keys + num_values + 1
    query_marker = num_keys + num_values
    keys = np.argsort(rng.random((num_examples, num_keys)), axis=1)[:, :num_pairs]
    values = rng.integers(0, num_values, size=(num_examples, num_pairs))
    which = rng.integers(0, num_pairs, size=num_examples)
    rows = np.arange(num_examples)
    symbols = np.empty((num_examples, 2 * num_pairs + 2), dtype=np.int64)
    symbols[:, 0 : 2 * num_pairs : 2] = keys
    symbols[:, 1 : 2 * num_pairs : 2] = num_keys + values
    symbols[:, -2] = query_marker
    symbols[:, -1] = keys[rows, which]
    inputs = np.eye(depth, dtype=np.float32)[symbols]
    targets = values[rows, which].astype(np.int32)
    return inputs, targets
