"""Persistent forward kernels: the whole time loop in one launch, one block per batch row.

For small batch and hidden sizes a step's arithmetic takes well under the ~3-5 us of a
kernel launch, so the step-wise path (GEMM + pointwise per step) is launch-bound. Rows of a
batch are independent in the recurrence, so block ``b`` runs all ``T`` steps of row ``b``
by itself: its masked state ``h_masked`` sits in shared memory, each thread computes the
``G`` recurrent products of its units (``R`` is read coalesced, from L1/L2 after the first
step) and then the same per-unit cell function as the step-wise kernel (``forward_unit``
of :mod:`.rnn`, :mod:`.lstm`, :mod:`.gru`), so both paths share the cell math and write the
same cache. Two ``__syncthreads()`` per step; no grid-wide synchronisation.

Each product is summed over ``k`` in the same order as the GEMM and the bias is added last,
as in the step-wise path.

The backward twin runs BPTT the same way: block ``b`` walks the steps of row ``b`` in
reverse, each thread calling the step-wise path's per-unit gradient functions, with the
row's gate gradients in shared memory for ``dh_prev = (d_gates @ R.T) * mask`` (summed in
the GEMM's order). ``dR`` and ``dbh`` stay one GEMM and one reduction over all ``T*B``
rows after the loop (:mod:`.common`).

Used when ``H <= config.PERSISTENT_MAX_HIDDEN`` (the size of the shared buffers) and
``B <= config.PERSISTENT_MAX_BATCH``.
"""
from __future__ import annotations

from functools import lru_cache

from numba import cuda

from . import common, config, gru, lstm, rnn
from .launch import kernel


