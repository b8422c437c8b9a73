"""The backend interface on top of the per-cell kernels: validation, dtype, length
sorting, buffers (allocated once per call, never inside the time loop), threads, and
the weight-gradient reductions. Interface and shapes: :mod:`fastseq.backends.reference`.
"""
from __future__ import annotations

import numpy as np

from ..._transpose import transpose_into
from ...cells import CellSpec
from . import gru, lstm, rnn
from .._cpu_common import (OUT_T_MAX_ROWS, check_dR_out, checked_step_arguments,
                           finish_forward, prepare_backward, prepare_forward,
                           returned_dR, state_buffer, weight_transposed)
from .._cpu_common import dummy as _dummy
from ._loop import (POOL, Lease, accumulate_outer, accumulate_rows, make_chunks, run_chunks,
                    threads, zero_padding)

try:            # the extension's reductions run on its thread team (see _reduce_columns)
    from fastseq_ext import reduce as _ext_reduce
except ImportError:  # pragma: no cover - depends on the build
    _ext_reduce = None

# (forward kernel, backward kernel) per cell form
_KERNELS = {
    ("rnn", True): (rnn.forward_chunk, rnn.backward_chunk),
    ("lstm", True): (lstm.forward_chunk, lstm.backward_chunk),
    ("gru", True): (gru.forward_chunk, gru.backward_chunk),
    ("gru", False): (gru.forward_chunk_classic, gru.backward_chunk_classic),
}


def _kernels(cell):
    if not isinstance(cell, CellSpec):
        raise TypeError(f"cell must be a CellSpec, got {type(cell).__name__}")
    return _KERNELS[(cell.kind, cell.reset_after)]


def _scratch(n, dtype):
    return np.zeros((n, 16), dtype=np.int32), np.zeros((n, 2), dtype=dtype)


