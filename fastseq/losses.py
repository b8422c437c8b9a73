"""Losses: value and gradient with respect to the network's raw outputs, side by side.

Every loss is a **weighted mean over rows**: ``sum_i w_i * l_i / sum_i w_i``. A row is a
sequence (many-to-one) or one valid step of one sequence (many-to-many; padded steps are not
rows). With ``w = None`` all weights are 1. Weighting a row by an integer ``k`` is therefore
the same as repeating it ``k`` times, and a zero weight the same as removing it (what
scikit-learn's ``sample_weight`` means). Class weights and per-step weights are folded into
``w`` by the caller (:func:`row_weights`).

Shapes::

    outputs [N, K]   raw network outputs (logits for classification)
    y       [N] int class indices (cross-entropy)  or  [N, K] float targets (regression)
    w       [N] or None
    returns (loss: float, d_outputs [N, K])          # OUT
"""
from __future__ import annotations

import numpy as np


def _weights(w, n, dtype):
    if w is None:
        return None, float(n)
    w = np.asarray(w, dtype=dtype)
    if w.shape != (n,):
        raise ValueError(f"weights have shape {w.shape}; expected ({n},)")
    return w, float(w.sum(dtype=np.float64))


def softmax(logits):
    """Row-wise softmax, shifted by the row maximum (no overflow)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def log_softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return z


# ---------------------------------------------------------------- softmax cross-entropy
def softmax_cross_entropy(logits, y, w=None):
    """``l_i = -log softmax(logits_i)[y_i]``; ``d = (softmax - onehot) * w_i / sum w``."""
    N, K = logits.shape
    w, total = _weights(w, N, logits.dtype)
    if N == 0 or total <= 0:
        return 0.0, np.zeros_like(logits)
    rows = np.arange(N)
    logp = log_softmax(logits)
    nll = -logp[rows, y]
    d = np.exp(logp)
    d[rows, y] -= 1
    if w is None:
        loss = float(nll.sum(dtype=np.float64)) / total
        d *= logits.dtype.type(1.0 / total)
    else:
        loss = float(np.dot(w.astype(np.float64), nll)) / total
        d *= (w / logits.dtype.type(total))[:, None]
    return loss, d


# ---------------------------------------------------------------- regression losses
def _regression(residual, w, value, grad):
    """Shared weighting of a per-element regression loss averaged over the K outputs."""
    N, K = residual.shape
    w, total = _weights(w, N, residual.dtype)
    if N == 0 or total <= 0:
        return 0.0, np.zeros_like(residual)
    per_row = value(residual).mean(axis=1)
    d = grad(residual)
    scale = residual.dtype.type(1.0 / (total * K))
    if w is None:
        loss = float(per_row.sum(dtype=np.float64)) / total
        d *= scale
    else:
        loss = float(np.dot(w.astype(np.float64), per_row)) / total
        d *= (w * scale)[:, None]
    return loss, d


def mean_squared_error(pred, y, w=None):
    """``l_i = mean_k (pred_ik - y_ik)^2`` (PyTorch ``MSELoss``, Keras ``"mse"``)."""
    return _regression(pred - y, w, lambda r: r * r, lambda r: 2 * r)


def mean_absolute_error(pred, y, w=None):
    """``l_i = mean_k |pred_ik - y_ik|``; subgradient 0 at 0."""
    return _regression(pred - y, w, np.abs, np.sign)


def huber(pred, y, w=None, delta=1.0):
    """Huber loss: ``r^2/2`` for ``|r| <= delta``, ``delta * (|r| - delta/2)`` beyond."""
    def value(r):
        a = np.abs(r)
        return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))

    def grad(r):
        return np.clip(r, -delta, delta)
    return _regression(pred - y, w, value, grad)


REGRESSION_LOSSES = {
    "squared_error": mean_squared_error,
    "absolute_error": mean_absolute_error,
    "huber": huber,
}


# ---------------------------------------------------------------- weights and L2
def row_weights(n, sample_weight=None, class_weight_per_row=None, dtype=np.float64):
    """Combine sample weights and class weights (per row) into one ``[n]`` vector or None."""
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=dtype)
    if class_weight_per_row is not None:
        cw = np.asarray(class_weight_per_row, dtype=dtype)
        w = cw if w is None else w * cw
    return w


def l2_penalty(flat, mask, alpha, n):
    """``0.5 * alpha * ||mask * flat||^2 / n`` (scikit-learn's MLP convention: the penalty is
    divided by the batch's sample count, or by its total sample weight)."""
    if alpha == 0 or n <= 0:
        return 0.0
    masked = flat * mask
    return 0.5 * alpha * float(np.dot(masked, masked)) / n


def add_l2_grad(grad, flat, mask, alpha, n, scratch=None):
    """``grad += alpha / n * mask * flat`` in place (the gradient of :func:`l2_penalty`)."""
    if alpha == 0 or n <= 0:
        return grad
    if scratch is None:
        scratch = np.empty_like(flat)
    np.multiply(flat, mask, out=scratch)
    scratch *= flat.dtype.type(alpha / n)
    grad += scratch
    return grad
