"""Device functions for the cell activations, built per (dtype, activation).

Derivatives are written in terms of the forward output (``tanh' = 1 - y^2``,
``sigmoid' = y (1 - y)``), as in the reference, so the backward kernels read the
post-activation gates stored by the forward kernels. Every constant is a value of the
kernel's dtype, so float32 kernels never promote to float64.
"""
from __future__ import annotations

import math
from functools import lru_cache

from numba import cuda

from . import config


@lru_cache(maxsize=None)
def make_activations(dtype, activation):
    """Return ``(act, act_grad, sigmoid, sigmoid_grad)`` device functions for ``dtype``."""
    zero, half, one = dtype(0.0), dtype(0.5), dtype(1.0)
    jit = cuda.jit(device=True, fastmath=config.CUDA_FASTMATH)

    @jit
    def sigmoid(a):
        # tanh form, as the reference: no overflow for large |a|
        return half * (one + math.tanh(half * a))

    @jit
    def sigmoid_grad(y):
        return y * (one - y)

    if activation == "tanh":
        @jit
        def act(a):
            return math.tanh(a)

        @jit
        def act_grad(y):
            return one - y * y
    elif activation == "relu":
        @jit
        def act(a):
            return a if a > zero else zero

        @jit
        def act_grad(y):
            return one if y > zero else zero
    else:  # pragma: no cover - CellSpec validates the name
        raise ValueError(f"unknown activation {activation!r}")
    return act, act_grad, sigmoid, sigmoid_grad