@lru_cache(maxsize=None)
def make_sequence_kernel(dtype, kind, activation, reset_after, max_hidden):
    """Kernel source running all steps of one row per block, for one cell."""
    zero = dtype(0.0)

    if kind == "rnn":
        unit = rnn.make_kernels(dtype, activation)["forward_unit"]

        # xw: [T, B, H]; R: [H, H]; bh: [H]; lengths: [B]; mask: [B, H]
        # hs, hm: [T+1, B, H] (row 0 in, rows 1.. OUT); gates, H_all: [T, B, H] OUT
        def rnn_sequence(xw, R, bh, lengths, mask, hs, hm, gates, H_all):
            hm_s = cuda.shared.array(max_hidden, dtype)
            b = cuda.blockIdx.x
            tid = cuda.threadIdx.x
            nt = cuda.blockDim.x
            T = xw.shape[0]
            H = mask.shape[1]
            for k in range(tid, H, nt):
                hm_s[k] = hm[0, b, k]
            cuda.syncthreads()
            for t in range(T):
                for j in range(tid, H, nt):
                    a = zero
                    for k in range(H):
                        a += hm_s[k] * R[k, j]
                    unit(t, b, j, a + bh[j], xw, lengths, mask, hs, hm, gates, H_all)
                cuda.syncthreads()
                for k in range(tid, H, nt):
                    hm_s[k] = hm[t + 1, b, k]
                cuda.syncthreads()

        return rnn_sequence

    if kind == "lstm":
        unit = lstm.make_kernels(dtype, activation)["forward_unit"]

        # xw: [T, B, 4H]; R: [H, 4H]; bh: [4H]; lengths: [B]; mask: [B, H]
        # hs, hm, cs: [T+1, B, H] (row 0 in, rows 1.. OUT); gates: [T, B, 4H] OUT
        # aux, H_all: [T, B, H] OUT
        def lstm_sequence(xw, R, bh, lengths, mask, hs, hm, cs, gates, aux, H_all):
            hm_s = cuda.shared.array(max_hidden, dtype)
            b = cuda.blockIdx.x
            tid = cuda.threadIdx.x
            nt = cuda.blockDim.x
            T = xw.shape[0]
            H = mask.shape[1]
            for k in range(tid, H, nt):
                hm_s[k] = hm[0, b, k]
            cuda.syncthreads()
            for t in range(T):
                for j in range(tid, H, nt):
                    a_i = zero
                    a_f = zero
                    a_g = zero
                    a_o = zero
                    for k in range(H):
                        h_k = hm_s[k]
                        a_i += h_k * R[k, j]
                        a_f += h_k * R[k, H + j]
                        a_g += h_k * R[k, 2 * H + j]
                        a_o += h_k * R[k, 3 * H + j]
                    unit(t, b, j, a_i + bh[j], a_f + bh[H + j], a_g + bh[2 * H + j],
                         a_o + bh[3 * H + j], xw, lengths, mask, hs, hm, cs, gates, aux,
                         H_all)
                cuda.syncthreads()
                for k in range(tid, H, nt):
                    hm_s[k] = hm[t + 1, b, k]
                cuda.syncthreads()

        return lstm_sequence

    kernels = gru.make_kernels(dtype, activation, reset_after)
    if reset_after:
        unit = kernels["forward_unit"]

        # xw: [T, B, 3H]; R: [H, 3H]; bh: [3H]; lengths: [B]; mask: [B, H]
        # hs, hm: [T+1, B, H] (row 0 in, rows 1.. OUT); gates: [T, B, 3H] OUT
        # aux, H_all: [T, B, H] OUT
        def gru_sequence(xw, R, bh, lengths, mask, hs, hm, gates, aux, H_all):
            hm_s = cuda.shared.array(max_hidden, dtype)
            b = cuda.blockIdx.x
            tid = cuda.threadIdx.x
            nt = cuda.blockDim.x
            T = xw.shape[0]
            H = mask.shape[1]
            for k in range(tid, H, nt):
                hm_s[k] = hm[0, b, k]
            cuda.syncthreads()
            for t in range(T):
                for j in range(tid, H, nt):
                    a_r = zero
                    a_z = zero
                    a_n = zero
                    for k in range(H):
                        h_k = hm_s[k]
                        a_r += h_k * R[k, j]
                        a_z += h_k * R[k, H + j]
                        a_n += h_k * R[k, 2 * H + j]
                    unit(t, b, j, a_r + bh[j], a_z + bh[H + j], a_n + bh[2 * H + j], xw,
                         lengths, mask, hs, hm, gates, aux, H_all)
                cuda.syncthreads()
                for k in range(tid, H, nt):
                    hm_s[k] = hm[t + 1, b, k]
                cuda.syncthreads()

        return gru_sequence

    gates_unit = kernels["classic_gates_unit"]
    candidate_unit = kernels["classic_candidate_unit"]

    # xw: [T, B, 3H]; R: [H, 3H]; bh: [3H]; lengths: [B]; mask: [B, H]
    # hs, hm: [T+1, B, H] (row 0 in, rows 1.. OUT); gates: [T, B, 3H] OUT
    # rh: [T, B, H] OUT r * h_masked; H_all: [T, B, H] OUT
    def gru_classic_sequence(xw, R, bh, lengths, mask, hs, hm, gates, rh, H_all):
        hm_s = cuda.shared.array(max_hidden, dtype)
        rh_s = cuda.shared.array(max_hidden, dtype)
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        T = xw.shape[0]
        H = mask.shape[1]
        for k in range(tid, H, nt):
            hm_s[k] = hm[0, b, k]
        cuda.syncthreads()
        for t in range(T):
            for j in range(tid, H, nt):
                a_r = zero
                a_z = zero
                for k in range(H):
                    h_k = hm_s[k]
                    a_r += h_k * R[k, j]
                    a_z += h_k * R[k, H + j]
                gates_unit(t, b, j, a_r + bh[j], a_z + bh[H + j], xw, lengths, hm, gates, rh)
            cuda.syncthreads()
            for k in range(tid, H, nt):
                rh_s[k] = rh[t, b, k]
            cuda.syncthreads()
            for j in range(tid, H, nt):
                a_n = zero
                for k in range(H):
                    a_n += rh_s[k] * R[k, 2 * H + j]
                candidate_unit(t, b, j, a_n + bh[2 * H + j], xw, lengths, mask, hs, hm,
                               gates, H_all)
            cuda.syncthreads()
            for k in range(tid, H, nt):
                hm_s[k] = hm[t + 1, b, k]
            cuda.syncthreads()

    return gru_classic_sequence


