/*
 * lstm.c — the LSTM cell: its forward pointwise maths (fused per SIMD path, and portable), its
 * backward pointwise maths and its descriptor. The whole-sequence time loop, threading and GEMMs
 * live in recurrence.c. Gates i, f, g, o (PyTorch order):
 *   i = sig(a_i), f = sig(a_f), g = tanh(a_g), o = sig(a_o), c' = f*c + i*g, h' = o*tanh(c').
 * Cache: gates i, f, g, o post-activation; aux0 = c (the previous cell state), aux1 = tanh(c').
 *
 * This file is its own template body (template.h): first the fused forward per (SIMD path,
 * dtype), then the rest per dtype.
 */
#ifndef REAL
#include <string.h>

#include "recurrence.h"
#include "simd_math.h"

#define FR_TEMPLATE "lstm.c"
#define FR_TEMPLATE_SIMD
#include "template.h"
#define FR_TEMPLATE "lstm.c"
#include "template.h"

#elif defined(VEC) /* the fused forward of one (SIMD path, dtype) */

/*
 * The pre-activation sums, gate non-linearities, state update and stores in one pass with the
 * gates in registers. The row loop is inside the kernel: one call per tile keeps the constants in
 * registers and lets the out-of-order core overlap one row's dependency chain with the next
 * (measured: LSTM small inference 0.88x the time of one call per row). Arithmetic is
 * multiply-then-add in the scalar formulas' order (no FMA contraction), so every path rounds the
 * state updates identically. A partial last vector loads and stores its first lanes only
 * (V_LOADN / V_STOREN, masked): nothing is read or written past n.
 */

/* nv vectors of LSTM units from unit 0 (nv <= 2, a constant after inlining; the first m <= VW
   units of each, m < VW only with nv = 1), their steps side by side (simd_math.h's _n forms);
   act (gate g at +g*as), tc (tanh(c_new)), cp (c_prev) and y (h) are stores made where not NULL,
   the cache's (act, tc, cp) non-temporal with stream (fr_tile.stream). */
static FR_ALWAYS_INLINE VTARGET void VSFX(lstm_vecs)(const int nv, const REAL *xp, const REAL *hh,
                                                     int64_t ts, REAL *c, REAL *act, int64_t as,
                                                     REAL *tc, REAL *h, REAL *cp, REAL *y,
                                                     int64_t m, const int stream) {
    VEC gi[2], gf[2], g[2], go[2], cv[2], cn[2];
#define LSTM_PRE(q, k) V_ADD(V_LOADN(xp + (q) * ts + (k) * VW, m), V_LOADN(hh + (q) * ts + (k) * VW, m))
    for (int k = 0; k < nv; k++) gi[k] = LSTM_PRE(0, k);
    VSFX(fr_vsigmoid_n)(gi, nv);
    for (int k = 0; k < nv; k++) gf[k] = LSTM_PRE(1, k);
    VSFX(fr_vsigmoid_n)(gf, nv);
    for (int k = 0; k < nv; k++) g[k] = LSTM_PRE(2, k);
    VSFX(fr_vtanh_n)(g, nv);
    for (int k = 0; k < nv; k++) go[k] = LSTM_PRE(3, k);
    VSFX(fr_vsigmoid_n)(go, nv);
#undef LSTM_PRE
    for (int k = 0; k < nv; k++) {
        cv[k] = V_LOADN(c + k * VW, m);
        cn[k] = V_ADD(V_MUL(gf[k], cv[k]), V_MUL(gi[k], g[k]));
    }
    VEC t[2] = {cn[0], cn[1]};
    VSFX(fr_vtanh_n)(t, nv);
    for (int k = 0; k < nv; k++) {
        const int64_t o = k * VW;
        const VEC ga[4] = {gi[k], gf[k], g[k], go[k]};
        if (cp) V_CACHE_STORE(stream, cp + o, m, cv[k]);
        V_STOREN(c + o, m, cn[k]);
        if (tc) V_CACHE_STORE(stream, tc + o, m, t[k]);
        V_STORE_STEP(stream, h + o, FR_OPT(y, o), V_MUL(go[k], t[k]), FR_OPT(act, o), as, ga, 4, m);
    }
}

