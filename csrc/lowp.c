/*
 * lowp.c — the reduced-precision (bfloat16, int8) whole-sequence forward: weight packing (once,
 * fr_lp_pack) and the driver (fr_lp_forward). Formats and microkernels: lowp.h, lowp_kernels.c.
 * The cells' pointwise maths are the float32 ones (rnn.c, lstm.c, gru.c) through the same tile
 * interface as recurrence.c, so the training cache has the float32 layout and the float32
 * backward (fr_cell_backward_s) runs on it.
 *
 * One parallel region for the sequence. Thread tid owns hidden blocks of LP_NR units (all gates);
 * per chunk of steps it converts the chunk's input rows once (bf16 pairs or u8 quads, gathered in
 * the order the steps read them) and projects its own columns; per step it converts the B state
 * rows once into its own buffer, runs its recurrent tiles and the pointwise maths while the tile
 * is in L1; one barrier per step publishes the new state.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lowp.h"
#include "recurrence.h"
#include "scratch.h"
#include "simd_target.h"
#include "team_sync.h"
#include "team_load.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define LP_MAGIC 0x70776c66 /* "flwp" */
#define LP_PROJ_ROWS 256    /* input rows per projection chunk */
/* K words per slab of a step's whole AMX tiles (lp_kernel.acc), summed over the G gates of a
   hidden block slab by slab: a 32-row slab of A (16 KB) stays in L1 over the gates' panel slabs
   (16 KB each), where a whole K of 256 words (A and a panel, 64 KB) went back to L2 for every
   panel. The same sums (C kept in float32 between slabs). Measured, bf16 inference, 2 threads:
   LSTM (100,64,512,512) 24.3-25.0 -> 23.0-23.8 ms, GRU 17.8-18.4 -> 16.4-18.3, xlarge LSTM
   unchanged; slabs of 64 words lost (C loaded and stored 4 times). */
#define LP_KSLAB 128
/* Hidden blocks per pointwise call: a one-gate cell (RNN) keeps a row's blocks side by side in
   xp, the tile and h, so the products of LP_SPAN blocks go into one tile and a single call of
   the cell's pointwise (at most FR_MAX_NR units, recurrence.h) finishes them: a batch-1 step of
   64 units makes one call and one pass of bookkeeping instead of two. Cells with more gates
   interleave a block's gates and take one block a call. */
#define LP_SPAN (FR_MAX_NR / LP_NR)

/* Blocks per pointwise call of a cell with G gates (LP_SPAN for one gate, else 1). */
static inline int64_t lp_span(int64_t G) { return G == 1 ? LP_SPAN : 1; }
/* Threads: where the batch has a row per thread, each thread owns rows for the whole sequence
   (rows never interact: no barrier; each reads all the weights) once the call has
   LP_MIN_CALL_FLOPS per thread. A batch of one splits the hidden blocks instead, with a barrier
   per step, once a step has LP_MIN_STEP_FLOPS per thread: a step of the fast kernels is a few
   microseconds, and on a busy machine every barrier may wait for a descheduled thread. */
#define LP_MIN_CALL_FLOPS 4.0e6
#define LP_MIN_STEP_FLOPS 2.0e6
/* A sequence of one step splits the hidden blocks at any batch (each thread reads its own share
   of the weights, and no barrier follows: the region's end is the only wait): a thread per
   LP_ONE_STEP_WEIGHTS weights. Measured (one warm step, 1 against 2 threads, session 10 of
   bench/RESULTS.md): 2 threads took 0.44-0.94x from 2^18 weights in every cell, batch and
   precision, and 0.87-1.37x at 2^17 (the fork and join, about 1.5 us, and AMX's tile set-up at
   2 rows and more, against a few microseconds of work). */
#define LP_ONE_STEP_WEIGHTS 131072.0
/* The reduced-precision kernels' speed against float32's, for the load rules' serial-time
   estimate (team_load.h measures float32 passes): one thread, T = 1 to 200, bf16 1.8-2.3x,
   int8 2.5-4.5x float32 (bench/RESULTS.md, session 10). */
#define LP_SPEEDUP 2.0
/* int8 sums of up to K products of 255 * 127 (and the 128 * column-sum compensations) stay in
   int32 for K up to 66000: inputs and hidden sizes above this limit are refused */
#define LP_INT8_MAX_K 65536

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t align64(int64_t n) { return (n + 63) / 64 * 64; }

static _Atomic int64_t step1_passes, step1_team_passes;

int64_t fr_lp_step1_passes(void) {
    return atomic_load_explicit(&step1_passes, memory_order_relaxed);
}

int64_t fr_lp_step1_team_passes(void) {
    return atomic_load_explicit(&step1_team_passes, memory_order_relaxed);
}

/* The packed block: this header, then (64-byte aligned) the folded biases (njb*G*LP_NR floats),
   the GRU n biases (njb*LP_NR), the W_ih panels (njb*G, none for the identity), the W_hh panels
   (njb*G); panel (jb, g) holds columns g*H + jb*LP_NR + c, c < LP_NR. */