@lru_cache(maxsize=None)
def make_backward_kernel(dtype, kind, activation, reset_after, max_hidden):
    """Kernel source running BPTT over all steps of one row per block, for one cell."""
    zero = dtype(0.0)
    # shared-array sizes must be compile-time constants: computed here, frozen in closures
    gate_buffer = {"rnn": 1, "lstm": 4, "gru": 3}[kind] * max_hidden
    classic_buffer = 2 * max_hidden

    if kind in ("rnn", "lstm"):
        finish_unit = common.make_kernels(dtype)["finish_state_grad_unit"]

    if kind == "rnn":
        unit = rnn.make_kernels(dtype, activation)["backward_pointwise_unit"]

        # R: [H, H]; gates: [T, B, H]; lengths: [B]; mask: [B, H]; dH_all: [T, B, H]
        # dh: [B, H] in dh_T, OUT dh0; dxw: [T, B, H] OUT
        def rnn_sequence_backward(R, gates, lengths, mask, dH_all, dh, dxw):
            d_s = cuda.shared.array(max_hidden, dtype)
            b = cuda.blockIdx.x
            tid = cuda.threadIdx.x
            nt = cuda.blockDim.x
            T = gates.shape[0]
            H = mask.shape[1]
            for step in range(T):
                t = T - 1 - step
                for j in range(tid, H, nt):
                    unit(t, b, j, gates, lengths, dH_all, dh, dxw)
                cuda.syncthreads()
                for n in range(tid, H, nt):
                    d_s[n] = dxw[t, b, n]
                cuda.syncthreads()
                for k in range(tid, H, nt):
                    acc = zero
                    for n in range(H):
                        acc += d_s[n] * R[k, n]
                    finish_unit(t, b, k, acc, lengths, mask, dh)
                cuda.syncthreads()

        return rnn_sequence_backward

    if kind == "lstm":
        unit = lstm.make_kernels(dtype, activation)["backward_pointwise_unit"]

        # R: [H, 4H]; gates: [T, B, 4H]; aux: [T, B, H]; cs: [T+1, B, H]; lengths: [B]
        # mask: [B, H]; dH_all: [T, B, H]; dh, dc: [B, H] in at T, OUT at 0
        # dxw: [T, B, 4H] OUT
        def lstm_sequence_backward(R, gates, aux, cs, lengths, mask, dH_all, dh, dc, dxw):
            d_s = cuda.shared.array(gate_buffer, dtype)
            b = cuda.blockIdx.x
            tid = cuda.threadIdx.x
            nt = cuda.blockDim.x
            T = gates.shape[0]
            H = mask.shape[1]
            GH = gates.shape[2]
            for step in range(T):
                t = T - 1 - step
                for j in range(tid, H, nt):
                    unit(t, b, j, gates, aux, cs, lengths, dH_all, dh, dc, dxw)
                cuda.syncthreads()
                for n in range(tid, GH, nt):
                    d_s[n] = dxw[t, b, n]
                cuda.syncthreads()
                for k in range(tid, H, nt):
                    acc = zero
                    for n in range(GH):
                        acc += d_s[n] * R[k, n]
                    finish_unit(t, b, k, acc, lengths, mask, dh)
                cuda.syncthreads()

        return lstm_sequence_backward

    kernels = gru.make_kernels(dtype, activation, reset_after)
    if reset_after:
        unit = kernels["backward_pointwise_unit"]
        finish_unit = kernels["finish_state_grad_unit"]

        # R: [H, 3H]; gates: [T, B, 3H]; aux: [T, B, H]; hs: [T+1, B, H]; lengths: [B]
        # mask: [B, H]; dH_all: [T, B, H]; dh: [B, H] in dh_T, OUT dh0
        # dxw, dhw: [T, B, 3H] OUT
        def gru_sequence_backward(R, gates, aux, hs, lengths, mask, dH_all, dh, dxw, dhw):
            d_s = cuda.shared.array(gate_buffer, dtype)
            b = cuda.blockIdx.x
            tid = cuda.threadIdx.x
            nt = cuda.blockDim.x
            T = gates.shape[0]
            H = mask.shape[1]
            GH = gates.shape[2]
            for step in range(T):
                t = T - 1 - step
                for j in range(tid, H, nt):
                    unit(t, b, j, gates, aux, hs, lengths, dH_all, dh, dxw, dhw)
                cuda.syncthreads()
                for n in range(tid, GH, nt):
                    d_s[n] = dhw[t, b, n]
                cuda.syncthreads()
                for k in range(tid, H, nt):
                    acc = zero
                    for n in range(GH):
                        acc += d_s[n] * R[k, n]
                    finish_unit(t, b, k, acc, gates, lengths, mask, dh)
                cuda.syncthreads()

        return gru_sequence_backward

    zn_unit = kernels["classic_backward_zn_unit"]
    r_unit = kernels["classic_backward_r_unit"]
    finish_unit = kernels["classic_finish_state_grad_unit"]

    # R: [H, 3H]; gates: [T, B, 3H]; hs, hm: [T+1, B, H]; lengths: [B]; mask: [B, H]
    # dH_all: [T, B, H]; dh: [B, H] in dh_T, OUT dh0; drh: [B, H] scratch (da_n @ R_n.T)
    # dxw: [T, B, 3H] OUT
    def gru_classic_sequence_backward(R, gates, hs, hm, lengths, mask, dH_all, dh, drh, dxw):
        d_s = cuda.shared.array(classic_buffer, dtype)
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        T = gates.shape[0]
        H = mask.shape[1]
        for step in range(T):
            t = T - 1 - step
            for j in range(tid, H, nt):
                zn_unit(t, b, j, gates, hs, lengths, dH_all, dh, dxw)
            cuda.syncthreads()
            for n in range(tid, H, nt):                 # da_n
                d_s[n] = dxw[t, b, 2 * H + n]
            cuda.syncthreads()
            for k in range(tid, H, nt):
                acc = zero
                for n in range(H):
                    acc += d_s[n] * R[k, 2 * H + n]
                drh[b, k] = acc
                r_unit(t, b, k, acc, gates, hm, lengths, dxw)
            cuda.syncthreads()
            for n in range(tid, 2 * H, nt):             # da_r, da_z
                d_s[n] = dxw[t, b, n]
            cuda.syncthreads()
            for k in range(tid, H, nt):
                acc = zero
                for n in range(2 * H):
                    acc += d_s[n] * R[k, n]
                finish_unit(t, b, k, acc, drh[b, k], gates, lengths, mask, dh)
            cuda.syncthreads()

    return gru_classic_sequence_backward


