/*
 * gemm_ukr.c — the SIMD GEMM microkernels, one per (path, dtype), by shape (rows x columns):
 * AVX2+FMA 6x16 float and 6x8 double (6 rows x 2 ymm vectors: 12 accumulators, 2 panel loads and 6
 * broadcasts per k, the BLIS Haswell/Zen shape), AVX-512 12x32 float and 12x16 double (12 rows x
 * 2 zmm vectors: 24 of the 32 registers accumulate, 2 panel loads and 12 broadcasts per k; ONNX
 * Runtime's MLAS uses the same shape. Against 8 rows it reads each panel a third less often per
 * flop, which is what a recurrent step's panels, streamed from L2 for a few rows, are short of:
 * measured, LSTM (60,24,100,200) inference 0.94x and (100,64,512,512) training 0.96x the 8-row
 * time). Compiled with function-level
 * target attributes (template.h's SIMD mode); cpu.c selects the path at run time, gemm.c holds the
 * driver and the portable kernel.
 *
 * Each variant defines the public microkernel ukr_<path>_<s|d> (fr_ukr_*_fn of fastrnn.h), its
 * strided form ukr_strided_*, its half-width strided form ukr_strided_half_* (the same rows, one
 * vector of columns: the last panel of a GEMM when its valid columns fit in one vector) and its
 * panel copy ukr_packn_* (gemm_kernels.h), gathered in fr_gemm_impl_<path>_<s|d>().
 *
 * Each row count m = 1..UKR_MR gets its own fully unrolled code (a switch over an inlined body
 * with constant m). Rows share each loaded B vector; few rows leave the FMA units idle while they
 * wait on the previous FMA of the same accumulator, so small m also splits k over `u` independent
 * accumulator sets (about 8 chains in flight, enough for two FMA pipes of latency 4), summed in a
 * fixed order at the end: m = 1 (batch-1 matrix-vector steps) runs 4 sets, m = 2 runs 2. From 3
 * rows up a row is summed in one order whatever its tile (batch groups rely on it: 7 rows as one
 * tile or 3 + 4); three rows keep enough chains in flight by taking two panels at once (ukr_pair).
 */
#ifndef REAL
#include "gemm_kernels.h"
#include "transpose16.h"

#define FR_TEMPLATE "gemm_ukr.c"
#define FR_TEMPLATE_SIMD
#include "template.h"

#else /* the microkernel of one (path, dtype) */

#define UKR_MR (FR_AVX512 ? 12 : 6) /* max rows */
#define UKR_TILE VSFX(ukr_tile)
#define UKR_STRIDED VSFX(ukr_strided)
#define UKR_STRIDED_HALF VSFX(ukr_strided_half)
#define UKR_PACKN VSFX(ukr_packn)
#define UKR_NAME VSFX(ukr)
#define UKR_NAME_HALF VSFX(ukr_half)
#define UKR_NAME_PAIR VSFX(ukr_pair)
#define UKR_NAME_BIAS VSFX(ukr_bias)
#define UKR_NAME_BIAS_HALF VSFX(ukr_bias_half)
#define UKR_BIAS_TILES VSFX(ukr_bias_tiles)
#define UKR_NR (2 * VW)
/* Independent accumulator sets over k for m rows (the same at both widths: a column of the half
   tile is summed exactly as that column of the full tile). */
#define UKR_U(m) ((m) == 1 ? 4 : (m) == 2 ? 2 : 1)

/* The m x (nv * VW) tile, nv = 1 (half), 2 (full) or 4 (two panels: columns 2*VW.. from B2, the
   next panel, at the same row stride); m, u, nv and acol (A transposed: rsa = 1) are constants
   after inlining. Every column is summed the same way whatever nv. */
