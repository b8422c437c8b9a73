"""fastseq <-> PyTorch weight exchange, checked against real torch.nn modules on ragged
batches (skips cleanly without torch)."""
import numpy as np
import pytest

from fastseq import functional as F
from fastseq.exchange import from_torch, to_torch_module, to_torch_state_dict

from compare import assert_close

torch = pytest.importorskip("torch")

TORCH_CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


def _torch_run(module, x, lengths):
    """Run a batch_first module on a ragged batch (packed), return numpy outputs."""
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.as_tensor(lengths), batch_first=True,
        enforce_sorted=False)
    with torch.no_grad():
        y, state = module(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True,
                                                  total_length=x.shape[1])
    h_n, c_n = state if isinstance(state, tuple) else (state, None)
    return y.numpy(), h_n.numpy(), None if c_n is None else c_n.numpy()


def _ragged(rng, B, T, I):
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[rng.integers(B)] = T
    return x, lengths


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True), (3, False)])
def test_fastseq_to_torch_to_fastseq(rng, cell, num_layers, bidirectional):
    I, H, B, T = 3, 5, 4, 6
    params = F.init_params(cell, I, H, num_layers, bidirectional, random_state=rng)
    module = to_torch_module(cell, params)
    assert module.weight_ih_l0.dtype == torch.float32
    x, lengths = _ragged(rng, B, T, I)
    y_t, h_t, c_t = _torch_run(module, x, lengths)
    ours = F.forward(cell, params, x, lengths, backend="reference")
    assert_close(ours.output, y_t, 1e-5, "output vs torch")
    assert_close(ours.h_n, h_t, 1e-5, "h_n vs torch")
    if c_t is not None:
        assert_close(ours.c_n, c_t, 1e-5, "c_n vs torch")
    # back again: bit-identical weights, same order, same cell
    cell_back, params_back = from_torch(module)
    assert cell_back.name == cell.replace("rnn_tanh", "rnn")
    assert list(params_back) == list(params)
    for k in params:
        np.testing.assert_array_equal(params_back[k], params[k])
        assert params_back[k].dtype == np.float32


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_initialised_module_imports(rng, cell):
    torch.manual_seed(int(rng.integers(2**31)))
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)
    kw = {"nonlinearity": cell.split("_")[1]} if cell.startswith("rnn") else {}
    module = cls(2, 7, num_layers=2, bidirectional=True, batch_first=True, **kw)
    x, lengths = _ragged(rng, 5, 4, 2)
    y_t, h_t, _ = _torch_run(module, x, lengths)
    got_cell, params = from_torch(module)
    ours = F.forward(got_cell, params, x, lengths)
    assert_close(ours.output, y_t, 1e-5, "output")
    assert_close(ours.h_n, h_t, 1e-5, "h_n")


def test_state_dict_roundtrip_and_prefix(rng):
    params = F.init_params("gru", 4, 3, 2, True, random_state=rng)
    sd = to_torch_state_dict(params, cell="gru")
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert list(sd) == list(params)
    module = torch.nn.GRU(4, 3, num_layers=2, bidirectional=True)
    module.load_state_dict(sd)                      # strict: names and shapes match
    # a larger model's state_dict: the stack is found by its suffix, or by prefix=
    model = torch.nn.Module()
    model.rnn = module
    model.fc = torch.nn.Linear(6, 2)
    cell, back = from_torch(model.state_dict())
    assert cell.name == "gru"
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])
    _, back2 = from_torch(model.state_dict(), prefix="rnn.", dtype=np.float64)
    assert back2["weight_ih_l0"].dtype == np.float64
    # the relu RNN is not visible in a bare state_dict: it must be named
    relu = torch.nn.RNN(2, 3, nonlinearity="relu")
    assert from_torch(relu.state_dict(), cell="rnn_relu")[0].name == "rnn_relu"
    assert from_torch(relu)[0].name == "rnn_relu"


def test_module_without_bias(rng):
    module = torch.nn.LSTM(3, 4, bias=False, batch_first=True)
    x, lengths = _ragged(rng, 3, 5, 3)
    y_t, _, _ = _torch_run(module, x, lengths)
    cell, params = from_torch(module)
    assert np.all(params["bias_ih_l0"] == 0) and params["bias_hh_l0"].shape == (16,)
    assert_close(F.forward(cell, params, x, lengths).output, y_t, 1e-5, "output")


def test_inexpressible_cells_raise_clearly(rng):
    p = F.init_params("gru_classic", 3, 4, random_state=rng)
    with pytest.raises(ValueError, match="classic GRU"):
        to_torch_module("gru_classic", p)
    with pytest.raises(ValueError, match="classic GRU"):
        to_torch_state_dict(p, cell="gru_classic")
    with pytest.raises(ValueError, match="lstm_relu"):
        to_torch_module("lstm_relu", F.init_params("lstm", 3, 4))
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="does not match"):
        from_torch(torch.nn.GRU(3, 4), cell="lstm")
    with pytest.raises(TypeError, match="state_dict"):
        from_torch(42)
    with pytest.raises(ValueError, match="weight_ih_l0"):
        from_torch({"fc.weight": torch.zeros(2, 2)})
