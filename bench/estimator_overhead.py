"""How much the estimator layer adds over the raw recurrent engine.

Seed architecture (2 x LSTM(128), 28 x 28 random rows, 10 classes). For training, batch 32:

* raw      ``layers.stack_forward`` + ``stack_backward`` (the engine and its GEMMs only),
           given the parameter views: the layers copy each ``weight_hh.T`` (blocked transpose)
* raw_pool the same, given ``Network._engine_params()`` (pooled ``weight_hh.T`` copies,
           as the network hands it over): the floor the network and fit are judged by
* network  ``Network.forward_train`` + loss + ``backward`` + one Adam step on the flat buffer
* fit      ``SequenceClassifier.fit`` for one epoch (shuffling, batching, bookkeeping)

For prediction, batch 256: raw ``stack_forward(training=False)`` vs ``predict_proba``.
Each variant is timed ``--repeats`` times, interleaved, and the best time is kept (the
machine is shared: compare ratios within one run)::

    python bench/estimator_overhead.py [--backend numba] [--n-jobs 1] [--repeats 5]
"""
import argparse
import time
import warnings

import numpy as np

from fastseq.backends import get_backend
from fastseq.estimators import SequenceClassifier
from fastseq.layers import stack_backward, stack_forward
from fastseq.losses import softmax_cross_entropy
from fastseq.network import Network
from fastseq.optim import Adam


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=1024)
    parser.add_argument("--n-predict", type=int, default=2048)
    args = parser.parse_args(argv)
    backend = get_backend(args.backend).name
    rng = np.random.default_rng(0)
    T, F, B = 28, 28, 32
    X = rng.random((args.n_train, T, F), dtype=np.float32)
    y = rng.integers(0, 10, size=args.n_train)
    Xp = rng.random((args.n_predict, T, F), dtype=np.float32)
    est = SequenceClassifier(cell="lstm", units=128, num_layers=2, batch_size=B, max_iter=1,
                             shuffle=True, random_state=0, backend=backend,
                             n_jobs=args.n_jobs, alpha=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:B], np.arange(B) % 10)           # builds the model, compiles kernels
    net = Network(est.network_config_, flat=est.flat_params_.copy(), backend=backend,
                  n_threads=est._n_threads())
    opt = Adam(net.n_params, net.dtype)
    n_batches = args.n_train // B
    xt = np.ascontiguousarray(X.transpose(1, 0, 2))
    xpt = np.ascontiguousarray(Xp.transpose(1, 0, 2))
    lengths = np.full(B, T)

    def raw_train():
        for k in range(n_batches):
            xb = xt[:, k * B:(k + 1) * B]
            out, h_n, c_n, cache = stack_forward(backend, net.cell, net.rnn_params, xb,
                                                 lengths, n_threads=net.n_threads)
            dh = np.zeros_like(h_n)
            dh[-1] = 1.0
            stack_backward(net.rnn_params, cache, dh_n=dh, n_threads=net.n_threads)

    def raw_train_pool():
        for k in range(n_batches):
            xb = xt[:, k * B:(k + 1) * B]
            params, weight_hh_t, lease = net._engine_params()
            out, h_n, c_n, cache = stack_forward(backend, net.cell, params, xb,
                                                 lengths, n_threads=net.n_threads,
                                                 weight_hh_t=weight_hh_t)
            dh = np.zeros_like(h_n)
            dh[-1] = 1.0
            stack_backward(params, cache, dh_n=dh, n_threads=net.n_threads)
            net._release(lease)

    def network_train():
        for k in range(n_batches):
            xb = xt[:, k * B:(k + 1) * B]
            out, cache = net.forward_train(xb, lengths, training=True)
            _, d = softmax_cross_entropy(out, y[k * B:(k + 1) * B])
            opt.step(net.flat, net.backward(cache, d))

    def fit_epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.set_params(warm_start=True).fit(X[:n_batches * B], y[:n_batches * B])

    def raw_predict():
        for start in range(0, args.n_predict, 256):
            xb = xpt[:, start:start + 256]
            stack_forward(backend, net.cell, net.rnn_params, xb, None, training=False,
                          n_threads=net.n_threads)

    def est_predict():
        est.predict_proba(Xp)

    variants = dict(raw_train=raw_train, raw_pool=raw_train_pool,
                    network_train=network_train, fit=fit_epoch,
                    raw_predict=raw_predict, predict_proba=est_predict)
    best = {k: np.inf for k in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    n_tr, n_pr = n_batches * B, args.n_predict
    print(f"backend {backend}, n_jobs {args.n_jobs}, best of {args.repeats}")
    for name in ("raw_train", "raw_pool", "network_train", "fit"):
        print(f"  {name:14s} {n_tr / best[name]:8.0f} samples/s   "
              f"{100 * (best[name] / best['raw_train'] - 1):+6.1f} % vs raw   "
              f"{100 * (best[name] / best['raw_pool'] - 1):+6.1f} % vs raw_pool")
    for name in ("raw_predict", "predict_proba"):
        print(f"  {name:14s} {n_pr / best[name]:8.0f} samples/s   "
              f"{100 * (best[name] / best['raw_predict'] - 1):+6.1f} % vs raw")
    return best


if __name__ == "__main__":
    main()
