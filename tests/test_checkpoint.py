"""Checkpoints during fit and resuming from one (issue 11).

The reference for a resumed fit is the same fit run without interruption (same parameters,
data, engine and thread count): after resuming, the weights, optimizer moments, generator
state, history and predictions must be *bitwise* equal to it. Shuffling, dropout and
recurrent dropout are on, so a resumed fit that drew one random number more or less, or
restored one moment vector wrong, fails.
"""
import os
import zipfile

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")

from conftest import engine_backends
from fastseq import load
from fastseq.estimators import SequenceClassifier, SequenceRegressor, SequenceTagger
from fastseq.estimators import checkpoint as ckpt_mod
from fastseq.estimators.base import FitInterruptedWarning
from fastseq.estimators.generator import TextGenerator
from fastseq.io import ModelFileError
from fastseq.network import Network

CPU_ENGINES = [b for b in engine_backends() if b in ("numba", "cython")]
RANDOM = dict(shuffle=True, dropout=0.3, recurrent_dropout=0.2, num_layers=2)
TEXT = ("the cat sat on the mat and the dog sat on the log while the cat ran to the dog "
        "and the mat was red and the log was brown and the dog ran to the cat again")


def _data(kind, rng, n=30, T=5, F=3):
    X = rng.standard_normal((n, T, F)).astype(np.float32)
    if kind == "classifier":
        return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)
    if kind == "regressor":
        return X, X[:, :, 1].mean(axis=1) + 0.1 * rng.standard_normal(n)
    # tagger: a ragged list, a label per step
    Xs = [X[i, :1 + i % T] for i in range(n)]
    return Xs, [(s[:, 0] > 0).astype(int) for s in Xs]


def _make(kind, backend, **kw):
    common = dict(units=4, batch_size=8, random_state=7, backend=backend, n_jobs=1, **RANDOM)
    common.update(kw)
    return {"classifier": SequenceClassifier, "regressor": SequenceRegressor,
            "tagger": SequenceTagger}[kind](**common)


def _assert_same_fit(a, b, X):
    """Bitwise equality of everything a fit leaves behind (timings aside)."""
    np.testing.assert_array_equal(a.flat_params_, b.flat_params_)
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_
    assert a.loss_curve_ == b.loss_curve_
    assert a.validation_scores_ == b.validation_scores_
    assert a.best_validation_score_ == b.best_validation_score_
    assert a.best_loss_ == b.best_loss_
    sa, sb = a._optimizer_state, b._optimizer_state
    assert sa["t"] == sb["t"] and sa["hyper"] == sb["hyper"]
    for name in sa["buffers"]:
        np.testing.assert_array_equal(sa["buffers"][name], sb["buffers"][name])
    assert a._rng_state == b._rng_state
    assert [r["epoch"] for r in a.history_] == [r["epoch"] for r in b.history_]
    assert [r["learning_rate"] for r in a.history_] == [r["learning_rate"] for r in b.history_]
    pa, pb = a.predict(X), b.predict(X)
    if isinstance(pa, list):
        for u, v in zip(pa, pb):
            np.testing.assert_array_equal(u, v)
    else:
        np.testing.assert_array_equal(pa, pb)


# ------------------------------------------------------------------ the key property
@pytest.mark.parametrize("backend", CPU_ENGINES)
@pytest.mark.parametrize("kind, early", [("classifier", True), ("regressor", False),
                                         ("tagger", True)])
def test_resume_equals_uninterrupted_fit(tmp_path, rng, backend, kind, early):
    X, y = _data(kind, rng)
    N, k = 6, 2
    extra = dict(early_stopping=early, n_iter_no_change=50, solver="adam",
                 learning_rate_decay=0.01)
    full = _make(kind, backend, max_iter=N, **extra).fit(X, y)
    path = tmp_path / "run.ckpt"
    first = _make(kind, backend, max_iter=k, checkpoint_path=path, **extra).fit(X, y)
    assert first.n_iter_ == k and path.exists()
    assert [p for p in os.listdir(tmp_path) if p != "run.ckpt"] == []    # no temp files
    resumed = _make(kind, backend, max_iter=N, **extra).fit(X, y, resume_from=path)
    _assert_same_fit(resumed, full, X)


