"""OpenMP helpers that also compile without OpenMP (serial build: no-ops)."""

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
