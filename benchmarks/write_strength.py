r"""How much one MNM-g write reduces the recall error at the written key (diagnostic).

    python benchmarks/write_strength.py
    python benchmarks/write_strength.py --rates=0.12,0.5,1 --scales=0.03:0.025,1:1,30:1

For a freshly initialised memory (``--layers`` x ``--units``, Glorot-uniform weights as
`mnm_keras.MNMCell`'s phi_0, tanh hidden layers, linear output), random keys and values
with the given squared norms (``--scales``, pairs ``|k|^2:|v|^2``) and ``--draws``
independent memories, prints the ratio ``||f_phi'(k) - v||^2 / ||f_phi(k) - v||^2`` of
the recall error after one `mnm_keras.memory.gradient_write` (equation 3) to the error
before it, for each rate and for the paper's step and the normalised one. A ratio of 0
writes the pair exactly, 1 leaves the memory unchanged, above 1 overshoots.

Only MNM-g: MNM-p's layer targets come from the cell's learned feedback functions, so a
write of the memory alone would need their (random) initial weights as well.
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list("rates", ["0.12", "0.5", "1.0"], "Write rates beta (0.12: the initial).")
    flags.DEFINE_list("scales", ["0.03:0.025", "1:1", "30:1"], "Pairs |k|^2:|v|^2.")
    flags.DEFINE_integer("layers", 3, "Memory layers.")
    flags.DEFINE_integer("units", 100, "Memory width = key size = value size.")
    flags.DEFINE_integer("draws", 64, "Independent memories (the batch).")
    flags.DEFINE_integer("seed", 0, "Seed of the memories, keys and values.")


def error_ratios(rates, scales, layers=3, units=100, draws=64, seed=0):
    """Mean recall-error ratio after one MNM-g write, for every setting.

    Args:
      rates: write rates.
      scales: pairs ``(|k|^2, |v|^2)``.
      layers, units, draws, seed: the memories (see the module docstring).

    Returns:
      A list of dicts with keys ``normalize``, ``key_sq_norm``, ``value_sq_norm``,
      ``rate``, ``error_before``, ``ratio``.
    """
    import tensorflow as tf

    from mnm_keras import memory

    rng = np.random.default_rng(seed)
    limit = np.sqrt(6.0 / (2 * units))
    weights = [
        tf.constant(rng.uniform(-limit, limit, (draws, units, units)), tf.float32)
        for _ in range(layers)
    ]

    def directions():
        x = rng.normal(size=(draws, 1, units))
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    rows = []
    for key_sq_norm, value_sq_norm in scales:
        keys = tf.constant(directions() * np.sqrt(key_sq_norm), tf.float32)
        values = tf.constant(directions() * np.sqrt(value_sq_norm), tf.float32)
        before = memory.recall_error(weights, keys, values)  # equation 2, [draws]
        for normalize in (False, True):
            for rate in rates:
                written = memory.gradient_write(
                    weights, keys, values, tf.fill([draws], float(rate)), normalize=normalize
                )
                after = memory.recall_error(written, keys, values)
                rows.append(
                    {
                        "normalize": normalize,
                        "key_sq_norm": float(key_sq_norm),
                        "value_sq_norm": float(value_sq_norm),
                        "rate": float(rate),
                        "error_before": float(tf.reduce_mean(before)),
                        "ratio": float(tf.reduce_mean(after / before)),
                    }
                )
    return rows


def format_table(rows):
    """The rows as a Markdown table."""
    lines = [
        "| write | abs(k)^2 | abs(v)^2 | rate | error before | error after / before |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {'normalised' if row['normalize'] else 'paper (eq. 3)'} | "
            f"{row['key_sq_norm']:g} | {row['value_sq_norm']:g} | {row['rate']:g} | "
            f"{row['error_before']:.4f} | {row['ratio']:.4f} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    scales = [tuple(float(x) for x in pair.split(":")) for pair in FLAGS.scales]
    rows = error_ratios(
        [float(r) for r in FLAGS.rates], scales, FLAGS.layers, FLAGS.units, FLAGS.draws, FLAGS.seed
    )
    print(format_table(rows))


if __name__ == "__main__":
    define_flags()
    app.run(main)
