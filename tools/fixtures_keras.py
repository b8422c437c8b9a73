"""Write Keras 3 GRU fixtures for fastseq's tests: ``tests/data/keras_*.npz``.

Run from the repository root (needs ``keras`` 3 and TensorFlow or PyTorch; the tests only
read the ``.npz`` files)::

    KERAS_BACKEND=tensorflow python tools/fixtures_keras.py     # what produced the files
    KERAS_BACKEND=torch python tools/fixtures_keras.py          # works, float32 matmuls

Keras runs in float64 (``dtype="float64"``); gradients come from the backend's autograd
(``tf.GradientTape`` / torch autograd) through Keras' own GRU implementation.

Precision trap: on every backend except TensorFlow, Keras 3's type promotion
(``keras.src.backend.common.dtypes.result_type``) maps float64 to float32, JAX-style, so
``keras.ops.matmul`` of two float64 tensors on the torch backend computes and returns float32
and the masked (step-by-step) GRU agrees with a float64 reference only to ~1e-7. Files made
on the TensorFlow backend are float64 throughout; ``meta_keras_backend`` records which
backend made a file and the tests pick their tolerance from it (1e-10 for TensorFlow, 1e-5
otherwise).

Two forms:

* ``GRU(reset_after=False)``: the classic GRU, ``h~ = tanh(x W_h + (r*h) U_h + b_h)``,
  which PyTorch cannot express; fastseq's ``gru_classic`` cell.
* ``GRU(reset_after=True)``: Keras' default, equal to PyTorch's GRU; fastseq's ``gru``.

Ragged batches use Keras' ``mask`` (right padding, lengths unsorted). Keras' masked steps
*repeat the last valid output* (they are not zero, unlike PyTorch's ``pad_packed_sequence``),
so a gradient placed on a padded output would flow into the last valid step. The upstream
gradient ``d_out`` is therefore zero at padded steps, and the tests compare outputs at
valid steps only.

Weight mapping, Keras -> fastseq (PyTorch names and shapes), written once here and
re-derived independently in ``tests/test_reference_keras.py``::

    Keras gate blocks along the last axis: [z | r | h];  PyTorch / fastseq rows: [r | z | n]
    perm = [H:2H, 0:H, 2H:3H]                       (column indices into Keras' 3H axis)
    weight_ih_l0 = kernel[:, perm].T                [3H, I]
    weight_hh_l0 = recurrent_kernel[:, perm].T      [3H, H]
    reset_after=True,  bias [2, 3H]:  bias_ih_l0 = bias[0, perm];  bias_hh_l0 = bias[1, perm]
    reset_after=False, bias [3H]:     bias_ih_l0 = bias[perm];     bias_hh_l0 = 0
        (the classic form adds b_hh to the same pre-activations as b_ih, b_hn included,
         so Keras' single bias is all of it; the gradient of bias_hh equals that of bias_ih)

Layout of a file (batch-first)::

    meta_cell ("gru" | "gru_classic"), meta_reset_after, meta_keras_version,
    meta_keras_backend ("tensorflow" | "torch")
    x [B, T, I] (zero past lengths), lengths [B], mask [B, T] (bool), h0 [B, H]
    keras:kernel [I, 3H], keras:recurrent_kernel [H, 3H], keras:bias [3H] or [2, 3H]
    param:<PyTorch name>    the same weights, mapped as above
    out [B, T, H] (Keras' values, padded steps repeat), h_n [B, H]
    d_out (zero at padded steps), dh_n; the loss is sum(out*d_out) + sum(h_n*dh_n)
    dx, dh0, grad_keras:kernel, grad_keras:recurrent_kernel, grad_keras:bias
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "data")

# (tag, T, B, I, H, lengths): lengths unsorted, include 1 and T
SHAPES = [
    ("", 5, 4, 3, 3, [3, 5, 1, 4]),
    ("_h1", 4, 3, 2, 1, [4, 1, 2]),          # hidden size 1
    ("_t1_b1", 1, 1, 2, 2, [1]),             # one step, batch of one
]


def keras_to_torch_perm(H):
    """Column indices that turn Keras' [z | r | h] blocks into PyTorch's [r | z | n]."""
    return np.concatenate([np.arange(H, 2 * H), np.arange(0, H), np.arange(2 * H, 3 * H)])


def keras_gru_to_params(kernel, recurrent_kernel, bias, reset_after):
    """Keras GRU weights -> fastseq / PyTorch-named params of one unidirectional layer."""
    H = recurrent_kernel.shape[0]
    perm = keras_to_torch_perm(H)
    params = {
        "weight_ih_l0": np.ascontiguousarray(kernel[:, perm].T),
        "weight_hh_l0": np.ascontiguousarray(recurrent_kernel[:, perm].T),
    }
    if reset_after:
        params["bias_ih_l0"] = bias[0, perm].copy()
        params["bias_hh_l0"] = bias[1, perm].copy()
    else:
        params["bias_ih_l0"] = bias[perm].copy()
        params["bias_hh_l0"] = np.zeros(3 * H)
    return params


def run_with_gradients(layer, variables, x, mask, h0, d_out, dh_n):
    """Forward through the Keras layer and backward from ``sum(out*d_out) + sum(h_n*dh_n)``
    with the backend's own autograd. Returns NumPy (out, h_n, dx, dh0, [dvariable...])."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        x_t, h0_t = tf.Variable(x), tf.Variable(h0)
        with tf.GradientTape() as tape:
            out, h_n = layer(x_t, mask=tf.constant(mask), initial_state=[h0_t])
            loss = tf.reduce_sum(out * d_out) + tf.reduce_sum(h_n * dh_n)
        grads = tape.gradient(loss, [x_t, h0_t] + [w.value for w in variables])
        grads = [g.numpy() for g in grads]
        return out.numpy(), h_n.numpy(), grads[0], grads[1], grads[2:]
    if backend == "torch":
        import torch
        x_t = torch.tensor(x, requires_grad=True)
        h0_t = torch.tensor(h0, requires_grad=True)
        out, h_n = layer(x_t, mask=torch.tensor(mask), initial_state=[h0_t])
        loss = (out * torch.tensor(d_out)).sum() + (h_n * torch.tensor(dh_n)).sum()
        loss.backward()
        return (out.detach().numpy(), h_n.detach().numpy(), x_t.grad.numpy(),
                h0_t.grad.numpy(), [w.value.grad.numpy() for w in variables])
    raise SystemExit(f"KERAS_BACKEND={backend!r}: use tensorflow (float64) or torch")


