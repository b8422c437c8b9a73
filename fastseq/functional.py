"""Stable low-level API for applications that bring their own training loop.

Everything here takes explicit weights and explicit state and returns new arrays; nothing is
hidden in objects. The contract (names, argument order, return types) is versioned by
:data:`FUNCTIONAL_API_VERSION` and described in ``docs/embedding.md``; the signatures are
pinned by ``tests/test_functional.py``.

Conventions (the same as PyTorch's ``nn.RNN/LSTM/GRU``)::

    x       [B, T, I]      batch_first=True (default), or [T, B, I] with batch_first=False;
                           also a list of (T_i, I) arrays (ragged, zero-padded here)
    lengths [B]            ints in [0, T]; step t of sequence b runs iff t < lengths[b]
    h0, c0  [L*D, B, H]    initial state, index = layer * D + direction (c0: LSTM only)
    output  [B, T, D*H]    last layer's output (forward half first), zero past each length
    h_n,c_n [L*D, B, H]    state after each sequence's last step

``params`` is a dict keyed by PyTorch's names (``weight_ih_l0`` ``[G*H, I]``,
``weight_hh_l0`` ``[G*H, H]``, ``bias_ih_l0``, ``bias_hh_l0`` ``[G*H]``, suffix ``_reverse``
for the backward direction), so ``dict(torch_module.state_dict())`` converted to NumPy is a
valid ``params``. All arrays share one float dtype (float32 or float64).

Functions: :func:`param_shapes`, :func:`init_params`, :func:`forward`, :func:`backward`,
:func:`step`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from . import layers
from ._memory import check_batch_memory
from .backends import get_backend
from .cells import CellSpec, make_cell
from .data import pad_sequences

FUNCTIONAL_API_VERSION = 1

__all__ = ["FUNCTIONAL_API_VERSION", "ForwardResult", "BackwardResult", "StepResult",
           "param_shapes", "init_params", "forward", "backward", "step", "validate_params"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class ForwardResult(NamedTuple):
    """What :func:`forward` returns."""
    output: np.ndarray          # [B, T, D*H] (batch_first) or [T, B, D*H]
    h_n: np.ndarray             # [L*D, B, H]
    c_n: np.ndarray | None      # [L*D, B, H] for the LSTM, else None
    cache: dict                 # opaque; pass to backward()


class BackwardResult(NamedTuple):
    """What :func:`backward` returns."""
    dx: np.ndarray              # same layout as forward's x (padded if x was a list)
    grads: dict                 # {name: array}, same names, shapes and order as params
    dh0: np.ndarray             # [L*D, B, H]
    dc0: np.ndarray | None      # [L*D, B, H] for the LSTM, else None


class StepResult(NamedTuple):
    """What :func:`step` returns."""
    output: np.ndarray          # [B, H]: the last layer's new hidden state
    h: np.ndarray               # [L, B, H]
    c: np.ndarray | None        # [L, B, H] for the LSTM, else None


# ---------------------------------------------------------------- parameters
def _check_cell(cell) -> CellSpec:
    try:
        return make_cell(cell)
    except TypeError as exc:
        raise TypeError(f"cell: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"cell: {exc}") from None


def _check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def param_shapes(cell, input_size, hidden_size, num_layers=1, bidirectional=False):
    """Ordered ``{name: shape}`` of a recurrent stack, PyTorch's names and shapes."""
    cell = _check_cell(cell)
    input_size = _check_positive_int(input_size, "input_size")
    hidden_size = _check_positive_int(hidden_size, "hidden_size")
    num_layers = _check_positive_int(num_layers, "num_layers")
    if not isinstance(bidirectional, (bool, np.bool_)):
        raise TypeError(f"bidirectional must be a bool, got {bidirectional!r}")
    return layers.param_shapes(cell, input_size, hidden_size, num_layers, bool(bidirectional))


