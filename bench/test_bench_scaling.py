"""Thread scaling: the same case at 1 thread and at N threads (issue 4 asks >= 1.7x at
H >= 128 on 2 threads); compare the two rows of a group."""
import pytest

from fastseq.benchmarking.cases import scaling_cases
from fastseq.benchmarking.suite import available_peers

from .conftest import bench_backends, run_case


def _impls(config):
    impls = bench_backends(config)
    return impls + (["torch"] if available_peers()["torch"] is None else [])


def pytest_generate_tests(metafunc):
    if "scaling_case" in metafunc.fixturenames:
        full = metafunc.config.getoption("--bench-matrix") == "full"
        cases = scaling_cases(full=full)
        metafunc.parametrize("scaling_case", cases, ids=[c.id for c in cases])
        metafunc.parametrize("impl", _impls(metafunc.config))
        metafunc.parametrize("threads", ["1", "N"])


def test_scaling(benchmark, scaling_case, impl, threads, n_threads, ceiling):
    k = 1 if threads == "1" else n_threads
    if threads == "N" and n_threads == 1:
        pytest.skip("only one thread available")
    rec = run_case(benchmark, scaling_case, impl, k, ceiling)
    benchmark.group = f"scaling {scaling_case.label} {impl}"
    benchmark.extra_info["scaling_threads"] = k
    assert rec["threads"] == k
