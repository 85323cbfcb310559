/*
 * recurrence_impl.h — the whole-sequence driver, instantiated once per dtype by recurrence.c with
 * REAL (float/double) and SFX(name) (name##_s / name##_d) defined.
 *
 * Forward (DESIGN.md §3): one parallel region for the whole sequence. Thread `tid` owns hidden
 * blocks [jb0, jb1) of width nr for all gates: it packs its slices of W_ih and W_hh once (they stay
 * in its cache), computes its columns of the input projection for a chunk of steps at a time (one
 * GEMM per chunk: no cache of size T unless training), and per step computes its tile of the
 * recurrent product and applies the cell's pointwise function while the tile is in L1. One barrier
 * per step publishes the new state. Backward mirrors it (dh_prev = dG * W_hh by hidden columns, one
 * barrier per step, ping-pong step buffer); weight gradients are single GEMMs after the loop.
 */

#define CELL SFX(fr_cell)
#define KERN SFX(fr_kernel)

/* Steps per input-projection chunk: about PROJ_ROWS rows of (T*B, I) per GEMM. */
#define PROJ_ROWS 256
/* Packed weight bytes above which batch groups lose to splitting hidden units only (measured:
   LSTM H=128 gains with groups at 512 KiB, H=256 loses or breaks even at 2 MiB). */
#define FR_GROUP_MAX_WEIGHT_BYTES (1 << 20)
/* Rows per call of the backward pointwise. */
#define FR_BW_ROWS 16
/* Flops per step and thread below which an extra thread costs more than it saves. */
#define MIN_FLOPS_PER_THREAD 16000.0

static int SFX(pick_threads)(int nthreads, int64_t njb, int64_t B, int64_t I, int64_t H, int G) {
    double step_flops = 2.0 * (double)B * (double)(I + H) * (double)G * (double)H;
    int64_t nt = (int64_t)(step_flops / MIN_FLOPS_PER_THREAD);
    if (nt < 1) nt = 1;
    if (nt > nthreads) nt = nthreads;
    if (nt > njb) nt = njb;
#ifndef _OPENMP
    nt = 1;
#endif
    return (int)nt;
}

static inline int64_t SFX(imin)(int64_t a, int64_t b) { return a < b ? a : b; }

/* Split a team of nt threads into nbg batch groups of nt/nbg threads each: a group owns rows
   [B*g/nbg, B*(g+1)/nbg) for the whole sequence (rows never interact, so groups never wait for
   each other) and splits the hidden blocks among its threads (one barrier per step inside the
   group). Every thread of a group packs all the group's weight columns, so groups pay off while
   the weights a step reads (wbytes) stay in a core's L2 and each group keeps two row tiles. */
static int SFX(batch_groups)(int nt, int64_t B, int64_t mr, int64_t wbytes) {
    int nbg = fr_rec_batch_groups_forced();
    if (nbg > 0) return (nt % nbg == 0 && B >= nbg) ? nbg : 1;
    if (wbytes > FR_GROUP_MAX_WEIGHT_BYTES) return 1;
    for (nbg = nt; nbg > 1; nbg--)
        if (nt % nbg == 0 && B / nbg >= 2 * mr) return nbg;
    return 1;
}

/* Elements of the training cache, or -1 when sizes are negative or the count overflows int64. */
static inline int64_t SFX(cache_size)(const CELL *cell, int64_t Tn, int64_t B, int64_t H) {
    return fr_rec_cache_size(cell->G, cell->naux, Tn, B, H);
}

/* Threads worth using for a one-off parallel region of `flops` work (fork/join is not free). */
static int SFX(threads_for)(int nthreads, double flops) {
    const double per_thread = 4.0e6;
    int nt = (int)(flops / per_thread);
    return nt < 1 ? 1 : (nt > nthreads ? nthreads : nt);
}

/* Whether the team's per-step barrier can spin (team_sync.h): only with a processor per thread;
   oversubscribed, spinning threads would take the processors from the threads they wait for, so
   libgomp's barrier (which sleeps) is used instead. */
static inline int SFX(spin_team)(int nt) {
#ifdef _OPENMP
    return nt > 1 && nt <= omp_get_num_procs();
#else
    (void)nt;
    return 0;
#endif
}

