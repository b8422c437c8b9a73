"""What every fastseq estimator shares: validation, the training loop, prediction batches.

The math lives elsewhere (:mod:`fastseq.network`, :mod:`fastseq.losses`,
:mod:`fastseq.optim`); this module is the scikit-learn shell around it.

Fitted state is plain NumPy arrays and builtins only (DESIGN.md section 6), so pickle, joblib
and skops round-trip it:

* ``flat_params_``   the one flat parameter buffer (see :mod:`fastseq.network` for the layout)
* ``network_config_`` JSON-serializable architecture; ``network_`` rebuilds the
  :class:`~fastseq.network.Network` (a zero-copy wrapper around ``flat_params_``)
* ``_optimizer_state`` a dict of arrays and numbers (used by ``warm_start`` / ``partial_fit``)
* ``_rng_state`` the state (a dict of ints) of the numpy Generator that draws shuffles and
  dropout masks, so ``partial_fit`` / ``warm_start`` continue the same random stream
"""
from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .._config import resolve_threads
from .._memory import check_batch_memory
from .._threads import blas_threads
from ..network import Network, make_config
from ..optim import SOLVERS, Optimizer, add_l2_and_norms, make_optimizer
from ..preprocessing import check_sequences
from . import checkpoint as _checkpoint

# rows per prediction batch: 256 keeps the [T, B, 4H] gate buffers of a 2 x LSTM(128)
# in cache on this machine (512 ran at half the speed, measured with bench/estimator_overhead.py)
PREDICT_BATCH = 256
# attributes that live only while fit runs (never part of the fitted state or a checkpoint)
_TRANSIENT = ("_live_rng", "_best_flat", "_epoch_opt", "_epoch_rng", "_n_completed",
              "_split_seed", "_fit_start", "_data_sha256", "_tbptt")


class TrainingDivergedError(ValueError, FloatingPointError):
    """Training produced a non-finite (NaN or inf) loss, gradient or weight.

    Raised by ``fit`` / ``partial_fit``; the estimator keeps the last finite weights (those
    before the offending update), its ``history_`` of completed epochs and stays usable for
    ``predict``. A ``ValueError`` (and a ``FloatingPointError``) so both kinds of handler
    catch it."""


class FitInterruptedWarning(UserWarning):
    """``fit`` was stopped by KeyboardInterrupt (Ctrl-C) after at least one completed epoch;
    the estimator keeps the best weights so far and its history (see docs/robustness.md)."""


