"""fastseq.layers: names and shapes, validation, and the ragged-batch contract.

The gradients themselves are checked against finite differences
(``test_reference_gradcheck.py``) and PyTorch (``test_reference_torch.py``); here the
references are PyTorch's own names and shapes (read from the fixtures) and each sequence
run alone, without batch companions or padding.
"""
import gc
import glob
import os

import numpy as np
import pytest

from fastseq import layers
from fastseq.backends import get_backend, reference
from fastseq.backends.numba_cpu import _engine as numba_engine
from fastseq.cells import make_cell

from compare import assert_all_close, assert_close

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_relu", "gru", "gru_classic", "gru_relu"]
TORCH_FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "data",
                                               "torch_*.npz")))


@pytest.mark.parametrize("path", TORCH_FIXTURES, ids=lambda p: os.path.basename(p)[6:-4])
def test_param_shapes_match_pytorch_state_dict(path):
    with np.load(path, allow_pickle=False) as f:
        torch_params = [(k[len("param:"):], f[k].shape) for k in f.files
                        if k.startswith("param:")]
        cell, L = str(f["meta_cell"]), int(f["meta_num_layers"])
        bi, I, H = bool(f["meta_bidirectional"]), f["x"].shape[2], f["h0"].shape[2]
    shapes = layers.param_shapes(cell, I, H, L, bi)
    assert list(shapes.items()) == torch_params       # names, shapes and order
    params = {k: np.zeros(s) for k, s in shapes.items()}
    assert layers.stack_info(cell, params) == (L, 2 if bi else 1, H, I)


@pytest.mark.parametrize("cell", CELLS)
def test_init_params(cell):
    params = layers.init_params(cell, 5, 7, num_layers=2, bidirectional=True, random_state=3)
    bound = 1 / np.sqrt(7)
    assert list(params) == list(layers.param_shapes(cell, 5, 7, 2, True))
    for name, p in params.items():
        assert p.dtype == np.float32, name
        assert np.all(np.abs(p) <= bound), name
    values = np.concatenate([p.ravel() for p in params.values()])
    assert 0.45 * bound < values.std() < 0.7 * bound      # U(-b, b) has std b / sqrt(3)
    again = layers.init_params(cell, 5, 7, num_layers=2, bidirectional=True, random_state=3)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    other = layers.init_params(cell, 5, 7, num_layers=2, bidirectional=True, random_state=4)
    assert not np.array_equal(params["weight_hh_l1"], other["weight_hh_l1"])
    assert layers.init_params(cell, 2, 3, dtype=np.float64)["bias_hh_l0"].dtype == np.float64


def _stack(rng, cell, L=2, bi=True, I=3, H=2):
    params = layers.init_params(cell, I, H, L, bi, random_state=rng.integers(2**31),
                                dtype=np.float64)
    return make_cell(cell), params, L * (2 if bi else 1)


@pytest.mark.parametrize("cell", CELLS)
def test_batch_and_padding_invariance(rng, cell):
    """A sequence's outputs and gradients do not depend on its batch companions, on the
    batch order, or on what sits in the padding."""
    cell, params, LD = _stack(rng, cell)
    T, B, H = 5, 5, 2
    lengths = rng.permutation([5, 1, 0, 3, 5])
    x = rng.standard_normal((T, B, 3))               # garbage in the padding on purpose
    h0 = rng.standard_normal((LD, B, H))
    c0 = rng.standard_normal((LD, B, H)) if cell.has_cell_state else None
    d_out = rng.standard_normal((T, B, 2 * H))
    dh_n = rng.standard_normal((LD, B, H))
    dc_n = rng.standard_normal((LD, B, H)) if cell.has_cell_state else None
    out, h_n, c_n, cache = layers.stack_forward("reference", cell, params, x, lengths, h0, c0)
    dx, grads, dh0, dc0 = layers.stack_backward(params, cache, d_out, dh_n, dc_n)

    grad_sum = {k: np.zeros_like(v) for k, v in params.items()}
    for b, Lb in enumerate(lengths):                  # each sequence alone, unpadded
        sl = slice(b, b + 1)
        o1, h1, c1, cache1 = layers.stack_forward(
            "reference", cell, params, x[:Lb, sl], None, h0[:, sl],
            None if c0 is None else c0[:, sl]) if Lb else (None,) * 4
        if not Lb:                                    # empty sequence: state passes through
            assert np.all(out[:, b] == 0)
            assert_close(h_n[:, b], h0[:, b], 0.0, "h_n of an empty sequence")
            assert_close(dh0[:, b], dh_n[:, b], 0.0, "dh0 of an empty sequence")
            assert np.all(dx[:, b] == 0)
            continue
        dx1, g1, dh01, dc01 = layers.stack_backward(
            params, cache1, d_out[:Lb, sl], dh_n[:, sl], None if dc_n is None else dc_n[:, sl])
        assert_close(out[:Lb, b], o1[:, 0], 1e-12, f"out[:, {b}]")
        assert np.all(out[Lb:, b] == 0), "padded outputs must be zero"
        assert_close(h_n[:, b], h1[:, 0], 1e-12, f"h_n[:, {b}]")
        assert_close(dx[:Lb, b], dx1[:, 0], 1e-12, f"dx[:, {b}]")
        assert np.all(dx[Lb:, b] == 0), "padded inputs must get no gradient"
        assert_close(dh0[:, b], dh01[:, 0], 1e-12, f"dh0[:, {b}]")
        if cell.has_cell_state:
            assert_close(c_n[:, b], c1[:, 0], 1e-12, f"c_n[:, {b}]")
            assert_close(dc0[:, b], dc01[:, 0], 1e-12, f"dc0[:, {b}]")
        for k in grad_sum:
            grad_sum[k] += g1[k]
    assert_all_close(grads, grad_sum, 1e-12, prefix="batch gradient vs sum of singles: ")


