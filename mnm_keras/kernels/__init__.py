"""Fused TensorFlow C++ kernels of mnm_keras, compiled at first use.

The C++ sources of this package (``*.cc``, ``*.h``) are compiled into one op library the
first time `load` is called, and cached (`mnm_keras.kernels.build`):

* `load()`: the library's module (op ``MnmAddOne`` -> function ``mnm_add_one``); compiles
  it once, into ``<cache root>/kernels/<key>/libmnm_kernels.so``; raises
  `KernelUnavailable` with the reason when it cannot.
* `available()`: whether `load` succeeds; never raises, tries once per process.
* `unavailable_reason()`: why not (``None`` when available).

Environment: ``CXX`` (the compiler, ``g++`` by default), ``MNM_KERAS_CACHE_DIR`` (the cache
root; else ``$XDG_CACHE_HOME/mnm_keras``, else ``~/.cache/mnm_keras``) and
``MNM_KERAS_KERNELS=0`` (off). Without the kernels the TensorFlow implementation runs.

`KernelLibrary` is the same for another source directory, cache root or compiler.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Sequence
from typing import Any

from mnm_keras.kernels.build import (
    DISABLE_VARIABLE,
    KernelUnavailable,
    build_library,
    cache_root,
    compiler_command,
    load_library,
)

__all__ = [
    "DISABLE_VARIABLE",
    "SOURCE_DIR",
    "KernelLibrary",
    "KernelUnavailable",
    "available",
    "build_library",
    "load",
    "load_library",
    "unavailable_reason",
]

# The directory of the kernel sources: this package's.
SOURCE_DIR = pathlib.Path(__file__).resolve().parent


class KernelLibrary:
    """An op library compiled from the C++ files of a directory, loaded at most once.

    Args:
      source_dir: the directory of the ``*.cc`` and ``*.h`` files.
      cache_root: the cache root; ``None``: from the environment when first loaded
        (`build.cache_root`).
      compiler: the compiler command line, e.g. ``["g++"]``; ``None``: ``$CXX`` or ``g++``
        when first loaded.

    ``MNM_KERAS_KERNELS=0`` in the environment when first loaded disables it. The outcome
    of the first `load` (module or reason) is kept: later calls return it without trying again.
    """

    def __init__(
        self,
        *,
        source_dir: str | os.PathLike,
        cache_root: str | os.PathLike | None = None,
        compiler: Sequence[str] | None = None,
    ):
        self.source_dir = pathlib.Path(source_dir)
        self.cache_root = cache_root
        self.compiler = None if compiler is None else list(compiler)
        self._lock = threading.Lock()
        self._tried = False
        self._module: Any = None
        self._reason: str | None = None

    def load(self) -> Any:
        """The loaded op-library module; `KernelUnavailable` with the reason when there is none."""
        with self._lock:
            if not self._tried:
                try:
                    self._module = load_library(
                        source_dir=self.source_dir,
                        cache_root=cache_root() if self.cache_root is None else self.cache_root,
                        compiler=compiler_command() if self.compiler is None else self.compiler,
                    )
                except KernelUnavailable as error:
                    self._reason = str(error)
                except Exception as error:  # unexpected: still a fallback, with its reason
                    self._reason = f"{type(error).__name__}: {error}"
                self._tried = True
        if self._module is None:
            raise KernelUnavailable(self._reason)
        return self._module

    def available(self) -> bool:
        """Whether `load` gives the module; never raises."""
        try:
            self.load()
        except KernelUnavailable:
            return False
        return True

    def unavailable_reason(self) -> str | None:
        """Why `load` fails (no compiler, the compiler's errors, disabled, no sources) or ``None``.

        Never raises.
        """
        return None if self.available() else self._reason


_LIBRARY = KernelLibrary(source_dir=SOURCE_DIR)


def load() -> Any:
    """The module of mnm_keras's fused ops, compiled at first use; `KernelUnavailable` if not."""
    return _LIBRARY.load()


def available() -> bool:
    """Whether the fused kernels can be used in this process; never raises."""
    return _LIBRARY.available()


def unavailable_reason() -> str | None:
    """Why the fused kernels cannot be used, or ``None`` when they can."""
    return _LIBRARY.unavailable_reason()
