"""Unit tests of the Numba engine's building blocks: activations, the BLAS bridge, the
ragged bookkeeping, thread control, NaN semantics and the on-disk compile cache."""
import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from compare import assert_close
from fastseq.backends import numba_cpu as nb
from fastseq.backends import reference as ref
from fastseq.backends.numba_cpu import _loop, activations, blas, gru, lstm, rnn
from fastseq.cells import make_cell


# ------------------------------------------------------------------ activations
def _grid(dtype):
    x = np.concatenate([np.linspace(-12, 12, 20001), [-1e30, -7.9053, 7.9053, 1e-30, -0.0,
                                                      1e-4, -3e-4, 88.0, -88.0, 1e30]])
    return x.astype(dtype)


def test_tanh_float32_accuracy():
    x = _grid(np.float32)
    out = np.empty_like(x)
    activations.tanh_array(x, out)
    assert out.dtype == np.float32
    err = np.abs(out - np.tanh(x.astype(np.float64)))
    assert err.max() < 3e-7, err.max()
    assert np.all(np.abs(out) <= 1.0)


def test_sigmoid_float32_accuracy():
    x = _grid(np.float32)
    out = np.empty_like(x)
    activations.sigmoid_array(x, out)
    with np.errstate(over="ignore"):
        expected = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    assert np.abs(out - expected).max() < 2e-7
    assert np.all((out >= 0.0) & (out <= 1.0))


def test_float64_activations_are_exact():
    x = _grid(np.float64)
    out = np.empty_like(x)
    activations.tanh_array(x, out)
    assert np.abs(out - np.tanh(x)).max() <= 2 * np.finfo(np.float64).eps
    activations.sigmoid_array(x, out)
    assert np.abs(out - ref.sigmoid(x)).max() <= 2 * np.finfo(np.float64).eps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_keep_nan_and_saturate_inf(dtype):
    x = np.array([np.nan, np.inf, -np.inf], dtype=dtype)
    out = np.empty_like(x)
    activations.tanh_array(x, out)
    assert np.isnan(out[0]) and abs(out[1] - 1) < 3e-7 and abs(out[2] + 1) < 3e-7
    activations.sigmoid_array(x, out)
    assert np.isnan(out[0]) and abs(out[1] - 1) < 2e-7 and abs(out[2]) < 2e-7
    activations.act_array(x, True, out)
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == 0.0


# ------------------------------------------------------------------ BLAS bridge
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_row_major_with_offsets(dtype, rng):
    eps = np.finfo(dtype).eps
    iw, fw = np.zeros(16, np.int32), np.zeros(2, dtype)
    for trans_a in (False, True):
        for trans_b in (False, True):
            for beta in (0.0, 1.0):
                M, N, K = rng.integers(1, 9, size=3)
                pad_a, pad_b, pad_c = rng.integers(0, 4, size=3)
                a_rows, a_cols = (K, M) if trans_a else (M, K)
                b_rows, b_cols = (N, K) if trans_b else (K, N)
                A = rng.standard_normal((a_rows, a_cols + pad_a + 1)).astype(dtype)
                B = rng.standard_normal((b_rows, b_cols + pad_b + 2)).astype(dtype)
                C = rng.standard_normal((M, N + pad_c + 1)).astype(dtype)
                opA = A[:, 1:1 + a_cols]
                opB = B[:, 2:2 + b_cols]
                opA = opA.T if trans_a else opA
                opB = opB.T if trans_b else opB
                expected = C.copy()
                expected[:, 1:1 + N] = 0.5 * opA @ opB + beta * C[:, 1:1 + N]
                blas.gemm(trans_a, trans_b, M, N, K, 0.5, A, 1, A.shape[1], B, 2, B.shape[1],
                          beta, C, 1, C.shape[1], iw, fw)
                assert_close(C, expected, 50 * eps, name=f"gemm {trans_a} {trans_b} {beta}")


