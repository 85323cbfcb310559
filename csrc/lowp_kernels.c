/*
 * lowp_kernels.c — the reduced-precision microkernels and row converters (formats: lowp.h), per
 * path: portable C, AVX-512 (AVX512_BF16 vdpbf16ps, AVX512_VNNI vpdpbusd) and AVX-VNNI for the
 * AVX2 path's int8.
 *
 * Every path computes the same numbers: the bf16 products are exact in float32 and are added
 * in one order (the pair's odd element first, as vdpbf16ps does), and the int8 sums are exact
 * int32. (vdpbf16ps treats bf16 denormals as zero; the portable kernel does not: inputs of
 * magnitude below 1.2e-38 may differ.)
 */
#define _GNU_SOURCE /* syscall(): AMX's permission request */
#include <math.h>
#include <string.h>
#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "lowp.h"
#include "simd_target.h"
#include "transpose16.h"

/* ---- portable ------------------------------------------------------------------------------ */

static inline float bf_lo(uint32_t w) {
    union {
        uint32_t u;
        float f;
    } v = {.u = w << 16};
    return v.f;
}
static inline float bf_hi(uint32_t w) {
    union {
        uint32_t u;
        float f;
    } v = {.u = w & 0xFFFF0000u};
    return v.f;
}

static void ukr_bf16_portable(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                              const uint32_t *P, const float *ascale, const float *bias, float *C,
                              int64_t ldc) {
    (void)ascale;
    for (int64_t i = 0; i < m; i++) {
        float acc[LP_NR] = {0};
        const uint32_t *a = A + i * lda;
        for (int64_t p = 0; p < kw; p++) {
            const float ah = bf_hi(a[p]), al = bf_lo(a[p]);
            const uint32_t *w = P + p * LP_NR;
            for (int c = 0; c < LP_NR; c++) {
                acc[c] += ah * bf_hi(w[c]);
                acc[c] += al * bf_lo(w[c]);
            }
        }
        for (int c = 0; c < LP_NR; c++) C[i * ldc + c] = bias ? acc[c] + bias[c] : acc[c];
    }
}

static void ukr_int8_portable(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                              const uint32_t *P, const float *ascale, const float *bias, float *C,
                              int64_t ldc) {
    const int32_t *comp = (const int32_t *)(P + kw * LP_NR);
    const float *wscale = (const float *)(comp + LP_NR);
    for (int64_t i = 0; i < m; i++) {
        int32_t acc[LP_NR] = {0};
        const uint8_t *a = (const uint8_t *)(A + i * lda);
        for (int64_t p = 0; p < kw; p++) {
            const int8_t *w = (const int8_t *)(P + p * LP_NR);
            for (int c = 0; c < LP_NR; c++)
                for (int e = 0; e < 4; e++) acc[c] += (int32_t)a[4 * p + e] * (int32_t)w[4 * c + e];
        }
        for (int c = 0; c < LP_NR; c++) {
            const float v = (float)(acc[c] - comp[c]) * (ascale[i] * wscale[c]);
            C[i * ldc + c] = bias ? v + bias[c] : v;
        }
    }
}

static void rows_bf16_portable(uint32_t *A, int64_t lda, float *scale, const float *src,
                               int64_t lds, int64_t n, int64_t K) {
    (void)scale;
    for (int64_t r = 0; r < n; r++) {
        const float *s = src + r * lds;
        uint32_t *a = A + r * lda;
        for (int64_t p = 0; p < K / 2; p++)
            a[p] = (uint32_t)lp_bf16(s[2 * p]) | ((uint32_t)lp_bf16(s[2 * p + 1]) << 16);
        if (K & 1) a[K / 2] = lp_bf16(s[K - 1]);
        for (int64_t p = (K + 1) / 2; p < lp_kwords(FR_PREC_BF16, K); p++) a[p] = 0;
    }
}

/* The symmetric int8 scale of a row (lowp.h; fastrnn.reference.quantize_rows_int8): *inv the
   multiplier to q, the return value the dequantization scale. */
static inline float row_scale(float amax, int finite, float *inv) {
    if (!finite) {
        *inv = 0.0f;
        return NAN;
    }
    *inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    return amax / 127.0f;
}

static inline uint8_t quant_u8(float v, float inv) {
    float q = nearbyintf(v * inv);
    if (q > 127.0f) q = 127.0f;
    if (q < -127.0f) q = -127.0f;
    return (uint8_t)((int)q + 128);
}

static void rows_int8_portable(uint32_t *A, int64_t lda, float *scale, const float *src,
                               int64_t lds, int64_t n, int64_t K) {
    const int64_t kw = lp_kwords(FR_PREC_INT8, K);
    for (int64_t r = 0; r < n; r++) {
        const float *s = src + r * lds;
        float amax = 0.0f;
        int finite = 1;
        for (int64_t k = 0; k < K; k++) {
            const float a = fabsf(s[k]);
            if (!(a <= 3.4028235e38f)) finite = 0;
            else if (a > amax) amax = a;
        }
        float inv;
        scale[r] = row_scale(amax, finite, &inv);
        uint8_t *a = (uint8_t *)(A + r * lda);
        for (int64_t k = 0; k < K; k++) a[k] = finite ? quant_u8(s[k], inv) : 128;
        for (int64_t k = K; k < 4 * kw; k++) a[k] = 128;
    }
}

/* bf16 panel words (p, c) = (bf16 B[2p][n0 + c], bf16 B[2p + 1][n0 + c]) of rows k < K of B
   (row stride ldb), columns c < nv; the rest of the panel (kw(K) groups of LP_NR words) zero. */
static void pack_kn_portable(uint32_t *P, const float *B, int64_t ldb, int64_t K, int64_t n0,
                             int64_t nv) {
    const int64_t kw = lp_kwords(FR_PREC_BF16, K);
    memset(P, 0, (size_t)(kw * LP_NR * 4));
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < nv; c++)
            ((uint16_t *)P)[((k / 2) * LP_NR + c) * 2 + (k & 1)] = lp_bf16(B[k * ldb + n0 + c]);
}

/* bf16 A rows i0 <= i < i1 of op(A) = A^T (row i: column i of A, rows k < K at stride lda) at
   stride kw words (the words past K zero). */
