"""fastseq <-> Keras 3 weight exchange, checked against real Keras layers (torch backend) on
ragged (masked) batches; skips cleanly without keras/torch."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")   # must precede the first keras import

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastseq import functional as F  # noqa: E402
from fastseq.exchange import from_keras, to_keras_layers, to_keras_weights  # noqa: E402

from compare import assert_close  # noqa: E402

pytest.importorskip("torch")
keras = pytest.importorskip("keras")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KERAS_CELLS = ["lstm", "gru", "gru_classic", "rnn_tanh", "rnn_relu", "lstm_relu"]


def _keras_run(layer_list, x, lengths):
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
    y = x
    for layer in layer_list:
        y = layer(y, mask=mask)
    return keras.ops.convert_to_numpy(y)


def _ragged(rng, B, T, I):
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T
    return x, lengths


def _valid(a, lengths):
    """Only the steps inside each sequence (Keras repeats the last output on padding)."""
    return np.concatenate([a[b, :n] for b, n in enumerate(lengths)])


@pytest.mark.parametrize("cell", KERAS_CELLS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_fastseq_to_keras_to_fastseq(rng, cell, num_layers, bidirectional):
    I, H, B, T = 3, 4, 4, 6
    params = F.init_params(cell, I, H, num_layers, bidirectional, random_state=rng)
    # biases big enough that a wrong bias layout shows
    params = {k: (v * 3 if "bias" in k else v) for k, v in params.items()}
    x, lengths = _ragged(rng, B, T, I)
    ours = F.forward(cell, params, x, lengths, backend="reference")
    layer_list = to_keras_layers(cell, params)
    y_k = _keras_run(layer_list, x, lengths)
    assert_close(_valid(y_k, lengths), _valid(ours.output, lengths), 1e-5,
                 f"{cell} output vs keras")
    # last layer many-to-one: the final state per sequence
    last = to_keras_layers(cell, params, return_sequences=False)
    y_last = _keras_run(last, x, lengths)
    H_ = ours.h_n.shape[-1]
    if bidirectional:
        expected = np.concatenate([ours.h_n[-2], ours.h_n[-1]], axis=1)
    else:
        expected = ours.h_n[-1]
    assert y_last.shape == (B, (2 if bidirectional else 1) * H_)
    assert_close(y_last, expected, 1e-5, "final state vs keras")
    # back again, from the layers and from raw weight lists
    want = make_name(cell)
    got_cell, back = from_keras(layer_list)
    assert got_cell.name == want
    again = F.forward(got_cell, back, x, lengths, backend="reference")
    assert_close(again.output, ours.output, 1e-5, "round trip output")
    raw_cell, raw = from_keras([l.get_weights() for l in layer_list], cell=cell)
    for k in raw:
        np.testing.assert_array_equal(raw[k], back[k])


def make_name(cell):
    return {"rnn_tanh": "rnn"}.get(cell, cell)


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru_classic", "rnn_tanh"])
def test_keras_initialised_layers_import(rng, cell):
    keras.utils.set_random_seed(int(rng.integers(2**31)))
    kinds = {"lstm": keras.layers.LSTM, "rnn_tanh": keras.layers.SimpleRNN}
    if cell.startswith("gru"):
        make = lambda **kw: keras.layers.GRU(5, reset_after=cell == "gru", **kw)  # noqa
    else:
        make = lambda **kw: kinds[cell](5, **kw)  # noqa
    # a two-layer bidirectional stack initialised by Keras
    first = keras.layers.Bidirectional(make(return_sequences=True))
    second = keras.layers.Bidirectional(make(return_sequences=True))
    first.build((None, None, 3))
    second.build((None, None, 10))
    # give every bias a non-zero value (Keras initialises them to zero or one)
    for layer in (first, second):
        layer.set_weights([w + (rng.normal(size=w.shape).astype(np.float32) * 0.5
                                if w.ndim < 2 or w.shape[0] == 2 else 0)
                           for w in layer.get_weights()])
    x, lengths = _ragged(rng, 3, 5, 3)
    y_k = _keras_run([first, second], x, lengths)
    got_cell, params = from_keras([first, second])
    assert got_cell.name == make_name(cell)
    ours = F.forward(got_cell, params, x, lengths, backend="reference")
    assert_close(_valid(ours.output, lengths), _valid(y_k, lengths), 1e-5, "output")
    # a model's recurrent layers are found in order
    seq = keras.Sequential([keras.Input((None, 3)), first, second])
    cell2, params2 = from_keras(seq)
    assert cell2 == got_cell and list(params2) == list(params)


def test_weight_list_layout(rng):
    H, I = 2, 3
    params = F.init_params("gru", I, H, random_state=rng)
    kernel, recurrent, bias = to_keras_weights("gru", params)[0]
    assert kernel.shape == (I, 3 * H) and recurrent.shape == (H, 3 * H)
    assert bias.shape == (2, 3 * H)
    # Keras' first block is z, ours is r then z
    np.testing.assert_array_equal(kernel[:, :H], params["weight_ih_l0"][H:2 * H].T)
    np.testing.assert_array_equal(bias[1, H:2 * H], params["bias_hh_l0"][:H])
    k2 = to_keras_weights("gru_classic", params)[0]
    assert k2[2].shape == (3 * H,)
    lstm = F.init_params("lstm", I, H, random_state=rng)
    kb = to_keras_weights("lstm", lstm)[0][2]
    np.testing.assert_allclose(kb, lstm["bias_ih_l0"] + lstm["bias_hh_l0"])


def test_keras_errors(rng):
    with pytest.raises(ValueError, match="merge_mode"):
        b = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True),
                                       merge_mode="sum")
        b.build((None, None, 3))
        from_keras(b)
    with pytest.raises(ValueError, match="recurrent_activation"):
        layer = keras.layers.LSTM(2, recurrent_activation="hard_sigmoid")
        layer.build((None, None, 3))
        from_keras(layer)
    with pytest.raises(ValueError, match="does not match"):
        layer = keras.layers.GRU(2)
        layer.build((None, None, 3))
        from_keras(layer, cell="gru_classic")
    with pytest.raises(ValueError, match="arrays"):
        from_keras([[np.zeros((3, 8))]])
    with pytest.raises(ValueError, match="reset_after=True"):
        from_keras([np.zeros((3, 6)), np.zeros((2, 6)), np.zeros((2, 6))],
                   cell="gru_classic")
    with pytest.raises(TypeError):
        from_keras("lstm")
