"""GRU forward and BPTT kernels, gates ``[r | z | n]`` (see :mod:`fastseq.cells`).

``reset_after=True`` (PyTorch / cuDNN): one GEMM ``hw = h_masked @ R`` per step, then a fused
pointwise loop; ``aux`` keeps ``hw_n = (h_masked @ R_n) + b_hn`` for BPTT.
``reset_after=False`` (classic / Keras): ``r, z`` need ``h_masked @ R[:, :2H]``, then ``n``
needs ``(r * h_masked) @ R[:, 2H:]``: two GEMMs per step, ``aux`` keeps ``r * h_masked``.
Buffer signature as in :mod:`.lstm`.
"""
from __future__ import annotations

from numba import njit

from ._jit import FLAGS
from .activations import act, act_grad, cst, sigmoid, sigmoid_grad
from ._loop import step_arguments
from .blas import gemm, gemm_xb


# xw: [T, B, 3H]  R: [H, 3H]  bh: [3H]  mask: [B, H]  nact: [T]
# hs: [T+1, B, H] OUT   hm: [T, B, H] OUT h_prev * mask (iff masked)
# gates: [T, B, 3H] OUT r z n    aux: [T, B, H] OUT hw_n
# pre: [B, 3H] workspace (unused here: the step GEMMs write gates and aux; the classic form
#   uses it)
# zero_h0: h0 is all zeros, so step 0's recurrent products are skipped (both forms)
@njit(**FLAGS)
def forward_chunk(xw, R, bh, mask, masked, relu, keep, zero_h0, nact, lo, hi, hs, cs, hm, gates,
                  aux, pre, iw, fw):
    T = xw.shape[0]
    B = xw.shape[1]
    H = R.shape[0]
    G = 3 * H
    one = cst(bh[0], 1.0)
    for t in range(T):
        n = min(hi, nact[t])
        if n <= lo:
            break
        s = t if keep else 0       # slot of the saved buffers (one slot without grad)
        k = 0 if zero_h0 and t == 0 else H   # h0 = 0: no step-0 product
        if masked:
            for b in range(lo, n):
                for j in range(H):
                    hm[s, b, j] = hs[t, b, j] * mask[b, j]
            h_in = hm
            h_off = (s * B + lo) * H
        else:
            h_in = hs
            h_off = (t * B + lo) * H
        # r, z preactivations xw + b + h @ R into the gate rows; hw_n = b_n + h @ R_n into aux
        gemm_xb(n - lo, 2 * H, k, h_in, h_off, H, R, 0, G, True, xw, (t * B + lo) * G, G,
                bh[:2 * H], gates, (s * B + lo) * G, G, iw, fw)
        gemm_xb(n - lo, H, k, h_in, h_off, H, R, 2 * H, G, False, xw, 0, G, bh[2 * H:], aux,
                (s * B + lo) * H, H, iw, fw)
        # pointwise in loops touching few arrays each, so they all vectorize
        for b in range(lo, n):
            for j in range(H):
                gates[s, b, j] = sigmoid(gates[s, b, j])
                gates[s, b, H + j] = sigmoid(gates[s, b, H + j])
            for j in range(H):
                gates[s, b, 2 * H + j] = act(xw[t, b, 2 * H + j] + gates[s, b, j] * aux[s, b, j],
                                             relu)
            for j in range(H):
                z = gates[s, b, H + j]
                hs[t + 1, b, j] = (one - z) * gates[s, b, 2 * H + j] + z * hs[t, b, j]


