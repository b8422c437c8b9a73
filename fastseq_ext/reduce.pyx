"""Weight-gradient reductions after BPTT, in a fixed order (bitwise deterministic).

``dR = sum_t h_prev[t]^T @ dgates[t]`` over the active rows of each step, and
``dbh = sum of dgates rows``. Rows are sorted by length (descending), so the active rows
of step ``t`` are the prefix ``[0, nact[t])``; consecutive steps where the whole batch is
active are contiguous in memory and merged into one GEMM. Inactive rows are never read
(their buffers may hold garbage). Matches ``fastseq.backends.numba_cpu._loop``.
"""
cimport numpy as cnp
from cython cimport floating
from libc.stdint cimport int64_t

from fastseq_ext.team cimport run_tasks
from fastseq_ext._smallgemm cimport (fs_gemm_f32, fs_gemm_f64, fs_gemm_x_f32, fs_gemm_x_f64,
                                     gemm_tn, step_gemm, step_gemm_xb)

cnp.import_array()              # NumPy's C API (step_matmul's checks)


# dR on our own GEMM (_smallgemm.h, A read transposed): one thread, h^T @ dgates, 96-109
# GFLOP/s where OpenBLAS gave 70-98 (H = 256-1024, 48-1024 rows), and on par (100) at
# H = 512 over 3200 rows


cdef void _outer(const int64_t* nact, Py_ssize_t T, Py_ssize_t B, const floating* A,
                 Py_ssize_t lda, Py_ssize_t K, const floating* D, Py_ssize_t ldd,
                 Py_ssize_t N, floating* dR, Py_ssize_t ldr, bint out_t,
                 bint overwrite) noexcept nogil:
    """dR[:K, :N] += sum_t A[t, :nact[t], :K]^T @ D[t, :nact[t], :N] (pointers at the
    first used column), or with ``out_t`` its transpose dR[:N, :K] += D^T @ A; full steps
    merged into one GEMM. ``overwrite``: the first GEMM writes dR instead of adding to it
    (the caller's dR needs no zero fill when nact[0] > 0)."""
    cdef Py_ssize_t t = 0, t1, n, rows
    cdef int beta = 0 if overwrite else 1
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
        if out_t:
            gemm_tn(<int>N, <int>K, <int>rows, D + t * B * ldd, <int>ldd, A + t * B * lda,
                    <int>lda, beta, dR, <int>ldr)
        else:
            gemm_tn(<int>K, <int>N, <int>rows, A + t * B * lda, <int>lda, D + t * B * ldd,
                    <int>ldd, beta, dR, <int>ldr)
        beta = 1
        t = t1


