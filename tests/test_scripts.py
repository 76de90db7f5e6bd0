"""Every script can be imported beside the others: flags are defined only under __main__."""

import importlib

import pytest
from absl import flags

SCRIPTS = [
    "examples.algorithmic",
    "examples.associative_recall",
    "examples.babi",
    "examples.distributed",
    "examples.dictionary_memory",
    "examples.memory_pictures",
    "examples.plot_runs",
    "benchmarks.benchmark",
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports_without_defining_flags(name):
    before = set(flags.FLAGS)
    module = importlib.import_module(name)
    assert set(flags.FLAGS) == before
    assert callable(module.define_flags) and callable(module.main)
