"""glibc malloc thresholds for processes that train (used by :mod:`fastseq.dask`).

Training allocates and frees the same large arrays every mini-batch (gate buffers
``[T, B, G*H]``, projections, gradients: hundreds of KiB each for small models). glibc's
default serves them from the heap after the first batch: its mmap threshold adapts upwards
to the sizes it sees (up to 32 MiB). Setting *any* of ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or ``MALLOC_MMAP_MAX_`` switches that
adaptation off, and dask's nanny starts every worker process with
``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``). In such a
process every array above 128 KiB is a fresh ``mmap`` that the kernel hands out page by page
(one zero-filled page fault per 4 KiB) and ``munmap`` returns at ``free``. Measured on this
project's machine (tools/dask_bench.py, docs/dask.md): ~140 page faults per training step of
a 32-unit LSTM on batches of 32 x 20, 1.5-1.8x the CPU time of the same fit elsewhere.

:func:`set_thresholds` sets fixed thresholds at run time (``mallopt``), so arrays up to
``mmap_threshold`` come from the heap again and up to ``trim_threshold`` of free memory at
its top is kept for the next batch instead of being returned to the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameter numbers (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# arrays up to 16 MiB from the heap, keep up to 32 MiB free at its top (glibc's own
# adaptive scheme goes up to 32 / 64 MiB)
MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 32 << 20

ENV_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
            "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX")

# what set_thresholds set in this process: {"mmap_threshold": ..., "trim_threshold": ...}
_applied = None


def _mallopt():
    """glibc's ``mallopt`` or None (other C libraries, other systems)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def set_thresholds(mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD):
    """Fixed glibc mmap and trim thresholds (bytes) for this process; True if set.

    Returns False, changing nothing, where malloc is not glibc's. Affects allocations made
    afterwards, in every thread of the process."""
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not (isinstance(value, int) and 0 < value < 2**31):
            raise ValueError(f"{name} must be a positive int below 2**31 bytes, got {value!r}")
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # glibc returns 1 on success, 0 when it refuses a value (mmap above HEAP_MAX / 2)
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok
    global _applied
    if ok:
        _applied = {"mmap_threshold": mmap_threshold, "trim_threshold": trim_threshold}
    return ok


def report():
    """The ``MALLOC_*`` variables of this process and what :func:`set_thresholds` set."""
    return {"env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
            "fastseq_thresholds": _applied}
