"""GRU forward and BPTT kernels, gates ``[r | z | n]`` (see :mod:`fastseq.cells`).

``reset_after=True`` (PyTorch / cuDNN): the step GEMM writes ``[xw_r + b_r, xw_z + b_z,
b_hn] + h_masked @ R`` into the gate rows, then one fused loop per row (``_cells.h``);
``aux`` keeps ``hw_n = h_masked @ R_n + b_hn`` for BPTT. ``reset_after=False`` (classic / Keras): ``r, z``
need ``h_masked @ R[:, :2H]``, then ``n`` needs ``(r * h_masked) @ R[:, 2H:]``: two GEMMs
per step; ``aux`` keeps ``r * h_masked``. Buffers as in :mod:`fastseq_ext.lstm`.

Pointwise loops store to one array each where two stores would share a base pointer at a
run-time offset (gcc does not vectorize those loops otherwise).
"""
from cython cimport floating
cimport numpy as cnp
from libc.stdint cimport int64_t

import numpy as np

from fastseq_ext._smallgemm cimport step_gemm, step_gemm_cols, step_gemm_xb, wrows_scratch
from fastseq_ext.team cimport Chunks, run_chunks, run_column_steps
from fastseq_ext._step cimport StepArgs, copy_state, new_state, step_args
from fastseq_ext._cells cimport gru_bwd_row, gru_fwd_row, mask_rows
from fastseq_ext.activations cimport act_grad, activate_inplace, sigmoid_inplace

cnp.import_array()              # NumPy's C API (the step entry points, _step.pxd)


cdef inline void _blend(floating* h_new, const floating* z, const floating* nn,
                        const floating* h_prev, Py_ssize_t H) noexcept nogil:
    """h' = (1 - z) * n + z * h."""
    cdef Py_ssize_t j
    cdef floating one = 1
    for j in range(H):
        h_new[j] = (one - z[j]) * nn[j] + z[j] * h_prev[j]


# xw: [T, B, 3H]  R: [H, 3H]  bh: [3H]  mask: [B, H]  nact: [T]
# hs: [T+1, B, H] OUT   hm: [T, B, H] OUT h_prev * mask (iff masked)
# gates: [T, B, 3H] OUT r z n    aux: [T, B, H] OUT hw_n
# keep = False (inference): hm, gates and aux have one time slot
# zero_h0: h0 is all zeros, so step 0's recurrent products are skipped (k = 0)
cdef void _forward_chunk(const floating* xw, const floating* R, const floating* bh,
                         const floating* mask, bint masked, bint relu, bint keep,
                         bint zero_h0, const int64_t* nact,
                         Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t lo,
                         Py_ssize_t hi, floating* hs, floating* hm, floating* gates,
                         floating* aux, bint weight_rows=False,
                         floating* scratch=NULL) noexcept nogil:
    cdef Py_ssize_t G = 3 * H, t, n, b, row, s, k
    cdef const floating* h_in
    for t in range(T):
        n = min(hi, nact[t])
        if n <= lo:
            break
        s = t if keep else 0        # slot of the saved buffers (one slot without keep)
        h_in = hs + (t * B + lo) * H
        if masked:
            mask_rows(hs + (t * B + lo) * H, mask + lo * H, hm + (s * B + lo) * H, n - lo, H)
            h_in = hm + (s * B + lo) * H
        # [xw_r + b_r, xw_z + b_z] + h_masked @ R[:, :2H]; b_hn + h_masked @ R[:, 2H:]
        k = 0 if zero_h0 and t == 0 else H
        # (weight_rows: R holds weight_hh [3H, H] = R^T; see step_gemm_cols)
        step_gemm_cols(weight_rows, <int>(n - lo), <int>(2 * H), <int>k, h_in, <int>H, R,
                       <int>H, <int>G, 0, xw + (t * B + lo) * G, <int>G, bh,
                       gates + (s * B + lo) * G, <int>G, scratch)
        step_gemm_cols(weight_rows, <int>(n - lo), <int>H, <int>k, h_in, <int>H, R, <int>H,
                       <int>G, 2 * H, NULL, 0, bh + 2 * H, gates + (s * B + lo) * G + 2 * H,
                       <int>G, scratch)
        for b in range(lo, n):                   # hw_n = h_masked @ R_n + b_hn is saved
            row = t * B + b
            gru_fwd_row(gates + (s * B + b) * G, xw + row * G + 2 * H, aux + (s * B + b) * H,
                        hs + row * H, hs + (row + B) * H, relu, H)


