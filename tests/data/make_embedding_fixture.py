"""Regenerate tests/data/embedding_torch_fixture.npz (PyTorch float64 outputs and gradients).

Run: python tests/data/make_embedding_fixture.py   (needs torch; the tests only read the file)

For each cell: a 2-layer bidirectional stack, batch_first input [B, T, I] with unsorted
ragged lengths, random h0 (and c0), PyTorch's forward through pack_padded_sequence, and the
gradients of loss = sum(out * w_out) + sum(h_n * w_h) (+ sum(c_n * w_c)).
"""
import os

import numpy as np
import torch

CELLS = {"lstm": (torch.nn.LSTM, {}), "gru": (torch.nn.GRU, {}),
         "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}),
         "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"})}


def main():
    torch.manual_seed(1234)
    rng = np.random.default_rng(1234)
    B, T, I, H, L = 4, 7, 3, 5, 2
    out = {}
    for name, (cls, kw) in CELLS.items():
        m = cls(I, H, num_layers=L, bidirectional=True, batch_first=True, **kw).double()
        x = torch.tensor(rng.normal(size=(B, T, I)), requires_grad=True)
        lengths = np.array([5, 7, 1, 3])
        h0 = torch.tensor(rng.normal(size=(2 * L, B, H)) * 0.5, requires_grad=True)
        state = h0
        c0 = None
        if name == "lstm":
            c0 = torch.tensor(rng.normal(size=(2 * L, B, H)) * 0.5, requires_grad=True)
            state = (h0, c0)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths),
                                                         batch_first=True,
                                                         enforce_sorted=False)
        y, st = m(packed, state)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=T)
        h_n, c_n = (st if name == "lstm" else (st, None))
        w_out = torch.tensor(rng.normal(size=y.shape))
        w_h = torch.tensor(rng.normal(size=h_n.shape))
        loss = (y * w_out).sum() + (h_n * w_h).sum()
        if c_n is not None:
            w_c = torch.tensor(rng.normal(size=c_n.shape))
            loss = loss + (c_n * w_c).sum()
            out[f"{name}/w_c"] = w_c.numpy()
            out[f"{name}/c0"] = c0.detach().numpy()
            out[f"{name}/c_n"] = c_n.detach().numpy()
        loss.backward()
        for k, v in m.state_dict().items():
            out[f"{name}/param/{k}"] = v.numpy()
            out[f"{name}/grad/{k}"] = dict(m.named_parameters())[k].grad.numpy()
        out[f"{name}/x"] = x.detach().numpy()
        out[f"{name}/lengths"] = lengths
        out[f"{name}/h0"] = h0.detach().numpy()
        out[f"{name}/output"] = y.detach().numpy()
        out[f"{name}/h_n"] = h_n.detach().numpy()
        out[f"{name}/w_out"] = w_out.numpy()
        out[f"{name}/w_h"] = w_h.numpy()
        out[f"{name}/dx"] = x.grad.numpy()
        out[f"{name}/dh0"] = h0.grad.numpy()
        if c0 is not None:
            out[f"{name}/dc0"] = c0.grad.numpy()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "embedding_torch_fixture.npz")
    np.savez_compressed(path, **out)
    print("wrote", path, len(out), "arrays")


if __name__ == "__main__":
    main()