# width of the column blocks when N columns are split among n threads: a multiple of 16
# (whole SIMD registers), at most one block per thread (fastseq._threads.column_blocks
# splits the same way)
cdef inline Py_ssize_t _block_width(Py_ssize_t N, Py_ssize_t n) noexcept nogil:
    return ((N + n - 1) // n + 15) // 16 * 16


# the engine's GEMM with C linkage for other compiled code (declared in reduce.pxd)
cdef void gemm_f32(int ta, int M, int N, int K, const float* A, int lda, const float* B,
                   int ldb, int beta, float* C, int ldc) noexcept nogil:
    fs_gemm_f32(ta, M, N, K, A, lda, B, ldb, beta, C, ldc)


cdef void gemm_f64(int ta, int M, int N, int K, const double* A, int lda, const double* B,
                   int ldb, int beta, double* C, int ldc) noexcept nogil:
    fs_gemm_f64(ta, M, N, K, A, lda, B, ldb, beta, C, ldc)


cdef void gemm_x_f32(int ta, int M, int N, int K, const float* A, int lda, const float* B,
                     int ldb, int beta, const float* X, int ldx, const float* bias, float* C,
                     int ldc) noexcept nogil:
    fs_gemm_x_f32(ta, M, N, K, A, lda, B, ldb, beta, X, ldx, bias, C, ldc)


cdef void gemm_x_f64(int ta, int M, int N, int K, const double* A, int lda,
                     const double* B, int ldb, int beta, const double* X, int ldx,
                     const double* bias, double* C, int ldc) noexcept nogil:
    fs_gemm_x_f64(ta, M, N, K, A, lda, B, ldb, beta, X, ldx, bias, C, ldc)


# one column block of accumulate_outer as a team task
cdef struct _Outer:
    const int64_t* nact
    Py_ssize_t T, B, K, N, width, lda, ldd, ldr
    const void* A
    const void* D
    void* dR
    bint out_t, overwrite


cdef inline void _outer_task(_Outer* j, int k, floating* tag) noexcept nogil:
    cdef Py_ssize_t c0 = k * j.width
    cdef Py_ssize_t c1 = min(j.N, c0 + j.width)
    _outer(j.nact, j.T, j.B, <const floating*>j.A, j.lda, j.K, <const floating*>j.D + c0,
           j.ldd, c1 - c0, <floating*>j.dR + c0 * (j.ldr if j.out_t else 1), j.ldr, j.out_t,
           j.overwrite)


cdef void _outer_f32(void* j, int k) noexcept nogil:
    _outer_task(<_Outer*>j, k, <float*>NULL)


cdef void _outer_f64(void* j, int k) noexcept nogil:
    _outer_task(<_Outer*>j, k, <double*>NULL)


# A: rows of [T(+1), B, lda] (row r of step t at (t*B + r)*lda + a_col); K columns used
# D: rows of [T, B, ldd] starting at column d_col; N columns used
# nact: [T] active rows per step (descending)
# dR: [K, ldr]  # OUT: columns [r_col, r_col+N) += sum_t A[t,:nact]^T @ D[t,:nact]
#   out_t: dR [*, ldr]  # OUT: rows [r_col, r_col+N), first K columns, += the transpose
#   (the weight's own [G*H, H] layout: no transposed copy afterwards)
# n_threads > 1: the N columns are split into one block per thread, one team task each
# (fastseq_ext.team; each task owns its columns: race-free, and the same blocks and order
# on every call)
# overwrite: = instead of += (dR's prior content is never read: no zero fill needed; only
#   when nact[0] > 0, since no step means no write)
def accumulate_outer(const int64_t[::1] nact, Py_ssize_t B, const floating[::1] A,
                     Py_ssize_t lda, Py_ssize_t a_col, Py_ssize_t K, const floating[::1] D,
                     Py_ssize_t ldd, Py_ssize_t d_col, Py_ssize_t N, floating[::1] dR,
                     Py_ssize_t ldr, Py_ssize_t r_col, int n_threads=1, bint out_t=False,
                     bint overwrite=False):
    cdef _Outer job
    cdef Py_ssize_t T = nact.shape[0]
    if B == 0 or K == 0 or N == 0 or T == 0:
        return
    job.width = _block_width(N, max(1, n_threads))
    job.nact, job.T, job.B, job.K, job.N = &nact[0], T, B, K, N
    job.A, job.lda = &A[a_col], lda
    job.D, job.ldd = &D[d_col], ldd
    job.dR, job.ldr, job.out_t = &dR[r_col * (ldr if out_t else 1)], ldr, out_t
    job.overwrite = overwrite
    with nogil:
        run_tasks(<int>((N + job.width - 1) // job.width),
                  _outer_f32 if floating is float else _outer_f64, &job)


cdef extern from "_colsum.h" nogil:
    void fs_colsum_f32(const int64_t* nact, Py_ssize_t T, Py_ssize_t B, const float* D,
                       Py_ssize_t ld, Py_ssize_t n, double* db)
    void fs_colsum_f64(const int64_t* nact, Py_ssize_t T, Py_ssize_t B, const double* D,
                       Py_ssize_t ld, Py_ssize_t n, double* db)


# one column block of accumulate_bias as a team task
cdef struct _Bias:
    const int64_t* nact
    const void* D
    double* db
    Py_ssize_t T, B, G, c0, c1, width


cdef inline void _bias_task(_Bias* j, int k, floating* tag) noexcept nogil:
    cdef Py_ssize_t lo = j.c0 + k * j.width
    cdef Py_ssize_t hi = min(j.c1, lo + j.width)
    if floating is float:
        fs_colsum_f32(j.nact, j.T, j.B, <const float*>j.D + lo, j.G, hi - lo, j.db + lo)
    else:
        fs_colsum_f64(j.nact, j.T, j.B, <const double*>j.D + lo, j.G, hi - lo, j.db + lo)


cdef void _bias_f32(void* j, int k) noexcept nogil:
    _bias_task(<_Bias*>j, k, <float*>NULL)


cdef void _bias_f64(void* j, int k) noexcept nogil:
    _bias_task(<_Bias*>j, k, <double*>NULL)


# fewest summed elements for which accumulate_bias splits its columns among threads (a
# team region costs a few microseconds; the sum reads ~10 elements per ns on one core)
BIAS_SPLIT_MIN = 1 << 16


# D: [T, B, G]; nact: [T]
# db: [G] float64  # OUT: columns [c0, c1) += column sums over active rows, in row order
def accumulate_bias(const int64_t[::1] nact, const floating[:, :, ::1] D, double[::1] db,
                    Py_ssize_t c0=0, Py_ssize_t c1=-1, int n_threads=1):
    """``db[c0:c1] += `` the column sums of ``D``'s active rows (rows ``[0, nact[t])`` of
    each step), in float64 and row order (``_colsum.h``); ``n_threads > 1`` splits the
    columns into that many blocks (multiples of 16), one team task each: the same bits."""
    cdef _Bias job
    cdef Py_ssize_t T = D.shape[0], t, rows = 0
    if c1 < 0 or c1 > D.shape[2]:
        c1 = D.shape[2]
    if c0 < 0 or db.shape[0] < c1 or nact.shape[0] < T:
        raise ValueError("accumulate_bias: columns or nact out of range")
    if c1 <= c0 or T == 0 or D.shape[1] == 0:
        return
    job.nact, job.D, job.db = &nact[0], &D[0, 0, 0], &db[0]
    job.T, job.B, job.G, job.c0, job.c1 = T, D.shape[1], D.shape[2], c0, c1
    for t in range(T):
        rows += nact[t]
    if rows * (c1 - c0) < BIAS_SPLIT_MIN:
        n_threads = 1
    job.width = _block_width(c1 - c0, max(1, n_threads))
    with nogil:
        run_tasks(<int>((c1 - c0 + job.width - 1) // job.width),
                  _bias_f32 if floating is float else _bias_f64, &job)


cdef extern from "_transpose.h" nogil:
    void fs_transpose_f32(const float* src, Py_ssize_t lds, float* dst, Py_ssize_t ldd,
                          Py_ssize_t M, Py_ssize_t N)
    void fs_transpose_f64(const double* src, Py_ssize_t lds, double* dst, Py_ssize_t ldd,
                          Py_ssize_t M, Py_ssize_t N)


# one block of rows of transpose_into as a team task
cdef struct _Transpose:
    const void* src
    void* dst
    Py_ssize_t M, N, step


cdef inline void _transpose_task(_Transpose* t, int k, floating* tag) noexcept nogil:
    cdef Py_ssize_t lo = k * t.step
    cdef Py_ssize_t m = min(t.M - lo, t.step)
    if floating is float:
        fs_transpose_f32(<const float*>t.src + lo, t.M, <float*>t.dst + lo * t.N, t.N, m, t.N)
    else:
        fs_transpose_f64(<const double*>t.src + lo, t.M, <double*>t.dst + lo * t.N, t.N, m,
                         t.N)


cdef void _transpose_f32(void* t, int k) noexcept nogil:
    _transpose_task(<_Transpose*>t, k, <float*>NULL)


cdef void _transpose_f64(void* t, int k) noexcept nogil:
    _transpose_task(<_Transpose*>t, k, <double*>NULL)


# dest: [M, N] OUT = src.T     src: [N, M], both C-contiguous
def transpose_into(floating[:, ::1] dest, const floating[:, ::1] src, int n_threads=1):
    """``dest[...] = src.T`` in blocks transposed in registers (``_transpose.h``; NumPy
    copies a transposed view element by element with a large stride: 3.7 ms for a
    [2048, 512] float32 weight, against 0.3-1.0 ms here, warm to cold). ``n_threads > 1``
    splits ``dest`` into row blocks (multiples of 8), one team task each: the copy is
    bound by memory, and two cores move more of it than one. Used for the engine's
    ``R^T`` copies."""
    cdef Py_ssize_t M = dest.shape[0], N = dest.shape[1]
    cdef _Transpose t
    if src.shape[0] != N or src.shape[1] != M:
        raise ValueError(f"src has shape ({src.shape[0]}, {src.shape[1]}); expected "
                         f"({N}, {M})")
    if M == 0 or N == 0:
        return
    n_threads = max(1, n_threads)
    t.src, t.dst, t.M, t.N = &src[0, 0], &dest[0, 0], M, N
    t.step = ((M + n_threads - 1) // n_threads + 7) // 8 * 8
    with nogil:
        run_tasks(<int>((M + t.step - 1) // t.step),
                  _transpose_f32 if floating is float else _transpose_f64, &t)


# one block of step_matmul as a team task: rows [k*step, ...) of C, or columns
cdef struct _Gemm:
    const void* A
    const void* B
    void* C
    const void* bias                    # [N] row added to every row of C, or NULL
    int M, N, K, lda, ldb, ldc, step
    bint beta, trans_a, cols


cdef inline void _gemm_task(_Gemm* g, int k, floating* tag) noexcept nogil:
    cdef int lo = k * g.step
    cdef int m = g.M, n = g.N
    cdef const floating* A = <const floating*>g.A
    cdef const floating* B = <const floating*>g.B
    cdef floating* C = <floating*>g.C
    cdef const floating* bias = <const floating*>g.bias
    if g.cols:                          # columns [lo, lo + n) of B and C
        n = min(g.N - lo, g.step)
        B += lo
        C += lo
        if bias != NULL:
            bias += lo
    else:                               # rows [lo, lo + m) of op(A) and C
        m = min(g.M - lo, g.step)
        A += lo if g.trans_a else <Py_ssize_t>lo * g.lda
        C += <Py_ssize_t>lo * g.ldc
    if bias != NULL:                    # not trans_a, not beta (step_matmul checks)
        step_gemm_xb(m, n, g.K, A, g.lda, B, g.ldb, NULL, 0, bias, C, g.ldc)
    elif g.trans_a:
        gemm_tn(m, n, g.K, A, g.lda, B, g.ldb, g.beta, C, g.ldc)
    else:
        step_gemm(m, n, g.K, A, g.lda, B, g.ldb, g.beta, C, g.ldc)


cdef void _gemm_f32(void* g, int k) noexcept nogil:
    _gemm_task(<_Gemm*>g, k, <float*>NULL)


cdef void _gemm_f64(void* g, int k) noexcept nogil:
    _gemm_task(<_Gemm*>g, k, <double*>NULL)


cdef inline cnp.ndarray _matrix(object a, str name, int tn, int ndim, bint write):
    """``a`` as an ndarray of type ``tn`` with ``ndim`` dimensions and unit stride along
    its last axis (any row stride), writable when ``write``; else TypeError/ValueError."""
    cdef cnp.ndarray arr
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"step_matmul: {name} must be a numpy array, got {type(a).__name__}")
    arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != tn:
        raise TypeError(f"step_matmul: {name} has dtype {a.dtype}; A, B, C and bias need "
                        "one dtype, float32 or float64")
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"step_matmul: {name} must be {ndim}-D, got shape {a.shape}")
    if cnp.PyArray_SIZE(arr) == 0:           # no element read or written: any strides
        pass
    elif (cnp.PyArray_DIMS(arr)[ndim - 1] > 1
            and cnp.PyArray_STRIDES(arr)[ndim - 1] != cnp.PyArray_ITEMSIZE(arr)):
        raise ValueError("step_matmul: A, B, C and bias need contiguous rows (unit stride "
                         "along the last axis)")
    elif ndim == 2 and cnp.PyArray_STRIDES(arr)[0] % cnp.PyArray_ITEMSIZE(arr):
        raise ValueError(f"step_matmul: {name}'s row stride is not a multiple of its "
                         "item size")
    if write and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"step_matmul: {name} is read-only")
    return arr


# A: [M, K] ([K, M] when trans_a)  B: [K, N]  C: [M, N] OUT (in: added to when beta);
# each with contiguous rows (unit stride along the last axis) and any row stride
# (checked with NumPy's C API rather than typed memoryviews: 0.2 us per call instead of
# 0.7, most of a streaming step's input projection)
def step_matmul(object A, object B, object C, bint beta=False, bint trans_a=False,
                int n_threads=1, bint split_cols=False, object bias=None):
    """``C = op(A) @ B (+ C)`` by the GEMM the kernels call at every step and for the
    weight gradients (``_smallgemm.h``; releases the GIL); ``op(A) = A.T`` when
    ``trans_a``; ``bias`` (``[N]``, with neither ``beta`` nor ``trans_a``): ``C = A @ B +
    bias``, the bias read as the accumulators' start (no second pass over ``C``). Each row
    of ``C`` is computed the same way whatever the number of rows, and each column
    whatever the other columns, so ``n_threads > 1`` splits ``C`` into that many blocks of
    rows (or, ``split_cols``, of columns: multiples of 16), one team task each
    (``fastseq_ext.team``), with the same bits as one thread. A, B, C (and bias) are
    numpy arrays of one dtype, float32 or float64."""
    if not isinstance(C, cnp.ndarray):
        raise TypeError(f"step_matmul: C must be a numpy array, got {type(C).__name__}")
    cdef int tn = cnp.PyArray_TYPE(<cnp.ndarray>C)
    if tn != cnp.NPY_FLOAT and tn != cnp.NPY_DOUBLE:
        raise TypeError(f"step_matmul: C has dtype {C.dtype}; expected float32 or float64")
    cdef cnp.ndarray a = _matrix(A, "A", tn, 2, False)
    cdef cnp.ndarray b = _matrix(B, "B", tn, 2, False)
    cdef cnp.ndarray c = _matrix(C, "C", tn, 2, True)
    cdef cnp.ndarray v = None if bias is None else _matrix(bias, "bias", tn, 1, False)
    cdef cnp.npy_intp* da = cnp.PyArray_DIMS(a)
    cdef Py_ssize_t M = da[1] if trans_a else da[0]
    cdef Py_ssize_t K = da[0] if trans_a else da[1]
    cdef Py_ssize_t N = cnp.PyArray_DIMS(b)[1]
    cdef Py_ssize_t size = cnp.PyArray_ITEMSIZE(c)
    cdef _Gemm g
    cdef int n_tasks
    if (cnp.PyArray_DIMS(b)[0] != K or cnp.PyArray_DIMS(c)[0] != M
            or cnp.PyArray_DIMS(c)[1] != N):
        raise ValueError(f"step_matmul: op(A) ({M}, {K}), B {B.shape} and C {C.shape} do "
                         "not make C = op(A) @ B")
    if v is not None and (beta or trans_a or cnp.PyArray_DIMS(v)[0] != N):
        raise ValueError(f"step_matmul: bias needs shape ({N},) and neither beta nor "
                         "trans_a")
    if M == 0 or N == 0:
        return
    g.bias = cnp.PyArray_DATA(v) if v is not None else NULL
    g.A = cnp.PyArray_DATA(a) if K else NULL
    g.B = cnp.PyArray_DATA(b) if K else NULL
    g.C = cnp.PyArray_DATA(c)
    g.M, g.N, g.K = <int>M, <int>N, <int>K
    g.lda = max(<int>(cnp.PyArray_STRIDES(a)[0] // size), 1)
    g.ldb = <int>(cnp.PyArray_STRIDES(b)[0] // size)
    g.ldc = <int>(cnp.PyArray_STRIDES(c)[0] // size)
    g.beta, g.trans_a, g.cols = beta, trans_a, split_cols
    n_threads = max(1, n_threads)
    if split_cols:
        g.step = <int>_block_width(N, n_threads)
        n_tasks = <int>((N + g.step - 1) // g.step)
    else:
        g.step = <int>((M + n_threads - 1) // n_threads)
        n_tasks = <int>((M + g.step - 1) // g.step)
    with nogil:
        run_tasks(n_tasks, _gemm_f32 if tn == cnp.NPY_FLOAT else _gemm_f64, &g)
