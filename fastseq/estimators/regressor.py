"""SequenceRegressor: one (multi-output) value per sequence (many-to-one)."""
from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_array, check_consistent_length

from ..forecasting import ForecastMixin
from ..losses import REGRESSION_LOSSES
from .base import PARAMS_DOC, BaseSequenceEstimator


class SequenceRegressor(ForecastMixin, RegressorMixin, BaseSequenceEstimator):
    __doc__ = """Recurrent regressor: one value, or a vector of ``n_outputs_`` values, per
    sequence.

    Parameters
    ----------
    loss : ('squared_error', 'absolute_error', 'huber'), default="squared_error"
    """ + PARAMS_DOC + """
    n_outputs_ : int
    """

    _output_mode = "many-to-one"

    def __init__(self, *, cell="lstm", units=32, num_layers=1, bidirectional=False,
                 activation="tanh", reset_after=True, dropout=0.0, recurrent_dropout=0.0,
                 head=(), head_activation="relu", embedding_dim=None, vocab_size=None,
                 solver="adam", learning_rate_init=1e-3, learning_rate_decay=0.0,
                 momentum=0.9, nesterovs_momentum=True, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, batch_size="auto", max_iter=200, alpha=1e-4, clip_norm=None,
                 tol=1e-4, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, shuffle=True, random_state=None, warm_start=False,
                 verbose=0, backend="auto", n_jobs=None, dtype="float32", n_timesteps=None,
                 loss="squared_error", checkpoint_path=None, checkpoint_every=1):
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

        self.loss = loss
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _validate_targets(self, y, lengths, fmt, reset, classes=None):
        if self.loss not in REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {tuple(REGRESSION_LOSSES)}, got "
                             f"{self.loss!r}")
        if y is None:
            raise ValueError("SequenceRegressor requires y to be passed, but the target y is None")
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim > 2:
            raise ValueError(f"y has shape {y.shape}; expected (n,) or (n, n_outputs)")
        check_consistent_length(lengths, y)
        y2 = y.reshape(len(y), -1)
        if reset:
            self.n_outputs_ = y2.shape[1]
            self._y_1d = y.ndim == 1
        elif y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} outputs; the model was fitted with "
                             f"{self.n_outputs_}")
        return y2.astype(self.dtype), self.n_outputs_, None

    def _take(self, targets, idx, Tb):
        return targets[idx]

    def _batch_loss(self, out, y, w, lengths):
        loss, d = REGRESSION_LOSSES[self.loss](out, y, w)
        return loss, d, float(len(y) if w is None else w.sum())

    def _validation_score(self, net, x, lengths, y):
        from sklearn.metrics import r2_score
        pred = net.forward(x, lengths, training=False)
        return float(r2_score(y, pred))

    def fit(self, X, y, sample_weight=None, resume_from=None):
        """Train on sequences X and targets y.

        ``resume_from``: a checkpoint written by a fit with ``checkpoint_path`` (same
        parameters and data): the training continues from it up to ``max_iter``
        epochs in all (see fastseq.estimators.checkpoint).
        """
        return self._fit(X, y, sample_weight, resume_from=resume_from)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """``(n,)`` if fitted with 1-D y, else ``(n, n_outputs_)`` (float64)."""
        out, _, _ = self._outputs(X)
        out = out.astype(np.float64)
        return out.ravel() if self._y_1d else out

    def transform(self, X):
        """Final hidden state of each sequence, ``(n, D * units)``: what the head reads."""
        return self._outputs(X, what="features")[0]