typedef struct {
    int64_t magic, cell, prec, identity, I, H, G, njb;
    int64_t off_bias, off_bhn, off_ih, off_hh, pb_ih, pb_hh, total;
} lp_header;

static int lp_layout(lp_header *h, int cell, int prec, int identity, int64_t I, int64_t H) {
    const int G = fr_cell_gates(cell);
    if (G < 0 || (prec != FR_PREC_BF16 && prec != FR_PREC_INT8) || H < 1 || I < 0 ||
        (identity && I != G * H) || H > ((int64_t)1 << 24) || I > ((int64_t)1 << 26) ||
        (prec == FR_PREC_INT8 && (I > LP_INT8_MAX_K || H > LP_INT8_MAX_K)))
        return FR_ERR_ARG;
    h->magic = LP_MAGIC;
    h->cell = cell;
    h->prec = prec;
    h->identity = identity;
    h->I = I;
    h->H = H;
    h->G = G;
    h->njb = (H + LP_NR - 1) / LP_NR;
    h->pb_ih = identity || I == 0 ? 0 : lp_panel_bytes(prec, I);
    h->pb_hh = lp_panel_bytes(prec, H);
    h->off_bias = align64((int64_t)sizeof(lp_header));
    h->off_bhn = h->off_bias + align64(h->njb * G * LP_NR * 4);
    h->off_ih = h->off_bhn + align64(h->njb * LP_NR * 4);
    h->off_hh = h->off_ih + h->njb * G * h->pb_ih;
    h->total = h->off_hh + h->njb * G * h->pb_hh;
    return FR_OK;
}

int64_t fr_lp_packed_bytes(int cell, int prec, int identity, int64_t I, int64_t H) {
    lp_header h;
    return lp_layout(&h, cell, prec, identity != 0, I, H) == FR_OK ? h.total : -1;
}

/* Symmetric int8 quantization of one weight row (fastrnn.reference.quantize_rows_int8). */
static float quant_row_s8(const float *w, int64_t K, int8_t *q) {
    float amax = 0.0f;
    int finite = 1;
    for (int64_t k = 0; k < K; k++) {
        const float a = w[k] < 0 ? -w[k] : w[k];
        if (!(a <= 3.4028235e38f)) finite = 0;
        else if (a > amax) amax = a;
    }
    if (!finite) {
        memset(q, 0, (size_t)K);
        return NAN;
    }
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int64_t k = 0; k < K; k++) {
        float v = nearbyintf(w[k] * inv);
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        q[k] = (int8_t)v;
    }
    return amax / 127.0f;
}

/* Panel of columns g*H + j0 + c (c < LP_NR; zero where j0 + c >= H) of W (G*H rows of K); qrow:
   K bytes of scratch (int8). */
static void pack_panel(uint8_t *dst, int prec, const float *W, int64_t K, int64_t H, int64_t g,
                       int64_t j0, int8_t *qrow) {
    const int64_t kw = lp_kwords(prec, K), nv = imin(LP_NR, H - j0);
    uint32_t *P = (uint32_t *)dst;
    if (prec == FR_PREC_BF16) {
        lp_pack_nk_bf16(P, W + (g * H + j0) * K, K, K, nv);
        return;
    }
    memset(dst, 0, (size_t)lp_panel_bytes(prec, K));
    for (int64_t c = 0; c < nv; c++) {
        const float sc = quant_row_s8(W + (g * H + j0 + c) * K, K, qrow);
        int8_t *p8 = (int8_t *)P;
        int32_t sum = 0;
        for (int64_t k = 0; k < K; k++) {
            p8[((k / 4) * LP_NR + c) * 4 + (k & 3)] = qrow[k];
            sum += qrow[k];
        }
        int32_t *comp = (int32_t *)(P + kw * LP_NR);
        float *wscale = (float *)(comp + LP_NR);
        comp[c] = 128 * sum;
        wscale[c] = sc;
    }
}

