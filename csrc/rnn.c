/*
 * rnn.c — the vanilla RNN cell: its forward and backward pointwise maths and its descriptor. The
 * whole-sequence time loop, threading and GEMMs live in recurrence.c.
 *   h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh (FR_RNN_TANH) or relu (FR_RNN_RELU).
 * The cache's gate block holds h' (both derivatives are functions of it). The forward's tanh is
 * activations.c's array tanh, which runs the SIMD path in use.
 *
 * This file is its own template body (template.h), per dtype.
 */
#ifndef REAL
#include <string.h>

#include "recurrence.h"

#define FR_TEMPLATE "rnn.c"
#include "template.h"

#else /* the forward, the backward and the descriptor of one dtype */

/* The forward pointwise over a tile (recurrence.h's fr_tile): h = act(xp + hh), also stored to y
   and to the cache's gate row where those are not NULL. */
FR_CLONES static void SFX(rnn_tile)(const SFX(fr_tile) *t, int act) {
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        const REAL *xp = t->xp + i * t->ldxp, *hh = t->hh + i * t->ldhh;
        REAL *h = t->h + i * t->ldh;
        for (int64_t j = 0; j < n; j++) h[j] = xp[j] + hh[j];
        if (act == FR_RNN_RELU) {
            for (int64_t j = 0; j < n; j++) h[j] = h[j] < (REAL)0 ? (REAL)0 : h[j]; /* NaN stays NaN */
        } else {
            SFX(fr_tanh)(h, h, n);
        }
        if (t->y) memcpy(t->y + r * H, h, (size_t)n * sizeof(REAL));
        if (t->gates) memcpy(t->gates + r * H, h, (size_t)n * sizeof(REAL));
    }
}

/* The RNN has one pointwise kernel (its tanh dispatches on the SIMD path itself). */
static SFX(fr_point_fn) SFX(rnn_point_for)(int arch) {
    (void)arch;
    return SFX(rnn_tile);
}

/* The backward maths of one row segment (restrict pointers and no branch in the loops: they
   vectorise). */
static inline void SFX(rnn_bw_seg)(int64_t n, const REAL *restrict hv, const REAL *restrict dht,
                                   REAL *restrict dh, REAL *restrict dgh, REAL *restrict dgs,
                                   int act) {
    if (act == FR_RNN_RELU) {
        for (int64_t j = 0; j < n; j++) {
            const REAL d = hv[j] > (REAL)0 ? dht[j] : (REAL)0;
            dh[j] = 0;
            dgh[j] = d;
            dgs[j] = d;
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            const REAL d = dht[j] * ((REAL)1 - hv[j] * hv[j]);
            dh[j] = 0;
            dgh[j] = d;
            dgs[j] = d;
        }
    }
}

FR_CLONES static void SFX(rnn_bw)(const SFX(fr_bw_tile) *t, int act) {
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        REAL dht[FR_MAX_NR], *dh = t->dh + i * H;
        FR_SEG_ADD(dht, dh, t->dy ? t->dy + r * H : NULL, n);
        SFX(rnn_bw_seg)(n, t->gates + r * H, dht, dh, t->dgh + r * H, t->dgs + i * t->ldd, act);
    }
}

const SFX(fr_cell) SFX(fr_rnn_cell) = {
    .G = 1,
    .naux = 0,
    .has_c = 0,
    .split_n = 0,
    .bw_hprev = 0,
    .bw = SFX(rnn_bw),
    .point_for = SFX(rnn_point_for),
};

#endif
