"""`trace_interactions` follows the cell exactly; the figure-5 maps have the stated masks."""

import keras
import numpy as np
import pytest

import mnm_keras
from mnm_keras import core, memory
from mnm_keras.interactions import (
    cosine_similarity_matrix,
    earlier_mask,
    similarity_maps,
    trace_interactions,
)

BATCH, TIME, FEATURES = 2, 6, 5


def _cell(write_rule="local", **kwargs):
    cell = mnm_keras.MNMCell(
        6,
        memory_units=5,
        key_size=4,
        value_size=3,
        num_heads=2,
        write_rule=write_rule,
        seed=3,
        **kwargs,
    )
    cell.build((None, FEATURES))
    return cell


def _inputs(seed=0):
    return np.random.default_rng(seed).normal(size=(BATCH, TIME, FEATURES)).astype("float32")


@pytest.mark.parametrize("write_rule", ["local", "gradient"])
def test_trace_outputs_equal_the_rnn_layer(write_rule):
    cell = _cell(write_rule)
    inputs = _inputs()
    expected = keras.layers.RNN(cell, return_sequences=True)(inputs)
    trace = trace_interactions(cell, inputs)
    np.testing.assert_allclose(trace["outputs"], expected, rtol=1e-5, atol=1e-6)
    assert trace["read_keys"].shape == (BATCH, TIME, 2, 4)
    assert trace["write_keys"].shape == (BATCH, TIME, 2, 4)
    assert trace["values"].shape == (BATCH, TIME, 2, 3)
    assert trace["read_values"].shape == (BATCH, TIME, 2, 3)
    assert trace["rates"].shape == (BATCH, TIME, 1 if write_rule == "gradient" else 3)


def test_traced_vectors_are_the_ones_the_cell_writes_and_reads():
    """Step t recomputed from the RNN's state after t steps: h_t gives the keys, values
    and rates (equation 1); phi_t read at the read keys gives the read values, whose mean
    over heads is the read-out state."""
    cell = _cell()
    inputs = _inputs(1)
    trace = trace_interactions(cell, inputs)
    rnn = keras.layers.RNN(cell, return_state=True)
    for t in (0, 3, TIME - 1):
        states = rnn(inputs[:, : t + 1])[1:]
        read_keys, write_keys, values, rates = core.interface(cell.config, cell.params(), states[0])
        for name, value in [
            ("read_keys", read_keys),
            ("write_keys", write_keys),
            ("values", values),
            ("rates", rates),
        ]:
            np.testing.assert_allclose(trace[name][:, t], value, atol=1e-5, err_msg=name)
        read_values = memory.read(
            cell.unpack_state(states).memory,
            read_keys,
            cell.memory_activation,
            cell.memory_output_activation,
        )
        np.testing.assert_allclose(trace["read_values"][:, t], read_values, atol=1e-5)
        np.testing.assert_allclose(trace["read_values"][:, t].numpy().mean(1), states[2], atol=1e-5)


@pytest.mark.parametrize("write_rule", ["local", "gradient"])
def test_traced_recall_errors_use_the_weights_before_and_after_the_write(write_rule):
    cell = _cell(write_rule)
    inputs = _inputs(4)
    trace = trace_interactions(cell, inputs)
    rnn = keras.layers.RNN(cell, return_state=True)
    activations = (cell.memory_activation, cell.memory_output_activation)
    for t in (0, 2, TIME - 1):
        before = cell.get_initial_state(BATCH) if t == 0 else rnn(inputs[:, :t])[1:]
        after = rnn(inputs[:, : t + 1])[1:]
        pair = (trace["write_keys"][:, t], trace["values"][:, t])
        for name, states in (("recall_before", before), ("recall_after", after)):
            expected = memory.recall_error(cell.unpack_state(states).memory, *pair, *activations)
            np.testing.assert_allclose(trace[name][:, t], expected, rtol=1e-4, err_msg=name)


