"""Central finite differences (float64) against the reference's BPTT.

Two levels:

* the stack (``layers.stack_forward`` / ``stack_backward`` with backend ``"reference"``):
  every parameter, ``x``, ``h0`` and ``c0``, element by element; ragged unsorted lengths
  including 0, 1 and T; 1 and 2 layers; uni- and bidirectional; dropout masks between layers
  and recurrent-dropout masks;
* the cell interface (``reference.forward`` / ``backward``): gradients flowing from ``H_all``
  only, from ``h_T`` only and from ``c_T`` only, onto ``xw``, ``R``, ``bh``, ``h0``, ``c0``.

The loss is ``sum(out*d_out) + sum(h_n*dh_n) (+ sum(c_n*dc_n))`` with random upstream
gradients, so every output is exercised. Errors are ``max |fd - bptt| / max(1, max |fd|)``
per tensor (``compare.rel_error``); the module prints the max and mean over all checks
(``pytest -s``).
"""
import numpy as np
import pytest

from fastseq import layers
from fastseq.backends import reference
from fastseq.cells import make_cell

from compare import rel_error

EPS = 1e-6
TOL = 1e-6
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_relu", "gru", "gru_classic", "gru_relu"]

_errors = []          # (case, tensor, max relative error, mean relative error)


@pytest.fixture(scope="module", autouse=True)
def error_summary():
    yield
    if _errors:
        maxes = np.array([e[2] for e in _errors])
        means = np.array([e[3] for e in _errors])
        worst = _errors[int(np.argmax(maxes))]
        print(f"\nfinite differences: {len(_errors)} tensors, max error {maxes.max():.2e} "
              f"({worst[0]} {worst[1]}), mean error {means.mean():.2e}")


def numerical_grad(loss, array, eps=EPS):
    """Central differences of ``loss()`` with respect to every element of ``array``
    (perturbed in place and restored)."""
    grad = np.zeros_like(array)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + eps
        up = loss()
        array[idx] = old - eps
        down = loss()
        array[idx] = old
        grad[idx] = (up - down) / (2 * eps)
    return grad


def check(case, name, analytic, loss, array):
    numeric = numerical_grad(loss, array)
    err = rel_error(analytic, numeric)
    scale = max(1.0, float(np.max(np.abs(numeric)))) if numeric.size else 1.0
    mean = float(np.mean(np.abs(analytic - numeric))) / scale if numeric.size else 0.0
    _errors.append((case, name, err, mean))
    assert err <= TOL, f"{case} {name}: finite-difference error {err:.3e} > {TOL:.0e}"
    return err


def dropout_mask(rng, shape, p=0.4):
    return (rng.random(shape) >= p) / (1.0 - p)


# ------------------------------------------------------------------------ the stack
STACKS = [
    # (id, num_layers, bidirectional, dropout between layers, recurrent dropout)
    ("l1", 1, False, False, False),
    ("l1_bi_rdrop", 1, True, False, True),
    ("l2_drop_rdrop", 2, False, True, True),
    ("l2_bi_drop_rdrop", 2, True, True, True),
]


def stack_case(rng, cell, num_layers, bidirectional, drop, rdrop, T, B, I, H, lengths):
    cell = make_cell(cell)
    D = 2 if bidirectional else 1
    params = layers.init_params(cell, I, H, num_layers, bidirectional,
                                random_state=rng.integers(2**31), dtype=np.float64)
    for p in params.values():
        p *= 2.0                            # leave the linear zone of the gates
    x = rng.standard_normal((T, B, I))
    lengths = np.asarray(lengths)
    h0 = 0.5 * rng.standard_normal((num_layers * D, B, H))
    c0 = 0.5 * rng.standard_normal((num_layers * D, B, H)) if cell.has_cell_state else None
    masks = ([dropout_mask(rng, (T, B, D * H)) for _ in range(num_layers - 1)]
             if drop else None)
    rmasks = ([dropout_mask(rng, (B, H)) for _ in range(num_layers * D)] if rdrop else None)
    d_out = rng.standard_normal((T, B, D * H))
    dh_n = rng.standard_normal((num_layers * D, B, H))
    dc_n = rng.standard_normal((num_layers * D, B, H)) if cell.has_cell_state else None

    def loss():
        out, h_n, c_n, _ = layers.stack_forward("reference", cell, params, x, lengths, h0, c0,
                                                dropout_masks=masks, rmasks=rmasks)
        total = np.sum(out * d_out) + np.sum(h_n * dh_n)
        return total + (np.sum(c_n * dc_n) if c_n is not None else 0.0)

    _, _, _, cache = layers.stack_forward("reference", cell, params, x, lengths, h0, c0,
                                          dropout_masks=masks, rmasks=rmasks)
    dx, grads, dh0, dc0 = layers.stack_backward(params, cache, d_out, dh_n, dc_n)
    case = f"{cell.name}/L{num_layers}D{D}/T{T}B{B}H{H}"
    for name in params:
        check(case, name, grads[name], loss, params[name])
    check(case, "x", dx, loss, x)
    check(case, "h0", dh0, loss, h0)
    if cell.has_cell_state:
        check(case, "c0", dc0, loss, c0)
    else:
        assert dc0 is None