# RT: [3H, H] R^T contiguous (plain NN GEMMs; row blocks of RT are column blocks of R)
# dH: [T, B, H] (iff has_dH)  dh: [B, H] in/OUT  dxw: [T, B, 3H] OUT [da_r, da_z, da_n]
# dhw: [T, B, 3H] OUT gradient of hw = [da_r, da_z, da_n * r]   dtmp: [B, H] workspace
# without need_dh0 step 0's dh GEMM is skipped (dh OUT meaningless)
cdef void _backward_chunk(const floating* RT, const floating* mask, bint masked, bint relu,
                          bint need_dh0, const int64_t* nact, Py_ssize_t T, Py_ssize_t B,
                          Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const floating* hs,
                          const floating* gates, const floating* aux, const floating* dH,
                          bint has_dH, floating* dh, floating* dxw, floating* dhw,
                          floating* dtmp) noexcept nogil:
    cdef Py_ssize_t G = 3 * H, t, n, b, j, row
    for t in range(T - 1, -1, -1):
        n = min(hi, nact[t])
        if n <= lo:
            continue
        for b in range(lo, n):
            row = t * B + b
            gru_bwd_row(gates + row * G, aux + row * H, hs + row * H,
                        (dH + row * H) if has_dH else NULL, dh + b * H, dxw + row * G,
                        dhw + row * G, relu, H)
        if t == 0 and not need_dh0:
            break
        # dh_prev = dh * z + (dhw @ R^T) * mask
        if masked:
            step_gemm(<int>(n - lo), <int>H, <int>G, dhw + (t * B + lo) * G,
                    <int>G, RT, <int>H, 0, dtmp + lo * H, <int>H)
            for b in range(lo, n):
                for j in range(H):
                    dh[b * H + j] += dtmp[b * H + j] * mask[b * H + j]
        else:
            step_gemm(<int>(n - lo), <int>H, <int>G, dhw + (t * B + lo) * G,
                    <int>G, RT, <int>H, 1, dh + lo * H, <int>H)


# classic form. gates: [T, B, 3H] OUT r z n    aux: [T, B, H] OUT r * h_masked
cdef void _forward_chunk_classic(const floating* xw, const floating* R, const floating* bh,
                                 const floating* mask, bint masked, bint relu, bint keep,
                                 bint zero_h0, const int64_t* nact, Py_ssize_t T, Py_ssize_t B,
                                 Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, floating* hs,
                                 floating* hm, floating* gates,
                                 floating* aux) noexcept nogil:
    cdef Py_ssize_t G = 3 * H, t, n, b, j, row, s, k
    cdef floating* a
    cdef floating* rh
    cdef const floating* h_in
    cdef const floating* h_m
    for t in range(T):
        n = min(hi, nact[t])
        if n <= lo:
            break
        s = t if keep else 0        # slot of the saved buffers (one slot without keep)
        h_in = hs + (t * B + lo) * H
        if masked:
            mask_rows(hs + (t * B + lo) * H, mask + lo * H, hm + (s * B + lo) * H, n - lo, H)
            h_in = hm + (s * B + lo) * H
        # [r, z] preactivation = xw + b + h_masked @ R[:, :2H] (h and r * h zero at step 0
        # with zero_h0: k = 0)
        k = 0 if zero_h0 and t == 0 else H
        step_gemm_xb(<int>(n - lo), <int>(2 * H), <int>k, h_in, <int>H, R, <int>G,
                     xw + (t * B + lo) * G, <int>G, bh, gates + (s * B + lo) * G, <int>G)
        for b in range(lo, n):
            a = gates + (s * B + b) * G
            sigmoid_inplace(a, 2 * H)
            rh = aux + (s * B + b) * H
            h_m = (hm + (s * B + b) * H) if masked else (hs + (t * B + b) * H)
            for j in range(H):
                rh[j] = a[j] * h_m[j]
        # n preactivation = xw_n + b_n + (r * h_masked) @ R[:, 2H:]
        step_gemm_xb(<int>(n - lo), <int>H, <int>k, aux + (s * B + lo) * H, <int>H,
                     R + 2 * H, <int>G, xw + (t * B + lo) * G + 2 * H, <int>G, bh + 2 * H,
                     gates + (s * B + lo) * G + 2 * H, <int>G)
        for b in range(lo, n):
            row = t * B + b
            a = gates + (s * B + b) * G
            activate_inplace(a + 2 * H, H, relu)
            _blend(hs + (row + B) * H, a + H, a + 2 * H, hs + row * H, H)


