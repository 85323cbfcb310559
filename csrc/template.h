/*
 * template.h — the one way the kernels instantiate code per dtype and per SIMD path.
 *
 * Define FR_TEMPLATE as the body's file name (a string), then include this file. The body is
 * compiled once per dtype with
 *
 *   REAL        float, double
 *   SFX(name)   name##_s, name##_d
 *   FR_F32      1, 0
 *
 * With FR_TEMPLATE_SIMD defined as well, it is compiled instead once per (x86 SIMD path, dtype):
 * AVX2 float, AVX2 double, AVX-512 float, AVX-512 double (nothing where FR_X86_SIMD is 0), with
 * REAL, SFX and FR_F32 as above and the vector vocabulary
 *
 *   VSFX(name)  name##_avx2_s, name##_avx2_d, name##_avx512_s, name##_avx512_d
 *   FR_AVX512   0 on the AVX2 path, 1 on the AVX-512 path
 *   VEC, VW     the vector type and its lanes
 *   VTARGET     the path's function target attribute (simd_target.h)
 *   V_OP(op)    the intrinsic of op for the path and dtype (_mm256_op_ps ... _mm512_op_pd)
 *   V_LOAD(p), V_STORE(p, v) (unaligned), V_SET1(x), V_ZERO(), V_ADD, V_SUB, V_MUL, V_DIV,
 *   V_FMA(a, b, c) = a*b + c, V_FNMA(a, b, c) = c - a*b, V_MIN(a, b) / V_MAX(a, b) (b where
 *   either is NaN), V_AND, V_OR, V_ANDNOT(a, b) = ~a & b, V_CMPLT(a, b) (mask of a < b, false
 *   for NaN), V_BLEND(m, a, b) = m ? b : a, V_POW2(t) (2^n from t = n + 1.5 * 2^mantissa bits,
 *   n integer: the exponent bits of n, see simd_math.h), V_LOADN(p, m) / V_STOREN(p, m, v) (the
 *   first m lanes, 1 <= m <= VW: masked, a whole vector at m == VW)
 *
 * A file may be its own body: its first pass (includes, declarations, what is not templated)
 * stands under `#ifndef REAL`, defines FR_TEMPLATE as the file's own name and includes this file;
 * the body stands in the `#else` part (rnn.c, lstm.c, gru.c and recurrence.c read this way).
 *
 * (The four SIMD variants are made by this file including itself with FR_TEMPLATE_VARIANT 1..4.)
 */
#if defined(FR_TEMPLATE_VARIANT) /* one SIMD variant: its vocabulary, the body, undefine */

#if FR_TEMPLATE_VARIANT == 1 /* AVX2 + FMA, float */
#define REAL float
#define SFX(name) name##_s
#define FR_F32 1
#define VSFX(name) name##_avx2_s
#define FR_AVX512 0
#define VEC __m256
#define VW 8
#define VTARGET FR_TARGET_AVX2
#define V_OP(op) _mm256_##op##_ps
#define V_CMPLT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define V_BLEND(m, a, b) _mm256_blendv_ps(a, b, m)
#define V_POW2(t)                                                                                 \
    _mm256_castsi256_ps(                                                                          \
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23))
#define V_LANES(m) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(m)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define V_PLOAD(p, m) _mm256_maskload_ps(p, V_LANES(m))
#define V_PSTORE(p, m, v) _mm256_maskstore_ps(p, V_LANES(m), v)
#elif FR_TEMPLATE_VARIANT == 2 /* AVX2 + FMA, double */
#define REAL double
#define SFX(name) name##_d
#define FR_F32 0
#define VSFX(name) name##_avx2_d
#define FR_AVX512 0
#define VEC __m256d
#define VW 4
#define VTARGET FR_TARGET_AVX2
#define V_OP(op) _mm256_##op##_pd
#define V_CMPLT(a, b) _mm256_cmp_pd(a, b, _CMP_LT_OQ)
#define V_BLEND(m, a, b) _mm256_blendv_pd(a, b, m)
#define V_POW2(t)                                                                                 \
    _mm256_castsi256_pd(                                                                          \
        _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52))
#define V_LANES(m) _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(m)), _mm256_setr_epi64x(0, 1, 2, 3))
#define V_PLOAD(p, m) _mm256_maskload_pd(p, V_LANES(m))
#define V_PSTORE(p, m, v) _mm256_maskstore_pd(p, V_LANES(m), v)
#elif FR_TEMPLATE_VARIANT == 3 /* AVX-512, float */
#define REAL float
#define SFX(name) name##_s
#define FR_F32 1
#define VSFX(name) name##_avx512_s
#define FR_AVX512 1
#define VEC __m512
#define VW 16
#define VTARGET FR_TARGET_AVX512
#define V_OP(op) _mm512_##op##_ps
#define V_CMPLT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define V_BLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define V_POW2(t)                                                                                 \
    _mm512_castsi512_ps(                                                                          \
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127)), 23))
#define V_PLOAD(p, m) _mm512_maskz_loadu_ps((__mmask16)((1u << (m)) - 1), p)
#define V_PSTORE(p, m, v) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (m)) - 1), v)
#else /* AVX-512, double */
#define REAL double
#define SFX(name) name##_d
#define FR_F32 0
#define VSFX(name) name##_avx512_d
#define FR_AVX512 1
#define VEC __m512d
#define VW 8
#define VTARGET FR_TARGET_AVX512
#define V_OP(op) _mm512_##op##_pd
#define V_CMPLT(a, b) _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ)
#define V_BLEND(m, a, b) _mm512_mask_blend_pd(m, a, b)
#define V_POW2(t)                                                                                 \
    _mm512_castsi512_pd(                                                                          \
        _mm512_slli_epi64(_mm512_add_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(1023)), 52))
