"""fastseq._malloc: fixed glibc thresholds stop the page faults that a process started with
MALLOC_TRIM_THRESHOLD_ (as dask's nanny starts its workers) takes on every training batch.

The fault counts come from a fresh interpreter (so this process's allocator is left alone),
started with the nanny's variable; counts, not timings, are compared."""
import json
import os
import subprocess
import sys

import pytest

from fastseq import _malloc

_CHILD = r"""
import json, resource, sys, warnings
import numpy as np
from fastseq import _malloc
from fastseq.estimators import SequenceClassifier
rng = np.random.default_rng(0)
X = rng.normal(size=(256, 20, 4)).astype(np.float32)       # [20, 32, 128] gate buffers
y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
model = SequenceClassifier(units=32, max_iter=1, batch_size=32, random_state=0, n_jobs=1)
faults = []
warnings.simplefilter("ignore")
for step in ("env", "set_thresholds"):
    if step == "set_thresholds":
        applied = _malloc.set_thresholds()
    model.fit(X, y)                                    # warm: kernels loaded, heap grown
    counts = []
    for _ in range(2):     # the better of two: a one-off burst is not a per-batch fault
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model.fit(X, y)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    faults.append(min(counts))
print(json.dumps(dict(faults=faults, applied=applied, report=_malloc.report())))
"""


@pytest.mark.skipif(_malloc._mallopt() is None, reason="malloc is not glibc's")
def test_set_thresholds_stops_per_batch_page_faults():
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_="65536", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    with_env, fixed = result["faults"]
    assert result["applied"] is True
    assert result["report"]["env"]["MALLOC_TRIM_THRESHOLD_"] == "65536"
    assert result["report"]["fastseq_thresholds"] == {
        "mmap_threshold": _malloc.MMAP_THRESHOLD, "trim_threshold": _malloc.TRIM_THRESHOLD}
    assert with_env > 500, result          # fresh mmaps for every batch's large arrays
    assert fixed * 10 < with_env, result    # below one batch's share of the faults


@pytest.mark.parametrize("kwargs, name", [
    (dict(mmap_threshold=0), "mmap_threshold"), (dict(trim_threshold=2**31), "trim_threshold"),
    (dict(mmap_threshold=1.5), "mmap_threshold")])
def test_set_thresholds_refuses_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _malloc.set_thresholds(**kwargs)


def test_report_lists_only_set_variables(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    env = _malloc.report()["env"]
    assert env["MALLOC_TRIM_THRESHOLD_"] == "65536" and "MALLOC_MMAP_THRESHOLD_" not in env