# classic form backward. dxw (= dhw): [T, B, 3H] OUT; dtmp: [B, H] workspace (dh_masked);
# dtmp2: [B, H] workspace (d(r*h_masked) = da_n @ R_n^T); without need_dh0 step 0's dh GEMM
# is skipped (dh OUT meaningless)
cdef void _backward_chunk_classic(const floating* RT, const floating* mask, bint masked,
                                  bint relu, bint need_dh0, const int64_t* nact,
                                  Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t lo,
                                  Py_ssize_t hi, const floating* hs, const floating* hm,
                                  const floating* gates, const floating* dH, bint has_dH,
                                  floating* dh, floating* dxw, floating* dtmp,
                                  floating* dtmp2) noexcept nogil:
    cdef Py_ssize_t G = 3 * H, t, n, b, j, row
    cdef const floating* r
    cdef const floating* z
    cdef const floating* nn
    cdef const floating* h_prev
    cdef const floating* h_m
    cdef const floating* dH_row
    cdef const floating* d_rh
    cdef floating* d_r
    cdef floating* d_z
    cdef floating* d_n
    cdef floating* dh_b
    cdef floating* dh_m
    cdef floating one = 1
    for t in range(T - 1, -1, -1):
        n = min(hi, nact[t])
        if n <= lo:
            continue
        for b in range(lo, n):
            row = t * B + b
            z = gates + row * G + H
            nn = z + H
            h_prev = hs + row * H
            d_z = dxw + row * G + H
            d_n = d_z + H
            dh_b = dh + b * H
            if has_dH:
                dH_row = dH + row * H
                for j in range(H):
                    dh_b[j] += dH_row[j]
            for j in range(H):
                d_z[j] = dh_b[j] * (h_prev[j] - nn[j]) * z[j] * (one - z[j])
            for j in range(H):
                d_n[j] = dh_b[j] * (one - z[j]) * act_grad(nn[j], relu)
            for j in range(H):
                dh_b[j] = dh_b[j] * z[j]
        # d(r * h_masked) = da_n @ R_n^T
        step_gemm(<int>(n - lo), <int>H, <int>H,
                dxw + (t * B + lo) * G + 2 * H, <int>G, RT + 2 * H * H, <int>H, 0,
                dtmp2 + lo * H, <int>H)
        for b in range(lo, n):
            row = t * B + b
            r = gates + row * G
            h_m = (hm if masked else hs) + row * H
            d_r = dxw + row * G
            d_rh = dtmp2 + b * H
            for j in range(H):
                d_r[j] = d_rh[j] * h_m[j] * r[j] * (one - r[j])
        if t == 0 and not need_dh0:
            break
        # dh_masked = [da_r, da_z] @ R_rz^T + d(r h_masked) * r
        step_gemm(<int>(n - lo), <int>H, <int>(2 * H),
                dxw + (t * B + lo) * G, <int>G, RT, <int>H, 0, dtmp + lo * H, <int>H)
        for b in range(lo, n):
            r = gates + (t * B + b) * G
            dh_m = dtmp + b * H
            d_rh = dtmp2 + b * H
            dh_b = dh + b * H
            for j in range(H):
                dh_m[j] = dh_m[j] + d_rh[j] * r[j]
            if masked:
                for j in range(H):
                    dh_b[j] += dh_m[j] * mask[b * H + j]
            else:
                for j in range(H):
                    dh_b[j] += dh_m[j]


