"""A/B of Stream.step latency (LSTM, B=1, I=8, H=64): thread_time per call, interleaved repeats.

Usage: python tools/stream_step_ab.py before=/tmp/stream_old.py after=/tmp/stream_new.py
Each path is a copy of fastseq/stream.py, loaded as a module of the fastseq package, named after
its file (numba caches by file path and records the module name: never pass fastseq/stream.py
itself, whose cache entries would then point at the wrong module).
"""
import importlib.util
import os
import re
import sys
import time

import numpy as np

from fastseq import functional as fn


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m
    spec.loader.exec_module(m)
    return m


mods = {}
for arg in sys.argv[1:]:
    k, p = arg.split("=")
    if os.path.abspath(p).startswith(os.path.dirname(os.path.abspath(fn.__file__))):
        sys.exit(f"{p}: pass a copy outside the package")
    mods[k] = load(p, "fastseq._ab_" + re.sub(r"\W", "_", os.path.abspath(p)))
params = fn.init_params("lstm", 8, 64, random_state=0)
x = np.random.default_rng(0).standard_normal(8).astype(np.float32)
streams = {k: m.Stream("lstm", params) for k, m in mods.items()}
for s in streams.values():
    for _ in range(2000):
        s.step(x)
res = {k: [] for k in streams}
N = 20000
for rep in range(7):
    for k, s in streams.items():
        t0 = time.thread_time()
        for _ in range(N):
            s.step(x)
        res[k].append((time.thread_time() - t0) / N * 1e6)
for k, v in res.items():
    print(f"{k}: median {np.median(v):.3f} us/step  min {min(v):.3f}  all {[round(a,3) for a in v]}")
