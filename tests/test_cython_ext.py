"""The compiled Cython engine (fastseq_ext) against float64 NumPy and the reference oracle."""
import numpy as np
import pytest

from fastseq.backends import reference
from fastseq.cells import CellSpec
from fastseq_ext import activations

from compare import assert_close

# ---------------------------------------------------------------- activations


def test_tanh_float32_minimax_accuracy():
    x = np.linspace(-12.0, 12.0, 400_001).astype(np.float32)
    expected = np.tanh(x.astype(np.float64))
    y = activations.tanh(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    err = np.abs(y.astype(np.float64) - expected)
    # Eigen's rational minimax: ~2.4e-7 inside the range, 2.7e-7 at the clamp +-7.9053
    assert err.max() < 3.5e-7, err.max()
    assert np.all(np.abs(y) <= 1.0)
    # odd function, and exactly x for tiny |x|
    np.testing.assert_array_equal(activations.tanh(-x), -y)
    tiny = np.float32([1e-30, -3e-5, 2e-4])
    np.testing.assert_array_equal(activations.tanh(tiny), tiny)


def test_sigmoid_float32_accuracy(rng):
    x = np.concatenate([np.linspace(-30, 30, 200_001), rng.normal(0, 4, 1001)]).astype(
        np.float32)
    expected = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    y = activations.sigmoid(x)
    assert y.dtype == np.float32
    assert np.abs(y.astype(np.float64) - expected).max() < 2.5e-7
    assert np.all((y >= 0) & (y <= 1))


def test_float64_activations_are_libm(rng):
    x = rng.normal(0, 5, size=(7, 13))
    np.testing.assert_allclose(activations.tanh(x), np.tanh(x), rtol=1e-15, atol=0)
    # the sigmoid's 0.5 * t + 0.5 may be contracted to one FMA: last-bit differences
    np.testing.assert_allclose(activations.sigmoid(x), 0.5 * np.tanh(0.5 * x) + 0.5,
                               rtol=1e-15, atol=2e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_propagate_nan_and_saturate(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0], dtype=dtype)
    t, s = activations.tanh(x), activations.sigmoid(x)
    assert np.isnan(t[0]) and np.isnan(s[0])
    np.testing.assert_array_equal(t[1:], [1, -1, 0])
    np.testing.assert_array_equal(s[1:], [1, 0, 0.5])


def test_activations_reject_bad_dtype():
    with pytest.raises(TypeError, match="x must be a float32 or float64"):
        activations.tanh(np.arange(3))


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-6)])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("B,H", [(1, 1), (5, 7), (33, 16)])
def test_pointwise_lstm_cell_matches_reference(rng, dtype, rtol, activation, B, H):
    cell = CellSpec("lstm", activation)
    a_pre = rng.normal(0, 2, size=(B, 4 * H))
    c_prev = rng.normal(0, 1, size=(B, H))
    h_prev = rng.normal(0, 1, size=(B, H))
    # the reference step with R = 0, bh = 0 applies the cell to xw = a_pre alone
    h_ref, c_ref, g_ref, _ = reference._step_forward(
        cell, a_pre, np.zeros((H, 4 * H)), np.zeros(4 * H), h_prev, c_prev, 1.0)
    h, c, gates = activations.lstm_cell(a_pre.astype(dtype), c_prev.astype(dtype),
                                        activation, n_threads=2)
    assert h.dtype == dtype and c.dtype == dtype and gates.dtype == dtype
    assert_close(h, h_ref, rtol, "h")
    assert_close(c, c_ref, rtol, "c")
    assert_close(gates, g_ref, rtol, "gates")


def test_pointwise_lstm_cell_checks_shapes():
    with pytest.raises(ValueError, match="a_pre has shape"):
        activations.lstm_cell(np.zeros((2, 6), np.float32), np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match="c_prev has shape"):
        activations.lstm_cell(np.zeros((2, 8), np.float32), np.zeros((2, 3), np.float32))
