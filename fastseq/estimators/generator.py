"""TextGenerator: a next-token language model (word or character level) with generation.

Two ways to train, both on the shared training loop of :class:`BaseSequenceEstimator`:

* ``window=N`` (an int): every run of ``N`` consecutive tokens is a sequence whose label is
  the token after it (many-to-one, softmax over the vocabulary). Prediction reads the last
  ``N`` tokens of the context, exactly what the model saw in training.
* ``window=None``: full-sequence many-to-many training with truncated BPTT. The token stream
  (all texts, concatenated) is split into ``batch_size`` parallel streams; each batch is the
  next ``bptt`` tokens of every stream, and the recurrent state at the end of a chunk is the
  initial state of the next chunk (carried, no gradient through it), so the model learns
  dependencies longer than one chunk. Every position predicts its next token.

Generation is streaming: the prompt is absorbed in one forward pass, then each new token costs
one step per layer through the backend's ``step()`` with the state carried
(:class:`~fastseq.forecasting.NetworkStepper`); a window model re-reads only its ``N``-token
window per new token.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._config import resolve_threads
from ..forecasting import NetworkStepper
from .._threads import blas_threads
from ..losses import log_softmax, softmax, softmax_cross_entropy
from ..network import Network, make_config
from ..text import Vocabulary, make_tokenizer
from .base import PARAMS_DOC, BaseSequenceEstimator

PREDICT_CHUNK = 256      # time steps per forward pass when scoring long texts


@contextlib.contextmanager
def _params_as(estimator, **values):
    """Set estimator attributes for the duration of a ``with`` block, then restore them."""
    saved = {k: getattr(estimator, k) for k in values}
    try:
        for k, v in values.items():
            setattr(estimator, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(estimator, k, v)


class _CarryingNetwork(Network):
    """Truncated BPTT: the base loop visits batches in order (``shuffle`` off) and batch
    ``j`` holds chunk ``j mod n_chunks`` of every stream, so the final state of one batch is
    the initial state of the next (no gradient flows through it); chunk 0 starts from zeros.
    Forward passes that are not training (validation) are not affected."""

    n_chunks = 0
    batch_index = 0
    carry = (None, None)

    def forward_train(self, x, lengths=None, masks=None, rng=None, training=True, h0=None,
                      c0=None, need_grad=True):
        if not training or not self.n_chunks:
            return super().forward_train(x, lengths, masks=masks, rng=rng,
                                         training=training, h0=h0, c0=c0,
                                         need_grad=need_grad)
        if self.batch_index % self.n_chunks == 0:
            self.carry = (None, None)
        out, cache = super().forward_train(x, lengths, masks=masks, rng=rng, training=True,
                                           h0=self.carry[0], c0=self.carry[1])
        self.carry = (cache["h_n"], cache["c_n"])
        self.batch_index += 1
        return out, cache


class TextGenerator(BaseSequenceEstimator):
    __doc__ = """Recurrent next-token language model (words or characters), with generation.

    Parameters
    ----------
    level : {"word", "char"}, default="word"
    lower : bool or None            lower-case the text (None: True for words, False for chars)
    min_count : int, default=1      rarer tokens become the unknown token ``"<unk>"``
    max_vocab : int or None         keep only the most frequent tokens
    window : int or None, default=3 N previous tokens per example (window training), or None
                                    for full-sequence training with truncated BPTT
    bptt : int, default=64          chunk length of truncated BPTT (``window=None``)
    embedding_dim : int, default=64
    batch_size : int or "auto", default=32   windows per batch; with ``window=None`` the
                                    number of parallel streams ("auto": 32)
    shuffle : bool, default=True    shuffle windows each epoch (``window=None`` always visits
                                    chunks in order, which carrying the state requires)
    early_stopping : bool           hold out ``validation_fraction`` of the windows (or the
                                    last chunks of every stream) and keep the weights with the
                                    best next-token accuracy on them
    """ + PARAMS_DOC.replace(
        "    bidirectional : bool, default=False\n", "").replace(
        "    embedding_dim : int or None        if set, X holds token ids fed through a "
        "trainable\n                                       embedding of this size\n", "").replace(
        "    vocab_size : int or None           token input: number of ids (default: max id "
        "+ 1)\n", "") + """
    tokenizer_ : WordTokenizer or CharTokenizer;  vocabulary_ : Vocabulary
    vocab_size_ : int (including the unknown token)
    n_streams_ : int (window=None: parallel streams of the last fit)

    Methods: ``fit(texts)``, ``partial_fit(texts)`` (one epoch, vocabulary kept),
    ``generate(prompt, n_tokens, temperature=1.0, top_k=None, random_state=None)``,
    ``predict_next(prompts)`` (next-token probabilities), ``score(texts)`` (next-token
    accuracy), ``perplexity(texts)``.
    """

    bidirectional = False          # a language model reads left to right
    n_timesteps = None

    def __init__(self, *, level="word", lower=None, min_count=1, max_vocab=None, window=3,
                 bptt=64, embedding_dim=64, cell="lstm", units=128, num_layers=1,
                 activation="tanh", reset_after=True, dropout=0.0, recurrent_dropout=0.0,
                 head=(), head_activation="relu", solver="adam", learning_rate_init=1e-3,
                 learning_rate_decay=0.0, momentum=0.9, nesterovs_momentum=True, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, batch_size=32, max_iter=50, alpha=0.0,
                 clip_norm=5.0, tol=1e-4, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10, shuffle=True, random_state=None, warm_start=False,
                 verbose=0, backend="auto", n_jobs=None, dtype="float32",
                 checkpoint_path=None, checkpoint_every=1):
        self.level = level
        self.lower = lower
        self.min_count = min_count
        self.max_vocab = max_vocab
        self.window = window
        self.bptt = bptt
        self.embedding_dim = embedding_dim
        self.cell = cell
        self.units = units
        self.num_layers = num_layers
        self.activation = activation
        self.reset_after = reset_after
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.head = head
        self.head_activation = head_activation
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
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every

    # ------------------------------------------------------------------ modes
    @property
    def _output_mode(self):
        return "many-to-one" if self.window is not None else "many-to-many"

    def _check_mode_params(self):
        if self.window is not None and (isinstance(self.window, (bool, np.bool_)) or
                                        not isinstance(self.window, (int, np.integer))
                                        or self.window < 1):
            raise ValueError(f"window must be a positive int or None, got {self.window!r}")
        if self.window is None and (isinstance(self.bptt, (bool, np.bool_)) or
                                    not isinstance(self.bptt, (int, np.integer))
                                    or self.bptt < 1):
            raise ValueError(f"bptt must be a positive int, got {self.bptt!r}")
        if isinstance(self.embedding_dim, (bool, np.bool_)) or \
                not isinstance(self.embedding_dim, (int, np.integer)) or self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive int, got "
                             f"{self.embedding_dim!r}")

    @staticmethod
    def _as_texts(texts, name="texts"):
        if isinstance(texts, str):
            return [texts]
        if isinstance(texts, (list, tuple)) and all(isinstance(t, str) for t in texts):
            return list(texts)
        raise TypeError(f"{name} must be a str or a list of str")

    def _encode_texts(self, texts):
        return [self.vocabulary_.encode(self.tokenizer_.tokenize(t)) for t in texts]

    # ------------------------------------------------------------------ training data
    def _windows(self, docs):
        """Windows of N ids ``(n, N)`` and the id after each ``(n,)``."""
        N = self.window
        xs, ys = [], []
        for ids in docs:
            if len(ids) > N:
                view = np.lib.stride_tricks.sliding_window_view(ids[:-1], N)
                xs.append(view)
                ys.append(ids[N:])
        if not xs:
            raise ValueError(f"no text has more than window={N} tokens; nothing to learn")
        return np.concatenate(xs), np.concatenate(ys)

    def _chunks(self, docs):
        """Streams cut into chunks, chunk-major: sequence ``k * S + s`` is chunk ``k`` of
        stream ``s``. Returns (inputs: (n, T) array or list of 1-D arrays, targets [T, n],
        S, number of chunks)."""
        stream = np.concatenate(docs) if docs else np.zeros(0, np.int64)
        if len(stream) < 2:
            raise ValueError("the texts hold fewer than 2 tokens; nothing to learn")
        S = 32 if self.batch_size == "auto" else int(self.batch_size)
        S = max(1, min(S, len(stream) - 1))
        per = (len(stream) - 1) // S                # tokens per stream (inputs)
        inputs = stream[:S * per].reshape(S, per)
        targets = stream[1:S * per + 1].reshape(S, per)
        T = min(int(self.bptt), per)
        n_chunks = -(-per // T)
        seqs, tgt = [], np.zeros((T, n_chunks * S), dtype=np.int64)
        for k in range(n_chunks):
            a, b = k * T, min((k + 1) * T, per)
            for s in range(S):
                seqs.append(inputs[s, a:b])
            tgt[:b - a, k * S:(k + 1) * S] = targets[:, a:b].T
        X = np.stack(seqs) if per % T == 0 else seqs
        return X, tgt, S, n_chunks

    # ------------------------------------------------------------------ base-class hooks
    def _make_config(self, x, n_outputs):
        V = self.vocab_size_
        return make_config(
            vocab_size=V, embedding_dim=self.embedding_dim, cell=self.cell,
            activation=self.activation, reset_after=self.reset_after, units=self.units,
            num_layers=self.num_layers, bidirectional=False, head=list(self.head or ()),
            head_activation=self.head_activation, n_outputs=V, output=self._output_mode,
            dropout=self.dropout, recurrent_dropout=self.recurrent_dropout)

    def _network(self, backend=None):
        plan = self.__dict__.get("_tbptt")
        if plan is None:
            return super()._network(backend)
        net = _CarryingNetwork(self.network_config_, flat=self.flat_params_,
                               backend=self.backend if backend is None else backend,
                               n_threads=self._n_threads())
        net.n_chunks = plan["n_chunks"]
        plan["net"] = net
        return net

    def _validate_targets(self, y, lengths, fmt, reset, classes=None):
        return y, self.vocab_size_, None

    def _take(self, targets, idx, Tb):
        plan = self.__dict__.get("_tbptt")
        if plan is not None and Tb is not None and plan.get("net") is not None:
            # guard: truncated BPTT needs batch j == chunk (j mod n_chunks) of all streams
            S, net = plan["S"], plan["net"]
            chunk = (net.batch_index - 1) % net.n_chunks
            if len(idx) != S or not np.array_equal(idx, np.arange(chunk * S, chunk * S + S)):
                raise RuntimeError("truncated BPTT: the training loop did not visit the "
                                   "chunks in order")
        if self.window is not None:
            return targets[idx]
        end = targets.shape[0] if Tb is None else Tb
        return targets[:end, idx]

    def _batch_loss(self, out, targets, w, lengths):
        if self.window is not None:
            loss, d = softmax_cross_entropy(out, targets, w)
            return loss, d, float(len(targets))
        valid = np.arange(out.shape[0])[:, None] < lengths[None, :]
        loss, d_rows = softmax_cross_entropy(out[valid], targets[valid])
        d_out = np.zeros_like(out)
        d_out[valid] = d_rows
        return loss, d_out, float(valid.sum())

    def _split(self, n, targets, lengths):
        plan = self.__dict__.get("_tbptt")
        if plan is None:
            return super()._split(n, targets, lengths)
        # hold out the last chunks of every stream: the training chunks stay in order
        S, n_chunks = plan["S"], plan["n_chunks"]
        n_val = int(round(self.validation_fraction * n_chunks))
        if n_val < 1 or n_val >= n_chunks:
            raise ValueError(f"early_stopping needs at least 2 chunks per stream; got "
                             f"{n_chunks} (lower bptt or batch_size, or add text)")
        plan["n_chunks"] = n_chunks - n_val
        if plan.get("net") is not None:
            plan["net"].n_chunks = plan["n_chunks"]
        return np.arange((n_chunks - n_val) * S), np.arange((n_chunks - n_val) * S, n)

    def _validation_score(self, net, x, lengths, targets):
        if self.window is not None:
            logits = net.forward(x, lengths, training=False)
            return float(np.mean(np.argmax(logits, axis=1) == targets))
        # the held-out chunks of each stream in order, from a zero state: accuracy over
        # every valid step, the state carried from chunk to chunk
        S = self.__dict__["_tbptt"]["S"]
        state = (None, None)
        hits = total = 0
        for k in range(x.shape[1] // S):
            sl = slice(k * S, (k + 1) * S)
            lb = lengths[sl]
            Tb = max(int(lb.max()), 1)
            out, cache = net.forward_train(x[:Tb, sl], lb, training=False, h0=state[0],
                                           c0=state[1], need_grad=False)
            state = (cache["h_n"], cache["c_n"])
            valid = np.arange(Tb)[:, None] < lb[None, :]
            hits += int(np.sum((np.argmax(out, axis=2) == targets[:Tb, sl])[valid]))
            total += int(valid.sum())
        return hits / max(total, 1)

    # ------------------------------------------------------------------ fit
    def fit(self, texts, y=None, resume_from=None):
        """Learn the vocabulary (first fit) and train the next-token model on ``texts`` (a
        str or a list of str; each text is one document). ``y`` is ignored.

        ``resume_from``: a checkpoint written by a fit with ``checkpoint_path`` (same
        parameters and texts): the training continues from it up to ``max_iter`` epochs in
        all (see fastseq.estimators.checkpoint)."""
        return self._fit_texts(texts, incremental=False, resume_from=resume_from)

    def partial_fit(self, texts, y=None):
        """One epoch over ``texts``; the vocabulary of the first fit is kept."""
        return self._fit_texts(texts, incremental=True)

    def _fit_texts(self, texts, incremental, resume_from=None):
        texts = self._as_texts(texts)
        self._check_mode_params()
        fitted = hasattr(self, "flat_params_") and resume_from is None
        if not fitted or not (incremental or self.warm_start):
            self.tokenizer_ = make_tokenizer(self.level, self.lower)
            self.vocabulary_ = Vocabulary(self.min_count, self.max_vocab).fit(
                [self.tokenizer_.tokenize(t) for t in texts])
            self.vocab_size_ = len(self.vocabulary_)
        docs = self._encode_texts(texts)
        if self.window is not None:
            X, y = self._windows(docs)
            return self._fit(X, y, incremental=incremental, resume_from=resume_from)
        X, targets, S, n_chunks = self._chunks(docs)
        self.n_streams_ = S
        self._tbptt = dict(S=S, n_chunks=n_chunks, net=None)
        try:
            with _params_as(self, shuffle=False, batch_size=S):
                return self._fit(X, targets, incremental=incremental,
                                 resume_from=resume_from)
        finally:
            self.__dict__.pop("_tbptt", None)

    # ------------------------------------------------------------------ prediction
    def _fitted_net(self):
        check_is_fitted(self, "flat_params_")
        return self._network()

    def _next_logits(self, docs):
        """Logits of the next token after each whole id sequence of ``docs`` -> ``[n, V]``."""
        net = self._fitted_net()
        n = len(docs)
        with self._threads_ctx():
            if self.window is not None:
                N = self.window
                lengths = np.array([min(len(d), N) for d in docs], dtype=np.int64)
                x = np.zeros((max(N, 1), n), dtype=np.int64)
                for b, d in enumerate(docs):
                    if lengths[b]:
                        x[:lengths[b], b] = d[-lengths[b]:]
                return net.forward(x, lengths, training=False)
            stepper = NetworkStepper(net, batch_size=n)
            lengths = np.array([len(d) for d in docs], dtype=np.int64)
            x = np.zeros((max(int(lengths.max()), 1), n), dtype=np.int64)
            for b, d in enumerate(docs):
                x[:len(d), b] = d
            return stepper.head(stepper.prime(x, lengths))

    def predict_next(self, prompts):
        """Probabilities of the next token after each prompt: ``[V]`` for a str, ``[n, V]``
        for a list of str (columns follow ``vocabulary_.tokens_``)."""
        single = isinstance(prompts, str)
        docs = self._encode_texts(self._as_texts(prompts, "prompts"))
        probs = softmax(self._next_logits(docs))
        return probs[0] if single else probs

    def _position_logits(self, docs):
        """Yield ``(logits [m, V], next ids [m])`` for every predictable position of docs."""
        net = self._fitted_net()
        with self._threads_ctx():
            if self.window is not None:
                N = self.window
                kept = [d for d in docs if len(d) > N]
                if not kept:
                    return
                X, y = self._windows(kept)
                for start in range(0, len(y), 4096):
                    xb = np.ascontiguousarray(X[start:start + 4096].T)
                    yield net.forward(xb, training=False), y[start:start + 4096]
                return
            kept = [d for d in docs if len(d) > 1]
            if not kept:
                return
            lengths = np.array([len(d) - 1 for d in kept], dtype=np.int64)
            T = int(lengths.max())
            x = np.zeros((T, len(kept)), dtype=np.int64)
            tgt = np.zeros_like(x)
            for b, d in enumerate(kept):
                x[:len(d) - 1, b] = d[:-1]
                tgt[:len(d) - 1, b] = d[1:]
            state = (None, None)
            for a in range(0, T, PREDICT_CHUNK):
                lb = np.clip(lengths - a, 0, PREDICT_CHUNK)
                Tb = max(int(lb.max()), 1)
                out, cache = net.forward_train(x[a:a + Tb], lb, training=False,
                                               h0=state[0], c0=state[1], need_grad=False)
                state = (cache["h_n"], cache["c_n"])
                valid = np.arange(Tb)[:, None] < lb[None, :]
                yield out[valid], tgt[a:a + Tb][valid]

    def _check_eval_texts(self, texts):
        check_is_fitted(self, "flat_params_")
        return self._encode_texts(self._as_texts(texts))

    def score(self, texts, y=None):
        """Next-token accuracy over every predictable position of ``texts`` (the ``N + 1``-th
        token on of each text for a window model, the 2nd on otherwise)."""
        hits = total = 0
        for logits, target in self._position_logits(self._check_eval_texts(texts)):
            hits += int(np.sum(np.argmax(logits, axis=1) == target))
            total += len(target)
        if total == 0:
            raise ValueError("the texts have no position to predict")
        return hits / total

    def perplexity(self, texts):
        """``exp`` of the mean negative log-likelihood of every predictable next token."""
        nll = 0.0
        total = 0
        for logits, target in self._position_logits(self._check_eval_texts(texts)):
            logp = log_softmax(logits.astype(np.float64))
            nll -= float(logp[np.arange(len(target)), target].sum())
            total += len(target)
        if total == 0:
            raise ValueError("the texts have no position to predict")
        return math.exp(nll / total)

    # ------------------------------------------------------------------ generation
    def generate_ids(self, prompt_ids, n_tokens, *, temperature=1.0, top_k=None,
                     random_state=None):
        """Continue the id sequence ``prompt_ids`` by ``n_tokens`` ids (``[n_tokens]`` int64);
        the unknown token is never generated.

        A full-sequence model absorbs the prompt once and then carries its state, one step
        per token. A window model predicts from the last ``window`` ids only, as in training;
        it carries ``window`` staggered states (one per window in flight), so each new
        token is still one (batched) step rather than a re-read of its window."""
        self._fitted_net()
        n_tokens = _check_count(n_tokens, "n_tokens")
        temperature, top_k = _check_sampling(temperature, top_k, self.vocab_size_)
        rng = _sampling_rng(random_state)
        # the unknown token is never generated (it stands for many rare tokens, or none)
        unknown = self.vocabulary_.unknown_id_ if self.vocab_size_ > 1 else None

        def pick(logits):
            if unknown is not None:
                logits[unknown] = -np.inf
            return _sample(logits, temperature, top_k, rng)
        return self._stream(prompt_ids, n_tokens, pick)

    def _stream(self, prompt_ids, n_tokens, pick):
        """The generation loop: ``pick(logits [V] float64) -> id`` chooses each new id."""
        net = self._fitted_net()
        ids = np.asarray(prompt_ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size_):
            raise ValueError(f"prompt ids must be in [0, {self.vocab_size_})")
        out = np.empty(n_tokens, dtype=np.int64)
        stepper = NetworkStepper(net, batch_size=1)
        # tiny GEMMs in the step loop: BLAS gets exactly n_jobs threads for the whole loop
        with blas_threads(resolve_threads(self.n_jobs)):
            if self.window is None:
                feats = stepper.prime(ids[:, None]) if ids.size else stepper.h[-1]
                for t in range(n_tokens):
                    out[t] = pick(stepper.head(feats)[0])
                    feats = stepper.step(out[t:t + 1])
                return out
            # Staggered windows: row j of an N-row batch holds the window that predicts the
            # j-th next token, so each new token is one batched step of all N rows (every
            # window in flight absorbs it); the row whose prediction was just made restarts
            # from zeros first, as the window that begins with the new token.
            # Exactly the same as re-reading each N-token window from the zero state.
            N, m = self.window, len(ids)
            stepper.reset(N)
            known = np.array([min(N - j, m) for j in range(N)], dtype=np.int64)
            if m:
                x = np.zeros((int(known.max()), N), dtype=np.int64)
                for j in range(N):
                    x[:known[j], j] = ids[m - known[j]:]
                stepper.prime(x, known)
            row = 0                                    # the row that predicts the next token
            for t in range(n_tokens):
                out[t] = pick(stepper.head(stepper.h[-1, row:row + 1])[0])
                if t + 1 == n_tokens:
                    break
                # the finished row restarts: its next window begins with this token
                stepper.h[:, row] = 0
                if stepper.c is not None:
                    stepper.c[:, row] = 0
                stepper.step(np.full(N, out[t], dtype=np.int64))
                row = (row + 1) % N
        return out

    def generate(self, prompt, n_tokens, *, temperature=1.0, top_k=None, random_state=None):
        """Continue the text ``prompt`` by ``n_tokens`` tokens; returns the continuation
        (words joined with spaces, or characters).

        ``temperature`` divides the logits (0: greedy, always the most probable token);
        ``top_k`` samples among the ``k`` most probable tokens only; ``random_state`` seeds
        the sampling (int, Generator, RandomState or None)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        check_is_fitted(self, "flat_params_")
        ids = self.generate_ids(self._encode_texts([prompt])[0], n_tokens,
                                temperature=temperature, top_k=top_k,
                                random_state=random_state)
        return self.tokenizer_.detokenize(self.vocabulary_.decode(ids))

    def transform(self, X):
        raise AttributeError("TextGenerator has no transform; use predict_next or generate")


# ---------------------------------------------------------------- sampling
def _check_count(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _check_sampling(temperature, top_k, V):
    if not (isinstance(temperature, (int, float, np.floating, np.integer))
            and not isinstance(temperature, bool) and temperature >= 0
            and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None:
        if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)) \
                or top_k < 1:
            raise ValueError(f"top_k must be None or a positive int, got {top_k!r}")
        top_k = min(int(top_k), V)
    return float(temperature), top_k


def _sampling_rng(random_state):
    if isinstance(random_state, np.random.RandomState):
        return random_state
    return np.random.default_rng(random_state)


def _sample(logits, temperature, top_k, rng):
    """One id from ``[V]`` float64 logits."""
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    if top_k is not None and top_k < len(z):
        cut = np.partition(z, len(z) - top_k)[len(z) - top_k]
        z = np.where(z >= cut, z, -np.inf)
    z = z - z.max()
    p = np.exp(z)
    cdf = np.cumsum(p)
    u = rng.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, u, side="right"), len(z) - 1))
