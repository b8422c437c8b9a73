"""Text to token ids and back: word- and character-level tokenizers and a frequency vocabulary.

* :class:`WordTokenizer` splits text into words and punctuation marks (optionally lower-cased)
  and joins tokens back with spaces, no space before closing punctuation.
* :class:`CharTokenizer` splits text into characters; joining is concatenation, so
  ``detokenize(tokenize(text)) == text`` exactly.
* :class:`Vocabulary` ranks tokens by frequency, the most frequent first (id 0; ties keep the
  order of first appearance, so the ranking is deterministic). Tokens seen fewer than
  ``min_count`` times, or ranked past ``max_size``, are not in the vocabulary and encode as the
  unknown token, whose id is the last one (``unknown_id_ == len(vocab) - 1``).

Shapes: ``encode(tokens) -> ids [n] int64``; ``decode(ids) -> list of n tokens``.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

UNKNOWN = "<unk>"

# a word (letters, digits, apostrophes and hyphens inside), or one non-space character
_WORD_RE = re.compile(r"\w+(?:['\u2019-]\w+)*|[^\w\s]", re.UNICODE)
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}%'\u2019\"")
_NO_SPACE_AFTER = frozenset("([{")


class WordTokenizer:
    """Words and punctuation marks, e.g. ``"Who is to bell the cat?"`` ->
    ``["who", "is", "to", "bell", "the", "cat", "?"]``.

    Parameters
    ----------
    lower : bool, default=True   lower-case before splitting
    """

    level = "word"

    def __init__(self, lower=True):
        self.lower = bool(lower)

    def tokenize(self, text):
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return _WORD_RE.findall(text.lower() if self.lower else text)

    def detokenize(self, tokens):
        """Tokens joined by spaces, without a space before closing punctuation."""
        out = []
        for tok in tokens:
            if out and tok not in _NO_SPACE_BEFORE and out[-1] not in _NO_SPACE_AFTER:
                out.append(" ")
            out.append(tok)
        return "".join(out)

    def get_config(self):
        return dict(level=self.level, lower=self.lower)


class CharTokenizer:
    """Characters; ``detokenize(tokenize(text)) == text`` (before the vocabulary maps rare
    characters to the unknown token).

    Parameters
    ----------
    lower : bool, default=False
    """

    level = "char"

    def __init__(self, lower=False):
        self.lower = bool(lower)

    def tokenize(self, text):
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return list(text.lower() if self.lower else text)

    def detokenize(self, tokens):
        return "".join(tokens)

    def get_config(self):
        return dict(level=self.level, lower=self.lower)


TOKENIZERS = {"word": WordTokenizer, "char": CharTokenizer}


def make_tokenizer(level="word", lower=None):
    """``"word"`` or ``"char"`` tokenizer (``lower`` None: True for words, False for chars)."""
    if level not in TOKENIZERS:
        raise ValueError(f"level must be one of {tuple(TOKENIZERS)}, got {level!r}")
    cls = TOKENIZERS[level]
    return cls() if lower is None else cls(lower=lower)


class Vocabulary:
    """Tokens ranked by frequency (most frequent = id 0) plus an unknown token (last id).

    Parameters
    ----------
    min_count : int, default=1   tokens seen fewer times are unknown
    max_size : int or None       keep at most this many known tokens (the unknown token comes
                                 on top: ``len(vocab) <= max_size + 1``)
    unknown : str, default="<unk>"

    Attributes
    ----------
    tokens_ : list of str        id -> token (the unknown token last)
    counts_ : ndarray [len]      training count of each id (the unknown token: the count of
                                 all tokens mapped to it)
    unknown_id_ : int
    """

    def __init__(self, min_count=1, max_size=None, unknown=UNKNOWN):
        self.min_count = min_count
        self.max_size = max_size
        self.unknown = unknown

    def fit(self, token_lists):
        """Count tokens over an iterable of token sequences (or one list of tokens)."""
        if not (isinstance(self.min_count, (int, np.integer)) and self.min_count >= 1):
            raise ValueError(f"min_count must be a positive int, got {self.min_count!r}")
        if self.max_size is not None and not (
                isinstance(self.max_size, (int, np.integer)) and self.max_size >= 1):
            raise ValueError(f"max_size must be None or a positive int, got {self.max_size!r}")
        if token_lists and isinstance(next(iter(token_lists)), str):
            token_lists = [token_lists]
        counts = Counter()
        first = {}
        for seq in token_lists:
            for tok in seq:
                counts[tok] += 1
                first.setdefault(tok, len(first))
        ranked = sorted((t for t in counts if counts[t] >= self.min_count and
                         t != self.unknown), key=lambda t: (-counts[t], first[t]))
        if self.max_size is not None:
            ranked = ranked[:self.max_size]
        known = set(ranked)
        n_unknown = sum(c for t, c in counts.items() if t not in known)
        self.tokens_ = ranked + [self.unknown]
        self.counts_ = np.array([counts[t] for t in ranked] + [n_unknown], dtype=np.int64)
        self.unknown_id_ = len(ranked)
        self._index = {t: i for i, t in enumerate(self.tokens_)}
        return self

    def _check_fitted(self):
        if not hasattr(self, "tokens_"):
            raise ValueError("this Vocabulary is not fitted yet; call fit(token_lists) first")

    def __len__(self):
        self._check_fitted()
        return len(self.tokens_)

    def __contains__(self, token):
        self._check_fitted()
        return token in self._index and token != self.unknown

    def encode(self, tokens):
        """Tokens -> ``[n]`` int64 ids (unknown tokens -> :attr:`unknown_id_`)."""
        self._check_fitted()
        index, unk = self._index, self.unknown_id_
        return np.fromiter((index.get(t, unk) for t in tokens), dtype=np.int64,
                           count=len(tokens))

    def decode(self, ids):
        """Ids -> tokens; raises ValueError for ids outside ``[0, len)``."""
        self._check_fitted()
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"ids has shape {ids.shape}; expected (n,)")
        if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or
                         ids.max() >= len(self.tokens_)):
            raise ValueError(f"ids must be integers in [0, {len(self.tokens_)})")
        return [self.tokens_[i] for i in ids.tolist()]

    # plain-data state (the estimator stores it; pickle / JSON friendly)
    def get_state(self):
        self._check_fitted()
        return dict(tokens=list(self.tokens_), counts=self.counts_.tolist(),
                    unknown=self.unknown, min_count=self.min_count, max_size=self.max_size)

    @classmethod
    def from_state(cls, state):
        vocab = cls(state["min_count"], state["max_size"], state["unknown"])
        vocab.tokens_ = list(state["tokens"])
        vocab.counts_ = np.asarray(state["counts"], dtype=np.int64)
        vocab.unknown_id_ = len(vocab.tokens_) - 1
        vocab._index = {t: i for i, t in enumerate(vocab.tokens_)}
        return vocab


class TextEncoder:
    """A tokenizer and a vocabulary together: ``encode(text) -> ids``, ``decode(ids) -> text``.

    Parameters
    ----------
    level : {"word", "char"}, default="word";  lower : bool or None (see :func:`make_tokenizer`)
    min_count, max_size : see :class:`Vocabulary`
    """

    def __init__(self, level="word", lower=None, min_count=1, max_size=None):
        self.level = level
        self.lower = lower
        self.min_count = min_count
        self.max_size = max_size

    def fit(self, texts):
        """``texts``: a str or a list of str."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        self.tokenizer_ = make_tokenizer(self.level, self.lower)
        self.vocabulary_ = Vocabulary(self.min_count, self.max_size).fit(
            [self.tokenizer_.tokenize(t) for t in texts])
        return self

    def encode(self, text):
        return self.vocabulary_.encode(self.tokenizer_.tokenize(text))

    def decode(self, ids):
        return self.tokenizer_.detokenize(self.vocabulary_.decode(ids))