#define V_PLOAD(p, m) _mm512_maskz_loadu_pd((__mmask8)((1u << (m)) - 1), p)
#define V_PSTORE(p, m, v) _mm512_mask_storeu_pd(p, (__mmask8)((1u << (m)) - 1), v)
#endif
/* The first m lanes (1 <= m <= VW; the others read as 0, not written): a whole vector at m == VW,
   which the always-inlined cell functions see as a constant. */
#define V_LOADN(p, m) ((m) == VW ? V_LOAD(p) : V_PLOAD(p, m))
#define V_STOREN(p, m, v)                                                                         \
    do {                                                                                          \
        if ((m) == VW)                                                                            \
            V_STORE(p, v);                                                                        \
        else                                                                                      \
            V_PSTORE(p, m, v);                                                                    \
    } while (0)
/* V_STOREN for data read back only much later (a training cache), with nt: a whole, aligned
   vector goes around the caches (a non-temporal store: no read of the line before its write).
   The pass ends with fr_stream_fence() (recurrence.h) before another thread may read it. */
#define V_CACHE_STORE(nt, p, m, v)                                                                \
    do {                                                                                          \
        if ((nt) && (m) == VW && ((uintptr_t)(p) & (VW * sizeof(REAL) - 1)) == 0)                 \
            V_OP(stream)(p, v);                                                                   \
        else                                                                                      \
            V_STOREN(p, m, v);                                                                    \
    } while (0)
/* A cell's step results (in a cell's always-inlined pointwise, m lanes): the new state v to h
   and, where y is not NULL, to its output row; and where act (a training cache row) is not NULL,
   the n gate activations ga[0..n) to act + g * as by V_CACHE_STORE. */
#define V_STORE_STEP(nt, h, y, v, act, as, ga, n, m)                                               \
    do {                                                                                          \
        V_STOREN(h, m, v);                                                                        \
        if (y) V_STOREN(y, m, v);                                                                 \
        if (act)                                                                                  \
            for (int g_ = 0; g_ < (n); g_++) V_CACHE_STORE(nt, (act) + g_ * (as), m, (ga)[g_]);   \
    } while (0)

#include FR_TEMPLATE

#undef REAL
#undef SFX
#undef FR_F32
#undef VSFX
#undef FR_AVX512
#undef VEC
#undef VW
#undef VTARGET
#undef V_OP
#undef V_CMPLT
#undef V_BLEND
#undef V_POW2
#undef V_LANES
#undef V_PLOAD
#undef V_PSTORE
#undef V_LOADN
#undef V_STOREN

#elif !defined(FR_TEMPLATE)
#error "define FR_TEMPLATE before including template.h"

#elif !defined(FR_TEMPLATE_SIMD) /* per dtype */

#define REAL float
#define SFX(name) name##_s
#define FR_F32 1
#include FR_TEMPLATE
#undef REAL
#undef SFX
#undef FR_F32

#define REAL double
#define SFX(name) name##_d
#define FR_F32 0
#include FR_TEMPLATE
#undef REAL
#undef SFX
#undef FR_F32

#undef FR_TEMPLATE

#else /* per (SIMD path, dtype) */

#include "simd_target.h"

#if FR_X86_SIMD
#define V_LOAD(p) V_OP(loadu)(p)
#define V_STORE(p, v) V_OP(storeu)(p, v)
#define V_SET1(x) V_OP(set1)(x)
#define V_ZERO() V_OP(setzero)()
#define V_ADD(a, b) V_OP(add)(a, b)
#define V_SUB(a, b) V_OP(sub)(a, b)
#define V_MUL(a, b) V_OP(mul)(a, b)
#define V_DIV(a, b) V_OP(div)(a, b)
#define V_FMA(a, b, c) V_OP(fmadd)(a, b, c)
#define V_FNMA(a, b, c) V_OP(fnmadd)(a, b, c)
#define V_MIN(a, b) V_OP(min)(a, b)
#define V_MAX(a, b) V_OP(max)(a, b)
#define V_AND(a, b) V_OP(and)(a, b)
#define V_OR(a, b) V_OP(or)(a, b)
#define V_ANDNOT(a, b) V_OP(andnot)(a, b)

#define FR_TEMPLATE_VARIANT 1
#include "template.h"
#undef FR_TEMPLATE_VARIANT
#define FR_TEMPLATE_VARIANT 2
#include "template.h"
#undef FR_TEMPLATE_VARIANT
#define FR_TEMPLATE_VARIANT 3
#include "template.h"
#undef FR_TEMPLATE_VARIANT
#define FR_TEMPLATE_VARIANT 4
#include "template.h"
#undef FR_TEMPLATE_VARIANT

#undef V_LOAD
#undef V_STORE
#undef V_SET1
#undef V_ZERO
#undef V_ADD
#undef V_SUB
#undef V_MUL
#undef V_DIV
#undef V_FMA
#undef V_FNMA
#undef V_MIN
#undef V_MAX
#undef V_AND
#undef V_OR
#undef V_ANDNOT
#endif /* FR_X86_SIMD */

#undef FR_TEMPLATE_SIMD
#undef FR_TEMPLATE

#endif
