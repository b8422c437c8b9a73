"""Kernels and launches shared by every cell: state initialisation, the state-gradient
step of the RNN and LSTM, and the weight gradients over all ``T*B`` rows."""
from __future__ import annotations

from functools import lru_cache

from numba import cuda

from .gemm import column_sum, matmul
from .launch import launch_1d


@lru_cache(maxsize=None)
def make_kernels(dtype):
    """Kernel sources shared by the cells, for one dtype."""

    # h0: [B, H]; mask: [B, H]; hs, hm: [T+1, B, H] OUT row 0 (hm = h0 * mask)
    def init_state(h0, mask, hs, hm):
        i = cuda.grid(1)
        B = h0.shape[0]
        H = h0.shape[1]
        if i < B * H:
            b = i // H
            j = i - b * H
            hs[0, b, j] = h0[b, j]
            hm[0, b, j] = h0[b, j] * mask[b, j]

    # c0: [B, H]; cs: [T+1, B, H] OUT row 0
    def init_cell(c0, cs):
        i = cuda.grid(1)
        B = c0.shape[0]
        H = c0.shape[1]
        if i < B * H:
            b = i // H
            j = i - b * H
            cs[0, b, j] = c0[b, j]

    # lengths: [B]; mask: [B, H]; dpart: [B, H] = dxw[t] @ R.T
    # dh: [B, H] in: dh_t; OUT: dh_{t-1} = dpart * mask where step t ran, else unchanged
    @cuda.jit(device=True)
    def finish_state_grad_unit(t, b, j, dpart_bj, lengths, mask, dh):
        if t < lengths[b]:
            dh[b, j] = dpart_bj * mask[b, j]

    def finish_state_grad(t, lengths, mask, dpart, dh):
        i = cuda.grid(1)
        B = dh.shape[0]
        H = dh.shape[1]
        if i < B * H:
            b = i // H
            j = i - b * H
            finish_state_grad_unit(t, b, j, dpart[b, j], lengths, mask, dh)

    return dict(init_state=init_state, init_cell=init_cell,
                finish_state_grad=finish_state_grad,
                finish_state_grad_unit=finish_state_grad_unit)


def init_state(ws, h0, c0):
    k = make_kernels(ws.dtype)
    launch_1d(k["init_state"], ws.B * ws.H, h0, ws.mask, ws.hs, ws.hm)
    if ws.cs is not None:
        launch_1d(k["init_cell"], ws.B * ws.H, c0, ws.cs)


def finish_state_grad(ws, t):
    """RNN and LSTM: ``dh_{t-1} = (dxw_t @ R.T) * mask`` on the rows where step t ran."""
    launch_1d(make_kernels(ws.dtype)["finish_state_grad"], ws.B * ws.H, t, ws.lengths,
              ws.mask, ws.dpart, ws.dh)


def rows(a):
    """A ``[T, B, n]`` device array seen as ``[T*B, n]`` (no copy)."""
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2])


def weight_grads_single(ws, d_hw):
    """``dR = h_masked_all.T @ d_hw`` and ``dbh = sum of d_hw rows``, over all T*B rows."""
    matmul(rows(ws.hm[:ws.T]), rows(d_hw), ws.dR, trans_a=True)
    column_sum(rows(d_hw), ws.dbh)
