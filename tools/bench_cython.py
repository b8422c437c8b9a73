"""Cython engine vs Numba engine vs PyTorch at the issue-4 sizes (train = forward + backward
through one layer, float32), interleaved and repeated because the machine is shared.

    python tools/bench_cython.py                     # 2 threads, 3 repeats
    python tools/bench_cython.py --threads 1 --repeats 5 --impl cython numba

Uses the benchmark harness's runners and timer (fastseq.benchmarking), so the numbers are
comparable with ``pytest bench/``. Prints a Markdown table of median milliseconds per call
(median over repeats of each measurement's median, or with ``--stat min`` of its
fastest round) and the Cython/Numba and
Cython/PyTorch time ratios.
"""
from __future__ import annotations

import argparse
import statistics

from fastseq.benchmarking.cases import Case
from fastseq.benchmarking.runners import Unsupported, make_runner
from fastseq.benchmarking.timing import measure

SIZES = [("lstm", 16, 200, 8, 32), ("gru", 16, 200, 8, 32), ("lstm", 32, 100, 32, 64),
         ("lstm", 128, 28, 28, 128), ("lstm", 64, 50, 512, 512), ("gru", 64, 100, 128, 256)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--impl", nargs="+", default=["cython", "numba", "torch"])
    ap.add_argument("--mode", default="train", choices=["train", "fwd"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--stat", default="median", choices=["median", "min"],
                    help="per measurement: median of the rounds, or the fastest round "
                         "(less sensitive to other processes on a shared machine)")
    args = ap.parse_args(argv)
    rows = []
    for cell, B, T, I, H in SIZES:
        case = Case(cell, B, T, I, H, args.mode, args.dtype)
        runners = {}
        for impl in args.impl:
            try:
                runners[impl] = make_runner(impl, case, args.threads)
            except Unsupported:
                pass
        times = {impl: [] for impl in runners}
        for _ in range(args.repeats):
            for impl, runner in runners.items():
                with runner.scope():
                    timing = measure(runner.fn, min_time=0.3)
                    times[impl].append(timing.median if args.stat == "median"
                                       else timing.minimum)
        med = {impl: statistics.median(v) for impl, v in times.items()}
        rows.append((case, med))
        print(case.label, {k: f"{v * 1e3:.2f} ms" for k, v in med.items()}, flush=True)
    impls = [i for i in args.impl if any(i in m for _, m in rows)]
    print(f"\n{args.mode} {args.dtype}, {args.threads} threads, {args.stat} of rounds, "
          f"median of {args.repeats} repeats\n")
    head = "| case | " + " | ".join(f"{i} ms" for i in impls)
    head += " | cython/numba | cython/torch | GFLOP/s cython |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for case, med in rows:
        cells = [f"{med[i] * 1e3:.2f}" if i in med else "-" for i in impls]
        r1 = f"{med['cython'] / med['numba']:.2f}" if {"cython", "numba"} <= set(med) else "-"
        r2 = f"{med['cython'] / med['torch']:.2f}" if {"cython", "torch"} <= set(med) else "-"
        gf = f"{case.flops / med['cython'] / 1e9:.1f}" if "cython" in med else "-"
        print(f"| {case.label} | " + " | ".join(cells) + f" | {r1} | {r2} | {gf} |")


if __name__ == "__main__":
    main()
