/* Small-M GEMM for the recurrent step: C[M, N] = A[M, K] @ B[K, N] (+ C, or + X + bias).
 *
 * Every matrix is row-major with its own leading dimension. M is small (the rows of one
 * thread's chunk that are active at this step); K and N are the weight's sizes. A BLAS
 * call at these sizes pays for its entry, its threading checks and for packing B again
 * at every step; this loop packs nothing and calls nothing.
 *
 * Register blocking: MR rows x NV vectors of accumulators (6 x 4 zmm with AVX-512, or one
 * 8 x 3 block when M is 7 or 8; 6 x 2 ymm with AVX, 6 x 2 xmm otherwise), the k loop
 * innermost, each B vector loaded once per k and reused by every row of the block. Once B
 * outgrows L2 (H = 256: R is 1 MB) every row block streams it from L3, so fewer, taller
 * blocks matter: M = 8 as 4 + 4 rows ran at 46 GFLOP/s, as one 8-row block at 105.
 * Columns that do not fill a vector use a zero-padded copy of B's last columns (one
 * vector wide) and a scratch block of C, so every column runs the same vector code.
 * Passes of FS_KC rows of B keep the panel in L2. B's rows are ldb apart, which the
 * hardware prefetchers follow poorly: the first row block of each panel prefetches (into
 * L2) the same rows of the panel FS_PF_PANELS ahead. [8, 512] x [512, 2048] float32, one
 * thread: 468 -> 165 us with B cold (evicted by a 16 MB pass first), 178 -> 150 us warm.
 * ``ta`` reads A stored transposed ([K, M]): the weight gradients ``h^T @ dgates``.
 *
 * Batch invariance: element C[r, c] is always ``acc = C[r, c] (or 0); for k in 0..K-1:
 * acc += A[r, k] * B[k, c]`` in that order (lanes are independent; a pass over k stores
 * the accumulator to C and reloads it exactly); so a row's result does not depend on M,
 * on the other rows or on how the rows are split into blocks. (``-ffp-contract=fast``
 * makes each ``acc += a * b`` one fused multiply-add where the target has FMA.)
 */
#ifndef FASTSEQ_SMALLGEMM_H
#define FASTSEQ_SMALLGEMM_H

#include <stddef.h>

#if defined(__AVX512F__)
#define FS_VBYTES 64
#define FS_NV 4
#define FS_MR 6
/* 7 or 8 rows in all: one block of 8 x 3 zmm (24 accumulators), so each B panel is read
   once per call instead of twice (4 + 4 rows); at H = 256 R is 1 MB, L2's size */
#define FS_MR8 1
#elif defined(__AVX__)
#define FS_VBYTES 32
#define FS_NV 2
#define FS_MR 6
#else
#define FS_VBYTES 16
#define FS_NV 2
#define FS_MR 6
#endif

#if defined(__GNUC__) || defined(__clang__)

#include <string.h>

#define FS_INLINE static inline __attribute__((always_inline))
#ifndef FS_MR8
#define FS_MR8 1
#endif
/* rows of B (the k range) per pass: a B panel [FS_KC, NV vectors] and the A rows of a
   pass stay in L2 while every row block / panel reuses them; splitting k changes no
   result (the accumulator goes through C in memory unchanged between passes) */
#define FS_KC 256
/* panels ahead whose rows the first row block of a panel prefetches (1: 385 us in the cold
   case above, 2: 170, 3: 165, 4: 162) */
#define FS_PF_PANELS 3

/* T: element type, SUF: name suffix, VL: lanes per vector, VB: bytes per vector */
#define FS_DEFINE_GEMM(T, SUF, VL, VB)                                                      \
typedef T fs_vec_##SUF __attribute__((vector_size(VB), aligned(sizeof(T)),                  \
                                      may_alias));                                          \
                                                                                            \
/* one block: mr rows x nv vectors (compile-time constants after inlining); row r of A is  \
   A[r * lda + k], or A[k * lda + r] when ta (A stored transposed). pf: NULL, or the next  \
   panel of B (same ldb), whose row k is prefetched into L2 while row k of this one is     \
   used: B's rows are ldb apart, a stride the hardware prefetchers follow poorly, and when \
   B comes from memory (a weight cold after the optimizer's pass) that doubled the time */ \
