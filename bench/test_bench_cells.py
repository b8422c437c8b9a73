"""fastseq's engines over the matrix: cell x size x {fwd, train, step} x dtype.

``fwd`` / ``train`` go through fastseq.layers (the estimators' path), ``step`` through the
backend's streaming ``step()``. See fastseq.benchmarking.cases for the FLOP formula.
"""
from .conftest import run_case


def test_fastseq(benchmark, bench_case, bench_backend, n_threads, ceiling):
    run_case(benchmark, bench_case, bench_backend, n_threads, ceiling)