/* Threads in the current team (1 outside a parallel region or without OpenMP). */
static inline int SFX(team_size)(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static inline int SFX(thread_id)(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Hidden blocks [*jb0, *jb0 + *nj) owned by thread hg of its group (njt blocks per thread). */
static inline void SFX(my_blocks)(int64_t njb, int64_t njt, int64_t hg, int64_t *jb0, int64_t *nj) {
    *jb0 = SFX(imin)(njb, hg * njt);
    *nj = SFX(imin)(njb, *jb0 + njt) - *jb0;
}

/* Prefetch n elements at p into L2 (for writing when w). */
static FR_PF_INLINE void SFX(prefetch_span)(const REAL *p, int64_t n, int w) {
    fr_prefetch(p, n * (int64_t)sizeof(REAL), w);
}

/* Prefetch for writing the training cache and output lines a forward step stores for row r,
   hidden units [j0, j0+nv) (y may be NULL). Inference (no cache) measured no gain from it. */
static FR_PF_INLINE void SFX(prefetch_fw_row)(const CELL *cell, int64_t r, int64_t j0, int64_t nv,
                                        int64_t H, const REAL *y, const REAL *hprev_c,
                                        const REAL *gates_c, const REAL *aux0_c,
                                        const REAL *aux1_c) {
    const int64_t G = cell->G;
    if (y) SFX(prefetch_span)(y + r * H + j0, nv, 1);
    SFX(prefetch_span)(hprev_c + r * H + j0, nv, 1);
    for (int64_t g = 0; g < G; g++) SFX(prefetch_span)(gates_c + r * G * H + g * H + j0, nv, 1);
    if (cell->naux > 0) SFX(prefetch_span)(aux0_c + r * H + j0, nv, 1);
    if (cell->naux > 1) SFX(prefetch_span)(aux1_c + r * H + j0, nv, 1);
}

/* Prefetch the lines the backward pointwise reads (cache, dy) and writes (gate grads) for row r,
   hidden units [j0, j0+nv) (dy and dgx may be NULL). */
static FR_PF_INLINE void SFX(prefetch_bw_row)(const CELL *cell, int64_t r, int64_t j0, int64_t nv,
                                        int64_t H, const REAL *hprev_c, const REAL *gates_c,
                                        const REAL *aux0_c, const REAL *aux1_c, const REAL *dy,
                                        const REAL *dgh, const REAL *dgx) {
    const int64_t G = cell->G, GH = G * H;
    for (int64_t g = 0; g < G; g++) {
        SFX(prefetch_span)(gates_c + r * GH + g * H + j0, nv, 0);
        SFX(prefetch_span)(dgh + r * GH + g * H + j0, nv, 1);
        if (dgx) SFX(prefetch_span)(dgx + r * GH + g * H + j0, nv, 1);
    }
    if (cell->naux > 0) SFX(prefetch_span)(aux0_c + r * H + j0, nv, 0);
    if (cell->naux > 1) SFX(prefetch_span)(aux1_c + r * H + j0, nv, 0);
    if (cell->bw_hprev) SFX(prefetch_span)(hprev_c + r * H + j0, nv, 0);
    if (dy) SFX(prefetch_span)(dy + r * H + j0, nv, 0);
}

/* db[g*H + j] += d[r*G*H + g*H + j] for the tile's rows r, gates g < G and units j < t->n (d and
   db at the tile's first unit). */
FR_CLONES static void SFX(sum_rows)(const SFX(fr_bw_tile) *t, int64_t G, const REAL *d, REAL *db) {
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        for (int64_t g = 0; g < G; g++) {
            const REAL *restrict src = d + r * G * H + g * H;
            REAL *restrict dst = db + g * H;
            for (int64_t j = 0; j < n; j++) dst[j] += src[j];
        }
    }
}

/* Time index of batch row b at step s (a bijection on [0, T) for each row). */
static inline int64_t SFX(time_of)(int64_t s, int64_t L, int reverse) {
    return (reverse && s < L) ? L - 1 - s : s;
}

int64_t SFX(fr_rec_slice_size)(const CELL *cell, int64_t I, int64_t H, int64_t nr, int64_t njt) {
    return njt * cell->G * nr * (I + H + 1) + njt * nr;
}

void SFX(fr_rec_slice_view)(const CELL *cell, SFX(fr_slice) *sl, REAL *dst, int64_t I, int64_t H,
                            int64_t nr, int64_t jb0, int64_t nj, int64_t njt) {
    const int64_t G = cell->G;
    sl->jb0 = jb0;
    sl->nj = nj;
    sl->nr = nr;
    sl->wih = dst;                        /* nj*G panels of I x nr */
    sl->whh = dst + njt * G * nr * I;     /* nj*G panels of H x nr */
    sl->bias = sl->whh + njt * G * nr * H; /* nj*G*nr folded input-side biases */
    sl->bhn = sl->bias + njt * G * nr;     /* nj*nr GRU n recurrent bias */
}

void SFX(fr_rec_pack_slice)(const CELL *cell, SFX(fr_slice) *sl, REAL *dst, const REAL *w_ih,
                            const REAL *w_hh, const REAL *b_ih, const REAL *b_hh, int64_t I,
                            int64_t H, int64_t nr, int64_t jb0, int64_t nj, int64_t njt) {
    const int64_t G = cell->G;
    SFX(fr_rec_slice_view)(cell, sl, dst, I, H, nr, jb0, nj, njt);
    if (nj <= 0) return;
    if (I > 0 && w_ih != NULL) SFX(fr_pack_b)(sl->wih, w_ih, I, 1, I, H, G, nr, jb0, jb0 + nj);
    SFX(fr_pack_b)(sl->whh, w_hh, H, 1, H, H, G, nr, jb0, jb0 + nj);
    for (int64_t jl = 0; jl < nj; jl++) {
        for (int64_t g = 0; g < G; g++) {
            for (int64_t c = 0; c < nr; c++) {
                const int64_t j = (jb0 + jl) * nr + c;
                REAL v = 0;
                if (j < H) {
                    if (b_ih) v += b_ih[g * H + j];
                    if (b_hh && !(cell->split_n && g == G - 1)) v += b_hh[g * H + j];
                }
                sl->bias[(jl * G + g) * nr + c] = v;
            }
        }
        for (int64_t c = 0; c < nr; c++) {
            const int64_t j = (jb0 + jl) * nr + c;
            sl->bhn[jl * nr + c] = (cell->split_n && b_hh && j < H) ? b_hh[(G - 1) * H + j] : 0;
        }
    }
}

/* Identity input weights (w_ih NULL, I = G*H: A holds projected rows, gate g at +g*H): the
   slice's columns of A plus the folded bias; padding columns past H get the bias (zero). Row q is
   A + q*G*H, or A + ids[q]*G*H when ids is not NULL (rows picked from a table). */
static void SFX(project_identity)(const CELL *cell, const SFX(fr_slice) *sl, const REAL *A,
                                  const int64_t *ids, int64_t rows, int64_t H, REAL *xp,
                                  int64_t ldxp) {
    const int64_t G = cell->G, nr = sl->nr;
    for (int64_t q = 0; q < rows; q++) {
        const REAL *a = A + (ids ? ids[q] : q) * G * H;
        if (ids && q + FR_PREFETCH_ROWS_AHEAD < rows) { /* table rows: load a later row's slice */
            const REAL *an = A + ids[q + FR_PREFETCH_ROWS_AHEAD] * G * H + sl->jb0 * nr;
            const int64_t ncols = SFX(imin)(sl->nj * nr, H - sl->jb0 * nr);
            for (int64_t g = 0; g < G; g++) SFX(prefetch_span)(an + g * H, ncols, 0);
        }
        for (int64_t jl = 0; jl < sl->nj; jl++) {
            const int64_t j0 = (sl->jb0 + jl) * nr, nv = SFX(imin)(nr, H - j0);
            for (int64_t g = 0; g < G; g++) {
                const REAL *bp = sl->bias + (jl * G + g) * nr;
                REAL *o = xp + q * ldxp + (jl * G + g) * nr;
                for (int64_t c = 0; c < nv; c++) o[c] = a[g * H + j0 + c] + bp[c];
                for (int64_t c = nv; c < nr; c++) o[c] = bp[c];
            }
        }
    }
}

void SFX(fr_rec_project)(const CELL *cell, const KERN *kern, const SFX(fr_slice) *sl,
                         const REAL *A, int64_t rows, int64_t I, REAL *xp, int64_t ldxp) {
    const int64_t G = cell->G, nr = sl->nr, mr = kern->mr;
    for (int64_t jl = 0; jl < sl->nj; jl++) {
        for (int64_t g = 0; g < G; g++) {
            const REAL *panel = sl->wih + (jl * G + g) * I * nr;
            REAL *out = xp + (jl * G + g) * nr;
            const REAL *bp = sl->bias + (jl * G + g) * nr;
            for (int64_t r0 = 0; r0 < rows; r0 += mr) {
                const int64_t m = SFX(imin)(mr, rows - r0);
                if (I > 0) kern->ukr(m, I, A + r0 * I, I, panel, out + r0 * ldxp, ldxp, 0);
                for (int64_t i = 0; i < m; i++) {
                    REAL *o = out + (r0 + i) * ldxp;
                    if (I > 0)
                        for (int64_t c = 0; c < nr; c++) o[c] += bp[c];
                    else
                        for (int64_t c = 0; c < nr; c++) o[c] = bp[c];
                }
            }
        }
    }
}

void SFX(fr_rec_step)(const CELL *cell, const KERN *kern, const SFX(fr_slice) *sl, int64_t s,
                      int64_t Tn, int64_t B, int64_t rb0, int64_t rb1, int64_t H,
                      const int64_t *lengths, int reverse,
                      const REAL *hp, REAL *hn, int64_t ldh, REAL *c, const REAL *xp, int64_t ldxp,
                      int64_t qbase, REAL *y, REAL *cache, REAL *tile, SFX(fr_point_fn) pw, int act) {
    const int64_t G = cell->G, GH = G * H, nr = sl->nr, mr = kern->mr, TB = Tn * B;
    REAL *hprev_c = cache, *gates_c = cache ? cache + TB * H : NULL;
    REAL *aux0_c = cache && cell->naux > 0 ? gates_c + TB * GH : NULL;
    REAL *aux1_c = cache && cell->naux > 1 ? aux0_c + TB * H : NULL;
    int64_t rows[FR_MAX_MR];
    SFX(fr_tile) tl = {.ts = nr, .H = H, .ldxp = ldxp, .hh = tile, .ldhh = G * nr, .ldh = ldh,
                       .ldc = H, .rows = rows};
    for (int64_t jl = 0; jl < sl->nj; jl++) {
        const int64_t j0 = (sl->jb0 + jl) * nr, nv = SFX(imin)(nr, H - j0);
        const REAL *wpanel = sl->whh + jl * G * H * nr;
        tl.n = nv;
        tl.bhn = sl->bhn + jl * nr;
        tl.y = y ? y + j0 : NULL;
        tl.gates = gates_c ? gates_c + j0 : NULL;
        tl.aux0 = aux0_c ? aux0_c + j0 : NULL;
        tl.aux1 = aux1_c ? aux1_c + j0 : NULL;
        for (int64_t b0 = rb0; b0 < rb1; b0 += mr) {
            const int64_t m = SFX(imin)(mr, rb1 - b0);
            for (int64_t g = 0; g < G; g++)
                kern->ukr(m, H, hp + b0 * ldh, ldh, wpanel + g * H * nr, tile + g * nr, G * nr, 0);
            for (int64_t i = 0; i < m; i++) {
                const int64_t b = b0 + i;
                const int64_t L = lengths ? lengths[b] : Tn;
                const int64_t r = SFX(time_of)(s, L, reverse) * B + b;
                if (cache && s + 1 < Tn) /* the row's next step, one step ahead of its stores */
                    SFX(prefetch_fw_row)(cell, SFX(time_of)(s + 1, L, reverse) * B + b, j0, nv, H, y,
                                         hprev_c, gates_c, aux0_c, aux1_c);
                if (s < L) {
                    rows[i] = r;
                    if (cache) memcpy(hprev_c + r * H + j0, hp + b * ldh + j0, (size_t)nv * sizeof(REAL));
                } else { /* the row's sequence has ended: its state passes through */
                    rows[i] = -1;
                    memcpy(hn + b * ldh + j0, hp + b * ldh + j0, (size_t)nv * sizeof(REAL));
                    if (y) memset(y + r * H + j0, 0, (size_t)nv * sizeof(REAL));
                    if (cache) memset(hprev_c + r * H + j0, 0, (size_t)nv * sizeof(REAL));
                }
            }
            tl.m = m;
            tl.xp = xp + (qbase + b0) * ldxp + jl * G * nr;
            tl.hprev = hp + b0 * ldh + j0;
            tl.h = hn + b0 * ldh + j0;
            tl.c = cell->has_c ? c + b0 * H + j0 : NULL;
            pw(&tl, act);
        }
    }
}

int SFX(fr_rec_forward)(const CELL *cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache, const REAL *x,
                        const int64_t *ids, int64_t V, const REAL *h0, const REAL *c0,
                        const REAL *w_ih, const REAL *w_hh, const REAL *b_ih, const REAL *b_hh,
                        const int64_t *lengths, int64_t Tn, int64_t B, int64_t I, int64_t H,
                        int act, int reverse, int nthreads) {
    if (Tn < 0 || B < 0 || I < 0 || H < 1 || nthreads < 1 || y == NULL || h_n == NULL ||
        (cell->has_c && c_n == NULL) || (Tn > 0 && B > 0 && I > 0 && x == NULL) || w_hh == NULL ||
        (I > 0 && w_ih == NULL && I != cell->G * H) ||
        (cache != NULL && SFX(cache_size)(cell, Tn, B, H) < 0) ||
        (ids != NULL && (w_ih != NULL || I != cell->G * H)))
        return FR_ERR_ARG;
    if (ids != NULL)
        for (int64_t r = 0; r < Tn * B; r++)
            if (ids[r] < 0 || ids[r] >= V) return FR_ERR_ARG;
    const int64_t G = cell->G, BH = B * H;
    const int identity = I > 0 && w_ih == NULL; /* x holds the input projection already */
    /* initial state */
    for (int64_t k = 0; k < BH; k++) h_n[k] = h0 ? h0[k] : (REAL)0;
    if (cell->has_c)
        for (int64_t k = 0; k < BH; k++) c_n[k] = c0 ? c0[k] : (REAL)0;
    if (Tn == 0 || B == 0) return FR_OK;

    const KERN *kern = SFX(fr_kernel_get)();
    const SFX(fr_point_fn) pw = cell->point_for(fr_get_arch());
    const int64_t mr = kern->mr, nr = kern->nr;
    if (nr > FR_MAX_NR || mr > FR_MAX_MR) return FR_ERR_ARG;
    const int64_t njb = (H + nr - 1) / nr;
    const int nt = SFX(pick_threads)(nthreads, njb, B, I, H, (int)G);
    const int64_t wbytes = G * H * ((identity ? 0 : I) + H) * (int64_t)sizeof(REAL);
    const int nbg = SFX(batch_groups)(nt, B, mr, wbytes), nhg = nt / nbg;
    const int64_t njt = (njb + nhg - 1) / nhg; /* max hidden blocks per thread */
    const int64_t bmax = (B + nbg - 1) / nbg;  /* max rows per group */
    int64_t Tc = (PROJ_ROWS + bmax - 1) / bmax;
    if (Tc > Tn) Tc = Tn;
    const int gather = reverse && lengths != NULL;
    const int64_t ldxp = njt * G * nr;

    /* scratch: shared (h ping-pong, gather rows) + per thread (packed slice, x-proj, tile) */
    const int64_t slice = SFX(fr_rec_slice_size)(cell, identity ? 0 : I, H, nr, njt);
    const int64_t per_thread = slice + Tc * bmax * ldxp + mr * G * nr;
    /* state rows padded by a cache line (H*sizeof(REAL) a multiple of 4 KiB would put the
       microkernel's rows in one L1 set) */
    const int64_t line = 64 / (int64_t)sizeof(REAL);
    const int64_t ldh = (H + line - 1) / line * line + line, BL = B * ldh;
    const int64_t shared = 2 * BL + (gather ? Tc * B * I : 0);
    REAL *scratch = (REAL *)fr_scratch_alloc((size_t)(shared + nt * per_thread) * sizeof(REAL));
    const int spin = nhg > 1 && SFX(spin_team)(nt);
    fr_team_flag *team = spin ? fr_team_new(nt) : NULL;
    if (scratch == NULL || (spin && team == NULL)) {
        fr_scratch_free(scratch);
        return FR_ERR_NOMEM;
    }
    REAL *hbuf = scratch;
    REAL *gbuf = scratch + 2 * BL;
    for (int64_t b = 0; b < B; b++) memcpy(hbuf + b * ldh, h_n + b * H, (size_t)H * sizeof(REAL));
    int short_team = 0;

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        if (SFX(team_size)() != nt) { /* a smaller team than asked: redo with it below */
            if (SFX(thread_id)() == 0) short_team = SFX(team_size)();
        } else {
            const int tid = SFX(thread_id)(), bg = tid / nhg, hg = tid % nhg;
            const int64_t rb0 = B * bg / nbg, rb1 = B * (bg + 1) / nbg, nb = rb1 - rb0;
            int64_t jb0, nj;
            SFX(my_blocks)(njb, njt, hg, &jb0, &nj);
            REAL *mine = scratch + shared + tid * per_thread;
            REAL *xp = mine + slice;            /* Tc*nb rows of ldxp: (step, row - rb0) */
            REAL *tile = xp + Tc * bmax * ldxp; /* mr x G*nr */
            SFX(fr_slice) sl;
            SFX(fr_rec_pack_slice)(cell, &sl, mine, w_ih, w_hh, b_ih, b_hh, identity ? 0 : I, H, nr,
                                   jb0, nj, njt);

            for (int64_t s0 = 0; s0 < Tn; s0 += Tc) {
                const int64_t s1 = SFX(imin)(Tn, s0 + Tc), rows = (s1 - s0) * B;
                const REAL *A;
                const int64_t *ids_c = NULL; /* ids of the chunk's rows (rows of x otherwise) */
                if (gather) {
                    /* gbuf is shared: without per-step barriers (batch groups) a thread could
                       overwrite rows another group has not projected yet */
                    if (nbg > 1) {
#pragma omp barrier
                    }
#pragma omp for schedule(static)
                    for (int64_t q = 0; q < rows; q++) {
                        const int64_t s = s0 + q / B, b = q % B;
                        const int64_t t = SFX(time_of)(s, lengths[b], 1);
                        const int64_t r = ids ? ids[t * B + b] : t * B + b;
                        memcpy(gbuf + q * I, x + r * I, (size_t)I * sizeof(REAL));
                    }
                    A = gbuf;
                } else if (ids) {
                    A = x;
                    ids_c = ids + (reverse ? Tn - s1 : s0) * B;
                } else {
                    A = reverse ? x + (Tn - s1) * B * I : x + s0 * B * I;
                }
                /* this thread's columns of the input projection for the chunk, its rows only
                   (A holds B rows per step; xp nb) */
                for (int64_t k = 0; k < (nb == B ? 1 : s1 - s0); k++) {
                    const int64_t rk = nb == B ? rows : nb;
                    const REAL *Ak = ids_c ? A : A + (k * B + rb0) * I;
                    const int64_t *idk = ids_c ? ids_c + k * B + rb0 : NULL;
                    if (identity)
                        SFX(project_identity)(cell, &sl, Ak, idk, rk, H, xp + k * nb * ldxp, ldxp);
                    else
                        SFX(fr_rec_project)(cell, kern, &sl, Ak, rk, I, xp + k * nb * ldxp, ldxp);
                }
                for (int64_t s = s0; s < s1; s++) {
                    /* xp row of (s, b) is qbase + b */
                    const int64_t qbase =
                        ((reverse && !gather) ? (s1 - 1 - s) * nb : (s - s0) * nb) - rb0;
                    SFX(fr_rec_step)(cell, kern, &sl, s, Tn, B, rb0, rb1, H, lengths, reverse,
                                     hbuf + (s & 1) * BL, hbuf + ((s + 1) & 1) * BL, ldh, c_n, xp, ldxp,
                                     qbase, y, cache, tile, pw, act);
                    if (spin) {
                        fr_team_barrier(team + bg * nhg, hg, nhg, s + 1);
                    } else if (nhg > 1) { /* libgomp makes a futex call even for a team of one */
#pragma omp barrier
                    }
                }
            }
            /* final state: this thread's rows and columns */
            const REAL *hf = hbuf + (Tn & 1) * BL;
            for (int64_t jl = 0; jl < nj; jl++) {
                const int64_t j0 = (jb0 + jl) * nr, nv = SFX(imin)(nr, H - j0);
                for (int64_t b = rb0; b < rb1; b++)
                    memcpy(h_n + b * H + j0, hf + b * ldh + j0, (size_t)nv * sizeof(REAL));
            }
        }
    }
    fr_team_free(team);
    fr_scratch_free(scratch);
    if (short_team > 0) /* the runtime gave fewer threads (OMP_THREAD_LIMIT, a nested region) */
        return SFX(fr_rec_forward)(cell, y, h_n, c_n, cache, x, ids, V, h0, c0, w_ih, w_hh, b_ih,
                                   b_hh, lengths, Tn, B, I, H, act, reverse, short_team);
    return FR_OK;
}

