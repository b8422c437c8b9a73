"""Cold start per implementation: a fresh process imports it and runs the first
forward + backward (Numba cache empty, then warm). The benchmark time is the whole
measurement; the split (import, first call, second call) is in ``extra_info``."""
import pytest

from fastseq.benchmarking.cases import CELLS
from fastseq.benchmarking.coldstart import measure_cold_start
from fastseq.benchmarking.suite import available_peers

from .conftest import bench_backends


def pytest_generate_tests(metafunc):
    if "cold_impl" in metafunc.fixturenames:
        metafunc.parametrize("cold_impl", bench_backends(metafunc.config) + ["torch"])


def test_cold_start(benchmark, cold_impl, n_threads, request):
    if cold_impl == "torch" and available_peers()["torch"]:
        pytest.skip(available_peers()["torch"])
    full = request.config.getoption("--bench-matrix") == "full"
    cells = CELLS if full else ("lstm", "gru")
    benchmark.group = "cold start"
    result = benchmark.pedantic(measure_cold_start, args=(cold_impl, cells, n_threads),
                                rounds=1, iterations=1)
    if "skip" in result:
        pytest.skip(result["skip"])
    for label, run in result.items():
        benchmark.extra_info[f"{label}_import_s"] = round(run["import"], 4)
        benchmark.extra_info[f"{label}_process_s"] = round(run["process"], 4)
        for cell, t in run["cells"].items():
            if "first" in t:
                benchmark.extra_info[f"{label}_{cell}_first_s"] = round(t["first"], 4)
                benchmark.extra_info[f"{label}_{cell}_second_s"] = round(t["second"], 4)
