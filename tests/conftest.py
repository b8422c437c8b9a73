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
def _split_small_batches(monkeypatch):
    """The engines keep a small batch on one thread when the per-step GEMMs are too small to
    gain from splitting (``MIN_CHUNK_MACS``); the tests' shapes are all that small, so the
    threshold is lifted here and every multi-thread test really runs several chunks."""
    try:
        from fastseq.backends.numba_cpu import _loop
    except ImportError:        # pragma: no cover - numba missing
        return
    monkeypatch.setattr(_loop, "MIN_CHUNK_MACS", 0)
