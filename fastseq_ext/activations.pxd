"""Pointwise activations, inlined into every kernel that cimports them.

float32: a rational minimax ``tanh`` (Eigen's ``generic_fast_tanh_float``: odd degree-13
numerator over even degree-6 denominator, input clamped to +-7.90531110763549805, where
the float32 result is already +-1), max error ~2.4e-7 against float64, branch-free so gcc
can vectorize the loops that call it. ``sigmoid(x) = 0.5 * tanh(x / 2) + 0.5``.
float64: libm ``tanh`` (exact to the last bit or so), sigmoid through the same identity.

NaN propagates through every function (the clamps and the ReLU are written so that a
comparison with NaN is false and leaves the NaN in place).

Activation codes: ``ACT_TANH = 0``, ``ACT_RELU = 1``.
"""
from cython cimport floating
from libc.math cimport tanh as libm_tanh

cdef enum:
    ACT_TANH = 0
    ACT_RELU = 1


cdef extern from "_act.h" nogil:
    float fs_tanh_f32(float x)      # the rational minimax tanh (one definition, in C)


cdef inline float tanh_f32(float x) noexcept nogil:
    return fs_tanh_f32(x)


cdef inline floating tanh_fast(floating x) noexcept nogil:
    if floating is float:
        return tanh_f32(x)
    else:
        return libm_tanh(x)


cdef inline floating sigmoid_fast(floating x) noexcept nogil:
    if floating is float:
        return <float>0.5 * tanh_f32(<float>0.5 * x) + <float>0.5
    else:
        return 0.5 * libm_tanh(0.5 * x) + 0.5   # double: plain literals are exact


cdef inline floating relu(floating x) noexcept nogil:
    # NaN <= 0 is false: NaN passes through
    if x <= 0:
        return <floating>0
    return x


# ------------------------------------------------------------ in-place loops over n values
# One loop per function, no branch inside: these are the loops gcc vectorizes.
cdef inline void tanh_inplace(floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        x[j] = tanh_fast(x[j])


cdef inline void sigmoid_inplace(floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        x[j] = sigmoid_fast(x[j])


cdef inline void relu_inplace(floating* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(n):
        x[j] = relu(x[j])


cdef inline void activate_inplace(floating* x, Py_ssize_t n, int act) noexcept nogil:
    """x <- act(x) for the cell activation code ``act``."""
    if act == ACT_RELU:
        relu_inplace(x, n)
    else:
        tanh_inplace(x, n)


cdef inline void mul_act_grad(floating* d, const floating* y, Py_ssize_t n,
                              int act) noexcept nogil:
    """d <- d * act'(a), with the derivative written in terms of the output y = act(a)."""
    cdef Py_ssize_t j
    if act == ACT_RELU:
        for j in range(n):
            d[j] = d[j] if y[j] > 0 else <floating>0
    else:
        for j in range(n):
            d[j] = d[j] * (<floating>1 - y[j] * y[j])


cdef inline void mul_sigmoid_grad(floating* d, const floating* y, Py_ssize_t n) noexcept nogil:
    """d <- d * sigmoid'(a) = d * y * (1 - y)."""
    cdef Py_ssize_t j
    for j in range(n):
        d[j] = d[j] * y[j] * (<floating>1 - y[j])


# ------------------------------------------------------------ scalar forms for fused loops
# ``relu`` is loop-invariant where these are called: gcc unswitches the loop on it, so each
# version vectorizes.
cdef inline floating act(floating x, bint relu) noexcept nogil:
    """The cell activation: ReLU or tanh."""
    if relu:
        return <floating>0 if x <= 0 else x
    return tanh_fast(x)


cdef inline floating act_grad(floating y, bint relu) noexcept nogil:
    """d act / d a written in terms of the output y = act(a)."""
    if relu:
        return <floating>1 if y > 0 else <floating>0
    return <floating>1 - y * y


cdef inline floating sigmoid_grad(floating y) noexcept nogil:
    """d sigmoid / d a = y * (1 - y), from the output y."""
    return y * (<floating>1 - y)
