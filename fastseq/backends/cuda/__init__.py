"""numba.cuda backend: the recurrence of every cell on an NVIDIA GPU.

Same interface as :mod:`fastseq.backends.reference` (``forward``, ``backward``,
``step``). The registry loads :mod:`.backend`, which raises
:class:`~fastseq.backends.BackendUnavailable` when numba.cuda cannot run here (no GPU, no
driver) and the CUDA simulator is off, so ``get_backend("cuda")`` fails with a clear
message while ``import fastseq`` never touches CUDA. This package itself imports without
a GPU, so its kernels can be compiled to PTX anywhere (see :mod:`.kernels`). Set
``NUMBA_ENABLE_CUDASIM=1`` before Python starts to run the kernels on the CPU under Numba's
simulator (slow; for tests).

Layout (one job per module; see docs/gpu.md for the design):

* ``config``       launch settings (threads per block, GEMM tile) read at launch time
* ``launch``       kernel compilation cache, 1-D launches
* ``gemm``         tiled shared-memory GEMM, deterministic column sum (bias gradient)
* ``activations``  device functions per dtype and activation
* ``common``       state init, shared state-gradient kernel, dR/dbh over all T*B rows
* ``rnn``, ``lstm``, ``gru``  pointwise kernels per cell, forward and backward side by side
* ``persistent``   forward and BPTT: the whole time loop in one launch (small B, H)
* ``recurrence``   workspaces and the time loop: forward / backward / step
* ``kernels``      every kernel source with its argument types (PTX checks)
* ``backend``      availability check + the interface the registry loads
"""
from __future__ import annotations

name = "cuda"


def __getattr__(attr):
    # forward / backward / step / SIMULATOR come from .backend, which checks the driver
    if attr in ("forward", "backward", "step", "SIMULATOR"):
        from . import backend
        return getattr(backend, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
