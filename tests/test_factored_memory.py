"""The chunked factored memory benchmark: its forms compute plain autodiff's gradients,
a broken rebuild is caught, and a run writes its record, table and plot (no timing is
asserted)."""

import json

import pytest

from benchmarks import benchmark, factored_memory


def _small():
    xs, read_weights, weights = factored_memory.inputs(length=8, batch=2, units=4, layers=3)
    return factored_memory.make_params(4, 3), weights, xs, read_weights


@pytest.mark.parametrize("chunk, probe", [(1, False), (1, True), (2, True), (4, True), (8, True)])
def test_every_form_has_the_gradients_of_plain_autodiff(chunk, probe):
    params, weights, xs, read_weights = _small()
    assert factored_memory.check(params, weights, xs, read_weights, chunk, probe) < 1e-5


def test_a_wrong_rebuild_of_the_chunk_start_weights_is_caught(monkeypatch):
    params, weights, xs, read_weights = _small()
    apply = factored_memory._apply
    # The backward loop's rebuild (sign +1) subtracts instead of adding the chunk's writes.
    monkeypatch.setattr(factored_memory, "_apply", lambda w, a, b, sign=-1.0: apply(w, a, b))
    with pytest.raises(AssertionError, match="relative error"):
        factored_memory.check(params, weights, xs, read_weights, 4, True)


def test_run_writes_the_record_table_and_plot(tmp_path, capsys):
    record = factored_memory.run([1, 2], [4], 2, 3, 2, 0, 1, str(tmp_path))
    with open(tmp_path / "factored_memory.json") as f:
        assert json.load(f) == record
    assert [(r["chunk"], r["factored_gradient"]) for r in record["results"]] == [
        (1, False),
        (1, True),
        (2, True),
    ]
    assert record["results"][0]["speedup"] == 1.0
    assert all(r["seconds"] > 0 for r in record["results"])
    assert set(record["microseconds_per_operation"]) == {
        "product, 1 column",
        "product, 3 columns",
        "product, 24 columns",
        "rank-1 update",
    }
    assert (tmp_path / "factored_memory.png").read_bytes()[:4] == b"\x89PNG"
    table = factored_memory.render_table(record)
    assert table in capsys.readouterr().out
    assert "| factored, C = 2 | 4 |" in table


def test_the_performance_doc_renders_the_committed_record():
    current, rendered = benchmark.render_doc(write=False)
    assert "| factored, C = 8 | 64 |" in rendered
    assert current == rendered
