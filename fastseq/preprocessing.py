"""Input validation and preprocessing for sequence data (DESIGN.md section 6).

The public input contract, shared by every estimator:

* a 3-D array ``(n, T, F)``: ``n`` sequences of ``T`` steps of ``F`` features;
* a list of ``(T_i, F)`` arrays: ragged sequences (``T_i`` may be 0);
* a 2-D array ``(n, F)``: one time step per sequence, unless ``n_timesteps=T`` is given, in
  which case each row is a flattened ``(T, F)`` sequence (``(n, T*F)``, what dask-ml and other
  2-D tools pass);
* token ids (estimators with ``embedding_dim``): ``(n, T)`` ints or a list of 1-D int arrays.

sktime / aeon store panels as ``(n, channels, T)``: convert with :func:`from_channels_first`;
the layout is never guessed.

:func:`check_sequences` turns any of these into the engine's layout, a time-major zero-padded
``[T, n, F]`` array plus ``lengths [n]``, and remembers the format (:class:`SequenceFormat`)
so that per-step outputs can be returned the way they came in. :class:`SequenceScaler`
standardizes features over all valid steps and keeps the format, so it fits in a
``Pipeline`` before any estimator.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

try:  # private in scikit-learn, but the only way to share its feature-name checks
    from sklearn.utils.validation import _check_feature_names
except ImportError:  # pragma: no cover
    _check_feature_names = None

FLOAT_DTYPES = (np.float64, np.float32)


@dataclass
class SequenceFormat:
    """How the user passed X: ``kind`` is "3d", "ragged", "2d" (one step per row) or
    "flat" (2-D rows of ``n_timesteps * F``); ``n_timesteps`` for "flat"."""

    kind: str
    n_timesteps: int | None = None


def _is_ragged_list(X):
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    first = X[0]
    return hasattr(first, "__len__") and not isinstance(first, (str, bytes)) and \
        np.ndim(first) == 2


def _is_token_list(X):
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    return all(np.ndim(s) == 1 for s in X) and \
        len({len(s) for s in X}) > 1


def _check_dtype(X, name):
    """Refuse complex, string and bytes arrays with a message naming the argument (object
    arrays go on to scikit-learn's conversion, which refuses what is not a number)."""
    dtype = getattr(X, "dtype", None)
    if not isinstance(dtype, np.dtype):
        return
    if dtype.kind == "c":
        # the wording scikit-learn's check_complex_data expects
        raise ValueError(f"Complex data not supported: {name} has dtype {dtype}; fastseq "
                         "needs real numbers")
    if dtype.kind in "USV":
        raise TypeError(f"{name} has dtype {dtype}; expected real numbers (float or int), "
                        "not strings or bytes")


def check_sequences(X, *, n_timesteps=None, dtype=np.float32, tokens=False,
                    estimator=None, reset=True, ensure_min_samples=1):
    """Validate X and return ``(x [T, n, F] or [T, n] ints, lengths [n], SequenceFormat)``.

    ``x`` is a new C-contiguous time-major array of ``dtype`` (float input) or ``int64``
    (tokens); padded steps are zero. If ``estimator`` is given, its feature names are checked
    (``reset=True`` records them, as scikit-learn's ``validate_data`` does).
    """
    if tokens:
        return _check_tokens(X, n_timesteps)
    if n_timesteps is not None and (int(n_timesteps) != n_timesteps or n_timesteps < 1):
        raise ValueError(f"n_timesteps must be a positive int or None, got {n_timesteps!r}")
    if _is_ragged_list(X):
        for k, s in enumerate(X):
            if np.ndim(s) != 2:
                raise ValueError(f"X[{k}] has shape {np.shape(s)}; X is a list of sequences, "
                                 "each must be a (T_i, F) array")
            _check_dtype(s, f"X[{k}]")
        seqs = [check_array(s, dtype=FLOAT_DTYPES, ensure_min_samples=0,
                            input_name=f"X[{k}]") for k, s in enumerate(X)]
        n_features = seqs[0].shape[1]
        for k, s in enumerate(seqs):
            if s.shape[1] != n_features:
                raise ValueError(f"X[{k}] has {s.shape[1]} features per step but X[0] has "
                                 f"{n_features}; all sequences need the same count")
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        T = max(int(lengths.max()), 1)          # at least one (padded) step
        x = np.zeros((T, len(seqs), n_features), dtype=dtype)
        for b, s in enumerate(seqs):
            x[:len(s), b] = s
        return x, lengths, SequenceFormat("ragged")
    if _is_token_list(X):
        raise ValueError("X is a list of 1-D arrays of different lengths; dense sequences "
                         "must be (T_i, F) arrays (use s.reshape(-1, 1) for one feature), "
                         "token ids need an estimator with embedding_dim")
    if estimator is not None and _check_feature_names is not None:
        _check_feature_names(estimator, X, reset=reset)
    _check_dtype(X, "X")
    shape = getattr(X, "shape", None)
    n_given = len(X) if isinstance(X, (list, tuple)) else (shape[0] if shape else None)
    if n_given == 0 and ensure_min_samples > 0:
        raise ValueError(f"X is empty: found array with 0 sample(s) (shape={np.shape(X)}) "
                         f"while a minimum of {ensure_min_samples} is required")
    if len(getattr(X, "shape", (0, 0))) < 2:
        raise ValueError(f"X has shape {np.shape(X)}; expected (n, T, F), a list of (T_i, F) "
                         "arrays, or (n, F) / (n, T*F) with n_timesteps. Reshape your data, "
                         "e.g. X.reshape(-1, 1) for one step of one feature per sequence")
    arr = check_array(X, dtype=FLOAT_DTYPES, allow_nd=True,
                      ensure_min_samples=ensure_min_samples, input_name="X")
    if arr.ndim == 3:
        fmt = SequenceFormat("3d")
        x3 = arr
    elif arr.ndim == 2:
        if n_timesteps is None:
            fmt = SequenceFormat("2d")
            x3 = arr[:, None, :]
        else:
            T = int(n_timesteps)
            if arr.shape[1] % T:
                raise ValueError(f"X has {arr.shape[1]} columns, not a multiple of "
                                 f"n_timesteps={T}; expected (n, n_timesteps * n_features)")
            fmt = SequenceFormat("flat", T)
            x3 = arr.reshape(arr.shape[0], T, arr.shape[1] // T)
    else:
        raise ValueError(f"X has shape {arr.shape}; expected (n, T, F), a list of (T_i, F) "
                         "arrays, or (n, F) / (n, T*F) with n_timesteps")
    if x3.shape[1] == 0:
        raise ValueError(f"X has 0 time steps (shape={arr.shape}); at least 1 is required")
    if x3.shape[2] == 0:
        raise ValueError(f"0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    x = np.ascontiguousarray(x3.transpose(1, 0, 2), dtype=dtype)
    lengths = np.full(x.shape[1], x.shape[0], dtype=np.int64)
    return x, lengths, fmt


def _check_tokens(X, n_timesteps=None):
    if isinstance(X, (list, tuple)) and len(X) and all(np.ndim(s) == 1 for s in X):
        seqs = [np.asarray(s) for s in X]
        for k, s in enumerate(seqs):
            if s.size and not np.issubdtype(s.dtype, np.integer):
                raise TypeError(f"X[{k}] has dtype {s.dtype}; token ids must be integers")
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        x = np.zeros((max(int(lengths.max()), 1), len(seqs)), dtype=np.int64)
        for b, s in enumerate(seqs):
            x[:len(s), b] = s
        return x, lengths, SequenceFormat("ragged")
    arr = np.asarray(X)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"token input X has shape {arr.shape}; expected (n, T) ids or a "
                         "list of 1-D id arrays")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
    x = np.ascontiguousarray(arr.T, dtype=np.int64)
    return x, np.full(arr.shape[0], arr.shape[1], dtype=np.int64), SequenceFormat("3d")


def restore_format(per_step, lengths, fmt):
    """Per-step outputs ``[T, n, ...]`` -> the layout X came in: ``(n, T, ...)`` for "3d" and
    "flat", a list of ``(T_i, ...)`` for "ragged", ``(n, ...)`` for "2d" (one step)."""
    if fmt.kind == "2d":
        return np.ascontiguousarray(per_step[0])
    if fmt.kind == "ragged":
        return [np.array(per_step[:L, b]) for b, L in enumerate(lengths)]
    return np.ascontiguousarray(np.swapaxes(per_step, 0, 1))


def from_channels_first(X):
    """sktime / aeon panels ``(n, channels, T)`` (or a list of ``(channels, T_i)``) ->
    fastseq's ``(n, T, channels)`` (or a list of ``(T_i, channels)``)."""
    if isinstance(X, (list, tuple)):
        out = []
        for k, s in enumerate(X):
            s = np.asarray(s)
            if s.ndim != 2:
                raise ValueError(f"X[{k}] has shape {s.shape}; expected (channels, T_i)")
            out.append(np.ascontiguousarray(s.T))
        return out
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"X has shape {X.shape}; expected (n, channels, T)")
    return np.ascontiguousarray(X.transpose(0, 2, 1))


def to_channels_first(X):
    """Inverse of :func:`from_channels_first`."""
    if isinstance(X, (list, tuple)):
        return [np.ascontiguousarray(np.asarray(s).T) for s in X]
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"X has shape {X.shape}; expected (n, T, channels)")
    return np.ascontiguousarray(X.transpose(0, 2, 1))