FS_INLINE void fs_block_##SUF(const int mr, const int nv, const int ta, int K, const T* A, \
                              int lda, const T* B, int ldb, int beta, const T* X, int ldx, \
                              const T* bias, T* C, int ldc, const T* pf) {                 \
    fs_vec_##SUF acc[8][4];                   /* mr <= 8, nv <= 4 (mr * nv <= 24) */       \
    _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++)                                    \
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) {                              \
            if (beta == 2)                                                                  \
                acc[r][v] = *(const fs_vec_##SUF*)(X + r * ldx + v * VL)                    \
                            + *(const fs_vec_##SUF*)(bias + v * VL);                        \
            else if (beta == 3)                                                             \
                acc[r][v] = *(const fs_vec_##SUF*)(bias + v * VL);                          \
            else if (beta)                                                                  \
                acc[r][v] = *(const fs_vec_##SUF*)(C + r * ldc + v * VL);                   \
            else                                                                            \
                acc[r][v] = (fs_vec_##SUF){0};                                              \
        }                                                                                   \
    for (int k = 0; k < K; k++) {                                                           \
        const T* b = B + (long)k * ldb;                                                     \
        fs_vec_##SUF bv[4];                                                                 \
        if (pf)                                                                             \
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)                            \
                __builtin_prefetch(pf + (long)k * ldb + v * VL, 0, 2);                      \
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)                                \
            bv[v] = *(const fs_vec_##SUF*)(b + v * VL);                                     \
        _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++) {                              \
            const T a = ta ? A[(long)k * lda + r] : A[(long)r * lda + k];                   \
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)                            \
                acc[r][v] += a * bv[v];                                                     \
        }                                                                                   \
    }                                                                                       \
    _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++)                                    \
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)                                \
            *(fs_vec_##SUF*)(C + r * ldc + v * VL) = acc[r][v];                             \
}                                                                                           \
                                                                                            \
/* all M rows over nv vectors of columns: blocks of at most mrmax rows, sizes balanced.    \
   width < nv * VL (the last columns): B is a zero-padded copy and C goes through a        \
   scratch block, so every column takes the vector path */                                  \
