/*
 * lstm_proj.c — the LSTM with a projection of its output (LSTMP, torch.nn.LSTM(proj_size=P)):
 * gates = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh (W_hh: 4H x P), c_t as in the LSTM,
 * r_t = o * tanh(c_t) (H units), h_t = W_hr r_t (P units, W_hr: P x H, no bias).
 *
 * The step loop runs here, in C, on the LSTM's own pointwise kernels (lstm.c, through its cell
 * descriptor) and the GEMM (gemm.c): per step one GEMM for the recurrent product on h (size P),
 * the fused pointwise, and one GEMM for the projection. The input projection of all steps is
 * one GEMM before the loop; the weight gradients are single GEMMs after the backward's loop.
 *
 * Cache layout (rows r = t*B + b, indexed by time): hprev (T*B, P) | gates (T*B, 4H) | c_prev
 * (T*B, H) | tanh(c) (T*B, H) | r (T*B, H). A row past its sequence's end is all zeros.
 */
#ifndef REAL
#include <stdint.h>
#include <string.h>

#include "recurrence.h"
#include "scratch.h"

/* Whether every length is in [0, T] (no lengths: all T). */
static int lstmp_lengths_ok(const int64_t *lengths, int64_t B, int64_t T) {
    if (lengths)
        for (int64_t b = 0; b < B; b++)
            if (lengths[b] < 0 || lengths[b] > T) return 0;
    return 1;
}

/* The drivers' scratch: `bytes` of work space and B row indices; FR_ERR_NOMEM (nothing held)
   or FR_OK (free both with fr_scratch_free). */
static int lstmp_scratch(size_t bytes, int64_t B, void **work, int64_t **rows) {
    *work = fr_scratch_alloc(bytes);
    if (*work == NULL) return FR_ERR_NOMEM;
    *rows = fr_scratch_alloc((size_t)B * sizeof(int64_t));
    if (*rows == NULL) {
        fr_scratch_free(*work);
        return FR_ERR_NOMEM;
    }
    return FR_OK;
}

int64_t fr_lstmp_cache_size(int64_t T, int64_t B, int64_t H, int64_t P) {
    if (T < 0 || B < 0 || H < 0 || P < 0) return -1;
    if (T == 0 || B == 0) return 0;
    if (H > INT64_MAX / 8 || P > INT64_MAX / 2 - 7 * H) return -1;
    const int64_t f[3] = {T, B, P + 7 * H};
    int64_t n = 1;
    for (int k = 0; k < 3; k++) {
        if (f[k] != 0 && n > INT64_MAX / f[k]) return -1;
        n *= f[k];
    }
    return n;
}

#define FR_TEMPLATE "lstm_proj.c"
#include "template.h"

#else /* the driver of one dtype */