static void pack_t_rows_portable(uint32_t *Ab, int64_t kw, const float *A, int64_t lda,
                                 int64_t K, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) memset(Ab + i * kw, 0, (size_t)(kw * 4));
    for (int64_t k = 0; k < K; k++)
        for (int64_t i = i0; i < i1; i++) ((uint16_t *)(Ab + i * kw))[k] = lp_bf16(A[k * lda + i]);
}

static const lp_kernel k_bf16_portable = {ukr_bf16_portable, rows_bf16_portable, "portable", 8,
                                          NULL, NULL, NULL};
static const lp_kernel k_int8_portable = {ukr_int8_portable, rows_int8_portable, "portable", 8,
                                          NULL, NULL, NULL};

#if FR_X86_SIMD
/* ---- AVX-512 ------------------------------------------------------------------------------- */
#define T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define T512BF __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))
#define T512VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))
#define T256VNNI __attribute__((target("avx2,fma,avxvnni")))

/* m rows (a compile-time constant after inlining) x 32 columns, bf16. */
static FR_ALWAYS_INLINE T512BF void bf16_tile(const int m, int64_t kw, const uint32_t *A,
                                              int64_t lda, const uint32_t *P, const float *bias,
                                              float *C, int64_t ldc) {
    __m512 c0[8], c1[8];
    for (int i = 0; i < m; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kw; p++) {
        const __m512bh w0 = (__m512bh)_mm512_loadu_si512(P + p * LP_NR);
        const __m512bh w1 = (__m512bh)_mm512_loadu_si512(P + p * LP_NR + 16);
        for (int i = 0; i < m; i++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[i * lda + p]);
            c0[i] = _mm512_dpbf16_ps(c0[i], a, w0);
            c1[i] = _mm512_dpbf16_ps(c1[i], a, w1);
        }
    }
    const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < m; i++) {
        _mm512_storeu_ps(C + i * ldc, bias ? _mm512_add_ps(c0[i], b0) : c0[i]);
        _mm512_storeu_ps(C + i * ldc + 16, bias ? _mm512_add_ps(c1[i], b1) : c1[i]);
    }
}

/* One row: four interleaved chains per vector (a single chain waits on vdpbf16ps' latency). */
static FR_ALWAYS_INLINE T512BF void bf16_row(int64_t kw, const uint32_t *A, const uint32_t *P,
                                             const float *bias, float *C) {
    __m512 c[4][2];
    for (int j = 0; j < 4; j++) c[j][0] = c[j][1] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 4 <= kw; p += 4)
        for (int j = 0; j < 4; j++) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[p + j]);
            c[j][0] = _mm512_dpbf16_ps(c[j][0], a, (__m512bh)_mm512_loadu_si512(P + (p + j) * LP_NR));
            c[j][1] = _mm512_dpbf16_ps(c[j][1], a,
                                       (__m512bh)_mm512_loadu_si512(P + (p + j) * LP_NR + 16));
        }
    for (; p < kw; p++) {
        const __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[p]);
        c[0][0] = _mm512_dpbf16_ps(c[0][0], a, (__m512bh)_mm512_loadu_si512(P + p * LP_NR));
        c[0][1] = _mm512_dpbf16_ps(c[0][1], a, (__m512bh)_mm512_loadu_si512(P + p * LP_NR + 16));
    }
    for (int v = 0; v < 2; v++) {
        __m512 r = _mm512_add_ps(_mm512_add_ps(c[0][v], c[1][v]), _mm512_add_ps(c[2][v], c[3][v]));
        if (bias) r = _mm512_add_ps(r, _mm512_loadu_ps(bias + 16 * v));
        _mm512_storeu_ps(C + 16 * v, r);
    }
}

static T512BF void ukr_bf16_avx512(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                                   const uint32_t *P, const float *ascale, const float *bias,
                                   float *C, int64_t ldc) {
    (void)ascale;
    switch (m) {
    case 1: bf16_row(kw, A, P, bias, C); break;
    case 2: bf16_tile(2, kw, A, lda, P, bias, C, ldc); break;
    case 3: bf16_tile(3, kw, A, lda, P, bias, C, ldc); break;
    case 4: bf16_tile(4, kw, A, lda, P, bias, C, ldc); break;
    case 5: bf16_tile(5, kw, A, lda, P, bias, C, ldc); break;
    case 6: bf16_tile(6, kw, A, lda, P, bias, C, ldc); break;
    case 7: bf16_tile(7, kw, A, lda, P, bias, C, ldc); break;
    default: bf16_tile(8, kw, A, lda, P, bias, C, ldc); break;
    }
}

static FR_ALWAYS_INLINE T512VNNI void int8_tile(const int m, int64_t kw, const uint32_t *A,
                                                int64_t lda, const uint32_t *P,
                                                const float *ascale, const float *bias, float *C,
                                                int64_t ldc) {
    __m512i c0[8], c1[8];
    for (int i = 0; i < m; i++) c0[i] = c1[i] = _mm512_setzero_si512();
    for (int64_t p = 0; p < kw; p++) {
        const __m512i w0 = _mm512_loadu_si512(P + p * LP_NR);
        const __m512i w1 = _mm512_loadu_si512(P + p * LP_NR + 16);
        for (int i = 0; i < m; i++) {
            const __m512i a = _mm512_set1_epi32((int)A[i * lda + p]);
            c0[i] = _mm512_dpbusd_epi32(c0[i], a, w0);
            c1[i] = _mm512_dpbusd_epi32(c1[i], a, w1);
        }
    }
    const uint32_t *tail = P + kw * LP_NR;
    const __m512i k0 = _mm512_loadu_si512(tail), k1 = _mm512_loadu_si512(tail + 16);
    const __m512 s0 = _mm512_loadu_ps((const float *)(tail + LP_NR));
    const __m512 s1 = _mm512_loadu_ps((const float *)(tail + LP_NR + 16));
    const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < m; i++) {
        const __m512 as = _mm512_set1_ps(ascale[i]);
        __m512 v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c0[i], k0)),
                                  _mm512_mul_ps(as, s0));
        __m512 v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c1[i], k1)),
                                  _mm512_mul_ps(as, s1));
        if (bias) {
            v0 = _mm512_add_ps(v0, b0);
            v1 = _mm512_add_ps(v1, b1);
        }
        _mm512_storeu_ps(C + i * ldc, v0);
        _mm512_storeu_ps(C + i * ldc + 16, v1);
    }
}

