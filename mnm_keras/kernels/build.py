"""Compiling the C++ sources of a directory into one TensorFlow op library, cached.

The library is built at first use, not at install (pip builds wheels in an isolated
environment without TensorFlow): every ``*.cc`` file of the directory is compiled with

    $CXX -std=c++17 -shared -fPIC -O3 -march=native <sources> <TF compile flags>
        -o libmnm_kernels.so <TF link flags>

into ``<cache root>/kernels/<key>/libmnm_kernels.so``. The key is a SHA-256 over everything
the library depends on: the TensorFlow version, the sources (every ``*.cc`` and ``*.h``
file, sorted by name), the compiler command and its ``--version``, the flags, and the CPU
(``-march=native`` code may not run on another CPU of a shared home directory). A change
of any of them compiles a new library beside the old ones; an unchanged key reuses the
library without calling the compiler.

The compiler writes to a temporary file in the key's directory, which `os.replace` moves
into place, so a library is either absent or complete; the compilation holds an
`fcntl.flock` lock on ``<key>/.lock``, so processes (or threads) that start at once
compile once and the others load what the first one built.

Every failure is a `KernelUnavailable` whose message says why (no compiler, the
compiler's errors, no sources); callers fall back to the TensorFlow implementation.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TextIO

try:
    import fcntl
except ImportError:  # not POSIX: no kernels (KernelUnavailable says so)
    fcntl = None

__all__ = [
    "CXXFLAGS",
    "DISABLE_VARIABLE",
    "LIBRARY_NAME",
    "KernelUnavailable",
    "build_library",
    "cache_key",
    "cache_root",
    "compiler_command",
    "cpu_identity",
    "library_path",
    "load_library",
    "source_files",
]

LIBRARY_NAME = "libmnm_kernels.so"
# Flags before the sources; TensorFlow's compile flags follow them, its link flags the output.
CXXFLAGS = ("-std=c++17", "-shared", "-fPIC", "-O3", "-march=native")
# MNM_KERAS_KERNELS=0 turns the kernels off (the TensorFlow implementation runs instead).
DISABLE_VARIABLE = "MNM_KERAS_KERNELS"
# The cache root's variable; without it $XDG_CACHE_HOME/mnm_keras, then ~/.cache/mnm_keras.
CACHE_VARIABLE = "MNM_KERAS_CACHE_DIR"
# A compilation that takes longer is stopped and reported (the lock is held meanwhile).
COMPILE_TIMEOUT_S = 900
# Lines of the compiler's output kept in a KernelUnavailable message, and the markers of
# its error lines (TensorFlow's headers give many warnings besides).
ERROR_LINES = 20
_ERROR_MARKERS = ("error:", "undefined reference")

# Process-wide: the module of each library loaded, by cache key. TensorFlow registers an
# op once per process, so a second library with the same ops (another cache root, same
# key) must not be loaded: its module would lack them.
_LOADED: dict[str, Any] = {}
_LOADED_LOCK = threading.Lock()


class KernelUnavailable(RuntimeError):
    """The fused kernels cannot be used here; the message says why."""


def cache_root(*, environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """The cache root of the compiled kernels.

    ``$MNM_KERAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mnm_keras``, else
    ``~/.cache/mnm_keras``, read from ``environ`` (the process's environment by default).
    """
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_VARIABLE):
        return pathlib.Path(environ[CACHE_VARIABLE]).expanduser()
    if environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(environ["XDG_CACHE_HOME"]).expanduser() / "mnm_keras"
    return pathlib.Path("~/.cache/mnm_keras").expanduser()


def compiler_command(*, environ: Mapping[str, str] | None = None) -> list[str]:
    """The compiler command line: ``$CXX``, split as a shell would (``ccache g++``), or ``g++``."""
    environ = os.environ if environ is None else environ
    return shlex.split(environ.get("CXX", "").strip() or "g++")


def source_files(source_dir: str | os.PathLike) -> list[pathlib.Path]:
    """The ``*.cc`` and ``*.h`` files of ``source_dir`` (not of its subdirectories), by name."""
    source_dir = pathlib.Path(source_dir)
    if not source_dir.is_dir():
        raise KernelUnavailable(
            f"no kernel sources: source_dir={str(source_dir)!r} is not a directory"
        )
    return sorted(
        (p for p in source_dir.iterdir() if p.suffix in (".cc", ".h") and p.is_file()),
        key=lambda p: p.name,
    )


def cpu_identity() -> str:
    """The CPU that ``-march=native`` compiles for: its model name and feature flags.

    From ``/proc/cpuinfo`` on Linux (the first processor's ``model name`` and ``flags``, or
    ``Features`` on Arm); elsewhere `platform.processor` and `platform.machine`. Virtual
    machines often report a generic model name, so the flags are part of it.
    """
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor only
                name, _, value = line.partition(":")
                fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    parts = [
        fields.get(name, "")
        for name in ("model name", "flags", "CPU implementer", "CPU part", "Features")
    ]
    parts += [platform.machine(), platform.processor()]
    return "\n".join(parts)


def _compiler_version(command: Sequence[str]) -> tuple[str, str]:
    """``(resolved executable, output of --version)``; `KernelUnavailable` when there is none."""
    executable = shutil.which(command[0])
    if executable is None:
        raise KernelUnavailable(f"no C++ compiler: {command[0]} not found (set CXX)")
    try:
        result = subprocess.run(
            [executable, *command[1:], "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise KernelUnavailable(
            f"no C++ compiler: {shlex.join(command)} --version failed: {error}"
        ) from error
    if result.returncode != 0:
        raise KernelUnavailable(
            f"no C++ compiler: {shlex.join(command)} --version exited with {result.returncode}: "
            + _tail(result.stdout + result.stderr)
        )
    return executable, result.stdout + result.stderr


def _tensorflow_flags() -> tuple[str, list[str], list[str]]:
    """``(TensorFlow version, compile flags, link flags)``."""
    import tensorflow as tf

    return (
        tf.__version__,
        list(tf.sysconfig.get_compile_flags()),
        list(tf.sysconfig.get_link_flags()),
    )


def cache_key(
    *,
    sources: Sequence[str | os.PathLike],
    tensorflow_version: str,
    compiler: Sequence[str],
    compiler_version: str,
    flags: Sequence[str],
    cpu: str,
) -> str:
    """The library's cache key: 32 hex digits of a SHA-256 over what the library depends on.

    ``sources`` are hashed by file name and content, in the order given (`source_files`
    sorts them); ``compiler`` is the command line and ``compiler_version`` its
    ``--version`` output; ``flags`` all the flags of the command, TensorFlow's included.
    """
    digest = hashlib.sha256()

    def add(label: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        digest.update(f"{label}:{len(data)}:".encode())
        digest.update(data)

    add("tensorflow", tensorflow_version)
    for path in sources:
        path = pathlib.Path(path)
        add("source", path.name)
        add("content", path.read_bytes())
    add("compiler", json.dumps(list(compiler)))
    add("compiler_version", compiler_version)
    add("flags", json.dumps(list(flags)))
    add("cpu", cpu)
    return digest.hexdigest()[:32]


def _tail(output: str) -> str:
    """The compiler's error lines (at most `ERROR_LINES`), or the last lines when none is marked."""
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if any(marker in line for marker in _ERROR_MARKERS)]
    return "\n".join((errors or lines)[-ERROR_LINES:])


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class _Plan(NamedTuple):
    """What `build_library` compiles and where: the library path and the command's parts."""

    library: pathlib.Path
    compiled: list[pathlib.Path]
    compile_flags: list[str]
    link_flags: list[str]


