"""Backend registry: one interface, several engines.

``get_backend(name)`` returns a module-like object with ``name``, ``forward``,
``backward`` and ``step`` (the interface is documented in
:mod:`fastseq.backends.reference`). Engines are imported lazily, so a missing optional
engine (no compiled extension, no CUDA driver) only fails when it is asked for, with a
clear message.

``"auto"`` honours the ``FASTSEQ_BACKEND`` environment variable, then picks the first
available engine in :data:`AUTO_ORDER`.
"""
from __future__ import annotations

import importlib
import os

from .._config import BACKEND_ENV

# module path of each engine, relative to this package
_ENGINES = {
    "reference": ".reference",
    "numba": ".numba_cpu",
    "cython": ".cython_cpu",
    "cuda": ".cuda.backend",      # the package imports without a GPU; .backend checks
}
BACKENDS = tuple(_ENGINES)

# The rule for "auto": the first engine here that imports. Cython comes first: it compiles
# nothing at run time (first call ~0.04 s against 0.4-13 s of JIT for Numba) and neither
# engine wins clearly anywhere. Measured 2026-11-23 through the bench runners, both engines
# interleaved in one process, on a shared 2-core machine (load 2-5): at 1 thread
# (per-thread CPU time) Cython/Numba = 0.96-1.01 on every train/fwd size of the engine
# table and 0.8 on the B1 H64 streaming step (~5 us against ~7-10 us); at 2 threads
# 0.93-1.01 (both engines then run the same chunking on Python threads, see
# cython_cpu.DISPATCH). Numba is the fallback where the extension was not built.
AUTO_ORDER = ("cython", "numba", "reference")

_loaded = {}


class BackendUnavailable(ImportError):
    """The requested engine cannot run here (not built, no driver, ...)."""


def _load(name):
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(_ENGINES[name], __name__)
        except BackendUnavailable:
            raise
        except ImportError as exc:
            raise BackendUnavailable(
                f"backend {name!r} is not available here: {exc}") from exc
    return _loaded[name]


def available_backends():
    """Names of the engines that import on this machine."""
    names = []
    for name in BACKENDS:
        try:
            _load(name)
        except BackendUnavailable:
            continue
        names.append(name)
    return names


def get_backend(name="auto"):
    """Return the engine called ``name`` (``"auto"``, or one of :data:`BACKENDS`)."""
    if not isinstance(name, str):
        if all(hasattr(name, f) for f in ("forward", "backward", "step")):
            return name
        raise TypeError(f"backend must be a str, got {type(name).__name__}")
    if name == "auto":
        override = os.environ.get(BACKEND_ENV, "").strip()
        if override and override != "auto":
            return get_backend(override)
        for candidate in AUTO_ORDER:
            try:
                return _load(candidate)
            except BackendUnavailable:
                continue
        raise BackendUnavailable("no backend is available")  # pragma: no cover
    if name not in _ENGINES:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {name!r}")
    return _load(name)
