"""The builder of the fused kernels (mnm_keras.kernels) on a fixture op.

`tests/fixtures/kernels/` holds one tiny op, ``MnmTestAddOne`` (x + 1), compiled into a
temporary cache through a compiler wrapper that logs every compilation (not the
``--version`` calls), so that the tests see how often the compiler ran. The fixture is
compiled once for the module, by two threads at once.
"""

import io
import os
import pathlib
import shutil
import stat
import threading

import numpy as np
import pytest

from mnm_keras import kernels
from mnm_keras.kernels import build

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "kernels"

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")


def _counting_compiler(directory):
    """A g++ wrapper that appends one line to ``calls.log`` per compilation: ``(command, log)``."""
    calls = directory / "calls.log"
    script = directory / "counting-g++"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != "--version" ]; then echo compile >> "{calls}"; fi\n'
        'exec g++ "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [str(script)], calls


def _calls(calls):
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@pytest.fixture(scope="module")
def fixture_build(tmp_path_factory):
    """Two threads build the fixture op into one fresh cache at the same time."""
    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    tmp = tmp_path_factory.mktemp("kernels")
    compiler, calls = _counting_compiler(tmp)
    cache = tmp / "cache"
    barrier = threading.Barrier(2)
    paths, logs, errors = [None, None], [io.StringIO(), io.StringIO()], []

    def run(i):
        try:
            barrier.wait()
            paths[i] = build.build_library(
                source_dir=FIXTURES, cache_root=cache, compiler=compiler, log=logs[i]
            )
        except Exception as error:  # reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return {
        "paths": paths,
        "logs": [log.getvalue() for log in logs],
        "calls": calls,
        "compiler": compiler,
        "cache": cache,
    }


def test_two_concurrent_builds_compile_once(fixture_build):
    first, second = fixture_build["paths"]
    assert first == second
    assert first.name == "libmnm_kernels.so"
    assert first.parent.parent == fixture_build["cache"] / "kernels"
    assert _calls(fixture_build["calls"]) == 1
    # One library, no temporary file left: the lock, the library and the compiler's output.
    assert sorted(p.name for p in first.parent.iterdir()) == [
        ".lock",
        "build.log",
        "libmnm_kernels.so",
    ]
    notices = "".join(fixture_build["logs"]).splitlines()
    assert len(notices) == 2, notices  # one thread compiled, the other waited silently
    assert str(first) in notices[0]
    assert "once per TensorFlow version and kernel source" in notices[0]
    assert notices[1].startswith("mnm_keras: compiled the fused kernels in ")
    assert notices[1].endswith(" s")


def test_fixture_op_loads_and_runs(fixture_build):
    module = build.load_library(
        source_dir=FIXTURES,
        cache_root=fixture_build["cache"],
        compiler=fixture_build["compiler"],
        environ={},
    )
    x = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.5]], np.float32)
    y = module.mnm_test_add_one(x)
    np.testing.assert_array_equal(y.numpy(), x + 1)
    assert y.shape == (2, 3) and y.dtype.name == "float32"
    # Loaded once per process: the same module again.
    again = build.load_library(
        source_dir=FIXTURES,
        cache_root=fixture_build["cache"],
        compiler=fixture_build["compiler"],
        environ={},
    )
    assert again is module
    assert _calls(fixture_build["calls"]) == 1


def test_second_build_with_the_same_key_does_not_compile(fixture_build):
    library = fixture_build["paths"][0]
    modified = library.stat().st_mtime_ns
    log = io.StringIO()
    again = build.build_library(
        source_dir=FIXTURES,
        cache_root=fixture_build["cache"],
        compiler=fixture_build["compiler"],
        log=log,
    )
    assert again == library
    assert library.stat().st_mtime_ns == modified
    assert _calls(fixture_build["calls"]) == 1
    assert log.getvalue() == ""