/* One row: four interleaved chains per vector (exact int32 sums: the order does not matter). */
static FR_ALWAYS_INLINE T512VNNI void int8_row(int64_t kw, const uint32_t *A, const uint32_t *P,
                                               float ascale, const float *bias, float *C) {
    __m512i c[4][2];
    for (int j = 0; j < 4; j++) c[j][0] = c[j][1] = _mm512_setzero_si512();
    int64_t p = 0;
    for (; p + 4 <= kw; p += 4)
        for (int j = 0; j < 4; j++) {
            const __m512i a = _mm512_set1_epi32((int)A[p + j]);
            c[j][0] = _mm512_dpbusd_epi32(c[j][0], a, _mm512_loadu_si512(P + (p + j) * LP_NR));
            c[j][1] = _mm512_dpbusd_epi32(c[j][1], a, _mm512_loadu_si512(P + (p + j) * LP_NR + 16));
        }
    for (; p < kw; p++) {
        const __m512i a = _mm512_set1_epi32((int)A[p]);
        c[0][0] = _mm512_dpbusd_epi32(c[0][0], a, _mm512_loadu_si512(P + p * LP_NR));
        c[0][1] = _mm512_dpbusd_epi32(c[0][1], a, _mm512_loadu_si512(P + p * LP_NR + 16));
    }
    const uint32_t *tail = P + kw * LP_NR;
    const __m512 as = _mm512_set1_ps(ascale);
    for (int v = 0; v < 2; v++) {
        const __m512i acc = _mm512_add_epi32(_mm512_add_epi32(c[0][v], c[1][v]),
                                             _mm512_add_epi32(c[2][v], c[3][v]));
        const __m512i k = _mm512_loadu_si512(tail + 16 * v);
        const __m512 s = _mm512_loadu_ps((const float *)(tail + LP_NR + 16 * v));
        __m512 r = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, k)), _mm512_mul_ps(as, s));
        if (bias) r = _mm512_add_ps(r, _mm512_loadu_ps(bias + 16 * v));
        _mm512_storeu_ps(C + 16 * v, r);
    }
}

static T512VNNI void ukr_int8_avx512(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                                     const uint32_t *P, const float *ascale, const float *bias,
                                     float *C, int64_t ldc) {
    switch (m) {
    case 1: int8_row(kw, A, P, ascale[0], bias, C); break;
    case 2: int8_tile(2, kw, A, lda, P, ascale, bias, C, ldc); break;
    case 3: int8_tile(3, kw, A, lda, P, ascale, bias, C, ldc); break;
    case 4: int8_tile(4, kw, A, lda, P, ascale, bias, C, ldc); break;
    case 5: int8_tile(5, kw, A, lda, P, ascale, bias, C, ldc); break;
    case 6: int8_tile(6, kw, A, lda, P, ascale, bias, C, ldc); break;
    case 7: int8_tile(7, kw, A, lda, P, ascale, bias, C, ldc); break;
    default: int8_tile(8, kw, A, lda, P, ascale, bias, C, ldc); break;
    }
}

/* AVX-VNNI (256-bit vpdpbusd) for the AVX2 path's int8: 4 rows x 32 columns at most. */
static FR_ALWAYS_INLINE T256VNNI void int8_tile_avx2(const int m, int64_t kw, const uint32_t *A,
                                                     int64_t lda, const uint32_t *P,
                                                     const float *ascale, const float *bias,
                                                     float *C, int64_t ldc) {
    __m256i c[4][4];
    for (int i = 0; i < m; i++)
        for (int v = 0; v < 4; v++) c[i][v] = _mm256_setzero_si256();
    for (int64_t p = 0; p < kw; p++) {
        __m256i w[4];
        for (int v = 0; v < 4; v++) w[v] = _mm256_loadu_si256((const __m256i *)(P + p * LP_NR + 8 * v));
        for (int i = 0; i < m; i++) {
            const __m256i a = _mm256_set1_epi32((int)A[i * lda + p]);
            for (int v = 0; v < 4; v++) c[i][v] = _mm256_dpbusd_avx_epi32(c[i][v], a, w[v]);
        }
    }
    const uint32_t *tail = P + kw * LP_NR;
    for (int i = 0; i < m; i++) {
        const __m256 as = _mm256_set1_ps(ascale[i]);
        for (int v = 0; v < 4; v++) {
            const __m256i k = _mm256_loadu_si256((const __m256i *)(tail + 8 * v));
            const __m256 s = _mm256_loadu_ps((const float *)(tail + LP_NR + 8 * v));
            __m256 r = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(c[i][v], k)),
                                     _mm256_mul_ps(as, s));
            if (bias) r = _mm256_add_ps(r, _mm256_loadu_ps(bias + 8 * v));
            _mm256_storeu_ps(C + i * ldc + 8 * v, r);
        }
    }
}

static T256VNNI void ukr_int8_avxvnni(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                                      const uint32_t *P, const float *ascale, const float *bias,
                                      float *C, int64_t ldc) {
    for (int64_t i0 = 0; i0 < m; i0 += 4) {
        const int64_t mm = m - i0 < 4 ? m - i0 : 4;
        const uint32_t *a = A + i0 * lda;
        float *o = C + i0 * ldc;
        switch (mm) {
        case 1: int8_tile_avx2(1, kw, a, lda, P, ascale + i0, bias, o, ldc); break;
        case 2: int8_tile_avx2(2, kw, a, lda, P, ascale + i0, bias, o, ldc); break;
        case 3: int8_tile_avx2(3, kw, a, lda, P, ascale + i0, bias, o, ldc); break;
        default: int8_tile_avx2(4, kw, a, lda, P, ascale + i0, bias, o, ldc); break;
        }
    }
}

/* AVX2 without VNNI: bytes widened to int16 and multiplied with vpmaddwd (exact: a u8 times an s8
   pair-summed stays far inside int32; the saturating vpmaddubsw is not used). m <= 4 rows, 16
   columns (one half of the panel) per call. */
