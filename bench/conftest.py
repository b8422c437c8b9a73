"""pytest-benchmark driver of the fastseq benchmark suite.

    pytest bench/ --benchmark-only                         # the quick matrix
    pytest bench/ --benchmark-only --bench-matrix full     # everything (tens of minutes)
    pytest bench/ --benchmark-only --bench-report bench/report   # + Markdown and plots

The cases, runners, FLOP counts and the ceiling come from :mod:`fastseq.benchmarking`, the
same harness as ``python -m fastseq bench --report``: warm-up calls (JIT compilation)
untimed, then timed rounds of one call each, median reported. Every benchmark's
``extra_info`` holds the backend, thread count, FLOPs, GFLOP/s and % of the GEMM ceiling;
the terminal summary adds each result's speed ratio to the peers measured in the run.
"""
from __future__ import annotations

import time

import pytest

from fastseq._config import default_threads
from fastseq.benchmarking import cases as _cases
from fastseq.benchmarking import suite
from fastseq.benchmarking.runners import PEERS, Unsupported, make_runner
from fastseq.benchmarking.timing import MAX_ROUNDS, MIN_ROUNDS, MIN_TIME, WARMUP_ROUNDS

_RECORDS = []            # every timed result of the session, in the report's format
_CEILING = {}


def pytest_addoption(parser):
    group = parser.getgroup("fastseq bench")
    group.addoption("--bench-matrix", choices=("quick", "full"), default="quick",
                    help="which cases: the report's quick subset or the whole matrix")
    group.addoption("--bench-threads", type=int, default=None,
                    help="threads for every implementation (default: all CPUs available)")
    group.addoption("--bench-backends", default=None,
                    help="comma-separated fastseq backends (default: every engine that "
                         "imports; the reference only when it is the only one)")
    group.addoption("--bench-report", default=None, metavar="DIR",
                    help="also write report.md and plots of this session into DIR")


def _option(config, name):
    return config.getoption(name)


def bench_threads(config):
    return _option(config, "--bench-threads") or default_threads()


def bench_backends(config):
    requested = _option(config, "--bench-backends")
    if requested:
        return [b.strip() for b in requested.split(",") if b.strip()]
    return suite.default_backends()


def matrix(config):
    return (_cases.full_cases() if _option(config, "--bench-matrix") == "full"
            else _cases.quick_cases())


def pytest_generate_tests(metafunc):
    """Arguments named ``bench_case`` (the matrix's cases), ``bench_backend`` (fastseq
    engines) and ``bench_peer`` (peers) are parametrized here."""
    config = metafunc.config
    if "bench_case" in metafunc.fixturenames:
        cases = matrix(config)
        metafunc.parametrize("bench_case", cases, ids=[c.id for c in cases])
    if "bench_backend" in metafunc.fixturenames:
        metafunc.parametrize("bench_backend", bench_backends(config))
    if "bench_peer" in metafunc.fixturenames:
        metafunc.parametrize("bench_peer", PEERS)


@pytest.fixture(scope="session")
def n_threads(request):
    return bench_threads(request.config)


@pytest.fixture(scope="session")
def ceiling(request, n_threads):
    """``{(dtype, threads): GFLOP/s}`` of NumPy's GEMM, measured once per session."""
    if not _CEILING:
        n = 2048 if _option(request.config, "--bench-matrix") == "full" else 1536
        _CEILING.update(suite.measure_ceiling(n_threads, n=n))
    return _CEILING


@pytest.fixture(scope="session")
def keras_worker(n_threads):
    from fastseq.benchmarking.keras_worker import KerasWorker
    worker = KerasWorker(n_threads)
    yield worker
    worker.close()


