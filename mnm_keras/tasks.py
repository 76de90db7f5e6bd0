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

    An episode has ``num_pairs + 1`` steps. Each input step is the concatenation of a key
    one-hot (``num_keys``), a value one-hot (``num_values``) and a query flag (1):

    * steps 1..n (``n = num_pairs``) present one pair each: ``[onehot(k_j); onehot(v_j); 0]``;
    * step n + 1 is the query: ``[onehot(k_q); 0; 1]``.

    The n keys of an episode are distinct, drawn from ``num_keys`` key symbols, and each
    gets a value drawn uniformly (with replacement) from ``num_values`` symbols, so the
    mapping changes in every episode and only a memory of the episode can answer. ``k_q``
    is one of the episode's keys, chosen uniformly; the target is its value, an integer in
    ``[0, num_values)``. Chance accuracy is ``1 / num_values``.

    Args:
      num_examples: number of episodes.
      num_pairs: n, pairs stored per episode (at most ``num_keys``).
      num_keys, num_values: sizes of the key and value vocabularies.
      seed: NumPy seed; the same arguments always give the same episodes.

    Returns:
      ``(inputs, targets)``: float32 ``[num_examples, n + 1, num_keys + num_values + 1]``
      and int32 ``[num_examples]``.
    """
    if num_pairs < 1 or num_pairs > num_keys:
        raise ValueError(
            f"`num_pairs` must be in [1, num_keys={num_keys}]; received num_pairs={num_pairs}."
        )
    if num_values < 2:
        raise ValueError(f"`num_values` must be at least 2; received num_values={num_values}.")
    if num_examples < 1:
        raise ValueError(f"`num_examples` must be positive; received {num_examples}.")
    rng = np.random.default_rng(seed)
    keys = np.argsort(rng.random((num_examples, num_keys)), axis=1)[:, :num_pairs]
    values = rng.integers(0, num_values, size=(num_examples, num_pairs))
    which = rng.integers(0, num_pairs, size=num_examples)
    rows = np.arange(num_examples)
    inputs = np.zeros((num_examples, num_pairs + 1, num_keys + num_values + 1), np.float32)
    steps = np.arange(num_pairs)
    inputs[rows[:, None], steps[None, :], keys] = 1.0
    inputs[rows[:, None], steps[None, :], num_keys + values] = 1.0
    inputs[rows, num_pairs, keys[rows, which]] = 1.0
    inputs[rows, num_pairs, -1] = 1.0
    targets = values[rows, which].astype(np.int32)
    return inputs, targets
