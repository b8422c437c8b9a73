"""LSTM forward and BPTT kernels (gates ``[i | f | g | o]``, see :mod:`fastseq.cells`).

Rows are sorted by length (descending), so the active rows of step ``t`` are
``[lo, min(hi, nact[t]))`` of the chunk ``[lo, hi)`` a thread owns; each chunk runs its
own time loop (one task of the thread team ``fastseq_ext.team`` per chunk, one level of
parallelism). Per step: one GEMM (the step GEMM of ``_smallgemm.h``) writes
``xw + b_hh + h_masked @ R`` into the gate rows,
then one fused loop per row (``_cells.h``) activates the gates in place and updates ``c``
and ``h``. Backward mirrors it: a fused loop per row producing
``dgates`` (= dxw), then one GEMM ``dh = dgates @ R^T`` (with ``R^T`` stored contiguous).

Buffers and their meaning are those of the Numba engine (``fastseq.backends.numba_cpu``),
so the two engines' caches are interchangeable. Called by ``fastseq.backends.cython_cpu``.
"""
from cython cimport floating
cimport numpy as cnp
from libc.stdint cimport int64_t

from fastseq_ext._smallgemm cimport fs_prefetch, step_gemm, step_gemm_cols, wrows_scratch
from fastseq_ext.team cimport Chunks, run_chunks, run_column_steps
from fastseq_ext._step cimport StepArgs, copy_state, data, new_state, step_args
from fastseq_ext._cells cimport lstm_bwd_row, lstm_fwd_row, mask_rows

cnp.import_array()              # NumPy's C API (the step entry points, _step.pxd)


# xw: [T, B, 4H]  R: [H, 4H]  bh: [4H]  mask: [B, H] (read iff masked)  nact: [T]
# hs: [T+1, B, H] OUT (hs[0] = h0 on entry; hs[t+1] = h after step t, untouched where inactive)
# cs: [T+1, B, H] OUT (same for c)       hm: [T, B, H] OUT h_prev * mask (iff masked)
# gates: [T, B, 4H] OUT post-activation i f g o     aux: [T, B, H] OUT act(c_t)
# keep = False (inference): cs, hm, gates and aux have one time slot (cs: [1, B, H], each
# row's latest c, updated in place); hs stays [T+1, B, H]
# zero_h0: h0 is all zeros, so step 0's recurrent product is skipped (k = 0: xw + b_hh)
# x: NULL, or x [T, B, I] (I = n_in) with WT [I, 4H] = W_ih^T: xw is not read but made one step
#   at a time, x_t @ WT, into the step's gate rows (the same GEMM and order as the layers'
#   projection over all rows: the same bits), which the step GEMM then reads as its X: xw
#   [T, B, 4H] is never written out and read back (see fastseq.layers, FUSE_PROJECTION)
cdef void _forward_chunk(const floating* xw, const floating* R, const floating* bh,
                         const floating* mask, bint masked, bint relu, bint keep,
                         bint zero_h0, const int64_t* nact,
                         Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t lo,
                         Py_ssize_t hi, floating* hs, floating* cs, floating* hm,
                         floating* gates, floating* aux, bint weight_rows=False,
                         floating* scratch=NULL, const floating* x=NULL,
                         const floating* WT=NULL, Py_ssize_t n_in=0) noexcept nogil:
    cdef Py_ssize_t G = 4 * H, t, n, b, row, s, srow
    cdef const floating* h_in
    cdef const floating* x_rows
    for t in range(T):
        n = min(hi, nact[t])
        if n <= lo:
            break
        s = t if keep else 0        # slot of the saved buffers (one slot without keep)
        h_in = hs + (t * B + lo) * H
        if masked:
            mask_rows(hs + (t * B + lo) * H, mask + lo * H, hm + (s * B + lo) * H, n - lo, H)
            h_in = hm + (s * B + lo) * H
        # preactivation = xw + b_hh + h_masked @ R
        k = 0 if zero_h0 and t == 0 else H
        x_rows = xw + (t * B + lo) * G
        if x != NULL:                   # this step's xw rows, into the gate rows
            x_rows = gates + (s * B + lo) * G
            step_gemm(<int>(n - lo), <int>G, <int>n_in, x + (t * B + lo) * n_in, <int>n_in, WT,
                      <int>G, 0, gates + (s * B + lo) * G, <int>G)
        # (weight_rows: R holds weight_hh [4H, H] = R^T; see step_gemm_cols)
        step_gemm_cols(weight_rows, <int>(n - lo), <int>G, <int>k, h_in, <int>H, R, <int>H,
                       <int>G, 0, x_rows, <int>G, bh, gates + (s * B + lo) * G, <int>G,
                       scratch)
        if x == NULL and t + 1 < T and min(hi, nact[t + 1]) > lo:
            # the next step's xw rows, fetched during this step's pointwise work
            fs_prefetch(xw + ((t + 1) * B + lo) * G,
                        (min(hi, nact[t + 1]) - lo) * G * sizeof(floating))
        for b in range(lo, n):
            row = t * B + b
            srow = s * B + b
            # without keep, c lives in cs[0] and is updated in place, element by element
            lstm_fwd_row(gates + srow * G, cs + (row if keep else b) * H,
                         cs + (row + B if keep else b) * H, aux + srow * H,
                         hs + (row + B) * H, relu, H)


