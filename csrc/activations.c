/*
 * activations.c — elementwise sigmoid and tanh over arrays, dispatched on the SIMD path in use
 * (fr_get_arch()). The AVX2 and AVX-512 loops apply the in-register functions of simd_math.h; the
 * portable versions use libm and are the accuracy reference for the SIMD ones. This file is its
 * own template body (template.h): the SIMD loops per (path, dtype), then the portable versions and
 * the public functions per dtype.
 */
#ifndef REAL
#include <math.h>
#include <string.h>

#include "fastrnn.h"
#include "simd_math.h"

#define FR_TEMPLATE "activations.c"
#define FR_TEMPLATE_SIMD
#include "template.h"
#define FR_TEMPLATE "activations.c"
#include "template.h"

#elif defined(VEC) /* the SIMD loops of one (path, dtype) */

/* y[i] = FN(x[i]) a vector at a time; the last partial vector goes through a zero-padded copy on
   the stack, so nothing is read or written past n. */
#define ACT_LOOP(NAME, FN)                                                                        \
    static VTARGET void VSFX(NAME)(REAL * y, const REAL *x, int64_t n) {                          \
        int64_t i = 0;                                                                            \
        for (; i + VW <= n; i += VW) V_STORE(y + i, VSFX(FN)(V_LOAD(x + i)));                     \
        if (i < n) {                                                                              \
            REAL buf[VW];                                                                         \
            memset(buf, 0, sizeof(buf));                                                          \
            memcpy(buf, x + i, (size_t)(n - i) * sizeof(REAL));                                   \
            V_STORE(buf, VSFX(FN)(V_LOAD(buf)));                                                  \
            memcpy(y + i, buf, (size_t)(n - i) * sizeof(REAL));                                   \
        }                                                                                         \
    }
ACT_LOOP(sigmoid, fr_vsigmoid)
ACT_LOOP(tanh, fr_vtanh)
#undef ACT_LOOP

#else /* the portable versions and the public functions of one dtype */

#if FR_F32
#define ACT_EXP expf
#define ACT_TANH tanhf
#else
#define ACT_EXP exp
#define ACT_TANH tanh
#endif

static void SFX(sigmoid_generic)(REAL *y, const REAL *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const REAL v = x[i];
        if (v >= (REAL)0) {
            y[i] = (REAL)1 / ((REAL)1 + ACT_EXP(-v));
        } else {
            const REAL e = ACT_EXP(v);
            y[i] = e / ((REAL)1 + e);
        }
    }
}

static void SFX(tanh_generic)(REAL *y, const REAL *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = ACT_TANH(x[i]);
}

void SFX(fr_sigmoid)(REAL *y, const REAL *x, int64_t n) {
    FR_BY_ARCH(fr_get_arch(), SFX(sigmoid_avx512), SFX(sigmoid_avx2), SFX(sigmoid_generic))(y, x, n);
}

void SFX(fr_tanh)(REAL *y, const REAL *x, int64_t n) {
    FR_BY_ARCH(fr_get_arch(), SFX(tanh_avx512), SFX(tanh_avx2), SFX(tanh_generic))(y, x, n);
}

#undef ACT_EXP
#undef ACT_TANH

#endif