const CELL *SFX(fr_rec_cell_of)(int cell) {
    switch (cell) {
    case FR_CELL_RNN: return &SFX(fr_rnn_cell);
    case FR_CELL_LSTM: return &SFX(fr_lstm_cell);
    case FR_CELL_GRU: return &SFX(fr_gru_cell);
    default: return NULL;
    }
}

/* The descriptor of cell, or NULL where cell or act is not valid. */
static const CELL *SFX(checked_cell)(int cell, int act) {
    if (cell == FR_CELL_RNN && act != FR_RNN_TANH && act != FR_RNN_RELU) return NULL;
    return SFX(fr_rec_cell_of)(cell);
}

int SFX(fr_cell_forward)(int cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache, const REAL *x,
                         const REAL *h0, const REAL *c0, const REAL *w_ih, const REAL *w_hh,
                         const REAL *b_ih, const REAL *b_hh, const int64_t *lengths, int64_t T,
                         int64_t B, int64_t I, int64_t H, int act, int reverse, int nthreads) {
    const CELL *cd = SFX(checked_cell)(cell, act);
    if (cd == NULL) return FR_ERR_ARG;
    return SFX(fr_rec_forward)(cd, y, h_n, cd->has_c ? c_n : NULL, cache, x, NULL, 0, h0,
                               cd->has_c ? c0 : NULL, w_ih, w_hh, b_ih, b_hh, lengths, T, B, I, H,
                               act, reverse, nthreads);
}

