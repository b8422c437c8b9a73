"""Smoke tests of the benchmark machinery (fastseq.benchmarking), on tiny sizes with the
reference backend. No PyTorch, TensorFlow or matplotlib needed; speed is never asserted."""
import json
import os
import time

import numpy as np
import pytest

from fastseq.backends import reference
from fastseq.benchmarking import main as bench_main
from fastseq.benchmarking import report, suite
from fastseq.benchmarking.cases import (CELLS, Case, cell_spec, flops, full_cases,
                                        min_train_bytes, n_gates, n_params, quick_cases,
                                        saved_per_step)
from fastseq.benchmarking.memory import measure_memory
from fastseq.benchmarking.runners import Unsupported, fastseq_inputs, make_runner
from fastseq.benchmarking.timing import gemm_ceiling, measure
from fastseq.layers import param_shapes, stack_forward

from compare import assert_close


# ------------------------------------------------------------------ formulas
@pytest.mark.parametrize("cell", CELLS)
def test_flops_count_the_matrix_products(cell, rng):
    """2*m*k*n per GEMM: xw = x @ W over T*B rows, then h @ R once per step."""
    B, T, I, H = (int(v) for v in rng.integers(1, 9, size=4))
    G = n_gates(cell)
    xw_gemm = 2 * (T * B) * I * (G * H)
    recurrent = T * 2 * B * H * (G * H)
    assert flops(Case(cell, B, T, I, H, "fwd")) == xw_gemm + recurrent
    assert flops(Case(cell, B, T, I, H, "train")) == 3 * (xw_gemm + recurrent)
    assert flops(Case(cell, B, T, I, H, "step")) == 2 * B * I * G * H + 2 * B * H * G * H


@pytest.mark.parametrize("cell", CELLS)
def test_parameter_count_matches_pytorch_shapes(cell):
    shapes = param_shapes(cell_spec(cell), 7, 5)
    assert n_params(cell, 7, 5) == sum(int(np.prod(s)) for s in shapes.values())


@pytest.mark.parametrize("cell", CELLS)
def test_minimum_memory_is_below_what_the_oracle_keeps(cell, rng):
    """The minimum counts only tensors BPTT must read: the float64 oracle keeps at least
    as much per step (h, gates, c / hw_n), so the minimum is a lower bound."""
    T, B, H = 6, 3, 5
    G = n_gates(cell)
    spec = cell_spec(cell)
    xw = rng.standard_normal((T, B, G * H))
    R = rng.standard_normal((H, G * H)) * 0.3
    c0 = np.zeros((B, H)) if spec.has_cell_state else None
    _, _, cache = reference.forward(spec, xw, R, np.zeros(G * H), np.zeros((B, H)), c0,
                                    np.full(B, T))
    kept = sum(np.asarray(cache[k]).size for k in ("gates", "aux") if cache.get(k) is not None)
    kept += T * B * H * (1 + (cache.get("cs") is not None))    # h (and c) for T steps
    assert saved_per_step(cell, H) * T * B <= kept
    case = Case(cell, B, T, 4, H, "train", "float64")
    assert min_train_bytes(case) == 8 * (2 * n_params(cell, 4, H) + T * B * (4 + H)
                                         + T * B * saved_per_step(cell, H))


def test_case_validation_and_matrix():
    with pytest.raises(ValueError, match="cell"):
        Case("lstmx", 1, 1, 1, 1)
    with pytest.raises(ValueError, match="mode"):
        Case("lstm", 1, 1, 1, 1, "backward")
    with pytest.raises(ValueError, match="H must be"):
        Case("lstm", 1, 1, 1, 0)
    quick = quick_cases()
    labels = {c.label for c in quick}
    for want in ("lstm B16 T200 I8 H32 train f32", "gru B16 T200 I8 H32 train f32",
                 "lstm B32 T100 I32 H64 train f32", "lstm B128 T28 I28 H128 train f32",
                 "gru B64 T100 I128 H256 train f32", "lstm B64 T50 I512 H512 train f32",
                 "lstm B1 I64 H64 step f32"):
        assert want in labels
    full = full_cases()
    lstm_train = {(c.B, c.T, c.I, c.H) for c in full if c.cell == "lstm" and c.mode == "train"}
    assert {(B, T, H, H) for B in (16, 64) for T in (25, 50)
            for H in (256, 512, 1024)} <= lstm_train
    assert {c.dtype for c in full} == {"float32", "float64"}
    assert {c.mode for c in full} == {"fwd", "train", "step"}
    assert {c.cell for c in full} == set(CELLS)
    assert len({c.id for c in full}) == len(full)


# ------------------------------------------------------------------ timer
def test_measure_excludes_warmup_and_takes_the_median():
    calls = []

    def fn():
        calls.append(None)
        time.sleep(0.05 if len(calls) == 1 else 0.002)   # the first call "compiles"
    t = measure(fn, warmup=2, min_rounds=5, max_rounds=5, min_time=0.0)
    assert len(calls) == 7 and t.rounds == 5
    assert t.first >= 0.05
    assert 0.002 <= t.median < 0.04
    with pytest.raises(ValueError, match="warmup"):
        measure(fn, warmup=0)