@pytest.mark.parametrize("stack", STACKS, ids=[s[0] for s in STACKS])
@pytest.mark.parametrize("cell", CELLS)
def test_stack_gradients_ragged(rng, cell, stack):
    _, num_layers, bidirectional, drop, rdrop = stack
    lengths = rng.permutation([0, 1, 2, 4])       # unsorted; includes 0, 1 and T
    stack_case(rng, cell, num_layers, bidirectional, drop, rdrop,
               T=4, B=4, I=3, H=2, lengths=lengths)


AWKWARD = [
    # (id, T, B, I, H, lengths, num_layers, bidirectional)
    ("t1_b1_h1", 1, 1, 1, 1, [1], 1, True),
    ("h1_ragged", 3, 3, 2, 1, [3, 0, 1], 2, True),
    ("b1_len0", 3, 1, 2, 2, [0], 1, True),
]


@pytest.mark.parametrize("shape", AWKWARD, ids=[a[0] for a in AWKWARD])
@pytest.mark.parametrize("cell", CELLS)
def test_stack_gradients_awkward_shapes(rng, cell, shape):
    _, T, B, I, H, lengths, num_layers, bidirectional = shape
    stack_case(rng, cell, num_layers, bidirectional, num_layers > 1, True,
               T=T, B=B, I=I, H=H, lengths=lengths)


# ------------------------------------------------------------------------ the cell interface
SOURCES = [(cell, source) for cell in CELLS for source in ("H_all", "h_T", "c_T")
           if source != "c_T" or make_cell(cell).has_cell_state]


@pytest.mark.parametrize("cell, source", SOURCES, ids=[f"{c}-{s}" for c, s in SOURCES])
def test_cell_interface_gradients(rng, cell, source):
    cell = make_cell(cell)
    T, B, H = 4, 4, 2
    GH = cell.n_gates * H
    xw = rng.standard_normal((T, B, GH))
    R = rng.uniform(-1.0, 1.0, (H, GH))
    bh = rng.uniform(-0.5, 0.5, GH)
    h0 = 0.5 * rng.standard_normal((B, H))
    c0 = 0.5 * rng.standard_normal((B, H)) if cell.has_cell_state else None
    lengths = rng.permutation([0, 1, 3, 4])
    rmask = dropout_mask(rng, (B, H))
    upstream = rng.standard_normal((T, B, H) if source == "H_all" else (B, H))

    def outputs():
        H_all, (h_T, c_T), cache = reference.forward(cell, xw, R, bh, h0, c0, lengths,
                                                     rmask=rmask)
        return {"H_all": H_all, "h_T": h_T, "c_T": c_T}, cache

    def loss():
        return np.sum(outputs()[0][source] * upstream)

    _, cache = outputs()
    # only one source: the others are None, as a caller would pass them
    dxw, dR, dbh, dh0, dc0 = reference.backward(
        cell, cache, upstream if source == "H_all" else None,
        upstream if source == "h_T" else None, upstream if source == "c_T" else None)
    assert dxw.shape == xw.shape and dR.shape == R.shape and dbh.shape == bh.shape
    case = f"cell {cell.name} from {source}"
    check(case, "xw", dxw, loss, xw)
    check(case, "R", dR, loss, R)
    check(case, "bh", dbh, loss, bh)
    check(case, "h0", dh0, loss, h0)
    if cell.has_cell_state:
        check(case, "c0", dc0, loss, c0)
    else:
        assert dc0 is None
    # padded steps of a ragged batch carry no gradient onto xw
    inactive = np.arange(T)[:, None] >= lengths[None, :]
    assert np.all(dxw[inactive] == 0.0)


@pytest.mark.parametrize("T, B", [(0, 3), (3, 0)], ids=["T0", "B0"])
@pytest.mark.parametrize("cell", CELLS)
def test_cell_interface_degenerate_sizes(rng, cell, T, B):
    """No steps (or no rows): the state passes through and so does its gradient."""
    cell = make_cell(cell)
    H = 2
    GH = cell.n_gates * H
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H)) if cell.has_cell_state else None
    H_all, (h_T, c_T), cache = reference.forward(
        cell, np.zeros((T, B, GH)), rng.standard_normal((H, GH)), rng.standard_normal(GH),
        h0, c0, np.zeros(B, dtype=int) if T == 0 else None)
    assert H_all.shape == (T, B, H)
    np.testing.assert_array_equal(h_T, h0)
    dh_T = rng.standard_normal((B, H))
    dc_T = rng.standard_normal((B, H)) if cell.has_cell_state else None
    dxw, dR, dbh, dh0, dc0 = reference.backward(cell, cache, np.zeros((T, B, H)), dh_T, dc_T)
    assert dxw.shape == (T, B, GH)
    assert np.all(dR == 0) and np.all(dbh == 0)
    np.testing.assert_array_equal(dh0, dh_T)
    if cell.has_cell_state:
        np.testing.assert_array_equal(c_T, c0)
        np.testing.assert_array_equal(dc0, dc_T)
