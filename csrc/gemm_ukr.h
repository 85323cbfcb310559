/*
 * gemm_ukr.h — template body of a register-blocked microkernel computing an m x NR tile,
 * m <= UKR_MR, NR = 2 vectors. Included once per (instruction set, dtype) by gemm_avx2.c and
 * gemm_avx512.c after defining the vocabulary:
 *
 *   UKR_REAL, UKR_VT (vector type), UKR_VW (lanes), UKR_MR (max rows, <= 8), UKR_TARGET
 *   (function target attribute), UKR_NAME (the microkernel's name, by shape: sgemm_avx2_6x16),
 *   UKR_LOAD(p), UKR_STORE(p, v) (unaligned), UKR_FMA(a, b, c) = a*b + c, UKR_SET1(x),
 *   UKR_ZERO(), UKR_ADD(a, b).
 *
 * It defines UKR_NAME (the public contract fr_ukr_*_fn of fastrnn.h), UKR_NAME##_strided (the
 * strided form of gemm_kernels.h) and UKR_NAME##_packn (its panel copy), then undefines the
 * vocabulary.
 *
 * Each row count m = 1..UKR_MR gets its own fully unrolled code (a switch over an inlined body
 * with constant m). Rows share each loaded B vector; few rows leave the FMA units idle while they
 * wait on the previous FMA of the same accumulator, so small m also splits k over `u` independent
 * accumulator sets (about 8 chains in flight, enough for two FMA pipes of latency 4), summed in a
 * fixed order at the end: m = 1 (batch-1 matrix-vector steps) runs 4 sets, m = 2, 3 run 2.
 */
#if UKR_MR > 8 || UKR_MR < 4
#error "gemm_ukr.h supports 4 <= UKR_MR <= 8"
#endif

#define UKR_CAT2(a, b) a##b
#define UKR_CAT(a, b) UKR_CAT2(a, b)
#define UKR_TILE UKR_CAT(UKR_NAME, _tile)
#define UKR_STRIDED UKR_CAT(UKR_NAME, _strided)
#define UKR_PACKN UKR_CAT(UKR_NAME, _packn)
#define UKR_NR (2 * UKR_VW)
/* Independent accumulator sets over k for m rows. */
#define UKR_U(m) ((m) == 1 ? 4 : (m) <= 3 ? 2 : 1)

/* The m x NR tile; m, u and acol (A transposed: rsa = 1) are constants after inlining. */
static FR_ALWAYS_INLINE UKR_TARGET void UKR_TILE(const int m, const int u, const int acol,
                                                 int64_t K, const UKR_REAL *A, int64_t lda,
                                                 const UKR_REAL *B, int64_t ldb, UKR_REAL *C,
                                                 int64_t ldc, int accumulate) {
    const int64_t rs = acol ? 1 : lda, cs = acol ? lda : 1;
    UKR_VT acc[4][UKR_MR][2];
    for (int i = 0; i < m; i++) {
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + i * ldc + UKR_NR - 1), _MM_HINT_T0);
    }
    for (int s = 0; s < u; s++)
        for (int i = 0; i < m; i++) acc[s][i][0] = acc[s][i][1] = UKR_ZERO();
    int64_t k = 0;
    for (; k + u <= K; k += u) {
        for (int s = 0; s < u; s++) {
            const UKR_REAL *b = B + (k + s) * ldb;
            const UKR_VT b0 = UKR_LOAD(b), b1 = UKR_LOAD(b + UKR_VW);
            const UKR_REAL *a = A + (k + s) * cs;
            for (int i = 0; i < m; i++) {
                const UKR_VT ai = UKR_SET1(a[i * rs]);
                acc[s][i][0] = UKR_FMA(ai, b0, acc[s][i][0]);
                acc[s][i][1] = UKR_FMA(ai, b1, acc[s][i][1]);
            }
        }
    }
    for (; k < K; k++) { /* only when u > 1 */
        const UKR_REAL *b = B + k * ldb;
        const UKR_VT b0 = UKR_LOAD(b), b1 = UKR_LOAD(b + UKR_VW);
        const UKR_REAL *a = A + k * cs;
        for (int i = 0; i < m; i++) {
            const UKR_VT ai = UKR_SET1(a[i * rs]);
            acc[0][i][0] = UKR_FMA(ai, b0, acc[0][i][0]);
            acc[0][i][1] = UKR_FMA(ai, b1, acc[0][i][1]);
        }
    }
    for (int s = 1; s < u; s++)
        for (int i = 0; i < m; i++) {
            acc[0][i][0] = UKR_ADD(acc[0][i][0], acc[s][i][0]);
            acc[0][i][1] = UKR_ADD(acc[0][i][1], acc[s][i][1]);
        }
    for (int i = 0; i < m; i++) {
        UKR_REAL *c = C + i * ldc;
        if (accumulate) {
            acc[0][i][0] = UKR_ADD(acc[0][i][0], UKR_LOAD(c));
            acc[0][i][1] = UKR_ADD(acc[0][i][1], UKR_LOAD(c + UKR_VW));
        }
        UKR_STORE(c, acc[0][i][0]);
        UKR_STORE(c + UKR_VW, acc[0][i][1]);
    }
}

