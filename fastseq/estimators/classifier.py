"""SequenceClassifier: one label per sequence (many-to-one), softmax cross-entropy."""
from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import assert_all_finite, check_consistent_length, column_or_1d

from ..losses import softmax, softmax_cross_entropy
from .base import PARAMS_DOC, BaseSequenceEstimator


def encode_labels(estimator, y, reset, classes=None):
    """Validate class labels and map them to codes 0..K-1 (sets ``classes_`` on reset)."""
    y = np.asarray(y)
    if y.dtype.kind == "f":
        assert_all_finite(y, input_name="y")
    check_classification_targets(y)
    if reset:
        labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
        estimator.classes_ = labels
    unknown = np.setdiff1d(np.unique(y), estimator.classes_)
    if unknown.size:
        raise ValueError(f"y contains labels {unknown.tolist()} not in classes_ "
                         f"{estimator.classes_.tolist()}")
    return np.searchsorted(estimator.classes_, y).astype(np.int64)


def class_weights_per_code(estimator, codes):
    """``[K]`` weights of ``class_weight`` ("balanced", a dict, or None -> None)."""
    cw = estimator.class_weight
    if cw is None:
        return None
    K = len(estimator.classes_)
    if isinstance(cw, str):
        if cw != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {cw!r}")
        present = np.unique(codes)
        weights = np.ones(K)
        weights[present] = compute_class_weight("balanced", classes=present, y=codes)
        return weights
    weights = np.ones(K)
    for label, w in cw.items():
        where = np.flatnonzero(estimator.classes_ == label)
        if where.size:
            weights[where[0]] = float(w)
    return weights


class SequenceClassifier(ClassifierMixin, BaseSequenceEstimator):
    __doc__ = """Recurrent classifier: one label per sequence.

    The head reads each sequence's final state (see :mod:`fastseq.network`) and a softmax
    over ``classes_`` gives ``predict_proba``. ``transform`` returns that final state.

    Parameters
    ----------
    class_weight : dict, "balanced" or None
        Multiplies the loss of each sequence by its class' weight (combined with
        ``sample_weight``).
    """ + PARAMS_DOC + """
    classes_ : array of labels
    """

    _output_mode = "many-to-one"
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

    # ------------------------------------------------------------ targets and loss
    def _validate_targets(self, y, lengths, fmt, reset, classes=None):
        if y is None:
            raise ValueError("SequenceClassifier requires y to be passed, but the target y is None")
        y = column_or_1d(y, warn=True)
        check_consistent_length(lengths, y)
        codes = encode_labels(self, y, reset, classes)
        per_code = class_weights_per_code(self, codes)
        row_w = None if per_code is None else per_code[codes]
        return codes, len(self.classes_), row_w

    def _take(self, targets, idx, Tb):
        return targets[idx]

    def _stratify(self, targets):
        return targets

    def _batch_loss(self, out, codes, w, lengths):
        loss, d = softmax_cross_entropy(out, codes, w)
        return loss, d, float(len(codes) if w is None else w.sum())

    def _validation_score(self, net, x, lengths, codes):
        logits = net.forward(x, lengths, training=False)
        return float(np.mean(np.argmax(logits, axis=1) == codes))

    # ------------------------------------------------------------ API
    def fit(self, X, y, sample_weight=None, resume_from=None):
        """Train on sequences X (see the class docstring for the input forms).

        ``resume_from``: a checkpoint written by a fit with ``checkpoint_path`` (same
        parameters and data): the training continues from it up to ``max_iter``
        epochs in all (see fastseq.estimators.checkpoint).
        """
        return self._fit(X, y, sample_weight, resume_from=resume_from)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y); ``classes`` is required on the first call."""
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X):
        """``(n, n_classes)`` class probabilities (float64)."""
        logits, _, _ = self._outputs(X)
        return softmax(logits.astype(np.float64))

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        logits, _, _ = self._outputs(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def transform(self, X):
        """Final hidden state of each sequence, ``(n, D * units)``: what the head reads."""
        return self._outputs(X, what="features")[0]