# forward's buffers as inputs, plus
# RT: [4H, H] R^T, contiguous (the dh GEMM is then a plain NN GEMM: ~2x faster than a
#     transposed operand at small sizes, as measured for the Numba engine)
# dH: [T, B, H] gradient on the outputs (read iff has_dH)
# dh, dc: [B, H] in: gradient on the final state; OUT: gradient on h0 / c0 (need_dh0; else
#   step 0's dh GEMM is skipped and dh, dc are left meaningless)
# dxw: [T, B, 4H] OUT dgates (= gradient of xw and of the preactivations)
cdef void _backward_chunk(const floating* RT, const floating* mask, bint masked, bint relu,
                          bint need_dh0, const int64_t* nact, Py_ssize_t T, Py_ssize_t B,
                          Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const floating* cs,
                          const floating* gates, const floating* aux, const floating* dH,
                          bint has_dH, floating* dh, floating* dc,
                          floating* dxw) noexcept nogil:
    cdef Py_ssize_t G = 4 * H, t, n, b, j, row, m
    for t in range(T - 1, -1, -1):
        n = min(hi, nact[t])
        if n <= lo:
            continue
        for b in range(lo, n):
            row = t * B + b
            lstm_bwd_row(gates + row * G, aux + row * H, cs + row * H,
                         (dH + row * H) if has_dH else NULL, dh + b * H, dc + b * H,
                         dxw + row * G, relu, H)
        if t == 0 and not need_dh0:
            break
        if t > 0 and min(hi, nact[t - 1]) > lo:
            # the previous step's saved rows, fetched during this step's dh GEMM
            m = min(hi, nact[t - 1]) - lo
            fs_prefetch(gates + ((t - 1) * B + lo) * G, m * G * sizeof(floating))
            fs_prefetch(aux + ((t - 1) * B + lo) * H, m * H * sizeof(floating))
            fs_prefetch(cs + ((t - 1) * B + lo) * H, m * H * sizeof(floating))
            if has_dH:
                fs_prefetch(dH + ((t - 1) * B + lo) * H, m * H * sizeof(floating))
        # dh_prev = (dgates @ R^T) * mask
        step_gemm(<int>(n - lo), <int>H, <int>G, dxw + (t * B + lo) * G,
                <int>G, RT, <int>H, 0, dh + lo * H, <int>H)
        if masked:
            for b in range(lo, n):
                for j in range(H):
                    dh[b * H + j] *= mask[b * H + j]