def _rounds_for(fn):
    """Calls ``fn`` for the warm-up and picks a round count giving ~MIN_TIME seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(WARMUP_ROUNDS - 1):
        fn()
    per_call = (time.perf_counter() - t1) / max(1, WARMUP_ROUNDS - 1)
    return max(MIN_ROUNDS, min(MAX_ROUNDS, int(MIN_TIME / max(per_call, 1e-9)))), first


def _finish(benchmark, case, impl, n_threads, ceiling, first, info):
    stats = benchmark.stats.stats
    timing = dict(median=stats.median, min=stats.min, rounds=stats.rounds, first=first)
    rec = suite.record(case, impl, n_threads, timing, ceiling=ceiling, info=info)
    _RECORDS.append(rec)
    benchmark.extra_info.update(
        impl=impl, threads=n_threads, case=case.label, flops=rec["flops"],
        gflops=round(rec["gflops"], 3), first_call_s=first, **(info or {}))
    if "pct_ceiling" in rec:
        benchmark.extra_info["pct_ceiling"] = round(rec["pct_ceiling"], 2)
    return rec


def run_case(benchmark, case, impl, n_threads, ceiling):
    """Time ``impl`` on ``case`` with pytest-benchmark; skip with the reason if it can't."""
    try:
        runner = make_runner(impl, case, n_threads)
    except Unsupported as exc:
        pytest.skip(str(exc))
    benchmark.group = case.label
    with runner.scope():
        rounds, first = _rounds_for(runner.fn)
        benchmark.pedantic(runner.fn, rounds=rounds, iterations=1, warmup_rounds=0)
    return _finish(benchmark, case, impl, n_threads, ceiling, first, runner.info)


def run_keras_case(benchmark, case, worker, n_threads, ceiling):
    """Keras runs in its worker process: each timed round is one request, so the round
    trip (measured by ``ping`` and stored as ``ipc_s``) is included in the time."""
    if not worker.available:
        pytest.skip(worker.reason)
    answer = worker.prepare(case)       # builds, traces and runs once (warm-up)
    if "skip" in answer:
        pytest.skip(answer["skip"])
    key = answer["ok"]
    t0 = time.perf_counter()
    worker.call(key)
    per_call = time.perf_counter() - t0
    t0 = time.perf_counter()
    worker._ask({"op": "ping"})
    ipc = time.perf_counter() - t0
    rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, int(MIN_TIME / max(per_call, 1e-9))))
    benchmark.group = case.label
    benchmark.pedantic(worker.call, args=(key,), rounds=rounds, iterations=1)
    return _finish(benchmark, case, "keras", n_threads, ceiling, per_call,
                   dict(worker.versions or {}, backend="keras", ipc_s=ipc))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Ratios to the peers measured in this session (and the report, if asked for)."""
    if not _RECORDS:
        return
    from fastseq.benchmarking.report import scaling_table, summary_table
    tr = terminalreporter
    scaling = [r for r in _RECORDS if r["case"].get("tag") == "scaling"]
    records = [r for r in _RECORDS if r["case"].get("tag") != "scaling"]
    tr.section("fastseq: GFLOP/s, % of GEMM ceiling, ratio to peers (same run)")
    for (dtype, threads), gflops in sorted(_CEILING.items()):
        tr.write_line(f"GEMM ceiling {dtype} {threads} thread(s): {gflops:.1f} GFLOP/s")
    if records:
        tr.write_line(summary_table(records))
    if scaling:
        tr.write_line(scaling_table(scaling))
    folder = _option(config, "--bench-report")
    if folder:
        from fastseq.benchmarking import write_report
        data = dict(meta=suite.machine_info(bench_threads(config)),
                    settings=dict(matrix=f"pytest {_option(config, '--bench-matrix')}"),
                    ceiling=_ceiling_json(), records=records, scaling=scaling)
        for path in write_report(data, folder):
            tr.write_line(f"wrote {path}")


def _ceiling_json():
    out = {}
    for (dtype, threads), gflops in _CEILING.items():
        out.setdefault(dtype, {})[str(threads)] = gflops
    return out
