"""Hardening of the training loop (issue 11): Ctrl-C during ``fit`` and diverging training.

The weights an interrupted or diverged fit must keep are observed independently: a wrapper
around ``Network.backward`` copies the network's flat buffer at the first batch of every
epoch (= the weights at the end of the previous epoch) and before every update.
"""
import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")

from fastseq.estimators import SequenceClassifier, SequenceRegressor
from fastseq.estimators.base import FitInterruptedWarning, TrainingDivergedError
from fastseq.network import Network

TINY = dict(units=3, backend="numba", n_jobs=1, tol=-np.inf)


def _data(rng, n=24, T=5, F=2):
    X = rng.standard_normal((n, T, F)).astype(np.float32)
    y = X[:, :, 0].sum(axis=1) + 0.1 * rng.standard_normal(n)
    return X, y


class _Spy:
    """Wraps Network.backward: snapshots of the weights seen at each call; raises ``exc``
    at call number ``raise_at`` (1-based)."""

    def __init__(self, monkeypatch, raise_at=None, exc=KeyboardInterrupt):
        self.calls = 0
        self.flats = []                       # the weights each batch's forward pass used
        self.raise_at = raise_at
        self.exc = exc
        original = Network.backward

        def backward(net, cache, d_out):
            self.calls += 1
            self.flats.append(net.flat.copy())
            if self.raise_at is not None and self.calls == self.raise_at:
                raise self.exc()
            return original(net, cache, d_out)

        monkeypatch.setattr(Network, "backward", backward)


def test_interrupt_keeps_last_completed_epoch(rng, monkeypatch):
    X, y = _data(rng)
    n_batches = 3                                       # 24 samples / batch_size 8
    spy = _Spy(monkeypatch, raise_at=2 * n_batches + 2)     # 2nd batch of epoch 3
    model = SequenceRegressor(max_iter=10, batch_size=8, random_state=0, **TINY)
    with pytest.warns(FitInterruptedWarning, match="2 completed epoch"):
        returned = model.fit(X, y)
    assert returned is model
    assert model.n_iter_ == 2 and len(model.history_) == 2 and len(model.loss_curve_) == 2
    assert [r["epoch"] for r in model.history_] == [1, 2]
    assert model.t_ == 2 * len(X)
    # the weights at the end of epoch 2 = those the first batch of epoch 3 read
    np.testing.assert_array_equal(model.flat_params_, spy.flats[2 * n_batches])
    assert not np.array_equal(model.flat_params_, spy.flats[-1])   # epoch 3 moved them
    pred = model.predict(X)
    assert pred.shape == (len(X),) and np.all(np.isfinite(pred))
    # same predictions as a network built from the expected weights
    net = Network(model.network_config_, flat=spy.flats[2 * n_batches].copy(),
                  backend="reference")
    expect = net.forward(np.ascontiguousarray(X.transpose(1, 0, 2)).astype(np.float64),
                         np.full(len(X), X.shape[1]), training=False)[:, 0]
    np.testing.assert_allclose(pred, expect, rtol=1e-4, atol=1e-5)
    # the model can go on training (warm start from the kept state)
    monkeypatch.undo()
    model.set_params(warm_start=True, max_iter=1)
    model.fit(X, y)
    assert model.n_iter_ == 3


def test_interrupt_with_early_stopping_keeps_best_weights(rng, monkeypatch):
    X = rng.standard_normal((40, 4, 2)).astype(np.float32)
    labels = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    n_train = 36                                       # validation_fraction 0.1 -> 4 held out
    n_batches = -(-n_train // 12)
    interrupt_epoch = 6
    spy = _Spy(monkeypatch, raise_at=(interrupt_epoch - 1) * n_batches + 1)
    model = SequenceClassifier(max_iter=50, batch_size=12, random_state=1,
                               early_stopping=True, n_iter_no_change=100,
                               learning_rate_init=0.05, **TINY)
    with pytest.warns(FitInterruptedWarning, match="best validation weights"):
        model.fit(X, labels)
    assert model.n_iter_ == interrupt_epoch - 1 == len(model.history_)
    assert len(model.validation_scores_) == interrupt_epoch - 1
    best_epoch = int(np.argmax(model.validation_scores_)) + 1      # first best, as fit keeps
    np.testing.assert_array_equal(model.flat_params_, spy.flats[best_epoch * n_batches])
    assert model.best_validation_score_ == max(model.validation_scores_)
    proba = model.predict_proba(X)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_interrupt_in_first_epoch_reraises(rng, monkeypatch):
    X, y = _data(rng)
    _Spy(monkeypatch, raise_at=2)
    model = SequenceRegressor(max_iter=5, batch_size=8, random_state=0, **TINY)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y)


