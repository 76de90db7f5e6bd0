r"""The chunked factored memory against the materialised one: time of a training step.

    python benchmarks/factored_memory.py                      # table, JSON and PNG
    python benchmarks/factored_memory.py --chunks=1,8 --steps=3

MNM's memory weights change by a rank-H write at every step, ``M_t = M_{t-1} - a_t
b_t^T``, and the memory-efficient loop of `mnm_keras.core` materialises ``M_t`` at every
step: per step and layer it reads and writes the ``[B, D_out, D_in]`` weights several
times forwards (the update, the write-key, read and meta passes) and again backwards (the
rebuild, the recomputed step, the dense weight gradient and the transposed products).

The chunked form materialises the weights only every ``C`` steps. Within a chunk that
starts at ``M_0``, step ``j`` computes every product with the weights as

    M_{j-1} Z = M_0 Z - A_{<j} (B_{<j}^T Z),    A_{<j} = [a_1 .. a_{j-1}]  [B, j - 1, D_out]

so that the write key's, read key's and meta loss's passes through a layer are one product
with ``M_0`` (the three keys stacked, ``Z`` is ``[B, D_in, 3]``) plus an ``O(j D)``
correction, and the chunk's writes reach the weights as one rank-C product, ``M_C = M_0 -
A B^T``. Backwards, the weights' gradient stays factored within a chunk: the step's
product ``M_0 Z`` is computed with ``M_0`` held constant plus a zero probe, the probe's
gradient ``U`` is the product's, and the chunk adds ``sum_j U_j Z_j^T`` to the weights'
gradient as one product of ``[B, 3C, D_out]`` and ``[B, 3C, D_in]``. ``C = 1`` without the
probe is the materialised form with plain autodiff of each step, as `mnm_keras.core` has it.

The recurrence is MNM's at the benchmark's sizes (batch 32, controller and memory 100,
3 layers, H = 1): a tanh controller that reads the previous read-out, keys, values and a
rate from it (equation 1), the local perceptron write of every layer towards a feedback
target (equation 4), the read with the new weights and the meta loss of equation 5. Both
forms compute the same numbers: the script checks their losses and gradients against
plain autodiff of the whole sequence before it times anything. Every variant is compiled
with XLA and the variants are timed interleaved, repetition by repetition, in this one
process; the median over ``--steps`` repetitions after ``--warmup`` is reported with its
ratio to the materialised form.

Writes ``--out_dir/factored_memory.json`` and ``--out_dir/factored_memory.png``.
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list("chunks", ["1", "2", "4", "8", "16"], "Chunk lengths C to time.")
    flags.DEFINE_list("lengths", ["64"], "Sequence lengths T (multiples of every C).")
    flags.DEFINE_integer("batch_size", 32, "Batch size B.")
    flags.DEFINE_integer("units", 100, "Controller, key, value and memory width D.")
    flags.DEFINE_integer("layers", 3, "Memory layers L.")
    flags.DEFINE_integer("warmup", 2, "Untimed repetitions first (compilation).")
    flags.DEFINE_integer("steps", 7, "Timed repetitions; the median is reported.")
    flags.DEFINE_string("out_dir", "benchmarks/results/factored_memory", "Output folder.")


def make_params(units, layers, seed=0):
    """The controller's, interface's and feedback weights, float32 tensors."""
    rng = np.random.default_rng(seed)

    def weight(*shape):
        return tf.constant(rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape), tf.float32)

    return dict(
        recurrent=weight(units, units),
        read=weight(units, units),
        interface=weight(units, 3 * units),
        rate=weight(units, 1),
        feedback=[weight(units, units) for _ in range(layers)],
    )


def _controller(params, x, h, r):
    """``h_t = tanh(x_t + h_{t-1} U + r_{t-1} R)``, then keys, value and rate (eq. 1)."""
    h = tf.tanh(x + h @ params["recurrent"] + r @ params["read"])
    write_key, read_key, value = tf.split(tf.tanh(h @ params["interface"]), 3, axis=-1)
    rate = tf.sigmoid(h @ params["rate"])
    return h, write_key, read_key, value, rate


def _memory_step(params, weights, factors, write_key, read_key, value, rate, probes):
    """One write, read and meta recall with the weights ``M_0 - A B^T`` of this chunk.

    ``weights`` are the chunk's ``M_0`` ``[B, D_out, D_in]`` per layer, ``factors`` the
    writes of the chunk so far (per layer, lists of ``a [B, D_out]`` and ``b [B, D_in]``),
    ``probes`` None or zeros ``[B, 3, D_out]`` per layer. Returns the read-out, the meta
    loss, this step's factors and each layer's stacked inputs ``Z [B, 3, D_in]``.
    """
    layers = len(weights)
    zw, zr, zm = write_key, read_key, write_key
    new_factors, inputs = [], []
    for index in range(layers):
        z = tf.stack([zw, zr, zm], axis=1)
        weight = weights[index]
        if probes is not None:
            y = tf.einsum("bij,bkj->bki", tf.stop_gradient(weight), z) + probes[index]
        else:
            y = tf.einsum("bij,bkj->bki", weight, z)
        a_list, b_list = factors[index]
        if a_list:
            a_prev, b_prev = tf.stack(a_list, axis=1), tf.stack(b_list, axis=1)
            coefficients = tf.einsum("bsj,bkj->bks", b_prev, z)
            y = y - tf.einsum("bks,bsi->bki", coefficients, a_prev)
        yw, yr, ym = tf.unstack(y, axis=1)
        # Equation 4: towards the feedback target of the value, at the write key's input.
        a = rate * (yw - value @ params["feedback"][index])
        b = zw
        yr = yr - a * tf.reduce_sum(b * zr, axis=-1, keepdims=True)
        ym = ym - a * tf.reduce_sum(b * zm, axis=-1, keepdims=True)
        activation = tf.tanh if index < layers - 1 else tf.identity
        zw, zr, zm = activation(yw), activation(yr), activation(ym)
        new_factors.append((a, b))
        inputs.append(z)
    meta = tf.reduce_mean(tf.reduce_sum(tf.square(zm - value), axis=-1))
    return zr, meta, new_factors, inputs


def run_chunk(params, weights, h, r, xs, probes=None):
    """``len(xs)`` steps from the chunk's start weights; the chunk's factors stacked.

    Returns ``(h, r, reads [C, B, D], meta, A, B, Z)`` with ``A`` ``[B, C, D_out]`` and
    ``B`` ``[B, C, D_in]`` per layer and ``Z`` the layers' inputs of every step.
    """
    layers = len(weights)
    factors = [([], []) for _ in range(layers)]
    reads, inputs, meta = [], [], 0.0
    for j in range(xs.shape[0]):
        h, write_key, read_key, value, rate = _controller(params, xs[j], h, r)
        step_probes = None if probes is None else [p[j] for p in probes]
        r, step_meta, new, z = _memory_step(
            params, weights, factors, write_key, read_key, value, rate, step_probes
        )
        for index, (a, b) in enumerate(new):
            factors[index][0].append(a)
            factors[index][1].append(b)
        reads.append(r)
        inputs.append(z)
        meta = meta + step_meta
    a_all = [tf.stack(a, axis=1) for a, _ in factors]
    b_all = [tf.stack(b, axis=1) for _, b in factors]
    return h, r, tf.stack(reads), meta, a_all, b_all, inputs


def _apply(weights, a_all, b_all, sign=-1.0):
    return [w + sign * tf.einsum("bsi,bsj->bij", a, b) for w, a, b in zip(weights, a_all, b_all)]


def loss_and_gradients(params, weights, xs, read_weights, chunk, probe):
    """The loss ``sum_t <read_t, w_t> + sum_t meta_t`` and its gradients with respect to
    the inputs ``xs [T, B, D]``, the initial weights and the parameters, by a forward loop
    over chunks that keeps only the chunks' factors and start states and a backward loop
    that rebuilds each chunk's start weights and recomputes the chunk under a tape."""
    steps, batch, units = xs.shape
    chunks = steps // chunk
    layers = len(weights)
    xs_c = tf.reshape(xs, (chunks, chunk, batch, units))
    w_c = tf.reshape(read_weights, (chunks, chunk, batch, units))
    h0 = tf.zeros((batch, units))
    r0 = tf.zeros((batch, units))
    flat_params = tf.nest.flatten(params)

    def forward(k, current, h, r, h_ta, r_ta, a_tas, b_tas, loss):
        h_ta, r_ta = h_ta.write(k, h), r_ta.write(k, r)
        h, r, reads, chunk_meta, a_all, b_all, _ = run_chunk(params, current, h, r, xs_c[k])
        a_tas = [ta.write(k, a) for ta, a in zip(a_tas, a_all)]
        b_tas = [ta.write(k, b) for ta, b in zip(b_tas, b_all)]
        loss = loss + tf.reduce_sum(reads * w_c[k]) + chunk_meta
        return k + 1, _apply(current, a_all, b_all), h, r, h_ta, r_ta, a_tas, b_tas, loss

    def ta(shape):
        return tf.TensorArray(tf.float32, size=chunks, element_shape=shape)

    factor_shape = (batch, chunk, units)
    _, final, *_, h_ta, r_ta, a_tas, b_tas, loss = tf.while_loop(
        lambda k, *_: k < chunks,
        forward,
        (
            0,
            list(weights),
            h0,
            r0,
            ta(h0.shape),
            ta(r0.shape),
            [ta(factor_shape) for _ in range(layers)],
            [ta(factor_shape) for _ in range(layers)],
            0.0,
        ),
        maximum_iterations=chunks,
    )
    hs, rs = h_ta.stack(), r_ta.stack()
    a_saved = [t.stack() for t in a_tas]
    b_saved = [t.stack() for t in b_tas]

    def backward(k, current, d_weights, d_h, d_r, d_params, d_xs_ta):
        start = _apply(current, [a[k] for a in a_saved], [b[k] for b in b_saved], sign=1.0)
        x, h, r = xs_c[k], hs[k], rs[k]
        probes = [tf.zeros((chunk, batch, 3, units)) for _ in range(layers)] if probe else None
        with tf.GradientTape() as tape:
            tape.watch([x, h, r, flat_params, probes if probe else start])
            chunk_params = tf.nest.pack_sequence_as(params, flat_params)
            h_end, r_end, reads, meta, a_all, b_all, inputs = run_chunk(
                chunk_params, start, h, r, x, probes
            )
        # M_C = M_0 - A B^T: the chunk's factors feed the next chunk's weights.
        d_a = [-tf.einsum("bij,bsj->bsi", d, b) for d, b in zip(d_weights, b_all)]
        d_b = [-tf.einsum("bij,bsi->bsj", d, a) for d, a in zip(d_weights, a_all)]
        sources = [x, h, r, flat_params, probes if probe else start]
        d_x, d_h0, d_r0, d_step_params, d_start = tape.gradient(
            [h_end, r_end, reads, meta, a_all, b_all],
            sources,
            output_gradients=[d_h, d_r, w_c[k], tf.ones(()), d_a, d_b],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        if probe:
            # The chunk's weight gradient: sum_j U_j Z_j^T as one rank-3C product.
            new_d_weights = []
            for index in range(layers):
                u = tf.concat(tf.unstack(d_start[index]), axis=1)
                z = tf.concat([step[index] for step in inputs], axis=1)
                new_d_weights.append(d_weights[index] + tf.einsum("bki,bkj->bij", u, z))
        else:
            new_d_weights = [d + g for d, g in zip(d_weights, d_start)]
        d_params = [p + g for p, g in zip(d_params, d_step_params)]
        return k - 1, start, new_d_weights, d_h0, d_r0, d_params, d_xs_ta.write(k, d_x)

    _, _, d_weights, _, _, d_params, d_xs_ta = tf.while_loop(
        lambda k, *_: k >= 0,
        backward,
        (
            chunks - 1,
            list(final),
            [tf.zeros_like(w) for w in weights],
            tf.zeros_like(h0),
            tf.zeros_like(r0),
            [tf.zeros_like(p) for p in flat_params],
            tf.TensorArray(tf.float32, size=chunks, element_shape=(chunk, batch, units)),
        ),
        maximum_iterations=chunks,
    )
    d_xs = tf.reshape(d_xs_ta.stack(), xs.shape)
    return loss, d_xs, d_weights, d_params


def reference_loss_and_gradients(params, weights, xs, read_weights):
    """Plain autodiff of the whole sequence with materialised weights (the check)."""
    flat_params = tf.nest.flatten(params)
    with tf.GradientTape() as tape:
        tape.watch([xs, weights, flat_params])
        chunk_params = tf.nest.pack_sequence_as(params, flat_params)
        h = r = tf.zeros(xs.shape[1:])
        current, loss = list(weights), 0.0
        for t in range(xs.shape[0]):
            h, r, reads, meta, a_all, b_all, _ = run_chunk(
                chunk_params, current, h, r, xs[t : t + 1]
            )
            current = _apply(current, a_all, b_all)
            loss = loss + tf.reduce_sum(reads[0] * read_weights[t]) + meta
    return (loss, *tape.gradient(loss, [xs, weights, flat_params]))


def inputs(length, batch, units, layers, seed=1):
    rng = np.random.default_rng(seed)
    xs = tf.constant(rng.normal(size=(length, batch, units)), tf.float32)
    read_weights = tf.constant(rng.normal(size=(length, batch, units)), tf.float32)
    base = [rng.normal(0.0, 1.0 / np.sqrt(units), (units, units)) for _ in range(layers)]
    weights = [tf.constant(np.broadcast_to(w, (batch, units, units)), tf.float32) for w in base]
    return xs, read_weights, weights


def variants(chunks):
    """(name, chunk, probe): the materialised form first, then the chunked ones."""
    out = [("materialised (C = 1, autodiff)", 1, False)]
    out += [(f"factored, C = {c}", c, True) for c in chunks]
    return out


def check(params, weights, xs, read_weights, chunk, probe, tolerance=2e-3):
    """The variant's loss and gradients equal plain autodiff's (relative max error)."""
    expected = reference_loss_and_gradients(params, weights, xs, read_weights)
    got = loss_and_gradients(params, weights, xs, read_weights, chunk, probe)
    errors = []
    for e, g in zip(tf.nest.flatten(expected), tf.nest.flatten(got)):
        scale = float(tf.reduce_max(tf.abs(e))) + 1e-6
        errors.append(float(tf.reduce_max(tf.abs(e - g))) / scale)
    worst = max(errors)
    if worst > tolerance:
        raise AssertionError(f"chunk={chunk} probe={probe}: relative error {worst:.2e}")
    return worst


def run(chunks, lengths, batch, units, layers, warmup, steps, out_dir):
    params = make_params(units, layers)
    small = inputs(8, 3, 6, layers)
    small_params = make_params(6, layers)
    checks = {}
    for name, chunk, probe in variants([c for c in chunks if 8 % c == 0]):
        checks[name] = check(small_params, small[2], small[0], small[1], chunk, probe)
    rows = []
    for length in lengths:
        xs, read_weights, weights = inputs(length, batch, units, layers)
        timed = [(n, c, p) for n, c, p in variants(chunks) if length % c == 0]
        functions = {
            name: tf.function(
                lambda x, w, v, c=chunk, p=probe: loss_and_gradients(params, v, x, w, c, p),
                jit_compile=True,
            )
            for name, chunk, probe in timed
        }
        times = {name: [] for name, _, _ in timed}
        for repetition in range(warmup + steps):
            for name, _, _ in timed:
                start = time.perf_counter()
                result = functions[name](xs, read_weights, weights)
                float(result[0])
                if repetition >= warmup:
                    times[name].append(time.perf_counter() - start)
        base = float(np.median(times[timed[0][0]]))
        for name, chunk, probe in timed:
            seconds = float(np.median(times[name]))
            rows.append(
                dict(
                    variant=name,
                    chunk=chunk,
                    factored_gradient=probe,
                    length=length,
                    seconds=seconds,
                    speedup=base / seconds,
                    gradient_check_relative_error=checks.get(name),
                )
            )
    costs = product_costs(batch, units, 64, warmup, steps)
    record = dict(
        config=dict(batch_size=batch, units=units, layers=layers, warmup=warmup, steps=steps),
        microseconds_per_operation=costs,
        machine=dict(
            processor=platform.processor() or platform.machine(),
            cpus=os.cpu_count(),
            tensorflow=tf.__version__,
        ),
        results=rows,
    )
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "factored_memory.json"), "w") as f:
        json.dump(record, f, indent=2)
    plot(rows, os.path.join(out_dir, "factored_memory.png"))
    print(render_table(record))
    return record