# the chunk functions as team tasks (see fastseq_ext.team.Chunks)
cdef inline void _forward_task(Chunks* c, int k, floating* tag) noexcept nogil:
    cdef floating* scratch = NULL
    if c.weight_rows:                   # this chunk's work space for the step GEMM
        scratch = <floating*>c.w[5] + k * wrows_scratch(<int>(4 * c.H), <int>c.H, tag)
    _forward_chunk(<const floating*>c.r[0], <const floating*>c.r[1], <const floating*>c.r[2],
                   <const floating*>c.r[3], c.f0, c.f1, c.f2, c.f3, c.nact, c.T, c.B, c.H,
                   c.bounds[k], c.bounds[k + 1], <floating*>c.w[0], <floating*>c.w[1],
                   <floating*>c.w[2], <floating*>c.w[3], <floating*>c.w[4], c.weight_rows,
                   scratch, <const floating*>c.x, <const floating*>c.WT, c.n_in)



cdef inline void _backward_task(Chunks* c, int k, floating* tag) noexcept nogil:
    _backward_chunk(<const floating*>c.r[0], <const floating*>c.r[1], c.f0, c.f1, c.f3, c.nact,
                    c.T, c.B, c.H, c.bounds[k], c.bounds[k + 1], <const floating*>c.r[2],
                    <const floating*>c.r[3], <const floating*>c.r[4],
                    <const floating*>c.r[5], c.f2, <floating*>c.w[0], <floating*>c.w[1],
                    <floating*>c.w[2])



# ------------------------------------------------------------- column-split steps
# Few rows per thread with a large weight (B = 8, H = 512: R is 4 MB): row chunks would make
# every thread stream all of R at every step for a thin GEMM, or leave a small batch on one
# thread. Instead each step is split into blocks of hidden units, one team task each over
# every active row: a task computes its units' four gate column segments (reading only its
# columns of R) and their pointwise update; the team call returns when the step is done,
# so the next step reads a complete h. Each element is computed exactly as in the row
# chunks (the GEMM's per-element order does not depend on the columns computed with it;
# blocks are whole vectors), so the results are the same bits.

# step c.t, units [k * width, ...) of every active row; buffers as in _forward_chunk
cdef inline void _forward_cols_task(Chunks* c, int k, floating* tag) noexcept nogil:
    cdef const floating* xw = <const floating*>c.r[0]
    cdef const floating* R = <const floating*>c.r[1]
    cdef const floating* bh = <const floating*>c.r[2]
    cdef const floating* mask = <const floating*>c.r[3]
    cdef floating* hs = <floating*>c.w[0]
    cdef floating* cs = <floating*>c.w[1]
    cdef floating* hm = <floating*>c.w[2]
    cdef floating* gates = <floating*>c.w[3]
    cdef floating* aux = <floating*>c.w[4]
    cdef bint masked = c.f0, relu = c.f1, keep = c.f2
    cdef Py_ssize_t T = c.T, B = c.B, H = c.H, G = 4 * H, t = c.t, b, g, row, srow
    cdef Py_ssize_t u0 = k * c.width, w = min(H, u0 + c.width) - u0
    cdef Py_ssize_t n = c.nact[t], s = t if keep else 0
    cdef int kk = 0 if c.f3 and t == 0 else <int>H
    cdef const floating* h_in = (hm + s * B * H) if masked else (hs + t * B * H)
    cdef floating* scratch = NULL
    cdef const floating* x = <const floating*>c.x
    cdef const floating* x_cols
    if c.weight_rows:                   # R holds weight_hh [4H, H] (see step_gemm_cols)
        scratch = <floating*>c.w[5] + k * wrows_scratch(<int>G, <int>H, tag)
    for g in range(4):
        x_cols = xw + t * B * G + g * H + u0
        if x != NULL:                   # these columns of the step's xw, into the gates
            x_cols = gates + s * B * G + g * H + u0
            step_gemm(<int>n, <int>w, <int>c.n_in, x + t * B * c.n_in, <int>c.n_in,
                      <const floating*>c.WT + g * H + u0, <int>G, 0,
                      gates + s * B * G + g * H + u0, <int>G)
        step_gemm_cols(c.weight_rows, <int>n, <int>w, kk, h_in, <int>H, R, <int>H, <int>G,
                       g * H + u0, x_cols, <int>G, bh + g * H + u0,
                       gates + s * B * G + g * H + u0, <int>G, scratch)
    for b in range(n):
        row = t * B + b
        srow = s * B + b
        lstm_fwd_row(gates + srow * G, cs + (row if keep else b) * H,
                     cs + (row + B if keep else b) * H, aux + srow * H, hs + (row + B) * H,
                     relu, H, u0, w)
    if masked and t + 1 < T:             # the next step's masked input, these units
        mask_rows(hs + (t + 1) * B * H, mask, hm + (t + 1) * B * H, c.nact[t + 1], H, u0, w)


