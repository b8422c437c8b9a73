"""Kernel compilation cache and launch geometry.

Every kernel of this package is a plain Python function built by a factory (per dtype,
cell and launch setting) and compiled here by ``cuda.jit`` on first use. Keeping the
Python function around lets ``tests/test_cuda_ptx.py`` compile the very same source with
``cuda.compile_ptx`` for a real architecture on machines without a GPU.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

import numpy as np
from numba import cuda
from numba.core import config as numba_config

from . import config

_compiled = {}


def kernel(pyfunc):
    """The ``cuda.jit`` dispatcher of a kernel source, compiled once per source."""
    dispatcher = _compiled.get(pyfunc)
    if dispatcher is None:
        dispatcher = cuda.jit(fastmath=config.CUDA_FASTMATH)(pyfunc)
        _compiled[pyfunc] = dispatcher
    return dispatcher


def launch_1d(pyfunc, n, *args):
    """Launch ``pyfunc`` over ``n`` threads in blocks of ``config.THREADS_PER_BLOCK``."""
    if n <= 0:
        return
    tpb = int(config.THREADS_PER_BLOCK)
    kernel(pyfunc)[(n + tpb - 1) // tpb, tpb](*args)


def dtype_of(array):
    """np.float32 or np.float64: the scalar type kernels are built for."""
    return np.float32 if np.dtype(array.dtype) == np.float32 else np.float64


def on_device(a):
    """True for numba device arrays (real or simulated) and ``__cuda_array_interface__``
    objects (CuPy, PyTorch CUDA tensors)."""
    return hasattr(a, "copy_to_host") or hasattr(a, "__cuda_array_interface__")


def as_device_array(a):
    """A numba device array viewing ``a`` (which :func:`on_device` accepted)."""
    return a if hasattr(a, "copy_to_host") else cuda.as_cuda_array(a)


@contextmanager
def simulator_switch_interval():
    """Lower the interpreter's switch interval while kernels run in the CUDA simulator
    (see ``config.SIMULATOR_SWITCH_INTERVAL``); a no-op on a real GPU."""
    if not numba_config.ENABLE_CUDASIM:
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(float(config.SIMULATOR_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _make_simulator_shared_arrays_thread_safe():
    """Work around a race in Numba's CUDA simulator.

    ``FakeCUDAShared.array`` looks up the block's allocation for the calling line and
    creates it if missing, without a lock. When two simulated threads of a block interleave
    there, each gets its own array, and a thread then computes with a private "shared"
    tile that no other thread fills: the GEMM returned wrong numbers now and then (seen in
    tests/test_parity.py, more often with the short switch interval set above). The
    replacement does the same lookup under a lock, keyed like the original by the caller's
    file and line. Only ever applied under NUMBA_ENABLE_CUDASIM.
    """
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    cls = kernelapi.FakeCUDAShared
    if getattr(cls, "_fastseq_thread_safe", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype):
        if shape == 0:                      # dynamic shared memory: one buffer, no race
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    cls.array = array
    cls._fastseq_thread_safe = True


if numba_config.ENABLE_CUDASIM:
    _make_simulator_shared_arrays_thread_safe()
