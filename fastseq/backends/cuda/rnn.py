"""Simple RNN on the device: ``h_t = act(xw_t + h_masked @ R + b_hh)``.

Per step (forward): one GEMM ``hw = h_masked @ R + b_hh`` and one fused pointwise kernel
that applies the activation, stores the output (the post-activation "gate") and updates
the state in place. Per step (backward): one pointwise kernel, one GEMM ``dxw_t @ R.T``
and the shared state-gradient kernel. ``dR`` and ``dbh`` are one GEMM and one column sum
over all ``T*B`` rows after the loop.
"""
from __future__ import annotations

from functools import lru_cache

from numba import cuda

from .activations import make_activations
from .gemm import matmul
from .launch import launch_1d
from . import common


@lru_cache(maxsize=None)
def make_kernels(dtype, activation):
    """Kernel sources of the simple RNN for one dtype and activation."""
    act, act_grad, _, _ = make_activations(dtype, activation)
    zero = dtype(0.0)

    # one (row b, unit j) of a forward step; hw_h = (h_masked @ R + b_hh)[b, j]
    # xw: [T, B, H]; lengths: [B]; mask: [B, H]
    # hs: [T+1, B, H] OUT hs[t+1]; hm: [T+1, B, H] OUT hm[t+1] = hs[t+1] * mask
    # gates: [T, B, H] OUT (= h_t where active, else 0); H_all: [T, B, H] OUT
    @cuda.jit(device=True)
    def forward_unit(t, b, j, hw_h, xw, lengths, mask, hs, hm, gates, H_all):
        if t < lengths[b]:
            h = act(xw[t, b, j] + hw_h)
            gates[t, b, j] = h
            H_all[t, b, j] = h
        else:
            h = hs[t, b, j]
            gates[t, b, j] = zero
            H_all[t, b, j] = zero
        hs[t + 1, b, j] = h
        hm[t + 1, b, j] = h * mask[b, j]

    # t: step; hw: [B, H] = h_masked @ R + b_hh; other arguments as forward_unit
    def forward_pointwise(t, xw, hw, lengths, mask, hs, hm, gates, H_all):
        i = cuda.grid(1)
        B = mask.shape[0]
        H = mask.shape[1]
        if i < B * H:
            b = i // H
            j = i - b * H
            forward_unit(t, b, j, hw[b, j], xw, lengths, mask, hs, hm, gates, H_all)

    # gates: [T, B, H]; lengths: [B]; dH_all: [T, B, H]
    # dh: [B, H] in: gradient on the state after step t; OUT: dh_t = dh + dH_all[t]
    # dxw: [T, B, H] OUT dxw[t] (zero where inactive)
    @cuda.jit(device=True)
    def backward_pointwise_unit(t, b, j, gates, lengths, dH_all, dh, dxw):
        if t < lengths[b]:
            dh_t = dh[b, j] + dH_all[t, b, j]
            dh[b, j] = dh_t
            dxw[t, b, j] = dh_t * act_grad(gates[t, b, j])
        else:
            dxw[t, b, j] = zero

    def backward_pointwise(t, gates, lengths, dH_all, dh, dxw):
        i = cuda.grid(1)
        B = dh.shape[0]
        H = dh.shape[1]
        if i < B * H:
            b = i // H
            j = i - b * H
            backward_pointwise_unit(t, b, j, gates, lengths, dH_all, dh, dxw)

    return dict(forward_pointwise=forward_pointwise, backward_pointwise=backward_pointwise,
                forward_unit=forward_unit, backward_pointwise_unit=backward_pointwise_unit)


def forward_step(ws, t):
    k = make_kernels(ws.dtype, ws.cell.activation)
    matmul(ws.hm[t], ws.R, ws.hw, bias=ws.bh)
    launch_1d(k["forward_pointwise"], ws.B * ws.H, t, ws.xw, ws.hw, ws.lengths, ws.mask,
              ws.hs, ws.hm, ws.gates, ws.H_all)


def backward_step(ws, t):
    k = make_kernels(ws.dtype, ws.cell.activation)
    launch_1d(k["backward_pointwise"], ws.B * ws.H, t, ws.gates, ws.lengths, ws.dH_all,
              ws.dh, ws.dxw)
    matmul(ws.dxw[t], ws.R, ws.dpart, trans_b=True)
    common.finish_state_grad(ws, t)


def weight_grads(ws):
    common.weight_grads_single(ws, ws.dxw)