@pytest.mark.parametrize("backend", CPU_ENGINES)
@pytest.mark.parametrize("solver", ["sgd", "rmsprop"])
def test_resume_other_solvers(tmp_path, rng, backend, solver):
    X, y = _data("regressor", rng)
    kw = dict(solver=solver, learning_rate_init=0.01, clip_norm=1.0, alpha=1e-3)
    full = _make("regressor", backend, max_iter=5, **kw).fit(X, y)
    path = tmp_path / "c.npz"
    _make("regressor", backend, max_iter=3, checkpoint_path=path, **kw).fit(X, y)
    resumed = _make("regressor", backend, max_iter=5, **kw).fit(X, y, resume_from=path)
    _assert_same_fit(resumed, full, X)


@pytest.mark.parametrize("backend", CPU_ENGINES)
def test_resume_with_two_threads(tmp_path, rng, backend):
    # same engine, same thread count: the reductions have a fixed order, so bits match too
    X = rng.standard_normal((64, 7, 3)).astype(np.float32)
    y = X[:, :, 0].sum(axis=1)
    kw = dict(units=16, batch_size=32, n_jobs=2)
    full = _make("regressor", backend, max_iter=4, **kw).fit(X, y)
    path = tmp_path / "t2.ckpt"
    _make("regressor", backend, max_iter=2, checkpoint_path=path, **kw).fit(X, y)
    resumed = _make("regressor", backend, max_iter=4, **kw).fit(X, y, resume_from=path)
    _assert_same_fit(resumed, full, X)


@pytest.mark.parametrize("window", [3, None])
def test_resume_text_generator(tmp_path, window):
    params = dict(level="word", window=window, bptt=3, embedding_dim=4, units=6,
                  batch_size=4, random_state=2, backend="numba", n_jobs=1, dropout=0.2,
                  early_stopping=True, validation_fraction=0.3, n_iter_no_change=50)
    full = TextGenerator(max_iter=5, **params).fit(TEXT)
    path = tmp_path / "gen.ckpt"
    TextGenerator(max_iter=2, checkpoint_path=path, **params).fit(TEXT)
    resumed = TextGenerator(max_iter=5, **params).fit(TEXT, resume_from=path)
    np.testing.assert_array_equal(resumed.flat_params_, full.flat_params_)
    assert resumed.loss_curve_ == full.loss_curve_
    assert resumed.validation_scores_ == full.validation_scores_
    assert resumed.vocabulary_.tokens_ == full.vocabulary_.tokens_
    assert resumed.generate("the cat", 6, random_state=0) == \
        full.generate("the cat", 6, random_state=0)
    with pytest.raises(ValueError, match="other data"):
        TextGenerator(max_iter=5, **params).fit(TEXT + " the cat", resume_from=path)


def test_resume_a_warm_start_fit_counts_its_own_epochs(tmp_path, rng):
    # a warm-start fit runs max_iter more epochs; its checkpoint remembers where it started
    X, y = _data("regressor", rng)
    full = _make("regressor", "numba", max_iter=2).fit(X, y)
    full.set_params(warm_start=True, max_iter=4)
    full.fit(X, y)
    assert full.n_iter_ == 6
    path = tmp_path / "w.ckpt"
    part = _make("regressor", "numba", max_iter=2).fit(X, y)
    part.set_params(warm_start=True, max_iter=1, checkpoint_path=path)
    part.fit(X, y)                                        # epoch 3; the fit started at 2
    resumed = _make("regressor", "numba", max_iter=4, warm_start=True).fit(
        X, y, resume_from=path)
    _assert_same_fit(resumed, full, X)