# the chunk functions as team tasks (see fastseq_ext.team.Chunks)
cdef inline void _forward_task(Chunks* c, int k, floating* tag) noexcept nogil:
    cdef floating* scratch = NULL
    if c.weight_rows:                   # this chunk's work space for the step GEMM
        scratch = <floating*>c.w[5] + k * wrows_scratch(<int>(3 * c.H), <int>c.H, tag)
    _forward_chunk(<const floating*>c.r[0], <const floating*>c.r[1], <const floating*>c.r[2],
                   <const floating*>c.r[3], c.f0, c.f1, c.f2, c.f3, c.nact, c.T, c.B, c.H,
                   c.bounds[k], c.bounds[k + 1], <floating*>c.w[0], <floating*>c.w[1],
                   <floating*>c.w[2], <floating*>c.w[3], c.weight_rows, scratch)



cdef inline void _backward_task(Chunks* c, int k, floating* tag) noexcept nogil:
    _backward_chunk(<const floating*>c.r[0], <const floating*>c.r[1], c.f0, c.f1, c.f3, c.nact,
                    c.T, c.B, c.H, c.bounds[k], c.bounds[k + 1], <const floating*>c.r[2],
                    <const floating*>c.r[3], <const floating*>c.r[4],
                    <const floating*>c.r[5], c.f2, <floating*>c.w[0], <floating*>c.w[1],
                    <floating*>c.w[2], <floating*>c.w[3])



cdef inline void _forward_classic_task(Chunks* c, int k, floating* tag) noexcept nogil:
    _forward_chunk_classic(<const floating*>c.r[0], <const floating*>c.r[1],
                           <const floating*>c.r[2], <const floating*>c.r[3], c.f0, c.f1,
                           c.f2, c.f3, c.nact, c.T, c.B, c.H, c.bounds[k], c.bounds[k + 1],
                           <floating*>c.w[0], <floating*>c.w[1], <floating*>c.w[2],
                           <floating*>c.w[3])



cdef inline void _backward_classic_task(Chunks* c, int k, floating* tag) noexcept nogil:
    _backward_chunk_classic(<const floating*>c.r[0], <const floating*>c.r[1], c.f0, c.f1,
                            c.f3, c.nact, c.T, c.B, c.H, c.bounds[k], c.bounds[k + 1],
                            <const floating*>c.r[2], <const floating*>c.r[3],
                            <const floating*>c.r[4], <const floating*>c.r[5], c.f2,
                            <floating*>c.w[0], <floating*>c.w[1], <floating*>c.w[2],
                            <floating*>c.w[3])



# ------------------------------------------------------------- column-split steps
# the PyTorch-form GRU's steps as blocks of hidden units, one team task each over every
# active row (see fastseq_ext.lstm): a task computes its units' r, z and hw_n column
# segments and their pointwise update; the same bits as the row chunks

