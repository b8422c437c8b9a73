"""GEMM callable from nopython code: fastseq_ext's own GEMM, or scipy's ``cython_blas``.

Both are registered with LLVM under stable symbol names (``fastseq_own_gemm_f32/_f64``,
``fastseq_own_gemm_x_f32/_f64`` (the same GEMM started from ``X + bias``: :func:`gemm_xb`),
``fastseq_sgemm`` / ``fastseq_dgemm``) and declared as external functions, so kernels
that call them can still be cached (``cache=True``): the cached machine code refers to the
symbols, which are re-registered with their addresses every time this module is imported.

The own GEMM (``fastseq_ext/_smallgemm.h``: register-blocked, no packing, no call
overhead; 105-118 GFLOP/s per core where OpenBLAS gave 46-97 at the step shapes) takes
every product the kernels make (``alpha = 1``, ``beta`` 0 or 1, ``B`` not transposed)
when fastseq_ext is built (:data:`USE_OWN`, fixed when a kernel compiles). Without the
extension its symbols point at a plain Numba loop (:func:`_own_fallback`), so cached
kernels compiled with the extension present still run, correctly, if it goes away.

All arrays here are row-major (C order). A row-major ``[M, N]`` matrix with leading
dimension ``ld`` is, to Fortran, the column-major ``[N, M]`` transpose, so
``C = op(A) @ op(B)`` is computed as ``C.T = op(B).T @ op(A).T`` with the operands swapped.
"""
from __future__ import annotations

import llvmlite.binding as ll
import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS library)
from numba import carray, cfunc, njit, types
from numba.core.extending import get_cython_function_address, register_jitable

from ._jit import FLAGS as NUMBA_FLAGS

ll.add_symbol("fastseq_sgemm", get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
ll.add_symbol("fastseq_dgemm", get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))

# fastseq_ext's GEMM: void f(int ta, int M, int N, int K, const T* A, int lda, const T* B,
# int ldb, int beta, T* C, int ldc), pointers passed as intp addresses
_i32 = types.int32
_OWN_SIG = types.void(_i32, _i32, _i32, _i32, types.intp, _i32, types.intp, _i32, _i32,
                      types.intp, _i32)


@register_jitable
def _fallback_loop(ta, M, N, K, a, lda, b, ldb, init, x, ldx, bias, c, ldc, zero):
    """The extension's GEMM as a plain loop, in its per-element order: ``c = op(a) @ b``
    started from ``zero`` (init 0), ``c`` (1), ``x + bias`` (2) or ``bias`` (3); flat
    arrays."""
    for r in range(M):
        for j in range(N):
            if init == 2:
                acc = x[r * ldx + j] + bias[j]
            elif init == 3:
                acc = bias[j]
            elif init == 1:
                acc = c[r * ldc + j]
            else:
                acc = zero
            for k in range(K):
                acc += (a[k * lda + r] if ta else a[r * lda + k]) * b[k * ldb + j]
            c[r * ldc + j] = acc


def _own_fallback(dtype):
    """A plain loop with the own GEMM's signature and per-element order (for a missing
    fastseq_ext: cached kernels compiled against the extension still find the symbol)."""
    ptr = types.CPointer(dtype)

    @cfunc(types.void(_i32, _i32, _i32, _i32, ptr, _i32, ptr, _i32, _i32, ptr, _i32),
           cache=True)
    def fallback(ta, M, N, K, A, lda, B, ldb, beta, C, ldc):
        a = carray(A, (max(K, 1) * lda if ta else max(M, 1) * lda,))
        b = carray(B, (max(K, 1) * ldb,))
        c = carray(C, (M * ldc,))
        none = carray(C, (0,))              # no X, no bias
        _fallback_loop(ta, M, N, K, a, lda, b, ldb, 1 if beta else 0, none, 0, none, c, ldc,
                       dtype(0))
    return fallback


# fastseq_ext's GEMM with a start value: void f(int ta, int M, int N, int K, const T* A,
# int lda, const T* B, int ldb, int init, const T* X, int ldx, const T* bias, T* C, int ldc);
# init 2: C = X + bias + op(A) @ B (X [M, N] with leading dimension ldx, bias [N])
_OWN_X_SIG = types.void(_i32, _i32, _i32, _i32, types.intp, _i32, types.intp, _i32, _i32,
                        types.intp, _i32, types.intp, types.intp, _i32)


def _own_x_fallback(dtype):
    """:func:`_own_fallback` for the GEMM with a start value (init 2: ``X + bias``; 3:
    ``bias``; 0 / 1 as the plain GEMM's beta)."""
    ptr = types.CPointer(dtype)

    @cfunc(types.void(_i32, _i32, _i32, _i32, ptr, _i32, ptr, _i32, _i32, ptr, _i32, ptr, ptr,
                      _i32), cache=True)
    def fallback(ta, M, N, K, A, lda, B, ldb, init, X, ldx, bias, C, ldc):
        a = carray(A, (max(K, 1) * lda if ta else max(M, 1) * lda,))
        b = carray(B, (max(K, 1) * ldb,))
        c = carray(C, (M * ldc,))
        x = carray(X, (M * ldx if init == 2 else 0,))
        bb = carray(bias, (N if init >= 2 else 0,))
        _fallback_loop(ta, M, N, K, a, lda, b, ldb, init, x, ldx, bb, c, ldc, dtype(0))
    return fallback


try:
    _own_addresses = tuple(get_cython_function_address("fastseq_ext.reduce", name)
                           for name in ("gemm_f32", "gemm_f64", "gemm_x_f32", "gemm_x_f64"))
    USE_OWN = True
