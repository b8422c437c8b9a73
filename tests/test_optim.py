"""Optimizers against the textbook update rules (and PyTorch / scikit-learn when present)."""
import math

import numpy as np
import pytest

from fastseq.optim import (SGD, Adam, Optimizer, RMSProp, add_l2_and_norms, clip_grad_norm,
                           make_optimizer)

from compare import assert_close


def _reference_run(kind, p0, grads, lr, decay, **h):
    """Plain per-formula loops, one parameter at a time (float64)."""
    p = p0.astype(np.float64).copy()
    state = [np.zeros_like(p), np.zeros_like(p)]
    for t, g in enumerate(grads):
        lr_t = lr / (1 + decay * t)
        for i in range(p.size):
            if kind == "sgd":
                v = h["momentum"] * state[0][i] - lr_t * g[i]
                state[0][i] = v
                p[i] += (h["momentum"] * v - lr_t * g[i]) if h["nesterov"] else v
            elif kind == "rmsprop":
                s = h["rho"] * state[0][i] + (1 - h["rho"]) * g[i] ** 2
                state[0][i] = s
                p[i] -= lr_t * g[i] / (math.sqrt(s) + h["epsilon"])
            else:
                m = h["beta_1"] * state[0][i] + (1 - h["beta_1"]) * g[i]
                v = h["beta_2"] * state[1][i] + (1 - h["beta_2"]) * g[i] ** 2
                state[0][i], state[1][i] = m, v
                m_hat = m / (1 - h["beta_1"] ** (t + 1))
                v_hat = v / (1 - h["beta_2"] ** (t + 1))
                p[i] -= lr_t * m_hat / (math.sqrt(v_hat) + h["epsilon"])
    return p


CASES = [
    ("sgd", dict(momentum=0.9, nesterov=True)),
    ("sgd", dict(momentum=0.5, nesterov=False)),
    ("sgd", dict(momentum=0.0, nesterov=False)),
    ("rmsprop", dict(rho=0.9, epsilon=1e-7)),
    ("adam", dict(beta_1=0.9, beta_2=0.999, epsilon=1e-8)),
    ("adam", dict(beta_1=0.5, beta_2=0.9, epsilon=1e-3)),
]


@pytest.mark.parametrize("kind,hyper", CASES)
@pytest.mark.parametrize("decay", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_updates_match_the_textbook_rules(rng, kind, hyper, decay, dtype):
    n = 7
    p0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) for _ in range(5)]
    opt = make_optimizer(kind, n, dtype=dtype, learning_rate=0.05, decay=decay, **hyper)
    p = p0.astype(dtype)
    for g in grads:
        opt.step(p, g.astype(dtype))
    expected = _reference_run(kind, p0, grads, 0.05, decay, **hyper)
    assert_close(p, expected, 1e-12 if dtype == np.float64 else 2e-6, kind)
    assert opt.t == 5


