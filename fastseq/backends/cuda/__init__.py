"""numba.cuda backend: the recurrence of every cell on an NVIDIA GPU.

Same interface as :mod:`fastseq.backends.reference` (``forward``, ``backward``,
``step``). Importing this package raises :class:`~fastseq.backends.BackendUnavailable`
when numba.cuda cannot run here (no GPU, no driver) and the CUDA simulator is off, so
``get_backend("cuda")`` fails with a clear message while ``import fastseq`` never touches
CUDA. Set ``NUMBA_ENABLE_CUDASIM=1`` before Python starts to run the kernels on the CPU
under Numba's simulator (slow; for tests).

Layout (one job per module; see docs/gpu.md for the design):

* ``config``       launch settings (threads per block, GEMM tile) read at launch time
* ``launch``       kernel compilation cache, 1-D launches
* ``gemm``         tiled shared-memory GEMM, deterministic column sum (bias gradient)
* ``activations``  device functions per dtype and activation
* ``common``       state init, shared state-gradient kernel, dR/dbh over all T*B rows
* ``rnn``, ``lstm``, ``gru``  pointwise kernels per cell, forward and backward side by side
* ``recurrence``   workspaces and the time loop: forward / backward / step
"""
from __future__ import annotations

from .. import BackendUnavailable

try:
    from numba import cuda as _cuda
    from numba.core import config as _numba_config
except ImportError as exc:  # pragma: no cover - numba is a hard dependency
    raise BackendUnavailable(f"backend 'cuda' needs numba.cuda: {exc}") from exc

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)


def _gpu_present():
    try:
        return bool(_cuda.is_available())
    except Exception:  # noqa: BLE001 - any driver failure means "not here"
        return False


if not SIMULATOR and not _gpu_present():
    raise BackendUnavailable(
        "backend 'cuda' is not available here: numba.cuda found no usable NVIDIA GPU or "
        "driver (libcuda). Use backend='numba' or 'cython' on the CPU, or set "
        "NUMBA_ENABLE_CUDASIM=1 before starting Python to run the kernels in Numba's "
        "(slow) CUDA simulator.")

from . import config  # noqa: E402
from .recurrence import backward, forward, step  # noqa: E402

name = "cuda"

__all__ = ["name", "forward", "backward", "step", "config", "SIMULATOR"]
