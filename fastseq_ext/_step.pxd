"""Shape checks and state copies for the one-step entry points (``step`` in each kernel
module), so a streaming step needs no Python-side checks or copies.

Every step entry point takes ``xw_t [B, G*H]``, ``R [H, G*H]``, ``bh [G*H]``, ``mask [B, H]``
(read iff masked), ``h, c [B, H]`` (``c`` read iff has_c) and the workspace ``hs, cs [2, B, H]``
(``cs`` iff the cell has a cell state), ``hm [1, B, H]`` (iff masked), ``gates [1, B, G*H]`` /
``aux [1, B, H]`` (LSTM and GRU); shapes that do not match raise ValueError (the adapter
then re-checks its arguments one by one and names the bad one).
"""
from cython cimport floating
from libc.string cimport memcpy, memset


cdef inline int check_step(Py_ssize_t G, Py_ssize_t B, Py_ssize_t GH, Py_ssize_t H,
                           Py_ssize_t R1, Py_ssize_t bh0, Py_ssize_t h0, Py_ssize_t h1,
                           bint masked, Py_ssize_t m0, Py_ssize_t m1, Py_ssize_t hs0,
                           Py_ssize_t hs1, Py_ssize_t hs2) except -1:
    """Raise ValueError unless the shapes of one step agree (see the module docstring)."""
    if (GH != G * H or R1 != GH or bh0 != GH or h0 != B or h1 != H
            or (masked and (m0 != B or m1 != H)) or hs0 < 2 or hs1 != B or hs2 != H):
        raise ValueError("step: inconsistent argument shapes")
    return 0


cdef inline int check_buf(Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t n2, Py_ssize_t B,
                          Py_ssize_t width, bint used) except -1:
    """A workspace buffer ``[>= 1, B, width]`` when used."""
    if used and (n0 < 1 or n1 != B or n2 != width):
        raise ValueError("step: workspace has the wrong shape")
    return 0


cdef inline void copy_state(floating* dst, const floating* src, Py_ssize_t n,
                            bint has_src) noexcept nogil:
    """dst[:n] = src[:n], or 0 without a source."""
    if has_src:
        memcpy(dst, src, n * sizeof(floating))
    else:
        memset(dst, 0, n * sizeof(floating))