def init_params(cell, input_size, hidden_size, num_layers=1, bidirectional=False, *,
                random_state=None, dtype=np.float32):
    """New weights with PyTorch's default initialisation ``U(-1/sqrt(H), 1/sqrt(H))``.

    Returns a dict ``{name: array}`` in PyTorch's order (see :func:`param_shapes`).
    """
    shapes = param_shapes(cell, input_size, hidden_size, num_layers, bidirectional)
    dtype = np.dtype(dtype)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    rng = np.random.default_rng(random_state)
    bound = 1.0 / np.sqrt(hidden_size)
    return {name: rng.uniform(-bound, bound, size=shape).astype(dtype)
            for name, shape in shapes.items()}


def validate_params(cell, params):
    """Check a params dict against the cell; return ``(num_layers, D, H, I, dtype)``.

    Raises TypeError / ValueError naming the offending entry and the expected shape.
    """
    cell = _check_cell(cell)
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of arrays keyed by PyTorch names, "
                        f"got {type(params).__name__}")
    for name in ("weight_ih_l0", "weight_hh_l0"):
        if name not in params:
            raise ValueError(f"params has no {name!r}; expected PyTorch names such as "
                             "weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0")
    w_hh = np.asarray(params["weight_hh_l0"])
    w_ih = np.asarray(params["weight_ih_l0"])
    if w_hh.ndim != 2 or w_ih.ndim != 2:
        raise ValueError(f"params['weight_hh_l0'] has shape {w_hh.shape} and "
                         f"params['weight_ih_l0'] {w_ih.shape}; expected 2-D "
                         f"({cell.n_gates}*H, H) and ({cell.n_gates}*H, I)")
    H = w_hh.shape[1]
    if H < 1 or w_hh.shape[0] != cell.n_gates * H:
        raise ValueError(f"params['weight_hh_l0'] has shape {w_hh.shape}; a {cell.kind} "
                         f"with hidden size H needs ({cell.n_gates}*H, H)")
    I = w_ih.shape[1]
    num_layers = sum(1 for k in params if isinstance(k, str) and k.startswith("weight_ih_l")
                     and not k.endswith("_reverse"))
    D = 2 if "weight_ih_l0_reverse" in params else 1
    expected = layers.param_shapes(cell, I, H, num_layers, D == 2)
    unexpected = sorted(set(params) - set(expected), key=str)
    if unexpected:
        raise ValueError(f"params has unexpected entries {unexpected}; a {num_layers}-layer "
                         f"{'bidirectional ' if D == 2 else ''}{cell.kind} has "
                         f"{list(expected)}")
    missing = [k for k in expected if k not in params]
    if missing:
        raise ValueError(f"params is missing {missing}")
    dtype = None
    for name, shape in expected.items():
        value = params[name]
        if not isinstance(value, np.ndarray):
            raise TypeError(f"params[{name!r}] must be a NumPy array, got "
                            f"{type(value).__name__}")
        if value.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"params[{name!r}] has dtype {value.dtype}; expected float32 "
                            "or float64")
        if dtype is None:
            dtype = value.dtype
        elif value.dtype != dtype:
            raise TypeError(f"params[{name!r}] has dtype {value.dtype} but "
                            f"params['weight_ih_l0'] has {dtype}; use one dtype")
        if value.shape != shape:
            raise ValueError(f"params[{name!r}] has shape {value.shape}; expected {shape}")
    return num_layers, D, H, I, dtype


