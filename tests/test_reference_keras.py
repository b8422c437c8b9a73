"""The float64 reference against Keras 3 ``GRU`` (``reset_after=False`` and ``True``).

Fixtures in ``tests/data/keras_*.npz`` come from ``tools/fixtures_keras.py`` (Keras 3 on its
TensorFlow backend in float64, ragged batches through ``mask``, gradients by
``tf.GradientTape`` through Keras' own GRU). Keras is not needed to run these tests.
Files made on Keras' torch backend are accepted with a looser tolerance: there Keras'
type promotion turns float64 matmuls into float32 ones (see the tool's docstring).

The Keras -> PyTorch-name mapping is re-derived here block by block (gate names, not the
tool's index permutation) and checked against the mapped weights stored in the fixture;
fastseq's gradients are mapped back to Keras' layout the same way and compared with the
gradients Keras computed.
"""
import glob
import os

import numpy as np
import pytest

from fastseq import layers
from fastseq.cells import make_cell

from compare import assert_close

DATA = os.path.join(os.path.dirname(__file__), "data")
FIXTURES = sorted(glob.glob(os.path.join(DATA, "keras_*.npz")))
# tolerance by the Keras backend that made the file
RTOL = {"tensorflow": 1e-10, "torch": 1e-5}

# gate block index along the 3H axis; Keras' candidate "h" is PyTorch's "n"
KERAS_BLOCKS = {"z": 0, "r": 1, "n": 2}
TORCH_BLOCKS = {"r": 0, "z": 1, "n": 2}