def render_table(record):
    """The markdown tables of docs/performance.md: forms, then single operations."""
    lines = [
        "| form | T | seconds per step (memory loop, forward + backward) | speed-up |",
        "| --- | --- | --- | --- |",
    ]
    for row in record["results"]:
        lines.append(
            f"| {row['variant']} | {row['length']} | {row['seconds']:.4f} | {row['speedup']:.2f}x |"
        )
    lines += [
        "",
        "| operation on the weights (XLA loop) | microseconds per step |",
        "| --- | --- |",
    ]
    for name, micro in record["microseconds_per_operation"].items():
        lines.append(f"| {name} | {micro:.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows, path):
    """Speed-up over the materialised form against the chunk length, one line per T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for length in sorted({row["length"] for row in rows}):
        factored = [r for r in rows if r["length"] == length and r["factored_gradient"]]
        ax.plot(
            [r["chunk"] for r in factored],
            [r["speedup"] for r in factored],
            "o-",
            label=f"T = {length}",
        )
    ax.axhline(1.0, linestyle="--", color="gray", label="materialised (C = 1, autodiff)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("chunk length C")
    ax.set_ylabel("speed-up of forward + backward")
    ax.set_title("Chunked factored memory against the materialised one")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def product_costs(batch, units, length, warmup, steps):
    """Microseconds per step of single operations on the ``[B, D, D]`` weights, each in
    an XLA loop of ``length`` steps (timed interleaved): the batched product with k key
    columns (k = 1, 3, 24) and the rank-1 update ``M - a b^T``."""
    weights = tf.random.stateless_normal((batch, units, units), seed=(0, 0))

    def columns(k):
        return tf.random.stateless_normal((batch, k, units), seed=(0, k))

    def product(m, z):
        return m, tf.tanh(tf.einsum("bij,bkj->bki", m, z))

    def update(m, z):
        return m - 1e-3 * tf.einsum("bki,bkj->bij", z, z), z

    cases = {
        "product, 1 column": (product, columns(1)),
        "product, 3 columns": (product, columns(3)),
        "product, 24 columns": (product, columns(24)),
        "rank-1 update": (update, columns(1)),
    }

    def compiled(body):
        def loop(m, z):
            return tf.while_loop(
                lambda t, *_: t < length,
                lambda t, m, z: (t + 1, *body(m, z)),
                (0, m, z),
                maximum_iterations=length,
            )

        return tf.function(loop, jit_compile=True)

    functions = {name: compiled(body) for name, (body, _) in cases.items()}
    times = {name: [] for name in cases}
    for repetition in range(warmup + steps):
        for name, (_, z) in cases.items():
            start = time.perf_counter()
            functions[name](weights, z)[2].numpy()
            if repetition >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) / length * 1e6 for name, t in times.items()}


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # one tf.function per variant is not retracing
    run(
        [int(c) for c in FLAGS.chunks],
        [int(t) for t in FLAGS.lengths],
        FLAGS.batch_size,
        FLAGS.units,
        FLAGS.layers,
        FLAGS.warmup,
        FLAGS.steps,
        FLAGS.out_dir,
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