def test_accumulate_outer_over_active_rows(rng):
    T, B, K, N = 6, 5, 3, 4
    lengths = np.array([6, 6, 4, 1, 0])
    nact = _loop.active_counts(lengths, T)
    assert list(nact) == [4, 3, 3, 3, 2, 2]
    A = rng.standard_normal((T + 1, B, K))
    D = rng.standard_normal((T, B, N))
    dR = np.zeros((K, N))
    db = np.zeros((1, N))
    iw, fw = np.zeros(16, np.int32), np.zeros(2)
    _loop.accumulate_outer(nact, B, A, K, 0, K, D, N, 0, N, dR, N, 0, iw, fw)
    # the bias gradient is the same reduction with a column of ones
    _loop.accumulate_outer(nact, B, np.ones((T, B, 1)), 1, 0, 1, D, N, 0, N, db, N, 0, iw, fw)
    active = np.arange(T)[:, None] < lengths[None, :]
    expected = sum(A[t][active[t]].T @ D[t][active[t]] for t in range(T))
    assert_close(dR, expected, 1e-13)
    assert_close(db[0], (D * active[..., None]).sum(axis=(0, 1)), 1e-13)
    # full batches are merged into one GEMM: same result
    nact_full = _loop.active_counts(np.full(B, T), T)
    dR2 = np.zeros((K, N))
    _loop.accumulate_outer(nact_full, B, A, K, 0, K, D, N, 0, N, dR2, N, 0, iw, fw)
    assert_close(dR2, np.einsum("tbk,tbn->kn", A[:T], D), 1e-13)


@pytest.mark.skipif(nb._engine._ext_reduce is None, reason="fastseq_ext is not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_classic", "rnn"])
def test_weight_gradients_on_the_team_equal_the_numba_loop(cell, dtype, rng):
    """With fastseq_ext built the engine's weight-gradient reductions run on the
    extension's thread team: the same bits as its own Numba loop (ragged, odd sizes,
    a zero and a given initial state)."""
    spec = make_cell(cell)
    T, B, I, H = 7, 11, 5, 19
    GH = spec.n_gates * H
    lengths = rng.integers(0, T + 1, B)
    xw = rng.standard_normal((T, B, GH)).astype(dtype)
    R = (0.3 * rng.standard_normal((H, GH))).astype(dtype)
    bh = rng.standard_normal(GH).astype(dtype)
    dH = rng.standard_normal((T, B, H)).astype(dtype)
    for h0 in (np.zeros((B, H), dtype), rng.standard_normal((B, H)).astype(dtype)):
        c0 = np.zeros((B, H), dtype) if spec.has_cell_state else None
        got = []
        for ext in (nb._engine._ext_reduce, None):
            saved, nb._engine._ext_reduce = nb._engine._ext_reduce, ext
            try:
                _, _, cache = nb.forward(spec, xw, R, bh, h0, c0, lengths, n_threads=2)
                got.append(nb.backward(spec, cache, dH, n_threads=2))
            finally:
                nb._engine._ext_reduce = saved
        for a, b in zip(*got):
            if a is not None:
                np.testing.assert_array_equal(a, b)


def test_chunks_cover_batch_and_balance_work():
    lengths = np.sort(np.random.default_rng(0).integers(0, 50, size=37))[::-1]
    for n_threads in (1, 2, 3, 8):
        chunks = _loop.make_chunks(lengths, n_threads)
        assert chunks[0][0] == 0 and chunks[-1][1] == len(lengths)
        assert all(a[1] == b[0] for a, b in zip(chunks[:-1], chunks[1:]))
        assert len(chunks) <= n_threads
        if len(chunks) > 1:
            work = [lengths[lo:hi].sum() for lo, hi in chunks]
            assert max(work) - min(work) <= 2 * lengths.max()
    assert _loop.make_chunks(np.array([5, 3]), 2) == [(0, 2)]      # too small to split


@pytest.mark.parametrize("length", [0, 1, 7, 200])
def test_chunks_of_one_length_are_those_of_the_balanced_split(length):
    # the shortcut for a batch of one length gives the bounds of the cumulative-work split,
    # which a first length larger by 1e-6 still takes, for every batch size and thread count
    for B in range(0, 70):
        for n_threads in range(1, 10):
            lengths = np.full(B, length, np.int64)
            got = _loop.make_chunks(lengths, n_threads)
            if length and B:
                nudged = lengths.astype(np.float64)
                nudged[0] += 1e-6
                assert got == _loop.make_chunks(nudged, n_threads), (B, n_threads)
            assert got[0][0] == 0 and got[-1][1] == B
            assert all(a[1] == b[0] and a[1] > a[0] for a, b in zip(got[:-1], got[1:]))


