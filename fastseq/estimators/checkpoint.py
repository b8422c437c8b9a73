"""Checkpoints written while ``fit`` runs, and resuming ``fit`` from one.

``checkpoint_path`` (constructor) makes ``fit`` write a checkpoint every ``checkpoint_every``
epochs, at the last epoch of the call (also when early stopping ends it), and when Ctrl-C
stops it (the state of the last completed epoch). ``fit(X, y, resume_from=path)`` on a new
(or any) estimator with the same parameters and the same data continues that training: the
epochs left up to ``max_iter`` are run, and the result is bitwise the one an uninterrupted
``fit`` gives (same engine and thread count).

A checkpoint is a safe model file (:mod:`fastseq.io`: npz without pickle, JSON metadata,
sha256, temporary file + ``os.replace``), so ``fastseq.load(path)`` also reads it as the
estimator at the end of that epoch. On top of the fitted state (weights, ``history_``,
``loss_curve_``, ``validation_scores_``, best scores, ``n_iter_``, ``t_``, the early-stopping
counter) it holds the optimizer state (moments, step count, so the current learning rate),
the state of the random generator that draws shuffles and dropout masks, and a section
``checkpoint``::

    version         1
    fit_start       n_iter_ when the fit that wrote it started (warm_start fits add epochs)
    converged       True when early stopping (or tol) ended the fit at this epoch
    best_flat       the best validation weights so far (early_stopping), or None
    split_seed      seed of the train/validation split (early_stopping), or None
    data_sha256     fingerprint of the validated X, lengths, targets and weights

Resuming refuses (``ValueError``) a checkpoint of another estimator class, another
architecture (``network_config_``), other training parameters (all but ``max_iter``,
``verbose``, ``n_jobs``, ``backend``, ``warm_start``, ``random_state`` and the checkpoint
parameters) or other data; a damaged file raises :class:`fastseq.io.ModelFileError`.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
import zlib

import numpy as np

from .. import io as _io

VERSION = 1
SECTION = "checkpoint"
# parameters that may differ between the fit that wrote a checkpoint and the one resuming it
FREE_PARAMS = frozenset({"max_iter", "verbose", "n_jobs", "backend", "warm_start",
                         "random_state", "checkpoint_path", "checkpoint_every"})


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                TypeError, IndexError, OverflowError, UnicodeError, NotImplementedError,
                AttributeError, RecursionError, MemoryError)


def check_params(estimator):
    """Validate ``checkpoint_path`` / ``checkpoint_every`` (called by ``fit``)."""
    path, every = estimator.checkpoint_path, estimator.checkpoint_every
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"checkpoint_path must be None or a path, got {path!r}")
    if isinstance(every, (bool, np.bool_)) or not isinstance(every, (int, np.integer)) \
            or every < 1:
        raise ValueError(f"checkpoint_every must be a positive int (epochs), got {every!r}")


def fingerprint(x, lengths, targets, weights):
    """sha256 over the validated training data (arrays in the order fit uses them)."""
    h = hashlib.sha256()
    parts = [x, lengths] + (list(targets) if isinstance(targets, tuple) else [targets])
    parts.append(weights)
    for a in parts:
        if a is None:
            h.update(b"none\0")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}\0".encode())
        h.update(a.data if a.flags.c_contiguous and a.size else a.tobytes())
    return h.hexdigest()


def write(estimator, path, *, optimizer_state, rng_state, best_flat, split_seed, fit_start,
          converged, data_sha256, skip):
    """Write ``estimator`` (mid-fit) and the training state to ``path`` (atomic)."""
    overrides = {"_optimizer_state": optimizer_state, "_rng_state": rng_state}
    meta, arrays, enc = _io._estimator_payload(estimator, skip=skip, overrides=overrides)
    section = dict(version=VERSION, fit_start=int(fit_start), converged=bool(converged),
                   best_flat=best_flat, split_seed=split_seed, data_sha256=data_sha256)
    meta[SECTION] = enc.encode(section, _io.ATTR_PREFIX + SECTION)
    arrays.update(enc.arrays)
    return _io._write("estimator", meta, arrays, os.fspath(path))


class Checkpoint:
    """A checkpoint read back: ``model`` (an estimator holding the saved state) and the
    ``checkpoint`` section's entries as attributes."""

    def __init__(self, path, model, section):
        self.path = path
        self.model = model
        self.fit_start = section["fit_start"]
        self.converged = section["converged"]
        self.best_flat = section["best_flat"]
        self.split_seed = section["split_seed"]
        self.data_sha256 = section["data_sha256"]


