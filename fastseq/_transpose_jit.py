"""The Numba form of :func:`fastseq._transpose.transpose_into` (8 x 8 blocks, any
strides), for when fastseq_ext is not built or the arrays do not suit its Cython twin
``fastseq_ext.reduce.transpose_into``. Imported on first use only, so the Cython path
never loads Numba for a transpose.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._config import NUMBA_FLAGS

_FLAGS = dict(NUMBA_FLAGS)
_FLAGS["fastmath"] = set(NUMBA_FLAGS["fastmath"])


# dest: [M, N] OUT = src_t.T     src_t: [N, M] (any strides)
@njit(**_FLAGS)
def transpose_into_jit(dest, src_t):
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
