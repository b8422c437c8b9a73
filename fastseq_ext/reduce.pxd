"""C functions of :mod:`fastseq_ext.reduce` exported to other compiled code (Cython's
``__pyx_capi__``): the engine's GEMM, for the Numba engine's kernels, which look its
address up with ``numba.core.extending.get_cython_function_address`` and call it by a
stable symbol name (see ``fastseq/backends/numba_cpu/blas.py``)."""

# C [M, N] = op(A) @ B (+ C if beta); op(A) = A [M, K], or A^T with A stored [K, M] (ta);
# row-major with leading dimensions lda / ldb / ldc; beta 0 or 1
cdef void gemm_f32(int ta, int M, int N, int K, const float* A, int lda, const float* B,
                   int ldb, int beta, float* C, int ldc) noexcept nogil
cdef void gemm_f64(int ta, int M, int N, int K, const double* A, int lda, const double* B,
                   int ldb, int beta, double* C, int ldc) noexcept nogil

# C [M, N] = op(A) @ B + init; init by beta: 0 zero, 1 C itself, 2 X [M, N] (leading
# dimension ldx) + bias [N], 3 bias alone (the recurrent step's xw + b + h @ R in one pass)
cdef void gemm_x_f32(int ta, int M, int N, int K, const float* A, int lda, const float* B,
                     int ldb, int beta, const float* X, int ldx, const float* bias, float* C,
                     int ldc) noexcept nogil
cdef void gemm_x_f64(int ta, int M, int N, int K, const double* A, int lda,
                     const double* B, int ldb, int beta, const double* X, int ldx,
                     const double* bias, double* C, int ldc) noexcept nogil
