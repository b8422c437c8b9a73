"""Simple RNN forward and BPTT kernels: ``h_t = act(xw_t + h_{t-1} @ R + b_hh)``.

Same structure and buffers as :mod:`fastseq_ext.lstm` (see there): the RNN stores no gates
(the post-activation value is ``h`` itself, in ``hs``) and no cell state; the next state
row ``hs[t+1]`` doubles as the preactivation buffer.
"""
from cython cimport floating
cimport numpy as cnp
from libc.stdint cimport int64_t

from fastseq_ext._smallgemm cimport step_gemm
from fastseq_ext.team cimport Chunks, run_chunks
from fastseq_ext._step cimport StepArgs, copy_state, new_state, step_args
from fastseq_ext.activations cimport act_grad, activate_inplace
from fastseq_ext._cells cimport mask_rows

cnp.import_array()              # NumPy's C API (the step entry points, _step.pxd)


# xw: [T, B, H]  R: [H, H]  bh: [H]  mask: [B, H] (read iff masked)  nact: [T]
# hs: [T+1, B, H] OUT states (hs[0] = h0 on entry; rows untouched where inactive)
# hm: [T, B, H] OUT h_prev * mask (iff masked; one time slot without keep)
# zero_h0: h0 is all zeros, so step 0's recurrent product is skipped
cdef void _forward_chunk(const floating* xw, const floating* R, const floating* bh,
                         const floating* mask, bint masked, bint relu, bint keep,
                         bint zero_h0, const int64_t* nact,
                         Py_ssize_t T, Py_ssize_t B, Py_ssize_t H, Py_ssize_t lo,
                         Py_ssize_t hi, floating* hs, floating* hm) noexcept nogil:
    cdef Py_ssize_t t, n, b, j, row, s
    cdef floating* h_new
    cdef const floating* x
    cdef const floating* h_in
    for t in range(T):
        n = min(hi, nact[t])
        if n <= lo:
            break
        for b in range(lo, n):                   # preactivation <- xw + b_hh
            row = t * B + b
            h_new = hs + (row + B) * H
            x = xw + row * H
            for j in range(H):
                h_new[j] = x[j] + bh[j]
        h_in = hs + (t * B + lo) * H
        if masked:
            s = t if keep else 0    # slot of hm (one slot without keep)
            mask_rows(hs + (t * B + lo) * H, mask + lo * H, hm + (s * B + lo) * H, n - lo, H)
            h_in = hm + (s * B + lo) * H
        step_gemm(<int>(n - lo), <int>H, <int>(0 if zero_h0 and t == 0 else H), h_in, <int>H,
                  R, <int>H, 1, hs + ((t + 1) * B + lo) * H, <int>H)
        for b in range(lo, n):
            activate_inplace(hs + ((t + 1) * B + b) * H, H, relu)


# RT: [H, H] R^T contiguous   dH: [T, B, H] (read iff has_dH)
# dh: [B, H] in: dh_T; OUT: dh0 (need_dh0; else step 0's dh GEMM is skipped and dh is left
#   meaningless)   dxw: [T, B, H] OUT
cdef void _backward_chunk(const floating* RT, const floating* mask, bint masked, bint relu,
                          bint need_dh0, const int64_t* nact, Py_ssize_t T, Py_ssize_t B,
                          Py_ssize_t H, Py_ssize_t lo, Py_ssize_t hi, const floating* hs,
                          const floating* dH, bint has_dH, floating* dh,
                          floating* dxw) noexcept nogil:
    cdef Py_ssize_t t, n, b, j, row
    cdef floating* d
    cdef floating* dh_b
    cdef const floating* y
    cdef const floating* dH_row
    for t in range(T - 1, -1, -1):
        n = min(hi, nact[t])
        if n <= lo:
            continue
        for b in range(lo, n):
            row = t * B + b
            dh_b = dh + b * H
            if has_dH:
                dH_row = dH + row * H
                for j in range(H):
                    dh_b[j] += dH_row[j]
            d = dxw + row * H
            y = hs + (row + B) * H
            for j in range(H):
                d[j] = dh_b[j] * act_grad(y[j], relu)
        if t == 0 and not need_dh0:
            break
        # dh_prev = (dgates @ R^T) * mask
        step_gemm(<int>(n - lo), <int>H, <int>H, dxw + (t * B + lo) * H,
                <int>H, RT, <int>H, 0, dh + lo * H, <int>H)
        if masked:
            for b in range(lo, n):
                for j in range(H):
                    dh[b * H + j] *= mask[b * H + j]


# the chunk functions as team tasks (see fastseq_ext.team.Chunks)
cdef inline void _forward_task(Chunks* c, int k, floating* tag) noexcept nogil:
    _forward_chunk(<const floating*>c.r[0], <const floating*>c.r[1], <const floating*>c.r[2],
                   <const floating*>c.r[3], c.f0, c.f1, c.f2, c.f3, c.nact, c.T, c.B, c.H,
                   c.bounds[k], c.bounds[k + 1], <floating*>c.w[0], <floating*>c.w[1])



