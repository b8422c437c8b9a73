"""The Numba CPU engine: fused forward and BPTT for RNN, LSTM and GRU.

Same interface as :mod:`fastseq.backends.reference` (``forward``, ``backward``, ``step``).
Kernels live one cell per module (:mod:`.rnn`, :mod:`.lstm`, :mod:`.gru`); the mechanics
shared by all cells (length sorting, batch chunks per thread, BLAS threads, weight-gradient
reductions) are in :mod:`._loop`, the per-step GEMM in :mod:`.blas`, the vectorizable
activations in :mod:`.activations`; with fastseq_ext built, the per-step products and
the layers' big products (``matmul_into``) run on its GEMM. float32 stays float32;
float64 matches the reference to ~1e-15.
"""
from __future__ import annotations

from ._engine import backward, forward, step

name = "numba"

# the kernels release the GIL, so callers may run independent recurrences (the two
# directions of a bidirectional layer) concurrently on threads
releases_gil = True

# forward(..., need_grad=False) keeps one time slot of the saved buffers (inference)
supports_need_grad = True

# backward(need_dh0=False) skips step 0's dh GEMM when the initial state needs no gradient
supports_need_dh0 = True

__all__ = ["name", "forward", "backward", "step", "releases_gil", "supports_need_grad",
           "supports_need_dh0"]

# the layers' input projections and input / input-weight gradients (and the GRU's
# input-bias sums) on the GEMM the kernels call at every step, when fastseq_ext is built
# (else the layers use NumPy): see fastseq.backends._own_gemm
try:
    from .._own_gemm import column_sums, matmul_into
except ImportError:  # pragma: no cover - depends on the build
    supports_dR_out = False
else:
    # backward(..., dR_out=) computes the recurrent weight's gradient in the weight's own
    # layout, into the caller's array (e.g. the flat gradient buffer: no transposed copy)
    supports_dR_out = True
    __all__ += ["matmul_into", "column_sums", "supports_dR_out"]