int SFX(fr_lstmp_forward)(REAL *y, REAL *h_n, REAL *c_n, REAL *cache, const REAL *x,
                          const REAL *h0, const REAL *c0, const REAL *w_ih, const REAL *w_hh,
                          const REAL *w_hr, const REAL *b_ih, const REAL *b_hh,
                          const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H,
                          int64_t P, int reverse, int nthreads) {
    if (T < 0 || B < 0 || I < 0 || H < 1 || P < 1 || nthreads < 1 || y == NULL ||
        h_n == NULL || c_n == NULL || w_hh == NULL || w_hr == NULL ||
        (I > 0 && T > 0 && B > 0 && (x == NULL || w_ih == NULL)) ||
        fr_lstmp_cache_size(T, B, H, P) < 0)
        return FR_ERR_ARG;
    if (!lstmp_lengths_ok(lengths, B, T)) return FR_ERR_ARG;
    const int64_t GH = 4 * H, TB = T * B;
    for (int64_t k = 0; k < B * P; k++) h_n[k] = h0 ? h0[k] : (REAL)0;
    for (int64_t k = 0; k < B * H; k++) c_n[k] = c0 ? c0[k] : (REAL)0;
    if (TB == 0) return FR_OK;

    /* xp (T*B, 4H) | xs, hs (B, 4H) | rb (B, H) | pb (B, P) */
    const size_t n = (size_t)(TB * GH + 2 * B * GH + B * H + B * P);
    void *work;
    int64_t *rows;
    if (lstmp_scratch(n * sizeof(REAL), B, &work, &rows) != FR_OK) return FR_ERR_NOMEM;
    REAL *xp = work;
    REAL *xs = xp + TB * GH, *hs = xs + B * GH, *rb = hs + B * GH, *pb = rb + B * H;
    memset(rb, 0, (size_t)(B * H) * sizeof(REAL)); /* rows never computed stay defined */
    int st = FR_OK;
    if (I > 0)
        st = SFX(fr_gemm)(0, 1, TB, GH, I, x, I, w_ih, I, 0, xp, GH,
                          fr_rec_threads_for(nthreads, 2.0 * (double)TB * (double)GH * (double)I));
    else
        memset(xp, 0, (size_t)(TB * GH) * sizeof(REAL));
    for (int64_t q = 0; q < TB && (b_ih || b_hh); q++)
        for (int64_t k = 0; k < GH; k++)
            xp[q * GH + k] += (b_ih ? b_ih[k] : (REAL)0) + (b_hh ? b_hh[k] : (REAL)0);

    REAL *hprev_c = cache, *gates_c = cache ? cache + TB * P : NULL;
    REAL *cprev_c = cache ? gates_c + TB * GH : NULL, *tanh_c = cache ? cprev_c + TB * H : NULL;
    REAL *r_c = cache ? tanh_c + TB * H : NULL;
    const SFX(fr_point_fn) pw = SFX(fr_lstm_cell).point_for(fr_get_arch());
    const int nt_rec = fr_rec_threads_for(nthreads, 2.0 * (double)B * (double)GH * (double)P);
    const int nt_proj = fr_rec_threads_for(nthreads, 2.0 * (double)B * (double)P * (double)H);
    REAL *h = h_n, *c = c_n; /* the state, updated in place */
    for (int64_t s = 0; s < T && st == FR_OK; s++) {
        for (int64_t b = 0; b < B; b++) {
            const int64_t L = lengths ? lengths[b] : T;
            const int64_t r = fr_rec_time_of(s, L, reverse) * B + b;
            rows[b] = s < L ? r : -1;
            if (s < L) {
                memcpy(xs + b * GH, xp + r * GH, (size_t)GH * sizeof(REAL));
                if (cache) memcpy(hprev_c + r * P, h + b * P, (size_t)P * sizeof(REAL));
            } else { /* past the row's end: zero output and cache rows, the state passes */
                memset(y + r * P, 0, (size_t)P * sizeof(REAL));
                if (cache) {
                    memset(hprev_c + r * P, 0, (size_t)P * sizeof(REAL));
                    memset(gates_c + r * GH, 0, (size_t)GH * sizeof(REAL));
                    memset(cprev_c + r * H, 0, (size_t)H * sizeof(REAL));
                    memset(tanh_c + r * H, 0, (size_t)H * sizeof(REAL));
                    memset(r_c + r * H, 0, (size_t)H * sizeof(REAL));
                }
            }
        }
        st = SFX(fr_gemm)(0, 1, B, GH, P, h, P, w_hh, P, 0, hs, GH, nt_rec);
        if (st != FR_OK) break;
        for (int64_t j0 = 0; j0 < H; j0 += FR_MAX_NR) {
            const int64_t nv = H - j0 < FR_MAX_NR ? H - j0 : FR_MAX_NR;
            const SFX(fr_tile) tl = {
                .m = B, .n = nv, .ts = H, .H = H, .xp = xs + j0, .ldxp = GH, .hh = hs + j0,
                .ldhh = GH, .h = rb + j0, .ldh = H, .c = c + j0, .ldc = H, .rows = rows,
                .gates = cache ? gates_c + j0 : NULL, .aux0 = cache ? cprev_c + j0 : NULL,
                .aux1 = cache ? tanh_c + j0 : NULL,
            };
            pw(&tl, 0);
        }
        st = SFX(fr_gemm)(0, 1, B, P, H, rb, H, w_hr, H, 0, pb, P, nt_proj);
        for (int64_t b = 0; b < B && st == FR_OK; b++) {
            const int64_t r = rows[b];
            if (r < 0) continue;
            memcpy(h + b * P, pb + b * P, (size_t)P * sizeof(REAL));
            memcpy(y + r * P, pb + b * P, (size_t)P * sizeof(REAL));
            if (cache) memcpy(r_c + r * H, rb + b * H, (size_t)H * sizeof(REAL));
        }
    }
    fr_scratch_free(rows);
    fr_scratch_free(xp);
    return st;
}

