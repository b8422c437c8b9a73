"""A whole recurrent network: input (dense or embedding), recurrent stack, dense head.

All parameters live in **one flat contiguous buffer** (``Network.flat``, float32 by default or
float64) and are exposed as named views (``Network.params``), so an optimizer update is one
vector operation over the whole model and a checkpoint is one array. Gradients have the same
layout (``Network.grad_flat`` / ``Network.grads``).

Parameter names and shapes (PyTorch conventions, so they map one to one onto ``state_dict()``
of an ``nn.Embedding`` + ``nn.LSTM/GRU/RNN`` + ``nn.Linear`` model)::

    embedding.weight           [vocab_size, embedding_dim]     token input only
    rnn.weight_ih_l{k}         [G*H, I_k]                      see fastseq.layers.param_shapes
    rnn.weight_hh_l{k}         [G*H, H]
    rnn.bias_ih_l{k}           [G*H]
    rnn.bias_hh_l{k}           [G*H]
    rnn.*_l{k}_reverse                                         bidirectional only
    fc.{j}.weight              [out_j, in_j]                   j = 0..n_fc-1 (nn.Linear)
    fc.{j}.bias                [out_j]                         the last one is the output layer

The buffer holds them in exactly that order (``Network.layout``: name -> (offset, shape)).

``Network.config`` is a JSON-serializable dict with everything needed to rebuild the
architecture (see :func:`make_config`); ``Network.from_config(config, flat)`` rebuilds it::

    input          "dense" | "tokens"
    n_features     features per step (dense input)
    vocab_size, embedding_dim                      (token input)
    cell           "lstm" | "gru" | "rnn";  activation "tanh" | "relu";  reset_after bool
    units, num_layers, bidirectional
    head           hidden dense sizes, e.g. [32]
    head_activation  "relu" | "tanh" | "logistic" | "identity"
    n_outputs      size of the output layer (classes, regression targets)
    output         "many-to-one" | "many-to-many"
    dropout        rate between recurrent layers, on the head input and after each hidden
                   dense layer (inverted dropout: kept units are scaled by 1/(1-p))
    recurrent_dropout  rate of the mask on h_{t-1} in the recurrent product (fixed over time)

Topologies and conventions
--------------------------
* ``many-to-one``: the head reads the **final state of the last recurrent layer** of each
  sequence, i.e. the state after its last *valid* step (padding never counts). For a
  bidirectional stack it is ``[forward final state | backward final state]``, where the
  backward final state is the backward output at ``t = 0``: exactly PyTorch's ``h_n[-2:]``
  and Keras' ``Bidirectional(LSTM(..., return_sequences=False))``.
  A length-0 sequence reads the initial state (zeros).
* ``many-to-many``: the head is applied to the last layer's output at every step
  (``[T, B, D*H]`` -> ``[T, B, n_outputs]``); steps at ``t >= length`` are zero and are
  ignored by the losses.

Outputs are raw scores (logits for classification); the losses in :mod:`fastseq.losses`
apply the softmax.

Methods
-------
``forward(x, lengths, training=False, masks=None, rng=None)`` -> outputs (with
``training=False`` the dense head runs in float64 and the outputs are float64, so that a
sequence's output never depends on the batch it is predicted in);
``forward_train(...)`` -> (outputs, cache) and ``backward(cache, d_out)`` -> ``grad_flat``;
``recurrent_state(x, lengths)`` -> ``(h_n, c_n)`` ``[L*D, B, H]`` (PyTorch order);
``features(x, lengths)`` -> what the head reads (``[B, D*H]`` or ``[T, B, D*H]``);
``draw_masks(rng, T, B)`` -> the dropout masks of one training batch.

Shapes (time-major, as the engine works)::

    x        [T, B, F] float (dense)  or  [T, B] int (tokens)
    lengths  [B] ints in [0, T]
    outputs  [B, n_outputs] (many-to-one)  or  [T, B, n_outputs] (many-to-many)
"""
from __future__ import annotations

import threading

import numpy as np

from ._config import resolve_threads
from ._transpose import TRANSPOSE_SPLIT_MIN, transpose_into
from .backends import get_backend
from .cells import make_cell
from .layers import param_shapes, stack_backward, stack_forward

_HH_POOL_LOCK = threading.Lock()      # guards every Network's _hh_pool (tiny sections)

