"""The fused per-row cell loops of ``_cells.h`` (``restrict`` pointers, one loop per row),
with a wrapper per cell that picks the float or double version."""
from cython cimport floating


cdef extern from "_cells.h" nogil:
    void fs_lstm_fwd_row_f32(float* gi, float* gf, float* gg, float* go, const float* c_prev,
                             float* c_new, float* c_act, float* h_new, int relu, long H)
    void fs_lstm_fwd_row_f64(double* gi, double* gf, double* gg, double* go,
                             const double* c_prev, double* c_new, double* c_act,
                             double* h_new, int relu, long H)
    void fs_lstm_bwd_row_f32(const float* gi, const float* gf, const float* gg,
                             const float* go, const float* c_act, const float* c_prev,
                             const float* dH, float* dh, float* dc, float* d_i, float* d_f,
                             float* d_g, float* d_o, int relu, long H)
    void fs_lstm_bwd_row_f64(const double* gi, const double* gf, const double* gg,
                             const double* go, const double* c_act, const double* c_prev,
                             const double* dH, double* dh, double* dc, double* d_i,
                             double* d_f, double* d_g, double* d_o, int relu, long H)
    void fs_gru_fwd_row_f32(float* gr, float* gz, float* gn, const float* x_n, float* hw_n,
                            const float* h_prev, float* h_new, int relu, long H)
    void fs_gru_fwd_row_f64(double* gr, double* gz, double* gn, const double* x_n,
                            double* hw_n, const double* h_prev, double* h_new, int relu,
                            long H)
    void fs_gru_bwd_row_f32(const float* r, const float* z, const float* n,
                            const float* hw_n, const float* h_prev, const float* dH,
                            float* dh, float* d_r, float* d_z, float* d_n, float* e_r,
                            float* e_z, float* e_n, int relu, long H)
    void fs_gru_bwd_row_f64(const double* r, const double* z, const double* n,
                            const double* hw_n, const double* h_prev, const double* dH,
                            double* dh, double* d_r, double* d_z, double* d_n, double* e_r,
                            double* e_z, double* e_n, int relu, long H)


# The wrappers take one row and a block of its hidden units [u0, u0 + w) (the whole row:
# u0 = 0, w = H; a block: the column-split steps, one task per block).

# a: one row's gates [i | f | g | o] (preactivations in, activations out), 4H values;
# c_prev, c_new, c_act, h_new: the row's [H] vectors
cdef inline void lstm_fwd_row(floating* a, const floating* c_prev, floating* c_new,
                              floating* c_act, floating* h_new, bint relu, Py_ssize_t H,
                              Py_ssize_t u0=0, Py_ssize_t w=-1) noexcept nogil:
    if w < 0:
        w = H
    a += u0
    if floating is float:
        fs_lstm_fwd_row_f32(a, a + H, a + 2 * H, a + 3 * H, c_prev + u0, c_new + u0,
                            c_act + u0, h_new + u0, relu, w)
    else:
        fs_lstm_fwd_row_f64(a, a + H, a + 2 * H, a + 3 * H, c_prev + u0, c_new + u0,
                            c_act + u0, h_new + u0, relu, w)


# g: one row's gates after activation; d: its dgates row [d_i | d_f | d_g | d_o];
# dH: NULL or the output gradient of the row; c_act, c_prev, dh, dc: the row's [H] vectors
cdef inline void lstm_bwd_row(const floating* g, const floating* c_act,
                              const floating* c_prev, const floating* dH, floating* dh,
                              floating* dc, floating* d, bint relu, Py_ssize_t H,
                              Py_ssize_t u0=0, Py_ssize_t w=-1) noexcept nogil:
    if w < 0:
        w = H
    g += u0
    d += u0
    if dH != NULL:
        dH += u0
    if floating is float:
        fs_lstm_bwd_row_f32(g, g + H, g + 2 * H, g + 3 * H, c_act + u0, c_prev + u0, dH,
                            dh + u0, dc + u0, d, d + H, d + 2 * H, d + 3 * H, relu, w)
    else:
        fs_lstm_bwd_row_f64(g, g + H, g + 2 * H, g + 3 * H, c_act + u0, c_prev + u0, dH,
                            dh + u0, dc + u0, d, d + H, d + 2 * H, d + 3 * H, relu, w)


# a: one row's gates [r | z | n] (in: r, z preactivations and hw_n; out: r, z, n);
# x_n: the row's xw_n; hw_n, h_prev, h_new: its [H] vectors
cdef inline void gru_fwd_row(floating* a, const floating* x_n, floating* hw_n,
                             const floating* h_prev, floating* h_new, bint relu,
                             Py_ssize_t H, Py_ssize_t u0=0, Py_ssize_t w=-1) noexcept nogil:
    if w < 0:
        w = H
    a += u0
    if floating is float:
        fs_gru_fwd_row_f32(a, a + H, a + 2 * H, x_n + u0, hw_n + u0, h_prev + u0,
                           h_new + u0, relu, w)
    else:
        fs_gru_fwd_row_f64(a, a + H, a + 2 * H, x_n + u0, hw_n + u0, h_prev + u0,
                           h_new + u0, relu, w)


# g: gates row [r | z | n]; d: dxw row; e: dhw row (both [r | z | n] blocks); hw_n,
# h_prev, dH (or NULL), dh: the row's [H] vectors
cdef inline void gru_bwd_row(const floating* g, const floating* hw_n, const floating* h_prev,
                             const floating* dH, floating* dh, floating* d, floating* e,
                             bint relu, Py_ssize_t H, Py_ssize_t u0=0,
                             Py_ssize_t w=-1) noexcept nogil:
    if w < 0:
        w = H
    g += u0
    d += u0
    e += u0
    if dH != NULL:
        dH += u0
    if floating is float:
        fs_gru_bwd_row_f32(g, g + H, g + 2 * H, hw_n + u0, h_prev + u0, dH, dh + u0, d,
                           d + H, d + 2 * H, e, e + H, e + 2 * H, relu, w)
    else:
        fs_gru_bwd_row_f64(g, g + H, g + 2 * H, hw_n + u0, h_prev + u0, dH, dh + u0, d,
                           d + H, d + 2 * H, e, e + H, e + 2 * H, relu, w)


# hm[b, j] = h[b, j] * mask[b, j] for the rows b < n ([n, H] each, rows contiguous) and the
# units j in [u0, u0 + w) (all of them by default)
cdef inline void mask_rows(const floating* h, const floating* mask, floating* hm,
                           Py_ssize_t n, Py_ssize_t H, Py_ssize_t u0=0,
                           Py_ssize_t w=-1) noexcept nogil:
    cdef Py_ssize_t b, j
    if w < 0:
        w = H
    for b in range(n):
        for j in range(u0, u0 + w):
            hm[b * H + j] = h[b * H + j] * mask[b * H + j]