/* The rows of a tile; stream a constant after inlining. */
static FR_ALWAYS_INLINE VTARGET void VSFX(lstm_rows)(const SFX(fr_tile) *t, const int stream) {
    const int64_t n = t->n, ts = t->ts, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        const REAL *xp = t->xp + i * t->ldxp, *hh = t->hh + i * t->ldhh;
        REAL *c = t->c + i * t->ldc, *h = t->h + i * t->ldh;
        REAL *act = FR_OPT(t->gates, r * 4 * H), *cp = FR_OPT(t->aux0, r * H);
        REAL *tc = FR_OPT(t->aux1, r * H), *y = FR_OPT(t->y, r * H);
#define LSTM_VECS(nv, j, m) /* nv vectors of m units from unit j */                               \
    VSFX(lstm_vecs)(nv, xp + (j), hh + (j), ts, c + (j), FR_OPT(act, j), H, FR_OPT(tc, j),         \
                    h + (j), FR_OPT(cp, j), FR_OPT(y, j), m, stream)
        int64_t j = 0;
        for (; j + 2 * VW <= n; j += 2 * VW) LSTM_VECS(2, j, VW); /* two chains side by side */
        for (; j + VW <= n; j += VW) LSTM_VECS(1, j, VW);
        if (j < n) LSTM_VECS(1, j, n - j);
#undef LSTM_VECS
    }
}

static VTARGET void VSFX(lstm_tile)(const SFX(fr_tile) *t, int nonlin) {
    (void)nonlin;
    FR_TILE_BY_STREAM(VSFX(lstm_rows), t);
}

#else /* the portable forward, the backward and the descriptor of one dtype */

/* The portable forward of one row of n units, FR_MAX_NR at a time, through the array activations
   of activations.c: act (gate g at +g*as) and tc (tanh(c_new)) always written, cp (c_prev) and y
   (h) where not NULL. */
static void SFX(lstm_row_generic)(int64_t n, int64_t ts, const REAL *xp, const REAL *hh, REAL *c,
                                   REAL *act, int64_t as, REAL *tc, REAL *h, REAL *cp, REAL *y) {
    REAL a[4 * FR_MAX_NR];
    if (cp) memcpy(cp, c, (size_t)n * sizeof(REAL));
    for (int64_t j0 = 0; j0 < n; j0 += FR_MAX_NR) {
        const int64_t m = n - j0 < FR_MAX_NR ? n - j0 : FR_MAX_NR;
        for (int64_t g = 0; g < 4; g++)
            for (int64_t j = 0; j < m; j++) a[g * m + j] = xp[g * ts + j0 + j] + hh[g * ts + j0 + j];
        SFX(fr_sigmoid)(a, a, 2 * m);
        SFX(fr_tanh)(a + 2 * m, a + 2 * m, m);
        SFX(fr_sigmoid)(a + 3 * m, a + 3 * m, m);
        for (int64_t j = 0; j < m; j++) c[j0 + j] = a[m + j] * c[j0 + j] + a[j] * a[2 * m + j];
        SFX(fr_tanh)(tc + j0, c + j0, m);
        for (int64_t j = 0; j < m; j++) h[j0 + j] = a[3 * m + j] * tc[j0 + j];
        for (int64_t g = 0; g < 4; g++)
            memcpy(act + g * as + j0, a + g * m, (size_t)m * sizeof(REAL));
    }
    if (y) memcpy(y, h, (size_t)n * sizeof(REAL));
}