@pytest.mark.parametrize("cell", ["lstm", "gru_classic", "rnn_relu"])
def test_float32_params_follow_float64(rng, cell):
    cell, params, LD = _stack(rng, cell, L=2, bi=True, I=4, H=3)
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    x = rng.standard_normal((4, 3, 4))
    lengths = [4, 1, 2]
    d_out = rng.standard_normal((4, 3, 6))
    res64 = layers.stack_forward("reference", cell, params, x, lengths)
    res32 = layers.stack_forward("reference", cell, params32, x.astype(np.float32), lengths)
    assert res32[0].dtype == np.float32 and res32[1].dtype == np.float32
    assert_close(res32[0], res64[0], 1e-5, "out")
    assert_close(res32[1], res64[1], 1e-5, "h_n")
    dx32, g32, _, _ = layers.stack_backward(params32, res32[3], d_out.astype(np.float32))
    dx64, g64, _, _ = layers.stack_backward(params, res64[3], d_out)
    assert dx32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32.values())
    assert_close(dx32, dx64, 1e-5, "dx")
    assert_all_close(g32, g64, 1e-5)


def test_defaults_are_zero_state_and_full_length(rng):
    cell, params, LD = _stack(rng, "lstm")
    x = rng.standard_normal((3, 2, 3))
    implicit = layers.stack_forward("reference", cell, params, x)
    zeros = np.zeros((LD, 2, 2))
    explicit = layers.stack_forward("reference", cell, params, x, [3, 3], zeros, zeros)
    for a, b in zip(implicit[:3], explicit[:3]):
        np.testing.assert_array_equal(a, b)
    # d_out=None is a zero gradient on the outputs
    g_none = layers.stack_backward(params, implicit[3], None, np.ones((LD, 2, 2)))
    g_zero = layers.stack_backward(params, implicit[3], np.zeros((3, 2, 4)), np.ones((LD, 2, 2)))
    assert_all_close(g_none[1], g_zero[1], 0.0)


def test_backend_given_as_module(rng):
    cell, params, _ = _stack(rng, "gru")
    x = rng.standard_normal((3, 2, 3))
    by_name = layers.stack_forward("reference", cell, params, x)
    by_module = layers.stack_forward(reference, cell, params, x)
    np.testing.assert_array_equal(by_name[0], by_module[0])


def test_dropout_masks_are_applied_between_layers(rng):
    """A zero in the mask between layer 0 and 1 cuts that unit off layer 1 entirely."""
    cell, params, LD = _stack(rng, "lstm", L=2, bi=False)
    x = rng.standard_normal((4, 2, 3))
    mask = np.ones((4, 2, 2))
    mask[:, :, 0] = 0.0
    out, _, _, cache = layers.stack_forward("reference", cell, params, x,
                                            dropout_masks=[mask])
    params_cut = dict(params, weight_ih_l1=params["weight_ih_l1"].copy())
    params_cut["weight_ih_l1"][:, 0] = 0.0           # same effect through the weights
    out_cut, _, _, _ = layers.stack_forward("reference", cell, params_cut, x)
    assert_close(out, out_cut, 1e-14, "out with unit 0 dropped")
    _, grads, _, _ = layers.stack_backward(params, cache, np.ones_like(out))
    assert np.all(grads["weight_ih_l1"][:, 0] == 0.0)


