/*
 * gemm.c — panel-packed GEMM for the shapes RNNs use.
 *
 * op(B) is packed into K x nr panels (gate-interleaved for the recurrent weights, see fastrnn.h),
 * and a microkernel computes m x nr tiles (m <= mr) reading A row-wise. The microkernel table is
 * chosen per SIMD path (cpu.c); the portable C kernel is always present.
 */
#include <stdlib.h>
#include <string.h>

#include "fastrnn.h"

#define GEN_MR 4
#define GEN_NR 16
#define GEMM_KC 256 /* K block: a 256 x nr panel stays in L1/L2 */

/* Portable microkernel, written so that the compiler can vectorise the column loop. */
#define DEFINE_GENERIC_UKR(T, S)                                                                 \
    static void ukr_generic_##S(int64_t m, int64_t K, const T *A, int64_t lda, const T *Bp,     \
                                T *C, int64_t ldc, int accumulate) {                              \
        T acc[GEN_MR][GEN_NR];                                                                    \
        memset(acc, 0, sizeof(acc));                                                              \
        for (int64_t k = 0; k < K; k++) {                                                         \
            const T *b = Bp + k * GEN_NR;                                                         \
            for (int64_t i = 0; i < m; i++) {                                                     \
                const T a = A[i * lda + k];                                                       \
                for (int c = 0; c < GEN_NR; c++) acc[i][c] += a * b[c];                           \
            }                                                                                     \
        }                                                                                         \
        for (int64_t i = 0; i < m; i++) {                                                         \
            T *cr = C + i * ldc;                                                                  \
            if (accumulate)                                                                       \
                for (int c = 0; c < GEN_NR; c++) cr[c] += acc[i][c];                              \
            else                                                                                  \
                for (int c = 0; c < GEN_NR; c++) cr[c] = acc[i][c];                               \
        }                                                                                         \
    }

DEFINE_GENERIC_UKR(float, s)
DEFINE_GENERIC_UKR(double, d)

static const fr_kernel_s k_generic_s = {GEN_MR, GEN_NR, ukr_generic_s};
static const fr_kernel_d k_generic_d = {GEN_MR, GEN_NR, ukr_generic_d};

const fr_kernel_s *fr_kernel_for_arch_s(int arch) {
    return arch == FR_ARCH_GENERIC ? &k_generic_s : NULL;
}
const fr_kernel_d *fr_kernel_for_arch_d(int arch) {
    return arch == FR_ARCH_GENERIC ? &k_generic_d : NULL;
}
const fr_kernel_s *fr_kernel_get_s(void) {
    const fr_kernel_s *k = fr_kernel_for_arch_s(fr_get_arch());
    return k ? k : &k_generic_s;
}
const fr_kernel_d *fr_kernel_get_d(void) {
    const fr_kernel_d *k = fr_kernel_for_arch_d(fr_get_arch());
    return k ? k : &k_generic_d;
}