static void SFX(lstm_tile_generic)(const SFX(fr_tile) *t, int nonlin) {
    (void)nonlin;
    REAL act[4 * FR_MAX_NR], tc[FR_MAX_NR]; /* for the stores inference does not keep */
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        SFX(lstm_row_generic)(n, t->ts, t->xp + i * t->ldxp, t->hh + i * t->ldhh,
                               t->c + i * t->ldc, t->gates ? t->gates + r * 4 * H : act,
                               t->gates ? H : n, t->aux1 ? t->aux1 + r * H : tc,
                               t->h + i * t->ldh, FR_OPT(t->aux0, r * H), FR_OPT(t->y, r * H));
    }
}

/* The forward pointwise of SIMD path arch. */
static SFX(fr_point_fn) SFX(lstm_point_for)(int arch) {
    return FR_BY_ARCH(arch, SFX(lstm_tile_avx512), SFX(lstm_tile_avx2), SFX(lstm_tile_generic));
}

/* The backward maths of one segment; every stream is its own restrict parameter so that the
   loop vectorises (one pointer with gate offsets g*H would need alias checks on H). keep (a
   constant after inlining): also store the gate gradients to hi..ho (the all-steps rows), not
   only to the step rows si..so. */
static FR_ALWAYS_INLINE void SFX(lstm_bw_seg)(
    int64_t n, const REAL *restrict gi, const REAL *restrict gf, const REAL *restrict gg,
    const REAL *restrict go, const REAL *restrict cprev, const REAL *restrict tcv,
    const REAL *restrict dht, REAL *restrict dc, REAL *restrict hi, REAL *restrict hf,
    REAL *restrict hg, REAL *restrict ho, REAL *restrict si, REAL *restrict sf,
    REAL *restrict sg, REAL *restrict so, const int keep) {
    for (int64_t j = 0; j < n; j++) {
        const REAL tc = tcv[j], i = gi[j], f = gf[j], g = gg[j], o = go[j];
        const REAL dct = dc[j] + dht[j] * o * ((REAL)1 - tc * tc);
        const REAL di = dct * g * i * ((REAL)1 - i);
        const REAL df = dct * cprev[j] * f * ((REAL)1 - f);
        const REAL dg = dct * i * ((REAL)1 - g * g);
        const REAL dO = dht[j] * tc * o * ((REAL)1 - o);
        dc[j] = dct * f;
        si[j] = di;
        sf[j] = df;
        sg[j] = dg;
        so[j] = dO;
        if (keep) {
            hi[j] = di;
            hf[j] = df;
            hg[j] = dg;
            ho[j] = dO;
        }
    }
}

/* The backward pointwise over a tile of rows (recurrence.h's fr_bw_tile). */
FR_CLONES static void SFX(lstm_bw)(const SFX(fr_bw_tile) *t, int act) {
    (void)act;
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        REAL dht[FR_MAX_NR], *dh = t->dh + i * H;
        FR_SEG_ADD(dht, dh, t->dy ? t->dy + r * H : NULL, n);
        for (int64_t j = 0; j < n; j++) dh[j] = 0;
        const REAL *g = t->gates + r * 4 * H;
        REAL *ds = t->dgs + i * t->ldd, *dg = FR_OPT(t->dgh, r * 4 * H);
#define LSTM_BW_SEG(keep)                                                                          \
    SFX(lstm_bw_seg)(n, g, g + H, g + 2 * H, g + 3 * H, t->aux0 + r * H, t->aux1 + r * H, dht,     \
                     t->dc + i * H, dg, FR_OPT(dg, H), FR_OPT(dg, 2 * H), FR_OPT(dg, 3 * H), ds,   \
                     ds + H, ds + 2 * H, ds + 3 * H, keep)
        if (dg)
            LSTM_BW_SEG(1);
        else
            LSTM_BW_SEG(0);
#undef LSTM_BW_SEG
    }
}

const SFX(fr_cell) SFX(fr_lstm_cell) = {
    .G = 4,
    .naux = 2, /* c_prev, tanh(c) */
    .has_c = 1,
    .split_n = 0,
    .bw_hprev = 0,
    .bw = SFX(lstm_bw),
    .point_for = SFX(lstm_point_for),
};

#endif
