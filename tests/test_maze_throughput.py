"""benchmarks/maze_throughput.py: the FLOP counts against hand counts, and a tiny run.

The timing itself is not tested (speed is measured by the script, not by tests); the
counts are, because the script's conclusion (how far 40 episodes/s is from what this
machine does) rests on them.
"""

import json

import pytest
import tensorflow as tf
from absl import flags
from tf_agents.specs import tensor_spec

from benchmarks import maze_throughput as mt
from mnm_keras import kernels
from tf_agents_ext import maze, networks


def _graph(function, *specs):
    return tf.function(function, autograph=False).get_concrete_function(*specs).graph


def test_graph_matmul_flops_counts_each_product_from_its_shapes():
    def products(a, b, w, m, k):
        dense = tf.matmul(a, b)  # [2, 3] x [3, 4]: 2 * 2 * 3 * 4 = 48
        transposed = tf.matmul(a, w, transpose_a=True)  # [2, 3]^T x [2, 5]: 2 * 3 * 2 * 5 = 60
        batched = tf.linalg.matmul(m, k, adjoint_b=True)  # [2, 5, 4] x [2, 3, 4]^T: 240
        summed = tf.einsum("bij,bhj->bhi", m, k)  # 2 * (2 * 5 * 4 * 3) = 240
        return dense, transposed, batched, summed

    graph = _graph(
        products,
        tf.TensorSpec([2, 3]),
        tf.TensorSpec([3, 4]),
        tf.TensorSpec([2, 5]),
        tf.TensorSpec([2, 5, 4]),
        tf.TensorSpec([2, 3, 4]),
    )
    assert mt.graph_matmul_flops(graph) == {"MatMul": 108, "BatchMatMul": 240, "Einsum": 240}


def test_graph_matmul_flops_counts_a_loop_body_once():
    def loop(x, w):
        return tf.while_loop(lambda i, z: i < 10, lambda i, z: (i + 1, tf.matmul(z, w)), (0, x))[1]

    graph = _graph(loop, tf.TensorSpec([1, 3]), tf.TensorSpec([3, 3]))
    assert mt.graph_matmul_flops(graph) == {"MatMul": 2 * 3 * 3}


def test_graph_matmul_flops_needs_static_shapes():
    graph = _graph(tf.matmul, tf.TensorSpec([None, 3]), tf.TensorSpec([3, 4]))
    with pytest.raises(ValueError, match="unknown shape"):
        mt.graph_matmul_flops(graph)


def _specs():
    probe = maze.MazeEnvironment()
    return (
        tensor_spec.from_spec(probe.observation_spec()),
        tensor_spec.from_spec(probe.action_spec()),
    )


def test_episode_flops_of_the_lstm_network_by_hand():
    net = networks.lstm_actor_critic(*_specs(), units=8, seed=0)
    step = 2 * (17 + 8) * 4 * 8 + 2 * 8 * (4 + 1)  # the LSTM gates, then logits and value
    counts = mt.episode_flops(net, episode_length=10)
    assert counts["step_rollout"] == counts["step_training"] == step
    assert counts["rollout"] == 10 * step
    assert counts["training"] == 3 * 10 * step  # forward + a backward of twice its cost
    assert counts["total"] == 40 * step


def test_episode_flops_of_the_mnm_p_network_by_hand():
    # controller 8, a one-layer memory 4 x 4 (d_k = d_v = 4), H = 2 heads
    u, d, h = 8, 4, 2
    sizes = dict(units=u, memory_units=d, memory_layers=1, key_size=d, value_size=d)
    net = networks.mnm_actor_critic(*_specs(), **sizes, num_heads=h, seed=0)
    controller = 2 * (17 + d + u) * 4 * u  # [x_t; v^r_{t-1}; h] -> 4 gates
    interface = 2 * u * (2 * h * d + h * d + d)  # read keys, write keys, values, rate input
    rate = 2 * d * 1  # one rate per memory layer
    feedback = 2 * h * d * d  # the target q(v) of the one layer
    memory_product = 2 * h * d * d  # one pass of H vectors through a [d, d] layer
    write = 2 * memory_product  # the write's forward pass and its rank-H update
    read = memory_product
    output = 2 * (u + d) * u
    heads = 2 * u * (4 + 1)
    rollout_step = controller + interface + rate + feedback + write + read + output + heads
    counts = mt.episode_flops(net, episode_length=10)
    assert counts["step_rollout"] == rollout_step
    assert counts["step_training"] == rollout_step + memory_product  # + the meta loss's read
    assert counts["total"] == 10 * rollout_step + 30 * (rollout_step + memory_product)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("lstm:2", "takes no"),
        ("mnm_x:1", "must be lstm"),
        ("mnm_p:two", "integer"),
        ("mnm_p:0", "at least 1"),
    ],
)
def test_parse_network_rejects_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        mt.parse_network(spec)


