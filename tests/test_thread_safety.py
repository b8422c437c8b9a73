"""Eight Python threads using one model at once get exactly the serial answers, on every
available backend: functional.forward/backward on shared weights, estimator predict /
predict_proba on one fitted estimator, and one Stream driven from several threads."""
import os
import threading
import warnings

import numpy as np
import pytest

from fastseq import functional as F
from fastseq.stream import Stream

from conftest import engine_backends

N_THREADS = 8
BACKENDS = ["reference"] + engine_backends()


def _skip_simulated_cuda(backend):
    if backend == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator runs kernels as Python threads and is not "
                    "re-entrant; real GPUs are covered by the cuda backend's own tests")


def _run_concurrently(fn, n=N_THREADS, repeats=3):
    """Call fn(k) for k in range(n) from n threads released together; return results."""
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def worker(k):
        try:
            barrier.wait()
            out = None
            for _ in range(repeats):
                out = fn(k)
            results[k] = out
        except BaseException as exc:                      # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_functional_forward_backward_concurrent(rng, backend, cell):
    _skip_simulated_cuda(backend)
    params = F.init_params(cell, 3, 6, 2, True, random_state=rng)
    inputs = [(rng.normal(size=(5, 7, 3)).astype(np.float32), rng.integers(1, 8, size=5))
              for _ in range(N_THREADS)]

    def work(k):
        x, lengths = inputs[k]
        res = F.forward(cell, params, x, lengths, backend=backend, training=True)
        g = F.backward(res.cache, np.ones_like(res.output))
        return res.output, res.h_n, g.dx, g.grads

    serial = [work(k) for k in range(N_THREADS)]
    before = {k: v.copy() for k, v in params.items()}
    concurrent = _run_concurrently(work)
    for k in range(N_THREADS):
        for a, b in zip(concurrent[k][:3], serial[k][:3]):
            np.testing.assert_array_equal(a, b)
        for name in params:
            np.testing.assert_array_equal(concurrent[k][3][name], serial[k][3][name])
    for k in params:                                      # weights untouched
        np.testing.assert_array_equal(params[k], before[k])


@pytest.fixture(scope="module")
def classifier():
    pytest.importorskip("fastseq.estimators")
    from fastseq.estimators import SequenceClassifier
    rng = np.random.default_rng(8)
    X = [rng.normal(size=(int(n), 3)).astype(np.float32) for n in rng.integers(1, 9, 16)]
    y = rng.integers(0, 3, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = SequenceClassifier(cell="gru", units=8, num_layers=2, max_iter=1,
                                 random_state=0, backend="reference").fit(X, y)
    return clf, X


@pytest.mark.parametrize("backend", BACKENDS)
def test_estimator_predict_concurrent(classifier, backend):
    _skip_simulated_cuda(backend)
    clf, X = classifier
    clf = clf.set_params(backend=backend)
    try:
        # each thread predicts a different slice, and all of X, at the same time
        slices = [X[k::N_THREADS] for k in range(N_THREADS)]
        serial = [(clf.predict_proba(s), clf.predict_proba(X)) for s in slices]
        concurrent = _run_concurrently(
            lambda k: (clf.predict_proba(slices[k]), clf.predict_proba(X)), repeats=2)
        for (a, b), (c, d) in zip(concurrent, serial):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)
    finally:
        clf.set_params(backend="reference")


def test_shared_stream_concurrent(rng):
    params = F.init_params("lstm", 4, 16, 2, random_state=rng)
    seqs = [rng.normal(size=(30, 4)).astype(np.float32) for _ in range(N_THREADS)]
    serial_stream = Stream("lstm", params)
    serial = [np.stack([serial_stream.step(x[None], [k])[0] for x in seqs[k]])
              for k in range(N_THREADS)]
    shared = Stream("lstm", params)

    def work(k):
        shared.reset(k)
        return np.stack([shared.step(x[None], [k])[0] for x in seqs[k]])

    for got, want in zip(_run_concurrently(work), serial):
        np.testing.assert_array_equal(got, want)


def test_worker_pool_runs_every_item_in_order_and_grows_under_concurrent_callers():
    """fastseq._threads.WorkerPool (the engines' chunks, the layers' directions and GEMM
    blocks): results come back in item order, the first item runs on the calling thread,
    errors propagate, and callers asking for more workers while others submit all finish
    (a too small pool is replaced, never shut down under them)."""
    from concurrent.futures import ThreadPoolExecutor

    from fastseq._threads import WorkerPool
    pool = WorkerPool("fastseq-test")
    caller = threading.get_ident()
    seen = {}
    assert pool.each(lambda i: (seen.__setitem__(i, threading.get_ident()), i * i)[1],
                     range(4)) == [0, 1, 4, 9]
    assert seen[0] == caller and sorted(seen) == [0, 1, 2, 3]
    assert pool.each(lambda i: i, []) == [] and pool.each(lambda i: i + 1, [5]) == [6]

    def boom(i):
        if i == 2:
            raise ValueError("item 2")
        return i
    with pytest.raises(ValueError, match="item 2"):
        pool.each(boom, range(3))

    def call(n):
        return pool.each(lambda i: i * n, range(n))
    with ThreadPoolExecutor(max_workers=6) as callers:
        results = list(callers.map(call, [2, 3, 4, 5, 6, 7] * 5))
    assert results == [[i * n for i in range(n)] for n in [2, 3, 4, 5, 6, 7] * 5]


@pytest.mark.parametrize("backend", engine_backends())
def test_engine_steps_of_different_cells_concurrent(rng, backend):
    """Threads streaming different cells through one engine's step() at once (each step
    looks its cell's kernel up, cached per cell) get exactly their serial states."""
    _skip_simulated_cuda(backend)
    from fastseq.backends import get_backend
    from fastseq.cells import make_cell
    engine = get_backend(backend)
    names = ["lstm", "gru", "rnn", "gru_classic"]
    B, H = 3, 5
    cases = []
    for k in range(N_THREADS):
        cell = make_cell(names[k % len(names)])
        G = cell.n_gates
        cases.append((cell, rng.normal(size=(6, B, G * H)).astype(np.float32),
                      (0.3 * rng.normal(size=(H, G * H))).astype(np.float32),
                      (0.1 * rng.normal(size=G * H)).astype(np.float32)))

    def work(k):
        cell, xw, R, bh = cases[k]
        h, c = np.zeros((B, H), np.float32), None
        for t in range(xw.shape[0]):
            h, c = engine.step(cell, xw[t], R, bh, h, c)
        return h, c

    serial = [work(k) for k in range(N_THREADS)]
    concurrent = _run_concurrently(work, repeats=20)
    for k in range(N_THREADS):
        np.testing.assert_array_equal(concurrent[k][0], serial[k][0])
        if serial[k][1] is not None:
            np.testing.assert_array_equal(concurrent[k][1], serial[k][1])