int SFX(fr_cell_forward_rows)(int cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache,
                              const REAL *table, int64_t V, const int64_t *ids, const REAL *h0,
                              const REAL *c0, const REAL *w_hh, const REAL *b_ih, const REAL *b_hh,
                              const int64_t *lengths, int64_t T, int64_t B, int64_t H, int act,
                              int reverse, int nthreads) {
    const CELL *cd = SFX(checked_cell)(cell, act);
    if (cd == NULL || H < 1 || V < 0 || (T > 0 && B > 0 && (ids == NULL || table == NULL)))
        return FR_ERR_ARG;
    return SFX(fr_rec_forward)(cd, y, h_n, cd->has_c ? c_n : NULL, cache, table, ids, V, h0,
                               cd->has_c ? c0 : NULL, NULL, w_hh, b_ih, b_hh, lengths, T, B,
                               cd->G * H, H, act, reverse, nthreads);
}

int SFX(fr_cell_backward)(int cell, REAL *dx, REAL *dh0, REAL *dc0, REAL *dw_ih, REAL *dw_hh,
                          REAL *db_ih, REAL *db_hh, const REAL *cache, const REAL *x,
                          const REAL *w_ih, const REAL *w_hh, const REAL *dy, const REAL *dh_n,
                          const REAL *dc_n, const int64_t *lengths, int64_t T, int64_t B,
                          int64_t I, int64_t H, int act, int reverse, int nthreads) {
    const CELL *cd = SFX(checked_cell)(cell, act);
    if (cd == NULL) return FR_ERR_ARG;
    return SFX(fr_rec_backward)(cd, dx, dh0, cd->has_c ? dc0 : NULL, dw_ih, dw_hh, db_ih, db_hh,
                                cache, x, w_ih, w_hh, dy, dh_n, cd->has_c ? dc_n : NULL, lengths, T,
                                B, I, H, act, reverse, nthreads);
}

