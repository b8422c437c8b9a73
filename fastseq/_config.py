"""One place for tunables: compiler flags, threads, tolerances, block sizes.

Kernels never hard-code ``fastmath=True``; they read :data:`NUMBA_FLAGS` from here. The
flags keep IEEE NaN/Inf semantics (``nnan``/``ninf`` are off) so a diverging model shows
NaN instead of silently producing garbage, while allowing the reassociation and
contraction (FMA) that let LLVM vectorize reductions.
"""
from __future__ import annotations

import os

# LLVM fast-math flags for Numba kernels: contraction (FMA), reassociation, no signed
# zeros, reciprocal approximations in arithmetic -- but NaN and Inf keep their meaning.
FASTMATH = frozenset({"contract", "reassoc", "nsz", "arcp", "afn"})

# Options every @njit kernel takes. error_model='numpy' drops the zero-division check that
# otherwise stops LLVM from vectorizing loops with a division (DESIGN.md section 8).
NUMBA_FLAGS = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")

# Relative tolerances used by the parity tests (scaled by tensor norms).
RTOL = {"float64": 1e-10, "float32": 1e-5}

# Environment variable that overrides backend="auto".
BACKEND_ENV = "FASTSEQ_BACKEND"


def default_threads() -> int:
    """Threads a kernel may use when the caller gives none.

    Honours NUMBA_NUM_THREADS and OMP_NUM_THREADS (joblib and dask workers set them),
    then the CPUs this process may run on.
    """
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var)
        if value and value.strip().isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(n_jobs) -> int:
    """scikit-learn's convention: None -> default, -1 -> all, -2 -> all but one, k -> k."""
    if n_jobs is None:
        return default_threads()
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning; use None, a positive count or -1")
    if n_jobs < 0:
        return max(1, default_threads() + 1 + n_jobs)
    return n_jobs
