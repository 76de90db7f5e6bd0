"""The associative-recall task: shapes, determinism, and that its answer is well defined."""

import numpy as np
import pytest

from mnm_keras import tasks


def test_episodes_are_well_formed_and_seeded():
    x, y = tasks.associative_recall(50, num_pairs=3, num_keys=5, num_values=4, seed=1)
    assert x.shape == (50, 4, 10) and x.dtype == np.float32
    assert y.shape == (50,) and y.min() >= 0 and y.max() < 4
    x2, y2 = tasks.associative_recall(50, num_pairs=3, num_keys=5, num_values=4, seed=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, tasks.associative_recall(50, 3, 5, 4, seed=2)[0])
    for episode, target in zip(x, y):
        keys = episode[:3, :5].argmax(-1)
        values = episode[:3, 5:9].argmax(-1)
        assert len(set(keys)) == 3  # distinct keys
        assert np.all(episode[:3].sum(-1) == 2) and np.all(episode[:3, -1] == 0)
        query = episode[3]
        assert query[-1] == 1 and query[5:9].sum() == 0
        assert values[list(keys).index(query[:5].argmax())] == target


def test_bad_arguments():
    with pytest.raises(ValueError, match="`num_pairs` must be in"):
        tasks.associative_recall(4, num_pairs=9, num_keys=8)
    with pytest.raises(ValueError, match="`num_values` must be at least 2"):
        tasks.associative_recall(4, num_values=1)
