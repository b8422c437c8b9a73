"""The thread team that runs the kernels' chunks and column blocks (``_team.h``).

One team per process: the kernel modules call :c:func:`run_tasks` through Cython's
cross-module C import, so they share its workers. ``workers()`` and ``claim_counts`` are
for tests and diagnostics.
"""
from cpython.ref cimport PyObject
from libc.stdlib cimport free, malloc

cdef extern from "_team.h" nogil:
    ctypedef void (*fs_task_fn)(void* ctx, int k) noexcept nogil
    void fs_team_run(int n, fs_task_fn fn, void* ctx)
    int fs_team_workers()


cdef void run_tasks(int n, task_fn fn, void* ctx) noexcept nogil:
    fs_team_run(n, <fs_task_fn>fn, ctx)


cdef void _chunk_task(void* p, int k) noexcept nogil:
    cdef Chunks* c = <Chunks*>p
    if c.f64:
        c.task64(c, k, NULL)
    else:
        c.task32(c, k, NULL)


cdef void run_chunks(int n, Chunks* c) noexcept nogil:
    fs_team_run(n, _chunk_task, c)


cdef void run_column_steps(Chunks* c, Py_ssize_t width, bint backward,
                           bint need_dh0) noexcept nogil:
    cdef int n_blocks = <int>((c.H + width - 1) // width)
    cdef Py_ssize_t t, prev = -1
    c.width = width
    if not backward:
        c.prev = -1
        for t in range(c.T):
            if c.nact[t] == 0:
                break
            c.t = t
            fs_team_run(n_blocks, _chunk_task, c)
        return
    for t in range(c.T - 1, -1, -1):
        if c.nact[t] == 0:
            continue
        c.t, c.prev = t, prev
        fs_team_run(n_blocks, _chunk_task, c)
        prev = t
    if need_dh0 and prev >= 0:
        c.t, c.prev = -1, prev
        fs_team_run(n_blocks, _chunk_task, c)


# fn(k) for the Python callable of run_calls, and the exceptions it raised
cdef struct _Calls:
    PyObject* fn
    PyObject* errors


cdef void _call_task(void* ctx, int k) noexcept nogil:
    cdef _Calls* calls = <_Calls*>ctx
    with gil:
        try:
            (<object>calls.fn)(k)
        except BaseException as exc:
            (<list>calls.errors).append(exc)


def run_calls(fn, int n):
    """``fn(k)`` for ``k`` in ``range(n)`` as team tasks, for Python callables that
    release the GIL for their work (the Numba engine's chunks, compiled with
    ``nogil=True``): the caller and the workers take the GIL only to start each call.
    A hand-over costs a few microseconds where a ``ThreadPoolExecutor``'s costs ~50 (its
    futures, locks and queue). The first exception raised is raised here once every task
    has finished."""
    cdef _Calls calls
    errors = []
    calls.fn = <PyObject*>fn
    calls.errors = <PyObject*>errors
    with nogil:
        fs_team_run(n, _call_task, &calls)
    if errors:
        raise errors[0]


def workers():
    """Worker threads started so far in this process (the caller of a call is not one)."""
    return fs_team_workers()


cdef void _count(void* ctx, int k) noexcept nogil:
    # ctx: [spin, n, ran[0..n), sink[0..n)]
    cdef long* counts = <long*>ctx
    cdef long i, s = 0
    for i in range(counts[0]):         # some work, so that workers get to claim tasks
        s += i ^ k
    counts[2 + k] += 1
    counts[2 + counts[1] + k] = s


def claim_counts(int n, long spin=2000):
    """Run ``n`` tasks on the team; returns how often each ran (tests: exactly once)."""
    cdef long* counts = <long*>malloc((2 * n + 2) * sizeof(long))
    cdef int k
    if counts == NULL:
        raise MemoryError()
    counts[0] = spin
    counts[1] = n
    for k in range(2 * n):
        counts[2 + k] = 0
    with nogil:
        run_tasks(n, _count, counts)
    out = [counts[2 + k] for k in range(n)]
    free(counts)
    return out
