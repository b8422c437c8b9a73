"""Row-major GEMM on top of ``scipy.linalg.cython_blas`` (column-major Fortran BLAS).

A row-major ``C [m, n]`` is, seen by a column-major BLAS, ``C^T [n, m]``. So
``C = op(A) @ op(B)`` (row-major) is computed as ``C^T = op(B)^T @ op(A)^T``: swap the
operands and the sizes ``m`` and ``n``, keep every transpose flag with its own operand.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


# C [m, n] = alpha * op(A) [m, k] @ op(B) [k, n] + beta * C, every matrix row-major with
# leading dimension (row stride) lda / ldb / ldc; op(X) = X^T when trans_x.
cdef inline void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                         const floating* A, int lda, const floating* B, int ldb,
                         floating beta, floating* C, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_b else b'N'    # column-major call: B first
    cdef char tb = b'T' if trans_a else b'N'
    cdef Py_ssize_t i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:                                  # BLAS would reject lda = 0; C = beta * C
        for i in range(m):
            for j in range(n):
                C[i * ldc + j] = 0 if beta == 0 else beta * C[i * ldc + j]
        return
    if floating is float:
        sgemm(&ta, &tb, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&ta, &tb, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda,
              &beta, C, &ldc)