def test_interrupt_during_partial_fit_restores_weights(rng, monkeypatch):
    X, y = _data(rng)
    model = SequenceRegressor(batch_size=8, random_state=0, **TINY).partial_fit(X, y)
    before = model.flat_params_.copy()
    history = list(model.history_)
    _Spy(monkeypatch, raise_at=2)                  # second batch of the next partial_fit
    with pytest.raises(KeyboardInterrupt):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(model.flat_params_, before)
    assert model.history_ == history and model.n_iter_ == 1
    monkeypatch.undo()
    model.partial_fit(X, y)                         # still usable
    assert model.n_iter_ == 2


# ---------------------------------------------------------------------------- divergence
def test_huge_learning_rate_raises_and_keeps_last_good_weights(rng, monkeypatch):
    X, y = _data(rng, n=32)
    spy = _Spy(monkeypatch)
    model = SequenceRegressor(solver="sgd", learning_rate_init=1e12, momentum=0.0,
                              max_iter=20, batch_size=8, random_state=0, alpha=0.0,
                              activation="relu", cell="rnn", **TINY)
    with pytest.raises(TrainingDivergedError, match=r"epoch \d+, batch \d+/4") as info:
        model.fit(X, y)
    msg = str(info.value)
    assert "learning_rate_init" in msg and "clip_norm" in msg
    assert isinstance(info.value, ValueError) and isinstance(info.value, FloatingPointError)
    flat = model.flat_params_
    assert np.all(np.isfinite(flat))
    # the bad update is the one whose result gave a non-finite loss (or non-finite weights):
    # the kept weights are those before it, the ones the last batch's backward pass read
    np.testing.assert_array_equal(flat, spy.flats[-1])
    assert len(model.history_) == model.n_iter_
    pred = model.predict(X)
    assert np.all(np.isfinite(pred))


def test_inputs_near_float32_max_raise_diverged(rng, monkeypatch):
    # finite inputs whose products overflow float32: the very first loss is inf
    X, y = _data(rng)
    params = dict(max_iter=3, batch_size=8, random_state=0, activation="relu", cell="rnn",
                  **TINY)
    model = SequenceRegressor(**params)
    with pytest.raises(TrainingDivergedError, match="loss is not finite .* epoch 1, batch 1/3"):
        model.fit(X * np.float32(1e30), y * 1e30)
    assert model.n_iter_ == 0 and model.history_ == []
    # nothing was updated: the weights are the initial ones of this random_state, observed
    # in a normal fit with the same seed
    spy = _Spy(monkeypatch)
    SequenceRegressor(**dict(params, max_iter=1)).fit(X, y)
    np.testing.assert_array_equal(model.flat_params_, spy.flats[0])
    assert np.all(np.isfinite(model.predict(X)))


def test_nonfinite_gradient_is_caught_before_the_update(rng, monkeypatch):
    X, y = _data(rng)
    original = Network.backward
    calls = {"n": 0}
    seen = []

    def backward(net, cache, d_out):
        calls["n"] += 1
        seen.append(net.flat.copy())
        grad = original(net, cache, d_out)
        if calls["n"] == 5:
            grad = grad.copy()
            grad[0] = np.nan
        return grad

    monkeypatch.setattr(Network, "backward", backward)
    model = SequenceRegressor(max_iter=4, batch_size=8, random_state=0, **TINY)
    with pytest.raises(TrainingDivergedError, match="gradient is not finite .* epoch 2, "
                                                    "batch 2/3"):
        model.fit(X, y)
    np.testing.assert_array_equal(model.flat_params_, seen[4])    # before the bad update
    assert model.n_iter_ == 1 and len(model.history_) == 1
    monkeypatch.undo()
    model.set_params(warm_start=True, max_iter=1)
    model.fit(X, y)                                # the kept state trains on
    assert model.n_iter_ == 2 and np.all(np.isfinite(model.predict(X)))
