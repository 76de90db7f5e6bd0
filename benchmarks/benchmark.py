r"""Training-step time and peak memory of LSTM, SALU, MNM-p and MNM-g against sequence length.

    python benchmarks/benchmark.py                       # the tables of docs/performance.md
    python benchmarks/benchmark.py --lengths=16,64 --steps=3 --skip_memory --maze=false
    python benchmarks/benchmark.py --render              # docs/performance.md from the JSON

For every sequence length, all models are timed in this one process, interleaved
repetition by repetition, so that their ratios hold on a noisy shared machine: one
training step is forward + backward + Adam update (`train_on_batch`), at batch 32,
controller 100, memory 3 x 100, H = 1 (the paper's algorithmic setting); the time is the
median over ``--steps`` steps after ``--warmup`` steps. Peak memory is measured honestly:
each (model, length, xla) runs a few training steps in a fresh child process whose peak
resident set size (``VmHWM``, see `own_peak_rss`) is reported as ``peak_memory_bytes``; a child that only
imports TensorFlow and Keras gives the runtime's own baseline, and
``training_memory_bytes`` = peak - baseline is what the model's training adds (the memory
ratios use it). ``--skip_memory`` leaves memory out. Models: ``mnm_p`` / ``mnm_g`` are
`mnm_keras.MNM` (its compiled memory-efficient loop, the default), ``mnm_p_cell`` /
``mnm_g_cell`` are ``keras.layers.RNN(MNMCell(...))`` (the line users write), every model
compiled with Keras' default ``compile()`` unless ``--xla=true``.

Writes ``--out_dir/<model>.json`` (per length and XLA setting: ``seconds_per_step``,
``peak_memory_bytes``, ``training_memory_bytes``, ``ratio_to_lstm``,
``memory_ratio_to_lstm``), ``--out_dir/benchmark.png`` (time and training memory against
length, log axes, as the paper's figure 3) and prints a table.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list(
        "models",
        ["lstm", "mnm_p", "mnm_g", "mnm_p_cell", "mnm_g_cell"],
        "Models to compare: lstm, salu (mnm_keras.SALU), salu_cell "
        "(keras.layers.RNN(SALUCell)), mnm_p, mnm_g (mnm_keras.MNM), mnm_p_cell, "
        "mnm_g_cell (keras.layers.RNN(MNMCell)); an MNM model with the suffix _kernel or "
        "_xla runs with implementation='kernel' or 'xla' (the fused C++ kernel or the "
        "XLA reference; without a suffix: 'auto'), one with the suffix _no_xla "
        "runs with jit_compile=False.",
    )
    flags.DEFINE_list("lengths", ["16", "64", "256", "1024"], "Lengths.")
    flags.DEFINE_list("xla", ["false"], "Keras compile(jit_compile=...) settings to run.")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_integer("units", 100, "Controller / LSTM units.")
    flags.DEFINE_integer("memory_units", 100, "Memory width, key and value size.")
    flags.DEFINE_integer("features", 12, "Input features.")
    flags.DEFINE_integer("warmup", 2, "Untimed steps first (tracing, compilation).")
    flags.DEFINE_integer("steps", 5, "Timed steps; the median is reported.")
    flags.DEFINE_bool("skip_memory", False, "Do not measure peak memory.")
    flags.DEFINE_integer(
        "salu_max_length",
        512,
        "Skip SALU above this length: every step reads the whole table, so its time grows "
        "with T^2.",
    )
    flags.DEFINE_string("out_dir", RESULTS, "Where the JSON and PNG go.")
    flags.DEFINE_bool(
        "maze",
        True,
        "Then run benchmarks/maze_throughput.py (the maze agents' episodes/s; needs the "
        "agents extra) in a child process, with --maze_args.",
    )
    flags.DEFINE_multi_string(
        "maze_args", [], "A flag for maze_throughput.py (repeatable), e.g. --iterations=2."
    )
    flags.DEFINE_bool(
        "render", False, "Only rewrite docs/performance.md's tables from their records."
    )
    flags.DEFINE_string("child", "", "Internal: 'model,length,xla' to run in a child process.")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join("benchmarks", "results", "train_step")
DOC = os.path.join("docs", "performance.md")
TABLE_START, TABLE_END = "<!-- benchmark table: ", "<!-- end of benchmark table -->"
# Through keras.layers.RNN(cell): the cell's path, every phi_t (or SALU table) kept for
# backprop.
CELL_MODELS = ("mnm_p_cell", "mnm_g_cell", "salu_cell")
NAMES = {
    "lstm": "`keras.layers.LSTM`",
    "salu": "`SALU`",
    "salu_cell": "`RNN(SALUCell)`",
    "mnm_p": "`MNM`, MNM-p",
    "mnm_g": "`MNM`, MNM-g",
    "mnm_p_cell": "`RNN(MNMCell)`, MNM-p",
    "mnm_g_cell": "`RNN(MNMCell)`, MNM-g",
    "mnm_p_no_xla": "`MNM(jit_compile=False)`, MNM-p",
    "mnm_g_no_xla": "`MNM(jit_compile=False)`, MNM-g",
    "mnm_p_cell_no_xla": "`RNN(MNMCell(jit_compile=False))`, MNM-p",
    "mnm_p_kernel": "`MNM(implementation='kernel')`, MNM-p",
    "mnm_p_xla": "`MNM(implementation='xla')`, MNM-p",
    "mnm_p_cell_kernel": "`RNN(MNMCell(implementation='kernel'))`, MNM-p",
    "mnm_p_cell_xla": "`RNN(MNMCell(implementation='xla'))`, MNM-p",
    "mnm_g_kernel": "`MNM(implementation='kernel')`, MNM-g",
    "mnm_g_xla": "`MNM(implementation='xla')`, MNM-g",
    "mnm_g_cell_kernel": "`RNN(MNMCell(implementation='kernel'))`, MNM-g",
    "mnm_g_cell_xla": "`RNN(MNMCell(implementation='xla'))`, MNM-g",
    "mnm_g_cell_no_xla": "`RNN(MNMCell(jit_compile=False))`, MNM-g",
}


def build(model, length, units, memory_units, features, jit_compile):
    """A compiled per-step classifier with the given recurrent core."""
    import keras

    from mnm_keras import models

    inputs = keras.Input((length, features))
    options = {}
    if model.endswith("_no_xla"):  # the same layer with its loops not compiled
        model, options = model.removesuffix("_no_xla"), {"jit_compile": False}
    for implementation in ("kernel", "xla"):  # the fused kernel, or the XLA reference
        if model.endswith(f"_{implementation}"):
            model = model.removesuffix(f"_{implementation}")
            options = {**options, "implementation": implementation}
    if model in CELL_MODELS:  # through keras.layers.RNN(MNMCell) or RNN(SALUCell)
        model, options = model.removesuffix("_cell"), {**options, "memory_efficient": False}
    core = models.recurrent_layer(
        model,
        units=units,
        memory_units=memory_units,
        key_size=memory_units,
        value_size=memory_units,
        max_length=length,
        return_sequences=True,
        seed=0,
        **options,
    )
    network = keras.Model(inputs, keras.layers.Dense(10)(core(inputs)))
    network.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return network


def batch(length, batch_size, features):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch_size, length, features)).astype("float32")
    y = rng.integers(0, 10, size=(batch_size, length)).astype("int32")
    return x, y


def time_models(models, length, jit_compile, config):
    """Median seconds per training step of every model, interleaved to share the noise."""
    import numpy as np

    x, y = batch(length, config["batch_size"], config["features"])
    networks = {
        m: build(
            m, length, config["units"], config["memory_units"], config["features"], jit_compile
        )
        for m in models
    }
    for network in networks.values():
        for _ in range(config["warmup"]):
            network.train_on_batch(x, y)
    times = {m: [] for m in models}
    for _ in range(config["steps"]):
        for m, network in networks.items():
            start = time.perf_counter()
            network.train_on_batch(x, y)
            times[m].append(time.perf_counter() - start)
    return {m: float(np.median(t)) for m, t in times.items()}


def peak_memory(model, length, jit_compile, config):
    """Peak RSS (bytes) of a fresh process that builds the model and trains a few steps
    (``model="baseline"``: one that only imports TensorFlow and Keras)."""
    spec = "baseline" if model == "baseline" else f"{model},{length},{str(jit_compile).lower()}"
    command = [
        sys.executable,
        os.path.abspath(__file__),
        f"--child={spec}",
        f"--batch_size={config['batch_size']}",
        f"--units={config['units']}",
        f"--memory_units={config['memory_units']}",
        f"--features={config['features']}",
    ]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        # E.g. killed for memory: reported as missing, not as a number, and said why.
        print(
            f"peak memory of {spec} not measured: child exited {result.returncode}: "
            f"{result.stderr.strip()[-500:]}",
            file=sys.stderr,
        )
        return None
    return int(result.stdout.strip().splitlines()[-1])


def own_peak_rss():
    """This process's peak resident set size in bytes.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this address space. Not
    ``ru_maxrss``, which Linux carries over from the parent across fork and exec, so a
    child of a large process would report the parent's size.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_child(spec):
    if spec == "baseline":
        import keras  # noqa: F401  (the runtime's own footprint)
        import tensorflow  # noqa: F401

        print(own_peak_rss())
        return
    model, length, jit = spec.split(",")
    network = build(
        model, int(length), FLAGS.units, FLAGS.memory_units, FLAGS.features, jit == "true"
    )
    x, y = batch(int(length), FLAGS.batch_size, FLAGS.features)
    for _ in range(3):
        network.train_on_batch(x, y)
    print(own_peak_rss())


