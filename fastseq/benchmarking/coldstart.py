"""Cold start: what a user waits for before the first result, in a fresh process.

For each implementation a new interpreter imports it and runs the first forward +
backward of a small layer for each requested cell, then a second one (steady state).
For fastseq's backends this is done twice with ``NUMBA_CACHE_DIR`` pointing at a fresh
folder: the first process starts with an empty Numba cache (what a new install pays),
the second finds it filled (every later start). Backends without JIT (cython,
reference) show the same numbers both times.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from .cases import Case

COLD_CASE = dict(B=16, T=20, I=16, H=32, mode="train", dtype="float32")


def _child(impl, cells, n_threads):
    t0 = time.perf_counter()
    if impl in ("torch", "torch-nodnn"):
        import torch  # noqa: F401
    else:
        from fastseq.backends import get_backend
        get_backend(impl)
    result = {"import": time.perf_counter() - t0, "cells": {}}
    from .runners import Unsupported, make_runner
    for cell in cells:
        t1 = time.perf_counter()
        try:
            runner = make_runner(impl, Case(cell, **COLD_CASE), n_threads)
        except Unsupported as exc:
            result["cells"][cell] = {"skip": str(exc)}
            continue
        with runner.scope():
            runner.fn()
            first = time.perf_counter() - t1
            t2 = time.perf_counter()
            runner.fn()
            second = time.perf_counter() - t2
        result["cells"][cell] = {"first": first, "second": second}
    return result


def measure_cold_start(impl, cells=("lstm", "gru"), n_threads=1, timeout=600):
    """``{"empty_cache": {...}, "warm_cache": {...}}`` (or ``{"skip": why}``).

    Each entry holds ``import`` seconds, ``process`` seconds (the whole interpreter, start
    to exit) and per cell the ``first`` and ``second`` forward+backward seconds.
    """
    runs = {}
    with tempfile.TemporaryDirectory(prefix="fastseq-numba-cache-") as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, OMP_NUM_THREADS=str(n_threads))
        for label in ("empty_cache", "warm_cache"):
            request = json.dumps(dict(impl=impl, cells=list(cells), threads=n_threads))
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "fastseq.benchmarking.coldstart", request],
                    capture_output=True, text=True, env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                return {"skip": f"cold start took over {timeout} s"}
            wall = time.perf_counter() - t0
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                return {"skip": _failure("cold-start worker", proc)}
            runs[label] = dict(json.loads(lines[-1]), process=wall)
    return runs


def _failure(what, proc):
    """One line saying how a worker process failed (exit code, last line of output)."""
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
    return f"{what} failed (exit code {proc.returncode}): {tail[0]}"


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    try:
        print(json.dumps(_child(request["impl"], request["cells"], request["threads"])))
    except ImportError as exc:
        print(json.dumps({"skip": str(exc)}))
