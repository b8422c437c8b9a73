"""The float64 NumPy oracle: forward and BPTT for every cell, explicit loops over time.

Readable above all; no cleverness. Every other backend is tested against this module, and
this module is tested against PyTorch fixtures and central finite differences.

The backend interface (shared by every backend, see ``fastseq.backends``)::

    forward(cell, xw, R, bh, h0, c0, lengths, rmask=None, training=True, n_threads=None)
        -> (H_all, (h_T, c_T), cache)
    backward(cell, cache, dH_all, dh_T, dc_T, n_threads=None)
        -> (dxw, dR, dbh, dh0, dc0)
    step(cell, xw_t, R, bh, h, c, rmask=None) -> (h_new, c_new)

Shapes (time-major; ``G`` gates, see :mod:`fastseq.cells`)::

    xw      [T, B, G*H]   x @ W + b_ih for every step (computed by the layer, one GEMM)
    R       [H, G*H]      weight_hh.T
    bh      [G*H]         bias_hh
    h0, c0  [B, H]        initial state (c0 is None except for the LSTM)
    lengths [B]           ints in [0, T]; step t of sequence b runs iff t < lengths[b]
    rmask   [B, H]        optional recurrent-dropout mask (already scaled)
    H_all   [T, B, H]     OUT: output of every step, zero where t >= lengths[b]
    h_T,c_T [B, H]        OUT: state after each sequence's last step (h0 where length 0)

Backward takes gradients on any of the outputs (``None`` means zero) and returns
``dxw [T, B, G*H]`` (zero at padded steps; also the gradient of ``b_ih`` summed over rows),
``dR [H, G*H]``, ``dbh [G*H]``, ``dh0 [B, H]`` and ``dc0 [B, H]`` (``None`` if no cell state).
"""
from __future__ import annotations

import numpy as np

from ..cells import CellSpec

name = "reference"


# ---------------------------------------------------------------- activations
def sigmoid(a):
    # tanh form: no overflow for large |a|
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def activate(activation, a):
    if activation == "tanh":
        return np.tanh(a)
    return np.maximum(a, 0.0)


def activation_grad_from_output(activation, y):
    """d act / d a, written in terms of the output y = act(a)."""
    if activation == "tanh":
        return 1.0 - y * y
    return (y > 0.0).astype(y.dtype)


def sigmoid_grad_from_output(y):
    return y * (1.0 - y)


# ---------------------------------------------------------------- one step, forward
def _step_forward(cell, xw_t, R, bh, h_prev, c_prev, mask):
    """One step for every row. Returns (h_new, c_new, gates, aux).

    gates [B, G*H]: post-activation gates (RNN: h_new; LSTM: i f g o; GRU: r z n)
    aux   [B, H]:   LSTM: act(c_new); GRU reset_after: hw_n = (h*m) @ R_n + b_hn; else None
    """
    H = h_prev.shape[1]
    h_masked = h_prev * mask
    if cell.kind == "rnn":
        h_new = activate(cell.activation, xw_t + h_masked @ R + bh)
        return h_new, None, h_new, None
    if cell.kind == "lstm":
        a = xw_t + h_masked @ R + bh
        i = sigmoid(a[:, 0 * H:1 * H])
        f = sigmoid(a[:, 1 * H:2 * H])
        g = activate(cell.activation, a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:4 * H])
        c_new = f * c_prev + i * g
        c_act = activate(cell.activation, c_new)
        h_new = o * c_act
        return h_new, c_new, np.concatenate([i, f, g, o], axis=1), c_act
    # GRU
    if cell.reset_after:
        hw = h_masked @ R + bh
        r = sigmoid(xw_t[:, 0:H] + hw[:, 0:H])
        z = sigmoid(xw_t[:, H:2 * H] + hw[:, H:2 * H])
        hw_n = hw[:, 2 * H:3 * H]
        n = activate(cell.activation, xw_t[:, 2 * H:] + r * hw_n)
        aux = hw_n
    else:
        hw_rz = h_masked @ R[:, :2 * H] + bh[:2 * H]
        r = sigmoid(xw_t[:, 0:H] + hw_rz[:, 0:H])
        z = sigmoid(xw_t[:, H:2 * H] + hw_rz[:, H:2 * H])
        n = activate(cell.activation,
                     xw_t[:, 2 * H:] + (r * h_masked) @ R[:, 2 * H:] + bh[2 * H:])
        aux = None
    h_new = (1.0 - z) * n + z * h_prev
    return h_new, None, np.concatenate([r, z, n], axis=1), aux