static FR_ALWAYS_INLINE FR_TARGET_AVX2 void int8_half_avx2(const int m, int64_t kw,
                                                           const uint32_t *A, int64_t lda,
                                                           const uint32_t *P, int half,
                                                           int32_t *acc_out) {
    __m256i c[4][2];
    const __m256i lo8 = _mm256_set1_epi32(0x00FF00FF);
    for (int i = 0; i < m; i++) c[i][0] = c[i][1] = _mm256_setzero_si256();
    for (int64_t p = 0; p < kw; p++) {
        __m256i we[2], wo[2];
        for (int v = 0; v < 2; v++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(P + p * LP_NR + 16 * half + 8 * v));
            we[v] = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8); /* bytes 0, 2 as int16 */
            wo[v] = _mm256_srai_epi16(w, 8);                       /* bytes 1, 3 */
        }
        for (int i = 0; i < m; i++) {
            const __m256i a = _mm256_set1_epi32((int)A[i * lda + p]);
            const __m256i ae = _mm256_and_si256(a, lo8);
            const __m256i ao = _mm256_and_si256(_mm256_srli_epi16(a, 8), lo8);
            for (int v = 0; v < 2; v++)
                c[i][v] = _mm256_add_epi32(c[i][v], _mm256_add_epi32(_mm256_madd_epi16(ae, we[v]),
                                                                     _mm256_madd_epi16(ao, wo[v])));
        }
    }
    for (int i = 0; i < m; i++)
        for (int v = 0; v < 2; v++)
            _mm256_storeu_si256((__m256i *)(acc_out + i * LP_NR + 16 * half + 8 * v), c[i][v]);
}

static FR_TARGET_AVX2 void ukr_int8_avx2(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                                         const uint32_t *P, const float *ascale,
                                         const float *bias, float *C, int64_t ldc) {
    const int32_t *comp = (const int32_t *)(P + kw * LP_NR);
    const float *wscale = (const float *)(comp + LP_NR);
    int32_t acc[4 * LP_NR];
    for (int64_t i0 = 0; i0 < m; i0 += 4) {
        const int64_t mm = m - i0 < 4 ? m - i0 : 4;
        for (int half = 0; half < 2; half++) {
            const uint32_t *a = A + i0 * lda;
            switch (mm) {
            case 1: int8_half_avx2(1, kw, a, lda, P, half, acc); break;
            case 2: int8_half_avx2(2, kw, a, lda, P, half, acc); break;
            case 3: int8_half_avx2(3, kw, a, lda, P, half, acc); break;
            default: int8_half_avx2(4, kw, a, lda, P, half, acc); break;
            }
        }
        for (int64_t i = 0; i < mm; i++)
            for (int c = 0; c < LP_NR; c++) {
                const float v = (float)(acc[i * LP_NR + c] - comp[c]) * (ascale[i0 + i] * wscale[c]);
                C[(i0 + i) * ldc + c] = bias ? v + bias[c] : v;
            }
    }
}

/* bf16 rows: the portable rounding on 16 lanes (integer ops: identical results). */
static T512 void rows_bf16_avx512(uint32_t *A, int64_t lda, float *scale, const float *src,
                                  int64_t lds, int64_t n, int64_t K) {
    (void)scale;
    const __m512i half = _mm512_set1_epi32(0x7FFF), one = _mm512_set1_epi32(1);
    const __m512i absm = _mm512_set1_epi32(0x7FFFFFFF), infb = _mm512_set1_epi32(0x7F800000);
    const __m512i qbit = _mm512_set1_epi32(0x00400000);
    for (int64_t r = 0; r < n; r++) {
        const float *s = src + r * lds;
        uint16_t *a = (uint16_t *)(A + r * lda);
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const __m512i u = _mm512_loadu_si512(s + k);
            const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, absm), infb);
            __m512i rnd = _mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(
                                                                         _mm512_srli_epi32(u, 16), one)));
            rnd = _mm512_mask_or_epi32(rnd, nan, u, qbit);
            _mm256_storeu_si256((__m256i *)(a + k), _mm512_cvtepi32_epi16(_mm512_srli_epi32(rnd, 16)));
        }
        for (; k < K; k++) a[k] = lp_bf16(s[k]);
        for (; k < 2 * lp_kwords(FR_PREC_BF16, K); k++) a[k] = 0;
    }
}

static T512 void rows_int8_avx512(uint32_t *A, int64_t lda, float *scale, const float *src,
                                  int64_t lds, int64_t n, int64_t K) {
    const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    const __m512 fmax = _mm512_set1_ps(3.4028235e38f);
    const int64_t kw = lp_kwords(FR_PREC_INT8, K);
    for (int64_t r = 0; r < n; r++) {
        const float *s = src + r * lds;
        __m512 vmax = _mm512_setzero_ps();
        __mmask16 bad = 0;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const __m512 a = _mm512_and_ps(_mm512_loadu_ps(s + k), absm);
            bad |= _mm512_cmp_ps_mask(a, fmax, _CMP_NLE_UQ);
            vmax = _mm512_max_ps(vmax, a);
        }
        float amax = _mm512_reduce_max_ps(vmax);
        int finite = bad == 0;
        for (; k < K; k++) {
            const float a = fabsf(s[k]);
            if (!(a <= 3.4028235e38f)) finite = 0;
            else if (a > amax) amax = a;
        }
        float inv;
        scale[r] = row_scale(amax, finite, &inv);
        uint8_t *q = (uint8_t *)(A + r * lda);
        if (!finite) {
            memset(q, 128, (size_t)(4 * kw));
            continue;
        }
        const __m512 vinv = _mm512_set1_ps(inv);
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
        const __m512i off = _mm512_set1_epi32(128);
        for (k = 0; k + 16 <= K; k += 16) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(s + k), vinv));
            v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo), hi), off);
            _mm_storeu_si128((__m128i *)(q + k), _mm512_cvtepi32_epi8(v));
        }
        for (; k < K; k++) q[k] = quant_u8(s[k], inv);
        for (; k < 4 * kw; k++) q[k] = 128;
    }
}

/* 16 floats rounded to bf16 (lp_bf16 on 16 lanes), the result in each lane's upper half (the
   lower half holds rounding garbage). */