# RT: [3H, H] R transposed  dH: [T, B, H] (iff has_dH)  dh: [B, H] in/OUT (OUT meaningless
#   without need_dh0: step 0's dh GEMM is then skipped, here and in the classic form)
# dxw: [T, B, 3H] OUT [da_r, da_z, da_n]
# dhw: [T, B, 3H] OUT gradient of hw = [da_r, da_z, da_n * r]   dtmp: [B, H] workspace
@njit(**FLAGS)
def backward_chunk(RT, mask, masked, relu, need_dh0, nact, lo, hi, hs, cs, hm, gates, aux, dH,
                   has_dH, dh, dc, dxw, dhw, dtmp, dtmp2, iw, fw):
    T = gates.shape[0]
    B = gates.shape[1]
    H = RT.shape[1]
    G = 3 * H
    one = cst(RT[0, 0], 1.0)
    for t in range(T - 1, -1, -1):
        n = min(hi, nact[t])
        if n <= lo:
            continue
        for b in range(lo, n):
            for j in range(H):
                dh_t = dh[b, j] + dH[t, b, j] if has_dH else dh[b, j]
                z = gates[t, b, H + j]
                nn = gates[t, b, 2 * H + j]
                dhw[t, b, H + j] = dh_t * (hs[t, b, j] - nn) * sigmoid_grad(z)
                dhw[t, b, 2 * H + j] = dh_t * (one - z) * act_grad(nn, relu)    # da_n
                dh[b, j] = dh_t * z
            for j in range(H):
                r = gates[t, b, j]
                da_n = dhw[t, b, 2 * H + j]
                dhw[t, b, j] = da_n * aux[t, b, j] * sigmoid_grad(r)
                dhw[t, b, 2 * H + j] = da_n * r
                dxw[t, b, 2 * H + j] = da_n
            for j in range(2 * H):
                dxw[t, b, j] = dhw[t, b, j]
        if t == 0 and not need_dh0:      # no gradient wanted for the initial state
            break
        if masked:
            gemm(False, False, n - lo, H, G, 1.0, dhw, (t * B + lo) * G, G, RT, 0, H,
                 0.0, dtmp, lo * H, H, iw, fw)
            for b in range(lo, n):
                for j in range(H):
                    dh[b, j] += dtmp[b, j] * mask[b, j]
        else:
            gemm(False, False, n - lo, H, G, 1.0, dhw, (t * B + lo) * G, G, RT, 0, H,
                 1.0, dh, lo * H, H, iw, fw)


# classic form. gates: [T, B, 3H] OUT r z n    aux: [T, B, H] OUT r * h_masked
# pre: [B, 3H] workspace (columns [0, 2H): h_masked @ R_rz; [2H, 3H): (r*h_masked) @ R_n)
@njit(**FLAGS)
def forward_chunk_classic(xw, R, bh, mask, masked, relu, keep, zero_h0, nact, lo, hi, hs, cs, hm,
                          gates, aux, pre, iw, fw):
    T = xw.shape[0]
    B = xw.shape[1]
    H = R.shape[0]
    G = 3 * H
    one = cst(bh[0], 1.0)
    for t in range(T):
        n = min(hi, nact[t])
        if n <= lo:
            break
        s = t if keep else 0       # slot of the saved buffers (one slot without grad)
        k = 0 if zero_h0 and t == 0 else H   # h0 = 0: no step-0 product
        if masked:
            for b in range(lo, n):
                for j in range(H):
                    hm[s, b, j] = hs[t, b, j] * mask[b, j]
            gemm(False, False, n - lo, 2 * H, k, 1.0, hm, (s * B + lo) * H, H, R, 0, G,
                 0.0, pre, lo * G, G, iw, fw)
        else:
            gemm(False, False, n - lo, 2 * H, k, 1.0, hs, (t * B + lo) * H, H, R, 0, G,
                 0.0, pre, lo * G, G, iw, fw)
        for b in range(lo, n):
            for j in range(2 * H):
                gates[s, b, j] = sigmoid(xw[t, b, j] + pre[b, j] + bh[j])
            if masked:
                for j in range(H):
                    aux[s, b, j] = gates[s, b, j] * hm[s, b, j]
            else:
                for j in range(H):
                    aux[s, b, j] = gates[s, b, j] * hs[t, b, j]
        gemm(False, False, n - lo, H, k, 1.0, aux, (s * B + lo) * H, H, R, 2 * H, G,
             0.0, pre, lo * G + 2 * H, G, iw, fw)
        for b in range(lo, n):
            for j in range(H):
                gates[s, b, 2 * H + j] = act(
                    xw[t, b, 2 * H + j] + pre[b, 2 * H + j] + bh[2 * H + j], relu)
            for j in range(H):
                z = gates[s, b, H + j]
                hs[t + 1, b, j] = (one - z) * gates[s, b, 2 * H + j] + z * hs[t, b, j]