static FR_ALWAYS_INLINE VTARGET void UKR_TILE(const int m, const int u, const int nv,
                                                 const int acol, int64_t K, const REAL *A,
                                                 int64_t lda, const REAL *B, const REAL *B2,
                                                 int64_t ldb, REAL *C, int64_t ldc,
                                                 int accumulate, const REAL *bias) {
    const int64_t rs = acol ? 1 : lda, cs = acol ? lda : 1;
    VEC acc[4][UKR_MR][4];
    for (int i = 0; i < m; i++)
        for (int v = 0; v < nv; v++) _mm_prefetch((const char *)(C + i * ldc + v * VW), _MM_HINT_T0);
    for (int s = 0; s < u; s++)
        for (int i = 0; i < m; i++)
            for (int v = 0; v < nv; v++) acc[s][i][v] = V_ZERO();
    int64_t k = 0;
    for (; k + u <= K; k += u) {
        for (int s = 0; s < u; s++) {
            VEC bv[4];
            for (int v = 0; v < nv; v++) bv[v] = V_LOAD((v < 2 ? B : B2) + (k + s) * ldb + (v & 1) * VW);
            const REAL *a = A + (k + s) * cs;
            for (int i = 0; i < m; i++) {
                const VEC ai = V_SET1(a[i * rs]);
                for (int v = 0; v < nv; v++) acc[s][i][v] = V_FMA(ai, bv[v], acc[s][i][v]);
            }
        }
    }
    for (; k < K; k++) { /* only when u > 1 */
        VEC bv[4];
        for (int v = 0; v < nv; v++) bv[v] = V_LOAD((v < 2 ? B : B2) + k * ldb + (v & 1) * VW);
        const REAL *a = A + k * cs;
        for (int i = 0; i < m; i++) {
            const VEC ai = V_SET1(a[i * rs]);
            for (int v = 0; v < nv; v++) acc[0][i][v] = V_FMA(ai, bv[v], acc[0][i][v]);
        }
    }
    for (int s = 1; s < u; s++)
        for (int i = 0; i < m; i++)
            for (int v = 0; v < nv; v++) acc[0][i][v] = V_ADD(acc[0][i][v], acc[s][i][v]);
    for (int i = 0; i < m; i++) {
        REAL *c = C + i * ldc;
        for (int v = 0; v < nv; v++) {
            if (accumulate) acc[0][i][v] = V_ADD(acc[0][i][v], V_LOAD(c + v * VW));
            if (bias) acc[0][i][v] = V_ADD(acc[0][i][v], V_LOAD(bias + v * VW));
            V_STORE(c + v * VW, acc[0][i][v]);
        }
    }
}

#define UKR_CASE(mm, nv, acol, ld)                                                                \
    case mm:                                                                                      \
        UKR_TILE(mm, UKR_U(mm), nv, acol, K, A, ld, B, NULL, ldb, C, ldc, accumulate, bias);            \
        break;
#if FR_AVX512
#define UKR_CASES(nv, acol, ld)                                                                   \
    UKR_CASE(1, nv, acol, ld) UKR_CASE(2, nv, acol, ld) UKR_CASE(3, nv, acol, ld)                 \
    UKR_CASE(4, nv, acol, ld) UKR_CASE(5, nv, acol, ld) UKR_CASE(6, nv, acol, ld)                 \
    UKR_CASE(7, nv, acol, ld) UKR_CASE(8, nv, acol, ld) UKR_CASE(9, nv, acol, ld)                 \
    UKR_CASE(10, nv, acol, ld) UKR_CASE(11, nv, acol, ld) UKR_CASE(12, nv, acol, ld)
#else
#define UKR_CASES(nv, acol, ld)                                                                   \
    UKR_CASE(1, nv, acol, ld) UKR_CASE(2, nv, acol, ld) UKR_CASE(3, nv, acol, ld)                 \
    UKR_CASE(4, nv, acol, ld) UKR_CASE(5, nv, acol, ld) UKR_CASE(6, nv, acol, ld)
#endif

