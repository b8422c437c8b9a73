"""One switch for BLAS threads, shared by the layers and both CPU engines.

fastseq runs exactly one level of parallelism: while its own threads work (the two
directions, the engines' batch chunks, the row blocks of the layers' GEMMs), BLAS is
pinned to one thread. :class:`blas_threads` does that for every BLAS library loaded
(NumPy's and SciPy's OpenBLAS are two) and restores the setting found on entry when the
last of any concurrently running blocks exits, so calls from several Python threads never
leave a changed setting behind. :class:`WorkerPool` runs the one level of parallelism;
:func:`column_blocks` is how the column-split GEMMs share their columns among it;
:func:`each_released` runs compiled calls that release the GIL on the extension's team.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

try:            # fastseq_ext's thread team, which also runs Python callables
    from fastseq_ext.team import run_calls as _run_calls
except ImportError:  # pragma: no cover - depends on the build
    _run_calls = None

_lock = threading.Lock()
_state = {"depth": 0, "saved": [], "current": None}
_libraries = None


def _blas_libraries():
    global _libraries
    if _libraries is None:
        from threadpoolctl import ThreadpoolController
        _libraries = ThreadpoolController().select(user_api="blas").lib_controllers
    return _libraries


class blas_threads:
    """Context manager: every BLAS library uses ``n`` threads inside the block."""

    def __init__(self, n):
        self.n = int(n)

    def __enter__(self):
        with _lock:
            if _state["depth"] == 0:
                _state["saved"] = [(lib, lib.get_num_threads()) for lib in _blas_libraries()]
                for lib, value in _state["saved"]:
                    if value != self.n:
                        lib.set_num_threads(self.n)
            elif _state["current"] != self.n:
                # nested block (this or another thread): only a different count costs calls
                for lib, _ in _state["saved"]:
                    lib.set_num_threads(self.n)
            _state["current"] = self.n
            _state["depth"] += 1
        return self

    def __exit__(self, *exc):
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0:
                # every change inside went through this class (to _state["current"]), so
                # only a library whose setting differs from that is set back: no query
                for lib, value in _state["saved"]:
                    if value != _state["current"]:
                        lib.set_num_threads(value)
                _state["saved"] = []
                _state["current"] = None
        return False


def each_released(pool, fn, items):
    """``[fn(item) for item in items]``, in parallel, for an ``fn`` that releases the GIL
    for its work (a Numba kernel compiled with ``nogil=True``): on fastseq_ext's thread
    team when the extension is built (each thread takes the GIL only to start its call:
    about 20 us per parallel region where the pool's hand-over takes 50), else on
    ``pool`` (a :class:`WorkerPool`)."""
    items = list(items)
    if len(items) <= 1 or _run_calls is None:
        return pool.each(fn, items)
    results = [None] * len(items)

    def call(k):
        results[k] = fn(items[k])
    _run_calls(call, len(items))
    return results


def column_blocks(N, k):
    """``k`` or fewer ``(start, stop)`` column ranges covering ``[0, N)``, each a multiple of
    16 wide but the last (whole vectors for the GEMMs that split their columns among
    threads); the same ranges for the same ``N`` and ``k``."""
    width = ((N + k - 1) // k + 15) // 16 * 16
    return [(c0, min(N, c0 + width)) for c0 in range(0, N, width)]


class WorkerPool:
    """A named pool of worker threads, created on first use and grown on demand, for the
    one level of parallelism: :meth:`each` runs the first item on the calling thread and
    the others on the pool. A pool too small for a call is replaced, never shut down: a
    concurrent caller may still be submitting to it (its idle threads exit once it is
    garbage). Callers that nest (a direction's thread running engine chunks) use
    different pools, so a worker never waits on work queued behind itself."""

    def __init__(self, name):
        self.name = name
        self._pool = None
        self._lock = threading.Lock()

    def _get(self, n_workers):
        with self._lock:
            if self._pool is None or self._pool._max_workers < n_workers:
                self._pool = ThreadPoolExecutor(max_workers=n_workers,
                                                thread_name_prefix=self.name)
            return self._pool

    def each(self, fn, items):
        """``[fn(item) for item in items]``, the items after the first on the pool."""
        items = list(items)
        if len(items) <= 1:
            return [fn(item) for item in items]
        futures = [self._get(len(items) - 1).submit(fn, item) for item in items[1:]]
        try:
            first = fn(items[0])
        finally:
            rest = [future.result() for future in futures]
        return [first] + rest
