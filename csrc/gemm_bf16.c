/*
 * gemm_bf16.c — a general GEMM on bfloat16 operands with float32 accumulation and float32 I/O:
 * both operands are rounded to bf16 (nearest even) as they are packed, then the reduced-precision
 * microkernels of lowp_kernels.c (AMX, AVX512_BF16 or portable) run over 32-column panels. The
 * bf16 backward's big GEMMs (dx, dw_ih, dw_hh) use it, with A (the gate gradients) rounded to bf16
 * once as the backward writes it (lowp.h's lp_gemm_bf16_h, lp_gemm_bf16_pair_h).
 */
#include <string.h>

#include "lowp.h"
#include "scratch.h"
#include "team_load.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* K words per slab of the tiles' sums (a multiple of the kernels' 16-word K step): a panel's slab
   is 64 KB (16 panels, a thread's half of 1024 columns: 1 MB of L2), a 32-row block of A's 64 KB.
   Measured, LSTM (100, 64, 512, 512) bf16 backward on 2 threads, tiles and packing: dx's GEMM
   (K = 2048) 10.7 -> 8.2-8.9 ms, the weight gradients' (K = 6400) 23.4 -> 21.7-22.5 ms; slabs of
   256 words lost (dx 11.5-12.3 ms), 1024 and 2048 made no difference to dx and lost on the
   weight gradients (25-27 ms). */
#define BF_KC 512

/* One product of op(A) (shared by the segments of a call): C = beta*C + op(A) op(B), N columns. */
typedef struct {
    int64_t N, ldb, ldc;
    const float *B;
    float *C;
} bf_seg;

/* Panel j of the segments (pj[s]: segment s's first panel): its segment, first column and valid
   columns. */
static inline const bf_seg *panel_seg(const bf_seg *sg, const int64_t *pj, int64_t j, int64_t *n0,
                                      int64_t *nv) {
    int s = 0;
    while (j >= pj[s + 1]) s++;
    *n0 = (j - pj[s]) * LP_NR;
    *nv = imin(LP_NR, sg[s].N - *n0);
    return &sg[s];
}

/* The A operand: floats (f), or values already rounded to bf16 (h, lowp.h's lp_gemm_bf16_h);
   ld its row stride in elements. */
typedef struct {
    const float *f;
    const uint16_t *h;
    int64_t ld;
} bf_a;

/* The products of op(A) with each of ns segments' op(B), op(A) packed once (or, from bf16 rows
   without transa, used as it stands); arguments as fr_gemm_bf16's (checked by the callers). */
static int gemm_bf16_segs(int transa, int transb, int64_t M, int64_t K, const bf_a *a,
                          const bf_seg *sg, int ns, float beta, int nthreads) {
    int64_t Nall = 0, np = 0, pj[3] = {0, 0, 0}; /* pj[s]: the first panel of segment s */
    for (int s = 0; s < ns; s++) {
        Nall += sg[s].N;
        pj[s] = np;
        np += (sg[s].N + LP_NR - 1) / LP_NR;
    }
    pj[ns] = np;
    if (M == 0 || Nall == 0) return FR_OK;
    if (K == 0) {
        if (beta == 0.0f)
            for (int s = 0; s < ns; s++)
                for (int64_t i = 0; i < M && sg[s].N > 0; i++)
                    memset(sg[s].C + i * sg[s].ldc, 0, (size_t)sg[s].N * sizeof(float));
        return FR_OK;
    }
    const lp_kernel *k = lp_kernel_for(FR_PREC_BF16, fr_get_arch());
    const int64_t kw = lp_kwords(FR_PREC_BF16, K), mr = k->mr;
    const int64_t nmb = (M + mr - 1) / mr;
    /* bf16 rows used as they stand: the A rows of the kernels already (lowp.h) */
    const int direct = !transa && a->h != NULL;
    const int64_t abytes = direct ? 0 : (M + LP_MR) * kw * 4, pbytes = np * kw * LP_NR * 4;
    const int64_t alda = direct ? a->ld / 2 : kw; /* A rows' stride in words */
    double flops = 2.0 * (double)M * (double)Nall * (double)K;
    int nt = (int)(flops / 4.0e6);
    nt = nt < 1 ? 1 : (nt > nthreads ? nthreads : nt);
    const int64_t tbytes = LP_MR * LP_NR * 4; /* per thread: an output tile */
    uint8_t *mem = fr_scratch_alloc((size_t)(abytes + pbytes + nt * tbytes + 64));
    if (mem == NULL) return FR_ERR_NOMEM;
    uint32_t *Ab = direct ? (uint32_t *)(uintptr_t)a->h : (uint32_t *)mem;
    uint32_t *Bp = (uint32_t *)(mem + abytes);
    uint8_t *per = mem + abytes + pbytes;
    if (!direct) memset(Ab + M * kw, 0, (size_t)(LP_MR * kw * 4));
    int *const workers = nt > 1 ? fr_load_worker_slots() : NULL;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
        fr_load_note_worker(workers, tid);
#else
        const int tid = 0;
#endif
        float *tile = (float *)(per + tid * tbytes);
        if (transa) { /* op(A) row i is column i of A: walk A's rows, write this thread's rows */
#ifdef _OPENMP
            const int ntm = omp_get_num_threads();
#else
            const int ntm = 1;
#endif
            const int64_t i0 = M * tid / ntm, i1 = M * (tid + 1) / ntm;
            if (a->h)
                lp_pack_t16_rows_bf16(Ab, kw, a->h, a->ld, K, i0, i1);
            else
                lp_pack_t_rows_bf16(Ab, kw, a->f, a->ld, K, i0, i1);
        } else if (!direct) {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < M; i++)
                k->rows(Ab + i * kw, kw, NULL, a->f + i * a->ld, a->ld, 1, K);
        }
#ifdef _OPENMP
        const int nth = omp_get_num_threads();
#else
        const int nth = 1;
#endif
        if (transb) {
#pragma omp for schedule(static)
            for (int64_t j = 0; j < np; j++) { /* column n of op(B) is row n of B */
                int64_t n0, nv;
                const bf_seg *g = panel_seg(sg, pj, j, &n0, &nv);
                lp_pack_nk_bf16(Bp + j * kw * LP_NR, g->B + n0 * g->ldb, g->ldb, K, nv);
            }
        } else {
            /* this thread's panels, 32 rows of B at a time across all of them: each row is read
               in one sequential run (a panel at a time, K deep, read every row's 128 bytes at a
               stride the prefetchers do not follow: 7 ms of the weight gradients' 23 went to
               packing) */
            const int64_t jb0 = np * tid / nth, jb1 = np * (tid + 1) / nth;
            for (int64_t k0 = 0; k0 < K; k0 += 32)
                for (int64_t j = jb0; j < jb1; j++) {
                    int64_t n0, nv;
                    const bf_seg *g = panel_seg(sg, pj, j, &n0, &nv);
                    lp_pack_kn_bf16(Bp + (j * kw + k0 / 2) * LP_NR, g->B + k0 * g->ldb, g->ldb,
                                    imin(32, K - k0), n0, nv);
                }
        }
#pragma omp barrier
        if (k->begin) k->begin();
        /* Each thread owns whole C tiles: its panels (or, with fewer panels than threads, its
           row blocks), and sums each tile over K in slabs of BF_KC words, in slab order (the
           same sums whatever the team): a slab of its panels stays in L2 and one of A's row
           blocks in L1 while it goes over them, instead of every tile streaming K in full. */
        const int by_panels = np >= nth;
        const int64_t j0 = by_panels ? np * tid / nth : 0, j1 = by_panels ? np * (tid + 1) / nth : np;
        const int64_t b0 = by_panels ? 0 : nmb * tid / nth, b1 = by_panels ? nmb : nmb * (tid + 1) / nth;
        for (int64_t p0 = 0; p0 < kw; p0 += BF_KC) {
            const int64_t kc = imin(BF_KC, kw - p0);
            const int add = p0 > 0 || beta != 0.0f;
            for (int64_t ib = b0; ib < b1; ib++) {
                const int64_t i0 = ib * mr, m = imin(mr, M - i0);
                for (int64_t j = j0; j < j1; j++) {
                    int64_t n0, nv;
                    const bf_seg *g = panel_seg(sg, pj, j, &n0, &nv);
                    if (k->acc && m == LP_MR && nv == LP_NR) { /* a whole tile: C in place */
                        k->acc(kc, Ab + i0 * alda + p0, alda, Bp + (j * kw + p0) * LP_NR,
                               g->C + i0 * g->ldc + n0, g->ldc, add);
                        continue;
                    }
                    k->ukr(m, kc, Ab + i0 * alda + p0, alda, Bp + (j * kw + p0) * LP_NR, NULL,
                           NULL, tile, LP_NR);
                    for (int64_t i = 0; i < m; i++) {
                        float *c = g->C + (i0 + i) * g->ldc + n0;
                        const float *r = tile + i * LP_NR;
                        if (add)
                            for (int64_t q = 0; q < nv; q++) c[q] += r[q];
                        else
                            for (int64_t q = 0; q < nv; q++) c[q] = r[q];
                    }
                }
            }
        }
        if (k->end) k->end();
    }
    fr_load_region_done(nt);
    fr_scratch_free(mem);
    return FR_OK;
}

