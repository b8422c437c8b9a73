"""Every CUDA kernel compiles to PTX for real GPU architectures, on machines without a GPU.

``numba.cuda.compile_ptx`` runs Numba's type inference and lowering and NVIDIA's NVVM, so a
typing error, an unsupported construct or a float64 promotion inside a float32 kernel is
caught here, in the ordinary CI pass. It needs NVVM from a CUDA toolkit (``nvcc`` / the
``cuda-nvcc`` package); without it the tests skip and say so.
"""
import os

import numpy as np
import pytest

from fastseq.cells import CellSpec

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
    reason="compile_ptx needs the real CUDA target; the simulator pass runs test_cuda.py")

CELLS = [CellSpec("rnn", "tanh"), CellSpec("rnn", "relu"), CellSpec("lstm", "tanh"),
         CellSpec("lstm", "relu"), CellSpec("gru", "tanh", True),
         CellSpec("gru", "tanh", False)]
ARCHS = [(8, 0), (9, 0)]          # A100, H100/H200


def _trivial_kernel(out):
    out[0] = 1.0


_REASON = []


def _toolchain_missing_reason():
    """None when compile_ptx works here, else why not (no NVVM / NVRTC / libdevice)."""
    if not _REASON:
        try:
            from numba import cuda
            cuda.compile_ptx(_trivial_kernel, "void(float32[::1])", cc=ARCHS[0])
            _REASON.append(None)
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot compile here"
            _REASON.append("CUDA compiler libraries (NVVM/NVRTC from a CUDA toolkit) not "
                           f"found, cannot compile PTX: {type(exc).__name__}: {exc}")
    return _REASON[0]


@pytest.fixture
def target_device(monkeypatch, request):
    """compile_ptx compiles kernels for the given cc, but the device functions they call
    are compiled through their dispatcher, which asks the current device for its compute
    capability; with no GPU present, answer with the target architecture."""
    reason = _toolchain_missing_reason()
    if reason:
        pytest.skip(reason)
    import numba.cuda.dispatcher as dispatcher
    cc = request.param

    class TargetDevice:
        compute_capability = cc

    monkeypatch.setattr(dispatcher, "get_current_device", lambda: TargetDevice())
    return cc


def _compile_all(sources, dtype, cc):
    from numba import cuda

    from fastseq.backends.cuda.kernels import signature
    for name, pyfunc in sources.items():
        ptx, _ = cuda.compile_ptx(pyfunc, signature(pyfunc, dtype), cc=cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx, name
        assert ".entry" in ptx, name
        if dtype is np.float32:
            # float32 kernels must not promote to double anywhere (float32 literals only)
            assert ".f64" not in ptx, f"{name}: float64 arithmetic in a float32 kernel"
        if name.startswith("gemm"):
            assert ".shared" in ptx, f"{name}: the GEMM must stage tiles in shared memory"


# the cell kernels for one architecture (the newest NVVM here supports), the shared ones
# (GEMMs, reductions, state init) for each: compiling is ~0.3 s a kernel on 2 cores
@pytest.mark.parametrize("target_device", [ARCHS[-1]], indirect=True,
                         ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_cell_kernels_compile(cell, dtype, target_device):
    from fastseq.backends.cuda.kernels import kernel_sources
    sources = kernel_sources(cell, dtype, shared=False)
    assert len(sources) >= 2
    _compile_all(sources, dtype, target_device)


@pytest.mark.parametrize("target_device", ARCHS, indirect=True,
                         ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_shared_kernels_compile(dtype, target_device):
    from fastseq.backends.cuda.kernels import shared_kernel_sources
    sources = shared_kernel_sources(dtype)
    assert {"gemm_hw", "gemm_dh", "gemm_dR", "colsum_partial", "colsum_final"} <= set(sources)
    _compile_all(sources, dtype, target_device)


def test_signature_rules_cover_every_argument():
    from fastseq.backends.cuda.kernels import kernel_sources, signature
    for cell in CELLS:
        for name, pyfunc in kernel_sources(cell, np.float32, tile=4).items():
            sig = signature(pyfunc, np.float32)
            assert len(sig.args) >= 2, name
