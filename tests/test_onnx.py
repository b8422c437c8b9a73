"""ONNX export checked with onnxruntime on ragged batches (skips without onnx/onnxruntime)."""
import numpy as np
import pytest

from fastseq import functional as F

from compare import assert_close

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fastseq.onnx import to_onnx  # noqa: E402

CELLS = ["lstm", "gru", "gru_classic", "rnn_tanh", "rnn_relu", "lstm_relu"]


def _session(model):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _ragged(rng, B, T, I):
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T
    return x, lengths


def _valid(a, lengths):
    return np.concatenate([a[b, :n] for b, n in enumerate(lengths)])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True), (3, False)])
def test_stack_matches_onnxruntime(tmp_path, rng, cell, num_layers, bidirectional):
    I, H, B, T = 3, 5, 4, 6
    params = F.init_params(cell, I, H, num_layers, bidirectional, random_state=rng)
    params = {k: (v * 3 if "bias" in k else v) for k, v in params.items()}
    path = tmp_path / "stack.onnx"
    to_onnx(path, cell, params)
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}.keys() & ops
    x, lengths = _ragged(rng, B, T, I)
    out, h_n, *c_n = _session(model).run(None, {"x": x, "lengths": lengths.astype(np.int64)})
    ours = F.forward(cell, params, x, lengths, backend="reference")
    assert_close(_valid(out, lengths), _valid(ours.output, lengths), 1e-5, "output")
    assert_close(out, ours.output, 1e-5, "output incl. padding (zero)")
    assert_close(h_n, ours.h_n, 1e-5, "h_n")
    if c_n:
        assert_close(c_n[0], ours.c_n, 1e-5, "c_n")


def test_gru_node_attributes(rng):
    for cell, lbr in (("gru", 1), ("gru_classic", 0)):
        model = to_onnx(None, cell, F.init_params(cell, 2, 3, random_state=rng))
        node = next(n for n in model.graph.node if n.op_type == "GRU")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["linear_before_reset"] == lbr
        assert list(node.input)[4] != ""          # sequence_lens is wired


@pytest.mark.parametrize("config", [
    dict(n_features=3, cell="lstm", units=4, num_layers=2, bidirectional=True, head=[5],
         head_activation="tanh", n_outputs=3, output="many-to-one"),
    dict(n_features=2, cell="gru", reset_after=False, units=3, num_layers=1, head=[4],
         head_activation="relu", n_outputs=2, output="many-to-many"),
    dict(vocab_size=11, embedding_dim=4, cell="rnn", activation="relu", units=5,
         num_layers=2, bidirectional=True, head=[], n_outputs=11, output="many-to-many"),
    dict(n_features=2, cell="gru", units=3, head=[3, 2], head_activation="logistic",
         n_outputs=1, output="many-to-one"),
])
def test_network_head_matches_onnxruntime(tmp_path, rng, config):
    from fastseq.network import Network
    net = Network(config, backend="reference").init_weights(int(rng.integers(2**31)))
    net.flat[...] += rng.normal(size=net.flat.shape).astype(np.float32) * 0.1
    B, T = 5, 6
    lengths = rng.integers(1, T + 1, size=B)
    if net.tokens:
        x = rng.integers(0, config["vocab_size"], size=(B, T)).astype(np.int64)
        x_tm = x.T
    else:
        x = rng.normal(size=(B, T, config["n_features"])).astype(np.float32)
        x_tm = np.swapaxes(x, 0, 1)
    path = tmp_path / "net.onnx"
    to_onnx(path, net, softmax=True)
    scores, probs = _session(onnx.load(str(path))).run(
        None, {"x": x, "lengths": lengths.astype(np.int64)})
    ours = net.forward(x_tm, lengths)
    if config["output"] == "many-to-one":
        assert_close(scores, ours, 1e-5, "scores")
    else:
        ours = np.swapaxes(ours, 0, 1)
        assert_close(_valid(scores, lengths), _valid(ours, lengths), 1e-5, "scores")
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    assert_close(probs, e / e.sum(axis=-1, keepdims=True), 1e-6, "probabilities")


def test_export_errors(rng):
    with pytest.raises(TypeError, match="cell and params"):
        to_onnx(None, "lstm")
    with pytest.raises(ValueError, match="weight_hh_l0"):
        to_onnx(None, "gru", F.init_params("lstm", 2, 3))


def test_atomic_write_leaves_no_temp(tmp_path, rng):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    to_onnx(path, "rnn", F.init_params("rnn", 2, 3, random_state=rng))
    assert onnx.load(str(path)).graph.node
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_fitted_classifier_probabilities(tmp_path, rng):
    pytest.importorskip("fastseq.estimators")
    import warnings

    from fastseq.estimators import SequenceClassifier
    X = [rng.normal(size=(int(n), 2)).astype(np.float32) for n in rng.integers(1, 6, 9)]
    y = rng.integers(0, 3, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = SequenceClassifier(cell="lstm", units=4, head=(3,), max_iter=2,
                                 random_state=0, backend="reference").fit(X, y)
    model = to_onnx(tmp_path / "clf.onnx", clf)
    assert [o.name for o in model.graph.output] == ["scores", "probabilities"]
    lengths = np.array([len(x) for x in X])
    xb = np.zeros((len(X), lengths.max(), 2), np.float32)
    for b, x in enumerate(X):
        xb[b, :len(x)] = x
    _, probs = _session(model).run(None, {"x": xb, "lengths": lengths.astype(np.int64)})
    assert_close(probs, clf.predict_proba(X), 1e-5, "predict_proba")