def test_gemm_ceiling_reports_every_dtype_and_thread_count():
    result = gemm_ceiling([1, 2], n=128, min_time=0.0)
    assert set(result) == {(d, t) for d in ("float32", "float64") for t in (1, 2)}
    assert all(v > 0 and np.isfinite(v) for v in result.values())


# ------------------------------------------------------------------ runners
def test_step_runner_matches_one_step_of_the_oracle(rng):
    """The streaming runner (input projection + backend.step) equals a T=1 forward."""
    case = Case("lstm", 3, 1, 4, 5, "step", "float64")
    seed = int(rng.integers(1 << 30))
    h, c = make_runner("reference", case, 1, seed=seed).fn()
    params, x, _ = fastseq_inputs(case, seed=seed)
    _, h_n, c_n, _ = stack_forward("reference", "lstm", params, x, training=False)
    assert h.shape == (3, 5) and np.any(h != 0)
    assert_close(h, h_n[0], 1e-12, name="h")
    assert_close(c, c_n[0], 1e-12, name="c")


def test_train_runner_returns_gradients_of_every_parameter():
    case = Case("gru", 2, 4, 3, 5, "train", "float64")
    runner = make_runner("reference", case, 1)
    with runner.scope():
        dx, grads, dh0, _ = runner.fn()
    assert dx.shape == (4, 2, 3)
    assert set(grads) == set(param_shapes(cell_spec("gru"), 3, 5))
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in grads.values())


def test_unknown_backend_is_reported_as_unsupported():
    with pytest.raises(Unsupported):
        make_runner("no-such-engine", Case("rnn", 1, 1, 1, 1), 1)


def test_run_cases_records_gflops_and_ceiling_share():
    cases = [Case("rnn", 2, 3, 4, 5, "fwd", "float64"), Case("rnn", 1, 1, 4, 5, "step")]
    ceiling = {("float64", 1): 10.0, ("float32", 1): 20.0}
    recs = suite.run_cases(cases, ["reference", "no-such-engine"], 1, ceiling,
                           min_time=0.0)
    assert [r["impl"] for r in recs] == ["reference", "no-such-engine"] * 2
    for rec, case in zip(recs[::2], cases):
        assert rec["gflops"] == pytest.approx(flops(case) / rec["median_s"] / 1e9)
        top = ceiling[(case.dtype, 1)]
        assert rec["pct_ceiling"] == pytest.approx(100 * rec["gflops"] / top)
    assert "skip" in recs[1] and "skip" in recs[3]


# ------------------------------------------------------------------ report
def _fake(impl, median, case=Case("lstm", 16, 200, 8, 32, "train", tag="issue4")):
    return suite.record(case, impl, 2, dict(median=median, min=median, rounds=3,
                                            first=median), ceiling={("float32", 2): 100.0})


def test_ratios_are_peer_time_over_own_time():
    recs = [_fake("numba", 0.001), _fake("cython", 0.002), _fake("torch", 0.004),
            _fake("keras", 0.010)]
    row = report.by_case(recs)[next(iter(report.by_case(recs)))]
    assert report.ratios(recs[0], row) == pytest.approx({"torch": 4.0, "keras": 10.0})
    table = report.summary_table(recs)
    assert "4.00× (numba)" in table and "10.00× (numba)" in table
    detail = report.detail_table(recs)
    assert "2.00×" in detail      # cython against torch
    assert report.impl_order(recs) == ["numba", "cython", "torch", "keras"]


def test_report_command_writes_tables_and_results(tmp_path):
    """The whole command on tiny sizes: reference backend, no peers."""
    out = tmp_path / "report"
    assert bench_main(["--tiny", "--report", "--backends", "reference", "--peers", "none",
                       "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    data = json.loads((out / "results.json").read_text())
    for case in {r["label"] for r in data["records"]}:
        assert case in text
    assert "## Machine ceiling" in text and "## Memory of one training step" in text
    assert "## Cold start" in text
    assert all(r["impl"] == "reference" and r["gflops"] > 0 for r in data["records"])
    assert data["meta"]["threads"] >= 1 and data["memory"][0]["ratio"] > 0
    summary = (out / "summary.md").read_text()
    assert data["meta"]["date"] in summary
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib" in data["skipped"]["plots"]
    else:
        assert data["plots"] and all((out / p).stat().st_size > 1000 for p in data["plots"])
    # re-rendering saved results gives the same tables
    again = tmp_path / "again"
    assert bench_main(["--render", str(out / "results.json"), "--out", str(again)]) == 0
    assert (again / "report.md").read_text() == text


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_covers_the_minimum():
    """A real training step cannot live in less than its parameters, gradients, input
    and saved activations: the measured peak is at least (almost) the minimum."""
    case = Case("lstm", 32, 100, 32, 64, "train")
    result = measure_memory("reference", case, 1)
    assert result["minimum"] == min_train_bytes(case)
    assert result["peak"] >= 0.9 * result["minimum"]
    assert 0.9 <= result["ratio"] < 50
