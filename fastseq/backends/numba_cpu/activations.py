"""Activations for the Numba kernels, specialised per dtype at compile time.

float32: a rational minimax ``tanh`` (the 13/6-degree form used by Eigen), clamped to
``±7.90531110763549805`` where it rounds to ±1, max error ~2.4e-7 against float64; the
sigmoid is ``0.5 * tanh(0.5 x) + 0.5`` (error ~1.2e-7). Straight-line arithmetic with one
division and no calls, so LLVM vectorizes the loops that use it (AVX2/AVX-512 with
``error_model='numpy'``, see DESIGN.md section 8).

float64: ``np.tanh`` exactly as the reference oracle uses it, so float64 results match
the oracle to ~1e-15.

NaN propagates (the clamps are written ``if x > c`` so a NaN passes through untouched) and
±Inf saturate to ±1, as ``np.tanh`` does. ``relu`` keeps NaN too.

All helpers take the value first; :func:`cst` turns a Python float into the value's dtype
so float32 kernels never promote to float64.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core.extending import overload, register_jitable

from ._jit import FLAGS as NUMBA_FLAGS

_INLINE = dict()   # LLVM inlines these small functions by itself

# Eigen's generic_fast_tanh_float coefficients
_CLAMP = np.float32(7.90531110763549805)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_HALF32 = np.float32(0.5)
_ZERO32 = np.float32(0.0)


@register_jitable
def _tanh32(x):
    if x > _CLAMP:
        x = _CLAMP
    if x < -_CLAMP:
        x = -_CLAMP
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    p = x * p
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return p / q


def tanh(x):
    """tanh in the dtype of ``x`` (rational float32 approximation, exact float64)."""
    raise NotImplementedError("only callable from Numba kernels")


def sigmoid(x):
    """Logistic sigmoid as ``0.5 * tanh(0.5 x) + 0.5`` (no overflow for large |x|)."""
    raise NotImplementedError("only callable from Numba kernels")


def act(x, relu):
    """The cell activation: ``relu(x)`` if ``relu`` else ``tanh(x)``."""
    raise NotImplementedError("only callable from Numba kernels")


def act_grad(y, relu):
    """d act / d a written with the output ``y = act(a)``: ``1 - y*y`` or ``y > 0``."""
    raise NotImplementedError("only callable from Numba kernels")


def sigmoid_grad(y):
    """d sigmoid / d a from the output: ``y * (1 - y)``."""
    raise NotImplementedError("only callable from Numba kernels")


def cst(x, value):
    """``value`` as a constant of ``x``'s dtype (float32 kernels stay float32)."""
    raise NotImplementedError("only callable from Numba kernels")


def _is32(x):
    return x == types.float32


@overload(cst, **_INLINE)
def _cst(x, value):
    if _is32(x):
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)


@overload(tanh, **_INLINE)
def _tanh(x):
    if _is32(x):
        return _tanh32
    return lambda x: np.tanh(x)


@overload(sigmoid, **_INLINE)
def _sigmoid(x):
    if _is32(x):
        def sig32(x):
            return _HALF32 * _tanh32(_HALF32 * x) + _HALF32
        return sig32
    # the reference's exact expression, so float64 matches it bit for bit or nearly
    return lambda x: 0.5 * (1.0 + np.tanh(0.5 * x))


@overload(act, **_INLINE)
def _act(x, relu):
    if _is32(x):
        def act32(x, relu):
            if relu:
                return _ZERO32 if x < _ZERO32 else x
            return _tanh32(x)
        return act32

    def act64(x, relu):
        if relu:
            return 0.0 if x < 0.0 else x
        return np.tanh(x)
    return act64


@overload(act_grad, **_INLINE)
def _act_grad(y, relu):
    if _is32(y):
        one = np.float32(1.0)

        def grad32(y, relu):
            if relu:
                return one if y > _ZERO32 else _ZERO32
            return one - y * y
        return grad32

    def grad64(y, relu):
        if relu:
            return 1.0 if y > 0.0 else 0.0
        return 1.0 - y * y
    return grad64


@overload(sigmoid_grad, **_INLINE)
def _sigmoid_grad(y):
    if _is32(y):
        one = np.float32(1.0)
        return lambda y: y * (one - y)
    return lambda y: y * (1.0 - y)


# ---------------------------------------------------------------- array versions
# x, out: [n]   out = tanh(x) / sigmoid(x)   (for tests and the ns/element measurement)
@njit(**NUMBA_FLAGS)
def tanh_array(x, out):
    for k in range(x.shape[0]):
        out[k] = tanh(x[k])


@njit(**NUMBA_FLAGS)
def sigmoid_array(x, out):
    for k in range(x.shape[0]):
        out[k] = sigmoid(x[k])


@njit(**NUMBA_FLAGS)
def act_array(x, relu, out):
    for k in range(x.shape[0]):
        out[k] = act(x[k], relu)
