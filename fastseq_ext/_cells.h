/* Fused pointwise work of one row (one sequence, one step) of the LSTM and GRU kernels.
 *
 * One loop over the H units does every gate of the row: at small H the separate loops
 * (one per gate and per operation) cost as much in loop overhead and memory passes as
 * the arithmetic. Each gate block comes in as its own ``restrict`` pointer (the blocks of
 * one row are disjoint), which lets the compiler vectorize the loop with its several
 * stores; Cython cannot say ``restrict``. Same formulas and operation order as the
 * reference (fastseq.backends.reference); ``relu`` selects the cell activation.
 */
#ifndef FASTSEQ_CELLS_H
#define FASTSEQ_CELLS_H

#include "_act.h"

#if defined(__GNUC__) || defined(__clang__)
#define FS_RESTRICT __restrict__
#else
#define FS_RESTRICT
#endif

/* BODY(has_dH, relu, H, ...) run as one of four loops specialised on whether there is an
   output gradient dH and on the activation: a load under a condition, or a select between
   the two activations' derivatives, keeps the compiler from vectorizing the loop */
#define FS_SPECIALISE(BODY, dH, relu, H, ...)                                               \
    if ((dH) && (relu)) BODY(1, 1, H, __VA_ARGS__);                                         \
    else if (dH) BODY(1, 0, H, __VA_ARGS__);                                                \
    else if (relu) BODY(0, 1, H, __VA_ARGS__);                                              \
    else BODY(0, 0, H, __VA_ARGS__);

#define FS_DEFINE_CELLS(T, SUF)                                                             \
/* LSTM forward, tanh cell. In: the preactivations of i f g o (xw + b + h @ R) in         \
   gi gf gg go; out: the gates after activation in place, c_new = f c_prev + i g,          \
   c_act = tanh(c_new), h_new = o c_act. c_prev may be c_new (updated in place). */         \
static inline void fs_lstm_fwd_row_##SUF(T* FS_RESTRICT gi, T* FS_RESTRICT gf,             \
        T* FS_RESTRICT gg, T* FS_RESTRICT go, const T* c_prev, T* c_new,                    \
        T* FS_RESTRICT c_act, T* FS_RESTRICT h_new, int relu, long H) {                     \
    for (long j = 0; j < H; j++) {                                                          \
        T i = fs_sigmoid_##SUF(gi[j]);                                                      \
        T f = fs_sigmoid_##SUF(gf[j]);                                                      \
        T g = fs_act_##SUF(gg[j], relu);                                                    \
        T o = fs_sigmoid_##SUF(go[j]);                                                      \
        T c = f * c_prev[j] + i * g;                                                        \
        T ca = fs_act_##SUF(c, relu);                                                       \
        gi[j] = i; gf[j] = f; gg[j] = g; go[j] = o;                                         \
        c_new[j] = c;                                                                       \
        c_act[j] = ca;                                                                      \
        h_new[j] = o * ca;                                                                  \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* LSTM backward. dh: gradient on h_t (dH added when given); dc: in on c_t, out on        \
   c_{t-1}; d_*: OUT gradients of the preactivations. */                                    \
static inline __attribute__((always_inline)) void fs_lstm_bwd_body_##SUF(const int has_dH, \
        const int relu, long H, const T* FS_RESTRICT gi, const T* FS_RESTRICT gf,          \
        const T* FS_RESTRICT gg, const T* FS_RESTRICT go, const T* FS_RESTRICT c_act,      \
        const T* FS_RESTRICT c_prev, const T* FS_RESTRICT dH, T* FS_RESTRICT dh,           \
        T* FS_RESTRICT dc, T* FS_RESTRICT d_i, T* FS_RESTRICT d_f, T* FS_RESTRICT d_g,     \
        T* FS_RESTRICT d_o) {                                                               \
    for (long j = 0; j < H; j++) {                                                          \
        T dhj = has_dH ? dh[j] + dH[j] : dh[j];                                             \
        T o = go[j], i = gi[j], f = gf[j], g = gg[j], ca = c_act[j];                        \
        T dcj = dc[j] + dhj * o * fs_act_grad_##SUF(ca, relu);                              \
        d_o[j] = dhj * ca * o * ((T)1 - o);                                                 \
        d_g[j] = dcj * i * fs_act_grad_##SUF(g, relu);                                      \
        d_i[j] = dcj * g * i * ((T)1 - i);                                                  \
        d_f[j] = dcj * c_prev[j] * f * ((T)1 - f);                                          \
        dc[j] = dcj * f;                                                                    \
    }                                                                                       \
}                                                                                           \
static inline void fs_lstm_bwd_row_##SUF(const T* gi, const T* gf, const T* gg,            \
        const T* go, const T* c_act, const T* c_prev, const T* dH, T* dh, T* dc, T* d_i,   \
        T* d_f, T* d_g, T* d_o, int relu, long H) {                                         \
    FS_SPECIALISE(fs_lstm_bwd_body_##SUF, dH, relu, H, gi, gf, gg, go, c_act, c_prev, dH,  \
                  dh, dc, d_i, d_f, d_g, d_o)                                               \
}                                                                                           \
                                                                                            \