def plot(results, path):
    from matplotlib.figure import Figure  # no GUI backend needed

    figure = Figure(figsize=(11, 4), dpi=100)
    left, right = figure.subplots(1, 2)
    for model, rows in results.items():
        for xla in sorted({r["xla"] for r in rows}):
            sel = [r for r in rows if r["xla"] == xla]
            style = "-" if not xla else "--"
            label = f"{model}{' (XLA)' if xla else ''}"
            lengths = [r["length"] for r in sel]
            left.plot(lengths, [r["seconds_per_step"] for r in sel], style, marker="o", label=label)
            memory = [
                (r["length"], r["training_memory_bytes"]) for r in sel if r["training_memory_bytes"]
            ]
            if memory:
                right.plot(
                    *zip(*[(n, b / 2**20) for n, b in memory]), style, marker="o", label=label
                )
    for axes, ylabel in (
        (left, "seconds per training step"),
        (right, "training memory: peak RSS - runtime (MiB)"),
    ):
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("sequence length")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    left.set_title("training-step time (batch 32)")
    right.set_title("peak memory (fresh process per point)")
    figure.tight_layout()
    figure.savefig(path)


def _write(results, config, out_dir):
    """Memory ratios, one JSON per model, and the PNG, from the rows so far."""
    for m in results:
        for row in results[m]:
            base = next(
                r for r in results["lstm"] if (r["length"], r["xla"]) == (row["length"], row["xla"])
            )
            if row["training_memory_bytes"] and base["training_memory_bytes"]:
                row["memory_ratio_to_lstm"] = (
                    row["training_memory_bytes"] / base["training_memory_bytes"]
                )
        with open(os.path.join(out_dir, f"{m}.json"), "w") as f:
            json.dump({"model": m, "config": config, "results": results[m]}, f, indent=2)
    plot(results, os.path.join(out_dir, "benchmark.png"))