# step c.t, units [k * width, ...) of every active row; buffers as in _forward_chunk
cdef inline void _forward_cols_task(Chunks* c, int k, floating* tag) noexcept nogil:
    cdef const floating* xw = <const floating*>c.r[0]
    cdef const floating* R = <const floating*>c.r[1]
    cdef const floating* bh = <const floating*>c.r[2]
    cdef const floating* mask = <const floating*>c.r[3]
    cdef floating* hs = <floating*>c.w[0]
    cdef floating* hm = <floating*>c.w[1]
    cdef floating* gates = <floating*>c.w[2]
    cdef floating* aux = <floating*>c.w[3]
    cdef bint masked = c.f0, relu = c.f1, keep = c.f2
    cdef Py_ssize_t T = c.T, B = c.B, H = c.H, G = 3 * H, t = c.t, b, g, row, srow
    cdef Py_ssize_t u0 = k * c.width, w = min(H, u0 + c.width) - u0
    cdef Py_ssize_t n = c.nact[t], s = t if keep else 0
    cdef int kk = 0 if c.f3 and t == 0 else <int>H
    cdef const floating* h_in = (hm + s * B * H) if masked else (hs + t * B * H)
    cdef floating* scratch = NULL
    if c.weight_rows:                   # R holds weight_hh [3H, H] (see step_gemm_cols)
        scratch = <floating*>c.w[5] + k * wrows_scratch(<int>G, <int>H, tag)
    for g in range(2):                    # r, z: xw + b + h_masked @ R
        step_gemm_cols(c.weight_rows, <int>n, <int>w, kk, h_in, <int>H, R, <int>H, <int>G,
                       g * H + u0, xw + t * B * G + g * H + u0, <int>G, bh + g * H + u0,
                       gates + s * B * G + g * H + u0, <int>G, scratch)
    step_gemm_cols(c.weight_rows, <int>n, <int>w, kk, h_in, <int>H, R, <int>H, <int>G,
                   2 * H + u0, NULL, 0, bh + 2 * H + u0, gates + s * B * G + 2 * H + u0,
                   <int>G, scratch)                                              # hw_n
    for b in range(n):
        row = t * B + b
        srow = s * B + b
        gru_fwd_row(gates + srow * G, xw + row * G + 2 * H, aux + srow * H, hs + row * H,
                    hs + (row + B) * H, relu, H, u0, w)
    if masked and t + 1 < T:             # the next step's masked input, these units
        mask_rows(hs + (t + 1) * B * H, mask, hm + (t + 1) * B * H, c.nact[t + 1], H, u0, w)


# step c.t (pointwise) after step c.prev's dh GEMM (c.prev = -1: none; c.t = -1: the GEMM
# alone, dh0), units [k * width, ...) of every active row; buffers as in _backward_chunk
cdef inline void _backward_cols_task(Chunks* c, int k, floating* tag) noexcept nogil:
    cdef const floating* RT = <const floating*>c.r[0]
    cdef const floating* mask = <const floating*>c.r[1]
    cdef const floating* hs = <const floating*>c.r[2]
    cdef const floating* gates = <const floating*>c.r[3]
    cdef const floating* aux = <const floating*>c.r[4]
    cdef const floating* dH = <const floating*>c.r[5]
    cdef floating* dh = <floating*>c.w[0]
    cdef floating* dxw = <floating*>c.w[1]
    cdef floating* dhw = <floating*>c.w[2]
    cdef floating* dtmp = <floating*>c.w[3]
    cdef bint masked = c.f0, relu = c.f1, has_dH = c.f2
    cdef Py_ssize_t B = c.B, H = c.H, G = 3 * H, t = c.t, p = c.prev, b, j, row, n
    cdef Py_ssize_t u0 = k * c.width, w = min(H, u0 + c.width) - u0
    if p >= 0:                            # dh_p-1 = dh z + (dhw_p @ R^T) * mask, these units
        n = c.nact[p]
        if masked:
            step_gemm(<int>n, <int>w, <int>G, dhw + p * B * G, <int>G, RT + u0, <int>H, 0,
                      dtmp + u0, <int>H)
            for b in range(n):
                for j in range(u0, u0 + w):
                    dh[b * H + j] += dtmp[b * H + j] * mask[b * H + j]
        else:
            step_gemm(<int>n, <int>w, <int>G, dhw + p * B * G, <int>G, RT + u0, <int>H, 1,
                      dh + u0, <int>H)
    if t < 0:
        return
    for b in range(c.nact[t]):
        row = t * B + b
        gru_bwd_row(gates + row * G, aux + row * H, hs + row * H,
                    (dH + row * H) if has_dH else NULL, dh + b * H, dxw + row * G,
                    dhw + row * G, relu, H, u0, w)


