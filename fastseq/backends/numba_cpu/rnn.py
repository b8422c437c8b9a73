"""Simple RNN forward and BPTT kernels: ``h_t = act(xw_t + h_{t-1} @ R + b_hh)``.

Same structure and buffer signature as :mod:`.lstm` (see there); the RNN stores no
gates (the post-activation value is ``h`` itself, in ``hs``) and no cell state.
"""
from __future__ import annotations

from numba import njit

from ._jit import FLAGS
from .activations import act, act_grad
from ._loop import step_arguments
from .blas import gemm, gemm_xb


# xw: [T, B, H]  R: [H, H]  bh: [H]  mask: [B, H]  nact: [T]
# hs: [T+1, B, H] OUT states (hs[0] = h0)    hm: [T, B, H] OUT h_prev * mask (iff masked)
# pre: [B, H] workspace (unused: the step GEMM writes h's rows); cs, gates, aux unused
@njit(**FLAGS)
def forward_chunk(xw, R, bh, mask, masked, relu, keep, zero_h0, nact, lo, hi, hs, cs, hm, gates,
                  aux, pre, iw, fw):
    T = xw.shape[0]
    B = xw.shape[1]
    H = R.shape[0]
    for t in range(T):
        n = min(hi, nact[t])
        if n <= lo:
            break
        s = t if keep else 0       # slot of the saved buffers (one slot without grad)
        k = 0 if zero_h0 and t == 0 else H   # h0 = 0: no step-0 product
        # preactivation xw + b + h_masked @ R straight into h's rows, activated in place
        if masked:
            for b in range(lo, n):
                for j in range(H):
                    hm[s, b, j] = hs[t, b, j] * mask[b, j]
            gemm_xb(n - lo, H, k, hm, (s * B + lo) * H, H, R, 0, H, True, xw, (t * B + lo) * H,
                    H, bh, hs, ((t + 1) * B + lo) * H, H, iw, fw)
        else:
            gemm_xb(n - lo, H, k, hs, (t * B + lo) * H, H, R, 0, H, True, xw, (t * B + lo) * H,
                    H, bh, hs, ((t + 1) * B + lo) * H, H, iw, fw)
        for b in range(lo, n):
            for j in range(H):
                hs[t + 1, b, j] = act(hs[t + 1, b, j], relu)


# RT: [H, H] R transposed   dH: [T, B, H] (iff has_dH)   dh: [B, H] in/OUT   dxw: [T, B, H] OUT
@njit(**FLAGS)
def backward_chunk(RT, mask, masked, relu, need_dh0, nact, lo, hi, hs, cs, hm, gates, aux, dH,
                   has_dH, dh, dc, dxw, dhw, dtmp, dtmp2, iw, fw):
    T = dxw.shape[0]
    B = dxw.shape[1]
    H = RT.shape[1]
    for t in range(T - 1, -1, -1):
        n = min(hi, nact[t])
        if n <= lo:
            continue
        for b in range(lo, n):
            for j in range(H):
                dh_t = dh[b, j] + dH[t, b, j] if has_dH else dh[b, j]
                dxw[t, b, j] = dh_t * act_grad(hs[t + 1, b, j], relu)
        if t == 0 and not need_dh0:      # no gradient wanted for the initial state
            break
        gemm(False, False, n - lo, H, H, 1.0, dxw, (t * B + lo) * H, H, RT, 0, H,
             0.0, dh, lo * H, H, iw, fw)
        if masked:
            for b in range(lo, n):
                for j in range(H):
                    dh[b, j] *= mask[b, j]


# one step of :func:`forward_chunk` for streaming (shapes: :func:`._loop.step_arguments`)
@njit(**FLAGS)
def step(xw, R, bh, mask, relu, h, c, state):
    forward_chunk(*step_arguments(1, xw, R, bh, mask, relu, h, c, state))
