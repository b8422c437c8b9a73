"""GRU on the device, gates ``[r | z | n]``, both forms (see :mod:`fastseq.cells`).

``reset_after=True`` (PyTorch / cuDNN): one GEMM ``hw = h_masked @ R + b_hh`` per step and
one fused pointwise kernel, which stores ``r, z, n`` and ``hw_n`` (aux, needed for
``dr``).

``reset_after=False`` (classic / Keras): the candidate needs ``(r * h_masked) @ R_n``, so a
step is GEMM (``R[:, :2H]``) -> gate kernel (r, z, and ``rh = r*h_masked``) -> GEMM
(``R[:, 2H:]``) -> candidate kernel. ``rh`` is kept for every step: it is the left operand
of ``dR[:, 2H:]``. The GEMMs read column blocks of ``R`` as strided views (no copies).
"""
from __future__ import annotations

from functools import lru_cache

from numba import cuda

from .activations import make_activations
from .common import rows
from .gemm import column_sum, matmul
from .launch import launch_1d


@lru_cache(maxsize=None)
def make_kernels(dtype, activation, reset_after):
    """Kernel sources of the GRU for one dtype, activation and form."""
    act, act_grad, sigmoid, sigmoid_grad = make_activations(dtype, activation)
    zero, one = dtype(0.0), dtype(1.0)

    # ---------------------------------------------------------------- reset_after=True
    # one (row b, unit j) of a forward step; hw_r, hw_z, hw_n = (h_masked @ R + b_hh)[b, .]
    # xw: [T, B, 3H]; lengths: [B]; mask: [B, H]
    # hs, hm: [T+1, B, H] OUT row t+1; gates: [T, B, 3H] OUT r z n; aux: [T, B, H] OUT hw_n
    # H_all: [T, B, H] OUT
    @cuda.jit(device=True)
    def forward_unit(t, b, j, hw_r, hw_z, hw_n, xw, lengths, mask, hs, hm, gates, aux, H_all):
        H = mask.shape[1]
        h_prev = hs[t, b, j]
        if t < lengths[b]:
            r = sigmoid(xw[t, b, j] + hw_r)
            z = sigmoid(xw[t, b, H + j] + hw_z)
            n = act(xw[t, b, 2 * H + j] + r * hw_n)
            h = (one - z) * n + z * h_prev
            gates[t, b, j] = r
            gates[t, b, H + j] = z
            gates[t, b, 2 * H + j] = n
            aux[t, b, j] = hw_n
            H_all[t, b, j] = h
        else:
            h = h_prev
            for k in range(3):
                gates[t, b, k * H + j] = zero
            aux[t, b, j] = zero
            H_all[t, b, j] = zero
        hs[t + 1, b, j] = h
        hm[t + 1, b, j] = h * mask[b, j]

    # t: step; hw: [B, 3H] = h_masked @ R + b_hh; other arguments as forward_unit
    def forward_pointwise(t, xw, hw, lengths, mask, hs, hm, gates, aux, H_all):
        idx = cuda.grid(1)
        B = mask.shape[0]
        H = mask.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            forward_unit(t, b, j, hw[b, j], hw[b, H + j], hw[b, 2 * H + j], xw, lengths, mask,
                         hs, hm, gates, aux, H_all)

    # gates: [T, B, 3H]; aux: [T, B, H]; hs: [T+1, B, H]; lengths: [B]; dH_all: [T, B, H]
    # dh: [B, H] in/OUT dh_t = dh + dH_all[t]
    # dxw: [T, B, 3H] OUT [da_r | da_z | da_n]; dhw: [T, B, 3H] OUT [da_r | da_z | da_n*r]
    @cuda.jit(device=True)
    def backward_pointwise_unit(t, b, j, gates, aux, hs, lengths, dH_all, dh, dxw, dhw):
        H = dh.shape[1]
        if t < lengths[b]:
            dh_t = dh[b, j] + dH_all[t, b, j]
            r = gates[t, b, j]
            z = gates[t, b, H + j]
            n = gates[t, b, 2 * H + j]
            da_n = dh_t * (one - z) * act_grad(n)
            da_z = dh_t * (hs[t, b, j] - n) * sigmoid_grad(z)
            da_r = da_n * aux[t, b, j] * sigmoid_grad(r)
            dxw[t, b, j] = da_r
            dxw[t, b, H + j] = da_z
            dxw[t, b, 2 * H + j] = da_n
            dhw[t, b, j] = da_r
            dhw[t, b, H + j] = da_z
            dhw[t, b, 2 * H + j] = da_n * r
            dh[b, j] = dh_t
        else:
            for k in range(3):
                dxw[t, b, k * H + j] = zero
                dhw[t, b, k * H + j] = zero

    def backward_pointwise(t, gates, aux, hs, lengths, dH_all, dh, dxw, dhw):
        idx = cuda.grid(1)
        B = dh.shape[0]
        H = dh.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            backward_pointwise_unit(t, b, j, gates, aux, hs, lengths, dH_all, dh, dxw, dhw)

    # gates: [T, B, 3H]; lengths: [B]; mask: [B, H]; dpart: [B, H] = dhw[t] @ R.T
    # dh: [B, H] in dh_t; OUT dh_{t-1} = dh_t * z + dpart * mask where step t ran
    @cuda.jit(device=True)
    def finish_state_grad_unit(t, b, j, dpart_bj, gates, lengths, mask, dh):
        H = dh.shape[1]
        if t < lengths[b]:
            dh[b, j] = dh[b, j] * gates[t, b, H + j] + dpart_bj * mask[b, j]

    def finish_state_grad(t, gates, lengths, mask, dpart, dh):
        idx = cuda.grid(1)
        B = dh.shape[0]
        H = dh.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            finish_state_grad_unit(t, b, j, dpart[b, j], gates, lengths, mask, dh)

    # ---------------------------------------------------------------- reset_after=False
    # one (row b, unit j) of the gate phase; hw_r, hw_z = (h_masked @ R[:, :2H] + b)[b, .]
    # xw: [T, B, 3H]; lengths: [B]; hm: [T+1, B, H]
    # gates: [T, B, 3H] OUT r z; rh: [T, B, H] OUT r * h_masked
    @cuda.jit(device=True)
    def classic_gates_unit(t, b, j, hw_r, hw_z, xw, lengths, hm, gates, rh):
        H = rh.shape[2]
        if t < lengths[b]:
            r = sigmoid(xw[t, b, j] + hw_r)
            z = sigmoid(xw[t, b, H + j] + hw_z)
            gates[t, b, j] = r
            gates[t, b, H + j] = z
            rh[t, b, j] = r * hm[t, b, j]
        else:
            gates[t, b, j] = zero
            gates[t, b, H + j] = zero
            rh[t, b, j] = zero

    # t: step; hw: [B, 3H] (columns :2H filled); other arguments as classic_gates_unit
    def classic_gates(t, xw, hw, lengths, hm, gates, rh):
        idx = cuda.grid(1)
        B = rh.shape[1]
        H = rh.shape[2]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            classic_gates_unit(t, b, j, hw[b, j], hw[b, H + j], xw, lengths, hm, gates, rh)

    # one (row b, unit j) of the candidate phase; hw_n = (rh @ R[:, 2H:] + b_hn)[b, j]
    # xw: [T, B, 3H]; lengths: [B]; mask: [B, H]; hs, hm: [T+1, B, H] OUT row t+1
    # gates: [T, B, 3H] OUT n (r, z read); H_all: [T, B, H] OUT
    @cuda.jit(device=True)
    def classic_candidate_unit(t, b, j, hw_n, xw, lengths, mask, hs, hm, gates, H_all):
        H = mask.shape[1]
        h_prev = hs[t, b, j]
        if t < lengths[b]:
            z = gates[t, b, H + j]
            n = act(xw[t, b, 2 * H + j] + hw_n)
            h = (one - z) * n + z * h_prev
            gates[t, b, 2 * H + j] = n
            H_all[t, b, j] = h
        else:
            h = h_prev
            gates[t, b, 2 * H + j] = zero
            H_all[t, b, j] = zero
        hs[t + 1, b, j] = h
        hm[t + 1, b, j] = h * mask[b, j]

    # t: step; hw: [B, 3H] (columns 2H: = rh @ R_n + b_hn); others as classic_candidate_unit
    def classic_candidate(t, xw, hw, lengths, mask, hs, hm, gates, H_all):
        idx = cuda.grid(1)
        B = mask.shape[0]
        H = mask.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            classic_candidate_unit(t, b, j, hw[b, 2 * H + j], xw, lengths, mask, hs, hm, gates,
                                   H_all)

    # gates: [T, B, 3H]; hs: [T+1, B, H]; lengths: [B]; dH_all: [T, B, H]
    # dh: [B, H] in/OUT dh_t; dxw: [T, B, 3H] OUT da_z, da_n (da_r zeroed, set later)
    @cuda.jit(device=True)
    def classic_backward_zn_unit(t, b, j, gates, hs, lengths, dH_all, dh, dxw):
        H = dh.shape[1]
        if t < lengths[b]:
            dh_t = dh[b, j] + dH_all[t, b, j]
            z = gates[t, b, H + j]
            n = gates[t, b, 2 * H + j]
            dxw[t, b, H + j] = dh_t * (hs[t, b, j] - n) * sigmoid_grad(z)
            dxw[t, b, 2 * H + j] = dh_t * (one - z) * act_grad(n)
            dh[b, j] = dh_t
        else:
            dxw[t, b, H + j] = zero
            dxw[t, b, 2 * H + j] = zero
        dxw[t, b, j] = zero

    def classic_backward_zn(t, gates, hs, lengths, dH_all, dh, dxw):
        idx = cuda.grid(1)
        B = dh.shape[0]
        H = dh.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            classic_backward_zn_unit(t, b, j, gates, hs, lengths, dH_all, dh, dxw)

    # gates: [T, B, 3H]; hm: [T+1, B, H]; lengths: [B]; drh: [B, H] = da_n @ R_n.T
    # dxw: [T, B, 3H] OUT da_r = drh * h_masked * sigmoid'(r)
    @cuda.jit(device=True)
    def classic_backward_r_unit(t, b, j, drh_bj, gates, hm, lengths, dxw):
        if t < lengths[b]:
            dxw[t, b, j] = drh_bj * hm[t, b, j] * sigmoid_grad(gates[t, b, j])

    def classic_backward_r(t, gates, hm, lengths, drh, dxw):
        idx = cuda.grid(1)
        B = drh.shape[0]
        H = drh.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            classic_backward_r_unit(t, b, j, drh[b, j], gates, hm, lengths, dxw)

    # gates: [T, B, 3H]; lengths: [B]; mask: [B, H]; dpart: [B, H] = dxw[t, :, :2H] @ R[:, :2H].T
    # drh: [B, H]; dh: [B, H] in dh_t; OUT dh_{t-1} = dh_t*z + (dpart + drh*r) * mask
    @cuda.jit(device=True)
    def classic_finish_state_grad_unit(t, b, j, dpart_bj, drh_bj, gates, lengths, mask, dh):
        H = dh.shape[1]
        if t < lengths[b]:
            dh[b, j] = (dh[b, j] * gates[t, b, H + j]
                        + (dpart_bj + drh_bj * gates[t, b, j]) * mask[b, j])

    def classic_finish_state_grad(t, gates, lengths, mask, dpart, drh, dh):
        idx = cuda.grid(1)
        B = dh.shape[0]
        H = dh.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            classic_finish_state_grad_unit(t, b, j, dpart[b, j], drh[b, j], gates, lengths,
                                           mask, dh)

    if reset_after:
        return dict(forward_pointwise=forward_pointwise,
                    backward_pointwise=backward_pointwise,
                    finish_state_grad=finish_state_grad, forward_unit=forward_unit,
                    backward_pointwise_unit=backward_pointwise_unit,
                    finish_state_grad_unit=finish_state_grad_unit)
    return dict(classic_gates=classic_gates, classic_candidate=classic_candidate,
                classic_backward_zn=classic_backward_zn, classic_backward_r=classic_backward_r,
                classic_finish_state_grad=classic_finish_state_grad,
                classic_gates_unit=classic_gates_unit,
                classic_candidate_unit=classic_candidate_unit,
                classic_backward_zn_unit=classic_backward_zn_unit,
                classic_backward_r_unit=classic_backward_r_unit,
                classic_finish_state_grad_unit=classic_finish_state_grad_unit)


