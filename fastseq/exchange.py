"""Weight exchange with PyTorch (``nn.RNN/LSTM/GRU``) and Keras 3 (``SimpleRNN/LSTM/GRU``,
``Bidirectional``), both directions, at the level of the recurrent stack.

fastseq's params dict uses PyTorch's names and shapes (see :mod:`fastseq.layers`), so the
PyTorch side is a renaming-free copy. Keras differs (DESIGN.md section 5):

=========  ==========================  =======================  ===========================
cell       PyTorch rows (ours)         Keras columns            bias
=========  ==========================  =======================  ===========================
RNN        ``[h]``                     ``[h]``                  ``b_ih + b_hh`` ``[H]``
LSTM       ``[i | f | g | o]``         ``[i | f | c | o]``      ``b_ih + b_hh`` ``[4H]``
GRU        ``[r | z | n]``             ``[z | r | h]``          ``reset_after=True``:
                                                                ``[[b_ih], [b_hh]]`` ``[2, 3H]``
GRU clas.  ``[r | z | n]``             ``[z | r | h]``          ``reset_after=False``:
                                                                ``b_ih + b_hh`` ``[3H]``
=========  ==========================  =======================  ===========================

Keras' kernel is ``weight_ih.T`` ``[I, G*H]`` and its recurrent kernel ``weight_hh.T``
``[H, G*H]`` (columns permuted as above). Where Keras has one bias, importing puts it in
``bias_ih`` and zeros in ``bias_hh``: the cell computes the same function.

The classic GRU (``reset_after=False``) and the ``relu`` LSTM/GRU cannot be expressed by
PyTorch's modules; asking for them raises a :class:`ValueError` that says so.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .cells import CellSpec, make_cell
from .functional import validate_params
from .layers import _suffix, param_shapes

__all__ = ["to_torch_state_dict", "to_torch_module", "from_torch", "to_keras_weights",
           "to_keras_layers", "from_keras"]


# ================================================================ PyTorch
def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError("PyTorch is needed for this function: pip install torch") from exc
    return torch


def _check_torch_expressible(cell):
    if cell.kind == "gru" and not cell.reset_after:
        raise ValueError("the classic GRU (reset_after=False, Keras' form) cannot be "
                         "expressed by torch.nn.GRU, which applies the reset gate after the "
                         "recurrent product; export it to Keras or ONNX instead")
    if cell.kind != "rnn" and cell.activation != "tanh":
        raise ValueError(f"torch.nn.{cell.kind.upper()} has no activation option; a "
                         f"{cell.name} cell cannot be expressed in PyTorch")


def to_torch_state_dict(params, cell=None):
    """``{name: torch.Tensor}`` in PyTorch's order, loadable by ``module.load_state_dict``.

    ``cell`` (optional) is checked: a classic GRU or a relu LSTM/GRU raises ValueError.
    """
    torch = _torch()
    if cell is not None:
        cell = make_cell(cell)
        validate_params(cell, params)
        _check_torch_expressible(cell)
    elif not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    return OrderedDict((name, torch.from_numpy(np.array(value, copy=True)))
                       for name, value in params.items())


def to_torch_module(cell, params, *, batch_first=True):
    """A new ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` holding these weights (same dtype)."""
    torch = _torch()
    cell = make_cell(cell)
    num_layers, D, H, I, dtype = validate_params(cell, params)
    _check_torch_expressible(cell)
    kw = dict(num_layers=num_layers, bidirectional=D == 2, batch_first=batch_first)
    if cell.kind == "rnn":
        module = torch.nn.RNN(I, H, nonlinearity=cell.activation, **kw)
    elif cell.kind == "lstm":
        module = torch.nn.LSTM(I, H, **kw)
    else:
        module = torch.nn.GRU(I, H, **kw)
    module = module.to(torch.float64 if dtype == np.float64 else torch.float32)
    module.load_state_dict(to_torch_state_dict(params))
    return module


_TORCH_MODES = {"RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"),
                "LSTM": ("lstm", "tanh"), "GRU": ("gru", "tanh")}


def _strip_prefix(state):
    if "weight_ih_l0" in state:
        return state
    prefixes = {k[:-len("weight_ih_l0")] for k in state if k.endswith("weight_ih_l0")}
    if len(prefixes) != 1:
        raise ValueError("state_dict has no 'weight_ih_l0' entry" if not prefixes else
                         f"state_dict holds several recurrent stacks {sorted(prefixes)}; "
                         "pass prefix= to choose one")
    return _select_prefix(state, prefixes.pop())


def _select_prefix(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def from_torch(module_or_state_dict, cell=None, *, prefix=None, dtype=None):
    """Read PyTorch weights into ``(cell, params)``.

    Parameters
    ----------
    module_or_state_dict : ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``, or a state_dict (tensors
        or arrays). A state_dict of a larger model works too: the recurrent stack is found
        by its ``weight_ih_l0`` suffix, or chosen with ``prefix="rnn."``.
    cell : optional; read from the module. For a bare state_dict the kind is read from the
        gate count (``weight_hh_l0`` is ``[G*H, H]``); a relu RNN needs ``cell="rnn_relu"``.
    dtype : optional float dtype of the result (default: the tensors' dtype)

    Returns
    -------
    (CellSpec, dict of NumPy arrays keyed by PyTorch names)
    """
    if hasattr(module_or_state_dict, "state_dict") and hasattr(module_or_state_dict, "mode"):
        module = module_or_state_dict
        if getattr(module, "proj_size", 0):
            raise ValueError("LSTM with proj_size > 0 has no fastseq equivalent")
        if module.mode not in _TORCH_MODES:
            raise ValueError(f"unknown torch RNN mode {module.mode!r}")
        kind, activation = _TORCH_MODES[module.mode]
        module_cell = CellSpec(kind, activation)
        if cell is not None and make_cell(cell) != module_cell:
            raise ValueError(f"cell={make_cell(cell).name!r} does not match the module, which "
                             f"is a {module_cell.name}")
        cell = module_cell
        state = dict(module.state_dict())
        G, H = cell.n_gates, module.hidden_size
        if not module.bias:   # PyTorch leaves the biases out; fastseq always has them
            D = 2 if module.bidirectional else 1
            ref = next(iter(state.values()))
            for layer in range(module.num_layers):
                for direction in range(D):
                    s = _suffix(layer, direction)
                    state["bias_ih" + s] = np.zeros(G * H, dtype=_np_dtype(ref))
                    state["bias_hh" + s] = np.zeros(G * H, dtype=_np_dtype(ref))
    elif isinstance(module_or_state_dict, Mapping):
        state = dict(module_or_state_dict)
        state = _select_prefix(state, prefix) if prefix else _strip_prefix(state)
    else:
        raise TypeError("from_torch takes an nn.RNN/LSTM/GRU module or a state_dict, got "
                        f"{type(module_or_state_dict).__name__}")
    arrays = {k: _to_numpy(v) for k, v in state.items()}
    if "weight_hh_l0" not in arrays:
        raise ValueError("state_dict has no 'weight_hh_l0' entry")
    w_hh = arrays["weight_hh_l0"]
    G = w_hh.shape[0] // max(w_hh.shape[1], 1)
    if cell is None:
        kinds = {1: "rnn", 4: "lstm", 3: "gru"}
        if G not in kinds or w_hh.shape[0] != G * w_hh.shape[1]:
            raise ValueError(f"weight_hh_l0 has shape {w_hh.shape}; expected (G*H, H) with "
                             "G = 1 (RNN), 3 (GRU) or 4 (LSTM)")
        cell = CellSpec(kinds[G])
    cell = make_cell(cell)
    _check_torch_expressible(cell)
    if dtype is not None:
        arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    num_layers, D, H, I, _ = validate_params(cell, _ordered_like(cell, arrays))
    return cell, _ordered_like(cell, arrays)


def _ordered_like(cell, arrays):
    w_ih, w_hh = arrays.get("weight_ih_l0"), arrays.get("weight_hh_l0")
    if w_ih is None or w_ih.ndim != 2 or w_hh.ndim != 2:
        return arrays
    num_layers = sum(1 for k in arrays if k.startswith("weight_ih_l") and
                     not k.endswith("_reverse"))
    shapes = param_shapes(cell, w_ih.shape[1], w_hh.shape[1], max(num_layers, 1),
                          "weight_ih_l0_reverse" in arrays)
    if set(shapes) != set(arrays):
        return arrays          # validate_params names the difference
    return {k: arrays[k] for k in shapes}


def _np_dtype(value):
    return _to_numpy(value).dtype


def _to_numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    value = np.array(value, copy=True)
    if value.dtype not in (np.float32, np.float64):
        value = value.astype(np.float32)
    return value


# ================================================================ Keras 3
def _keras_perm(cell, H):
    """Row indices: keras_block = ours[perm] (GRU [r|z|n] -> [z|r|h]); None = identity."""
    if cell.kind != "gru":
        return None
    return np.concatenate([np.arange(H, 2 * H), np.arange(0, H), np.arange(2 * H, 3 * H)])


def _keras_direction(cell, params, s, H):
    perm = _keras_perm(cell, H)
    w_ih, w_hh = params["weight_ih" + s], params["weight_hh" + s]
    b_ih, b_hh = params["bias_ih" + s], params["bias_hh" + s]
    if perm is not None:
        w_ih, w_hh, b_ih, b_hh = w_ih[perm], w_hh[perm], b_ih[perm], b_hh[perm]
    kernel = np.ascontiguousarray(w_ih.T)                 # [I, G*H]
    recurrent = np.ascontiguousarray(w_hh.T)              # [H, G*H]
    if cell.kind == "gru" and cell.reset_after:
        bias = np.stack([b_ih, b_hh])                     # [2, 3H]
    else:
        bias = b_ih + b_hh                                # [G*H]
    return [kernel, recurrent, bias]


def to_keras_weights(cell, params):
    """Keras 3 weight lists, one per layer, for ``layer.set_weights(...)``.

    Each entry is ``[kernel, recurrent_kernel, bias]`` for a ``SimpleRNN`` / ``LSTM`` /
    ``GRU`` layer, or those six arrays (forward then backward) for a ``Bidirectional``
    wrapper. The GRU's list fits ``GRU(reset_after=cell.reset_after)``.
    """
    cell = make_cell(cell)
    num_layers, D, H, I, dtype = validate_params(cell, params)
    weights = []
    for layer in range(num_layers):
        ws = []
        for direction in range(D):
            ws += _keras_direction(cell, params, _suffix(layer, direction), H)
        weights.append(ws)
    return weights


def _keras():
    try:
        import keras
    except ImportError as exc:  # pragma: no cover
        raise ImportError("Keras 3 is needed for this function: pip install keras") from exc
    return keras


def to_keras_layers(cell, params, *, return_sequences=True):
    """Built Keras layers (``SimpleRNN``/``LSTM``/``GRU``, wrapped in ``Bidirectional``
    when the stack is) holding these weights; stack them in a ``keras.Sequential``.

    Every layer but the last returns sequences; the last follows ``return_sequences``.
    """
    keras = _keras()
    cell = make_cell(cell)
    num_layers, D, H, I, dtype = validate_params(cell, params)
    out = []
    for layer, ws in enumerate(to_keras_weights(cell, params)):
        kw = dict(activation=cell.activation, recurrent_activation="sigmoid",
                  return_sequences=return_sequences or layer < num_layers - 1,
                  dtype="float64" if dtype == np.float64 else "float32")
        if cell.kind == "rnn":
            kw.pop("recurrent_activation")
            rnn = keras.layers.SimpleRNN(H, **kw)
        elif cell.kind == "lstm":
            rnn = keras.layers.LSTM(H, **kw)
        else:
            rnn = keras.layers.GRU(H, reset_after=cell.reset_after, **kw)
        if D == 2:
            rnn = keras.layers.Bidirectional(rnn, merge_mode="concat", dtype=kw["dtype"])
        rnn.build((None, None, I if layer == 0 else D * H))
        rnn.set_weights(ws)
        out.append(rnn)
    return out


_KERAS_KINDS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _keras_layer_weights(layer):
    """(weights, direction count, CellSpec) of one Keras recurrent layer or wrapper."""
    cls = type(layer).__name__
    D = 1
    inner = layer
    if cls == "Bidirectional":
        if getattr(layer, "merge_mode", "concat") != "concat":
            raise ValueError(f"Bidirectional merge_mode={layer.merge_mode!r}: only 'concat' "
                             "matches a stacked bidirectional network")
        inner, D = layer.forward_layer, 2
        cls = type(inner).__name__
    if cls not in _KERAS_KINDS:
        raise TypeError(f"unsupported Keras layer {type(layer).__name__}; expected "
                        "SimpleRNN, LSTM, GRU or Bidirectional around one of them")
    cfg = inner.get_config()
    activation = cfg.get("activation", "tanh")
    if activation not in ("tanh", "relu"):
        raise ValueError(f"Keras activation {activation!r} is not supported (tanh or relu)")
    rec = cfg.get("recurrent_activation", "sigmoid")
    if rec != "sigmoid":
        raise ValueError(f"recurrent_activation={rec!r}: fastseq's gates use 'sigmoid'")
    if cfg.get("go_backwards"):
        raise ValueError("go_backwards=True layers are not supported; use Bidirectional")
    kind = _KERAS_KINDS[cls]
    spec = CellSpec(kind, activation, bool(cfg.get("reset_after", True)) if kind == "gru"
                    else True)
    return [np.asarray(w) for w in layer.get_weights()], D, spec


def _recurrent_layers(obj):
    if hasattr(obj, "get_weights") and type(obj).__name__ in (
            "SimpleRNN", "LSTM", "GRU", "Bidirectional"):
        return [obj]
    if hasattr(obj, "layers"):      # Sequential / Model
        return [l for l in obj.layers if type(l).__name__ in
                ("SimpleRNN", "LSTM", "GRU", "Bidirectional")]
    return None


def from_keras(layers_or_weights, cell=None, *, dtype=None):
    """Read Keras 3 recurrent weights into ``(cell, params)``.

    Parameters
    ----------
    layers_or_weights : a Keras ``SimpleRNN``/``LSTM``/``GRU``/``Bidirectional`` layer, a
        list of them (a stack, in order), a model (its recurrent layers, in order), or raw
        weight lists: one list ``[kernel, recurrent_kernel, bias]`` (six arrays for a
        Bidirectional layer) or a list of such lists (a stack).
    cell : needed only where the arrays alone are ambiguous: the activation of raw weight
        lists (default tanh) and a GRU without bias. With layers it is read from them and,
        if given, must match.
    dtype : optional float dtype of the result

    Returns
    -------
    (CellSpec, dict of NumPy arrays keyed by PyTorch names)
    """
    given = None if cell is None else make_cell(cell)
    entries = []
    found = _recurrent_layers(layers_or_weights)
    if found is None and isinstance(layers_or_weights, (list, tuple)) and layers_or_weights \
            and all(_recurrent_layers(l) is not None and hasattr(l, "get_weights")
                    for l in layers_or_weights):
        found = [x for l in layers_or_weights for x in _recurrent_layers(l)]
    if found is not None:
        if not found:
            raise ValueError("no SimpleRNN/LSTM/GRU/Bidirectional layer found")
        specs = set()
        for layer in found:
            ws, D, spec = _keras_layer_weights(layer)
            entries.append((ws, D))
            specs.add(spec)
        if len(specs) != 1:
            raise ValueError(f"the layers mix cells {sorted(s.name for s in specs)}; a "
                             "fastseq stack has one cell")
        spec = specs.pop()
        if given is not None and given != spec:
            raise ValueError(f"cell={given.name!r} does not match the Keras layers "
                             f"({spec.name})")
        cell = spec
    else:
        lists = _raw_weight_lists(layers_or_weights)
        for ws in lists:
            if len(ws) not in (2, 3, 4, 6):
                raise ValueError(f"a Keras weight list has {len(ws)} arrays; expected 3 "
                                 "(kernel, recurrent_kernel, bias), 6 for Bidirectional, or "
                                 "2 / 4 without bias")
            entries.append((ws, 2 if len(ws) in (4, 6) else 1))
        cell = given if given is not None else _infer_keras_cell(entries[0][0])
    D = entries[0][1]
    if any(d != D for _, d in entries):
        raise ValueError("every layer of a stack must be bidirectional, or none")
    params = {}
    H = None
    for layer, (ws, _) in enumerate(entries):
        per = len(ws) // D
        for direction in range(D):
            part = ws[direction * per:(direction + 1) * per]
            H = _keras_direction_to_params(cell, part, _suffix(layer, direction), params,
                                           layer, H)
    if dtype is not None:
        params = {k: v.astype(dtype) for k, v in params.items()}
    validate_params(cell, params)
    return cell, params


def _raw_weight_lists(obj):
    if not isinstance(obj, (list, tuple)) or not obj:
        raise TypeError("from_keras takes Keras layers, a model, or weight lists (lists of "
                        f"arrays), got {type(obj).__name__}")
    if all(isinstance(w, (list, tuple)) for w in obj):
        return [[np.asarray(a) for a in ws] for ws in obj]
    return [[np.asarray(a) for a in obj]]


def _infer_keras_cell(ws):
    kernel, recurrent = ws[0], ws[1]
    if recurrent.ndim != 2 or recurrent.shape[1] % max(recurrent.shape[0], 1):
        raise ValueError(f"recurrent_kernel has shape {recurrent.shape}; expected (H, G*H)")
    G = recurrent.shape[1] // recurrent.shape[0]
    if G == 1:
        return CellSpec("rnn")
    if G == 4:
        return CellSpec("lstm")
    if G == 3:
        if len(ws) % 3 != 0:
            raise ValueError("a GRU without bias is ambiguous: pass cell='gru' "
                             "(reset_after=True) or cell='gru_classic'")
        return CellSpec("gru", reset_after=ws[2].ndim == 2)
    raise ValueError(f"recurrent_kernel has shape {recurrent.shape}; expected (H, G*H) with "
                     "G = 1, 3 or 4")


def _keras_direction_to_params(cell, ws, s, params, layer, H_prev):
    kernel, recurrent = np.asarray(ws[0]), np.asarray(ws[1])
    if kernel.ndim != 2 or recurrent.ndim != 2:
        raise ValueError(f"layer {layer}: kernel {kernel.shape} and recurrent_kernel "
                         f"{recurrent.shape} must be 2-D ([I, G*H] and [H, G*H])")
    H = recurrent.shape[0]
    G = cell.n_gates
    if recurrent.shape != (H, G * H) or kernel.shape[1] != G * H:
        raise ValueError(f"layer {layer}: kernel {kernel.shape} / recurrent_kernel "
                         f"{recurrent.shape} do not fit a {cell.name} cell: expected "
                         f"[I, {G}*H] and [H, {G}*H]")
    if H_prev is not None and H != H_prev:
        raise ValueError(f"layer {layer} has {H} units, earlier layers {H_prev}; fastseq "
                         "stacks use one hidden size")
    dtype = kernel.dtype if kernel.dtype in (np.float32, np.float64) else np.float32
    if len(ws) == 3:
        bias = np.asarray(ws[2])
    else:
        bias = (np.zeros((2, G * H), dtype) if cell.kind == "gru" and cell.reset_after
                else np.zeros(G * H, dtype))
    if cell.kind == "gru" and cell.reset_after:
        if bias.shape != (2, G * H):
            raise ValueError(f"layer {layer}: GRU(reset_after=True) bias has shape "
                             f"{bias.shape}; expected (2, {G * H})")
        b_ih, b_hh = bias[0], bias[1]
    else:
        if bias.shape != (G * H,):
            raise ValueError(f"layer {layer}: bias has shape {bias.shape}; expected "
                             f"({G * H},)" + (" (a [2, 3H] bias means reset_after=True: "
                                              "cell='gru')" if bias.ndim == 2 else ""))
        b_ih, b_hh = bias, np.zeros_like(bias)
    perm = _keras_perm(cell, H)
    inv = None if perm is None else np.argsort(perm)
    w_ih, w_hh = kernel.T, recurrent.T
    if inv is not None:
        w_ih, w_hh, b_ih, b_hh = w_ih[inv], w_hh[inv], b_ih[inv], b_hh[inv]
    params["weight_ih" + s] = np.ascontiguousarray(w_ih, dtype=dtype)
    params["weight_hh" + s] = np.ascontiguousarray(w_hh, dtype=dtype)
    params["bias_ih" + s] = np.ascontiguousarray(b_ih, dtype=dtype)
    params["bias_hh" + s] = np.ascontiguousarray(b_hh, dtype=dtype)
    return H
