"""The small-M GEMM of the recurrent step and of the weight gradients (``_smallgemm.h``),
for both float types."""
from cython cimport floating


cdef extern from "_smallgemm.h" nogil:
    void fs_gemm_f32(int ta, int M, int N, int K, const float* A, int lda, const float* B,
                     int ldb, int beta, float* C, int ldc)
    void fs_gemm_f64(int ta, int M, int N, int K, const double* A, int lda,
                     const double* B, int ldb, int beta, double* C, int ldc)
    void fs_gemm_x_f32(int ta, int M, int N, int K, const float* A, int lda, const float* B,
                       int ldb, int beta, const float* X, int ldx, const float* bias,
                       float* C, int ldc)
    void fs_gemm_x_f64(int ta, int M, int N, int K, const double* A, int lda,
                       const double* B, int ldb, int beta, const double* X, int ldx,
                       const double* bias, double* C, int ldc)
    # a hint: bring n bytes from p into cache ahead of their use
    void fs_prefetch(const void* p, size_t n)


# C [m, n] = A [m, k] @ B [k, n] + (C if beta else 0), row-major with leading dimensions
# lda / ldb / ldc; beta is 0 or 1. Each row of C is computed the same way whatever m is.
cdef inline void step_gemm(int m, int n, int k, const floating* A, int lda,
                           const floating* B, int ldb, bint beta, floating* C,
                           int ldc) noexcept nogil:
    if floating is float:
        fs_gemm_f32(0, m, n, k, A, lda, B, ldb, beta, C, ldc)
    else:
        fs_gemm_f64(0, m, n, k, A, lda, B, ldb, beta, C, ldc)


# C [m, n] = A^T @ B + (C if beta else 0) with A stored [k, m] (leading dimension lda)
cdef inline void gemm_tn(int m, int n, int k, const floating* A, int lda, const floating* B,
                         int ldb, bint beta, floating* C, int ldc) noexcept nogil:
    if floating is float:
        fs_gemm_f32(1, m, n, k, A, lda, B, ldb, beta, C, ldc)
    else:
        fs_gemm_f64(1, m, n, k, A, lda, B, ldb, beta, C, ldc)


# C [m, n] = X [m, n] + bias [n] + A [m, k] @ B [k, n] (X: leading dimension ldx; without
# X, NULL, bias alone), X + bias read as the accumulators' start: the step's preactivation
# xw + b + h @ R in one pass over C. The same value, bit for bit, as C = X + bias followed
# by step_gemm(beta=1).
cdef inline void step_gemm_xb(int m, int n, int k, const floating* A, int lda,
                              const floating* B, int ldb, const floating* X, int ldx,
                              const floating* bias, floating* C, int ldc) noexcept nogil:
    if floating is float:
        fs_gemm_x_f32(0, m, n, k, A, lda, B, ldb, 2 if X != NULL else 3, X, ldx, bias, C,
                      ldc)
    else:
        fs_gemm_x_f64(0, m, n, k, A, lda, B, ldb, 2 if X != NULL else 3, X, ldx, bias, C,
                      ldc)


cdef extern from "_gemm_wrows.h" nogil:
    size_t fs_wrows_scratch_f32(int n, int k)
    size_t fs_wrows_scratch_f64(int n, int k)
    void fs_gemm_xbt_f32(int m, int n, int k, const float* A, int lda, const float* W,
                         int ldw, const float* X, int ldx, const float* bias, float* C,
                         int ldc, float* scratch)
    void fs_gemm_xbt_f64(int m, int n, int k, const double* A, int lda, const double* W,
                         int ldw, const double* X, int ldx, const double* bias, double* C,
                         int ldc, double* scratch)


# step_gemm_xb with the weight given as its transpose W [n, k] (PyTorch's weight_hh; see
# _gemm_wrows.h): C = X + bias + A @ W^T, the same bits; scratch: wrows_scratch(n, k)
# elements of the caller's
cdef inline void step_gemm_xbt(int m, int n, int k, const floating* A, int lda,
                               const floating* W, int ldw, const floating* X, int ldx,
                               const floating* bias, floating* C, int ldc,
                               floating* scratch) noexcept nogil:
    if floating is float:
        fs_gemm_xbt_f32(m, n, k, A, lda, W, ldw, X, ldx, bias, C, ldc, scratch)
    else:
        fs_gemm_xbt_f64(m, n, k, A, lda, W, ldw, X, ldx, bias, C, ldc, scratch)


cdef inline size_t wrows_scratch(int n, int k, floating* tag) noexcept nogil:
    if floating is float:
        return fs_wrows_scratch_f32(n, k)
    else:
        return fs_wrows_scratch_f64(n, k)


# The recurrent step's product for the columns [col0, col0 + n) of R [H, G]:
# C [m, n] = X + bias + A [m, k] @ R[:k, col0:col0 + n], with R given either as itself
# (row-major, leading dimension G) or, with weight_rows, as its transpose weight_hh [G, H]
# (rows col0 ..., leading dimension H; _gemm_wrows.h, the same bits; scratch as there).
# k: H, or 0 for a zero state (C = X + bias).
cdef inline void step_gemm_cols(bint weight_rows, int m, int n, int k, const floating* A,
                                int lda, const floating* R, int H, int G, Py_ssize_t col0,
                                const floating* X, int ldx, const floating* bias,
                                floating* C, int ldc, floating* scratch) noexcept nogil:
    if weight_rows:
        step_gemm_xbt(m, n, k, A, lda, R + col0 * H, H, X, ldx, bias, C, ldc, scratch)
    else:
        step_gemm_xb(m, n, k, A, lda, R + col0, G, X, ldx, bias, C, ldc)
