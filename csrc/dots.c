/*
 * dots.c — the kernels of dots.h: per SIMD path (AVX-512, AVX2+FMA: this file is its own template
 * body, template.h's SIMD mode) a block of up to 4 (AVX-512) or 2 (AVX2) weight rows against all B
 * rows at once, each weight vector loaded once and multiplied into B accumulators, the tail of K
 * by masked loads, the accumulators summed across their lanes four at a time at the end; and the
 * portable kernel.
 * With few rows the weights stream through once: the loads of W, not the multiplies, set the pace.
 */
#ifndef REAL
#include "dots.h"

#include "fastrnn.h"
#include "simd_target.h"

/* The portable kernel: 16 running lane sums per (row, weight row), folded in halves (lane l +
   lane l + w for w = 8, 4, 2, 1), then the tail. */
#define FR_DOTS_GENERIC(REAL, NAME)                                                               \
    static void NAME(const REAL *W, int64_t ldw, int64_t O, const REAL *A, int64_t lda,          \
                     int64_t B, int64_t K, REAL *C, int64_t ldc) {                                \
        for (int64_t o = 0; o < O; o++)                                                           \
            for (int64_t b = 0; b < B; b++) {                                                     \
                const REAL *w = W + o * ldw, *v = A + b * lda;                                    \
                REAL acc[16] = {0};                                                               \
                int64_t k = 0;                                                                    \
                for (; k + 16 <= K; k += 16)                                                      \
                    for (int l = 0; l < 16; l++) acc[l] += w[k + l] * v[k + l];                   \
                for (int half = 8; half >= 1; half /= 2)                                          \
                    for (int l = 0; l < half; l++) acc[l] += acc[l + half];                       \
                REAL s = acc[0];                                                                  \
                for (; k < K; k++) s += w[k] * v[k];                                              \
                C[b * ldc + o] = s;                                                               \
            }                                                                                     \
    }
FR_DOTS_GENERIC(float, dots_generic_s)
FR_DOTS_GENERIC(double, dots_generic_d)

/* The portable transposed kernel: one running sum per output, k in order. */
#define FR_DOTS_T_GENERIC(REAL, NAME)                                                             \
    static void NAME(const REAL *W, int64_t ldw, int64_t N, const REAL *A, int64_t lda,          \
                     int64_t B, int64_t K, REAL *C, int64_t ldc, int acc,                        \
                     const unsigned char *skip) {                                                \
        for (int64_t b = 0; b < B; b++) {                                                         \
            if (skip && skip[b]) continue;                                                        \
            for (int64_t c = 0; c < N; c++) {                                                    \
                REAL s = 0;                                                                       \
                for (int64_t k = 0; k < K; k++) s += A[b * lda + k] * W[k * ldw + c];            \
                C[b * ldc + c] = acc ? C[b * ldc + c] + s : s;                                    \
            }                                                                                     \
        }                                                                                         \
    }
FR_DOTS_T_GENERIC(float, dots_t_generic_s)
FR_DOTS_T_GENERIC(double, dots_t_generic_d)

#define FR_TEMPLATE "dots.c"
#define FR_TEMPLATE_SIMD
#include "template.h"

fr_dots_fn_s fr_dots_for_s(int arch) {
    return FR_BY_ARCH(arch, dots_avx512_s, dots_avx2_s, dots_generic_s);
}

fr_dots_fn_d fr_dots_for_d(int arch) {
    return FR_BY_ARCH(arch, dots_avx512_d, dots_avx2_d, dots_generic_d);
}

fr_dots_t_fn_s fr_dots_t_for_s(int arch) {
    return FR_BY_ARCH(arch, dots_t_avx512_s, dots_t_avx2_s, dots_t_generic_s);
}

fr_dots_t_fn_d fr_dots_t_for_d(int arch) {
    return FR_BY_ARCH(arch, dots_t_avx512_d, dots_t_avx2_d, dots_t_generic_d);
}

#else /* the kernel of one (path, dtype) */

/* Weight rows per block: 4 x 4 accumulators + 4 row vectors + 1 weight vector fit AVX-512's 32
   registers; AVX2's 16 take 2 x 4 + 4 + 1. */
#define DOTS_O (FR_AVX512 ? 4 : 2)
/* Bytes ahead in each weight row that a block asks L1 for: 5-10% on one thread, where the weights
   come from L3 ((1, 3, 200, 300) 91 -> 82 us, (1, 8, 512, 512) 484 -> 471), 0-5% on two (512 and
   1024 measured alike). */
#define DOTS_PF 512