static FR_ALWAYS_INLINE T512 __m512i bf16_hi16(__m512i u) {
    const __m512i nanm = _mm512_set1_epi32(0x7FFFFFFF), infb = _mm512_set1_epi32(0x7F800000);
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, nanm), infb);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF),
                                                     _mm512_and_si512(_mm512_srli_epi32(u, 16),
                                                                      _mm512_set1_epi32(1))));
    return _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
}

/* Two rows' 16 columns as panel words: (bf16 lo[c], bf16 hi[c]). */
static FR_ALWAYS_INLINE T512 __m512i bf16_pair_words(__m512i lo, __m512i hi) {
    return _mm512_or_si512(_mm512_srli_epi32(bf16_hi16(lo), 16),
                           _mm512_and_si512(bf16_hi16(hi), _mm512_set1_epi32((int)0xFFFF0000u)));
}

static T512 void pack_kn_avx512(uint32_t *P, const float *B, int64_t ldb, int64_t K, int64_t n0,
                                int64_t nv) {
    const int64_t kw = lp_kwords(FR_PREC_BF16, K);
    for (int64_t p = 0; p < kw; p++)
        for (int v = 0; v < 2; v++) {
            const int64_t c0 = 16 * v, k0 = 2 * p;
            const int64_t n = nv - c0 < 0 ? 0 : (nv - c0 > 16 ? 16 : nv - c0);
            const __mmask16 mk = (__mmask16)((1u << n) - 1u);
            const __m512i lo = k0 < K && n > 0 ? _mm512_maskz_loadu_epi32(mk, B + k0 * ldb + n0 + c0)
                                               : _mm512_setzero_si512();
            const __m512i hi = k0 + 1 < K && n > 0
                                   ? _mm512_maskz_loadu_epi32(mk, B + (k0 + 1) * ldb + n0 + c0)
                                   : _mm512_setzero_si512();
            _mm512_storeu_si512(P + p * LP_NR + c0, bf16_pair_words(lo, hi));
        }
}

/* Words of a pack_t_rows pass (rows of A: twice as many). */
#define PACK_T_PB 64

/* The panel words of rows k0 = 2p, 2p + 1 of A at columns [i, i + 16) (mask mk), zero past K. */
static FR_ALWAYS_INLINE T512 __m512i t_words(const float *A, int64_t lda, int64_t K, int64_t p,
                                               int64_t i, __mmask16 mk) {
    const int64_t k0 = 2 * p;
    const __m512i lo =
        k0 < K ? _mm512_maskz_loadu_epi32(mk, A + k0 * lda + i) : _mm512_setzero_si512();
    const __m512i hi = k0 + 1 < K ? _mm512_maskz_loadu_epi32(mk, A + (k0 + 1) * lda + i)
                                  : _mm512_setzero_si512();
    return bf16_pair_words(lo, hi);
}

/* bf16 of n floats into dst (no padding written). */
static T512 void span_bf16_avx512(uint16_t *dst, const float *src, int64_t n) {
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        _mm256_storeu_si256((__m256i *)(dst + k),
                            _mm512_cvtepi32_epi16(_mm512_srli_epi32(
                                bf16_hi16(_mm512_loadu_si512(src + k)), 16)));
    if (k < n) {
        const __mmask16 mk = (__mmask16)((1u << (n - k)) - 1u);
        _mm256_mask_storeu_epi16(dst + k, mk,
                                 _mm512_cvtepi32_epi16(_mm512_srli_epi32(
                                     bf16_hi16(_mm512_maskz_loadu_epi32(mk, src + k)), 16)));
    }
}

/* The panel words of bf16 rows k0 = 2p, 2p + 1 of A at columns [i, i + 16) (mask mk), zero past
   K: (A[k0][c], A[k0 + 1][c]). */
static FR_ALWAYS_INLINE T512 __m512i t16_words(const uint16_t *A, int64_t lda, int64_t K,
                                                 int64_t p, int64_t i, __mmask16 mk) {
    const int64_t k0 = 2 * p;
    const __m512i lo = k0 < K ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, A + k0 * lda + i))
                              : _mm512_setzero_si512();
    const __m512i hi = k0 + 1 < K
                           ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, A + (k0 + 1) * lda + i))
                           : _mm512_setzero_si512();
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

/* The A^T rows i0 <= i < i1 of Ab from A, floats rounded (half 0) or bf16 (half 1): PACK_T_PB
   words (2 * PACK_T_PB rows of A) at a time across all the columns: walking every row of A for
   each 16 columns touched a page per row (the rows of a weight gradient's A lie a page or more
   apart). 16 words of 16 columns are transposed in registers and stored as one vector per row of
   Ab (kw = lp_kwords(BF16, K) is a multiple of 16, as is PACK_T_PB). */
static FR_ALWAYS_INLINE T512 void pack_t_any(uint32_t *Ab, int64_t kw, const void *A, int64_t lda,
                                             int64_t K, int64_t i0, int64_t i1, int half) {
    for (int64_t p0 = 0; p0 < kw; p0 += PACK_T_PB) {
        const int64_t p1 = p0 + PACK_T_PB < kw ? p0 + PACK_T_PB : kw;
        for (int64_t i = i0; i < i1; i += 16) {
            const int64_t n = i1 - i > 16 ? 16 : i1 - i;
            const __mmask16 mk = (__mmask16)((1u << n) - 1u);
            for (int64_t p = p0; p < p1; p += 16) {
                __m512i v[16];
                for (int q = 0; q < 16; q++)
                    v[q] = half ? t16_words((const uint16_t *)A, lda, K, p + q, i, mk)
                                : t_words((const float *)A, lda, K, p + q, i, mk);
                fr_transpose16(v);
                for (int64_t r = 0; r < n; r++) _mm512_storeu_si512(Ab + (i + r) * kw + p, v[r]);
            }
        }
    }
}

static T512 void pack_t_rows_avx512(uint32_t *Ab, int64_t kw, const float *A, int64_t lda,
                                    int64_t K, int64_t i0, int64_t i1) {
    pack_t_any(Ab, kw, A, lda, K, i0, i1, 0);
}

static T512 void pack_t16_rows_avx512(uint32_t *Ab, int64_t kw, const uint16_t *A, int64_t lda,
                                      int64_t K, int64_t i0, int64_t i1) {
    pack_t_any(Ab, kw, A, lda, K, i0, i1, 1);
}

