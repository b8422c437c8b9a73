"""Weight-gradient reductions after BPTT, in a fixed order (bitwise deterministic).

``dR = sum_t h_prev[t]^T @ dgates[t]`` over the active rows of each step, and
``dbh = sum of dgates rows``. Rows are sorted by length (descending), so the active rows
of step ``t`` are the prefix ``[0, nact[t])``; consecutive steps where the whole batch is
active are contiguous in memory and merged into one GEMM. Inactive rows are never read
(their buffers may hold garbage). Matches ``fastseq.backends.numba_cpu._loop``.
"""
from cython cimport floating
from libc.stdint cimport int64_t

from fastseq_ext._blas cimport gemm_rm


# A: rows of [T(+1), B, lda] (row r of step t at (t*B + r)*lda + a_col); K columns used
# D: rows of [T, B, ldd] starting at column d_col; N columns used
# nact: [T] active rows per step (descending)
# dR: [K, ldr]  # OUT: columns [r_col, r_col+N) += sum_t A[t,:nact]^T @ D[t,:nact]
def accumulate_outer(const int64_t[::1] nact, Py_ssize_t B, const floating[::1] A,
                     Py_ssize_t lda, Py_ssize_t a_col, Py_ssize_t K, const floating[::1] D,
                     Py_ssize_t ldd, Py_ssize_t d_col, Py_ssize_t N, floating[::1] dR,
                     Py_ssize_t ldr, Py_ssize_t r_col):
    cdef Py_ssize_t T = nact.shape[0], t = 0, t1, n, rows
    if B == 0 or K == 0 or N == 0:
        return
    with nogil:
        while t < T:
            n = nact[t]
            if n == 0:
                break
            t1 = t + 1
            if n == B:                            # merge full steps: contiguous rows
                while t1 < T and nact[t1] == B:
                    t1 += 1
                rows = (t1 - t) * B
            else:
                rows = n
            gemm_rm(True, False, <int>K, <int>N, <int>rows, 1,
                    &A[t * B * lda + a_col], <int>lda, &D[t * B * ldd + d_col], <int>ldd,
                    1, &dR[r_col], <int>ldr)
            t = t1


# D: [T, B, G]; nact: [T]
# db: [G] float64  # OUT: += column sums over active rows, in row order
def accumulate_bias(const int64_t[::1] nact, const floating[:, :, ::1] D, double[::1] db):
    cdef Py_ssize_t T = D.shape[0], G = D.shape[2], t, b, j
    cdef const floating* row
    with nogil:
        for t in range(T):
            for b in range(nact[t]):
                row = &D[t, b, 0]
                for j in range(G):
                    db[j] += row[j]
