/*
 * cpu.c — run-time choice of the SIMD path (generic C, AVX2+FMA, AVX-512), and the per-core L2
 * cache size the GEMM blocks for.
 *
 * The path is detected once (CPU features via the compiler's cpuid builtins) and may be forced by
 * the environment variable FASTRNN_ARCH=generic|avx2|avx512 or by fr_set_arch().
 */
#define _GNU_SOURCE /* sysconf's cache-size names (glibc) */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fastrnn.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FR_X86 1
#else
#define FR_X86 0
#endif

static int g_arch = -1;      /* path in use; -1 = not initialised yet */
static int g_env_error = 0;  /* FASTRNN_ARCH named an unknown or unsupported path */

int fr_cpu_supports(int arch) {
    switch (arch) {
    case FR_ARCH_GENERIC:
        return 1;
#if FR_X86
    case FR_ARCH_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FR_ARCH_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
#endif
    default:
        return 0;
    }
}

int fr_best_arch(void) {
    if (fr_cpu_supports(FR_ARCH_AVX512) && fr_kernel_for_arch_s(FR_ARCH_AVX512) != NULL)
        return FR_ARCH_AVX512;
    if (fr_cpu_supports(FR_ARCH_AVX2) && fr_kernel_for_arch_s(FR_ARCH_AVX2) != NULL)
        return FR_ARCH_AVX2;
    return FR_ARCH_GENERIC;
}

const char *fr_arch_name(int arch) {
    switch (arch) {
    case FR_ARCH_GENERIC: return "generic";
    case FR_ARCH_AVX2: return "avx2";
    case FR_ARCH_AVX512: return "avx512";
    default: return "unknown";
    }
}

static int arch_usable(int arch) {
    return arch >= 0 && arch < FR_ARCH_COUNT && fr_cpu_supports(arch) &&
           fr_kernel_for_arch_s(arch) != NULL && fr_kernel_for_arch_d(arch) != NULL;
}

int fr_get_arch(void) {
    if (g_arch < 0) {
        int arch = fr_best_arch();
        const char *env = getenv("FASTRNN_ARCH");
        if (env != NULL && env[0] != '\0') {
            int want = -1;
            for (int a = 0; a < FR_ARCH_COUNT; a++)
                if (strcmp(env, fr_arch_name(a)) == 0) want = a;
            if (want >= 0 && arch_usable(want)) {
                arch = want;
            } else {
                arch = FR_ARCH_GENERIC;
                g_env_error = 1;
            }
        }
        g_arch = arch;
    }
    return g_arch;
}

int fr_arch_env_error(void) {
    (void)fr_get_arch();
    return g_env_error;
}

int fr_set_arch(int arch) {
    if (!arch_usable(arch)) return FR_ERR_ARCH;
    g_arch = arch;
    return FR_OK;
}

int fr_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fr_omp_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int64_t fr_l2_bytes(void) {
    static _Atomic int64_t l2; /* 0: not read yet (a race reads it twice, harmlessly) */
    int64_t v = atomic_load_explicit(&l2, memory_order_relaxed);
    if (v > 0) return v;
    v = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    const long r = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (r > 0) v = (int64_t)r;
#endif
    if (v < FR_L2_MIN_BYTES) v = FR_L2_MIN_BYTES; /* unknown (0, -1) or implausibly small */
    if (v > FR_L2_MAX_BYTES) v = FR_L2_MAX_BYTES;
    atomic_store_explicit(&l2, v, memory_order_relaxed);
    return v;
}
