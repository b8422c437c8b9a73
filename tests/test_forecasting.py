"""Autoregressive forecasting and seeded generation: carried state vs re-running the whole
history with ``predict``, sliding windows vs ``predict`` on the window, stepper vs forward."""
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from compare import assert_close
from conftest import engine_backends
from fastseq.estimators import SequenceRegressor
from fastseq.forecasting import (ForecastMixin, NetworkStepper, forecast,
                                 generate_from_seed)
from fastseq.network import Network, make_config

BACKENDS = ["reference"] + engine_backends()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def series_windows(rng, n, T, F):
    """Windows of a noisy multichannel sine and the step after each: (n, T, F), (n, F)."""
    t0 = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    steps = np.arange(T + 1)[None, :, None] * 0.3
    phase = np.arange(F)[None, None, :]
    full = np.sin(t0 + steps + phase) + 0.01 * rng.standard_normal((n, T + 1, F))
    return full[:, :T], full[:, T]


def fitted(rng, F=2, y_1d=False, backend="reference", dtype="float64", **kw):
    X, y = series_windows(rng, 24, 6, F)
    params = dict(units=5, num_layers=2, max_iter=3, backend=backend, dtype=dtype,
                  random_state=int(rng.integers(1000)), head=(4,))
    params.update(kw)
    return SequenceRegressor(**params).fit(X, y[:, 0] if y_1d else y)


def rtol_of(dtype):
    return 1e-10 if dtype == "float64" else 2e-5


def history_predict(est, history):
    """Reference: predict from the whole history, one sequence at a time."""
    return np.asarray(est.predict(history[None]), dtype=np.float64).reshape(-1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_stateful_forecast_equals_predict_on_the_growing_history(rng, backend, dtype):
    est = fitted(rng, backend=backend, dtype=dtype)
    X, _ = series_windows(rng, 3, int(rng.integers(1, 8)), 2)
    n_steps = 5
    got = est_forecast = forecast(est, X, n_steps)
    assert est_forecast.shape == (3, n_steps, 2)
    for i in range(3):
        history = X[i]
        for t in range(n_steps):
            expected = history_predict(est, history)
            assert_close(got[i, t], expected, rtol_of(dtype), f"seq {i} step {t}")
            history = np.vstack([history, expected[None]])    # feed the prediction back


def test_forecast_of_ragged_histories(rng):
    est = fitted(rng)
    X = [series_windows(rng, 1, int(L), 2)[0][0] for L in (5, 1, 3)]
    got = forecast(est, X, 4)
    for i, history in enumerate(X):
        for t in range(4):
            expected = history_predict(est, history)
            assert_close(got[i, t], expected, 1e-10, f"ragged seq {i} step {t}")
            history = np.vstack([history, expected[None]])


def test_windowed_forecast_reruns_the_last_t_steps(rng):
    est = fitted(rng)
    X, _ = series_windows(rng, 2, 4, 2)
    got = forecast(est, X, 6, stateful=False)
    for i in range(2):
        history = X[i]
        for t in range(6):
            expected = history_predict(est, history[-4:])     # only the last T = 4 steps
            assert_close(got[i, t], expected, 1e-10, f"window seq {i} step {t}")
            history = np.vstack([history, expected[None]])
    stateful = forecast(est, X, 6)
    assert_close(stateful[:, 0], got[:, 0], 1e-10, "first step is the same")


def test_univariate_model_returns_n_by_steps(rng):
    est = fitted(rng, F=1, y_1d=True)
    X, _ = series_windows(rng, 3, 5, 1)
    got = forecast(est, X, 4)
    assert got.shape == (3, 4)
    assert forecast(est, X, 0).shape == (3, 0)


def test_generate_from_a_single_vector(rng):
    est = fitted(rng)
    seed = rng.standard_normal(2)
    got = generate_from_seed(est, seed, 5)
    assert got.shape == (5, 2)
    assert_close(got, forecast(est, seed[None, None, :], 5)[0], 1e-12, "seeded")
    history = seed[None]
    for t in range(5):
        expected = history_predict(est, history)
        assert_close(got[t], expected, 1e-10, f"seeded step {t}")
        history = np.vstack([history, expected[None]])
    assert generate_from_seed(est, np.stack([seed, seed]), 3).shape == (2, 3, 2)


def test_feed_turns_predictions_into_inputs(rng):
    X, y = series_windows(rng, 20, 5, 2)
    est = SequenceRegressor(units=4, max_iter=2, backend="reference", dtype="float64",
                            random_state=0).fit(X, y[:, 0])        # 1 output, 2 features
    with pytest.raises(ValueError, match="cannot be fed back"):
        forecast(est, X[:2], 3)
    calls = []

    def feed(pred, t):
        calls.append(t)
        return np.hstack([pred, np.full_like(pred, 0.5)])          # known second channel
    got = forecast(est, X[:2], 3, feed=feed)
    assert got.shape == (2, 3) and calls == [1, 2]
    history = X[0]
    for t in range(3):
        expected = history_predict(est, history)
        assert got[0, t] == pytest.approx(expected[0], abs=1e-10)
        history = np.vstack([history, [[expected[0], 0.5]]])


def test_mixin_methods_and_errors(rng):
    assert issubclass(SequenceRegressor, ForecastMixin)
    X, y = series_windows(rng, 16, 4, 1)
    est = SequenceRegressor(units=3, max_iter=1, backend="reference", random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.forecast(X[:2], 3), forecast(est, X[:2], 3))
    assert est.generate_from_seed([0.1], 2).shape == (2, 1)
    with pytest.raises(ValueError, match="n_steps must be a non-negative int"):
        est.forecast(X, -1)
    with pytest.raises(ValueError, match="seed has shape"):
        est.generate_from_seed([0.1, 0.2], 2)
    bidir = SequenceRegressor(units=3, max_iter=1, bidirectional=True, backend="reference",
                              random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="bidirectional"):
        forecast(bidir, X[:1], 2)
    assert forecast(bidir, X[:1], 2, stateful=False).shape == (1, 2, 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_dense_stepper_equals_forward(rng, backend, cell):
    T, B, F = int(rng.integers(1, 9)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    cfg = make_config(n_features=F, cell=cell, units=int(rng.integers(1, 7)), num_layers=2,
                      n_outputs=3, output="many-to-many", head=[2],
                      head_activation="tanh")
    net = Network(cfg, dtype=np.float64, backend=backend).init_weights(rng)
    x = rng.standard_normal((T, B, F))
    stepper = NetworkStepper(net, batch_size=B)
    stepped = np.stack([stepper.head(stepper.step(x[t])) for t in range(T)])
    assert_close(stepped, net.forward(x), 1e-10, "dense stepper")
    h, c = stepper.state()
    h_n, c_n = net.recurrent_state(x)
    assert_close(h, h_n, 1e-10, "h")
    if c is not None:
        assert_close(c, c_n, 1e-10, "c")
    with pytest.raises(ValueError, match="x_t has shape"):
        stepper.step(np.zeros((B, F + 1)))
