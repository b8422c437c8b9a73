"""Recurrent layers on top of any backend: stacking, bidirectional, dropout, ragged batches.

Parameters are a dict keyed by PyTorch's names (``weight_ih_l0``, ``weight_hh_l0_reverse``,
...) with PyTorch's shapes, so they map one to one onto ``nn.RNN/LSTM/GRU.state_dict()``.

This module owns the mechanics shared by every cell and backend:

* the input projection ``xw = x @ W + b_ih`` as one GEMM over all ``T*B`` rows;
* after BPTT, ``dW``, ``db_ih`` and ``dx`` as one GEMM / reduction over all rows;
* reversing sequences within their lengths for the backward direction;
* dropout between layers (masks given by the caller) and recurrent dropout masks.

Only the recurrence itself is delegated to the backend (see :mod:`fastseq.backends`).

Speed: the two directions of a bidirectional layer are independent, so with a backend
whose kernels release the GIL (``backend.releases_gil``) and at least two threads they run
concurrently, each with half the threads. When much of a ragged batch is padding, the
input projection and the weight-gradient GEMMs only touch the valid ``(t, b)`` rows.
BLAS threads are set to ``n_threads`` for the duration of a call and restored afterwards.

Shapes (time-major)::

    x      [T, B, I]        input of the first layer
    h0, c0 [L*D, B, H]      initial states, index = layer * D + direction (PyTorch order)
    out    [T, B, D*H]      OUT: last layer's output, forward half first
    h_n    [L*D, B, H]      OUT: final states
"""
from __future__ import annotations

import numpy as np

from ._config import resolve_threads
from ._threads import WorkerPool, blas_threads
from ._transpose import transpose_into, transposed
from .backends import get_backend
from .cells import make_cell
from .data import reverse_padded

# skip the padded rows in the input GEMMs when at least this fraction of [T, B] is padding
PADDING_SKIP_FRACTION = 0.2

_DIRECTIONS = WorkerPool("fastseq-direction")    # the second direction of a layer
_GEMM_BLOCKS = WorkerPool("fastseq-gemm")        # row blocks of _matmul


def _plan_threads(backend, D, n_threads):
    """(concurrent directions?, threads per direction, BLAS threads for the call).

    BLAS always runs on one thread: the parallelism is ours (the two directions, the
    engine's batch chunks, and :func:`_matmul`'s row blocks). A multi-threaded OpenBLAS
    call leaves its workers spinning for about 0.1 s afterwards, and on 2 cores they starve
    the threads of whatever runs next (measured: a 2-thread training step 50-100x slower).
    """
    n = resolve_threads(n_threads)
    if D == 2 and n >= 2 and getattr(backend, "releases_gil", False):
        return True, n // 2, 1
    return False, n, 1


# GEMMs with fewer multiply-adds than this run on the calling thread alone: waking a
# Python pool thread costs about 0.1-0.2 ms here, the time of ~8M multiply-adds on one
# core; the backend's own GEMM splits on its thread team, whose start costs microseconds
PARALLEL_GEMM_MIN = 1 << 23
TEAM_GEMM_MIN = 1 << 20


def _own_gemm(gemm, *arrays):
    """``gemm`` (a backend's ``matmul_into``) if it can take these arrays, else None."""
    if gemm is None:
        return None
    dtype = arrays[0].dtype
    if dtype not in (np.float32, np.float64):
        return None
    for x in arrays:
        if x.dtype != dtype or x.ndim != 2 or (x.shape[1] > 1 and x.strides[1] != x.itemsize):
            return None
    return gemm