def load(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def fixture_id(path):
    return os.path.basename(path)[len("keras_"):-len(".npz")]


def block(a, gate, blocks, H):
    """The columns (last axis) of gate ``gate`` in a [..., 3H] array laid out as ``blocks``."""
    k = blocks[gate]
    return a[..., k * H:(k + 1) * H]


def keras_to_torch(fx):
    """Keras' kernel/recurrent_kernel/bias -> PyTorch-named params (one layer)."""
    kernel, rkernel, bias = fx["keras:kernel"], fx["keras:recurrent_kernel"], fx["keras:bias"]
    H = rkernel.shape[0]

    def reorder(a):               # [..., 3H] Keras blocks -> [..., 3H] PyTorch blocks
        return np.concatenate([block(a, g, KERAS_BLOCKS, H) for g in ("r", "z", "n")], axis=-1)

    params = {"weight_ih_l0": reorder(kernel).T, "weight_hh_l0": reorder(rkernel).T}
    if bool(fx["meta_reset_after"]):
        params["bias_ih_l0"], params["bias_hh_l0"] = reorder(bias[0]), reorder(bias[1])
    else:
        params["bias_ih_l0"], params["bias_hh_l0"] = reorder(bias), np.zeros(3 * H)
    return params


def torch_grads_to_keras(grads, reset_after, H):
    """fastseq's PyTorch-named gradients -> Keras' kernel/recurrent_kernel/bias layout."""
    def reorder(a):               # [..., 3H] PyTorch blocks -> [..., 3H] Keras blocks
        return np.concatenate([block(a, g, TORCH_BLOCKS, H) for g in ("z", "r", "n")], axis=-1)

    out = {"kernel": reorder(grads["weight_ih_l0"].T),
           "recurrent_kernel": reorder(grads["weight_hh_l0"].T)}
    if reset_after:
        out["bias"] = np.stack([reorder(grads["bias_ih_l0"]), reorder(grads["bias_hh_l0"])])
    else:
        out["bias"] = reorder(grads["bias_ih_l0"])
    return out


def rtol_of(fx):
    return RTOL[str(fx["meta_keras_backend"])]


def run_reference(fx, params):
    cell = make_cell(str(fx["meta_cell"]))
    x = fx["x"].transpose(1, 0, 2)                           # [B, T, I] -> [T, B, I]
    out, h_n, _, cache = layers.stack_forward("reference", cell, params, x, fx["lengths"],
                                              fx["h0"][None])
    dx, grads, dh0, _ = layers.stack_backward(params, cache, fx["d_out"].transpose(1, 0, 2),
                                              fx["dh_n"][None])
    return out.transpose(1, 0, 2), h_n[0], dx.transpose(1, 0, 2), grads, dh0[0]


def test_fixture_set_is_complete():
    ids = {fixture_id(p) for p in FIXTURES}
    for cell in ("gru", "gru_classic"):
        for tag in ("", "_h1", "_t1_b1"):
            assert cell + tag in ids, f"missing fixture keras_{cell}{tag}.npz"
    # the committed files are the exact float64 ones
    assert all(str(load(p)["meta_keras_backend"]) == "tensorflow" for p in FIXTURES)


@pytest.mark.parametrize("path", FIXTURES, ids=fixture_id)
def test_weight_mapping(path):
    """The tool's stored mapping equals the block-by-name mapping derived here."""
    fx = load(path)
    mapped = keras_to_torch(fx)
    for name, value in mapped.items():
        np.testing.assert_array_equal(value, fx["param:" + name], err_msg=name)
    H = fx["h0"].shape[1]
    cell = make_cell(str(fx["meta_cell"]))
    shapes = layers.param_shapes(cell, fx["x"].shape[2], H)
    assert {k: v.shape for k, v in mapped.items()} == shapes


@pytest.mark.parametrize("path", FIXTURES, ids=fixture_id)
def test_forward_matches_keras(path):
    fx = load(path)
    rtol = rtol_of(fx)
    out, h_n, _, _, _ = run_reference(fx, keras_to_torch(fx))
    mask = fx["mask"]
    assert np.array_equal(mask, np.arange(mask.shape[1])[None, :] < fx["lengths"][:, None])
    assert_close(out[mask], fx["out"][mask], rtol, "out at valid steps")
    assert np.all(out[~mask] == 0.0)           # fastseq pads with zeros (Keras repeats)
    assert_close(h_n, fx["h_n"], rtol, "h_n")


@pytest.mark.parametrize("path", FIXTURES, ids=fixture_id)
def test_backward_matches_keras(path):
    fx = load(path)
    rtol = rtol_of(fx)
    reset_after = bool(fx["meta_reset_after"])
    H = fx["h0"].shape[1]
    _, _, dx, grads, dh0 = run_reference(fx, keras_to_torch(fx))
    assert_close(dx, fx["dx"], rtol, "dx")
    assert_close(dh0, fx["dh0"], rtol, "dh0")
    keras_grads = torch_grads_to_keras(grads, reset_after, H)
    for name, value in keras_grads.items():
        assert_close(value, fx["grad_keras:" + name], rtol, "grad of Keras " + name)
    if not reset_after:
        # classic form: b_hh enters exactly where b_ih does, b_hn included
        assert_close(grads["bias_hh_l0"], grads["bias_ih_l0"], 1e-14, "bias_hh vs bias_ih")


@pytest.mark.parametrize("path", [p for p in FIXTURES if "classic" in p], ids=fixture_id)
def test_classic_bias_hh_enters_where_bias_ih_does(path):
    """fastseq's classic GRU adds ``b_hh`` (``b_hn`` included, outside the reset product)
    exactly where ``b_ih`` goes, so Keras' single bias may sit in either; both must
    reproduce Keras. (The standard mapping puts it all in ``bias_ih`` and would not notice
    a classic cell that ignored ``b_hn``.)"""
    fx = load(path)
    rtol = rtol_of(fx)
    params = keras_to_torch(fx)
    params["bias_ih_l0"], params["bias_hh_l0"] = params["bias_hh_l0"], params["bias_ih_l0"]
    out, h_n, dx, grads, dh0 = run_reference(fx, params)
    mask = fx["mask"]
    assert_close(out[mask], fx["out"][mask], rtol, "out at valid steps")
    assert_close(h_n, fx["h_n"], rtol, "h_n")
    assert_close(dx, fx["dx"], rtol, "dx")
    keras_grads = torch_grads_to_keras(grads, False, fx["h0"].shape[1])
    assert_close(keras_grads["bias"], fx["grad_keras:bias"], rtol, "grad of Keras bias")
