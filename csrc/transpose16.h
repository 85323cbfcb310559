/*
 * transpose16.h — private: a 16 x 16 transpose of 32-bit words in AVX-512 registers, shared by
 * the float panel copy of transposed B (gemm_ukr.c) and the bf16 transposed row copy (lowp_kernels.c).
 * Only defined where FR_X86_SIMD is 1; call it from a function compiled for AVX-512.
 */
#ifndef FASTRNN_TRANSPOSE16_H
#define FASTRNN_TRANSPOSE16_H

#include "simd_target.h"

#if FR_X86_SIMD
/* Transpose 16 x 16 32-bit words in registers: r[i] element j becomes r[j] element i. */
static FR_ALWAYS_INLINE FR_TARGET_AVX512 void fr_transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 8; i++) { /* 128-bit lanes: pairs of row quads */
        const int a = (i / 4) * 8 + i % 4, b = a + 4;
        t[a] = _mm512_shuffle_i32x4(r[a], r[b], 0x88);
        t[b] = _mm512_shuffle_i32x4(r[a], r[b], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}
#endif

#endif /* FASTRNN_TRANSPOSE16_H */
