"""Streaming inference equals running whole sequences through layers.stack_forward with
the float64 reference, for every cell, one or many interleaved streams, chunks, initial
states, resets, and whole networks (embedding + head) from Network and estimators."""
import numpy as np
import pytest

from fastseq import functional as F
from fastseq import layers
from fastseq.cells import make_cell
from fastseq.stream import Stream

from compare import assert_close

CELLS = ["lstm", "gru", "gru_classic", "rnn_tanh", "rnn_relu", "lstm_relu"]


def _reference(cell, params, seqs, h0=None, c0=None):
    """Per-sequence outputs [T_i, H] and final (h [L, B, H], c) from the reference."""
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    lengths = np.array([len(s) for s in seqs])
    T = max(int(lengths.max()), 1)
    x = np.zeros((T, len(seqs), seqs[0].shape[1]))
    for b, s in enumerate(seqs):
        x[:len(s), b] = s
    out, h_n, c_n, _ = layers.stack_forward("reference", cell, p64, x, lengths, h0, c0,
                                            training=False)
    return [out[:n, b] for b, n in enumerate(lengths)], h_n, c_n


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_stream_equals_whole_sequence(rng, cell, num_layers, dtype):
    I, H, T = 3, 5, 9
    params = F.init_params(cell, I, H, num_layers, random_state=rng, dtype=dtype)
    x = rng.normal(size=(T, I)).astype(dtype)
    s = Stream(cell, params)
    ys = np.stack([s.step(x[t]) for t in range(T)])
    assert ys.dtype == dtype
    expected, h_n, c_n = _reference(cell, params, [x])
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(ys, expected[0], rtol, "outputs")
    h, c = s.get_state()
    assert_close(h, h_n[:, 0], rtol, "h")
    if make_cell(cell).has_cell_state:
        assert_close(c, c_n[:, 0], rtol, "c")


@pytest.mark.parametrize("cell", ["lstm", "gru_classic", "rnn_relu"])
def test_interleaved_streams_and_chunks(rng, cell):
    I, H, L = 2, 4, 2
    params = F.init_params(cell, I, H, L, random_state=rng)
    lengths = [1, 6, 3, 8, 5]
    seqs = [rng.normal(size=(n, I)).astype(np.float32) for n in lengths]
    expected, h_n, c_n = _reference(cell, params, seqs)
    s = Stream(cell, params)
    ids = ["a", 17, ("t", 3), "d", None]            # any hashable ids
    got = {i: [] for i in ids}
    pos = [0] * len(seqs)
    # random schedule: at each tick a random subset of unfinished streams advances
    while any(p < n for p, n in zip(pos, lengths)):
        live = [b for b in range(len(seqs)) if pos[b] < lengths[b]]
        pick = sorted(rng.choice(live, size=rng.integers(1, len(live) + 1), replace=False))
        if len(pick) > 1 or rng.random() < 0.5:
            out = s.step(np.stack([seqs[b][pos[b]] for b in pick]), [ids[b] for b in pick])
        else:            # a chunk of one stream
            b = pick[0]
            n = int(rng.integers(1, lengths[b] - pos[b] + 1))
            out = s.push(seqs[b][pos[b]:pos[b] + n], stream_id=ids[b])
            got[ids[b]].extend(out)
            pos[b] += n
            continue
        for row, b in zip(out, pick):
            got[ids[b]].append(row)
            pos[b] += 1
    for b, i in enumerate(ids):
        assert_close(np.stack(got[i]), expected[b], 1e-5, f"stream {i!r}")
        h, c = s.get_state(i)
        assert_close(h, h_n[:, b], 1e-5, f"h of {i!r}")
    assert set(s.stream_ids) == set(ids)


def test_initial_state_and_reset(rng):
    I, H, L = 3, 4, 2
    params = F.init_params("lstm", I, H, L, random_state=rng)
    x = rng.normal(size=(5, I)).astype(np.float32)
    h0 = rng.normal(size=(L, 1, H)).astype(np.float32)
    c0 = rng.normal(size=(L, 1, H)).astype(np.float32)
    expected, _, _ = _reference("lstm", params, [x], h0, c0)
    s = Stream("lstm", params)
    s.set_state(h0[:, 0], c0[:, 0], stream_id="x")
    assert_close(s.push(x, "x"), expected[0], 1e-5, "from h0, c0")
    fresh, _, _ = _reference("lstm", params, [x])
    s.reset("x")
    assert "x" not in s.stream_ids
    assert_close(s.push(x, "x"), fresh[0], 1e-5, "after reset")
    s.step(x[0])
    s.reset()
    assert s.stream_ids == []
    assert_close(s.step(x[0]), fresh[0][0], 1e-5, "default stream after reset all")