# classic form backward. RT: [3H, H] R transposed; dxw = dhw: [T, B, 3H] OUT;
# dtmp: [B, H] workspace (dh_masked);
# dtmp2: [B, H] workspace (d(r*h_masked) = da_n @ R_n^T)
@njit(**FLAGS)
def backward_chunk_classic(RT, mask, masked, relu, need_dh0, nact, lo, hi, hs, cs, hm, gates, aux,
                           dH, has_dH, dh, dc, dxw, dhw, dtmp, dtmp2, iw, fw):
    T = gates.shape[0]
    B = gates.shape[1]
    H = RT.shape[1]
    G = 3 * H
    one = cst(RT[0, 0], 1.0)
    for t in range(T - 1, -1, -1):
        n = min(hi, nact[t])
        if n <= lo:
            continue
        for b in range(lo, n):
            for j in range(H):
                dh_t = dh[b, j] + dH[t, b, j] if has_dH else dh[b, j]
                z = gates[t, b, H + j]
                nn = gates[t, b, 2 * H + j]
                dxw[t, b, H + j] = dh_t * (hs[t, b, j] - nn) * sigmoid_grad(z)
                dxw[t, b, 2 * H + j] = dh_t * (one - z) * act_grad(nn, relu)
                dh[b, j] = dh_t * z
        # d(r * h_masked) = da_n @ R_n^T
        gemm(False, False, n - lo, H, H, 1.0, dxw, (t * B + lo) * G + 2 * H, G, RT,
             2 * H * H, H,
             0.0, dtmp2, lo * H, H, iw, fw)
        for b in range(lo, n):
            if masked:
                for j in range(H):
                    dxw[t, b, j] = dtmp2[b, j] * hm[t, b, j] * sigmoid_grad(gates[t, b, j])
            else:
                for j in range(H):
                    dxw[t, b, j] = dtmp2[b, j] * hs[t, b, j] * sigmoid_grad(gates[t, b, j])
        if t == 0 and not need_dh0:      # no gradient wanted for the initial state
            break
        # dh_masked = [da_r, da_z] @ R_rz^T + d(r h_masked) * r
        gemm(False, False, n - lo, H, 2 * H, 1.0, dxw, (t * B + lo) * G, G, RT, 0, H,
             0.0, dtmp, lo * H, H, iw, fw)
        for b in range(lo, n):
            if masked:
                for j in range(H):
                    dh[b, j] += (dtmp[b, j] + dtmp2[b, j] * gates[t, b, j]) * mask[b, j]
            else:
                for j in range(H):
                    dh[b, j] += dtmp[b, j] + dtmp2[b, j] * gates[t, b, j]


# one step of :func:`forward_chunk` for streaming (shapes: :func:`._loop.step_arguments`)
@njit(**FLAGS)
def step(xw, R, bh, mask, relu, h, c, state):
    forward_chunk(*step_arguments(3, xw, R, bh, mask, relu, h, c, state))


# one step of :func:`forward_chunk_classic` for streaming (shapes: :func:`._loop.step_arguments`)
@njit(**FLAGS)
def step_classic(xw, R, bh, mask, relu, h, c, state):
    forward_chunk_classic(*step_arguments(3, xw, R, bh, mask, relu, h, c, state))
