"""Streaming latency: one step of one stream (B=1), fastseq.stream.Stream vs PyTorch.

    pytest bench/test_bench_stream.py --benchmark-only

Every implementation advances a stateful single-layer model by one time step per call and
keeps its state between calls, as a streaming application does:

* ``fastseq``        ``Stream.step(x_t)`` (one compiled nogil kernel call per step)
* ``torch-cell``     ``nn.LSTMCell`` / ``nn.GRUCell`` under ``torch.no_grad()``
* ``torch-module``   ``nn.LSTM`` / ``nn.GRU`` on a length-1 sequence, state carried

Timing: ``benchmark.pedantic``, 9 rounds of many calls (2000 for fastseq, fewer for the
slower peers); the best round's time per call (µs per step) is in ``extra_info["us_per_step"]`` and the summary. The target (issue 8) is ≤ 5 µs per
step for B=1, H=64 LSTM; compare implementations within one run only (shared machine).
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from fastseq import functional as F
from fastseq._config import default_threads
from fastseq.stream import Stream

# PyTorch's intra-op threads: FASTSEQ_BENCH_TORCH_THREADS, default all CPUs (as in DESIGN.md
# section 7); a B=1 step has nothing to split, and with 1 thread CPU time is exact
THREADS = int(os.environ.get("FASTSEQ_BENCH_TORCH_THREADS", "0")) or default_threads()
CALLS = {"fastseq": 2000, "torch-cell": 300, "torch-module": 100}
SIZES = [("lstm", 64, 64), ("gru", 64, 64), ("lstm", 8, 64), ("lstm", 256, 256)]


def _fastseq(cell, I, H, calls):
    stream = Stream(cell, F.init_params(cell, I, H, random_state=0))
    x = np.random.default_rng(0).normal(size=I).astype(np.float32)
    stream.step(x)                                # compile / warm up outside the timing

    def run():
        for _ in range(calls):
            stream.step(x)
    return run


def _torch(kind, cell, I, H, calls):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(THREADS)
    x = torch.randn(1, I)
    if kind == "torch-cell":
        module = (torch.nn.LSTMCell if cell == "lstm" else torch.nn.GRUCell)(I, H)
        state = [(torch.zeros(1, H), torch.zeros(1, H)) if cell == "lstm"
                 else torch.zeros(1, H)]

        def run():
            with torch.no_grad():
                for _ in range(calls):
                    state[0] = module(x, state[0])
    else:
        module = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H)
        xs = x[None]
        state = [None]

        def run():
            with torch.no_grad():
                for _ in range(calls):
                    _, state[0] = module(xs, state[0])
    run()
    return run


def _thread_cpu(run):
    start = time.thread_time()
    run()
    return time.thread_time() - start


@pytest.mark.parametrize("impl", ["fastseq", "torch-cell", "torch-module"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{c}-I{i}-H{h}" for c, i, h in SIZES])
def test_stream_step_latency(benchmark, impl, size):
    cell, I, H = size
    calls = CALLS[impl]
    run = (_fastseq(cell, I, H, calls) if impl == "fastseq"
           else _torch(impl, cell, I, H, calls))
    benchmark.group = f"stream step B=1 {cell} I={I} H={H}"
    benchmark.pedantic(run, rounds=9, iterations=1, warmup_rounds=1)
    us = benchmark.stats.stats.min / calls * 1e6
    # CPU time of this thread: what the step costs when the (shared) machine is busy and
    # the process is descheduled part of the time; exact only for single-threaded peers
    cpu = min(_thread_cpu(run) for _ in range(5)) / calls * 1e6
    benchmark.extra_info.update(us_per_step=round(us, 3), cpu_us_per_step=round(cpu, 3),
                                calls_per_round=calls,
                                torch_threads=THREADS, cell=cell, I=I, H=H, B=1)
