"""SequenceTagger: one label per time step (many-to-many), ragged targets."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.exceptions import DataConversionWarning

from ..losses import softmax, softmax_cross_entropy
from ..preprocessing import restore_format
from .base import PARAMS_DOC, BaseSequenceEstimator
from .classifier import class_weights_per_code, encode_labels


class SequenceTagger(ClassifierMixin, BaseSequenceEstimator):
    __doc__ = """Recurrent tagger: a label for every step of every sequence.

    ``y`` mirrors ``X``: a list of 1-D label arrays (one per sequence, ``len(y[i]) ==
    len(X[i])``), an ``(n, T)`` array for 3-D / ``n_timesteps`` input, or ``(n,)`` for 2-D
    one-step input. ``predict`` returns labels in the same layout, ``predict_proba`` adds a
    last axis of ``n_classes``; ``score`` is the accuracy over all valid steps.

    Parameters
    ----------
    class_weight : dict, "balanced" or None   per-step loss weight of each class
    """ + PARAMS_DOC + """
    classes_ : array of labels
    """

    _output_mode = "many-to-many"
    _is_classifier = True

    def __init__(self, *, cell="lstm", units=32, num_layers=1, bidirectional=False,
                 activation="tanh", reset_after=True, dropout=0.0, recurrent_dropout=0.0,
                 head=(), head_activation="relu", embedding_dim=None, vocab_size=None,
                 solver="adam", learning_rate_init=1e-3, learning_rate_decay=0.0,
                 momentum=0.9, nesterovs_momentum=True, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, batch_size="auto", max_iter=200, alpha=1e-4, clip_norm=None,
                 tol=1e-4, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, shuffle=True, random_state=None, warm_start=False,
                 verbose=0, backend="auto", n_jobs=None, dtype="float32", n_timesteps=None,
                 class_weight=None, checkpoint_path=None, checkpoint_every=1):
        self.cell = cell
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.activation = activation
        self.reset_after = reset_after
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.head = head
        self.head_activation = head_activation
        self.embedding_dim = embedding_dim
        self.vocab_size = vocab_size
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.learning_rate_decay = learning_rate_decay
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.alpha = alpha
        self.clip_norm = clip_norm
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.backend = backend
        self.n_jobs = n_jobs
        self.dtype = dtype
        self.n_timesteps = n_timesteps

        self.class_weight = class_weight
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every

    def _validate_targets(self, y, lengths, fmt, reset, classes=None):
        if y is None:
            raise ValueError("SequenceTagger requires y to be passed, but the target y is None")
        n, T = len(lengths), int(lengths.max()) if len(lengths) else 0
        if fmt.kind == "2d":
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[1] == 1:
                warnings.warn("A column-vector y was passed when a 1d array was expected. "
                              "Please change the shape of y to (n_samples, ), for example "
                              "using ravel().", DataConversionWarning, stacklevel=3)
                y = y.ravel()
            if y.ndim != 1 or len(y) != n:
                raise ValueError(f"y has shape {y.shape}; one-step input X needs ({n},)")
            steps = [y[i:i + 1] for i in range(n)]
        elif isinstance(y, (list, tuple)):
            if len(y) != n:
                raise ValueError(f"y has {len(y)} sequences but X has {n}")
            steps = [np.asarray(s).ravel() for s in y]
        else:
            y = np.asarray(y)
            if y.ndim != 2 or y.shape[0] != n:
                raise ValueError(f"y has shape {y.shape}; expected ({n}, T) or a list of "
                                 "1-D label arrays")
            steps = [y[i, :lengths[i]] for i in range(n)]
        for i, s in enumerate(steps):
            if len(s) != lengths[i]:
                raise ValueError(f"y[{i}] has {len(s)} labels but X[{i}] has "
                                 f"{lengths[i]} steps")
        flat = np.concatenate(steps) if steps else np.array([])
        codes_flat = encode_labels(self, flat, reset, classes)
        padded = np.zeros((max(T, 1), n), dtype=np.int64)
        valid = np.arange(max(T, 1))[:, None] < lengths[None, :]
        padded.T[valid.T] = codes_flat            # sequence-major order = concatenation order
        per_code = class_weights_per_code(self, codes_flat)
        step_w = None if per_code is None else per_code[padded]   # [T, n] class weights
        return (padded, step_w), len(self.classes_), None

    def _take(self, targets, idx, Tb):
        codes, step_w = targets
        end = codes.shape[0] if Tb is None else Tb
        return (codes[:end, idx], None if step_w is None else step_w[:end, idx])

    def _stratify(self, targets):
        return None

    def _batch_loss(self, out, targets, w, lengths):
        codes, step_w = targets
        Tb = out.shape[0]
        valid = np.arange(Tb)[:, None] < lengths[None, :]
        rows = out[valid]
        wr = None if w is None else np.broadcast_to(w[None, :], valid.shape)[valid]
        if step_w is not None:
            wr = step_w[valid] if wr is None else wr * step_w[valid]
        loss, d_rows = softmax_cross_entropy(rows, codes[valid], wr)
        d_out = np.zeros_like(out)
        d_out[valid] = d_rows
        return loss, d_out, float(len(rows) if wr is None else wr.sum())

    def _validation_score(self, net, x, lengths, targets):
        codes = targets[0]
        logits = net.forward(x, lengths, training=False)
        valid = np.arange(logits.shape[0])[:, None] < lengths[None, :]
        return float(np.mean(np.argmax(logits, axis=2)[valid] == codes[:logits.shape[0]][valid]))

    def fit(self, X, y, sample_weight=None, resume_from=None):
        """``sample_weight`` weighs every step of a sequence.

        ``resume_from``: a checkpoint written by a fit with ``checkpoint_path`` (same
        parameters and data): the training continues from it up to ``max_iter``
        epochs in all (see fastseq.estimators.checkpoint).
        """
        return self._fit(X, y, sample_weight, resume_from=resume_from)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X):
        logits, lengths, fmt = self._outputs(X)
        return restore_format(softmax(logits.astype(np.float64)), lengths, fmt)

    def predict(self, X):
        logits, lengths, fmt = self._outputs(X)
        labels = self.classes_[np.argmax(logits, axis=2)]
        return restore_format(labels, lengths, fmt)

    def transform(self, X):
        """The last recurrent layer's output at every step, in the layout of X."""
        feats, lengths, fmt = self._outputs(X, what="features")
        return restore_format(feats, lengths, fmt)

    def score(self, X, y, sample_weight=None):
        """Accuracy over all valid steps (each step weighted by its sequence's weight).

        ``y`` must mirror ``X`` as in ``fit`` (a list with ``len(y[i]) == len(X[i])``, or an
        array of the shape ``predict`` returns); labels outside ``classes_`` count as errors.
        """
        pred = self.predict(X)
        p, t, w = _flat_steps(pred, y, sample_weight)
        if p.size == 0:
            raise ValueError("X has no time steps to score (every sequence is empty)")
        if w is not None and not w.sum() > 0:
            raise ValueError("sample_weight is zero for every scored step")
        return float(np.average(p == t, weights=w))


