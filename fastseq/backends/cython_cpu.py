"""The Cython engine: ahead-of-time compiled kernels from :mod:`fastseq_ext`, no JIT.

Same interface as :mod:`fastseq.backends.reference` (``forward``, ``backward``, ``step``) and
the same cache layout as the Numba engine (:mod:`fastseq.backends.numba_cpu`), so layers and
estimators cannot tell the two apart. float32 stays float32; anything else runs in float64.

Mechanics (as in the Numba engine): the batch is sorted by length once (descending,
stable), so the active rows of step ``t`` are a prefix and padded steps cost nothing. The
sorted batch is split into contiguous chunks balanced by work; each chunk runs its whole
time loop on one thread. Internal buffers (saved states and gates, scratch) come from a
pool (:data:`POOL`) and go back when the forward cache dies, so repeated calls do not
page-fault on fresh memory.

Threads (:data:`DISPATCH`): the kernels release the GIL and take the chunk boundaries, so
the chunks can run either as tasks of a small C thread team inside the kernel call
(``fastseq_ext/_team.h``, the default) or on a pool of Python threads, one kernel call per
chunk (``FASTSEQ_CYTHON_THREADS=python``). Both run the same per-chunk code: results are
bitwise identical between the two and for a given thread count. The team's idle workers
spin for 100 microseconds (``FASTSEQ_SPIN_US``) and then sleep, so back-to-back regions
start within a microsecond while an idle process costs no CPU; the calling thread claims
tasks too, so a worker slow to wake never delays a call. The alternatives cost more:
waking a Python pool thread takes 0.1-0.2 ms here (the GIL hand-over), and libgomp's
idle threads spin for 5-8 ms after every region (its process-wide wait policy, shared
with PyTorch), which made 2-thread calls 3-25x slower on a busy 2-core machine.

Thread rule (one level of parallelism): no kernel calls BLAS (every product runs on the
engine's own GEMM), so the engine leaves BLAS's thread setting alone; the layers above it
pin BLAS to one thread while their own threads work. A batch too small to split (fewer
than ``2 * MIN_CHUNK_ROWS`` rows, fewer than ``MIN_PARALLEL_MACS`` recurrent multiply-adds
in the call, or ``n_threads=1``) runs as one chunk on the calling thread. With the team,
splitting pays from about 2^20 multiply-adds (LSTM B16 T200 H32 training, 2 threads:
1.41 ms split against 1.64 ms on one chunk; through the Python pool, whose wake-up costs
more than half of such a recurrence, split 1.65 ms).

Small batches of an LSTM or PyTorch-form GRU with a large recurrent weight
(:func:`_column_width`: R of 256 KB or more, fewer than 8 rows per thread) split each step
by hidden units instead, one team call per step: each thread reads only its columns of R,
and a batch too small for row chunks still uses every thread (forward B8 H512, 2 threads:
1.90 -> 0.94 ms). Same bits as the row chunks.

A zero initial state (training from scratch) skips step 0's recurrent GEMM and its rows of
dR, and ``backward(need_dh0=False)`` skips step 0's dh GEMM (word model: 1/3 of the
recurrent GEMMs, T = 3).

``R`` may come as the transposed view of PyTorch's C-contiguous ``weight_hh``
(:data:`accepts_weight_rows`; :func:`fastseq.layers.stack_forward` passes it so): a short
LSTM or PyTorch-form GRU recurrence whose tasks fill the vector lanes then reads the
weight's rows in its step GEMMs (:func:`_weight_rows`, ``fastseq_ext/_gemm_wrows.h``; same
bits), anything else gets its R copy here, and the backward reads ``weight_hh`` itself as
``R^T``. Training changes
the weights after every batch, so this saves a copy of each recurrent weight per batch
(0.5-0.7 ms for ``[2048, 512]`` float32 cold in cache, more than the word model's two
recurrent steps).
"""
from __future__ import annotations

import os

import numpy as np

