"""Matrix products and reductions on the device: a tiled shared-memory GEMM and a
deterministic column sum.

The GEMM computes ``C[M, N] (+)= op(A)[M, K] @ op(B)[K, N] (+ bias[N])`` where ``op`` is
the identity or the transpose, chosen when the kernel is built. Three forms are used:

* ``hw = h_masked @ R + b_hh``          (forward, every step; A [B, H], B [H, G*H])
* ``dh_part = d_hw @ R.T``              (backward, every step; ``trans_b``)
* ``dR = h_masked_all.T @ d_hw_all``    (backward, once over all T*B rows; ``trans_a``)

Each block computes one ``TILE x TILE`` tile of ``C``, one element per thread, staging
``TILE x TILE`` tiles of A and B in shared memory. Operands may be strided views (column
blocks of ``R``), so the classic GRU's split products need no copies.

The column sum (bias gradient ``dbh = sum over rows of d_hw``) is reduced per block without
atomics: pass one gives each block a chunk of rows and writes one partial row per chunk;
pass two adds the partials in chunk order. The result is bitwise reproducible.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import cuda

from . import config
from .launch import dtype_of, kernel


@lru_cache(maxsize=None)
def make_gemm(dtype, tile, trans_a=False, trans_b=False, with_bias=False, accumulate=False):
    """Kernel source for ``C (+)= op(A) @ op(B) (+ bias)``; launch with a 2-D grid of
    ``TILE x TILE`` blocks over ``(N, M)``."""
    zero = dtype(0.0)

    # A: [M, K] or [K, M] (trans_a); B: [K, N] or [N, K] (trans_b); bias: [N] (read only
    # when with_bias); C: [M, N] OUT
    def gemm(A, B, bias, C):
        a_tile = cuda.shared.array((tile, tile), dtype)
        b_tile = cuda.shared.array((tile, tile), dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        M = C.shape[0]
        N = C.shape[1]
        if trans_a:
            K = A.shape[0]
        else:
            K = A.shape[1]
        acc = zero
        for k0 in range(0, K, tile):
            # a_tile[ty, tx] = op(A)[row, k0 + tx]; b_tile[ty, tx] = op(B)[k0 + ty, col]
            ka = k0 + tx
            kb = k0 + ty
            if row < M and ka < K:
                if trans_a:
                    a_tile[ty, tx] = A[ka, row]
                else:
                    a_tile[ty, tx] = A[row, ka]
            else:
                a_tile[ty, tx] = zero
            if col < N and kb < K:
                if trans_b:
                    b_tile[ty, tx] = B[col, kb]
                else:
                    b_tile[ty, tx] = B[kb, col]
            else:
                b_tile[ty, tx] = zero
            cuda.syncthreads()
            for kk in range(tile):
                acc += a_tile[ty, kk] * b_tile[kk, tx]
            cuda.syncthreads()
        if row < M and col < N:
            if with_bias:
                acc += bias[col]
            if accumulate:
                acc += C[row, col]
            C[row, col] = acc

    return gemm


@lru_cache(maxsize=None)
def make_colsum(dtype):
    """Kernel sources ``(partial_pass, final_pass)`` of the deterministic column sum."""
    zero = dtype(0.0)

    # X: [rows, N]; partial: [chunks, N] OUT, row c = sum of X over chunk c's rows
    def colsum_partial(X, partial):
        col = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        chunk = cuda.blockIdx.y
        rows = X.shape[0]
        chunks = partial.shape[0]
        per_chunk = (rows + chunks - 1) // chunks
        stop = (chunk + 1) * per_chunk
        if stop > rows:         # (builtin min() fails to type in compile_ptx here)
            stop = rows
        if col < X.shape[1]:
            acc = zero
            for r in range(chunk * per_chunk, stop):
                acc += X[r, col]
            partial[chunk, col] = acc

    # partial: [chunks, N]; out: [N] OUT (+= when accumulate is wanted is not needed)
    def colsum_final(partial, out):
        col = cuda.grid(1)
        if col < out.shape[0]:
            acc = zero
            for c in range(partial.shape[0]):
                acc += partial[c, col]
            out[col] = acc

    return colsum_partial, colsum_final


_DUMMY = {}


def _dummy_bias(dtype):
    if dtype not in _DUMMY:
        _DUMMY[dtype] = cuda.to_device(np.zeros(1, dtype=dtype))
    return _DUMMY[dtype]


def matmul(A, B, C, bias=None, trans_a=False, trans_b=False, accumulate=False):
    """Launch ``C (+)= op(A) @ op(B) (+ bias)`` on device arrays (views allowed)."""
    M, N = C.shape
    if M == 0 or N == 0:
        return
    dtype = dtype_of(C)
    tile = int(config.TILE)
    src = make_gemm(dtype, tile, bool(trans_a), bool(trans_b), bias is not None,
                    bool(accumulate))
    grid = ((N + tile - 1) // tile, (M + tile - 1) // tile)
    kernel(src)[grid, (tile, tile)](A, B, _dummy_bias(dtype) if bias is None else bias, C)


def column_sum(X, out):
    """``out[N] = X[rows, N].sum(axis=0)``, reduced per block in a fixed order."""
    rows, N = X.shape
    if N == 0:
        return
    dtype = dtype_of(out)
    partial_src, final_src = make_colsum(dtype)
    tpb = int(config.THREADS_PER_BLOCK)
    chunks = max(1, min(int(config.REDUCE_CHUNKS), rows))
    partial = cuda.device_array((chunks, N), dtype=dtype)
    col_blocks = (N + tpb - 1) // tpb
    kernel(partial_src)[(col_blocks, chunks), tpb](X, partial)
    kernel(final_src)[col_blocks, tpb](partial, out)
