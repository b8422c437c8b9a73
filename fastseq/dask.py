"""Scale-out on Dask: batch prediction over dask arrays and training over their chunks.

Needs the ``dask`` extra (``pip install "fastseq[dask]"``). Nothing here is needed for model
search: ``GridSearchCV`` / ``RandomizedSearchCV`` over fastseq estimators run on a
``dask.distributed`` cluster through joblib (see ``docs/dask.md``)::

    with joblib.parallel_backend("dask"):
        search.fit(X, y)

Batch prediction (``predict``, ``predict_proba``, ``predict_log_proba``, ``transform``)
takes a dask array of sequences, in the same layouts as the estimators:

* 3-D ``(n, T, F)`` chunked along samples; chunks along ``T`` and ``F`` are merged
  (a sequence is never split), or
* 2-D flattened rows ``(n, T * F)`` for a model with ``n_timesteps=T`` (what dask-ml's
  ``Incremental`` / ``ParallelPostFit`` and other 2-D tools pass), or ``(n, F)`` one-step
  rows for a model without ``n_timesteps``; ``(n, T)`` token ids for ``embedding_dim`` models.

Each block runs ``model.<method>`` on whichever worker holds it; the model travels once
per worker as one graph key. The result is a lazy dask array with the same sample chunks.

:func:`incremental_fit` drives ``partial_fit`` over the sample blocks in order (one task per
block, chained, like dask-ml's ``Incremental``): data stays where it is, the model moves.

Threads: inside a task the estimator uses ``n_jobs`` threads, or, with ``n_jobs=None``,
:func:`fastseq._config.default_threads`, which reads ``NUMBA_NUM_THREADS`` /
``OMP_NUM_THREADS``. A distributed nanny starts workers with ``OMP_NUM_THREADS=1``, so by
default every task uses one thread; give workers more with
``LocalCluster(env=worker_env(k))`` when a worker runs fewer concurrent tasks than it has
cores (:func:`worker_env`, :func:`thread_report`).

Memory allocator: dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
turns glibc's adaptive mmap threshold off; training then page-faults on every large
per-batch array and costs 1.5-1.8x the CPU of the same fit elsewhere.
:func:`configure_workers` (a :class:`WorkerSettings` plugin) sets fixed thresholds in every
worker, present and future (see :mod:`fastseq._malloc` and docs/dask.md).
"""
from __future__ import annotations

import numbers
import os

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("fastseq.dask needs dask: pip install 'fastseq[dask]' "
                      "(dask[distributed])") from exc

from sklearn.base import is_classifier
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _malloc

try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - dask without distributed: no cluster to configure
    _WorkerPlugin = object

__all__ = ["predict", "predict_proba", "predict_log_proba", "transform", "incremental_fit",
           "configure_workers", "WorkerSettings", "worker_env", "thread_report", "warm_up"]

# ---------------------------------------------------------------------------- input checks


def _check_dask_array(X, name="X"):
    if not isinstance(X, da.Array):
        raise TypeError(f"{name} must be a dask.array.Array, got {type(X).__name__}; call "
                        f"the estimator directly on in-memory data, or wrap it with "
                        f"dask.array.from_array({name}, chunks=(rows, -1, -1))")
    if X.ndim not in (2, 3):
        raise ValueError(f"{name} has shape {X.shape}; expected a 3-D dask array (n, T, F) "
                         "chunked along samples, or 2-D (n, n_timesteps * F) rows")
    for axis in range(1, X.ndim):
        if any(np.isnan(c) for c in X.chunks[axis]):
            raise ValueError(f"{name} has unknown chunk sizes along axis {axis}; call "
                             f"{name}.compute_chunk_sizes() first (only the sample axis 0 "
                             "may have unknown chunk sizes)")
    return X


def _single_chunk_rows(X):
    """Merge every chunk along the non-sample axes: one block = whole sequences."""
    if all(len(X.chunks[axis]) == 1 for axis in range(1, X.ndim)):
        return X
    return X.rechunk({axis: -1 for axis in range(1, X.ndim)})


