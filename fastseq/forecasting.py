"""One-to-many: advance a fitted network step by step, carrying its recurrent state.

:class:`NetworkStepper` runs a unidirectional :class:`~fastseq.network.Network` one time step
at a time through the backend's ``step()`` (one call per layer), keeping ``h`` (and ``c``)
between calls, so producing ``n`` new steps costs ``n`` steps, not ``n`` re-runs of a growing
prefix. A prompt / history is absorbed in one batched forward pass (``prime``).

:func:`forecast` is autoregressive forecasting with a fitted ``SequenceRegressor``: the model
reads the history ``X``, predicts the next step, and its prediction is fed back as the next
input. :func:`generate_from_seed` is one-to-many generation from a single input vector.
:class:`ForecastMixin` puts both on an estimator (``SequenceRegressor``).

Shapes (time-major inside, as the engine works)::

    x_t      [B, F] float (dense input)  or  [B] int (token ids)
    h, c     [L, B, H]                   state carried between steps
    features [B, H]                      top layer's new hidden state (what the head reads)
    outputs  [B, K] float64              head outputs (logits / regression values)
"""
from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._config import resolve_threads
from ._threads import blas_threads
from ._transpose import transposed
from .backends import get_backend
from .layers import _matmul
from .network import _activate

PROJ_TABLE_BYTES = 64 * 2**20     # largest first-layer projection table kept per stepper