int fr_lp_pack(void *packed, int cell, int prec, const float *w_ih, const float *w_hh,
               const float *b_ih, const float *b_hh, int64_t I, int64_t H) {
    lp_header h;
    if (packed == NULL || w_hh == NULL || (I > 0 && w_ih == NULL && I != fr_cell_gates(cell) * H))
        return FR_ERR_ARG;
    const int identity = I > 0 && w_ih == NULL;
    int st = lp_layout(&h, cell, prec, identity, I, H);
    if (st != FR_OK) return st;
    const fr_cell_s *cd = fr_rec_cell_of_s(cell);
    const int64_t G = h.G, K = I > H ? I : H;
    int8_t *qrow = malloc((size_t)(K > 0 ? K : 1));
    if (qrow == NULL) return FR_ERR_NOMEM;
    uint8_t *base = packed;
    memcpy(base, &h, sizeof h);
    float *bias = (float *)(base + h.off_bias), *bhn = (float *)(base + h.off_bhn);
    for (int64_t jb = 0; jb < h.njb; jb++) {
        const int64_t j0 = jb * LP_NR;
        for (int64_t g = 0; g < G; g++) {
            for (int64_t c = 0; c < LP_NR; c++) {
                const int64_t j = j0 + c;
                float v = 0;
                if (j < H) {
                    if (b_ih) v += b_ih[g * H + j];
                    if (b_hh && !(cd->split_n && g == G - 1)) v += b_hh[g * H + j];
                }
                bias[(jb * G + g) * LP_NR + c] = v;
            }
            if (h.pb_ih)
                pack_panel(base + h.off_ih + (jb * G + g) * h.pb_ih, prec, w_ih, I, H, g, j0, qrow);
            pack_panel(base + h.off_hh + (jb * G + g) * h.pb_hh, prec, w_hh, H, H, g, j0, qrow);
        }
        for (int64_t c = 0; c < LP_NR; c++)
            bhn[jb * LP_NR + c] = (cd->split_n && b_hh && j0 + c < H) ? b_hh[(G - 1) * H + j0 + c] : 0;
    }
    free(qrow);
    return FR_OK;
}

/* ---- the forward -------------------------------------------------------------------------- */

typedef struct {
    const lp_header *h;
    const uint8_t *base;
    const lp_kernel *k;  /* the input projection's kernels */
    const lp_kernel *ks; /* the recurrent step's (the same operand format) */
    const fr_cell_s *cd;
    fr_point_fn_s pw;
    float *y, *h_n, *c_n, *cache, *hq, *hbuf;
    const float *x;
    const int64_t *lengths;
    int64_t T, B, Tc, ldh, ldxp, kwI, kwH, per_thread_bytes;
    int act, reverse;
    uint8_t *scratch;   /* per thread: xp, Ax, ascale, Ah, hscale, tile */
    fr_team_flag *team; /* the spinning per-step barrier's flags (NULL: libgomp's barrier) */
    int split_rows;     /* the threads split the batch (1) or the hidden blocks (0) */
    int barrier;        /* the threads meet after every step (hidden blocks split, T > 1) */
} lp_fw;

static inline int64_t time_of(int64_t s, int64_t L, int reverse) {
    return (reverse && s < L) ? L - 1 - s : s;
}

/* Convert the input rows b in [rb0, rb0 + nb) of steps [s0, s1) (row q = (s - s0)*nb + b - rb0,
   the time row it reads). */
static void lp_convert_chunk(const lp_fw *f, int64_t s0, int64_t s1, int64_t rb0, int64_t nb,
                             uint32_t *Ax, float *as) {
    const int64_t B = f->B, I = f->h->I, kw = f->kwI, T = f->T;
    if (f->lengths == NULL && !f->reverse && nb == B) {
        f->k->rows(Ax, kw, as, f->x + s0 * B * I, I, (s1 - s0) * B, I);
    } else if (f->lengths == NULL) {
        for (int64_t s = s0; s < s1; s++)
            f->k->rows(Ax + (s - s0) * nb * kw, kw, as + (s - s0) * nb,
                       f->x + ((f->reverse ? T - 1 - s : s) * B + rb0) * I, I, nb, I);
    } else {
        for (int64_t s = s0; s < s1; s++)
            for (int64_t b = rb0; b < rb0 + nb; b++) {
                const int64_t q = (s - s0) * nb + b - rb0;
                const int64_t t = time_of(s, f->lengths[b], f->reverse);
                f->k->rows(Ax + q * kw, kw, as + q, f->x + (t * B + b) * I, I, 1, I);
            }
    }
}

/* The identity projection (x holds the G*H pre-activations) of the chunk, own rows and columns. */
static void lp_project_identity(const lp_fw *f, int64_t s0, int64_t s1, int64_t rb0, int64_t nb,
                                int64_t jb0, int64_t nj, float *xp) {
    const int64_t B = f->B, H = f->h->H, G = f->h->G, GH = G * H;
    const float *bias = (const float *)(f->base + f->h->off_bias);
    for (int64_t s = s0; s < s1; s++)
        for (int64_t b = rb0; b < rb0 + nb; b++) {
            const int64_t q = (s - s0) * nb + b - rb0;
            const int64_t L = f->lengths ? f->lengths[b] : f->T;
            const float *a = f->x + (time_of(s, L, f->reverse) * B + b) * GH;
            for (int64_t jl = 0; jl < nj; jl++) {
                const int64_t jb = jb0 + jl, j0 = jb * LP_NR, nv = imin(LP_NR, H - j0);
                for (int64_t g = 0; g < G; g++) {
                    const float *bp = bias + (jb * G + g) * LP_NR;
                    float *o = xp + q * f->ldxp + (jl * G + g) * LP_NR;
                    for (int64_t c = 0; c < nv; c++) o[c] = a[g * H + j0 + c] + bp[c];
                    for (int64_t c = nv; c < LP_NR; c++) o[c] = bp[c];
                }
            }
        }
}

