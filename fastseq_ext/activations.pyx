"""Python access to the compiled pointwise functions (for tests and for embedders).

The kernels themselves use the inline versions from ``activations.pxd`` and the fused
row loops of ``_cells.h``; the functions here run exactly that code over NumPy arrays, so
tests can check it against float64 NumPy. Inputs must be float32 or float64; the result has the input's dtype.
"""
import numpy as np

from cython cimport floating

from fastseq_ext._cells cimport lstm_fwd_row
from fastseq_ext.activations cimport ACT_RELU, ACT_TANH, sigmoid_inplace, tanh_inplace


def _as_float_array(x, name):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {x.dtype}")
    return x


def _act_code(activation):
    if activation == "tanh":
        return ACT_TANH
    if activation == "relu":
        return ACT_RELU
    raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")


# x: [n]   out: [n]  # OUT
cdef void _tanh_1d(const floating[::1] x, floating[::1] out) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(x.shape[0]):
        out[j] = x[j]
    if x.shape[0]:
        tanh_inplace(&out[0], x.shape[0])


cdef void _sigmoid_1d(const floating[::1] x, floating[::1] out) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(x.shape[0]):
        out[j] = x[j]
    if x.shape[0]:
        sigmoid_inplace(&out[0], x.shape[0])


def tanh(x):
    """Elementwise tanh: rational minimax in float32, libm in float64."""
    x = _as_float_array(x, "x")
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    cdef float[::1] x32, out32
    cdef double[::1] x64, out64
    if x.dtype == np.float32:
        x32, out32 = flat, out
        with nogil:
            _tanh_1d[float](x32, out32)
    else:
        x64, out64 = flat, out
        with nogil:
            _tanh_1d[double](x64, out64)
    return out.reshape(x.shape)


def sigmoid(x):
    """Elementwise logistic sigmoid, ``0.5 * tanh(x / 2) + 0.5``."""
    x = _as_float_array(x, "x")
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    cdef float[::1] x32, out32
    cdef double[::1] x64, out64
    if x.dtype == np.float32:
        x32, out32 = flat, out
        with nogil:
            _sigmoid_1d[float](x32, out32)
    else:
        x64, out64 = flat, out
        with nogil:
            _sigmoid_1d[double](x64, out64)
    return out.reshape(x.shape)


# a_pre: [B, 4H] preactivation, gates [i | f | g | o]
# c_prev: [B, H]
# gates: [B, 4H]  # OUT post-activation gates
# c_new, h_new, c_act: [B, H]  # OUT (c_act = act(c_new))
cdef void _lstm_cell(const floating[:, ::1] a_pre, const floating[:, ::1] c_prev,
                     floating[:, ::1] gates, floating[:, ::1] c_new, floating[:, ::1] h_new,
                     floating[:, ::1] c_act, int act) noexcept nogil:
    """The LSTM kernels' own per-row loop (``_cells.h``) over every row."""
    cdef Py_ssize_t B = c_prev.shape[0], H = c_prev.shape[1], b, j
    if H == 0:
        return
    for b in range(B):
        for j in range(4 * H):
            gates[b, j] = a_pre[b, j]
        lstm_fwd_row(&gates[b, 0], &c_prev[b, 0], &c_new[b, 0], &c_act[b, 0], &h_new[b, 0],
                     act == ACT_RELU, H)


def lstm_cell(a_pre, c_prev, activation="tanh"):
    """Pointwise LSTM cell on a preactivation ``a_pre [B, 4H]`` (gates ``[i|f|g|o]``).

    Returns ``(h_new [B, H], c_new [B, H], gates [B, 4H])`` with the post-activation gates,
    following :mod:`fastseq.cells`: ``c' = f*c + i*g``, ``h' = o*act(c')``.
    """
    a_pre = _as_float_array(a_pre, "a_pre")
    dtype = a_pre.dtype
    c_prev = np.asarray(c_prev)
    if a_pre.ndim != 2 or a_pre.shape[1] % 4:
        raise ValueError(f"a_pre has shape {a_pre.shape}; expected (B, 4*H)")
    B, H = a_pre.shape[0], a_pre.shape[1] // 4
    if c_prev.shape != (B, H):
        raise ValueError(f"c_prev has shape {c_prev.shape}; expected ({B}, {H})")
    a_pre = np.ascontiguousarray(a_pre)
    c_prev = np.ascontiguousarray(c_prev, dtype=dtype)
    gates = np.empty((B, 4 * H), dtype=dtype)
    c_new = np.empty((B, H), dtype=dtype)
    h_new = np.empty((B, H), dtype=dtype)
    c_act = np.empty((B, H), dtype=dtype)
    cdef int act = _act_code(activation)
    if dtype == np.float32:
        _lstm_cell_f32(a_pre, c_prev, gates, c_new, h_new, c_act, act)
    else:
        _lstm_cell_f64(a_pre, c_prev, gates, c_new, h_new, c_act, act)
    return h_new, c_new, gates


def _lstm_cell_f32(const float[:, ::1] a_pre, const float[:, ::1] c_prev, float[:, ::1] gates,
                   float[:, ::1] c_new, float[:, ::1] h_new, float[:, ::1] c_act, int act):
    with nogil:
        _lstm_cell(a_pre, c_prev, gates, c_new, h_new, c_act, act)


def _lstm_cell_f64(const double[:, ::1] a_pre, const double[:, ::1] c_prev,
                   double[:, ::1] gates, double[:, ::1] c_new, double[:, ::1] h_new,
                   double[:, ::1] c_act, int act):
    with nogil:
        _lstm_cell(a_pre, c_prev, gates, c_new, h_new, c_act, act)