# ----------------------------------------------------------------- Python entry points
# both forward forms take the same buffers; only the chunk function differs
cdef void _forward(const floating[:, :, ::1] xw, const floating[:, ::1] R,
                   const floating[::1] bh, const floating[:, ::1] mask, bint masked, bint relu,
                   bint keep, const int64_t[::1] nact, const int64_t[::1] bounds,
                   floating[:, :, ::1] hs, floating[:, :, ::1] hm, floating[:, :, ::1] gates,
                   floating[:, :, ::1] aux, bint classic, bint zero_h0,
                   Py_ssize_t col_width, bint weight_rows=False,
                   floating[::1] scratch=None):
    cdef Chunks c
    if xw.shape[0] == 0 or xw.shape[1] == 0:
        return
    cdef Py_ssize_t n_tasks = bounds.shape[0] - 1
    if col_width > 0 and not classic:
        n_tasks = (R.shape[1 if weight_rows else 0] + col_width - 1) // col_width
    if weight_rows and (classic or R.shape[0] != 3 * R.shape[1] or scratch is None
                        or <size_t>scratch.shape[0] < n_tasks
                        * wrows_scratch(<int>R.shape[0], <int>R.shape[1], <floating*>NULL)):
        raise ValueError("weight_rows: R must be weight_hh [3H, H] of the PyTorch-form GRU, "
                         "with wrows_scratch_size(3H, H, dtype) elements of scratch per task")
    c.weight_rows = weight_rows
    c.w[5] = &scratch[0] if weight_rows else NULL
    c.r[0], c.r[1], c.r[2], c.r[3] = &xw[0, 0, 0], &R[0, 0], &bh[0], &mask[0, 0]
    c.w[0], c.w[1], c.w[2], c.w[3] = &hs[0, 0, 0], &hm[0, 0, 0], &gates[0, 0, 0], &aux[0, 0, 0]
    c.f0, c.f1, c.f2, c.f3 = masked, relu, keep, zero_h0
    c.nact, c.bounds = &nact[0], &bounds[0]
    c.T, c.B, c.H = xw.shape[0], xw.shape[1], (R.shape[1] if weight_rows else R.shape[0])
    c.f64 = floating is double
    if col_width > 0 and not classic:
        c.task32, c.task64 = _forward_cols_task[float], _forward_cols_task[double]
        with nogil:
            if masked:                        # step 0's masked input (later ones: tasks)
                mask_rows(&hs[0, 0, 0], &mask[0, 0], &hm[0, 0, 0], nact[0], c.H)
            run_column_steps(&c, col_width, False, False)
        return
    if classic:
        c.task32, c.task64 = _forward_classic_task[float], _forward_classic_task[double]
    else:
        c.task32, c.task64 = _forward_task[float], _forward_task[double]
    with nogil:
        run_chunks(<int>(bounds.shape[0] - 1), &c)


def forward(const floating[:, :, ::1] xw, const floating[:, ::1] R, const floating[::1] bh,
            const floating[:, ::1] mask, bint masked, bint relu, bint keep,
            const int64_t[::1] nact, const int64_t[::1] bounds, floating[:, :, ::1] hs,
            floating[:, :, ::1] cs,
            floating[:, :, ::1] hm, floating[:, :, ::1] gates, floating[:, :, ::1] aux,
            bint zero_h0=False, Py_ssize_t col_width=0, bint weight_rows=False,
            floating[::1] scratch=None):
    """PyTorch-form GRU over every chunk ``[bounds[k], bounds[k+1])``, one team task each
    (cs unused); ``col_width > 0``: column-split steps; ``weight_rows``: ``R`` given as
    ``weight_hh [3H, H]`` (both as in fastseq_ext.lstm)."""
    _forward(xw, R, bh, mask, masked, relu, keep, nact, bounds, hs, hm, gates, aux, False,
             zero_h0, col_width, weight_rows, scratch)