# step c.t (pointwise) after step c.prev's dh GEMM (c.prev = -1: none; c.t = -1: the GEMM
# alone, dh0), units [k * width, ...) of every active row; buffers as in _backward_chunk
cdef inline void _backward_cols_task(Chunks* c, int k, floating* tag) noexcept nogil:
    cdef const floating* RT = <const floating*>c.r[0]
    cdef const floating* mask = <const floating*>c.r[1]
    cdef const floating* cs = <const floating*>c.r[2]
    cdef const floating* gates = <const floating*>c.r[3]
    cdef const floating* aux = <const floating*>c.r[4]
    cdef const floating* dH = <const floating*>c.r[5]
    cdef floating* dh = <floating*>c.w[0]
    cdef floating* dc = <floating*>c.w[1]
    cdef floating* dxw = <floating*>c.w[2]
    cdef bint masked = c.f0, relu = c.f1, has_dH = c.f2
    cdef Py_ssize_t B = c.B, H = c.H, G = 4 * H, t = c.t, p = c.prev, b, j, row, n
    cdef Py_ssize_t u0 = k * c.width, w = min(H, u0 + c.width) - u0
    if p >= 0:                            # dh_p-1 = (dgates_p @ R^T) * mask, these units
        n = c.nact[p]
        step_gemm(<int>n, <int>w, <int>G, dxw + p * B * G, <int>G, RT + u0, <int>H, 0,
                  dh + u0, <int>H)
        if masked:
            for b in range(n):
                for j in range(u0, u0 + w):
                    dh[b * H + j] *= mask[b * H + j]
    if t < 0:
        return
    for b in range(c.nact[t]):
        row = t * B + b
        lstm_bwd_row(gates + row * G, aux + row * H, cs + row * H,
                     (dH + row * H) if has_dH else NULL, dh + b * H, dc + b * H,
                     dxw + row * G, relu, H, u0, w)


def wrows_scratch_size(Py_ssize_t GH, Py_ssize_t H, bint f64):
    """Elements of work space one task of a ``forward`` with ``weight_rows`` needs
    (``weight_hh [GH, H]``; this module's and fastseq_ext.gru's)."""
    if f64:
        return wrows_scratch(<int>GH, <int>H, <double*>NULL)
    return wrows_scratch(<int>GH, <int>H, <float*>NULL)