/* The panel of W's rows c < nv (K floats each, stride ldw; rows past nv and k past K: zeros),
   lp_pack_nk_bf16's: each row's 32 floats of 16 words rounded in registers, 16 rows' words
   transposed (16 words of 16 columns) and stored as a vector per k-group. */
static T512 void pack_nk_avx512(uint32_t *P, const float *W, int64_t ldw, int64_t K, int64_t nv) {
    const int64_t kw = lp_kwords(FR_PREC_BF16, K);
    for (int64_t p0 = 0; p0 < kw; p0 += 16) {
        const int64_t left = K - 2 * p0; /* floats of a row from word p0 on, > 0 */
        const __mmask16 m0 = (__mmask16)(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
        const __mmask16 m1 = (__mmask16)(left >= 32 ? 0xFFFFu : left <= 16 ? 0u : (1u << (left - 16)) - 1u);
        const int64_t np = kw - p0 < 16 ? kw - p0 : 16;
        for (int64_t c0 = 0; c0 < LP_NR; c0 += 16) {
            __m512i v[16];
            for (int q = 0; q < 16; q++) {
                if (c0 + q >= nv) {
                    v[q] = _mm512_setzero_si512();
                    continue;
                }
                const float *w = W + (c0 + q) * ldw + 2 * p0;
                const __m256i lo = _mm512_cvtepi32_epi16(
                    _mm512_srli_epi32(bf16_hi16(_mm512_maskz_loadu_epi32(m0, w)), 16));
                const __m256i hi = _mm512_cvtepi32_epi16(
                    _mm512_srli_epi32(bf16_hi16(_mm512_maskz_loadu_epi32(m1, w + 16)), 16));
                v[q] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            }
            fr_transpose16(v);
            for (int64_t r = 0; r < np; r++) _mm512_storeu_si512(P + (p0 + r) * LP_NR + c0, v[r]);
        }
    }
}

/* ---- AMX (tdpbf16ps, tdpbusd): up to 32 rows x 32 columns per call, K in 16-word steps ------ */
#define TAMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

/* Tiles: 0, 1 the two 16x16 blocks of C's rows 0-15 (the panel's two halves of 16 columns), 5, 6
   those of rows 16-31; 2, 7 the A blocks of rows 0-15 and 16-31 (16 rows x 64 bytes); 3, 4 the B
   blocks (16 k-groups x 16 columns each, the panel's two halves). With 32 rows each B tile
   loaded serves two products (2x2 blocking); up to 16 rows, rows 16-31 are left out. */
static const amx_cfg amx_config __attribute__((aligned(64))) = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

static TAMX void amx_begin(void) {
    /* a constant in memory: GCC 12 drops stores to a stack copy that only ldtilecfg reads */
    _tile_loadconfig(&amx_config);
}

static TAMX void amx_end(void) { _tile_release(); }

/* The products of 32 rows into C tiles 0, 1 (rows 0-15) and 5, 6 (rows 16-31), K in 16-word
   steps: dp is _tile_dpbf16ps or _tile_dpbusd (a macro: the tile numbers are immediates). */
#define AMX_SUMS_32(dp, kw, A, lda, P)                                                              \
    for (int64_t p = 0; p < (kw); p += 16) {                                                        \
        _tile_loadd(3, (P) + p * LP_NR, LP_NR * 4);                                                 \
        _tile_loadd(4, (P) + p * LP_NR + 16, LP_NR * 4);                                            \
        _tile_loadd(2, (A) + p, (lda) * 4);                                                         \
        _tile_loadd(7, (A) + 16 * (lda) + p, (lda) * 4);                                            \
        dp(0, 2, 3);                                                                                \
        dp(1, 2, 4);                                                                                \
        dp(5, 7, 3);                                                                                \
        dp(6, 7, 4);                                                                                \
    }

/* The AMX products of one call into out (rows 0-15, and 16-31 when m > 16; LP_NR columns, stride
   LP_NR). */
#define AMX_PRODUCTS(dp, m, kw, A, lda, P, out)                                                     \
    do {                                                                                            \
        _tile_zero(0);                                                                              \
        _tile_zero(1);                                                                              \
        if ((m) > 16) {                                                                             \
            _tile_zero(5);                                                                          \
            _tile_zero(6);                                                                          \
            AMX_SUMS_32(dp, kw, A, lda, P)                                                          \
            _tile_stored(5, (out) + 16 * LP_NR, LP_NR * 4);                                         \
            _tile_stored(6, (out) + 16 * LP_NR + 16, LP_NR * 4);                                    \
        } else {                                                                                    \
            for (int64_t p = 0; p < (kw); p += 16) {                                                \
                _tile_loadd(2, (A) + p, (lda) * 4);                                                 \
                _tile_loadd(3, (P) + p * LP_NR, LP_NR * 4);                                         \
                _tile_loadd(4, (P) + p * LP_NR + 16, LP_NR * 4);                                    \
                dp(0, 2, 3);                                                                        \
                dp(1, 2, 4);                                                                        \
            }                                                                                       \
        }                                                                                           \
        _tile_stored(0, (out), LP_NR * 4);                                                          \
        _tile_stored(1, (out) + 16, LP_NR * 4);                                                     \
    } while (0)

static TAMX void ukr_bf16_amx(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                              const uint32_t *P, const float *ascale, const float *bias, float *C,
                              int64_t ldc) {
    (void)ascale;
    float out[32 * LP_NR] __attribute__((aligned(64)));
    AMX_PRODUCTS(_tile_dpbf16ps, m, kw, A, lda, P, out);
    for (int64_t i = 0; i < m; i++)
        for (int v = 0; v < 2; v++) {
            __m512 r = _mm512_load_ps(out + i * LP_NR + 16 * v);
            if (bias) r = _mm512_add_ps(r, _mm512_loadu_ps(bias + 16 * v));
            _mm512_storeu_ps(C + i * ldc + 16 * v, r);
        }
}

/* lp_kernel.acc on AMX: the four C tiles loaded from C (or zeroed), AMX_SUMS_32, the tiles
   stored back to C. */
static TAMX void acc_bf16_amx(int64_t kw, const uint32_t *A, int64_t lda, const uint32_t *P,
                              float *C, int64_t ldc, int add) {
    const int64_t ldcb = ldc * 4;
    if (add) {
        _tile_loadd(0, C, ldcb);
        _tile_loadd(1, C + 16, ldcb);
        _tile_loadd(5, C + 16 * ldc, ldcb);
        _tile_loadd(6, C + 16 * ldc + 16, ldcb);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(5);
        _tile_zero(6);
    }
    AMX_SUMS_32(_tile_dpbf16ps, kw, A, lda, P)
    _tile_stored(0, C, ldcb);
    _tile_stored(1, C + 16, ldcb);
    _tile_stored(5, C + 16 * ldc, ldcb);
    _tile_stored(6, C + 16 * ldc + 16, ldcb);
}

#define TAMX8 __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

/* int8 on AMX (tdpbusd: u8 rows times s8 quads), the tiles of the bf16 kernel; int32 blocks
   dequantized as the VNNI kernel does. */
static TAMX8 void ukr_int8_amx(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                               const uint32_t *P, const float *ascale, const float *bias, float *C,
                               int64_t ldc) {
    int32_t out[32 * LP_NR] __attribute__((aligned(64)));
    AMX_PRODUCTS(_tile_dpbusd, m, kw, A, lda, P, out);
    const uint32_t *tail = P + kw * LP_NR;
    for (int64_t i = 0; i < m; i++) {
        const __m512 as = _mm512_set1_ps(ascale[i]);
        for (int v = 0; v < 2; v++) {
            const __m512i k = _mm512_loadu_si512(tail + 16 * v);
            const __m512 s = _mm512_loadu_ps((const float *)(tail + LP_NR + 16 * v));
            const __m512i acc = _mm512_load_si512(out + i * LP_NR + 16 * v);
            __m512 r = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, k)),
                                     _mm512_mul_ps(as, s));
            if (bias) r = _mm512_add_ps(r, _mm512_loadu_ps(bias + 16 * v));
            _mm512_storeu_ps(C + i * ldc + 16 * v, r);
        }
    }
}

