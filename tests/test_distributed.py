"""tf.distribute: MirroredStrategy over two logical CPUs gives the one-device loss curve;
two MultiWorkerMirroredStrategy workers on localhost end with the same weights.

Each run is a fresh process (logical devices and TF_CONFIG must be set before TensorFlow
starts), so these tests drive examples/distributed.py.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "distributed.py")


def _env(**extra):
    return {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _run(model_dir, *flags, env=None):
    return subprocess.Popen(
        [sys.executable, SCRIPT, f"--model_dir={model_dir}", *flags],
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process):
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]


def _result(model_dir):
    """The run's ``results`` (replicas, per-step losses) and its trained weights."""
    with open(os.path.join(model_dir, "metrics.json")) as f:
        record = json.load(f)
    assert record["task"] == "distributed" and record["train_steps"] == 5
    weights = np.load(os.path.join(model_dir, "weights.npz"))
    return record["results"], [weights[k] for k in weights.files]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("one_device"))
    _finish(_run(model_dir, "--strategy=one_device"))
    return _result(model_dir)


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path, one_device):
    _finish(_run(str(tmp_path), "--strategy=mirrored", "--logical_cpus=2", "--batch_size=8"))
    record, weights = _result(str(tmp_path))
    reference, reference_weights = one_device
    assert record["replicas"] == 2 and reference["replicas"] == 1
    assert len(record["step_losses"]) == 5
    np.testing.assert_allclose(record["step_losses"], reference["step_losses"], rtol=1e-5)
    for a, b in zip(weights, reference_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_on_localhost_agree_on_the_weights(tmp_path, one_device):
    cluster = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        env = _env(TF_CONFIG=json.dumps(config))
        processes.append(_run(str(tmp_path / f"worker{index}"), "--strategy=multi_worker", env=env))
    for process in processes:
        _finish(process)
    (record0, weights0), (record1, weights1) = (
        _result(str(tmp_path / f"worker{i}")) for i in range(2)
    )
    assert record0["replicas"] == record1["replicas"] == 2
    assert record0["step_losses"] == record1["step_losses"]
    for a, b in zip(weights0, weights1):
        np.testing.assert_array_equal(a, b)
    # The same global batch on one device gives the same model.
    for a, b in zip(weights0, one_device[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_second_run_in_the_same_model_dir_is_refused(tmp_path):
    # Distributed runs do not resume; the refusal comes before anything is built.
    from examples import distributed

    (tmp_path / "invocations.json").write_text("[]")
    with pytest.raises(ValueError, match="already holds a run"):
        distributed.run(distributed.Config(model_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer.*=0"):
        distributed.Config(batch_size=0)