NETWORKS = [
    dict(n_features=3, cell="lstm", units=5, num_layers=2, head=[4], head_activation="tanh",
         n_outputs=3, output="many-to-one"),
    dict(n_features=2, cell="gru", reset_after=False, units=3, head=[6, 2],
         head_activation="logistic", n_outputs=2, output="many-to-many"),
    dict(vocab_size=7, embedding_dim=3, cell="rnn", activation="relu", units=4,
         num_layers=2, head=[5], head_activation="relu", n_outputs=7, output="many-to-many"),
    dict(n_features=1, cell="lstm", activation="relu", units=2, n_outputs=1),
]


@pytest.mark.parametrize("k", range(len(NETWORKS)))
def test_network_stream_equals_network_forward(rng, k):
    from fastseq.network import Network
    config = NETWORKS[k]
    net = Network(config, backend="reference").init_weights(int(rng.integers(2**31)))
    lengths = [4, 1, 6]
    if net.tokens:
        seqs = [rng.integers(0, config["vocab_size"], size=n) for n in lengths]
    else:
        seqs = [rng.normal(size=(n, config["n_features"])).astype(np.float32)
                for n in lengths]
    s = Stream.from_network(net)
    T = max(lengths)
    x = np.zeros((T, 3) if net.tokens else (T, 3, config["n_features"]),
                 dtype=np.int64 if net.tokens else np.float32)
    for b, q in enumerate(seqs):
        x[:len(q), b] = q
    scores = net.forward(x, np.array(lengths))
    for b, q in enumerate(seqs):
        out = s.push(q, stream_id=b)
        assert out.shape == (len(q), config["n_outputs"])
        if config.get("output", "many-to-one") == "many-to-one":
            assert_close(out[-1], scores[b], 1e-5, "final scores")
            # every prefix: the scores the network gives the truncated sequence
            t = int(rng.integers(1, len(q) + 1))
            xp = x[:t, b:b + 1]
            assert_close(out[t - 1], net.forward(xp, np.array([t]))[0], 1e-5, "prefix")
        else:
            assert_close(out, scores[:len(q), b], 1e-5, "per-step scores")
    if net.tokens:            # the one-stream path takes a token id, not a vector
        s1 = Stream.from_network(net)
        one = np.stack([s1.step(int(tok)) for tok in seqs[0]])
        assert_close(one, s.push(seqs[0], stream_id="again"), 1e-6, "step vs push")
        with pytest.raises(ValueError, match="token"):
            s1.step(np.zeros(config["embedding_dim"], np.float32))
    proba = Stream.from_network(net, output="proba").push(seqs[0], stream_id="p")
    e = np.exp(s.push(seqs[0], stream_id="q") - 0)
    assert_close(proba, e / e.sum(axis=1, keepdims=True), 1e-6, "softmax")


def test_from_estimator(rng):
    pytest.importorskip("fastseq.estimators")
    import warnings

    from fastseq.estimators import SequenceClassifier
    X = [rng.normal(size=(int(n), 2)).astype(np.float32) for n in rng.integers(1, 7, 10)]
    y = rng.integers(0, 3, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = SequenceClassifier(units=4, max_iter=2, random_state=0,
                                 backend="reference").fit(X, y)
    s = Stream.from_estimator(clf, output="proba")
    last = np.stack([s.push(x, stream_id=i)[-1] for i, x in enumerate(X)])
    assert_close(last, clf.predict_proba(X), 1e-5, "predict_proba")
    with pytest.raises(TypeError, match="fitted"):
        Stream.from_estimator(object())


def test_errors(rng):
    with pytest.raises(ValueError, match="bidirectional"):
        Stream("gru", F.init_params("gru", 2, 3, 1, True))
    s = Stream("gru", F.init_params("gru", 2, 3))
    with pytest.raises(ValueError, match=r"x_t has shape"):
        s.step(np.zeros(3))
    with pytest.raises(ValueError, match=r"x_t has shape \(2, 3\); expected \(2, 2\)"):
        s.step(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="distinct"):
        s.step(np.zeros((2, 2)), ["a", "a"])
    with pytest.raises(ValueError, match="chunk"):
        s.push(np.zeros(4))
    with pytest.raises(ValueError, match="h has shape"):
        s.set_state(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="only used by the LSTM"):
        s.set_state(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(TypeError, match="dtype"):
        Stream("gru", F.init_params("gru", 2, 3), dtype=np.int32)
