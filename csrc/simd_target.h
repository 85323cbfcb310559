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

/* Elementwise code (cell pointwise, optimizer updates) is compiled for AVX-512, AVX2 and baseline
   x86-64 and the version is chosen when the library loads (GCC function multiversioning). The
   clones compute bit-identical results: -std=c11 turns off FMA contraction, and those loops only
   add, multiply, divide, take square roots and copy (all correctly rounded). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FR_CLONES
#endif

/* The variant of SIMD path arch (FR_ARCH_*) among a path's three variants (an expression; the
   generic (portable C) one for any other value, and the only one named where FR_X86_SIMD is 0). */
#if FR_X86_SIMD
#define FR_BY_ARCH(arch, avx512, avx2, generic)                                                   \
    ((arch) == FR_ARCH_AVX512 ? (avx512) : (arch) == FR_ARCH_AVX2 ? (avx2) : (generic))
#else
#define FR_BY_ARCH(arch, avx512, avx2, generic) ((void)(arch), (generic))
#endif

#endif /* FASTRNN_SIMD_TARGET_H */
