"""Shared test configuration.

``FASTSEQ_TEST_BACKENDS`` (comma-separated) limits which engines the parity suites run
against; by default every engine that imports here, except the reference oracle itself.
"""
import os

import numpy as np
import pytest

from fastseq.backends import available_backends


def engine_backends():
    requested = os.environ.get("FASTSEQ_TEST_BACKENDS")
    if requested:
        return [b.strip() for b in requested.split(",") if b.strip()]
    return [b for b in available_backends() if b != "reference"]


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name and a per-run salt so
    inputs are new every run but a failure can be replayed with FASTSEQ_TEST_SEED."""
    salt = int(os.environ.get("FASTSEQ_TEST_SEED", np.random.SeedSequence().entropy % 2**32))
    seed = (abs(hash(request.node.nodeid)) + salt) % 2**32
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _split_small_work(monkeypatch):
    """Production code runs small recurrences and GEMMs on one thread (a pool thread's
    wake-up costs more than it saves); the tests' small shapes must still exercise the
    multi-chunk and row-block paths, so the thresholds go down to the test sizes."""
    from fastseq import layers
    from fastseq.backends import cython_cpu
    from fastseq.backends.numba_cpu import _loop as numba_loop
    monkeypatch.setattr(cython_cpu, "MIN_PARALLEL_MACS", 0)
    monkeypatch.setattr(numba_loop, "MIN_PARALLEL_MACS", 0)
    monkeypatch.setattr(layers, "PARALLEL_GEMM_MIN", 1 << 18)
    monkeypatch.setattr(layers, "TEAM_GEMM_MIN", 1 << 14)
