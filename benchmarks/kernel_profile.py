r"""Where a training step of `MNM` spends its time, through the fused kernel or XLA.

    python -m benchmarks.kernel_profile
    python -m benchmarks.kernel_profile --lengths=64,256 --implementations=kernel --steps=3
    python -m benchmarks.kernel_profile --rules=mnm_g --out_dir=benchmarks/results/kernel_profile_mnm_g

The training step of benchmarks/benchmark.py (per-step classifier, batch 32, controller
100, memory 3 x 100, H = 1, `train_on_batch`; MNM-p, MNM-g or both by ``--rules``) is taken apart by timing nested pieces of
it in this one process, each a `tf.function`, interleaved repetition by repetition (the
median over ``--steps`` after one untimed call):

* ``recurrence forward``: the recurrence alone (`mnm_keras.fused.recurrence` or the XLA
  loop of `mnm_keras.core`), on the hoisted input projection, no gradient tape;
* ``recurrence backward``: the recurrence with its gradient (every weight's and the
  input projection's) minus the forward above;
* ``projections``: the whole layer (`mnm_keras.core.unroll`: input projection, recurrence,
  output projection) with its gradient, minus the recurrence with its gradient;
* ``classifier, loss, Adam, Keras``: `train_on_batch` of the whole model minus the layer
  with its gradient;

and ``keras.layers.LSTM``'s `train_on_batch` in the same run, the unit of the ratios.
Writes ``--out_dir/kernel_profile.json`` and a stacked bar chart ``kernel_profile.png``,
and prints a table.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import app, flags

FLAGS = flags.FLAGS

RULES = ("mnm_p", "mnm_g")
PIECES = (
    "recurrence forward",
    "recurrence backward",
    "projections",
    "classifier, loss, Adam, Keras",
)


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list("lengths", ["64"], "Sequence lengths.")
    flags.DEFINE_list("implementations", ["kernel", "xla"], "MNM implementations: kernel, xla.")
    flags.DEFINE_list("rules", ["mnm_p"], "Write rules: mnm_p, mnm_g.")
    flags.DEFINE_integer("batch_size", 32, "Batch size.")
    flags.DEFINE_integer("steps", 7, "Timed repetitions; the median is reported.")
    flags.DEFINE_string("out_dir", "benchmarks/results/kernel_profile", "Where results go.")


def _median_seconds(functions, steps):
    """Median seconds of every zero-argument function, interleaved; one untimed call first."""
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(steps):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _functions(implementation, length, batch_size, units=100, memory_units=100, rule="mnm_p"):
    """The timed pieces of one (rule, implementation, length): name -> zero-argument function."""
    import tensorflow as tf

    from benchmarks import benchmark
    from mnm_keras import core, fused

    if implementation not in ("kernel", "xla"):
        raise ValueError(
            f"`implementations` entries must be 'kernel' or 'xla'; received {implementation!r}."
        )
    if rule not in RULES:
        raise ValueError(f"`rules` entries must be one of {RULES}; received {rule!r}.")
    config = {"units": units, "memory_units": memory_units, "features": 12}
    x, y = benchmark.batch(length, batch_size, config["features"])
    model = benchmark.build(f"{rule}_{implementation}", length, jit_compile=False, **config)
    lstm = benchmark.build("lstm", length, jit_compile=False, **config)
    layer = next(lay for lay in model.layers if hasattr(lay, "cell"))
    cell = layer.cell
    inputs = tf.constant(x)
    variables = [v.value for v in cell.trainable_variables]  # the tf.Variables

    def recurrence(projected, state):
        if implementation == "kernel":
            return fused.recurrence(cell.config, cell.params(), projected, state, None)
        return core._loop_memory_efficient(
            cell.config, cell.params(), projected, state, None, True, True
        )

    def start():
        return core.initial_state(cell.config, cell.params(), batch_size)

    projected = core.project_inputs(cell.config, cell.params(), core.time_major_inputs(inputs)[0])

    @tf.function
    def forward():
        hs, reads, final = recurrence(projected, start())
        return tf.reduce_sum(hs) + tf.reduce_sum(reads) + tf.reduce_sum(final.meta)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(projected)
            hs, reads, final = recurrence(projected, start())
            loss = tf.reduce_sum(hs) + tf.reduce_sum(reads) + tf.reduce_sum(final.meta)
        zero = tf.UnconnectedGradients.ZERO  # the output projection is not in the recurrence
        return tape.gradient(loss, [projected, *variables], unconnected_gradients=zero)

    @tf.function
    def layer_forward_backward():
        with tf.GradientTape() as tape:
            outputs, final = core.unroll(
                cell.config, cell.params(), inputs, start(), implementation=implementation
            )
            loss = tf.reduce_sum(outputs) + tf.reduce_sum(final.meta)
        return tape.gradient(loss, variables)

    def run(function):
        return lambda: tf.nest.map_structure(lambda t: t.numpy(), function())

    return {
        "forward": run(forward),
        "forward_backward": run(forward_backward),
        "layer": run(layer_forward_backward),
        "train_step": lambda: model.train_on_batch(x, y),
        "lstm": lambda: lstm.train_on_batch(x, y),
    }


def pieces(seconds):
    """Timed nested pieces -> the seconds of each of `PIECES` (differences, floored at 0)."""
    return {
        PIECES[0]: seconds["forward"],
        PIECES[1]: max(seconds["forward_backward"] - seconds["forward"], 0.0),
        PIECES[2]: max(seconds["layer"] - seconds["forward_backward"], 0.0),
        PIECES[3]: max(seconds["train_step"] - seconds["layer"], 0.0),
    }


def run(implementations, lengths, batch_size, steps, units=100, memory_units=100, rules=("mnm_p",)):
    """Measures every (rule, implementation, length); returns the result rows.

    ``units`` / ``memory_units``: the controller's and the memory's sizes (the
    benchmark's 100 and 100 by default); ``rules``: "mnm_p" and / or "mnm_g".
    """
    if steps < 1:
        raise ValueError(f"`steps` must be at least 1; received {steps!r}.")
    rows = []
    for length in lengths:
        functions = {}
        for rule in rules:
            for implementation in implementations:
                built = _functions(implementation, length, batch_size, units, memory_units, rule)
                for name, function in built.items():
                    functions[rule, implementation, name] = function
        seconds = _median_seconds(functions, steps)
        for rule in rules:
            for implementation in implementations:
                own = {
                    name: s
                    for (r, i, name), s in seconds.items()
                    if (r, i) == (rule, implementation)
                }
                lstm = own["lstm"]
                split = pieces(own)
                rows.append(
                    {
                        "rule": rule,
                        "implementation": implementation,
                        "length": length,
                        "batch_size": batch_size,
                        "seconds": own,
                        "pieces": split,
                        "pieces_in_lstm_steps": {k: v / lstm for k, v in split.items()},
                        "ratio_to_lstm": own["train_step"] / lstm,
                    }
                )
    return rows


def _rule(row):
    """The write rule of a row as the docs name it (records before ``rules`` were MNM-p)."""
    return {"mnm_p": "MNM-p", "mnm_g": "MNM-g"}[row.get("rule", "mnm_p")]


def plot(rows, path):
    """Stacked bars: each piece in LSTM training steps, per (implementation, length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(2.5 + 1.5 * len(rows), 4))
    labels = [f"{_rule(r)}\n{r['implementation']}\nT={r['length']}" for r in rows]
    bottom = [0.0] * len(rows)
    for piece in PIECES:
        heights = [r["pieces_in_lstm_steps"][piece] for r in rows]
        axes.bar(labels, heights, bottom=bottom, label=piece)
        bottom = [b + h for b, h in zip(bottom, heights)]
    axes.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    axes.set_ylabel("time in LSTM training steps")
    axes.set_title("MNM training step, taken apart")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def table(rows):
    """The markdown table of the rows (each piece in LSTM training steps and its share)."""
    lines = [
        "| rule | implementation | T | " + " | ".join(PIECES) + " | whole step / LSTM step |",
        "| --- | --- | --- | " + " | ".join("---" for _ in PIECES) + " | --- |",
    ]
    for r in rows:
        total = sum(r["pieces"].values()) or 1.0
        cells = [
            f"{r['pieces_in_lstm_steps'][p]:.2f}x ({100 * r['pieces'][p] / total:.0f} %)"
            for p in PIECES
        ]
        lines.append(
            f"| {_rule(r)} | {r['implementation']} | {r['length']} | "
            + " | ".join(cells)
            + f" | {r['ratio_to_lstm']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def render_table(record):
    """The markdown table of a ``kernel_profile.json`` record."""
    return table(record["rows"])


def main(argv):
    del argv
    rows = run(
        FLAGS.implementations,
        [int(n) for n in FLAGS.lengths],
        FLAGS.batch_size,
        FLAGS.steps,
        rules=FLAGS.rules,
    )
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "kernel_profile.json"), "w") as f:
        json.dump({"rows": rows}, f, indent=2)
    plot(rows, os.path.join(FLAGS.out_dir, "kernel_profile.png"))
    print(table(rows), end="")


if __name__ == "__main__":
    define_flags()
    app.run(main)