/* Whether the arguments of a single product (A floats or bf16) are valid. */
static int one_ok(int64_t M, int64_t N, int64_t K, const void *A, const float *B, float beta,
                  const float *C, int64_t ldc, int nthreads) {
    return !(M < 0 || N < 0 || K < 0 || nthreads < 1 || (beta != 0.0f && beta != 1.0f) ||
             (M > 0 && N > 0 && (C == NULL || ldc < N)) ||
             (M > 0 && N > 0 && K > 0 && (A == NULL || B == NULL)));
}

/* Whether the arguments of a pair of products sharing A are valid. */
static int pair_ok(int64_t M, int64_t K, const void *A, int64_t N1, const float *B1,
                   const float *C1, int64_t ldc1, int64_t N2, const float *B2, const float *C2,
                   int64_t ldc2, float beta, int nthreads) {
    return !(M < 0 || N1 < 0 || N2 < 0 || K < 0 || nthreads < 1 ||
             (beta != 0.0f && beta != 1.0f) || (M > 0 && N1 > 0 && (C1 == NULL || ldc1 < N1)) ||
             (M > 0 && N2 > 0 && (C2 == NULL || ldc2 < N2)) ||
             (M > 0 && K > 0 && ((N1 > 0 && (A == NULL || B1 == NULL)) ||
                                 (N2 > 0 && (A == NULL || B2 == NULL)))));
}

