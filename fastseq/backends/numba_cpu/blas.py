"""BLAS GEMM callable from nopython code: scipy's ``cython_blas`` sgemm/dgemm.

The Fortran routines are registered with LLVM under stable symbol names
(``fastseq_sgemm`` / ``fastseq_dgemm``) and declared as external functions, so kernels
that call them can still be cached (``cache=True``): the cached machine code refers to the
symbol, which is re-registered with its address every time this module is imported.

All arrays here are row-major (C order). A row-major ``[M, N]`` matrix with leading
dimension ``ld`` is, to Fortran, the column-major ``[N, M]`` transpose, so
``C = op(A) @ op(B)`` is computed as ``C.T = op(B).T @ op(A).T`` with the operands swapped.
"""
from __future__ import annotations

import llvmlite.binding as ll
import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS library)
from numba import njit, types
from numba.core.extending import get_cython_function_address

from ._jit import FLAGS as NUMBA_FLAGS

ll.add_symbol("fastseq_sgemm", get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
ll.add_symbol("fastseq_dgemm", get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))

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
    isz = C.itemsize
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