static void fs_rows_##SUF(int ta, int M, int mrmax, int nv, int width, int K, const T* A,  \
                          int lda, const T* B, int ldb, int beta, const T* X, int ldx,      \
                          const T* bias, T* C, int ldc, const T* pf) {                      \
    int blocks = (M + mrmax - 1) / mrmax, m0 = 0;                                           \
    T tmp[24 * VL];                            /* mr * nv <= 24 */                          \
    for (int i = 0; i < blocks; i++) {                                                      \
        int mr = (M - m0) / (blocks - i);      /* balanced: 8 rows -> 4 + 4, not 6 + 2 */   \
        const T* a = A + (ta ? (long)m0 : (long)m0 * lda);                                  \
        T* c = C + (long)m0 * ldc;                                                          \
        const T* x = X ? X + (long)m0 * ldx : X;                                            \
        int cld = ldc, bmode = beta;                                                        \
        const T* p = i == 0 ? pf : NULL;       /* the first block prefetches */             \
        if (width < nv * VL) {                 /* tail: the initial C in tmp, padded */     \
            for (int r = 0; r < mr; r++)                                                    \
                for (int j = 0; j < nv * VL; j++)                                           \
                    tmp[r * nv * VL + j] = j >= width ? 0                                   \
                        : beta == 2 ? x[(long)r * ldx + j] + bias[j]                        \
                        : beta == 3 ? bias[j]                                               \
                        : beta ? c[(long)r * ldc + j] : 0;                                  \
            c = tmp;                                                                        \
            cld = nv * VL;                                                                  \
            bmode = beta != 0;                                                              \
        }                                                                                   \
        switch ((mr * 8 + nv) * 2 + (ta != 0)) {                                            \
        FS_CASES(SUF)                                                                       \
        }                                                                                   \
        if (width < nv * VL)                                                                \
            for (int r = 0; r < mr; r++)                                                    \
                memcpy(C + (long)(m0 + r) * ldc, tmp + r * nv * VL, width * sizeof(T));     \
        m0 += mr;                                                                           \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* one row (M = 1, a matrix-vector product: streaming generation): B read row after row,  \
   four rows per pass over C (C stays in L1), so B streams in order at the memory's speed  \
   (the blocked path walks B in 64-column panels: 0.15 against 0.06 ms for a [512, 2048]  \
   float32 B). The same per-element order (init, then acc += a[k] * B[k, j] for k = 0..K-1)\
   as the blocked path, so the same bits */                                                 \
static void fs_row1_##SUF(int ta, int N, int K, const T* A, int lda, const T* B, int ldb,  \
                          int beta, const T* X, const T* bias, T* C) {                     \
    int full = N / VL * VL, j, k = 0;                                                       \
    for (j = 0; j < N; j++)                                                                 \
        C[j] = beta == 2 ? X[j] + bias[j] : beta == 3 ? bias[j] : beta ? C[j] : (T)0;       \
    for (; k + 4 <= K; k += 4) {                                                            \
        const T a0 = A[(long)k * (ta ? lda : 1)], a1 = A[(long)(k + 1) * (ta ? lda : 1)];   \
        const T a2 = A[(long)(k + 2) * (ta ? lda : 1)];                                     \
        const T a3 = A[(long)(k + 3) * (ta ? lda : 1)];                                     \
        const T *b0 = B + (long)k * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;   \
        for (j = 0; j < full; j += VL) {                                                    \
            fs_vec_##SUF acc = *(fs_vec_##SUF*)(C + j);                                     \
            acc += a0 * *(const fs_vec_##SUF*)(b0 + j);                                     \
            acc += a1 * *(const fs_vec_##SUF*)(b1 + j);                                     \
            acc += a2 * *(const fs_vec_##SUF*)(b2 + j);                                     \
            acc += a3 * *(const fs_vec_##SUF*)(b3 + j);                                     \
            *(fs_vec_##SUF*)(C + j) = acc;                                                  \
        }                                                                                   \
        for (; j < N; j++) {                                                                \
            T acc = C[j];                                                                   \
            acc += a0 * b0[j]; acc += a1 * b1[j]; acc += a2 * b2[j]; acc += a3 * b3[j];     \
            C[j] = acc;                                                                     \
        }                                                                                   \
    }                                                                                       \
    for (; k < K; k++) {                                                                    \
        const T a0 = A[(long)k * (ta ? lda : 1)], *b0 = B + (long)k * ldb;                  \
        for (j = 0; j < full; j += VL) {                                                    \
            fs_vec_##SUF acc = *(fs_vec_##SUF*)(C + j);                                     \
            acc += a0 * *(const fs_vec_##SUF*)(b0 + j);                                     \
            *(fs_vec_##SUF*)(C + j) = acc;                                                  \
        }                                                                                   \
        for (; j < N; j++) C[j] += a0 * b0[j];                                              \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* C[M, N] = op(A) @ B + init, op(A) = A [M, K], or A^T when ta (A stored [K, M]);        \
   init: beta 0: zero; 1: C itself; 2: X [M, N] (leading dimension ldx) + bias [N]; 3:     \
   bias alone. Read in the same pass (the recurrent step's xw + b: no separate pass        \
   writing C first) */                                                                      \
static void fs_gemm_xc_##SUF(int ta, int M, int N, int K, const T* A, int lda, const T* B, \
                             int ldb, int beta, const T* X, int ldx, const T* bias, T* C,  \
                             int ldc) {                                                     \
    if (M <= 0 || N <= 0) return;                                                           \
    if (M == 1) {                                                                           \
        fs_row1_##SUF(ta, N, K, A, lda, B, ldb, beta, X, bias, C);                          \
        return;                                                                             \
    }                                                                                       \
    int full = N / VL * VL;                    /* columns in whole vectors */               \
    int tail = N - full;                                                                    \
    T Bt[FS_KC * VL];                          /* the tail columns of a pass, zero-padded */\
    int mrmax = FS_MR, nvp = FS_NV;            /* row block and panel width (vectors) */    \
    if (FS_MR8 && (M == 7 || M == 8)) { mrmax = 8; nvp = 3; }                               \
    for (int k0 = 0; k0 < K || k0 == 0; k0 += FS_KC) {                                      \
        int kc = K - k0 < FS_KC ? K - k0 : FS_KC;                                           \
        int b0 = k0 > 0 ? 1 : beta;                                                         \
        const T* a = A + (ta ? (long)k0 * lda : (long)k0);                                  \
        const T* b = B + (long)k0 * ldb;                                                    \
        int n0 = 0;                                                                         \
        for (; n0 + nvp * VL <= full; n0 += nvp * VL)                                       \
            fs_rows_##SUF(ta, M, mrmax, nvp, nvp * VL, kc, a, lda, b + n0, ldb, b0,         \
                          X ? X + n0 : X, ldx, bias ? bias + n0 : bias, C + n0, ldc,        \
                          n0 + FS_PF_PANELS * nvp * VL < full                               \
                              ? b + n0 + FS_PF_PANELS * nvp * VL : NULL);                   \
        if (n0 < full)                                                                      \
            fs_rows_##SUF(ta, M, mrmax, (full - n0) / VL, full - n0, kc, a, lda, b + n0,    \
                          ldb, b0, X ? X + n0 : X, ldx, bias ? bias + n0 : bias, C + n0,    \
                          ldc, NULL);                                                       \
        if (tail) {                                                                         \
            for (int k = 0; k < kc; k++)                                                    \
                for (int j = 0; j < VL; j++)                                                \
                    Bt[k * VL + j] = j < tail ? b[(long)k * ldb + full + j] : 0;            \
            fs_rows_##SUF(ta, M, mrmax, 1, tail, kc, a, lda, Bt, VL, b0, X ? X + full : X,  \
                          ldx, bias ? bias + full : bias, C + full, ldc, NULL);             \
        }                                                                                   \
        if (K <= 0) break;                                                                  \
    }                                                                                       \
}

