"""The benchmark script runs and writes its table, JSON and PNG (no timing is asserted)."""

import json

from benchmarks import benchmark

CONFIG = dict(batch_size=2, units=4, memory_units=3, features=3, warmup=1, steps=1)


def test_benchmark_writes_json_and_png(tmp_path, capsys):
    results = benchmark.run_benchmark(
        ["mnm_p", "mnm_g", "mnm_p_plain", "salu"],
        [4, 8],
        [False],
        CONFIG,
        str(tmp_path),
        measure_memory=False,
        salu_max_length=4,
    )
    assert set(results) == {"lstm", "mnm_p", "mnm_g", "mnm_p_plain", "salu"}
    for model in results:
        with open(tmp_path / f"{model}.json") as f:
            rows = json.load(f)["results"]
        assert [row["length"] for row in rows] == ([4] if model == "salu" else [4, 8])
        for row in rows:
            assert row["seconds_per_step"] > 0
            assert row["ratio_to_lstm"] > 0
    assert all(row["ratio_to_lstm"] == 1.0 for row in results["lstm"])
    assert (tmp_path / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    assert "mnm_p" in capsys.readouterr().out


def test_peak_memory_of_a_fresh_process():
    baseline = benchmark.peak_memory("baseline", 0, False, CONFIG)
    peak = benchmark.peak_memory("mnm_p", 4, False, CONFIG)
    assert baseline is not None and peak is not None  # a failing child says why on stderr
    assert baseline > 100 * 2**20  # TensorFlow's runtime alone
    assert peak > baseline, (peak, baseline)
