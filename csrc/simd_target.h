/*
 * simd_target.h — private: whether this compiler can build the x86 SIMD paths, and the
 * function-level target attributes they are compiled with (no -march flags: cpu.c picks the path
 * at run time, so only functions carrying these attributes may use AVX2/AVX-512 instructions).
 */
#ifndef FASTRNN_SIMD_TARGET_H
#define FASTRNN_SIMD_TARGET_H

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FR_X86_SIMD 1
#include <immintrin.h>
/* Must match fr_cpu_supports() in cpu.c. */
#define FR_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FR_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#define FR_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define FR_X86_SIMD 0
#endif

#endif /* FASTRNN_SIMD_TARGET_H */
