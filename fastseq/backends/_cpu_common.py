"""Argument checks and batch bookkeeping shared by the CPU engines (numba and cython).

Both engines run the same mechanics: check the arguments against the interface of
:mod:`fastseq.backends.reference`, sort the batch by length once (descending, stable) so
the active rows of step ``t`` are a prefix, and count the active rows per step. Also a
pool of internal buffers (:class:`BufferPool`, :class:`Lease`) for engines that reuse them.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

from .._transpose import transpose_into
from ..cells import CellSpec


# weight gradients summed over fewer rows than this are computed in the weight's own layout
# (dR^T = dgates^T @ h, straight into the caller's dR_out): a [2048, 512] transposed copy
# costs 0.7-1.5 ms, the product over 48 rows about as much; over many rows the [H, GH] form
# is faster (up to 1.4x, measured) and its copy negligible
OUT_T_MAX_ROWS = 512


def check_dR_out(dR_out, GH, H, dtype):
    """A backward's ``dR_out`` (None, or the caller's ``[G*H, H]`` array), or a clear error."""
    if dR_out is not None and (not isinstance(dR_out, np.ndarray) or dR_out.shape != (GH, H)
                               or dR_out.dtype != dtype or not dR_out.flags.c_contiguous):
        raise ValueError(f"dR_out must be a C-contiguous {np.dtype(dtype).name} array of shape "
                         f"({GH}, {H})")


def returned_dR(dR, dR_out, out_t, n_threads):
    """The recurrent weight's gradient a backward returns, as ``[H, G*H]``: ``dR`` computed
    in the weight's own layout (``out_t``, ``[G*H, H]``) as its transposed view; else
    ``dR [H, G*H]`` itself, or, with a ``dR_out``, transposed into it once and returned as
    its view."""
    if out_t:
        return dR.T
    if dR_out is not None:
        transpose_into(dR_out, dR, n_threads)
        return dR_out.T
    return dR


def check_cell(cell):
    if not isinstance(cell, CellSpec):
        raise TypeError(f"cell must be a CellSpec, got {type(cell).__name__}")
    return cell


def dtype_of(xw):
    """float32 stays float32; anything else runs in float64."""
    return np.float32 if xw.dtype == np.float32 else np.float64


def as_array(value, name, shape, dtype):
    """``value`` as a C-contiguous ``dtype`` array of exactly ``shape``, or a clear error."""
    if (type(value) is np.ndarray and value.dtype == dtype and value.shape == shape
            and value.flags.c_contiguous):
        return value                    # already so: no checks that cost microseconds
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def checked_step_arguments(cell, xw_t, R, bh, h, c, rmask):
    """A streaming step's arguments checked one by one (errors name the argument and the
    expected shape) and converted to C-contiguous arrays of the step's dtype (float32
    stays float32, anything else runs in float64): ``(dtype, xw_t, R, bh, h, c, rmask)``,
    ``c`` None for cells without a cell state. The engines' ``step`` comes here when its
    fast path (arguments already in shape) does not apply."""
    xw_t = np.asarray(xw_t)
    if xw_t.ndim != 2:
        raise ValueError(f"xw_t has shape {xw_t.shape}; expected (batch, G*H)")
    dtype = np.dtype(dtype_of(xw_t))
    B, GH = xw_t.shape
    R = np.asarray(R)
    if R.ndim != 2 or R.shape[1] != GH or R.shape[0] * cell.n_gates != GH:
        raise ValueError(f"R has shape {R.shape}; expected (H, G*H) with G*H == {GH}")
    H = R.shape[0]
    R = np.ascontiguousarray(R, dtype=dtype)
    bh = as_array(bh, "bh", (GH,), dtype)
    h = as_array(h, "h", (B, H), dtype)
    c = as_array(c, "c", (B, H), dtype) if cell.has_cell_state and c is not None else None
    if rmask is not None:
        rmask = as_array(rmask, "rmask", (B, H), dtype)
    return dtype, np.ascontiguousarray(xw_t, dtype=dtype), R, bh, h, c, rmask


def sort_batch(lengths):
    """(order, inverse, is_identity) sorting rows by length, descending and stable."""
    if len(lengths) < 2 or bool(np.all(lengths[:-1] >= lengths[1:])):
        order = np.arange(len(lengths))
        return order, order, True
    order = np.argsort(-lengths, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return order, inverse, False


def active_counts(lengths_sorted, T):
    """nact[t] = number of rows with length > t (lengths sorted descending)."""
    return np.searchsorted(-lengths_sorted, -np.arange(T), side="left").astype(np.int64)


@dataclass
class ForwardInputs:
    """Checked forward arguments, rows sorted by length (``order``; ``inverse`` undoes it)."""
    dtype: type
    T: int
    B: int
    H: int
    GH: int
    xw: np.ndarray | None   # [T, B, G*H] sorted rows, C-contiguous (None: x instead)
    R: np.ndarray           # [H, G*H]
    bh: np.ndarray          # [G*H]
    h0: np.ndarray          # [B, H] sorted rows
    c0: np.ndarray | None   # [B, H] sorted rows (LSTM)
    lengths: np.ndarray     # [B] sorted, descending
    nact: np.ndarray        # [T] active rows per step
    masked: bool
    mask: np.ndarray        # [B, H] sorted rows, or a [1, 1] placeholder
    order: np.ndarray
    inverse: np.ndarray
    identity: bool
    zero_h0: bool           # h0 is all zeros: step 0's recurrent product can be skipped
    x: np.ndarray | None = None     # [T, B, I] sorted rows, C-contiguous, when xw is not given


def prepare_forward(cell, xw, R, bh, h0, c0, lengths, rmask, rows_ok=False, x=None):
    """Check the forward arguments (errors name the argument and the expected shape) and
    sort the batch by length. ``rows_ok``: an ``R`` that is the transposed view of a
    C-contiguous ``weight_hh`` of the right dtype (F-ordered) stays such a view instead of
    being copied (the engine reads the weight's rows itself, or transposes it faster than
    NumPy's element-wise copy). ``x [T, B, I]`` instead of ``xw`` (None): the layer's input
    for an engine that projects it itself; it is checked and sorted in place of ``xw``."""
    check_cell(cell)
    G = cell.n_gates
    R = np.asarray(R)
    if x is not None:
        x = np.asarray(x)
        if xw is not None or x.ndim != 3:
            raise ValueError(f"x has shape {x.shape}; expected (T, batch, I) time-major, "
                             "and no xw with it")
        dtype = dtype_of(x)
        T, B, _ = x.shape
        GH = R.shape[1] if R.ndim == 2 else -1
        src = "R.shape[1]"
    else:
        xw = np.asarray(xw)
        if xw.ndim != 3:
            raise ValueError(f"xw has shape {xw.shape}; expected (T, batch, G*H) time-major")
        dtype = dtype_of(xw)
        T, B, GH = xw.shape
        src = "xw.shape[2]"
    if R.ndim != 2 or R.shape[1] != GH or R.shape[0] * G != GH:
        raise ValueError(f"R has shape {R.shape}; expected (H, {G}*H) with {G}*H == "
                         f"{src} == {GH}")
    H = R.shape[0]
    if not (rows_ok and R.dtype == dtype and R.flags.f_contiguous and H > 1):
        R = np.ascontiguousarray(R, dtype=dtype)
    bh = as_array(bh, "bh", (GH,), dtype)
    h0 = as_array(h0, "h0", (B, H), dtype)
    if cell.has_cell_state:
        c0 = np.zeros((B, H), dtype) if c0 is None else as_array(c0, "c0", (B, H), dtype)
    else:
        c0 = None
    full = lengths is None                  # every row runs all T steps: already sorted
    if full:
        lengths = np.full(B, T, dtype=np.int64)
        order = inverse = np.arange(B)
        identity = True
    else:
        lengths = np.asarray(lengths)
        if lengths.shape != (B,) or (B and (lengths.min() < 0 or lengths.max() > T)):
            raise ValueError(f"lengths must be {B} integers in [0, {T}], got {lengths!r}")
        lengths = lengths.astype(np.int64)
        order, inverse, identity = sort_batch(lengths)
    masked = rmask is not None
    mask = as_array(rmask, "rmask", (B, H), dtype) if masked else np.ones((1, 1), dtype)
    inputs = xw if x is None else x         # the per-step input, sorted like the rows
    inputs = np.ascontiguousarray(inputs if identity else inputs[:, order], dtype=dtype)
    if x is None:
        xw = inputs
    else:
        x = inputs
    if not identity:
        h0 = h0[order]
        if c0 is not None:
            c0 = c0[order]
        if masked:
            mask = mask[order]
        lengths = lengths[order]
    nact = np.full(T, B, dtype=np.int64) if full else active_counts(lengths, T)
    return ForwardInputs(dtype, T, B, H, GH, xw, R, bh, h0, c0, lengths, nact, masked, mask,
                         order, inverse, identity, not h0.any(), x)


def state_buffer(pool, T, B, H, dtype, keep):
    """The ``[T+1, B, H]`` hidden states a forward writes: from ``pool`` when the cache
    keeps them for BPTT (``keep``; the outputs are then a copy), else a fresh array whose
    ``[1:]`` :func:`finish_forward` returns as the outputs themselves (inference: no copy
    of the outputs, 0.3 ms for [28, 256, 128] float32)."""
    return pool.take((T + 1, B, H), dtype) if keep else np.empty((T + 1, B, H), dtype)


def finish_forward(cell, inp, hs, cs, hm, gates, aux, saved=True, **extra):
    """Outputs in the caller's row order and the cache both CPU engines share.

    hs [T+1, B, H] / cs: states of the sorted rows (hs[0] = h0), zero at padded steps.
    ``saved=False``: the engine kept one slot of ``cs`` (each row's last cell state, updated
    in place) and no per-step buffers; the cache then refuses :func:`prepare_backward`, and
    ``hs`` is the engine's own array (:func:`state_buffer`, not pooled): the outputs are
    a view of it."""
    rows = np.arange(inp.B)
    h_T = hs[inp.lengths, rows]
    if not cell.has_cell_state:
        c_T = None
    elif saved:
        c_T = cs[inp.lengths, rows]
    else:
        c_T = cs[0].copy()
    if inp.identity:
        H_all = hs[1:].copy() if saved else hs[1:]
    else:
        H_all = hs[1:][:, inp.inverse]
        h_T = h_T[inp.inverse]
        c_T = c_T[inp.inverse] if c_T is not None else None
    cache = dict(cell=cell, R=inp.R, mask=inp.mask, masked=inp.masked,
                 relu=cell.activation == "relu", nact=inp.nact, lengths=inp.lengths,
                 order=inp.order, inverse=inp.inverse, identity=inp.identity,
                 hs=hs, cs=cs, hm=hm, gates=gates, aux=aux, dtype=inp.dtype,
                 shape=(inp.T, inp.B, inp.H), saved=bool(saved), zero_h0=inp.zero_h0,
                 **extra)
    return H_all, (h_T, c_T), cache


def dummy(dtype):
    """A [1, 1, 1] placeholder for a buffer a kernel does not read."""
    return np.zeros((1, 1, 1), dtype=dtype)


def prepare_backward(cell, cache, dH_all, dh_T, dc_T):
    """Check a backward call against its forward cache; gradients in sorted row order.

    Returns ``(dh [B, H], dc [B, H] or a placeholder, dH [T, B, H] or a placeholder,
    has_dH)``; ``dh`` and ``dc`` are fresh arrays the kernels update in place."""
    check_cell(cell)
    if not isinstance(cache, dict) or "hs" not in cache:
        raise TypeError("cache must be the third value returned by this backend's forward")
    if not cache.get("saved", True):
        raise ValueError("this cache comes from a forward pass run with need_grad=False, "
                         "which keeps nothing for backward; run forward with "
                         "need_grad=True")
    if cache["cell"] != cell:
        raise ValueError(f"cell {cell} differs from the forward pass's {cache['cell']}")
    T, B, H = cache["shape"]
    dtype, order, identity = cache["dtype"], cache["order"], cache["identity"]

    def state_grad(value, name):
        if value is None:
            return np.zeros((B, H), dtype)
        arr = as_array(value, name, (B, H), dtype)
        return arr[order] if not identity else arr.copy()

    dh = state_grad(dh_T, "dh_T")
    dc = state_grad(dc_T, "dc_T") if cell.has_cell_state else dummy(dtype)[0]
    has_dH = dH_all is not None
    if has_dH:
        dH = as_array(dH_all, "dH_all", (T, B, H), dtype)
        if not identity:
            dH = np.ascontiguousarray(dH[:, order])
    else:
        dH = dummy(dtype)
    return dh, dc, dH, has_dH


# R: [H, G*H] the engine's weight (cache["R"]) -> (RT [G*H, H] C-contiguous, owned)
def weight_transposed(cache, R, pool, transpose_into):
    """``R^T`` for the backward's ``dh = dgates @ R^T`` GEMMs: the caller's copy in
    ``cache["RT"]`` when one fits (:func:`fastseq.layers.stack_forward` puts the
    C-contiguous ``weight_hh`` there when its caller vouches for it), else a transposed
    copy in a buffer from ``pool``. ``owned``: that buffer must go back to ``pool``."""
    shape = (R.shape[1], R.shape[0])
    RT = cache.get("RT")
    if (isinstance(RT, np.ndarray) and RT.shape == shape and RT.dtype == R.dtype
            and RT.flags.c_contiguous):
        return RT, False
    RT = pool.take(shape, R.dtype)
    transpose_into(RT, R)
    return RT, True


class BufferPool:
    """Free arrays keyed by (shape, dtype), reused across calls.

    The kernels write every internal buffer once per call; on fresh memory each first
    touch of a page faults, and at these sizes that costs as much as the arithmetic or
    more (measured for the Cython engine, B16 T200 H32 LSTM forward: ~1,200 page faults
    and 2.8 ms of system time per call with fresh buffers, none with pooled ones).
    Internal buffers (the forward pass's saved states and gates, backward's scratch) are
    taken from a pool and given back when their owner dies (see :class:`Lease`). Arrays
    returned to the caller are never pooled. Pooled arrays hold garbage: kernels must
    write before they read.
    """

    def __init__(self, max_bytes=512 * 2**20, max_per_key=4):
        self.max_bytes = max_bytes
        self.max_per_key = max_per_key
        self._free = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape, dtype):
        key = (tuple(shape), np.dtype(dtype).char)
        with self._lock:
            free = self._free.get(key)
            if free:
                arr = free.pop()
                self._bytes -= arr.nbytes
                return arr
        return np.empty(shape, dtype)

    def give(self, arrays):
        with self._lock:
            for arr in arrays:
                key = (arr.shape, arr.dtype.char)
                free = self._free.setdefault(key, [])
                if (len(free) < self.max_per_key
                        and self._bytes + arr.nbytes <= self.max_bytes):
                    free.append(arr)
                    self._bytes += arr.nbytes

    def clear(self):
        with self._lock:
            self._free.clear()
            self._bytes = 0


class Lease:
    """Holds pooled arrays for the lifetime of an owner (a forward cache): when the owner
    drops its last reference to the lease, the arrays go back to ``pool``."""

    def __init__(self, arrays, pool):
        self.arrays = [a for a in arrays if a.size > 1]
        weakref.finalize(self, pool.give, self.arrays)


class StepWorkspaces:
    """Per-thread scratch for an engine's ``step()``, reused across calls of the same shape
    (so streaming inference allocates only its outputs, and stays thread-safe).
    ``make(B, H, GH, dtype)`` builds one workspace."""

    def __init__(self, make, max_entries=16):
        self._make = make
        self._max = max_entries
        self._local = threading.local()

    def get(self, B, H, GH, dtype):
        cache = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        key = (B, H, GH, dtype)
        ws = cache.get(key)
        if ws is None:
            if len(cache) > self._max:
                cache.clear()
            ws = cache[key] = self._make(B, H, GH, dtype)
        return ws