static void lp_thread(const lp_fw *f, int tid, int nt) {
    const lp_header *hd = f->h;
    const int64_t B = f->B, T = f->T, H = hd->H, G = hd->G, GH = G * H, TB = T * B;
    const int64_t njb = hd->njb, njt = f->split_rows ? njb : (njb + nt - 1) / nt;
    const int64_t jb0 = imin(njb, (f->split_rows ? 0 : tid) * njt), nj = imin(njb, jb0 + njt) - jb0;
    const int64_t rb0 = f->split_rows ? B * tid / nt : 0;
    const int64_t nb = (f->split_rows ? B * (tid + 1) / nt : B) - rb0; /* own rows */
    const int64_t ldxp = f->ldxp, ldh = f->ldh, kwI = f->kwI, kwH = f->kwH, Tc = f->Tc;
    const lp_kernel *k = f->k, *ks = f->ks;
    uint8_t *mine = f->scratch + tid * f->per_thread_bytes;
    float *xp = (float *)mine;
    uint32_t *Ax = (uint32_t *)(mine + align64(Tc * B * ldxp * 4));
    float *as = (float *)((uint8_t *)Ax + align64((Tc * B + LP_MR) * kwI * 4));
    uint32_t *Ah = (uint32_t *)((uint8_t *)as + align64(Tc * B * 4));
    float *hs = (float *)((uint8_t *)Ah + align64((B + LP_MR) * kwH * 4));
    float *tile = (float *)((uint8_t *)hs + align64(B * 4));
    const float *bias = (const float *)(f->base + hd->off_bias);
    const float *bhn = (const float *)(f->base + hd->off_bhn);
    float *cache = f->cache;
    /* the cache's h_{t-1} rows: not where the backward takes hq for dw_hh and the cell's
       pointwise does not read them (LSTM, RNN): 4 bytes per unit and step not written */
    float *hprev_c = f->hq && !f->cd->bw_hprev ? NULL : cache;
    float *gates_c = cache ? cache + TB * H : NULL;
    float *aux0_c = cache && f->cd->naux > 0 ? gates_c + TB * GH : NULL;
    float *aux1_c = cache && f->cd->naux > 1 ? aux0_c + TB * H : NULL;
    const int64_t mr = k->mr, mrs = ks->mr;
    int64_t rows[LP_MR], nbar = 0;
    /* the rows past the last that a whole-tile load reads (results unused): defined values */
    memset(Ax + Tc * nb * kwI, 0, (size_t)(LP_MR * kwI * 4));
    memset(Ah + nb * kwH, 0, (size_t)(LP_MR * kwH * 4));
    void (*const begin)(void) = k->begin ? k->begin : ks->begin;
    void (*const end)(void) = k->end ? k->end : ks->end;
    if (begin) begin();
    const int64_t span = lp_span(G), ldt = span * G * LP_NR; /* the tile's row */
    fr_tile_s tl = {.ts = LP_NR, .H = H, .ldxp = ldxp, .hh = tile, .ldhh = ldt,
                    .ldh = ldh, .ldc = H, .rows = rows,
                    .stream = cache && fr_rec_stream_cache((int)G, f->cd->naux, T, B, H, 4)};

    for (int64_t s0 = 0; s0 < T; s0 += Tc) {
        const int64_t s1 = imin(T, s0 + Tc), nrow = (s1 - s0) * nb;
        if (nj > 0) {
            if (hd->identity) {
                lp_project_identity(f, s0, s1, rb0, nb, jb0, nj, xp);
            } else {
                if (hd->I > 0) lp_convert_chunk(f, s0, s1, rb0, nb, Ax, as);
                for (int64_t jl = 0; jl < nj; jl++)
                    for (int64_t g = 0; g < G; g++) {
                        const int64_t pi = (jb0 + jl) * G + g;
                        const float *bp = bias + pi * LP_NR;
                        float *out = xp + (jl * G + g) * LP_NR;
                        if (hd->I == 0) {
                            for (int64_t q = 0; q < nrow; q++) memcpy(out + q * ldxp, bp, LP_NR * 4);
                            continue;
                        }
                        const uint32_t *panel = (const uint32_t *)(f->base + hd->off_ih + pi * hd->pb_ih);
                        for (int64_t r0 = 0; r0 < nrow; r0 += mr)
                            k->ukr(imin(mr, nrow - r0), kwI, Ax + r0 * kwI, kwI, panel, as + r0,
                                   bp, out + r0 * ldxp, ldxp);
                    }
            }
        }
        for (int64_t s = s0; s < s1; s++) {
            const float *hp = f->hbuf + (s & 1) * B * ldh;
            float *hn = f->hbuf + ((s + 1) & 1) * B * ldh;
            if (nj > 0) ks->rows(Ah, kwH, hs, hp + rb0 * ldh, ldh, nb, H);
            for (int64_t jl = 0; jl < nj; jl += span) {
                const int64_t jb = jb0 + jl, j0 = jb * LP_NR, ns = imin(span, nj - jl);
                const int64_t nv = imin(ns * LP_NR, H - j0);
                tl.n = nv;
                tl.bhn = bhn + jb * LP_NR;
                tl.y = f->y ? f->y + j0 : NULL;
                tl.gates = gates_c ? gates_c + j0 : NULL;
                tl.aux0 = aux0_c ? aux0_c + j0 : NULL;
                tl.aux1 = aux1_c ? aux1_c + j0 : NULL;
                const int64_t pw = hd->pb_hh / 4; /* a panel's words */
                const uint32_t *panels =
                    (const uint32_t *)(f->base + hd->off_hh + jb * G * hd->pb_hh);
                for (int64_t b0 = 0; b0 < nb; b0 += mrs) {
                    const int64_t m = imin(mrs, nb - b0);
                    /* panel q of the span's ns * G: tile columns q * LP_NR (block-major, gates
                       within a block, as xp) */
                    if (ks->acc && m == LP_MR) {
                        /* stored from the tiles (one copy less), the panels a slab of K at a
                           time: the slab of A stays in L1 over them */
                        for (int64_t p0 = 0; p0 < kwH; p0 += LP_KSLAB)
                            for (int64_t q = 0; q < ns * G; q++)
                                ks->acc(imin(LP_KSLAB, kwH - p0), Ah + b0 * kwH + p0, kwH,
                                        panels + q * pw + p0 * LP_NR, tile + q * LP_NR, ldt,
                                        p0 > 0);
                    } else {
                        for (int64_t q = 0; q < ns * G; q++)
                            ks->ukr(m, kwH, Ah + b0 * kwH, kwH, panels + q * pw, hs + b0, NULL,
                                    tile + q * LP_NR, ldt);
                    }
                    for (int64_t i = 0; i < m; i++) {
                        const int64_t b = rb0 + b0 + i;
                        const int64_t L = f->lengths ? f->lengths[b] : T;
                        const int64_t r = time_of(s, L, f->reverse) * B + b;
                        const float *hpr = hp + b * ldh + j0;
                        if (s < L) {
                            rows[i] = r;
                            if (hprev_c) memcpy(hprev_c + r * H + j0, hpr, (size_t)nv * 4);
                            if (f->hq) fr_round_bf16(f->hq + r * H + j0, hpr, nv);
                        } else { /* the row's sequence has ended: its state passes through */
                            rows[i] = -1;
                            memcpy(hn + b * ldh + j0, hpr, (size_t)nv * 4);
                            if (f->y) memset(f->y + r * H + j0, 0, (size_t)nv * 4);
                            if (hprev_c) memset(hprev_c + r * H + j0, 0, (size_t)nv * 4);
                            if (f->hq) memset(f->hq + r * H + j0, 0, (size_t)nv * 4);
                        }
                    }
                    tl.m = m;
                    tl.xp = xp + ((s - s0) * nb + b0) * ldxp + jl * G * LP_NR;
                    tl.hprev = hp + (rb0 + b0) * ldh + j0;
                    tl.h = hn + (rb0 + b0) * ldh + j0;
                    tl.c = f->cd->has_c ? f->c_n + (rb0 + b0) * H + j0 : NULL;
                    f->pw(&tl, f->act);
                }
            }
            if (nt == 1 || !f->barrier) {
                /* own rows, or the only step: nothing to wait for */
            } else if (f->team) {
                fr_team_barrier(f->team, tid, nt, ++nbar);
            } else {
#pragma omp barrier
            }
        }
    }
    if (tl.stream) fr_stream_fence();
    if (end) end();
}