class SequenceScaler(TransformerMixin, BaseEstimator):
    """Standardize each feature over all valid time steps of all sequences.

    Accepts every input of :func:`check_sequences` and returns the same layout (3-D stays
    3-D, ragged lists stay lists, flattened 2-D rows stay flattened), so it can precede any
    fastseq estimator in a ``Pipeline``. Padding never enters the statistics.

    Parameters
    ----------
    with_mean, with_std : bool
    n_timesteps : int or None
        As for the estimators: 2-D rows hold ``n_timesteps`` flattened steps.

    Attributes
    ----------
    mean_, scale_ : ``[F]`` float64;  n_features_in_ : F;  n_steps_seen_ : int
    """

    def __init__(self, with_mean=True, with_std=True, n_timesteps=None):
        self.with_mean = with_mean
        self.with_std = with_std
        self.n_timesteps = n_timesteps

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    def fit(self, X, y=None):
        x, lengths, _ = check_sequences(X, n_timesteps=self.n_timesteps, dtype=np.float64,
                                        estimator=self, reset=True)
        valid = np.arange(x.shape[0])[:, None] < lengths[None, :]
        steps = x[valid]                                    # [n_valid, F]
        F = x.shape[2]
        self.n_features_in_ = F
        self.n_steps_seen_ = int(steps.shape[0])
        self.mean_ = steps.mean(axis=0) if (self.with_mean and len(steps)) else np.zeros(F)
        if self.with_std and len(steps):
            std = steps.std(axis=0)
            self.scale_ = np.where(std > 10 * np.finfo(np.float64).eps, std, 1.0)
        else:
            self.scale_ = np.ones(F)
        return self

    def _apply(self, X, inverse):
        check_is_fitted(self)
        is_float32 = getattr(X, "dtype", None) == np.float32
        dtype = np.float32 if is_float32 else np.float64
        x, lengths, fmt = check_sequences(X, n_timesteps=self.n_timesteps, dtype=dtype,
                                          estimator=self, reset=False)
        if x.shape[2] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[2]} features, but SequenceScaler is expecting "
                             f"{self.n_features_in_} features as input")
        if inverse:
            x = x * self.scale_.astype(dtype) + self.mean_.astype(dtype)
        else:
            x = (x - self.mean_.astype(dtype)) / self.scale_.astype(dtype)
        out = restore_format(x, lengths, fmt)
        if fmt.kind == "flat":
            out = out.reshape(out.shape[0], -1)
        return out

    def transform(self, X):
        return self._apply(X, inverse=False)

    def inverse_transform(self, X):
        return self._apply(X, inverse=True)
