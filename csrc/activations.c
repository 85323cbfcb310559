/*
 * activations.c — elementwise sigmoid and tanh over arrays, dispatched on the SIMD path in use
 * (fr_get_arch()). The AVX2 and AVX-512 loops apply the in-register functions of simd_math.h; the
 * portable versions use libm and are the accuracy reference for the SIMD ones.
 */
#include <math.h>
#include <string.h>

#include "fastrnn.h"
#include "simd_math.h"

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
    }

DEFINE_GENERIC_ACT(float, s, expf, tanhf)
DEFINE_GENERIC_ACT(double, d, exp, tanh)

#if FR_X86_SIMD
/* y[i] = FN(x[i]) a vector of W at a time; the last partial vector goes through a zero-padded
   copy on the stack, so nothing is read or written past n. */
#define DEFINE_SIMD_LOOP(NAME, FN, T, V, W, TARGET, LOAD, STORE)                                 \
    static TARGET void NAME(T *y, const T *x, int64_t n) {                                        \
        int64_t i = 0;                                                                            \
        for (; i + W <= n; i += W) STORE(y + i, FN(LOAD(x + i)));                                 \
        if (i < n) {                                                                              \
            T buf[W];                                                                             \
            memset(buf, 0, sizeof(buf));                                                          \
            memcpy(buf, x + i, (size_t)(n - i) * sizeof(T));                                      \
            STORE(buf, FN(LOAD(buf)));                                                            \
            memcpy(y + i, buf, (size_t)(n - i) * sizeof(T));                                      \
        }                                                                                         \
    }

DEFINE_SIMD_LOOP(sigmoid_avx2_s, fr_sigmoid_avx2_ps, float, __m256, 8, FR_TARGET_AVX2,
                 _mm256_loadu_ps, _mm256_storeu_ps)
DEFINE_SIMD_LOOP(tanh_avx2_s, fr_tanh_avx2_ps, float, __m256, 8, FR_TARGET_AVX2, _mm256_loadu_ps,
                 _mm256_storeu_ps)
DEFINE_SIMD_LOOP(sigmoid_avx2_d, fr_sigmoid_avx2_pd, double, __m256d, 4, FR_TARGET_AVX2,
                 _mm256_loadu_pd, _mm256_storeu_pd)
DEFINE_SIMD_LOOP(tanh_avx2_d, fr_tanh_avx2_pd, double, __m256d, 4, FR_TARGET_AVX2,
                 _mm256_loadu_pd, _mm256_storeu_pd)
DEFINE_SIMD_LOOP(sigmoid_avx512_s, fr_sigmoid_avx512_ps, float, __m512, 16, FR_TARGET_AVX512,
                 _mm512_loadu_ps, _mm512_storeu_ps)
DEFINE_SIMD_LOOP(tanh_avx512_s, fr_tanh_avx512_ps, float, __m512, 16, FR_TARGET_AVX512,
                 _mm512_loadu_ps, _mm512_storeu_ps)
DEFINE_SIMD_LOOP(sigmoid_avx512_d, fr_sigmoid_avx512_pd, double, __m512d, 8, FR_TARGET_AVX512,
                 _mm512_loadu_pd, _mm512_storeu_pd)
DEFINE_SIMD_LOOP(tanh_avx512_d, fr_tanh_avx512_pd, double, __m512d, 8, FR_TARGET_AVX512,
                 _mm512_loadu_pd, _mm512_storeu_pd)

#define DISPATCH(NAME, S, y, x, n)                                                                \
    switch (fr_get_arch()) {                                                                      \
    case FR_ARCH_AVX512: NAME##_avx512_##S(y, x, n); return;                                      \
    case FR_ARCH_AVX2: NAME##_avx2_##S(y, x, n); return;                                          \
    default: NAME##_generic_##S(y, x, n); return;                                                 \
    }
#else
#define DISPATCH(NAME, S, y, x, n) NAME##_generic_##S(y, x, n)
#endif

void fr_sigmoid_s(float *y, const float *x, int64_t n) { DISPATCH(sigmoid, s, y, x, n); }
void fr_sigmoid_d(double *y, const double *x, int64_t n) { DISPATCH(sigmoid, d, y, x, n); }
void fr_tanh_s(float *y, const float *x, int64_t n) { DISPATCH(tanh, s, y, x, n); }
void fr_tanh_d(double *y, const double *x, int64_t n) { DISPATCH(tanh, d, y, x, n); }