@pytest.mark.parametrize("kind", ["adam", "rmsprop", "sgd"])
def test_matches_pytorch(rng, kind):
    torch = pytest.importorskip("torch")
    n = 11
    p0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) for _ in range(6)]
    tp = torch.tensor(p0.copy(), requires_grad=True)
    if kind == "adam":
        topt = torch.optim.Adam([tp], lr=0.01, betas=(0.8, 0.99), eps=1e-6)
        opt = Adam(n, np.float64, learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    elif kind == "rmsprop":
        topt = torch.optim.RMSprop([tp], lr=0.01, alpha=0.9, eps=1e-6)
        opt = RMSProp(n, np.float64, learning_rate=0.01, rho=0.9, epsilon=1e-6)
    else:  # plain momentum (PyTorch's Nesterov form differs from scikit-learn's)
        topt = torch.optim.SGD([tp], lr=0.01, momentum=0.9)
        opt = SGD(n, np.float64, learning_rate=0.01, momentum=0.9, nesterov=False)
    p = p0.copy()
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
        opt.step(p, g)
    assert_close(p, tp.detach().numpy(), 1e-12, kind)


def test_sgd_matches_scikit_learn_nesterov(rng):
    from sklearn.neural_network._stochastic_optimizers import SGDOptimizer
    n = 6
    p0 = rng.standard_normal(n)
    grads = [rng.standard_normal(n) for _ in range(4)]
    ref = [p0.copy()]
    sk = SGDOptimizer(ref, learning_rate_init=0.1, lr_schedule="constant", momentum=0.9,
                      nesterov=True)
    opt = SGD(n, np.float64, learning_rate=0.1, momentum=0.9, nesterov=True)
    p = p0.copy()
    for g in grads:
        sk.update_params(ref, [g])
        opt.step(p, g)
    assert_close(p, ref[0], 1e-13, "sgd")


@pytest.mark.parametrize("kind", ["adam", "sgd", "rmsprop"])
def test_state_round_trip_continues_identically(rng, kind):
    n = 5
    p = rng.standard_normal(n)
    grads = [rng.standard_normal(n) for _ in range(4)]
    a = make_optimizer(kind, n, dtype=np.float64, learning_rate=0.1, decay=0.01)
    pa = p.copy()
    for g in grads[:2]:
        a.step(pa, g)
    b = Optimizer.from_state(a.get_state())
    pb = pa.copy()
    for g in grads[2:]:
        a.step(pa, g)
        b.step(pb, g)
    np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("kind", ["adam", "sgd", "rmsprop"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_copies_and_hand_over(rng, kind, dtype):
    """get_state() copies the buffers, get_state(copy=False) hands over the optimizer's
    own arrays (for an optimizer stepped no more), and from_state() never writes to the
    state it starts from."""
    n = 7
    a = make_optimizer(kind, n, dtype=dtype, learning_rate=0.1)
    p = rng.standard_normal(n).astype(dtype)
    a.step(p, rng.standard_normal(n).astype(dtype))
    copied, own = a.get_state(), a.get_state(copy=False)
    for name, buf in own["buffers"].items():
        assert buf is getattr(a, name)
        assert copied["buffers"][name] is not buf
        np.testing.assert_array_equal(copied["buffers"][name], buf)
    saved = {k: v.copy() for k, v in own["buffers"].items()}
    b = Optimizer.from_state(own)
    assert b.t == a.t and all(getattr(b, k).dtype == dtype for k in saved)
    b.step(p, rng.standard_normal(n).astype(dtype))
    for name, buf in own["buffers"].items():
        np.testing.assert_array_equal(buf, saved[name])
        assert not np.array_equal(getattr(b, name), buf)


def test_clip_grad_norm(rng):
    g = rng.standard_normal(10)
    norm = np.linalg.norm(g)
    g2 = g.copy()
    assert abs(clip_grad_norm(g2, norm / 2) - norm) < 1e-12
    assert abs(np.linalg.norm(g2) - norm / 2) < 1e-9
    np.testing.assert_allclose(g2, g / 2, rtol=1e-9)
    g3 = g.copy()
    clip_grad_norm(g3, norm * 2)
    np.testing.assert_array_equal(g3, g)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="solver"):
        make_optimizer("lbfgs", 3)
    with pytest.raises(ValueError, match="learning_rate"):
        Adam(3, learning_rate=0)
    with pytest.raises(ValueError, match="momentum"):
        SGD(3, momentum=1.5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_l2_and_norms(rng, dtype):
    p = rng.standard_normal(33).astype(dtype)
    g = rng.standard_normal(33).astype(dtype)
    mask = (rng.random(33) > 0.3).astype(dtype)
    expected = g.astype(np.float64) + 0.7 * mask * p
    g2 = g.copy()
    grad_sq, weight_sq = add_l2_and_norms(g2, p, mask, 0.7)
    assert_close(g2, expected, 1e-6 if dtype == np.float32 else 1e-14, "grad")
    assert abs(grad_sq - expected @ expected) < 1e-5 * (expected @ expected)
    w = mask.astype(np.float64) * p
    assert abs(weight_sq - w @ w) < 1e-5 * (w @ w)


@pytest.mark.parametrize("kind", ["adam", "sgd", "rmsprop"])
def test_scale_equals_scaled_gradient(rng, kind):
    p0, g = rng.standard_normal(9), rng.standard_normal(9)
    a = make_optimizer(kind, 9, dtype=np.float64, learning_rate=0.1)
    b = make_optimizer(kind, 9, dtype=np.float64, learning_rate=0.1)
    pa, pb = p0.copy(), p0.copy()
    a.step(pa, g, scale=0.25)
    b.step(pb, 0.25 * g)
    assert_close(pa, pb, 1e-14, kind)
    with pytest.raises(ValueError, match="float64 arrays"):
        a.step(pa.astype(np.float32), g.astype(np.float32))


@pytest.mark.parametrize("kind", ["adam", "sgd", "rmsprop"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_update_gives_the_same_bits(rng, kind, dtype, monkeypatch):
    """A vector updated in blocks on several threads: the same parameters, buffers, backup
    and finiteness report as one pass (element-wise rule), including a non-finite
    gradient in the last block."""
    from fastseq import optim
    monkeypatch.setattr(optim, "PARALLEL_MIN", 8)
    P = 101
    p0 = rng.standard_normal(P).astype(dtype)
    grads = [rng.standard_normal(P).astype(dtype) for _ in range(3)]
    grads[2][-1] = np.inf
    results = []
    for n_threads in (1, 2, 3):
        opt = make_optimizer(kind, P, dtype=dtype, learning_rate=0.05)
        p, backup, oks = p0.copy(), np.empty(P, dtype), []
        for g in grads:
            oks.append(opt.step(p, g, 0.5, backup=backup, n_threads=n_threads))
        results.append((p, backup, oks, opt.get_state()["buffers"]))
    for p, backup, oks, buffers in results[1:]:
        np.testing.assert_array_equal(p, results[0][0])
        np.testing.assert_array_equal(backup, results[0][1])
        assert oks == results[0][2] == [(True, True), (True, True), (False, False)]
        for name, value in buffers.items():
            np.testing.assert_array_equal(value, results[0][3][name])
