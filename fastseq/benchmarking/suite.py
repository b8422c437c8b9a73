"""Run a list of cases over implementations; collect one record per measurement.

Implementations of one case are measured back to back (interleaved, not one
implementation after the other over the whole list), so a change in the load of a
shared machine hits every implementation of a case alike and their ratios stay fair.
"""
from __future__ import annotations

import platform
import time
from datetime import datetime, timezone

import numpy as np

from .cases import flops
from .keras_worker import KerasWorker
from .runners import PEERS, Unsupported, is_peer, make_runner
from .timing import MIN_TIME, blas_info, gemm_ceiling, measure


def default_backends():
    """fastseq engines to measure: every one that imports; the slow float64 oracle only
    when it is the only one."""
    from ..backends import available_backends
    names = available_backends()
    engines = [n for n in names if n != "reference"]
    return engines or names


def available_peers():
    """``{peer: None | reason it is skipped}`` without starting anything heavy."""
    import importlib.util
    status = {}
    torch_missing = importlib.util.find_spec("torch") is None
    for peer in ("torch", "torch-nodnn"):
        status[peer] = ("PyTorch is not installed (pip install 'fastseq[bench]')"
                        if torch_missing else None)
    missing = [m for m in ("tensorflow", "keras") if importlib.util.find_spec(m) is None]
    status["keras"] = (f"{' and '.join(missing)} not installed: pip install tensorflow-cpu"
                       if missing else None)
    return status


def peers_for(case, peers):
    """PyTorch's oneDNN switch only changes the float32 LSTM: skip the duplicate."""
    out = []
    for peer in peers:
        if peer == "torch-nodnn" and not (case.cell == "lstm" and case.dtype == "float32"):
            continue
        out.append(peer)
    return out


def record(case, impl, n_threads, timing=None, skip=None, ceiling=None, info=None):
    rec = dict(case=case.to_dict(), label=case.label, impl=impl,
               kind="peer" if is_peer(impl) else "fastseq", threads=n_threads,
               flops=flops(case))
    if info:
        rec["info"] = info
    if skip is not None:
        rec["skip"] = skip
        return rec
    rec.update(median_s=timing["median"], min_s=timing["min"], rounds=timing["rounds"],
               first_s=timing["first"])
    rec["gflops"] = rec["flops"] / timing["median"] / 1e9
    if ceiling:
        top = ceiling.get((case.dtype, n_threads))
        if top:
            rec["pct_ceiling"] = 100.0 * rec["gflops"] / top
    return rec


def run_cases(cases, impls, n_threads, ceiling=None, min_time=MIN_TIME, progress=None,
              keras=None):
    """Measure every case with every implementation; returns a list of records."""
    records = []
    own_keras = keras is None and "keras" in impls
    if own_keras:
        keras = KerasWorker(n_threads)
    try:
        for case in cases:
            for impl in (i for i in impls if not is_peer(i) or i in peers_for(case, impls)):
                rec = _measure_one(case, impl, n_threads, ceiling, min_time, keras)
                records.append(rec)
                if progress:
                    progress(_progress_line(rec))
    finally:
        if own_keras:
            keras.close()
    return records


def _measure_one(case, impl, n_threads, ceiling, min_time, keras):
    if impl == "keras":
        answer = keras.measure(case, min_time=min_time)
        if "skip" in answer:
            return record(case, impl, n_threads, skip=answer["skip"])
        return record(case, impl, n_threads, answer, ceiling=ceiling,
                      info=dict(keras.versions or {}, backend="keras"))
    try:
        runner = make_runner(impl, case, n_threads)
    except Unsupported as exc:
        return record(case, impl, n_threads, skip=str(exc))
    with runner.scope():
        timing = measure(runner.fn, min_time=min_time)
    return record(case, impl, n_threads, timing.to_dict(), ceiling=ceiling,
                  info=runner.info)


def _progress_line(rec):
    if "skip" in rec:
        return f"  {rec['label']:<36} {rec['impl']:<12} skipped: {rec['skip']}"
    pct = rec.get("pct_ceiling")
    return (f"  {rec['label']:<36} {rec['impl']:<12} {rec['median_s'] * 1e3:10.3f} ms "
            f"{rec['gflops']:8.2f} GFLOP/s" + (f" {pct:5.1f}%" if pct is not None else ""))


def machine_info(n_threads):
    import numba
    from .. import __version__
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = dict(date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                cpu=cpu, cores=_cores(), threads=n_threads, python=platform.python_version(),
                numpy=np.__version__, blas=blas_info(), numba=numba.__version__,
                fastseq=__version__, machine=platform.machine(), load_start=_load())
    from importlib import metadata
    try:                        # the version without paying for the import
        info["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pass
    return info


def _load():
    """1-minute load average: above the thread count, the machine was shared."""
    import os
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # pragma: no cover
        return None


def _cores():
    import os
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count()


def measure_ceiling(n_threads, n=2048, min_time=0.5):
    threads = sorted({1, n_threads})
    return gemm_ceiling(threads, n=n, min_time=min_time)


def timestamp():
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


__all__ = ["PEERS", "available_peers", "default_backends", "machine_info",
           "measure_ceiling", "run_cases"]
