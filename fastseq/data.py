"""Ragged sequences: padding, lengths and time reversal.

Public arrays are batch-first ``(n, T, F)`` or lists of ``(T_i, F)`` arrays; the engine
works time-major ``[T, B, F]``. These helpers convert between the two.
"""
from __future__ import annotations

import numpy as np


def pad_sequences(sequences, dtype=np.float32, maxlen=None):
    """List of ``(T_i, F)`` arrays -> (time-major ``[T, B, F]`` zero-padded, lengths ``[B]``)."""
    if len(sequences) == 0:
        raise ValueError("sequences is empty; expected at least one (T_i, F) array")
    seqs = [np.asarray(s) for s in sequences]
    for k, s in enumerate(seqs):
        if s.ndim != 2:
            raise ValueError(f"sequences[{k}] has shape {s.shape}; expected (T_i, F)")
    n_features = seqs[0].shape[1]
    for k, s in enumerate(seqs):
        if s.shape[1] != n_features:
            raise ValueError(f"sequences[{k}] has {s.shape[1]} features; sequences[0] has "
                             f"{n_features}; all sequences need the same feature count")
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    T = int(lengths.max()) if maxlen is None else int(maxlen)
    out = np.zeros((T, len(seqs), n_features), dtype=dtype)
    for b, s in enumerate(seqs):
        L = min(len(s), T)
        out[:L, b] = s[:L]
    return out, np.minimum(lengths, T)


def unpad_sequences(x, lengths):
    """Time-major ``[T, B, F]`` + lengths -> list of ``(T_i, F)`` arrays (copies)."""
    return [np.array(x[:L, b]) for b, L in enumerate(np.asarray(lengths))]


def reverse_index(lengths, T):
    """Time indices ``[T, B]`` that reverse each sequence within its length.

    ``idx[t, b] = lengths[b] - 1 - t`` for ``t < lengths[b]``, else ``t`` (padding stays put).
    Applying it twice is the identity.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    t = np.arange(T, dtype=np.int64)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def reverse_padded(x, lengths):
    """Reverse each sequence of time-major ``x [T, B, ...]`` within its own length."""
    T, B = x.shape[:2]
    idx = reverse_index(lengths, T)
    return x[idx, np.arange(B)[None, :]]


def length_mask(lengths, T, dtype=np.float64):
    """``[T, B]`` mask: 1 where ``t < lengths[b]``."""
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)