/* out[i] = the sum of the lanes of v[i], i < 4: the four reduced together (about 3 operations a
   sum against 8 for one vector's own reduction), in one fixed order per path. */
static FR_ALWAYS_INLINE VTARGET void VSFX(dots_hsum4)(const VEC v[4], REAL *out) {
#if FR_AVX512
#if FR_F32
#define DOTS_QUARTERS(a, b, imm) _mm512_shuffle_f32x4(a, b, imm)
#else
#define DOTS_QUARTERS(a, b, imm) _mm512_shuffle_f64x2(a, b, imm)
#endif
    /* 128-bit quarters: a's halves added, b's, then a|b|c|d quarters, then within each quarter */
    const VEC ab = V_ADD(DOTS_QUARTERS(v[0], v[1], 0x44), DOTS_QUARTERS(v[0], v[1], 0xEE));
    const VEC cd = V_ADD(DOTS_QUARTERS(v[2], v[3], 0x44), DOTS_QUARTERS(v[2], v[3], 0xEE));
    VEC q = V_ADD(DOTS_QUARTERS(ab, cd, 0x88), DOTS_QUARTERS(ab, cd, 0xDD));
#undef DOTS_QUARTERS
#if FR_F32
    q = V_ADD(q, _mm512_shuffle_ps(q, q, 0x4E));
    q = V_ADD(q, _mm512_shuffle_ps(q, q, 0xB1));
#else
    q = V_ADD(q, _mm512_shuffle_pd(q, q, 0x55));
#endif
    REAL t[VW];
    V_STORE(t, q);
    for (int i = 0; i < 4; i++) out[i] = t[i * (VW / 4)];
#elif FR_F32
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
#else
    const __m256d ab = _mm256_hadd_pd(v[0], v[1]), cd = _mm256_hadd_pd(v[2], v[3]);
    _mm256_storeu_pd(out, _mm256_add_pd(_mm256_permute2f128_pd(ab, cd, 0x20),
                                        _mm256_permute2f128_pd(ab, cd, 0x31)));
#endif
}

/* Weight rows [0, no) against rows [0, nb) (both constants after inlining). */
static FR_ALWAYS_INLINE VTARGET void VSFX(dots_block)(const int no, const int nb, const REAL *W,
                                                     int64_t ldw, const REAL *A, int64_t lda,
                                                     int64_t K, REAL *C, int64_t ldc) {
    VEC acc[DOTS_O][FR_DOTS_MAX_B];
    for (int j = 0; j < no; j++)
        for (int b = 0; b < nb; b++) acc[j][b] = V_ZERO();
    int64_t k = 0;
    for (; k + VW <= K; k += VW) {
        VEC x[FR_DOTS_MAX_B];
        for (int b = 0; b < nb; b++) x[b] = V_LOAD(A + b * lda + k);
        for (int j = 0; j < no; j++) {
            /* the address as an integer: a pointer past the row's end is never formed */
            _mm_prefetch((const char *)((uintptr_t)(W + j * ldw + k) + DOTS_PF), _MM_HINT_T0);
            VEC w = V_LOAD(W + j * ldw + k);
            /* w in a register: GCC otherwise folds the load into each of the nb FMAs, nb loads
               of the same vector where the load ports, not the FMAs, set the pace */
            __asm__("" : "+v"(w));
            for (int b = 0; b < nb; b++) acc[j][b] = V_FMA(w, x[b], acc[j][b]);
        }
    }
    if (k < K) { /* the tail: the lanes past K read as 0 */
        const int r = (int)(K - k);
        VEC x[FR_DOTS_MAX_B];
        for (int b = 0; b < nb; b++) x[b] = V_PLOAD(A + b * lda + k, r);
        for (int j = 0; j < no; j++) {
            const VEC w = V_PLOAD(W + j * ldw + k, r);
            for (int b = 0; b < nb; b++) acc[j][b] = V_FMA(w, x[b], acc[j][b]);
        }
    }
    /* the accumulators four at a time (the last group padded with zeros) */
    const int n = no * nb;
    for (int g = 0; g < n; g += 4) {
        VEC v[4];
        REAL sum[4];
        for (int i = 0; i < 4; i++) v[i] = g + i < n ? acc[(g + i) / nb][(g + i) % nb] : V_ZERO();
        VSFX(dots_hsum4)(v, sum);
        for (int i = 0; i < 4 && g + i < n; i++) C[((g + i) % nb) * ldc + (g + i) / nb] = sum[i];
    }
}

