"""Argument checks and state copies for the one-step entry points (``step`` in each kernel
module), so a streaming step needs no Python-side checks or copies.

Every step entry point takes ``xw_t [B, G*H]``, ``R [H, G*H]``, ``bh [G*H]``, ``mask [B, H]``
(read iff masked), ``h, c [B, H]`` (``c`` read iff has_c), and the workspace ``work``
(``[h, h_new]``: ``[2, B, H]``, or ``[h, h_new, c, c_new]``: ``[4, B, H]`` for the LSTM),
``hm [1, B, H]`` (iff masked), ``gates [1, B, G*H]`` /
``aux [1, B, H]`` (LSTM and GRU), all NumPy arrays of one dtype (float32 or float64). An
argument that does not match raises ValueError or TypeError (the adapter then re-checks its
arguments one by one and names the bad one). They return ``(h_new, c_new)`` (``c_new``
None but for the LSTM), new arrays made here (:func:`new_state`).

The entry points take their arrays as plain objects and check them here with NumPy's C API
(type, dtype, dimensions, C order, writability: a few nanoseconds each) instead of typed
memoryviews, whose acquisition costs ~0.1 us per argument: 14 of them were most of a
B = 1 step's 2.2 us.
"""
cimport numpy as cnp
from cython cimport floating
from libc.string cimport memcpy, memset



cdef inline int step_dtype(object xw_t) except -1:
    """``NPY_FLOAT`` or ``NPY_DOUBLE``: the dtype of a step, ``xw_t``'s (a 2-D array)."""
    cdef int tn
    if type(xw_t) is not cnp.ndarray or cnp.PyArray_NDIM(<cnp.ndarray>xw_t) != 2:
        raise TypeError("step: xw_t must be a 2-D numpy array")
    tn = cnp.PyArray_TYPE(<cnp.ndarray>xw_t)
    if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
        raise TypeError("step: xw_t must be float32 or float64")
    return tn


cdef inline Py_ssize_t dim(object a, int i) except -1:
    """``a.shape[i]`` of an array already checked by :func:`step_dtype` or :func:`data`."""
    return cnp.PyArray_DIMS(<cnp.ndarray>a)[i]


cdef inline char* data(object a, int tn, int ndim, Py_ssize_t n0, Py_ssize_t n1,
                       Py_ssize_t n2, bint used, bint write) except NULL:
    """The data of ``a``, a numpy array of type ``tn``; when ``used``, also C-contiguous
    with shape ``(n0, n1[, n2])`` (``ndim`` 1 to 3) and, when ``write``, writable."""
    cdef cnp.ndarray arr
    cdef cnp.npy_intp* d
    if type(a) is not cnp.ndarray or cnp.PyArray_TYPE(<cnp.ndarray>a) != tn:
        raise TypeError("step: every array must be a numpy array of xw_t's dtype")
    arr = <cnp.ndarray>a
    if used:
        d = cnp.PyArray_DIMS(arr)
        if (cnp.PyArray_NDIM(arr) != ndim or d[0] != n0 or (ndim > 1 and d[1] != n1)
                or (ndim > 2 and d[2] != n2)):
            raise ValueError("step: inconsistent argument shapes")
        if not cnp.PyArray_IS_C_CONTIGUOUS(arr) or (write and not cnp.PyArray_ISWRITEABLE(arr)):
            raise ValueError("step: arrays must be C-contiguous (workspaces writable)")
    return <char*>cnp.PyArray_DATA(arr)



cdef struct StepArgs:
    int tn                                # NPY_FLOAT or NPY_DOUBLE
    Py_ssize_t B, H, GH
    char* xw
    char* R
    char* bh
    char* mask
    char* h
    char* work
    char* hm
    char* gates
    char* aux


cdef inline int step_args(StepArgs* a, int G, int n_work, bint has_gates, object xw_t,
                          object R, object bh, object mask, bint masked, object h,
                          object work, object hm, object gates, object aux) except -1:
    """Check the arguments every cell's step shares (module docstring; ``G`` gates,
    ``work [n_work, B, H]``, ``gates``/``aux`` iff ``has_gates``) and fill ``a``."""
    a.tn = step_dtype(xw_t)
    a.B = dim(xw_t, 0)
    a.GH = dim(xw_t, 1)
    a.H = a.GH // G
    if a.GH != G * a.H:
        raise ValueError(f"step: xw_t must have {G} * H columns")
    a.xw = data(xw_t, a.tn, 2, a.B, a.GH, 0, True, False)
    a.R = data(R, a.tn, 2, a.H, a.GH, 0, True, False)
    a.bh = data(bh, a.tn, 1, a.GH, 0, 0, True, False)
    a.mask = data(mask, a.tn, 2, a.B, a.H, 0, masked, False)
    a.h = data(h, a.tn, 2, a.B, a.H, 0, True, False)
    a.work = data(work, a.tn, 3, n_work, a.B, a.H, True, True)
    a.hm = data(hm, a.tn, 3, 1, a.B, a.H, masked, True)
    a.gates = data(gates, a.tn, 3, 1, a.B, a.GH, has_gates, True)
    a.aux = data(aux, a.tn, 3, 1, a.B, a.H, has_gates, True)
    return 0


cdef inline object new_state(object work, Py_ssize_t slot, int tn, Py_ssize_t B,
                             Py_ssize_t H):
    """A new ``[B, H]`` array of type ``tn`` holding ``work[slot]`` (the work space is
    reused by the next step, so the caller gets a copy of its part)."""
    cdef cnp.npy_intp dims[2]
    cdef size_t nbytes = B * H * (4 if tn == cnp.NPY_FLOAT else 8)
    dims[0] = B
    dims[1] = H
    out = cnp.PyArray_EMPTY(2, dims, tn, 0)
    if nbytes:
        memcpy(cnp.PyArray_DATA(<cnp.ndarray>out),
               <char*>cnp.PyArray_DATA(<cnp.ndarray>work) + slot * nbytes, nbytes)
    return out


cdef inline void copy_state(floating* dst, const floating* src, Py_ssize_t n,
                            bint has_src) noexcept nogil:
    """dst[:n] = src[:n], or 0 without a source."""
    if has_src:
        memcpy(dst, src, n * sizeof(floating))
    else:
        memset(dst, 0, n * sizeof(floating))
