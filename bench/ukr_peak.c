/*
 * ukr_peak.c — the float32 GEMM microkernel alone, against the core's FMA peak, in one run.
 *
 * It times, best of --reps rounds, on this machine's SIMD path (AVX-512 where the CPU has it, else
 * AVX2+FMA):
 *   peak   a loop of 12 independent FMA chains of the path's vectors, in GFLOP/s;
 *   l1     the microkernel on one (mr, H) row tile against one (H, nr) panel, held in L1;
 *   step   the microkernel in a recurrent step's order: every hidden block's 4 gate panels of a
 *          whole packed W_hh (H, 4H) for every row tile of B rows (fr_rec_step's loop, without
 *          the pointwise), the panels streamed from L2;
 * and prints l1 and step as shares of peak, measured in the same run (bench/RESULTS.md, sessions
 * 22-23: the loop runs near peak in a quiet moment, and inside an LSTM call as fast as alone in
 * the same process; on a drifting machine compare only figures of one run).
 *
 * Build and run from the repository root (no Python needed):
 *   gcc -O3 -std=c11 -Icsrc bench/ukr_peak.c csrc/gemm_ukr.c -o /tmp/ukr_peak
 *   /tmp/ukr_peak [H=130] [B=20] [mr=5] [reps=30]
 */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gemm_kernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* n rounds of 12 independent FMA chains of the path's vectors (VEC, SET1, FMADD, STORE): 12 n
   vector FMAs. */
#define FMA_LOOP(NAME, TARGET, VEC, SET1, FMADD, ADD, STORE, LANES)                                \
    __attribute__((target(TARGET), noinline)) static float NAME(long n) {                         \
        const VEC m = SET1(0.999f), c = SET1(0.001f);                                             \
        VEC x0 = SET1(0), x1 = SET1(1), x2 = SET1(2), x3 = SET1(3), x4 = SET1(4), x5 = SET1(5);   \
        VEC x6 = SET1(6), x7 = SET1(7), x8 = SET1(8), x9 = SET1(9), xa = SET1(10), xb = SET1(11); \
        for (long r = 0; r < n; r++) {                                                            \
            x0 = FMADD(x0, m, c), x1 = FMADD(x1, m, c), x2 = FMADD(x2, m, c);                     \
            x3 = FMADD(x3, m, c), x4 = FMADD(x4, m, c), x5 = FMADD(x5, m, c);                     \
            x6 = FMADD(x6, m, c), x7 = FMADD(x7, m, c), x8 = FMADD(x8, m, c);                     \
            x9 = FMADD(x9, m, c), xa = FMADD(xa, m, c), xb = FMADD(xb, m, c);                     \
            __asm__ volatile("" : "+v"(x0), "+v"(x1), "+v"(x2), "+v"(x3), "+v"(x4), "+v"(x5),     \
                             "+v"(x6), "+v"(x7), "+v"(x8), "+v"(x9), "+v"(xa), "+v"(xb));         \
        }                                                                                         \
        float out[LANES];                                                                         \
        STORE(out, ADD(ADD(ADD(ADD(x0, x1), ADD(x2, x3)), ADD(ADD(x4, x5), ADD(x6, x7))),         \
                       ADD(ADD(x8, x9), ADD(xa, xb))));                                           \
        return out[0];                                                                            \
    }
FMA_LOOP(fma_loop_avx2, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
         _mm256_storeu_ps, 8)
FMA_LOOP(fma_loop_avx512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
         _mm512_storeu_ps, 16)

int main(int argc, char **argv) {
    const int64_t H = argc > 1 ? atol(argv[1]) : 130, B = argc > 2 ? atol(argv[2]) : 20;
    const int64_t mr = argc > 3 ? atol(argv[3]) : 5;
    const int reps = argc > 4 ? atoi(argv[4]) : 30;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "ukr_peak: this CPU has no AVX2+FMA\n");
        return 2;
    }
    /* cpu.c's test for the AVX-512 path (fr_cpu_supports) */
    const int wide = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                     __builtin_cpu_supports("avx512vl");
    const fr_gemm_impl_s *im = wide ? fr_gemm_impl_avx512_s() : fr_gemm_impl_avx2_s();
    const int64_t nr = im->pub.nr, nb = (H + nr - 1) / nr;
    if (H < 1 || B < 1 || mr < 1 || mr > im->pub.mr || reps < 1) {
        fprintf(stderr, "ukr_peak: need H, B >= 1, 1 <= mr <= %d, reps >= 1\n", im->pub.mr);
        return 2;
    }
    float *W = aligned_alloc(64, sizeof(float) * (size_t)(nb * 4 * H * nr));
    float *A = aligned_alloc(64, sizeof(float) * (size_t)((B + mr) * H));
    float *C = aligned_alloc(64, sizeof(float) * (size_t)(im->pub.mr * 4 * nr));
    if (!W || !A || !C) return 3;
    for (int64_t i = 0; i < nb * 4 * H * nr; i++) W[i] = (float)(i % 7) * 0.01f;
    for (int64_t i = 0; i < (B + mr) * H; i++) A[i] = (float)(i % 5) * 0.1f;
    const long nfma = 2000000;
    const int calls = 2000, steps = 20;
    double best_peak = 1e30, best_l1 = 1e30, best_step = 1e30, sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        sink += wide ? fma_loop_avx512(nfma) : fma_loop_avx2(nfma);
        double t = now() - t0;
        if (t < best_peak) best_peak = t;
        t0 = now();
        for (int i = 0; i < calls; i++) im->pub.ukr(mr, H, A, H, W, C, 4 * nr, 0);
        t = now() - t0;
        if (t < best_l1) best_l1 = t;
        t0 = now();
        for (int s = 0; s < steps; s++)
            for (int64_t jb = 0; jb < nb; jb++)
                for (int64_t b0 = 0; b0 < B; b0 += mr) {
                    const int64_t m = B - b0 < mr ? B - b0 : mr;
                    for (int64_t q = 0; q < 4; q++)
                        im->pub.ukr(m, H, A + b0 * H, H, W + (jb * 4 + q) * H * nr, C + q * nr,
                                    4 * nr, 0);
                }
        t = now() - t0;
        if (t < best_step) best_step = t;
        sink += C[0];
    }
    const double peak = 2.0 * 12 * (wide ? 16 : 8) * (double)nfma / best_peak / 1e9;
    const double l1 = 2.0 * (double)calls * (double)(mr * H * nr) / best_l1 / 1e9;
    const double step = 2.0 * steps * (double)(B * H * nb * nr * 4) / best_step / 1e9;
    printf("path %s, H=%lld B=%lld mr=%lld, best of %d\n", wide ? "avx512" : "avx2", (long long)H,
           (long long)B, (long long)mr, reps);
    printf("peak %.1f GFLOP/s (independent FMAs of the path's vectors)\n", peak);
    printf("l1   %.1f GFLOP/s  %.0f%% of peak\n", l1, 100 * l1 / peak);
    printf("step %.1f GFLOP/s  %.0f%% of peak\n", step, 100 * step / peak);
    free(W);
    free(A);
    free(C);
    return sink == -1.0 ? 1 : 0; /* sink is read, so that no timed loop is optimised away */
}
