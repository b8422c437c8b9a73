"""The cuda engine as the registry loads it: checks that numba.cuda can run here, then
exposes the backend interface (``name``, ``forward``, ``backward``, ``step``).

Importing this module raises :class:`~fastseq.backends.BackendUnavailable` when there is no
usable GPU or driver and the CUDA simulator is off. The kernel modules of this package
import without a GPU (``tests/test_cuda_ptx.py`` compiles them to PTX on CPU machines).
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