def log_log_slope(rows):
    """Least-squares slope of log(seconds per step) against log(length)."""
    import numpy as np

    lengths = np.log([r["length"] for r in rows])
    seconds = np.log([r["seconds_per_step"] for r in rows])
    return float(np.polyfit(lengths, seconds, 1)[0]) if len(rows) > 1 else float("nan")


def load_results(out_dir):
    """``{model: rows}`` from the ``<model>.json`` files of a benchmark run."""
    results = {}
    for name in sorted(os.listdir(out_dir)):
        if name.endswith(".json"):
            with open(os.path.join(out_dir, name)) as f:
                record = json.load(f)
            results[record["model"]] = record["results"]
    return results


def render_table(results, xla=False):
    """The markdown table of docs/performance.md: time and memory ratios to the LSTM.

    One row per model (in `NAMES` order), one column per length with the ratio of the
    training-step time to ``keras.layers.LSTM``'s in the same run, then the training
    memory at the longest length (MiB and ratio) and the log-log slope of time against
    length.
    """
    models = [m for m in NAMES if m in results]
    rows = {m: [r for r in results[m] if r["xla"] == xla] for m in models}
    lengths = sorted({r["length"] for m in models for r in rows[m]})
    longest = lengths[-1]
    header = ["model"] + [f"T = {n}" for n in lengths]
    header += [f"memory at T = {longest}, MiB (x LSTM)", "slope"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for m in models:
        by_length = {r["length"]: r for r in rows[m]}
        cells = [NAMES[m]]
        for n in lengths:
            row = by_length.get(n)
            cells.append(
                "-"
                if row is None
                else f"{row['ratio_to_lstm']:.1f}x ({row['seconds_per_step']:.3f} s)"
            )
        last = by_length.get(longest)
        if last and last["training_memory_bytes"]:
            ratio = last.get("memory_ratio_to_lstm")
            memory = f"{last['training_memory_bytes'] / 2**20:.0f}"
            cells.append(memory + ("" if ratio is None else f" ({ratio:.1f}x)"))
        else:
            cells.append("-")
        cells.append(f"{log_log_slope(rows[m]):.2f}" if len(rows[m]) > 1 else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _sibling(name):
    """The module ``benchmarks/<name>.py`` (imported as a package or, run as a script, by name)."""
    import importlib

    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ImportError:  # run as a script, from benchmarks/
        return importlib.import_module(name)


def render_doc(doc=DOC, write=True):
    """Renders every benchmark table of ``doc`` from its records.

    A table is the text between ``<!-- benchmark table: DIR -->`` and `TABLE_END`, where
    DIR (relative to the repository) holds a run's ``<model>.json``; it becomes
    `render_table` of that run (or, for a ``factored_memory.json``, ``kernel_profile.json``
    or ``maze_throughput.json`` record, that script's ``render_table``). Returns ``(current text, rendered text)`` and writes the
    rendered one when ``write``.
    """
    path = doc if os.path.isabs(doc) else os.path.join(ROOT, doc)
    with open(path) as f:
        text = f.read()

    def table(match):
        for name in ("factored_memory", "kernel_profile", "maze_throughput"):
            path = os.path.join(ROOT, match.group(1), f"{name}.json")
            if os.path.exists(path):
                module = _sibling(name)
                with open(path) as f:
                    record = json.load(f)
                return (
                    f"{TABLE_START}{match.group(1)} -->\n{module.render_table(record)}{TABLE_END}"
                )
        results = load_results(os.path.join(ROOT, match.group(1)))
        # A run with compile(jit_compile=True) only (as on JAX, where it is Keras's
        # default) is rendered from those rows.
        xla = all(row["xla"] for rows in results.values() for row in rows)
        return f"{TABLE_START}{match.group(1)} -->\n{render_table(results, xla)}{TABLE_END}"

    pattern = re.escape(TABLE_START) + r"(\S+) -->\n.*?" + re.escape(TABLE_END)
    rendered, count = re.subn(pattern, table, text, flags=re.S)
    if not count:
        raise ValueError(f"{doc} has no '{TABLE_START}DIR -->' ... '{TABLE_END}' block.")
    if write:
        with open(path, "w") as f:
            f.write(rendered)
    return text, rendered


def run_benchmark(
    models, lengths, xla_settings, config, out_dir, measure_memory=True, salu_max_length=None
):
    """Times (and measures) every model at every length; writes JSON and PNG; returns rows.

    The JSON files and the PNG are rewritten after every length, so an interrupted run
    keeps what it measured.
    """
    models = list(models)
    if "lstm" not in models:
        models.insert(0, "lstm")  # the reference of every ratio
    os.makedirs(out_dir, exist_ok=True)
    baseline = peak_memory("baseline", 0, False, config) if measure_memory else None
    results = {m: [] for m in models}
    print(f"{'model':11s} {'length':>6s} {'xla':>5s} {'s/step':>9s} {'x LSTM':>7s} {'MiB':>7s}")
    for xla in xla_settings:
        for length in lengths:
            active = [
                m
                for m in models
                if not (m.startswith("salu") and salu_max_length and length > salu_max_length)
            ]
            seconds = time_models(active, length, xla, config)
            for m in active:
                peak = peak_memory(m, length, xla, config) if measure_memory else None
                training = None if peak is None or baseline is None else peak - baseline
                row = {
                    "length": length,
                    "xla": xla,
                    "seconds_per_step": seconds[m],
                    "ratio_to_lstm": seconds[m] / seconds["lstm"],
                    "peak_memory_bytes": peak,
                    "baseline_memory_bytes": baseline,
                    "training_memory_bytes": training,
                    "memory_ratio_to_lstm": None,
                }
                results[m].append(row)
                mib = "-" if training is None else f"{training / 2**20:.0f}"
                print(
                    f"{m:11s} {length:6d} {str(xla):>5s} {seconds[m]:9.4f} "
                    f"{row['ratio_to_lstm']:7.2f} {mib:>7s}",
                    flush=True,
                )
            _write(results, config, out_dir)
    print(f"\nwrote {out_dir}/<model>.json and {out_dir}/benchmark.png\n")
    for xla in xla_settings:
        print(render_table(results, xla))
    return results


def run_maze(args):
    """Runs benchmarks/maze_throughput.py with ``args`` in a child process (TF-Agents needs
    ``TF_USE_LEGACY_KERAS`` set before TensorFlow loads); its table goes to this output.
    Returns its exit status."""
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "maze_throughput.py"), *args]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    print("\n".join(table) if table else result.stderr.strip()[-2000:], flush=True)
    return result.returncode


def main(argv):
    del argv
    if FLAGS.child:
        run_child(FLAGS.child)
        return
    if FLAGS.render:
        render_doc()
        print(f"rewrote the tables of {DOC} from their records")
        return
    import keras

    config = {
        # Keras's backend (KERAS_BACKEND): every model of a run, the LSTM included, runs on it.
        "backend": keras.backend.backend(),
        "batch_size": FLAGS.batch_size,
        "units": FLAGS.units,
        "memory_units": FLAGS.memory_units,
        "features": FLAGS.features,
        "warmup": FLAGS.warmup,
        "steps": FLAGS.steps,
    }
    run_benchmark(
        FLAGS.models,
        [int(n) for n in FLAGS.lengths],
        [x.lower() == "true" for x in FLAGS.xla],
        config,
        FLAGS.out_dir,
        measure_memory=not FLAGS.skip_memory,
        salu_max_length=FLAGS.salu_max_length,
    )
    if FLAGS.maze:
        print("\nmaze agents (benchmarks/maze_throughput.py):")
        if run_maze(FLAGS.maze_args):
            raise SystemExit("benchmarks/maze_throughput.py failed (see above).")


if __name__ == "__main__":
    define_flags()
    app.run(main)