def _check_layout(model, X):
    """ValueError (naming n_timesteps / features) when X's trailing shape cannot be the
    model's input; the same rules as the estimators, checked before any task runs."""
    n_features = getattr(model, "n_features_in_", None)
    if getattr(model, "embedding_dim", None) is not None:      # token ids (n, T)
        if X.ndim != 2:
            raise ValueError(f"X has shape {X.shape}; a model with embedding_dim takes 2-D "
                             "(n, T) token ids")
        return
    if n_features is None:
        return
    n_timesteps = getattr(model, "n_timesteps", None)
    if X.ndim == 3:
        if X.shape[2] != n_features:
            raise ValueError(f"X has shape {X.shape} ({X.shape[2]} features per step), but "
                             f"the model expects (n, T, {n_features})")
    elif n_timesteps is None:
        if X.shape[1] != n_features:
            raise ValueError(f"X has shape {X.shape}; 2-D rows mean one time step of "
                             f"{n_features} features for a model with n_timesteps=None. "
                             "For flattened sequences set n_timesteps on the model (then "
                             "rows are (n, n_timesteps * n_features)) or pass a 3-D array")
    elif X.shape[1] != n_timesteps * n_features:
        raise ValueError(f"X has shape {X.shape}; the model has n_timesteps={n_timesteps} "
                         f"and {n_features} features, so rows must have "
                         f"{n_timesteps * n_features} columns")


# ---------------------------------------------------------------------------- prediction


def _call_block(block, model, method, tail, dtype_out):
    # block: (m, T, F) or (m, T*F) rows; the estimator validates and predicts them
    if block.shape[0] == 0:
        return np.empty((0,) + tail, dtype=dtype_out)
    out = getattr(model, method)(block)
    return np.asarray(out)


def _output_spec(model, method, X):
    """(trailing shape, dtype) of ``model.<method>`` on X's rows, from one zero sample.

    Calling the model locally on one sample also validates X's layout with the estimator's
    own messages before any task is scheduled."""
    dtype = X.dtype if X.dtype.kind in "iuf" else np.float32
    probe = np.zeros((1,) + tuple(int(s) for s in X.shape[1:]), dtype=dtype)
    out = np.asarray(getattr(model, method)(probe))
    return out.shape[1:], out.dtype


def _map_rows(model, method, X):
    X = _single_chunk_rows(_check_dask_array(X))
    if not hasattr(model, method):
        raise AttributeError(f"{type(model).__name__} has no method {method!r}")
    check_is_fitted(model)
    _check_layout(model, X)
    tail, dtype = _output_spec(model, method, X)
    model_key = dask.delayed(model, pure=True)
    # output blocks: rows keep axis 0, X's trailing axes become the output's trailing axes
    out_ndim = 1 + len(tail)
    drop = tuple(range(out_ndim, X.ndim))
    new = tuple(range(X.ndim, out_ndim))
    chunks = (X.chunks[0],) + tuple((s,) for s in tail)
    return da.map_blocks(_call_block, X, drop_axis=drop, new_axis=new, chunks=chunks,
                         dtype=dtype, meta=np.empty((0,) * out_ndim, dtype=dtype),
                         model=model_key, method=method, tail=tail, dtype_out=dtype)


def predict(model, X):
    """``model.predict`` over a dask array of sequences, block by block (lazy).

    Parameters
    ----------
    model : a fitted fastseq estimator (or any fitted scikit-learn-style model whose
        ``predict`` takes rows of X)
    X : dask array, ``(n, T, F)`` or ``(n, n_timesteps * F)`` (see the module docstring),
        chunked along samples

    Returns
    -------
    dask array with X's sample chunks: ``(n,)`` labels / values, ``(n, n_outputs)`` for a
    multi-output regressor, ``(n, T)`` per-step labels for a ``SequenceTagger``.
    """
    return _map_rows(model, "predict", X)


def predict_proba(model, X):
    """``model.predict_proba`` over a dask array: ``(n, n_classes)``, or
    ``(n, T, n_classes)`` for a tagger (float64, lazy)."""
    return _map_rows(model, "predict_proba", X)


def predict_log_proba(model, X):
    """``model.predict_log_proba`` over a dask array (lazy)."""
    return _map_rows(model, "predict_log_proba", X)


def transform(model, X):
    """``model.transform`` over a dask array: the final hidden state ``(n, D * units)`` of
    each sequence, or ``(n, T, D * units)`` per step for a tagger (lazy)."""
    return _map_rows(model, "transform", X)


# ---------------------------------------------------------------------------- training


def _partial_fit_block(model, X_block, y_block, w_block, fit_kwargs):
    # one partial_fit call on one block of whole sequences; empty blocks leave the model
    if X_block.shape[0] == 0:
        return model
    if w_block is not None:
        fit_kwargs = dict(fit_kwargs, sample_weight=w_block)
    model.partial_fit(X_block, y_block, **fit_kwargs)
    return model