int SFX(fr_lstmp_backward)(REAL *dx, REAL *dh0, REAL *dc0, REAL *dw_ih, REAL *dw_hh, REAL *dw_hr,
                           REAL *db_ih, REAL *db_hh, const REAL *cache, const REAL *x,
                           const REAL *w_ih, const REAL *w_hh, const REAL *w_hr, const REAL *dy,
                           const REAL *dh_n, const REAL *dc_n, const int64_t *lengths, int64_t T,
                           int64_t B, int64_t I, int64_t H, int64_t P, int reverse,
                           int nthreads) {
    if (T < 0 || B < 0 || I < 0 || H < 1 || P < 1 || nthreads < 1 || dh0 == NULL ||
        dc0 == NULL || dw_hh == NULL || dw_hr == NULL || w_hh == NULL || w_hr == NULL ||
        (T > 0 && B > 0 && cache == NULL) ||
        (I > 0 && T > 0 && B > 0 && (x == NULL || w_ih == NULL || dw_ih == NULL)) ||
        fr_lstmp_cache_size(T, B, H, P) < 0)
        return FR_ERR_ARG;
    if (!lstmp_lengths_ok(lengths, B, T)) return FR_ERR_ARG;
    const int64_t GH = 4 * H, TB = T * B;
    for (int64_t k = 0; k < B * P; k++) dh0[k] = dh_n ? dh_n[k] : (REAL)0;
    for (int64_t k = 0; k < B * H; k++) dc0[k] = dc_n ? dc_n[k] : (REAL)0;
    if (TB == 0) return FR_OK;

    /* dg (T*B, 4H) | dhs (T*B, P) | dstep (B, 4H) | dr (B, H) | hb, pb (B, P) */
    const size_t n = (size_t)(TB * GH + TB * P + B * GH + B * H + 2 * B * P);
    void *work;
    int64_t *rows;
    if (lstmp_scratch(n * sizeof(REAL), B, &work, &rows) != FR_OK) return FR_ERR_NOMEM;
    REAL *dg = work;
    REAL *dhs = dg + TB * GH, *dstep = dhs + TB * P, *dr = dstep + B * GH, *hb = dr + B * H;
    REAL *pb = hb + B * P;
    const REAL *hprev_c = cache, *gates_c = cache + TB * P, *cprev_c = gates_c + TB * GH;
    const REAL *tanh_c = cprev_c + TB * H, *r_c = tanh_c + TB * H;
    const SFX(fr_bw_fn) bw = SFX(fr_lstm_cell).bw;
    const int nt_rec = fr_rec_threads_for(nthreads, 2.0 * (double)B * (double)GH * (double)P);
    const int nt_proj = fr_rec_threads_for(nthreads, 2.0 * (double)B * (double)P * (double)H);
    REAL *dh = dh0, *dc = dc0; /* the state gradients, carried in place */
    int st = FR_OK;
    for (int64_t s = T - 1; s >= 0 && st == FR_OK; s--) {
        for (int64_t b = 0; b < B; b++) {
            const int64_t L = lengths ? lengths[b] : T;
            const int64_t r = fr_rec_time_of(s, L, reverse) * B + b;
            rows[b] = s < L ? r : -1;
            if (s < L) { /* the gradient w.r.t. h_t: later steps' plus this step's output's */
                for (int64_t k = 0; k < P; k++)
                    hb[b * P + k] = dh[b * P + k] + (dy ? dy[r * P + k] : (REAL)0);
                memcpy(dhs + r * P, hb + b * P, (size_t)P * sizeof(REAL));
            } else {
                memset(hb + b * P, 0, (size_t)P * sizeof(REAL));
                memset(dhs + r * P, 0, (size_t)P * sizeof(REAL));
                memset(dg + r * GH, 0, (size_t)GH * sizeof(REAL));
                memset(dstep + b * GH, 0, (size_t)GH * sizeof(REAL));
            }
        }
        /* dr = dh_t W_hr: the gradient w.r.t. r_t = o tanh(c_t) */
        st = SFX(fr_gemm)(0, 0, B, H, P, hb, P, w_hr, H, 0, dr, H, nt_proj);
        if (st != FR_OK) break;
        for (int64_t j0 = 0; j0 < H; j0 += FR_MAX_NR) {
            const int64_t nv = H - j0 < FR_MAX_NR ? H - j0 : FR_MAX_NR;
            const SFX(fr_bw_tile) bt = {
                .m = B, .n = nv, .H = H, .rows = rows, .gates = gates_c + j0,
                .aux0 = cprev_c + j0, .aux1 = tanh_c + j0, .hprev = NULL, .dy = NULL,
                .dh = dr + j0, .dc = dc + j0, .dgh = dg + j0, .dgx = NULL, .dgs = dstep + j0,
                .ldd = GH,
            };
            bw(&bt, 0);
        }
        /* dh_{t-1} = dgates W_hh for the rows active at this step; the others pass through */
        st = SFX(fr_gemm)(0, 0, B, P, GH, dstep, GH, w_hh, P, 0, pb, P, nt_rec);
        for (int64_t b = 0; b < B; b++)
            if (rows[b] >= 0) memcpy(dh + b * P, pb + b * P, (size_t)P * sizeof(REAL));
    }
    const int ntg =
        fr_rec_threads_for(nthreads, 2.0 * (double)TB * (double)GH * (double)(I + P + H));
    if (st == FR_OK && I > 0) {
        if (dx) st = SFX(fr_gemm)(0, 0, TB, I, GH, dg, GH, w_ih, I, 0, dx, I, ntg);
        if (st == FR_OK) st = SFX(fr_gemm)(1, 0, GH, I, TB, dg, GH, x, I, 1, dw_ih, I, ntg);
    }
    if (st == FR_OK) st = SFX(fr_gemm)(1, 0, GH, P, TB, dg, GH, hprev_c, P, 1, dw_hh, P, ntg);
    if (st == FR_OK) st = SFX(fr_gemm)(1, 0, P, H, TB, dhs, P, r_c, H, 1, dw_hr, H, ntg);
    if (st == FR_OK && (db_ih || db_hh))
        for (int64_t q = 0; q < TB; q++)
            for (int64_t k = 0; k < GH; k++) {
                if (db_ih) db_ih[k] += dg[q * GH + k];
                if (db_hh) db_hh[k] += dg[q * GH + k];
            }
    fr_scratch_free(rows);
    fr_scratch_free(dg);
    return st;
}

#endif
