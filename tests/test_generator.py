"""TextGenerator: streaming steps vs full sequences, truncated BPTT vs a hand-written loop,
generation vs recomputing from the prefix, perplexity / accuracy vs direct formulas."""
import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from compare import assert_close
from conftest import engine_backends
from fastseq.estimators import generator as gen_module
from fastseq.estimators.generator import TextGenerator, _sample
from fastseq.forecasting import NetworkStepper
from fastseq.losses import log_softmax, softmax, softmax_cross_entropy
from fastseq.network import Network, make_config

BACKENDS = ["reference"] + engine_backends()
FAST = engine_backends()[0] if engine_backends() else "reference"

STORY = ("long ago , the mice had a general council to consider what measures they could "
         "take to outwit their common enemy , the cat . some said this , and some said that "
         "but at last a young mouse got up and said he had a proposal to make , which he "
         "thought would meet the case .")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def small(**kw):
    params = dict(units=8, embedding_dim=5, max_iter=2, batch_size=4, bptt=5,
                  backend="reference", dtype="float64", random_state=0)
    params.update(kw)
    return TextGenerator(**params)


def rtol_of(dtype):
    return 1e-10 if np.dtype(dtype) == np.float64 else 2e-5


# ---------------------------------------------------------------- streaming steps
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell,num_layers,head", [("lstm", 2, []), ("gru", 1, [7]),
                                                  ("rnn", 3, [])])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stepping_equals_the_full_sequence(rng, backend, cell, num_layers, head, dtype):
    V, T, B = int(rng.integers(2, 20)), int(rng.integers(1, 12)), int(rng.integers(1, 4))
    cfg = make_config(vocab_size=V, embedding_dim=int(rng.integers(1, 6)), cell=cell,
                      units=int(rng.integers(1, 9)), num_layers=num_layers, head=head,
                      n_outputs=V, output="many-to-many")
    net = Network(cfg, dtype=dtype, backend=backend).init_weights(rng)
    x = rng.integers(0, V, size=(T, B))
    full = net.forward(x)                                    # [T, B, V] one pass
    stepper = NetworkStepper(net, batch_size=B)
    stepped = np.stack([stepper.head(stepper.step(x[t])) for t in range(T)])
    assert_close(stepped, full, rtol_of(dtype), "stepped logits")
    # prime (one pass over a prefix) then steps continues from the carried state
    k = int(rng.integers(0, T))
    stepper.reset()
    stepper.prime(x[:k])
    rest = [stepper.head(stepper.step(x[t])) for t in range(k, T)]
    if rest:
        assert_close(np.stack(rest), full[k:], rtol_of(dtype), "primed then stepped")


def test_stepper_rejects_bidirectional_and_bad_ids(rng):
    cfg = make_config(vocab_size=4, embedding_dim=2, units=3, bidirectional=True,
                      n_outputs=4, output="many-to-many")
    with pytest.raises(ValueError, match="bidirectional"):
        NetworkStepper(Network(cfg, backend="reference"))
    cfg = make_config(vocab_size=4, embedding_dim=2, units=3, n_outputs=4)
    stepper = NetworkStepper(Network(cfg, backend="reference").init_weights(0), batch_size=2)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 4\)"):
        stepper.step(np.array([0, 4]))
    with pytest.raises(ValueError, match=r"x_t must be \(2,\) integer token ids"):
        stepper.step(np.array([0.0, 1.0]))


# ---------------------------------------------------------------- truncated BPTT
def manual_tbptt(est, stream, S, T, lr, carry):
    """One epoch of truncated BPTT written out by hand on the Network API."""
    seed = np.random.RandomState(est.random_state).randint(np.iinfo(np.int32).max)
    net = Network(est.network_config_, dtype=np.float64, backend="reference")
    net.init_weights(np.random.default_rng(seed))
    per = (len(stream) - 1) // S
    inputs = stream[:S * per].reshape(S, per).T              # [per, S] time-major
    targets = stream[1:S * per + 1].reshape(S, per).T
    h0 = c0 = None
    for a in range(0, per, T):
        xb, yb = inputs[a:a + T], targets[a:a + T]
        out, cache = net.forward_train(xb, training=True, h0=h0, c0=c0)
        if carry:
            h0, c0 = cache["h_n"], cache["c_n"]
        _, d = softmax_cross_entropy(out.reshape(-1, out.shape[-1]), yb.ravel())
        net.flat -= lr * net.backward(cache, d.reshape(out.shape))
    return net.flat


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_truncated_bptt_carries_state_between_chunks(rng, cell):
    V = 6
    stream = rng.integers(0, V, size=int(rng.integers(40, 60)))
    text = " ".join(f"t{i}" for i in stream)
    S, T, lr = 3, 4, 0.5
    est = small(window=None, cell=cell, batch_size=S, bptt=T, solver="sgd", momentum=0.0,
                learning_rate_init=lr, max_iter=1, alpha=0.0, clip_norm=None,
                min_count=1, random_state=int(rng.integers(1000)))
    est.fit(text)
    ids = est.vocabulary_.encode([f"t{i}" for i in stream])
    expected = manual_tbptt(est, ids, S, T, lr, carry=True)
    assert_close(est.flat_params_, expected, 1e-10, "parameters after one TBPTT epoch")
    without = manual_tbptt(est, ids, S, T, lr, carry=False)
    assert np.max(np.abs(without - expected)) > 1e-6      # the carry does matter here
    assert est.n_streams_ == S
    assert "_tbptt" not in est.__dict__ and est.shuffle is True and est.batch_size == S


