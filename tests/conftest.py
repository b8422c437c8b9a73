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
