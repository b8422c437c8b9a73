"""The machine's ceiling: NumPy GEMM at 1 thread and at N threads, float32 and float64."""
import numpy as np
import pytest

from fastseq.benchmarking.timing import blas_info, blas_limits


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", ["1", "N"])
def test_gemm_ceiling(benchmark, dtype, threads, n_threads, request):
    n = 2048 if request.config.getoption("--bench-matrix") == "full" else 1536
    k = 1 if threads == "1" else n_threads
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    benchmark.group = "GEMM ceiling"
    with blas_limits(k):
        benchmark.pedantic(np.matmul, args=(a, b), kwargs=dict(out=out), rounds=5,
                           warmup_rounds=1)
    benchmark.extra_info.update(threads=k, n=n, dtype=dtype, blas=blas_info(),
                                gflops=round(2 * n ** 3 / benchmark.stats.stats.min / 1e9, 2),
                                gflops_median=round(2 * n ** 3 / benchmark.stats.stats.median
                                                    / 1e9, 2))
