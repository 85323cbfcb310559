/*
 * simd_math.h — in-register exp, sigmoid and tanh for AVX2+FMA and AVX-512, float and double:
 *
 *   __m256  fr_exp_avx2_ps(__m256 x),    fr_sigmoid_avx2_ps, fr_tanh_avx2_ps
 *   __m256d fr_exp_avx2_pd(__m256d x),   fr_sigmoid_avx2_pd, fr_tanh_avx2_pd
 *   __m512  fr_exp_avx512_ps(__m512 x),  fr_sigmoid_avx512_ps, fr_tanh_avx512_ps
 *   __m512d fr_exp_avx512_pd(__m512d x), fr_sigmoid_avx512_pd, fr_tanh_avx512_pd
 *
 * static inline, with the target attribute of their instruction set (FR_TARGET_AVX2 /
 * FR_TARGET_AVX512 of simd_target.h): call them from functions carrying the same attribute (e.g. a
 * fused cell epilogue) and they inline there. Only defined where FR_X86_SIMD is 1.
 *
 * Accuracy (tests/test_activations.py, against float64 / long double truth): max relative error
 * 2.9e-7 in float (AVX-512, reciprocal estimate + Newton step; AVX2 with division 2.6e-7; libm's
 * expf/tanhf: 1.7e-7), 3.8e-16 in double, over the whole range including denormal inputs and
 * outputs; +-inf saturate (exp: 0 / inf, sigmoid: 0 / 1, tanh: -1 / 1), NaN propagates, tanh keeps
 * the sign of zero. Speed (Zen 4, one core, float, AVX-512): sigmoid 0.31 ns and tanh 0.43 ns per
 * element (with two-step exponent scaling and divisions: 0.39 and 0.52; libm: 7.3 and 14.5 ns).
 * Methods: exp by Cody-Waite reduction, a relative-minimax polynomial (degree 5 float, 11 double)
 * and exponent-bit scaling; sigmoid from exp(-|x|); tanh by an odd polynomial near 0 and
 * (1 - e^{-2|x|}) / (1 + e^{-2|x|}) above. Coefficients: tools/fit_simd_math.py.
 */
#ifndef FASTRNN_SIMD_MATH_H
#define FASTRNN_SIMD_MATH_H

#include "simd_target.h"

#if FR_X86_SIMD

/* exp(r) = 1 + r + r^2 (q0 + q1 r + ...), |r| <= ln2/2: max relative error 1.05e-7 (float), 3.6e-18
   (double) before rounding. */
#define FR_EXPF_Q                                                                                 \
    {0.499992317904068550392f, 0.166671144648807053093f, 0.0418901132755184488068f,              \
     0.00831252494582504344207f}
#define FR_EXPD_Q                                                                                 \
    {0.500000000000001061683, 0.166666666666664127805, 0.0416666666665302653725,                  \
     0.00833333333349433000698, 0.0013888888943597829827, 0.000198412695067859764258,             \
     0.0000248014931360755357382, 0.00000275575862610673460414, 2.76302339509179553539e-7,        \
     2.5000073861388347256e-8}
/* tanh(x) = x + x^3 (c0 + c1 x^2 + ...) for |x| < 0.4 (float: 1.75e-9) / 0.25 (double: 4.1e-18). */
#define FR_TANHF_R                                                                                \
    {-0.3333329871273067154f, 0.133312141661624556668f, -0.0535619369898680492836f,              \
     0.0187440623671916034257f}
#define FR_TANHD_R                                                                                \
    {-0.3333333333333280133, 0.133333333331157870291, -0.0539682536671143444391,                  \
     0.0218694687485285368182, -0.00886253871341476529908, 0.00357858804385566390363,             \
     -0.00131810839148002953849}

/* 1/d for d in [1, 2]: the 14-bit hardware estimate and one Newton step, r + r(1 - d r) (exact at
   d = 1 and 2, so sigmoid(0) = 0.5 and sigmoid(inf) = 1 exactly). AVX2's 12-bit estimate would
   miss 1/1 by an ulp after one step, so AVX2 keeps the division. */
static FR_ALWAYS_INLINE FR_TARGET_AVX512 __m512 fr_recip_avx512_ps(__m512 d) {
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_fmadd_ps(_mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r, r);
}

/* ---- per-dtype constants ---- */
/* 1.5 * 2^(mantissa bits): adding it rounds to an integer kept in the low bits */
#define SM_MAGIC_F 12582912.0f
#define SM_MAGIC_D 6755399441055744.0

/* ---- AVX2 + FMA, float ---- */
#define SM_T float
#define SM_V __m256
#define SM_TARGET FR_TARGET_AVX2
#define SM_FN(name) name##_avx2_ps
#define SM_SET1 _mm256_set1_ps
#define SM_ADD _mm256_add_ps
#define SM_SUB _mm256_sub_ps
#define SM_MUL _mm256_mul_ps
#define SM_DIV _mm256_div_ps
#define SM_FMA _mm256_fmadd_ps
#define SM_FNMA _mm256_fnmadd_ps
#define SM_MIN _mm256_min_ps
#define SM_MAX _mm256_max_ps
#define SM_AND _mm256_and_ps
#define SM_OR _mm256_or_ps
#define SM_ANDNOT _mm256_andnot_ps
#define SM_CMPLT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define SM_BLEND(m, a, b) _mm256_blendv_ps(a, b, m)
#define SM_POW2(t)                                                                                \
    _mm256_castsi256_ps(                                                                          \
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23))
#define SM_MAGIC SM_MAGIC_F
#define SM_LOG2E 1.44269504088896341f
#define SM_LN2_HI 0.693359375f
#define SM_LN2_LO -2.12194440e-4f
#define SM_EXP_LO -104.0f
#define SM_EXP_HI 89.0f
#define SM_EXP_Q FR_EXPF_Q
#define SM_TANH_R FR_TANHF_R
#define SM_TANH_SMALL 0.4f
#include "simd_math_impl.h"

