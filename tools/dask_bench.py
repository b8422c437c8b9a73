"""Measure fastseq on a local Dask cluster: grid-search speed-up and first-task cost.

    python tools/dask_bench.py search [--repeats 3] [--json out.json]
        GridSearchCV over SequenceClassifier, timed sequentially in this process (1 and 2
        threads per fit, no dask) and under joblib's dask backend on a LocalCluster of 2
        workers x 1 thread. (A 1 x 1 cluster is the first row: with one worker thread in
        total joblib runs the search in the calling process.) The cluster starts and is
        warmed up (kernels loaded) first; then
        --repeats rounds run the configurations in turn, so load changes on a shared
        machine hit them alike. CPU s = CPU seconds of the process(es)
        doing the fits (workers, or this process), busiest = the busiest one's;
        CPU s / wall = cores actually obtained (low on a loaded machine).

    python tools/dask_bench.py coldstart [--backend numba|cython] [--cold-cache]
        Per worker: wall time (seen by the client) and in-task time of the first and later
        identical fit tasks. --cold-cache points NUMBA_CACHE_DIR at an empty directory,
        so the first task compiles instead of loading the on-disk cache.

Every cluster: worker processes, 127.0.0.1 only, no dashboard, closed at the end.
The machine this was written on has 2 cores shared with other jobs: compare ratios
within one run and repeat.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time


def _cluster(n_workers, threads_per_worker=1, env=None):
    from dask.distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                           processes=True, host="127.0.0.1", dashboard_address=None,
                           memory_limit=0, silence_logs=logging.ERROR, death_timeout=120,
                           env=env)
    return cluster, Client(cluster, timeout=120, set_as_default=False)


def _data(n=240, T=20, F=4, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, F)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(np.int64)
    return X, y


def _search(n_jobs=None):
    from sklearn.model_selection import GridSearchCV

    from fastseq.estimators import SequenceClassifier
    est = SequenceClassifier(max_iter=5, batch_size=32, random_state=0, n_jobs=n_jobs)
    grid = {"cell": ["lstm", "gru"], "units": [16, 32], "learning_rate_init": [3e-3, 1e-2]}
    return GridSearchCV(est, grid, cv=3, n_jobs=-1)


def _process_cpu():
    times = os.times()
    return times.user + times.system


def _cpu_seconds(client):
    """{worker: CPU seconds used so far} for the worker processes of ``client``."""
    return client.run(_process_cpu)


def _one_search(X, y, client=None, est_jobs=None):
    """(wall s, best_params_, CPU s of the fitting processes, CPU s of the busiest one)."""
    import warnings

    import joblib
    from sklearn.exceptions import ConvergenceWarning
    search = _search(est_jobs)
    busy, busiest = None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if client is None:
            before = _process_cpu()
            start = time.perf_counter()
            search.set_params(n_jobs=1).fit(X, y)
            wall = time.perf_counter() - start
            busy = busiest = _process_cpu() - before
        else:
            before = _cpu_seconds(client)
            start = time.perf_counter()
            with joblib.parallel_backend("dask", client=client):
                search.fit(X, y)
            wall = time.perf_counter() - start
            after = _cpu_seconds(client)
            per_worker = [after[w] - before[w] for w in after]
            busy, busiest = sum(per_worker), max(per_worker)
    return wall, search.best_params_, busy, busiest


def cmd_search(args):
    import fastseq.dask as fdask
    X, y = _data(n=args.n)
    sample = (X[:32], y[:32])
    print(f"grid search: 8 candidates x 3 folds + refit, n={len(X)}, T={X.shape[1]}, "
          f"F={X.shape[2]}, max_iter=5; {args.repeats} interleaved rounds")
    # A cluster with one worker thread in total is not measured: joblib then runs the
    # whole search sequentially in the calling process (effective n_jobs == 1), which is
    # exactly the local sequential row.
    configs = [("dask 2 workers x 1 thread", 2, None)]
    clusters = {}
    results = {"local sequential, 1 thread per fit": dict(times=[], busy=[], busiest=[], jobs=1),
               "local sequential, 2 threads per fit": dict(times=[], busy=[], busiest=[],
                                                          jobs=2)}
    try:
        for label, n_workers, env in configs:
            cluster, client = _cluster(n_workers, 1, env)
            clusters[label] = (cluster, client)
            warm = [fdask.warm_up(client, _search().estimator.set_params(cell=cell), *sample)
                    for cell in ("lstm", "gru")]
            threads = [r["default_threads"] for r in client.run(fdask.thread_report).values()]
            results[label] = dict(times=[], busy=[], busiest=[], warm_up_s=warm,
                                  threads=threads)
        _one_search(X, y, None, est_jobs=1)                    # local warm-up (JIT load)
        for _ in range(args.repeats):
            for label, r in results.items():
                client = clusters[label][1] if label in clusters else None
                wall, best, busy, busiest = _one_search(X, y, client, r.get("jobs"))
                r["times"].append(wall)
                r["busy"].append(busy)
                r["busiest"].append(busiest)
                r["best"] = best
    finally:
        for cluster, client in clusters.values():
            client.close(timeout=60)
            cluster.close(timeout=60)
    base_label = "local sequential, 1 thread per fit"
    base = statistics.median(results[base_label]["times"])
    base_min = min(results[base_label]["times"])
    base_cpu = statistics.median(results[base_label]["busy"])
    print(f"{'configuration':36s} {'median s':>9s} {'min s':>7s} {'speed-up':>9s} "
          f"{'(min)':>6s} {'CPU s':>6s} {'busiest':>8s} {'CPU s/wall':>11s}")
    for label, r in results.items():
        med = statistics.median(r["times"])
        r["median_s"], r["min_s"] = med, min(r["times"])
        r["cpu_s"] = statistics.median(r["busy"])
        r["busiest_cpu_s"] = statistics.median(r["busiest"])
        conc = statistics.median(b / t for b, t in zip(r["busy"], r["times"]))
        print(f"{label:36s} {med:9.2f} {min(r['times']):7.2f} {base / med:8.2f}x "
              f"{base_min / min(r['times']):5.2f}x {r['cpu_s']:6.2f} "
              f"{r['busiest_cpu_s']:8.2f} {conc:11.2f}")
        print(f"{'':36s} runs {', '.join(f'{t:.2f}' for t in r['times'])}")
    same = len({json.dumps(r["best"], sort_keys=True) for r in results.values()}) == 1
    print(f"same best_params_ everywhere: {same}")
    two = results["dask 2 workers x 1 thread"]
    print(f"CPU-bound estimate for idle cores: sequential CPU s / busiest worker's CPU s = "
          f"{base_cpu / two['busiest_cpu_s']:.2f}x (an estimate, not a timing)")
    print(f"load average at the end: {os.getloadavg()}")
    return results


def _timed_fit(estimator, X, y):
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clone(estimator).fit(X, y)
    return os.getpid(), time.perf_counter() - start


def cmd_coldstart(args):
    if args.cold_cache:
        # before anything imports numba, here and (inherited) in the spawned workers
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastseq-numba-cold-")
    from fastseq.estimators import SequenceClassifier
    X, y = _data(n=64, T=10, F=3)
    est = SequenceClassifier(units=16, max_iter=2, random_state=0, backend=args.backend)
    cluster, client = _cluster(2, 1)
    rows = []
    try:
        for address in sorted(client.scheduler_info()["workers"]):
            for k in range(args.tasks):
                start = time.perf_counter()
                pid, inside = client.submit(_timed_fit, est, X, y, workers=[address],
                                            allow_other_workers=False, pure=False).result(
                    timeout=600)
                rows.append(dict(worker=address, pid=pid, task=k,
                                 wall_s=time.perf_counter() - start, in_task_s=inside))
    finally:
        client.close(timeout=60)
        cluster.close(timeout=60)
    label = f"{args.backend}, numba cache {'cold' if args.cold_cache else 'warm'}"
    print(f"first vs later fit tasks per worker ({label}); wall = submit to result, "
          "including fastseq's import in the worker for task 0")
    for r in rows:
        print(f"  pid {r['pid']} task {r['task']}: wall {r['wall_s']:.2f} s, "
              f"in task {r['in_task_s']:.3f} s")
    return dict(label=label, rows=rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("search")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n", type=int, default=240, help="training sequences")
    p.add_argument("--json")
    p = sub.add_parser("coldstart")
    p.add_argument("--backend", default="numba")
    p.add_argument("--cold-cache", action="store_true")
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--json")
    args = parser.parse_args(argv)
    result = cmd_search(args) if args.cmd == "search" else cmd_coldstart(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
