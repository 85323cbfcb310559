/*
 * simd_math.h — in-register exp, sigmoid and tanh for AVX2+FMA and AVX-512, float and double,
 * instantiated per (SIMD path, dtype) through template.h (this file is its own body):
 *
 *   VEC fr_vexp_<path>_<s|d>(VEC x), fr_vsigmoid_<path>_<s|d>, fr_vtanh_<path>_<s|d>
 *   (path avx2 or avx512; in a body of template.h's SIMD mode: VSFX(fr_vsigmoid)(x) ...)
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
#ifndef REAL
#ifndef FASTRNN_SIMD_MATH_H
#define FASTRNN_SIMD_MATH_H

#include "simd_target.h"

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

#define FR_TEMPLATE "simd_math.h"
#define FR_TEMPLATE_SIMD
#include "template.h"

#endif /* FASTRNN_SIMD_MATH_H */
#else /* the body, per (SIMD path, dtype) */

/* Per-dtype constants: SM_MAGIC (1.5 * 2^mantissa bits: adding it rounds to an integer held in the
   low bits), SM_LOG2E, SM_LN2_HI, SM_LN2_LO (Cody-Waite split of ln 2), SM_EXP_LO / SM_EXP_HI
   (exp is 0 below / inf above), SM_EXP_Q and SM_TANH_R (coefficient lists, ascending),
   SM_TANH_SMALL (|x| below which tanh uses its odd polynomial). */
#if FR_F32
#define SM_MAGIC 12582912.0f
#define SM_LOG2E 1.44269504088896341f
#define SM_LN2_HI 0.693359375f
#define SM_LN2_LO -2.12194440e-4f
#define SM_EXP_LO -104.0f
#define SM_EXP_HI 89.0f
#define SM_EXP_Q FR_EXPF_Q
#define SM_TANH_R FR_TANHF_R
#define SM_TANH_SMALL 0.4f
#else
#define SM_MAGIC 6755399441055744.0
#define SM_LOG2E 1.4426950408889634074
#define SM_LN2_HI 6.93147180369123816490e-01
#define SM_LN2_LO 1.90821492927058770002e-10
#define SM_EXP_LO -746.0
#define SM_EXP_HI 710.0
#define SM_EXP_Q FR_EXPD_Q
#define SM_TANH_R FR_TANHD_R
#define SM_TANH_SMALL 0.25
#endif

/* The _n forms below apply a function to n vectors (n <= SM_NMAX, a constant after inlining) in
   place, one step of the method across all of them before the next: n independent chains
   side by side in the instruction stream, which the out-of-order core overlaps where one
   vector's chain alone would wait on latencies. Each element's operations are those of the
   one-vector form, in the same order: the same bits. */
#define SM_NMAX 8
#define SM_EACH(k, n) for (int k = 0; k < (n); k++)

/* exp(x): x = n ln2 + r, |r| <= ln2/2, exp(r) = 1 + r + r^2 Q(r) (relative minimax,
   tools/fit_simd_math.py), times 2^n: on AVX-512 by vscalef (one rounding), on AVX2 built in the
   exponent bits as 2^n1 * 2^n2, n1 = round(n/2), so that results down to the smallest denormal are
   right (one rounding, in the last product). NaN propagates, -inf gives 0, +inf gives inf. */
static FR_ALWAYS_INLINE VTARGET void VSFX(fr_vexp_n)(VEC *x, const int n) {
    static const REAL q[] = SM_EXP_Q;
    const int nq = (int)(sizeof(q) / sizeof(q[0]));
    const VEC one = V_SET1((REAL)1), magic = V_SET1((REAL)SM_MAGIC);
    VEC nn[SM_NMAX], r[SM_NMAX], p[SM_NMAX];
    SM_EACH(k, n) x[k] = V_MIN(V_SET1((REAL)SM_EXP_HI), V_MAX(V_SET1((REAL)SM_EXP_LO), x[k]));
    SM_EACH(k, n) nn[k] = V_SUB(V_FMA(x[k], V_SET1((REAL)SM_LOG2E), magic), magic);
    SM_EACH(k, n) r[k] = V_FNMA(nn[k], V_SET1((REAL)SM_LN2_HI), x[k]);
    SM_EACH(k, n) r[k] = V_FNMA(nn[k], V_SET1((REAL)SM_LN2_LO), r[k]);
    SM_EACH(k, n) p[k] = V_SET1(q[nq - 1]);
    for (int i = nq - 2; i >= 0; i--) SM_EACH(k, n) p[k] = V_FMA(p[k], r[k], V_SET1(q[i]));
    SM_EACH(k, n) p[k] = V_FMA(p[k], r[k], one);
    SM_EACH(k, n) p[k] = V_FMA(p[k], r[k], one);
#if FR_AVX512
    SM_EACH(k, n) x[k] = V_OP(scalef)(p[k], nn[k]);
#else
    SM_EACH(k, n) {
        const VEC t1 = V_FMA(nn[k], V_SET1((REAL)0.5), magic);
        const VEC t2 = V_ADD(V_SUB(nn[k], V_SUB(t1, magic)), magic);
        x[k] = V_MUL(V_MUL(p[k], V_POW2(t1)), V_POW2(t2));
    }
#endif
}

