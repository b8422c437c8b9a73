/* The recurrent step's GEMM reading the weight as stored by PyTorch (``weight_hh``,
 * [G*H, H]) instead of its transpose R = weight_hh^T:
 *
 *     C[m, n] = X[m, n] + bias[n] + A[m, k] @ W[n, k]^T
 *
 * Training changes the weights after every batch, so the R copy the step GEMM reads must be
 * made again for every batch: for a [2048, 512] float32 weight, cold in cache after the
 * optimizer's pass, that copy costs 0.5-0.7 ms, more than the two recurrent steps of a
 * 3-token window (0.18 ms each). Here each block of up to L rows (L = lanes of one vector)
 * is turned around instead: At = A^T ([k, L], one vector per k), Ct = (X + bias)^T
 * ([n, L]), then Ct += W @ At on the step GEMM (``_smallgemm.h``: W's rows are its A rows,
 * At one vector of columns) and C = Ct^T. About 7 % slower than h @ R on the GEMM, plus
 * the small transposes; worth it while the copy is not amortized (few steps, few rows).
 *
 * Same bits as ``fs_gemm_x(beta = 2)`` with B = W^T: every element starts from X + bias
 * and accumulates W[g, j] * A[b, j] for j = 0..k-1 in order (one fused multiply-add each,
 * the product commutes), passes of FS_KC storing the accumulator exactly.
 *
 * scratch: fs_wrows_scratch(n, k) elements (At and Ct), owned by the caller's thread.
 */
#ifndef FASTSEQ_GEMM_WROWS_H
#define FASTSEQ_GEMM_WROWS_H

#include <stddef.h>
#include "_smallgemm.h"
#include "_transpose.h"

#ifdef FS_VBYTES
#define FS_WR_LANES(T) (FS_VBYTES / (int)sizeof(T))
#else
#define FS_WR_LANES(T) (64 / (int)sizeof(T))
#endif

#define FS_DEFINE_WROWS(T, SUF)                                                             \
static inline size_t fs_wrows_scratch_##SUF(int n, int k) {                                 \
    return (size_t)(n + k) * (size_t)FS_WR_LANES(T);                                        \
}                                                                                           \
                                                                                            \
/* X: NULL for bias alone */                                                                \
static void fs_gemm_xbt_##SUF(int m, int n, int k, const T* A, int lda, const T* W,        \
                              int ldw, const T* X, int ldx, const T* bias, T* C, int ldc,  \
                              T* scratch) {                                                 \
    const int L = FS_WR_LANES(T);                                                           \
    T* At = scratch;                           /* [k, L] */                                 \
    T* Ct = scratch + (size_t)k * L;           /* [n, L] */                                 \
    for (int r0 = 0; r0 < m; r0 += L) {                                                     \
        const int mb = m - r0 < L ? m - r0 : L;                                             \
        fs_transpose_##SUF(A + (ptrdiff_t)r0 * lda, lda, At, L, k, mb);                     \
        if (mb < L)                            /* lanes without a row: zero */              \
            for (int j = 0; j < k; j++)                                                     \
                for (int b = mb; b < L; b++) At[(size_t)j * L + b] = 0;                     \
        if (X)                                                                              \
            fs_transpose_##SUF(X + (ptrdiff_t)r0 * ldx, ldx, Ct, L, n, mb);                 \
        for (int g = 0; g < n; g++) {                                                       \
            T* ct = Ct + (size_t)g * L;                                                     \
            const T bg = bias[g];                                                           \
            if (X)                                                                          \
                for (int b = 0; b < mb; b++) ct[b] = ct[b] + bg;                            \
            else                                                                            \
                for (int b = 0; b < mb; b++) ct[b] = bg;                                    \
            for (int b = mb; b < L; b++) ct[b] = 0;                                         \
        }                                                                                   \
        fs_gemm_x_##SUF(0, n, L, k, W, ldw, At, L, 1, NULL, 0, NULL, Ct, L);                \
        fs_transpose_##SUF(Ct, L, C + (ptrdiff_t)r0 * ldc, ldc, mb, n);                     \
    }                                                                                       \
}

FS_DEFINE_WROWS(float, f32)
FS_DEFINE_WROWS(double, f64)

#endif  /* FASTSEQ_GEMM_WROWS_H */