int fr_lp_forward(const void *packed, int64_t bytes, float *y, float *h_n, float *c_n,
                  float *cache, float *hq, const float *x, const float *h0, const float *c0,
                  const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int act,
                  int reverse, int nthreads) {
    if (packed == NULL || (uintptr_t)packed % 64 != 0 || bytes < (int64_t)sizeof(lp_header))
        return FR_ERR_ARG;
    const lp_header *hd = packed;
    if (hd->magic != LP_MAGIC || hd->I != I || hd->H != H || T < 0 || B < 0 || nthreads < 1 ||
        y == NULL || h_n == NULL)
        return FR_ERR_ARG;
    /* every offset as fr_lp_pack lays them out for these sizes, and all of it given: the reads
       stay in the buffer */
    lp_header want;
    if (lp_layout(&want, (int)hd->cell, (int)hd->prec, (int)hd->identity, I, H) != FR_OK ||
        memcmp(&want, hd, sizeof want) != 0 || want.total != bytes)
        return FR_ERR_ARG;
    const fr_cell_s *cd = fr_rec_cell_of_s((int)hd->cell);
    if (cd == NULL || (cd->has_c && c_n == NULL) || (T > 0 && B > 0 && I > 0 && x == NULL) ||
        (hd->cell == FR_CELL_RNN && act != FR_RNN_TANH && act != FR_RNN_RELU) ||
        (cache != NULL && fr_rec_cache_size(cd->G, cd->naux, T, B, H) < 0) ||
        (hq != NULL && hd->prec != FR_PREC_BF16))
        return FR_ERR_ARG;
    const int64_t BH = B * H, G = hd->G;
    for (int64_t k = 0; k < BH; k++) h_n[k] = h0 ? h0[k] : 0.0f;
    if (cd->has_c)
        for (int64_t k = 0; k < BH; k++) c_n[k] = c0 ? c0[k] : 0.0f;
    if (T == 0 || B == 0) return FR_OK;

    lp_fw f = {.h = hd, .base = packed,
               .cd = cd, .pw = cd->point_for(fr_get_arch()), .y = y, .h_n = h_n,
               .c_n = cd->has_c ? c_n : NULL, .cache = cache, .hq = hq, .x = x,
               .lengths = lengths, .T = T, .B = B, .act = act, .reverse = reverse};
    f.Tc = imin(T, (LP_PROJ_ROWS + B - 1) / B);
    f.ldh = (H + 15) / 16 * 16 + 16;
    f.ldxp = hd->njb * G * LP_NR; /* room for every block: a smaller team owns more */
    f.kwI = hd->identity ? 0 : lp_kwords((int)hd->prec, I);
    f.kwH = lp_kwords((int)hd->prec, H);
    f.per_thread_bytes = align64(f.Tc * B * f.ldxp * 4) + align64((f.Tc * B + LP_MR) * f.kwI * 4) +
                         align64(f.Tc * B * 4) + align64((B + LP_MR) * f.kwH * 4) + align64(B * 4) +
                         align64(LP_MR * lp_span(G) * G * LP_NR * 4); /* the tile */
    const double step_flops = 2.0 * (double)B * (double)((hd->identity ? 0 : I) + H) * (double)G *
                              (double)H;
    int64_t by_size;
    if (T == 1) {
        by_size = imin((int64_t)(step_flops / (2.0 * (double)B) / LP_ONE_STEP_WEIGHTS),
                       imin(nthreads, hd->njb));
    } else if (B >= 2) {
        f.split_rows = 1;
        by_size = imin((int64_t)(step_flops * (double)T / LP_MIN_CALL_FLOPS), imin(nthreads, B));
    } else {
        by_size = imin((int64_t)(step_flops / LP_MIN_STEP_FLOPS), imin(nthreads, hd->njb));
    }
    /* the load rules of the float32 passes (team_load.h): the share the passes in flight leave,
       the processors other runnable threads leave, no team woken from idle for less than the
       wake costs; a single step with company takes none (recurrence.c's step1_forward) */
    fr_load_ticket tk;
    fr_load_enter(&tk);
    const double flops32 = step_flops * (double)T / LP_SPEEDUP; /* float32's time for it */
    const int forced = fr_rec_team_threads_forced();
    int64_t nt = by_size < 1 ? 1 : by_size;
    if (forced > 0)
        nt = imin(forced, imin(nthreads, f.split_rows ? B : hd->njb));
    else if (nt > 1)
        nt = T == 1 && fr_load_shared_lately(&tk) ? 1
                                                  : fr_load_threads(&tk, nthreads, (int)nt, flops32, NULL);
#ifndef _OPENMP
    nt = 1;
#endif
    f.barrier = !f.split_rows && T > 1;
    if (T == 1) {
        atomic_fetch_add_explicit(&step1_passes, 1, memory_order_relaxed);
        if (nt > 1) atomic_fetch_add_explicit(&step1_team_passes, 1, memory_order_relaxed);
    }
    /* the kernels by rows: a thread's step rows, its projection chunk's (a stream step: 1, 1) */
    const int64_t srows = f.split_rows ? (B + nt - 1) / nt : B;
    const double row_macs = step_flops / (2.0 * (double)B) * (double)T; /* the call's, a row */
    f.k = lp_kernel_for_rows((int)hd->prec, fr_get_arch(), f.Tc * srows, row_macs);
    f.ks = lp_kernel_for_rows((int)hd->prec, fr_get_arch(), srows, row_macs);
    const int64_t shared = align64(2 * B * f.ldh * 4);
    uint8_t *mem = fr_scratch_alloc((size_t)(shared + nt * f.per_thread_bytes));
    if (mem == NULL) {
        fr_load_leave(&tk, 1, 0.0, 0, -1);
        return FR_ERR_NOMEM;
    }
#ifdef _OPENMP
    /* the float32 recurrence's barrier (team_sync.h): spinning, yielding when oversubscribed;
       libgomp's (a futex wake-up every step) only where threads outnumber the processors or the
       flags cannot be had */
    f.team = nt > 1 && f.barrier && nt <= omp_get_num_procs() ? fr_team_new((int)nt) : NULL;
#endif
    f.hbuf = (float *)mem;
    f.scratch = mem + shared;
    memset(f.hbuf, 0, (size_t)(2 * B * f.ldh * 4)); /* padding columns are converted too */
    for (int64_t b = 0; b < B; b++) memcpy(f.hbuf + b * f.ldh, h_n + b * H, (size_t)H * 4);
    const fr_load_region rg = fr_load_region_open((int)nt);
#pragma omp parallel num_threads((int)nt) if (nt > 1)
    {
#ifdef _OPENMP
        fr_load_cpus mask; /* a worker queued on the caller's processor moves (team_load.h) */
        const int moved = fr_load_region_enter(&rg, omp_get_thread_num(), &mask);
        lp_thread(&f, omp_get_thread_num(), omp_get_num_threads());
        if (moved) fr_load_restore_cpus(&mask);
#else
        lp_thread(&f, 0, 1);
#endif
    }
    const float *hf = f.hbuf + (T & 1) * B * f.ldh;
    for (int64_t b = 0; b < B; b++) memcpy(h_n + b * H, hf + b * f.ldh, (size_t)H * 4);
    fr_team_free(f.team);
    fr_scratch_free(mem);
    fr_load_leave(&tk, (int)nt, 0.0, 0, -1); /* no speed sample: the estimate is float32's */
    return FR_OK;
}

