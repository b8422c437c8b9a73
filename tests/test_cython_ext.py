"""The compiled Cython engine (fastseq_ext) against float64 NumPy and the reference oracle."""
import numpy as np
import pytest

from fastseq.backends import reference
from fastseq.cells import CellSpec
from fastseq_ext import activations

from compare import assert_close

# ---------------------------------------------------------------- activations


def test_tanh_float32_minimax_accuracy():
    x = np.linspace(-12.0, 12.0, 400_001).astype(np.float32)
    expected = np.tanh(x.astype(np.float64))
    y = activations.tanh(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    err = np.abs(y.astype(np.float64) - expected)
    # Eigen's rational minimax: ~2.4e-7 inside the range, 2.7e-7 at the clamp +-7.9053
    assert err.max() < 3.5e-7, err.max()
    assert np.all(np.abs(y) <= 1.0)
    # odd function, and exactly x for tiny |x|
    np.testing.assert_array_equal(activations.tanh(-x), -y)
    tiny = np.float32([1e-30, -3e-5, 2e-4])
    np.testing.assert_array_equal(activations.tanh(tiny), tiny)


def test_sigmoid_float32_accuracy(rng):
    x = np.concatenate([np.linspace(-30, 30, 200_001), rng.normal(0, 4, 1001)]).astype(
        np.float32)
    expected = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    y = activations.sigmoid(x)
    assert y.dtype == np.float32
    assert np.abs(y.astype(np.float64) - expected).max() < 2.5e-7
    assert np.all((y >= 0) & (y <= 1))


def test_float64_activations_are_libm(rng):
    x = rng.normal(0, 5, size=(7, 13))
    np.testing.assert_allclose(activations.tanh(x), np.tanh(x), rtol=1e-15, atol=0)
    # the sigmoid's 0.5 * t + 0.5 may be contracted to one FMA: last-bit differences
    np.testing.assert_allclose(activations.sigmoid(x), 0.5 * np.tanh(0.5 * x) + 0.5,
                               rtol=1e-15, atol=2e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_propagate_nan_and_saturate(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0], dtype=dtype)
    t, s = activations.tanh(x), activations.sigmoid(x)
    assert np.isnan(t[0]) and np.isnan(s[0])
    np.testing.assert_array_equal(t[1:], [1, -1, 0])
    np.testing.assert_array_equal(s[1:], [1, 0, 0.5])


def test_activations_reject_bad_dtype():
    with pytest.raises(TypeError, match="x must be a float32 or float64"):
        activations.tanh(np.arange(3))


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("B,H", [(1, 1), (5, 7), (33, 16)])
def test_pointwise_lstm_cell_matches_reference(rng, dtype, rtol, activation, B, H):
    cell = CellSpec("lstm", activation)
    a_pre = rng.normal(0, 2, size=(B, 4 * H))
    c_prev = rng.normal(0, 1, size=(B, H))
    h_prev = rng.normal(0, 1, size=(B, H))
    # the reference step with R = 0, bh = 0 applies the cell to xw = a_pre alone
    h_ref, c_ref, g_ref, _ = reference._step_forward(
        cell, a_pre, np.zeros((H, 4 * H)), np.zeros(4 * H), h_prev, c_prev, 1.0)
    h, c, gates = activations.lstm_cell(a_pre.astype(dtype), c_prev.astype(dtype),
                                        activation)
    assert h.dtype == dtype and c.dtype == dtype and gates.dtype == dtype
    assert_close(h, h_ref, rtol, "h")
    assert_close(c, c_ref, rtol, "c")
    assert_close(gates, g_ref, rtol, "gates")


def test_pointwise_lstm_cell_checks_shapes():
    with pytest.raises(ValueError, match="a_pre has shape"):
        activations.lstm_cell(np.zeros((2, 6), np.float32), np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="c_prev has shape"):
        activations.lstm_cell(np.zeros((2, 8), np.float32), np.zeros((2, 3), np.float32))


# ---------------------------------------------------------------- recurrent kernels
from fastseq.backends import cython_cpu  # noqa: E402
from fastseq.cells import make_cell  # noqa: E402

CELLS = ["rnn", "rnn_relu", "lstm", "lstm_relu", "gru", "gru_relu", "gru_classic",
         "gru_classic_relu"]
RTOL = {np.float64: 1e-10, np.float32: 1e-5}
# (T, B, H, lengths or None, masked): awkward shapes, ragged and unsorted lengths with 0/1
SHAPES = [
    (1, 1, 1, None, False),
    (1, 3, 2, [1, 0, 1], True),
    (6, 1, 4, [3], False),
    (5, 4, 1, [5, 0, 2, 1], True),
    (7, 9, 6, [1, 7, 3, 3, 0, 7, 2, 5, 6], False),
    (4, 11, 3, [0, 0, 4, 1, 2, 4, 3, 0, 1, 4, 2], True),
]


def _case(rng, cell, T, B, H, lengths, masked):
    G = cell.n_gates
    c = dict(
        xw=rng.normal(0, 1.5, (T, B, G * H)), R=rng.normal(0, 0.6, (H, G * H)),
        bh=rng.normal(0, 0.5, G * H), h0=rng.normal(0, 0.5, (B, H)),
        c0=rng.normal(0, 0.5, (B, H)) if cell.has_cell_state else None,
        lengths=None if lengths is None else np.array(lengths),
        rmask=((rng.random((B, H)) < 0.7) / 0.7) if masked else None,
        dH=rng.normal(size=(T, B, H)), dh_T=rng.normal(size=(B, H)),
        dc_T=rng.normal(size=(B, H)) if cell.has_cell_state else None)
    return c


def _cast(a, dtype):
    return None if a is None else np.asarray(a).astype(dtype)


def _run_backend(backend, cell, c, dtype, n_threads):
    k = {name: _cast(c[name], dtype) for name in ("xw", "R", "bh", "h0", "c0", "rmask")}
    H_all, (h_T, c_T), cache = backend.forward(
        cell, k["xw"], k["R"], k["bh"], k["h0"], k["c0"], c["lengths"], rmask=k["rmask"],
        n_threads=n_threads)
    grads = backend.backward(cell, cache, _cast(c["dH"], dtype), _cast(c["dh_T"], dtype),
                             _cast(c["dc_T"], dtype), n_threads=n_threads)
    out = dict(H_all=H_all, h_T=h_T, dxw=grads[0], dR=grads[1], dbh=grads[2], dh0=grads[3])
    if cell.has_cell_state:
        out.update(c_T=c_T, dc0=grads[4])
    else:
        assert c_T is None and grads[4] is None
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell_name", CELLS)
def test_cython_matches_reference(rng, cell_name, dtype):
    cell = make_cell(cell_name)
    for T, B, H, lengths, masked in SHAPES:
        c = _case(rng, cell, T, B, H, lengths, masked)
        # the oracle runs on the inputs rounded to dtype, so only the arithmetic differs
        c64 = {k: (_cast(_cast(v, dtype), np.float64) if isinstance(v, np.ndarray) and
                   k != "lengths" else v) for k, v in c.items()}
        expected = _run_backend(reference, cell, c64, np.float64, None)
        for n_threads in (1, 2):
            got = _run_backend(cython_cpu, cell, c, dtype, n_threads)
            for name, value in got.items():
                assert value.dtype == dtype, (name, value.dtype)
                assert_close(value, expected[name], RTOL[dtype],
                             f"{cell_name} T={T} B={B} H={H} threads={n_threads} {name}")
            # padded steps are exactly zero, in the output and in dxw
            if lengths is not None:
                pad = np.arange(T)[:, None] >= np.array(lengths)[None, :]
                assert not np.any(got["H_all"][pad]) and not np.any(got["dxw"][pad])


@pytest.mark.parametrize("cell_name", CELLS)
def test_both_weight_gradient_layouts_give_the_same_bits(rng, cell_name, monkeypatch):
    """dR summed in the [H, G*H] layout (many rows) and directly in the weight's [G*H, H]
    layout (few rows) is the same sum in the same order: the same bits, ragged or not, on
    1 and 2 threads (both thread dispatches)."""
    cell = make_cell(cell_name)
    for T, B, H, lengths, masked in SHAPES:
        c = _case(rng, cell, T, B, H, lengths, masked)
        for dispatch in ("team", "python"):
            monkeypatch.setattr(cython_cpu, "DISPATCH", dispatch)
            for n_threads in (1, 2):
                got = []
                for rows in (0, 1 << 30):
                    monkeypatch.setattr(cython_cpu, "OUT_T_MAX_ROWS", rows)
                    got.append(_run_backend(cython_cpu, cell, c, np.float32, n_threads)["dR"])
                assert got[0].shape == got[1].shape == (H, cell.n_gates * H)
                np.testing.assert_array_equal(got[0], got[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell_name", ["lstm", "lstm_relu", "gru", "gru_relu"])
def test_column_split_steps_give_the_same_bits_as_row_chunks(rng, cell_name, dtype,
                                                             monkeypatch):
    """Small batches with a large weight run each step as blocks of hidden units (one team
    task each, all rows): forward outputs, every gradient, dh0 / dc0, and inference
    without saved buffers are bitwise those of the row chunks, ragged, masked, with odd H
    (a last block narrower than a vector), zero and non-zero h0, 2 and 3 threads."""
    cell = make_cell(cell_name)
    shapes = SHAPES + [(5, 6, 37, [5, 2, 5, 0, 1, 4], True), (3, 16, 64, None, False)]
    for T, B, H, lengths, masked in shapes:
        c = _case(rng, cell, T, B, H, lengths, masked)
        if B % 2:
            c["h0"] = np.zeros_like(c["h0"])
        for n_threads in (2, 3):
            got = {}
            for mode in ("rows", "cols"):
                monkeypatch.setattr(cython_cpu, "COLUMN_SPLIT_MIN_BYTES",
                                    1 << 60 if mode == "rows" else 0)
                monkeypatch.setattr(cython_cpu, "COLUMN_SPLIT_MAX_ROWS", 1 << 20)
                got[mode] = _run_backend(cython_cpu, cell, c, dtype, n_threads)
                k = {name: _cast(c[name], dtype) for name in ("xw", "R", "bh", "h0", "c0")}
                got[mode]["infer"] = cython_cpu.forward(
                    cell, k["xw"], k["R"], k["bh"], k["h0"], k["c0"], c["lengths"],
                    n_threads=n_threads, need_grad=False)[0]
            assert cython_cpu._column_width(cell, B, H, 4, n_threads, masked, True) > 0
            for name, value in got["rows"].items():
                np.testing.assert_array_equal(got["cols"][name], value,
                                              err_msg=f"T={T} B={B} H={H} {name}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_classic", "rnn"])
def test_weight_rows_give_the_same_bits_as_R(rng, cell_name, dtype, monkeypatch):
    """A cell given R as ``weight_hh.T`` (an F-ordered view, ``accepts_weight_rows``)
    reads the weight's rows in its step GEMM (``_gemm_wrows.h``: the LSTM and the
    PyTorch-form GRU) or copies it first: outputs, every gradient and inference are
    bitwise those of a C-contiguous R; ragged, masked, odd H, more rows than a vector,
    zero and non-zero h0, row chunks and column split, 1 to 3 threads."""
    cell = make_cell(cell_name)
    rows_kernel = (cell.kind, cell.reset_after) in (("lstm", True), ("gru", True))
    real = cython_cpu._weight_rows
    monkeypatch.setattr(cython_cpu, "COLUMN_SPLIT_MIN_BYTES", 0)
    shapes = SHAPES + [(3, 16, 40, None, False), (5, 6, 37, [5, 2, 5, 0, 1, 4], True),
                       (4, 40, 9, list(rng.integers(0, 5, 40)), False),
                       (2, 20, 17, None, True)]
    for T, B, H, lengths, masked in shapes:
        c = _case(rng, cell, T, B, H, lengths, masked)
        if B % 2:
            c["h0"] = np.zeros_like(c["h0"])
        k = {name: _cast(c[name], dtype) for name in ("xw", "R", "bh", "h0", "c0", "rmask")}
        weight_hh = np.ascontiguousarray(k["R"].T)
        for n_threads in (1, 2, 3):
            got = {}
            for mode in ("R", "rows", "copy"):
                pick = {"rows": lambda *a: (rows_kernel, real(*a)[1] if rows_kernel else 0),
                        "copy": lambda *a: (False, 0), "R": real}[mode]
                monkeypatch.setattr(cython_cpu, "_weight_rows", pick)
                R = k["R"] if mode == "R" else weight_hh.T
                H_all, (h_T, c_T), cache = cython_cpu.forward(
                    cell, k["xw"], R, k["bh"], k["h0"], k["c0"], c["lengths"],
                    rmask=k["rmask"], n_threads=n_threads)
                grads = cython_cpu.backward(cell, cache, _cast(c["dH"], dtype),
                                            _cast(c["dh_T"], dtype), _cast(c["dc_T"], dtype),
                                            n_threads=n_threads)
                infer = cython_cpu.forward(cell, k["xw"], R, k["bh"], k["h0"], k["c0"],
                                           c["lengths"], rmask=k["rmask"],
                                           n_threads=n_threads, need_grad=False)[0]
                got[mode] = dict(H_all=H_all, h_T=h_T, c_T=c_T, dxw=grads[0], dR=grads[1],
                                 dbh=grads[2], dh0=grads[3], dc0=grads[4], infer=infer)
            for mode in ("rows", "copy"):
                for name, value in got["R"].items():
                    np.testing.assert_array_equal(
                        got[mode][name], value,
                        err_msg=f"{mode} T={T} B={B} H={H} threads={n_threads} {name}")
    # the rule: the word model's layer (B16 T3 H512 float32, 2 threads) reads rows, with
    # the steps split by units; one row per task, or a long recurrence, copies
    monkeypatch.undo()
    rule = cython_cpu._weight_rows
    assert rule(cell, 3, 16, 512, 4, 2, False, True, 2) == ((True, 256) if rows_kernel
                                                            else (False, 0))
    if not rows_kernel:
        return
    assert rule(cell, 3, 1, 512, 4, 2, False, True, 1)[0] is False
    assert rule(cell, 100, 16, 512, 4, 2, False, True, 2)[0] is False
    assert rule(cell, 3, 32, 512, 4, 2, False, True, 2)[0] is True
    monkeypatch.setattr(cython_cpu, "DISPATCH", "python")   # one kernel call per chunk
    assert rule(cell, 3, 32, 512, 4, 2, False, True, 2)[0] is False


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_layers_give_the_same_bits_with_and_without_weight_rows(rng, cell_name, monkeypatch):
    """stack_forward hands an engine that accepts_weight_rows ``weight_hh.T`` as a view
    and Network makes no copies for it: a 2-layer network's training step and inference
    are bitwise those of the copies made above the engine."""
    from fastseq.layers import init_params, stack_backward, stack_forward
    from fastseq.network import Network
    monkeypatch.setattr(cython_cpu, "COLUMN_SPLIT_MIN_BYTES", 0)
    cell = make_cell(cell_name)
    T, B, I, H = 3, 16, 5, 48
    params = init_params(cell, I, H, num_layers=2, random_state=1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    d_out = rng.standard_normal((T, B, H)).astype(np.float32)
    got = {}
    for accepts in (True, False):
        monkeypatch.setattr(cython_cpu, "accepts_weight_rows", accepts)
        out, h_n, c_n, cache = stack_forward("cython", cell, params, x, n_threads=2)
        dx, grads, _, _ = stack_backward(params, cache, d_out=d_out, n_threads=2,
                                         state_grad=False)
        net = Network(dict(cell=cell_name, units=H, num_layers=2, n_features=I, n_outputs=3,
                           output="many-to-one"), backend="cython", n_threads=2)
        net.init_weights(random_state=0)
        scores, ncache = net.forward_train(x, training=True)
        flat_grad = net.backward(ncache, np.ones_like(scores)).copy()
        got[accepts] = dict(out=out, h_n=h_n, c_n=c_n, dx=dx, net=scores, net_grad=flat_grad,
                            predict=net.forward(x), **grads)
    for name, value in got[False].items():
        np.testing.assert_array_equal(got[True][name], value, err_msg=name)


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_classic", "rnn"])
def test_pooled_buffers_holding_garbage_do_not_leak(rng, cell_name):
    """Internal buffers are reused across calls (cython_cpu.POOL): fill every buffer a
    cache gives back with NaN, then a ragged masked call of the same shapes must still
    match the reference, with exact zeros at the padded steps."""
    import gc
    cell = make_cell(cell_name)
    T, B, H, lengths = 7, 9, 6, [1, 7, 3, 3, 0, 7, 2, 5, 6]
    cython_cpu.POOL.clear()
    for n_threads in (1, 2):
        c = _case(rng, cell, T, B, H, lengths, True)
        for _ in range(2):              # the second call takes the NaN-filled buffers
            _, _, cache = cython_cpu.forward(
                cell, c["xw"], c["R"], c["bh"], c["h0"], c["c0"], c["lengths"],
                rmask=c["rmask"], n_threads=n_threads)
            cython_cpu.backward(cell, cache, c["dH"], None, None, n_threads=n_threads)
            for key in ("hs", "cs", "hm", "gates", "aux"):
                cache[key][...] = np.nan
            del cache
            gc.collect()
            assert cython_cpu.POOL._free, "the cache's buffers went back to the pool"
            got = _run_backend(cython_cpu, cell, c, np.float64, n_threads)
        expected = _run_backend(reference, cell, c, np.float64, None)
        for name, value in got.items():
            assert_close(value, expected[name], RTOL[np.float64], f"{cell_name} {name}")
        pad = np.arange(T)[:, None] >= np.array(lengths)[None, :]
        assert not np.any(got["H_all"][pad]) and not np.any(got["dxw"][pad])


class _NanEmpty:
    """numpy, except that ``empty`` returns NaN-filled arrays (memory never written)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float):
        return np.full(shape, np.nan, dtype)


@pytest.mark.parametrize("cell_name", CELLS)
def test_every_buffer_left_unfilled_is_written(rng, cell_name, monkeypatch):
    """Buffers allocated without a zero fill (dxw of a batch without padding, pooled
    buffers, step outputs, dR) are fully written by the kernels: NaN-filled instead,
    results still match the reference (also with h0 = 0, whose step 0 adds nothing to dR:
    at T = 1 no GEMM writes it)."""
    monkeypatch.setattr(cython_cpu, "np", _NanEmpty())
    cython_cpu.POOL.clear()
    cell = make_cell(cell_name)
    for T, lengths, masked, zero_h0 in ((4, None, False, False), (4, None, True, False),
                                        (4, [4, 4, 2, 0, 3, 1, 4, 4, 2], True, False),
                                        (4, [4, 1, 1, 0, 3, 1, 4, 4, 2], False, True),
                                        (1, None, True, True)):
        c = _case(rng, cell, T, 9, 6, lengths, masked)
        if zero_h0:
            c["h0"] = np.zeros_like(c["h0"])
        expected = _run_backend(reference, cell, c, np.float64, None)
        for n_threads in (1, 2):
            got = _run_backend(cython_cpu, cell, c, np.float64, n_threads)
            for name, value in got.items():
                assert_close(value, expected[name], RTOL[np.float64],
                             f"{cell_name} T={T} {lengths} {name}")
    cython_cpu.POOL.clear()


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_classic", "rnn_relu"])
def test_bitwise_deterministic_for_a_thread_count(rng, cell_name):
    cell = make_cell(cell_name)
    c = _case(rng, cell, 9, 37, 16, rng.integers(0, 10, 37), True)
    for n_threads in (1, 2):
        first = _run_backend(cython_cpu, cell, c, np.float32, n_threads)
        for _ in range(3):
            again = _run_backend(cython_cpu, cell, c, np.float32, n_threads)
            for name in first:
                np.testing.assert_array_equal(again[name], first[name], err_msg=name)


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_classic", "rnn_relu"])
def test_team_and_python_threads_give_the_same_bits(rng, cell_name, monkeypatch):
    """The chunks (and the dR column blocks) run on the C thread team or on Python threads
    (cython_cpu.DISPATCH): the same per-chunk code, so the same bits."""
    cell = make_cell(cell_name)
    c = _case(rng, cell, 9, 37, 40, rng.integers(0, 10, 37), True)
    for n_threads in (2, 3):
        got = {}
        for dispatch in ("team", "python"):
            monkeypatch.setattr(cython_cpu, "DISPATCH", dispatch)
            got[dispatch] = _run_backend(cython_cpu, cell, c, np.float32, n_threads)
        for name in got["team"]:
            np.testing.assert_array_equal(got["python"][name], got["team"][name],
                                          err_msg=f"{name} threads={n_threads}")


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_classic", "rnn_relu"])
def test_forward_without_grad_gives_the_same_bits(rng, cell_name, monkeypatch):
    """need_grad=False keeps one time slot of the buffers only BPTT reads (the LSTM's c
    updated in place): the same outputs and final states, bit for bit, on several chunks
    and both thread dispatches; the cache is refused by backward."""
    cell = make_cell(cell_name)
    T, B, H = 9, 37, 6
    lengths = rng.integers(0, 10, B)
    c = _case(rng, cell, T, B, H, lengths, True)
    k = {name: _cast(c[name], np.float32) for name in ("xw", "R", "bh", "h0", "c0", "rmask")}
    for dispatch in ("team", "python"):
        monkeypatch.setattr(cython_cpu, "DISPATCH", dispatch)
        for n_threads in (1, 2):
            outs = [cython_cpu.forward(cell, k["xw"], k["R"], k["bh"], k["h0"], k["c0"],
                                       lengths, rmask=k["rmask"], n_threads=n_threads,
                                       need_grad=need)
                    for need in (True, False)]
            (H_full, (h_full, c_full), _), (H_lean, (h_lean, c_lean), lean) = outs
            np.testing.assert_array_equal(H_lean, H_full)
            np.testing.assert_array_equal(h_lean, h_full)
            if cell.has_cell_state:
                np.testing.assert_array_equal(c_lean, c_full)
                assert lean["cs"].shape[0] == 1
            if cell.kind != "rnn":
                assert lean["gates"].shape[0] == 1
            with pytest.raises(ValueError, match="need_grad"):
                cython_cpu.backward(cell, lean, None, None, None)


def test_concurrent_calls_with_different_thread_counts(rng, monkeypatch):
    """Callers on several Python threads, each asking for a different thread count (the
    chunk pool grows while others submit to it), get their sequential results."""
    from concurrent.futures import ThreadPoolExecutor
    monkeypatch.setattr(cython_cpu, "DISPATCH", "python")
    cell = make_cell("lstm")
    c = _case(rng, cell, 6, 24, 8, rng.integers(0, 7, 24), True)
    counts = [2, 3, 4, 5, 6] * 4
    expected = {n: _run_backend(cython_cpu, cell, c, np.float32, n) for n in set(counts)}
    with ThreadPoolExecutor(max_workers=5) as callers:
        results = list(callers.map(
            lambda n: (n, _run_backend(cython_cpu, cell, c, np.float32, n)), counts))
    for n, got in results:
        for name in got:
            np.testing.assert_array_equal(got[name], expected[n][name], err_msg=name)


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_classic", "rnn"])
def test_results_do_not_depend_on_batch_companions(rng, cell_name):
    """A sequence's outputs are the same alone and inside a ragged batch (sklearn's
    subset-invariance check needs this), whatever the chunking."""
    cell = make_cell(cell_name)
    c = _case(rng, cell, 8, 13, 5, rng.integers(1, 9, 13), False)
    full = _run_backend(cython_cpu, cell, c, np.float64, 2)
    b = 4
    single = {k: (v[:, b:b + 1] if k in ("xw", "dH") else
                  v[b:b + 1] if isinstance(v, np.ndarray) and v.ndim and k not in ("R", "bh")
                  else v) for k, v in c.items()}
    alone = _run_backend(cython_cpu, cell, single, np.float64, 1)
    assert_close(alone["H_all"][:, 0], full["H_all"][:, b], 1e-13, "H_all")
    assert_close(alone["dxw"][:, 0], full["dxw"][:, b], 1e-13, "dxw")
    assert_close(alone["dh0"][0], full["dh0"][b], 1e-13, "dh0")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell_name", CELLS)
def test_step_matches_forward_and_reference(rng, cell_name, dtype):
    cell = make_cell(cell_name)
    T, B, H = 4, 3, 5
    c = _case(rng, cell, T, B, H, None, True)
    k = {name: _cast(c[name], dtype) for name in ("xw", "R", "bh", "h0", "c0", "rmask")}
    H_all, (h_T, c_T), _ = cython_cpu.forward(cell, k["xw"], k["R"], k["bh"], k["h0"],
                                              k["c0"], rmask=k["rmask"])
    h, cc = k["h0"], k["c0"]
    for t in range(T):
        h_ref, c_ref = reference.step(cell, k["xw"][t], k["R"], k["bh"], h, cc, k["rmask"])
        h, cc = cython_cpu.step(cell, k["xw"][t], k["R"], k["bh"], h, cc, k["rmask"])
        assert h.dtype == dtype and h.shape == (B, H)
        np.testing.assert_array_equal(h, H_all[t])          # same kernel, same bits
        assert_close(h, h_ref, RTOL[dtype], "h")
        if cell.has_cell_state:
            assert_close(cc, c_ref, RTOL[dtype], "c")
    np.testing.assert_array_equal(h, h_T)
    if cell.has_cell_state:
        np.testing.assert_array_equal(cc, c_T)


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_classic", "rnn"])
def test_step_fast_and_checked_paths_agree(rng, cell_name):
    """step() hands arrays already in shape straight to the kernel (which checks shapes
    itself) and converts anything else first: same bits either way, and a wrong shape
    is named, never read out of bounds."""
    cell = make_cell(cell_name)
    B, H = 3, 5
    c = _case(rng, cell, 1, B, H, None, True)
    k = {name: _cast(c[name], np.float32) for name in ("xw", "R", "bh", "h0", "c0", "rmask")}
    fast = cython_cpu.step(cell, k["xw"][0], k["R"], k["bh"], k["h0"], k["c0"], k["rmask"])
    slow = cython_cpu.step(cell, k["xw"][0], np.asfortranarray(k["R"]), list(k["bh"]),
                           k["h0"].astype(np.float64), k["c0"], k["rmask"])
    np.testing.assert_array_equal(fast[0], slow[0])
    if cell.has_cell_state:
        np.testing.assert_array_equal(fast[1], slow[1])
        zero_c = cython_cpu.step(cell, k["xw"][0], k["R"], k["bh"], k["h0"])
        again = cython_cpu.step(cell, k["xw"][0], k["R"], k["bh"], k["h0"],
                                np.zeros((B, H), np.float32))
        np.testing.assert_array_equal(zero_c[0], again[0])
        np.testing.assert_array_equal(zero_c[1], again[1])
    bad = dict(h=np.zeros((B + 1, H), np.float32), rmask=np.ones((B, H + 1), np.float32),
               bh=np.zeros(2, np.float32))
    for name, value in bad.items():
        args = dict(h=k["h0"], c=k["c0"], rmask=None, bh=k["bh"])
        args[name] = value
        with pytest.raises(ValueError, match=f"{name} has shape"):
            cython_cpu.step(cell, k["xw"][0], k["R"], args["bh"], args["h"], args["c"],
                            args["rmask"])
    if cell.has_cell_state:
        with pytest.raises(ValueError, match="c has shape"):
            cython_cpu.step(cell, k["xw"][0], k["R"], k["bh"], k["h0"],
                            np.zeros((B, H + 2), np.float32))
    with pytest.raises(ValueError, match="R has shape"):
        cython_cpu.step(cell, k["xw"][0], k["R"][:, :-1].copy(), k["bh"], k["h0"], k["c0"])



@pytest.mark.parametrize("cell_name", ["lstm", "gru", "gru_classic", "rnn"])
def test_step_kernel_checks_every_array(rng, cell_name):
    """The step kernels take plain arrays and check them in C (fastseq_ext/_step.pxd): a
    wrong dtype, shape, order or a read-only output raises, never reads or writes out of
    bounds; read-only inputs are fine."""
    cell = make_cell(cell_name)
    key = (cell.kind, cell.reset_after)
    kernel = cython_cpu._STEP[key]
    B, H = 2, 3
    GH = cell.n_gates * H
    f = np.float32
    n_state = 4 if cell.kind == "lstm" else 2

    def args(**over):
        a = dict(xw=rng.standard_normal((B, GH)).astype(f),
                 R=rng.standard_normal((H, GH)).astype(f), bh=np.zeros(GH, f),
                 mask=np.ones((B, H), f), masked=False, relu=False,
                 h=np.zeros((B, H), f), c=np.zeros((B, H), f), has_c=cell.kind == "lstm",
                 work=np.empty((n_state, B, H), f), hm=np.empty((1, B, H), f),
                 gates=np.empty((1, B, GH), f), aux=np.empty((1, B, H), f))
        a.update(over)
        return list(a.values())

    good = args()
    for i in (0, 1, 2, 3, 6, 7):                        # xw, R, bh, mask, h, c
        good[i].flags.writeable = False
    h_new, c_new = kernel(*good)                        # read-only inputs are accepted
    reference_h, reference_c = reference.step(cell, good[0], good[1], good[2], good[6],
                                              good[7] if cell.has_cell_state else None)
    assert_close(h_new, reference_h, 1e-5, "h")
    np.testing.assert_array_equal(h_new, good[9][1])    # new arrays, copied from the work
    assert not np.shares_memory(h_new, good[9])
    if cell.has_cell_state:
        assert_close(c_new, reference_c, 1e-5, "c")
        assert not np.shares_memory(c_new, good[9])
    else:
        assert c_new is None
    bad = [dict(xw=rng.standard_normal((B, GH))),                 # float64 among float32
           dict(R=np.zeros((H + 1, GH), f)), dict(bh=np.zeros(GH + 1, f)),
           dict(h=np.zeros((B, H + 1), f)), dict(work=np.empty((n_state, B + 1, H), f)),
           dict(work=np.empty((n_state, B, H + 1), f)[:, :, :H]),      # not C-contiguous
           dict(gates=np.empty((1, B, GH - 1), f)) if cell.kind != "rnn" else
           dict(hm=np.empty((1, B, H + 1), f), masked=True),
           dict(mask=np.ones((B + 1, H), f), masked=True),
           dict(R=np.asfortranarray(rng.standard_normal((H, GH)).astype(f))),
           dict(work=list(np.zeros((n_state, B, H))))]
    ro = np.empty((n_state, B, H), f)
    ro.flags.writeable = False
    bad.append(dict(work=ro))
    if cell.kind == "lstm":
        bad.append(dict(c=np.zeros((B + 1, H), f)))
    for over in bad:
        with pytest.raises((ValueError, TypeError), match="step"):
            kernel(*args(**over))

def test_zero_batch_and_zero_steps(rng):
    cell = make_cell("lstm")
    for T, B in ((0, 3), (3, 0)):
        xw = np.zeros((T, B, 8), np.float32)
        H_all, (h_T, c_T), cache = cython_cpu.forward(
            cell, xw, np.zeros((2, 8), np.float32), np.zeros(8, np.float32),
            np.ones((B, 2), np.float32), None, np.zeros(B, int) if T == 0 else None)
        assert H_all.shape == (T, B, 2) and h_T.shape == (B, 2)
        np.testing.assert_array_equal(h_T, np.ones((B, 2)))
        dxw, dR, dbh, dh0, dc0 = cython_cpu.backward(cell, cache, None, None, None)
        assert dxw.shape == (T, B, 8) and not dR.any() and not dbh.any()


def test_cache_is_interchangeable_with_the_numba_engine(rng):
    numba_cpu = pytest.importorskip("fastseq.backends.numba_cpu")
    for cell_name in ("lstm", "gru", "gru_classic", "rnn"):
        cell = make_cell(cell_name)
        c = _case(rng, cell, 6, 7, 4, [6, 0, 3, 1, 6, 2, 5], True)
        args = [_cast(c[k], np.float64) for k in ("xw", "R", "bh", "h0", "c0")]
        _, _, cache_cy = cython_cpu.forward(cell, *args, c["lengths"], rmask=c["rmask"])
        _, _, cache_nb = numba_cpu.forward(cell, *args, c["lengths"], rmask=c["rmask"])
        assert set(cache_cy) <= set(cache_nb)      # numba may add bookkeeping (a pool lease)
        np.testing.assert_array_equal(cache_cy["nact"], cache_nb["nact"])
        np.testing.assert_array_equal(cache_cy["order"], cache_nb["order"])
        for key in ("hs", "cs", "hm", "gates", "aux"):
            assert cache_cy[key].shape == cache_nb[key].shape, key
            if cache_cy[key].shape[0] == 1:     # a placeholder for an unused buffer
                continue
            # the rows each engine wrote. The engines sum the step GEMM in different
            # orders (own kernel / OpenBLAS), so an element near zero, left by cancellation,
            # can differ by more than 1e-12 relative: the absolute floor is 1e-13 of O(1)
            for t, n in enumerate(cache_nb["nact"]):
                if key in ("hs", "cs"):
                    np.testing.assert_allclose(cache_cy[key][t + 1, :n],
                                               cache_nb[key][t + 1, :n], rtol=1e-12,
                                               atol=1e-13)
                else:
                    np.testing.assert_allclose(cache_cy[key][t, :n], cache_nb[key][t, :n],
                                               rtol=1e-12, atol=1e-13)
        dcy = cython_cpu.backward(cell, cache_nb, _cast(c["dH"], np.float64), None, None)
        dnb = numba_cpu.backward(cell, cache_nb, _cast(c["dH"], np.float64), None, None)
        for a, b in zip(dcy, dnb):
            if a is not None:
                assert_close(a, b, 1e-12, cell_name)


def test_bad_input_is_named():
    cell = make_cell("gru")
    xw = np.zeros((2, 3, 6), np.float32)
    with pytest.raises(ValueError, match="xw has shape"):
        cython_cpu.forward(cell, xw[0], np.zeros((2, 6)), np.zeros(6), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="R has shape"):
        cython_cpu.forward(cell, xw, np.zeros((3, 6)), np.zeros(6), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="h0 has shape"):
        cython_cpu.forward(cell, xw, np.zeros((2, 6)), np.zeros(6), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="lengths must be"):
        cython_cpu.forward(cell, xw, np.zeros((2, 6)), np.zeros(6), np.zeros((3, 2)),
                           lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="rmask has shape"):
        cython_cpu.forward(cell, xw, np.zeros((2, 6)), np.zeros(6), np.zeros((3, 2)),
                           rmask=np.ones((3, 3)))
    with pytest.raises(TypeError, match="cell must be a CellSpec"):
        cython_cpu.forward("gru", xw, np.zeros((2, 6)), np.zeros(6), np.zeros((3, 2)))
    _, _, cache = cython_cpu.forward(cell, xw, np.zeros((2, 6)), np.zeros(6),
                                     np.zeros((3, 2)))
    with pytest.raises(ValueError, match="differs from the forward"):
        cython_cpu.backward(make_cell("gru_classic"), cache, None, None, None)


def test_blas_threads_restored_after_calls(rng):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
              if lib["user_api"] == "blas"]
    cell = make_cell("lstm")
    c = _case(rng, cell, 5, 32, 8, None, False)
    _run_backend(cython_cpu, cell, c, np.float32, 2)     # several chunks: BLAS pinned to 1
    _run_backend(cython_cpu, cell, c, np.float32, 1)
    after = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
             if lib["user_api"] == "blas"]
    assert after == before


def test_registry_finds_the_cython_backend():
    from fastseq.backends import available_backends, get_backend
    assert "cython" in available_backends()
    assert get_backend("cython") is cython_cpu


def test_extension_loads_no_openmp_runtime():
    """fastseq_ext runs its threads on its own team: importing it must not load libgomp,
    whose process-wide wait policy PyTorch shares (a passive policy once made a PyTorch
    LSTM next to fastseq 8-10x slower; spinning waits made ours 3-25x slower)."""
    import subprocess
    import sys
    code = ("import fastseq_ext.lstm, fastseq_ext.gru, fastseq_ext.rnn, fastseq_ext.reduce, "
            "fastseq_ext.team, fastseq_ext.activations\n"
            "print(open('/proc/self/maps').read())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fastseq_ext" in done.stdout
    assert "libgomp" not in done.stdout and "libomp" not in done.stdout


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9])
def test_team_runs_every_task_exactly_once(n):
    from fastseq_ext import team
    for spin in (0, 5000):
        for _ in range(20):
            assert team.claim_counts(n, spin) == [1] * n
    assert team.workers() >= (1 if n > 1 else 0)


def test_team_calls_from_several_threads_and_after_fork(rng):
    """Concurrent callers (one gets the workers, the others run their tasks themselves)
    give the serial results; a forked child (no workers survive a fork) still runs."""
    import multiprocessing
    import threading
    cell = make_cell("lstm")
    c = _case(rng, cell, 9, 16, 5, None, False)
    expected = _run_backend(cython_cpu, cell, c, np.float64, 2)
    results, errors = [], []

    def work():
        try:
            for _ in range(10):
                results.append(_run_backend(cython_cpu, cell, c, np.float64, 2))
        except Exception as exc:            # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 40
    for got in results:
        for name, value in got.items():
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_team_in_child)
    child.start()
    child.join(60)
    assert child.exitcode == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(200, 16, 128), (9, 4, 48), (7, 5, 77), (3, 16, 2048),
                                   (1, 1, 1), (30, 40, 300)])
def test_bias_sums_are_row_ordered_float64_sums_on_any_split(rng, dtype, shape):
    """accumulate_bias (the bias gradients): db += each column's sum over the active rows,
    accumulated in float64 in row order after db's own value, the same bits on one
    thread and split by columns over the team (blocks of 64, 16 and 1 columns in
    registers), over ragged steps and a column range."""
    from fastseq_ext import reduce as _reduce
    T, B, G = shape
    D = rng.standard_normal(shape).astype(dtype)
    nact = np.sort(rng.integers(0, B + 1, T))[::-1].copy()
    nact[0] = B
    start = rng.standard_normal(G)
    for c0, c1 in ((0, G), (G // 3, G - G // 5)):
        want = start.copy()
        for t in range(T):
            for b in range(nact[t]):
                want[c0:c1] = want[c0:c1] + D[t, b, c0:c1].astype(np.float64)
        for n in (1, 2, 3):
            for split_min in (0, 1 << 16):                 # always split / only large ones
                old = _reduce.BIAS_SPLIT_MIN
                _reduce.BIAS_SPLIT_MIN = split_min
                try:
                    db = start.copy()
                    _reduce.accumulate_bias(nact, D, db, c0, c1, n)
                finally:
                    _reduce.BIAS_SPLIT_MIN = old
                np.testing.assert_array_equal(db, want, err_msg=f"{c0}:{c1}, {n} threads")


def test_team_runs_python_calls_once_each_and_raises_their_error():
    """run_calls (the Numba engine's chunks on the team): every k exactly once, on the
    caller and the workers, from concurrent Python threads too; the first error comes
    back to the caller after every task ran."""
    import threading
    from fastseq_ext import team
    for n in (0, 1, 2, 5):
        seen = []
        team.run_calls(seen.append, n)
        assert sorted(seen) == list(range(n))
    tallies = [[0] * 4 for _ in range(3)]

    def caller(j):
        for _ in range(50):
            team.run_calls(lambda k: tallies[j].__setitem__(k, tallies[j][k] + 1), 4)

    threads = [threading.Thread(target=caller, args=(j,)) for j in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tallies == [[50] * 4] * 3
    ran = []

    def failing(k):
        ran.append(k)
        if k == 1:
            raise KeyError("task 1")
    with pytest.raises(KeyError, match="task 1"):
        team.run_calls(failing, 3)
    assert sorted(ran) == [0, 1, 2]


def _team_in_child():
    from fastseq_ext import team
    assert team.claim_counts(3) == [1, 1, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (8, 16), (9, 8), (64, 256), (33, 70)])
def test_blocked_transpose_matches_numpy(rng, dtype, shape):
    from fastseq_ext import reduce as _reduce
    src = rng.standard_normal(shape).astype(dtype)
    for n_threads in (1, 2, 3):                 # row blocks of 8 on the team
        dest = np.full(shape[::-1], np.nan, dtype)
        _reduce.transpose_into(dest, src, n_threads)
        assert np.array_equal(dest, src.T)
    with pytest.raises(ValueError, match="src has shape"):
        _reduce.transpose_into(np.empty((2, 3), dtype), np.empty((2, 3), dtype))


# ------------------------------------------------------------------ the step GEMM
from fastseq_ext import reduce as _reduce  # noqa: E402

_GEMM_SHAPES = [(1, 1, 1), (3, 5, 7), (8, 32, 128), (7, 64, 256), (13, 100, 400),
                (5, 0, 9), (1, 17, 33), (30, 600, 28), (9, 300, 70), (64, 513, 100)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("M,K,N", _GEMM_SHAPES)
def test_step_matmul_matches_float64_matmul(rng, dtype, trans_a, M, K, N):
    A = rng.standard_normal((K, M) if trans_a else (M, K)).astype(dtype)
    B = rng.standard_normal((K, N)).astype(dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    op_a = (A.T if trans_a else A).astype(np.float64)
    want = op_a @ B.astype(np.float64)
    C = C0.copy()
    _reduce.step_matmul(A, B, C, True, trans_a)
    D = np.full((M, N), np.nan, dtype)              # beta = 0 must not read C
    _reduce.step_matmul(A, B, D, False, trans_a)
    # error bound of a K-term dot product, scaled by the magnitudes involved
    scale = (np.abs(op_a) @ np.abs(B.astype(np.float64))) + np.abs(C0) + 1e-30
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(D - want) <= 2 * (K + 1) * eps * scale)
    assert np.all(np.abs(C - (want + C0)) <= 2 * (K + 2) * eps * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [1, 15, 16, 64, 100, 257])
@pytest.mark.parametrize("K", [3, 70, 301])
def test_step_matmul_rows_do_not_depend_on_the_other_rows(rng, dtype, N, K):
    """Batch invariance at its source: a row's result is the same bits alone (the one-row
    path streams B row after row) or among any number of other rows (the block split
    changes with M; K = 301 takes two passes over k)."""
    A = rng.standard_normal((13, K)).astype(dtype)
    B = rng.standard_normal((K, N)).astype(dtype)
    C0 = rng.standard_normal((13, N)).astype(dtype)
    full = C0.copy()
    _reduce.step_matmul(A, B, full, True)
    for m in (1, 2, 5, 7, 12):
        part = C0[:m].copy()
        _reduce.step_matmul(A[:m], B, part, True)
        np.testing.assert_array_equal(part, full[:m])
        one = C0[m:m + 1].copy()
        _reduce.step_matmul(A[m:m + 1], B, one, True)
        np.testing.assert_array_equal(one, full[m:m + 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("N", [1, 3, 4, 5, 8, 9, 15])
def test_step_matmul_columns_do_not_depend_on_the_other_columns(rng, dtype, trans_a, N):
    """A few columns run on half-width vectors (at most 8 float32 / 4 float64 columns) or
    a padded vector, many on full vectors: each column is the same bits either way, with
    and without a bias, over one or two passes of k."""
    for K in (3, 301):
        A = rng.standard_normal((K, 19) if trans_a else (19, K)).astype(dtype)
        B = rng.standard_normal((K, N + 40)).astype(dtype)
        bias = rng.standard_normal(N + 40).astype(dtype)
        for with_bias in (False, True):
            if with_bias and trans_a:
                continue
            wide = np.empty((19, N + 40), dtype)
            narrow = np.empty((19, N), dtype)
            extra = (bias,) if with_bias else ()
            extra_n = (bias[:N].copy(),) if with_bias else ()
            _reduce.step_matmul(A, B, wide, False, trans_a, 1, False, *extra)
            _reduce.step_matmul(A, np.ascontiguousarray(B[:, :N]), narrow, False, trans_a,
                                1, False, *extra_n)
            np.testing.assert_array_equal(narrow, wide[:, :N], err_msg=f"K={K}")


def test_step_matmul_propagates_nan_and_checks_shapes(rng):
    A = rng.standard_normal((4, 8)).astype(np.float32)
    B = rng.standard_normal((8, 20)).astype(np.float32)
    A[1, 3] = np.nan
    C = np.zeros((4, 20), np.float32)
    _reduce.step_matmul(A, B, C)
    assert np.isnan(C[1]).all() and np.isfinite(C[[0, 2, 3]]).all()
    with pytest.raises(ValueError, match="op\\(A\\)"):
        _reduce.step_matmul(A, B[:7], C)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_matmul_bias_starts_the_accumulators(rng, dtype):
    """C = A @ B + bias with the bias as the accumulators' start: the same bits as the
    engine's own step form (C = bias, then += A @ B) on any split, close to float64, and
    a clear error where it does not apply."""
    A = rng.standard_normal((37, 70)).astype(dtype)
    B = rng.standard_normal((70, 45)).astype(dtype)
    bias = rng.standard_normal(45).astype(dtype)
    ref = np.tile(bias, (37, 1))
    _reduce.step_matmul(A, B, ref, True)                      # bias, then += A @ B
    for n, cols in ((1, False), (2, False), (3, False), (2, True)):
        C = np.full((37, 45), np.nan, dtype)
        _reduce.step_matmul(A, B, C, False, False, n, cols, bias)
        np.testing.assert_array_equal(C, ref)
    exact = A.astype(np.float64) @ B + bias
    assert np.abs(ref - exact).max() <= 100 * np.finfo(dtype).eps * np.abs(exact).max()
    with pytest.raises(ValueError, match="bias"):
        _reduce.step_matmul(A.T.copy(), B, np.empty((37, 45), dtype), False, True, 1, False,
                            bias)
    with pytest.raises(ValueError, match="bias"):
        _reduce.step_matmul(A, B, np.empty((37, 45), dtype), False, False, 1, False,
                            bias[:-1].copy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_sums_match_float64(rng, dtype):
    x = rng.standard_normal((301, 19)).astype(dtype)
    got = cython_cpu.column_sums(x)
    assert got.dtype == dtype and got.shape == (19,)
    np.testing.assert_allclose(got, x.astype(np.float64).sum(axis=0), rtol=0,
                               atol=4 * np.finfo(dtype).eps * np.abs(x).sum(axis=0).max())
    assert cython_cpu.column_sums(np.zeros((0, 3), dtype)).tolist() == [0, 0, 0]