from ..cells import CellSpec
from .._config import resolve_threads
from .._threads import WorkerPool, column_blocks
from .._transpose import TRANSPOSE_SPLIT_MIN, transpose_into
from ._cpu_common import (OUT_T_MAX_ROWS, BufferPool, Lease, StepWorkspaces, check_dR_out,
                          checked_step_arguments, finish_forward, prepare_backward,
                          prepare_forward, returned_dR, state_buffer, weight_transposed)
from ._cpu_common import dummy as _dummy

try:
    from fastseq_ext import gru as _gru
    from fastseq_ext import lstm as _lstm
    from fastseq_ext import reduce as _reduce
    from fastseq_ext import rnn as _rnn

    from ._own_gemm import column_sums, matmul_into  # noqa: F401  (the layers' products)
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "the compiled extension fastseq_ext is not built or does not import "
        f"({exc}); build it with `pip install -e . --no-build-isolation` or "
        "`python setup.py build_ext --inplace` (needs a C compiler and Cython), or use "
        "backend='numba' / 'reference'") from exc

name = "cython"

# the kernels release the GIL, so callers may run independent recurrences (the two
# directions of a bidirectional layer) concurrently on threads
releases_gil = True

# forward(..., need_grad=False) keeps one time slot of the buffers only BPTT reads
supports_need_grad = True

# backward(..., dR_out=) writes the recurrent weight's gradient into the caller's array
supports_dR_out = True
# backward(need_dh0=False) skips step 0's dh GEMM when the initial state needs no gradient
supports_need_dh0 = True
# forward takes R as the transposed view of a C-contiguous weight_hh (R = weight_hh.T):
# a short LSTM / PyTorch-form GRU recurrence reads the weight's rows directly (no copy;
# see _weight_rows), anything else gets its R copy here; either way backward reads
# weight_hh itself as R^T
accepts_weight_rows = True

# fewest rows a thread's chunk gets; below 2x this the batch runs as one chunk
MIN_CHUNK_ROWS = 4
# fewest recurrent multiply-adds (T * B * H * G*H) worth splitting among threads (tuned
# for the team dispatch; see the module docstring)
MIN_PARALLEL_MACS = 1 << 20

_FORWARD = {
    ("rnn", True): _rnn.forward,
    ("lstm", True): _lstm.forward,
    ("gru", True): _gru.forward,
    ("gru", False): _gru.forward_classic,
}
_BACKWARD = {
    ("rnn", True): _rnn.backward,
    ("lstm", True): _lstm.backward,
    ("gru", True): _gru.backward,
    ("gru", False): _gru.backward_classic,
}

# internal buffers (saved states, gates, scratch), reused across calls: fresh memory
# page-faults on first touch, which cost more than the arithmetic at small sizes
POOL = BufferPool()


def _zero_padding(hs, lengths_sorted):
    """hs[t+1, b] = 0 for the padded steps ``t >= lengths[b]`` (pooled buffers hold
    garbage there; the layer outputs must be zero)."""
    T = hs.shape[0] - 1
    for b in range(len(lengths_sorted) - 1, -1, -1):     # shortest rows last in order
        L = int(lengths_sorted[b])
        if L >= T:
            break
        hs[L + 1:, b] = 0


def _check_cell(cell):
    if not isinstance(cell, CellSpec):
        raise TypeError(f"cell must be a CellSpec, got {type(cell).__name__}")
    return cell.kind, cell.reset_after