def _blocks_like(arr, row_chunks, name):
    """Delayed blocks of ``arr`` (numpy or dask) split along axis 0 as ``row_chunks``."""
    n = int(sum(row_chunks))
    if isinstance(arr, da.Array):
        if any(np.isnan(c) for c in arr.chunks[0]):
            raise ValueError(f"{name} has unknown chunk sizes; call "
                             f"{name}.compute_chunk_sizes() first")
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} rows but X has {n} sequences")
        arr = arr.rechunk({0: row_chunks, **{a: -1 for a in range(1, arr.ndim)}})
        return list(arr.to_delayed().reshape(len(row_chunks), -1)[:, 0])
    if isinstance(arr, (list, tuple)) and arr and not np.isscalar(arr[0]):
        # ragged per-sequence targets (tagger): keep the Python list per block
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries but X has {n} sequences")
        bounds = np.cumsum((0,) + tuple(int(c) for c in row_chunks))
        return [list(arr[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    arr = np.asarray(arr)
    if arr.ndim == 0 or arr.shape[0] != n:
        raise ValueError(f"{name} has shape {arr.shape}; expected {n} rows (one per "
                         "sequence of X)")
    bounds = np.cumsum((0,) + tuple(int(c) for c in row_chunks))
    return [arr[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def incremental_fit(model, X, y, *, classes=None, epochs=1, sample_weight=None,
                    shuffle_blocks=False, random_state=None):
    """Train ``model`` with ``partial_fit`` over the sample blocks of a dask array.

    Every epoch calls ``model.partial_fit(X_block, y_block)`` once per block, in block
    order (or a random order with ``shuffle_blocks``), as a chain of tasks: each task runs
    where its block lives and hands the updated model to the next. The result equals the
    same ``partial_fit`` calls done locally on the same blocks (same thread count).

    Parameters
    ----------
    model : fastseq estimator with ``partial_fit`` (updated in place and returned, like
        ``partial_fit``; it may already be fitted, then training continues)
    X : dask array ``(n, T, F)`` or ``(n, n_timesteps * F)`` chunked along samples; the
        chunks are the ``partial_fit`` batches (each block is one epoch of the model's own
        mini-batches over that block)
    y : dask array or array-like, one target row per sequence (``(n,)``, ``(n, n_outputs)``,
        ``(n, T)`` per-step labels for a tagger); rechunked to X's sample chunks
    classes : array-like, required by classifiers and taggers that are not fitted yet
    epochs : int, passes over all blocks
    sample_weight : dask array or array-like ``(n,)``, optional
    shuffle_blocks : bool, visit the blocks in a new random order every epoch
    random_state : int, RandomState or None, the block order with ``shuffle_blocks``

    Returns
    -------
    model
    """
    if not hasattr(model, "partial_fit"):
        raise TypeError(f"{type(model).__name__} has no partial_fit")
    if not (isinstance(epochs, numbers.Integral) and epochs >= 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    X = _single_chunk_rows(_check_dask_array(X))
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X has unknown chunk sizes along samples; call "
                         "X.compute_chunk_sizes() first")
    fitted = hasattr(model, "flat_params_")
    if fitted:
        _check_layout(model, X)
    if is_classifier(model) and not fitted and classes is None:
        raise ValueError("classes must be passed to incremental_fit when the classifier is "
                         "not fitted yet (as on the first call to partial_fit)")
    row_chunks = X.chunks[0]
    x_blocks = list(X.to_delayed().reshape(len(row_chunks), -1)[:, 0])
    y_blocks = _blocks_like(y, row_chunks, "y")
    w_blocks = (_blocks_like(sample_weight, row_chunks, "sample_weight")
                if sample_weight is not None else [None] * len(row_chunks))
    fit_kwargs = {} if classes is None else {"classes": np.asarray(classes)}
    order_rng = check_random_state(random_state)
    step = dask.delayed(_partial_fit_block, pure=False)
    current = model
    for _ in range(epochs):
        order = (order_rng.permutation(len(row_chunks)) if shuffle_blocks
                 else np.arange(len(row_chunks)))
        chain = current
        for i in order:
            chain = step(chain, x_blocks[i], y_blocks[i], w_blocks[i], fit_kwargs)
        (current,) = dask.compute(chain)
    if current is not model:
        # the fitted state came back from a worker: copy it into the caller's object
        model.__dict__.update(current.__dict__)
    return model


# ---------------------------------------------------------------------------- workers


def worker_env(threads):
    """Environment for dask workers whose every task may use ``threads`` threads.

    ``LocalCluster(n_workers=w, threads_per_worker=t, env=worker_env(k))`` with
    ``w * t * k`` = the cores: ``NUMBA_NUM_THREADS`` is what fastseq's kernels read
    (:func:`fastseq._config.default_threads`); the BLAS/OpenMP variables keep other
    libraries at the same count (the nanny's default is 1)."""
    if not (isinstance(threads, numbers.Integral) and threads >= 1):
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    value = str(int(threads))
    return {"NUMBA_NUM_THREADS": value, "OMP_NUM_THREADS": value,
            "OPENBLAS_NUM_THREADS": value, "MKL_NUM_THREADS": value}


class WorkerSettings(_WorkerPlugin):
    """Worker plugin: fastseq's settings for the worker processes of a cluster.

    ``threads``: the threads each fit with ``n_jobs=None`` uses (sets ``NUMBA_NUM_THREADS``,
    which :func:`fastseq._config.default_threads` reads at every fit; None leaves it).
    ``malloc``: fixed glibc malloc thresholds (:func:`fastseq._malloc.set_thresholds`,
    ``mmap_threshold`` / ``trim_threshold`` bytes) instead of the nanny's
    ``MALLOC_TRIM_THRESHOLD_=65536``, under which every per-batch array above 128 KiB is a
    fresh, page-faulting mmap. The price: a worker keeps up to ``trim_threshold`` bytes of
    freed heap for reuse instead of returning them to the system at once. A no-op for
    ``malloc`` where the C library is not glibc.
    """

    name = "fastseq-worker-settings"

    def __init__(self, threads=None, malloc=True, mmap_threshold=_malloc.MMAP_THRESHOLD,
                 trim_threshold=_malloc.TRIM_THRESHOLD):
        if threads is not None and not (isinstance(threads, numbers.Integral)
                                        and threads >= 1):
            raise ValueError(f"threads must be None or a positive int, got {threads!r}")
        for name, value in (("mmap_threshold", mmap_threshold),
                            ("trim_threshold", trim_threshold)):
            if not (isinstance(value, numbers.Integral) and 0 < value < 2**31):
                raise ValueError(f"{name} must be a positive int below 2**31 bytes, "
                                 f"got {value!r}")
        self.threads = None if threads is None else int(threads)
        self.malloc = bool(malloc)
        self.mmap_threshold = int(mmap_threshold)
        self.trim_threshold = int(trim_threshold)

    def apply(self):
        """Apply the settings to this process (what ``setup`` does in each worker)."""
        if self.threads is not None:
            os.environ["NUMBA_NUM_THREADS"] = str(self.threads)
        if self.malloc:
            _malloc.set_thresholds(self.mmap_threshold, self.trim_threshold)

    def setup(self, worker=None):
        self.apply()


def configure_workers(client, threads=None, malloc=True, **thresholds):
    """Apply :class:`WorkerSettings` to every worker of ``client``, now and as they join.

    Call it once after the client connects (a second call replaces the settings)::

        client = Client(cluster)
        fastseq.dask.configure_workers(client)            # threads=None: keep the env's

    Returns ``{worker address: thread_report()}`` as each worker sees it afterwards."""
    plugin = WorkerSettings(threads=threads, malloc=malloc, **thresholds)
    client.register_plugin(plugin)          # replaces an earlier one of the same name
    return client.run(thread_report)


def thread_report():
    """What a fit in this process would use: fastseq's default thread count, the thread
    variables, the BLAS/OpenMP pools that threadpoolctl sees, and the malloc settings
    (``MALLOC_*`` variables, thresholds set by :class:`WorkerSettings`). Run it inside a
    task (``client.submit(fastseq.dask.thread_report)``) to check a worker's settings."""
    from threadpoolctl import threadpool_info

    from ._config import default_threads
    return {
        "pid": os.getpid(),
        "default_threads": default_threads(),
        "env": {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                                               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "threadpools": [{"user_api": p["user_api"], "internal_api": p["internal_api"],
                         "num_threads": p["num_threads"]} for p in threadpool_info()],
        "malloc": _malloc.report(),
    }


def _warm_one(estimator, X, y, fit_kwargs):
    import time

    from sklearn.base import clone
    start = time.perf_counter()
    model = clone(estimator)
    if "max_iter" in model.get_params():
        model.set_params(max_iter=1)
    model.fit(X, y, **fit_kwargs)
    model.predict(X)
    return time.perf_counter() - start


def warm_up(client, estimator, X, y, timeout=None, **fit_kwargs):
    """Import fastseq and load (or compile) the kernels that ``estimator`` uses on every
    worker of ``client``, by fitting a one-epoch clone on the small sample ``(X, y)``
    as one task pinned to each worker.

    Numba kernels are cached on disk (``cache=True``), so a worker only loads them; a
    worker compiles only when the cache is cold. Later tasks in the same worker process
    reuse the loaded kernels. Kernels are per cell type and dtype: warm up once per cell
    you will search over. Returns ``{worker address: seconds inside the task}``."""
    workers = sorted(client.scheduler_info()["workers"])
    futures = {w: client.submit(_warm_one, estimator, X, y, fit_kwargs, workers=[w],
                                allow_other_workers=False, pure=False) for w in workers}
    return {w: f.result(timeout=timeout) for w, f in futures.items()}
