"""Peak memory of one training step against the least it could need.

Measured in a fresh process per (implementation, case) from the kernel's resident-set
accounting, not with ``tracemalloc``: tracemalloc sees NumPy's allocations but not
Numba's (NRT allocates with its own ``malloc``), nor PyTorch's, nor anything a compiled
extension allocates, so it would flatter exactly the engines under test. The procedure:

1. import, then run the same cell once at a tiny size (JIT compilation, lazy imports);
2. ``gc.collect()``, ``malloc_trim(0)``, then reset the high-water mark by writing ``5``
   to ``/proc/self/clear_refs`` and read the baseline ``VmRSS``;
3. allocate parameters, input and output gradient, run one forward + backward;
4. peak = ``VmHWM - baseline``: everything resident at the worst moment, the inputs
   included, as the minimum (:func:`fastseq.benchmarking.cases.min_train_bytes`) counts them.

Linux only (``/proc``); elsewhere the measurement is skipped with a message.
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys

from .cases import Case, min_train_bytes


def _status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _settle():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _measure_here(impl, case, n_threads):
    """Runs in the child: returns the peak bytes of one training step."""
    from dataclasses import replace

    from .runners import make_runner
    tiny = replace(case, B=2, T=2, I=3, H=3)
    runner = make_runner(impl, tiny, n_threads)
    with runner.scope():
        runner.fn()
    del runner
    _settle()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    baseline = _status_kib("VmRSS")
    runner = make_runner(impl, case, n_threads)      # parameters, x, dout: counted
    with runner.scope():
        runner.fn()
    peak = _status_kib("VmHWM")
    return (peak - baseline) * 1024


def measure_memory(impl, case, n_threads, timeout=300):
    """Peak bytes of one training step of ``impl`` on ``case`` (a fresh process).

    Returns a dict ``peak``, ``minimum``, ``ratio`` or ``{"skip": reason}``.
    """
    if case.mode != "train":
        raise ValueError(f"memory is measured for mode='train', got {case.mode!r}")
    if not os.path.exists("/proc/self/clear_refs"):
        return {"skip": "peak memory needs Linux /proc (clear_refs, VmHWM)"}
    env = dict(os.environ, OMP_NUM_THREADS=str(n_threads))
    request = json.dumps(dict(impl=impl, case=case.to_dict(), threads=n_threads))
    try:
        proc = subprocess.run([sys.executable, "-m", "fastseq.benchmarking.memory", request],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skip": f"memory measurement took over {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"skip": _failure("memory worker", proc)}
    answer = json.loads(lines[-1])
    if "skip" in answer:
        return answer
    minimum = min_train_bytes(case)
    return dict(peak=answer["peak"], minimum=minimum, ratio=answer["peak"] / minimum)


def _main(argv):
    from .runners import Unsupported
    request = json.loads(argv[0])
    try:
        peak = _measure_here(request["impl"], Case(**request["case"]), request["threads"])
        print(json.dumps({"peak": peak}))
    except Unsupported as exc:
        print(json.dumps({"skip": str(exc)}))


def _failure(what, proc):
    """One line saying how a worker process failed (exit code, last line of output)."""
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
    return f"{what} failed (exit code {proc.returncode}): {tail[0]}"


if __name__ == "__main__":
    _main(sys.argv[1:])
