"""OpenMP helpers that also compile without OpenMP (serial build: no-ops).

The kernels switch dynamic adjustment off (``omp_set_dynamic(0)``) around their parallel
regions and restore the caller's setting after: the caller asked for ``n_threads``. With
dynamic adjustment on, libgomp sizes a team by the machine's load average, and a 2-thread
training run on 2 cores pushes that average to 2 within minutes, after which every region
ran on one thread (measured: no worker thread was ever started at a 15-minute load of 2.8).
"""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    /* set this thread's dyn-var ICV; returns the previous value */
    static int fastseq_omp_set_dynamic(int flag) {
        int old = omp_get_dynamic();
        omp_set_dynamic(flag);
        return old;
    }
    #else
    static int fastseq_omp_set_dynamic(int flag) { (void)flag; return 0; }
    #endif
    """
    int omp_set_dynamic_get_old "fastseq_omp_set_dynamic" (int flag) noexcept nogil