except (ImportError, ValueError):        # pragma: no cover - fastseq_ext not built
    _own_addresses = (_own_fallback(types.float32).address,
                      _own_fallback(types.float64).address,
                      _own_x_fallback(types.float32).address,
                      _own_x_fallback(types.float64).address)
    USE_OWN = False
ll.add_symbol("fastseq_own_gemm_f32", _own_addresses[0])
ll.add_symbol("fastseq_own_gemm_f64", _own_addresses[1])
ll.add_symbol("fastseq_own_gemm_x_f32", _own_addresses[2])
ll.add_symbol("fastseq_own_gemm_x_f64", _own_addresses[3])
_own_f32 = types.ExternalFunction("fastseq_own_gemm_f32", _OWN_SIG)
_own_f64 = types.ExternalFunction("fastseq_own_gemm_f64", _OWN_SIG)
_own_x_f32 = types.ExternalFunction("fastseq_own_gemm_x_f32", _OWN_X_SIG)
_own_x_f64 = types.ExternalFunction("fastseq_own_gemm_x_f64", _OWN_X_SIG)

# every argument of ?gemm is a pointer; passed as intp addresses (same registers on x86-64
# and aarch64 calling conventions)
_GEMM_SIG = types.void(*([types.intp] * 13))
_sgemm = types.ExternalFunction("fastseq_sgemm", _GEMM_SIG)
_dgemm = types.ExternalFunction("fastseq_dgemm", _GEMM_SIG)

_N, _T = 78, 84          # ord("N"), ord("T"): read by BLAS as the first byte of an int32

# Path of the shared library whose threads these kernels use (for threadpoolctl).
BLAS_API = "scipy.linalg.cython_blas"


# A, B, C: any-dimensional row-major arrays of one dtype; *_off: element offset of the
#   matrix inside the array; ld*: leading dimension (row stride in elements)
# iw: int32[>=8] and fw: dtype[>=2] scratch owned by the calling thread
# C[M, N] = alpha * op(A) @ op(B) + beta * C      (C is OUT)
@njit(**NUMBA_FLAGS)
def gemm(trans_a, trans_b, M, N, K, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off,
         ldc, iw, fw):
    if M <= 0 or N <= 0:
        return
    if K <= 0:
        # BLAS would scale C by beta; we only ever use beta in {0, 1}
        if beta == 0:
            for m in range(M):
                for n in range(N):
                    C.flat[c_off + m * ldc + n] = 0
        return
    isz = C.itemsize
    if USE_OWN and not trans_b and alpha == 1 and (beta == 0 or beta == 1):
        pa = A.ctypes.data + a_off * isz
        pb = B.ctypes.data + b_off * isz
        pc = C.ctypes.data + c_off * isz
        if isz == 4:
            _own_f32(1 if trans_a else 0, M, N, K, pa, lda, pb, ldb, 1 if beta else 0, pc,
                     ldc)
        else:
            _own_f64(1 if trans_a else 0, M, N, K, pa, lda, pb, ldb, 1 if beta else 0, pc,
                     ldc)
        return
    iw[0] = _T if trans_b else _N
    iw[1] = _T if trans_a else _N
    iw[2] = N
    iw[3] = M
    iw[4] = K
    iw[5] = ldb
    iw[6] = lda
    iw[7] = ldc
    fw[0] = alpha
    fw[1] = beta
    ip = iw.ctypes.data
    fp = fw.ctypes.data
    pa = A.ctypes.data + a_off * isz
    pb = B.ctypes.data + b_off * isz
    pc = C.ctypes.data + c_off * isz
    if isz == 4:
        _sgemm(ip, ip + 4, ip + 8, ip + 12, ip + 16, fp, pb, ip + 20, pa, ip + 24,
               fp + isz, pc, ip + 28)
    else:
        _dgemm(ip, ip + 4, ip + 8, ip + 12, ip + 16, fp, pb, ip + 20, pa, ip + 24,
               fp + isz, pc, ip + 28)


# X: [.., M, N] rows of leading dimension ldx from x_off (read iff with_x); bias: [N]
# contiguous
# C[M, N] = X + bias + A @ B, or bias + A @ B without X   (C is OUT; the recurrent step's
#   preactivation xw + b + h @ R in one pass over C, the sum started from X + bias as the
#   Cython engine's step GEMM does)
@njit(**NUMBA_FLAGS)
def gemm_xb(M, N, K, A, a_off, lda, B, b_off, ldb, with_x, X, x_off, ldx, bias, C, c_off, ldc,
            iw, fw):
    if M <= 0 or N <= 0:
        return
    isz = C.itemsize
    if USE_OWN:
        init = 2 if with_x else 3
        pa = A.ctypes.data + a_off * isz
        pb = B.ctypes.data + b_off * isz
        px = X.ctypes.data + x_off * isz
        pc = C.ctypes.data + c_off * isz
        if isz == 4:
            _own_x_f32(0, M, N, max(K, 0), pa, lda, pb, ldb, init, px, ldx, bias.ctypes.data,
                       pc, ldc)
        else:
            _own_x_f64(0, M, N, max(K, 0), pa, lda, pb, ldb, init, px, ldx, bias.ctypes.data,
                       pc, ldc)
        return
    for m in range(M):
        for n in range(N):
            C.flat[c_off + m * ldc + n] = (X.flat[x_off + m * ldx + n] + bias[n] if with_x
                                           else bias[n])
    if K > 0:
        gemm(False, False, M, N, K, 1.0, A, a_off, lda, B, b_off, ldb, 1.0, C, c_off, ldc, iw,
             fw)