# a: [M, K], b: [K, N] -> OUT [M, N] (+ bias [N] on the backend's GEMM)
def _matmul(a, b, n_threads, gemm=None, bias=None):
    """``a @ b`` with the result's rows split into ``n_threads`` blocks: on the backend's
    own GEMM (``matmul_into(a, b, out, trans_a, n_threads, split_cols)``, which runs the
    blocks on its thread team) when the operands suit it, else one NumPy GEMM per block on
    the Python pool (NumPy releases the GIL). The blocks depend only on the shapes and
    ``n_threads``, and each row is computed alone, so results are reproducible for a given
    thread count. ``bias`` (only with ``gemm``): added by the GEMM itself."""
    M, K = a.shape
    N = b.shape[1]
    gemm = _own_gemm(gemm, a, b)
    if bias is not None and gemm is None:
        raise ValueError("_matmul: bias needs the backend's GEMM")
    n = min(int(n_threads), M)
    if n <= 1 or M * K * N < (PARALLEL_GEMM_MIN if gemm is None else TEAM_GEMM_MIN):
        n = 1
    if gemm is not None:
        out = np.empty((M, N), dtype=a.dtype)
        gemm(a, b, out, False, n, False, bias)
        return out
    if n == 1:
        return a @ b
    out = np.empty((M, N), dtype=np.result_type(a.dtype, b.dtype))
    bounds = np.linspace(0, M, n + 1).astype(np.int64)

    def block(j):
        lo, hi = bounds[j], bounds[j + 1]
        np.matmul(a[lo:hi], b, out=out[lo:hi])

    _GEMM_BLOCKS.each(block, range(n))
    return out


# over fewer rows than this _matmul_t computes b^T @ a itself (see there)
OUT_T_MAX_ROWS = 512