def _reduce_columns(specs, bias_src, db, nact, B, GH, n, dtype, zero_h0=False,
                    out_t=False):
    """The weight-gradient GEMMs and the bias column sums (``db += sum of bias_src's active
    rows``), split into blocks of the ``G*H`` output columns, one block per thread (BLAS on
    one thread inside each: one level of parallelism). Each column's sum is the same
    whatever the block, and the blocks depend only on ``n``. ``zero_h0``: the ``A`` rows of
    step 0 are zero (they hold ``h0``), so the GEMMs start at step 1. ``out_t`` (only with
    fastseq_ext): each ``out`` is ``[G*H, K]``, the transpose, overwritten (the weight's
    own layout: no transposed copy afterwards)."""
    nact_all = nact
    if zero_h0:
        nact = nact[1:]
        specs = [(A[1:], K, D[1:], col, N, out) for A, K, D, col, N, out in specs]
    k = max(1, min(n, GH // 16))
    if _ext_reduce is not None:
        # the same products and sums on fastseq_ext's thread team (its column blocks, one
        # task each; no Python thread hand-over: 0.44 -> 0.2 ms for LSTM B16 T200 H32).
        # Each column is computed alone in the same order, so the same bits as below
        if out_t and (len(nact) == 0 or nact[0] == 0):
            for spec in specs:
                spec[5][...] = 0                 # no row: nothing would be written
        for A, K, D, col, N, out in specs:
            _ext_reduce.accumulate_outer(nact, B, A.reshape(-1), K, 0, K, D.reshape(-1), GH,
                                         col, N, out.reshape(-1), K if out_t else GH, col, k,
                                         out_t, out_t)
        _ext_reduce.accumulate_bias(nact_all, bias_src, db, 0, GH, k)
        return
    bounds = [(GH * j) // k for j in range(k + 1)]
    iw, fw = _scratch(k, dtype)

    def run(c0, c1, slot):
        for A, K, D, col, N, out in specs:
            lo, hi = max(c0, col), min(c1, col + N)
            if hi > lo:
                accumulate_outer(nact, B, A, K, 0, K, D, GH, lo, hi - lo, out, GH, lo,
                                 iw[slot], fw[slot])
        accumulate_rows(nact_all, bias_src, c0, c1, db)

    run_chunks(run, [(bounds[j], bounds[j + 1]) for j in range(k)], n)


def forward(cell, xw, R, bh, h0, c0=None, lengths=None, rmask=None, training=True,
            n_threads=None, need_grad=True):
    """Run the cell over ``T`` steps. Shapes as in :mod:`fastseq.backends.reference`;
    float32 input stays float32, anything else runs in float64.

    ``need_grad=False`` (inference) keeps one time slot of the gate, cell-state and mask
    buffers instead of ``T``: less memory traffic and memory, and the cache cannot be
    passed to :func:`backward`."""
    fwd_kernel, _ = _kernels(cell)
    inp = prepare_forward(cell, xw, R, bh, h0, c0, lengths, rmask)
    dtype, T, B, H, GH = inp.dtype, inp.T, inp.B, inp.H, inp.GH
    xw_s, R, bh, nact, mask, masked = inp.xw, inp.R, inp.bh, inp.nact, inp.mask, inp.masked
    lengths = inp.lengths
    n = threads(n_threads)

    # saved for BPTT, pooled: they live as long as the cache (see _loop.Lease)
    keep = bool(need_grad)
    slots = T if keep else min(T, 1)
    hs = state_buffer(POOL, T, B, H, dtype, keep)
    hs[0] = inp.h0
    if cell.has_cell_state:
        cs = POOL.take((slots + 1 if keep else 1, B, H), dtype)
        cs[0] = inp.c0
    else:
        cs = _dummy(dtype)
    hm = POOL.take((slots, B, H), dtype) if masked else _dummy(dtype)
    gates = POOL.take((slots, B, GH), dtype) if cell.kind != "rnn" else _dummy(dtype)
    aux = POOL.take((slots, B, H), dtype) if cell.kind != "rnn" else _dummy(dtype)
    lease = Lease(([hs] if keep else []) + [cs, hm, gates, aux], POOL)
    pre = np.empty((B, GH), dtype)
    relu = cell.activation == "relu"
    chunks = make_chunks(lengths, n, H * GH)
    iw, fw = _scratch(len(chunks), dtype)

    def run(lo, hi, slot):
        fwd_kernel(xw_s, R, bh, mask, masked, relu, keep, inp.zero_h0, nact, lo, hi, hs, cs,
                   hm, gates, aux, pre, iw[slot], fw[slot])

    if B and T:
        run_chunks(run, chunks, n)

    if B and T and nact[T - 1] < B:
        zero_padding(hs, nact)      # outputs are zero at padded steps
    return finish_forward(cell, inp, hs, cs, hm, gates, aux, lease=lease, saved=keep)


def backward(cell, cache, dH_all=None, dh_T=None, dc_T=None, n_threads=None, need_dh0=True,
             dR_out=None):
    """BPTT through :func:`forward`; returns ``(dxw, dR, dbh, dh0, dc0)``.

    ``need_dh0=False``: the caller does not want the initial state's gradient; step 0's
    ``dh`` GEMM is skipped and ``dh0``, ``dc0`` come back as None.

    ``dR_out`` (with fastseq_ext built, see :data:`supports_dR_out`): an optional
    C-contiguous ``[G*H, H]`` array of the cache's dtype (the weight's own layout, e.g. a
    slice of a flat gradient buffer) that receives ``dR.T``, computed in that layout; the
    returned ``dR`` is then a transposed view of it (no transposed copy)."""
    _, bwd_kernel = _kernels(cell)
    dh, dc, dH, has_dH = prepare_backward(cell, cache, dH_all, dh_T, dc_T)
    T, B, H = cache["shape"]
    dtype, identity = cache["dtype"], cache["identity"]
    G = cell.n_gates
    GH = G * H
    R, mask, masked, nact = cache["R"], cache["mask"], cache["masked"], cache["nact"]
    hs, cs, hm, gates, aux = (cache[k] for k in ("hs", "cs", "hm", "gates", "aux"))
    n = threads(n_threads)

    # padded rows of dxw must read as zero (the layers' GEMMs run over all rows); the
    # kernels write every active row, so a batch without padding needs no zero fill
    full = T == 0 or B == 0 or nact[T - 1] == B
    dxw = np.empty((T, B, GH), dtype) if full else np.zeros((T, B, GH), dtype)
    gru_after = cell.kind == "gru" and cell.reset_after
    dhw = POOL.take((T, B, GH), dtype) if gru_after else _dummy(dtype)
    dtmp = np.empty((B, H), dtype)
    dtmp2 = np.empty((B, H), dtype)
    relu = cache["relu"]
    chunks = make_chunks(cache["lengths"], n, H * GH)
    iw, fw = _scratch(len(chunks), dtype)

    # [G*H, H]: dh = dgates @ RT is a plain GEMM
    RT, own_RT = weight_transposed(cache, R, POOL, transpose_into)

    def run(lo, hi, slot):
        bwd_kernel(RT, mask, masked, relu, need_dh0, nact, lo, hi, hs, cs, hm, gates, aux, dH,
                   has_dH, dh, dc, dxw, dhw, dtmp, dtmp2, iw[slot], fw[slot])

    if B and T:
        run_chunks(run, chunks, n)

    # weight gradients: dR = sum_t h_masked[t]^T @ dhw[t], dbh = ones^T @ dhw, both as
    # GEMMs over the active rows (steps with a full batch merged into one GEMM)
    if dR_out is not None:
        if _ext_reduce is None:
            raise ValueError("dR_out needs fastseq_ext (see supports_dR_out)")
        check_dR_out(dR_out, GH, H, dtype)
    # over few rows straight into dR_out in its layout; else [H, GH], then one transpose
    out_t = dR_out is not None and int(np.sum(nact)) < OUT_T_MAX_ROWS
    dR = dR_out if out_t else np.zeros((H, GH), dtype)
    db64 = np.zeros(GH, np.float64)
    h_src = hm if masked else hs
    d_hw = dhw if gru_after else dxw
    if B and T:
        # (A [T, B, K], K, D, first column, columns, OUT): OUT[:, cols] += sum_t A^T D[:, cols]
        if cell.kind == "gru" and not cell.reset_after:
            specs = [(h_src, H, dxw, 0, 2 * H, dR), (aux, H, dxw, 2 * H, H, dR)]
        else:
            specs = [(h_src, H, d_hw, 0, GH, dR)]
        _reduce_columns(specs, d_hw, db64, nact, B, GH, n, dtype, cache.get("zero_h0", False),
                        out_t)
    elif out_t:
        dR[...] = 0
    dR = returned_dR(dR, dR_out, out_t, n)
    dbh = db64.astype(dtype)
    POOL.give(([dhw] if gru_after else []) + ([RT] if own_RT else []))

    inverse = cache["inverse"]
    if not identity:
        dxw = dxw[:, inverse]
    if not need_dh0:
        return dxw, dR, dbh, None, None
    if not identity:
        dh = dh[inverse]
        if cell.has_cell_state:
            dc = dc[inverse]
    return dxw, dR, dbh, dh, (dc if cell.has_cell_state else None)


# one step of each cell form: eight arguments through Numba's dispatch (the forward
# kernel's nineteen, with its scratch allocated inside compiled code: _loop.step_arguments)
_STEP = {
    ("rnn", True): rnn.step,
    ("lstm", True): lstm.step,
    ("gru", True): gru.step,
    ("gru", False): gru.step_classic,
}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# (the last cell stepped, its _step_info): one tuple, read and replaced whole, so threads
# stepping different cells never pair one cell with another's kernel
_last_step = (None, None)


def _step_info(cell):
    """(step kernel, has a cell state, relu) of a cell, looked up once per cell (a
    streaming step is a few microseconds; each property read is 0.1 of them)."""
    global _last_step
    last = _last_step
    if cell is last[0]:
        return last[1]
    _kernels(cell)                                   # a CellSpec, or TypeError
    info = (_STEP[(cell.kind, cell.reset_after)], cell.has_cell_state,
            cell.activation == "relu")
    _last_step = (cell, info)
    return info


def _is(a, dtype, ndim):
    """``a`` is an ndarray of ``dtype`` with ``ndim`` dimensions (the compiled step checks
    the shapes and copies an array not in C order: :func:`._loop.step_arguments`)."""
    return type(a) is np.ndarray and a.dtype is dtype and a.ndim == ndim


def step(cell, xw_t, R, bh, h, c=None, rmask=None):
    """One step for streaming inference: ``xw_t [B, G*H]``, ``h, c [B, H]`` -> ``(h, c)``,
    fresh arrays.

    Arguments that already are arrays of ``xw_t``'s dtype (float32 or float64) with the
    right number of dimensions go to the kernel as they are (its compiled code checks
    their shapes); anything else is checked and converted here first, with an error
    naming the argument."""
    info = _step_info(cell)
    lstm_like = info[1]
    if not lstm_like:
        c = None
    dtype = xw_t.dtype if type(xw_t) is np.ndarray else None
    if (dtype in _FLOATS and xw_t.ndim == 2 and _is(R, dtype, 2) and _is(bh, dtype, 1)
            and _is(h, dtype, 2) and (c is None or _is(c, dtype, 2))
            and (rmask is None or _is(rmask, dtype, 2))):
        try:
            return _step_call(info, xw_t, R, bh, h, c, rmask)
        except ValueError:
            pass                            # the checked path below names the argument
    _, xw_t, R, bh, h, c, rmask = checked_step_arguments(cell, xw_t, R, bh, h, c, rmask)
    return _step_call(info, xw_t, R, bh, h, c, rmask)


def _step_call(info, xw_t, R, bh, h, c, rmask):
    """Run the step kernel; the new ``(h, c)`` are views of one fresh ``[2 or 3, B, H]``
    array (a cell state of None starts from zeros)."""
    kernel, lstm_like, relu = info
    state = np.empty((3 if lstm_like else 2,) + h.shape, xw_t.dtype)
    kernel(xw_t, R, bh, rmask, relu, h, c, state)   # checks shapes even with 0 rows
    return state[1], (state[2] if lstm_like else None)
