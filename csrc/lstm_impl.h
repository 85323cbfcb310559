/*
 * lstm_impl.h — LSTM pointwise maths and public entry points, instantiated by lstm.c per dtype
 * (REAL, SFX). Gates i, f, g, o (PyTorch order):
 *   i = sig(a_i), f = sig(a_f), g = tanh(a_g), o = sig(a_o), c' = f*c + i*g, h' = o*tanh(c').
 * Gradient write rule (all cells): dx, dh0, dc0 are written (=); dw_ih, dw_hh, db_ih, db_hh
 * accumulate (+=) and the caller zeroes them.
 */

/* The backward maths of one segment; every stream is its own restrict parameter so that the
   loop vectorises (one pointer with gate offsets g*H would need alias checks on H). */
static inline void SFX(lstm_bw_seg)(int64_t n, const REAL *restrict gi, const REAL *restrict gf,
                                    const REAL *restrict gg, const REAL *restrict go,
                                    const REAL *restrict cprev, const REAL *restrict tcv,
                                    const REAL *restrict dht, REAL *restrict dc,
                                    REAL *restrict hi, REAL *restrict hf, REAL *restrict hg,
                                    REAL *restrict ho, REAL *restrict si, REAL *restrict sf,
                                    REAL *restrict sg, REAL *restrict so) {
    for (int64_t j = 0; j < n; j++) {
        const REAL tc = tcv[j], i = gi[j], f = gf[j], g = gg[j], o = go[j];
        const REAL dct = dc[j] + dht[j] * o * ((REAL)1 - tc * tc);
        const REAL di = dct * g * i * ((REAL)1 - i);
        const REAL df = dct * cprev[j] * f * ((REAL)1 - f);
        const REAL dg = dct * i * ((REAL)1 - g * g);
        const REAL dO = dht[j] * tc * o * ((REAL)1 - o);
        dc[j] = dct * f;
        hi[j] = si[j] = di;
        hf[j] = sf[j] = df;
        hg[j] = sg[j] = dg;
        ho[j] = so[j] = dO;
    }
}

FR_CLONES static void SFX(lstm_bw)(const SFX(fr_bw_tile) *t, int act) {
    (void)act;
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        REAL dht[FR_MAX_NR], *dh = t->dh + i * H;
        FR_SEG_ADD(dht, dh, t->dy ? t->dy + r * H : NULL, n);
        for (int64_t j = 0; j < n; j++) dh[j] = 0;
        const REAL *g = t->gates + r * 4 * H;
        REAL *dg = t->dgh + r * 4 * H, *ds = t->dgs + i * t->ldd;
        SFX(lstm_bw_seg)(n, g, g + H, g + 2 * H, g + 3 * H, t->aux0 + r * H, t->aux1 + r * H, dht,
                         t->dc + i * H, dg, dg + H, dg + 2 * H, dg + 3 * H, ds, ds + H, ds + 2 * H,
                         ds + 3 * H);
    }
}

const SFX(fr_cell) SFX(fr_lstm_cell) = {
    .G = 4,
    .naux = 2, /* c_prev, tanh(c) */
    .has_c = 1,
    .split_n = 0,
    .bw_hprev = 0,
    .bw = SFX(lstm_bw),
    .point_for = SFX(fr_lstm_point_for),
};
