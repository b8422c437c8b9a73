"""The one timer of the suite, and the machine's ceiling.

:func:`measure` is what the report uses; ``bench/`` hands the same runners to
pytest-benchmark with the same policy (warm-up rounds excluded, median of the timed
rounds). Both the report and pytest-benchmark time one call per round with
``time.perf_counter``.
"""
from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass

import numpy as np

# timing policy shared by the report and bench/conftest.py
WARMUP_ROUNDS = 2          # the first call compiles (Numba) or traces (Keras): excluded
MIN_ROUNDS = 3
MAX_ROUNDS = 2000
MIN_TIME = 0.25            # seconds of timed rounds per measurement (report)


@dataclass
class Timing:
    median: float          # seconds per call
    minimum: float
    rounds: int
    first: float           # the first warm-up call (includes JIT compilation / tracing)

    def to_dict(self):
        return dict(median=self.median, min=self.minimum, rounds=self.rounds,
                    first=self.first)


def measure(fn, warmup=WARMUP_ROUNDS, min_rounds=MIN_ROUNDS, max_rounds=MAX_ROUNDS,
            min_time=MIN_TIME):
    """Median seconds per call of ``fn()`` after ``warmup`` untimed calls.

    Rounds continue until ``min_time`` seconds have been timed and at least
    ``min_rounds`` rounds ran, or ``max_rounds`` is reached.
    """
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 (the first call compiles), got {warmup}")
    clock = time.perf_counter
    t0 = clock()
    fn()
    first = clock() - t0
    for _ in range(warmup - 1):
        fn()
    gc.collect()
    times = []
    total = 0.0
    while len(times) < max_rounds and (len(times) < min_rounds or total < min_time):
        t0 = clock()
        fn()
        dt = clock() - t0
        times.append(dt)
        total += dt
    return Timing(statistics.median(times), min(times), len(times), first)


_CONTROLLER = None


def blas_limits(n_threads):
    """Context manager limiting BLAS pools to ``n_threads`` (restored on exit).

    One ``ThreadpoolController`` is kept: finding the loaded libraries is the slow part.
    """
    global _CONTROLLER
    from threadpoolctl import ThreadpoolController
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=n_threads, user_api="blas")


def blas_info():
    """Which BLAS numpy uses, e.g. ``openblas 0.3.30 (Zen)``."""
    from threadpoolctl import threadpool_info
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            arch = pool.get("architecture")
            return f"{pool.get('internal_api')} {pool.get('version')}" + (
                f" ({arch})" if arch else "")
    return "unknown"


def gemm_ceiling(n_threads_list, dtypes=("float32", "float64"), n=2048, min_time=0.5):
    """The machine's GEMM rate in GFLOP/s: NumPy ``a @ b`` on ``n x n`` matrices.

    Returns ``{(dtype, threads): gflops}``. Uses the best round, not the median: the
    ceiling is what the hardware can do, and the machine may be shared.
    """
    rng = np.random.default_rng(0)
    result = {}
    for dtype in dtypes:
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        out = np.empty((n, n), dtype=dtype)
        for threads in n_threads_list:
            with blas_limits(threads):
                timing = measure(lambda: np.matmul(a, b, out=out), warmup=1,
                                 min_rounds=3, max_rounds=50, min_time=min_time)
            result[(dtype, threads)] = 2.0 * n ** 3 / timing.minimum / 1e9
    return result