/* the switch of fs_rows: every (mr, nv, ta) with 1 <= mr <= 6, 1 <= nv <= 4, and the
   8-row blocks (mr 7 or 8, nv <= 3) */
#define FS_CASE2(SUF, MR_, NV_)                                                             \
    case (MR_ * 8 + NV_) * 2:                                                               \
        fs_block_##SUF(MR_, NV_, 0, K, a, lda, B, ldb, bmode, x, ldx, bias, c, cld, p);      \
        break;                                                                              \
    case (MR_ * 8 + NV_) * 2 + 1:                                                           \
        fs_block_##SUF(MR_, NV_, 1, K, a, lda, B, ldb, bmode, x, ldx, bias, c, cld, p);      \
        break;
#define FS_CASES_NV(SUF, MR_)                                                               \
    FS_CASE2(SUF, MR_, 1) FS_CASE2(SUF, MR_, 2) FS_CASE2(SUF, MR_, 3) FS_CASE2(SUF, MR_, 4)
#define FS_CASES(SUF)                                                                       \
    FS_CASES_NV(SUF, 1) FS_CASES_NV(SUF, 2) FS_CASES_NV(SUF, 3)                             \
    FS_CASES_NV(SUF, 4) FS_CASES_NV(SUF, 5) FS_CASES_NV(SUF, 6)                             \
    FS_CASE2(SUF, 7, 1) FS_CASE2(SUF, 7, 2) FS_CASE2(SUF, 7, 3)                             \
    FS_CASE2(SUF, 8, 1) FS_CASE2(SUF, 8, 2) FS_CASE2(SUF, 8, 3)

FS_DEFINE_GEMM(float, f32, (FS_VBYTES / 4), FS_VBYTES)
FS_DEFINE_GEMM(double, f64, (FS_VBYTES / 8), FS_VBYTES)

#if FS_VBYTES == 64
/* Half-width (256-bit) forms for at most half a vector of columns (N = I = 8 inputs: the
   input gradient dxw @ W, [3200, 128] @ [128, 8]): a 512-bit vector with half its lanes
   padding costs as much as a full one (Zen 4 runs it as two 256-bit halves), so these run
   the same loops on 8 (float) / 4 (double) lanes: 84 -> 52 us there (2 threads). Lanes are
   independent, so the bits are the same. */
