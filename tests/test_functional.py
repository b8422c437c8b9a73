"""fastseq.functional: pinned signatures, PyTorch fixture values, engines vs the reference,
finite differences through the public layout, step vs forward, and argument validation."""
import inspect
import os

import numpy as np
import pytest

from fastseq import functional as F
from fastseq.cells import make_cell

from compare import assert_all_close, assert_close
from conftest import engine_backends

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "embedding_torch_fixture.npz")
CELLS = ["lstm", "gru", "gru_classic", "rnn_tanh", "rnn_relu", "lstm_relu"]
# Under NUMBA_ENABLE_CUDASIM=1 the "cuda" engine runs its kernels as Python (~10 s per case
# here); it keeps only the tiny cases in this file, its own suite covers it in depth.
SIMULATED_CUDA = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
HEAVY_ENGINES = [b for b in engine_backends() if not (b == "cuda" and SIMULATED_CUDA)]


def _engine_cases(shapes):
    """(backend, shape) pairs: every engine on every shape, simulated CUDA on the first."""
    return [(b, s) for b in engine_backends() for k, s in enumerate(shapes)
            if b in HEAVY_ENGINES or k == 0]


# ---------------------------------------------------------------- the contract
def test_api_version_and_signatures():
    # Changing any of these is a breaking change: bump FUNCTIONAL_API_VERSION and
    # docs/embedding.md together.
    assert F.FUNCTIONAL_API_VERSION == 1
    expected = {
        "param_shapes": "(cell, input_size, hidden_size, num_layers=1, bidirectional=False)",
        "init_params": "(cell, input_size, hidden_size, num_layers=1, bidirectional=False, *, "
                       "random_state=None, dtype=<class 'numpy.float32'>)",
        "forward": "(cell, params, x, lengths=None, h0=None, c0=None, *, batch_first=True, "
                   "backend='auto', training=False, dropout=0.0, recurrent_dropout=0.0, "
                   "random_state=None, n_threads=None)",
        "backward": "(cache, d_output=None, dh_n=None, dc_n=None, *, n_threads=None, "
                    "state_grad=True)",
        "step": "(cell, params, x_t, h=None, c=None, *, backend='auto')",
        "validate_params": "(cell, params)",
    }
    for name, sig in expected.items():
        assert str(inspect.signature(getattr(F, name))) == sig, name
    assert F.ForwardResult._fields == ("output", "h_n", "c_n", "cache")
    assert F.BackwardResult._fields == ("dx", "grads", "dh0", "dc0")
    assert F.StepResult._fields == ("output", "h", "c")
    assert set(F.__all__) >= set(expected)


