"""Streaming (stateful) inference: feed one time step, or a chunk, at a time.

A :class:`Stream` holds the recurrent state of any number of concurrent streams (keyed by
stream ids) and advances them without re-reading the past. Its outputs equal running the
whole sequence at once (tested against :func:`fastseq.layers.stack_forward`).

The hot path is one compiled Numba call per step: all layers and the dense head of a
network run inside :func:`_step_kernel` on weights packed once into one buffer, with
preallocated work space; nothing is allocated and nothing dispatches per layer in Python.
The kernel is ``nogil``, so streams driven from several Python threads run in parallel
(each :class:`Stream` serialises its own calls with a lock).

Sources
-------
* ``Stream(cell, params)``: a unidirectional recurrent stack; outputs are the last layer's
  hidden state ``[H]`` per step.
* ``Stream.from_network(net)`` / ``Stream.from_estimator(est)``: the whole network (token
  embedding, recurrent stack, dense head); outputs are the network's raw scores per step,
  which for a many-to-one model are the scores it would give if the sequence ended at that
  step. ``from_estimator(..., output="proba")`` applies the softmax (classifier, tagger).

Bidirectional stacks cannot stream (their backward half needs the future) and raise.
"""
from __future__ import annotations

import threading

import numpy as np
from numba import njit

from .backends.numba_cpu._jit import FLAGS
from .backends.numba_cpu.activations import act, cst, sigmoid, tanh
from .cells import make_cell
from .functional import validate_params

__all__ = ["Stream"]

_KIND = {"rnn": 0, "lstm": 1, "gru": 2}
_HEAD_ACT = {"identity": 0, "relu": 1, "tanh": 2, "logistic": 3}


# ---------------------------------------------------------------- the compiled step
@njit(**FLAGS)
def _matvec_acc(x, W, out):
    # x: [n], W: [n, m] row-major, out: [m]   out += x @ W   (axpy rows: vectorizes on m)
    n, m = W.shape
    for i in range(n):
        xi = x[i]
        for g in range(m):
            out[g] += xi * W[i, g]


# meta (int64) layout: [kind, relu, reset_after, L, J, head_act, H, G*H,
#                      then L rows of 5: offsets of W^T, R^T, b_ih, b_hh; input size,
#                      then J rows of 4: offsets of W^T, b; in, out]
_META = 8


@njit(**FLAGS)
def _sigmoid_range(a, lo, hi):
    # a: [n]   a[lo:hi] = sigmoid(a[lo:hi]) in place
    for k in range(lo, hi):
        a[k] = sigmoid(a[k])


@njit(**FLAGS)
def _act_range(a, lo, hi, relu):
    # a: [n]   a[lo:hi] = act(a[lo:hi]) in place; the branch is outside the loops
    if relu:
        for k in range(lo, hi):
            v = a[k]
            a[k] = v if v > cst(v, 0.0) else cst(v, 0.0)
    else:
        for k in range(lo, hi):
            a[k] = tanh(a[k])


