"""LSTM on the device, gates ``[i | f | g | o]``::

    i, f, o = sigmoid(.), g = act(.);  c_t = f*c + i*g;  h_t = o*act(c_t)

Per step (forward): one GEMM ``hw = h_masked @ R + b_hh`` and one fused pointwise kernel
that stores the four post-activation gates and ``act(c_t)`` (aux) and updates ``h`` and
``c`` in place. Backward per step: one pointwise kernel (gate gradients and ``dc``), one
GEMM ``dxw_t @ R.T`` and the shared state-gradient kernel.
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
    """Kernel sources of the LSTM for one dtype and activation."""
    act, act_grad, sigmoid, sigmoid_grad = make_activations(dtype, activation)
    zero = dtype(0.0)

    # one (row b, unit j) of a forward step; hw_i..hw_o = (h_masked @ R + b_hh)[b, k*H + j]
    # xw: [T, B, 4H]; lengths: [B]; mask: [B, H]
    # hs, hm, cs: [T+1, B, H] OUT row t+1; gates: [T, B, 4H] OUT; aux: [T, B, H] OUT act(c_t)
    # H_all: [T, B, H] OUT
    @cuda.jit(device=True)
    def forward_unit(t, b, j, hw_i, hw_f, hw_g, hw_o, xw, lengths, mask, hs, hm, cs, gates,
                     aux, H_all):
        H = mask.shape[1]
        if t < lengths[b]:
            i = sigmoid(xw[t, b, j] + hw_i)
            f = sigmoid(xw[t, b, H + j] + hw_f)
            g = act(xw[t, b, 2 * H + j] + hw_g)
            o = sigmoid(xw[t, b, 3 * H + j] + hw_o)
            c = f * cs[t, b, j] + i * g
            c_act = act(c)
            h = o * c_act
            gates[t, b, j] = i
            gates[t, b, H + j] = f
            gates[t, b, 2 * H + j] = g
            gates[t, b, 3 * H + j] = o
            aux[t, b, j] = c_act
            H_all[t, b, j] = h
        else:
            c = cs[t, b, j]
            h = hs[t, b, j]
            for k in range(4):
                gates[t, b, k * H + j] = zero
            aux[t, b, j] = zero
            H_all[t, b, j] = zero
        cs[t + 1, b, j] = c
        hs[t + 1, b, j] = h
        hm[t + 1, b, j] = h * mask[b, j]

    # t: step; hw: [B, 4H] = h_masked @ R + b_hh; other arguments as forward_unit
    def forward_pointwise(t, xw, hw, lengths, mask, hs, hm, cs, gates, aux, H_all):
        idx = cuda.grid(1)
        B = mask.shape[0]
        H = mask.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            forward_unit(t, b, j, hw[b, j], hw[b, H + j], hw[b, 2 * H + j], hw[b, 3 * H + j],
                         xw, lengths, mask, hs, hm, cs, gates, aux, H_all)

    # gates: [T, B, 4H]; aux: [T, B, H]; cs: [T+1, B, H]; lengths: [B]; dH_all: [T, B, H]
    # dh: [B, H] in/OUT (dh_t = dh + dH_all[t]); dc: [B, H] in/OUT (-> dc_{t-1})
    # dxw: [T, B, 4H] OUT dxw[t]
    @cuda.jit(device=True)
    def backward_pointwise_unit(t, b, j, gates, aux, cs, lengths, dH_all, dh, dc, dxw):
        H = dh.shape[1]
        if t < lengths[b]:
            dh_t = dh[b, j] + dH_all[t, b, j]
            i = gates[t, b, j]
            f = gates[t, b, H + j]
            g = gates[t, b, 2 * H + j]
            o = gates[t, b, 3 * H + j]
            c_act = aux[t, b, j]
            d_o = dh_t * c_act
            dc_total = dc[b, j] + dh_t * o * act_grad(c_act)
            dxw[t, b, j] = dc_total * g * sigmoid_grad(i)
            dxw[t, b, H + j] = dc_total * cs[t, b, j] * sigmoid_grad(f)
            dxw[t, b, 2 * H + j] = dc_total * i * act_grad(g)
            dxw[t, b, 3 * H + j] = d_o * sigmoid_grad(o)
            dc[b, j] = dc_total * f
            dh[b, j] = dh_t
        else:
            for k in range(4):
                dxw[t, b, k * H + j] = zero

    def backward_pointwise(t, gates, aux, cs, lengths, dH_all, dh, dc, dxw):
        idx = cuda.grid(1)
        B = dh.shape[0]
        H = dh.shape[1]
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            backward_pointwise_unit(t, b, j, gates, aux, cs, lengths, dH_all, dh, dc, dxw)

    return dict(forward_pointwise=forward_pointwise, backward_pointwise=backward_pointwise,
                forward_unit=forward_unit, backward_pointwise_unit=backward_pointwise_unit)


def forward_step(ws, t):
    k = make_kernels(ws.dtype, ws.cell.activation)
    matmul(ws.hm[t], ws.R, ws.hw, bias=ws.bh)
    launch_1d(k["forward_pointwise"], ws.B * ws.H, t, ws.xw, ws.hw, ws.lengths, ws.mask,
              ws.hs, ws.hm, ws.cs, ws.gates, ws.aux, ws.H_all)


def backward_step(ws, t):
    k = make_kernels(ws.dtype, ws.cell.activation)
    launch_1d(k["backward_pointwise"], ws.B * ws.H, t, ws.gates, ws.aux, ws.cs, ws.lengths,
              ws.dH_all, ws.dh, ws.dc, ws.dxw)
    matmul(ws.dxw[t], ws.R, ws.dpart, trans_b=True)
    common.finish_state_grad(ws, t)


def weight_grads(ws):
    common.weight_grads_single(ws, ws.dxw)