int fr_cell_backward_hq_s(int cell, float *dx, float *dh0, float *dc0, float *dw_ih, float *dw_hh,
                          float *db_ih, float *db_hh, const float *cache, const float *hq,
                          const float *x, const float *w_ih, const float *w_hh, const float *dy,
                          const float *dh_n, const float *dc_n, const int64_t *lengths, int64_t T,
                          int64_t B, int64_t I, int64_t H, int act, int reverse, int nthreads) {
    const fr_cell_s *cd = fr_rec_cell_of_s(cell);
    if (cd == NULL || hq == NULL || (cell == FR_CELL_RNN && act != FR_RNN_TANH && act != FR_RNN_RELU))
        return FR_ERR_ARG;
    return fr_rec_backward_s(cd, dx, dh0, cd->has_c ? dc0 : NULL, dw_ih, dw_hh, db_ih, db_hh, cache,
                             x, w_ih, w_hh, dy, dh_n, cd->has_c ? dc_n : NULL, lengths, T, B, I, H,
                             act, reverse, nthreads, hq);
}

/* lp_bf16 branch-free on the bits, so that each clone's loop runs in vectors (the same bits). */
FR_CLONES void fr_round_bf16(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, 4);
        const uint32_t r = (u & 0x7FFFFFFFu) > 0x7F800000u ? u | 0x00400000u
                                                           : u + 0x7FFFu + ((u >> 16) & 1u);
        const uint32_t b = r & 0xFFFF0000u;
        memcpy(dst + i, &b, 4);
    }
}

