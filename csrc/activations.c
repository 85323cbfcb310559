/*
 * activations.c — elementwise sigmoid and tanh over arrays, dispatched on the SIMD path in use.
 * The portable versions use libm and are the accuracy reference for the SIMD ones.
 */
#include <math.h>

#include "fastrnn.h"

#define DEFINE_GENERIC_ACT(T, S, EXP, TANH)                                                       \
    static void sigmoid_generic_##S(T *y, const T *x, int64_t n) {                                \
        for (int64_t i = 0; i < n; i++) {                                                         \
            const T v = x[i];                                                                     \
            if (v >= (T)0) {                                                                      \
                y[i] = (T)1 / ((T)1 + EXP(-v));                                                   \
            } else {                                                                              \
                const T e = EXP(v);                                                               \
                y[i] = e / ((T)1 + e);                                                            \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    static void tanh_generic_##S(T *y, const T *x, int64_t n) {                                   \
        for (int64_t i = 0; i < n; i++) y[i] = TANH(x[i]);                                        \
    }                                                                                             \
    void fr_sigmoid_##S(T *y, const T *x, int64_t n) { sigmoid_generic_##S(y, x, n); }            \
    void fr_tanh_##S(T *y, const T *x, int64_t n) { tanh_generic_##S(y, x, n); }

DEFINE_GENERIC_ACT(float, s, expf, tanhf)
DEFINE_GENERIC_ACT(double, d, exp, tanh)
