"""Measure fastseq on a local Dask cluster: grid-search speed-up and first-task cost.

    python tools/dask_bench.py search [--n 12000] [--repeats 3] [--two-threads] [--json out.json]
        GridSearchCV over SequenceClassifier, timed sequentially in this process (1 thread
        per fit, no dask; --two-threads adds 2 threads per fit) and under joblib's dask
        backend on two LocalClusters of 2 workers x 1 thread: one as dask starts it (the
        nanny gives workers MALLOC_TRIM_THRESHOLD_=65536), one after
        fastseq.dask.configure_workers (WorkerSettings' malloc thresholds); both stay up
        for the whole run, the idle one costs ~0.03 CPU s/s per worker. (A 1 x 1 cluster is the first
        row: with one worker thread in total joblib runs the search in the calling
        process.) The cluster starts and is warmed up (kernels loaded) first; then
        --repeats rounds run the configurations in turn, so load changes on a shared
        machine hit them alike. CPU s = CPU seconds of the process(es) doing the fits
        (workers, or this process), busiest = the busiest one's; CPU s / wall = cores
        actually obtained (low on a loaded machine); faults = minor page faults of those
        processes; load = 1-minute load average before the round.

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
    """(CPU seconds, minor page faults) of this process so far."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt


def _cpu_seconds(client):
    """{worker: (CPU seconds, minor page faults) so far} for the workers of ``client``."""
    return client.run(_process_cpu)


def _one_search(X, y, client=None, est_jobs=None):
    """(wall s, best_params_, CPU s of the fitting processes, CPU s of the busiest one,
    their minor page faults)."""
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
            after = _process_cpu()
            busy = busiest = after[0] - before[0]
            faults = after[1] - before[1]
        else:
            before = _cpu_seconds(client)
            start = time.perf_counter()
            with joblib.parallel_backend("dask", client=client):
                search.fit(X, y)
            wall = time.perf_counter() - start
            after = _cpu_seconds(client)
            per_worker = [after[w][0] - before[w][0] for w in after]
            busy, busiest = sum(per_worker), max(per_worker)
            faults = sum(after[w][1] - before[w][1] for w in after)
    return wall, search.best_params_, busy, busiest, faults


def cmd_search(args):
    import fastseq.dask as fdask
    X, y = _data(n=args.n)
    sample = (X[:32], y[:32])
    print(f"grid search: 8 candidates x 3 folds + refit, n={len(X)}, T={X.shape[1]}, "
          f"F={X.shape[2]}, max_iter=5; {args.repeats} interleaved rounds")
    # A cluster with one worker thread in total is not measured: joblib then runs the
    # whole search sequentially in the calling process (effective n_jobs == 1), which is
    # exactly the local sequential row.
    nanny = "dask 2 workers x 1, dask's malloc"
    tuned = "dask 2 workers x 1, configure_workers"
    base_label = "local sequential, 1 thread per fit"
    results = {base_label: dict(jobs=1), nanny: {}, tuned: {}}
    if args.two_threads:
        results["local sequential, 2 threads per fit"] = dict(jobs=2)
    for r in results.values():
        r.update(times=[], busy=[], busiest=[], faults=[], load=[])
    clusters = {}
    logging.getLogger("distributed").setLevel(logging.ERROR)   # quiet second cluster
    try:
        for label in (nanny, tuned):
            cluster, client = _cluster(2, 1)
            clusters[label] = (cluster, client)
            if label == tuned:
                fdask.configure_workers(client)
            warm = [fdask.warm_up(client, _search().estimator.set_params(cell=cell), *sample)
                    for cell in ("lstm", "gru")]
            reports = client.run(fdask.thread_report)
            results[label].update(warm_up_s=warm,
                                  threads=[r["default_threads"] for r in reports.values()],
                                  malloc=[r["malloc"] for r in reports.values()])
        _one_search(X, y, None, est_jobs=1)                    # local warm-up (JIT load)
        for _ in range(args.repeats):
            for label, r in results.items():
                client = clusters[label][1] if label in clusters else None
                r["load"].append(os.getloadavg()[0])
                wall, best, busy, busiest, faults = _one_search(X, y, client, r.get("jobs"))
                r["times"].append(wall)
                r["busy"].append(busy)
                r["busiest"].append(busiest)
                r["faults"].append(faults)
                r["best"] = best
    finally:
        for cluster, client in clusters.values():
            client.close(timeout=60)
            cluster.close(timeout=60)
    base = statistics.median(results[base_label]["times"])
    base_min = min(results[base_label]["times"])
    base_cpu = statistics.median(results[base_label]["busy"])
    print(f"{'configuration':38s} {'median s':>9s} {'min s':>7s} {'speed-up':>9s} "
          f"{'(min)':>6s} {'CPU s':>6s} {'busiest':>8s} {'CPU s/wall':>11s} {'faults':>8s}")
    for label, r in results.items():
        med = statistics.median(r["times"])
        r["median_s"], r["min_s"] = med, min(r["times"])
        r["cpu_s"] = statistics.median(r["busy"])
        r["busiest_cpu_s"] = statistics.median(r["busiest"])
        r["median_faults"] = statistics.median(r["faults"])
        conc = statistics.median(b / t for b, t in zip(r["busy"], r["times"]))
        print(f"{label:38s} {med:9.2f} {min(r['times']):7.2f} {base / med:8.2f}x "
              f"{base_min / min(r['times']):5.2f}x {r['cpu_s']:6.2f} "
              f"{r['busiest_cpu_s']:8.2f} {conc:11.2f} {r['median_faults']:8.0f}")
        print(f"{'':38s} runs {', '.join(f'{t:.2f}' for t in r['times'])} s; "
              f"CPU {', '.join(f'{b:.2f}' for b in r['busy'])}; "
              f"load {', '.join(f'{v:.1f}' for v in r['load'])}")
    same = len({json.dumps(r["best"], sort_keys=True) for r in results.values()}) == 1
    print(f"same best_params_ everywhere: {same}")
    for label in (nanny, tuned):
        print(f"CPU-bound estimate for 2 idle cores, {label}: sequential CPU s / busiest "
              f"worker's CPU s = {base_cpu / results[label]['busiest_cpu_s']:.2f}x "
              "(an estimate, not a timing)")
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
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=12000, help="training sequences")
    p.add_argument("--two-threads", action="store_true",
                   help="also time the local search with 2 threads per fit")
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
