"""The whole network against central finite differences (float64, reference backend), and
the flat-buffer / config contract."""
import json

import numpy as np
import pytest

from fastseq.layers import param_shapes, stack_forward
from fastseq.losses import mean_squared_error, softmax_cross_entropy
from fastseq.network import Network, make_config

from compare import assert_close

CASES = [
    # (label, config overrides, ragged)
    ("lstm_head_dropout", dict(cell="lstm", num_layers=2, head=[4], dropout=0.3,
                               recurrent_dropout=0.2), True),
    ("gru_bidir_tanh_head", dict(cell="gru", bidirectional=True, head=[3, 2],
                                 head_activation="tanh", dropout=0.25), True),
    ("rnn_relu_tokens", dict(cell="rnn", activation="relu", embedding_dim=3, vocab_size=7,
                             head_activation="logistic", head=[3]), True),
    ("gru_classic_m2m", dict(cell="gru", reset_after=False, output="many-to-many",
                             dropout=0.2, head=[3]), True),
    ("lstm_bidir_m2m_tokens", dict(cell="lstm", bidirectional=True, num_layers=2,
                                   output="many-to-many", embedding_dim=2, vocab_size=5,
                                   recurrent_dropout=0.3), False),
]


def _make(rng, overrides, T=4, B=3):
    cfg = dict(n_features=3, units=3, n_outputs=3)
    cfg.update(overrides)
    if "embedding_dim" in cfg:
        cfg.pop("n_features")
    net = Network(make_config(**cfg), dtype=np.float64, backend="reference")
    net.init_weights(rng)
    if net.tokens:
        x = rng.integers(0, cfg["vocab_size"], size=(T, B))
    else:
        x = rng.standard_normal((T, B, 3))
    return net, x


def _loss(net, x, lengths, masks, target, alpha, mask_l2):
    out, cache = net.forward_train(x, lengths, masks=masks, training=True)
    if net.config["output"] == "many-to-one":
        loss, d = softmax_cross_entropy(out, target, w=np.array([1.0, 2.0, 0.5]))
    else:
        valid = np.arange(out.shape[0])[:, None] < lengths[None, :]
        loss, d_rows = mean_squared_error(out[valid], target[valid])
        d = np.zeros_like(out)
        d[valid] = d_rows
    w = net.flat * mask_l2
    loss += 0.5 * alpha * float(w @ w)
    return loss, d, cache


@pytest.mark.parametrize("label,overrides,ragged", CASES, ids=[c[0] for c in CASES])
def test_network_gradient_matches_finite_differences(rng, label, overrides, ragged):
    net, x = _make(rng, overrides)
    T, B = x.shape[:2]
    lengths = np.array([4, 1, 3]) if ragged else np.full(B, T)
    masks = net.draw_masks(rng, T, B)
    if net.config["output"] == "many-to-one":
        target = rng.integers(0, 3, size=B)
    else:
        target = rng.standard_normal((T, B, 3))
    alpha, mask_l2 = 0.1, net.regularized_mask()
    loss, d, cache = _loss(net, x, lengths, masks, target, alpha, mask_l2)
    grad = net.backward(cache, d).copy()
    grad += alpha * net.flat * mask_l2

    eps = 1e-6
    numeric = np.zeros_like(grad)
    for i in range(net.n_params):
        old = net.flat[i]
        net.flat[i] = old + eps
        lp = _loss(net, x, lengths, masks, target, alpha, mask_l2)[0]
        net.flat[i] = old - eps
        lm = _loss(net, x, lengths, masks, target, alpha, mask_l2)[0]
        net.flat[i] = old
        numeric[i] = (lp - lm) / (2 * eps)
    for name, (off, shape) in net.layout.items():
        size = int(np.prod(shape))
        assert_close(grad[off:off + size], numeric[off:off + size], 1e-6, name=name)


def test_layout_names_and_shapes_follow_pytorch(rng):
    cfg = make_config(n_features=5, units=4, num_layers=2, bidirectional=True,
                      cell="gru", head=[6], n_outputs=3)
    net = Network(cfg)
    rnn = {k[4:]: v.shape for k, v in net.params.items() if k.startswith("rnn.")}
    assert rnn == param_shapes("gru", 5, 4, 2, True)
    assert net.params["fc.0.weight"].shape == (6, 8)
    assert net.params["fc.1.weight"].shape == (3, 6)
    assert net.params["fc.1.bias"].shape == (3,)
    # views share the flat buffer, in layout order, with no gaps
    offsets = [off for off, _ in net.layout.values()]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert net.n_params == net.flat.size
    for view in net.params.values():
        assert np.shares_memory(view, net.flat)
    assert net.flat.dtype == np.float32


def test_from_config_rebuilds_the_same_function(rng):
    cfg = make_config(n_features=2, units=3, cell="lstm", head=[4], n_outputs=2,
                      bidirectional=True)
    net = Network(cfg, dtype=np.float64, backend="reference").init_weights(rng)
    cfg2 = json.loads(json.dumps(net.config))
    clone = Network.from_config(cfg2, net.flat.copy(), backend="reference")
    x = rng.standard_normal((5, 4, 2))
    lengths = np.array([5, 0, 2, 3])
    np.testing.assert_array_equal(net.forward(x, lengths), clone.forward(x, lengths))


def test_many_to_one_reads_last_valid_step_and_backward_output_at_t0(rng):
    """Final-state conventions checked against the raw stack (PyTorch's h_n)."""
    cfg = make_config(n_features=2, units=3, cell="gru", bidirectional=True, n_outputs=2)
    net = Network(cfg, dtype=np.float64, backend="reference").init_weights(rng)
    x = rng.standard_normal((6, 3, 2))
    lengths = np.array([6, 2, 4])
    feats = net.features(x, lengths)
    out, _, _, _ = stack_forward("reference", net.cell, net.rnn_params, x, lengths,
                                 training=False)
    H = 3
    for b, L in enumerate(lengths):
        assert_close(feats[b, :H], out[L - 1, b, :H], 1e-12, "forward final")
        assert_close(feats[b, H:], out[0, b, H:], 1e-12, "backward output at t=0")
    # padding does not change anything
    x2 = x.copy()
    x2[4:, 1] = 99.0
    np.testing.assert_array_equal(net.features(x2, lengths)[1], feats[1])


def test_length_zero_reads_initial_state(rng):
    cfg = make_config(n_features=2, units=3, n_outputs=2)
    net = Network(cfg, dtype=np.float64, backend="reference").init_weights(rng)
    x = rng.standard_normal((3, 2, 2))
    feats = net.features(x, np.array([0, 3]))
    np.testing.assert_array_equal(feats[0], 0.0)


def test_bad_input_names_the_argument(rng):
    net = Network(make_config(n_features=2, units=3, n_outputs=2))
    with pytest.raises(ValueError, match="expected \\(T, batch, 2\\)"):
        net.forward(np.zeros((3, 2, 5)))
    with pytest.raises(ValueError, match="flat must be a 1-D array"):
        Network(net.config, flat=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="n_features"):
        make_config(units=3)