@pytest.mark.parametrize(
    "spec, message",
    [("mnm_p:1@fast", "must be one of"), ("lstm@kernel", "no 'kernel' path"), ("lstm@xla", "xla")],
)
def test_parse_path_rejects_bad_paths(spec, message):
    with pytest.raises(ValueError, match=message):
        mt.parse_path(spec)


def test_parse_path_gives_the_training_path():
    assert mt.parse_path("mnm_p:1") == "auto"
    assert mt.parse_path("mnm_p:1@steps") == "steps"
    assert mt.parse_path("mnm_g@xla") == "xla"
    assert mt.parse_path("lstm@steps") == "steps"
    assert mt.parse_network("mnm_p:1@kernel") == ("mnm_p", 1)


def test_main_writes_a_table_json_and_png(tmp_path, capsys):
    before = set(flags.FLAGS)
    mt.define_flags()
    try:
        flags.FLAGS(
            [
                "maze_throughput",
                "--networks=lstm,mnm_p:1,mnm_p:1@steps",
                "--num_parallel_episodes=2",
                "--iterations=1",
                "--units=8",
                "--memory_units=4",
                "--num_heads=1",
                "--episode_length=6",
                f"--out_dir={tmp_path}",
            ]
        )
        mt.main([])
    finally:
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)
    result = json.loads((tmp_path / "maze_throughput.json").read_text())
    assert [r["network"] for r in result["rows"]] == ["lstm", "mnm_p:1", "mnm_p:1@steps"]
    for row in result["rows"]:
        assert row["episodes_per_second"] > 0
        assert row["achieved_gflops"] == pytest.approx(
            row["gflop_per_episode"] * row["episodes_per_second"]
        )
        assert row["gflops_needed_for_goal"] == pytest.approx(40 * row["gflop_per_episode"])
    assert result["dense_gemm_gflops"]["2"] > 0
    assert (tmp_path / "maze_throughput.png").stat().st_size > 0
    assert "| mnm_p:1 | 2 |" in capsys.readouterr().out


def test_parse_network_gives_the_core_and_its_memory_layers():
    assert mt.parse_network("lstm") == ("lstm", None)
    assert mt.parse_network("mnm_p") == ("mnm_p", 3)  # the paper's agent
    assert mt.parse_network("mnm_g:1") == ("mnm_g", 1)


def test_episode_flops_count_the_kernel_path_as_the_reference():
    """The kernel's op hides its products from the graph; they are counted through XLA."""
    if not kernels.available():
        pytest.skip(kernels.unavailable_reason())
    spec = tf.TensorSpec([mt.OBSERVATION_SIZE], tf.float32)
    actions = tensor_spec.BoundedTensorSpec((), tf.int32, 0, mt.NUM_ACTIONS - 1)
    net = networks.mnm_actor_critic(
        spec, actions, units=8, memory_units=4, memory_layers=1, key_size=4, value_size=4
    )
    net.create_variables()
    reference = mt.episode_flops(net, episode_length=3)
    net.cell.implementation = "kernel"
    assert mt.episode_flops(net, episode_length=3) == reference
    assert net.cell.implementation == "kernel"
    # Counted through the kernel's own step, the products would vanish (the check can fail).
    assert mt.cell_step_flops(net.cell, training=False) < reference["step_rollout"] / 2
