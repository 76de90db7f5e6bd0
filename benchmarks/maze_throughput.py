r"""Maze agents: episodes per second against the arithmetic each episode needs.

    python benchmarks/maze_throughput.py                                   # lstm, mnm_p 1 x 100, 3 x 100
    python benchmarks/maze_throughput.py --networks=lstm,mnm_p:3 --num_parallel_episodes=16,64
    python benchmarks/maze_throughput.py --networks=mnm_p:3@steps,mnm_p:3@xla,mnm_p:3@kernel

The MNM-p agent's throughput target is 40 episodes per second on a 2-core CPU (the paper's
250,000 episodes in under two hours). This script puts that target beside the work it
implies. For each network it

* counts the floating-point operations of one episode from the network's own graph: the
  recurrent cell's step is traced at batch 1 and every matrix product in it is counted
  (`MatMul`, `BatchMatMul*` and `Einsum`, 2 x multiply-adds, from their shapes; elementwise
  ops are left out, so the counts are lower bounds), once as the rollout runs it
  (``training=False``) and once as the training unroll does (``training=True``, with the
  meta loss's read); the training backward pass is counted as twice its forward pass (the
  usual rule for matrix products: one product for the inputs' gradient, one for the
  weights'); the heads ``[units] -> 4 logits + 1 value`` are added by hand;
* times the maze training's iteration (`examples.maze_training.make_iteration`, as
  `examples/maze_a2c.py` trains: one compiled `tf.function`, the rollout of
  ``B`` whole episodes in the batched maze, then one A2C update on them), the networks
  interleaved iteration by iteration in this one process, so that their ratios hold on a
  noisy shared machine; the median over ``--iterations`` after one untimed warm-up;
* times a dense matrix product of the controller's shape (``[B, 17 + d_v + units] x
  [.., 4 units]``, the LSTM gates) in a compiled loop: what this machine's TensorFlow does
  on the densest, most efficient product these networks contain.

From these it prints episodes per second, the achieved GFLOP/s, the GFLOP/s that 40
episodes per second would need, and writes ``--out_dir/maze_throughput.json`` and a PNG.
Needs the ``agents`` extra (TF-Agents).
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import app, flags

FLAGS = flags.FLAGS

GOAL_EPISODES_PER_SECOND = 40.0  # the MNM-p agent's target: 250,000 episodes in < 2 h
EPISODE_LENGTH = 250
OBSERVATION_SIZE = 17
NUM_ACTIONS = 4
# The MNM agent's sizes in the paper (controller 200, memory 3 x 100, H = 3).
PAPER_SIZES = {"units": 200, "memory_units": 100, "memory_layers": 3, "num_heads": 3}


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_list(
        "networks",
        ["lstm", "mnm_p:1", "mnm_p:3"],
        "Networks: lstm, or mnm_p:L / mnm_g:L with an L-layer memory of 100 (controller "
        "200, H = 3; mnm_p:3 is the paper's agent), each optionally followed by @PATH, the "
        "update's path: auto, kernel, xla (the fused sequence) or steps (step by step).",
    )
    flags.DEFINE_list("num_parallel_episodes", ["16"], "Episodes per update (batch B).")
    flags.DEFINE_integer("iterations", 3, "Timed iterations per network and batch (median).")
    flags.DEFINE_bool("normalize_writes", True, "MNM networks: normalised writes.")
    flags.DEFINE_integer("units", PAPER_SIZES["units"], "Controller / LSTM units.")
    flags.DEFINE_integer("memory_units", PAPER_SIZES["memory_units"], "Memory width, d_k, d_v.")
    flags.DEFINE_integer("num_heads", PAPER_SIZES["num_heads"], "MNM heads H.")
    flags.DEFINE_integer("episode_length", EPISODE_LENGTH, "Maze episode length.")
    flags.DEFINE_string("out_dir", "benchmarks/results/maze", "Where the JSON and PNG go.")


# ------------------------------------------------------------------------ counting flops
def _static_dims(tensor):
    dims = tensor.shape.as_list() if tensor.shape.rank is not None else None
    if dims is None or any(d is None for d in dims):
        raise ValueError(f"{tensor.name} has an unknown shape {tensor.shape}; trace at batch 1.")
    return dims


def _einsum_flops(equation, operands):
    """2 x the product of the sizes of every index in ``equation`` (one multiply-add each)."""
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes = {}
    for labels, operand in zip(inputs, operands):
        dims = _static_dims(operand)
        if "." in labels or len(labels) != len(dims):
            raise ValueError(f"Cannot count einsum {equation!r} on shapes {operand.shape}.")
        sizes.update(zip(labels, dims))
    total = 2
    for size in sizes.values():
        total *= size
    return total


def graph_matmul_flops(graph):
    """FLOPs (2 x multiply-adds) of the matrix products in a `tf.Graph`, by op type.

    Counts ``MatMul``, ``BatchMatMul``/``V2``/``V3`` and ``Einsum`` from their static
    shapes, recursing into the function graphs of control-flow and call ops (their bodies
    counted once). Returns ``{op_type: flops}``.
    """
    counts = {}

    def add(kind, flops):
        counts[kind] = counts.get(kind, 0) + flops

    def visit(g, seen):
        for op in g.get_operations():
            if op.type == "MatMul":
                a, b = (_static_dims(t) for t in op.inputs)
                rows = a[1] if op.get_attr("transpose_a") else a[0]
                inner = a[0] if op.get_attr("transpose_a") else a[1]
                cols = b[0] if op.get_attr("transpose_b") else b[1]
                add("MatMul", 2 * rows * inner * cols)
            elif op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
                a, b = (_static_dims(t) for t in op.inputs)
                rows = a[-1] if op.get_attr("adj_x") else a[-2]
                inner = a[-2] if op.get_attr("adj_x") else a[-1]
                cols = b[-2] if op.get_attr("adj_y") else b[-1]
                batch = 1
                for d in _static_dims(op.outputs[0])[:-2]:
                    batch *= d
                add("BatchMatMul", 2 * batch * rows * inner * cols)
            elif op.type == "Einsum":
                add("Einsum", _einsum_flops(op.get_attr("equation").decode(), op.inputs))
            for attr in ("f", "body", "cond", "then_branch", "else_branch"):
                try:
                    name = op.get_attr(attr).name
                except (ValueError, AttributeError):
                    continue
                function = g._get_function(name)  # noqa: SLF001 (tf.Graph's own registry)
                if function is not None and name not in seen:
                    seen.add(name)
                    visit(function.graph, seen)

    visit(graph, set())
    return counts


def cell_step_flops(cell, training):
    """FLOPs of one step of a built tf-keras RNN ``cell`` for one episode (batch 1)."""
    import tensorflow as tf

    state_sizes = tf.nest.flatten(cell.state_size)
    specs = [tf.TensorSpec([1, OBSERVATION_SIZE])] + [tf.TensorSpec([1, s]) for s in state_sizes]

    @tf.function(input_signature=specs, autograph=False)
    def step(inputs, *states):
        return cell(inputs, list(states), training=training)

    return sum(graph_matmul_flops(step.get_concrete_function().graph).values())


def episode_flops(network, episode_length=EPISODE_LENGTH):
    """FLOPs of one trained episode of ``network`` (an `ActorCriticRnnNetwork`).

    An MNM cell's step is counted through its TensorFlow/XLA path whatever its
    ``implementation`` (the kernel's op hides its products). Returns a dict: ``rollout``
    (the sampling forward pass), ``training`` (the training
    unroll's forward pass plus a backward pass of twice its cost), ``total``, and the per
    step forward counts ``step_rollout`` and ``step_training``.
    """
    heads = 2 * network.cell.output_size * (network.num_actions + 1)
    cell = network.cell
    # The fused kernel's op hides its products from the graph: count the same step through
    # the TensorFlow/XLA reference, which does the same arithmetic.
    implementation = getattr(cell, "implementation", None)
    if implementation is not None:
        cell.implementation = "xla"
    try:
        step_rollout = cell_step_flops(cell, training=False) + heads
        step_training = cell_step_flops(cell, training=True) + heads
    finally:
        if implementation is not None:
            cell.implementation = implementation
    rollout = episode_length * step_rollout
    training = 3 * episode_length * step_training
    return {
        "step_rollout": step_rollout,
        "step_training": step_training,
        "rollout": rollout,
        "training": training,
        "total": rollout + training,
    }


# ------------------------------------------------------------------------------- timing
PATHS = ("auto", "kernel", "xla", "steps")


def parse_network(spec):
    """``"lstm"`` or ``"mnm_p:L"`` / ``"mnm_g:L"`` -> ``(core, memory layers)``.

    ``mnm_p`` / ``mnm_g`` without ``:L`` have the paper's 3 layers; ``lstm`` gives None.
    A training path may follow after ``@`` (`parse_path`); it is not part of the result.
    """
    core, _, layers = spec.partition("@")[0].partition(":")
    if core == "lstm":
        if layers:
            raise ValueError(f"`networks`: 'lstm' takes no ':L'; received {spec!r}.")
        return core, None
    if core not in ("mnm_p", "mnm_g"):
        raise ValueError(f"`networks` entries must be lstm, mnm_p:L or mnm_g:L; received {spec!r}.")
    try:
        count = int(layers) if layers else PAPER_SIZES["memory_layers"]
    except ValueError:
        raise ValueError(f"`networks`: L in {spec!r} must be an integer.") from None
    if count < 1:
        raise ValueError(f"`networks`: L in {spec!r} must be at least 1.")
    return core, count


def parse_path(spec):
    """The training path of ``"network@path"``: one of `PATHS` (``auto`` when absent).

    ``auto`` (the network's default): the rollout's single steps through XLA, the update
    through the fused sequence (the kernel on a CPU); ``kernel`` / ``xla``: the cell's
    ``implementation`` forced, for the rollout's steps and the update's sequence alike;
    ``steps``: the update through tf-agents' step-by-step `DynamicUnroll`
    (``fused_sequence=False``), as before the fused sequence. The LSTM takes ``auto`` or
    ``steps`` only (it has no fused sequence).
    """
    _, separator, path = spec.partition("@")
    path = path if separator else "auto"
    if path not in PATHS:
        raise ValueError(f"`networks`: the path in {spec!r} must be one of {PATHS}.")
    if spec.startswith("lstm") and path in ("kernel", "xla"):
        raise ValueError(f"`networks`: the LSTM has no {path!r} path; received {spec!r}.")
    return path


def build_iteration(spec, batch, normalize_writes=True, seed=0, episode_length=250, **sizes):
    """``(iteration, network)``: the maze training's compiled rollout + update.

    Built by `examples.maze_training.build_agent` and `make_iteration`, as
    `examples.maze_training.train` (and so `examples/maze_a2c.py`) builds them; ``sizes``:
    ``units``, ``memory_units``, ``num_heads``.
    """
    from tf_agents.environments import tf_py_environment

    from examples import maze_training
    from tf_agents_ext import maze

    core, layers = parse_network(spec)
    path = parse_path(spec)
    if layers is not None:
        sizes["memory_layers"] = layers
    agent, _ = maze_training.build_agent(
        core,
        1e-4,
        seed,
        episode_length=episode_length,
        normalize_writes=normalize_writes,
        **sizes,
    )
    if path == "steps":
        agent.network.fused_sequence = False
    elif path in ("kernel", "xla"):
        agent.network.cell.implementation = path
    env = tf_py_environment.TFPyEnvironment(
        maze.BatchedMazeEnvironment(batch, episode_length=episode_length, seed=seed)
    )
    return maze_training.make_iteration(env, agent, episode_length), agent.network


def dense_rate(batch, inner, cols, steps=EPISODE_LENGTH):
    """GFLOP/s of ``steps`` chained ``[batch, inner] x [inner, cols]`` products in a loop."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, inner), dtype=np.float32))
    w = tf.constant((rng.standard_normal((inner, cols)) / np.sqrt(inner)).astype(np.float32))
    back = tf.constant((rng.standard_normal((cols, inner)) / np.sqrt(cols)).astype(np.float32))

    @tf.function
    def loop():
        z = x
        for _ in tf.range(steps):
            z = tf.tanh(tf.matmul(tf.matmul(z, w), back))  # [B, cols] then back to [B, inner]
        return z

    loop().numpy()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        loop().numpy()
        times.append(time.perf_counter() - start)
    return 2 * 2 * steps * batch * inner * cols / statistics.median(times) / 1e9


def run(networks, batches, iterations, normalize_writes=True, episode_length=250, **sizes):
    """Measures every (network, batch); returns the result rows.

    ``sizes``: ``units``, ``memory_units``, ``num_heads`` (see `build_iteration`).
    """
    if iterations < 1:
        raise ValueError(f"`iterations` must be at least 1; received {iterations!r}.")
    rows = []
    for batch in batches:
        built = {
            spec: build_iteration(spec, batch, normalize_writes, 0, episode_length, **sizes)
            for spec in networks
        }
        flops = {spec: episode_flops(net, episode_length) for spec, (_, net) in built.items()}
        times = {spec: [] for spec in networks}
        for iteration, _ in built.values():  # warm-up: tracing
            iteration()[0].numpy()
        for _ in range(iterations):
            for spec, (iteration, _) in built.items():
                start = time.perf_counter()
                iteration()[0].numpy()
                times[spec].append(time.perf_counter() - start)
        for spec in networks:
            seconds = statistics.median(times[spec])
            episodes_per_second = batch / seconds
            gflop_per_episode = flops[spec]["total"] / 1e9
            rows.append(
                {
                    "network": spec,
                    "num_parallel_episodes": batch,
                    "seconds_per_iteration": seconds,
                    "episodes_per_second": episodes_per_second,
                    "flops": flops[spec],
                    "gflop_per_episode": gflop_per_episode,
                    "achieved_gflops": gflop_per_episode * episodes_per_second,
                    "gflops_needed_for_goal": gflop_per_episode * GOAL_EPISODES_PER_SECOND,
                }
            )
    return rows


def plot(rows, dense, path):
    """Bar chart: achieved GFLOP/s and the GFLOP/s the goal needs, per network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['network']}\nB={r['num_parallel_episodes']}" for r in rows]
    positions = range(len(rows))
    figure, axes = plt.subplots(figsize=(1.8 + 1.6 * len(rows), 4))
    axes.bar(
        [p - 0.2 for p in positions], [r["achieved_gflops"] for r in rows], 0.4, label="achieved"
    )
    axes.bar(
        [p + 0.2 for p in positions],
        [r["gflops_needed_for_goal"] for r in rows],
        0.4,
        label=f"needed for {GOAL_EPISODES_PER_SECOND:g} episodes/s",
    )
    for batch, rate in dense.items():
        axes.axhline(rate, linestyle="--", color="grey", linewidth=1)
        axes.text(len(rows) - 0.5, rate, f"dense GEMM, B={batch}", va="bottom", ha="right")
    axes.set_xticks(list(positions), labels)
    axes.set_ylabel("GFLOP/s (matrix products)")
    axes.set_title("Maze A2C: arithmetic rate achieved and needed")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def render_table(record):
    """The markdown table of a ``maze_throughput.json`` record (one row per network and B)."""
    lines = [
        "| network | B | GFLOP per episode (rollout + training) | episodes/s | achieved GFLOP/s "
        f"| GFLOP/s for {GOAL_EPISODES_PER_SECOND:g} episodes/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['network']} | {r['num_parallel_episodes']} | "
            f"{r['flops']['rollout'] / 1e9:.3f} + {r['flops']['training'] / 1e9:.3f} | "
            f"{r['episodes_per_second']:.2f} | {r['achieved_gflops']:.1f} | "
            f"{r['gflops_needed_for_goal']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    # TF-Agents needs tf.keras to be tf-keras: set before TensorFlow loads (tf_agents_ext).
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

    batches = [int(b) for b in FLAGS.num_parallel_episodes]
    rows = run(
        FLAGS.networks,
        batches,
        FLAGS.iterations,
        FLAGS.normalize_writes,
        FLAGS.episode_length,
        units=FLAGS.units,
        memory_units=FLAGS.memory_units,
        num_heads=FLAGS.num_heads,
    )
    gate_inner = OBSERVATION_SIZE + FLAGS.memory_units + FLAGS.units
    dense = {b: dense_rate(b, gate_inner, 4 * FLAGS.units) for b in batches}
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    with open(os.path.join(FLAGS.out_dir, "maze_throughput.json"), "w") as f:
        json.dump({"rows": rows, "dense_gemm_gflops": dense}, f, indent=2)
    plot(rows, dense, os.path.join(FLAGS.out_dir, "maze_throughput.png"))
    print(render_table({"rows": rows, "dense_gemm_gflops": dense}), end="")
    for batch, rate in dense.items():
        print(
            f"dense [{batch} x {gate_inner}] x [{gate_inner} x {4 * FLAGS.units}] "
            f"products in a compiled loop: {rate:.1f} GFLOP/s"
        )


if __name__ == "__main__":
    define_flags()
    app.run(main)