#define UKR_CASE(mm, acol, ld)                                                                    \
    case mm:                                                                                      \
        UKR_TILE(mm, UKR_U(mm), acol, K, A, ld, B, ldb, C, ldc, accumulate);                      \
        break;
#if UKR_MR == 8
#define UKR_CASES(acol, ld)                                                                       \
    UKR_CASE(1, acol, ld) UKR_CASE(2, acol, ld) UKR_CASE(3, acol, ld) UKR_CASE(4, acol, ld)       \
    UKR_CASE(5, acol, ld) UKR_CASE(6, acol, ld) UKR_CASE(7, acol, ld) UKR_CASE(8, acol, ld)
#elif UKR_MR == 6
#define UKR_CASES(acol, ld)                                                                       \
    UKR_CASE(1, acol, ld) UKR_CASE(2, acol, ld) UKR_CASE(3, acol, ld) UKR_CASE(4, acol, ld)       \
    UKR_CASE(5, acol, ld) UKR_CASE(6, acol, ld)
#else
#error "add the UKR_CASES list for this UKR_MR"
#endif

/* Strided form (gemm_kernels.h): row-wise A when csa == 1, else transposed A (rsa == 1). */
static UKR_TARGET void UKR_STRIDED(int64_t m, int64_t K, const UKR_REAL *A, int64_t rsa,
                                   int64_t csa, const UKR_REAL *B, int64_t ldb, UKR_REAL *C,
                                   int64_t ldc, int accumulate) {
    if (csa == 1) {
        switch (m) { UKR_CASES(0, rsa) default: break; }
    } else {
        switch (m) { UKR_CASES(1, csa) default: break; }
    }
}

/* Public microkernel (fr_ukr_*_fn): Bp is one packed K x NR panel. */
static void UKR_NAME(int64_t m, int64_t K, const UKR_REAL *A, int64_t lda, const UKR_REAL *Bp,
                     UKR_REAL *C, int64_t ldc, int accumulate) {
    UKR_STRIDED(m, K, A, lda, 1, Bp, UKR_NR, C, ldc, accumulate);
}

/* Panel copy (gemm_kernels.h): K rows of NR elements at stride ldb into a contiguous panel. */
static UKR_TARGET void UKR_PACKN(UKR_REAL *dst, const UKR_REAL *B, int64_t ldb, int64_t K) {
    for (int64_t k = 0; k < K; k++) {
        const UKR_VT b0 = UKR_LOAD(B + k * ldb), b1 = UKR_LOAD(B + k * ldb + UKR_VW);
        UKR_STORE(dst + k * UKR_NR, b0);
        UKR_STORE(dst + k * UKR_NR + UKR_VW, b1);
    }
}

#undef UKR_CASES
#undef UKR_CASE
#undef UKR_U
#undef UKR_NR
#undef UKR_STRIDED
#undef UKR_PACKN
#undef UKR_TILE
#undef UKR_CAT
#undef UKR_CAT2
#undef UKR_REAL
#undef UKR_VT
#undef UKR_VW
#undef UKR_MR
#undef UKR_TARGET
#undef UKR_NAME
#undef UKR_LOAD
#undef UKR_STORE
#undef UKR_FMA
#undef UKR_SET1
#undef UKR_ZERO
#undef UKR_ADD
