/*
 * gemm_avx512.c — AVX-512 GEMM microkernels: sgemm_avx512_8x32 and dgemm_avx512_8x16
 * (8 rows x 2 zmm vectors: 16 accumulators, 2 panel loads and 8 broadcasts per k).
 * Compiled with function-level target attributes; cpu.c selects them at run time.
 */
#include "gemm_kernels.h"
#include "simd_target.h"

#if FR_X86_SIMD

#define UKR_REAL float
#define UKR_VT __m512
#define UKR_VW 16
#define UKR_MR 8
#define UKR_TARGET FR_TARGET_AVX512
#define UKR_NAME sgemm_avx512_8x32
#define UKR_LOAD(p) _mm512_loadu_ps(p)
#define UKR_STORE(p, v) _mm512_storeu_ps(p, v)
#define UKR_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define UKR_SET1(x) _mm512_set1_ps(x)
#define UKR_ZERO() _mm512_setzero_ps()
#define UKR_ADD(a, b) _mm512_add_ps(a, b)
#include "gemm_ukr.h"

#define UKR_REAL double
#define UKR_VT __m512d
#define UKR_VW 8
#define UKR_MR 8
#define UKR_TARGET FR_TARGET_AVX512
#define UKR_NAME dgemm_avx512_8x16
#define UKR_LOAD(p) _mm512_loadu_pd(p)
#define UKR_STORE(p, v) _mm512_storeu_pd(p, v)
#define UKR_FMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define UKR_SET1(x) _mm512_set1_pd(x)
#define UKR_ZERO() _mm512_setzero_pd()
#define UKR_ADD(a, b) _mm512_add_pd(a, b)
#include "gemm_ukr.h"

static const fr_gemm_impl_s impl_s = {{8, 32, sgemm_avx512_8x32}, sgemm_avx512_8x32_strided,
                                       sgemm_avx512_8x32_packn};
static const fr_gemm_impl_d impl_d = {{8, 16, dgemm_avx512_8x16}, dgemm_avx512_8x16_strided,
                                       dgemm_avx512_8x16_packn};

const fr_gemm_impl_s *fr_gemm_impl_avx512_s(void) { return &impl_s; }
const fr_gemm_impl_d *fr_gemm_impl_avx512_d(void) { return &impl_d; }

#else

const fr_gemm_impl_s *fr_gemm_impl_avx512_s(void) { return NULL; }
const fr_gemm_impl_d *fr_gemm_impl_avx512_d(void) { return NULL; }

#endif