def _chunk_bounds(lengths_sorted, n_threads, macs_per_row_step):
    """Row boundaries ``[0, ..., B]`` of contiguous chunks, one per thread, balanced by
    the number of active row-steps (so long and short sequences share the work)."""
    B = len(lengths_sorted)
    k = min(n_threads, B // MIN_CHUNK_ROWS)
    total = float(lengths_sorted.sum())
    if total * macs_per_row_step < MIN_PARALLEL_MACS:
        k = 1
    if k <= 1 or total <= 0:
        return np.array([0, B], dtype=np.int64)
    work = np.cumsum(lengths_sorted, dtype=np.float64)
    bounds = [0]
    for i in range(1, k):
        cut = int(np.searchsorted(work, total * i / k, side="left")) + 1
        cut = min(max(cut, bounds[-1] + 1), B)
        if cut < B:
            bounds.append(cut)
    bounds.append(B)
    return np.array(sorted(set(bounds)), dtype=np.int64)



# column-split steps of the LSTM and the PyTorch-form GRU (see fastseq_ext.lstm): with few
# rows per thread, row chunks make every thread stream all of R at every step for a thin
# GEMM (or leave the batch on one thread: fewer than 2 * MIN_CHUNK_ROWS rows); column
# blocks of hidden units read 1/n of R each, over every row (one team call per step).
# Used when R has at least COLUMN_SPLIT_MIN_BYTES and a row chunk would get fewer than
# COLUMN_SPLIT_MAX_ROWS rows.
# Measured (forward, 2 threads, rows -> columns): B8 H512 T10 1.90 -> 0.94 ms, B4 H1024
# 7.8 -> 4.4, B8 H2048 32 -> 22-24, B8 H256 T20 1.11 -> 0.74, B8 H128 0.39 -> 0.25 (its
# training step even); at 8 rows per thread no gain (B16 H512, H1024: 7.2 against 7.9)
COLUMN_SPLIT_MIN_BYTES = 1 << 18
COLUMN_SPLIT_MAX_ROWS = 8


def _column_width(cell, B, H, itemsize, n_threads, masked, keep, max_rows=None):
    """Hidden units per block of the column-split steps (a multiple of 16, so blocks are
    whole vectors), or 0 for row chunks. ``max_rows``: the batch size from which row
    chunks are used (default ``COLUMN_SPLIT_MAX_ROWS * n_threads``)."""
    if (n_threads < 2 or DISPATCH != "team" or (masked and not keep)
            or (cell.kind, cell.reset_after) not in (("lstm", True), ("lstm", False),
                                                     ("gru", True))):
        return 0
    if max_rows is None:
        max_rows = COLUMN_SPLIT_MAX_ROWS * n_threads
    if cell.n_gates * H * H * itemsize < COLUMN_SPLIT_MIN_BYTES or B >= max_rows:
        return 0
    width = (H + n_threads - 1) // n_threads
    return (width + 15) // 16 * 16


# Weight rows: training changes weight_hh after every batch, so the R = weight_hh^T the
# step GEMM reads must be copied again for every batch; cold in cache after the
# optimizer's pass, a [2048, 512] float32 copy takes 0.5-0.7 ms, more than the two
# recurrent steps of a 3-token window. For a recurrence of at most WEIGHT_ROWS_MAX_T steps
# whose tasks fill the vector lanes (rows per task: at least 3/4 of a multiple of 16
# float32 / 8 float64) the LSTM and PyTorch-form GRU kernels read weight_hh's rows instead
# (_gemm_wrows.h, the same bits), with the steps split by hidden units whenever the batch
# fits one vector.
# Forward of the word model's layer (B16 T3 H512, 2 threads), copy + row chunks ->
# weight rows + column split: 829 -> 521 us warm, 1075 -> 747 us cold.
WEIGHT_ROWS_MAX_T = 16


def _weight_rows(cell, T, B, H, itemsize, n_threads, masked, keep, n_chunks):
    """(read weight_hh's rows?, column width to use with them)."""
    if ((cell.kind, cell.reset_after) not in (("lstm", True), ("lstm", False), ("gru", True))
            or T > WEIGHT_ROWS_MAX_T or B == 0
            or (DISPATCH == "python" and n_chunks > 1)):     # one scratch per team task
        return False, 0
    lanes = 64 // itemsize
    cols = _column_width(cell, B, H, itemsize, n_threads, masked, keep, max_rows=lanes + 1)
    rows = B if cols else -(-B // max(1, n_chunks))
    return rows * 4 >= -(-rows // lanes) * lanes * 3, cols


def _default_dispatch():
    choice = os.environ.get("FASTSEQ_CYTHON_THREADS", "").strip().lower()
    return choice if choice in ("team", "python") else "team"


# how chunks run on several threads: "team" (the C thread team of fastseq_ext.team, one
# task per chunk inside the kernel call) or "python" (a pool of Python threads, one nogil
# kernel call per chunk); see the module docstring
DISPATCH = _default_dispatch()

# chunks and dR column blocks on Python threads (DISPATCH == "python")
_WORKERS = WorkerPool("fastseq-cython")


def _run(call, bounds):
    """``call(bounds)`` over every chunk (the kernel runs one team task per chunk, or one
    call per chunk on the Python pool). No BLAS thread setting: no kernel calls BLAS."""
    n_chunks = len(bounds) - 1
    if n_chunks > 1 and DISPATCH == "python":
        _WORKERS.each(lambda k: call(bounds[k:k + 2]), range(n_chunks))
    else:
        call(bounds)


# specs: [(A flat [T(+1)*B*H], first column, columns)]; D: [T, B, GH] dgates
# dR: [H*GH] OUT = sum_t A[t, :nact]^T @ D[t, :nact] per spec's columns, stored [H, GH],
#     or ([GH, H], out_t) its transpose, the weight's own layout (the specs' columns
#     cover all GH)
# db: [GH] float64 OUT += column sums of D's active rows
def _weight_grads(specs, nact, B, H, GH, D, dR, db, k, out_t, zero_h0=False):
    """The weight-gradient reductions on ``k`` threads (the engine's own GEMM, no BLAS):
    dR's columns split in blocks (each thread owns its columns: race-free, the same blocks
    and order for a given ``k`` whichever :data:`DISPATCH`). ``zero_h0``: the ``A`` rows
    of step 0 are zero (they hold ``h0``), so the GEMMs start at step 1. dR's content on
    entry is never read (the first GEMM of each column overwrites it; with no row at all
    dR is zero-filled here), so the caller need not clear it."""
    d_flat = D.reshape(-1)
    ldr = H if out_t else GH
    nact_all = nact
    if zero_h0:
        nact, d_flat = nact[1:], d_flat[B * GH:]
        specs = [(A[B * H:], col, N) for A, col, N in specs]
    if len(nact) == 0 or nact[0] == 0:
        dR[...] = 0
        specs = []
    if k > 1 and DISPATCH == "python":
        blocks = column_blocks(GH, k)                   # as accumulate_outer splits

        def block(cols):
            lo, hi = cols
            for A, col, N in specs:
                a, b = max(lo, col), min(hi, col + N)
                if b > a:
                    _reduce.accumulate_outer(nact, B, A, H, 0, H, d_flat, GH, a, b - a,
                                             dR, ldr, a, 1, out_t, True)
            _reduce.accumulate_bias(nact_all, D, db, lo, hi)

        _WORKERS.each(block, blocks)
    else:
        for A, col, N in specs:
            _reduce.accumulate_outer(nact, B, A, H, 0, H, d_flat, GH, col, N, dR, ldr,
                                     col, k, out_t, True)
        _reduce.accumulate_bias(nact_all, D, db, 0, GH, k)


def projects_input(cell):
    """Whether :func:`forward` takes the layer's input ``x`` and ``weight_ih`` in place of
    ``xw`` for this cell (the LSTM): it then makes each step's projection ``x_t @
    weight_ih^T`` itself, into the step's gate rows, so ``xw [T, B, G*H]`` is never written
    to memory and read back (2 x LSTM(128), batch 256, T 28: 14.7 MB per layer); the same
    bits as the projection over all rows on the own GEMM (fastseq.layers)."""
    return _check_cell(cell) == ("lstm", True)


def forward(cell, xw, R, bh, h0, c0=None, lengths=None, rmask=None, training=True,
            n_threads=None, need_grad=True, x=None, weight_ih=None):
    """Run the cell over ``T`` steps. Shapes as in :mod:`fastseq.backends.reference`;
    float32 input stays float32, anything else runs in float64.

    ``need_grad=False`` (inference) keeps one time slot of the gate, cell-state and mask
    buffers instead of ``T``: less memory and memory traffic, and the cache cannot be
    passed to :func:`backward`.

    ``x [T, B, I]`` and ``weight_ih [G*H, I]`` with ``xw=None`` (cells for which
    :func:`projects_input`, and ``I >= 1``): the input projection ``x @ weight_ih^T`` is
    made step by step inside the kernels, not passed in; ``bh`` then holds both biases."""
    key = _check_cell(cell)
    WT = None
    if x is not None or weight_ih is not None:
        if not projects_input(cell) or x is None or weight_ih is None:
            raise ValueError("x and weight_ih (together, in place of xw) are for the LSTM")
        weight_ih = np.asarray(weight_ih)
        x_shape = np.shape(x)
        if (weight_ih.ndim != 2 or len(x_shape) != 3 or weight_ih.shape[1] != x_shape[2]
                or x_shape[2] == 0 or weight_ih.shape[0] != np.shape(R)[-1]):
            raise ValueError(f"weight_ih has shape {weight_ih.shape}; expected (G*H, I) "
                             f"with I = x.shape[2] >= 1 (x: {x_shape}) and G*H = "
                             f"R.shape[1]")
    inp = prepare_forward(cell, xw, R, bh, h0, c0, lengths, rmask, rows_ok=True, x=x)
    dtype, T, B, H, GH = inp.dtype, inp.T, inp.B, inp.H, inp.GH
    xw_s, R, bh, nact, mask, masked = inp.xw, inp.R, inp.bh, inp.nact, inp.mask, inp.masked
    if inp.x is not None:                    # W_ih^T [I, G*H], the projection's operand
        WT = POOL.take((weight_ih.shape[1], GH), dtype)
        transpose_into(WT, np.asarray(weight_ih, dtype=dtype))
        xw_s = _dummy(dtype)
    lengths = inp.lengths
    n = resolve_threads(n_threads)
    itemsize = np.dtype(dtype).itemsize
    keep = bool(need_grad)
    bounds = _chunk_bounds(lengths, n, H * GH)
    cols = _column_width(cell, B, H, itemsize, n, masked, keep)
    # R given as weight_hh.T (F-ordered, see accepts_weight_rows): its rows are weight_hh
    W_rows = R.T if not R.flags.c_contiguous else None
    extra = {} if W_rows is None else dict(RT=W_rows)    # backward's R^T: weight_hh itself
    use_rows = False
    if W_rows is not None:
        use_rows, rows_cols = _weight_rows(cell, T, B, H, itemsize, n, masked, keep,
                                           len(bounds) - 1)
        if use_rows:
            cols = rows_cols
        else:                               # the R copy the kernels read, pooled
            R = POOL.take((H, GH), dtype)
            _reduce.transpose_into(R, W_rows, n if R.size >= TRANSPOSE_SPLIT_MIN else 1)

    # saved for BPTT, pooled: they live as long as the cache (see _cpu_common.Lease)
    slots = T if keep else min(T, 1)      # time slots of the buffers only BPTT reads
    hs = state_buffer(POOL, T, B, H, dtype, keep)
    hs[0] = inp.h0
    if cell.has_cell_state:
        cs = POOL.take((T + 1 if keep else 1, B, H), dtype)
        cs[0] = inp.c0
    else:
        cs = _dummy(dtype)
    hm = POOL.take((slots, B, H), dtype) if masked else _dummy(dtype)
    gates = POOL.take((slots, B, GH), dtype) if cell.kind != "rnn" else _dummy(dtype)
    aux = POOL.take((slots, B, H), dtype) if cell.kind != "rnn" else _dummy(dtype)
    pooled = ([hs] if keep else []) + [cs, hm, gates, aux]
    if W_rows is not None and not use_rows:
        pooled.append(R)
    if WT is not None:
        pooled.append(WT)
        split = dict(x=inp.x, WT=WT)
    else:
        split = {}
    relu = cell.activation == "relu"
    if cols:                                       # LSTM and PyTorch-form GRU kernels
        split["col_width"] = cols
    if use_rows:
        tasks = -(-H // cols) if cols else len(bounds) - 1
        scratch = POOL.take((tasks * _lstm.wrows_scratch_size(GH, H, itemsize == 8),),
                            dtype)
        pooled.append(scratch)
        split.update(weight_rows=True, scratch=scratch)
        R = W_rows
    lease = Lease(pooled, POOL)
    if B and T:
        kernel = _FORWARD[key]
        _run(lambda bounds: kernel(xw_s, R, bh, mask, masked, relu, keep, nact, bounds, hs,
                                   cs, hm, gates, aux, inp.zero_h0, **split), bounds)
        if nact[T - 1] < B:
            _zero_padding(hs, lengths)
    return finish_forward(cell, inp, hs, cs, hm, gates, aux, lease=lease, saved=keep,
                          **extra)


def backward(cell, cache, dH_all=None, dh_T=None, dc_T=None, n_threads=None, dR_out=None,
             need_dh0=True):
    """BPTT through :func:`forward`; returns ``(dxw, dR, dbh, dh0, dc0)``.

    ``need_dh0=False``: the caller does not want the initial state's gradient; step 0's
    ``dh`` GEMM is skipped and ``dh0``, ``dc0`` come back as None.

    ``dR_out``: an optional C-contiguous ``[G*H, H]`` array of the cache's dtype (the
    weight's own layout, e.g. a slice of a flat gradient buffer) that receives ``dR.T``;
    the returned ``dR`` is then a transposed view of it (no allocation, no copy)."""
    key = _check_cell(cell)
    dh, dc, dH, has_dH = prepare_backward(cell, cache, dH_all, dh_T, dc_T)
    T, B, H = cache["shape"]
    dtype, identity = cache["dtype"], cache["identity"]
    GH = cell.n_gates * H
    R, mask, masked, nact = cache["R"], cache["mask"], cache["masked"], cache["nact"]
    hs, cs, hm, gates, aux = (cache[k] for k in ("hs", "cs", "hm", "gates", "aux"))
    relu = cache["relu"]
    n = resolve_threads(n_threads)

    # padded rows of dxw must read as zero (the layers' GEMMs run over all rows); the
    # kernels write every active row, so a batch without padding needs no zero fill
    full = T == 0 or B == 0 or nact[T - 1] == B
    dxw = np.empty((T, B, GH), dtype) if full else np.zeros((T, B, GH), dtype)
    gru_after = key == ("gru", True)
    dhw = POOL.take((T, B, GH), dtype) if gru_after else dxw
    bounds = _chunk_bounds(cache["lengths"], n, H * GH)
    cols = _column_width(cell, B, H, np.dtype(dtype).itemsize, n, masked, True)
    if B and T:
        # the dh GEMMs read R^T row-major (NN GEMM)
        RT, own_RT = weight_transposed(cache, R, POOL, _reduce.transpose_into)
        kernel = _BACKWARD[key]
        if cell.kind == "rnn":
            _run(lambda bounds: kernel(RT, mask, masked, relu, nact, bounds, hs, dH, has_dH,
                                       dh, dxw, need_dh0), bounds)
        elif cell.kind == "lstm":
            _run(lambda bounds: kernel(RT, mask, masked, relu, nact, bounds, cs, gates, aux,
                                       dH, has_dH, dh, dc, dxw, need_dh0, col_width=cols),
                 bounds)
        elif gru_after:
            _run(lambda bounds: kernel(RT, mask, masked, relu, nact, bounds, hs, gates, aux,
                                       dH, has_dH, dh, dxw, dhw, need_dh0, col_width=cols),
                 bounds)
        else:
            _run(lambda bounds: kernel(RT, mask, masked, relu, nact, bounds, hs, hm, gates,
                                       dH, has_dH, dh, dxw, need_dh0), bounds)

    # weight gradients: dR = sum_t h_masked[t]^T @ dhw[t], dbh = sum of dhw rows. Over few
    # rows the GEMM computes dR^T directly (the weight's [GH, H] layout, returned as a
    # transposed view): the caller's transposed copy would cost more than the product
    check_dR_out(dR_out, GH, H, dtype)
    out_t = int(np.sum(nact)) < OUT_T_MAX_ROWS
    if out_t and dR_out is not None:
        dR = dR_out                 # _weight_grads writes every element (no zero fill)
    elif B and T:
        dR = np.empty((GH, H) if out_t else (H, GH), dtype)
    else:
        dR = np.zeros((GH, H) if out_t else (H, GH), dtype)
    db64 = np.zeros(GH, np.float64)
    if B and T:
        h_src = (hm if masked else hs).reshape(-1)
        # (A, first column, columns): dR[:, cols] += sum_t A[t]^T @ dhw[t][:, cols]
        if key == ("gru", False):
            specs = [(h_src, 0, 2 * H), (aux.reshape(-1), 2 * H, H)]
        else:
            specs = [(h_src, 0, GH)]
        _weight_grads(specs, nact, B, H, GH, dhw, dR.reshape(-1), db64, len(bounds) - 1,
                      out_t, cache.get("zero_h0", False))
    dR = returned_dR(dR, dR_out, out_t, n)
    dbh = db64.astype(dtype)
    if B and T:
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


# the step kernels take plain arrays and check them with NumPy's C API (fastseq_ext/_step.pxd)
_STEP = {
    ("rnn", True): _rnn.step,
    ("lstm", True): _lstm.step,
    ("gru", True): _gru.step,
    ("gru", False): _gru.step_classic,
}


def _make_step_workspace(B, H, GH, dtype):
    # work [4, B, H] and its [2, B, H] view (LSTM / others), hm, gates, aux, mask
    # placeholder, dummy
    work = np.empty((4, B, H), dtype)
    return (work, work[:2], np.empty((1, B, H), dtype), np.empty((1, B, GH), dtype),
            np.empty((1, B, H), dtype), np.ones((1, 1), dtype), _dummy(dtype))


_STEP_WORKSPACES = StepWorkspaces(_make_step_workspace)


def _step_call(cell, key, dtype, xw_t, R, bh, h, c, rmask):
    """Run the step kernel, which returns new ``(h, c)`` arrays; it raises
    ValueError/TypeError on a dtype, layout or shape it does not accept."""
    B, GH = xw_t.shape
    work4, work2, hm, gates, aux, ones, dummy = _STEP_WORKSPACES.get(
        B, GH // cell.n_gates, GH, dtype)
    masked = rmask is not None
    return _STEP[key](xw_t, R, bh, rmask if masked else ones, masked,
                      cell.activation == "relu", h, dummy if c is None else c, c is not None,
                      work4 if key[0] == "lstm" else work2, hm, gates, aux)


def step(cell, xw_t, R, bh, h, c=None, rmask=None):
    """One step for streaming inference: ``xw_t [B, G*H]``, ``h, c [B, H]`` -> ``(h, c)``.

    Runs the forward kernel for one step on one thread (no sorting, no chunks). Arguments
    that already are C-contiguous arrays of ``xw_t``'s dtype (float32 or float64) go to
    the kernel as they are, which checks their shapes; anything else is checked and
    converted here first."""
    key = _check_cell(cell)
    if (type(xw_t) is np.ndarray and xw_t.ndim == 2
            and (xw_t.dtype == np.float32 or xw_t.dtype == np.float64)):
        try:
            return _step_call(cell, key, xw_t.dtype, xw_t, R, bh, h, c, rmask)
        except (ValueError, TypeError):
            pass                            # the checked path below names the argument
    dtype, xw_t, R, bh, h, c, rmask = checked_step_arguments(cell, xw_t, R, bh, h, c, rmask)
    return _step_call(cell, key, dtype, xw_t, R, bh, h, c, rmask)
