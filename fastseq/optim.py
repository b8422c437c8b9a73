"""Optimizers as one fused pass over the flat parameter buffer.

Each optimizer updates ``params`` (the network's flat buffer, 1-D) from ``grad`` (same shape)
in place, in a single jitted loop (one read of every vector, no temporaries: the update is
memory-bound, and ten NumPy passes cost as much as a small model's forward step). Its state
(moment vectors, step count) is plain NumPy arrays and numbers, so ``get_state()`` /
``from_state()`` round-trip through pickle and JSON-like formats.

``step(params, grad, scale=1.0, backup=None)`` uses ``scale * grad`` (how gradient clipping
is applied without another pass), can write the old parameters to ``backup`` and reports
whether the gradient and the new parameters are finite, all in the same pass;
:func:`add_l2_and_norms` adds the L2 gradient and returns the norms that clipping and the
reported loss need, in one pass.

Learning-rate decay (inverse time, Keras' legacy ``decay``)::

    lr_t = lr / (1 + decay * t)          t = number of updates already made

Update rules (``g`` the gradient, all element-wise)::

    SGD       v = momentum * v - lr_t * g;  p += v                           (momentum)
              p += momentum * v - lr_t * g  after the v update            (Nesterov)
    RMSProp   s = rho * s + (1 - rho) * g^2;  p -= lr_t * g / (sqrt(s) + eps)
    Adam      m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
              p -= lr_t * sqrt(1 - b2^(t+1)) / (1 - b1^(t+1)) * m / (sqrt(v) + eps_hat)

Adam follows PyTorch / scikit-learn: bias correction folded into the step size, ``eps`` added
to ``sqrt(v)`` (``eps_hat = eps * sqrt(1 - b2^(t+1))``, which makes it exactly PyTorch's
``m_hat / (sqrt(v_hat) + eps)``).

:func:`clip_grad_norm` rescales ``g`` in place when its L2 norm exceeds ``clip_norm``
(PyTorch's ``clip_grad_norm_`` over all parameters).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._config import NUMBA_FLAGS
from ._threads import WorkerPool, each_released

SOLVERS = ("adam", "sgd", "rmsprop")

_FLAGS = dict(NUMBA_FLAGS)
_FLAGS["fastmath"] = set(NUMBA_FLAGS["fastmath"])     # numba wants a mutable set

# fewest parameters per thread of a split update: starting the second thread (20-50 us
# on fastseq_ext's team, 0.1-0.2 ms on a Python pool) and its kernel call cost the time of
# 10^5 or more element updates (RMSProp, 2 threads against 1: 200 K parameters 90 against
# 71 us, 500 K 137 against 173, 1 M 222 against 336)
PARALLEL_MIN = 1 << 19
_WORKERS = WorkerPool("fastseq-optim")


# ---------------------------------------------------------------- fused kernels
# params, grad, buffers: [P] of one dtype; params and buffers are updated in place (# OUT).
# Every scalar arrives already cast to that dtype (see Optimizer._scalars), so a float32
# model runs float32 arithmetic: 8-wide AVX2 sqrt and division instead of 4-wide float64.
# backup [P] OUT (when keep): the parameters before the update, written in the same pass
# (what a training loop rolls back to) instead of a separate copy. Each kernel returns how
# many (scaled) gradients and how many new parameters are not finite, counted in that pass
# (|x| <= big is False exactly for inf and NaN; a compare survives the fast-math flags of
# _config, where x - x would be folded to 0 by reassociation), so the finiteness checks of
# a training step cost no extra pass over the vectors either. big: the dtype's largest
# finite value.
@njit(**_FLAGS)
def _sgd_kernel(params, grad, velocity, scale, lr, momentum, nesterov, backup, keep,
                big):
    g_ok = 0
    p_ok = 0
    for i in range(params.shape[0]):
        p = params[i]
        if keep:
            backup[i] = p
        g = grad[i] * scale
        v = momentum * velocity[i] - lr * g
        velocity[i] = v
        if nesterov:
            p += momentum * v - lr * g
        else:
            p += v
        params[i] = p
        g_ok += np.abs(g) <= big
        p_ok += np.abs(p) <= big
    n = params.shape[0]
    return n - g_ok, n - p_ok


@njit(**_FLAGS)
def _rmsprop_kernel(params, grad, square_avg, scale, lr, rho, one_minus_rho, eps, backup,
                    keep, big):
    g_ok = 0
    p_ok = 0
    for i in range(params.shape[0]):
        p = params[i]
        if keep:
            backup[i] = p
        g = grad[i] * scale
        sq = rho * square_avg[i] + one_minus_rho * g * g
        square_avg[i] = sq
        p -= lr * g / (np.sqrt(sq) + eps)
        params[i] = p
        g_ok += np.abs(g) <= big
        p_ok += np.abs(p) <= big
    n = params.shape[0]
    return n - g_ok, n - p_ok


@njit(**_FLAGS)
def _adam_kernel(params, grad, m, v, scale, b1, one_minus_b1, b2, one_minus_b2, step,
                 eps_hat, backup, keep, big):
    g_ok = 0
    p_ok = 0
    for i in range(params.shape[0]):
        p = params[i]
        if keep:
            backup[i] = p
        g = grad[i] * scale
        m_i = b1 * m[i] + one_minus_b1 * g
        v_i = b2 * v[i] + one_minus_b2 * g * g
        m[i] = m_i
        v[i] = v_i
        p -= step * m_i / (np.sqrt(v_i) + eps_hat)
        params[i] = p
        g_ok += np.abs(g) <= big
        p_ok += np.abs(p) <= big
    n = params.shape[0]
    return n - g_ok, n - p_ok


@njit(**_FLAGS)
def _l2_norms_kernel(grad, params, mask, c):
    # grad [P] OUT: grad += c * mask * params;  returns (||grad||^2, ||mask * params||^2)
    grad_sq = 0.0
    weight_sq = 0.0
    for i in range(grad.shape[0]):
        w = mask[i] * params[i]
        g = grad[i] + c * w
        grad[i] = g
        grad_sq += g * g
        weight_sq += w * w
    return grad_sq, weight_sq


def add_l2_and_norms(grad, params, mask, c):
    """``grad += c * mask * params`` in place; returns ``(||grad||^2, ||mask*params||^2)``
    (float64) computed in the same pass."""
    return _l2_norms_kernel(grad, params, mask, params.dtype.type(c))


def clip_grad_norm(grad, clip_norm):
    """Scale ``grad`` in place so that ``||grad||_2 <= clip_norm``; returns the norm before."""
    norm = math.sqrt(float(np.dot(grad, grad)))
    if clip_norm is not None and norm > clip_norm:
        grad *= grad.dtype.type(clip_norm / (norm + 1e-12))
    return norm


class Optimizer:
    """Base class: learning rate, decay, step count, a scratch vector reused every step."""

    name = None
    _buffers = ()

    def __init__(self, n_params, dtype=np.float32, learning_rate=1e-3, decay=0.0):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        if decay < 0:
            raise ValueError(f"decay must be >= 0, got {decay!r}")
        self.learning_rate = float(learning_rate)
        self.decay = float(decay)
        self.t = 0
        self.dtype = np.dtype(dtype)
        for name in self._buffers:
            setattr(self, name, np.zeros(n_params, dtype=self.dtype))

    def current_lr(self):
        return self.learning_rate / (1.0 + self.decay * self.t)

    def step(self, params, grad, scale=1.0, backup=None, n_threads=1):
        """Update ``params`` in place from ``scale * grad``.

        ``backup`` (an array like ``params``, optional) receives the parameters before the
        update, in the same pass. Returns ``(grad_finite, params_finite)``: whether every
        (scaled) gradient and every updated parameter is finite, also found in that pass.
        ``n_threads``: a large vector is split into that many contiguous blocks updated
        concurrently (each at least :data:`PARALLEL_MIN` long; the update is element-wise,
        so the result is the same bits for any split).
        """
        if params.shape != grad.shape or params.dtype != self.dtype or \
                grad.dtype != self.dtype:
            raise ValueError(f"params and grad must be {self.dtype} arrays of the "
                             f"optimizer's size, got {params.dtype}{params.shape} and "
                             f"{grad.dtype}{grad.shape}")
        keep = backup is not None
        if keep:
            if backup.shape != params.shape or backup.dtype != params.dtype or \
                    not backup.flags.c_contiguous:
                raise ValueError(f"backup must be a C-contiguous {params.dtype} array of "
                                 f"shape {params.shape}, got {backup.dtype}{backup.shape}")
        else:
            backup = params[:0]
        lr, scale = self.current_lr(), float(scale)
        P = params.shape[0]
        n = max(1, min(int(n_threads), P // PARALLEL_MIN))
        if n == 1:
            bad_grad, bad_params = self._update(slice(None), params, grad, lr, scale,
                                                backup, keep)
        else:
            bounds = [P * j // n for j in range(n + 1)]

            def block(j):
                s = slice(bounds[j], bounds[j + 1])
                return self._update(s, params[s], grad[s], lr, scale,
                                    backup[s] if keep else backup, keep)

            counts = each_released(_WORKERS, block, range(n))   # nogil kernels
            bad_grad = sum(c[0] for c in counts)
            bad_params = sum(c[1] for c in counts)
        self.t += 1
        return bad_grad == 0, bad_params == 0

    # params, grad, backup: the block ``s`` of the full vectors (buffers are sliced here)
    def _update(self, s, params, grad, lr, scale, backup, keep):  # pragma: no cover
        raise NotImplementedError

    def _hyper(self):
        return dict(learning_rate=self.learning_rate, decay=self.decay)

    def get_state(self, copy=True):
        """Plain dict: name, hyperparameters, step count and buffers (copies; with
        ``copy=False`` the optimizer's own arrays, for a caller that steps it no more)."""
        return dict(name=self.name, hyper=self._hyper(), t=self.t,
                    buffers={k: getattr(self, k).copy() if copy else getattr(self, k)
                             for k in self._buffers})

    @classmethod
    def from_state(cls, state):
        """A new optimizer with ``state``'s settings and copies of its buffers (``state``
        is left as it is)."""
        klass = _CLASSES[state["name"]]
        buffers = state["buffers"]
        dtype = next(iter(buffers.values())).dtype if buffers else np.float32
        opt = klass(0, dtype=dtype, **state["hyper"])   # buffers copied below, not zeroed
        opt.t = int(state["t"])
        for k, v in buffers.items():
            setattr(opt, k, np.array(v, dtype=opt.dtype, copy=True, order="C"))
        return opt


class SGD(Optimizer):
    """SGD with (Nesterov) momentum; scikit-learn's defaults ``momentum=0.9, nesterov=True``."""

    name = "sgd"
    _buffers = ("velocity",)

    def __init__(self, n_params, dtype=np.float32, learning_rate=1e-3, decay=0.0,
                 momentum=0.9, nesterov=True):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        super().__init__(n_params, dtype, learning_rate, decay)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _hyper(self):
        return dict(super()._hyper(), momentum=self.momentum, nesterov=self.nesterov)

    def _update(self, s, params, grad, lr, scale, backup, keep):
        f = self.dtype.type
        return _sgd_kernel(params, grad, self.velocity[s], f(scale), f(lr), f(self.momentum),
                           self.nesterov, backup, keep, f(np.finfo(f).max))


class RMSProp(Optimizer):
    name = "rmsprop"
    _buffers = ("square_avg",)

    def __init__(self, n_params, dtype=np.float32, learning_rate=1e-3, decay=0.0, rho=0.9,
                 epsilon=1e-7):
        super().__init__(n_params, dtype, learning_rate, decay)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def _hyper(self):
        return dict(super()._hyper(), rho=self.rho, epsilon=self.epsilon)

    def _update(self, s, params, grad, lr, scale, backup, keep):
        f = self.dtype.type
        return _rmsprop_kernel(params, grad, self.square_avg[s], f(scale), f(lr), f(self.rho),
                               f(1 - self.rho), f(self.epsilon), backup, keep,
                               f(np.finfo(f).max))


class Adam(Optimizer):
    name = "adam"
    _buffers = ("m", "v")

    def __init__(self, n_params, dtype=np.float32, learning_rate=1e-3, decay=0.0,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        for name, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= b < 1:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}")
        super().__init__(n_params, dtype, learning_rate, decay)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _hyper(self):
        return dict(super()._hyper(), beta_1=self.beta_1, beta_2=self.beta_2,
                    epsilon=self.epsilon)

    def _update(self, s, params, grad, lr, scale, backup, keep):
        t = self.t + 1
        correction2 = math.sqrt(1 - self.beta_2 ** t)
        step = lr * correction2 / (1 - self.beta_1 ** t)
        f = self.dtype.type
        return _adam_kernel(params, grad, self.m[s], self.v[s], f(scale), f(self.beta_1),
                            f(1 - self.beta_1), f(self.beta_2), f(1 - self.beta_2), f(step),
                            f(self.epsilon * correction2), backup, keep,
                            f(np.finfo(f).max))


_CLASSES = {"sgd": SGD, "rmsprop": RMSProp, "adam": Adam}


def make_optimizer(solver, n_params, dtype=np.float32, **hyper):
    """Build ``solver`` ("adam" | "sgd" | "rmsprop") keeping only the hyperparameters it takes."""
    if solver not in _CLASSES:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    klass = _CLASSES[solver]
    import inspect
    accepted = set(inspect.signature(klass.__init__).parameters)
    return klass(n_params, dtype=dtype, **{k: v for k, v in hyper.items() if k in accepted})
