"""The float64 reference against PyTorch 2.13 (``nn.RNN``/``nn.LSTM``/``nn.GRU``).

Fixtures in ``tests/data/torch_*.npz`` come from ``tools/fixtures_torch.py`` (packed ragged
batches with unsorted lengths, 1 and 2 layers, uni- and bidirectional, awkward shapes);
torch is not needed to run these tests. The fixtures are batch-first; fastseq is
time-major, so every array is transposed on the way in and out.
"""
import glob
import os

import numpy as np
import pytest

from fastseq import layers
from fastseq.backends import reference
from fastseq.cells import make_cell

from compare import assert_all_close, assert_close, rel_error

DATA = os.path.join(os.path.dirname(__file__), "data")
FIXTURES = sorted(glob.glob(os.path.join(DATA, "torch_*.npz")))
RTOL = 1e-10


def load(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def fixture_id(path):
    return os.path.basename(path)[len("torch_"):-len(".npz")]


def params_of(fx):
    return {k[len("param:"):]: v for k, v in fx.items() if k.startswith("param:")}


def grads_of(fx):
    return {k[len("grad:"):]: v for k, v in fx.items() if k.startswith("grad:")}


def run_reference(fx):
    """Forward and backward through fastseq's reference stack; returns batch-first results."""
    cell = make_cell(str(fx["meta_cell"]))
    params = params_of(fx)
    x = fx["x"].transpose(1, 0, 2)                           # [B, T, I] -> [T, B, I]
    out, h_n, c_n, cache = layers.stack_forward(
        "reference", cell, params, x, fx["lengths"], fx["h0"], fx.get("c0"))
    dx, grads, dh0, dc0 = layers.stack_backward(
        params, cache, fx["d_out"].transpose(1, 0, 2), fx["dh_n"], fx.get("dc_n"))
    return dict(out=out.transpose(1, 0, 2), h_n=h_n, c_n=c_n, dx=dx.transpose(1, 0, 2),
                grads=grads, dh0=dh0, dc0=dc0)


def test_fixture_set_is_complete():
    """Every cell, every stack shape: a missing file must not silently shrink the suite."""
    ids = {fixture_id(p) for p in FIXTURES}
    for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
        for tag in ("l1", "l1_bi", "l2", "l2_bi", "t1_bi", "b1_l2_bi", "h1_l2_bi"):
            assert f"{cell}_{tag}" in ids, f"missing fixture torch_{cell}_{tag}.npz"
    steps = {fixture_id(p): np.diff(load(p)["lengths"]) for p in FIXTURES}
    unsorted = [k for k, d in steps.items() if np.any(d > 0) and np.any(d < 0)]
    assert len(unsorted) >= 4 * 4, f"too few fixtures with unsorted lengths: {unsorted}"
    ours = [p for pattern in ("torch_*.npz", "keras_*.npz")
            for p in glob.glob(os.path.join(DATA, pattern))]
    total = sum(os.path.getsize(p) for p in ours)
    assert total < 1024 * 1024, f"torch/keras fixtures take {total} bytes; keep them under 1 MB"


@pytest.mark.parametrize("path", FIXTURES, ids=fixture_id)
def test_forward_matches_torch(path):
    fx = load(path)
    got = run_reference(fx)
    assert_close(got["out"], fx["out"], RTOL, "out")
    assert_close(got["h_n"], fx["h_n"], RTOL, "h_n")
    if "c_n" in fx:
        assert_close(got["c_n"], fx["c_n"], RTOL, "c_n")
    else:
        assert got["c_n"] is None


@pytest.mark.parametrize("path", FIXTURES, ids=fixture_id)
def test_backward_matches_torch(path):
    fx = load(path)
    got = run_reference(fx)
    assert_all_close(got["grads"], grads_of(fx), RTOL, prefix="parameter gradients: ")
    assert_close(got["dx"], fx["dx"], RTOL, "dx")
    assert_close(got["dh0"], fx["dh0"], RTOL, "dh0")
    if "dc0" in fx:
        assert_close(got["dc0"], fx["dc0"], RTOL, "dc0")


@pytest.mark.parametrize("path", [p for p in FIXTURES
                                  if fixture_id(p).endswith(("_l1", "_t1_bi"))],
                         ids=fixture_id)
def test_step_matches_torch(path):
    """Streaming inference: reference.step, one step at a time, per direction, layer 0."""
    fx = load(path)
    cell = make_cell(str(fx["meta_cell"]))
    params = params_of(fx)
    x, lengths = fx["x"], fx["lengths"]                     # [B, T, I]
    B, T, _ = x.shape
    D = 2 if bool(fx["meta_bidirectional"]) else 1
    H = fx["h0"].shape[2]
    for direction in range(D):
        s = "_l0" + ("_reverse" if direction else "")
        W, R = params["weight_ih" + s], params["weight_hh" + s]
        for b in range(B):                                  # one sequence at a time: B=1
            h = fx["h0"][direction, b:b + 1]
            c = fx["c0"][direction, b:b + 1] if cell.has_cell_state else None
            steps = range(lengths[b]) if direction == 0 else range(lengths[b] - 1, -1, -1)
            for t in steps:
                xw_t = x[b:b + 1, t] @ W.T + params["bias_ih" + s]
                h, c = reference.step(cell, xw_t, R.T, params["bias_hh" + s], h, c)
                assert_close(h[0], fx["out"][b, t, direction * H:(direction + 1) * H],
                             RTOL, f"out[{b}, {t}] direction {direction}")
            assert_close(h[0], fx["h_n"][direction, b], RTOL, f"h_n[{direction}, {b}]")
            if cell.has_cell_state:
                assert_close(c[0], fx["c_n"][direction, b], RTOL, f"c_n[{direction}, {b}]")


def test_reverse_final_state_is_output_at_t0():
    """PyTorch's layout, and fastseq's: the backward direction's final state is its output
    at t = 0; the forward direction's is its output at t = length - 1."""
    checked = 0
    for path in FIXTURES:
        fx = load(path)
        if not bool(fx["meta_bidirectional"]):
            continue
        got = run_reference(fx)
        H = fx["h0"].shape[2]
        top = 2 * (int(fx["meta_num_layers"]) - 1)
        rows = np.arange(len(fx["lengths"]))
        for source in (fx, got):
            np.testing.assert_array_equal(source["h_n"][top + 1], source["out"][:, 0, H:])
            np.testing.assert_array_equal(source["h_n"][top],
                                          source["out"][rows, fx["lengths"] - 1, :H])
        checked += 1
    assert checked >= 4 * 5


@pytest.mark.parametrize("path", [p for p in FIXTURES if fixture_id(p).endswith("_l2_bi")
                                  and "b1" not in fixture_id(p) and "h1" not in fixture_id(p)],
                         ids=fixture_id)
def test_comparison_has_teeth(path):
    """The comparison notices a wrong layout: swapping two gate blocks (LSTM i<->f, GRU
    r<->z) or dropping one bias must push the error far past the tolerance."""
    fx = load(path)
    cell = make_cell(str(fx["meta_cell"]))
    H = fx["h0"].shape[2]
    mutations = {"drop bias_hh_l1_reverse[n]": lambda p: p["bias_hh_l1_reverse"].__setitem__(
        slice((cell.n_gates - 1) * H, None), 0.0)}
    if cell.n_gates > 1:
        def swap(p):
            for name, value in p.items():
                value[[*range(H, 2 * H), *range(0, H)]] = value[:2 * H].copy()
        mutations["swap gate blocks 0 and 1"] = swap
    for what, mutate in mutations.items():
        mutated = dict(fx)
        params = {k: v.copy() for k, v in params_of(fx).items()}
        mutate(params)
        mutated.update({"param:" + k: v for k, v in params.items()})
        got = run_reference(mutated)
        err = max(rel_error(got["out"], fx["out"]), rel_error(got["h_n"], fx["h_n"]))
        assert err > 1e3 * RTOL, f"{what}: error only {err:.1e}"
