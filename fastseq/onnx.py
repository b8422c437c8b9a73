"""ONNX export with native ``RNN`` / ``LSTM`` / ``GRU`` nodes (needs the ``onnx`` extra).

:func:`to_onnx` writes one of two graphs:

* **recurrent stack** (``to_onnx(path, cell, params)``)::

      inputs   x        float [batch, T, I]      (batch-first, like fastseq.functional)
               lengths  int64 [batch]            valid steps per sequence, in [1, T]
      outputs  output   float [batch, T, D*H]    zero past each length
               h_n      float [L*D, batch, H]    PyTorch order (layer * D + direction)
               c_n      float [L*D, batch, H]    LSTM only

* **whole network** (``to_onnx(path, network)`` or a fitted estimator, through its
  ``network_``): the same recurrent stack plus the embedding (``Gather``) for token input and
  the dense head (``MatMul`` + ``Add`` + activation per layer)::

      inputs   x        float [batch, T, F] or int64 [batch, T] token ids
               lengths  int64 [batch]
      outputs  scores   [batch, n_outputs] (many-to-one, read from the final states as the
                        network does) or [batch, T, n_outputs] (many-to-many)
               probabilities   softmax of scores (classifiers; ``softmax=True``)

Weight layout (DESIGN.md section 5): ``W [D, G*H, I]``, ``R [D, G*H, H]``,
``B [D, 2*G*H]`` (``W_b`` then ``R_b``); gate blocks reordered from PyTorch's
(LSTM ``[i|f|g|o]`` -> ``[i|o|f|c]``, GRU ``[r|z|n]`` -> ``[z|r|h]``). The GRU node gets
``linear_before_reset=1`` for PyTorch's form and ``0`` for the classic form. ``sequence_lens``
carries the ragged lengths; between layers the node's ``Y [T, D, B, H]`` is transposed and
reshaped to ``[T, B, D*H]``.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .cells import make_cell
from .functional import validate_params
from .layers import _suffix

__all__ = ["to_onnx", "stack_to_onnx_weights", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17

# block order of each ONNX node, as indices into PyTorch's gate blocks
_ONNX_BLOCKS = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}
_ACT = {"tanh": "Tanh", "relu": "Relu"}


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:  # pragma: no cover - exercised only without onnx
        raise ImportError("ONNX export needs the onnx package: pip install "
                          "'fastseq[onnx]' (or pip install onnx)") from exc
    return onnx, helper, numpy_helper


def _reorder(a, cell, H):
    """Rows of ``a`` (``[G*H, ...]`` or ``[G*H]``) in the ONNX node's gate order."""
    blocks = _ONNX_BLOCKS[cell.kind]
    return np.concatenate([a[b * H:(b + 1) * H] for b in blocks], axis=0)


def stack_to_onnx_weights(cell, params, layer):
    """``(W [D, G*H, I], R [D, G*H, H], B [D, 2*G*H])`` of one layer, ONNX's layout."""
    cell = make_cell(cell)
    num_layers, D, H, I, dtype = validate_params(cell, params)
    W, R, B = [], [], []
    for direction in range(D):
        s = _suffix(layer, direction)
        W.append(_reorder(params["weight_ih" + s], cell, H))
        R.append(_reorder(params["weight_hh" + s], cell, H))
        B.append(np.concatenate([_reorder(params["bias_ih" + s], cell, H),
                                 _reorder(params["bias_hh" + s], cell, H)]))
    return np.stack(W), np.stack(R), np.stack(B)


class _Graph:
    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.inits = [], []
        self._n = 0

    def name(self, base):
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base, value):
        name = self.name(base)
        self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, n_out=1, base=None, **attrs):
        outs = [self.name(base or op.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op, inputs, outs, name=self.name(op), **attrs))
        return outs if n_out > 1 else outs[0]


def _recurrent_stack(g, cell, params, x_tm, seq_lens):
    """Add the stack's nodes. x_tm: [T, B, I]. Returns (out [T, B, D*H], h_list, c_list)."""
    num_layers, D, H, I, dtype = validate_params(cell, params)
    direction = "bidirectional" if D == 2 else "forward"
    if cell.kind == "rnn":
        op, acts = "RNN", [_ACT[cell.activation]]
    elif cell.kind == "lstm":
        op, acts = "LSTM", ["Sigmoid", _ACT[cell.activation], _ACT[cell.activation]]
    else:
        op, acts = "GRU", ["Sigmoid", _ACT[cell.activation]]
    shape_tbdh = g.const("shape_tb_dh", np.array([0, 0, -1], dtype=np.int64))
    layer_in = x_tm
    hs, cs = [], []
    for layer in range(num_layers):
        W, R, B = stack_to_onnx_weights(cell, params, layer)
        inputs = [layer_in, g.const(f"W{layer}", W), g.const(f"R{layer}", R),
                  g.const(f"B{layer}", B), seq_lens]
        attrs = dict(hidden_size=H, direction=direction, activations=acts * D)
        if op == "GRU":
            attrs["linear_before_reset"] = 1 if cell.reset_after else 0
        n_out = 3 if op == "LSTM" else 2
        outs = g.node(op, inputs, n_out=n_out, base=f"{op.lower()}{layer}", **attrs)
        y = outs[0]                                                   # [T, D, B, H]
        hs.append(outs[1])                                            # [D, B, H]
        if op == "LSTM":
            cs.append(outs[2])
        y = g.node("Transpose", [y], perm=[0, 2, 1, 3])               # [T, B, D, H]
        layer_in = g.node("Reshape", [y, shape_tbdh])                 # [T, B, D*H]
    return layer_in, hs, cs


def _float_type(onnx, dtype):
    return onnx.TensorProto.DOUBLE if dtype == np.float64 else onnx.TensorProto.FLOAT