FS_DEFINE_GEMM(float, f32h, 8, 32)
FS_DEFINE_GEMM(double, f64h, 4, 32)
#define FS_NARROW(SUF, HALF_LANES)                                                          \
    if (N <= HALF_LANES) {                                                                  \
        fs_gemm_xc_##SUF##h(ta, M, N, K, A, lda, B, ldb, beta, X, ldx, bias, C, ldc);      \
        return;                                                                             \
    }
#else
#define FS_NARROW(SUF, HALF_LANES)
#endif

/* C[M, N] = op(A) @ B + init, as fs_gemm_xc; narrow C on half-width vectors */
#define FS_DEFINE_ENTRY(T, SUF, HALF_LANES)                                                 \
static void fs_gemm_x_##SUF(int ta, int M, int N, int K, const T* A, int lda, const T* B,  \
                            int ldb, int beta, const T* X, int ldx, const T* bias, T* C,   \
                            int ldc) {                                                      \
    FS_NARROW(SUF, HALF_LANES)                                                              \
    fs_gemm_xc_##SUF(ta, M, N, K, A, lda, B, ldb, beta, X, ldx, bias, C, ldc);              \
}                                                                                           \
                                                                                            \
/* C[M, N] = op(A) @ B + (beta ? C : 0), beta 0 or 1 */                                     \
static void fs_gemm_##SUF(int ta, int M, int N, int K, const T* A, int lda, const T* B,    \
                          int ldb, int beta, T* C, int ldc) {                               \
    fs_gemm_x_##SUF(ta, M, N, K, A, lda, B, ldb, beta != 0, NULL, 0, NULL, C, ldc);         \
}
FS_DEFINE_ENTRY(float, f32, 8)
FS_DEFINE_ENTRY(double, f64, 4)

#else  /* no GCC vector extensions (e.g. MSVC): the plain loop, same order per element */

#define FS_DEFINE_PLAIN(T, SUF)                                                             \
static void fs_gemm_x_##SUF(int ta, int M, int N, int K, const T* A, int lda, const T* B,  \
                            int ldb, int beta, const T* X, int ldx, const T* bias, T* C,   \
                            int ldc) {                                                      \
    for (int r = 0; r < M; r++)                                                             \
        for (int j = 0; j < N; j++) {                                                       \
            T acc = beta == 2 ? X[(long)r * ldx + j] + bias[j] : beta == 3 ? bias[j]        \
                  : beta ? C[(long)r * ldc + j] : (T)0;                                     \
            for (int k = 0; k < K; k++)                                                     \
                acc += (ta ? A[(long)k * lda + r] : A[(long)r * lda + k])                   \
                       * B[(long)k * ldb + j];                                              \
            C[(long)r * ldc + j] = acc;                                                     \
        }                                                                                   \
}                                                                                           \
static void fs_gemm_##SUF(int ta, int M, int N, int K, const T* A, int lda, const T* B,    \
                          int ldb, int beta, T* C, int ldc) {                               \
    fs_gemm_x_##SUF(ta, M, N, K, A, lda, B, ldb, beta != 0, NULL, 0, NULL, C, ldc);         \
}
FS_DEFINE_PLAIN(float, f32)
FS_DEFINE_PLAIN(double, f64)

#endif

/* Ask for n bytes from p to be brought into cache (L1 and up) ahead of their use: a
   recurrence's rows for the next step (the forward's xw rows, which the step GEMM reads
   as its start block by block; the backward's saved gates and states of the step before),
   1 KB or more apart and in reverse time order in the backward, patterns the hardware
   prefetchers do not follow ahead of time. A hint only. */
static inline void fs_prefetch(const void* p, size_t n) {
#if defined(__GNUC__) || defined(__clang__)
    const char* c = (const char*)p;
    for (size_t i = 0; i < n; i += 64)
        __builtin_prefetch(c + i, 0, 3);
#else
    (void)p; (void)n;
#endif
}

#endif  /* FASTSEQ_SMALLGEMM_H */