# ------------------------------------------------------------------ when files are written
def test_checkpoint_every_and_last_epoch(tmp_path, rng, monkeypatch):
    X, y = _data("regressor", rng)
    written = []
    original = ckpt_mod.write

    def spy(estimator, path, **kw):
        written.append((estimator.n_iter_, kw["converged"]))
        return original(estimator, path, **kw)

    monkeypatch.setattr(ckpt_mod, "write", spy)
    path = tmp_path / "e.ckpt"
    model = _make("regressor", "numba", max_iter=7, checkpoint_every=3,
                  checkpoint_path=str(path)).fit(X, y)
    assert written == [(3, False), (6, False), (7, False)]
    # the file is a model file too: the estimator at the end of the last epoch
    loaded = load(path)
    np.testing.assert_array_equal(loaded.flat_params_, model.flat_params_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # partial_fit writes none (each call is one epoch: save the model between calls)
    written.clear()
    model.partial_fit(X, y)
    assert written == []


def test_early_stop_marks_the_checkpoint_converged(tmp_path, rng):
    X, y = _data("regressor", rng)
    kw = dict(max_iter=40, tol=10.0, n_iter_no_change=2)     # no epoch improves by 10
    full = _make("regressor", "numba", **kw).fit(X, y)
    assert full.n_iter_ == 4 < 40          # epoch 1 sets best_loss_, 2-4 fail to improve
    path = tmp_path / "c.ckpt"
    _make("regressor", "numba", checkpoint_path=path, **kw).fit(X, y)
    assert ckpt_mod.read(path, full).converged
    resumed = _make("regressor", "numba", **kw).fit(X, y, resume_from=path)
    _assert_same_fit(resumed, full, X)                   # no epoch added after convergence


# ------------------------------------------------------------------ Ctrl-C, then resume
def _interrupt_at(monkeypatch, call):
    original = Network.backward
    count = {"n": 0}

    def backward(net, cache, d_out):
        count["n"] += 1
        if count["n"] == call:
            raise KeyboardInterrupt
        return original(net, cache, d_out)

    monkeypatch.setattr(Network, "backward", backward)


@pytest.mark.parametrize("backend", CPU_ENGINES)
def test_ctrl_c_then_resume(tmp_path, rng, monkeypatch, backend):
    X, y = _data("classifier", rng, n=40)
    kw = dict(max_iter=7, early_stopping=True, n_iter_no_change=50, learning_rate_init=0.02)
    full = _make("classifier", backend, **kw).fit(X, y)
    path = tmp_path / "int.ckpt"
    n_batches = 5                                  # 36 training sequences / batch_size 8
    _interrupt_at(monkeypatch, 4 * n_batches + 3)   # inside epoch 5
    model = _make("classifier", backend, checkpoint_path=path, checkpoint_every=100, **kw)
    with pytest.warns(FitInterruptedWarning, match="4 completed epoch"):
        model.fit(X, y)
    monkeypatch.undo()
    assert ckpt_mod.read(path, model).model.n_iter_ == 4     # written by the interrupt
    resumed = _make("classifier", backend, **kw).fit(X, y, resume_from=path)
    _assert_same_fit(resumed, full, X)
    # the interrupted estimator keeps the generator and optimizer of epoch 4 (its weights
    # are the best validation ones so far)
    saved = ckpt_mod.read(path, model).model
    assert model._rng_state == saved._rng_state
    assert model._optimizer_state["t"] == saved._optimizer_state["t"]


# ------------------------------------------------------------------ refusals
@pytest.fixture
def written(tmp_path, rng):
    X, y = _data("regressor", rng)
    path = tmp_path / "r.ckpt"
    _make("regressor", "numba", max_iter=2, checkpoint_path=path).fit(X, y)
    return path, X, y


def test_refuses_another_estimator_class(written):
    path, X, y = written
    with pytest.raises(ValueError, match="checkpoint of a SequenceRegressor, not of a "
                                         "SequenceClassifier"):
        _make("classifier", "numba", max_iter=4).fit(X, (y > 0).astype(int),
                                                     resume_from=path)


def test_refuses_another_architecture(written):
    path, X, y = written
    with pytest.raises(ValueError, match=r"another architecture: units=4 in the checkpoint, "
                                         r"5 here"):
        _make("regressor", "numba", max_iter=4, units=5).fit(X, y, resume_from=path)
    with pytest.raises(ValueError, match=r"another architecture: cell='lstm' in the "
                                         r"checkpoint, 'gru' here"):
        _make("regressor", "numba", max_iter=4, cell="gru").fit(X, y, resume_from=path)
    with pytest.raises(ValueError, match=r"another architecture: n_features=3 in the "
                                         r"checkpoint, 2 here"):
        _make("regressor", "numba", max_iter=4).fit(X[:, :, :2], y, resume_from=path)


def test_refuses_other_training_parameters_and_data(written):
    path, X, y = written
    with pytest.raises(ValueError, match=r"other parameters: learning_rate_init=0.001 there, "
                                         r"0.01 here"):
        _make("regressor", "numba", max_iter=4, learning_rate_init=0.01).fit(
            X, y, resume_from=path)
    with pytest.raises(ValueError, match="other data"):
        _make("regressor", "numba", max_iter=4).fit(X, y + 1, resume_from=path)
    with pytest.raises(ValueError, match="other data"):
        _make("regressor", "numba", max_iter=4).fit(X[::-1], y[::-1], resume_from=path)
    # max_iter, verbose, n_jobs and the checkpoint parameters may differ
    _make("regressor", "numba", max_iter=3, n_jobs=2, checkpoint_every=5).fit(
        X, y, resume_from=path)


def test_refuses_damaged_or_foreign_files(written, tmp_path):
    path, X, y = written
    model = _make("regressor", "numba", max_iter=4)
    raw = bytearray(path.read_bytes())
    # a flipped byte inside a stored array (zip CRC or the sha256 catches it)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("attr/_optimizer_state/buffers/m.npy")
    bad = tmp_path / "flipped.ckpt"
    pos = info.header_offset + 30 + len(info.filename) + info.compress_size - 3
    raw2 = bytearray(raw)
    raw2[pos] ^= 0xFF
    bad.write_bytes(bytes(raw2))
    with pytest.raises(ModelFileError):
        model.fit(X, y, resume_from=bad)
    trunc = tmp_path / "truncated.ckpt"
    trunc.write_bytes(bytes(raw[:len(raw) // 2]))
    with pytest.raises(ModelFileError, match="not a valid .npz"):
        model.fit(X, y, resume_from=trunc)
    plain = tmp_path / "model.npz"
    load(path).save(plain)                       # a model file, not a checkpoint
    with pytest.raises(ValueError, match="not a checkpoint"):
        model.fit(X, y, resume_from=plain)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        model.fit(X, y, resume_from=tmp_path / "missing.ckpt")
    assert not hasattr(model, "flat_params_")     # nothing was fitted by the refusals


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_checkpoint_every_is_validated(rng, bad):
    X, y = _data("regressor", rng)
    with pytest.raises(ValueError, match="checkpoint_every must be a positive int"):
        _make("regressor", "numba", max_iter=1, checkpoint_every=bad).fit(X, y)


def test_checkpoint_path_is_validated(rng):
    X, y = _data("regressor", rng)
    with pytest.raises(ValueError, match="checkpoint_path must be None or a path"):
        _make("regressor", "numba", max_iter=1, checkpoint_path=3).fit(X, y)


def test_checkpoint_survives_a_crash_during_the_write(written, monkeypatch, rng):
    """Atomic write: an error while the new file is written leaves the old one intact."""
    path, X, y = written
    before = path.read_bytes()

    def broken_savez(fh, **members):
        fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        _make("regressor", "numba", max_iter=1, checkpoint_path=path).fit(X, y)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == [path.name]
    assert ckpt_mod.read(path, _make("regressor", "numba")).model.n_iter_ == 2


def test_fuzzed_checkpoints_are_refused_cleanly(written, tmp_path):
    """Random byte flips, truncations and appended bytes: resuming raises ModelFileError
    (or, for a flip the file's checks cannot see, trains normally), never anything else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    path, X, y = written
    raw = path.read_bytes()
    outcomes = {}

    @settings(max_examples=int(os.environ.get("FASTSEQ_HYPOTHESIS_EXAMPLES", "50")),
              deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(pos=st.integers(0, len(raw) - 1), mask=st.integers(1, 255),
           mode=st.sampled_from(["flip", "truncate", "append"]))
    def check(pos, mask, mode):
        data = bytearray(raw)
        if mode == "flip":
            data[pos] ^= mask
        elif mode == "truncate":
            data = data[:pos]
        else:
            data += bytes([mask]) * (pos % 64 + 1)
        bad = tmp_path / "fuzz.ckpt"
        bad.write_bytes(bytes(data))
        try:
            _make("regressor", "numba", max_iter=3).fit(X, y, resume_from=bad)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except ModelFileError:
            outcomes["ModelFileError"] = outcomes.get("ModelFileError", 0) + 1

    check()
    assert outcomes.get("ModelFileError", 0) > 0
