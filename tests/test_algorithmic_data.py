"""The algorithmic datasets follow the paper's definitions; the masked metrics are right."""

import numpy as np
import pytest
import tensorflow as tf

from mnm_keras import datasets
from mnm_keras.metrics import SequenceError, SymbolError

DI = datasets.DictionaryInference


def decode(episode_inputs):
    return episode_inputs.argmax(-1)


@pytest.mark.parametrize("k, n", [(4, 1), (8, 4), (3, 2)])
def test_dictionary_episodes_follow_the_paper(k, n):
    task = DI(support_size=k, sequence_length=n)
    x, y, w = task.arrays(40, seed=k * 10 + n)
    assert x.shape == (40, k * (2 * n + 2) + 2 * n + 1, 30) and task.length == x.shape[1]
    for inputs, targets, weights in zip(x, y, w):
        symbols = decode(inputs)
        mapping = {}
        sources = []
        for j in range(k):
            block = symbols[j * (2 * n + 2) : (j + 1) * (2 * n + 2)]
            source, target = block[:n], block[n + 1 : 2 * n + 1]
            assert block[n] == DI.EOS
            assert block[-1] == (DI.SEP if j < k - 1 else DI.EOSS)
            for s, t in zip(source, target):
                assert mapping.setdefault(s, t) == t  # F is a function ...
            sources.append(tuple(source))
        assert len(set(mapping.values())) == len(mapping)  # ... and injective
        assert not set(mapping) & set(mapping.values())  # source and target are disjoint
        query = symbols[k * (2 * n + 2) : k * (2 * n + 2) + n]
        assert symbols[k * (2 * n + 2) + n] == DI.EOS
        assert np.all(symbols[-n:] == DI.ANSWER)
        assert set(query) <= set(mapping)  # only letters seen in the support
        if n > 1:
            assert tuple(query) not in sources  # an unseen source sequence
        np.testing.assert_array_equal(targets[-n:], [mapping[q] for q in query])
        np.testing.assert_array_equal(weights, np.r_[np.zeros(len(weights) - n), np.ones(n)])


def test_every_episode_draws_a_new_mapping():
    x, _, _ = DI(4, 1).arrays(20, seed=0)
    pairs = {tuple(decode(e)[:3]) for e in x}
    assert len(pairs) > 10


def test_double_copy_definition():
    task = datasets.DoubleCopy()
    x, y, w = task.arrays(5, seed=1)
    assert x.shape == (5, 151, 12) and task.length == 151
    for inputs, targets, weights in zip(x, y, w):
        sequence = inputs[:50, :10].argmax(-1)
        assert inputs[:50, :10].sum() == 50 and inputs[50, 10] == 1 and inputs[51:, 11].all()
        np.testing.assert_array_equal(targets[51:], np.r_[sequence, sequence])
        assert weights[:51].sum() == 0 and weights[51:].all()


def test_priority_sort_definition():
    task = datasets.PrioritySort()
    x, y, w = task.arrays(5, seed=2)
    assert x.shape == (5, 37, 11) and y.shape == (5, 37, 8)
    for inputs, targets, weights in zip(x, y, w):
        vectors, priorities = inputs[:20, :8], inputs[:20, 8]
        assert np.all(np.abs(priorities) <= 1) and set(np.unique(vectors)) <= {0.0, 1.0}
        order = np.argsort(-priorities)[:16]
        np.testing.assert_array_equal(targets[21:], vectors[order])
        assert weights[:21].sum() == 0 and weights[21:].all()


@pytest.mark.parametrize("name", sorted(datasets.TASKS))
def test_datasets_are_seeded_batched_and_fixed_shape(name):
    task = datasets.get_task(name)
    first = next(iter(task.dataset(4, seed=3)))
    again = next(iter(task.dataset(4, seed=3)))
    other = next(iter(task.dataset(4, seed=4)))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert first[0].shape == (4, task.length, task.input_size)
    assert first[2].shape == (4, task.length)
    assert len(list(task.dataset(4, seed=3, num_episodes=10))) == 2  # drop_remainder


@pytest.mark.parametrize("name", sorted(datasets.TASKS))
def test_dataset_start_continues_the_stream(name):
    task = datasets.get_task(name)
    stream = list(task.dataset(4, seed=3, num_episodes=12))
    resumed = list(task.dataset(4, seed=3, start=8, num_episodes=4))
    assert len(resumed) == 1
    for a, b in zip(stream[2], resumed[0]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(stream[0][0], resumed[0][0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="`start` must be a non-negative integer; received -1"):
        datasets.DoubleCopy().dataset(4, seed=0, start=-1)
    with pytest.raises(ValueError, match="`support_size` must be a positive integer"):
        DI(support_size=0)
    with pytest.raises(ValueError, match="`task` must be one of"):
        datasets.get_task("copy")
    with pytest.raises(ValueError, match="`num_outputs` must be in"):
        datasets.PrioritySort(num_items=4, num_outputs=5)


def test_masked_metrics_count_only_answers():
    y = tf.constant([[0, 1, 2], [0, 1, 2]])
    logits = tf.one_hot([[0, 0, 2], [1, 1, 1]], 3)  # seq 0: one wrong at t=1; seq 1: t=0, t=2
    weights = tf.constant([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    symbol, sequence = SymbolError(), SequenceError()
    symbol.update_state(y, logits, weights)
    sequence.update_state(y, logits, weights)
    assert float(symbol.result()) == pytest.approx(1 / 3)  # answers: (0,2) ok, (1,1) ok, (1,2) no
    assert float(sequence.result()) == pytest.approx(1 / 2)

    bits = tf.constant([[[1.0, 0.0], [1.0, 1.0]]])
    bit_logits = tf.constant([[[5.0, 5.0], [5.0, -5.0]]])  # t=0 one bit wrong, t=1 one wrong
    binary_symbol, binary_sequence = SymbolError(binary=True), SequenceError(binary=True)
    answer_t1 = tf.constant([[0.0, 1.0]])
    binary_symbol.update_state(bits, bit_logits, answer_t1)
    binary_sequence.update_state(bits, bit_logits, answer_t1)
    assert float(binary_symbol.result()) == pytest.approx(1 / 2)
    assert float(binary_sequence.result()) == 1.0
