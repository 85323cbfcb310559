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
 * in float 2.5e-7 (sigmoid) and 2.2e-7 (tanh) on AVX-512 (reciprocal estimate + Newton step;
 * AVX2 with division: 2.4e-7 and 1.7e-7; libm's expf/tanhf: 1.7e-7 and 1.5e-7), 3.4e-16 in
 * double, over the whole range including denormal inputs and outputs; +-inf saturate (exp: 0 /
 * inf, sigmoid: 0 / 1, tanh: -1 / 1), NaN propagates, tanh keeps the sign of zero. Speed (Sapphire
 * Rapids, one core, float, AVX-512, through _kernels.sigmoid / tanh on 8192 elements): sigmoid
 * 0.30 ns and tanh 0.34 ns per element (with exp's upper clamp in sigmoid too, and tanh as an
 * odd polynomial near 0 blended with (1 - e) / (1 + e) above: 0.335 and 0.43 ns). Methods: exp
 * by Cody-Waite reduction, a relative-minimax polynomial (degree 5 float, 11 double) and
 * exponent-bit scaling; sigmoid from exp(-|x|); tanh from m = expm1(-2|x|) as -m / (2 + m),
 * expm1 reduced as exp (degree 6 float, 11 double). Coefficients: tools/fit_simd_math.py.
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
/* expm1(r) = r + r^2 (q0 + q1 r + ...), |r| <= ln2/2: max relative error 1.32e-8 (float), 1.8e-17
   (double) before rounding. */
#define FR_EXPM1F_Q                                                                               \
    {0.499999981551514232877f, 0.166665436701124448737f, 0.0416671996470329958051f,              \
     0.0083665139448539835939f, 0.00138825227029195312029f}
#define FR_EXPM1D_Q                                                                               \
    {0.500000000000000517426, 0.16666666666666589359, 0.0416666666665768259326,                   \
     0.00833333333338950560996, 0.00138888889315394489975, 0.000198412697190832658953,            \
     0.0000248015053064260921036, 0.00000275574075047672402175, 2.76260242015072006818e-7,        \
     2.50537754135782235902e-8}

#define FR_TEMPLATE "simd_math.h"
#define FR_TEMPLATE_SIMD
#include "template.h"

#endif /* FASTRNN_SIMD_MATH_H */
#else /* the body, per (SIMD path, dtype) */

/* Per-dtype constants: SM_MAGIC (1.5 * 2^mantissa bits: adding it rounds to an integer held in the
   low bits), SM_LOG2E, SM_LN2_HI, SM_LN2_LO (Cody-Waite split of ln 2), SM_EXP_LO / SM_EXP_HI
   (exp is 0 below / inf above), SM_EXP_Q and SM_EXPM1_Q (coefficient lists, ascending),
   SM_TANH_LO (tanh's clamp of -2|x|: exp(SM_TANH_LO) is below half an ulp of 1, so that tanh
   rounds to +-1 there). */
#if FR_F32
#define SM_MAGIC 12582912.0f
#define SM_LOG2E 1.44269504088896341f
#define SM_LN2_HI 0.693359375f
#define SM_LN2_LO -2.12194440e-4f
#define SM_EXP_LO -104.0f
#define SM_EXP_HI 89.0f
#define SM_EXP_Q FR_EXPF_Q
#define SM_EXPM1_Q FR_EXPM1F_Q
#define SM_TANH_LO -20.0f
#else
#define SM_MAGIC 6755399441055744.0
#define SM_LOG2E 1.4426950408889634074
#define SM_LN2_HI 6.93147180369123816490e-01
#define SM_LN2_LO 1.90821492927058770002e-10
#define SM_EXP_LO -746.0
#define SM_EXP_HI 710.0
#define SM_EXP_Q FR_EXPD_Q
#define SM_EXPM1_Q FR_EXPM1D_Q
#define SM_TANH_LO -40.0
#endif

/* The _n forms below apply a function to n vectors (n <= SM_NMAX, a constant after inlining) in
   place, one step of the method across all of them before the next: n independent chains
   side by side in the instruction stream, which the out-of-order core overlaps where one
   vector's chain alone would wait on latencies. Each element's operations are those of the
   one-vector form, in the same order: the same bits. */
#define SM_NMAX 8
#define SM_EACH(k, n) for (int k = 0; k < (n); k++)

/* The reduction that exp and tanh's expm1 share: x = n ln2 + r, |r| <= ln2/2 (Cody-Waite), with
   t = n + SM_MAGIC (n in its low bits, for V_POW2) and nn = n as a float. */
static FR_ALWAYS_INLINE VTARGET void VSFX(fr_vreduce_n)(const VEC *x, VEC *t, VEC *nn, VEC *r,
                                                        const int n) {
    const VEC magic = V_SET1((REAL)SM_MAGIC);
    SM_EACH(k, n) t[k] = V_FMA(x[k], V_SET1((REAL)SM_LOG2E), magic);
    SM_EACH(k, n) nn[k] = V_SUB(t[k], magic);
    SM_EACH(k, n) r[k] = V_FNMA(nn[k], V_SET1((REAL)SM_LN2_HI), x[k]);
    SM_EACH(k, n) r[k] = V_FNMA(nn[k], V_SET1((REAL)SM_LN2_LO), r[k]);
}

/* p = q[0] + q[1] r + ... + q[nq-1] r^(nq-1) by Horner's rule, for n vectors. */
static FR_ALWAYS_INLINE VTARGET void VSFX(fr_vpoly_n)(VEC *p, const VEC *r, const REAL *q,
                                                      const int nq, const int n) {
    SM_EACH(k, n) p[k] = V_SET1(q[nq - 1]);
    for (int i = nq - 2; i >= 0; i--) SM_EACH(k, n) p[k] = V_FMA(p[k], r[k], V_SET1(q[i]));
}

/* exp(x): x = n ln2 + r, |r| <= ln2/2, exp(r) = 1 + r + r^2 Q(r) (relative minimax,
   tools/fit_simd_math.py), times 2^n: on AVX-512 by vscalef (one rounding), on AVX2 built in the
   exponent bits as 2^n1 * 2^n2, n1 = round(n/2), so that results down to the smallest denormal are
   right (one rounding, in the last product). NaN propagates, -inf gives 0, +inf gives inf. nonpos
   (a constant after inlining): every x is <= 0 or NaN (sigmoid's argument), so that only the
   lower clamp applies. */
static FR_ALWAYS_INLINE VTARGET void VSFX(fr_vexp_n)(VEC *x, const int n, const int nonpos) {
    static const REAL q[] = SM_EXP_Q;
    const int nq = (int)(sizeof(q) / sizeof(q[0]));
    const VEC one = V_SET1((REAL)1);
    VEC t[SM_NMAX], nn[SM_NMAX], r[SM_NMAX], p[SM_NMAX];
    SM_EACH(k, n) x[k] = V_MAX(V_SET1((REAL)SM_EXP_LO), x[k]);
    if (!nonpos) SM_EACH(k, n) x[k] = V_MIN(V_SET1((REAL)SM_EXP_HI), x[k]);
    VSFX(fr_vreduce_n)(x, t, nn, r, n);
    VSFX(fr_vpoly_n)(p, r, q, nq, n);
    SM_EACH(k, n) p[k] = V_FMA(p[k], r[k], one);
    SM_EACH(k, n) p[k] = V_FMA(p[k], r[k], one);
#if FR_AVX512
    SM_EACH(k, n) x[k] = V_OP(scalef)(p[k], nn[k]);
#else
    const VEC magic = V_SET1((REAL)SM_MAGIC);
    SM_EACH(k, n) {
        const VEC t1 = V_FMA(nn[k], V_SET1((REAL)0.5), magic);
        const VEC t2 = V_ADD(V_SUB(nn[k], V_SUB(t1, magic)), magic);
        x[k] = V_MUL(V_MUL(p[k], V_POW2(t1)), V_POW2(t2));
    }
#endif
}

static FR_ALWAYS_INLINE VTARGET VEC VSFX(fr_vexp)(VEC x) {
    VSFX(fr_vexp_n)(&x, 1, 0);
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
    VSFX(fr_vexp_n)(e, n, 1);
    SM_EACH(k, n) {
        const VEC num = V_BLEND(V_CMPLT(x[k], V_SET1((REAL)0)), one, e[k]);
        x[k] = VSFX(fr_vdiv12)(num, V_ADD(one, e[k]));
    }
}

static FR_ALWAYS_INLINE VTARGET VEC VSFX(fr_vsigmoid)(VEC x) {
    VSFX(fr_vsigmoid_n)(&x, 1);
    return x;
}

/* tanh(x) = sign(x) (-m) / (2 + m), m = expm1(-2|x|) in [-1, 0]: no cancellation anywhere, and
   tanh(x) = x exactly for tiny and denormal x. expm1(e): e = n ln2 + r as in exp, expm1(r) =
   r + r^2 Q1(r) (relative minimax, tools/fit_simd_math.py), m = 2^n expm1(r) + (2^n - 1) in one
   fused rounding. -2|x| is clamped at SM_TANH_LO, below which tanh rounds to +-1 (so 2^n stays
   a normal number). +-inf give +-1; NaN propagates; the sign of zero is kept. */
static FR_ALWAYS_INLINE VTARGET void VSFX(fr_vtanh_n)(VEC *x, const int n) {
    static const REAL q[] = SM_EXPM1_Q;
    const int nq = (int)(sizeof(q) / sizeof(q[0]));
    const VEC one = V_SET1((REAL)1), sign = V_SET1((REAL)-0.0);
    VEC e[SM_NMAX], t[SM_NMAX], nn[SM_NMAX], r[SM_NMAX], p[SM_NMAX];
    SM_EACH(k, n) e[k] = V_MUL(V_ANDNOT(sign, x[k]), V_SET1((REAL)-2));
    SM_EACH(k, n) e[k] = V_MAX(V_SET1((REAL)SM_TANH_LO), e[k]);
    VSFX(fr_vreduce_n)(e, t, nn, r, n);
    VSFX(fr_vpoly_n)(p, r, q, nq, n);
    SM_EACH(k, n) p[k] = V_FMA(p[k], V_MUL(r[k], r[k]), r[k]); /* expm1(r) */
    SM_EACH(k, n) {
#if FR_AVX512
        const VEC s = V_OP(scalef)(one, nn[k]); /* 2^n */
#else
        const VEC s = V_POW2(t[k]);
#endif
        const VEC m = V_FMA(p[k], s, V_SUB(s, one));
        const VEC th = VSFX(fr_vdiv12)(m, V_ADD(V_SET1((REAL)2), m)); /* -tanh(|x|) */
        x[k] = V_OR(V_ANDNOT(sign, th), V_AND(x[k], sign)); /* x's sign, -0 included */
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
#undef SM_EXPM1_Q
#undef SM_TANH_LO
#undef SM_NMAX
#undef SM_EACH

#endif
