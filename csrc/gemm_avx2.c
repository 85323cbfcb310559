/*
 * gemm_avx2.c — AVX2+FMA GEMM microkernels: sgemm_avx2_6x16 and dgemm_avx2_6x8
 * (6 rows x 2 ymm vectors: 12 accumulators, 2 panel loads and 6 broadcasts per k, the BLIS
 * Haswell/Zen shape).
 * Compiled with function-level target attributes; cpu.c selects them at run time.
 */
#include "gemm_kernels.h"
#include "simd_target.h"

#if FR_X86_SIMD

#define UKR_REAL float
#define UKR_VT __m256
#define UKR_VW 8
#define UKR_MR 6
#define UKR_TARGET FR_TARGET_AVX2
#define UKR_NAME sgemm_avx2_6x16
#define UKR_LOAD(p) _mm256_loadu_ps(p)
#define UKR_STORE(p, v) _mm256_storeu_ps(p, v)
#define UKR_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define UKR_SET1(x) _mm256_set1_ps(x)
#define UKR_ZERO() _mm256_setzero_ps()
#define UKR_ADD(a, b) _mm256_add_ps(a, b)
#include "gemm_ukr.h"

#define UKR_REAL double
#define UKR_VT __m256d
#define UKR_VW 4
#define UKR_MR 6
#define UKR_TARGET FR_TARGET_AVX2
#define UKR_NAME dgemm_avx2_6x8
#define UKR_LOAD(p) _mm256_loadu_pd(p)
#define UKR_STORE(p, v) _mm256_storeu_pd(p, v)
#define UKR_FMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define UKR_SET1(x) _mm256_set1_pd(x)
#define UKR_ZERO() _mm256_setzero_pd()
#define UKR_ADD(a, b) _mm256_add_pd(a, b)
#include "gemm_ukr.h"

static const fr_gemm_impl_s impl_s = {{6, 16, sgemm_avx2_6x16}, sgemm_avx2_6x16_strided,
                                       sgemm_avx2_6x16_packn};
static const fr_gemm_impl_d impl_d = {{6, 8, dgemm_avx2_6x8}, dgemm_avx2_6x8_strided,
                                       dgemm_avx2_6x8_packn};

const fr_gemm_impl_s *fr_gemm_impl_avx2_s(void) { return &impl_s; }
const fr_gemm_impl_d *fr_gemm_impl_avx2_d(void) { return &impl_d; }

#else

const fr_gemm_impl_s *fr_gemm_impl_avx2_s(void) { return NULL; }
const fr_gemm_impl_d *fr_gemm_impl_avx2_d(void) { return NULL; }

#endif
