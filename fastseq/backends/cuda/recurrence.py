"""The time loop on the device: workspaces, uploads, and the backend interface.

One call of :func:`forward` uploads ``xw``, ``R``, ``b_hh``, the initial state, lengths and
the recurrent-dropout mask once, allocates every workspace once, and then runs all ``T``
steps with kernels only: no host round trip inside the loop. The cache it returns holds
device arrays (the states before every step, the post-activation gates, aux values), so
:func:`backward` runs BPTT on the device without uploading them again.

Inputs that already live on the device (numba device arrays, or anything with
``__cuda_array_interface__``) are used as they are, so a caller can keep weights
device-resident across many calls.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from numba import cuda

from ...cells import CellSpec
from . import common
from .launch import as_device_array, on_device, simulator_switch_interval
from . import gru, lstm, persistent, rnn

_CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru}


def _check_cell(cell):
    if not isinstance(cell, CellSpec):
        raise TypeError(f"cell must be a CellSpec, got {type(cell).__name__}")


def _compute_dtype(xw):
    """float32 input runs in float32; everything else in float64 (as the reference)."""
    return np.float32 if np.dtype(xw.dtype) == np.float32 else np.float64


def _device(a, dtype, name, shape):
    """Upload ``a`` (or use it in place if it is already a device array of ``dtype``)."""
    if on_device(a):
        a = as_device_array(a)
        if np.dtype(a.dtype) != np.dtype(dtype):
            a = cuda.to_device(a.copy_to_host().astype(dtype))
    else:
        a = np.ascontiguousarray(np.asarray(a, dtype=dtype))
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(a.shape)}; expected {tuple(shape)}")
    return a if on_device(a) else cuda.to_device(a)


def _zeros(shape, dtype):
    return cuda.to_device(np.zeros(shape, dtype=dtype))


def forward(cell, xw, R, bh, h0, c0=None, lengths=None, rmask=None, training=True,
            n_threads=None):
    """Run the cell over ``T`` steps on the GPU; interface and shapes as
    :func:`fastseq.backends.reference.forward`. ``n_threads`` is ignored here."""
    _check_cell(cell)
    if len(getattr(xw, "shape", ())) != 3:
        raise ValueError(f"xw must be [T, B, G*H], got shape {getattr(xw, 'shape', None)}")
    dtype = _compute_dtype(xw)
    T, B, GH = (int(s) for s in xw.shape)
    G = cell.n_gates
    if len(getattr(R, "shape", ())) != 2 or R.shape[1] != GH or GH != G * R.shape[0]:
        raise ValueError(f"R has shape {getattr(R, 'shape', None)}; expected "
                         f"(H, {G}*H) matching xw's last axis {GH}")
    H = int(R.shape[0])
    if lengths is None:
        lengths = np.full(B, T, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (B,) or (B and (lengths.min() < 0 or lengths.max() > T)):
        raise ValueError(f"lengths must be {B} integers in [0, {T}], got {lengths!r}")

    ws = SimpleNamespace(cell=cell, dtype=dtype, T=T, B=B, H=H, G=G)
    ws.xw = _device(xw, dtype, "xw", (T, B, GH))
    ws.R = _device(R, dtype, "R", (H, GH))
    ws.bh = _device(bh, dtype, "bh", (GH,))
    h0 = _device(h0, dtype, "h0", (B, H))
    if cell.has_cell_state:
        c0 = (_zeros((B, H), dtype) if c0 is None else _device(c0, dtype, "c0", (B, H)))
    ws.lengths = cuda.to_device(lengths)
    ws.mask = (cuda.to_device(np.ones((B, H), dtype=dtype)) if rmask is None
               else _device(rmask, dtype, "rmask", (B, H)))

    ws.hs = cuda.device_array((T + 1, B, H), dtype=dtype)     # state before step t
    ws.hm = cuda.device_array((T + 1, B, H), dtype=dtype)     # hs * mask: GEMM operand
    ws.cs = cuda.device_array((T + 1, B, H), dtype=dtype) if cell.has_cell_state else None
    ws.gates = cuda.device_array((T, B, GH), dtype=dtype)     # post-activation gates
    ws.aux = cuda.device_array((T, B, H), dtype=dtype)        # act(c) or hw_n
    ws.rh = (cuda.device_array((T, B, H), dtype=dtype)         # classic GRU: r * h_masked
             if cell.kind == "gru" and not cell.reset_after else None)
    ws.H_all = cuda.device_array((T, B, H), dtype=dtype)
    ws.hw = cuda.device_array((B, GH), dtype=dtype)           # per-step h_masked @ R + bh

    step_fn = _CELLS[cell.kind].forward_step
    with simulator_switch_interval():
        common.init_state(ws, h0, c0)
        if persistent.applies(ws):          # small B and H: one launch for all T steps
            persistent.forward(ws)
        else:                               # GEMM + fused pointwise kernel per step
            for t in range(T):
                step_fn(ws, t)

    H_all = ws.H_all.copy_to_host()
    h_T = ws.hs[T].copy_to_host()
    c_T = ws.cs[T].copy_to_host() if cell.has_cell_state else None
    return H_all, (h_T, c_T), ws


def backward(cell, cache, dH_all=None, dh_T=None, dc_T=None, n_threads=None):
    """BPTT through a :func:`forward` call, on the GPU; see the reference for shapes."""
    _check_cell(cell)
    ws = cache
    if not isinstance(ws, SimpleNamespace) or getattr(ws, "cell", None) != cell:
        raise ValueError("cache must come from the cuda backend's forward with the same cell")
    T, B, H, dtype = ws.T, ws.B, ws.H, ws.dtype
    GH = ws.G * H
    ws.dH_all = (_zeros((T, B, H), dtype) if dH_all is None
                 else _device(dH_all, dtype, "dH_all", (T, B, H)))
    ws.dh = (_zeros((B, H), dtype) if dh_T is None
             else cuda.to_device(np.array(_host(dh_T, dtype, "dh_T", (B, H)))))
    ws.dc = None
    if cell.has_cell_state:
        ws.dc = (_zeros((B, H), dtype) if dc_T is None
                 else cuda.to_device(np.array(_host(dc_T, dtype, "dc_T", (B, H)))))
    ws.dxw = _zeros((T, B, GH), dtype)
    ws.dhw = (cuda.device_array((T, B, GH), dtype=dtype)
              if cell.kind == "gru" and cell.reset_after else None)
    ws.dpart = cuda.device_array((B, H), dtype=dtype)
    ws.drh = cuda.device_array((B, H), dtype=dtype)
    ws.dR = cuda.device_array((H, GH), dtype=dtype)
    ws.dbh = cuda.device_array((GH,), dtype=dtype)

    module = _CELLS[cell.kind]
    with simulator_switch_interval():
        if persistent.applies(ws):          # small B and H: one launch for all T steps
            persistent.backward(ws)
        else:
            for t in range(T - 1, -1, -1):
                module.backward_step(ws, t)
        module.weight_grads(ws)             # dR, dbh: one GEMM, one reduction

    dxw = ws.dxw.copy_to_host()
    dR = ws.dR.copy_to_host()
    dbh = ws.dbh.copy_to_host()
    dh0 = ws.dh.copy_to_host()
    dc0 = ws.dc.copy_to_host() if cell.has_cell_state else None
    for name in ("dH_all", "dh", "dc", "dxw", "dhw", "dpart", "drh", "dR", "dbh"):
        delattr(ws, name)          # the cache keeps only the forward's arrays
    return dxw, dR, dbh, dh0, dc0


def _host(a, dtype, name, shape):
    a = as_device_array(a).copy_to_host() if on_device(a) else np.asarray(a, dtype=dtype)
    if a.shape != tuple(shape):
        raise ValueError(f"{name} has shape {a.shape}; expected {tuple(shape)}")
    return a.astype(dtype, copy=False)


def step(cell, xw_t, R, bh, h, c=None, rmask=None):
    """One step for streaming inference: ``xw_t [B, G*H]``, ``h, c [B, H]`` -> (h, c)."""
    _check_cell(cell)
    xw_t = as_device_array(xw_t) if on_device(xw_t) else np.asarray(xw_t)
    if len(xw_t.shape) != 2:
        raise ValueError(f"xw_t must be [B, G*H], got shape {tuple(xw_t.shape)}")
    xw_t = xw_t.reshape(1, *xw_t.shape)
    _, (h_new, c_new), _ = forward(cell, xw_t, R, bh, h, c, None, rmask=rmask,
                                   training=False)
    return h_new, c_new
