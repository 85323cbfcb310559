/*
 * gru.c — the GRU cell: its forward pointwise maths (fused per SIMD path, and portable), its
 * backward pointwise maths and its descriptor. The whole-sequence time loop, threading and GEMMs
 * live in recurrence.c. Gates r, z, n (PyTorch order, reset applied after the recurrent product):
 *   r = sig(a_r), z = sig(a_z), hn = W_hn h + b_hn, n = tanh(W_in x + b_in + r*hn),
 *   h' = (1-z)*n + z*h.
 * The driver keeps b_hn out of the input projection (split_n) and stores hn in the cache (aux0).
 *
 * This file is its own template body (template.h): first the fused forward per (SIMD path,
 * dtype), then the rest per dtype.
 */
#ifndef REAL
#include <string.h>

#include "recurrence.h"
#include "simd_math.h"

#define FR_TEMPLATE "gru.c"
#define FR_TEMPLATE_SIMD
#include "template.h"
#define FR_TEMPLATE "gru.c"
#include "template.h"

#elif defined(VEC) /* the fused forward of one (SIMD path, dtype) */

/* As lstm.c's fused forward: one pass in registers, the row loop inside the kernel, the scalar
   formulas' operation order (no FMA contraction), masked loads and stores
   (V_LOADN / V_STOREN) for a partial last vector. */

/* nv vectors of GRU units from unit 0 (nv <= 2, a constant after inlining; the first m <= VW
   units of each, m < VW only with nv = 1), their steps side by side (simd_math.h's _n forms);
   act (gate g at +g*as), hn (hh_n + bhn) and y (h) are stores made where not NULL, the cache's
   (act, hn) non-temporal with stream (fr_tile.stream). */
static FR_ALWAYS_INLINE VTARGET void VSFX(gru_vecs)(const int nv, const REAL *xp, const REAL *hh,
                                                    int64_t ts, const REAL *bhn, const REAL *hprev,
                                                    REAL *act, int64_t as, REAL *hn, REAL *h,
                                                    REAL *y, int64_t m, const int stream) {
    VEC r[2], z[2], hv[2], nn[2];
    for (int k = 0; k < nv; k++) r[k] = V_ADD(V_LOADN(xp + k * VW, m), V_LOADN(hh + k * VW, m));
    VSFX(fr_vsigmoid_n)(r, nv);
    for (int k = 0; k < nv; k++)
        z[k] = V_ADD(V_LOADN(xp + ts + k * VW, m), V_LOADN(hh + ts + k * VW, m));
    VSFX(fr_vsigmoid_n)(z, nv);
    for (int k = 0; k < nv; k++) {
        hv[k] = V_ADD(V_LOADN(hh + 2 * ts + k * VW, m), V_LOADN(bhn + k * VW, m));
        nn[k] = V_ADD(V_LOADN(xp + 2 * ts + k * VW, m), V_MUL(r[k], hv[k]));
    }
    VSFX(fr_vtanh_n)(nn, nv);
    for (int k = 0; k < nv; k++) {
        const int64_t o = k * VW;
        const VEC hnew = V_ADD(V_MUL(V_SUB(V_SET1((REAL)1), z[k]), nn[k]),
                               V_MUL(z[k], V_LOADN(hprev + o, m)));
        const VEC ga[3] = {r[k], z[k], nn[k]};
        if (hn) V_CACHE_STORE(stream, hn + o, m, hv[k]);
        V_STORE_STEP(stream, h + o, FR_OPT(y, o), hnew, FR_OPT(act, o), as, ga, 3, m);
    }
}

/* The rows of a tile; stream a constant after inlining. */
static FR_ALWAYS_INLINE VTARGET void VSFX(gru_rows)(const SFX(fr_tile) *t, const int stream) {
    const int64_t n = t->n, ts = t->ts, H = t->H;
    const REAL *bhn = t->bhn;
    FR_TILE_ROWS(t, i, r) {
        const REAL *xp = t->xp + i * t->ldxp, *hh = t->hh + i * t->ldhh;
        const REAL *hp = t->hprev + i * t->ldh;
        REAL *h = t->h + i * t->ldh;
        REAL *act = FR_OPT(t->gates, r * 3 * H), *hn = FR_OPT(t->aux0, r * H);
        REAL *y = FR_OPT(t->y, r * H);
#define GRU_VECS(nv, j, m) /* nv vectors of m units from unit j */                                \
    VSFX(gru_vecs)(nv, xp + (j), hh + (j), ts, bhn + (j), hp + (j), FR_OPT(act, j), H,              \
                   FR_OPT(hn, j), h + (j), FR_OPT(y, j), m, stream)
        int64_t j = 0;
        for (; j + 2 * VW <= n; j += 2 * VW) GRU_VECS(2, j, VW); /* two chains side by side */
        for (; j + VW <= n; j += VW) GRU_VECS(1, j, VW);
        if (j < n) GRU_VECS(1, j, n - j);
#undef GRU_VECS
    }
}

static VTARGET void VSFX(gru_tile)(const SFX(fr_tile) *t, int nonlin) {
    (void)nonlin;
    FR_TILE_BY_STREAM(VSFX(gru_rows), t);
}

#else /* the portable forward, the backward and the descriptor of one dtype */