/* Weight rows in blocks of DOTS_O, then one at a time: each row's sums are the same either way. */
#define DOTS_RUN(nb)                                                                              \
    do {                                                                                          \
        int64_t o = 0;                                                                            \
        for (; o + DOTS_O <= O; o += DOTS_O)                                                      \
            VSFX(dots_block)(DOTS_O, nb, W + o * ldw, ldw, A, lda, K, C + o, ldc);                \
        for (; o < O; o++) VSFX(dots_block)(1, nb, W + o * ldw, ldw, A, lda, K, C + o, ldc);      \
    } while (0)

/* RUN(nb) with nb = B as a constant (B <= FR_DOTS_MAX_B). */
#define DOTS_BY_ROWS(RUN)                                                                         \
    switch (B) {                                                                                  \
    case 1: RUN(1); break;                                                                        \
    case 2: RUN(2); break;                                                                        \
    case 3: RUN(3); break;                                                                        \
    default: RUN(4); break;                                                                       \
    }

static VTARGET void VSFX(dots)(const REAL *W, int64_t ldw, int64_t O, const REAL *A, int64_t lda,
                               int64_t B, int64_t K, REAL *C, int64_t ldc) {
    DOTS_BY_ROWS(DOTS_RUN)
}

#undef DOTS_RUN

/* Vectors of columns per chunk of the transposed kernel: 4 x 4 rows = 16 accumulators (AVX-512's
   32 registers), AVX2 2 x 4 = 8 of its 16. */
#define DOTS_TV (FR_AVX512 ? 4 : 2)

/* Columns [0, nv*VW) (the last vector's first `last` lanes only) of rows [0, nb), both counts
   constants after inlining: each weight vector loaded once for the nb rows. */
static FR_ALWAYS_INLINE VTARGET void VSFX(dots_t_chunk)(const int nb, const int nv, int last,
                                                       const REAL *W, int64_t ldw,
                                                       const REAL *A, int64_t lda, int64_t K,
                                                       REAL *C, int64_t ldc, int acc,
                                                       const unsigned char *skip) {
    VEC s[FR_DOTS_MAX_B][DOTS_TV];
    for (int b = 0; b < nb; b++)
        for (int v = 0; v < nv; v++) s[b][v] = V_ZERO();
    for (int64_t k = 0; k < K; k++) {
        VEC w[DOTS_TV];
        for (int v = 0; v < nv; v++) {
            w[v] = v == nv - 1 ? V_LOADN(W + k * ldw + v * VW, last) : V_LOAD(W + k * ldw + v * VW);
            __asm__("" : "+v"(w[v])); /* in a register for the nb rows (dots_block) */
        }
        for (int b = 0; b < nb; b++) {
            const VEC a = V_SET1(A[b * lda + k]);
            for (int v = 0; v < nv; v++) s[b][v] = V_FMA(w[v], a, s[b][v]);
        }
    }
    for (int b = 0; b < nb; b++) {
        if (skip && skip[b]) continue;
        for (int v = 0; v < nv; v++) {
            REAL *c = C + b * ldc + v * VW;
            const int m = v == nv - 1 ? last : VW;
            V_STOREN(c, m, acc ? V_ADD(V_LOADN(c, m), s[b][v]) : s[b][v]);
        }
    }
}

/* Every column of rows [0, nb): chunks of DOTS_TV vectors, then single vectors, then the tail. */
#define DOTS_T_RUN(nb)                                                                            \
    do {                                                                                          \
        int64_t c = 0;                                                                            \
        for (; c + DOTS_TV * VW <= N; c += DOTS_TV * VW)                                          \
            VSFX(dots_t_chunk)(nb, DOTS_TV, VW, W + c, ldw, A, lda, K, C + c, ldc, acc, skip);    \
        for (; c + VW <= N; c += VW)                                                              \
            VSFX(dots_t_chunk)(nb, 1, VW, W + c, ldw, A, lda, K, C + c, ldc, acc, skip);          \
        if (c < N)                                                                                \
            VSFX(dots_t_chunk)(nb, 1, (int)(N - c), W + c, ldw, A, lda, K, C + c, ldc, acc, skip); \
    } while (0)

static VTARGET void VSFX(dots_t)(const REAL *W, int64_t ldw, int64_t N, const REAL *A,
                                 int64_t lda, int64_t B, int64_t K, REAL *C, int64_t ldc, int acc,
                                 const unsigned char *skip) {
    DOTS_BY_ROWS(DOTS_T_RUN)
}

#undef DOTS_BY_ROWS
#undef DOTS_T_RUN
#undef DOTS_TV
#undef DOTS_O
#undef DOTS_PF

#endif