def _network_of(model):
    """A fastseq Network from a Network or a fitted estimator (its ``network_``)."""
    from .network import Network
    if isinstance(model, Network):
        return model
    net = getattr(model, "network_", None)
    if isinstance(net, Network):
        return net
    return None


def to_onnx(path, model, params=None, *, softmax=None, opset=DEFAULT_OPSET,
            graph_name="fastseq"):
    """Write an ONNX model to ``path`` (atomically) and return the ``onnx.ModelProto``.

    Parameters
    ----------
    path : str or os.PathLike, or None to only return the model
    model : a cell (``"lstm"``, ``CellSpec``...) together with ``params`` (a recurrent
        stack), or a :class:`fastseq.network.Network`, or a fitted fastseq estimator
    params : dict of PyTorch-named arrays (only with a cell)
    softmax : add a ``probabilities`` output (softmax of the scores). Default: True for a
        fitted classifier with more than one output, else False. Network graphs only.
    opset : ONNX opset (14 or later)
    """
    onnx, helper, numpy_helper = _onnx()
    g = _Graph(helper, numpy_helper)
    net = _network_of(model)
    if net is None:
        if params is None:
            raise TypeError("to_onnx needs a cell and params, a fastseq Network, or a fitted "
                            f"estimator; got {type(model).__name__} without params")
        cell = make_cell(model)
        num_layers, D, H, I, dtype = validate_params(cell, params)
        ftype = _float_type(onnx, dtype)
        inputs = [helper.make_tensor_value_info("x", ftype, ["batch", "T", I]),
                  helper.make_tensor_value_info("lengths", onnx.TensorProto.INT64,
                                                ["batch"])]
        seq_lens = g.node("Cast", ["lengths"], to=onnx.TensorProto.INT32)
        x_tm = g.node("Transpose", ["x"], perm=[1, 0, 2])
        out, hs, cs = _recurrent_stack(g, cell, params, x_tm, seq_lens)
        outputs = [("output", g.node("Transpose", [out], perm=[1, 0, 2]),
                    ftype, ["batch", "T", D * H])]
        outputs.append(("h_n", hs[0] if len(hs) == 1 else g.node("Concat", hs, axis=0),
                        ftype, [num_layers * D, "batch", H]))
        if cs:
            outputs.append(("c_n", cs[0] if len(cs) == 1 else g.node("Concat", cs, axis=0),
                            ftype, [num_layers * D, "batch", H]))
    else:
        if params is not None:
            raise TypeError("params is only used with a cell; a Network carries its own")
        if softmax is None:
            softmax = bool(getattr(model, "_is_classifier", False) or
                           hasattr(model, "classes_")) and net.config["n_outputs"] > 1
        inputs, outputs = _network_graph(g, onnx, net, bool(softmax))
    for name, src, ftype, shape in outputs:
        g.nodes.append(helper.make_node("Identity", [src], [name], name=g.name("out")))
    graph = helper.make_graph(
        g.nodes, graph_name, inputs,
        [helper.make_tensor_value_info(name, ftype, shape)
         for name, _, ftype, shape in outputs], g.inits)
    from ._version import __version__
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                   producer_name="fastseq", producer_version=__version__)
    onnx_model.ir_version = min(onnx_model.ir_version, 8)   # readable by older runtimes
    onnx.checker.check_model(onnx_model)
    if path is not None:
        _atomic_write(path, onnx_model.SerializeToString())
    return onnx_model


def _network_graph(g, onnx, net, softmax):
    helper = g.h
    cfg = net.config
    ftype = _float_type(onnx, net.dtype)
    D, H = net.D, net.H
    if net.tokens:
        x_in = helper.make_tensor_value_info("x", onnx.TensorProto.INT64, ["batch", "T"])
        emb = g.const("embedding", net.params["embedding.weight"])
        x_bt = g.node("Gather", [emb, "x"], axis=0)                  # [B, T, E]
    else:
        x_in = helper.make_tensor_value_info("x", ftype, ["batch", "T", net.input_size])
        x_bt = "x"
    inputs = [x_in, helper.make_tensor_value_info("lengths", onnx.TensorProto.INT64,
                                                  ["batch"])]
    seq_lens = g.node("Cast", ["lengths"], to=onnx.TensorProto.INT32)
    x_tm = g.node("Transpose", [x_bt], perm=[1, 0, 2])
    out, hs, _ = _recurrent_stack(g, net.cell, net.rnn_params, x_tm, seq_lens)
    many_to_one = cfg["output"] == "many-to-one"
    if many_to_one:
        top = g.node("Transpose", [hs[-1]], perm=[1, 0, 2])          # [B, D, H]
        a = g.node("Reshape", [top, g.const("shape_b_dh",
                                           np.array([0, -1], dtype=np.int64))])
        lead = ["batch"]
    else:
        a = g.node("Transpose", [out], perm=[1, 0, 2])                # [B, T, D*H]
        lead = ["batch", "T"]
    act_op = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": None}
    for j in range(net.n_fc):
        W = net.params[f"fc.{j}.weight"]
        a = g.node("MatMul", [a, g.const(f"fc{j}_WT", np.ascontiguousarray(W.T))])
        a = g.node("Add", [a, g.const(f"fc{j}_b", net.params[f"fc.{j}.bias"])])
        if j < net.n_fc - 1 and act_op[cfg["head_activation"]]:
            a = g.node(act_op[cfg["head_activation"]], [a])
    outputs = [("scores", a, ftype, lead + [cfg["n_outputs"]])]
    if softmax:
        outputs.append(("probabilities", g.node("Softmax", [a], axis=-1), ftype,
                        lead + [cfg["n_outputs"]]))
    return inputs, outputs


def _atomic_write(path, data):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastseq-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