/* The portable forward of one row of n units, FR_MAX_NR at a time, through the array activations
   of activations.c: act (gate g at +g*as) and hn (hh_n + bhn) always written, y (h) where not
   NULL. */
static void SFX(gru_row_generic)(int64_t n, int64_t ts, const REAL *xp, const REAL *hh,
                                  const REAL *bhn, const REAL *hprev, REAL *act, int64_t as,
                                  REAL *hn, REAL *h, REAL *y) {
    REAL a[3 * FR_MAX_NR];
    for (int64_t j0 = 0; j0 < n; j0 += FR_MAX_NR) {
        const int64_t m = n - j0 < FR_MAX_NR ? n - j0 : FR_MAX_NR;
        for (int64_t g = 0; g < 2; g++)
            for (int64_t j = 0; j < m; j++) a[g * m + j] = xp[g * ts + j0 + j] + hh[g * ts + j0 + j];
        SFX(fr_sigmoid)(a, a, 2 * m);
        for (int64_t j = 0; j < m; j++) {
            hn[j0 + j] = hh[2 * ts + j0 + j] + bhn[j0 + j];
            a[2 * m + j] = xp[2 * ts + j0 + j] + a[j] * hn[j0 + j];
        }
        SFX(fr_tanh)(a + 2 * m, a + 2 * m, m);
        for (int64_t j = 0; j < m; j++) {
            const REAL z = a[m + j];
            h[j0 + j] = ((REAL)1 - z) * a[2 * m + j] + z * hprev[j0 + j];
        }
        for (int64_t g = 0; g < 3; g++)
            memcpy(act + g * as + j0, a + g * m, (size_t)m * sizeof(REAL));
    }
    if (y) memcpy(y, h, (size_t)n * sizeof(REAL));
}

static void SFX(gru_tile_generic)(const SFX(fr_tile) *t, int nonlin) {
    (void)nonlin;
    REAL act[3 * FR_MAX_NR], hn[FR_MAX_NR]; /* for the stores inference does not keep */
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        SFX(gru_row_generic)(n, t->ts, t->xp + i * t->ldxp, t->hh + i * t->ldhh, t->bhn,
                              t->hprev + i * t->ldh, t->gates ? t->gates + r * 3 * H : act,
                              t->gates ? H : n, t->aux0 ? t->aux0 + r * H : hn,
                              t->h + i * t->ldh, FR_OPT(t->y, r * H));
    }
}

/* The forward pointwise of SIMD path arch. */
static SFX(fr_point_fn) SFX(gru_point_for)(int arch) {
    return FR_BY_ARCH(arch, SFX(gru_tile_avx512), SFX(gru_tile_avx2), SFX(gru_tile_generic));
}

/* The backward maths of one segment; every stream is its own restrict parameter so that the
   loop vectorises (one pointer with gate offsets g*H would need alias checks on H). */
static inline void SFX(gru_bw_seg)(int64_t n, const REAL *restrict gr, const REAL *restrict gz,
                                   const REAL *restrict gn, const REAL *restrict hn,
                                   const REAL *restrict hprev, const REAL *restrict dht,
                                   REAL *restrict dh, REAL *restrict hr, REAL *restrict hz,
                                   REAL *restrict hh, REAL *restrict sr, REAL *restrict sz,
                                   REAL *restrict sh, REAL *restrict xr, REAL *restrict xz,
                                   REAL *restrict xn) {
    for (int64_t j = 0; j < n; j++) {
        const REAL r = gr[j], z = gz[j], nv = gn[j];
        const REAL dnp = dht[j] * ((REAL)1 - z) * ((REAL)1 - nv * nv);
        const REAL dr = dnp * hn[j] * r * ((REAL)1 - r);
        const REAL dz = dht[j] * (hprev[j] - nv) * z * ((REAL)1 - z);
        const REAL dhn = dnp * r;
        dh[j] = dht[j] * z;
        hr[j] = sr[j] = xr[j] = dr;
        hz[j] = sz[j] = xz[j] = dz;
        hh[j] = sh[j] = dhn;
        xn[j] = dnp;
    }
}

/* The backward pointwise over a tile of rows (recurrence.h's fr_bw_tile). */
FR_CLONES static void SFX(gru_bw)(const SFX(fr_bw_tile) *t, int act) {
    (void)act;
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        REAL dht[FR_MAX_NR], *dh = t->dh + i * H;
        FR_SEG_ADD(dht, dh, t->dy ? t->dy + r * H : NULL, n);
        const REAL *g = t->gates + r * 3 * H;
        REAL *dg = t->dgh + r * 3 * H, *dx = t->dgx + r * 3 * H, *ds = t->dgs + i * t->ldd;
        SFX(gru_bw_seg)(n, g, g + H, g + 2 * H, t->aux0 + r * H, t->hprev + r * H, dht, dh, dg,
                        dg + H, dg + 2 * H, ds, ds + H, ds + 2 * H, dx, dx + H, dx + 2 * H);
    }
}

const SFX(fr_cell) SFX(fr_gru_cell) = {
    .G = 3,
    .naux = 1, /* W_hn h + b_hn */
    .has_c = 0,
    .split_n = 1,
    .bw_hprev = 1,
    .bw = SFX(gru_bw),
    .point_for = SFX(gru_point_for),
};

#endif