@njit(**FLAGS)
def _step_kernel(wbuf, meta, x, slots, state, work, out):
    # wbuf:  [n]            packed weights (see Stream._pack)
    # meta:  [8 + 5L + 4J]  int64 description of the packing (see _META above)
    # x:     [B, I_0]       this step's input of each stream
    # slots: [B] int64      row of each stream in the state pool
    # state: [S, 2, L, H]   OUT (rows `slots`): h (index 0) and the LSTM's c (index 1)
    # work:  [3*G*H + 2*width]  scratch: xw, hw, tmp, then the head's two vectors
    # out:   [B, K]         OUT: last layer's h (no head) or the head's scores
    kind, relu, reset_after = meta[0], meta[1] != 0, meta[2] != 0
    L, J, head_act, H, GH = meta[3], meta[4], meta[5], meta[6], meta[7]
    B = x.shape[0]
    xw = work[0:GH]
    hw = work[GH:2 * GH]
    tmp = work[2 * GH:3 * GH]
    for b in range(B):
        s = slots[b]
        inp = x[b]
        for layer in range(L):
            row = _META + 5 * layer
            o_w, o_r, o_bi, o_bh = meta[row], meta[row + 1], meta[row + 2], meta[row + 3]
            n_in = meta[row + 4]
            W = wbuf[o_w:o_w + n_in * GH].reshape((n_in, GH))
            R = wbuf[o_r:o_r + H * GH].reshape((H, GH))
            h = state[s, 0, layer]
            for g in range(GH):
                xw[g] = wbuf[o_bi + g]
                hw[g] = wbuf[o_bh + g]
            _matvec_acc(inp, W, xw)
            if kind == 0:
                _matvec_acc(h, R, hw)
                for k in range(H):
                    tmp[k] = xw[k] + hw[k]
                _act_range(tmp, 0, H, relu)
                for k in range(H):
                    h[k] = tmp[k]
            elif kind == 1:
                # gates [i | f | g | o]; each loop below is straight-line and vectorizes
                _matvec_acc(h, R, hw)
                for g in range(GH):
                    xw[g] += hw[g]
                _sigmoid_range(xw, 0, 2 * H)
                _sigmoid_range(xw, 3 * H, 4 * H)
                _act_range(xw, 2 * H, 3 * H, relu)
                c = state[s, 1, layer]
                for k in range(H):
                    c[k] = xw[H + k] * c[k] + xw[k] * xw[2 * H + k]
                    tmp[k] = c[k]
                _act_range(tmp, 0, H, relu)
                for k in range(H):
                    h[k] = xw[3 * H + k] * tmp[k]
            elif reset_after:
                # gates [r | z | n]; b_hn sits inside the reset product (hw includes it)
                _matvec_acc(h, R, hw)
                for g in range(2 * H):
                    xw[g] += hw[g]
                _sigmoid_range(xw, 0, 2 * H)
                for k in range(H):
                    tmp[k] = xw[2 * H + k] + xw[k] * hw[2 * H + k]
                _act_range(tmp, 0, H, relu)
                for k in range(H):
                    z = xw[H + k]
                    h[k] = (cst(z, 1.0) - z) * tmp[k] + z * h[k]
            else:
                # classic GRU: r, z from h @ R[:, :2H]; n from (r * h) @ R[:, 2H:]
                for i in range(H):
                    hi = h[i]
                    for g in range(2 * H):
                        hw[g] += hi * R[i, g]
                for g in range(2 * H):
                    xw[g] += hw[g]
                _sigmoid_range(xw, 0, 2 * H)
                for i in range(H):
                    rh = xw[i] * h[i]
                    for k in range(H):
                        hw[2 * H + k] += rh * R[i, 2 * H + k]
                for k in range(H):
                    tmp[k] = xw[2 * H + k] + hw[2 * H + k]
                _act_range(tmp, 0, H, relu)
                for k in range(H):
                    z = xw[H + k]
                    h[k] = (cst(z, 1.0) - z) * tmp[k] + z * h[k]
            inp = h
        if J == 0:
            for k in range(H):
                out[b, k] = inp[k]
            continue
        # dense head: a = act(a @ W_j^T + b_j), no activation after the last layer
        width = (work.shape[0] - 3 * GH) // 2
        a_in = work[3 * GH:3 * GH + width]
        a_mid = work[3 * GH + width:3 * GH + 2 * width]
        for k in range(H):
            a_in[k] = inp[k]
        for j in range(J):
            row = _META + 5 * L + 4 * j
            o_w, o_b, n_in, n_out = meta[row], meta[row + 1], meta[row + 2], meta[row + 3]
            Wt = wbuf[o_w:o_w + n_in * n_out].reshape((n_in, n_out))
            a_out = out[b] if j == J - 1 else a_mid[:n_out]
            for k in range(n_out):
                a_out[k] = wbuf[o_b + k]
            _matvec_acc(a_in[:n_in], Wt, a_out)
            if j < J - 1:
                for k in range(n_out):
                    v = a_out[k]
                    if head_act == 1:
                        v = v if v > cst(v, 0.0) else cst(v, 0.0)
                    elif head_act == 2:
                        v = act(v, False)
                    elif head_act == 3:
                        v = sigmoid(v)
                    a_in[k] = v


