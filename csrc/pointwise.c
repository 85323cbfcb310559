/*
 * pointwise.c — the LSTM and GRU forward pointwise of a tile of rows, fused: pre-activation sums,
 * gate non-linearities, state update and stores in one pass with the gates in registers
 * (pointwise_impl.h per instruction set), dispatched on the SIMD path in use. The portable
 * versions go through the array activations of activations.c.
 */
#include <string.h>

#include "recurrence.h"
#include "simd_math.h"

#define OPT(p, k) ((p) ? (p) + (k) : NULL)
#define DEFINE_GENERIC_POINT(T, S)                                                                \
    static void lstm_row_generic_##S(int64_t n, int64_t ts, const T *xp, const T *hh, T *c,       \
                                     T *act, int64_t as, T *tc, T *h, T *cp, T *y) {              \
        T a[4 * FR_MAX_NR];                                                                       \
        if (cp) memcpy(cp, c, (size_t)n * sizeof(T));                                             \
        for (int64_t j0 = 0; j0 < n; j0 += FR_MAX_NR) {                                           \
            const int64_t m = n - j0 < FR_MAX_NR ? n - j0 : FR_MAX_NR;                            \
            for (int64_t g = 0; g < 4; g++)                                                       \
                for (int64_t j = 0; j < m; j++) a[g * m + j] = xp[g * ts + j0 + j] + hh[g * ts + j0 + j]; \
            fr_sigmoid_##S(a, a, 2 * m);                                                          \
            fr_tanh_##S(a + 2 * m, a + 2 * m, m);                                                 \
            fr_sigmoid_##S(a + 3 * m, a + 3 * m, m);                                              \
            for (int64_t j = 0; j < m; j++) c[j0 + j] = a[m + j] * c[j0 + j] + a[j] * a[2 * m + j]; \
            fr_tanh_##S(tc + j0, c + j0, m);                                                      \
            for (int64_t j = 0; j < m; j++) h[j0 + j] = a[3 * m + j] * tc[j0 + j];                \
            for (int64_t g = 0; g < 4; g++)                                                       \
                memcpy(act + g * as + j0, a + g * m, (size_t)m * sizeof(T));                      \
        }                                                                                         \
        if (y) memcpy(y, h, (size_t)n * sizeof(T));                                               \
    }                                                                                             \
    static void lstm_tile_generic_##S(const fr_tile_##S *t, int nonlin) {                         \
        (void)nonlin;                                                                             \
        T act[4 * FR_MAX_NR], tc[FR_MAX_NR]; /* for the stores inference does not keep */        \
        const int64_t n = t->n, H = t->H;                                                         \
        FR_TILE_ROWS(t, i, r) {                                                                   \
            lstm_row_generic_##S(n, t->ts, t->xp + i * t->ldxp, t->hh + i * t->ldhh,              \
                                 t->c + i * t->ldc, t->gates ? t->gates + r * 4 * H : act,        \
                                 t->gates ? H : n, t->aux1 ? t->aux1 + r * H : tc,                \
                                 t->h + i * t->ldh, OPT(t->aux0, r * H), OPT(t->y, r * H));       \
        }                                                                                         \
    }                                                                                             \
    static void gru_row_generic_##S(int64_t n, int64_t ts, const T *xp, const T *hh,             \
                                    const T *bhn, const T *hprev, T *act, int64_t as, T *hn,      \
                                    T *h, T *y) {                                                 \
        T a[3 * FR_MAX_NR];                                                                       \
        for (int64_t j0 = 0; j0 < n; j0 += FR_MAX_NR) {                                           \
            const int64_t m = n - j0 < FR_MAX_NR ? n - j0 : FR_MAX_NR;                            \
            for (int64_t g = 0; g < 2; g++)                                                       \
                for (int64_t j = 0; j < m; j++) a[g * m + j] = xp[g * ts + j0 + j] + hh[g * ts + j0 + j]; \
            fr_sigmoid_##S(a, a, 2 * m);                                                          \
            for (int64_t j = 0; j < m; j++) {                                                     \
                hn[j0 + j] = hh[2 * ts + j0 + j] + bhn[j0 + j];                                   \
                a[2 * m + j] = xp[2 * ts + j0 + j] + a[j] * hn[j0 + j];                           \
            }                                                                                     \
            fr_tanh_##S(a + 2 * m, a + 2 * m, m);                                                 \
            for (int64_t j = 0; j < m; j++) {                                                     \
                const T z = a[m + j];                                                             \
                h[j0 + j] = ((T)1 - z) * a[2 * m + j] + z * hprev[j0 + j];                        \
            }                                                                                     \
            for (int64_t g = 0; g < 3; g++)                                                       \
                memcpy(act + g * as + j0, a + g * m, (size_t)m * sizeof(T));                      \
        }                                                                                         \
        if (y) memcpy(y, h, (size_t)n * sizeof(T));                                               \
    }                                                                                             \
    static void gru_tile_generic_##S(const fr_tile_##S *t, int nonlin) {                          \
        (void)nonlin;                                                                             \
        T act[3 * FR_MAX_NR], hn[FR_MAX_NR]; /* for the stores inference does not keep */         \
        const int64_t n = t->n, H = t->H;                                                         \
        FR_TILE_ROWS(t, i, r) {                                                                   \
            gru_row_generic_##S(n, t->ts, t->xp + i * t->ldxp, t->hh + i * t->ldhh, t->bhn,       \
                                t->hprev + i * t->ldh, t->gates ? t->gates + r * 3 * H : act,     \
                                t->gates ? H : n, t->aux0 ? t->aux0 + r * H : hn,                 \
                                t->h + i * t->ldh, OPT(t->y, r * H));                             \
        }                                                                                         \
    }