# ---------------------------------------------------------------- one step, backward
def _step_backward(cell, R, dh, dc, gates, aux, h_prev, c_prev, mask):
    """Gradients of one step. dh/dc: gradient on the step's new state.

    Returns (d_xw [B, G*H], d_hw [B, G*H], h_for_dR [B, H] or list, dh_prev, dc_prev), where
    dR receives ``h_for_dR.T @ d_hw`` (the classic GRU returns two pieces, see below).
    """
    H = h_prev.shape[1]
    h_masked = h_prev * mask
    if cell.kind == "rnn":
        da = dh * activation_grad_from_output(cell.activation, gates)
        dh_prev = (da @ R.T) * mask
        return da, da, h_masked, dh_prev, None
    if cell.kind == "lstm":
        i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
        c_act = aux
        d_o = dh * c_act
        dc_total = dc + dh * o * activation_grad_from_output(cell.activation, c_act)
        d_i = dc_total * g
        d_f = dc_total * c_prev
        d_g = dc_total * i
        dc_prev = dc_total * f
        da = np.concatenate([
            d_i * sigmoid_grad_from_output(i),
            d_f * sigmoid_grad_from_output(f),
            d_g * activation_grad_from_output(cell.activation, g),
            d_o * sigmoid_grad_from_output(o),
        ], axis=1)
        dh_prev = (da @ R.T) * mask
        return da, da, h_masked, dh_prev, dc_prev
    # GRU
    r, z, n = (gates[:, k * H:(k + 1) * H] for k in range(3))
    d_n = dh * (1.0 - z)
    d_z = dh * (h_prev - n)
    da_n = d_n * activation_grad_from_output(cell.activation, n)
    da_z = d_z * sigmoid_grad_from_output(z)
    if cell.reset_after:
        hw_n = aux
        da_r = da_n * hw_n * sigmoid_grad_from_output(r)
        d_xw = np.concatenate([da_r, da_z, da_n], axis=1)
        d_hw = np.concatenate([da_r, da_z, da_n * r], axis=1)
        dh_prev = dh * z + (d_hw @ R.T) * mask
        return d_xw, d_hw, h_masked, dh_prev, None
    R_n = R[:, 2 * H:]
    d_rh = da_n @ R_n.T                       # gradient on (r * h_masked)
    da_r = d_rh * h_masked * sigmoid_grad_from_output(r)
    d_xw = np.concatenate([da_r, da_z, da_n], axis=1)
    dh_masked = d_xw[:, :2 * H] @ R[:, :2 * H].T + d_rh * r
    dh_prev = dh * z + dh_masked * mask
    # dR: the first 2H columns come from h_masked, the last H from r * h_masked
    return d_xw, d_xw, (h_masked, r * h_masked), dh_prev, None


# ---------------------------------------------------------------- whole sequences
def _check_cell(cell):
    if not isinstance(cell, CellSpec):
        raise TypeError(f"cell must be a CellSpec, got {type(cell).__name__}")