def _kernels(ws):
    return make_kernels(ws.dtype, ws.cell.activation, ws.cell.reset_after)


def forward_step(ws, t):
    k, n = _kernels(ws), ws.B * ws.H
    H = ws.H
    if ws.cell.reset_after:
        matmul(ws.hm[t], ws.R, ws.hw, bias=ws.bh)
        launch_1d(k["forward_pointwise"], n, t, ws.xw, ws.hw, ws.lengths, ws.mask,
                  ws.hs, ws.hm, ws.gates, ws.aux, ws.H_all)
        return
    matmul(ws.hm[t], ws.R[:, :2 * H], ws.hw[:, :2 * H], bias=ws.bh[:2 * H])
    launch_1d(k["classic_gates"], n, t, ws.xw, ws.hw, ws.lengths, ws.hm, ws.gates, ws.rh)
    matmul(ws.rh[t], ws.R[:, 2 * H:], ws.hw[:, 2 * H:], bias=ws.bh[2 * H:])
    launch_1d(k["classic_candidate"], n, t, ws.xw, ws.hw, ws.lengths, ws.mask, ws.hs,
              ws.hm, ws.gates, ws.H_all)


def backward_step(ws, t):
    k, n = _kernels(ws), ws.B * ws.H
    H = ws.H
    if ws.cell.reset_after:
        launch_1d(k["backward_pointwise"], n, t, ws.gates, ws.aux, ws.hs, ws.lengths,
                  ws.dH_all, ws.dh, ws.dxw, ws.dhw)
        matmul(ws.dhw[t], ws.R, ws.dpart, trans_b=True)
        launch_1d(k["finish_state_grad"], n, t, ws.gates, ws.lengths, ws.mask, ws.dpart,
                  ws.dh)
        return
    launch_1d(k["classic_backward_zn"], n, t, ws.gates, ws.hs, ws.lengths, ws.dH_all,
              ws.dh, ws.dxw)
    dxw_t = ws.dxw[t]
    matmul(dxw_t[:, 2 * H:], ws.R[:, 2 * H:], ws.drh, trans_b=True)
    launch_1d(k["classic_backward_r"], n, t, ws.gates, ws.hm, ws.lengths, ws.drh, ws.dxw)
    matmul(dxw_t[:, :2 * H], ws.R[:, :2 * H], ws.dpart, trans_b=True)
    launch_1d(k["classic_finish_state_grad"], n, t, ws.gates, ws.lengths, ws.mask,
              ws.dpart, ws.drh, ws.dh)


def weight_grads(ws):
    H = ws.H
    if ws.cell.reset_after:
        matmul(rows(ws.hm[:ws.T]), rows(ws.dhw), ws.dR, trans_a=True)
        column_sum(rows(ws.dhw), ws.dbh)
        return
    d_all = rows(ws.dxw)
    matmul(rows(ws.hm[:ws.T]), d_all[:, :2 * H], ws.dR[:, :2 * H], trans_a=True)
    matmul(rows(ws.rh), d_all[:, 2 * H:], ws.dR[:, 2 * H:], trans_a=True)
    column_sum(d_all, ws.dbh)