class NetworkStepper:
    """Step a unidirectional network one time step at a time, carrying its state.

    Parameters
    ----------
    net : Network (``bidirectional=False``)
    batch_size : int, default=1   number of independent streams

    The dense head runs in float64, exactly as :meth:`Network.forward` does at inference, so
    ``outputs`` after stepping through a sequence equal the network's outputs on it.
    """

    def __init__(self, net, batch_size=1):
        if net.D != 1:
            raise ValueError("a bidirectional network reads the whole sequence and cannot be "
                             "stepped; use a unidirectional model for generation")
        self.net = net
        self.engine = get_backend(net.backend)
        self.cell = net.cell
        self.L = net.config["num_layers"]
        self.H = net.H
        self.dtype = net.dtype
        p = net.params
        # per layer: W_ih.T [I, G*H], b_ih, R = W_hh.T [H, G*H] (both contiguous once:
        # every step then streams them row after row), b_hh
        self.layers = [(transposed(p[f"rnn.weight_ih_l{k}"]), p[f"rnn.bias_ih_l{k}"],
                        transposed(p[f"rnn.weight_hh_l{k}"]), p[f"rnn.bias_hh_l{k}"])
                       for k in range(self.L)]
        # the backend's own GEMM for the input projections, if it has one (a one-row
        # product streams the weight in order there: 0.06 ms for [512, 2048] float32)
        self.gemm = getattr(self.engine, "matmul_into", None)
        self.head_params = [(p[f"fc.{j}.weight"].astype(np.float64),
                             p[f"fc.{j}.bias"].astype(np.float64)) for j in range(net.n_fc)]
        self.embedding = p["embedding.weight"] if net.tokens else None
        # token input: the first layer's input projection of every id, E @ W_ih0.T + b_ih0
        # [V, G*H], so a step looks it up instead of multiplying (when it is small enough)
        self.proj0 = None
        if net.tokens:
            WT, b = self.layers[0][0], self.layers[0][1]
            if self.embedding.shape[0] * WT.shape[1] * self.dtype.itemsize <= PROJ_TABLE_BYTES:
                self.proj0 = self.embedding @ WT
                self.proj0 += b
        self.reset(batch_size)

    def reset(self, batch_size=None):
        """Zero state for ``batch_size`` streams (default: the current count)."""
        B = self.h.shape[1] if batch_size is None else int(batch_size)
        if B < 0:
            raise ValueError(f"batch_size must be >= 0, got {batch_size!r}")
        self.h = np.zeros((self.L, B, self.H), dtype=self.dtype)
        self.c = np.zeros_like(self.h) if self.cell.has_cell_state else None
        return self

    @property
    def batch_size(self):
        return self.h.shape[1]

    def _input(self, x_t):
        B = self.batch_size
        if self.embedding is not None:
            ids = np.asarray(x_t)
            if ids.shape != (B,) or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"x_t must be ({B},) integer token ids, got {ids.dtype} "
                                 f"{ids.shape}")
            if B and (ids.min() < 0 or ids.max() >= self.embedding.shape[0]):
                raise ValueError(f"token ids must be in [0, {self.embedding.shape[0]})")
            return ids
        x_t = np.asarray(x_t, dtype=self.dtype)
        if x_t.shape != (B, self.net.input_size):
            raise ValueError(f"x_t has shape {x_t.shape}; expected ({B}, "
                             f"{self.net.input_size})")
        return x_t

    # x: [B, I] -> OUT [B, G*H]
    def _project(self, k, x):
        """Layer ``k``'s input projection ``x @ W_ih.T + b_ih`` (on the backend's GEMM when
        the operands suit it: :func:`fastseq.layers._matmul`)."""
        WT, b = self.layers[k][0], self.layers[k][1]
        xw = _matmul(x, WT, 1, self.gemm)
        xw += b
        return xw

    def _first_projection(self, x_t):
        """``xw`` of the first layer, ``[B, G*H]``."""
        if self.embedding is not None:
            if self.proj0 is not None:
                return self.proj0[x_t]
            x_t = self.embedding[x_t]
        return self._project(0, x_t)

    def step(self, x_t):
        """Feed one step ``x_t`` to every stream; returns the top layer's ``[B, H]`` state."""
        xw = self._first_projection(self._input(x_t))   # [B, G*H]
        for k, (_, _, R, bh) in enumerate(self.layers):
            if k:
                xw = self._project(k, self.h[k - 1])
            h, c = self.engine.step(self.cell, xw, R, bh, self.h[k],
                                    None if self.c is None else self.c[k])
            self.h[k] = h
            if self.c is not None:
                self.c[k] = c
        return self.h[-1]

    def prime(self, x, lengths=None):
        """Absorb whole sequences ``x [T, B, F]`` (or ``[T, B]`` ids) in one batched forward
        pass from the current state; afterwards the state is each stream's state after its
        last valid step. Returns the top layer's ``[B, H]`` state."""
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[1] != self.batch_size:
            raise ValueError(f"x has shape {x.shape}; expected (T, {self.batch_size}, ...) "
                             "time-major")
        if x.shape[0] == 0:
            return self.h[-1]
        h_n, c_n = self.net.recurrent_state(x, lengths, h0=self.h, c0=self.c)
        self.h = np.ascontiguousarray(h_n, dtype=self.dtype)
        if self.c is not None:
            self.c = np.ascontiguousarray(c_n, dtype=self.dtype)
        return self.h[-1]

    def head(self, features):
        """Dense head on ``[B, H]`` features -> ``[B, K]`` float64 outputs."""
        a = np.asarray(features, dtype=np.float64)
        last = len(self.head_params) - 1
        for j, (W, b) in enumerate(self.head_params):
            a = a @ W.T
            a += b
            if j < last:
                a = _activate(self.net.config["head_activation"], a)
        return a

    def state(self):
        """Copies of ``(h, c)`` (``c`` None except for the LSTM), ``[L, B, H]``."""
        return self.h.copy(), None if self.c is None else self.c.copy()

    def set_state(self, h, c=None):
        h = np.asarray(h, dtype=self.dtype)
        if h.ndim != 3 or h.shape[0] != self.L or h.shape[2] != self.H:
            raise ValueError(f"h has shape {h.shape}; expected ({self.L}, batch, {self.H})")
        self.h = np.array(h)
        if self.cell.has_cell_state:
            c = np.zeros_like(self.h) if c is None else np.asarray(c, dtype=self.dtype)
            if c.shape != self.h.shape:
                raise ValueError(f"c has shape {c.shape}; expected {self.h.shape}")
            self.c = np.array(c)
        return self


# ---------------------------------------------------------------- autoregressive forecasting
def _check_regressor(estimator):
    check_is_fitted(estimator, "flat_params_")
    if estimator.network_config_["output"] != "many-to-one" or \
            estimator.network_config_["input"] != "dense":
        raise ValueError("forecast needs a many-to-one regressor on dense input (a fitted "
                         "SequenceRegressor)")


def _check_n_steps(n_steps):
    if isinstance(n_steps, (bool, np.bool_)) or not isinstance(n_steps, (int, np.integer)) \
            or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int, got {n_steps!r}")
    return int(n_steps)


def _feedback(feed, pred, F, t):
    """The next input step ``[n, F]`` from the prediction ``[n, K]``."""
    if feed is None:
        if pred.shape[1] != F:
            raise ValueError(f"the model predicts {pred.shape[1]} values per sequence but "
                             f"reads {F} features per step: its predictions cannot be fed back "
                             "as the next input; pass feed=callable(pred, t) -> (n, F)")
        return pred
    nxt = np.asarray(feed(pred, t), dtype=np.float64)
    if nxt.shape != (pred.shape[0], F):
        raise ValueError(f"feed returned shape {nxt.shape}; expected ({pred.shape[0]}, {F})")
    return nxt