HEAD_ACTIVATIONS = ("relu", "tanh", "logistic", "identity")
OUTPUT_MODES = ("many-to-one", "many-to-many")
RNN_PREFIX = "rnn."


def make_config(*, n_features=None, vocab_size=None, embedding_dim=None, cell="lstm",
                activation="tanh", reset_after=True, units=32, num_layers=1,
                bidirectional=False, head=(), head_activation="relu", n_outputs=1,
                output="many-to-one", dropout=0.0, recurrent_dropout=0.0):
    """Validated, JSON-serializable architecture description (see the module docstring)."""
    tokens = embedding_dim is not None
    if tokens:
        if vocab_size is None or int(vocab_size) < 1:
            raise ValueError(f"vocab_size must be a positive int with embedding_dim, got "
                             f"{vocab_size!r}")
        if int(embedding_dim) < 1:
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
    elif n_features is None or int(n_features) < 1:
        raise ValueError(f"n_features must be a positive int, got {n_features!r}")
    spec = make_cell(cell, activation=activation, reset_after=bool(reset_after))
    for name, value in (("units", units), ("num_layers", num_layers),
                        ("n_outputs", n_outputs)):
        if int(value) != value or int(value) < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    head = [int(h) for h in (head or ())]
    if any(h < 1 for h in head):
        raise ValueError(f"head sizes must be positive ints, got {head!r}")
    if head_activation not in HEAD_ACTIVATIONS:
        raise ValueError(f"head_activation must be one of {HEAD_ACTIVATIONS}, got "
                         f"{head_activation!r}")
    if output not in OUTPUT_MODES:
        raise ValueError(f"output must be one of {OUTPUT_MODES}, got {output!r}")
    for name, value in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return dict(
        input="tokens" if tokens else "dense",
        n_features=None if tokens else int(n_features),
        vocab_size=int(vocab_size) if tokens else None,
        embedding_dim=int(embedding_dim) if tokens else None,
        cell=spec.kind, activation=spec.activation, reset_after=spec.reset_after,
        units=int(units), num_layers=int(num_layers), bidirectional=bool(bidirectional),
        head=head, head_activation=head_activation, n_outputs=int(n_outputs),
        output=output, dropout=float(dropout), recurrent_dropout=float(recurrent_dropout),
    )


# ---------------------------------------------------------------- transposed copies
# dest: [M, N] C-contiguous OUT;  src_t: [N, M] C-contiguous, dest = src_t.T.
def _copy_into(dest, src):
    if src.ndim == 2 and src.flags.f_contiguous and not src.flags.c_contiguous \
            and src.dtype == dest.dtype:
        transpose_into(dest, src.T)
    else:
        dest[...] = src


# ---------------------------------------------------------------- head activations
def _activate(name, z):
    if name == "relu":
        return np.maximum(z, 0, out=z)
    if name == "tanh":
        return np.tanh(z, out=z)
    if name == "logistic":
        # tanh form: no overflow warning for large |z|
        np.multiply(z, 0.5, out=z)
        np.tanh(z, out=z)
        z += 1
        z *= 0.5
        return z
    return z


def _activation_grad(name, a):
    """d act / d z in terms of the output a = act(z)."""
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "tanh":
        return 1 - a * a
    if name == "logistic":
        return a * (1 - a)
    return None


