"""Every example script exits when it is done, for every model.

Each script runs as a subprocess with a tiny budget and its output redirected to a file
(as ``examples.reproduce`` and a user's background run see it). A process must end within
``GRACE_SECONDS`` of its last output line: a training stream's iterator left prefetching
from a Python generator (``tf.data.Dataset.from_generator``) at exit can keep a finished
run's process alive for good. Such an iterator, alive while the interpreter shuts down,
logs ``FINALIZE_ERROR``: no script may leave one. A process silent for ``SILENT_SECONDS``
is killed. The four models of the algorithmic tasks train in one process, one after the
other (`examples.algorithmic.run`, as the script's entry point calls it).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.babi_data import SHARED, needs_release

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRACE_SECONDS = 10
SILENT_SECONDS = 90
FINALIZE_ERROR = "Error occurred when finalizing GeneratorDataset iterator"
TINY_MEMORY = ["--units=8", "--memory_units=6", "--key_size=6", "--memory_layers=1"]
ALL_MODELS = """
import sys
from examples import algorithmic
for model in ("lstm", "salu", "mnm_p", "mnm_g"):
    config = algorithmic.Config(
        model=model, model_dir=f"{sys.argv[1]}/{model}", task="dictionary", train_steps=4,
        steps_per_epoch=2, batch_size=4, eval_episodes=8, units=8, memory_units=6,
        key_size=6, memory_layers=1,
    )
    print(algorithmic.summary(algorithmic.run(config, verbose=0)), flush=True)
"""


def exit_delay(tmp_path, name, arguments):
    """Runs ``python -m examples.NAME ARGUMENTS`` (``name`` "-c": ``python -c ...``);
    returns the seconds from its last output to its exit, and its output. Fails for a
    process that ends with an error or stays silent too long."""
    log_path = tmp_path / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": ROOT}
    command = ["-c"] if name == "-c" else ["-m", f"examples.{name}"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, *command, *arguments],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    size, last_output = -1, time.monotonic()
    try:
        while process.poll() is None:
            now = time.monotonic()
            if os.path.getsize(log_path) != size:
                size, last_output = os.path.getsize(log_path), now
            elif now - last_output > SILENT_SECONDS:
                pytest.fail(
                    f"examples.{name} is silent for {SILENT_SECONDS} s and has not exited; "
                    f"its output ends with:\n{log_path.read_text()[-2000:]}"
                )
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    exited = time.monotonic()
    if os.path.getsize(log_path) != size:  # written since the last poll
        last_output = exited
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]
    return exited - last_output, output


def assert_exits(tmp_path, name, arguments):
    delay, output = exit_delay(tmp_path, name, arguments)
    assert delay < GRACE_SECONDS, (
        f"examples.{name} exited {delay:.1f} s after its last output line; it ends with:\n"
        f"{output[-2000:]}"
    )
    assert FINALIZE_ERROR not in output, output[-2000:]
    return output


def test_algorithmic_every_model_and_the_diagnosis_exit(tmp_path):
    output = assert_exits(tmp_path, "-c", [ALL_MODELS, str(tmp_path)])
    assert output.count("held-out sequence error") == 4
    model_dir = f"--model_dir={tmp_path / 'mnm_p'}"
    assert "answer error" in assert_exits(
        tmp_path, "dictionary_memory", [model_dir, "--episodes=8"]
    )


def test_associative_recall_exits(tmp_path):
    arguments = ["--model=salu", "--train_steps=4", "--steps_per_epoch=2", "--batch_size=4"]
    arguments += ["--eval_episodes=8", f"--model_dir={tmp_path / 'run'}", *TINY_MEMORY]
    assert "held-out error" in assert_exits(tmp_path, "associative_recall", arguments)


def test_distributed_exits(tmp_path):
    arguments = ["--model=mnm_g", "--train_steps=2", f"--model_dir={tmp_path / 'run'}"]
    assert "losses" in assert_exits(tmp_path, "distributed", [*arguments, *TINY_MEMORY])


def test_maze_exits(tmp_path):
    arguments = ["--model=lstm", "--num_episodes=4", "--batch_size=2", "--eval_interval=4"]
    arguments += ["--eval_mazes=2", "--episode_length=12", "--units=8"]
    arguments += [f"--model_dir={tmp_path / 'run'}"]
    assert "held-out reward" in assert_exits(tmp_path, "maze_a2c", arguments)


@needs_release
def test_babi_and_its_memory_pictures_exit(tmp_path):
    model_dir = f"--model_dir={tmp_path / 'run'}"
    arguments = [f"--data_dir={SHARED}", "--version=en", "--tasks=1", "--model=mnm_p"]
    arguments += ["--train_steps=2", "--steps_per_epoch=1", "--batch_size=8", "--num_heads=1"]
    arguments += ["--test_stories_per_task=10", model_dir, *TINY_MEMORY]
    assert "mean error" in assert_exits(tmp_path, "babi", arguments)
    pictures = [model_dir, f"--data_dir={SHARED}", "--task=1", "--story_index=0"]
    assert_exits(tmp_path, "memory_pictures", [*pictures, f"--output_dir={tmp_path / 'pictures'}"])