def test_truncated_bptt_ragged_last_chunk_and_early_stopping(rng):
    est = small(window=None, batch_size=2, bptt=4, max_iter=3, early_stopping=True,
                validation_fraction=0.3, n_iter_no_change=50, level="char")
    text = "".join(rng.choice(list("abcde "), size=59))     # 29 per stream: last chunk ragged
    est.fit(text)
    assert len(est.validation_scores_) == 3
    assert 0.0 <= est.best_validation_score_ <= 1.0
    assert est.batch_size == 2 and est.shuffle is True


# ---------------------------------------------------------------- generation
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt_len", [0, 1, 4])
def test_streaming_generation_equals_recomputing_the_prefix(rng, backend, prompt_len):
    est = small(window=None, level="char", max_iter=1, num_layers=2, backend=backend).fit(
        "".join(rng.choice(list("abcd ."), size=80)))
    net = est.network_
    prompt = est.vocabulary_.encode(list("ab c")[:prompt_len])
    seen = []

    def pick(logits):                    # record the logits, continue with a random token
        seen.append(logits.copy())
        return int(rng.integers(est.vocab_size_))
    got = est._stream(prompt, 12, pick)
    seq = list(prompt)
    for t in range(12):
        if seq:                          # the whole prefix, from scratch
            expected = net.forward(np.array(seq)[:, None])[-1, 0]
        else:                            # zero state: the output layer's bias alone
            expected = net.params["fc.0.bias"]
        assert_close(seen[t], expected, rtol_of(est.dtype), f"logits of token {t}")
        seq.append(got[t])
    greedy = est.generate_ids(prompt, 3, temperature=0)
    first = seen[0].copy()
    first[est.vocabulary_.unknown_id_] = -np.inf
    assert greedy[0] == np.argmax(first)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prompt_len", [0, 1, 2, 3, 5])
def test_window_generation_reads_the_last_n_tokens(rng, prompt_len, backend):
    est = small(window=3, max_iter=1, backend=backend, num_layers=2).fit(STORY)
    net = est.network_
    words = est.tokenizer_.tokenize(STORY)
    start = int(rng.integers(0, len(words) - prompt_len))
    prompt = est.vocabulary_.encode(words[start:start + prompt_len])
    seen = []

    def pick(logits):                    # record the logits, continue with a random token
        seen.append(logits.copy())
        return int(rng.integers(est.vocab_size_))
    got = est._stream(prompt, 12, pick)
    seq = list(prompt)
    for t in range(12):
        window = np.zeros((3, 1), dtype=np.int64)         # padded: length 0 allowed
        window[:len(seq[-3:]), 0] = seq[-3:]
        # re-read the (up to) 3-token window from the zero state: what training saw
        expected = net.forward(window, lengths=[len(seq[-3:])])[0]
        assert_close(seen[t], expected, rtol_of(est.dtype), f"logits of token {t}")
        seq.append(got[t])
    # the public path: greedy, never the unknown token
    greedy = est.generate_ids(prompt, 4, temperature=0)
    logits = net.forward(np.array(seq[:prompt_len][-3:] or [0]).reshape(-1, 1),
                         lengths=[min(prompt_len, 3)])[0]
    logits[est.vocabulary_.unknown_id_] = -np.inf
    assert greedy[0] == np.argmax(logits)
    text = est.generate(" ".join(words[start:start + prompt_len]), 4, temperature=0)
    assert text == est.tokenizer_.detokenize(est.vocabulary_.decode(greedy))


def test_sampling_follows_the_tempered_top_k_distribution(rng):
    logits = rng.standard_normal(7) * 2
    temperature, k = 0.7, 4
    z = logits / temperature
    keep = np.argsort(z)[-k:]
    p = np.zeros(7)
    p[keep] = softmax(z[keep])
    draws = np.array([_sample(logits, temperature, k, rng) for _ in range(10000)])
    freq = np.bincount(draws, minlength=7) / len(draws)
    assert np.max(np.abs(freq - p)) < 0.025
    assert set(np.unique(draws)) <= set(keep)
    assert _sample(logits, 0.0, None, rng) == np.argmax(logits)
    assert _sample(logits, 1.0, 1, rng) == np.argmax(logits)