/* Strided form (gemm_kernels.h): row-wise A when csa == 1, else transposed A (rsa == 1). */
static VTARGET void UKR_STRIDED(int64_t m, int64_t K, const REAL *A, int64_t rsa,
                                   int64_t csa, const REAL *B, int64_t ldb, REAL *C,
                                   int64_t ldc, int accumulate) {
    const REAL *const bias = NULL; /* UKR_CASE's: no bias form here */
    if (csa == 1) {
        switch (m) { UKR_CASES(2, 0, rsa) default: break; }
    } else {
        switch (m) { UKR_CASES(2, 1, csa) default: break; }
    }
}

/* Its half-width form: columns c < VW only (reads B and writes C there only). */
static VTARGET void UKR_STRIDED_HALF(int64_t m, int64_t K, const REAL *A, int64_t rsa,
                                        int64_t csa, const REAL *B, int64_t ldb, REAL *C,
                                        int64_t ldc, int accumulate) {
    const REAL *const bias = NULL;
    if (csa == 1) {
        switch (m) { UKR_CASES(1, 0, rsa) default: break; }
    } else {
        switch (m) { UKR_CASES(1, 1, csa) default: break; }
    }
}

/* Public microkernel (fr_ukr_*_fn): Bp is one packed K x NR panel. */
static void UKR_NAME(int64_t m, int64_t K, const REAL *A, int64_t lda, const REAL *Bp,
                     REAL *C, int64_t ldc, int accumulate) {
    UKR_STRIDED(m, K, A, lda, 1, Bp, UKR_NR, C, ldc, accumulate);
}

/* Its half-width form (fastrnn.h's ukr_half): the panel's first VW columns. */
static void UKR_NAME_HALF(int64_t m, int64_t K, const REAL *A, int64_t lda, const REAL *Bp,
                          REAL *C, int64_t ldc, int accumulate) {
    UKR_STRIDED_HALF(m, K, A, lda, 1, Bp, UKR_NR, C, ldc, accumulate);
}

/* The bias forms (fastrnn.h's ukr_bias, ukr_bias_half): C = A Bp + bias, the sum rounded, then
   the bias added in register before the one store (what ukr then adding bias to C gives, without
   a second pass over C); the strided forms' cases with a bias, A row-wise, nv vectors wide. */
static FR_ALWAYS_INLINE VTARGET void UKR_BIAS_TILES(const int nv, int64_t m, int64_t K,
                                                       const REAL *A, int64_t lda, const REAL *B,
                                                       const REAL *bias, REAL *C, int64_t ldc) {
    const int64_t ldb = UKR_NR;
    const int accumulate = 0;
    switch (m) { UKR_CASES(nv, 0, lda) default: break; }
}

static VTARGET void UKR_NAME_BIAS(int64_t m, int64_t K, const REAL *A, int64_t lda,
                                  const REAL *Bp, const REAL *bias, REAL *C, int64_t ldc) {
    UKR_BIAS_TILES(2, m, K, A, lda, Bp, bias, C, ldc);
}

static VTARGET void UKR_NAME_BIAS_HALF(int64_t m, int64_t K, const REAL *A, int64_t lda,
                                       const REAL *Bp, const REAL *bias, REAL *C, int64_t ldc) {
    UKR_BIAS_TILES(1, m, K, A, lda, Bp, bias, C, ldc);
}

/* Two adjacent panels at once (fastrnn.h's ukr_pair): Bp and Bp + K * NR into C's 2 * NR columns.
   Three rows, which a panel alone sums in one accumulator set per column (UKR_U) with the FMA
   units half idle, run both panels in one pass (12 chains in flight); on AVX-512 (32 registers)
   so do 1, 2 and 4 to 6 rows (16 to 24 chains, each broadcast feeding 4 FMAs: measured, LSTM
   (100, 6, 128, 128) inference 0.94x and (100, 4, 100, 100) 0.97x the time of panels one by one;
   one row: LSTM (100, 1, 256, 256) 0.89x, GRU (100, 1, 512, 512) 0.88x); other row counts take
   the panels one by one. A column is summed in the same order either way. */