def make_case(reset_after, tag, T, B, I, H, lengths, seed):
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    layer = keras.layers.GRU(H, reset_after=reset_after, return_sequences=True,
                             return_state=True, dtype="float64")
    layer.build((B, T, I))
    # random weights everywhere, biases included (Keras initialises biases to zero)
    for w in layer.weights:
        w.assign(rng.uniform(-0.9, 0.9, size=tuple(w.shape)))
    kernel, recurrent_kernel, bias = (np.asarray(keras.ops.convert_to_numpy(w))
                                      for w in (layer.cell.kernel, layer.cell.recurrent_kernel,
                                                layer.cell.bias))

    lengths = np.asarray(lengths, dtype=np.int64)
    mask_np = np.arange(T)[None, :] < lengths[:, None]
    x_np = rng.standard_normal((B, T, I))
    x_np[~mask_np] = 0.0
    h0_np = 0.5 * rng.standard_normal((B, H))
    d_out_np = rng.standard_normal((B, T, H)) * mask_np[:, :, None]
    dh_n_np = rng.standard_normal((B, H))
    variables = (layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias)
    out, h_n, dx, dh0, dweights = run_with_gradients(layer, variables, x_np, mask_np, h0_np,
                                                     d_out_np, dh_n_np)
    cell_name = "gru" if reset_after else "gru_classic"
    arrays = dict(
        meta_cell=np.array(cell_name), meta_reset_after=np.array(reset_after),
        meta_keras_version=np.array(keras.__version__),
        meta_keras_backend=np.array(keras.backend.backend()),
        x=x_np, lengths=lengths, mask=mask_np, h0=h0_np, out=out, h_n=h_n,
        d_out=d_out_np, dh_n=dh_n_np, dx=dx, dh0=dh0,
    )
    for name, w, grad in zip(("kernel", "recurrent_kernel", "bias"), variables, dweights):
        arrays["keras:" + name] = np.asarray(keras.ops.convert_to_numpy(w))
        arrays["grad_keras:" + name] = grad
    for name, value in keras_gru_to_params(kernel, recurrent_kernel, bias,
                                           reset_after).items():
        arrays["param:" + name] = value
    return f"keras_{cell_name}{tag}.npz", arrays


def main(out_dir=OUT_DIR):
    os.makedirs(out_dir, exist_ok=True)
    written = []
    seed = 31400
    for reset_after in (False, True):
        for shape in SHAPES:
            seed += 1
            fname, arrays = make_case(reset_after, *shape, seed=seed)
            path = os.path.join(out_dir, fname)
            np.savez_compressed(path, **arrays)
            written.append(path)
    total = sum(os.path.getsize(p) for p in written)
    print(f"wrote {len(written)} Keras {keras.__version__} "
          f"({keras.backend.backend()} backend) fixtures ({total / 1024:.0f} KiB) "
          f"to {os.path.normpath(out_dir)}", file=sys.stderr)


if __name__ == "__main__":
    main()