def _plan(
    *, source_dir: str | os.PathLike, cache_root: str | os.PathLike, compiler: Sequence[str]
) -> _Plan:
    if not compiler:
        raise KernelUnavailable(f"no C++ compiler: compiler={list(compiler)!r} is empty (set CXX)")
    sources = source_files(source_dir)
    compiled = [p for p in sources if p.suffix == ".cc"]
    if not compiled:
        raise KernelUnavailable(f"no kernel sources: no *.cc file in {source_dir}")
    executable, version = _compiler_version(compiler)
    tf_version, compile_flags, link_flags = _tensorflow_flags()
    key = cache_key(
        sources=sources,
        tensorflow_version=tf_version,
        compiler=[executable, *compiler[1:]],
        compiler_version=version,
        flags=[*CXXFLAGS, *compile_flags, *link_flags],
        cpu=cpu_identity(),
    )
    library = pathlib.Path(cache_root) / "kernels" / key / LIBRARY_NAME
    return _Plan(library, compiled, compile_flags, link_flags)


def library_path(
    *, source_dir: str | os.PathLike, cache_root: str | os.PathLike, compiler: Sequence[str]
) -> pathlib.Path:
    """Where `build_library` puts (or finds) the library of these sources; compiles nothing.

    ``cache_root/kernels/<key>/libmnm_kernels.so``, with the key of `cache_key` (the
    compiler is run for its ``--version``). `KernelUnavailable` as `build_library`.
    """
    return _plan(source_dir=source_dir, cache_root=cache_root, compiler=compiler).library