@njit(**FLAGS)
def _step_one(wbuf, meta, x, slot, state, work, n_out):
    # x: [I_0] one stream's input, contiguous;  slot: [1] int64  ->  OUT: new [n_out]
    # NaN/inf in x is refused before the state moves (a few ns for I_0 values; the flags
    # keep IEEE NaN/inf semantics, so isfinite is not folded away)
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            raise ValueError("x_t contains NaN or inf")
    out = np.empty((1, n_out), x.dtype)
    _step_kernel(wbuf, meta, x.reshape((1, x.shape[0])), slot, state, work, out)
    return out[0]


# ---------------------------------------------------------------- the Python object
class Stream:
    """Stateful step-by-step inference for one or many concurrent streams.

    Parameters
    ----------
    cell : str or CellSpec
    params : dict of PyTorch-named arrays of a **unidirectional** stack
    dtype : float32 or float64; default: the params' dtype

    Examples
    --------
    >>> s = Stream("lstm", params)                       # doctest: +SKIP
    >>> y = s.step(x_t)                                  # one stream: x_t [I] -> [H]
    >>> Y = s.step(X_t, stream_ids=["a", "b"])           # two streams: [2, I] -> [2, H]
    >>> Y = s.push(chunk, stream_id="a")                 # [T, I] -> [T, H]
    >>> s.reset("a")                                     # forget a stream's state
    """

    DEFAULT_ID = 0

    def __init__(self, cell, params, *, dtype=None, _head=None, _embedding=None,
                 _postprocess=None):
        self.cell = make_cell(cell)
        num_layers, D, H, I, pdtype = validate_params(self.cell, params)
        if D != 1:
            raise ValueError("a bidirectional stack cannot stream: its backward direction "
                             "reads the future; use fastseq.functional.forward on whole "
                             "sequences")
        self.dtype = np.dtype(pdtype if dtype is None else dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.num_layers, self.hidden_size = num_layers, H
        self._embedding = None if _embedding is None else np.asarray(_embedding, self.dtype)
        self.input_size = 1 if _embedding is not None else I
        self._postprocess = _postprocess
        self._pack(params, _head or ([], "identity"))
        self._lock = threading.Lock()
        self._slots = {}                       # stream id -> row of the state pool
        self._free = []
        self._state = np.zeros((4, 2, num_layers, H), self.dtype)
        self._default_slot = np.full(1, -1, np.int64)   # the default stream's row, or -1
        self._x1 = np.zeros((1, I), self.dtype)

    # ------------------------------------------------------------ construction
    def _pack(self, params, head):
        """All weights into one buffer (W^T, R^T, b_ih, b_hh per layer, then the head's
        W^T, b) and their offsets into ``self._meta`` (see ``_META``)."""
        dense, head_act = head
        G, H = self.cell.n_gates, self.hidden_size
        pieces, offset = [], 0

        def put(a):
            nonlocal offset
            a = np.ascontiguousarray(a, dtype=self.dtype).ravel()
            pieces.append(a)
            offset += a.size
            return offset - a.size

        rows = []
        for layer in range(self.num_layers):
            s = f"_l{layer}"
            w_ih = params["weight_ih" + s]
            rows += [put(w_ih.T), put(params["weight_hh" + s].T), put(params["bias_ih" + s]),
                     put(params["bias_hh" + s]), w_ih.shape[1]]
        widths = [H]
        for W, b in dense:
            W = np.asarray(W)
            rows += [put(W.T), put(b), W.shape[1], W.shape[0]]
            widths.append(W.shape[0])
        self._wbuf = np.concatenate(pieces)
        head = [_KIND[self.cell.kind], self.cell.activation == "relu",
                bool(self.cell.reset_after), self.num_layers, len(dense),
                _HEAD_ACT[head_act], H, G * H]
        self._meta = np.array(head + rows, dtype=np.int64)
        self._work = np.zeros(3 * G * H + 2 * max(widths), self.dtype)
        self.n_outputs = int(widths[-1])
        self._n_in = int(params["weight_ih_l0"].shape[1])

    @classmethod
    def from_network(cls, network, *, dtype=None, output="scores"):
        """Stream a :class:`fastseq.network.Network`: embedding, stack and dense head.

        ``output``: ``"scores"`` (raw network outputs) or ``"proba"`` (softmax).
        """
        cfg = network.config
        if cfg["bidirectional"]:
            raise ValueError("a bidirectional network cannot stream: its backward "
                             "direction reads the future")
        if output not in ("scores", "proba"):
            raise ValueError(f"output must be 'scores' or 'proba', got {output!r}")
        dense = [(network.params[f"fc.{j}.weight"], network.params[f"fc.{j}.bias"])
                 for j in range(network.n_fc)]
        emb = network.params["embedding.weight"] if network.tokens else None
        post = _softmax if output == "proba" else None
        return cls(network.cell, network.rnn_params, dtype=dtype,
                   _head=(dense, cfg["head_activation"]), _embedding=emb, _postprocess=post)

    @classmethod
    def from_estimator(cls, estimator, *, output="scores", dtype=None):
        """Stream a fitted fastseq estimator (through its ``network_``).

        ``output``: ``"scores"`` (what the network outputs: logits, or the regressor's
        predictions), ``"proba"`` (softmax, classifiers and taggers).
        """
        net = getattr(estimator, "network_", None)
        if net is None:
            raise TypeError(f"{type(estimator).__name__} is not a fitted fastseq estimator")
        if output == "proba" and not hasattr(estimator, "classes_"):
            raise ValueError("output='proba' needs a classifier or tagger")
        return cls.from_network(net, dtype=dtype, output=output)

    # ------------------------------------------------------------ state bookkeeping
    def _slot(self, sid):
        """Row of stream ``sid`` in the state pool (a new stream gets a zeroed row)."""
        slot = self._slots.get(sid)
        if slot is None:
            if self._free:
                slot = self._free.pop()
            else:
                slot = len(self._slots)
                if slot >= self._state.shape[0]:
                    grow = np.zeros_like(self._state)
                    self._state = np.concatenate([self._state, grow])
            self._state[slot] = 0
            self._slots[sid] = slot
            if sid == self.DEFAULT_ID:
                self._default_slot[0] = slot
        return slot

    @property
    def stream_ids(self):
        """Ids of the streams that currently hold state."""
        return list(self._slots)

    def reset(self, stream_id=None):
        """Forget a stream's state (it restarts from zeros); ``None`` forgets every stream."""
        with self._lock:
            if stream_id is None:
                self._slots.clear()
                self._free.clear()
            else:
                slot = self._slots.pop(stream_id, None)
                if slot is not None:
                    self._free.append(slot)
            if self.DEFAULT_ID not in self._slots:
                self._default_slot[0] = -1

    def get_state(self, stream_id=DEFAULT_ID):
        """``(h [L, H], c [L, H] or None)``: copies of a stream's state (zeros if new)."""
        with self._lock:
            slot = self._slots.get(stream_id)
            if slot is None:
                z = np.zeros((self.num_layers, self.hidden_size), self.dtype)
                return z, (z.copy() if self.cell.has_cell_state else None)
            h = self._state[slot, 0].copy()
            return h, (self._state[slot, 1].copy() if self.cell.has_cell_state else None)

    def set_state(self, h, c=None, stream_id=DEFAULT_ID):
        """Start (or overwrite) a stream from ``h`` (and ``c``) ``[L, H]``."""
        shape = (self.num_layers, self.hidden_size)
        h = np.asarray(h, self.dtype)
        if h.shape != shape:
            raise ValueError(f"h has shape {h.shape}; expected {shape} (num_layers, hidden)")
        if c is not None:
            c = np.asarray(c, self.dtype)
            if not self.cell.has_cell_state:
                raise ValueError(f"c is only used by the LSTM; got c for a {self.cell.kind}")
            if c.shape != shape:
                raise ValueError(f"c has shape {c.shape}; expected {shape}")
        for name, a in (("h", h), ("c", c)):
            if a is not None and not np.isfinite(a).all():
                raise ValueError(f"{name} contains NaN or inf")
        with self._lock:
            slot = self._slot(stream_id)
            self._state[slot, 0] = h
            self._state[slot, 1] = 0 if c is None else c

    # ------------------------------------------------------------ stepping
    def _inputs(self, x, n, name):
        """``name`` (the caller's argument, "x_t" or "chunk") -> float array [n, I]
        (embedding applied for token streams); NaN/inf refused."""
        if self._embedding is not None:
            ids = np.asarray(x)
            if ids.dtype.kind not in "iu" or ids.shape != (n,):
                raise ValueError(f"token streams take {n} integer id(s), got "
                                 f"{ids.dtype} {ids.shape}")
            if n and (ids.min() < 0 or ids.max() >= self._embedding.shape[0]):
                raise ValueError(f"token ids must be in [0, {self._embedding.shape[0]})")
            return self._embedding[ids]
        x = np.asarray(x)
        I = self._n_in
        if x.shape != (n, I):
            raise ValueError(f"{name} has shape {x.shape}; expected ({n}, {I})")
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be numeric, got {x.dtype}")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf (as {self.dtype}); the stream "
                             "state was not changed")
        return x

    def _one_input(self, x_t):
        """One stream's step input -> contiguous [I_0] of the model's dtype."""
        if self._embedding is not None:
            ids = np.asarray(x_t)
            if ids.size != 1:
                raise ValueError(f"a token stream takes one token id per step, got shape "
                                 f"{ids.shape}")
            return np.ascontiguousarray(self._inputs(ids.reshape(1), 1, "x_t")[0])
        x_t = np.asarray(x_t)
        if x_t.shape != self._x1.shape[1:]:
            raise ValueError(f"x_t has shape {x_t.shape}; expected ({self._n_in},) for one "
                             "stream")
        if x_t.dtype.kind not in "fiub":
            raise TypeError(f"x_t must be numeric, got {x_t.dtype}")
        return np.ascontiguousarray(x_t, dtype=self.dtype)

    def step(self, x_t, stream_ids=None):
        """Advance streams by one time step.

        ``stream_ids=None``: one stream (the default id); ``x_t`` is ``[I]`` (a token id for
        token networks) and the result ``[K]``. A list of ``n`` ids: ``x_t`` is ``[n, I]``
        (``[n]`` ids) and the result ``[n, K]``; unseen ids start from zero state. ``K`` is
        the hidden size (stack) or the network's output size.
        """
        if stream_ids is None:
            # the latency path: one stream, one compiled call, no copies when x_t is
            # already a contiguous vector of the model's dtype
            if not (self._embedding is None and type(x_t) is np.ndarray
                    and x_t.dtype == self.dtype
                    and x_t.shape == self._x1.shape[1:] and x_t.flags.c_contiguous):
                x_t = self._one_input(x_t)
            with self._lock:
                if self._default_slot[0] < 0:
                    self._slot(self.DEFAULT_ID)
                out = _step_one(self._wbuf, self._meta, x_t, self._default_slot,
                                self._state, self._work, self.n_outputs)
            return out if self._postprocess is None else self._postprocess(out)
        ids = list(stream_ids)
        if len(set(ids)) != len(ids):
            raise ValueError("stream_ids must be distinct within one step")
        x = self._inputs(x_t, len(ids), "x_t")
        out = np.zeros((len(ids), self.n_outputs), self.dtype)
        with self._lock:
            slots = np.array([self._slot(s) for s in ids], dtype=np.int64)
            _step_kernel(self._wbuf, self._meta, x, slots, self._state, self._work, out)
        return out if self._postprocess is None else self._postprocess(out)

    def push(self, chunk, stream_id=DEFAULT_ID):
        """Advance one stream by a chunk of steps: ``[T, I]`` (``[T]`` ids) -> ``[T, K]``."""
        chunk = np.asarray(chunk)
        T = chunk.shape[0] if chunk.ndim else 0
        if self._embedding is None and chunk.ndim != 2:
            raise ValueError(f"chunk has shape {chunk.shape}; expected (T, "
                             f"{self._n_in})")
        x = self._inputs(chunk, T, "chunk")
        out = np.zeros((T, self.n_outputs), self.dtype)
        slot = np.zeros(1, np.int64)
        with self._lock:
            slot[0] = self._slot(stream_id)
            for t in range(T):
                _step_kernel(self._wbuf, self._meta, x[t:t + 1], slot, self._state,
                             self._work, out[t:t + 1])
        return out if self._postprocess is None else self._postprocess(out)


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