def test_normalized_gradient_writes_lower_the_traced_recall_error():
    """Section 3.3: each MNM-g write is a descent step on its own pair's recall error."""
    trace = trace_interactions(_cell("gradient", normalize_writes=True), _inputs(5))
    before, after = trace["recall_before"].numpy(), trace["recall_after"].numpy()
    assert before.shape == after.shape == (BATCH, TIME)
    # Every write lowers its pair's error; over the sequence by a clear margin.
    assert np.all(after < before)
    assert after.sum() < 0.9 * before.sum()


def test_trace_accepts_the_mnm_layer_and_a_mask():
    layer = mnm_keras.MNM(6, memory_units=5, key_size=4, value_size=3, return_sequences=True)
    inputs = _inputs(2)
    mask = np.ones((BATCH, TIME), bool)
    mask[1, 3:] = False
    expected = layer(inputs, mask=mask)
    trace = trace_interactions(layer, inputs, mask=mask)
    np.testing.assert_allclose(trace["outputs"], expected, rtol=1e-5, atol=1e-6)
    # masked steps: the previous output is repeated and the interactions are zeros
    np.testing.assert_array_equal(
        trace["outputs"][1, 3:], np.repeat(trace["outputs"][1, 2:3], 3, 0)
    )
    assert not np.any(trace["recall_after"][1, 3:])
    assert not np.any(trace["values"][1, 3:]) and np.all(np.any(trace["values"][0] != 0, -1))


def test_trace_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`cell` must be"):
        trace_interactions(keras.layers.LSTMCell(3), _inputs())
    with pytest.raises(ValueError, match=r"`sequences` must have shape \[batch, time"):
        trace_interactions(_cell(), _inputs()[0])


def test_cosine_similarity_matrix():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    b = np.array([[3.0, 0.0], [1.0, 1.0]])
    expected = np.array([[1.0, np.sqrt(0.5)], [0.0, np.sqrt(0.5)], [0.0, 0.0]])
    np.testing.assert_allclose(cosine_similarity_matrix(a, b), expected)
    with pytest.raises(ValueError, match="same d"):
        cosine_similarity_matrix(a, np.ones((2, 3)))


def test_similarity_maps_masks_and_head_conventions():
    trace = trace_interactions(_cell(), _inputs(3))
    maps = similarity_maps(trace, index=1)
    assert set(maps) == {"read_vs_written", "written_vs_written", "write_keys_vs_write_keys"}
    for name, matrix in maps.items():
        assert matrix.shape == (TIME, TIME)
        diagonal = name == "read_vs_written"
        np.testing.assert_array_equal(np.isfinite(matrix), earlier_mask(TIME, diagonal))
    assert np.isnan(maps["written_vs_written"][0, 0])
    assert np.isfinite(maps["read_vs_written"][0, 0])
    # "mean": same-head similarity averaged over the heads
    values = np.asarray(trace["values"])[1]
    per_head = [cosine_similarity_matrix(values[:, h], values[:, h]) for h in range(2)]
    np.testing.assert_allclose(
        maps["written_vs_written"][4, 1], (per_head[0] + per_head[1])[4, 1] / 2
    )
    head_1 = similarity_maps(trace, index=1, heads=1)["written_vs_written"]
    np.testing.assert_allclose(head_1[4, 1], per_head[1][4, 1])
    pairs = similarity_maps(trace, index=1, heads="pairs")["written_vs_written"]
    cross = [
        cosine_similarity_matrix(values[:, i], values[:, j])[4, 1]
        for i in range(2)
        for j in range(2)
    ]
    np.testing.assert_allclose(pairs[4, 1], np.mean(cross))
    assert similarity_maps(trace, length=4)["read_vs_written"].shape == (4, 4)
    with pytest.raises(ValueError, match="`heads` must be"):
        similarity_maps(trace, heads=2)
    with pytest.raises(ValueError, match="`length` must be in"):
        similarity_maps(trace, length=TIME + 1)