def build_library(
    *,
    source_dir: str | os.PathLike,
    cache_root: str | os.PathLike,
    compiler: Sequence[str],
    log: TextIO | None = None,
) -> pathlib.Path:
    """Compiles the ``*.cc`` files of ``source_dir`` into one library, or finds it in the cache.

    Args:
      source_dir: the directory of the C++ sources (``*.cc``, compiled; ``*.h``, hashed).
      cache_root: libraries go to ``cache_root/kernels/<key>/libmnm_kernels.so``.
      compiler: the compiler command line, e.g. ``["g++"]`` (`compiler_command`).
      log: where the one-line notice of a compilation and its duration go (stderr).

    Returns:
      The path of the library. Raises `KernelUnavailable` when there are no sources, no
      compiler, or the compilation fails (its error lines in the message, the whole output
      in ``<key>/build.log``).
    """
    log = sys.stderr if log is None else log
    if fcntl is None:
        raise KernelUnavailable("no file locks: building the fused kernels needs fcntl (POSIX)")
    library, compiled, compile_flags, link_flags = _plan(
        source_dir=source_dir, cache_root=cache_root, compiler=compiler
    )
    directory = library.parent
    if library.is_file():
        return library
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / ".lock", "a")  # held across the compilation
    except OSError as error:
        raise KernelUnavailable(f"cannot write the kernel cache {directory}: {error}") from error
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if library.is_file():  # built by another process while this one waited
            return library
        for stale in directory.glob(f".{LIBRARY_NAME}.*.tmp"):  # left by a killed compilation
            stale.unlink(missing_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{LIBRARY_NAME}.", suffix=".tmp", dir=directory
        )
        os.close(handle)
        command = [
            *compiler,
            *CXXFLAGS,
            *map(str, compiled),
            *compile_flags,
            "-o",
            temporary,
            *link_flags,
        ]
        print(
            f"mnm_keras: compiling the fused kernels ({_plural(len(compiled), 'C++ file')}) into "
            f"{library} with {compiler[0]}; this happens once per TensorFlow version and kernel "
            "source and usually takes under a minute",
            file=log,
            flush=True,
        )
        start = time.monotonic()
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.SubprocessError) as error:
            os.unlink(temporary)
            raise KernelUnavailable(
                f"the C++ compiler failed: {shlex.join(command)}: {error}"
            ) from error
        output = result.stdout + result.stderr
        (directory / "build.log").write_text(shlex.join(command) + "\n\n" + output)
        if result.returncode != 0:
            os.unlink(temporary)
            raise KernelUnavailable(
                f"the C++ compiler failed (exit {result.returncode}; the whole output is in "
                f"{directory / 'build.log'}):\n{_tail(output)}"
            )
        os.replace(temporary, library)
        print(
            f"mnm_keras: compiled the fused kernels in {time.monotonic() - start:.1f} s",
            file=log,
            flush=True,
        )
    return library


def load_library(
    *,
    source_dir: str | os.PathLike,
    cache_root: str | os.PathLike,
    compiler: Sequence[str],
    environ: Mapping[str, str] | None = None,
    log: TextIO | None = None,
) -> Any:
    """`build_library`, then `tf.load_op_library`: the module of the ops.

    The module's functions are the ops in snake case (op ``MnmAddOne``: ``mnm_add_one``).
    ``environ[MNM_KERAS_KERNELS] == "0"`` (the process's environment by default) refuses
    with `KernelUnavailable`. A library is loaded once per process: a second call with the
    same sources, compiler and flags returns the same module.
    """
    environ = os.environ if environ is None else environ
    if environ.get(DISABLE_VARIABLE, "").strip() == "0":
        raise KernelUnavailable(f"disabled by {DISABLE_VARIABLE}=0")
    library = build_library(
        source_dir=source_dir, cache_root=cache_root, compiler=compiler, log=log
    )
    key = library.parent.name
    with _LOADED_LOCK:
        if key not in _LOADED:
            import tensorflow as tf

            try:
                _LOADED[key] = tf.load_op_library(str(library))
            except Exception as error:  # TensorFlow raises several kinds
                raise KernelUnavailable(f"cannot load {library}: {error}") from error
        return _LOADED[key]
