"""The layer-level products on fastseq_ext's own GEMM, for the CPU engines.

:mod:`fastseq.layers` looks for a backend's ``matmul_into`` (the input projections
``seq @ W^T``, the input-weight gradient ``seq^T @ dxw`` and the input gradient
``dxw @ W``) and ``column_sums`` (the PyTorch-form GRU's input-bias gradient); a backend
without them gets NumPy. Both CPU engines take these from here: the GEMM is the one their
kernels already call at every step (``fastseq_ext/_smallgemm.h``), and its blocks run on
the extension's thread team, so a layer's products cost no Python thread hand-over.
Importing this module raises ImportError when fastseq_ext is not built.
"""
from __future__ import annotations

import numpy as np
from fastseq_ext import reduce as _reduce


# a: [M, K] ([K, M] when trans_a), b: [K, N], out: [M, N] OUT; rows contiguous
def matmul_into(a, b, out, trans_a=False, n_threads=1, split_cols=False, bias=None):
    """``out = op(a) @ b (+ bias)`` on the engine's own GEMM (``fastseq_ext/_smallgemm.h``),
    GIL released; ``op(a) = a.T`` when ``trans_a``; ``bias`` (``[N]``, C-contiguous, not
    with ``trans_a``) starts the accumulators, so it costs no pass of its own.
    ``n_threads > 1`` splits ``out`` into row blocks (or column blocks, ``split_cols``),
    one task each on the extension's thread team: the same bits as one thread.
    (84-86 GFLOP/s on one core where OpenBLAS gave 59-64 at ``I = 28``, ``G*H = 512``;
    NumPy's GEMM in row blocks on Python threads made the Numba engine's LSTM
    B16 T200 I8 H32 training step 1.9 ms against 1.5 with this.)"""
    _reduce.step_matmul(a, b, out, False, trans_a, n_threads, split_cols, bias)


# x: [R, N] -> OUT [N] column sums, accumulated in float64 row after row
def column_sums(x):
    """Column sums of a 2-D float32/float64 array in the array's dtype, accumulated in
    float64 in row order (the layers' GRU input-bias gradient: 32 µs for [3200, 96]
    float32 where NumPy's float32 sum takes 66 µs)."""
    x = np.ascontiguousarray(x)
    if x.ndim != 2 or x.dtype not in (np.float32, np.float64):
        return x.sum(axis=0)
    out = np.zeros(x.shape[1], np.float64)
    _reduce.accumulate_bias(np.array([x.shape[0]], np.int64), x.reshape(1, *x.shape), out)
    return out.astype(x.dtype)