static VTARGET void UKR_NAME_PAIR(int64_t m, int64_t K, const REAL *A, int64_t lda,
                                  const REAL *Bp, REAL *C, int64_t ldc, int accumulate) {
    switch (m) {
#define UKR_PAIR_CASE(mm)                                                                         \
    case mm:                                                                                      \
        UKR_TILE(mm, UKR_U(mm), 4, 0, K, A, lda, Bp, Bp + K * UKR_NR, UKR_NR, C, ldc, accumulate, \
                 NULL);                                                                           \
        return;
        UKR_PAIR_CASE(3)
#if FR_AVX512
        UKR_PAIR_CASE(1)
        UKR_PAIR_CASE(2)
        UKR_PAIR_CASE(4)
        UKR_PAIR_CASE(5)
        UKR_PAIR_CASE(6)
#endif
#undef UKR_PAIR_CASE
    default: break;
    }
    UKR_NAME(m, K, A, lda, Bp, C, ldc, accumulate);
    UKR_NAME(m, K, A, lda, Bp + K * UKR_NR, C + UKR_NR, ldc, accumulate);
}

/* Panel copy (gemm_kernels.h): K rows of NR elements at stride ldb into a contiguous panel. */
static VTARGET void UKR_PACKN(REAL *dst, const REAL *B, int64_t ldb, int64_t K) {
    for (int64_t k = 0; k < K; k++) {
        const VEC b0 = V_LOAD(B + k * ldb), b1 = V_LOAD(B + k * ldb + VW);
        V_STORE(dst + k * UKR_NR, b0);
        V_STORE(dst + k * UKR_NR + VW, b1);
    }
}

#if FR_AVX512 && FR_F32
#define UKR_PACKT VSFX(ukr_packt)
/* Transposed panel copy (gemm_kernels.h): 16 k of 16 source rows at a time, transposed in
   registers and stored as 16 panel rows (the portable copy writes one element at a time). */
static VTARGET void UKR_PACKT(REAL *dst, const REAL *B, int64_t ldb, int64_t K, int64_t nv) {
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
        const int64_t kk = K - k0 < 16 ? K - k0 : 16;
        const __mmask16 mk = (__mmask16)((1u << kk) - 1u);
        for (int64_t c0 = 0; c0 < UKR_NR; c0 += 16) {
            __m512i v[16];
            for (int64_t q = 0; q < 16; q++)
                v[q] = c0 + q < nv ? _mm512_maskz_loadu_epi32(mk, B + (c0 + q) * ldb + k0)
                                   : _mm512_setzero_si512();
            fr_transpose16(v);
            for (int64_t q = 0; q < kk; q++)
                _mm512_storeu_si512((void *)(dst + (k0 + q) * UKR_NR + c0), v[q]);
        }
    }
}
#else
#define UKR_PACKT NULL
#endif

/* The path's kernels for the GEMM driver (gemm_kernels.h). */
const SFX(fr_gemm_impl) *VSFX(fr_gemm_impl)(void) {
    static const SFX(fr_gemm_impl) impl = {.pub = {.mr = UKR_MR,
                                                   .nr = UKR_NR,
                                                   .ukr = UKR_NAME,
                                                   .ukr_half = UKR_NAME_HALF,
                                                   .ukr_pair = UKR_NAME_PAIR,
                                                   .ukr_bias = UKR_NAME_BIAS,
                                                   .ukr_bias_half = UKR_NAME_BIAS_HALF},
                                           .gk = UKR_STRIDED,
                                           .packn = UKR_PACKN,
                                           .gk_half = UKR_STRIDED_HALF,
                                           .packt = UKR_PACKT};
    return &impl;
}

#undef UKR_CASES
#undef UKR_CASE
#undef UKR_U
#undef UKR_NR
#undef UKR_MR
#undef UKR_NAME
#undef UKR_NAME_HALF
#undef UKR_NAME_PAIR
#undef UKR_NAME_BIAS
#undef UKR_NAME_BIAS_HALF
#undef UKR_BIAS_TILES
#undef UKR_STRIDED
#undef UKR_STRIDED_HALF
#undef UKR_PACKN
#undef UKR_PACKT
#undef UKR_TILE

#endif