def _as64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def forward(cell, xw, R, bh, h0, c0=None, lengths=None, rmask=None, training=True,
            n_threads=None):
    """Run the cell over ``T`` steps; see the module docstring for shapes."""
    _check_cell(cell)
    xw, R, bh, h0, c0 = map(_as64, (xw, R, bh, h0, c0))
    T, B, GH = xw.shape
    H = R.shape[0]
    if lengths is None:
        lengths = np.full(B, T, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    mask = np.ones((B, H)) if rmask is None else _as64(rmask)
    if cell.has_cell_state and c0 is None:
        c0 = np.zeros((B, H))

    hs = np.zeros((T + 1, B, H))            # hs[t] = state before step t
    cs = np.zeros((T + 1, B, H)) if cell.has_cell_state else None
    gates = np.zeros((T, B, GH))
    aux = np.zeros((T, B, H))
    H_all = np.zeros((T, B, H))
    h = h0.copy()
    c = c0.copy() if cell.has_cell_state else None
    hs[0] = h
    if cs is not None:
        cs[0] = c
    for t in range(T):
        active = (t < lengths)[:, None]
        h_new, c_new, g_t, aux_t = _step_forward(cell, xw[t], R, bh, h, c, mask)
        gates[t] = np.where(active, g_t, 0.0)
        if aux_t is not None:
            aux[t] = np.where(active, aux_t, 0.0)
        H_all[t] = np.where(active, h_new, 0.0)
        h = np.where(active, h_new, h)
        if c is not None:
            c = np.where(active, c_new, c)
            cs[t + 1] = c
        hs[t + 1] = h
    cache = dict(hs=hs, cs=cs, gates=gates, aux=aux, lengths=lengths, mask=mask, R=R)
    return H_all, (h, c), cache


def backward(cell, cache, dH_all=None, dh_T=None, dc_T=None, n_threads=None):
    """BPTT through a :func:`forward` call; see the module docstring for shapes."""
    _check_cell(cell)
    hs, cs, gates, aux = cache["hs"], cache["cs"], cache["gates"], cache["aux"]
    lengths, mask, R = cache["lengths"], cache["mask"], cache["R"]
    T, B, GH = gates.shape
    H = R.shape[0]
    dh = np.zeros((B, H)) if dh_T is None else _as64(dh_T).copy()
    dc = np.zeros((B, H)) if dc_T is None else _as64(dc_T).copy()
    dH_all = None if dH_all is None else _as64(dH_all)

    dxw = np.zeros((T, B, GH))
    dR = np.zeros((H, GH))
    dbh = np.zeros(GH)
    for t in range(T - 1, -1, -1):
        active = (t < lengths)[:, None]
        dh_t = dh if dH_all is None else dh + np.where(active, dH_all[t], 0.0)
        c_prev = cs[t] if cs is not None else None
        d_xw, d_hw, h_for_dR, dh_prev, dc_prev = _step_backward(
            cell, R, dh_t, dc, gates[t], aux[t], hs[t], c_prev, mask)
        d_xw = np.where(active, d_xw, 0.0)
        d_hw = np.where(active, d_hw, 0.0)
        dxw[t] = d_xw
        if isinstance(h_for_dR, tuple):          # classic GRU: two products
            h_masked, rh = h_for_dR
            dR[:, :2 * H] += h_masked.T @ d_hw[:, :2 * H]
            dR[:, 2 * H:] += rh.T @ d_hw[:, 2 * H:]
        else:
            dR += h_for_dR.T @ d_hw
        dbh += d_hw.sum(axis=0)
        dh = np.where(active, dh_prev, dh_t)
        if cs is not None:
            dc = np.where(active, dc_prev, dc)
    return dxw, dR, dbh, dh, (dc if cs is not None else None)


def step(cell, xw_t, R, bh, h, c=None, rmask=None):
    """One step for streaming inference. xw_t [B, G*H], h/c [B, H] -> (h_new, c_new)."""
    _check_cell(cell)
    xw_t, R, bh, h, c = map(_as64, (xw_t, R, bh, h, c))
    if cell.has_cell_state and c is None:
        c = np.zeros_like(h)
    mask = np.ones_like(h) if rmask is None else _as64(rmask)
    h_new, c_new, _, _ = _step_forward(cell, xw_t, R, bh, h, c, mask)
    return h_new, c_new
