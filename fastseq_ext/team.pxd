"""The kernels' thread team (``_team.h``): one per process, shared by every kernel module
through this module's C function (``from fastseq_ext.team cimport run_tasks``)."""
from libc.stdint cimport int64_t

ctypedef void (*task_fn)(void* ctx, int k) noexcept nogil

# fn(ctx, k) for k in [0, n): the caller and up to n - 1 workers claim tasks in turn
cdef void run_tasks(int n, task_fn fn, void* ctx) noexcept nogil


# The arguments of a kernel's chunk function, for its task: chunk k owns the sorted rows
# [bounds[k], bounds[k+1]). Arrays in the chunk function's order: r = those it reads, w =
# those it writes; f0..f3 its flags in order; task32 / task64 the module's task function
# specialised for each float type (a fused function indexed by type).
cdef struct Chunks:
    const void* r[6]
    void* w[6]
    const int64_t* nact
    const int64_t* bounds
    Py_ssize_t T, B, H
    bint f0, f1, f2, f3
    # forward with the input projection done per step (the LSTM's): x [T, B, I] (sorted
    # rows) and W_ih^T [I, G*H], or NULL (xw given); n_in: the input width I
    const void* x
    const void* WT
    Py_ssize_t n_in
    # forward row chunks: R holds the weight's rows (weight_hh [G*H, H], not R = its
    # transpose) and the step GEMM reads it through _gemm_wrows.h
    bint weight_rows
    # column-split steps (one task per block of ``width`` hidden units, every active row):
    # the step ``t`` a task works on and ``prev``, the step whose dh GEMM a backward task
    # runs first (-1: none)
    Py_ssize_t t, prev, width
    bint f64                              # which of the two tasks runs
    void (*task32)(Chunks*, int, float*) noexcept nogil
    void (*task64)(Chunks*, int, double*) noexcept nogil


# c.task32(c, k) or c.task64(c, k) for every chunk k in [0, n), as team tasks
cdef void run_chunks(int n, Chunks* c) noexcept nogil


# Column-split steps: for each step t in order (backward: in reverse), c.task32/64(c, k)
# for every block k of ``width`` hidden units, as team tasks (the call returns when the
# step is done). Forward: c.t = t, c.prev = -1. Backward: c.t = t and c.prev = the step
# run before it (-1 for the first), then, with need_dh0, c.t = -1 and c.prev = that last
# step (its dh GEMM alone). Steps without active rows are skipped.
cdef void run_column_steps(Chunks* c, Py_ssize_t width, bint backward,
                           bint need_dh0) noexcept nogil
