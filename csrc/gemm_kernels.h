/*
 * gemm_kernels.h — private interface between the GEMM driver (gemm.c) and the microkernels of
 * each SIMD path (gemm_ukr.c). Not part of the public API.
 *
 * Besides the public contract (fr_ukr_*_fn, fastrnn.h), every path provides a strided form used by
 * fr_gemm_* so that it never has to copy A and may read B in place:
 *   C[i*ldc + c] (accumulate ? += : =) sum_{k<K} A[i*rsa + k*csa] * B[k*ldb + c],  i < m <= mr,
 *   c < nr, with rsa == 1 or csa == 1 (A row-wise: rsa = lda, csa = 1; A transposed: rsa = 1,
 *   csa = lda). It reads A only at i < m, k < K and B only at k < K, c < nr.
 * and a panel copy: dst[k*nr + c] = B[k*ldb + c] for k < K, c < nr (a full panel of an
 * untransposed op(B)).
 * and, where a path has one (else NULL), a panel copy of transposed B (packt): dst[k*nr + c] =
 * B[c*ldb + k] for k < K, c < nv, zero for nv <= c < nr (nv <= nr: the panel's source rows).
 * and a half-width strided form (gk_half): the same contract with nr / 2 columns (it reads B and
 * writes C only at c < nr / 2), each column summed in the same order as by the full one, for the
 * last panel of N when its valid columns fit in the first half.
 */
#ifndef FASTRNN_GEMM_KERNELS_H
#define FASTRNN_GEMM_KERNELS_H

#include "fastrnn.h"

/* Bounds on every path's register tile (the driver keeps an edge tile of this size on the stack). */
#define FR_GEMM_MAX_MR 12
#define FR_GEMM_MAX_NR 32

typedef void (*fr_gk_s_fn)(int64_t m, int64_t K, const float *A, int64_t rsa, int64_t csa,
                           const float *B, int64_t ldb, float *C, int64_t ldc, int accumulate);
typedef void (*fr_gk_d_fn)(int64_t m, int64_t K, const double *A, int64_t rsa, int64_t csa,
                           const double *B, int64_t ldb, double *C, int64_t ldc, int accumulate);
typedef void (*fr_packn_s_fn)(float *dst, const float *B, int64_t ldb, int64_t K);
typedef void (*fr_packn_d_fn)(double *dst, const double *B, int64_t ldb, int64_t K);
typedef void (*fr_packt_s_fn)(float *dst, const float *B, int64_t ldb, int64_t K, int64_t nv);
typedef void (*fr_packt_d_fn)(double *dst, const double *B, int64_t ldb, int64_t K, int64_t nv);

/* A path's GEMM kernels: the public microkernel (pub.ukr), its strided form, the panel copy, the
   half-width strided form (pub.nr / 2 columns, the same rows), the transposed panel copy (NULL:
   the driver's portable one). */
typedef struct {
    fr_kernel_s pub;
    fr_gk_s_fn gk;
    fr_packn_s_fn packn;
    fr_gk_s_fn gk_half;
    fr_packt_s_fn packt;
} fr_gemm_impl_s;

typedef struct {
    fr_kernel_d pub;
    fr_gk_d_fn gk;
    fr_packn_d_fn packn;
    fr_gk_d_fn gk_half;
    fr_packt_d_fn packt;
} fr_gemm_impl_d;

/* The kernels of the AVX2+FMA and AVX-512 paths (gemm_ukr.c; only where FR_X86_SIMD is 1). */
const fr_gemm_impl_s *fr_gemm_impl_avx2_s(void);
const fr_gemm_impl_d *fr_gemm_impl_avx2_d(void);
const fr_gemm_impl_s *fr_gemm_impl_avx512_s(void);
const fr_gemm_impl_d *fr_gemm_impl_avx512_d(void);

#endif /* FASTRNN_GEMM_KERNELS_H */