def forecast(estimator, X, n_steps, *, stateful=True, feed=None):
    """Forecast ``n_steps`` steps past the end of every sequence of ``X``, autoregressively.

    The model predicts the next step from the history, the prediction is appended to the
    history as its next input, and so on.

    Parameters
    ----------
    estimator : fitted SequenceRegressor (unidirectional for ``stateful=True``) whose outputs
        are the next step's features (``n_outputs_ == n_features_in_``), or any output with
        ``feed``
    X : the histories, in any input format the estimator accepts (3-D, ragged list, ...);
        ragged histories each continue from their own last step
    n_steps : int >= 0
    stateful : bool, default=True
        True: the recurrent state is carried, each new step costs one ``step()`` -- the
        prediction at step ``k`` equals ``predict`` on the whole history plus the ``k - 1``
        steps fed back. False: every prediction re-runs the model on the last ``T`` steps
        only (``T`` = the history length), which is what a model trained on fixed windows
        of ``T`` steps saw in training.
    feed : callable(pred [n, K], t) -> next input [n, F], optional
        How a prediction becomes the next input (default: the prediction itself).

    Returns
    -------
    ``(n, n_steps, n_outputs)`` float64, or ``(n, n_steps)`` if the estimator was fitted
    with a 1-D ``y``.
    """
    _check_regressor(estimator)
    n_steps = _check_n_steps(n_steps)
    x, lengths, _ = estimator._validate_X(X, reset=False)      # [T, n, F], [n]
    T, n, F = x.shape
    K = estimator.network_config_["n_outputs"]
    net = estimator.network_
    preds = np.zeros((n, n_steps, K), dtype=np.float64)
    with blas_threads(resolve_threads(estimator.n_jobs)):
        if stateful and n_steps:
            stepper = NetworkStepper(net, batch_size=n)
            feats = stepper.prime(x, lengths)
            for t in range(n_steps):
                if t:
                    feats = stepper.step(_feedback(feed, preds[:, t - 1], F, t))
                preds[:, t] = stepper.head(feats)
        elif n_steps:
            # the sliding window of each sequence's last T valid steps, left-aligned
            window = np.zeros((T, n, F), dtype=x.dtype)
            window[:] = x
            win_len = lengths.copy()
            cols = np.arange(n)
            for t in range(n_steps):
                preds[:, t] = net.forward(window[:max(int(win_len.max()), 1)], win_len)
                nxt = _feedback(feed, preds[:, t], F, t + 1).astype(x.dtype)
                full = win_len == T
                # full windows slide left by one; shorter ones grow by one
                window[:-1, full] = window[1:, full]
                put = np.where(full, T - 1, win_len)
                window[put, cols] = nxt
                win_len = np.minimum(win_len + 1, T)
    return preds[:, :, 0] if getattr(estimator, "_y_1d", False) else preds


def generate_from_seed(estimator, seed, n_steps, *, feed=None):
    """One-to-many: start from the zero state, read the single input vector ``seed``
    (``[F]`` or ``[n, F]``), then feed every prediction back; returns the ``n_steps``
    predictions (``[n_steps, K]`` for a 1-D seed, ``[n, n_steps, K]`` otherwise; the last
    axis is dropped for a model fitted with 1-D ``y``)."""
    _check_regressor(estimator)
    seed = np.asarray(seed, dtype=np.float64)
    single = seed.ndim == 1
    F = estimator.n_features_in_
    seeds = seed.reshape(1, -1) if single else seed
    if seeds.ndim != 2 or seeds.shape[1] != F:
        raise ValueError(f"seed has shape {seed.shape}; expected ({F},) or (n, {F})")
    out = forecast(estimator, seeds[:, None, :], n_steps, stateful=True, feed=feed)
    return out[0] if single else out


class ForecastMixin:
    """Adds :meth:`forecast` and :meth:`generate_from_seed` to a sequence regressor."""

    def forecast(self, X, n_steps, *, stateful=True, feed=None):
        """See :func:`fastseq.forecasting.forecast`."""
        return forecast(self, X, n_steps, stateful=stateful, feed=feed)

    def generate_from_seed(self, seed, n_steps, *, feed=None):
        """See :func:`fastseq.forecasting.generate_from_seed`."""
        return generate_from_seed(self, seed, n_steps, feed=feed)
