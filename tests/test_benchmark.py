"""The benchmark script runs and writes its table, JSON and PNG (no timing is asserted)."""

import json

import numpy as np

from benchmarks import benchmark

CONFIG = dict(batch_size=2, units=4, memory_units=3, features=3, warmup=1, steps=1)


def test_benchmark_writes_json_and_png(tmp_path, capsys):
    results = benchmark.run_benchmark(
        ["mnm_p", "mnm_g", "mnm_p_cell", "salu", "salu_cell"],
        [4, 8],
        [False],
        CONFIG,
        str(tmp_path),
        measure_memory=False,
        salu_max_length=4,
    )
    assert set(results) == {"lstm", "mnm_p", "mnm_g", "mnm_p_cell", "salu", "salu_cell"}
    for model in results:
        with open(tmp_path / f"{model}.json") as f:
            rows = json.load(f)["results"]
        expected = [4] if model.startswith("salu") else [4, 8]
        assert [row["length"] for row in rows] == expected
        for row in rows:
            assert row["seconds_per_step"] > 0
            assert row["ratio_to_lstm"] > 0
    assert all(row["ratio_to_lstm"] == 1.0 for row in results["lstm"])
    assert (tmp_path / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "mnm_p" in printed
    # The table: one row per model, one column per length, read back from the JSON.
    table = benchmark.render_table(benchmark.load_results(str(tmp_path)))
    assert table in printed
    lines = table.strip().splitlines()
    assert lines[0].startswith("| model | T = 4 | T = 8 |")
    assert len(lines) == 2 + 6
    lstm_row = next(line for line in lines if line.startswith("| `keras.layers.LSTM`"))
    assert lstm_row.count("1.0x") == 2
    salu_row = next(line for line in lines if line.startswith("| `SALU`"))
    assert "| - |" in salu_row  # not run at length 8


def test_log_log_slope():
    rows = [{"length": n, "seconds_per_step": 0.5 * n**1.5} for n in (16, 64, 256)]
    np.testing.assert_allclose(benchmark.log_log_slope(rows), 1.5)


def test_performance_doc_shows_the_committed_benchmark():
    """docs/performance.md's tables are `render_table` of the records they name
    (`python benchmarks/benchmark.py --render` rewrites them)."""
    current, rendered = benchmark.render_doc(write=False)
    assert current == rendered


def test_peak_memory_of_a_fresh_process():
    baseline = benchmark.peak_memory("baseline", 0, False, CONFIG)
    peak = benchmark.peak_memory("mnm_p", 4, False, CONFIG)
    assert baseline is not None and peak is not None  # a failing child says why on stderr
    assert baseline > 100 * 2**20  # TensorFlow's runtime alone
    assert peak > baseline, (peak, baseline)


def test_write_strength_ratios():
    from benchmarks import write_strength
    from mnm_keras import memory

    # One linear layer: the normalised write at rate 0.5 stores the pair up to epsilon
    # (error times (eps / (|k|^2 + eps))^2), the paper's step at a small key barely moves
    # it (times (1 - |k|^2)^2), and at a large key overshoots.
    rows = write_strength.error_ratios(
        [0.5], [(0.01, 1.0), (30.0, 1.0)], layers=1, units=8, draws=4
    )
    ratio = {(row["normalize"], row["key_sq_norm"]): row["ratio"] for row in rows}
    eps = memory.NORMALIZATION_EPSILON
    np.testing.assert_allclose(ratio[True, 0.01], (eps / (0.01 + eps)) ** 2, rtol=1e-3)
    assert ratio[True, 30.0] < 1e-6
    np.testing.assert_allclose(ratio[False, 0.01], 0.99**2, rtol=1e-3)
    np.testing.assert_allclose(ratio[False, 30.0], 29.0**2, rtol=1e-3)
    table = write_strength.format_table(rows)
    assert table.count("\n") == 1 + len(rows)


def test_the_maze_throughput_runs_from_the_benchmark(tmp_path, capsys):
    args = [
        "--networks=lstm",
        "--num_parallel_episodes=2",
        "--iterations=1",
        "--episode_length=4",
        f"--out_dir={tmp_path}",
    ]
    assert benchmark.run_maze(args) == 0
    assert "| lstm | 2 |" in capsys.readouterr().out
    assert (tmp_path / "maze_throughput.json").exists()