@pytest.mark.parametrize("kwargs, words", [
    (dict(x=np.zeros((3, 2))), "x has shape"),
    (dict(x=np.zeros((3, 2, 4))), r"expected \(T, batch, 3\)"),
    (dict(lengths=[3, 4]), "lengths must be 2 integers in \\[0, 3\\]"),
    (dict(lengths=[-1, 2]), "lengths"),
    (dict(lengths=[1, 2, 3]), "lengths"),
    (dict(h0=np.zeros((1, 2, 2))), r"h0 has shape \(1, 2, 2\); expected \(4, 2, 2\)"),
    (dict(c0=np.zeros((4, 3, 2))), r"c0 has shape"),
])
def test_validation_errors(rng, kwargs, words):
    cell, params, _ = _stack(rng, "lstm")
    args = dict(x=np.zeros((3, 2, 3)), lengths=None, h0=None, c0=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        layers.stack_forward("reference", cell, params, args["x"], args["lengths"],
                             args["h0"], args["c0"])


def test_unknown_backend_and_cell(rng):
    _, params, _ = _stack(rng, "gru")
    with pytest.raises(ValueError, match="backend"):
        layers.stack_forward("no-such-engine", "gru", params, np.zeros((2, 1, 3)))
    with pytest.raises(ValueError, match="cell"):
        layers.stack_forward("reference", "gru_bogus", params, np.zeros((2, 1, 3)))


@pytest.mark.parametrize("T, B", [(0, 2), (3, 0)], ids=["T0", "B0"])
def test_stack_degenerate_sizes(rng, T, B):
    cell, params, LD = _stack(rng, "lstm")
    h0 = rng.standard_normal((LD, B, 2))
    out, h_n, c_n, cache = layers.stack_forward("reference", cell, params,
                                                np.zeros((T, B, 3)), [0] * B, h0)
    assert out.shape == (T, B, 4)
    np.testing.assert_array_equal(h_n, h0)
    dh_n = rng.standard_normal((LD, B, 2))
    dx, grads, dh0, _ = layers.stack_backward(params, cache, np.zeros_like(out), dh_n)
    assert dx.shape == (T, B, 3)
    np.testing.assert_array_equal(dh0, dh_n)
    assert all(np.all(g == 0) for g in grads.values())


def _engines():
    from conftest import engine_backends
    return engine_backends() + ["reference"]


@pytest.mark.parametrize("cell", CELLS)
def test_inference_forward_equals_training_forward(rng, cell):
    """need_grad=False (one saved slot per buffer on engines that support it) gives the
    same outputs and final states, bit for bit, on every engine; its cache is refused by
    stack_backward."""
    spec, params, LD = _stack(rng, cell, L=2, bi=True, I=4, H=5)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    T, B = 6, 5
    x = rng.standard_normal((T, B, 4)).astype(np.float32)
    lengths = np.array([6, 0, 2, 6, 1])
    rmasks = [(rng.random((B, 5)) > 0.3).astype(np.float32) / 0.7 for _ in range(LD)]
    h0 = rng.standard_normal((LD, B, 5)).astype(np.float32)
    c0 = rng.standard_normal((LD, B, 5)).astype(np.float32) if spec.has_cell_state else None
    for engine in _engines():
        full = layers.stack_forward(engine, spec, params, x, lengths, h0, c0, rmasks=rmasks,
                                    training=False, n_threads=2)
        lean = layers.stack_forward(engine, spec, params, x, lengths, h0, c0, rmasks=rmasks,
                                    training=False, n_threads=2, need_grad=False)
        for a, b in zip(full[:3], lean[:3]):
            if a is None:
                assert b is None
            else:
                assert np.array_equal(a, b), engine
        with pytest.raises(ValueError, match="need_grad"):
            layers.stack_backward(params, lean[3])


@pytest.mark.parametrize("cell", CELLS)
def test_inference_outputs_are_not_reused_by_later_calls(rng, cell):
    """With need_grad=False the engines hand back their state buffer itself as the outputs
    (no copy) when the batch needs no reordering: those outputs must be the caller's own,
    unchanged by later calls of any kind, and equal to the training forward's."""
    spec, params, LD = _stack(rng, cell, L=2, bi=False, I=4, H=5)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    T, B = 6, 5
    for lengths in (None, np.array([6, 6, 4, 2, 0])):      # both in the engines' order
        x = rng.standard_normal((T, B, 4)).astype(np.float32)
        for engine in _engines():
            lean = layers.stack_forward(engine, spec, params, x, lengths, training=False,
                                        n_threads=2, need_grad=False)[:2]   # cache dropped
            gc.collect()
            kept = [a.copy() for a in lean]
            # later calls, inference and training, with other values of the same shapes
            for need_grad in (False, True, False):
                layers.stack_forward(engine, spec, params, 10 * x + 1, lengths,
                                     training=False, n_threads=2, need_grad=need_grad)
            full = layers.stack_forward(engine, spec, params, x, lengths, training=False,
                                        n_threads=2)
            for a, b, c in zip(lean, kept, full[:2]):
                assert np.array_equal(a, b), engine
                assert np.array_equal(a, c), engine


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["lstm", "lstm_relu"])
def test_projection_made_by_the_engine_gives_the_same_bits(rng, cell, dtype, monkeypatch):
    """An engine that projects each step's inputs itself (the Cython LSTM) gives the same
    outputs, states and gradients, bit for bit, as the projection over all rows handed to
    it: row chunks and column-split steps, R copied or read as weight_hh's rows, a zero
    or a given state, recurrent dropout, bidirectional, few padded rows, T = 1, B = 1,
    H = 1, inference and training, 1 and 2 threads."""
    cython_cpu = pytest.importorskip("fastseq.backends.cython_cpu")
    assert cython_cpu.projects_input(make_cell(cell))
    shapes = [  # T, B, I, H, bidirectional, lengths
        (6, 13, 5, 7, True, None), (3, 9, 2, 40, False, [3, 3, 3, 3, 3, 3, 3, 3, 2]),
        (1, 1, 1, 1, False, None), (12, 5, 3, 300, False, None), (20, 33, 4, 3, True, None),
        (5, 16, 3, 300, False, None)]   # weight rows; column split; both (2 threads)
    for T, B, I, H, bi, lengths in shapes:
        spec, params, LD = _stack(rng, cell, L=2, bi=bi, I=I, H=H)
        params = {k: v.astype(dtype) for k, v in params.items()}
        x = rng.standard_normal((T, B, I)).astype(dtype)
        d_out = rng.standard_normal((T, B, LD // 2 * H)).astype(dtype)
        h0 = rng.standard_normal((LD, B, H)).astype(dtype)
        rmasks = [(rng.random((B, H)) > 0.3).astype(dtype) / 0.7 for _ in range(LD)]
        for state, masks, n in ((None, None, 2), (h0, rmasks, 1), (h0, None, 2)):
            got = []
            for fuse in (True, False):
                monkeypatch.setattr(layers, "FUSE_PROJECTION_MIN_ROWS", 0 if fuse else 1 << 60)
                monkeypatch.setattr(layers, "FUSE_PROJECTION_MIN_BATCH", 0)
                called = []
                real = cython_cpu.forward
                monkeypatch.setattr(cython_cpu, "forward", lambda *a, **k: called.append(
                    "x" in k) or real(*a, **k))
                lean = layers.stack_forward("cython", spec, params, x, lengths, state,
                                            state, rmasks=masks, training=False,
                                            n_threads=n, need_grad=False)[:3]
                out, h_n, c_n, cache = layers.stack_forward(
                    "cython", spec, params, x, lengths, state, state, rmasks=masks,
                    n_threads=n)
                grads = layers.stack_backward(params, cache, d_out, n_threads=n)
                monkeypatch.setattr(cython_cpu, "forward", real)
                assert all(called) == fuse and any(called) == fuse
                got.append([*lean, out, h_n, c_n, grads[0], *grads[1].values(), grads[2],
                            grads[3]])
            for a, b in zip(*got):
                np.testing.assert_array_equal(a, b)


def test_engine_projection_arguments_are_checked(rng):
    cython_cpu = pytest.importorskip("fastseq.backends.cython_cpu")
    lstm, gru = make_cell("lstm"), make_cell("gru")
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    W = rng.standard_normal((8, 5)).astype(np.float32)
    R = rng.standard_normal((2, 8)).astype(np.float32)
    b, h0 = np.zeros(8, np.float32), np.zeros((3, 2), np.float32)
    out = cython_cpu.forward(lstm, None, R, b, h0, x=x, weight_ih=W)[0]
    ref = cython_cpu.forward(lstm, (x.reshape(12, 5) @ W.T).reshape(4, 3, 8), R, b, h0)[0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    bad = [dict(x=x), dict(weight_ih=W), dict(x=x, weight_ih=W[:, :4]),
           dict(x=x, weight_ih=W[:4]), dict(x=x[:, :, :0], weight_ih=W[:, :0])]
    for kwargs in bad:
        with pytest.raises(ValueError, match="weight_ih"):
            cython_cpu.forward(lstm, None, R, b, h0, **kwargs)
    with pytest.raises(ValueError, match="x has shape"):
        cython_cpu.forward(lstm, x.reshape(4, 3, 5), R, b, h0, x=x, weight_ih=W)
    with pytest.raises(ValueError, match="LSTM"):
        cython_cpu.forward(gru, None, rng.standard_normal((2, 6)).astype(np.float32),
                           np.zeros(6, np.float32), h0, x=x,
                           weight_ih=rng.standard_normal((6, 5)).astype(np.float32))


@pytest.mark.parametrize("cell", ["lstm", "gru_classic"])
def test_input_grad_false_skips_only_dx(rng, cell):
    spec, params, _ = _stack(rng, cell, L=2, bi=True, I=3, H=4)
    x = rng.standard_normal((5, 3, 3))
    lengths = np.array([5, 2, 4])
    for engine in _engines():
        out, _, _, cache = layers.stack_forward(engine, spec, params, x, lengths)
        d_out = rng.standard_normal(out.shape)
        dx, grads, dh0, _ = layers.stack_backward(params, cache, d_out)
        cache2 = layers.stack_forward(engine, spec, params, x, lengths)[3]
        dx2, grads2, dh02, _ = layers.stack_backward(params, cache2, d_out, input_grad=False)
        assert dx2 is None and dx is not None
        for name in grads:
            assert np.array_equal(grads[name], grads2[name]), (engine, name)
        assert np.array_equal(dh0, dh02)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_own_gemm_paths_match_numpy_and_do_not_depend_on_threads(rng, dtype):
    """The layers' input-weight gradient and input gradient on the Cython engine's GEMM:
    close to NumPy's, and the same bits on 1 and 2 threads (row / column blocks)."""
    cython_cpu = pytest.importorskip("fastseq.backends.cython_cpu")
    from fastseq import layers
    gemm = cython_cpu.matmul_into
    seq = rng.standard_normal((300, 29)).astype(dtype)        # [rows, I]
    dxw = rng.standard_normal((300, 200)).astype(dtype)       # [rows, G*H]
    W = rng.standard_normal((200, 29)).astype(dtype)          # [G*H, I]
    eps = np.finfo(dtype).eps
    gw = [layers._matmul_t(seq, dxw, n, gemm) for n in (1, 2)]
    dx = [layers._matmul(dxw, W, n, gemm) for n in (1, 2)]
    np.testing.assert_array_equal(gw[0], gw[1])
    # b^T @ a computed directly (few rows) and as (a^T @ b)^T (many rows): the same bits
    for rows in (0, 1 << 30):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(layers, "OUT_T_MAX_ROWS", rows)
            for n in (1, 2):
                np.testing.assert_array_equal(layers._matmul_t(seq, dxw, n, gemm), gw[0])
    np.testing.assert_array_equal(dx[0], dx[1])
    assert gw[0].shape == (200, 29) and dx[0].shape == (300, 29)
    np.testing.assert_allclose(gw[0], dxw.T.astype(np.float64) @ seq, rtol=0,
                               atol=600 * eps * (np.abs(dxw).T @ np.abs(seq)).max())
    np.testing.assert_allclose(dx[0], dxw.astype(np.float64) @ W, rtol=0,
                               atol=400 * eps * (np.abs(dxw) @ np.abs(W)).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_projection_on_own_gemm_matches_numpy_row_by_row(rng, dtype):
    """xw = seq @ W.T over few rows runs as (W @ seq^T)^T on the Cython engine's GEMM:
    close to float64 NumPy, each row the same bits alone or in any batch, any threads."""
    cython_cpu = pytest.importorskip("fastseq.backends.cython_cpu")
    from fastseq import layers
    gemm = cython_cpu.matmul_into
    W = rng.standard_normal((200, 29)).astype(dtype)
    a = rng.standard_normal((40, 29)).astype(dtype)
    full = layers._times_weight_t(a, W, 2, gemm)
    expected = a.astype(np.float64) @ W.T.astype(np.float64)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(full, expected, rtol=0,
                               atol=100 * eps * (np.abs(a) @ np.abs(W).T).max())
    for rows in (slice(0, 1), slice(3, 4), slice(5, 17)):
        for n in (1, 3):
            np.testing.assert_array_equal(layers._times_weight_t(a[rows], W, n, gemm),
                                          full[rows])
    # from PROJECT_NN_MIN_ROWS rows (and between the limits, were they set apart: NumPy's)
    # the own GEMM against W^T, whose rows are the same bits as a row projected alone
    for R in (layers.PROJECT_T_MAX_ROWS + 3, layers.PROJECT_NN_MIN_ROWS + 5):
        big = rng.standard_normal((R, 29)).astype(dtype)
        got = layers._times_weight_t(big, W, 2, gemm)
        np.testing.assert_allclose(got, big.astype(np.float64) @ W.T, rtol=0,
                                   atol=100 * eps * (np.abs(big) @ np.abs(W).T).max())
    for r in (0, 7, R - 1):
        np.testing.assert_array_equal(layers._times_weight_t(big[r:r + 1], W, 1, gemm),
                                      got[r:r + 1])
    # with the input bias: added by the GEMM (many rows) or after it, on every path
    bias = rng.standard_normal(200).astype(dtype)
    for R in (5, layers.PROJECT_T_MAX_ROWS + 3, layers.PROJECT_NN_MIN_ROWS + 5):
        x = rng.standard_normal((R, 29)).astype(dtype)
        np.testing.assert_allclose(layers._times_weight_t(x, W, 2, gemm, bias),
                                   x.astype(np.float64) @ W.T + bias, rtol=0,
                                   atol=100 * eps * ((np.abs(x) @ np.abs(W).T).max()
                                                     + np.abs(bias).max()))


@pytest.mark.parametrize("state_grad", [True, False], ids=["dh0", "no_dh0"])
@pytest.mark.parametrize("backend", ["cython", "numba", "reference"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_classic"])
def test_gradients_written_into_given_arrays_are_the_same(rng, backend, cell, state_grad,
                                                          monkeypatch):
    """stack_backward(out=...) writes the weight gradients into the caller's arrays where
    the backend can (both dR layouts of the Cython engine, and of the Numba engine with
    fastseq_ext built; ragged rows, bidirectional): the same values as the gradients it
    returns otherwise, and every name of ``out`` ends up holding its gradient.
    ``state_grad=False`` (no initial-state gradient: step 0's dh GEMM skipped where the
    backend can) changes none of them and gives no dh0."""
    if backend == "cython":
        cython_cpu = pytest.importorskip("fastseq.backends.cython_cpu")
    fills_all = backend == "cython" or (backend == "numba"
                                        and get_backend("numba").supports_dR_out)
    cell_spec, params, LD = _stack(rng, cell, L=2, bi=True, I=4, H=3)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    T, B = 6, 5
    lengths = np.array([6, 2, 0, 5, 6])
    x = rng.standard_normal((T, B, 4)).astype(np.float32)
    d_out = rng.standard_normal((T, B, 6)).astype(np.float32)
    for rows in ((0, 1 << 30) if fills_all else (0,)):
        if backend == "cython":
            monkeypatch.setattr(cython_cpu, "OUT_T_MAX_ROWS", rows)
        if backend == "numba":
            monkeypatch.setattr(numba_engine, "OUT_T_MAX_ROWS", rows)
        monkeypatch.setattr(layers, "OUT_T_MAX_ROWS", rows)
        _, _, _, cache = layers.stack_forward(backend, cell_spec, params, x, lengths,
                                              n_threads=2)
        _, plain, _, _ = layers.stack_backward(params, cache, d_out, n_threads=2)
        _, _, _, cache = layers.stack_forward(backend, cell_spec, params, x, lengths,
                                              n_threads=2)
        out = {k: np.full(v.shape, np.nan, np.float32) for k, v in params.items()
               if k.startswith("weight_")}
        _, into, dh0, dc0 = layers.stack_backward(params, cache, d_out, n_threads=2, out=out,
                                                  state_grad=state_grad)
        assert (dh0 is None) == (not state_grad)
        assert dc0 is None if not state_grad or cell != "lstm" else dc0.shape == dh0.shape
        for name, value in plain.items():
            np.testing.assert_array_equal(into[name], value, err_msg=name)
            if name in out and into[name] is out[name]:
                np.testing.assert_array_equal(out[name], value, err_msg=name)
        if fills_all:                  # the CPU engines fill every weight array
            assert all(into[name] is out[name] for name in out)
