"""Losses against scikit-learn / SciPy formulas and central finite differences."""
import numpy as np
import pytest
from scipy.special import huber as scipy_huber
from sklearn.metrics import log_loss, mean_absolute_error as sk_mae, mean_squared_error as sk_mse

from fastseq.losses import (add_l2_grad, huber, l2_penalty, mean_absolute_error,
                            mean_squared_error, row_weights, softmax, softmax_cross_entropy)

from compare import assert_close


def _fd(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("N,K", [(1, 2), (7, 3), (5, 1)])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_value_and_gradient(rng, N, K, weighted):
    logits = rng.standard_normal((N, K)) * 3
    y = rng.integers(0, K, size=N)
    w = rng.uniform(0.1, 3, size=N) if weighted else None
    loss, d = softmax_cross_entropy(logits, y, w)
    expected = (0.0 if K == 1 else
                log_loss(y, softmax(logits.copy()), sample_weight=w, labels=np.arange(K)))
    assert abs(loss - expected) < 1e-12 * max(1, expected)
    g = _fd(lambda z: softmax_cross_entropy(z, y, w)[0], logits.copy())
    assert_close(d, g, 1e-8, "dlogits")


def test_integer_weights_equal_repetition(rng):
    logits = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, size=6)
    w = np.array([0, 1, 3, 2, 0, 1])
    rep = np.repeat(np.arange(6), w)
    l1, _ = softmax_cross_entropy(logits, y, w)
    l2, _ = softmax_cross_entropy(logits[rep], y[rep])
    assert abs(l1 - l2) < 1e-12


def test_softmax_is_stable_for_huge_logits():
    p = softmax(np.array([[1e4, 0.0, -1e4]]))
    assert np.all(np.isfinite(p)) and abs(p.sum() - 1) < 1e-15
    loss, d = softmax_cross_entropy(np.array([[1e4, 0.0]]), np.array([1]))
    assert np.isfinite(loss) and np.all(np.isfinite(d))


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_regression_losses(rng, K, weighted):
    pred = rng.standard_normal((6, K)) * 2
    y = rng.standard_normal((6, K))
    w = rng.uniform(0.1, 2, size=6) if weighted else None
    loss, d = mean_squared_error(pred, y, w)
    assert abs(loss - sk_mse(y, pred, sample_weight=w)) < 1e-12
    assert_close(d, _fd(lambda p: mean_squared_error(p, y, w)[0], pred.copy()), 1e-8, "mse")
    loss, d = mean_absolute_error(pred, y, w)
    assert abs(loss - sk_mae(y, pred, sample_weight=w)) < 1e-12
    assert_close(d, _fd(lambda p: mean_absolute_error(p, y, w)[0], pred.copy()), 1e-6, "mae")
    loss, d = huber(pred, y, w, delta=0.7)
    per_row = scipy_huber(0.7, pred - y).mean(axis=1)
    assert abs(loss - np.average(per_row, weights=w)) < 1e-12
    assert_close(d, _fd(lambda p: huber(p, y, w, delta=0.7)[0], pred.copy()), 1e-6, "huber")


def test_zero_total_weight_gives_zero_gradient(rng):
    loss, d = softmax_cross_entropy(rng.standard_normal((3, 2)), np.array([0, 1, 0]),
                                    np.zeros(3))
    assert loss == 0.0 and not d.any()


def test_weight_shape_is_checked(rng):
    with pytest.raises(ValueError, match="weights have shape"):
        mean_squared_error(np.zeros((3, 1)), np.zeros((3, 1)), np.ones(4))


def test_l2_penalty_and_gradient(rng):
    flat = rng.standard_normal(10)
    mask = (rng.random(10) > 0.5).astype(float)
    g = np.zeros(10)
    add_l2_grad(g, flat, mask, alpha=0.3, n=4)
    fd = _fd(lambda p: l2_penalty(p, mask, 0.3, 4), flat.copy())
    assert_close(g, fd, 1e-8, "l2")
    assert l2_penalty(flat, mask, 0.0, 4) == 0.0


def test_row_weights_combines_sample_and_class_weights():
    w = row_weights(3, np.array([1.0, 2.0, 0.5]), np.array([2.0, 1.0, 4.0]))
    np.testing.assert_array_equal(w, [2.0, 2.0, 2.0])
    assert row_weights(3) is None