# a: [R, M], b: [R, N] -> OUT [N, M] = b^T @ a (into ``out`` when given)
def _matmul_t(a, b, n_threads, gemm=None, out=None):
    """``b.T @ a`` (the input weights' gradient ``dxw^T @ seq``). On the backend's GEMM
    (which reads its first operand transposed): over fewer than :data:`OUT_T_MAX_ROWS`
    rows as ``b^T @ a`` with the result's rows split among the threads, else as the
    transpose of ``a^T @ b`` with the columns split (faster over many rows, up to 1.4x;
    over few rows the caller's transposed copy of a ``[2048, 512]`` result would cost more
    than the product). Each output element is computed alone: the same bits for any split.
    Otherwise NumPy's ``b.T @ a`` in row blocks. ``out``: a C-contiguous ``[N, M]``
    array of the operands' dtype to write into (a slice of a gradient buffer), returned."""
    gemm = _own_gemm(gemm, a, b)
    if gemm is None:
        result = _matmul(b.T, a, n_threads)
        if out is None:
            return result
        out[...] = result
        return out
    R, M = a.shape
    N = b.shape[1]
    n = min(int(n_threads), max(1, N // 16))
    if n <= 1 or R * M * N < TEAM_GEMM_MIN:
        n = 1
    if R < OUT_T_MAX_ROWS:
        if out is None:
            out = np.empty((N, M), dtype=a.dtype)
        gemm(b, a, out, True, n)
        return out
    result = np.empty((M, N), dtype=a.dtype)
    gemm(a, b, result, True, n, True)
    if out is None:
        return result.T
    transpose_into(out, result, n)
    return out


def _run_directions(fn, D, concurrent):
    """[fn(0), fn(1)]: the second direction on a worker thread when ``concurrent``."""
    if D == 1 or not concurrent:
        return [fn(d) for d in range(D)]
    return _DIRECTIONS.each(fn, range(D))


def _valid_rows(lengths, T):
    """Flat indices of the valid ``(t, b)`` rows of ``[T*B]``, or None when padding is
    too small a fraction to be worth a gather."""
    B = len(lengths)
    total = T * B
    n_valid = int(np.minimum(lengths, T).sum())
    if total == 0 or (total - n_valid) < PADDING_SKIP_FRACTION * total:
        return None
    valid = np.arange(T)[:, None] < lengths[None, :]
    return np.flatnonzero(valid.ravel())


# over fewer rows than this _times_weight_t runs on the backend's GEMM (measured, 2
# threads, [R, 512] @ [512, 2048]: R = 48 0.83 ms against NumPy's 1.28; R = 256 (I = 128)
# 0.36 against 0.53; R = 400 mixed: 7.6 against 6.0 warm, 4.9 against 5.7 cold)
PROJECT_T_MAX_ROWS = 256
# from this many rows, a @ W.T runs on the backend's GEMM against a transposed copy of W
# (the copy then costs a few % of the product; OpenBLAS clears its output first and wakes
# its own threads): [3200, 32] @ [32, 256] 0.26 ms against NumPy's 0.36, [3584, 128] @
# [128, 512] 2.15 against 2.37 (2 threads). Also between 256 and 1024 rows, where NumPy's
# GEMM ran before (medians, 2 threads, own / NumPy): [896, 28] @ [28, 512] 0.14 / 0.29 ms
# (0.76 inside the seed model's fit, NumPy's row blocks on the Python pool), [896, 128] @
# [128, 512] 0.61 / 0.76, [512, 64] @ [64, 2048] 0.79 / 0.92; only a large weight over
# many rows, [896, 512] @ [512, 2048], came out 8 % slower (11.3 / 10.5). Below
# PROJECT_T_MAX_ROWS rows the transposed form (no copy of W) wins instead
PROJECT_NN_MIN_ROWS = 256


# a: [R, I], W: [G*H, I], bias: [G*H] or None -> OUT [R, G*H] = a @ W.T (+ bias)
def _times_weight_t(a, W, n_threads, gemm, bias=None):
    """``a @ W.T``. Over fewer than :data:`PROJECT_T_MAX_ROWS` rows on the backend's GEMM as
    ``(W @ a^T)^T``: the weight is the operand read row after row (no transposed copy of
    it), the small ``a^T`` stays in cache, and only the two small matrices are
    transposed; each element is one dot product in ``k`` order, so a row's result does not
    depend on the others. From :data:`PROJECT_NN_MIN_ROWS` rows (now the same limit) on
    the same GEMM against a transposed copy of ``W``, rows split among the threads;
    without a backend GEMM (or between the limits, were they set apart) NumPy's. Both own
    forms compute each element as the same products in the same order: a row gets the
    same bits alone or in a batch of either size."""
    R = a.shape[0]
    gemm = _own_gemm(gemm, a, W)
    if bias is not None and (bias.dtype != a.dtype or not bias.flags.c_contiguous):
        gemm = None
    if (gemm is None or not W.flags.c_contiguous
            or PROJECT_T_MAX_ROWS <= R < PROJECT_NN_MIN_ROWS):
        out = _matmul(a, W.T, n_threads)
    elif R >= PROJECT_NN_MIN_ROWS:
        return _matmul(a, transposed(W), n_threads, gemm, bias)     # bias in the GEMM
    else:
        out_t = np.empty((W.shape[0], R), dtype=a.dtype)
        M, K = W.shape
        n = min(int(n_threads), M)
        gemm(W, transposed(a), out_t, False, 1 if M * K * R < TEAM_GEMM_MIN else n)
        out = transposed(out_t)
    if bias is not None:
        out += bias
    return out


def _project(seq, W, b_ih, rows, n_threads, gemm=None):
    """xw = seq @ W.T (+ b_ih unless None) over every row, or only over ``rows`` (others
    zero); ``gemm``: the backend's own GEMM, if any (see :func:`_times_weight_t`)."""
    T, B, _ = seq.shape
    G_H = W.shape[0]
    flat = seq.reshape(T * B, seq.shape[2])          # explicit sizes: T or B may be 0
    if rows is None:
        return _times_weight_t(flat, W, n_threads, gemm, b_ih).reshape(T, B, G_H)
    xw = np.zeros((T * B, W.shape[0]), dtype=np.result_type(seq.dtype, W.dtype))
    xw[rows] = _times_weight_t(flat[rows], W, n_threads, gemm, b_ih)
    return xw.reshape(T, B, G_H)


# Batches of at least FUSE_PROJECTION_MIN_BATCH rows (and FUSE_PROJECTION_MIN_ROWS = T * B)
# leave the input projection to an engine that can make it step by step
# (``backend.projects_input(cell)``: the Cython engine's LSTM): the same products as
# _project's, whose rows are computed on the own GEMM against a transposed copy of W from
# PROJECT_NN_MIN_ROWS rows on (the same bits, see _times_weight_t), without writing
# xw [T, B, G*H] out and reading it back. Measured (2 threads, min of 6 A/B rounds):
# inference 2 x LSTM(128), T 28, batch 256 (the estimators' predict batch) 19.5 -> 17.0 ms,
# B128 H128 3.47 -> 3.37, B64 I512 H512 68.0 -> 63.7; training 2 x LSTM(128) batch 256
# 55.1 -> 52.6, B64 H512 199.6 -> 195.8, B128 H128 unchanged. Smaller batches lose: each
# step's product is then too thin (B32 H64 3.09 -> 3.17 training, B16 H32 inference
# 0.46 -> 0.49)
FUSE_PROJECTION_MIN_ROWS = PROJECT_NN_MIN_ROWS
FUSE_PROJECTION_MIN_BATCH = 64


def _fuse_projection(backend, cell, seq, W, rows, gemm):
    """Whether stack_forward passes ``seq`` and ``W`` to the engine instead of ``xw``."""
    projects = getattr(backend, "projects_input", None)
    T, B, I = seq.shape
    return (projects is not None and projects(cell) and rows is None and I > 0
            and B >= FUSE_PROJECTION_MIN_BATCH and T * B >= FUSE_PROJECTION_MIN_ROWS
            and seq.dtype == W.dtype and _own_gemm(gemm, W) is not None)


def _out_array(out, name, dtype):
    """``out[name]`` if given and usable as a gradient's destination, else None."""
    a = None if out is None else out.get(name)
    if a is None or not isinstance(a, np.ndarray) or a.dtype != dtype \
            or not a.flags.c_contiguous:
        return None
    return a


def _suffix(layer, direction):
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def param_shapes(cell, input_size, hidden_size, num_layers=1, bidirectional=False):
    """Ordered ``{name: shape}`` of a stack, exactly as PyTorch names and shapes them."""
    cell = make_cell(cell)
    G, H = cell.n_gates, hidden_size
    D = 2 if bidirectional else 1
    shapes = {}
    for layer in range(num_layers):
        layer_in = input_size if layer == 0 else D * H
        for direction in range(D):
            s = _suffix(layer, direction)
            shapes["weight_ih" + s] = (G * H, layer_in)
            shapes["weight_hh" + s] = (G * H, H)
            shapes["bias_ih" + s] = (G * H,)
            shapes["bias_hh" + s] = (G * H,)
    return shapes


def init_params(cell, input_size, hidden_size, num_layers=1, bidirectional=False,
                random_state=None, dtype=np.float32):
    """PyTorch's default initialisation: every tensor ``U(-1/sqrt(H), 1/sqrt(H))``."""
    rng = np.random.default_rng(random_state)
    bound = 1.0 / np.sqrt(hidden_size)
    return {name: rng.uniform(-bound, bound, size=shape).astype(dtype)
            for name, shape in param_shapes(cell, input_size, hidden_size, num_layers,
                                            bidirectional).items()}


def stack_info(cell, params):
    """(num_layers, D, hidden_size, input_size) read from a params dict."""
    cell = make_cell(cell)
    num_layers = sum(1 for k in params if k.startswith("weight_ih_l") and
                     not k.endswith("_reverse"))
    D = 2 if "weight_ih_l0_reverse" in params else 1
    G_H, I = params["weight_ih_l0"].shape
    return num_layers, D, G_H // cell.n_gates, I


def _check_state(state, name, shape, dtype):
    if state is None:
        return np.zeros(shape, dtype=dtype)
    state = np.asarray(state, dtype=dtype)
    if state.shape != shape:
        raise ValueError(f"{name} has shape {state.shape}; expected {shape} "
                         "(num_layers * num_directions, batch, hidden_size)")
    return state


def stack_forward(backend, cell, params, x, lengths=None, h0=None, c0=None,
                  dropout_masks=None, rmasks=None, training=True, n_threads=None,
                  need_grad=True, weight_hh_t=None):
    """Forward through the whole stack.

    Parameters
    ----------
    backend : str or backend module
    cell : CellSpec or name
    params : dict of PyTorch-named arrays (see :func:`param_shapes`)
    x : ``[T, B, I]`` time-major input
    lengths : ``[B]`` ints in ``[0, T]``, or None for all ``T``
    h0, c0 : ``[L*D, B, H]`` or None for zeros (``c0`` only for the LSTM)
    dropout_masks : None or a list of ``L-1`` arrays ``[T, B, D*H]``, multiplied into the
        output of layer ``k`` before it feeds layer ``k+1`` (already scaled by ``1/(1-p)``)
    rmasks : None or a list of ``L*D`` arrays ``[B, H]`` (or None entries): recurrent dropout
    need_grad : False for inference: the cache cannot be passed to :func:`stack_backward`,
        and a backend with ``supports_need_grad`` saves nothing per step for it (less
        memory and memory traffic)
    weight_hh_t : None, or a dict mapping ``weight_hh*`` names to C-contiguous ``[H, G*H]``
        copies of their transposes, owned by the caller and left unchanged until
        :func:`stack_backward` has run (as :class:`fastseq.network.Network` does). The
        engine reads them as ``R``, and its backward reads the C-contiguous
        ``params[name]`` itself as ``R^T`` instead of transposing ``R`` again. Without it,
        a backend that ``accepts_weight_rows`` gets ``weight_hh.T`` as a view (and reads
        the weight's rows, or copies it itself), any other gets each ``weight_hh``
        transposed here (:func:`fastseq._transpose.transposed`). Either way the
        parameters must not change between this call and :func:`stack_backward`.

    The input projection ``x @ W_ih^T`` is made here over all rows, except that an engine
    whose ``projects_input(cell)`` is true gets each layer's input and ``weight_ih`` for
    batches of at least :data:`FUSE_PROJECTION_MIN_BATCH` rows and makes it step by step
    itself (the same bits).

    Returns
    -------
    out ``[T, B, D*H]``, h_n ``[L*D, B, H]``, c_n ``[L*D, B, H]`` or None, cache
    """
    backend = get_backend(backend)
    cell = make_cell(cell)
    num_layers, D, H, I = stack_info(cell, params)
    x = np.asarray(x)
    dtype = params["weight_ih_l0"].dtype
    if x.ndim != 3 or x.shape[2] != I:
        raise ValueError(f"x has shape {x.shape}; expected (T, batch, {I}) time-major")
    T, B, _ = x.shape
    lengths = (np.full(B, T, dtype=np.int64) if lengths is None
               else np.asarray(lengths, dtype=np.int64))
    if lengths.shape != (B,) or (B and (lengths.min() < 0 or lengths.max() > T)):
        raise ValueError(f"lengths must be {B} integers in [0, {T}], got {lengths!r}")
    h0 = _check_state(h0, "h0", (num_layers * D, B, H), dtype)
    if cell.has_cell_state:
        c0 = _check_state(c0, "c0", (num_layers * D, B, H), dtype)

    h_n = np.zeros((num_layers * D, B, H), dtype=dtype)
    c_n = np.zeros_like(h_n) if cell.has_cell_state else None
    layer_input = x.astype(dtype, copy=False)
    concurrent, dir_threads, blas_n = _plan_threads(backend, D, n_threads)
    rows = _valid_rows(lengths, T)
    caches = []
    extra = {} if need_grad or not getattr(backend, "supports_need_grad", False) \
        else dict(need_grad=False)
    rows_ok = getattr(backend, "accepts_weight_rows", False)

    def run_direction(layer, direction, layer_input):
        k = layer * D + direction
        s = _suffix(layer, direction)
        W, W_hh = params["weight_ih" + s], params["weight_hh" + s]
        R = None if weight_hh_t is None else weight_hh_t.get("weight_hh" + s)
        if R is None:                               # [H, G*H], as the engine reads it
            if W_hh.T.flags.c_contiguous or (rows_ok and W_hh.flags.c_contiguous):
                R = W_hh.T      # (a view; an engine that accepts_weight_rows takes it)
            else:
                R = transposed(W_hh)
        b_ih, b_hh = params["bias_ih" + s], params["bias_hh" + s]
        seq = layer_input if direction == 0 else reverse_padded(layer_input, lengths)
        gemm = getattr(backend, "matmul_into", None)
        step_proj = {}
        if _fuse_projection(backend, cell, seq, W, rows, gemm):
            # the engine projects each step's inputs itself (no xw [T, B, G*H] in memory)
            xw, step_proj = None, dict(x=seq, weight_ih=W)
            b_hh = b_ih + b_hh
        elif cell.kind == "gru" and cell.reset_after:
            xw = _project(seq, W, b_ih, rows, dir_threads, gemm)
        else:
            # b_ih and b_hh meet in the same pre-activation: the engine adds their sum,
            # which saves a pass over xw [T, B, G*H]
            xw = _project(seq, W, None, rows, dir_threads, gemm)
            b_hh = b_ih + b_hh
        rmask = None if rmasks is None else rmasks[k]
        H_all, (h_T, c_T), bcache = backend.forward(
            cell, xw, R, b_hh, h0[k],
            c0[k] if cell.has_cell_state else None, lengths, rmask=rmask,
            training=training, n_threads=dir_threads, **extra, **step_proj)
        if weight_hh_t is not None and need_grad and isinstance(bcache, dict) \
                and W_hh.flags.c_contiguous:
            bcache["RT"] = W_hh     # R^T for the backward's dh GEMMs (see weight_hh_t)
        H_all = np.asarray(H_all, dtype=dtype)
        if direction == 1:
            H_all = reverse_padded(H_all, lengths)
        return H_all, h_T, c_T, dict(seq=seq, backend_cache=bcache)

    with blas_threads(blas_n):
        for layer in range(num_layers):
            results = _run_directions(lambda d: run_direction(layer, d, layer_input), D,
                                      concurrent)
            outputs, layer_cache = [], []
            for direction, (H_all, h_T, c_T, dcache) in enumerate(results):
                k = layer * D + direction
                outputs.append(H_all)
                h_n[k] = h_T
                if cell.has_cell_state:
                    c_n[k] = c_T
                layer_cache.append(dcache)
            out = outputs[0] if D == 1 else np.concatenate(outputs, axis=2)
            mask = None
            if dropout_masks is not None and layer < num_layers - 1:
                mask = dropout_masks[layer]
                out = out * mask
            caches.append(dict(directions=layer_cache, dropout_mask=mask))
            layer_input = out
    cache = dict(backend=backend, cell=cell, lengths=lengths, caches=caches,
                 shape=(T, B, I), dims=(num_layers, D, H), dtype=dtype, rows=rows,
                 need_grad=bool(need_grad))
    return layer_input, h_n, c_n, cache


def stack_backward(params, cache, d_out=None, dh_n=None, dc_n=None, n_threads=None,
                   input_grad=True, out=None, state_grad=True):
    """BPTT through :func:`stack_forward`.

    ``d_out [T, B, D*H]``, ``dh_n``/``dc_n [L*D, B, H]`` (None = zero).
    Returns ``(dx [T, B, I], grads {name: array}, dh0 [L*D, B, H], dc0 or None)``;
    with ``input_grad=False`` (dense input features that need no gradient) ``dx`` is None
    and its GEMM is skipped; with ``state_grad=False`` (the initial states need no
    gradient, as in training from zero or detached states) ``dh0`` and ``dc0`` are None
    and a backend with ``supports_need_dh0`` skips each direction's step-0 ``dh`` GEMM.
    ``out``: optional ``{name: array}`` of C-contiguous arrays shaped and typed like the
    gradients (slices of a flat gradient buffer); the weight
    gradients are written into them where the backend can (``grads`` then holds those
    very arrays), saving an allocation and a copy of each.
    """
    if not cache.get("need_grad", True):
        raise ValueError("cache comes from stack_forward(..., need_grad=False), which keeps "
                         "nothing for backward; run it with need_grad=True")
    backend, cell, lengths = cache["backend"], cache["cell"], cache["lengths"]
    T, B, I = cache["shape"]
    num_layers, D, H = cache["dims"]
    dtype = cache["dtype"]
    grads = {}
    dh0 = np.zeros((num_layers * D, B, H), dtype=dtype) if state_grad else None
    dc0 = np.zeros_like(dh0) if cell.has_cell_state and state_grad else None
    d_layer_out = (np.zeros((T, B, D * H), dtype=dtype) if d_out is None
                   else np.asarray(d_out, dtype=dtype))
    concurrent, dir_threads, blas_n = _plan_threads(backend, D, n_threads)
    rows = cache.get("rows")

    def run_direction(layer, direction, d_layer_out):
        k = layer * D + direction
        s = _suffix(layer, direction)
        dcache = cache["caches"][layer]["directions"][direction]
        dH = d_layer_out[:, :, direction * H:(direction + 1) * H]
        if direction == 1:
            dH = reverse_padded(dH, lengths)
        dR_out = _out_array(out, "weight_hh" + s, dtype)
        extra = dict(dR_out=dR_out) if (dR_out is not None and
                                        getattr(backend, "supports_dR_out", False)) else {}
        if not state_grad and getattr(backend, "supports_need_dh0", False):
            extra["need_dh0"] = False
        dxw, dR, dbh, dh0_k, dc0_k = backend.backward(
            cell, dcache["backend_cache"], dH,
            None if dh_n is None else dh_n[k],
            None if (dc_n is None or not cell.has_cell_state) else dc_n[k],
            n_threads=dir_threads, **extra)
        W = params["weight_ih" + s]                 # [G*H, I_layer]
        dxw = np.asarray(dxw, dtype=dtype).reshape(T * B, W.shape[0])
        seq = dcache["seq"].reshape(T * B, W.shape[1])
        g = {}
        want_dseq = input_grad or layer > 0
        dseq = None
        gemm = getattr(backend, "matmul_into", None)
        w_out = _out_array(out, "weight_ih" + s, dtype)
        if rows is None:
            g["weight_ih" + s] = _matmul_t(seq, dxw, dir_threads, gemm, w_out)
            if want_dseq:
                dseq = _matmul(dxw, W, dir_threads, gemm).reshape(T, B, W.shape[1])
        else:                       # padded rows of dxw are zero: skip them
            dxw_valid = dxw[rows]
            g["weight_ih" + s] = _matmul_t(seq[rows], dxw_valid, dir_threads, gemm, w_out)
            if want_dseq:
                dseq = np.zeros((T * B, W.shape[1]), dtype=dtype)
                dseq[rows] = _matmul(dxw_valid, W, dir_threads, gemm)
                dseq = dseq.reshape(T, B, W.shape[1])
        g["weight_hh" + s] = dR_out if "dR_out" in extra else np.asarray(dR, dtype=dtype).T
        g["bias_hh" + s] = np.asarray(dbh, dtype=dtype)
        if cell.kind == "gru" and cell.reset_after:
            sums = getattr(backend, "column_sums", None)
            g["bias_ih" + s] = dxw.sum(axis=0) if sums is None else sums(dxw)
        else:
            # b_ih and b_hh enter the same pre-activation, so their gradients are equal
            g["bias_ih" + s] = g["bias_hh" + s].copy()
        if direction == 1 and dseq is not None:
            dseq = reverse_padded(dseq, lengths)
        return dseq, g, dh0_k, dc0_k

    with blas_threads(blas_n):
        for layer in range(num_layers - 1, -1, -1):
            layer_cache = cache["caches"][layer]
            if layer_cache["dropout_mask"] is not None:
                d_layer_out = d_layer_out * layer_cache["dropout_mask"]
            results = _run_directions(lambda d: run_direction(layer, d, d_layer_out), D,
                                      concurrent)
            d_layer_in = None
            for direction, (dseq, g, dh0_k, dc0_k) in enumerate(results):
                k = layer * D + direction
                grads.update(g)
                if dseq is not None:
                    d_layer_in = dseq if d_layer_in is None else d_layer_in + dseq
                if state_grad:
                    dh0[k] = dh0_k
                    if cell.has_cell_state:
                        dc0[k] = dc0_k
            d_layer_out = d_layer_in
    ordered = {name: grads[name] for name in params}
    return d_layer_out, ordered, dh0, dc0
