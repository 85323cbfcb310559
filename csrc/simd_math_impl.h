/*
 * simd_math_impl.h — template body of the in-register exp, sigmoid and tanh of simd_math.h,
 * included once per (instruction set, dtype) after defining the vocabulary:
 *
 *   SM_T (scalar), SM_V (vector), SM_TARGET, SM_FN(name) (the suffixed name),
 *   SM_SET1(x), SM_ADD, SM_SUB, SM_MUL, SM_DIV, SM_FMA(a, b, c) = a*b + c, SM_FNMA(a, b, c) =
 *   c - a*b, SM_MIN(a, b) / SM_MAX(a, b) (b if either is NaN), SM_AND, SM_OR, SM_ANDNOT(a, b) =
 *   ~a & b, SM_CMPLT(a, b) (mask of a < b, false for NaN), SM_BLEND(m, a, b) = m ? b : a,
 *   SM_POW2(t) (2^n as a vector from t = n + SM_MAGIC, n integer),
 *   optional SM_SCALEF(p, n) (p * 2^n for integer-valued n, one rounding: AVX-512's vscalef) and
 *   SM_RECIP(d) (1/d for d in [1, 2] to within an ulp or two, cheaper than a division),
 *   constants SM_MAGIC (1.5 * 2^mantissa bits: adding it rounds to an integer held in the low
 *   bits), SM_LOG2E, SM_LN2_HI, SM_LN2_LO (Cody-Waite split of ln 2), SM_EXP_LO / SM_EXP_HI (exp
 *   is 0 below / inf above), SM_EXP_Q and SM_TANH_R (coefficient lists, ascending),
 *   SM_TANH_SMALL (|x| below which tanh uses its odd polynomial).
 *
 * Then it undefines the vocabulary.
 */

/* exp(x): x = n ln2 + r, |r| <= ln2/2, exp(r) = 1 + r + r^2 Q(r) (relative minimax,
   tools/fit_simd_math.py), times 2^n built in the exponent bits as 2^n1 * 2^n2, n1 = round(n/2),
   so that results down to the smallest denormal are right (one rounding, in the last product).
   NaN propagates, -inf gives 0, +inf gives inf. */
static FR_ALWAYS_INLINE SM_TARGET SM_V SM_FN(fr_exp)(SM_V x) {
    static const SM_T q[] = SM_EXP_Q;
    const int nq = (int)(sizeof(q) / sizeof(q[0]));
    const SM_V one = SM_SET1((SM_T)1), magic = SM_SET1((SM_T)SM_MAGIC);
    x = SM_MIN(SM_SET1((SM_T)SM_EXP_HI), SM_MAX(SM_SET1((SM_T)SM_EXP_LO), x));
    const SM_V t = SM_FMA(x, SM_SET1((SM_T)SM_LOG2E), magic);
    const SM_V n = SM_SUB(t, magic);
    SM_V r = SM_FNMA(n, SM_SET1((SM_T)SM_LN2_HI), x);
    r = SM_FNMA(n, SM_SET1((SM_T)SM_LN2_LO), r);
    SM_V p = SM_SET1(q[nq - 1]);
    for (int i = nq - 2; i >= 0; i--) p = SM_FMA(p, r, SM_SET1(q[i]));
    p = SM_FMA(p, r, one);
    p = SM_FMA(p, r, one);
#ifdef SM_SCALEF
    return SM_SCALEF(p, n);
#else
    const SM_V t1 = SM_FMA(n, SM_SET1((SM_T)0.5), magic);
    const SM_V t2 = SM_ADD(SM_SUB(n, SM_SUB(t1, magic)), magic);
    return SM_MUL(SM_MUL(p, SM_POW2(t1)), SM_POW2(t2));
#endif
}

/* num / d for d in [1, 2] (the denominators of sigmoid and tanh below). */
static FR_ALWAYS_INLINE SM_TARGET SM_V SM_FN(fr_div12)(SM_V num, SM_V d) {
#ifdef SM_RECIP
    return SM_MUL(num, SM_RECIP(d));
#else
    return SM_DIV(num, d);
#endif
}

/* sigmoid(x) = (x < 0 ? e : 1) / (1 + e), e = exp(-|x|): never overflows; 0 at -inf, 1 at +inf;
   NaN propagates. */
static FR_ALWAYS_INLINE SM_TARGET SM_V SM_FN(fr_sigmoid)(SM_V x) {
    const SM_V one = SM_SET1((SM_T)1);
    const SM_V e = SM_FN(fr_exp)(SM_OR(x, SM_SET1((SM_T)-0.0)));
    const SM_V num = SM_BLEND(SM_CMPLT(x, SM_SET1((SM_T)0)), one, e);
    return SM_FN(fr_div12)(num, SM_ADD(one, e));
}

/* tanh(x): for |x| < SM_TANH_SMALL the odd polynomial x + x^3 R(x^2) (exact for tiny and denormal
   x); above, sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) (no cancellation there: e < 0.61).
   +-inf give +-1; NaN propagates. */
static FR_ALWAYS_INLINE SM_TARGET SM_V SM_FN(fr_tanh)(SM_V x) {
    static const SM_T c[] = SM_TANH_R;
    const int nc = (int)(sizeof(c) / sizeof(c[0]));
    const SM_V one = SM_SET1((SM_T)1), sign = SM_SET1((SM_T)-0.0);
    const SM_V a = SM_ANDNOT(sign, x);
    const SM_V a2 = SM_MUL(a, a);
    SM_V p = SM_SET1(c[nc - 1]);
    for (int i = nc - 2; i >= 0; i--) p = SM_FMA(p, a2, SM_SET1(c[i]));
    const SM_V small = SM_FMA(SM_MUL(p, a2), a, a);
    const SM_V e = SM_FN(fr_exp)(SM_MUL(a, SM_SET1((SM_T)-2)));
    const SM_V big = SM_FN(fr_div12)(SM_SUB(one, e), SM_ADD(one, e));
    const SM_V t = SM_BLEND(SM_CMPLT(a, SM_SET1((SM_T)SM_TANH_SMALL)), big, small);
    return SM_OR(t, SM_AND(x, sign)); /* tanh(|x|) >= 0: restore x's sign, -0 included */
}

#undef SM_T
#undef SM_V
#undef SM_TARGET
#undef SM_FN
#undef SM_SET1
#undef SM_ADD
#undef SM_SUB
#undef SM_MUL
#undef SM_DIV
#undef SM_FMA
#undef SM_FNMA
#undef SM_MIN
#undef SM_MAX
#undef SM_AND
#undef SM_OR
#undef SM_ANDNOT
#undef SM_CMPLT
#undef SM_BLEND
#undef SM_POW2
#undef SM_SCALEF
#undef SM_RECIP
#undef SM_MAGIC
#undef SM_LOG2E
#undef SM_LN2_HI
#undef SM_LN2_LO
#undef SM_EXP_LO
#undef SM_EXP_HI
#undef SM_EXP_Q
#undef SM_TANH_R
#undef SM_TANH_SMALL