def test_param_shapes_are_pytorchs():
    shapes = F.param_shapes("lstm", 3, 5, num_layers=2, bidirectional=True)
    assert list(shapes)[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert shapes["weight_ih_l1_reverse"] == (20, 10)
    assert shapes["weight_hh_l1"] == (20, 5)
    p = F.init_params("gru", 3, 5, random_state=0, dtype=np.float64)
    assert all(v.dtype == np.float64 for v in p.values())
    assert max(np.abs(v).max() for v in p.values()) <= 1 / np.sqrt(5)


# ---------------------------------------------------------------- PyTorch's values
def _fixture(name):
    data = np.load(FIXTURE)
    params = {k.split("/", 2)[2]: data[k] for k in data.files
              if k.startswith(f"{name}/param/")}
    grads = {k.split("/", 2)[2]: data[k] for k in data.files if k.startswith(f"{name}/grad/")}
    get = {k.split("/", 1)[1]: data[k] for k in data.files
           if k.startswith(name + "/") and "/param/" not in k and "/grad/" not in k}
    return params, grads, get


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("backend", ["reference"] + HEAVY_ENGINES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_backward_match_pytorch_fixture(name, backend, dtype):
    params, grads_t, v = _fixture(name)
    if backend != "reference" and dtype == np.float64:
        pytest.skip("engines run float32")
    params = {k: a.astype(dtype) for k, a in params.items()}
    rtol = 1e-9 if dtype == np.float64 else 2e-5
    c0 = v.get("c0")
    res = F.forward(name, params, v["x"], v["lengths"], v["h0"], c0, backend=backend,
                    training=True)
    assert res.output.dtype == dtype
    assert_close(res.output, v["output"], rtol, "output")
    assert_close(res.h_n, v["h_n"], rtol, "h_n")
    if c0 is not None:
        assert_close(res.c_n, v["c_n"], rtol, "c_n")
    g = F.backward(res.cache, v["w_out"], v["w_h"], v.get("w_c"))
    assert_all_close(g.grads, grads_t, rtol * 10, prefix=f"{name} grads: ")
    assert list(g.grads) == list(params)
    assert_close(g.dx, v["dx"], rtol * 10, "dx")
    assert_close(g.dh0, v["dh0"], rtol * 10, "dh0")
    if c0 is not None:
        assert_close(g.dc0, v["dc0"], rtol * 10, "dc0")
    # without the initial states' gradient: none returned, every other one the same bits
    res = F.forward(name, params, v["x"], v["lengths"], v["h0"], c0, backend=backend,
                    training=True)
    g2 = F.backward(res.cache, v["w_out"], v["w_h"], v.get("w_c"), state_grad=False)
    assert g2.dh0 is None and g2.dc0 is None
    np.testing.assert_array_equal(g2.dx, g.dx)
    for k in g.grads:
        np.testing.assert_array_equal(g2.grads[k], g.grads[k], err_msg=k)


# ---------------------------------------------------------------- engines vs the oracle
def _random_case(rng, cell, B, T, I, H, L, bidir, dtype=np.float32):
    params = F.init_params(cell, I, H, L, bidir, random_state=rng, dtype=dtype)
    x = rng.normal(size=(B, T, I)).astype(dtype)
    lengths = rng.integers(0, T + 1, size=B)
    lengths[rng.integers(B)] = T
    D = 2 if bidir else 1
    h0 = rng.normal(size=(L * D, B, H)).astype(dtype) * 0.5
    c0 = h0 * 0.7 if make_cell(cell).has_cell_state else None
    return params, x, lengths, h0, c0


@pytest.mark.parametrize("backend,shape", _engine_cases(
    [(1, 1, 1, 1, 1, False), (3, 6, 2, 5, 2, True), (5, 4, 3, 7, 1, True)]))
@pytest.mark.parametrize("cell", CELLS)
def test_engines_match_reference(rng, backend, cell, shape):
    B, T, I, H, L, bidir = shape
    params, x, lengths, h0, c0 = _random_case(rng, cell, B, T, I, H, L, bidir)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    ref = F.forward(cell, p64, x, lengths, h0, c0, backend="reference", training=True)
    got = F.forward(cell, params, x, lengths, h0, c0, backend=backend, training=True)
    rtol = 1e-4
    assert_close(got.output, ref.output, rtol, "output")
    assert_close(got.h_n, ref.h_n, rtol, "h_n")
    d_out = rng.normal(size=ref.output.shape)
    g_ref = F.backward(ref.cache, d_out)
    g = F.backward(got.cache, d_out)
    assert_all_close(g.grads, g_ref.grads, rtol, prefix=f"{backend} {cell}: ")
    assert_close(g.dx, g_ref.dx, rtol, "dx")


# ---------------------------------------------------------------- layouts
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batch_first_time_major_and_list_agree(rng, cell):
    params, x, lengths, h0, c0 = _random_case(rng, cell, 4, 5, 3, 4, 2, True, np.float64)
    lengths = np.maximum(lengths, 1)
    bf = F.forward(cell, params, x, lengths, h0, c0, backend="reference")
    tm = F.forward(cell, params, np.swapaxes(x, 0, 1), lengths, h0, c0,
                   batch_first=False, backend="reference")
    seqs = [x[b, :lengths[b]] for b in range(4)]
    ls = F.forward(cell, params, seqs, None, h0, c0, backend="reference")
    np.testing.assert_array_equal(bf.output, np.swapaxes(tm.output, 0, 1))
    Tm = lengths.max()
    np.testing.assert_array_equal(bf.output[:, :Tm], ls.output)
    np.testing.assert_array_equal(bf.h_n, ls.h_n)
    # padding never matters: garbage past each length changes nothing
    x_noisy = x.copy()
    for b, n in enumerate(lengths):
        x_noisy[b, n:] = 1e3
    noisy = F.forward(cell, params, x_noisy, lengths, h0, c0, backend="reference")
    np.testing.assert_array_equal(noisy.output, bf.output)
    assert np.all(bf.output[np.arange(5)[None, :] >= lengths[:, None]] == 0)


# ---------------------------------------------------------------- gradients
def _loss(cell, params, x, lengths, h0, c0, w_out, w_h, **kw):
    r = F.forward(cell, params, x, lengths, h0, c0, backend="reference", **kw)
    return float(np.sum(r.output * w_out) + np.sum(r.h_n * w_h))


@pytest.mark.parametrize("cell", ["lstm", "gru_classic", "rnn_relu"])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_backward_central_differences(rng, cell, dropout):
    params, x, lengths, h0, c0 = _random_case(rng, cell, 3, 4, 2, 3, 2, True, np.float64)
    kw = dict(training=True, dropout=dropout, recurrent_dropout=dropout, random_state=7)
    res = F.forward(cell, params, x, lengths, h0, c0, backend="reference", **kw)
    w_out = rng.normal(size=res.output.shape)
    w_h = rng.normal(size=res.h_n.shape)
    g = F.backward(res.cache, w_out, w_h)
    eps = 1e-6

    def numeric(arr, idx, call):
        old = arr[idx]
        arr[idx] = old + eps
        up = call()
        arr[idx] = old - eps
        down = call()
        arr[idx] = old
        return (up - down) / (2 * eps)

    call = lambda: _loss(cell, params, x, lengths, h0, c0, w_out, w_h, **kw)  # noqa: E731
    for name in ("weight_ih_l0", "weight_hh_l1_reverse", "bias_hh_l1", "bias_ih_l0_reverse"):
        for idx in zip(*(rng.integers(0, s, size=3) for s in params[name].shape)):
            assert abs(numeric(params[name], idx, call) - g.grads[name][idx]) < 1e-6, name
    for idx in zip(*(rng.integers(0, s, size=4) for s in x.shape)):
        assert abs(numeric(x, idx, call) - g.dx[idx]) < 1e-6, ("dx", idx)
    for idx in zip(*(rng.integers(0, s, size=3) for s in h0.shape)):
        assert abs(numeric(h0, idx, call) - g.dh0[idx]) < 1e-6, ("dh0", idx)


def test_dropout_only_in_training_and_seeded(rng):
    params, x, lengths, h0, c0 = _random_case(rng, "gru", 3, 4, 2, 3, 3, False, np.float64)
    plain = F.forward("gru", params, x, lengths, backend="reference")
    off = F.forward("gru", params, x, lengths, backend="reference", dropout=0.5)
    np.testing.assert_array_equal(plain.output, off.output)
    a = F.forward("gru", params, x, lengths, backend="reference", training=True,
                  dropout=0.5, random_state=3)
    b = F.forward("gru", params, x, lengths, backend="reference", training=True,
                  dropout=0.5, random_state=3)
    np.testing.assert_array_equal(a.output, b.output)
    assert not np.allclose(a.output, plain.output)


# ---------------------------------------------------------------- step
@pytest.mark.parametrize("backend", ["reference"] + engine_backends())
@pytest.mark.parametrize("cell", CELLS)
def test_step_reproduces_forward(rng, backend, cell):
    if backend == "cuda" and SIMULATED_CUDA and cell != "lstm":
        pytest.skip("simulated CUDA: one cell here, the cuda suite covers the rest")
    B, T, I, H, L = 3, 5, 2, 4, 2
    params, x, _, h0, c0 = _random_case(rng, cell, B, T, I, H, L, False, np.float32)
    full = F.forward(cell, params, x, None, h0, c0, backend="reference")
    h, c = h0, c0
    outs = []
    for t in range(T):
        out, h, c = F.step(cell, params, x[:, t], h, c, backend=backend)
        outs.append(out)
    assert_close(np.stack(outs, axis=1), full.output, 1e-5, "outputs")
    assert_close(h, full.h_n, 1e-5, "h")
    if c0 is not None:
        assert_close(c, full.c_n, 1e-5, "c")


# ---------------------------------------------------------------- validation
def _bad_calls():
    p = F.init_params("lstm", 3, 4, 2)
    x = np.zeros((2, 5, 3), np.float32)
    wrong_shape = dict(p, weight_hh_l1=np.zeros((16, 5), np.float32))
    extra = dict(p, fc_weight=np.zeros(3, np.float32))
    missing = {k: v for k, v in p.items() if k != "bias_hh_l1"}
    mixed = dict(p, bias_ih_l0=p["bias_ih_l0"].astype(np.float64))
    listy = dict(p, bias_ih_l0=list(p["bias_ih_l0"]))
    return [
        (lambda: F.forward("lstmx", p, x), ValueError, "cell"),
        (lambda: F.forward(3, p, x), TypeError, "cell"),
        (lambda: F.forward("lstm", [1, 2], x), TypeError, "params"),
        (lambda: F.forward("gru", p, x), ValueError, "weight_hh_l0"),
        (lambda: F.forward("lstm", wrong_shape, x), ValueError, "weight_hh_l1"),
        (lambda: F.forward("lstm", extra, x), ValueError, "fc_weight"),
        (lambda: F.forward("lstm", missing, x), ValueError, "bias_hh_l1"),
        (lambda: F.forward("lstm", mixed, x), TypeError, "bias_ih_l0"),
        (lambda: F.forward("lstm", listy, x), TypeError, "bias_ih_l0"),
        (lambda: F.forward("lstm", p, x[0]), ValueError, "x has shape"),
        (lambda: F.forward("lstm", p, x[..., :2]), ValueError, "(batch, T, 3)"),
        (lambda: F.forward("lstm", p, x.astype(str)), TypeError, "x must be numeric"),
        (lambda: F.forward("lstm", p, x, lengths=[5]), ValueError, "lengths"),
        (lambda: F.forward("lstm", p, x, lengths=[5, 6]), ValueError, "lengths"),
        (lambda: F.forward("lstm", p, x, lengths=[5, -1]), ValueError, "lengths"),
        (lambda: F.forward("lstm", p, x, lengths=[1.5, 2]), TypeError, "lengths"),
        (lambda: F.forward("lstm", p, x, h0=np.zeros((3, 2, 4))), ValueError, "h0"),
        (lambda: F.forward("lstm", p, x, c0=np.zeros((2, 4))), ValueError, "c0"),
        (lambda: F.forward("lstm", p, x, batch_first="yes"), TypeError, "batch_first"),
        (lambda: F.forward("lstm", p, x, backend="tpu"), ValueError, "backend"),
        (lambda: F.forward("lstm", p, x, dropout=1.0), ValueError, "dropout"),
        (lambda: F.forward("lstm", p, x, recurrent_dropout="x"), TypeError,
         "recurrent_dropout"),
        (lambda: F.forward("lstm", p, x, training=1), TypeError, "training"),
        (lambda: F.forward("lstm", p, [np.zeros((3, 2))]), ValueError, "x[0]"),
        (lambda: F.forward("lstm", p, [np.zeros((3, 3))], lengths=[3]), ValueError,
         "lengths"),
        (lambda: F.backward({"a": 1}), TypeError, "cache"),
        (lambda: F.backward(F.forward("lstm", p, x).cache, np.zeros((2, 5, 3))), ValueError,
         "d_output"),
        (lambda: F.backward(F.forward("lstm", p, x).cache, dh_n=np.zeros((4, 2, 4))),
         ValueError, "dh_n"),
        (lambda: F.step("lstm", p, np.zeros((2, 4))), ValueError, "x_t"),
        (lambda: F.step("lstm", p, np.zeros((2, 3)), h=np.zeros((1, 2, 4))), ValueError, "h"),
        (lambda: F.step("lstm", F.init_params("lstm", 3, 4, 1, True), np.zeros((2, 3))),
         ValueError, "unidirectional"),
        (lambda: F.step("gru", F.init_params("gru", 3, 4), np.zeros((1, 3)),
                        c=np.zeros((1, 1, 4))), ValueError, "c is only"),
        (lambda: F.init_params("lstm", 0, 4), ValueError, "input_size"),
        (lambda: F.init_params("lstm", 3, 4.0), TypeError, "hidden_size"),
        (lambda: F.init_params("lstm", 3, 4, dtype=np.int32), TypeError, "dtype"),
        (lambda: F.param_shapes("lstm", 3, 4, bidirectional=1), TypeError, "bidirectional"),
    ]


@pytest.mark.parametrize("k", range(len(_bad_calls())))
def test_bad_arguments_name_the_argument(k):
    call, exc, fragment = _bad_calls()[k]
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)


def test_inputs_not_modified(rng):
    params, x, lengths, h0, c0 = _random_case(rng, "lstm", 2, 3, 2, 3, 2, False)
    copies = [a.copy() for a in (x, h0, c0)] + [v.copy() for v in params.values()]
    res = F.forward("lstm", params, x, lengths, h0, c0, training=True)
    F.backward(res.cache, np.ones_like(res.output))
    F.step("lstm", params, x[:, 0], h0, c0)
    for a, b in zip([x, h0, c0] + list(params.values()), copies):
        np.testing.assert_array_equal(a, b)