def test_generation_is_reproducible_with_random_state():
    est = small(window=None, level="char", max_iter=2).fit("abcabcabd abc")
    a = est.generate("ab", 20, random_state=3)
    assert a == est.generate("ab", 20, random_state=3)
    assert len(a) == 20
    assert est.generate("ab", 0) == ""
    assert a == est.generate("ab", 20, random_state=np.random.default_rng(3))


# ---------------------------------------------------------------- scoring
@pytest.mark.parametrize("window", [None, 2])
def test_perplexity_and_accuracy_match_direct_formulas(rng, window, monkeypatch):
    monkeypatch.setattr(gen_module, "PREDICT_CHUNK", 3)       # force carried chunks
    texts = ["".join(rng.choice(list("abcd"), size=int(rng.integers(2, 15))))
             for _ in range(3)] + ["a"]
    est = small(window=window, level="char", max_iter=2).fit(texts)
    net = est.network_
    nll, hits, total = 0.0, 0, 0
    for text in texts:
        ids = est.vocabulary_.encode(list(text))
        start = 1 if window is None else window
        for i in range(start, len(ids)):
            ctx = ids[:i] if window is None else ids[i - window:i]
            out = net.forward(ctx[:, None])
            logits = out[-1, 0] if window is None else out[0]
            nll -= log_softmax(logits)[ids[i]]
            hits += int(np.argmax(logits) == ids[i])
            total += 1
    assert est.perplexity(texts) == pytest.approx(np.exp(nll / total), rel=1e-9)
    assert est.score(texts) == pytest.approx(hits / total)


@pytest.mark.parametrize("window", [None, 3])
def test_predict_next_probabilities(rng, window):
    est = small(window=window, max_iter=2).fit(STORY)
    net = est.network_
    prompts = ["the mice had a", "some said", "zebra"]
    probs = est.predict_next(prompts)
    assert probs.shape == (3, est.vocab_size_)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    for p, prompt in zip(probs, prompts):
        ids = est.vocabulary_.encode(est.tokenizer_.tokenize(prompt))
        ctx = ids if window is None else ids[-window:]
        out = net.forward(ctx[:, None])
        logits = out[-1, 0] if window is None else out[0]
        assert_close(p, softmax(logits), 1e-12, f"predict_next({prompt!r})")
    assert est.predict_next("the cat").shape == (est.vocab_size_,)


# ---------------------------------------------------------------- the reduced example
def test_memorises_a_short_story_with_a_three_word_window():
    est = TextGenerator(window=3, units=64, num_layers=2, embedding_dim=16, solver="rmsprop",
                        learning_rate_init=1e-2, batch_size=16, max_iter=60, alpha=0.0,
                        backend=FAST, random_state=0, n_iter_no_change=60, n_jobs=1)
    est.fit(STORY)
    assert est.score(STORY) >= 0.95
    words = est.generate("long ago ,", 8, temperature=0).split()
    assert words[:4] == ["the", "mice", "had", "a"]


# ---------------------------------------------------------------- API
def test_partial_fit_keeps_the_vocabulary_and_pickle_round_trips():
    est = small(window=2).fit("a b c a b d")
    vocab = list(est.vocabulary_.tokens_)
    est.partial_fit("a b e f g")
    assert est.vocabulary_.tokens_ == vocab and est.n_iter_ == 3
    clone = pickle.loads(pickle.dumps(est))
    assert clone.generate("a b", 6, random_state=1) == est.generate("a b", 6, random_state=1)
    np.testing.assert_array_equal(clone.predict_next("a"), est.predict_next("a"))


def test_errors():
    with pytest.raises(NotFittedError):
        small().generate("a", 2)
    with pytest.raises(TypeError, match="texts must be a str or a list of str"):
        small().fit([1, 2])
    with pytest.raises(ValueError, match="window must be a positive int or None"):
        small(window=0).fit("a b c d")
    with pytest.raises(ValueError, match="bptt must be a positive int"):
        small(window=None, bptt=0).fit("a b c d")
    with pytest.raises(ValueError, match="no text has more than window=5 tokens"):
        small(window=5).fit("a b c")
    with pytest.raises(ValueError, match="fewer than 2 tokens"):
        small(window=None).fit("a")
    est = small(window=1).fit("a b a c")
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        est.generate("a", 2, temperature=-1)
    with pytest.raises(ValueError, match="top_k must be None or a positive int"):
        est.generate("a", 2, top_k=0)
    with pytest.raises(ValueError, match="n_tokens must be a non-negative int"):
        est.generate("a", -1)
    with pytest.raises(TypeError, match="prompt must be a str"):
        est.generate(["a"], 2)
    with pytest.raises(ValueError, match="no position to predict"):
        est.score("a")
