"""The CUDA backend against the float64 reference: every cell and variant, float32 and
float64, ragged and unsorted lengths (0 and T included), recurrent-dropout masks, BPTT with
gradients on every output, one-step inference, and the layer stack on top.

Runs where the backend is available: on a GPU, or on the CPU under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda.py``; the variable must be set
before numba is imported). Shapes stay tiny because the simulator runs every CUDA thread as
a Python thread; threads per block and the GEMM tile are patched small so that even these
shapes spread over several blocks and exercise every block-boundary branch.
"""
import numpy as np
import pytest

from fastseq import layers
from fastseq._config import RTOL
from fastseq.backends import BackendUnavailable, get_backend
from fastseq.backends import reference as ref
from fastseq.cells import CellSpec

from compare import assert_close

CELLS = [CellSpec("rnn", "tanh"), CellSpec("rnn", "relu"), CellSpec("lstm", "tanh"),
         CellSpec("lstm", "relu"), CellSpec("gru", "tanh", True),
         CellSpec("gru", "tanh", False)]
DTYPES = [np.float64, np.float32]


def _cuda_or_none():
    try:
        return get_backend("cuda")
    except BackendUnavailable:
        return None


CUDA = _cuda_or_none()
needs_cuda = pytest.mark.skipif(
    CUDA is None, reason="no CUDA GPU/driver here; run with NUMBA_ENABLE_CUDASIM=1 for "
                         "the simulator")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Tiny blocks (stumpy's habit): T=3, B=3, H=3 then spans several blocks per launch."""
    if CUDA is None:
        return
    from fastseq.backends.cuda import config
    monkeypatch.setattr(config, "THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(config, "TILE", 2)
    monkeypatch.setattr(config, "REDUCE_CHUNKS", 3)


@pytest.fixture(params=["stepwise", "persistent"])
def forward_path(request, monkeypatch):
    """Both paths, forward and backward: GEMM + pointwise kernels per step, and the
    persistent kernels (whole time loop in one launch, one block per row; with 4 threads
    per block and H=5, each thread handles several units)."""
    from fastseq.backends.cuda import config
    if request.param == "stepwise":
        monkeypatch.setattr(config, "PERSISTENT_MAX_HIDDEN", 0)
    else:
        monkeypatch.setattr(config, "PERSISTENT_MAX_HIDDEN", 8)
        monkeypatch.setattr(config, "PERSISTENT_MAX_BATCH", 8)
    return request.param


def _inputs(rng, cell, T, B, H, dtype, lengths=None, masked=True):
    G = cell.n_gates
    scale = 1.0 / np.sqrt(H)
    xw = rng.normal(size=(T, B, G * H)).astype(dtype)
    R = rng.uniform(-2 * scale, 2 * scale, size=(H, G * H)).astype(dtype)
    bh = rng.normal(scale=0.5, size=G * H).astype(dtype)
    h0 = rng.normal(scale=0.5, size=(B, H)).astype(dtype)
    c0 = rng.normal(scale=0.5, size=(B, H)).astype(dtype) if cell.has_cell_state else None
    if lengths is None:
        lengths = rng.integers(0, T + 1, size=B)
    rmask = None
    if masked:
        rmask = ((rng.random((B, H)) > 0.3) / 0.7).astype(dtype)
    return xw, R, bh, h0, c0, np.asarray(lengths), rmask


def _check_forward_backward(rng, cell, dtype, T, B, H, lengths=None, masked=True):
    rtol = RTOL[np.dtype(dtype).name]
    xw, R, bh, h0, c0, lengths, rmask = _inputs(rng, cell, T, B, H, dtype, lengths, masked)
    H_all, (h_T, c_T), cache = CUDA.forward(cell, xw, R, bh, h0, c0, lengths, rmask=rmask)
    e_H, (e_h, e_c), e_cache = ref.forward(cell, xw, R, bh, h0, c0, lengths, rmask=rmask)
    assert H_all.dtype == dtype and h_T.dtype == dtype
    assert_close(H_all, e_H, rtol, "H_all")
    assert_close(h_T, e_h, rtol, "h_T")
    if cell.has_cell_state:
        assert_close(c_T, e_c, rtol, "c_T")
    else:
        assert c_T is None

    dH_all = rng.normal(size=(T, B, H)).astype(dtype)
    dh_T = rng.normal(size=(B, H)).astype(dtype)
    dc_T = rng.normal(size=(B, H)).astype(dtype) if cell.has_cell_state else None
    got = CUDA.backward(cell, cache, dH_all, dh_T, dc_T)
    expected = ref.backward(cell, e_cache, dH_all, dh_T, dc_T)
    for name, g, e in zip(("dxw", "dR", "dbh", "dh0", "dc0"), got, expected):
        if e is None:
            assert g is None, name
        else:
            assert g.dtype == dtype, name
            assert_close(g, e, rtol, name)
    return cache


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_forward_backward_match_reference(rng, cell, dtype, forward_path):
    # ragged and unsorted, with an empty sequence and a full one
    _check_forward_backward(rng, cell, dtype, T=3, B=4, H=5, lengths=[2, 3, 0, 1])


@needs_cuda
@pytest.mark.parametrize("cell", [CELLS[0], CELLS[2], CELLS[4], CELLS[5]],
                         ids=lambda c: c.name)
def test_awkward_shapes(rng, cell, forward_path):
    # T=1, batch 1, H=1, random lengths; no recurrent dropout (mask None)
    _check_forward_backward(rng, cell, np.float64, T=1, B=1, H=1, masked=False)
    _check_forward_backward(rng, cell, np.float64, T=2, B=1, H=5, masked=False)
    _check_forward_backward(rng, cell, np.float32, T=2, B=5, H=1)


@needs_cuda
@pytest.mark.parametrize("cell", [CELLS[2], CELLS[5]], ids=lambda c: c.name)
def test_empty_time_and_all_zero_lengths(rng, cell, forward_path):
    _check_forward_backward(rng, cell, np.float64, T=2, B=2, H=2, lengths=[0, 0])
    _check_forward_backward(rng, cell, np.float64, T=0, B=2, H=2, lengths=[0, 0])


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_step_matches_forward_and_reference(rng, cell, dtype, forward_path):
    rtol = RTOL[np.dtype(dtype).name]
    T, B, H = 2, 2, 3
    xw, R, bh, h0, c0, _, rmask = _inputs(rng, cell, T, B, H, dtype)
    H_all, (h_T, c_T), _ = CUDA.forward(cell, xw, R, bh, h0, c0, None, rmask=rmask,
                                        training=False)
    h, c = h0, c0
    for t in range(T):
        e_h, e_c = ref.step(cell, xw[t], R, bh, h, c, rmask=rmask)
        h, c = CUDA.step(cell, xw[t], R, bh, h, c, rmask=rmask)
        assert h.dtype == dtype
        assert_close(h, e_h, rtol, f"step {t} h")
        assert_close(h, H_all[t], rtol, f"step {t} h vs forward")
        if cell.has_cell_state:
            assert_close(c, e_c, rtol, f"step {t} c")
        else:
            assert c is None
    assert_close(h, h_T, rtol, "h_T")


@needs_cuda
def test_backward_is_deterministic(rng):
    cell = CellSpec("gru", "tanh", True)
    xw, R, bh, h0, c0, lengths, rmask = _inputs(rng, cell, 3, 4, 3, np.float32, [3, 1, 2, 3])
    dH = rng.normal(size=(3, 4, 3)).astype(np.float32)
    runs = []
    for _ in range(2):
        _, _, cache = CUDA.forward(cell, xw, R, bh, h0, c0, lengths, rmask=rmask)
        runs.append(CUDA.backward(cell, cache, dH, None, None))
    for a, b in zip(runs[0], runs[1]):
        if a is not None:
            np.testing.assert_array_equal(a, b)


@needs_cuda
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.name)
def test_persistent_and_stepwise_paths_agree(rng, cell, monkeypatch):
    """Same summation order in both paths: agreement to a few ulps in float32."""
    from fastseq.backends.cuda import config, persistent
    xw, R, bh, h0, c0, lengths, rmask = _inputs(rng, cell, 3, 3, 6, np.float32)
    dH = rng.normal(size=(3, 3, 6)).astype(np.float32)
    results = {}
    for max_hidden in (0, 8):
        monkeypatch.setattr(config, "PERSISTENT_MAX_HIDDEN", max_hidden)
        H_all, (h_T, _), ws = CUDA.forward(cell, xw, R, bh, h0, c0, lengths, rmask=rmask)
        assert persistent.applies(ws) == (max_hidden > 0)
        gates = ws.gates.copy_to_host()
        grads = CUDA.backward(cell, ws, dH, None, None)
        results[max_hidden] = (H_all, h_T, gates) + tuple(g for g in grads if g is not None)
    for a, b in zip(results[0], results[8]):
        scale = max(1.0, float(np.abs(a).max()))
        np.testing.assert_allclose(a, b, rtol=0, atol=8 * scale * np.finfo(np.float32).eps)


@needs_cuda
def test_device_resident_inputs(rng):
    """Weights already on the device are used in place (no upload), same results."""
    from numba import cuda
    cell = CellSpec("lstm")
    xw, R, bh, h0, c0, lengths, rmask = _inputs(rng, cell, 2, 3, 2, np.float64)
    expected = CUDA.forward(cell, xw, R, bh, h0, c0, lengths, rmask=rmask)[0]
    got = CUDA.forward(cell, xw, cuda.to_device(R), cuda.to_device(bh), h0, c0, lengths,
                       rmask=rmask)[0]
    np.testing.assert_array_equal(got, expected)


@needs_cuda
def test_layer_stack_bidirectional_matches_reference(rng):
    cell = CellSpec("gru", "tanh", False)
    T, B, I, H = 3, 2, 2, 2
    params = layers.init_params(cell, I, H, num_layers=2, bidirectional=True,
                                random_state=int(rng.integers(2**31)), dtype=np.float64)
    x = rng.normal(size=(T, B, I))
    lengths = np.array([2, 3])
    drop = [(rng.random((T, B, 2 * H)) > 0.2) / 0.8]
    rmasks = [((rng.random((B, H)) > 0.2) / 0.8) for _ in range(4)]
    results = {}
    for name in ("cuda", "reference"):
        out, h_n, _, cache = layers.stack_forward(name, cell, params, x, lengths,
                                                  dropout_masks=drop, rmasks=rmasks)
        d_out = np.linspace(-1, 1, out.size).reshape(out.shape)
        dx, grads, dh0, _ = layers.stack_backward(params, cache, d_out)
        results[name] = dict(out=out, h_n=h_n, dx=dx, dh0=dh0, **grads)
    for key, expected in results["reference"].items():
        assert_close(results["cuda"][key], expected, RTOL["float64"], key)


@needs_cuda
def test_bad_shapes_raise_clear_errors(rng):
    cell = CellSpec("lstm")
    xw, R, bh, h0, c0, lengths, _ = _inputs(rng, cell, 2, 2, 3, np.float64)
    with pytest.raises(ValueError, match="R has shape"):
        CUDA.forward(cell, xw, R[:, :-1], bh, h0, c0, lengths)
    with pytest.raises(ValueError, match="h0 has shape"):
        CUDA.forward(cell, xw, R, bh, h0[:1], c0, lengths)
    with pytest.raises(ValueError, match="lengths"):
        CUDA.forward(cell, xw, R, bh, h0, c0, [3, 1])
    with pytest.raises(ValueError, match="xw must be"):
        CUDA.forward(cell, xw[0], R, bh, h0, c0, lengths)
    with pytest.raises(TypeError, match="CellSpec"):
        CUDA.forward("lstm", xw, R, bh, h0, c0, lengths)


@pytest.mark.skipif(CUDA is not None, reason="the backend is available here")
def test_unavailable_backend_says_why():
    with pytest.raises(BackendUnavailable, match="no usable NVIDIA GPU"):
        get_backend("cuda")
    import fastseq.backends.cuda as package     # the kernels import without a GPU
    assert package.name == "cuda"
    with pytest.raises(BackendUnavailable):
        package.forward


@needs_cuda
@pytest.mark.parametrize("estimator", ["classifier", "regressor"])
def test_estimators_train_with_backend_cuda(rng, estimator):
    """backend="cuda" reaches the kernels through estimator -> network -> layer -> backend:
    a short float64 fit (bidirectional GRU, recurrent dropout, ragged list input) gives the
    reference backend's predictions."""
    import warnings

    from fastseq.estimators import SequenceClassifier, SequenceRegressor
    X = [rng.normal(size=(T, 2)) for T in (3, 1, 2, 3, 2, 3)]
    if estimator == "classifier":
        y = np.array([0, 1, 2, 1, 0, 2])
        make = SequenceClassifier
        predict = "predict_proba"
    else:
        y = rng.normal(size=6)
        make = SequenceRegressor
        predict = "predict"
    outputs = {}
    for backend in ("cuda", "reference"):
        model = make(cell="gru", units=3, bidirectional=True, recurrent_dropout=0.2,
                     max_iter=2, batch_size=3, random_state=0, backend=backend,
                     dtype="float64")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # ConvergenceWarning after 2 epochs
            model.fit(X, y)
        outputs[backend] = getattr(model, predict)(X)
    assert_close(outputs["cuda"], outputs["reference"], 1e-9, predict)