/* Whether AMX with the feature bit (CPUID 7.0 EDX: 22 AMX-BF16, 25 AMX-INT8) runs here: the CPU
   has it and Linux lets this process use the tile data. */
static int amx_usable(int bit) {
    static int state = -1; /* benign race: every thread computes the same value */
    static unsigned edx = 0;
    if (state < 0) {
        int ok = 0;
#if defined(__linux__)
        unsigned a, b, c, d;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 24)) &&
            fr_cpu_has_lowp(FR_CPU_AVX512_BF16) && fr_cpu_has_lowp(FR_CPU_AVX512_VNNI)) {
            edx = d;
            ok = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
        }
#endif
        state = ok;
    }
    return state && (edx & (1u << bit));
}

static const lp_kernel k_bf16_amx = {ukr_bf16_amx, rows_bf16_avx512, "amx_bf16", 32, amx_begin,
                                     amx_end, acc_bf16_amx};
static const lp_kernel k_int8_amx = {ukr_int8_amx, rows_int8_avx512, "amx_int8", 32, amx_begin,
                                     amx_end, NULL};
static const lp_kernel k_bf16_avx512 = {ukr_bf16_avx512, rows_bf16_avx512, "avx512_bf16", 8,
                                        NULL, NULL, NULL};
static const lp_kernel k_int8_avx512 = {ukr_int8_avx512, rows_int8_avx512, "avx512_vnni", 8,
                                        NULL, NULL, NULL};
static const lp_kernel k_int8_avxvnni = {ukr_int8_avxvnni, rows_int8_portable, "avx_vnni", 8,
                                         NULL, NULL, NULL};
static const lp_kernel k_int8_avx2 = {ukr_int8_avx2, rows_int8_portable, "avx2_madd", 8, NULL,
                                      NULL, NULL};
#endif

static int amx_off = 0;

int fr_lp_set_amx(int on) {
    amx_off = !on;
    return FR_OK;
}

static int lp_amx_disabled(void) { return amx_off; }

static int vnni_off = 0;

int fr_lp_set_vnni(int on) {
    vnni_off = !on;
    return FR_OK;
}

static int lp_vnni_disabled(void) { return vnni_off; }

int fr_cpu_has_lowp(int feature) {
#if FR_X86_SIMD
    __builtin_cpu_init();
    switch (feature) {
    case FR_CPU_AVX512_BF16: return __builtin_cpu_supports("avx512bf16");
    case FR_CPU_AVX512_VNNI: return __builtin_cpu_supports("avx512vnni");
    case FR_CPU_AVX_VNNI: return __builtin_cpu_supports("avxvnni");
    default: return 0;
    }
#else
    (void)feature;
    return 0;
#endif
}

const lp_kernel *lp_kernel_for(int prec, int arch) {
#if FR_X86_SIMD
    if (prec == FR_PREC_BF16) {
        if (arch == FR_ARCH_AVX512 && !lp_amx_disabled() && amx_usable(22)) return &k_bf16_amx;
        if (arch == FR_ARCH_AVX512 && fr_cpu_has_lowp(FR_CPU_AVX512_BF16)) return &k_bf16_avx512;
        return &k_bf16_portable;
    }
    if (arch == FR_ARCH_AVX512 && !lp_amx_disabled() && !lp_vnni_disabled() && amx_usable(25))
        return &k_int8_amx;
    if (arch == FR_ARCH_AVX512 && fr_cpu_has_lowp(FR_CPU_AVX512_VNNI) && !lp_vnni_disabled())
        return &k_int8_avx512;
    if ((arch == FR_ARCH_AVX512 || arch == FR_ARCH_AVX2) && fr_cpu_has_lowp(FR_CPU_AVX_VNNI) &&
        !lp_vnni_disabled())
        return &k_int8_avxvnni;
    if (arch == FR_ARCH_AVX512 || arch == FR_ARCH_AVX2) return &k_int8_avx2;
    return &k_int8_portable;
#else
    (void)arch;
    return prec == FR_PREC_BF16 ? &k_bf16_portable : &k_int8_portable;
#endif
}

/* Where a product's rows (a thread's step rows, a projection chunk's rows) are at most the
   small-rows limit, the AVX-512 kernel of the same operand format runs in place of AMX. Measured,
   one thread, cells RNN/GRU/LSTM, H 64-512 (bench/RESULTS_precision.md, issue 20): on one row
   vpdpbusd beats AMX's tdpbusd by 0-9% in a 200-step sequence and 6-34% in a stream step (whose
   call also configures the tiles); from two rows AMX is faster (bf16 2-5x at 2-16 rows). */
