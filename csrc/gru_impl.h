/*
 * gru_impl.h — GRU pointwise maths and public entry points, instantiated by gru.c per dtype
 * (REAL, SFX). Gates r, z, n (PyTorch order, reset applied after the recurrent product):
 *   r = sig(a_r), z = sig(a_z), hn = W_hn h + b_hn, n = tanh(W_in x + b_in + r*hn),
 *   h' = (1-z)*n + z*h.
 * The driver keeps b_hn out of the input projection (split_n) and stores hn in the cache (aux0).
 * Gradient write rule: dx, dh0 written (=); dw_ih, dw_hh, db_ih, db_hh accumulate (+=).
 */

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
    .point_for = SFX(fr_gru_point_for),
};
