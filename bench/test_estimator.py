"""End to end: samples/s of fit and predict of the seed model (2 x LSTM(128) on 28 x 28
rows, batch 32; predict batch 256), fastseq's estimator next to the raw layers, PyTorch
and Keras in the same run. Skips cleanly until ``fastseq.estimators`` exists."""
import contextlib

import pytest

from fastseq.benchmarking import endtoend
from fastseq.benchmarking.suite import available_peers
from fastseq.benchmarking.timing import blas_limits

from .conftest import bench_backends

M = endtoend.SEED_MODEL


def pytest_generate_tests(metafunc):
    if "e2e_backend" in metafunc.fixturenames:
        metafunc.parametrize("e2e_backend", bench_backends(metafunc.config))


def _bench(benchmark, fn, n, what, impl, n_threads, scope=None):
    benchmark.group = "end to end: " + what
    with (scope() if scope else blas_limits(n_threads)):
        benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info.update(impl=impl, threads=n_threads, samples=n,
                                samples_per_s=round(rate, 1))


def _estimator_or_skip():
    pytest.importorskip("fastseq.estimators")
    try:
        endtoend.estimator_class()
    except endtoend.EstimatorMissing as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("what", ["fit", "predict"])
def test_fastseq_estimator(benchmark, e2e_backend, what, n_threads):
    _estimator_or_skip()
    try:
        make = (endtoend.fastseq_fit_runner if what == "fit"
                else endtoend.fastseq_predict_runner)
        fn = make(e2e_backend, n_threads)
    except endtoend.EstimatorMissing as exc:
        pytest.skip(str(exc))
    n = M["n_train"] if what == "fit" else M["n_predict"]
    _bench(benchmark, fn, n, what, e2e_backend, n_threads)


def test_fastseq_layers_only(benchmark, e2e_backend, n_threads):
    """The engine's share of one epoch: the floor the estimator's overhead is judged by."""
    fn = endtoend.layers_fit_runner(e2e_backend, n_threads)
    _bench(benchmark, fn, M["n_train"], "fit", f"{e2e_backend} (layers only)", n_threads)


@pytest.mark.parametrize("what", ["fit", "predict"])
def test_torch(benchmark, what, n_threads):
    if available_peers()["torch"]:
        pytest.skip(available_peers()["torch"])
    import torch

    @contextlib.contextmanager
    def threads():
        before = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    fn = (endtoend.torch_fit_runner if what == "fit"
          else endtoend.torch_predict_runner)(n_threads)
    n = M["n_train"] if what == "fit" else M["n_predict"]
    _bench(benchmark, fn, n, what, "torch", n_threads, threads)


def test_keras(benchmark, keras_worker, n_threads):
    """Keras times itself in its worker (same timer); recorded here as extra_info."""
    if not keras_worker.available:
        pytest.skip(keras_worker.reason)
    answer = benchmark.pedantic(keras_worker.endtoend, rounds=1, iterations=1)
    if "skip" in answer:
        pytest.skip(answer["skip"])
    benchmark.group = "end to end: keras"
    benchmark.extra_info.update(
        impl="keras", threads=n_threads,
        fit_samples_per_s=round(M["n_train"] / answer["fit"]["median"], 1),
        predict_samples_per_s=round(M["n_predict"] / answer["predict"]["median"], 1))
