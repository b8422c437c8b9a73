"""A fast 2-D transposed copy for the weights (``weight_hh`` <-> ``R``, ``dR`` -> grad).

NumPy copies a transposed view element by element with a large stride (3.7 ms for a
[2048, 512] float32 weight here); fixed 8 x 8 blocks let LLVM transpose them in registers
(0.4 ms). Used by :class:`fastseq.network.Network` (the engine's copy of ``weight_hh.T``,
the ``weight_hh`` gradients) and by the CPU engines' backward pass (``R^T``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._config import NUMBA_FLAGS

_FLAGS = dict(NUMBA_FLAGS)
_FLAGS["fastmath"] = set(NUMBA_FLAGS["fastmath"])


# dest: [M, N] OUT = src_t.T     src_t: [N, M] (any strides)
@njit(**_FLAGS)
def transpose_into(dest, src_t):
    M, N = dest.shape
    Mb = M - M % 8
    Nb = N - N % 8
    for i0 in range(0, Mb, 8):
        for j0 in range(0, Nb, 8):
            for i in range(8):
                for j in range(8):
                    dest[i0 + i, j0 + j] = src_t[j0 + j, i0 + i]
        for i in range(i0, i0 + 8):
            for j in range(Nb, N):
                dest[i, j] = src_t[j, i]
    for i in range(Mb, M):
        for j in range(N):
            dest[i, j] = src_t[j, i]


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
