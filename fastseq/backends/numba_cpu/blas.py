"""GEMM callable from nopython code: fastseq_ext's own GEMM, or scipy's ``cython_blas``.

Both are registered with LLVM under stable symbol names (``fastseq_own_gemm_f32/_f64``,
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
from numba.core.extending import get_cython_function_address

from ._jit import FLAGS as NUMBA_FLAGS

ll.add_symbol("fastseq_sgemm", get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
ll.add_symbol("fastseq_dgemm", get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))

# fastseq_ext's GEMM: void f(int ta, int M, int N, int K, const T* A, int lda, const T* B,
# int ldb, int beta, T* C, int ldc), pointers passed as intp addresses
_i32 = types.int32
_OWN_SIG = types.void(_i32, _i32, _i32, _i32, types.intp, _i32, types.intp, _i32, _i32,
                      types.intp, _i32)


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
        for r in range(M):
            for j in range(N):
                acc = c[r * ldc + j] if beta else dtype(0)
                for k in range(K):
                    acc += (a[k * lda + r] if ta else a[r * lda + k]) * b[k * ldb + j]
                c[r * ldc + j] = acc
    return fallback


try:
    _own_addresses = (get_cython_function_address("fastseq_ext.reduce", "gemm_f32"),
                      get_cython_function_address("fastseq_ext.reduce", "gemm_f64"))
    USE_OWN = True
except (ImportError, ValueError):        # pragma: no cover - fastseq_ext not built
    _own_addresses = (_own_fallback(types.float32).address,
                      _own_fallback(types.float64).address)
    USE_OWN = False
ll.add_symbol("fastseq_own_gemm_f32", _own_addresses[0])
ll.add_symbol("fastseq_own_gemm_f64", _own_addresses[1])
_own_f32 = types.ExternalFunction("fastseq_own_gemm_f32", _OWN_SIG)
_own_f64 = types.ExternalFunction("fastseq_own_gemm_f64", _OWN_SIG)

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