class Network:
    """Embedding / input, recurrent stack and dense head over one flat parameter buffer.

    Parameters
    ----------
    config : dict from :func:`make_config`
    flat : 1-D array or None
        An existing parameter buffer to wrap **without copying** (its dtype wins); None
        allocates zeros of ``dtype`` (call :meth:`init_weights`).
    dtype : float32 or float64
    backend : backend name or module for the recurrent engine
    n_threads : threads for the engine (None: its default)
    """

    def __init__(self, config, flat=None, dtype=np.float32, backend="auto", n_threads=None):
        self.config = make_config(**{k: v for k, v in config.items() if k != "input"})
        cfg = self.config
        self.cell = make_cell(cfg["cell"], activation=cfg["activation"],
                              reset_after=cfg["reset_after"])
        self.backend = backend
        self.n_threads = n_threads
        self.D = 2 if cfg["bidirectional"] else 1
        self.H = cfg["units"]
        self.tokens = cfg["input"] == "tokens"
        self.input_size = cfg["embedding_dim"] if self.tokens else cfg["n_features"]
        self.fc_sizes = [self.D * self.H] + cfg["head"] + [cfg["n_outputs"]]
        self.n_fc = len(self.fc_sizes) - 1

        shapes = {}
        if self.tokens:
            shapes["embedding.weight"] = (cfg["vocab_size"], cfg["embedding_dim"])
        for name, shape in param_shapes(self.cell, self.input_size, self.H, cfg["num_layers"],
                                        cfg["bidirectional"]).items():
            shapes[RNN_PREFIX + name] = shape
        for j in range(self.n_fc):
            shapes[f"fc.{j}.weight"] = (self.fc_sizes[j + 1], self.fc_sizes[j])
            shapes[f"fc.{j}.bias"] = (self.fc_sizes[j + 1],)
        self.layout = {}
        offset = 0
        for name, shape in shapes.items():
            self.layout[name] = (offset, tuple(shape))
            offset += int(np.prod(shape))
        self.n_params = offset

        if flat is None:
            flat = np.zeros(offset, dtype=np.dtype(dtype))
        self._wrap(flat)
        self.grad_flat = None
        self.grads = None
        # contiguous copies of weight_hh.T handed to the engine (see _engine_params)
        self._hh_names = [name for name in self.rnn_params if name.startswith("weight_hh")]
        self._hh_pool = []

    # ------------------------------------------------------------ buffer and views
    def _wrap(self, flat):
        if not isinstance(flat, np.ndarray) or flat.ndim != 1 or flat.shape[0] != self.n_params:
            raise ValueError(f"flat must be a 1-D array of {self.n_params} parameters, got "
                             f"shape {getattr(flat, 'shape', None)}")
        if flat.dtype not in (np.float32, np.float64):
            raise TypeError(f"flat must be float32 or float64, got {flat.dtype}")
        if not flat.flags.c_contiguous:
            raise ValueError("flat must be C-contiguous")
        self.flat = flat
        self.dtype = flat.dtype
        self.params = self._views(flat)
        self.rnn_params = {name[len(RNN_PREFIX):]: view for name, view in self.params.items()
                           if name.startswith(RNN_PREFIX)}

    def _views(self, buffer):
        return {name: buffer[off:off + int(np.prod(shape))].reshape(shape)
                for name, (off, shape) in self.layout.items()}

    def _ensure_grads(self):
        if self.grad_flat is None or self.grad_flat.dtype != self.dtype:
            self.grad_flat = np.zeros(self.n_params, dtype=self.dtype)
            self.grads = self._views(self.grad_flat)

    @classmethod
    def from_config(cls, config, flat=None, dtype=np.float32, backend="auto", n_threads=None):
        """Rebuild a network from :attr:`config`; ``flat`` (copied) sets the parameters."""
        net = cls(config, dtype=(np.asarray(flat).dtype if flat is not None else dtype),
                  backend=backend, n_threads=n_threads)
        if flat is not None:
            net.set_flat(flat)
        return net

    def set_flat(self, flat):
        """Copy ``flat`` into the parameter buffer (views stay valid)."""
        flat = np.asarray(flat)
        if flat.shape != (self.n_params,):
            raise ValueError(f"flat has shape {flat.shape}; expected ({self.n_params},)")
        self.flat[...] = flat

    def regularized_mask(self):
        """``[n_params]`` 1.0 on the weight matrices the L2 penalty applies to (recurrent and
        dense weights; not biases, not the embedding), else 0.0."""
        mask = np.zeros(self.n_params, dtype=self.dtype)
        for name, (off, shape) in self.layout.items():
            if "weight" in name and not name.startswith("embedding"):
                mask[off:off + int(np.prod(shape))] = 1
        return mask

    def init_weights(self, random_state=None):
        """PyTorch's default initialisation: recurrent tensors ``U(-1/sqrt(H), 1/sqrt(H))``,
        ``nn.Linear`` weight and bias ``U(-1/sqrt(in), 1/sqrt(in))``, embedding ``N(0, 1)``."""
        rng = np.random.default_rng(random_state)
        for name, view in self.params.items():
            if name.startswith("embedding"):
                view[...] = rng.standard_normal(view.shape)
            elif name.startswith(RNN_PREFIX):
                bound = 1.0 / np.sqrt(self.H)
                view[...] = rng.uniform(-bound, bound, size=view.shape)
            else:
                j = int(name.split(".")[1])
                bound = 1.0 / np.sqrt(self.fc_sizes[j])
                view[...] = rng.uniform(-bound, bound, size=view.shape)
        return self

    # ------------------------------------------------------------ engine parameters
    def _engine_params(self):
        """``(params, weight_hh_t, lease)``: the recurrent parameters (views of the flat
        buffer, PyTorch layout) and, for each ``weight_hh [G*H, H]``, a C-contiguous
        ``[H, G*H]`` copy of its transpose, the layout the engine reads
        (:func:`fastseq.layers.stack_forward`'s ``weight_hh_t``). The copy costs one blocked
        transpose per layer and batch (0.4 ms for ``[2048, 512]``; NumPy's own transposed
        copy: 3.7 ms), and the engine's backward then reads ``weight_hh`` itself as ``R^T``
        instead of transposing again.

        The copies come from a per-network pool; ``lease`` goes back with :meth:`_release`
        once nothing reads them any more: after :meth:`backward` (the engine's cache reads
        them), at once for a pass whose cache is not returned. A cache from
        :meth:`forward_train` is therefore good for one :meth:`backward`, and the weights
        must not change in between (the optimizer steps after it); one never
        backpropagated just drops its copies.

        An engine that ``accepts_weight_rows`` (the Cython one) gets no copies: it reads a
        short LSTM or GRU recurrence's weight rows directly and makes any other copy
        itself."""
        params = dict(self.rnn_params)
        if not self._hh_names or getattr(get_backend(self.backend), "accepts_weight_rows",
                                         False):
            return params, None, None
        with _HH_POOL_LOCK:
            lease = self._hh_pool.pop() if self._hh_pool else None
        if lease is None or lease[0].dtype != self.dtype:
            lease = [np.empty(self.rnn_params[name].shape[::-1], dtype=self.dtype)
                     for name in self._hh_names]
        weight_hh_t = {}
        for name, buf in zip(self._hh_names, lease):
            # a copy of a few MB is bound by memory bandwidth: two cores move it faster
            n = resolve_threads(self.n_threads) if buf.size >= TRANSPOSE_SPLIT_MIN else 1
            transpose_into(buf, self.rnn_params[name], n)
            weight_hh_t[name] = buf
        return params, weight_hh_t, lease

    def _release(self, lease):
        if lease is not None:
            with _HH_POOL_LOCK:
                if len(self._hh_pool) < 2:
                    self._hh_pool.append(lease)

    # ------------------------------------------------------------ input
    def _check_input(self, x, lengths):
        x = np.asarray(x)
        if self.tokens:
            if x.ndim != 2:
                raise ValueError(f"x has shape {x.shape}; expected (T, batch) token ids")
            if not np.issubdtype(x.dtype, np.integer):
                raise TypeError(f"token input must be integers, got {x.dtype}")
        elif x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x has shape {x.shape}; expected (T, batch, {self.input_size}) "
                             "time-major")
        T, B = x.shape[:2]
        lengths = (np.full(B, T, dtype=np.int64) if lengths is None
                   else np.asarray(lengths, dtype=np.int64))
        if lengths.shape != (B,):
            raise ValueError(f"lengths has shape {lengths.shape}; expected ({B},)")
        return x, lengths

    def _embed(self, x, lengths):
        """Token ids [T, B] -> embedded [T, B, E]; ids at padded steps are ignored."""
        E = self.params["embedding.weight"]
        valid = np.arange(x.shape[0])[:, None] < lengths[None, :]
        ids = np.where(valid, x, 0)
        if ids.size and (ids.min() < 0 or ids.max() >= E.shape[0]):
            raise ValueError(f"token ids must be in [0, {E.shape[0]}), got range "
                             f"[{ids.min()}, {ids.max()}]")
        return E[ids], ids

    # ------------------------------------------------------------ dropout masks
    def draw_masks(self, rng, T, B):
        """Inverted-dropout masks for one training batch, drawn from ``rng`` (a Generator).

        Returns a dict: ``layers`` (list of L-1 ``[T, B, D*H]`` or None), ``recurrent``
        (list of L*D ``[B, H]`` or None), ``head`` (list of n_fc masks on the input of each
        dense layer, ``[B, in_j]`` or ``[T, B, in_j]``, or None).
        """
        cfg = self.config
        p, rp = cfg["dropout"], cfg["recurrent_dropout"]
        L, D, H = cfg["num_layers"], self.D, self.H

        def mask(shape, rate):
            keep = rng.random(shape, dtype=self.dtype) >= rate
            return keep.astype(self.dtype) * self.dtype.type(1.0 / (1.0 - rate))

        masks = dict(layers=None, recurrent=None, head=None)
        if p > 0:
            if L > 1:
                masks["layers"] = [mask((T, B, D * H), p) for _ in range(L - 1)]
            lead = (B,) if cfg["output"] == "many-to-one" else (T, B)
            masks["head"] = [mask(lead + (self.fc_sizes[j],), p) for j in range(self.n_fc)]
        if rp > 0:
            masks["recurrent"] = [mask((B, H), rp) for _ in range(L * D)]
        return masks

    # ------------------------------------------------------------ forward / backward
    def forward_train(self, x, lengths=None, masks=None, rng=None, training=True, h0=None,
                      c0=None, need_grad=True):
        """Forward pass keeping what :meth:`backward` needs.

        ``masks`` from :meth:`draw_masks` (or drawn here from ``rng`` when ``training`` and
        the config has dropout). ``h0``, ``c0`` ``[L*D, B, H]``: initial states (None: zeros;
        truncated BPTT passes the previous chunk's final state, and no gradient flows into
        it). Returns ``(outputs, cache)``; ``cache["h_n"]``, ``cache["c_n"]`` are the final
        states. A cache serves one :meth:`backward` (the engine's copy of ``weight_hh.T`` goes
        back to a pool there and may be reused by the next pass; see :meth:`_engine_params`).
        ``need_grad=False`` (inference): the engine keeps nothing per step for BPTT (less
        memory traffic) and :meth:`backward` refuses the cache.
        """
        x, lengths = self._check_input(x, lengths)
        T, B = x.shape[:2]
        if masks is None:
            masks = (self.draw_masks(rng, T, B) if training and rng is not None
                     else dict(layers=None, recurrent=None, head=None))
        ids = None
        if self.tokens:
            x, ids = self._embed(x, lengths)
        params, weight_hh_t, lease = self._engine_params()
        out, h_n, c_n, rnn_cache = stack_forward(
            self.backend, self.cell, params, x, lengths, h0=h0, c0=c0,
            dropout_masks=masks["layers"], rmasks=masks["recurrent"], training=training,
            n_threads=self.n_threads, need_grad=need_grad, weight_hh_t=weight_hh_t)
        if not need_grad:                      # nothing reads the copies any more
            self._release(lease)
            lease = None
        many_to_one = self.config["output"] == "many-to-one"
        if many_to_one:
            top = h_n[-self.D:]                              # [D, B, H]
            feats = top[0] if self.D == 1 else np.concatenate([top[0], top[1]], axis=1)
        else:
            feats = out.reshape(T * B, -1)
        a = feats
        # Inference runs the (small) head in float64: BLAS rounds a float32 GEMM differently
        # for different batch sizes, and a sequence's output must not depend on its batch
        # companions. The recurrent features themselves are batch-invariant.
        head_dtype = self.dtype if training else np.float64
        if head_dtype != a.dtype:
            a = a.astype(head_dtype)
        acts = []                  # input of each dense layer (after its dropout mask)
        hidden = [None]            # hidden[j]: act(z_{j-1}) before the mask, j >= 1
        head_masks = masks["head"]
        for j in range(self.n_fc):
            if j > 0:
                hidden.append(a)
            if head_masks is not None:
                a = a * head_masks[j].reshape(a.shape)
            acts.append(a)
            W, b = self.params[f"fc.{j}.weight"], self.params[f"fc.{j}.bias"]
            if head_dtype != W.dtype:
                W, b = W.astype(head_dtype), b.astype(head_dtype)
            z = a @ W.T
            z += b
            if j < self.n_fc - 1:
                z = _activate(self.config["head_activation"], z)
            a = z
        outputs = a if many_to_one else a.reshape(T, B, -1)
        cache = dict(rnn=rnn_cache, acts=acts, hidden=hidden, masks=masks, ids=ids, T=T, B=B,
                     h_shape=h_n.shape, lengths=lengths, h_n=h_n, c_n=c_n, lease=lease)
        return outputs, cache

    def backward(self, cache, d_out):
        """Gradient of a loss with respect to every parameter, given ``d_out`` (same shape
        as the outputs). Fills and returns :attr:`grad_flat` (views in :attr:`grads`)."""
        self._ensure_grads()
        g = self.grads
        T, B = cache["T"], cache["B"]
        many_to_one = self.config["output"] == "many-to-one"
        dz = np.asarray(d_out, dtype=self.dtype).reshape(-1, self.fc_sizes[-1])
        acts, head_masks = cache["acts"], cache["masks"]["head"]
        # dense layer j:  z_j = a_j @ W_j.T + b_j,  a_j = mask_j * act(z_{j-1})
        for j in range(self.n_fc - 1, -1, -1):
            a_in = acts[j]
            np.matmul(dz.T, a_in, out=g[f"fc.{j}.weight"])
            np.sum(dz, axis=0, out=g[f"fc.{j}.bias"])
            da = dz @ self.params[f"fc.{j}.weight"]
            if head_masks is not None:
                da *= head_masks[j].reshape(da.shape)
            if j > 0:
                grad = _activation_grad(self.config["head_activation"], cache["hidden"][j])
                if grad is not None:
                    da *= grad
            dz = da
        d_feats = dz
        if many_to_one:
            dh_n = np.zeros(cache["h_shape"], dtype=self.dtype)
            H = self.H
            for d in range(self.D):
                dh_n[dh_n.shape[0] - self.D + d] = d_feats[:, d * H:(d + 1) * H]
            d_rnn_out = None
        else:
            dh_n = None
            d_rnn_out = d_feats.reshape(T, B, -1)
        # dense input features need no gradient: skip the first layer's dx GEMM; the
        # initial states are inputs (zeros, or a carried state treated as a constant): no
        # gradient for them either. The weight gradients are written straight into the
        # flat buffer where possible
        out = {name: g[RNN_PREFIX + name] for name in self.rnn_params
               if name.startswith("weight_")}
        dx, rnn_grads, _, _ = stack_backward(self.rnn_params, cache["rnn"], d_out=d_rnn_out,
                                             dh_n=dh_n, n_threads=self.n_threads,
                                             input_grad=self.tokens, out=out,
                                             state_grad=False)
        self._release(cache.pop("lease", None))
        for name, grad in rnn_grads.items():
            if grad is not g[RNN_PREFIX + name]:
                _copy_into(g[RNN_PREFIX + name], grad)
        if self.tokens:
            dE = g["embedding.weight"]
            dE[...] = 0
            np.add.at(dE, cache["ids"].ravel(), dx.reshape(-1, dx.shape[-1]))
        return self.grad_flat

    def forward(self, x, lengths=None, training=False, masks=None, rng=None):
        """Outputs only (``[B, n_outputs]`` or ``[T, B, n_outputs]``)."""
        return self.forward_train(x, lengths, masks=masks, rng=rng, training=training,
                                  need_grad=False)[0]

    def features(self, x, lengths=None):
        """What the head reads: ``[B, D*H]`` final states (many-to-one) or the last layer's
        output ``[T, B, D*H]`` (many-to-many). Inference mode (no dropout)."""
        x, lengths = self._check_input(x, lengths)
        if self.tokens:
            x, _ = self._embed(x, lengths)
        params, weight_hh_t, lease = self._engine_params()
        out, h_n, _, _ = stack_forward(self.backend, self.cell, params, x, lengths,
                                       training=False, n_threads=self.n_threads,
                                       need_grad=False, weight_hh_t=weight_hh_t)
        self._release(lease)
        if self.config["output"] == "many-to-many":
            return out
        top = h_n[-self.D:]
        return top[0] if self.D == 1 else np.concatenate([top[0], top[1]], axis=1)

    def recurrent_state(self, x, lengths=None, h0=None, c0=None):
        """Final states ``(h_n, c_n)`` of every layer and direction, ``[L*D, B, H]``
        (PyTorch order: index = layer * D + direction); ``c_n`` is None except for the LSTM."""
        x, lengths = self._check_input(x, lengths)
        if self.tokens:
            x, _ = self._embed(x, lengths)
        params, weight_hh_t, lease = self._engine_params()
        _, h_n, c_n, _ = stack_forward(self.backend, self.cell, params, x, lengths,
                                       h0=h0, c0=c0, training=False, n_threads=self.n_threads,
                                       need_grad=False, weight_hh_t=weight_hh_t)
        self._release(lease)
        return h_n, c_n