static FR_ALWAYS_INLINE VTARGET VEC VSFX(fr_vexp)(VEC x) {
    VSFX(fr_vexp_n)(&x, 1);
    return x;
}

/* num / d for d in [1, 2] (the denominators of sigmoid and tanh below). AVX-512 float: the 14-bit
   reciprocal estimate and one Newton step, r + r(1 - d r) (exact at d = 1 and 2, so sigmoid(0) =
   0.5 and sigmoid(inf) = 1 exactly), cheaper than a division. AVX2's 12-bit estimate would miss
   1/1 by an ulp after one step, so AVX2 (and double) keep the division. */
static FR_ALWAYS_INLINE VTARGET VEC VSFX(fr_vdiv12)(VEC num, VEC d) {
#if FR_AVX512 && FR_F32
    const VEC r = _mm512_rcp14_ps(d);
    return V_MUL(num, V_FMA(V_FNMA(d, r, V_SET1(1.0f)), r, r));
#else
    return V_DIV(num, d);
#endif
}

/* sigmoid(x) = (x < 0 ? e : 1) / (1 + e), e = exp(-|x|): never overflows; 0 at -inf, 1 at +inf;
   NaN propagates. */
static FR_ALWAYS_INLINE VTARGET void VSFX(fr_vsigmoid_n)(VEC *x, const int n) {
    const VEC one = V_SET1((REAL)1);
    VEC e[SM_NMAX];
    SM_EACH(k, n) e[k] = V_OR(x[k], V_SET1((REAL)-0.0));
    VSFX(fr_vexp_n)(e, n);
    SM_EACH(k, n) {
        const VEC num = V_BLEND(V_CMPLT(x[k], V_SET1((REAL)0)), one, e[k]);
        x[k] = VSFX(fr_vdiv12)(num, V_ADD(one, e[k]));
    }
}

static FR_ALWAYS_INLINE VTARGET VEC VSFX(fr_vsigmoid)(VEC x) {
    VSFX(fr_vsigmoid_n)(&x, 1);
    return x;
}

/* tanh(x): for |x| < SM_TANH_SMALL the odd polynomial x + x^3 R(x^2) (exact for tiny and denormal
   x); above, sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) (no cancellation there: e < 0.61).
   +-inf give +-1; NaN propagates. */
static FR_ALWAYS_INLINE VTARGET void VSFX(fr_vtanh_n)(VEC *x, const int n) {
    static const REAL c[] = SM_TANH_R;
    const int nc = (int)(sizeof(c) / sizeof(c[0]));
    const VEC one = V_SET1((REAL)1), sign = V_SET1((REAL)-0.0);
    VEC a[SM_NMAX], small[SM_NMAX], e[SM_NMAX];
    SM_EACH(k, n) a[k] = V_ANDNOT(sign, x[k]);
    SM_EACH(k, n) {
        const VEC a2 = V_MUL(a[k], a[k]);
        VEC p = V_SET1(c[nc - 1]);
        for (int i = nc - 2; i >= 0; i--) p = V_FMA(p, a2, V_SET1(c[i]));
        small[k] = V_FMA(V_MUL(p, a2), a[k], a[k]);
    }
    SM_EACH(k, n) e[k] = V_MUL(a[k], V_SET1((REAL)-2));
    VSFX(fr_vexp_n)(e, n);
    SM_EACH(k, n) {
        const VEC big = VSFX(fr_vdiv12)(V_SUB(one, e[k]), V_ADD(one, e[k]));
        const VEC t = V_BLEND(V_CMPLT(a[k], V_SET1((REAL)SM_TANH_SMALL)), big, small[k]);
        x[k] = V_OR(t, V_AND(x[k], sign)); /* tanh(|x|) >= 0: restore x's sign, -0 included */
    }
}

static FR_ALWAYS_INLINE VTARGET VEC VSFX(fr_vtanh)(VEC x) {
    VSFX(fr_vtanh_n)(&x, 1);
    return x;
}

#undef SM_MAGIC
#undef SM_LOG2E
#undef SM_LN2_HI
#undef SM_LN2_LO
#undef SM_EXP_LO
#undef SM_EXP_HI
#undef SM_EXP_Q
#undef SM_TANH_R
#undef SM_TANH_SMALL
#undef SM_NMAX
#undef SM_EACH

#endif
