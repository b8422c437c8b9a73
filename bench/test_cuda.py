"""GPU benchmarks: fastseq's cuda backend against PyTorch's cuDNN (``nn.LSTM/GRU/RNN`` on a
CUDA device). Skipped unless a real GPU is present (never under the simulator).

    python -m pytest bench/test_cuda.py --benchmark-only --benchmark-columns=median,rounds

Two groups, as the GPU issue sets its goals:

* ``small``: B <= 16, H <= 128, where launch overhead dominates (goal: faster than cuDNN);
* ``large``: B = 64, H >= 512 (goal: within 2x of cuDNN).

Each case is timed for fastseq (``backend`` level: the recurrence on ``xw`` that is
already computed, and ``layer`` level: ``stack_forward``/``stack_backward`` with the host
input projection) and for cuDNN, in ``fwd`` (inference) and ``train`` (forward + backward)
mode, float32. ``extra_info`` carries the case and the nominal GFLOP/s (DESIGN.md 4).
Every timed call ends with the results on the host (fastseq copies them back; torch is
synchronised), so the numbers are wall time per call.
"""
import numpy as np
import pytest

from fastseq.backends import BackendUnavailable, get_backend
from fastseq.cells import make_cell

try:
    _CUDA = get_backend("cuda")
    from fastseq.backends.cuda.backend import SIMULATOR
    _REASON = "the CUDA simulator is on: no timings" if SIMULATOR else None
except BackendUnavailable as exc:
    _CUDA, _REASON = None, f"no GPU: {exc}"

pytestmark = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))

# (group, cell, B, T, I, H)
CASES = [
    ("small", "lstm", 1, 100, 32, 64),
    ("small", "lstm", 16, 100, 32, 128),
    ("small", "gru", 16, 100, 32, 128),
    ("small", "rnn", 16, 100, 32, 128),
    ("large", "lstm", 64, 50, 512, 512),
    ("large", "gru", 64, 50, 512, 512),
    ("large", "lstm", 64, 50, 1024, 1024),
]
IDS = [f"{g}-{c}-B{B}-T{T}-H{H}" for g, c, B, T, I, H in CASES]


def _flops(cell, B, T, I, H, mode):
    G = make_cell(cell).n_gates
    forward = T * 2 * B * (I + H) * G * H
    return forward if mode == "fwd" else 3 * forward


def _record(benchmark, cell, B, T, I, H, mode, impl):
    benchmark.extra_info.update(cell=cell, B=B, T=T, I=I, H=H, mode=mode, impl=impl,
                                flops=_flops(cell, B, T, I, H, mode))


def _gflops(benchmark):
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["gflops"] = benchmark.extra_info["flops"] / stats.stats.median / 1e9


@pytest.mark.parametrize("mode", ["fwd", "train"])
@pytest.mark.parametrize("group,cell,B,T,I,H", CASES, ids=IDS)
def test_fastseq_cuda_backend(benchmark, group, cell, B, T, I, H, mode):
    """The recurrence alone (xw given), as cuDNN's kernels see it."""
    spec = make_cell(cell)
    rng = np.random.default_rng(0)
    G = spec.n_gates
    xw = rng.standard_normal((T, B, G * H)).astype(np.float32)
    R = (rng.uniform(-1, 1, (H, G * H)) / np.sqrt(H)).astype(np.float32)
    bh = np.zeros(G * H, np.float32)
    h0 = np.zeros((B, H), np.float32)
    c0 = np.zeros((B, H), np.float32) if spec.has_cell_state else None
    dH = rng.standard_normal((T, B, H)).astype(np.float32)

    def fn():
        out = _CUDA.forward(spec, xw, R, bh, h0, c0, None, training=(mode == "train"))
        if mode == "train":
            return _CUDA.backward(spec, out[2], dH, None, None)
        return out

    _record(benchmark, cell, B, T, I, H, mode, "fastseq-cuda-backend")
    fn()                                   # compile outside the timing
    benchmark(fn)
    _gflops(benchmark)


@pytest.mark.parametrize("mode", ["fwd", "train"])
@pytest.mark.parametrize("group,cell,B,T,I,H", CASES, ids=IDS)
def test_fastseq_cuda_layer(benchmark, group, cell, B, T, I, H, mode):
    """The whole layer as estimators run it (host input projection and dW, dx)."""
    from fastseq.benchmarking.cases import Case
    from fastseq.benchmarking.runners import fastseq_runner
    runner = fastseq_runner("cuda", Case(cell, B, T, I, H, mode=mode), n_threads=None)
    _record(benchmark, cell, B, T, I, H, mode, "fastseq-cuda-layer")
    runner.fn()
    with runner.scope():
        benchmark(runner.fn)
    _gflops(benchmark)


@pytest.mark.parametrize("mode", ["fwd", "train"])
@pytest.mark.parametrize("group,cell,B,T,I,H", CASES, ids=IDS)
def test_torch_cudnn(benchmark, group, cell, B, T, I, H, mode):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA device here (CPU build or no driver)")
    device = torch.device("cuda")
    torch.backends.cudnn.enabled = True
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    module = cls(I, H).to(device)
    x = torch.randn(T, B, I, device=device, requires_grad=(mode == "train"))
    dout = torch.randn(T, B, H, device=device)

    def fn():
        if mode == "fwd":
            with torch.no_grad():
                out, _ = module(x)
        else:
            out, _ = module(x)
            out.backward(dout)
        torch.cuda.synchronize()
        return out

    _record(benchmark, cell, B, T, I, H, mode, "torch-cudnn")
    fn()
    benchmark(fn)
    _gflops(benchmark)