DEFINE_GENERIC_POINT(float, s)
DEFINE_GENERIC_POINT(double, d)

#if FR_X86_SIMD
#define PW_T float
#define PW_V __m256
#define PW_TILE fr_tile_s
#define PW_W 8
#define PW_TARGET FR_TARGET_AVX2
#define PW_FN(name) name##_avx2_s
#define PW_I(op) _mm256_##op##_ps
#define PW_SIG fr_sigmoid_avx2_ps
#define PW_TANH fr_tanh_avx2_ps
#include "pointwise_impl.h"

#define PW_T double
#define PW_V __m256d
#define PW_TILE fr_tile_d
#define PW_W 4
#define PW_TARGET FR_TARGET_AVX2
#define PW_FN(name) name##_avx2_d
#define PW_I(op) _mm256_##op##_pd
#define PW_SIG fr_sigmoid_avx2_pd
#define PW_TANH fr_tanh_avx2_pd
#include "pointwise_impl.h"

#define PW_T float
#define PW_V __m512
#define PW_TILE fr_tile_s
#define PW_W 16
#define PW_TARGET FR_TARGET_AVX512
#define PW_FN(name) name##_avx512_s
#define PW_I(op) _mm512_##op##_ps
#define PW_SIG fr_sigmoid_avx512_ps
#define PW_TANH fr_tanh_avx512_ps
#include "pointwise_impl.h"

#define PW_T double
#define PW_V __m512d
#define PW_TILE fr_tile_d
#define PW_W 8
#define PW_TARGET FR_TARGET_AVX512
#define PW_FN(name) name##_avx512_d
#define PW_I(op) _mm512_##op##_pd
#define PW_SIG fr_sigmoid_avx512_pd
#define PW_TANH fr_tanh_avx512_pd
#include "pointwise_impl.h"

#define PW_PICK(NAME, S, arch)                                                                    \
    switch (arch) {                                                                               \
    case FR_ARCH_AVX512: return NAME##_avx512_##S;                                                \
    case FR_ARCH_AVX2: return NAME##_avx2_##S;                                                    \
    default: return NAME##_generic_##S;                                                           \
    }
#else
#define PW_PICK(NAME, S, arch) return (void)(arch), NAME##_generic_##S
#endif

#define DEFINE_POINT_API(T, S)                                                                    \
    fr_point_fn_##S fr_lstm_point_for_##S(int arch) { PW_PICK(lstm_tile, S, arch); }              \
    fr_point_fn_##S fr_gru_point_for_##S(int arch) { PW_PICK(gru_tile, S, arch); }

DEFINE_POINT_API(float, s)
DEFINE_POINT_API(double, d)
