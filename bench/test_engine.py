"""The Numba engine against PyTorch on the six sizes of the engine issue's target table.

Forward + backward (a training step without the optimizer) of one float32 layer, through
``fastseq.layers`` for the engine (input projection and weight-gradient GEMMs included)
and ``nn.LSTM`` / ``nn.GRU`` for PyTorch, both with the same thread count
(``--bench-threads``, default: all CPUs available). Compare the two within one run:

    pytest bench/test_engine.py --benchmark-only --benchmark-group-by=param:engine_size
"""
from __future__ import annotations

import numpy as np
import pytest

from fastseq import layers

# (cell, B, T, I, H), PyTorch's time measured by the peers on this machine (ms), target
ENGINE_SIZES = [
    ("lstm", 16, 200, 8, 32),
    ("gru", 16, 200, 8, 32),
    ("lstm", 32, 100, 32, 64),
    ("lstm", 128, 28, 28, 128),
    ("lstm", 64, 50, 512, 512),
    ("gru", 64, 100, 128, 256),
]
ENGINE_IDS = [f"{c}-B{B}-T{T}-I{I}-H{H}" for c, B, T, I, H in ENGINE_SIZES]


def train_flops(cell, B, T, I, H):
    """Forward 2*B*(I+H)*G*H per step; training about three times that."""
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    return 3 * T * 2 * B * (I + H) * G * H


def _inputs(cell, B, T, I, H):
    rng = np.random.default_rng(0)
    params = layers.init_params(cell, I, H, 1, False, random_state=0, dtype=np.float32)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    d_out = rng.standard_normal((T, B, H)).astype(np.float32)
    return params, x, d_out


def _numba_runner(cell, B, T, I, H, n_threads):
    params, x, d_out = _inputs(cell, B, T, I, H)

    def run():
        out, _, _, cache = layers.stack_forward("numba", cell, params, x,
                                                n_threads=n_threads)
        layers.stack_backward(params, cache, d_out, n_threads=n_threads)
    return run


def _torch_runner(cell, B, T, I, H, n_threads):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(n_threads)
    params, x, d_out = _inputs(cell, B, T, I, H)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H)
    xt = torch.from_numpy(x).requires_grad_(True)
    dt = torch.from_numpy(d_out)

    def run():
        module.zero_grad(set_to_none=True)
        out, _ = module(xt)
        out.backward(dt)
    return run


@pytest.mark.parametrize("impl", ["numba", "torch"])
@pytest.mark.parametrize("engine_size", ENGINE_SIZES, ids=ENGINE_IDS)
def test_engine_train_step(benchmark, engine_size, impl, n_threads):
    cell, B, T, I, H = engine_size
    make = _numba_runner if impl == "numba" else _torch_runner
    run = make(cell, B, T, I, H, n_threads)
    for _ in range(2):          # JIT compile / warm caches, untimed
        run()
    rounds = 5 if H >= 256 else 30
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    flops = train_flops(cell, B, T, I, H)
    benchmark.extra_info.update(impl=impl, threads=n_threads, flops=flops,
                                gflops=flops / benchmark.stats.stats.median / 1e9)