# ------------------------------------------------------------------ threads, NaN, errors
def _blas_threads():
    return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()
                  if i["user_api"] == "blas")


@pytest.mark.parametrize("n_threads", [1, 2])
def test_thread_settings_restored(n_threads, rng):
    cell = make_cell("lstm")
    before = _blas_threads()
    xw = rng.standard_normal((4, 12, 8)).astype(np.float32)
    R = rng.standard_normal((2, 8)).astype(np.float32)
    _, _, cache = nb.forward(cell, xw, R, np.zeros(8, np.float32),
                             np.zeros((12, 2), np.float32), None, None, n_threads=n_threads)
    nb.backward(cell, cache, np.ones((4, 12, 2), np.float32), n_threads=n_threads)
    assert _blas_threads() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "gru_classic"])
def test_nan_stays_in_its_row(cell, dtype, rng):
    cell = make_cell(cell)
    T, B, H = 4, 6, 3
    G = cell.n_gates
    xw = rng.standard_normal((T, B, G * H)).astype(dtype)
    xw[1, 2, 0] = np.nan
    R = (0.3 * rng.standard_normal((H, G * H))).astype(dtype)
    H_all, (h_T, _), cache = nb.forward(cell, xw, R, np.zeros(G * H, dtype),
                                        np.zeros((B, H), dtype), None, None, n_threads=2)
    assert np.isnan(H_all[1:, 2]).any() and np.isnan(h_T[2]).any()
    assert np.isfinite(np.delete(H_all, 2, axis=1)).all()
    assert not np.isnan(H_all[0]).any()