def backward(const floating[:, ::1] RT, const floating[:, ::1] mask, bint masked, bint relu,
             const int64_t[::1] nact, const int64_t[::1] bounds,
             const floating[:, :, ::1] hs, const floating[:, :, ::1] gates,
             const floating[:, :, ::1] aux, const floating[:, :, ::1] dH, bint has_dH,
             floating[:, ::1] dh, floating[:, :, ::1] dxw, floating[:, :, ::1] dhw,
             bint need_dh0=True, Py_ssize_t col_width=0):
    """BPTT of the PyTorch-form GRU; ``dh`` in: final-state gradient, out: initial
    (meaningless without ``need_dh0``); ``col_width``: as in :func:`forward`."""
    cdef Chunks c
    cdef Py_ssize_t B = dxw.shape[1]
    if dxw.shape[0] == 0 or B == 0:
        return
    cdef floating[:, ::1] dtmp = np.empty((B, RT.shape[1]), dtype=np.asarray(dh).dtype)
    c.r[0], c.r[1], c.r[2], c.r[3] = &RT[0, 0], &mask[0, 0], &hs[0, 0, 0], &gates[0, 0, 0]
    c.r[4], c.r[5] = &aux[0, 0, 0], &dH[0, 0, 0]
    c.w[0], c.w[1], c.w[2], c.w[3] = &dh[0, 0], &dxw[0, 0, 0], &dhw[0, 0, 0], &dtmp[0, 0]
    c.f0, c.f1, c.f2, c.f3 = masked, relu, has_dH, need_dh0
    c.nact, c.bounds = &nact[0], &bounds[0]
    c.T, c.B, c.H = dxw.shape[0], B, RT.shape[1]
    c.f64 = floating is double
    if col_width > 0:
        c.task32, c.task64 = _backward_cols_task[float], _backward_cols_task[double]
        with nogil:
            run_column_steps(&c, col_width, True, need_dh0)
        return
    c.task32, c.task64 = _backward_task[float], _backward_task[double]
    with nogil:
        run_chunks(<int>(bounds.shape[0] - 1), &c)


def forward_classic(const floating[:, :, ::1] xw, const floating[:, ::1] R,
                    const floating[::1] bh, const floating[:, ::1] mask, bint masked,
                    bint relu, bint keep, const int64_t[::1] nact, const int64_t[::1] bounds,
                    floating[:, :, ::1] hs, floating[:, :, ::1] cs, floating[:, :, ::1] hm,
                    floating[:, :, ::1] gates, floating[:, :, ::1] aux, bint zero_h0=False):
    """Classic (Keras ``reset_after=False``) GRU over every chunk (cs unused)."""
    _forward(xw, R, bh, mask, masked, relu, keep, nact, bounds, hs, hm, gates, aux, True,
             zero_h0, 0)