# ---------------------------------------------------------------- inputs
def _check_input(x, lengths, batch_first, I, dtype):
    """-> (x time-major [T, B, I], lengths [B] int64, was_list)."""
    if not isinstance(batch_first, (bool, np.bool_)):
        raise TypeError(f"batch_first must be a bool, got {batch_first!r}")
    if isinstance(x, (list, tuple)):
        if lengths is not None:
            raise ValueError("lengths must be None when x is a list of (T_i, I) arrays; "
                             "the lengths are read from the list")
        for k, s in enumerate(x):
            s = np.asarray(s)
            if s.ndim != 2 or s.shape[1] != I:
                raise ValueError(f"x[{k}] has shape {s.shape}; expected (T_i, {I})")
        x_tm, lengths = pad_sequences(x, dtype=dtype)
        _check_finite(x_tm, "x")
        return x_tm, lengths, True
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"x must be numeric, got dtype {x.dtype}")
    if x.ndim != 3 or x.shape[2] != I:
        layout = "(batch, T, {0})" if batch_first else "(T, batch, {0})"
        raise ValueError(f"x has shape {x.shape}; expected {layout.format(I)}"
                         + (" (batch_first=True)" if batch_first else " (batch_first=False)"))
    x_tm = np.swapaxes(x, 0, 1) if batch_first else x
    x_tm = np.ascontiguousarray(x_tm, dtype=dtype)
    _check_finite(x_tm, "x")
    T, B = x_tm.shape[:2]
    if lengths is None:
        return x_tm, np.full(B, T, dtype=np.int64), False
    lengths_arr = np.asarray(lengths)
    if lengths_arr.dtype.kind not in "iu" and not (
            lengths_arr.dtype.kind == "f" and np.all(np.isfinite(lengths_arr))
            and np.all(lengths_arr == np.round(lengths_arr))):
        raise TypeError(f"lengths must be integers, got dtype {lengths_arr.dtype}")
    if lengths_arr.shape != (B,):
        raise ValueError(f"lengths has shape {lengths_arr.shape}; expected ({B},), one "
                         "length per sequence")
    lengths_arr = lengths_arr.astype(np.int64)
    if B and (lengths_arr.min() < 0 or lengths_arr.max() > T):
        raise ValueError(f"lengths must lie in [0, {T}] (T = x's time axis), got "
                         f"min {lengths_arr.min()} max {lengths_arr.max()}")
    return x_tm, lengths_arr, False


def _check_size(x, batch_first, cell, H, num_layers, D, dtype, training):
    """MemoryError before copying x when the whole batch cannot fit (fastseq._memory)."""
    if isinstance(x, (list, tuple)):
        shapes = [np.shape(s) for s in x]
        if not shapes or any(len(s) != 2 for s in shapes):
            return                                   # _check_input names the bad entry
        T, B = max(s[0] for s in shapes), len(shapes)
        n_in = float(T) * B * shapes[0][1]                  # the padded copy
    else:
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) != 3:
            return
        B, T = (shape[0], shape[1]) if batch_first else (shape[1], shape[0])
        n_in = float(np.prod(shape, dtype=float))
    check_batch_memory(cell, H, num_layers, D == 2, T, B, np.dtype(dtype).itemsize,
                       bool(training), input_elements=n_in, name="x",
                       what="training forward" if training else "forward")


def _check_state(state, name, shape, dtype):
    if state is None:
        return None
    state = np.asarray(state)
    if state.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be numeric, got dtype {state.dtype}")
    if state.shape != shape:
        raise ValueError(f"{name} has shape {state.shape}; expected {shape} "
                         "(num_layers * num_directions, batch, hidden_size)")
    state = np.ascontiguousarray(state, dtype=dtype)
    _check_finite(state, name)
    return state


def _check_finite(a, name):
    # one pass over the array; NaN/inf would otherwise run silently through every step
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf (or values too large for {a.dtype})")


