"""Run every compiled kernel of fastseq_ext once on a small ragged case (for valgrind).

Used by ``tools/valgrind_ext.sh``; also a plain smoke test: it checks each result against
the float64 reference and exits non-zero on a mismatch. Shapes are tiny and odd on purpose
(ragged, unsorted lengths with 0 and 1, recurrent-dropout masks, 2 threads so the batch is
split into chunks) so that any out-of-bounds row or column index touches unowned memory.
"""
import sys

import numpy as np

from fastseq.backends import cython_cpu, reference
from fastseq.cells import make_cell
from fastseq_ext import activations


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(1.0, np.max(np.abs(b))))


def main():
    rng = np.random.default_rng(0)
    worst = 0.0
    T, B, H = 5, 9, 3
    lengths = np.array([5, 0, 2, 1, 5, 3, 4, 1, 2])
    for name in ("rnn", "rnn_relu", "lstm", "lstm_relu", "gru", "gru_relu", "gru_classic",
                 "gru_classic_relu"):
        cell = make_cell(name)
        G = cell.n_gates
        for dtype in (np.float32, np.float64):
            for masked in (False, True):
                xw = rng.normal(size=(T, B, G * H)).astype(dtype)
                R = (0.5 * rng.normal(size=(H, G * H))).astype(dtype)
                bh = rng.normal(size=G * H).astype(dtype)
                h0 = rng.normal(size=(B, H)).astype(dtype)
                c0 = rng.normal(size=(B, H)).astype(dtype) if cell.has_cell_state else None
                rmask = ((rng.random((B, H)) < 0.7) / 0.7).astype(dtype) if masked else None
                dH = rng.normal(size=(T, B, H)).astype(dtype)
                out = cython_cpu.forward(cell, xw, R, bh, h0, c0, lengths, rmask, n_threads=2)
                grads = cython_cpu.backward(cell, out[2], dH, h0, c0, n_threads=2)
                ref = reference.forward(cell, xw, R, bh, h0, c0, lengths, rmask)
                ref_grads = reference.backward(cell, ref[2], dH, h0, c0)
                worst = max(worst, rel(out[0], ref[0]),
                            *(rel(a, b) for a, b in zip(grads, ref_grads) if a is not None))
                h, c = cython_cpu.step(cell, xw[0], R, bh, h0, c0, rmask)
                h_ref, _ = reference.step(cell, xw[0], R, bh, h0, c0, rmask)
                worst = max(worst, rel(h, h_ref))
    x = rng.normal(size=37).astype(np.float32)
    worst = max(worst, rel(activations.tanh(x), np.tanh(x.astype(np.float64))))
    hc = activations.lstm_cell(rng.normal(size=(5, 12)).astype(np.float32),
                               rng.normal(size=(5, 3)).astype(np.float32), n_threads=2)
    assert all(np.isfinite(a).all() for a in hc)
    print(f"fastseq_ext smoke: every kernel ran; worst relative error vs reference {worst:.2e}")
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
