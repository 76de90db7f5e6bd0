"""Every script can be imported beside the others: flags are defined only under __main__.

The example scripts share one pattern (examples/config_flags.py): a frozen dataclass
``Config`` whose fields are the flags, an entry point ``run(config)``, and one flag
vocabulary; a bad value ends with absl's usage message, as a script or as a module.
"""

import dataclasses
import importlib
import inspect
import os
import subprocess
import sys
import typing

import pytest
from absl import flags

from examples import config_flags
from mnm_keras import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_SCRIPTS = [
    "examples.algorithmic",
    "examples.associative_recall",
    "examples.babi",
    "examples.distributed",
    "examples.dictionary_memory",
    "examples.maze_a2c",
    "examples.memory_pictures",
    "examples.plot_runs",
]
FLAG_SCRIPTS = ["benchmarks.benchmark"]
# The shared vocabulary: a field of one of these names has this type in every script.
VOCABULARY = {
    "model_dir": (str, str | None),
    "train_steps": (int,),
    "steps_per_epoch": (int,),
    "batch_size": (int,),
    # None: a default that follows other fields (the maze's 1e-4 per episode of an update).
    "learning_rate": (float, float | None),
    "seed": (int,),
    "units": (int,),
    "memory_units": (int,),
    "memory_layers": (int,),
    "key_size": (int,),
    "num_heads": (int,),
    "model": (str,),
    "normalize_writes": (bool,),
    "meta_loss_weight": (float,),
}
# Older names of the vocabulary's concepts, which no script may use.
RETIRED = {"global_batch_size", "model_path", "max_train_steps", "lr", "steps"}


@pytest.mark.parametrize("name", CONFIG_SCRIPTS + FLAG_SCRIPTS)
def test_script_imports_without_defining_flags(name):
    before = set(flags.FLAGS)
    module = importlib.import_module(name)
    assert set(flags.FLAGS) == before
    if name in CONFIG_SCRIPTS:
        assert dataclasses.is_dataclass(module.Config) and callable(module.run)
        assert module.Config.__dataclass_params__.frozen
    else:
        assert callable(module.define_flags) and callable(module.main)


@pytest.mark.parametrize("name", CONFIG_SCRIPTS)
def test_config_fields_speak_the_shared_vocabulary(name):
    module = importlib.import_module(name)
    hints = typing.get_type_hints(module.Config)
    fields = {field.name: field for field in dataclasses.fields(module.Config)}
    assert not RETIRED & set(fields)
    for field_name, types in VOCABULARY.items():
        if field_name in fields:
            assert hints[field_name] in types, (field_name, hints[field_name])
    if "model" in fields:
        assert set(fields["model"].metadata["choices"]) <= set(models.MODEL_NAMES)
    for field in fields.values():
        assert field.metadata.get("help"), f"{name}: {field.name} has no help text"
    # Every field becomes a flag of the same name.
    values = flags.FlagValues()
    config_flags.define_flags(module.Config, values)
    assert set(fields) <= set(values)
    parameters = inspect.signature(module.run).parameters
    assert next(iter(parameters)) == "config"


# One refused value per script, as a script (python examples/X.py) and as a module (-m).
BAD_VALUES = [
    ("examples/associative_recall.py", ["--batch_size=0"], "`batch_size` must be a positive"),
    ("-m examples.associative_recall", ["--learning_rate=0"], "`learning_rate` must be positive"),
    ("examples/babi.py", ["--data_dir=x", "--memory_layers=0"], "`memory_layers` must be"),
    ("-m examples.distributed", ["--batch_size=-8"], "`batch_size` must be a positive"),
    ("examples/dictionary_memory.py", [], "`model_dir` is required"),
    ("examples/maze_a2c.py", ["--batch_size=3"], "`num_episodes` must be a multiple of"),
    ("-m examples.memory_pictures", ["--model_dir=x", "--data_dir=y", "--task=0"], "`task`"),
    ("examples/plot_runs.py", [], "`runs` must name at least one run directory"),
]


@pytest.mark.parametrize("script, arguments, message", BAD_VALUES)
def test_a_bad_value_ends_with_usage_and_no_traceback(tmp_path, script, arguments, message):
    command = [sys.executable, *script.split(), *arguments]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("PYTHONPATH", None)  # the script form must work without it
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    module = importlib.import_module(script.split()[-1].removesuffix(".py").replace("/", "."))
    assert module.__doc__.splitlines()[0] in done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