cdef inline void _backward_task(Chunks* c, int k, floating* tag) noexcept nogil:
    _backward_chunk(<const floating*>c.r[0], <const floating*>c.r[1], c.f0, c.f1, c.f3, c.nact,
                    c.T, c.B, c.H, c.bounds[k], c.bounds[k + 1], <const floating*>c.r[2],
                    <const floating*>c.r[3], c.f2, <floating*>c.w[0], <floating*>c.w[1])



def forward(const floating[:, :, ::1] xw, const floating[:, ::1] R, const floating[::1] bh,
            const floating[:, ::1] mask, bint masked, bint relu, bint keep,
            const int64_t[::1] nact, const int64_t[::1] bounds, floating[:, :, ::1] hs,
            floating[:, :, ::1] cs,
            floating[:, :, ::1] hm, floating[:, :, ::1] gates, floating[:, :, ::1] aux,
            bint zero_h0=False):
    """Run every chunk ``[bounds[k], bounds[k+1])`` of the sorted batch, one team task
    each (cs, gates and aux are unused: uniform signature across cells)."""
    cdef Chunks c
    if xw.shape[0] == 0 or xw.shape[1] == 0:
        return
    c.r[0], c.r[1], c.r[2], c.r[3] = &xw[0, 0, 0], &R[0, 0], &bh[0], &mask[0, 0]
    c.w[0], c.w[1] = &hs[0, 0, 0], &hm[0, 0, 0]
    c.f0, c.f1, c.f2, c.f3 = masked, relu, keep, zero_h0
    c.nact, c.bounds = &nact[0], &bounds[0]
    c.T, c.B, c.H = xw.shape[0], xw.shape[1], R.shape[0]
    c.task32, c.task64 = _forward_task[float], _forward_task[double]
    c.f64 = floating is double
    with nogil:
        run_chunks(<int>(bounds.shape[0] - 1), &c)


def backward(const floating[:, ::1] RT, const floating[:, ::1] mask, bint masked, bint relu,
             const int64_t[::1] nact, const int64_t[::1] bounds,
             const floating[:, :, ::1] hs, const floating[:, :, ::1] dH, bint has_dH,
             floating[:, ::1] dh, floating[:, :, ::1] dxw, bint need_dh0=True):
    """BPTT over every chunk (one team task each); ``dh`` in: final-state gradient, out:
    initial (meaningless without ``need_dh0``)."""
    cdef Chunks c
    if dxw.shape[0] == 0 or dxw.shape[1] == 0:
        return
    c.r[0], c.r[1], c.r[2], c.r[3] = &RT[0, 0], &mask[0, 0], &hs[0, 0, 0], &dH[0, 0, 0]
    c.w[0], c.w[1] = &dh[0, 0], &dxw[0, 0, 0]
    c.f0, c.f1, c.f2, c.f3 = masked, relu, has_dH, need_dh0
    c.nact, c.bounds = &nact[0], &bounds[0]
    c.T, c.B, c.H = dxw.shape[0], dxw.shape[1], RT.shape[1]
    c.task32, c.task64 = _backward_task[float], _backward_task[double]
    c.f64 = floating is double
    with nogil:
        run_chunks(<int>(bounds.shape[0] - 1), &c)


# one step, typed: xw [B, H], R [H, H], bh [H], mask/h [B, H]; hs [2, B, H] OUT;
# hm [1, B, H] work space
cdef void _step_typed(const floating* xw, const floating* R, const floating* bh,
                      const floating* mask, bint masked, bint relu, const floating* h,
                      floating* hs, floating* hm, Py_ssize_t B, Py_ssize_t H) noexcept nogil:
    cdef int64_t nact = B
    copy_state(hs, h, B * H, True)
    _forward_chunk(xw, R, bh, mask, masked, relu, True, False, &nact, 1, B, H, 0, B, hs, hm)


# one step for streaming inference; arguments and checks in fastseq_ext/_step.pxd
def step(xw_t, R, bh, mask, bint masked, bint relu, h, c, bint has_c, work, hm, gates,
         aux):
    """One step of the simple RNN: ``(h_new, None)``; ``work [2, B, H]``: ``[h, h_new]``;
    c, gates, aux unused."""
    cdef StepArgs a
    step_args(&a, 1, 2, False, xw_t, R, bh, mask, masked, h, work, hm, gates, aux)
    if a.B and a.H:
        with nogil:
            if a.tn == cnp.NPY_FLOAT:
                _step_typed[float](<float*>a.xw, <float*>a.R, <float*>a.bh, <float*>a.mask,
                                   masked, relu, <float*>a.h, <float*>a.work, <float*>a.hm,
                                   a.B, a.H)
            else:
                _step_typed[double](<double*>a.xw, <double*>a.R, <double*>a.bh,
                                    <double*>a.mask, masked, relu, <double*>a.h,
                                    <double*>a.work, <double*>a.hm, a.B, a.H)
    return new_state(work, 1, a.tn, a.B, a.H), None
