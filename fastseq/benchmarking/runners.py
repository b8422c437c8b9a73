"""Runners: a zero-argument callable doing one case's work, for fastseq and its peers.

Every implementation is named by a string:

* a fastseq backend (``"numba"``, ``"cython"``, ``"cuda"``, ``"reference"``): the
  ``fwd``/``train`` modes go through :func:`fastseq.layers.stack_forward` /
  :func:`~fastseq.layers.stack_backward`, the path the estimators use; ``step`` is the
  streaming path, input projection plus the backend's ``step()``;
* ``"torch"``: PyTorch ``nn.RNN/LSTM/GRU`` on the CPU as installed (oneDNN allowed);
* ``"torch-nodnn"``: the same with ``torch.backends.mkldnn`` switched off;
* ``"keras"``: Keras 3 on TensorFlow, run in a worker process (see
  :mod:`fastseq.benchmarking.keras_worker`) so TensorFlow and PyTorch never share one.

:func:`make_runner` returns a :class:`Runner`: ``fn`` is what gets timed, ``scope()`` is
the context (thread counts, oneDNN flag) it must run in. A combination that an
implementation cannot run raises :class:`Unsupported` with the reason.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .cases import cell_spec
from .timing import blas_limits

PEERS = ("torch", "torch-nodnn", "keras")


class Unsupported(Exception):
    """This implementation cannot run this case (missing package, cell, mode)."""


@dataclass
class Runner:
    impl: str
    fn: Callable[[], object]
    scope: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    info: dict = field(default_factory=dict)     # goes to extra_info / the report


def is_peer(impl):
    return impl in PEERS


def make_runner(impl, case, n_threads, seed=0):
    """The runner of ``impl`` on ``case`` with ``n_threads`` threads."""
    if impl in ("torch", "torch-nodnn"):
        return torch_runner(case, n_threads, onednn=(impl == "torch"), seed=seed)
    if impl == "keras":
        raise Unsupported("Keras runs in a worker process: use KerasWorker")
    return fastseq_runner(impl, case, n_threads, seed=seed)


# ------------------------------------------------------------------ fastseq
def fastseq_inputs(case, seed=0):
    """Parameters (PyTorch names) and inputs of a case, as the estimators would pass them."""
    from ..layers import init_params
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)
    params = init_params(cell_spec(case.cell), case.I, case.H, random_state=seed,
                         dtype=dtype)
    T = 1 if case.mode == "step" else case.T
    x = rng.standard_normal((T, case.B, case.I)).astype(dtype)
    dout = rng.standard_normal((T, case.B, case.H)).astype(dtype)
    return params, x, dout


def fastseq_runner(backend, case, n_threads, seed=0):
    from ..backends import BackendUnavailable, get_backend
    from ..layers import stack_backward, stack_forward
    try:
        engine = get_backend(backend)
    except (BackendUnavailable, ValueError) as exc:
        raise Unsupported(str(exc)) from exc
    cell = cell_spec(case.cell)
    params, x, dout = fastseq_inputs(case, seed)

    def scope():
        return blas_limits(n_threads)

    if case.mode == "fwd":
        # inference as the estimators' predict runs it (and PyTorch's under no_grad):
        # nothing kept per step for a backward pass
        def fn():
            return stack_forward(engine, cell, params, x, training=False,
                                 n_threads=n_threads, need_grad=False)
    elif case.mode == "train":
        def fn():
            _, _, _, cache = stack_forward(engine, cell, params, x, training=True,
                                           n_threads=n_threads)
            # no initial state given, so none needs a gradient (as in PyTorch's module(x))
            return stack_backward(params, cache, d_out=dout, n_threads=n_threads,
                                  state_grad=False)
    else:
        # streaming: the layer's input projection for one step (the engine's own GEMM, the
        # bias added by it, into a buffer reused every step, as a streaming loop would),
        # then the recurrence
        WT = np.ascontiguousarray(params["weight_ih_l0"].T)
        b_ih = params["bias_ih_l0"]
        R = np.ascontiguousarray(params["weight_hh_l0"].T)
        b_hh = params["bias_hh_l0"]
        x_t = x[0]
        xw_t = np.empty((case.B, WT.shape[1]), dtype=x.dtype)
        h = np.zeros((case.B, case.H), dtype=x.dtype)
        c = np.zeros_like(h) if cell.has_cell_state else None
        gemm = getattr(engine, "matmul_into", None)

        def project():
            if gemm is not None:
                gemm(x_t, WT, xw_t, False, 1, False, b_ih)
            else:
                np.matmul(x_t, WT, out=xw_t)
                np.add(xw_t, b_ih, out=xw_t)

        def fn():
            project()
            return engine.step(cell, xw_t, R, b_hh, h, c)
    return Runner(backend, fn, scope, info=dict(backend=backend))


# ------------------------------------------------------------------ PyTorch
def torch_module(case):
    import torch
    classes = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    if case.cell not in classes:
        raise Unsupported("PyTorch has no classic (reset_after=False) GRU")
    dtype = torch.float32 if case.dtype == "float32" else torch.float64
    torch.manual_seed(0)
    return classes[case.cell](case.I, case.H).to(dtype), dtype


def torch_runner(case, n_threads, onednn=True, seed=0):
    try:
        import torch
    except ImportError as exc:
        raise Unsupported("PyTorch is not installed (pip install 'fastseq[bench]')") \
            from exc
    module, dtype = torch_module(case)
    rng = np.random.default_rng(seed)
    T = 1 if case.mode == "step" else case.T
    x = torch.from_numpy(rng.standard_normal((T, case.B, case.I))).to(dtype)
    dout = torch.from_numpy(rng.standard_normal((T, case.B, case.H))).to(dtype)

    @contextlib.contextmanager
    def scope():
        before = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            with warnings.catch_warnings():
                # "TF32 acceleration on top of oneDNN is available for Intel GPUs"
                warnings.simplefilter("ignore", UserWarning)
                flags = torch.backends.mkldnn.flags(enabled=onednn)
                flags.__enter__()
            try:
                yield
            finally:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    flags.__exit__(None, None, None)
        finally:
            torch.set_num_threads(before)

    if case.mode == "fwd":
        def fn():
            with torch.no_grad():
                return module(x)
    elif case.mode == "train":
        x.requires_grad_(True)     # fastseq computes dx too: same work

        def fn():
            module.zero_grad(set_to_none=True)
            x.grad = None
            out, _ = module(x)
            out.backward(dout)
    else:
        h = torch.zeros((1, case.B, case.H), dtype=dtype)
        state = (h, h.clone()) if case.cell == "lstm" else h

        def fn():
            with torch.no_grad():
                return module(x, state)
    name = "torch" if onednn else "torch-nodnn"
    return Runner(name, fn, scope, info=dict(
        backend=name, torch=torch.__version__, onednn=bool(onednn)))