def _flat_steps(pred, y, sample_weight):
    """(predicted labels, true labels, step weights or None), flat, after checking that y
    (and sample_weight) match X's layout; ValueError naming the argument otherwise."""
    n = len(pred)
    if y is None:
        raise ValueError("SequenceTagger.score requires y; got None")
    if isinstance(pred, list):
        if not hasattr(y, "__len__") or isinstance(y, str) or len(y) != n:
            raise ValueError(f"y must hold one label sequence per sequence of X: X has {n} "
                             f"sequences, y has {len(y) if hasattr(y, '__len__') else y!r}")
        t_seqs = [np.asarray(s).ravel() for s in y]
        for i, (ps, ts) in enumerate(zip(pred, t_seqs)):
            if len(ts) != len(ps):
                raise ValueError(f"y[{i}] has {len(ts)} labels but X[{i}] has {len(ps)} steps")
        p = np.concatenate(pred) if n else np.array([])
        t = np.concatenate(t_seqs) if n else np.array([])
        steps = [len(ps) for ps in pred]
    else:
        p, t = np.asarray(pred), np.asarray(y)
        if t.shape != p.shape:
            raise ValueError(f"y has shape {t.shape}; X needs labels of shape {p.shape}")
        steps = [int(np.prod(p.shape[1:], dtype=np.int64))] * n
        p, t = p.ravel(), t.ravel()
    if t.dtype.kind in "fc" and not np.isfinite(t).all():
        raise ValueError("Input y contains NaN or infinity.")
    if t.dtype.kind not in "fciubUSO":
        raise TypeError(f"y has dtype {t.dtype}; expected class labels")
    w = None
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=float)
        if sw.shape != (n,):
            raise ValueError(f"sample_weight has shape {sw.shape}; expected ({n},), one "
                             "weight per sequence")
        if not np.isfinite(sw).all() or (sw < 0).any():
            raise ValueError("sample_weight must be finite and non-negative")
        w = np.repeat(sw, steps)
    return p, t, w