def applies(ws):
    """True when the persistent kernel is used for this workspace."""
    max_hidden = int(config.PERSISTENT_MAX_HIDDEN)
    return (max_hidden > 0 and ws.T > 0 and ws.B > 0 and ws.H <= max_hidden
            and ws.B <= int(config.PERSISTENT_MAX_BATCH))


def threads_for(H):
    """Threads per block: a warp multiple covering H, capped by THREADS_PER_BLOCK."""
    warps = (H + 31) // 32
    return max(1, min(int(config.THREADS_PER_BLOCK), 32 * warps))


def forward(ws):
    """All T steps of every row: one launch of B blocks."""
    cell = ws.cell
    src = make_sequence_kernel(ws.dtype, cell.kind, cell.activation, cell.reset_after,
                               int(config.PERSISTENT_MAX_HIDDEN))
    launch = kernel(src)[ws.B, threads_for(ws.H)]
    if cell.kind == "rnn":
        launch(ws.xw, ws.R, ws.bh, ws.lengths, ws.mask, ws.hs, ws.hm, ws.gates, ws.H_all)
    elif cell.kind == "lstm":
        launch(ws.xw, ws.R, ws.bh, ws.lengths, ws.mask, ws.hs, ws.hm, ws.cs, ws.gates,
               ws.aux, ws.H_all)
    elif cell.reset_after:
        launch(ws.xw, ws.R, ws.bh, ws.lengths, ws.mask, ws.hs, ws.hm, ws.gates, ws.aux,
               ws.H_all)
    else:
        launch(ws.xw, ws.R, ws.bh, ws.lengths, ws.mask, ws.hs, ws.hm, ws.gates, ws.rh,
               ws.H_all)


def backward(ws):
    """BPTT over all T steps of every row: one launch of B blocks (dR, dbh come after)."""
    cell = ws.cell
    src = make_backward_kernel(ws.dtype, cell.kind, cell.activation, cell.reset_after,
                               int(config.PERSISTENT_MAX_HIDDEN))
    launch = kernel(src)[ws.B, threads_for(ws.H)]
    if cell.kind == "rnn":
        launch(ws.R, ws.gates, ws.lengths, ws.mask, ws.dH_all, ws.dh, ws.dxw)
    elif cell.kind == "lstm":
        launch(ws.R, ws.gates, ws.aux, ws.cs, ws.lengths, ws.mask, ws.dH_all, ws.dh, ws.dc,
               ws.dxw)
    elif cell.reset_after:
        launch(ws.R, ws.gates, ws.aux, ws.hs, ws.lengths, ws.mask, ws.dH_all, ws.dh, ws.dxw,
               ws.dhw)
    else:
        launch(ws.R, ws.gates, ws.hs, ws.hm, ws.lengths, ws.mask, ws.dH_all, ws.dh, ws.drh,
               ws.dxw)