def backward_classic(const floating[:, ::1] RT, const floating[:, ::1] mask, bint masked,
                     bint relu, const int64_t[::1] nact, const int64_t[::1] bounds,
                     const floating[:, :, ::1] hs, const floating[:, :, ::1] hm,
                     const floating[:, :, ::1] gates, const floating[:, :, ::1] dH,
                     bint has_dH, floating[:, ::1] dh, floating[:, :, ::1] dxw,
                     bint need_dh0=True):
    """BPTT of the classic GRU; ``dh`` in: final-state gradient, out: initial
    (meaningless without ``need_dh0``)."""
    cdef Chunks c
    cdef Py_ssize_t B = dxw.shape[1], H = RT.shape[1]
    if dxw.shape[0] == 0 or B == 0:
        return
    dtype = np.asarray(dh).dtype
    cdef floating[:, ::1] dtmp = np.empty((B, H), dtype=dtype)
    cdef floating[:, ::1] dtmp2 = np.empty((B, H), dtype=dtype)
    c.r[0], c.r[1], c.r[2], c.r[3] = &RT[0, 0], &mask[0, 0], &hs[0, 0, 0], &hm[0, 0, 0]
    c.r[4], c.r[5] = &gates[0, 0, 0], &dH[0, 0, 0]
    c.w[0], c.w[1], c.w[2], c.w[3] = &dh[0, 0], &dxw[0, 0, 0], &dtmp[0, 0], &dtmp2[0, 0]
    c.f0, c.f1, c.f2, c.f3 = masked, relu, has_dH, need_dh0
    c.nact, c.bounds = &nact[0], &bounds[0]
    c.T, c.B, c.H = dxw.shape[0], B, H
    c.task32, c.task64 = _backward_classic_task[float], _backward_classic_task[double]
    c.f64 = floating is double
    with nogil:
        run_chunks(<int>(bounds.shape[0] - 1), &c)


# one step, typed: xw [B, 3H], R [H, 3H], bh [3H], mask/h [B, H]; hs [2, B, H] OUT;
# hm, aux [1, B, H], gates [1, B, 3H] work space; classic: the reset_after=False form
cdef void _step_typed(bint classic, const floating* xw, const floating* R,
                      const floating* bh, const floating* mask, bint masked, bint relu,
                      const floating* h, floating* hs, floating* hm, floating* gates,
                      floating* aux, Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    cdef int64_t nact = B
    copy_state(hs, h, B * H, True)
    if classic:
        _forward_chunk_classic(xw, R, bh, mask, masked, relu, True, False, &nact, 1, B, H, 0,
                               B, hs, hm, gates, aux)
    else:
        _forward_chunk(xw, R, bh, mask, masked, relu, True, False, &nact, 1, B, H, 0, B, hs,
                       hm, gates, aux)


# both step entry points; arguments and checks in fastseq_ext/_step.pxd
cdef tuple _step(bint classic, xw_t, R, bh, mask, bint masked, bint relu, h, work, hm,
                 gates, aux):
    cdef StepArgs a
    step_args(&a, 3, 2, True, xw_t, R, bh, mask, masked, h, work, hm, gates, aux)
    if a.B and a.H:
        with nogil:
            if a.tn == cnp.NPY_FLOAT:
                _step_typed[float](classic, <float*>a.xw, <float*>a.R, <float*>a.bh,
                                   <float*>a.mask, masked, relu, <float*>a.h, <float*>a.work,
                                   <float*>a.hm, <float*>a.gates, <float*>a.aux, a.B, a.H)
            else:
                _step_typed[double](classic, <double*>a.xw, <double*>a.R, <double*>a.bh,
                                    <double*>a.mask, masked, relu, <double*>a.h,
                                    <double*>a.work, <double*>a.hm, <double*>a.gates,
                                    <double*>a.aux, a.B, a.H)
    return new_state(work, 1, a.tn, a.B, a.H), None


def step(xw_t, R, bh, mask, bint masked, bint relu, h, c, bint has_c, work, hm, gates,
         aux):
    """One PyTorch-form GRU step: ``(h_new, None)``; ``work [2, B, H]``: ``[h, h_new]``;
    c unused."""
    return _step(False, xw_t, R, bh, mask, masked, relu, h, work, hm, gates, aux)


def step_classic(xw_t, R, bh, mask, bint masked, bint relu, h, c, bint has_c, work, hm,
                 gates, aux):
    """One classic-form GRU step: ``(h_new, None)``; ``work [2, B, H]``: ``[h, h_new]``;
    c unused."""
    return _step(True, xw_t, R, bh, mask, masked, relu, h, work, hm, gates, aux)
