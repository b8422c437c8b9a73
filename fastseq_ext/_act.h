/* Scalar activations shared by the Cython kernels (through activations.pxd) and the fused
 * cell loops (_cells.h). Branch-free, so the loops that call them vectorize.
 *
 * float32 tanh: Eigen's generic_fast_tanh_float, a rational minimax form (odd degree-13
 * numerator, even degree-6 denominator) on [-7.9053, 7.9053], where the float32 result is
 * already +-1; max error ~2.4e-7 against float64. sigmoid(x) = tanh(x / 2) / 2 + 1 / 2.
 * float64: libm tanh. A comparison with NaN is false, so NaN passes through the clamps.
 */
#ifndef FASTSEQ_ACT_H
#define FASTSEQ_ACT_H

#include <math.h>

static inline float fs_tanh_f32(float x) {
    const float lim = 7.90531110763549805f;
    float a = x > lim ? lim : x;
    a = a < -lim ? -lim : a;
    float x2 = a * a;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = x2 * p + -8.60467152213735e-11f;
    p = x2 * p + 5.12229709037114e-08f;
    p = x2 * p + 1.48572235717979e-05f;
    p = x2 * p + 6.37261928875436e-04f;
    p = x2 * p + 4.89352455891786e-03f;
    p = a * p;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = x2 * q + 2.26843463243900e-03f;
    q = x2 * q + 4.89352518554385e-03f;
    /* computed unconditionally: a division inside a branch blocks if-conversion */
    float r = p / q;
    /* tiny |x|: tanh(x) = x to float32 precision (keeps the relative error small near 0) */
    return x2 < 1.6e-7f ? a : r;
}

static inline double fs_tanh_f64(double x) { return tanh(x); }

static inline float fs_sigmoid_f32(float x) { return 0.5f * fs_tanh_f32(0.5f * x) + 0.5f; }
static inline double fs_sigmoid_f64(double x) { return 0.5 * tanh(0.5 * x) + 0.5; }

/* the cell activation (relu: ReLU, else tanh) and its derivative from the output y */
static inline float fs_act_f32(float x, int relu) {
    return relu ? (x <= 0.0f ? 0.0f : x) : fs_tanh_f32(x);
}
static inline double fs_act_f64(double x, int relu) {
    return relu ? (x <= 0.0 ? 0.0 : x) : tanh(x);
}
static inline float fs_act_grad_f32(float y, int relu) {
    return relu ? (y > 0.0f ? 1.0f : 0.0f) : 1.0f - y * y;
}
static inline double fs_act_grad_f64(double y, int relu) {
    return relu ? (y > 0.0 ? 1.0 : 0.0) : 1.0 - y * y;
}

#endif  /* FASTSEQ_ACT_H */
