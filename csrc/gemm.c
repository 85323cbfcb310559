/*
 * gemm.c — panel-packed GEMM for the shapes RNNs use.
 *
 * op(B) is packed into K x nr panels (gate-interleaved for the recurrent weights, see fastrnn.h),
 * and a microkernel computes m x nr tiles (m <= mr) reading A row-wise. The microkernels of each
 * SIMD path live in gemm_ukr.c; cpu.c chooses the path at run time; the portable C kernel here is
 * always present. The driver, the packing and the portable kernel are this file's template body
 * (template.h), instantiated for float and double.
 *
 * fr_gemm_*: each thread owns a rectangle of C (a grid of row groups x panel groups chosen for
 * balance), packs its own panels of op(B) a KC x NC block at a time and never shares partial sums,
 * so there is one parallel region and no barrier, and every element of C is computed by the same
 * kernel calls in the same order whatever the thread count: results are bitwise reproducible.
 */
#ifndef REAL
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastrnn.h"
#include "scratch.h"
#include "gemm_kernels.h"
#include "simd_target.h"
#include "team_load.h"

/* Portable microkernel shape. */
#define GEN_MR 4
#define GEN_NR 16
/* K block: an mr x KC slice of A (12 KiB in float at mr = 12) stays in L1 while the panels
   stream. */
#define GEMM_KC 256
/* Packed block of transposed A per thread (slices of mr rows x KC), beside the B block in L2
   (pack_a_block). */
#define GEMM_ABLOCK_BYTES (128 * 1024)
/* Below this many flops per thread, a fork/join costs more than the extra thread saves. */
#define GEMM_MIN_FLOPS_PER_THREAD 200000.0
/* k rows per pass when packing a transposed op(B). */
#define PACK_KB 16
/* Read op(B) in place (no packing) when each thread has at most this many row blocks. */
#define GEMM_DIRECT_RB 8
/* Costs of packing, for the thread grid choice: a panel of B, in rows of microkernel work; an
   mr-row slice of A, in panels of microkernel work on it. */
#define GEMM_PACK_ROWS 8
#define GEMM_PACK_A_PANELS 0.25
/* The same in fr_gemm_pair with a transposed A (gathered k by k from rows of its storage): a
   split of the panels between threads has each thread gather all of A, which the pair exists to
   do once. At 0.25 the weight gradients' pair of an LSTM (100,32,128,128) backward (M = 512, two
   products of 128 columns) split the panels and ran 1.05x the two separate products; at 1.0 it
   splits the rows and runs 0.95x of them. */
#define GEMM_PACK_PAIR_AT_PANELS 1.0
/* Direct reading copies each panel first (prefetching the next one meanwhile) when at least
   GEMM_COPY_MIN_RB row blocks re-read it, B's rows are at least GEMM_COPY_MIN_STRIDE bytes apart (a
   page each: hardware prefetchers stop at page boundaries, and such rows share few cache sets) and
   op(B) has at least GEMM_COPY_MIN_BYTES (it then comes from memory, not L3). Measured on one Zen 4
   core, 64 x 1024 x N: N = 3072 73 -> 82 GFLOP/s; 64 x 1024 x 1024 (4 MiB) is faster in place. */
#define GEMM_COPY_MIN_RB 3
#define GEMM_COPY_MIN_STRIDE 4096
#define GEMM_COPY_MIN_BYTES (8.0 * 1024 * 1024)

/* Prefetch one cache line (no-op where the compiler has no prefetch builtin). */
#if defined(__GNUC__) || defined(__clang__)
#define FR_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define FR_PREFETCH(p) ((void)(p))
#endif

#define FR_TEMPLATE "gemm.c"
#include "template.h"

#else /* the body, per dtype */

#define IMPL SFX(fr_gemm_impl)
#define KERN SFX(fr_kernel)