/* The lanes of fr_checksum: 16 running sums of 32-bit words (s1) and of those sums (s2), word
   w of each 64-byte block in lane w; integer adds only, so every clone gives the same sums
   (the AVX2 and AVX-512 clones add 4 or 8 lanes per instruction: about 4x the 4-lane loop). */
#define CK_LANES 16
FR_CLONES static void checksum_lanes(const uint8_t *b, int64_t nblk, uint64_t *restrict s1,
                                     uint64_t *restrict s2) {
    uint64_t a[CK_LANES] = {0}, c[CK_LANES] = {0};
    for (int64_t i = 0; i < nblk; i++) {
        uint32_t w[CK_LANES];
        memcpy(w, b + i * (int64_t)sizeof w, sizeof w);
        for (int l = 0; l < CK_LANES; l++) {
            a[l] += w[l];
            c[l] += a[l];
        }
    }
    memcpy(s1, a, sizeof a);
    memcpy(s2, c, sizeof c);
}

uint64_t fr_checksum(const void *p, int64_t n) {
    const uint8_t *b = p;
    uint64_t s1[CK_LANES], s2[CK_LANES];
    const int64_t nblk = n / (4 * CK_LANES);
    checksum_lanes(b, nblk, s1, s2);
    uint64_t tail = 0;
    for (int64_t i = nblk * 4 * CK_LANES; i < n; i++) tail = tail * 257u + b[i] + 1u;
    uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ull ^ tail;
    for (int l = 0; l < CK_LANES; l++)
        h = (h ^ s1[l]) * 0x100000001B3ull ^ (s2[l] * 0xC2B2AE3D27D4EB4Full);
    return h;
}

/* ---- the bf16 backward's recurrent product: dh_{t-1} += delta~ W~_hh ----------------------- */

/* The W_hh panels (panel jb: hidden units jb*LP_NR + c as columns, the G*H gate
   gradients as K) and the per-thread scratch (bf16 delta rows, a tile). */