def read(path, estimator):
    """Read and check ``path`` for resuming ``estimator``'s fit -> :class:`Checkpoint`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"resume_from: no checkpoint at {path}")
    try:
        header, arrays = _io._read_archive(path)
    except _io.ModelFileError:
        raise
    except _READ_ERRORS as exc:             # a damaged archive (io.load's same net)
        raise _io.ModelFileError(f"{path}: corrupted or invalid checkpoint "
                                 f"({type(exc).__name__}: {exc})") from None
    cls = type(estimator).__name__
    section = header.get(SECTION)
    if header.get("kind") != "estimator" or not isinstance(section, dict):
        raise ValueError(f"resume_from: {path} is a fastseq model file but not a checkpoint "
                         "(written by fit with checkpoint_path=...); to continue from a "
                         "saved model use fastseq.load and warm_start=True")
    saved_cls = (header.get("estimator") or {}).get("class")
    if saved_cls != cls:
        raise ValueError(f"resume_from: {path} is a checkpoint of a {saved_cls}, not of a "
                         f"{cls}")
    try:
        model = _io._estimator_from(header, arrays, path, estimator.backend)
        section = _io._decode(section, arrays, SECTION)
        if not isinstance(section, dict) or section.get("version") != VERSION:
            raise _io.ModelFileError(f"{path}: checkpoint version "
                                     f"{section.get('version')!r} is not {VERSION}")
        ckpt = Checkpoint(path, model, section)
    except _io.ModelFileError:
        raise
    except _READ_ERRORS as exc:
        raise _io.ModelFileError(f"{path}: invalid checkpoint ({type(exc).__name__}: "
                                 f"{exc})") from None
    if ckpt.best_flat is not None and (
            not isinstance(ckpt.best_flat, np.ndarray)
            or ckpt.best_flat.shape != model.flat_params_.shape
            or ckpt.best_flat.dtype != model.flat_params_.dtype):
        raise _io.ModelFileError(f"{path}: checkpoint best_flat does not match the weights")
    return ckpt


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b) and bool(np.all(np.asarray(a) == np.asarray(b)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def restore(estimator, ckpt, config, data_sha256):
    """Check ``ckpt`` against the fit about to run (``config``: the network_config_ this
    data and these parameters give) and copy its state into ``estimator``; returns the
    random Generator to continue with."""
    model, path = ckpt.model, ckpt.path
    if model.network_config_ != config:
        diff = sorted(k for k in set(config) | set(model.network_config_)
                      if config.get(k) != model.network_config_.get(k))
        raise ValueError(f"resume_from: {path} holds another architecture: "
                         + "; ".join(f"{k}={model.network_config_.get(k)!r} in the "
                                     f"checkpoint, {config.get(k)!r} here" for k in diff))
    mine, theirs = estimator.get_params(deep=False), model.get_params(deep=False)
    diff = sorted(k for k in mine if k not in FREE_PARAMS and not _same(mine[k], theirs[k]))
    if diff:
        raise ValueError(f"resume_from: {path} was written with other parameters: "
                         + "; ".join(f"{k}={theirs[k]!r} there, {mine[k]!r} here"
                                     for k in diff)
                         + ". Resume with the same parameters (only max_iter may grow), or "
                         "continue a saved model with fastseq.load and warm_start=True")
    for attr in ("classes_", "n_features_in_", "n_outputs_"):
        if attr in estimator.__dict__ and not _same(estimator.__dict__[attr],
                                                    model.__dict__.get(attr)):
            raise ValueError(f"resume_from: {path} has {attr}={model.__dict__.get(attr)!r}; "
                             f"this data gives {estimator.__dict__[attr]!r}")
    if ckpt.data_sha256 != data_sha256:
        raise ValueError(f"resume_from: {path} was written while fitting other data (X, y or "
                         "sample_weight differ); resume with the same data")
    params = set(theirs)
    for attr, value in vars(model).items():
        if attr not in params:
            setattr(estimator, attr, value)
    rng = np.random.default_rng()
    rng.bit_generator.state = model._rng_state
    return rng
