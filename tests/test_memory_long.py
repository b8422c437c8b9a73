"""Memory at T = 100,000 and at a large batch (issue 11), and MemoryError before allocation.

Peak memory is the resident-set high-water mark of a fresh process running one forward +
backward (:func:`fastseq.benchmarking.memory.measure_memory`), not ``tracemalloc``: Numba's
NRT and the Cython kernels allocate with their own ``malloc``, which tracemalloc never sees,
so it would undercount exactly the engines under test. The prediction is the documented
minimum :func:`fastseq.benchmarking.cases.min_train_bytes` (parameters and their gradients,
x, the output gradient, and the activations BPTT reads: h, gates, c or the GRU's recurrent
candidate); the engines may use at most ``FACTOR`` times that. Measured here (2026-11-23,
float32, 1 thread): LSTM B2 T100k I8 H32 1.84x on both engines, GRU 2.01x, LSTM B4096 T8
I32 H64 1.94-2.01x (the extra: x @ W's output xw [T, B, G*H] next to the saved gates, and
the gradient buffers of the backward pass).
"""
import numpy as np
import pytest

from conftest import engine_backends
from fastseq import _memory
from fastseq import functional as fn
from fastseq.benchmarking.cases import Case, min_train_bytes
from fastseq.benchmarking.memory import measure_memory
from fastseq.estimators import SequenceRegressor

FACTOR = 2.5
CPU_ENGINES = [b for b in engine_backends() if b in ("numba", "cython")]
LONG = Case("lstm", B=2, T=100_000, I=8, H=32)
CASES = [
    pytest.param("cython", LONG, id="cython-lstm-T100k"),
    pytest.param("numba", LONG, id="numba-lstm-T100k", marks=pytest.mark.slow),
    pytest.param("numba", Case("gru", B=2, T=100_000, I=8, H=32), id="numba-gru-T100k",
                 marks=pytest.mark.slow),
    pytest.param("cython", Case("gru", B=2, T=100_000, I=8, H=32), id="cython-gru-T100k",
                 marks=pytest.mark.slow),
    pytest.param("numba", Case("lstm", B=4096, T=8, I=32, H=64), id="numba-lstm-B4096",
                 marks=pytest.mark.slow),
    pytest.param("cython", Case("lstm", B=4096, T=8, I=32, H=64), id="cython-lstm-B4096",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("impl, case", CASES)
def test_training_step_peak_memory_within_factor_of_minimum(impl, case):
    if impl not in CPU_ENGINES:
        pytest.skip(f"{impl} engine not available")
    result = measure_memory(impl, case, n_threads=1)
    if "skip" in result:
        pytest.skip(result["skip"])
    minimum = min_train_bytes(case)
    assert result["minimum"] == minimum
    assert result["peak"] >= 0.9 * minimum, (
        f"peak {result['peak'] / 2**20:.1f} MiB below the minimum {minimum / 2**20:.1f} MiB: "
        "the measurement missed the step")
    assert result["peak"] <= FACTOR * minimum, (
        f"{case.label} on {impl}: peak {result['peak'] / 2**20:.1f} MiB = "
        f"{result['ratio']:.2f}x the minimum {minimum / 2**20:.1f} MiB (limit {FACTOR}x)")
    # the MemoryError guard's lower bound for this batch stays below what the step really
    # used: it refuses only batches that could not have run
    guard = _memory.batch_memory_bytes(case.cell, case.H, 1, False, case.T, case.B, 4,
                                       training=True, input_elements=case.T * case.B * case.I)
    assert guard <= result["peak"], (guard, result["peak"])


# ------------------------------------------------------------------ refused before allocation
def test_functional_forward_refuses_huge_shapes_before_copying():
    params = fn.init_params("lstm", 3, 64, num_layers=2, random_state=0)
    huge = np.broadcast_to(np.float32(0), (4, 10**9, 3))          # costs nothing until copied
    with pytest.raises(MemoryError, match=r"x has 1000000000 time steps: one forward batch "
                                          r"of 4 sequences of a 2-layer lstm with units=64"):
        fn.forward("lstm", params, huge)
    with pytest.raises(MemoryError, match="one training forward batch of 4"):
        fn.forward("lstm", params, np.swapaxes(huge, 0, 1), batch_first=False,
                   training=True)
    ragged = [np.broadcast_to(np.float32(0), (10**9, 3)), np.zeros((2, 3), np.float32)]
    with pytest.raises(MemoryError, match="x has 1000000000 time steps"):
        fn.forward("lstm", params, ragged)


def test_estimator_ragged_input_refused_after_validation(monkeypatch, rng):
    # lists carry no shape: the guard runs once the sizes are known, before the engine
    # allocates its buffers (here with the machine's memory pretended to be 16 KiB)
    X = rng.standard_normal((6, 50, 3)).astype(np.float32)
    model = SequenceRegressor(units=8, max_iter=1, random_state=0, backend="numba",
                              n_jobs=1).fit(X, X[:, 0, 0])
    monkeypatch.setattr(_memory, "physical_memory", lambda: 16 * 2**10)
    seqs = [s for s in X]
    with pytest.raises(MemoryError, match="X has 50 time steps: one prediction batch of 6"):
        model.predict(seqs)
    with pytest.raises(MemoryError, match="X has 50 time steps: one training batch of 6"):
        SequenceRegressor(units=8, max_iter=1).fit(seqs, X[:, 0, 0])
    with pytest.raises(MemoryError, match="x has 50 time steps"):
        fn.forward("lstm", fn.init_params("lstm", 3, 8, random_state=0), seqs)
    monkeypatch.undo()
    assert model.predict(seqs).shape == (6,)