/* GRU (reset after) forward. In: preactivations of r, z in gr, gz; gn holds              \
   hw_n = h @ R_n + b_hn; x_n = xw_n (+ b_in). Out: r, z in place, gn = n, hw_n saved,     \
   h_new = (1 - z) n + z h_prev. */                                                         \
static inline void fs_gru_fwd_row_##SUF(T* FS_RESTRICT gr, T* FS_RESTRICT gz,              \
        T* FS_RESTRICT gn, const T* FS_RESTRICT x_n, T* FS_RESTRICT hw_n,                   \
        const T* FS_RESTRICT h_prev, T* FS_RESTRICT h_new, int relu, long H) {              \
    for (long j = 0; j < H; j++) {                                                          \
        T r = fs_sigmoid_##SUF(gr[j]);                                                      \
        T z = fs_sigmoid_##SUF(gz[j]);                                                      \
        T hw = gn[j];                                                                       \
        T n = fs_act_##SUF(x_n[j] + r * hw, relu);                                          \
        gr[j] = r; gz[j] = z; gn[j] = n;                                                    \
        hw_n[j] = hw;                                                                       \
        h_new[j] = ((T)1 - z) * n + z * h_prev[j];                                          \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* GRU (reset after) backward. dh: in gradient on h_t (dH added when given), out the      \
   part of dh_{t-1} that bypasses R (dh z); d_*: OUT preactivation gradients (= dxw);      \
   e_*: OUT gradient of hw = [d_r, d_z, d_n r] (what multiplies R^T). */                    \
static inline __attribute__((always_inline)) void fs_gru_bwd_body_##SUF(const int has_dH,  \
        const int relu, long H, const T* FS_RESTRICT r_, const T* FS_RESTRICT z_,          \
        const T* FS_RESTRICT n_, const T* FS_RESTRICT hw_n, const T* FS_RESTRICT h_prev,   \
        const T* FS_RESTRICT dH, T* FS_RESTRICT dh, T* FS_RESTRICT d_r, T* FS_RESTRICT d_z,\
        T* FS_RESTRICT d_n, T* FS_RESTRICT e_r, T* FS_RESTRICT e_z, T* FS_RESTRICT e_n) {   \
    for (long j = 0; j < H; j++) {                                                          \
        T dhj = has_dH ? dh[j] + dH[j] : dh[j];                                             \
        T r = r_[j], z = z_[j], n = n_[j];                                                  \
        T dn = dhj * ((T)1 - z) * fs_act_grad_##SUF(n, relu);                               \
        T dz = dhj * (h_prev[j] - n) * z * ((T)1 - z);                                      \
        T dr = dn * hw_n[j] * r * ((T)1 - r);                                               \
        d_n[j] = dn; d_z[j] = dz; d_r[j] = dr;                                              \
        e_r[j] = dr; e_z[j] = dz; e_n[j] = dn * r;                                          \
        dh[j] = dhj * z;                                                                    \
    }                                                                                       \
}                                                                                           \
static inline void fs_gru_bwd_row_##SUF(const T* r_, const T* z_, const T* n_,             \
        const T* hw_n, const T* h_prev, const T* dH, T* dh, T* d_r, T* d_z, T* d_n,        \
        T* e_r, T* e_z, T* e_n, int relu, long H) {                                         \
    FS_SPECIALISE(fs_gru_bwd_body_##SUF, dH, relu, H, r_, z_, n_, hw_n, h_prev, dH, dh,    \
                  d_r, d_z, d_n, e_r, e_z, e_n)                                             \
}

FS_DEFINE_CELLS(float, f32)
FS_DEFINE_CELLS(double, f64)

#endif  /* FASTSEQ_CELLS_H */