def test_bad_input_names_the_argument():
    cell = make_cell("gru")
    xw = np.zeros((3, 2, 12))
    with pytest.raises(ValueError, match="R has shape"):
        nb.forward(cell, xw, np.zeros((4, 9)), np.zeros(12), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="h0 has shape"):
        nb.forward(cell, xw, np.zeros((4, 12)), np.zeros(12), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="lengths"):
        nb.forward(cell, xw, np.zeros((4, 12)), np.zeros(12), np.zeros((2, 4)),
                   lengths=[4, 1])
    with pytest.raises(ValueError, match="xw has shape"):
        nb.forward(cell, xw[0], np.zeros((4, 12)), np.zeros(12), np.zeros((2, 4)))
    with pytest.raises(TypeError, match="CellSpec"):
        nb.forward("gru", xw, np.zeros((4, 12)), np.zeros(12), np.zeros((2, 4)))
    _, _, cache = nb.forward(cell, xw, np.zeros((4, 12)), np.zeros(12), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dH_all has shape"):
        nb.backward(cell, cache, np.zeros((3, 2, 5)))


def test_float_inputs_of_other_dtypes_run_in_float64(rng):
    cell = make_cell("rnn")
    xw = rng.integers(-2, 3, size=(3, 2, 4))
    H_all, _, _ = nb.forward(cell, xw, np.eye(4), np.zeros(4), np.zeros((2, 4)))
    expected, _, _ = ref.forward(cell, xw, np.eye(4), np.zeros(4), np.zeros((2, 4)))
    assert H_all.dtype == np.float64
    assert_close(H_all, expected, 1e-14)


# ------------------------------------------------------------------ compile cache
KERNELS = [rnn.forward_chunk, rnn.backward_chunk, lstm.forward_chunk, lstm.backward_chunk,
           gru.forward_chunk, gru.backward_chunk, gru.forward_chunk_classic,
           gru.backward_chunk_classic]


def test_kernels_are_cached_on_disk():
    """``cache=True`` works for every kernel (BLAS is linked by symbol name, so nothing
    stops caching): after one fresh process has run (compiling whatever the cache lacked),
    a second fresh process loads every kernel from the cache and compiles none. Uses the
    session's cache directory so a warm cache keeps this test cheap."""
    script = textwrap.dedent("""
        import numpy as np
        from fastseq.backends import numba_cpu as nb
        from fastseq.backends.numba_cpu import rnn, lstm, gru, _loop
        from fastseq.cells import make_cell
        for name in ("rnn", "lstm", "gru", "gru_classic"):
            cell = make_cell(name)
            G = cell.n_gates
            xw = np.ones((3, 2, 2 * G), np.float32)
            _, _, c = nb.forward(cell, xw, np.ones((2, 2 * G), np.float32),
                                 np.zeros(2 * G, np.float32), np.zeros((2, 2), np.float32))
            nb.backward(cell, c, np.ones((3, 2, 2), np.float32))
        fns = [rnn.forward_chunk, rnn.backward_chunk, lstm.forward_chunk,
               lstm.backward_chunk, gru.forward_chunk, gru.backward_chunk,
               gru.forward_chunk_classic, gru.backward_chunk_classic,
               _loop.accumulate_outer]
        print(sum(sum(f.stats.cache_hits.values()) for f in fns),
              sum(sum(f.stats.cache_misses.values()) for f in fns))
    """)
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True,
                           text=True, timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    hits1, misses1 = map(int, runs[0].stdout.split())
    hits2, misses2 = map(int, runs[1].stdout.split())
    assert hits1 + misses1 > 0
    assert misses2 == 0 and hits2 == hits1 + misses1   # the second loaded everything


# ------------------------------------------------------------------ workspaces
def test_pool_reuses_buffers_after_the_cache_dies(rng):
    import gc
    pool = _loop.BufferPool()
    a = pool.take((3, 4), np.float32)
    lease = _loop.Lease([a], pool=pool)
    assert pool.take((3, 4), np.float32) is not a     # still leased
    del lease
    gc.collect()
    assert pool.take((3, 4), np.float32) is a         # back in the pool after the owner died
    assert pool.take((3, 4), np.float64).dtype == np.float64


def test_reused_workspaces_do_not_leak_into_results(rng):
    """Pooled buffers hold the previous call's values; outputs must not depend on them."""
    cell = make_cell("lstm")
    T, B, H = 5, 6, 3
    lengths = np.array([5, 2, 0, 4, 1, 3])
    args = [rng.standard_normal(s).astype(np.float32)
            for s in ((T, B, 4 * H), (H, 4 * H), (4 * H,), (B, H), (B, H))]
    first = nb.forward(cell, *args, lengths)
    first_out = [first[0].copy(), first[1][0].copy()]
    del first
    # dirty the pool with a different input of the same shapes, then repeat the first
    nb.forward(cell, *[a + 100.0 for a in args], None)
    again = nb.forward(cell, *args, lengths)
    assert np.array_equal(again[0], first_out[0]) and np.array_equal(again[1][0], first_out[1])
    pad = np.arange(T)[:, None] >= lengths[None, :]
    assert not np.any(again[0][pad])


def test_concurrent_calls_restore_thread_settings(rng):
    from concurrent.futures import ThreadPoolExecutor
    cell = make_cell("gru")
    before = _blas_threads()
    xw = rng.standard_normal((6, 16, 12)).astype(np.float32)
    R = rng.standard_normal((4, 12)).astype(np.float32)

    def call(k):
        _, _, cache = nb.forward(cell, xw, R, np.zeros(12, np.float32),
                                 np.zeros((16, 4), np.float32), n_threads=1 + k % 2)
        return nb.backward(cell, cache, np.ones((6, 16, 4), np.float32),
                           n_threads=1 + k % 2)[0]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(16)))
    assert _blas_threads() == before
    for k, r in enumerate(results):   # same thread count -> bitwise the same, even concurrently
        assert np.array_equal(r, results[k % 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_own_gemm_fallback_matches_float64(rng, dtype):
    """The plain-loop GEMM registered under the own GEMM's symbol when fastseq_ext is
    missing (so cached kernels still link): C = op(A) @ B (+ C) for both A layouts."""
    import ctypes
    from numba import types
    from fastseq.backends.numba_cpu import blas
    fallback = blas._own_fallback(types.float32 if dtype == np.float32 else types.float64)
    M, N, K = 5, 7, 11
    B = rng.standard_normal((K, N)).astype(dtype)
    for ta in (0, 1):
        A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
        opA = A.T.astype(np.float64) if ta else A.astype(np.float64)
        for beta in (0, 1):
            C0 = rng.standard_normal((M, N)).astype(dtype)
            C = C0.copy()
            ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
            ptr = lambda x: x.ctypes.data_as(ctypes.POINTER(ctype))      # noqa: E731
            fallback.ctypes(ta, M, N, K, ptr(A), A.shape[1], ptr(B), N, beta, ptr(C), N)
            expected = opA @ B + (C0 if beta else 0)
            np.testing.assert_allclose(C, expected, rtol=0,
                                       atol=50 * np.finfo(dtype).eps * np.abs(expected).max())
    assert blas.USE_OWN == (importlib.util.find_spec("fastseq_ext") is not None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_own_gemm_with_start_value_fallback_matches_float64(rng, dtype):
    """The plain-loop form of the extension's GEMM with a start value (gemm_x: init 0 zero,
    1 C, 2 X + bias, 3 bias), registered under its symbol when fastseq_ext is missing."""
    import ctypes
    from numba import types
    from fastseq.backends.numba_cpu import blas
    fallback = blas._own_x_fallback(types.float32 if dtype == np.float32 else types.float64)
    M, N, K = 5, 7, 11
    B = rng.standard_normal((K, N)).astype(dtype)
    X = rng.standard_normal((M, N + 3)).astype(dtype)        # leading dimension N + 3
    bias = rng.standard_normal(N).astype(dtype)
    ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    ptr = lambda x: x.ctypes.data_as(ctypes.POINTER(ctype))          # noqa: E731
    for ta in (0, 1):
        A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
        opA = A.T.astype(np.float64) if ta else A.astype(np.float64)
        for init in (0, 1, 2, 3):
            C0 = rng.standard_normal((M, N)).astype(dtype)
            C = C0.copy()
            fallback.ctypes(ta, M, N, K, ptr(A), A.shape[1], ptr(B), N, init, ptr(X), N + 3,
                            ptr(bias), ptr(C), N)
            start = [0, C0, X[:, :N] + bias, bias][init]
            expected = opA @ B + start
            np.testing.assert_allclose(C, expected, rtol=0,
                                       atol=50 * np.finfo(dtype).eps * np.abs(expected).max())


def test_cached_kernels_still_run_without_the_extension(tmp_path):
    """Kernels cached while fastseq_ext was importable call the own GEMM by symbol; a later
    process without the extension loads them from the cache and the symbol then names the
    plain-loop fallback: the same results within rounding, no crash."""
    script = textwrap.dedent("""
        import sys
        if sys.argv[1] == "hide":
            sys.modules["fastseq_ext"] = None          # import fastseq_ext fails
            sys.modules["fastseq_ext.reduce"] = None
        import numpy as np
        from fastseq.backends import numba_cpu as nb
        from fastseq.backends.numba_cpu import blas, lstm
        from fastseq.cells import make_cell
        cell = make_cell("lstm")
        rng = np.random.default_rng(0)
        args = [rng.standard_normal(s).astype(np.float32)
                for s in ((4, 3, 8), (2, 8), (8,), (3, 2), (3, 2))]
        out, _, cache = nb.forward(cell, *args)
        grads = nb.backward(cell, cache, np.ones((4, 3, 2), np.float32))
        print(blas.USE_OWN, hasattr(nb, "matmul_into"),
              sum(lstm.forward_chunk.stats.cache_hits.values()),
              " ".join(repr(float(v)) for v in (out.sum(), grads[1].sum())))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script, mode], capture_output=True,
                           text=True, timeout=600, env=env) for mode in ("show", "hide")]
    # and compiled afresh without the extension (its kernels' own products: SciPy's BLAS)
    fresh_env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "fresh"))
    runs.append(subprocess.run([sys.executable, "-c", script, "hide"], capture_output=True,
                               text=True, timeout=600, env=fresh_env))
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, second, fresh = (run.stdout.split() for run in runs)
    assert first[0] == "True" and second[0] == "False" and fresh[0] == "False"
    # the layers' products on the extension's GEMM only where it exists
    assert first[1] == "True" and second[1] == "False"
    assert int(second[2]) > 0                             # loaded from the cache
    assert int(fresh[2]) == 0                             # compiled in this process
    for other in (second, fresh):
        np.testing.assert_allclose([float(v) for v in other[3:]],
                                   [float(v) for v in first[3:]], rtol=1e-5)