def forward(const floating[:, :, ::1] xw, const floating[:, ::1] R, const floating[::1] bh,
            const floating[:, ::1] mask, bint masked, bint relu, bint keep,
            const int64_t[::1] nact, const int64_t[::1] bounds, floating[:, :, ::1] hs,
            floating[:, :, ::1] cs,
            floating[:, :, ::1] hm, floating[:, :, ::1] gates, floating[:, :, ::1] aux,
            bint zero_h0=False, Py_ssize_t col_width=0, bint weight_rows=False,
            floating[::1] scratch=None, const floating[:, :, ::1] x=None,
            const floating[:, ::1] WT=None):
    """Run every chunk ``[bounds[k], bounds[k+1])`` of the sorted batch, one team task
    each (``fastseq_ext.team``); buffers as above. ``col_width > 0`` (a multiple of 16):
    column-split steps instead, one task per block of that many hidden units (bounds
    unused). ``weight_rows``: ``R`` is given as its transpose, PyTorch's ``weight_hh
    [4H, H]`` (``_gemm_wrows.h``; the same bits), and ``scratch`` holds
    :func:`wrows_scratch_size` elements per task (chunk, or block of units). ``x [T, B,
    I]`` and ``WT [I, 4H]`` (both or neither): the input projection is made step by step
    (``xw`` is then not read: any placeholder); the same bits as ``xw = x @ WT``."""
    cdef Chunks c
    if (x is None) != (WT is None):
        raise ValueError("x and WT go together")
    if x is not None and (x.shape[0] != hs.shape[0] - 1 or x.shape[1] != hs.shape[1]
                          or WT.shape[0] != x.shape[2] or WT.shape[1] != 4 * hs.shape[2]):
        raise ValueError("x must be [T, B, I] and WT [I, 4H] for hs [T+1, B, H]")
    c.x, c.WT, c.n_in = NULL, NULL, 0
    if x is not None:
        if x.shape[2] == 0:
            raise ValueError("x: the projection made per step needs at least one feature")
        if x.shape[0] == 0 or x.shape[1] == 0:
            return
        c.x, c.WT, c.n_in = &x[0, 0, 0], &WT[0, 0], x.shape[2]
    elif xw.shape[0] == 0 or xw.shape[1] == 0:
        return
    cdef Py_ssize_t n_tasks = bounds.shape[0] - 1
    if col_width > 0:
        n_tasks = (R.shape[1 if weight_rows else 0] + col_width - 1) // col_width
    if weight_rows and (R.shape[0] != 4 * R.shape[1] or scratch is None
                        or <size_t>scratch.shape[0] < n_tasks
                        * wrows_scratch(<int>R.shape[0], <int>R.shape[1], <floating*>NULL)):
        raise ValueError("weight_rows: R must be weight_hh [4H, H], with "
                         "wrows_scratch_size(H, dtype) elements of scratch per task")
    c.weight_rows = weight_rows
    c.w[5] = &scratch[0] if weight_rows else NULL
    c.r[0], c.r[1], c.r[2], c.r[3] = &xw[0, 0, 0], &R[0, 0], &bh[0], &mask[0, 0]
    c.w[0], c.w[1], c.w[2], c.w[3] = &hs[0, 0, 0], &cs[0, 0, 0], &hm[0, 0, 0], &gates[0, 0, 0]
    c.w[4] = &aux[0, 0, 0]
    c.f0, c.f1, c.f2, c.f3 = masked, relu, keep, zero_h0
    c.nact, c.bounds = &nact[0], &bounds[0]
    c.T, c.B = (x.shape[0], x.shape[1]) if x is not None else (xw.shape[0], xw.shape[1])
    c.H = R.shape[1] if weight_rows else R.shape[0]
    c.f64 = floating is double
    if col_width > 0:
        c.task32, c.task64 = _forward_cols_task[float], _forward_cols_task[double]
        with nogil:
            if masked:                        # step 0's masked input (later ones: tasks)
                mask_rows(&hs[0, 0, 0], &mask[0, 0], &hm[0, 0, 0], nact[0], c.H)
            run_column_steps(&c, col_width, False, False)
        return
    c.task32, c.task64 = _forward_task[float], _forward_task[double]
    with nogil:
        run_chunks(<int>(bounds.shape[0] - 1), &c)


