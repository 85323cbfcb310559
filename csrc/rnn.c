/*
 * rnn.c — the vanilla RNN cell: its forward and backward pointwise maths and its descriptor. The
 * whole-sequence time loop, threading and GEMMs live in recurrence.c.
 *   h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh (FR_RNN_TANH) or relu (FR_RNN_RELU).
 * The cache's gate block holds h' (both derivatives are functions of it).
 *
 * This file is its own template body (template.h): first the forward per (SIMD path, dtype),
 * with simd_math.h's tanh in registers (activations.c's array tanh applies the same function, so
 * the bits are those of the portable forward's call to it), then the rest per dtype.
 */
#ifndef REAL
#include <string.h>

#include "recurrence.h"
#include "simd_math.h"

#define FR_TEMPLATE "rnn.c"
#define FR_TEMPLATE_SIMD
#include "template.h"
#define FR_TEMPLATE "rnn.c"
#include "template.h"

#elif defined(VEC) /* the forward of one (SIMD path, dtype) */

/* nv vectors of units from unit 0 (nv <= 2, a constant after inlining; the first m <= VW units of
   each, m < VW only with nv = 1): h = act(xp + hh), stored to h, y and the cache's gate row where
   those are not NULL; tanh's steps side by side (simd_math.h's _n forms). relu: max(0, v) keeps
   a NaN as the portable v < 0 ? 0 : v does. */
static FR_ALWAYS_INLINE VTARGET void VSFX(rnn_vecs)(const int nv, const REAL *xp, const REAL *hh,
                                                    REAL *h, REAL *y, REAL *g, int64_t m, int act) {
    VEC v[2];
    for (int k = 0; k < nv; k++) v[k] = V_ADD(V_LOADN(xp + k * VW, m), V_LOADN(hh + k * VW, m));
    if (act == FR_RNN_RELU)
        for (int k = 0; k < nv; k++) v[k] = V_MAX(V_ZERO(), v[k]);
    else
        VSFX(fr_vtanh_n)(v, nv);
    for (int k = 0; k < nv; k++) /* the cache's gate row holds h' (plain stores, as before) */
        V_STORE_STEP(0, h + k * VW, FR_OPT(y, k * VW), v[k], FR_OPT(g, k * VW), 0, v + k, 1, m);
}

static VTARGET void VSFX(rnn_tile)(const SFX(fr_tile) *t, int act) {
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        const REAL *xp = t->xp + i * t->ldxp, *hh = t->hh + i * t->ldhh;
        REAL *h = t->h + i * t->ldh, *y = FR_OPT(t->y, r * H), *g = FR_OPT(t->gates, r * H);
        int64_t j = 0;
        for (; j + 2 * VW <= n; j += 2 * VW) /* two chains side by side */
            VSFX(rnn_vecs)(2, xp + j, hh + j, h + j, FR_OPT(y, j), FR_OPT(g, j), VW, act);
        for (; j + VW <= n; j += VW)
            VSFX(rnn_vecs)(1, xp + j, hh + j, h + j, FR_OPT(y, j), FR_OPT(g, j), VW, act);
        if (j < n) VSFX(rnn_vecs)(1, xp + j, hh + j, h + j, FR_OPT(y, j), FR_OPT(g, j), n - j, act);
    }
}

#else /* the portable forward, the backward and the descriptor of one dtype */

/* The portable forward pointwise over a tile (recurrence.h's fr_tile): h = act(xp + hh), also
   stored to y and to the cache's gate row where those are not NULL. */
static void SFX(rnn_tile_generic)(const SFX(fr_tile) *t, int act) {
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

/* The forward pointwise of SIMD path arch. */
static SFX(fr_point_fn) SFX(rnn_point_for)(int arch) {
    return FR_BY_ARCH(arch, SFX(rnn_tile_avx512), SFX(rnn_tile_avx2), SFX(rnn_tile_generic));
}

/* The backward maths of one row segment (restrict pointers and no branch in the loops: they
   vectorise); keep (a constant after inlining): also store the gradient to dgh (the all-steps
   rows), not only to dgs (the step rows). */
static FR_ALWAYS_INLINE void SFX(rnn_bw_seg)(int64_t n, const REAL *restrict hv,
                                             const REAL *restrict dht, REAL *restrict dh,
                                             REAL *restrict dgh, REAL *restrict dgs, int act,
                                             const int keep) {
    if (act == FR_RNN_RELU) {
        for (int64_t j = 0; j < n; j++) {
            const REAL d = hv[j] > (REAL)0 ? dht[j] : (REAL)0;
            dh[j] = 0;
            if (keep) dgh[j] = d;
            dgs[j] = d;
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            const REAL d = dht[j] * ((REAL)1 - hv[j] * hv[j]);
            dh[j] = 0;
            if (keep) dgh[j] = d;
            dgs[j] = d;
        }
    }
}

FR_CLONES static void SFX(rnn_bw)(const SFX(fr_bw_tile) *t, int act) {
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        REAL dht[FR_MAX_NR], *dh = t->dh + i * H, *ds = t->dgs + i * t->ldd;
        FR_SEG_ADD(dht, dh, t->dy ? t->dy + r * H : NULL, n);
        if (t->dgh)
            SFX(rnn_bw_seg)(n, t->gates + r * H, dht, dh, t->dgh + r * H, ds, act, 1);
        else
            SFX(rnn_bw_seg)(n, t->gates + r * H, dht, dh, NULL, ds, act, 0);
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
