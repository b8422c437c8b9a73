"""Launch settings of the CUDA backend, read at launch time (never frozen at import).

Tests patch these small (stumpy's habit) so that tiny inputs still spread over several
blocks and the block-boundary code runs under the simulator::

    monkeypatch.setattr(fastseq.backends.cuda.config, "THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(fastseq.backends.cuda.config, "TILE", 2)

Kernels are built per (cell, dtype, setting) by the factories in this package and cached,
so a patched value gives freshly compiled kernels rather than stale ones.
"""
from __future__ import annotations

from numba.core import config as _numba_config

# Under NUMBA_ENABLE_CUDASIM every CUDA thread is a Python thread, so the defaults there
# are small (fewer idle threads to start and poll; several blocks even for tiny inputs).
_SIM = bool(_numba_config.ENABLE_CUDASIM)

# Threads per block of the 1-D pointwise kernels (one thread per (row, unit) element)
# and of the column reductions.
THREADS_PER_BLOCK = 16 if _SIM else 128

# Edge of the square shared-memory tile of the GEMM kernels: TILE x TILE threads per
# block, each computing one output element.
TILE = 4 if _SIM else 16

# Row chunks of the deterministic column sum (bias gradient): each block of the first
# pass sums its own chunk of rows; the second pass adds the chunks in a fixed order.
REDUCE_CHUNKS = 4 if _SIM else 32

# Largest batch tile x hidden size handled by the persistent (one launch per sequence)
# kernels; above it the step-wise path (tiled GEMM + fused pointwise per step) runs.
# 0 switches the persistent path off.
PERSISTENT_MAX_HIDDEN = 128
PERSISTENT_MAX_BATCH = 16

# numba.cuda takes only a bool for fastmath (no per-flag set as on the CPU). It stays off:
# fastmath maps tanh/exp to the approximate hardware instructions (~1e-3 relative in
# float32 on some architectures), which would break the 1e-5 parity with the reference.
CUDA_FASTMATH = False

# Under NUMBA_ENABLE_CUDASIM the simulator runs each CUDA thread as a Python thread and
# its syncthreads() is a polling loop that holds the GIL for a whole switch interval
# (5 ms by default). For the duration of a backend call the interval is lowered to this
# (seconds), which made the simulated GEMMs 5-7x faster; it is restored afterwards.
# Ignored on a real GPU.
SIMULATOR_SWITCH_INTERVAL = 5e-5