#define LP_SMALL_ROWS 1
/* bf16 on one row: AMX from this many multiply-adds per row in the call (a stream step's
   weights; a sequence's steps times its weights). vdpbf16ps issues one every two cycles here
   (Sapphire Rapids), so once the call's work pays for configuring the tiles AMX is faster
   (session 13 of bench/RESULTS.md, 2 threads, batch 1): a 200-step sequence 15-25% faster at
   H = 64-512 in every cell; a stream step faster from about 1e5 weights (LSTM 128: 3.9 against
   4.4 us, GRU 128: 3.1 against 3.3) and slower below (RNN 192, 73728 weights: 3.1 against 3.0;
   RNN 64: 1.4 against 1.0). */
#define LP_AMX_ROW_MACS 98304.0

static int small_rows_set = -1;

int fr_lp_set_small_rows(int rows) {
    small_rows_set = rows < 0 ? -1 : rows;
    return FR_OK;
}

const lp_kernel *lp_kernel_for_rows(int prec, int arch, int64_t rows, double row_macs) {
    const lp_kernel *k = lp_kernel_for(prec, arch);
#if FR_X86_SIMD
    const int forced = small_rows_set >= 0;
    if (rows <= (forced ? small_rows_set : LP_SMALL_ROWS) &&
        (forced || k != &k_bf16_amx || row_macs < LP_AMX_ROW_MACS)) {
        /* AMX is chosen only where AVX512_BF16 and VNNI are present (amx_usable) */
        if (k == &k_bf16_amx) return &k_bf16_avx512;
        if (k == &k_int8_amx) return &k_int8_avx512;
    }
#else
    (void)rows;
    (void)row_macs;
#endif
    return k;
}

const char *fr_lowp_rows_path(int prec, int64_t rows, double row_macs) {
    if (prec != FR_PREC_BF16 && prec != FR_PREC_INT8) return "unknown";
    return lp_kernel_for_rows(prec, fr_get_arch(), rows, row_macs)->name;
}

static int has_avx512_rounding(void) {
#if FR_X86_SIMD
    return fr_get_arch() == FR_ARCH_AVX512;
#else
    return 0;
#endif
}

void lp_pack_kn_bf16(uint32_t *P, const float *B, int64_t ldb, int64_t K, int64_t n0,
                     int64_t nv) {
#if FR_X86_SIMD
    if (has_avx512_rounding()) {
        pack_kn_avx512(P, B, ldb, K, n0, nv);
        return;
    }
#endif
    pack_kn_portable(P, B, ldb, K, n0, nv);
}

/* k values per pass of lp_pack_nk_bf16: a pass writes LP_NR columns x 128 words (16 KB, in L1),
   where a whole panel (K = 1024: 64 KB) took each word's store to a line out of L1. Measured,
   fr_lp_pack of an LSTM's weights, one thread: H = 1024 (8M weights) 9.6 -> 4.4 ms, H = 512
   1.0 ms either way. */
#define NK_CHUNK 256

void lp_pack_nk_bf16(uint32_t *P, const float *W, int64_t ldw, int64_t K, int64_t nv) {
#if FR_X86_SIMD
    if (has_avx512_rounding()) {
        pack_nk_avx512(P, W, ldw, K, nv);
        return;
    }
#endif
    /* each row's chunk converted in one run by the path's row converter, then its words
       spread over the panel's k-groups (a word per group, at a stride of LP_NR words) */
    const lp_rows_fn rows = lp_kernel_for(FR_PREC_BF16, fr_get_arch())->rows;
    uint32_t row[NK_CHUNK / 2] __attribute__((aligned(64)));
    if (nv < LP_NR) memset(P, 0, (size_t)(lp_kwords(FR_PREC_BF16, K) * LP_NR * 4));
    for (int64_t k0 = 0; k0 < K; k0 += NK_CHUNK) {
        /* k0 a multiple of 32: the chunk's words are the panel's from k0 / 2 on */
        const int64_t kc = K - k0 < NK_CHUNK ? K - k0 : NK_CHUNK, wc = lp_kwords(FR_PREC_BF16, kc);
        uint32_t *Pc = P + k0 / 2 * LP_NR;
        for (int64_t c = 0; c < nv; c++) {
            rows(row, wc, NULL, W + c * ldw + k0, ldw, 1, kc);
            for (int64_t p = 0; p < wc; p++) Pc[p * LP_NR + c] = row[p];
        }
    }
}

void lp_pack_t_rows_bf16(uint32_t *Ab, int64_t kw, const float *A, int64_t lda, int64_t K,
                         int64_t i0, int64_t i1) {
#if FR_X86_SIMD
    if (has_avx512_rounding()) {
        pack_t_rows_avx512(Ab, kw, A, lda, K, i0, i1);
        return;
    }
#endif
    pack_t_rows_portable(Ab, kw, A, lda, K, i0, i1);
}

static void span_bf16_portable(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t k = 0; k < n; k++) dst[k] = lp_bf16(src[k]);
}

lp_span_fn lp_bf16_span_fn(void) {
#if FR_X86_SIMD
    if (has_avx512_rounding()) return span_bf16_avx512;
#endif
    return span_bf16_portable;
}

void lp_pack_t16_rows_bf16(uint32_t *Ab, int64_t kw, const uint16_t *A, int64_t lda, int64_t K,
                           int64_t i0, int64_t i1) {
#if FR_X86_SIMD
    if (has_avx512_rounding()) {
        pack_t16_rows_avx512(Ab, kw, A, lda, K, i0, i1);
        return;
    }
#endif
    for (int64_t i = i0; i < i1; i++) {
        uint16_t *a = (uint16_t *)(Ab + i * kw);
        for (int64_t k = 0; k < K; k++) a[k] = A[k * lda + i];
        for (int64_t k = K; k < 2 * kw; k++) a[k] = 0;
    }
}

const char *fr_lowp_path(int prec) {
    if (prec != FR_PREC_BF16 && prec != FR_PREC_INT8) return "unknown";
    return lp_kernel_for(prec, fr_get_arch())->name;
}