/* ---- AVX2 + FMA, double ---- */
#define SM_T double
#define SM_V __m256d
#define SM_TARGET FR_TARGET_AVX2
#define SM_FN(name) name##_avx2_pd
#define SM_SET1 _mm256_set1_pd
#define SM_ADD _mm256_add_pd
#define SM_SUB _mm256_sub_pd
#define SM_MUL _mm256_mul_pd
#define SM_DIV _mm256_div_pd
#define SM_FMA _mm256_fmadd_pd
#define SM_FNMA _mm256_fnmadd_pd
#define SM_MIN _mm256_min_pd
#define SM_MAX _mm256_max_pd
#define SM_AND _mm256_and_pd
#define SM_OR _mm256_or_pd
#define SM_ANDNOT _mm256_andnot_pd
#define SM_CMPLT(a, b) _mm256_cmp_pd(a, b, _CMP_LT_OQ)
#define SM_BLEND(m, a, b) _mm256_blendv_pd(a, b, m)
#define SM_POW2(t)                                                                                \
    _mm256_castsi256_pd(                                                                          \
        _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52))
#define SM_MAGIC SM_MAGIC_D
#define SM_LOG2E 1.4426950408889634074
#define SM_LN2_HI 6.93147180369123816490e-01
#define SM_LN2_LO 1.90821492927058770002e-10
#define SM_EXP_LO -746.0
#define SM_EXP_HI 710.0
#define SM_EXP_Q FR_EXPD_Q
#define SM_TANH_R FR_TANHD_R
#define SM_TANH_SMALL 0.25
#include "simd_math_impl.h"

/* ---- AVX-512, float ---- */
#define SM_T float
#define SM_V __m512
#define SM_TARGET FR_TARGET_AVX512
#define SM_FN(name) name##_avx512_ps
#define SM_SET1 _mm512_set1_ps
#define SM_ADD _mm512_add_ps
#define SM_SUB _mm512_sub_ps
#define SM_MUL _mm512_mul_ps
#define SM_DIV _mm512_div_ps
#define SM_FMA _mm512_fmadd_ps
#define SM_FNMA _mm512_fnmadd_ps
#define SM_MIN _mm512_min_ps
#define SM_MAX _mm512_max_ps
#define SM_AND _mm512_and_ps
#define SM_OR _mm512_or_ps
#define SM_ANDNOT _mm512_andnot_ps
#define SM_CMPLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define SM_BLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define SM_POW2(t)                                                                                \
    _mm512_castsi512_ps(                                                                          \
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127)), 23))
#define SM_SCALEF(p, n) _mm512_scalef_ps(p, n)
#define SM_RECIP(d) fr_recip_avx512_ps(d)
#define SM_MAGIC SM_MAGIC_F
#define SM_LOG2E 1.44269504088896341f
#define SM_LN2_HI 0.693359375f
#define SM_LN2_LO -2.12194440e-4f
#define SM_EXP_LO -104.0f
#define SM_EXP_HI 89.0f
#define SM_EXP_Q FR_EXPF_Q
#define SM_TANH_R FR_TANHF_R
#define SM_TANH_SMALL 0.4f
#include "simd_math_impl.h"

/* ---- AVX-512, double ---- */
#define SM_T double
#define SM_V __m512d
#define SM_TARGET FR_TARGET_AVX512
#define SM_FN(name) name##_avx512_pd
#define SM_SET1 _mm512_set1_pd
#define SM_ADD _mm512_add_pd
#define SM_SUB _mm512_sub_pd
#define SM_MUL _mm512_mul_pd
#define SM_DIV _mm512_div_pd
#define SM_FMA _mm512_fmadd_pd
#define SM_FNMA _mm512_fnmadd_pd
#define SM_MIN _mm512_min_pd
#define SM_MAX _mm512_max_pd
#define SM_AND _mm512_and_pd
#define SM_OR _mm512_or_pd
#define SM_ANDNOT _mm512_andnot_pd
#define SM_CMPLT(a, b) _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ)
#define SM_BLEND(m, a, b) _mm512_mask_blend_pd(m, a, b)
#define SM_POW2(t)                                                                                \
    _mm512_castsi512_pd(                                                                          \
        _mm512_slli_epi64(_mm512_add_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(1023)), 52))
#define SM_SCALEF(p, n) _mm512_scalef_pd(p, n)
#define SM_MAGIC SM_MAGIC_D
#define SM_LOG2E 1.4426950408889634074
#define SM_LN2_HI 6.93147180369123816490e-01
#define SM_LN2_LO 1.90821492927058770002e-10
#define SM_EXP_LO -746.0
#define SM_EXP_HI 710.0
#define SM_EXP_Q FR_EXPD_Q
#define SM_TANH_R FR_TANHD_R
#define SM_TANH_SMALL 0.25
#include "simd_math_impl.h"

#undef SM_MAGIC_F
#undef SM_MAGIC_D

#endif /* FR_X86_SIMD */
#endif /* FASTRNN_SIMD_MATH_H */