int SFX(fr_rec_backward)(const CELL *cell, REAL *dx, REAL *dh0, REAL *dc0, REAL *dw_ih, REAL *dw_hh,
                         REAL *db_ih, REAL *db_hh, const REAL *cache, const REAL *x, const REAL *w_ih,
                         const REAL *w_hh, const REAL *dy, const REAL *dh_n, const REAL *dc_n,
                         const int64_t *lengths, int64_t Tn, int64_t B, int64_t I, int64_t H, int act,
                         int reverse, int nthreads) {
    const int identity = I > 0 && w_ih == NULL; /* W_ih is the identity: dx gets the gate grads */
    if (Tn < 0 || B < 0 || I < 0 || H < 1 || nthreads < 1 || dh0 == NULL ||
        (dw_ih == NULL && !identity) || dw_hh == NULL || (cell->has_c && dc0 == NULL) ||
        (Tn > 0 && B > 0 && cache == NULL) || (identity && I != cell->G * H) ||
        (Tn > 0 && B > 0 && I > 0 && (identity ? dx == NULL : x == NULL)) || w_hh == NULL ||
        SFX(cache_size)(cell, Tn, B, H) < 0)
        return FR_ERR_ARG;
    const int64_t G = cell->G, GH = G * H, BH = B * H, TB = Tn * B;
    for (int64_t k = 0; k < BH; k++) dh0[k] = dh_n ? dh_n[k] : (REAL)0;
    if (cell->has_c)
        for (int64_t k = 0; k < BH; k++) dc0[k] = dc_n ? dc_n[k] : (REAL)0;
    if (TB == 0) return FR_OK;

    const KERN *kern = SFX(fr_kernel_get)();
    const int64_t mr = kern->mr, nr = kern->nr;
    if (nr > FR_MAX_NR) return FR_ERR_ARG;
    const int64_t njb = (H + nr - 1) / nr;
    const int nt = SFX(pick_threads)(nthreads, njb, B, 0, H, (int)G);
    const int nbg = SFX(batch_groups)(nt, B, mr, GH * H * (int64_t)sizeof(REAL)), nhg = nt / nbg;
    const int64_t njt = (njb + nhg - 1) / nhg;
    const int split = cell->split_n;

    /* step rows padded by a cache line: with G*H*sizeof(REAL) a multiple of 4 KiB (H = 256,
       512, 1024...) the microkernel's rows would all map to the same L1 set */
    const int64_t line = 64 / (int64_t)sizeof(REAL);
    const int64_t ldd = (GH + line - 1) / line * line + line;
    /* bias gradients: each thread sums the gate gradients it writes (dgh, and GRU's dgx apart)
       into its own accumulators, added up in thread order after the loop */
    const int64_t nacc = (db_ih || db_hh) ? (split ? 2 : 1) : 0;
    const int64_t per_thread = njt * GH * nr + mr * nr + nacc * GH;
    /* the (T*B, G*H) input pre-activation grads go straight to dx when W_ih is the identity */
    const int64_t own_dgx = identity ? (split ? 1 : 0) : (split ? 2 : 1);
    const int64_t shared = TB * GH * own_dgx + 2 * B * ldd;
    REAL *scratch = (REAL *)fr_scratch_alloc((size_t)(shared + nt * per_thread) * sizeof(REAL));
    const int spin = nhg > 1 && SFX(spin_team)(nt);
    fr_team_flag *team = spin ? fr_team_new(nt) : NULL;
    if (scratch == NULL || (spin && team == NULL)) {
        fr_scratch_free(scratch);
        return FR_ERR_NOMEM;
    }
    /* (T*B, G*H) grads of the recurrent and the input pre-activations (the same for all but GRU) */
    REAL *dgh_all = (identity && !split) ? dx : scratch;
    REAL *dgx_all = identity ? dx : (split ? scratch + TB * GH : dgh_all);
    REAL *dgs = scratch + TB * GH * own_dgx; /* 2 x (B, ldd) ping-pong step rows */
    /* thread t's part: packed W_hh panels, a tile, then its bias-gradient sums (acc0 + t*per_thread) */
    REAL *acc0 = scratch + shared + njt * GH * nr + mr * nr;

    const REAL *hprev_c = cache, *gates_c = cache + TB * H;
    const REAL *aux0_c = cell->naux > 0 ? gates_c + TB * GH : NULL;
    const REAL *aux1_c = cell->naux > 1 ? aux0_c + TB * H : NULL;
    REAL *dh = dh0, *dc = cell->has_c ? dc0 : NULL;
    int short_team = 0;

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        if (SFX(team_size)() != nt) { /* a smaller team than asked: redo with it below */
            if (SFX(thread_id)() == 0) short_team = SFX(team_size)();
        } else {
            const int tid = SFX(thread_id)(), bg = tid / nhg, hg = tid % nhg;
            const int64_t rb0 = B * bg / nbg, rb1 = B * (bg + 1) / nbg;
            int64_t jb0, nj;
            SFX(my_blocks)(njb, njt, hg, &jb0, &nj);
            REAL *whh_p = scratch + shared + tid * per_thread; /* nj panels of (G*H) x nr */
            REAL *tile = whh_p + njt * GH * nr;
            REAL *acc = acc0 + tid * per_thread; /* nacc x G*H bias-gradient sums */
            if (nacc > 0) memset(acc, 0, (size_t)(nacc * GH) * sizeof(REAL));
            if (nj > 0) SFX(fr_pack_b)(whh_p, w_hh, H, 0, GH, H, 1, nr, jb0, jb0 + nj);

            int64_t rows[FR_BW_ROWS];
            SFX(fr_bw_tile) bt = {.H = H, .rows = rows, .ldd = ldd};
            for (int64_t s = Tn - 1; s >= 0; s--) {
                REAL *dstep = dgs + (s & 1) * B * ldd;
                for (int64_t jl = 0; jl < nj; jl++) {
                    const int64_t j0 = (jb0 + jl) * nr, nv = SFX(imin)(nr, H - j0);
                    bt.n = nv;
                    bt.gates = gates_c + j0;
                    bt.aux0 = aux0_c ? aux0_c + j0 : NULL;
                    bt.aux1 = aux1_c ? aux1_c + j0 : NULL;
                    bt.hprev = hprev_c + j0;
                    bt.dy = dy ? dy + j0 : NULL;
                    bt.dgh = dgh_all + j0;
                    bt.dgx = split ? dgx_all + j0 : NULL;
                    for (int64_t b0 = rb0; b0 < rb1; b0 += FR_BW_ROWS) {
                        const int64_t m = SFX(imin)(FR_BW_ROWS, rb1 - b0);
                        for (int64_t i = 0; i < m; i++) {
                            const int64_t b = b0 + i;
                            const int64_t L = lengths ? lengths[b] : Tn;
                            const int64_t r = SFX(time_of)(s, L, reverse) * B + b;
                            if (s > 0) /* the row's next step, one step ahead of use */
                                SFX(prefetch_bw_row)(cell, SFX(time_of)(s - 1, L, reverse) * B + b, j0,
                                                     nv, H, hprev_c, gates_c, aux0_c, aux1_c, dy, dgh_all,
                                                     split ? dgx_all : NULL);
                            rows[i] = s < L ? r : -1;
                            if (s >= L) /* past the row's end: zero gradients */
                                for (int64_t g = 0; g < G; g++) {
                                    memset(dgh_all + r * GH + g * H + j0, 0, (size_t)nv * sizeof(REAL));
                                    memset(dstep + b * ldd + g * H + j0, 0, (size_t)nv * sizeof(REAL));
                                    if (split) memset(dgx_all + r * GH + g * H + j0, 0, (size_t)nv * sizeof(REAL));
                                }
                        }
                        bt.m = m;
                        bt.dh = dh + b0 * H + j0;
                        bt.dc = dc ? dc + b0 * H + j0 : NULL;
                        bt.dgs = dstep + b0 * ldd + j0;
                        cell->bw(&bt, act);
                        if (nacc > 0) { /* while the rows just written are in L1 */
                            SFX(sum_rows)(&bt, G, bt.dgh, acc + j0);
                            if (split) SFX(sum_rows)(&bt, G, bt.dgx, acc + GH + j0);
                        }
                    }
                }
                if (spin) {
                    fr_team_barrier(team + bg * nhg, hg, nhg, Tn - s);
                } else if (nhg > 1) {
#pragma omp barrier
                }
                /* dh_prev[:, own columns] += dstep (B x G*H) * W_hh[:, own columns], for rows active
                   at step s only: an inactive row's state passed through unchanged, and its zero
                   dstep row times a non-finite W_hh would otherwise turn its gradient into NaN */
                for (int64_t jl = 0; jl < nj; jl++) {
                    const int64_t j0 = (jb0 + jl) * nr, nv = SFX(imin)(nr, H - j0);
                    for (int64_t b0 = rb0; b0 < rb1; b0 += mr) {
                        const int64_t m = SFX(imin)(mr, rb1 - b0);
                        kern->ukr(m, GH, dstep + b0 * ldd, ldd, whh_p + jl * GH * nr, tile, nr, 0);
                        for (int64_t i = 0; i < m; i++) {
                            if (lengths && s >= lengths[b0 + i]) continue;
                            REAL *d = dh + (b0 + i) * H + j0;
                            for (int64_t c = 0; c < nv; c++) d[c] += tile[i * nr + c];
                        }
                    }
                }
            }
        }
    }

    fr_team_free(team);
    if (short_team > 0) { /* the runtime gave fewer threads: redo with them */
        fr_scratch_free(scratch);
        return SFX(fr_rec_backward)(cell, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, cache, x, w_ih,
                                    w_hh, dy, dh_n, dc_n, lengths, Tn, B, I, H, act, reverse,
                                    short_team);
    }
    int st = FR_OK;
    const int ntg = SFX(threads_for)(nthreads, 2.0 * (double)TB * (double)GH * (double)(identity ? H : I + H));
    if (I > 0 && !identity) {
        if (dx) st = SFX(fr_gemm)(0, 0, TB, I, GH, dgx_all, GH, w_ih, I, 0, dx, I, ntg);
        if (st == FR_OK) st = SFX(fr_gemm)(1, 0, GH, I, TB, dgx_all, GH, x, I, 1, dw_ih, I, ntg);
    }
    if (st == FR_OK) st = SFX(fr_gemm)(1, 0, GH, H, TB, dgh_all, GH, hprev_c, H, 1, dw_hh, H, ntg);
    for (int t = 0; t < nt && nacc > 0; t++) { /* bias gradients: the threads' sums, in order */
        int64_t jb0, nj;
        SFX(my_blocks)(njb, njt, t % nhg, &jb0, &nj);
        const REAL *acc = acc0 + t * per_thread;
        for (int64_t g = 0; g < G; g++) {
            const int64_t c0 = g * H + jb0 * nr, c1 = g * H + SFX(imin)(H, (jb0 + nj) * nr);
            for (int64_t c = c0; c < c1; c++) {
                if (db_hh) db_hh[c] += acc[c];
                if (db_ih) db_ih[c] += acc[split ? GH + c : c];
            }
        }
    }
    fr_scratch_free(scratch);
    return st;
}

#undef CELL
#undef KERN
#undef PROJ_ROWS
#undef FR_BW_ROWS
#undef MIN_FLOPS_PER_THREAD
#undef FR_GROUP_MAX_WEIGHT_BYTES