#define DEFINE_PACK(T, S)                                                                         \
    void fr_pack_b_##S(T *dst, const T *B, int64_t ldb, int transb, int64_t K, int64_t H,         \
                       int64_t G, int64_t nr, int64_t jb0, int64_t jb1) {                         \
        for (int64_t jb = jb0; jb < jb1; jb++) {                                                  \
            for (int64_t g = 0; g < G; g++) {                                                     \
                T *p = dst + ((jb - jb0) * G + g) * K * nr;                                       \
                const int64_t j0 = jb * nr;                                                       \
                const int64_t nv = (H - j0) < nr ? (H - j0) : nr;                                 \
                for (int64_t k = 0; k < K; k++) {                                                 \
                    T *row = p + k * nr;                                                          \
                    int64_t c = 0;                                                                \
                    if (transb)                                                                   \
                        for (; c < nv; c++) row[c] = B[(g * H + j0 + c) * ldb + k];               \
                    else                                                                          \
                        for (; c < nv; c++) row[c] = B[k * ldb + g * H + j0 + c];                 \
                    for (; c < nr; c++) row[c] = (T)0;                                            \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }

DEFINE_PACK(float, s)
DEFINE_PACK(double, d)

/*
 * General GEMM driver: loop over K blocks; per block pack op(B) (and op(A) when transposed),
 * then compute (row block x panel) tiles in parallel, each tile owned by one thread.
 */
#define DEFINE_GEMM(T, S)                                                                         \
    int fr_gemm_##S(int transa, int transb, int64_t M, int64_t N, int64_t K, const T *A,          \
                    int64_t lda, const T *B, int64_t ldb, T beta, T *C, int64_t ldc,              \
                    int nthreads) {                                                               \
        if (M < 0 || N < 0 || K < 0 || nthreads < 1 || (beta != (T)0 && beta != (T)1))           \
            return FR_ERR_ARG;                                                                    \
        if (M == 0 || N == 0) return FR_OK;                                                       \
        if (K == 0) {                                                                             \
            if (beta == (T)0)                                                                     \
                for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(T));    \
            return FR_OK;                                                                         \
        }                                                                                         \
        const fr_kernel_##S *kern = fr_kernel_get_##S();                                          \
        const int64_t mr = kern->mr, nr = kern->nr;                                               \
        const int64_t npan = (N + nr - 1) / nr, nrb = (M + mr - 1) / mr;                          \
        const int64_t kcmax = K < GEMM_KC ? K : GEMM_KC;                                          \
        T *bp = (T *)malloc((size_t)(npan * kcmax * nr) * sizeof(T));                             \
        T *ap = transa ? (T *)malloc((size_t)(M * kcmax) * sizeof(T)) : NULL;                     \
        if (bp == NULL || (transa && ap == NULL)) {                                               \
            free(bp);                                                                             \
            free(ap);                                                                             \
            return FR_ERR_NOMEM;                                                                  \
        }                                                                                         \
        for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC) {                                             \
            const int64_t kc = (K - k0) < GEMM_KC ? (K - k0) : GEMM_KC;                           \
            const T *bsrc = transb ? B + k0 : B + k0 * ldb;                                       \
            const T *arow;                                                                        \
            int64_t alda;                                                                         \
            _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                    \
            for (int64_t p = 0; p < npan; p++)                                                    \
                fr_pack_b_##S(bp + p * kc * nr, bsrc, ldb, transb, kc, N, 1, nr, p, p + 1);       \
            if (transa) {                                                                         \
                _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                \
                for (int64_t i = 0; i < M; i++)                                                   \
                    for (int64_t k = 0; k < kc; k++) ap[i * kc + k] = A[(k0 + k) * lda + i];      \
                arow = ap;                                                                        \
                alda = kc;                                                                        \
            } else {                                                                              \
                arow = A + k0;                                                                    \
                alda = lda;                                                                       \
            }                                                                                     \
            const int acc = (k0 > 0) || (beta != (T)0);                                           \
            _Pragma("omp parallel for schedule(static) num_threads(nthreads)")                    \
            for (int64_t t = 0; t < npan * nrb; t++) {                                            \
                const int64_t p = t / nrb, ib = t % nrb;                                          \
                const int64_t i0 = ib * mr, m = (M - i0) < mr ? (M - i0) : mr;                    \
                const int64_t j0 = p * nr, nv = (N - j0) < nr ? (N - j0) : nr;                    \
                const T *ablk = arow + i0 * alda;                                                 \
                if (nv == nr) {                                                                   \
                    kern->ukr(m, kc, ablk, alda, bp + p * kc * nr, C + i0 * ldc + j0, ldc, acc);  \
                } else {                                                                          \
                    T tile[64 * 64];                                                              \
                    kern->ukr(m, kc, ablk, alda, bp + p * kc * nr, tile, nr, 0);                  \
                    for (int64_t i = 0; i < m; i++) {                                             \
                        T *cr = C + (i0 + i) * ldc + j0;                                          \
                        if (acc)                                                                  \
                            for (int64_t c = 0; c < nv; c++) cr[c] += tile[i * nr + c];           \
                        else                                                                      \
                            for (int64_t c = 0; c < nv; c++) cr[c] = tile[i * nr + c];            \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        free(bp);                                                                                 \
        free(ap);                                                                                 \
        return FR_OK;                                                                             \
    }

DEFINE_GEMM(float, s)
DEFINE_GEMM(double, d)
