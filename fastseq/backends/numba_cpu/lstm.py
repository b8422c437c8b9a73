"""LSTM forward and BPTT kernels (gates ``[i | f | g | o]``, see :mod:`fastseq.cells`).

Batch rows are sorted by length (descending), so the active rows of step ``t`` are
``[lo, min(hi, nact[t]))`` of the chunk ``[lo, hi)`` this call owns. Per step: one GEMM
``pre = h_masked @ R`` for the chunk's active rows, then one fused pointwise loop that
applies the gates, updates ``c`` and ``h`` and stores what BPTT needs. Backward mirrors it:
a fused pointwise loop producing ``dgates`` (= dxw), then one GEMM ``dh = dgates @ R^T``
(with ``R^T`` stored contiguous, which BLAS runs about twice as fast as a transposed operand
at these shapes).
"""
from __future__ import annotations

from numba import njit

from ._jit import FLAGS
from .activations import act, act_grad, sigmoid, sigmoid_grad
from ._loop import step_arguments
from .blas import gemm, gemm_xb


# xw: [T, B, 4H]  R: [H, 4H]  bh: [4H]  mask: [B, H] (used iff masked)  nact: [T]
# hs: [T+1, B, H] OUT (hs[0] = h0 on entry; hs[t+1] = h after step t, 0 where inactive)
# cs: [T+1, B, H] OUT (same for c)       hm: [T, B, H] OUT h_prev * mask (iff masked)
# gates: [T, B, 4H] OUT post-activation i f g o     aux: [T, B, H] OUT act(c_t)
# pre: [B, 4H] workspace (unused: the step GEMM writes the gate rows)
# iw, fw: BLAS scratch of this thread
# zero_h0: h0 is all zeros, so step 0's recurrent product is skipped
@njit(**FLAGS)
def forward_chunk(xw, R, bh, mask, masked, relu, keep, zero_h0, nact, lo, hi, hs, cs, hm, gates,
                  aux, pre, iw, fw):
    T = xw.shape[0]
    B = xw.shape[1]
    H = R.shape[0]
    G = 4 * H
    for t in range(T):
        n = min(hi, nact[t])
        if n <= lo:
            break
        s = t if keep else 0       # slot of the saved buffers (one slot without grad)
        k = 0 if zero_h0 and t == 0 else H   # h0 = 0: no step-0 product
        # preactivation xw + b_hh + h_masked @ R, straight into the gate rows
        if masked:
            for b in range(lo, n):
                for j in range(H):
                    hm[s, b, j] = hs[t, b, j] * mask[b, j]
            gemm_xb(n - lo, G, k, hm, (s * B + lo) * H, H, R, 0, G, True, xw, (t * B + lo) * G,
                    G, bh, gates, (s * B + lo) * G, G, iw, fw)
        else:
            gemm_xb(n - lo, G, k, hs, (t * B + lo) * H, H, R, 0, G, True, xw, (t * B + lo) * G,
                    G, bh, gates, (s * B + lo) * G, G, iw, fw)
        # pointwise, in place, in loops that each touch few arrays, so LLVM's alias checks
        # stay cheap and every loop vectorizes: gates first, then the state update
        for b in range(lo, n):
            for j in range(H):
                gates[s, b, j] = sigmoid(gates[s, b, j])
                gates[s, b, H + j] = sigmoid(gates[s, b, H + j])
                gates[s, b, 2 * H + j] = act(gates[s, b, 2 * H + j], relu)
                gates[s, b, 3 * H + j] = sigmoid(gates[s, b, 3 * H + j])
            if keep:
                for j in range(H):
                    c = gates[s, b, H + j] * cs[t, b, j] + gates[s, b, j] * gates[s, b, 2 * H + j]
                    c_act = act(c, relu)
                    aux[s, b, j] = c_act
                    cs[t + 1, b, j] = c
                    hs[t + 1, b, j] = gates[s, b, 3 * H + j] * c_act
            else:
                # c updated in place: the same index read and written, which LLVM sees as
                # safe to vectorize (two slot variables equal at run time made its alias
                # check fail and the loop run scalar: 1.8 -> 1.2 us a step at B8 H32)
                for j in range(H):
                    c = gates[0, b, H + j] * cs[0, b, j] + gates[0, b, j] * gates[0, b, 2 * H + j]
                    c_act = act(c, relu)
                    aux[0, b, j] = c_act
                    cs[0, b, j] = c
                    hs[t + 1, b, j] = gates[0, b, 3 * H + j] * c_act


# forward's buffers as inputs, plus
# RT: [4H, H] R transposed (contiguous), so dh = dgates @ RT is a plain GEMM
# dH: [T, B, H] gradient on the outputs (read iff has_dH)
# dh, dc: [B, H] in: gradient on the final state; OUT: gradient on h0 / c0 (need_dh0; else
#   step 0's dh GEMM is skipped and dh, dc are left meaningless)
# dxw: [T, B, 4H] OUT dgates (= gradient of xw and of the pre-activations)
# dhw, dtmp, dtmp2: unused by the LSTM (uniform signature)
@njit(**FLAGS)
def backward_chunk(RT, mask, masked, relu, need_dh0, nact, lo, hi, hs, cs, hm, gates, aux, dH,
                   has_dH, dh, dc, dxw, dhw, dtmp, dtmp2, iw, fw):
    T = gates.shape[0]
    B = gates.shape[1]
    H = RT.shape[1]
    G = 4 * H
    for t in range(T - 1, -1, -1):
        n = min(hi, nact[t])
        if n <= lo:
            continue
        for b in range(lo, n):
            # dc holds dc_t between the two loops
            for j in range(H):
                dh_t = dh[b, j] + dH[t, b, j] if has_dH else dh[b, j]
                o = gates[t, b, 3 * H + j]
                c_act = aux[t, b, j]
                dc[b, j] += dh_t * o * act_grad(c_act, relu)
                dxw[t, b, 3 * H + j] = dh_t * c_act * sigmoid_grad(o)
            for j in range(H):
                dc_t = dc[b, j]
                i = gates[t, b, j]
                f = gates[t, b, H + j]
                g = gates[t, b, 2 * H + j]
                dxw[t, b, j] = dc_t * g * sigmoid_grad(i)
                dxw[t, b, H + j] = dc_t * cs[t, b, j] * sigmoid_grad(f)
                dxw[t, b, 2 * H + j] = dc_t * i * act_grad(g, relu)
                dc[b, j] = dc_t * f
        if t == 0 and not need_dh0:      # no gradient wanted for the initial state
            break
        # dh_prev = (dgates @ R^T) * mask
        gemm(False, False, n - lo, H, G, 1.0, dxw, (t * B + lo) * G, G, RT, 0, H,
             0.0, dh, lo * H, H, iw, fw)
        if masked:
            for b in range(lo, n):
                for j in range(H):
                    dh[b, j] *= mask[b, j]


# one step of :func:`forward_chunk` for streaming (shapes: :func:`._loop.step_arguments`)
@njit(**FLAGS)
def step(xw, R, bh, mask, relu, h, c, state):
    forward_chunk(*step_arguments(4, xw, R, bh, mask, relu, h, c, state))
