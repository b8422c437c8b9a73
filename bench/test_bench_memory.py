"""Peak memory of one training step against the minimum from shapes (target <= 1.5x).

Each measurement runs in a fresh process (see fastseq.benchmarking.memory: RSS high-water
mark, because tracemalloc cannot see Numba's or PyTorch's allocations). The benchmark
time of these rows is the wall time of that process; the result is in ``extra_info``:
``peak_bytes``, ``minimum_bytes``, ``ratio``.
"""
import pytest

from fastseq.benchmarking.cases import memory_cases
from fastseq.benchmarking.memory import measure_memory
from fastseq.benchmarking.suite import available_peers

from .conftest import bench_backends


def pytest_generate_tests(metafunc):
    if "memory_case" in metafunc.fixturenames:
        full = metafunc.config.getoption("--bench-matrix") == "full"
        cases = memory_cases(full=full)
        metafunc.parametrize("memory_case", cases, ids=[c.id for c in cases])
        metafunc.parametrize("impl", bench_backends(metafunc.config) + ["torch"])


def test_peak_memory(benchmark, memory_case, impl, n_threads):
    if impl == "torch" and available_peers()["torch"]:
        pytest.skip(available_peers()["torch"])
    benchmark.group = "memory " + memory_case.label
    result = benchmark.pedantic(measure_memory, args=(impl, memory_case, n_threads),
                                rounds=1, iterations=1)
    if "skip" in result:
        pytest.skip(result["skip"])
    benchmark.extra_info.update(impl=impl, case=memory_case.label,
                                peak_bytes=result["peak"], minimum_bytes=result["minimum"],
                                ratio=round(result["ratio"], 3))
    assert result["peak"] > 0 and result["minimum"] > 0