@needs_compiler
def test_changed_source_changes_the_key(tmp_path):
    def path_of(source_dir):
        return build.library_path(source_dir=source_dir, cache_root=tmp_path, compiler=["g++"])

    sources = tmp_path / "sources"
    shutil.copytree(FIXTURES, sources)
    original = path_of(sources)
    # Hashed by file name and content, not by where the directory is.
    assert path_of(FIXTURES) == original
    (cc,) = sources.glob("*.cc")
    cc.write_text(cc.read_text() + "\n// changed\n")
    changed = path_of(sources)
    assert changed != original
    (sources / "extra.h").write_text("#define MNM_TEST_EXTRA 1\n")  # headers count too
    assert path_of(sources) not in (original, changed)
    assert original.parent.parent == tmp_path / "kernels"


@pytest.mark.parametrize(
    "field, value",
    [
        ("tensorflow_version", "2.22.0"),
        ("compiler", ["clang++"]),
        ("compiler_version", "g++ 13.1"),
        ("flags", ["-O2"]),
        ("cpu", "another CPU"),
    ],
)
def test_every_input_of_the_key_changes_it(field, value):
    inputs = dict(
        sources=sorted(FIXTURES.glob("*.cc")),
        tensorflow_version="2.21.0",
        compiler=["g++"],
        compiler_version="g++ 12.2",
        flags=["-O3", "-march=native"],
        cpu="AMD EPYC\nfpu avx2",
    )
    key = build.cache_key(**inputs)
    assert len(key) == 32 and int(key, 16) >= 0
    assert build.cache_key(**{**inputs, field: value}) != key


def test_missing_compiler_makes_the_kernels_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    monkeypatch.delenv("MNM_KERAS_KERNELS", raising=False)
    library = kernels.KernelLibrary(source_dir=FIXTURES, cache_root=tmp_path)
    assert library.available() is False
    assert library.unavailable_reason() == "no C++ compiler: /nonexistent/g++ not found (set CXX)"
    with pytest.raises(kernels.KernelUnavailable, match="/nonexistent/g.. not found"):
        library.load()
    assert issubclass(kernels.KernelUnavailable, RuntimeError)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_disabled_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MNM_KERAS_KERNELS", "0")
    library = kernels.KernelLibrary(source_dir=FIXTURES, cache_root=tmp_path, compiler=["g++"])
    assert library.available() is False
    assert library.unavailable_reason() == "disabled by MNM_KERAS_KERNELS=0"
    # The package's own functions, on a fresh library (each process tries once).
    monkeypatch.setattr(kernels, "_LIBRARY", kernels.KernelLibrary(source_dir=kernels.SOURCE_DIR))
    assert kernels.available() is False
    assert kernels.unavailable_reason() == "disabled by MNM_KERAS_KERNELS=0"
    with pytest.raises(kernels.KernelUnavailable, match="disabled by MNM_KERAS_KERNELS=0"):
        kernels.load()
    assert list(tmp_path.iterdir()) == []


def test_no_sources(tmp_path):
    library = kernels.KernelLibrary(source_dir=tmp_path, cache_root=tmp_path, compiler=["g++"])
    assert library.available() is False
    assert library.unavailable_reason().startswith("no kernel sources")


@needs_compiler
def test_compiler_errors_are_the_reason(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "broken.cc").write_text("#error the fixture is broken on purpose\n")
    library = kernels.KernelLibrary(
        source_dir=sources, cache_root=tmp_path / "cache", compiler=["g++"]
    )
    assert library.available() is False
    reason = library.unavailable_reason()
    assert reason.startswith("the C++ compiler failed (exit 1")
    assert "error: #error the fixture is broken on purpose" in reason
    (directory,) = (tmp_path / "cache" / "kernels").iterdir()
    assert str(directory / "build.log") in reason
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "build.log"]


def test_cache_root_and_compiler_from_the_environment(tmp_path):
    home = pathlib.Path("~").expanduser()
    assert build.cache_root(environ={}) == home / ".cache" / "mnm_keras"
    assert build.cache_root(environ={"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "mnm_keras"
    assert (
        build.cache_root(environ={"XDG_CACHE_HOME": "/x", "MNM_KERAS_CACHE_DIR": str(tmp_path)})
        == tmp_path
    )
    assert build.compiler_command(environ={}) == ["g++"]
    assert build.compiler_command(environ={"CXX": "ccache clang++"}) == ["ccache", "clang++"]
    assert os.fspath(kernels.SOURCE_DIR).endswith(os.path.join("mnm_keras", "kernels"))