struct lp_bw {
    const lp_kernel *k;
    int64_t H, GH, njb, kw, pb, per_thread;
    uint8_t *panels, *scratch;
};

lp_bw *lp_bw_new(const float *w_hh, int64_t GH, int64_t H, int64_t B, int nthreads) {
    if (w_hh == NULL || GH < 1 || H < 1 || B < 0 || nthreads < 1) return NULL;
    lp_bw *bw = calloc(1, sizeof *bw);
    if (bw == NULL) return NULL;
    /* one row stays on vdpbf16ps here whatever the work (LP_AMX_ROW_MACS is the forward's
       measure): AMX's one-row dh_{t-1} lost, LSTM (200, 1, 64, 64) backward 213-218 against
       270-285 us */
    bw->k = lp_kernel_for_rows(FR_PREC_BF16, fr_get_arch(), B, 0.0);
    bw->H = H;
    bw->GH = GH;
    bw->njb = (H + LP_NR - 1) / LP_NR;
    bw->kw = lp_kwords(FR_PREC_BF16, GH);
    bw->pb = lp_panel_bytes(FR_PREC_BF16, GH);
    bw->per_thread = align64((B + LP_MR) * bw->kw * 4) + align64((B + LP_MR) * 4) +
                     align64(LP_MR * LP_NR * 4);
    bw->panels = fr_scratch_alloc((size_t)(bw->njb * bw->pb + nthreads * bw->per_thread));
    if (bw->panels == NULL) {
        free(bw);
        return NULL;
    }
    bw->scratch = bw->panels + bw->njb * bw->pb;
    /* W_hh (G*H rows of H) is the K x N operand itself: panel jb holds its columns jb*LP_NR.. */
    for (int64_t jb = 0; jb < bw->njb; jb++)
        lp_pack_kn_bf16((uint32_t *)(bw->panels + jb * bw->pb), w_hh, H, GH, jb * LP_NR,
                        imin(LP_NR, H - jb * LP_NR));
    return bw;
}

void lp_bw_thread_begin(const lp_bw *bw) {
    if (bw->k->begin) bw->k->begin();
}

void lp_bw_thread_end(const lp_bw *bw) {
    if (bw->k->end) bw->k->end();
}

void lp_bw_free(lp_bw *bw) {
    if (bw == NULL) return;
    fr_scratch_free(bw->panels);
    free(bw);
}

void lp_bw_dh_prev(const lp_bw *bw, int tid, float *dh, const float *dstep, int64_t ldd,
                   const uint32_t *rounded, const int64_t *lengths, int64_t s, int64_t rb0,
                   int64_t rb1, int64_t c0, int64_t c1) {
    const int64_t m_all = rb1 - rb0, kw = bw->kw, H = bw->H;
    if (m_all <= 0 || c0 >= c1) return;
    const lp_kernel *k = bw->k;
    uint8_t *mine = bw->scratch + tid * bw->per_thread;
    const uint32_t *A = rounded;
    float *as = (float *)(mine + align64((m_all + LP_MR) * kw * 4));
    float *tile = (float *)((uint8_t *)as + align64((m_all + LP_MR) * 4));
    if (A == NULL) {
        uint32_t *Am = (uint32_t *)mine;
        k->rows(Am, kw, as, dstep + rb0 * ldd, ldd, m_all, bw->GH);
        memset(Am + m_all * kw, 0, (size_t)(LP_MR * kw * 4)); /* read by whole-tile loads, unused */
        A = Am;
    }
    for (int64_t jb = c0 / LP_NR; jb * LP_NR < c1; jb++) {
        const int64_t j0 = jb * LP_NR, ca = c0 > j0 ? c0 : j0, cb = imin(c1, j0 + LP_NR);
        const uint32_t *panel = (const uint32_t *)(bw->panels + jb * bw->pb);
        if (m_all == 1 && ca == j0 && cb == j0 + LP_NR && !(lengths && s >= lengths[rb0])) {
            /* one active row, a whole panel: summed straight onto its dh columns (the panel's
               sums plus dh as the ukr's bias: d + sum, the bits of the loop below) */
            float *d = dh + rb0 * H + j0;
            k->ukr(1, kw, A, kw, panel, as, d, d, LP_NR);
            continue;
        }
        for (int64_t b0 = 0; b0 < m_all; b0 += k->mr) {
            const int64_t m = imin(k->mr, m_all - b0);
            k->ukr(m, kw, A + b0 * kw, kw, panel, as + b0, NULL, tile, LP_NR);
            for (int64_t i = 0; i < m; i++) {
                const int64_t b = rb0 + b0 + i;
                if (lengths && s >= lengths[b]) continue; /* its state passed through */
                float *d = dh + b * H;
                for (int64_t c = ca; c < cb; c++) d[c] += tile[i * LP_NR + c - j0];
            }
        }
    }
}
