"""The training loop's fast paths against the plain ones they replace.

* ``fastseq._transpose.transpose_into`` and its Numba form (8 x 8 blocks) against NumPy's
  ``.T`` copy;
* ``Network._engine_params`` (the engine gets a pooled contiguous copy of each
  ``weight_hh.T``, and its backward reads ``weight_hh`` itself as ``R^T``) against handing
  the layers the parameter views alone: the outputs and gradients must be bitwise equal,
  also when the pooled copies are reused;
* ``Optimizer.step(..., backup=)``: the update is bitwise the one without a backup, the backup
  holds the old parameters, and the finiteness flags match ``np.isfinite`` on the scaled
  gradient and the new parameters.
"""
import numpy as np
import pytest

from fastseq._transpose import transpose_into
from fastseq._transpose_jit import transpose_into_jit
from fastseq.network import Network, make_config
from fastseq.optim import SGD, Adam, RMSProp


@pytest.mark.parametrize("impl", [transpose_into, transpose_into_jit])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 8), (9, 17), (16, 24), (64, 200)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_into_matches_numpy(rng, shape, dtype, impl):
    """The entry point (Cython form when built) and the Numba form it falls back to."""
    src = rng.standard_normal(shape).astype(dtype)
    dest = np.full(shape[::-1], np.nan, dtype=dtype)
    impl(dest, src)
    np.testing.assert_array_equal(dest, src.T)


def test_transpose_into_strided_input_and_bad_shape(rng):
    src = rng.standard_normal((10, 12)).astype(np.float32)[::2, 1:]   # not contiguous
    dest = np.empty((11, 5), np.float32)
    transpose_into(dest, src)
    np.testing.assert_array_equal(dest, src.T)
    with pytest.raises(ValueError, match="expected"):
        transpose_into(np.empty((3, 4), np.float32), np.empty((3, 4), np.float32))


def _plain_params(net):
    return dict(net.rnn_params), None, None


@pytest.mark.parametrize("cell,tokens,output", [("lstm", False, "many-to-one"),
                                                ("gru", True, "many-to-many"),
                                                ("rnn", False, "many-to-many")])
@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_engine_params_give_bitwise_the_same_outputs_and_gradients(rng, monkeypatch, cell,
                                                                  tokens, output, backend):
    if backend == "cython":
        pytest.importorskip("fastseq_ext")
    T, B, F = 6, 5, 3
    kw = dict(vocab_size=7, embedding_dim=4) if tokens else dict(n_features=F)
    cfg = make_config(cell=cell, units=9, num_layers=2, head=[4], n_outputs=3,
                      output=output, **kw)
    net = Network(cfg, backend=backend).init_weights(0)
    lengths = np.array([6, 2, 5, 0, 3])
    batches = [rng.integers(0, 7, size=(T, B)) if tokens
               else rng.standard_normal((T, B, F)).astype(np.float32) for _ in range(3)]

    def run():
        results = []
        for x in batches:                      # the pooled copies are reused batch to batch
            out, cache = net.forward_train(x, lengths, training=True)
            d = np.ones_like(out)
            grad = net.backward(cache, d).copy()
            net.flat -= np.float32(1e-2) * grad       # new weights: the copies must follow
            results.append((out.copy(), grad, net.forward(x, lengths),
                            net.features(x, lengths), net.recurrent_state(x, lengths)[0]))
        return results

    start = net.flat.copy()
    fast = run()
    net.flat[...] = start
    monkeypatch.setattr(Network, "_engine_params", _plain_params)
    plain = run()
    for a, b in zip(fast, plain):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("make", [lambda n: SGD(n, momentum=0.9, nesterov=True),
                                  lambda n: SGD(n, momentum=0.5, nesterov=False),
                                  lambda n: RMSProp(n), lambda n: Adam(n)])
def test_step_backup_and_finiteness_flags(rng, make):
    n = 1000
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    a, b = make(n), make(n)
    pa, pb = p0.copy(), p0.copy()
    backup = np.empty_like(pb)
    for g in grads:
        before = pb.copy()
        assert a.step(pa, g, 0.5) == (True, True)
        assert b.step(pb, g, 0.5, backup=backup) == (True, True)
        np.testing.assert_array_equal(backup, before)
        np.testing.assert_array_equal(pa, pb)
    for bad in (np.nan, np.inf, -np.inf):
        g = grads[0].copy()
        g[417] = bad
        before = pb.copy()
        grad_ok, params_ok = make(n).step(pb, g, backup=backup)
        assert not grad_ok
        np.testing.assert_array_equal(backup, before)
        pb[...] = backup
    # finite gradient, parameters that overflow float32
    big = np.full(n, np.finfo(np.float32).max, dtype=np.float32)
    grad_ok, params_ok = SGD(n, learning_rate=1.0, momentum=0.0).step(
        big, np.full(n, -np.finfo(np.float32).max, dtype=np.float32))
    assert grad_ok and not params_ok and not np.isfinite(big).all()


def test_step_backup_is_checked():
    opt = Adam(10)
    with pytest.raises(ValueError, match="backup"):
        opt.step(np.zeros(10, np.float32), np.zeros(10, np.float32),
                 backup=np.zeros(9, np.float32))


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_inference_without_saved_steps_matches_the_training_forward(rng, backend):
    if backend == "cython":
        pytest.importorskip("fastseq_ext")
    cfg = make_config(n_features=3, cell="lstm", units=6, num_layers=2, head=[4], n_outputs=2)
    net = Network(cfg, backend=backend).init_weights(1)
    x = rng.standard_normal((7, 5, 3)).astype(np.float32)
    lengths = np.array([7, 3, 0, 5, 1])
    full, _ = net.forward_train(x, lengths, training=False)          # keeps the BPTT cache
    np.testing.assert_array_equal(net.forward(x, lengths), full)
    out, cache = net.forward_train(x, lengths, training=False, need_grad=False)
    np.testing.assert_array_equal(out, full)
    with pytest.raises(ValueError, match="need_grad"):
        net.backward(cache, np.ones_like(out))
