"""Benchmarks of fastseq against its peers and against the machine's ceiling.

``python -m fastseq bench [--report] [--full] [--out DIR] [--threads N] ...``

* without ``--report``: measure the quick subset and print the tables;
* ``--report``: also write ``report.md``, ``summary.md`` (the README's table),
  ``results.json`` and PNG plots into ``--out`` (default ``bench/report``);
* ``--full``: the whole matrix (every cell, mode and dtype, DeepBench sizes) instead of
  the quick subset (which runs in under 3 minutes on 2 cores);
* ``--render results.json``: rebuild the Markdown and plots from saved results.

Modules: :mod:`.cases` (what is measured, FLOP and memory formulas), :mod:`.timing`
(the one timer, the GEMM ceiling), :mod:`.runners` (fastseq and PyTorch runners),
:mod:`.keras_worker` (Keras in a child process), :mod:`.memory`, :mod:`.coldstart`,
:mod:`.endtoend` (estimators), :mod:`.suite` (running a list), :mod:`.report` (output).
``bench/`` drives the same runners through pytest-benchmark.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import cases as _cases
from .cases import Case

DEFAULT_OUT = os.path.join("bench", "report")


def _parser():
    p = argparse.ArgumentParser(prog="python -m fastseq bench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--report", action="store_true",
                   help="write report.md, summary.md, results.json and PNG plots to --out")
    p.add_argument("--full", action="store_true",
                   help="the whole matrix (tens of minutes) instead of the quick subset")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # smoke tests
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder (default %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every implementation (default: all CPUs available)")
    p.add_argument("--backends", default=None,
                   help="comma-separated fastseq backends (default: every engine that "
                        "imports; the reference only when it is the only one)")
    p.add_argument("--peers", default="torch,torch-nodnn,keras",
                   help="comma-separated peers, or 'none' (default %(default)s)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--no-coldstart", action="store_true", help="skip the cold-start runs")
    p.add_argument("--no-estimator", action="store_true",
                   help="skip the end-to-end estimator runs")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of timed rounds per measurement")
    p.add_argument("--render", metavar="RESULTS_JSON",
                   help="only rebuild the report from a saved results.json")
    return p


def _settings(args):
    if args.tiny:
        return dict(matrix="tiny", cases=_cases.tiny_cases(), min_time=0.01, gemm_n=128,
                    memory=[Case("lstm", 16, 50, 16, 32, "train")], scaling=[],
                    cold_cells=("lstm",), cold_peers=False, estimator=False)
    if args.full:
        return dict(matrix="full", cases=_cases.full_cases(), min_time=0.5, gemm_n=2048,
                    memory=_cases.memory_cases(full=True),
                    scaling=_cases.scaling_cases(full=True),
                    cold_cells=_cases.CELLS, cold_peers=True, estimator=True)
    return dict(matrix="quick", cases=_cases.quick_cases(), min_time=0.1, gemm_n=1536,
                memory=_cases.memory_cases(full=False),
                scaling=_cases.scaling_cases(full=False),
                cold_cells=("lstm",), cold_peers=False, estimator=True)


def run(args, log=print):
    """Measure everything ``args`` asks for; returns the results dict."""
    from ..__init__ import available_backends  # noqa: F401  (import check)
    from .._config import default_threads
    from . import suite
    from .coldstart import measure_cold_start
    from .memory import measure_memory

    settings = _settings(args)
    n_threads = args.threads or default_threads()
    min_time = args.min_time if args.min_time is not None else settings["min_time"]
    backends = ([b.strip() for b in args.backends.split(",") if b.strip()]
                if args.backends else suite.default_backends())
    wanted_peers = [] if args.peers.strip() == "none" else \
        [p.strip() for p in args.peers.split(",") if p.strip()]
    peer_status = suite.available_peers()
    unknown = [p for p in wanted_peers if p not in peer_status]
    if unknown:
        raise SystemExit(f"--peers: unknown {unknown}; choose from {list(peer_status)}")
    skipped = {p: peer_status[p] for p in wanted_peers if peer_status[p]}
    peers = [p for p in wanted_peers if not peer_status[p]]
    for peer, why in skipped.items():
        log(f"peer {peer} skipped: {why}")

    t_start = time.perf_counter()
    meta = suite.machine_info(n_threads)
    log(f"fastseq bench ({settings['matrix']}): backends {backends}, peers {peers}, "
        f"{n_threads} threads, {meta['cpu']}")
    log("GEMM ceiling ...")
    ceiling_raw = suite.measure_ceiling(n_threads, n=settings["gemm_n"],
                                        min_time=0.05 if args.tiny else 0.5)
    ceiling = {}
    for (dtype, threads), gflops in ceiling_raw.items():
        ceiling.setdefault(dtype, {})[str(threads)] = gflops
        log(f"  {dtype} {threads} thread(s): {gflops:.1f} GFLOP/s")
    impls = backends + peers

    from .keras_worker import KerasWorker
    keras = KerasWorker(n_threads) if "keras" in peers else None
    try:
        if keras is not None and keras.available:
            meta.update(keras=keras.versions["keras"], tensorflow=keras.versions["tensorflow"])
        elif keras is not None:
            skipped["keras"] = keras.reason
            impls.remove("keras")
            log(f"peer keras skipped: {keras.reason}")
        log(f"{len(settings['cases'])} cases ...")
        records = suite.run_cases(settings["cases"], impls, n_threads, ceiling_raw,
                                  min_time=min_time, progress=log, keras=keras)
        scaling = []
        if settings["scaling"] and n_threads > 1:
            log("thread scaling (1 thread) ...")
            one = [i for i in impls if i in backends or i == "torch"]
            scaling = suite.run_cases(settings["scaling"], one, 1, ceiling_raw,
                                      min_time=min_time, progress=log)
            scaling += suite.run_cases(settings["scaling"], one, n_threads, ceiling_raw,
                                       min_time=min_time, progress=log)
        estimator = []
        if settings["estimator"] and not args.no_estimator:
            from .endtoend import run_endtoend
            log("end to end (estimators) ...")
            estimator = run_endtoend(backends, peers, n_threads, keras=keras, log=log)
    finally:
        if keras is not None:
            keras.close()

    memory = []
    if not args.no_memory:
        log("peak memory of a training step (fresh processes) ...")
        mem_impls = backends + [p for p in peers if p in ("torch",)]
        for case in settings["memory"]:
            for impl in mem_impls:
                m = dict(measure_memory(impl, case, n_threads), impl=impl, label=case.label)
                memory.append(m)
                log(f"  {case.label:<36} {impl:<12} " + (
                    f"skipped: {m['skip']}" if "skip" in m else
                    f"peak {m['peak'] / 2**20:.2f} MiB, minimum {m['minimum'] / 2**20:.2f} "
                    f"MiB, {m['ratio']:.2f}x"))
    coldstart = {}
    if not args.no_coldstart:
        log("cold start (fresh processes) ...")
        cold_peers = [p for p in peers if p == "torch"] if settings["cold_peers"] else []
        for impl in backends + cold_peers:
            coldstart[impl] = measure_cold_start(impl, settings["cold_cells"], n_threads)
            log(f"  {impl}: " + json.dumps(coldstart[impl])[:200])
    meta["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    meta["load_end"] = suite._load()
    log(f"measured in {meta['elapsed_s']} s")
    return dict(meta=meta, settings=dict(matrix=settings["matrix"], min_time=min_time,
                                         backends=backends, peers=peers,
                                         gemm_n=settings["gemm_n"]),
                ceiling=ceiling, records=records, scaling=scaling, memory=memory,
                coldstart=coldstart, estimator=estimator, skipped=skipped)


def write_report(data, folder):
    """Write report.md, summary.md, results.json and the plots; returns their paths."""
    from .report import make_plots, render_markdown, render_summary
    os.makedirs(folder, exist_ok=True)
    data["plots"] = make_plots(data, folder)
    paths = []
    for name, text in (("report.md", render_markdown(data)),
                       ("summary.md", render_summary(data))):
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        paths.append(path)
    path = os.path.join(folder, "results.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    paths.append(path)
    return paths + [os.path.join(folder, p) for p in data["plots"]]


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.render:
        with open(args.render, encoding="utf-8") as fh:
            data = json.load(fh)
        for path in write_report(data, args.out):
            print("wrote", path)
        return 0
    data = run(args)
    if args.report:
        for path in write_report(data, args.out):
            print("wrote", path)
    else:
        from .report import render_markdown
        print(render_markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