def _dtype_of(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


class _Progress:
    """Keras-like progress: verbose=1 a live bar per epoch, verbose=2 one line per epoch."""

    def __init__(self, verbose, n_batches, epoch, max_iter, stream=None):
        self.verbose = verbose
        self.n_batches = n_batches
        self.prefix = f"Epoch {epoch}/{max_iter}"
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()
        self.last = 0.0
        if verbose == 1:
            print(self.prefix, file=self.stream)

    def update(self, batch, loss, n_seen):
        if self.verbose != 1:
            return
        now = time.perf_counter()
        if batch < self.n_batches and now - self.last < 0.1:
            return
        self.last = now
        width = 30
        done = int(width * batch / self.n_batches)
        bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
        rate = n_seen / max(now - self.start, 1e-9)
        self.stream.write(f"\r{batch}/{self.n_batches} [{bar}] - loss: {loss:.4f} - "
                          f"{rate:.0f} samples/s")
        self.stream.flush()

    def end(self, record):
        if not self.verbose:
            return
        parts = [f"{record['time']:.2f}s", f"loss: {record['loss']:.4f}"]
        if "val_score" in record:
            parts.append(f"val_score: {record['val_score']:.4f}")
        parts.append(f"{record['samples_per_s']:.0f} samples/s")
        line = " - ".join(parts)
        if self.verbose == 1:
            self.stream.write("\n" + line + "\n")
        else:
            self.stream.write(f"{self.prefix} - {line}\n")
        self.stream.flush()


class BaseSequenceEstimator(TransformerMixin, BaseEstimator):
    """Shared machinery; subclasses define the targets, the loss and the outputs.

    Subclass hooks: ``_output_mode``, ``_validate_targets(y, lengths, fmt, reset, classes)``
    -> (targets, n_outputs, per-row class weights or None), ``_take(targets, idx, Tb)``,
    ``_batch_loss(out, targets_b, w_b, lengths_b)`` -> (loss, d_out, total weight),
    ``_validation_score(x, lengths, targets)``.
    """

    _output_mode = "many-to-one"
    _is_classifier = False

    # ------------------------------------------------------------------ tags
    def save(self, path, metadata=None):
        """Write the fitted model to ``path`` as a safe model file (see :mod:`fastseq.io`)."""
        from ..io import save
        return save(self, path, metadata=metadata)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save`; refuses a file holding another class."""
        from ..io import load
        model = load(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = True
        # transform() returns the hidden state in the model's dtype, whatever X's dtype was
        tags.transformer_tags.preserves_dtype = []
        return tags

    # ------------------------------------------------------------------ helpers
    def _n_threads(self):
        return None if self.n_jobs is None else resolve_threads(self.n_jobs)

    def _threads_ctx(self):
        # n_jobs reaches the engine as n_threads (its own threads). BLAS stays on one thread
        # for the whole fit / prediction: the head's GEMMs, the loss and the embedding run
        # between engine calls, and a multi-threaded OpenBLAS call there leaves workers
        # spinning that starve the engine's threads (one level of parallelism); the layers'
        # own one-thread switch then finds the setting already made (no per-call cost)
        return blas_threads(1)

    def _validate_params(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be a positive int, got {self.max_iter!r}")
        if self.batch_size != "auto" and not (
                isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or a positive int, got "
                             f"{self.batch_size!r}")
        if not self.learning_rate_init > 0:
            raise ValueError(f"learning_rate_init must be > 0, got {self.learning_rate_init!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be None or > 0, got {self.clip_norm!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got "
                             f"{self.validation_fraction!r}")
        if not (isinstance(self.n_iter_no_change, (int, np.integer))
                and self.n_iter_no_change >= 1):
            raise ValueError(f"n_iter_no_change must be a positive int, got "
                             f"{self.n_iter_no_change!r}")
        if self.verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose must be 0, 1 or 2, got {self.verbose!r}")
        _dtype_of(self.dtype)
        _checkpoint.check_params(self)

    def _validate_X(self, X, reset):
        tokens = self.embedding_dim is not None
        x, lengths, fmt = check_sequences(
            X, n_timesteps=self.n_timesteps, dtype=_dtype_of(self.dtype), tokens=tokens,
            estimator=self, reset=reset)
        n_features = 1 if tokens else x.shape[2]
        if reset:
            self.n_features_in_ = n_features
        elif n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        return x, lengths, fmt

    def _make_config(self, x, n_outputs):
        tokens = self.embedding_dim is not None
        vocab = None
        if tokens:
            vocab = self.vocab_size if self.vocab_size is not None else int(x.max()) + 1
        return make_config(
            n_features=None if tokens else x.shape[2], vocab_size=vocab,
            embedding_dim=self.embedding_dim, cell=self.cell, activation=self.activation,
            reset_after=self.reset_after, units=self.units, num_layers=self.num_layers,
            bidirectional=self.bidirectional, head=list(self.head or ()),
            head_activation=self.head_activation, n_outputs=n_outputs,
            output=self._output_mode, dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout)

    def _network(self, backend=None):
        return Network(self.network_config_, flat=self.flat_params_,
                       backend=self.backend if backend is None else backend,
                       n_threads=self._n_threads())

    @property
    def network_(self):
        """The fitted :class:`~fastseq.network.Network` (wraps ``flat_params_``, no copy)."""
        check_is_fitted(self, "flat_params_")
        return self._network()

    @property
    def _rng(self):
        """The Generator that draws shuffles and dropout masks: the live one during ``fit``,
        else a new one at the saved ``_rng_state`` (where the last fit left it)."""
        live = self.__dict__.get("_live_rng")
        if live is not None:
            return live
        state = self.__dict__.get("_rng_state")
        if state is None:
            raise AttributeError("_rng: the estimator is not fitted")
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        return rng

    @property
    def params_(self):
        """``{name: array}`` views of the fitted parameters, PyTorch names (see network.py)."""
        return self.network_.params

    # ------------------------------------------------------------------ training
    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None,
             resume_from=None):
        try:
            return self._fit_impl(X, y, sample_weight, incremental, classes, resume_from)
        finally:
            for name in _TRANSIENT:
                if name != "_tbptt":                   # TextGenerator's, popped by it
                    self.__dict__.pop(name, None)      # never part of the fitted state

    def _fit_impl(self, X, y, sample_weight, incremental, classes, resume_from=None):
        self._validate_params()
        ckpt = None
        if resume_from is not None:                  # checked before any work on X
            ckpt = _checkpoint.read(resume_from, self)
        fitted = hasattr(self, "flat_params_")
        first = ckpt is not None or not fitted or not (incremental or self.warm_start)
        if incremental and not fitted and self._is_classifier and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        shape = getattr(X, "shape", ())
        if len(shape) == 3 and self.embedding_dim is None:       # sizes known: check early
            n0, T0 = shape[:2]
            b0 = min(200 if self.batch_size == "auto" else self.batch_size, n0)
            check_batch_memory(self.cell, self.units, self.num_layers, self.bidirectional,
                               T0, b0, _dtype_of(self.dtype).itemsize, training=True,
                               input_elements=np.prod(shape, dtype=float))
        x, lengths, fmt = self._validate_X(X, reset=first)
        if len(shape) != 3 and self.embedding_dim is None:       # sizes known now (lists)
            check_batch_memory(self.cell, self.units, self.num_layers, self.bidirectional,
                               x.shape[0], min(200 if self.batch_size == "auto"
                                               else self.batch_size, x.shape[1]),
                               x.itemsize, training=True)
        # one target (or target sequence) per sequence: classifiers, taggers, regressors
        # (TextGenerator builds its targets from X itself)
        one_per_sequence = isinstance(self, (ClassifierMixin, RegressorMixin))
        n_y = len(y) if hasattr(y, "__len__") and not isinstance(y, str) else None
        if one_per_sequence and n_y is not None and n_y != x.shape[1]:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: X "
                             f"has {x.shape[1]} sequences but y has {n_y} entries")
        targets, n_outputs, class_w = self._validate_targets(y, lengths, fmt, reset=first,
                                                             classes=classes)
        t_arr = targets[0] if isinstance(targets, tuple) else targets
        if t_arr.dtype.kind == "f" and not np.isfinite(t_arr).all():
            raise ValueError(f"y holds values too large for dtype={self.dtype!r} (they "
                             "overflow to inf); scale y")
        n = x.shape[1]
        sw = None
        if sample_weight is not None:
            sw = _check_sample_weight(sample_weight, lengths, dtype=np.float64,
                                      ensure_non_negative=True)
        weights = sw
        if class_w is not None:
            weights = class_w if weights is None else weights * class_w
        dtype = _dtype_of(self.dtype)
        if self.embedding_dim is not None and not first:
            vocab = self.network_config_["vocab_size"]
            if x.size and x.max() >= vocab:
                raise ValueError(f"token ids must be < vocab_size={vocab}")

        self._data_sha256 = None
        if ckpt is not None or (self.checkpoint_path is not None and not incremental):
            self._data_sha256 = _checkpoint.fingerprint(x, lengths, targets, weights)
        self._split_seed = None
        if ckpt is not None:
            rng = _checkpoint.restore(self, ckpt, self._make_config(x, n_outputs),
                                      self._data_sha256)
            self._split_seed = ckpt.split_seed
        elif first:
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            rng = np.random.default_rng(seed)
            self.network_config_ = self._make_config(x, n_outputs)
            net = Network(self.network_config_, dtype=dtype, backend=self.backend,
                          n_threads=self._n_threads())
            net.init_weights(rng)
            self.flat_params_ = net.flat
            self._optimizer_state = None
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self.history_ = []
            self.best_loss_ = np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self._no_improvement_count = 0
        else:
            rng = np.random.default_rng()
            rng.bit_generator.state = self._rng_state
        self._live_rng = rng
        net = self._network()

        if self._optimizer_state is None or self._optimizer_state["name"] != self.solver:
            optimizer = make_optimizer(
                self.solver, net.n_params, dtype=net.dtype, learning_rate=self.learning_rate_init,
                decay=self.learning_rate_decay, momentum=self.momentum,
                nesterov=self.nesterovs_momentum, beta_1=self.beta_1, beta_2=self.beta_2,
                epsilon=self.epsilon)
            start_opt = optimizer.get_state()
        else:
            optimizer = Optimizer.from_state(self._optimizer_state)
            optimizer.learning_rate = float(self.learning_rate_init)
            # the optimizer's state at the start is the saved one: its buffers (a snapshot
            # nothing writes to) serve as the epoch-start copy too, saving a copy per call
            start_opt = dict(self._optimizer_state, hyper=optimizer._hyper())

        early = self.early_stopping and not incremental
        val = None
        if early:
            train_idx, val_idx = self._split(n, targets, lengths)
            val = (x[:, val_idx], lengths[val_idx], self._take(targets, val_idx, None))
            x, lengths = x[:, train_idx], lengths[train_idx]
            targets = self._take(targets, train_idx, None)
            weights = None if weights is None else weights[train_idx]
            n = len(train_idx)
            if self.best_validation_score_ is None:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
        if weights is not None and not np.any(weights > 0):
            raise ValueError("the sample weights (times class weights) of the training "
                             "samples are all zero")

        batch_size = min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)
        if self.batch_size != "auto" and self.batch_size > n and self.verbose:
            warnings.warn("Got batch_size larger than the sample size; it is clipped")
        l2_mask = (net.regularized_mask() if (self.alpha > 0 or self.clip_norm is not None)
                   else None)
        max_iter = 1 if incremental else self.max_iter
        self._fit_start = self.n_iter_
        self._best_flat = None
        converged = False
        if ckpt is not None:                   # the epochs the interrupted fit had left
            self._fit_start = ckpt.fit_start
            max_iter = max(0, self.max_iter - (self.n_iter_ - ckpt.fit_start))
            self._best_flat = ckpt.best_flat
            converged = ckpt.converged

        # snapshots for a clean stop: the weights and optimizer state at the start of the
        # running epoch (= the end of the last completed one) and the weights before the
        # latest update (what a diverging update is rolled back to: docs/robustness.md)
        epoch_flat = net.flat.copy()
        epoch_opt = start_opt
        # written whole by every optimizer step (its backup), read only after one: no copy
        step_flat = np.empty_like(net.flat)
        start = (self.n_iter_, self.t_, len(self.loss_curve_),
                 None if self.validation_scores_ is None else len(self.validation_scores_))
        try:
            self._run_epochs(net, optimizer, x, lengths, targets, weights, n, batch_size,
                             l2_mask, max_iter, incremental, early, val, epoch_flat,
                             epoch_opt, step_flat, converged)
        except KeyboardInterrupt:
            completed = self._n_completed
            net.flat[...] = epoch_flat             # no half-trained epoch stays in the model
            # an interrupt between the epoch's counters and its history record: roll back
            self.n_iter_, self.t_ = start[0] + completed, start[1] + completed * n
            del self.loss_curve_[start[2] + completed:]
            if start[3] is not None:
                del self.validation_scores_[start[3] + completed:]
            self._optimizer_state = self._epoch_opt
            # the generator where the last completed epoch left it: resuming (warm start or
            # a checkpoint) repeats the interrupted epoch's shuffle and dropout masks
            self._rng_state = self._epoch_rng
            if completed == 0:
                raise
            best = self._best_flat
            if self.checkpoint_path is not None and not incremental:
                self._write_checkpoint(self._epoch_opt, self._epoch_rng, False)
            if early and best is not None:
                net.flat[...] = best
                self.best_loss_ = None
            warnings.warn(f"fit interrupted by KeyboardInterrupt after {completed} completed "
                          f"epoch(s) (n_iter_={self.n_iter_}); the model keeps the "
                          + ("best validation weights" if early and best is not None
                             else "weights of the last completed epoch")
                          + " and history_", FitInterruptedWarning, stacklevel=3)
            self._no_improvement_count = 0
            return self
        except TrainingDivergedError:
            self._optimizer_state = self._epoch_opt
            self._rng_state = self._live_rng.bit_generator.state
            raise
        return self

    def _run_epochs(self, net, optimizer, x, lengths, targets, weights, n, batch_size,
                    l2_mask, max_iter, incremental, early, val, epoch_flat, epoch_opt,
                    step_flat, converged=False):
        best_flat = self._best_flat
        stepped = False                 # step_flat holds the weights before an update
        self._n_completed = 0
        self._epoch_opt = epoch_opt
        self._epoch_rng = self._live_rng.bit_generator.state
        with self._threads_ctx():
            for _ in range(0 if converged else max_iter):
                epoch = self.n_iter_ + 1
                self._epoch_rng = self._live_rng.bit_generator.state
                t0 = time.perf_counter()
                order = self._live_rng.permutation(n) if self.shuffle else np.arange(n)
                n_batches = -(-n // batch_size)
                progress = _Progress(int(self.verbose), n_batches, epoch,
                                     self.max_iter if not incremental else epoch)
                loss_sum, weight_sum = 0.0, 0.0
                for k, start in enumerate(range(0, n, batch_size)):
                    idx = order[start:start + batch_size]
                    lb = lengths[idx]
                    Tb = max(int(lb.max()), 1)
                    xb = x[:Tb, idx]
                    wb = None if weights is None else weights[idx]
                    out, cache = net.forward_train(xb, lb, rng=self._live_rng, training=True)
                    loss, d_out, total = self._batch_loss(out, self._take(targets, idx, Tb),
                                                          wb, lb)
                    if total <= 0:
                        continue
                    if not np.isfinite(loss):
                        # the weights the last update made give a non-finite loss: undo it
                        # (none yet in this call: the weights are those it started from)
                        if stepped:
                            net.flat[...] = step_flat
                        self._diverged("loss", epoch, k + 1, n_batches)
                    grad = net.backward(cache, d_out)
                    scale = 1.0
                    if l2_mask is not None:
                        # one pass: grad += alpha/total * W (weights only) and both norms
                        grad_sq, weight_sq = add_l2_and_norms(grad, net.flat, l2_mask,
                                                              self.alpha / total)
                        loss += 0.5 * self.alpha * weight_sq / total
                        norm = np.sqrt(grad_sq)
                        if self.clip_norm is not None and norm > self.clip_norm:
                            scale = self.clip_norm / norm
                    # one pass: step_flat = the weights before the update (what a bad
                    # update, or a non-finite loss on the next batch, rolls back to), the
                    # update, and the finiteness of the gradient and of the new weights
                    grad_ok, weights_ok = optimizer.step(
                        net.flat, grad, scale, backup=step_flat,
                        n_threads=resolve_threads(net.n_threads))
                    stepped = True
                    if not (grad_ok and weights_ok):
                        net.flat[...] = step_flat          # roll the bad update back
                        self._diverged("gradient" if not grad_ok else "weight update",
                                       epoch, k + 1, n_batches)
                    bw = len(idx) if wb is None else float(wb.sum())
                    loss_sum += loss * bw
                    weight_sum += bw
                    progress.update(k + 1, loss_sum / max(weight_sum, 1e-300), start + len(idx))
                epoch_loss = loss_sum / max(weight_sum, 1e-300)
                if not np.isfinite(epoch_loss):
                    self._diverged("epoch loss", epoch, n_batches, n_batches)
                self.n_iter_ += 1
                self.t_ += n
                self.loss_curve_.append(epoch_loss)
                elapsed = time.perf_counter() - t0
                record = dict(epoch=self.n_iter_, loss=epoch_loss, time=elapsed,
                              samples_per_s=n / max(elapsed, 1e-9),
                              learning_rate=optimizer.current_lr())
                if incremental:
                    self.best_loss_ = min(self.best_loss_, epoch_loss)
                    self.history_.append(record)
                    progress.end(record)
                    self._n_completed += 1
                    break
                if early:
                    score = self._validation_score(net, *val)
                    record["val_score"] = score
                    self.validation_scores_.append(score)
                    if score < self.best_validation_score_ + self.tol:
                        self._no_improvement_count += 1
                    else:
                        self._no_improvement_count = 0
                    if score > self.best_validation_score_:
                        self.best_validation_score_ = score
                        best_flat = net.flat.copy()
                        self._best_flat = best_flat
                else:
                    if epoch_loss > self.best_loss_ - self.tol:
                        self._no_improvement_count += 1
                    else:
                        self._no_improvement_count = 0
                    if epoch_loss < self.best_loss_:
                        self.best_loss_ = epoch_loss
                self.history_.append(record)
                progress.end(record)
                self._n_completed += 1
                epoch_flat[...] = net.flat
                self._epoch_opt = optimizer.get_state()
                converged = self._no_improvement_count > self.n_iter_no_change
                if self.checkpoint_path is not None and (
                        converged or self._n_completed == max_iter
                        or self.n_iter_ % self.checkpoint_every == 0):
                    self._write_checkpoint(self._epoch_opt,
                                           self._live_rng.bit_generator.state, converged)
                if converged:
                    what = ("Validation score" if early else "Training loss")
                    if self.verbose:
                        print(f"{what} did not improve more than tol={self.tol} for "
                              f"{self.n_iter_no_change} consecutive epochs. Stopping.")
                    break
        if early:
            self.best_loss_ = None
            if best_flat is not None:
                net.flat[...] = best_flat
        if not incremental:
            self._no_improvement_count = 0
            if not converged:
                warnings.warn(f"Stochastic optimizer: maximum iterations ({self.max_iter}) "
                              "reached and the optimization hasn't converged yet.",
                              ConvergenceWarning)
        # the optimizer is not stepped again: its buffers become the saved state uncopied
        self._optimizer_state = optimizer.get_state(copy=False)
        # the generator's state as a dict of ints: the fitted state stays plain data
        self._rng_state = self._live_rng.bit_generator.state
        return self

    def _write_checkpoint(self, optimizer_state, rng_state, converged):
        """The state at the end of the last completed epoch -> ``checkpoint_path``."""
        _checkpoint.write(self, self.checkpoint_path, optimizer_state=optimizer_state,
                          rng_state=rng_state, best_flat=self._best_flat,
                          split_seed=self._split_seed, fit_start=self._fit_start,
                          converged=converged, data_sha256=self._data_sha256,
                          skip=_TRANSIENT)

    def _diverged(self, what, epoch, batch, n_batches):
        raise TrainingDivergedError(
            f"training diverged: the {what} is not finite (NaN or inf) at epoch {epoch}, "
            f"batch {batch}/{n_batches}; the model keeps its last finite weights. Lower "
            f"learning_rate_init (now {self.learning_rate_init!r}), set clip_norm (now "
            f"{self.clip_norm!r}), or scale X / y (e.g. fastseq.preprocessing.SequenceScaler)")

    def _split(self, n, targets, lengths):
        from sklearn.model_selection import train_test_split
        n_val = int(round(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"early_stopping needs at least one training and one validation "
                             f"sequence; got {n} sequences and validation_fraction="
                             f"{self.validation_fraction}")
        seed = self.__dict__.get("_split_seed")
        if seed is None:                     # (a resumed fit reuses the checkpoint's seed)
            seed = self._split_seed = int(self._live_rng.integers(np.iinfo(np.int32).max))
        stratify = self._stratify(targets)
        idx = np.arange(n)
        try:
            train_idx, val_idx = train_test_split(idx, test_size=n_val, random_state=seed,
                                                  stratify=stratify)
        except ValueError:
            train_idx, val_idx = train_test_split(idx, test_size=n_val, random_state=seed)
        return np.sort(train_idx), np.sort(val_idx)

    def _stratify(self, targets):
        return None

    # ------------------------------------------------------------------ prediction
    def _outputs(self, X, what="outputs"):
        """Network outputs for all of X, in batches; returns (array, lengths, fmt).

        ``what``: "outputs" (raw scores) or "features" (what the head reads)."""
        check_is_fitted(self, "flat_params_")
        cfg = self.network_config_
        shape = getattr(X, "shape", ())
        if len(shape) == 3 and cfg["input"] == "dense":      # sizes known: check early
            n0, T0 = shape[:2]
            check_batch_memory(cfg["cell"], cfg["units"], cfg["num_layers"],
                               cfg["bidirectional"], T0, min(PREDICT_BATCH, n0),
                               _dtype_of(self.dtype).itemsize, training=False,
                               input_elements=np.prod(shape, dtype=float))
        x, lengths, fmt = self._validate_X(X, reset=False)
        if len(shape) != 3 and cfg["input"] == "dense":       # sizes known now (lists)
            check_batch_memory(cfg["cell"], cfg["units"], cfg["num_layers"],
                               cfg["bidirectional"], x.shape[0], min(PREDICT_BATCH, x.shape[1]),
                               x.itemsize, training=False)
        net = self._network()
        n = x.shape[1]
        chunks = []
        with self._threads_ctx():
            for start in range(0, n, PREDICT_BATCH):
                lb = lengths[start:start + PREDICT_BATCH]
                Tb = max(int(lb.max()), 1)
                xb = x[:Tb, start:start + PREDICT_BATCH]
                if what == "features":
                    out = net.features(xb, lb)
                else:
                    out = net.forward(xb, lb, training=False)
                chunks.append(out)
        if self._output_mode == "many-to-one":
            result = np.concatenate(chunks, axis=0)
        else:
            T = x.shape[0]
            K = chunks[0].shape[-1]
            result = np.zeros((T, n, K), dtype=chunks[0].dtype)
            for start, out in zip(range(0, n, PREDICT_BATCH), chunks):
                result[:out.shape[0], start:start + out.shape[1]] = out
        return result, lengths, fmt


PARAMS_DOC = """
    Architecture
    ------------
    cell : {"lstm", "gru", "rnn"} or a name such as "gru_classic", default="lstm"
    units : int, default=32            hidden size H of every recurrent layer
    num_layers : int, default=1
    bidirectional : bool, default=False
    activation : {"tanh", "relu"}, default="tanh"   the cell activation
    reset_after : bool, default=True   GRU only: PyTorch form (True) or Keras classic form
    dropout : float, default=0.0       between recurrent layers, on the head input and after
                                       each hidden dense layer (inverted dropout)
    recurrent_dropout : float, default=0.0   mask on h_{t-1} in the recurrent product
    head : tuple of int, default=()    hidden dense layers between the recurrent stack and
                                       the output layer
    head_activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
    embedding_dim : int or None        if set, X holds token ids fed through a trainable
                                       embedding of this size
    vocab_size : int or None           token input: number of ids (default: max id + 1)

    Training (names as in MLPClassifier where they mean the same)
    --------
    solver : {"adam", "sgd", "rmsprop"}, default="adam"
    learning_rate_init : float, default=1e-3
    learning_rate_decay : float, default=0.0   lr_t = lr / (1 + decay * t), t = updates
    momentum, nesterovs_momentum : SGD;  beta_1, beta_2, epsilon : Adam
    batch_size : int or "auto", default="auto"   "auto" = min(200, n_samples)
    max_iter : int, default=200        epochs
    alpha : float, default=1e-4        L2 penalty on the weight matrices (not biases),
                                       0.5 * alpha * ||W||^2 / batch weight (MLP convention)
    clip_norm : float or None          clip the global gradient norm
    tol, n_iter_no_change : stop when the training loss (or the validation score with
                            early_stopping) has not improved by tol for n_iter_no_change epochs
    early_stopping : bool, default=False   hold out validation_fraction of the training
                                       sequences and restore the best weights at the end
    validation_fraction : float, default=0.1
    shuffle : bool, default=True
    random_state : int, RandomState or None   initialisation, shuffling, dropout masks
    warm_start : bool, default=False   fit() continues from the previous weights
    verbose : {0, 1, 2}                1: live progress bar, 2: one line per epoch (Keras)
    checkpoint_path : str, os.PathLike or None, default=None   fit writes a checkpoint here
                                       (atomic; a safe model file plus the optimizer, random
                                       generator and early-stopping state) every
                                       checkpoint_every epochs, at its last epoch and on
                                       Ctrl-C; fit(..., resume_from=path) continues from it
    checkpoint_every : int, default=1  epochs between checkpoints
    backend : str, default="auto"      recurrent engine, see fastseq.backends
    n_jobs : int or None               threads (None: NUMBA_NUM_THREADS / OMP_NUM_THREADS /
                                       all CPUs)
    dtype : {"float32", "float64"}, default="float32"   parameter and compute precision
    n_timesteps : int or None          2-D X holds rows of n_timesteps * n_features

    Input: a 3-D array (n, T, F), a list of (T_i, F) arrays, or 2-D (n, F) (one step each)
    / (n, T*F) with n_timesteps; see fastseq.preprocessing.

    Attributes
    ----------
    n_features_in_ : features per time step
    flat_params_ : 1-D array, all parameters; network_config_ : dict; network_ : Network
    params_ : dict name -> array view (PyTorch names)
    loss_curve_ : list of per-epoch training losses (with the L2 penalty)
    validation_scores_ : list or None;  best_validation_score_ : float or None
    best_loss_ : float or None (None with early_stopping, as in MLPClassifier)
    n_iter_ : epochs run;  t_ : training sequences seen
    history_ : list of per-epoch dicts (epoch, loss, time, samples_per_s, learning_rate,
               val_score)
"""
