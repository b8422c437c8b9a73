"""Write PyTorch reference fixtures for fastseq's tests: ``tests/data/torch_*.npz``.

Run from the repository root (needs ``torch``; the tests only read the ``.npz`` files)::

    python tools/fixtures_torch.py

Each file holds one float64 case of ``nn.RNN`` (tanh / relu), ``nn.LSTM`` or ``nn.GRU``,
run on a packed ragged batch (``pack_padded_sequence(..., enforce_sorted=False)``, lengths
unsorted) and differentiated with autograd. Layout of a file (batch-first, as the module
was built with ``batch_first=True``)::

    meta_mode, meta_cell     "LSTM" / "lstm", "RNN_RELU" / "rnn_relu", ...   (0-d str)
    meta_num_layers, meta_bidirectional, meta_torch_version
    x        [B, T, I]       input; zero past each length
    lengths  [B]             unsorted, each in [1, T]
    h0       [L*D, B, H]     initial hidden state (c0 likewise, LSTM only)
    param:<name>             every tensor of ``state_dict()``, under its own name
    out      [B, T, D*H]     ``pad_packed_sequence(..., total_length=T)``: zero past lengths
    h_n      [L*D, B, H]     final state (c_n likewise, LSTM only)
    d_out, dh_n (, dc_n)     random upstream gradients; the loss is
                             ``sum(out*d_out) + sum(h_n*dh_n) (+ sum(c_n*dc_n))``
                             (d_out is random at padded steps too: they must be ignored)
    dx, dh0 (, dc0)          autograd gradients of that loss
    grad:<name>              gradient of every parameter
"""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "data")

# mode: (torch module, nonlinearity or None, fastseq cell name)
MODES = {
    "RNN_TANH": (torch.nn.RNN, "tanh", "rnn_tanh"),
    "RNN_RELU": (torch.nn.RNN, "relu", "rnn_relu"),
    "LSTM": (torch.nn.LSTM, None, "lstm"),
    "GRU": (torch.nn.GRU, None, "gru"),
}

# (tag, num_layers, bidirectional, T, B, I, H, lengths): lengths unsorted, include 1 and T
SHAPES = [
    ("l1", 1, False, 5, 4, 3, 3, [3, 5, 1, 4]),
    ("l1_bi", 1, True, 5, 4, 3, 3, [2, 1, 5, 4]),
    ("l2", 2, False, 5, 4, 3, 3, [4, 1, 5, 2]),
    ("l2_bi", 2, True, 5, 4, 3, 3, [1, 5, 3, 5]),
    # awkward shapes
    ("t1_bi", 1, True, 1, 3, 2, 2, [1, 1, 1]),          # a single time step
    ("b1_l2_bi", 2, True, 4, 1, 2, 2, [4]),             # batch of one
    ("h1_l2_bi", 2, True, 6, 5, 2, 1, [6, 1, 3, 6, 2]),  # hidden size 1, ragged
]


def make_case(mode, tag, num_layers, bidirectional, T, B, I, H, lengths, seed):
    module_cls, nonlinearity, cell_name = MODES[mode]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    kwargs = dict(input_size=I, hidden_size=H, num_layers=num_layers,
                  bidirectional=bidirectional, batch_first=True)
    if nonlinearity is not None:
        kwargs["nonlinearity"] = nonlinearity
    module = module_cls(**kwargs).double()
    with torch.no_grad():                    # scale up a little so gates leave the linear zone
        for p in module.parameters():
            p.mul_(1.5)
    D = 2 if bidirectional else 1
    lengths = np.asarray(lengths, dtype=np.int64)
    x_np = rng.standard_normal((B, T, I))
    x_np[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
    x = torch.tensor(x_np, requires_grad=True)
    h0 = torch.tensor(0.5 * rng.standard_normal((num_layers * D, B, H)), requires_grad=True)
    is_lstm = mode == "LSTM"
    c0 = (torch.tensor(0.5 * rng.standard_normal((num_layers * D, B, H)), requires_grad=True)
          if is_lstm else None)

    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True,
                                  enforce_sorted=False)
    out_packed, state = module(packed, (h0, c0) if is_lstm else h0)
    out, out_lengths = pad_packed_sequence(out_packed, batch_first=True, total_length=T)
    assert np.array_equal(out_lengths.numpy(), lengths)
    h_n, c_n = state if is_lstm else (state, None)

    d_out = torch.tensor(rng.standard_normal(out.shape))
    dh_n = torch.tensor(rng.standard_normal(h_n.shape))
    loss = (out * d_out).sum() + (h_n * dh_n).sum()
    if is_lstm:
        dc_n = torch.tensor(rng.standard_normal(c_n.shape))
        loss = loss + (c_n * dc_n).sum()
    loss.backward()

    arrays = dict(
        meta_mode=np.array(mode), meta_cell=np.array(cell_name),
        meta_num_layers=np.array(num_layers), meta_bidirectional=np.array(bidirectional),
        meta_torch_version=np.array(torch.__version__),
        x=x_np, lengths=lengths, h0=h0.detach().numpy(),
        out=out.detach().numpy(), h_n=h_n.detach().numpy(),
        d_out=d_out.numpy(), dh_n=dh_n.numpy(),
        dx=x.grad.numpy(), dh0=h0.grad.numpy(),
    )
    if is_lstm:
        arrays.update(c0=c0.detach().numpy(), c_n=c_n.detach().numpy(), dc_n=dc_n.numpy(),
                      dc0=c0.grad.numpy())
    for name, p in module.named_parameters():
        arrays["param:" + name] = p.detach().numpy()
        arrays["grad:" + name] = p.grad.numpy()
    return f"torch_{cell_name}_{tag}.npz", arrays


def main(out_dir=OUT_DIR):
    os.makedirs(out_dir, exist_ok=True)
    seed = 20260
    written = []
    for mode in MODES:
        for shape in SHAPES:
            seed += 1
            fname, arrays = make_case(mode, *shape, seed=seed)
            path = os.path.join(out_dir, fname)
            np.savez_compressed(path, **arrays)
            written.append(path)
    total = sum(os.path.getsize(p) for p in written)
    print(f"wrote {len(written)} PyTorch fixtures ({total / 1024:.0f} KiB) to "
          f"{os.path.normpath(out_dir)}", file=sys.stderr)


if __name__ == "__main__":
    main()
