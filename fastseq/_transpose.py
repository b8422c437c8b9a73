"""A fast 2-D transposed copy for the weights (``weight_hh`` <-> ``R``, ``dR`` -> grad).

NumPy copies a transposed view element by element with a large stride (3.7 ms for a
[2048, 512] float32 weight here); fixed 8 x 8 blocks let the compiler transpose them in
registers (0.4-0.6 ms). Used by :class:`fastseq.network.Network` (the engine's copy of
``weight_hh.T``, the ``weight_hh`` gradients), :mod:`fastseq.layers` and the CPU engines'
backward pass (``R^T``).

One entry point, two compiled forms of the same loop: ``fastseq_ext.reduce.transpose_into``
(Cython: no JIT, releases the GIL) when fastseq_ext is built and both arrays are
C-contiguous float32/float64 of one dtype, else the Numba one in
:mod:`fastseq._transpose_jit` (any strides; Numba is imported on first use only).
"""
from __future__ import annotations

import numpy as np

try:
    from fastseq_ext.reduce import transpose_into as _ext_transpose_into
except ImportError:      # pragma: no cover - fastseq_ext not built
    _ext_transpose_into = None


# fewest elements of a copy worth splitting among threads ([2048, 512] float32: 0.46 ms on
# one, 0.29 ms on two; cold in cache 0.78 / 0.47)
TRANSPOSE_SPLIT_MIN = 1 << 16


# dest: [M, N] OUT = src_t.T     src_t: [N, M]
def transpose_into(dest, src_t, n_threads=1):
    """``dest[...] = src_t.T``; ``n_threads``: row blocks on fastseq_ext's thread team
    (the Cython form only; a copy of a few MB is bound by memory bandwidth, which two cores
    have more of)."""
    if dest.ndim != 2 or src_t.shape != dest.shape[::-1]:
        raise ValueError(f"src_t has shape {src_t.shape}; expected {dest.shape[::-1]}")
    if (_ext_transpose_into is not None and dest.dtype == src_t.dtype
            and dest.dtype in (np.float32, np.float64)
            and dest.flags.c_contiguous and src_t.flags.c_contiguous):
        _ext_transpose_into(dest, src_t, n_threads)
        return
    from ._transpose_jit import transpose_into_jit
    transpose_into_jit(dest, src_t)


def transposed(a, out=None):
    """``a.T`` as a new (or the given) C-contiguous array, via :func:`transpose_into`."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {a.shape}")
    if out is None:
        out = np.empty((a.shape[1], a.shape[0]), dtype=a.dtype)
    if a.size:
        transpose_into(out, a)
    return out