static inline int64_t SFX(gmin)(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t SFX(gmax)(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- portable microkernel: the reference the SIMD kernels are tested against ----------------- */

/* Strided form (gemm_kernels.h) over nrw = GEN_NR or GEN_NR / 2 columns (a constant after
   inlining), written so that the compiler can vectorise the column loop. */
static inline void SFX(gk_generic_w)(const int nrw, int64_t m, int64_t K, const REAL *A,
                                     int64_t rsa, int64_t csa, const REAL *B, int64_t ldb, REAL *C,
                                     int64_t ldc, int accumulate) {
    if (m < 1 || m > GEN_MR) return;
    REAL acc[GEN_MR][GEN_NR];
    memset(acc, 0, sizeof(acc));
    for (int64_t k = 0; k < K; k++) {
        const REAL *b = B + k * ldb;
        for (int64_t i = 0; i < m; i++) {
            const REAL a = A[i * rsa + k * csa];
            for (int c = 0; c < nrw; c++) acc[i][c] += a * b[c];
        }
    }
    for (int64_t i = 0; i < m; i++) {
        REAL *cr = C + i * ldc;
        if (accumulate)
            for (int c = 0; c < nrw; c++) cr[c] += acc[i][c];
        else
            for (int c = 0; c < nrw; c++) cr[c] = acc[i][c];
    }
}

static void SFX(gk_generic)(int64_t m, int64_t K, const REAL *A, int64_t rsa, int64_t csa,
                            const REAL *B, int64_t ldb, REAL *C, int64_t ldc, int accumulate) {
    SFX(gk_generic_w)(GEN_NR, m, K, A, rsa, csa, B, ldb, C, ldc, accumulate);
}

static void SFX(gk_generic_half)(int64_t m, int64_t K, const REAL *A, int64_t rsa, int64_t csa,
                                 const REAL *B, int64_t ldb, REAL *C, int64_t ldc, int accumulate) {
    SFX(gk_generic_w)(GEN_NR / 2, m, K, A, rsa, csa, B, ldb, C, ldc, accumulate);
}

static void SFX(ukr_generic)(int64_t m, int64_t K, const REAL *A, int64_t lda, const REAL *Bp,
                             REAL *C, int64_t ldc, int accumulate) {
    SFX(gk_generic)(m, K, A, lda, 1, Bp, GEN_NR, C, ldc, accumulate);
}

static void SFX(ukr_generic_half)(int64_t m, int64_t K, const REAL *A, int64_t lda,
                                  const REAL *Bp, REAL *C, int64_t ldc, int accumulate) {
    SFX(gk_generic_half)(m, K, A, lda, 1, Bp, GEN_NR, C, ldc, accumulate);
}

static void SFX(ukr_generic_pair)(int64_t m, int64_t K, const REAL *A, int64_t lda,
                                  const REAL *Bp, REAL *C, int64_t ldc, int accumulate) {
    SFX(gk_generic)(m, K, A, lda, 1, Bp, GEN_NR, C, ldc, accumulate);
    SFX(gk_generic)(m, K, A, lda, 1, Bp + K * GEN_NR, GEN_NR, C + GEN_NR, ldc, accumulate);
}

/* The bias forms (fastrnn.h's ukr_bias): the product, then the bias added, as ukr and C += bias. */
static inline void SFX(ukr_generic_bias_w)(const int nrw, int64_t m, int64_t K, const REAL *A,
                                           int64_t lda, const REAL *Bp, const REAL *bias, REAL *C,
                                           int64_t ldc) {
    SFX(gk_generic_w)(nrw, m, K, A, lda, 1, Bp, GEN_NR, C, ldc, 0);
    for (int64_t i = 0; i < m; i++)
        for (int c = 0; c < nrw; c++) C[i * ldc + c] += bias[c];
}

static void SFX(ukr_generic_bias)(int64_t m, int64_t K, const REAL *A, int64_t lda,
                                  const REAL *Bp, const REAL *bias, REAL *C, int64_t ldc) {
    SFX(ukr_generic_bias_w)(GEN_NR, m, K, A, lda, Bp, bias, C, ldc);
}

static void SFX(ukr_generic_bias_half)(int64_t m, int64_t K, const REAL *A, int64_t lda,
                                       const REAL *Bp, const REAL *bias, REAL *C, int64_t ldc) {
    SFX(ukr_generic_bias_w)(GEN_NR / 2, m, K, A, lda, Bp, bias, C, ldc);
}

static void SFX(packn_generic)(REAL *dst, const REAL *B, int64_t ldb, int64_t K) {
    for (int64_t k = 0; k < K; k++) memcpy(dst + k * GEN_NR, B + k * ldb, GEN_NR * sizeof(REAL));
}

static const IMPL SFX(impl_generic) = {
    .pub = {.mr = GEN_MR, .nr = GEN_NR, .ukr = SFX(ukr_generic),
            .ukr_half = SFX(ukr_generic_half), .ukr_pair = SFX(ukr_generic_pair),
            .ukr_bias = SFX(ukr_generic_bias), .ukr_bias_half = SFX(ukr_generic_bias_half)},
    .gk = SFX(gk_generic),
    .packn = SFX(packn_generic),
    .gk_half = SFX(gk_generic_half),
    .packt = NULL};

/* ---- kernel tables ------------------------------------------------------------------------- */

static const IMPL *SFX(impl_for_arch)(int arch) {
    if (arch < 0 || arch >= FR_ARCH_COUNT) return NULL;
#if FR_X86_SIMD
    return FR_BY_ARCH(arch, SFX(fr_gemm_impl_avx512)(), SFX(fr_gemm_impl_avx2)(), &SFX(impl_generic));
#else
    return arch == FR_ARCH_GENERIC ? &SFX(impl_generic) : NULL;
#endif
}

static const IMPL *SFX(impl_get)(void) {
    const IMPL *p = SFX(impl_for_arch)(fr_get_arch());
    return p ? p : &SFX(impl_generic);
}

const KERN *SFX(fr_kernel_for_arch)(int arch) {
    const IMPL *p = SFX(impl_for_arch)(arch);
    return p ? &p->pub : NULL;
}

const KERN *SFX(fr_kernel_get)(void) { return &SFX(impl_get)()->pub; }

/* ---- packing ------------------------------------------------------------------------------- */

/* Columns [j0, j0 + nv) of op(B) (rows k < K) into a K x nr panel, zero in columns nv..nr-1
   (transposed B of panels of ip's width: ip's own copy where it has one). */
static void SFX(pack_panel)(const IMPL *ip, REAL *dst, const REAL *B, int64_t ldb, int transb,
                            int64_t K, int64_t j0, int64_t nv, int64_t nr) {
    if (transb && ip->packt && nr == ip->pub.nr) {
        ip->packt(dst, B + j0 * ldb, ldb, K, nv);
        return;
    }
    if (!transb) {
        for (int64_t k = 0; k < K; k++) {
            REAL *row = dst + k * nr;
            const REAL *src = B + k * ldb + j0;
            int64_t c = 0;
            for (; c < nv; c++) row[c] = src[c];
            for (; c < nr; c++) row[c] = (REAL)0;
        }
        return;
    }
    /* op(B)[k][j] = B[j*ldb + k]: read PACK_KB contiguous k of each source row per pass, so the
       rows being read and the panel rows being written both stay in L1. */
    for (int64_t k0 = 0; k0 < K; k0 += PACK_KB) {
        const int64_t kk = SFX(gmin)(PACK_KB, K - k0);
        REAL *d = dst + k0 * nr;
        int64_t c = 0;
        for (; c < nv; c++) {
            const REAL *src = B + (j0 + c) * ldb + k0;
            for (int64_t k = 0; k < kk; k++) d[k * nr + c] = src[k];
        }
        for (; c < nr; c++)
            for (int64_t k = 0; k < kk; k++) d[k * nr + c] = (REAL)0;
    }
}

/* Panel p of a partial hidden block (nv < nr units from j0, G > 1): columns [p*nr, p*nr + nr) of
   the block's G*nv, column g*nv + u being op(B)'s column g*H + j0 + u; zero past G*nv. */
static void SFX(pack_gate_runs)(REAL *dst, const REAL *B, int64_t ldb, int transb, int64_t K,
                                int64_t H, int64_t G, int64_t nr, int64_t j0, int64_t nv,
                                int64_t p) {
    const int64_t c0 = p * nr, c1 = SFX(gmin)(c0 + nr, G * nv);
    for (int64_t c = c0; c < c1; c++) {
        const int64_t n = (c / nv) * H + j0 + c % nv;
        REAL *d = dst + (c - c0);
        if (transb)
            for (int64_t k = 0; k < K; k++) d[k * nr] = B[n * ldb + k];
        else
            for (int64_t k = 0; k < K; k++) d[k * nr] = B[k * ldb + n];
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = c1 - c0; c < nr; c++) dst[k * nr + c] = (REAL)0;
}

void SFX(fr_pack_b_units)(REAL *dst, const REAL *B, int64_t ldb, int transb, int64_t K,
                          int64_t H, int64_t G, int64_t nr, int64_t u0, int64_t u1) {
    const IMPL *ip = SFX(impl_get)();
    for (int64_t jl = 0, j0 = u0; j0 < u1; jl++, j0 += nr) {
        const int64_t nv = SFX(gmin)(nr, u1 - j0);
        REAL *blk = dst + jl * G * K * nr;
        if (nv < nr && G > 1) { /* the gates' units side by side (FR_BLOCK_PANELS) */
            for (int64_t p = 0; p < FR_BLOCK_PANELS(G, nv, nr); p++)
                SFX(pack_gate_runs)(blk + p * K * nr, B, ldb, transb, K, H, G, nr, j0, nv, p);
            continue;
        }
        for (int64_t g = 0; g < G; g++) {
            REAL *p = blk + g * K * nr;
            if (!transb && nv == nr && nr == ip->pub.nr)
                ip->packn(p, B + g * H + j0, ldb, K);
            else
                SFX(pack_panel)(ip, p, B, ldb, transb, K, g * H + j0, nv, nr);
        }
    }
}

void SFX(fr_pack_b)(REAL *dst, const REAL *B, int64_t ldb, int transb, int64_t K, int64_t H,
                    int64_t G, int64_t nr, int64_t jb0, int64_t jb1) {
    SFX(fr_pack_b_units)(dst, B, ldb, transb, K, H, G, nr, jb0 * nr, SFX(gmin)(H, jb1 * nr));
}

/* ---- driver -------------------------------------------------------------------------------- */

/* One product C = beta*C + op(A) op(B) of a call: op(B) K x N, C M x N. fr_gemm_pair runs two
   that share op(A), their panels one after the other. */
typedef struct {
    int64_t N, ldb, ldc;
    const REAL *B;
    REAL *C;
} SFX(gemm_seg);

/* Everything a thread needs to compute its share of one fr_gemm / fr_gemm_pair call. */
typedef struct {
    const IMPL *ip;
    int transa, transb, direct, beta1;
    int64_t M, K, lda;
    const REAL *A;
    SFX(gemm_seg) seg[2];
    int64_t npan0;     /* panels of the first product (the second's follow) */
    int64_t nrb, npan; /* row blocks of mr, panels of nr (of both products) */
    int64_t tm, tn;    /* thread grid: row groups x panel groups */
    int64_t kcb, ncp;  /* K block, panels per packed chunk of B */
    int64_t kcp;       /* row stride of a packed slice of A: kcb rounded up, plus a cache line */
    int64_t nap;       /* slices of A packed at once: 1, or a thread's row blocks when direct */
    REAL *buf;         /* per thread: bsz elements for B panels, then nap * mr * kcp for A */
    int64_t bsz, tsz;  /* B part, whole per-thread part (elements, multiples of a cache line) */
} SFX(gemm_plan);

/* Panel p of the call's products: its product and its first column there. */
static inline const SFX(gemm_seg) *SFX(panel_seg)(const SFX(gemm_plan) *g, int64_t p,
                                                    int64_t *j0) {
    const int second = p >= g->npan0;
    *j0 = (second ? p - g->npan0 : p) * g->ip->pub.nr;
    return &g->seg[second];
}

/* One m x nr tile of C at (i, panel p); a partial last panel (nv < nr) runs the half-width
   kernel when nv fits in it (straight into C when nv is exactly half) and goes through `tile`. */
static inline void SFX(gemm_tile)(const IMPL *ip, int64_t m, int64_t kc, const REAL *a,
                                  int64_t rsa, int64_t csa, const REAL *bp, int64_t bld, REAL *c,
                                  int64_t ldc, int64_t nv, int acc, REAL *tile) {
    const int64_t nr = ip->pub.nr;
    if (nv == nr) {
        ip->gk(m, kc, a, rsa, csa, bp, bld, c, ldc, acc);
        return;
    }
    if (2 * nv == nr) {
        ip->gk_half(m, kc, a, rsa, csa, bp, bld, c, ldc, acc);
        return;
    }
    if (2 * nv < nr) /* the valid columns fit in the first half of the panel */
        ip->gk_half(m, kc, a, rsa, csa, bp, bld, tile, nr, 0);
    else
        ip->gk(m, kc, a, rsa, csa, bp, bld, tile, nr, 0);
    for (int64_t r = 0; r < m; r++) {
        REAL *cr = c + r * ldc;
        const REAL *tr = tile + r * nr;
        if (acc)
            for (int64_t q = 0; q < nv; q++) cr[q] += tr[q];
        else
            for (int64_t q = 0; q < nv; q++) cr[q] = tr[q];
    }
}

/*
 * Copy the m x kc slice of op(A) at rows i, columns k0 into dst, in the layout the microkernel
 * reads best from: row-major A row by row at stride kcp (rsa = kcp, csa = 1), transposed A k by k
 * (rsa = 1, csa = m). Both are contiguous copies; the copy is what keeps A's rows from sharing
 * cache sets when lda is a multiple of 4 KiB (H = 1024 floats), and keeps the slice in L1.
 */
static void SFX(pack_a)(REAL *dst, const SFX(gemm_plan) *g, int64_t i, int64_t m, int64_t k0,
                        int64_t kc) {
    if (!g->transa) {
        for (int64_t r = 0; r < m; r++)
            memcpy(dst + r * g->kcp, g->A + (i + r) * g->lda + k0, (size_t)kc * sizeof(REAL));
    } else {
        for (int64_t k = 0; k < kc; k++) { /* m <= mr elements: a loop, not a memcpy call */
            const REAL *src = g->A + (k0 + k) * g->lda + i;
            REAL *d = dst + k * m;
            for (int64_t r = 0; r < m; r++) d[r] = src[r];
        }
    }
}

/*
 * Copy the rows x kc block of op(A) = transposed A at rows i, columns k0 into dst as its mr-row
 * slices (slice b at dst + b * mr * kcp, each in pack_a's layout), reading k by k across the whole
 * block (rows contiguous elements of each row of A's storage), not slice by slice: kc runs of mr
 * elements each, rows of A's storage apart (a page and more), cost a TLB and cache miss each.
 * Measured, (M, N, K) = (4096, 1024, 6400), 2 threads: 180 -> 205 GFLOP/s.
 */
static void SFX(pack_a_block)(REAL *dst, const SFX(gemm_plan) *g, int64_t i, int64_t rows,
                              int64_t k0, int64_t kc) {
    const int64_t mr = g->ip->pub.mr;
    for (int64_t k = 0; k < kc; k++) {
        const REAL *src = g->A + (k0 + k) * g->lda + i;
        for (int64_t b0 = 0; b0 < rows; b0 += mr) {
            const int64_t m = SFX(gmin)(mr, rows - b0);
            REAL *d = dst + b0 * g->kcp + k * m;
            for (int64_t r = 0; r < m; r++) d[r] = src[b0 + r];
        }
    }
}

/*
 * Prefetch part `part` of `parts` of the m x kc slice of op(A) at rows i, columns k0 (the slice
 * pack_a will copy next), so that the copy finds it in cache instead of waiting on memory.
 */
static void SFX(prefetch_a)(const SFX(gemm_plan) *g, int64_t i, int64_t m, int64_t k0, int64_t kc,
                            int64_t part, int64_t parts) {
    const int64_t line = 64 / (int64_t)sizeof(REAL);
    /* rows of A's storage and the contiguous span used in each */
    const int64_t r0 = g->transa ? k0 : i, nrows = g->transa ? kc : m;
    const int64_t c0 = g->transa ? i : k0, span = g->transa ? m : kc;
    for (int64_t r = r0 + nrows * part / parts; r < r0 + nrows * (part + 1) / parts; r++) {
        const REAL *row = g->A + r * g->lda + c0;
        for (int64_t c = 0; c < span; c += line) FR_PREFETCH(row + c);
        FR_PREFETCH(row + span - 1);
    }
}

/*
 * Prefetch part `part` of `parts` of the kc x nr slice of op(B) (untransposed) in panel p at
 * K-row k0: the rows of a panel the thread will copy next, spread over the current panel's work.
 */
static void SFX(prefetch_panel)(const SFX(gemm_plan) *g, int64_t k0, int64_t kc, int64_t p,
                                int64_t part, int64_t parts) {
    const int64_t nr = g->ip->pub.nr, line = 64 / (int64_t)sizeof(REAL);
    int64_t j0;
    const SFX(gemm_seg) *sg = SFX(panel_seg)(g, p, &j0);
    const REAL *b = sg->B + k0 * sg->ldb + j0;
    for (int64_t k = kc * part / parts; k < kc * (part + 1) / parts; k++)
        for (int64_t c = 0; c < nr; c += line) FR_PREFETCH(b + k * sg->ldb + c);
}

/*
 * One thread's share of C: rows [i0, i1) x panels [p0, p1), all of K, a KC-block of K at a time.
 * Packed (the usual case): per NC-chunk of panels and K block, pack the chunk's panels into the B
 * buffer (it stays in L2), then sweep the rows mr at a time: pack the mr x KC slice of A (it stays
 * in L1 across the chunk's panels) and run the panels. Direct (op(B) not transposed and few rows,
 * so each panel has few users and a copy of B would cost as much as the work): panel by panel,
 * with all the thread's (few) slices of A packed once per K block, read op(B) in place: the loads
 * overlap the arithmetic and the few re-reads hit cache. Except that a panel is copied first when
 * it is partial (the microkernel reads nr full columns), or when B is big, its rows a page apart
 * and re-read by several row blocks (GEMM_COPY_* in gemm.c): then the copy is what the row blocks
 * re-read, and the next panel is fetched while this one is in use.
 */
static void SFX(gemm_part)(const SFX(gemm_plan) *g, int64_t i0, int64_t i1, int64_t p0, int64_t p1,
                           REAL *buf) {
    const IMPL *ip = g->ip;
    const int64_t mr = ip->pub.mr, nr = ip->pub.nr, K = g->K;
    const int transb = g->transb;
    REAL *bbuf = buf, *abuf = buf + g->bsz;
    REAL tile[FR_GEMM_MAX_MR * FR_GEMM_MAX_NR];
    for (int64_t pc = p0; pc < p1; pc += g->ncp) {
        const int64_t pe = SFX(gmin)(p1, pc + g->ncp);
        for (int64_t k0 = 0; k0 < K; k0 += g->kcb) {
            const int64_t kc = SFX(gmin)(g->kcb, K - k0);
            const int acc = g->beta1 || k0 > 0;
            if (g->direct) {
                for (int64_t i = i0; i < i1; i += mr)
                    SFX(pack_a)(abuf + (i - i0) * g->kcp, g, i, SFX(gmin)(mr, i1 - i), k0, kc);
                /* copy each panel (and fetch the next one while this one runs) when several
                   row blocks re-read it, each of its rows lies on its own page and B is too big
                   to stay in cache between calls */
                const int64_t nrbt = (i1 - i0 + mr - 1) / mr;
                for (int64_t p = pc; p < pe; p++) {
                    int64_t j0, jn;
                    const SFX(gemm_seg) *sg = SFX(panel_seg)(g, p, &j0);
                    const int64_t ldb = sg->ldb, nv = SFX(gmin)(nr, sg->N - j0);
                    const REAL *bk = transb ? sg->B + k0 : sg->B + k0 * ldb;
                    const int copy =
                        nrbt >= GEMM_COPY_MIN_RB &&
                        ldb * (int64_t)sizeof(REAL) >= GEMM_COPY_MIN_STRIDE &&
                        (double)K * (double)sg->N * sizeof(REAL) >= GEMM_COPY_MIN_BYTES;
                    if (copy && nv == nr) ip->packn(bbuf, bk + j0, ldb, kc);
                    else if (copy || nv < nr)
                        SFX(pack_panel)(ip, bbuf, bk, ldb, transb, kc, j0, nv, nr);
                    const int inplace = !copy && nv == nr;
                    const REAL *bp = inplace ? bk + j0 : bbuf;
                    const int64_t bld = inplace ? ldb : nr;
                    /* the next panel, fetched while this one runs, where it is a full one */
                    const int fetch = copy && p + 1 < pe &&
                                      SFX(panel_seg)(g, p + 1, &jn)->N - jn >= nr;
                    for (int64_t i = i0; i < i1; i += mr) {
                        const int64_t m = SFX(gmin)(mr, i1 - i);
                        if (fetch) SFX(prefetch_panel)(g, k0, kc, p + 1, (i - i0) / mr, nrbt);
                        SFX(gemm_tile)(ip, m, kc, abuf + (i - i0) * g->kcp,
                                       g->transa ? 1 : g->kcp, g->transa ? m : 1, bp, bld,
                                       sg->C + i * sg->ldc + j0, sg->ldc, nv, acc, tile);
                    }
                }
                continue;
            }
            for (int64_t p = pc; p < pe; p++) {
                int64_t j0;
                const SFX(gemm_seg) *sg = SFX(panel_seg)(g, p, &j0);
                const int64_t ldb = sg->ldb, nv = SFX(gmin)(nr, sg->N - j0);
                const REAL *bk = transb ? sg->B + k0 : sg->B + k0 * ldb;
                if (nv == nr && !transb)
                    ip->packn(bbuf + (p - pc) * kc * nr, bk + j0, ldb, kc);
                else
                    SFX(pack_panel)(ip, bbuf + (p - pc) * kc * nr, bk, ldb, transb, kc, j0, nv,
                                    nr);
            }
            const int blk = g->nap > 1; /* transposed A packed a block at a time */
            for (int64_t ic = i0; ic < i1; ic += g->nap * mr) {
                const int64_t ie = SFX(gmin)(i1, ic + g->nap * mr);
                if (blk) SFX(pack_a_block)(abuf, g, ic, ie - ic, k0, kc);
                for (int64_t i = ic; i < ie; i += mr) {
                    const int64_t m = SFX(gmin)(mr, ie - i), mn = SFX(gmin)(mr, i1 - i - mr);
                    const REAL *as = abuf + (blk ? (i - ic) * g->kcp : 0);
                    if (!blk) SFX(pack_a)(abuf, g, i, m, k0, kc);
                    for (int64_t p = pc; p < pe; p++) {
                        int64_t j0;
                        const SFX(gemm_seg) *sg = SFX(panel_seg)(g, p, &j0);
                        if (!blk && mn > 0)
                            SFX(prefetch_a)(g, i + mr, mn, k0, kc, p - pc, pe - pc);
                        SFX(gemm_tile)(ip, m, kc, as, g->transa ? 1 : g->kcp, g->transa ? m : 1,
                                       bbuf + (p - pc) * kc * nr, nr, sg->C + i * sg->ldc + j0,
                                       sg->ldc, SFX(gmin)(nr, sg->N - j0), acc, tile);
                    }
                }
            }
        }
    }
}

/* Start of part g of n when `total` units are split as evenly as possible. */
static inline int64_t SFX(split)(int64_t total, int64_t n, int64_t g) { return total * g / n; }

/* Share t (0 <= t < tm*tn) of the plan: row group t / tn x panel group t % tn. */
static void SFX(gemm_share)(const SFX(gemm_plan) *g, int64_t t) {
    const int64_t mr = g->ip->pub.mr, gi = t / g->tn, gj = t % g->tn;
    const int64_t i0 = SFX(split)(g->nrb, g->tm, gi) * mr;
    const int64_t i1 = SFX(gmin)(g->M, SFX(split)(g->nrb, g->tm, gi + 1) * mr);
    const int64_t p0 = SFX(split)(g->npan, g->tn, gj), p1 = SFX(split)(g->npan, g->tn, gj + 1);
    if (i0 < i1 && p0 < p1) SFX(gemm_part)(g, i0, i1, p0, p1, g->buf + t * g->tsz);
}

/* The products of sg (nseg of them: fr_gemm's one, fr_gemm_pair's two) with op(A) (M x K) packed
   once per thread and K block for all of them; arguments checked by the callers. */
static int SFX(gemm_segs)(int transa, int transb, int64_t M, int64_t K, const REAL *A, int64_t lda,
                          const SFX(gemm_seg) *sg, int nseg, REAL beta, int nthreads) {
    int64_t N = 0; /* all the products' columns */
    for (int s = 0; s < nseg; s++) N += sg[s].N;
    if (M == 0 || N == 0) return FR_OK;
    if (K == 0) {
        if (beta == (REAL)0)
            for (int s = 0; s < nseg; s++)
                for (int64_t i = 0; i < M && sg[s].N > 0; i++)
                    memset(sg[s].C + i * sg[s].ldc, 0, (size_t)sg[s].N * sizeof(REAL));
        return FR_OK;
    }

    SFX(gemm_plan) g = {0};
    g.ip = SFX(impl_get)();
    const int64_t mr = g.ip->pub.mr, nr = g.ip->pub.nr;
    if (mr > FR_GEMM_MAX_MR || nr > FR_GEMM_MAX_NR) return FR_ERR_ARG;
    g.transa = transa;
    g.transb = transb;
    g.beta1 = beta != (REAL)0;
    g.M = M;
    g.K = K;
    g.A = A;
    g.lda = lda;
    g.seg[0] = sg[0];
    if (nseg > 1) g.seg[1] = sg[1];
    g.nrb = (M + mr - 1) / mr;
    g.npan0 = (sg[0].N + nr - 1) / nr;
    g.npan = g.npan0 + (nseg > 1 ? (sg[1].N + nr - 1) / nr : 0);

    /* threads: none below GEMM_MIN_FLOPS_PER_THREAD each, never more than tiles */
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    int64_t nt = (int64_t)(flops / GEMM_MIN_FLOPS_PER_THREAD);
    nt = nt < 1 ? 1 : nt;
    nt = SFX(gmin)(SFX(gmin)(nt, nthreads), g.nrb * g.npan);
#ifndef _OPENMP
    nt = 1;
#endif
    /* thread grid: the least work for the busiest thread, in row x panel units of microkernel
       work, counting each panel of B it packs as GEMM_PACK_ROWS rows (direct reading packs
       none) and each slice of A it packs as GEMM_PACK_A_PANELS panels; ties go to fewer row
       groups */
    const int64_t kcb = SFX(gmin)(K, GEMM_KC);
    /* packed B per thread (a KC x NC block): half of the core's L2 (fr_l2_bytes: 256 KiB on
       Zen 3, 512 KiB on Zen 4, 1 MiB on Sapphire Rapids), so that it stays in L2 while the thread
       sweeps its rows, and each slice of A is packed once per block. Measured on Sapphire Rapids
       (2 MiB L2), 2 threads, 256 KiB -> 1 MiB: transposed A (M, N, K) = (4096, 1024, 6400)
       212 -> 231 GFLOP/s, (6400, 4096, 1024) 203 -> 237; untransposed shapes level. Where all
       of op(B)'s panels fit in 3/4 of the L2, one block of them all, so that each slice of A is
       packed once and not once per block: measured on Zen 3 (512 KiB L2; 20 panels against 16),
       the LSTM backward's weight-gradient pair (M, N, K) = (800, 300, 1440), transposed A, 0.87x
       the time on 1 and on 2 threads, (1200, 350, 2400) 0.87x, (2400, 300, 1200) 0.93x; shapes
       with more panels keep half of the L2. */
    const int64_t pbytes = kcb * nr * (int64_t)sizeof(REAL); /* one panel of the block */
    const int64_t ncp_fit = fr_l2_bytes() / 4 * 3 / pbytes;
    const int64_t ncp_max = g.npan <= ncp_fit ? g.npan : SFX(gmax)(1, fr_l2_bytes() / 2 / pbytes);
    /* Direct reading walks B's rows at stride ldb; when that is a multiple of 4 KiB every row
       of a panel maps to the same L1 set (the ways overflow after 8 rows), so pack instead. */
    int direct_ok = !transb;
    for (int s = 0; s < nseg; s++)
        direct_ok = direct_ok && ((sg[s].ldb * (int64_t)sizeof(REAL)) % 4096 != 0 || K <= 8);
    const double apack = transa && nseg > 1 ? GEMM_PACK_PAIR_AT_PANELS : GEMM_PACK_A_PANELS;
    double best = -1.0;
    for (int64_t tm = 1; tm <= nt; tm++) {
        if (nt % tm != 0) continue;
        const int64_t rows = (g.nrb + tm - 1) / tm * mr;
        const int64_t pans = (g.npan + nt / tm - 1) / (nt / tm);
        const int dir = direct_ok && rows <= mr * GEMM_DIRECT_RB;
        const double chunks = dir ? 1.0 : (double)((pans + ncp_max - 1) / ncp_max);
        const double cost = (double)rows * ((double)pans + apack * chunks) +
                            (dir ? 0.0 : (double)GEMM_PACK_ROWS * (double)pans);
        if (best < 0.0 || cost < best) {
            best = cost;
            g.tm = tm;
        }
    }
    g.tn = nt / g.tm;
    g.direct = direct_ok && (g.nrb + g.tm - 1) / g.tm <= GEMM_DIRECT_RB;

    /* blocking: KC x (ncp panels) of packed B per thread, within half of the core's L2 (ncp_max) */
    g.kcb = kcb;
    g.ncp = SFX(gmin)(ncp_max, (g.npan + g.tn - 1) / g.tn);
    const int64_t line = 64 / (int64_t)sizeof(REAL); /* buffers start on cache lines */
    g.kcp = (g.kcb + line - 1) / line * line + line;
    /* slices of A packed at once: all the thread's rows when direct; a block of them within
       GEMM_ABLOCK_BYTES when A is transposed with its storage rows a page or more apart
       (pack_a_block; nearer rows share pages and lines, and the slice by slice copy with its
       prefetch measured faster: GRU (100,32,128,128) training's M = 384 products); else one */
    const int64_t rbt = (g.nrb + g.tm - 1) / g.tm;
    const int blk = transa && lda * (int64_t)sizeof(REAL) >= 4096;
    g.nap = g.direct ? rbt
            : !blk   ? 1
                     : SFX(gmax)(1, SFX(gmin)(rbt, GEMM_ABLOCK_BYTES / (mr * g.kcp *
                                                                        (int64_t)sizeof(REAL))));
    g.bsz = g.kcb * nr * (g.direct ? 1 : g.ncp);
    g.bsz = (g.bsz + line - 1) / line * line;
    g.tsz = g.bsz + g.nap * mr * g.kcp;
    g.buf = (REAL *)fr_scratch_alloc((size_t)(nt * g.tsz) * sizeof(REAL));
    if (g.buf == NULL) return FR_ERR_NOMEM;

    if (nt == 1) {
        SFX(gemm_share)(&g, 0);
    } else {
        int *const workers = fr_load_worker_slots();
#pragma omp parallel num_threads((int)nt)
        {
            int64_t t = 0, step = 1;
#ifdef _OPENMP
            t = omp_get_thread_num();
            fr_load_note_worker(workers, (int)t);
            step = omp_get_num_threads();
#endif
            for (; t < nt; t += step) /* one pass, unless the runtime gave fewer threads */
                SFX(gemm_share)(&g, t);
        }
        fr_load_region_done((int)nt);
    }
    fr_scratch_free(g.buf);
    return FR_OK;
}

int SFX(fr_gemm)(int transa, int transb, int64_t M, int64_t N, int64_t K, const REAL *A,
                 int64_t lda, const REAL *B, int64_t ldb, REAL beta, REAL *C, int64_t ldc,
                 int nthreads) {
    if (M < 0 || N < 0 || K < 0 || nthreads < 1 || (beta != (REAL)0 && beta != (REAL)1))
        return FR_ERR_ARG;
    if (M == 0 || N == 0) return FR_OK;
    if (C == NULL || ldc < N) return FR_ERR_ARG;
    if (K > 0 && (A == NULL || B == NULL || lda < (transa ? M : K) || ldb < (transb ? K : N)))
        return FR_ERR_ARG;
    const SFX(gemm_seg) sg = {.N = N, .ldb = ldb, .ldc = ldc, .B = B, .C = C};
    return SFX(gemm_segs)(transa, transb, M, K, A, lda, &sg, 1, beta, nthreads);
}

int SFX(fr_gemm_pair)(int transa, int64_t M, int64_t K, const REAL *A, int64_t lda, int64_t N1,
                      const REAL *B1, int64_t ldb1, REAL *C1, int64_t ldc1, int64_t N2,
                      const REAL *B2, int64_t ldb2, REAL *C2, int64_t ldc2, REAL beta,
                      int nthreads) {
    if (M < 0 || K < 0 || N1 < 0 || N2 < 0 || nthreads < 1 ||
        (beta != (REAL)0 && beta != (REAL)1))
        return FR_ERR_ARG;
    if (M > 0 && ((N1 > 0 && (C1 == NULL || ldc1 < N1)) || (N2 > 0 && (C2 == NULL || ldc2 < N2))))
        return FR_ERR_ARG;
    if (M > 0 && K > 0 &&
        (A == NULL || lda < (transa ? M : K) || (N1 > 0 && (B1 == NULL || ldb1 < N1)) ||
         (N2 > 0 && (B2 == NULL || ldb2 < N2))))
        return FR_ERR_ARG;
    /* an empty product first would leave no panels before the other's: drop it */
    const SFX(gemm_seg) sg[2] = {{.N = N1, .ldb = ldb1, .ldc = ldc1, .B = B1, .C = C1},
                                 {.N = N2, .ldb = ldb2, .ldc = ldc2, .B = B2, .C = C2}};
    if (N1 == 0) return SFX(gemm_segs)(transa, 0, M, K, A, lda, &sg[1], 1, beta, nthreads);
    return SFX(gemm_segs)(transa, 0, M, K, A, lda, sg, N2 > 0 ? 2 : 1, beta, nthreads);
}

#undef IMPL
#undef KERN

#endif
