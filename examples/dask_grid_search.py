"""Model search and batch scoring of a fastseq classifier on a Dask cluster.

    pip install "fastseq[dask]"
    python examples/dask_grid_search.py                 # starts a local 2-worker cluster
    python examples/dask_grid_search.py --scheduler tcp://host:8786   # an existing one
    python examples/dask_grid_search.py --quick         # a smaller search (seconds)

1. GridSearchCV over SequenceClassifier under joblib's dask backend: every (candidate,
   fold) fit is a task on some worker.
2. The best model scores a dask array of flattened sequences, chunk by chunk on the
   workers (fastseq.dask.predict), and is compared with in-memory predictions.
3. A second model trains with partial_fit over the chunks (fastseq.dask.incremental_fit).

The task: does a noisy sine wave of random frequency have a frequency above the median?
"""
from __future__ import annotations

import argparse
import logging
import time
import warnings


def make_waves(n, T, rng):
    import numpy as np
    freq = rng.uniform(0.5, 3.0, size=n)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    t = np.linspace(0, 2 * np.pi, T)
    wave = np.sin(freq[:, None] * t[None, :] + phase[:, None])
    X = np.stack([wave + 0.2 * rng.normal(size=(n, T)),
                  np.cos(freq[:, None] * t[None, :] + phase[:, None])], axis=2)
    return X.astype(np.float32), (freq > 1.75).astype(np.int64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help="address of a running dask scheduler")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    import dask.array as da
    import joblib
    import numpy as np
    from dask.distributed import Client, LocalCluster
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV

    import fastseq.dask as fdask
    from fastseq.estimators import SequenceClassifier

    warnings.simplefilter("ignore", ConvergenceWarning)
    rng = np.random.default_rng(0)
    T = 24
    n_train, n_score = (120, 1_000) if args.quick else (600, 50_000)
    X, y = make_waves(n_train, T, rng)

    cluster = None
    if args.scheduler:
        client = Client(args.scheduler, timeout=60, set_as_default=False)
    else:
        # worker processes, one task each; each fit gets NUMBA_NUM_THREADS=1 so the
        # workers do not oversubscribe the cores (fastseq.dask.worker_env)
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                               host="127.0.0.1", dashboard_address=None,
                               silence_logs=logging.ERROR, env=fdask.worker_env(1))
        client = Client(cluster, timeout=60, set_as_default=False)
    try:
        # glibc malloc thresholds in every worker: dask's nanny setting makes each training
        # batch page-fault its large arrays (1.5-1.8x the CPU; see docs/dask.md)
        fdask.configure_workers(client)
        est = SequenceClassifier(units=16, max_iter=10 if args.quick else 20, batch_size=32,
                                 random_state=0)
        grid = {"cell": ["lstm", "gru"], "units": [16] if args.quick else [8, 16],
                "learning_rate_init": [1e-2, 3e-2] if args.quick else [3e-3, 1e-2, 3e-2]}
        search = GridSearchCV(est, grid, cv=2 if args.quick else 3, n_jobs=-1)
        start = time.perf_counter()
        with joblib.parallel_backend("dask", client=client):
            search.fit(X, y)
        print(f"grid search: {len(search.cv_results_['params'])} candidates on "
              f"{len(client.scheduler_info()['workers'])} workers in "
              f"{time.perf_counter() - start:.1f} s")
        print(f"best params {search.best_params_}, cv accuracy {search.best_score_:.3f}")

        # batch scoring of flattened rows (n, T * F): what 2-D tools hand over
        X_new, y_new = make_waves(n_score, T, rng)
        best = search.best_estimator_
        flat_model = SequenceClassifier(**{**best.get_params(), "n_timesteps": T})
        flat_model.fit(X.reshape(n_train, -1), y)
        rows = da.from_array(X_new.reshape(n_score, -1), chunks=(n_score // 8, -1))
        start = time.perf_counter()
        with client.as_current():
            labels = fdask.predict(flat_model, rows).compute()
        elapsed = time.perf_counter() - start
        same = bool(np.array_equal(labels, flat_model.predict(X_new.reshape(n_score, -1))))
        accuracy = float(np.mean(labels == y_new))
        print(f"scored {n_score} sequences in {rows.numblocks[0]} chunks in {elapsed:.2f} s "
              f"({n_score / elapsed:.0f} sequences/s); accuracy {accuracy:.3f}; "
              f"equal to in-memory predict: {same}")

        # training over chunks: one partial_fit call per chunk, in order, on the workers
        chunks = da.from_array(X, chunks=(n_train // 4, -1, -1))
        online = SequenceClassifier(**best.get_params())
        with client.as_current():
            fdask.incremental_fit(online, chunks, y, classes=[0, 1], epochs=5)
        print(f"incremental_fit: {online.n_iter_} partial_fit calls, "
              f"training accuracy {online.score(X, y):.3f}")
        return dict(best_params=search.best_params_, best_score=search.best_score_,
                    accuracy=accuracy, same=same, online_iters=online.n_iter_)
    finally:
        client.close(timeout=30)
        if cluster is not None:
            cluster.close(timeout=30)


if __name__ == "__main__":
    main()