def backward(const floating[:, ::1] RT, const floating[:, ::1] mask, bint masked, bint relu,
             const int64_t[::1] nact, const int64_t[::1] bounds,
             const floating[:, :, ::1] cs, const floating[:, :, ::1] gates,
             const floating[:, :, ::1] aux, const floating[:, :, ::1] dH, bint has_dH,
             floating[:, ::1] dh, floating[:, ::1] dc, floating[:, :, ::1] dxw,
             bint need_dh0=True, Py_ssize_t col_width=0):
    """BPTT over every chunk (one team task each); ``dh``/``dc`` in: final-state
    gradients, out: initial (meaningless without ``need_dh0``). ``col_width``: as in
    :func:`forward`."""
    cdef Chunks c
    if dxw.shape[0] == 0 or dxw.shape[1] == 0:
        return
    c.r[0], c.r[1], c.r[2], c.r[3] = &RT[0, 0], &mask[0, 0], &cs[0, 0, 0], &gates[0, 0, 0]
    c.r[4], c.r[5] = &aux[0, 0, 0], &dH[0, 0, 0]
    c.w[0], c.w[1], c.w[2] = &dh[0, 0], &dc[0, 0], &dxw[0, 0, 0]
    c.f0, c.f1, c.f2, c.f3 = masked, relu, has_dH, need_dh0
    c.nact, c.bounds = &nact[0], &bounds[0]
    c.T, c.B, c.H = dxw.shape[0], dxw.shape[1], RT.shape[1]
    c.f64 = floating is double
    if col_width > 0:
        c.task32, c.task64 = _backward_cols_task[float], _backward_cols_task[double]
        with nogil:
            run_column_steps(&c, col_width, True, need_dh0)
        return
    c.task32, c.task64 = _backward_task[float], _backward_task[double]
    with nogil:
        run_chunks(<int>(bounds.shape[0] - 1), &c)


# one step, typed: xw [B, 4H], R [H, 4H], bh [4H], mask/h/c [B, H]; hs, cs [2, B, H] OUT;
# hm, aux [1, B, H], gates [1, B, 4H] work space
cdef void _step(const floating* xw, const floating* R, const floating* bh,
                const floating* mask, bint masked, bint relu, const floating* h,
                const floating* c, bint has_c, floating* hs, floating* cs, floating* hm,
                floating* gates, floating* aux, Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    cdef int64_t nact = B
    copy_state(hs, h, B * H, True)
    copy_state(cs, c, B * H, has_c)
    _forward_chunk(xw, R, bh, mask, masked, relu, True, False, &nact, 1, B, H, 0, B, hs, cs,
                   hm, gates, aux)


# one step for streaming inference; arguments and checks in fastseq_ext/_step.pxd
def step(xw_t, R, bh, mask, bint masked, bint relu, h, c, bint has_c, work, hm, gates,
         aux):
    """One LSTM step from h, c (c = 0 without has_c): ``(h_new, c_new)``; ``work [4, B,
    H]``: ``[h, h_new, c, c_new]``."""
    cdef StepArgs a
    step_args(&a, 4, 4, True, xw_t, R, bh, mask, masked, h, work, hm, gates, aux)
    cdef Py_ssize_t B = a.B, H = a.H
    cdef char* p_c = data(c, a.tn, 2, B, H, 0, has_c, False)
    cdef char* p_cs = a.work + 2 * B * H * (4 if a.tn == cnp.NPY_FLOAT else 8)
    if B and H:
        with nogil:
            if a.tn == cnp.NPY_FLOAT:
                _step[float](<float*>a.xw, <float*>a.R, <float*>a.bh, <float*>a.mask, masked,
                             relu, <float*>a.h, <float*>p_c, has_c, <float*>a.work,
                             <float*>p_cs, <float*>a.hm, <float*>a.gates, <float*>a.aux, B, H)
            else:
                _step[double](<double*>a.xw, <double*>a.R, <double*>a.bh, <double*>a.mask,
                              masked, relu, <double*>a.h, <double*>p_c, has_c,
                              <double*>a.work, <double*>p_cs, <double*>a.hm,
                              <double*>a.gates, <double*>a.aux, B, H)
    return (new_state(work, 1, a.tn, B, H), new_state(work, 3, a.tn, B, H))
