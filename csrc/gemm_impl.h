/*
 * gemm_impl.h — the GEMM driver, panel packing and the portable microkernel, instantiated once per
 * dtype by gemm.c through template.h (REAL = float/double, SFX(name) = name##_s/_d).
 */

#define IMPL SFX(fr_gemm_impl)
#define KERN SFX(fr_kernel)

static inline int64_t SFX(gmin)(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- portable microkernel: the reference the SIMD kernels are tested against ----------------- */

/* Strided form (gemm_kernels.h), written so that the compiler can vectorise the column loop. */
static void SFX(gk_generic)(int64_t m, int64_t K, const REAL *A, int64_t rsa, int64_t csa,
                            const REAL *B, int64_t ldb, REAL *C, int64_t ldc, int accumulate) {
    if (m < 1 || m > GEN_MR) return;
    REAL acc[GEN_MR][GEN_NR];
    memset(acc, 0, sizeof(acc));
    for (int64_t k = 0; k < K; k++) {
        const REAL *b = B + k * ldb;
        for (int64_t i = 0; i < m; i++) {
            const REAL a = A[i * rsa + k * csa];
            for (int c = 0; c < GEN_NR; c++) acc[i][c] += a * b[c];
        }
    }
    for (int64_t i = 0; i < m; i++) {
        REAL *cr = C + i * ldc;
        if (accumulate)
            for (int c = 0; c < GEN_NR; c++) cr[c] += acc[i][c];
        else
            for (int c = 0; c < GEN_NR; c++) cr[c] = acc[i][c];
    }
}

static void SFX(ukr_generic)(int64_t m, int64_t K, const REAL *A, int64_t lda, const REAL *Bp,
                             REAL *C, int64_t ldc, int accumulate) {
    SFX(gk_generic)(m, K, A, lda, 1, Bp, GEN_NR, C, ldc, accumulate);
}

static void SFX(packn_generic)(REAL *dst, const REAL *B, int64_t ldb, int64_t K) {
    for (int64_t k = 0; k < K; k++) memcpy(dst + k * GEN_NR, B + k * ldb, GEN_NR * sizeof(REAL));
}

static const IMPL SFX(impl_generic) = {{GEN_MR, GEN_NR, SFX(ukr_generic)}, SFX(gk_generic),
                                       SFX(packn_generic)};

/* ---- kernel tables ------------------------------------------------------------------------- */

static const IMPL *SFX(impl_for_arch)(int arch) {
    switch (arch) {
    case FR_ARCH_GENERIC: return &SFX(impl_generic);
    case FR_ARCH_AVX2: return SFX(fr_gemm_impl_avx2)();
    case FR_ARCH_AVX512: return SFX(fr_gemm_impl_avx512)();
    default: return NULL;
    }
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

/* Columns [j0, j0 + nv) of op(B) (rows k < K) into a K x nr panel, zero in columns nv..nr-1. */
static void SFX(pack_panel)(REAL *dst, const REAL *B, int64_t ldb, int transb, int64_t K,
                            int64_t j0, int64_t nv, int64_t nr) {
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

void SFX(fr_pack_b)(REAL *dst, const REAL *B, int64_t ldb, int transb, int64_t K, int64_t H,
                    int64_t G, int64_t nr, int64_t jb0, int64_t jb1) {
    for (int64_t jb = jb0; jb < jb1; jb++) {
        const int64_t nv = SFX(gmin)(nr, H - jb * nr);
        for (int64_t g = 0; g < G; g++)
            SFX(pack_panel)(dst + ((jb - jb0) * G + g) * K * nr, B, ldb, transb, K,
                            g * H + jb * nr, nv, nr);
    }
}

/* ---- driver -------------------------------------------------------------------------------- */

/*
 * One thread's share of C: rows [i0, i1) x panels [p0, p1), all of K. Loops: NC-chunks of panels,
 * KC-blocks of K (pack this chunk's panels into buf: it stays in L2), rows mr at a time (the
 * mr x KC slice of A stays in L1), panels. direct: op(B) is read in place (no transpose and each
 * row block is the only user of a panel, so packing would only add a copy); only a partial last
 * panel is packed then, since the microkernel reads nr full columns.
 */
static void SFX(gemm_part)(const IMPL *ip, int transa, int transb, int direct, int64_t i0,
                           int64_t i1, int64_t p0, int64_t p1, int64_t N, int64_t K, const REAL *A,
                           int64_t lda, const REAL *B, int64_t ldb, int beta1, REAL *C,
                           int64_t ldc, REAL *buf, int64_t kcb, int64_t ncp) {
    const int64_t mr = ip->pub.mr, nr = ip->pub.nr;
    const int64_t rsa = transa ? 1 : lda, csa = transa ? lda : 1;
    REAL tile[FR_GEMM_MAX_MR * FR_GEMM_MAX_NR];
    for (int64_t pc = p0; pc < p1; pc += ncp) {
        const int64_t pe = SFX(gmin)(p1, pc + ncp);
        for (int64_t k0 = 0; k0 < K; k0 += kcb) {
            const int64_t kc = SFX(gmin)(kcb, K - k0);
            const int acc = beta1 || k0 > 0;
            const REAL *bk = transb ? B + k0 : B + k0 * ldb;
            for (int64_t p = pc; p < pe; p++) {
                const int64_t nv = SFX(gmin)(nr, N - p * nr);
                if (!direct && nv == nr && !transb)
                    ip->packn(buf + (p - pc) * kc * nr, bk + p * nr, ldb, kc);
                else if (!direct)
                    SFX(pack_panel)(buf + (p - pc) * kc * nr, bk, ldb, transb, kc, p * nr, nv, nr);
                else if (nv < nr)
                    SFX(pack_panel)(buf, bk, ldb, transb, kc, p * nr, nv, nr);
            }
            for (int64_t p = pc; p < pe; p++) {
                const int64_t j0 = p * nr, nv = SFX(gmin)(nr, N - j0);
                const REAL *bp = buf + (p - pc) * kc * nr;
                int64_t bld = nr;
                if (direct) {
                    bp = nv == nr ? bk + j0 : buf;
                    bld = nv == nr ? ldb : nr;
                }
                for (int64_t i = i0; i < i1; i += mr) {
                    const int64_t m = SFX(gmin)(mr, i1 - i);
                    const REAL *a = A + i * rsa + k0 * csa;
                    REAL *c = C + i * ldc + j0;
                    if (nv == nr) {
                        ip->gk(m, kc, a, rsa, csa, bp, bld, c, ldc, acc);
                        continue;
                    }
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
            }
        }
    }
}

/* Start of part g of n when `total` units are split as evenly as possible. */
static inline int64_t SFX(split)(int64_t total, int64_t n, int64_t g) { return total * g / n; }

int SFX(fr_gemm)(int transa, int transb, int64_t M, int64_t N, int64_t K, const REAL *A,
                 int64_t lda, const REAL *B, int64_t ldb, REAL beta, REAL *C, int64_t ldc,
                 int nthreads) {
    if (M < 0 || N < 0 || K < 0 || nthreads < 1 || (beta != (REAL)0 && beta != (REAL)1))
        return FR_ERR_ARG;
    if (M == 0 || N == 0) return FR_OK;
    if (C == NULL || ldc < N) return FR_ERR_ARG;
    if (K == 0) {
        if (beta == (REAL)0)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(REAL));
        return FR_OK;
    }
    if (A == NULL || B == NULL || lda < (transa ? M : K) || ldb < (transb ? K : N))
        return FR_ERR_ARG;

    const IMPL *ip = SFX(impl_get)();
    const int64_t mr = ip->pub.mr, nr = ip->pub.nr;
    if (mr > FR_GEMM_MAX_MR || nr > FR_GEMM_MAX_NR) return FR_ERR_ARG;
    const int64_t nrb = (M + mr - 1) / mr, npan = (N + nr - 1) / nr;

    /* threads: none below GEMM_MIN_FLOPS_PER_THREAD each, never more than tiles */
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    int64_t nt = (int64_t)(flops / GEMM_MIN_FLOPS_PER_THREAD);
    nt = nt < 1 ? 1 : nt;
    nt = SFX(gmin)(SFX(gmin)(nt, nthreads), nrb * npan);
#ifndef _OPENMP
    nt = 1;
#endif
    /* thread grid tm x tn (row groups x panel groups): the least work for the busiest thread,
       counting the panels it packs as PACK_ROWS extra rows; ties go to fewer row groups */
    const int64_t pack_rows = transb ? 16 : 4;
    int64_t tm = 1;
    double best = -1.0;
    for (int64_t t = 1; t <= nt; t++) {
        if (nt % t != 0) continue;
        const int64_t rows = (nrb + t - 1) / t * mr, pans = (npan + nt / t - 1) / (nt / t);
        const int dir = !transb && rows <= mr * DIRECT_RB;
        const double cost = (double)(rows + (dir ? 0 : pack_rows)) * (double)pans;
        if (best < 0.0 || cost < best) {
            best = cost;
            tm = t;
        }
    }
    const int64_t tn = nt / tm;
    const int direct = !transb && (nrb + tm - 1) / tm <= DIRECT_RB;

    /* blocking: KC x (ncp panels) of packed B per thread, within GEMM_BBLOCK_BYTES */
    const int64_t kcb = SFX(gmin)(K, GEMM_KC);
    int64_t ncp = GEMM_BBLOCK_BYTES / (kcb * nr * (int64_t)sizeof(REAL));
    ncp = ncp < 1 ? 1 : ncp;
    ncp = SFX(gmin)(ncp, (npan + tn - 1) / tn);
    const int64_t line = 64 / (int64_t)sizeof(REAL); /* panels start on cache lines */
    const int64_t bufsz = (kcb * nr * (direct ? 1 : ncp) + line - 1) / line * line;
    REAL *buf = (REAL *)aligned_alloc(64, (size_t)(nt * bufsz) * sizeof(REAL));
    if (buf == NULL) return FR_ERR_NOMEM;
    const int beta1 = beta != (REAL)0;

#pragma omp parallel num_threads((int)nt) if (nt > 1)
    {
        int64_t t0 = 0, tstep = 1;
#ifdef _OPENMP
        t0 = omp_get_thread_num();
        tstep = omp_get_num_threads();
#endif
        for (int64_t t = t0; t < nt; t += tstep) { /* one pass unless the runtime gave fewer threads */
            const int64_t gi = t / tn, gj = t % tn;
            const int64_t i0 = SFX(split)(nrb, tm, gi) * mr;
            const int64_t i1 = SFX(gmin)(M, SFX(split)(nrb, tm, gi + 1) * mr);
            const int64_t p0 = SFX(split)(npan, tn, gj), p1 = SFX(split)(npan, tn, gj + 1);
            if (i0 < i1 && p0 < p1)
                SFX(gemm_part)(ip, transa, transb, direct, i0, i1, p0, p1, N, K, A, lda, B, ldb,
                               beta1, C, ldc, buf + t * bufsz, kcb, ncp);
        }
    }
    free(buf);
    return FR_OK;
}

#undef IMPL
#undef KERN
