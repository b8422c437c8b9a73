"""Tokenizers and the frequency vocabulary, against brute-force references."""
import pickle
from collections import Counter

import numpy as np
import pytest

from fastseq.text import (UNKNOWN, CharTokenizer, TextEncoder, Vocabulary, WordTokenizer,
                          make_tokenizer)


def naive_ranking(tokens, min_count=1, max_size=None):
    """Obviously-correct ranking: count, then sort by (-count, first position)."""
    counts = Counter(tokens)
    first = {}
    for i, t in enumerate(tokens):
        first.setdefault(t, i)
    ranked = sorted([t for t in counts if counts[t] >= min_count],
                    key=lambda t: (-counts[t], first[t]))
    return ranked if max_size is None else ranked[:max_size]


def random_tokens(rng, n, alphabet=40):
    # Zipf-like frequencies so ties and rare tokens both occur
    ids = np.minimum(rng.zipf(1.6, size=n), alphabet) - 1
    return [f"w{i}" for i in ids]


def test_word_tokenizer_splits_words_and_punctuation():
    tok = WordTokenizer()
    assert tok.tokenize("Who is to bell the Cat? The mice -- don't know.") == [
        "who", "is", "to", "bell", "the", "cat", "?", "the", "mice", "-", "-", "don't",
        "know", "."]
    assert WordTokenizer(lower=False).tokenize("The Cat") == ["The", "Cat"]
    assert tok.tokenize("") == []


def test_word_detokenize_inverts_tokenize_on_normalised_text():
    tok = WordTokenizer()
    text = "long ago, the mice had a general council (to consider) what to do. who? 3 cats!"
    assert tok.detokenize(tok.tokenize(text)) == text
    assert tok.tokenize(tok.detokenize(tok.tokenize(text))) == tok.tokenize(text)


def test_char_tokenizer_round_trip_is_exact(rng):
    alphabet = list("abcXYZ \n\t.,;é€😀")
    text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 300))))
    tok = CharTokenizer()
    assert tok.tokenize(text) == list(text)
    assert tok.detokenize(tok.tokenize(text)) == text
    assert CharTokenizer(lower=True).tokenize("AbC") == ["a", "b", "c"]


def test_tokenizer_rejects_non_text():
    with pytest.raises(TypeError, match="text must be a str"):
        WordTokenizer().tokenize(b"bytes")
    with pytest.raises(ValueError, match="level must be one of"):
        make_tokenizer("byte")


@pytest.mark.parametrize("min_count,max_size", [(1, None), (2, None), (1, 5), (3, 2), (50, None)])
def test_vocabulary_ranks_by_frequency(rng, min_count, max_size):
    tokens = random_tokens(rng, int(rng.integers(1, 400)))
    vocab = Vocabulary(min_count=min_count, max_size=max_size).fit(tokens)
    expected = naive_ranking(tokens, min_count, max_size)
    assert vocab.tokens_ == expected + [UNKNOWN]
    assert vocab.unknown_id_ == len(expected) == len(vocab) - 1
    counts = Counter(tokens)
    assert vocab.counts_[:-1].tolist() == [counts[t] for t in expected]
    assert vocab.counts_.sum() == len(tokens)            # the rest went to the unknown id
    if expected:
        assert vocab.encode([expected[0]])[0] == 0       # most frequent is id 0


def test_vocabulary_encode_decode(rng):
    tokens = random_tokens(rng, 300)
    vocab = Vocabulary(min_count=2).fit([tokens[:150], tokens[150:]])   # list of documents
    ids = vocab.encode(tokens)
    assert ids.dtype == np.int64 and ids.shape == (len(tokens),)
    known = naive_ranking(tokens, 2)
    for t, i in zip(tokens, ids):
        assert i == (known.index(t) if t in known else vocab.unknown_id_)
    decoded = vocab.decode(ids)
    assert decoded == [t if t in known else UNKNOWN for t in tokens]
    assert vocab.encode(["never-seen"]).tolist() == [vocab.unknown_id_]
    assert vocab.encode([]).shape == (0,)
    assert ("never-seen" in vocab) is False and (UNKNOWN in vocab) is False


def test_vocabulary_errors():
    with pytest.raises(ValueError, match="not fitted"):
        Vocabulary().encode(["a"])
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary(min_count=0).fit(["a"])
    with pytest.raises(ValueError, match="max_size"):
        Vocabulary(max_size=0).fit(["a"])
    vocab = Vocabulary().fit(["a", "b"])
    with pytest.raises(ValueError, match=r"ids must be integers in \[0, 3\)"):
        vocab.decode([3])
    with pytest.raises(ValueError, match="ids has shape"):
        vocab.decode([[0]])


def test_vocabulary_state_and_pickle_round_trip(rng):
    vocab = Vocabulary(max_size=7).fit(random_tokens(rng, 200))
    for copy in (Vocabulary.from_state(vocab.get_state()), pickle.loads(pickle.dumps(vocab))):
        assert copy.tokens_ == vocab.tokens_
        np.testing.assert_array_equal(copy.counts_, vocab.counts_)
        assert copy.encode(["w0", "zzz"]).tolist() == vocab.encode(["w0", "zzz"]).tolist()


def test_text_encoder_word_and_char():
    enc = TextEncoder(level="word").fit(["The cat sat.", "the cat ran"])
    assert enc.vocabulary_.tokens_[:2] == ["the", "cat"]
    assert enc.decode(enc.encode("the cat sat")) == "the cat sat"
    assert enc.decode(enc.encode("the dog")) == f"the {UNKNOWN}"
    chars = TextEncoder(level="char").fit("abracadabra")
    assert chars.vocabulary_.tokens_[0] == "a"
    assert chars.decode(chars.encode("cab")) == "cab"