def _check_rate(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a float in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _check_backend(backend):
    try:
        return get_backend(backend)
    except TypeError as exc:
        raise TypeError(f"backend: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"backend: {exc}") from None


# ---------------------------------------------------------------- forward / backward
def forward(cell, params, x, lengths=None, h0=None, c0=None, *, batch_first=True,
            backend="auto", training=False, dropout=0.0, recurrent_dropout=0.0,
            random_state=None, n_threads=None):
    """Run a (stacked, optionally bidirectional) recurrent network over a batch.

    Parameters
    ----------
    cell : str or CellSpec
        ``"lstm"``, ``"gru"``, ``"gru_classic"``, ``"rnn"``, ``"rnn_relu"``, ``"lstm_relu"``...
    params : dict of arrays keyed by PyTorch names (see :func:`param_shapes`)
    x : ``[B, T, I]`` (``batch_first=True``), ``[T, B, I]``, or a list of ``(T_i, I)``
    lengths : ``[B]`` ints in ``[0, T]``, or None for all ``T``
    h0, c0 : ``[L*D, B, H]`` or None for zeros (``c0`` only for the LSTM)
    batch_first : bool, layout of ``x`` and ``output`` (``h_n`` is always ``[L*D, B, H]``)
    backend : ``"auto"``, ``"numba"``, ``"cython"``, ``"cuda"`` or ``"reference"``
    training : bool; dropout is applied only when True
    dropout : float, dropout on the outputs of every layer but the last (PyTorch's meaning)
    recurrent_dropout : float, dropout mask on ``h`` where it enters the recurrent product
    random_state : None, int or Generator, for the dropout masks
    n_threads : int or None, threads the engine may use

    Returns
    -------
    ForwardResult ``(output, h_n, c_n, cache)``; pass ``cache`` to :func:`backward`. The
    cache reads ``params`` (not a copy, as PyTorch's autograd does): leave them unchanged
    until :func:`backward` has run (update the weights after it, as an optimizer step does).
    """
    cell = _check_cell(cell)
    num_layers, D, H, I, dtype = validate_params(cell, params)
    engine = _check_backend(backend)
    _check_size(x, batch_first, cell, H, num_layers, D, dtype, training)
    x_tm, lengths, was_list = _check_input(x, lengths, batch_first, I, dtype)
    T, B = x_tm.shape[:2]
    shape = (num_layers * D, B, H)
    h0 = _check_state(h0, "h0", shape, dtype)
    if c0 is not None and not cell.has_cell_state:
        raise ValueError(f"c0 is only used by the LSTM; got c0 for a {cell.kind}")
    c0 = _check_state(c0, "c0", shape, dtype)
    dropout = _check_rate(dropout, "dropout")
    recurrent_dropout = _check_rate(recurrent_dropout, "recurrent_dropout")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {training!r}")

    dropout_masks = rmasks = None
    if training and (dropout > 0.0 or recurrent_dropout > 0.0):
        rng = np.random.default_rng(random_state)
        if dropout > 0.0 and num_layers > 1:
            keep = 1.0 - dropout
            dropout_masks = [((rng.random((T, B, D * H)) < keep) / keep).astype(dtype)
                             for _ in range(num_layers - 1)]
        if recurrent_dropout > 0.0:
            keep = 1.0 - recurrent_dropout
            rmasks = [((rng.random((B, H)) < keep) / keep).astype(dtype)
                      for _ in range(num_layers * D)]

    out, h_n, c_n, cache = layers.stack_forward(
        engine, cell, params, x_tm, lengths, h0, c0, dropout_masks=dropout_masks,
        rmasks=rmasks, training=bool(training), n_threads=n_threads)
    out = np.asarray(out, dtype=dtype)
    if batch_first:
        out = np.ascontiguousarray(np.swapaxes(out, 0, 1))
    fcache = dict(stack=cache, params=params, batch_first=bool(batch_first),
                  was_list=was_list, n_threads=n_threads, out_shape=out.shape)
    return ForwardResult(out, h_n, c_n, fcache)


def backward(cache, d_output=None, dh_n=None, dc_n=None, *, n_threads=None, state_grad=True):
    """Gradients through a :func:`forward` call made with ``training=True`` (or False).

    Parameters
    ----------
    cache : the ``cache`` field of :func:`forward`'s result
    d_output : gradient on ``output`` (same shape), or None for zero
    dh_n, dc_n : gradients on ``h_n`` / ``c_n`` ``[L*D, B, H]``, or None for zero
    n_threads : int or None; defaults to the value given to forward
    state_grad : False when the initial states need no gradient (``dh0`` and ``dc0`` are
        then None, and the engines skip the last dh GEMM of each direction)

    Returns
    -------
    BackwardResult ``(dx, grads, dh0, dc0)``; ``grads`` has the names and shapes of
    ``params``. ``dx`` has the layout of forward's ``x`` (``[B, T, I]`` padded for a list).
    """
    if not isinstance(cache, dict) or "stack" not in cache:
        raise TypeError("cache must be the cache returned by fastseq.functional.forward")
    stack = cache["stack"]
    T, B, _ = stack["shape"]
    num_layers, D, H = stack["dims"]
    dtype = stack["dtype"]
    cell = stack["cell"]
    if d_output is not None:
        d_output = np.asarray(d_output)
        if d_output.shape != cache["out_shape"]:
            raise ValueError(f"d_output has shape {d_output.shape}; expected "
                             f"{cache['out_shape']} (the shape of forward's output)")
        d_output = d_output.astype(dtype, copy=False)
        if cache["batch_first"]:
            d_output = np.ascontiguousarray(np.swapaxes(d_output, 0, 1))
    shape = (num_layers * D, B, H)
    dh_n = _check_state(dh_n, "dh_n", shape, dtype)
    if dc_n is not None and not cell.has_cell_state:
        raise ValueError(f"dc_n is only used by the LSTM; got dc_n for a {cell.kind}")
    dc_n = _check_state(dc_n, "dc_n", shape, dtype)
    if n_threads is None:
        n_threads = cache["n_threads"]
    dx, grads, dh0, dc0 = layers.stack_backward(cache["params"], stack, d_output, dh_n,
                                                dc_n, n_threads=n_threads,
                                                state_grad=state_grad)
    dx = np.asarray(dx, dtype=dtype)
    if cache["batch_first"]:
        dx = np.ascontiguousarray(np.swapaxes(dx, 0, 1))
    return BackwardResult(dx, grads, dh0, dc0)


# ---------------------------------------------------------------- one step
def step(cell, params, x_t, h=None, c=None, *, backend="auto"):
    """Advance a unidirectional stack by one time step (streaming inference).

    Parameters
    ----------
    cell : str or CellSpec
    params : dict keyed by PyTorch names; unidirectional (a bidirectional layer needs the
        whole sequence)
    x_t : ``[B, I]`` input at this step
    h, c : ``[L, B, H]`` state, or None for zeros (``c`` only for the LSTM)
    backend : engine name

    Returns
    -------
    StepResult ``(output [B, H], h [L, B, H], c [L, B, H] or None)``; new arrays, the
    inputs are not modified. For many steps at low latency use :class:`fastseq.stream.Stream`.
    """
    cell = _check_cell(cell)
    num_layers, D, H, I, dtype = validate_params(cell, params)
    if D != 1:
        raise ValueError("step needs a unidirectional stack; a bidirectional layer reads "
                         "the whole sequence (use forward)")
    engine = _check_backend(backend)
    x_t = np.asarray(x_t)
    if x_t.dtype.kind not in "fiub":
        raise TypeError(f"x_t must be numeric, got dtype {x_t.dtype}")
    if x_t.ndim != 2 or x_t.shape[1] != I:
        raise ValueError(f"x_t has shape {x_t.shape}; expected (batch, {I})")
    B = x_t.shape[0]
    shape = (num_layers, B, H)
    h = _check_state(h, "h", shape, dtype)
    h = np.zeros(shape, dtype) if h is None else h
    if cell.has_cell_state:
        c = _check_state(c, "c", shape, dtype)
        c = np.zeros(shape, dtype) if c is None else c
    elif c is not None:
        raise ValueError(f"c is only used by the LSTM; got c for a {cell.kind}")
    h_new = np.empty_like(h)
    c_new = np.empty_like(h) if cell.has_cell_state else None
    layer_in = x_t.astype(dtype, copy=False)
    _check_finite(layer_in, "x_t")
    for layer in range(num_layers):
        s = f"_l{layer}"
        xw = layer_in @ params["weight_ih" + s].T + params["bias_ih" + s]
        h_l, c_l = engine.step(cell, xw, np.ascontiguousarray(params["weight_hh" + s].T),
                               params["bias_hh" + s], h[layer],
                               c[layer] if cell.has_cell_state else None)
        h_new[layer] = h_l
        if cell.has_cell_state:
            c_new[layer] = c_l
        layer_in = h_new[layer]
    return StepResult(h_new[-1].copy(), h_new, c_new)
