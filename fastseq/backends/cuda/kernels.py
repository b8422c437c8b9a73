"""Every kernel source the backend launches for a cell, with explicit argument types.

Used by ``tests/test_cuda_ptx.py`` to compile each kernel with ``cuda.compile_ptx`` for a
real architecture on machines without a GPU (and by anyone who wants to inspect PTX).
Argument types follow from the argument names, which the kernels use consistently:
``t`` is the step (int64), ``lengths`` an int64 vector, every other name a float array
of the kernel's dtype with the rank given in :data:`ARG_RANKS` (layout ``"A"``: views
such as column blocks of ``R`` are passed at run time).
"""
from __future__ import annotations

import inspect

from numba import types

from ...cells import CellSpec
from . import common, config, gru, lstm, persistent, rnn
from .gemm import make_colsum, make_gemm

ARG_RANKS = {
    # vectors
    "bias": 1, "out": 1, "bh": 1,
    # [B, .] matrices and GEMM operands
    "hw": 2, "mask": 2, "h0": 2, "c0": 2, "dh": 2, "dc": 2, "dpart": 2, "drh": 2,
    "A": 2, "B": 2, "C": 2, "X": 2, "partial": 2, "R": 2,
    # [T(+1), B, .] sequences
    "xw": 3, "hs": 3, "hm": 3, "cs": 3, "gates": 3, "aux": 3, "H_all": 3, "rh": 3,
    "dH_all": 3, "dxw": 3, "dhw": 3,
}

# (trans_a, trans_b, with_bias, accumulate) of the products the backend runs
GEMM_FORMS = {
    "gemm_hw": (False, False, True, False),      # h_masked @ R + b_hh
    "gemm_dh": (False, True, False, False),      # d_hw @ R.T
    "gemm_dR": (True, False, False, False),      # h_masked_all.T @ d_hw_all
}


def kernel_sources(cell: CellSpec, dtype, tile=16, shared=True):
    """``{name: python function}`` of every kernel run for ``cell`` in ``dtype``.

    ``shared=False`` leaves out the kernels every cell shares (state init, GEMMs, column
    sums), see :func:`shared_kernel_sources`."""
    if cell.kind == "rnn":
        cell_kernels = rnn.make_kernels(dtype, cell.activation)
    elif cell.kind == "lstm":
        cell_kernels = lstm.make_kernels(dtype, cell.activation)
    else:
        cell_kernels = gru.make_kernels(dtype, cell.activation, cell.reset_after)
    # names ending in "_unit" are device functions (one row and unit of a step), shared by
    # the step-wise and the persistent kernels: they are compiled as part of those
    sources = {f"{cell.name}.{k}": f for k, f in cell_kernels.items()
               if not k.endswith("_unit")}
    sources[f"{cell.name}.sequence"] = persistent.make_sequence_kernel(
        dtype, cell.kind, cell.activation, cell.reset_after,
        int(config.PERSISTENT_MAX_HIDDEN) or 128)
    sources[f"{cell.name}.sequence_backward"] = persistent.make_backward_kernel(
        dtype, cell.kind, cell.activation, cell.reset_after,
        int(config.PERSISTENT_MAX_HIDDEN) or 128)
    if shared:
        sources.update(shared_kernel_sources(dtype, tile))
    return sources


def shared_kernel_sources(dtype, tile=16):
    """``{name: python function}`` of the kernels shared by every cell."""
    sources = {f"common.{k}": f for k, f in common.make_kernels(dtype).items()
               if not k.endswith("_unit")}
    for name, form in GEMM_FORMS.items():
        sources[name] = make_gemm(dtype, tile, *form)
    sources["colsum_partial"], sources["colsum_final"] = make_colsum(dtype)
    return sources


def signature(pyfunc, dtype):
    """The numba argument types of a kernel source, derived from its argument names."""
    scalar = types.float32 if dtype.__name__ == "float32" else types.float64
    argtypes = []
    for arg in inspect.signature(pyfunc).parameters:
        if arg == "t":
            argtypes.append(types.int64)
        elif arg == "lengths":
            argtypes.append(types.Array(types.int64, 1, "A"))
        elif arg in ARG_RANKS:
            argtypes.append(types.Array(scalar, ARG_RANKS[arg], "A"))
        else:
            raise KeyError(f"kernel {pyfunc.__name__}: no type rule for argument {arg!r}")
    return types.void(*argtypes)