int fr_gemm_bf16(int transa, int transb, int64_t M, int64_t N, int64_t K, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                 int nthreads) {
    if (!one_ok(M, N, K, A, B, beta, C, ldc, nthreads)) return FR_ERR_ARG;
    const bf_seg sg = {.N = N, .ldb = ldb, .ldc = ldc, .B = B, .C = C};
    const bf_a a = {.f = A, .ld = lda};
    return gemm_bf16_segs(transa, transb, M, K, &a, &sg, 1, beta, nthreads);
}

int lp_gemm_bf16_h(int transa, int64_t M, int64_t N, int64_t K, const uint16_t *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int nthreads) {
    if (!one_ok(M, N, K, A, B, beta, C, ldc, nthreads) || (!transa && lda % 2 != 0))
        return FR_ERR_ARG;
    const bf_seg sg = {.N = N, .ldb = ldb, .ldc = ldc, .B = B, .C = C};
    const bf_a a = {.h = A, .ld = lda};
    return gemm_bf16_segs(transa, 0, M, K, &a, &sg, 1, beta, nthreads);
}

int fr_gemm_bf16_pair(int transa, int64_t M, int64_t K, const float *A, int64_t lda, int64_t N1,
                      const float *B1, int64_t ldb1, float *C1, int64_t ldc1, int64_t N2,
                      const float *B2, int64_t ldb2, float *C2, int64_t ldc2, float beta,
                      int nthreads) {
    if (!pair_ok(M, K, A, N1, B1, C1, ldc1, N2, B2, C2, ldc2, beta, nthreads)) return FR_ERR_ARG;
    const bf_seg sg[2] = {{.N = N1, .ldb = ldb1, .ldc = ldc1, .B = B1, .C = C1},
                          {.N = N2, .ldb = ldb2, .ldc = ldc2, .B = B2, .C = C2}};
    const bf_a a = {.f = A, .ld = lda};
    return gemm_bf16_segs(transa, 0, M, K, &a, sg, 2, beta, nthreads);
}

int lp_gemm_bf16_pair_h(int transa, int64_t M, int64_t K, const uint16_t *A, int64_t lda,
                        int64_t N1, const float *B1, int64_t ldb1, float *C1, int64_t ldc1,
                        int64_t N2, const float *B2, int64_t ldb2, float *C2, int64_t ldc2,
                        float beta, int nthreads) {
    if (!pair_ok(M, K, A, N1, B1, C1, ldc1, N2, B2, C2, ldc2, beta, nthreads) ||
        (!transa && lda % 2 != 0))
        return FR_ERR_ARG;
    const bf_seg sg[2] = {{.N = N1, .ldb = ldb1, .ldc = ldc1, .B = B1, .C = C1},
                          {.N = N2, .ldb = ldb2, .ldc = ldc2, .B = B2, .C = C2}};
    const bf_a a = {.h = A, .ld = lda};
    return gemm_bf16_segs(transa, 0, M, K, &a, sg, 2, beta, nthreads);
}
