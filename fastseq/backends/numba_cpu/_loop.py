"""Mechanics shared by every cell: sorting by length, active-batch bookkeeping, batch
chunks for threads, BLAS thread control, and the weight-gradient reductions.

Ragged batches are handled like PyTorch's packed sequences: the batch is sorted once by
length (descending, stable), so at step ``t`` the active rows are the prefix
``[0, nact[t])``; the time loop only touches those rows. Rows are independent through
the whole recurrence, so a batch is split into contiguous *chunks* (balanced by the
number of active row-steps) and each chunk runs its own time loop on its own thread,
with no synchronisation: that is the one level of parallelism, and BLAS is pinned to one
thread meanwhile. The threads are fastseq_ext's team when the extension is built (the
kernels release the GIL, so each thread holds it only to start its chunk), else a
Python thread pool. The per-step products run on fastseq_ext's own single-threaded GEMM when
the extension is built (:mod:`.blas`), else on BLAS, which a single chunk (small batch)
lets thread. Each row's arithmetic does not depend on the chunking, so results are
batch-invariant.

Weight gradients ``dR = sum_t h_prev[t]^T @ dgates[t]`` (the same GEMM) and ``dbh`` (a column sum
accumulated in float64) are reduced after the time loop, in a fixed order, over active
rows only.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
from numba import njit

from ..._config import resolve_threads
from ..._threads import WorkerPool, blas_threads, each_released
from .._cpu_common import BufferPool, Lease  # noqa: F401  (Lease: used by _engine and tests)
from .._cpu_common import active_counts  # noqa: F401  (used by the kernels' tests)
from ._jit import FLAGS
from .blas import USE_OWN, gemm

# fewest rows a thread's chunk gets; below this one chunk and BLAS threads instead
MIN_CHUNK_ROWS = 4
# fewest recurrent multiply-adds (T * B * H * G*H) worth splitting among threads: a
# parallel region of this engine costs 20-60 us more than one thread (each thread takes
# the GIL to start its compiled chunk). Measured, LSTM training, 1 -> 2 threads: B16 H32
# T50 (3.3 M) 497 -> 575 us, B32 H64 T10 (5.2 M) 535 -> 546, T25 (13 M) 1144 -> 819
MIN_PARALLEL_MACS = 1 << 22

_POOL_THREADS = WorkerPool("fastseq-numba")


def threads(n_threads):
    """Resolve ``n_threads`` (None = default, -1 = all, k) to a positive count."""
    return resolve_threads(n_threads)


def make_chunks(lengths_sorted, n_threads, macs_per_row_step=None):
    """Contiguous row ranges ``[(lo, hi), ...]``, one per thread, balanced by work; one
    range when the recurrence (``sum(lengths) * macs_per_row_step`` multiply-adds, if
    given) is below :data:`MIN_PARALLEL_MACS`."""
    B = len(lengths_sorted)
    k = min(n_threads, B // MIN_CHUNK_ROWS)
    if k > 1 and macs_per_row_step is not None and \
            float(lengths_sorted.sum()) * macs_per_row_step < MIN_PARALLEL_MACS:
        k = 1
    if k <= 1:
        return [(0, B)]
    if lengths_sorted[0] == lengths_sorted[-1]:
        # one length (sorted descending: first = last): the work is the rows, split evenly
        # (the bounds the cumulative sum below gives, ceil(B * i / k), without it)
        bounds = [-(-B * i // k) for i in range(k + 1)]
        if lengths_sorted[0] > 0:
            return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
        return [(0, B)]
    work = np.cumsum(lengths_sorted, dtype=np.float64)
    total = work[-1]
    if total <= 0:
        return [(0, B)]
    bounds = [0]
    for i in range(1, k):
        cut = int(np.searchsorted(work, total * i / k, side="left")) + 1
        cut = max(cut, bounds[-1] + 1)
        bounds.append(min(cut, B))
    bounds.append(B)
    chunks = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    return chunks


def run_chunks(fn, chunks, n_threads):
    """Call ``fn(lo, hi, slot)`` for every chunk; in parallel when there are several.

    BLAS is always pinned to one thread here: with several chunks the chunks are the
    parallelism, and a multi-threaded BLAS call would leave OpenBLAS's workers spinning
    (about 0.1 s after each call) against the next call's threads -- measured here as a
    50-100x slowdown of a 2-thread training step on 2 cores. A single chunk (a batch of
    fewer than ``2 * MIN_CHUNK_ROWS`` rows) therefore runs on one thread. Thread settings
    are restored on exit. With fastseq_ext built (:data:`.blas.USE_OWN`) every product of
    the kernels runs on the extension's GEMM, never on BLAS: nothing to pin (four
    threadpoolctl calls less per call).
    """
    with nullcontext() if USE_OWN else blas_threads(1):
        if len(chunks) == 1:
            fn(chunks[0][0], chunks[0][1], 0)
        else:
            # the kernels release the GIL: on fastseq_ext's team when it is built
            each_released(_POOL_THREADS,
                          lambda slot: fn(chunks[slot][0], chunks[slot][1], slot),
                          range(len(chunks)))


# ------------------------------------------------------------- weight-gradient reductions
# A: rows of [T(+1), B, lda] (row r of step t at (t*B + r)*lda + a_col); K columns used
# D: rows of [T, B, ldd] starting at column d_col; N columns used
# nact: [T] active rows per step (descending)
# dR: [K, ldr] OUT, columns [r_col, r_col+N) += sum_t A[t,:nact]^T @ D[t,:nact]
# Steps where the whole batch is active are merged into one GEMM (their rows are contiguous).
@njit(**FLAGS)
def accumulate_outer(nact, B, A, lda, a_col, K, D, ldd, d_col, N, dR, ldr, r_col, iw, fw):
    T = nact.shape[0]
    one = 1.0
    t = 0
    while t < T:
        n = nact[t]
        if n == 0:
            break
        if n == B:
            t1 = t
            while t1 < T and nact[t1] == B:
                t1 += 1
            rows = (t1 - t) * B
            gemm(True, False, K, N, rows, one, A, t * B * lda + a_col, lda,
                 D, t * B * ldd + d_col, ldd, one, dR, r_col, ldr, iw, fw)
            t = t1
        else:
            gemm(True, False, K, N, n, one, A, t * B * lda + a_col, lda,
                 D, t * B * ldd + d_col, ldd, one, dR, r_col, ldr, iw, fw)
            t += 1


# D: [T, B, ldd] dgates (rows active per nact); db: [>= c1] float64 OUT
# db[c0:c1] += sum over the active rows of D[:, :, c0:c1] (a column sum: as a GEMM against
# a ones vector, BLAS packed all of D first, ~7x slower at B128 T28 H128)
@njit(**FLAGS)
def accumulate_rows(nact, D, c0, c1, db):
    T = nact.shape[0]
    for t in range(T):
        for b in range(nact[t]):
            for j in range(c0, c1):
                db[j] += D[t, b, j]


# ------------------------------------------------------------- reusable workspaces
# internal buffers come from one pool per engine (see _cpu_common.BufferPool)
POOL = BufferPool()


# hs: [T+1, B, H] OUT rows b >= nact[t] of hs[t+1] set to 0 (padding of the output)
@njit(**FLAGS)
def zero_padding(hs, nact):
    T = nact.shape[0]
    B = hs.shape[1]
    for t in range(T):
        for b in range(nact[t], B):
            for j in range(hs.shape[2]):
                hs[t + 1, b, j] = 0


# xw: [B, G*H]  R: [H, G*H]  bh: [G*H]  mask: [B, H] or None  h: [B, H]
# c: [B, H] or None (zeros; read only by cells with a cell state)
# state: [2 or 3, B, H] OUT: state[1] = new h, state[2] = new c (cells with a cell state)
@njit(**FLAGS)
def step_arguments(G, xw, R, bh, mask, relu, h, c, state):
    """The arguments of a cell's ``forward_chunk`` (``G`` gates) for one step on one
    thread, after checking the shapes the caller left to compiled code (ValueError,
    without naming the argument: the engine's checked path then does); arrays not in C
    order are copied (``np.ascontiguousarray``: no copy, and the same types, for those
    that are), ``h`` (and ``c``) copied into ``state``, the step's scratch allocated here,
    so that a streaming step passes eight arguments through Numba's dispatch instead of
    nineteen (each array argument costs about 50 ns to unbox, each returned array 400)."""
    B, GH = xw.shape
    H = R.shape[0]
    if (GH != G * H or R.shape[1] != GH or bh.shape[0] != GH or h.shape[0] != B
            or h.shape[1] != H or state.shape[1] != B or state.shape[2] != H
            or (mask is not None and (mask.shape[0] != B or mask.shape[1] != H))
            or (c is not None and (c.shape[0] != B or c.shape[1] != H))):
        raise ValueError("step: inconsistent argument shapes")
    xw = np.ascontiguousarray(xw)
    R = np.ascontiguousarray(R)
    bh = np.ascontiguousarray(bh)
    state[0] = h
    if state.shape[0] > 2:
        if c is None:
            state[2] = 0
        else:
            state[2] = c
    if mask is None:
        m = np.ones((1, 1), xw.dtype)
        masked = False
    else:
        m = np.ascontiguousarray(mask)
        masked = True
    scratch = np.empty(B * (2 * H + 2 * GH), xw.dtype)
    hm = scratch[:B * H].reshape((1, B, H))
    aux = scratch[B * H:2 * B * H].reshape((1, B, H))
    gates = scratch[2 * B * H:2 * B * H + B * GH].reshape((1, B, GH))
    pre = scratch[2 * B * H + B * GH:].reshape((B, GH))
    return (xw.reshape((1, B, GH)), R, bh, m, masked, relu, False, False,
            np.full(1, B, np.int64), 0, B, state[:2], state[2:], hm, gates, aux, pre,
            np.zeros(16, np.int32), np.zeros(2, xw.dtype))
