/*
 * pointwise_impl.h — fused LSTM and GRU forward pointwise over a tile of rows (recurrence.h's
 * fr_tile), in registers, included by pointwise.c once per (instruction set, dtype) after defining:
 *   PW_T (scalar), PW_V (vector), PW_W (lanes), PW_TILE (fr_tile_s / fr_tile_d), PW_TARGET,
 *   PW_FN(name) (suffixed name), PW_I(op) (the intrinsic of op: loadu, storeu, add, sub, mul,
 *   set1), PW_SIG, PW_TANH (simd_math.h's in-register sigmoid and tanh).
 * The row loop is inside the kernel: one call per tile keeps the constants in registers and lets
 * the out-of-order core overlap one row's dependency chain with the next (measured: LSTM small
 * inference 0.88x the time of one call per row).
 * Arithmetic is multiply-then-add in the scalar formulas' order (no FMA contraction), so every
 * path rounds the state updates identically. A partial last vector goes through zero-padded
 * copies on the stack: nothing is read or written past n.
 */

#define PW_LOAD PW_I(loadu)
#define PW_STORE PW_I(storeu)
#define PW_ADD PW_I(add)
#define PW_SUB PW_I(sub)
#define PW_MUL PW_I(mul)
#define PW_SET1 PW_I(set1)
#define PW_OPT(p, k) ((p) ? (p) + (k) : NULL)

/* One vector of LSTM units; act (gate g at +g*as), tc (tanh(c_new)), cp (c_prev) and y (h) are
   stores made where not NULL. */
static FR_ALWAYS_INLINE PW_TARGET void PW_FN(lstm_vec)(const PW_T *xp, const PW_T *hh, int64_t ts,
                                                      PW_T *c, PW_T *act, int64_t as, PW_T *tc,
                                                      PW_T *h, PW_T *cp, PW_T *y) {
    const PW_V i = PW_SIG(PW_ADD(PW_LOAD(xp), PW_LOAD(hh)));
    const PW_V f = PW_SIG(PW_ADD(PW_LOAD(xp + ts), PW_LOAD(hh + ts)));
    const PW_V g = PW_TANH(PW_ADD(PW_LOAD(xp + 2 * ts), PW_LOAD(hh + 2 * ts)));
    const PW_V o = PW_SIG(PW_ADD(PW_LOAD(xp + 3 * ts), PW_LOAD(hh + 3 * ts)));
    const PW_V cv = PW_LOAD(c);
    const PW_V cn = PW_ADD(PW_MUL(f, cv), PW_MUL(i, g));
    const PW_V t = PW_TANH(cn);
    const PW_V hv = PW_MUL(o, t);
    if (cp) PW_STORE(cp, cv);
    PW_STORE(c, cn);
    PW_STORE(h, hv);
    if (y) PW_STORE(y, hv);
    if (tc) PW_STORE(tc, t);
    if (act) {
        PW_STORE(act, i);
        PW_STORE(act + as, f);
        PW_STORE(act + 2 * as, g);
        PW_STORE(act + 3 * as, o);
    }
}

/* The last m < PW_W units of a row, through zero-padded copies (out of line: rare). */
static __attribute__((noinline)) PW_TARGET void PW_FN(lstm_part)(int64_t m, int64_t ts,
                                                                 const PW_T *xp, const PW_T *hh,
                                                                 PW_T *c, PW_T *act, int64_t as,
                                                                 PW_T *tc, PW_T *h, PW_T *cp,
                                                                 PW_T *y) {
    PW_T bx[4 * PW_W] = {0}, bh[4 * PW_W] = {0}, ba[4 * PW_W], bc[PW_W] = {0}, bt[PW_W], bo[PW_W];
    for (int64_t g = 0; g < 4; g++) {
        memcpy(bx + g * PW_W, xp + g * ts, (size_t)m * sizeof(PW_T));
        memcpy(bh + g * PW_W, hh + g * ts, (size_t)m * sizeof(PW_T));
    }
    memcpy(bc, c, (size_t)m * sizeof(PW_T));
    if (cp) memcpy(cp, bc, (size_t)m * sizeof(PW_T));
    PW_FN(lstm_vec)(bx, bh, PW_W, bc, ba, PW_W, bt, bo, NULL, NULL);
    if (act)
        for (int64_t g = 0; g < 4; g++) memcpy(act + g * as, ba + g * PW_W, (size_t)m * sizeof(PW_T));
    memcpy(c, bc, (size_t)m * sizeof(PW_T));
    if (tc) memcpy(tc, bt, (size_t)m * sizeof(PW_T));
    memcpy(h, bo, (size_t)m * sizeof(PW_T));
    if (y) memcpy(y, bo, (size_t)m * sizeof(PW_T));
}

static PW_TARGET void PW_FN(lstm_tile)(const PW_TILE *t, int nonlin) {
    (void)nonlin;
    const int64_t n = t->n, ts = t->ts, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        const PW_T *xp = t->xp + i * t->ldxp, *hh = t->hh + i * t->ldhh;
        PW_T *c = t->c + i * t->ldc, *h = t->h + i * t->ldh;
        PW_T *act = PW_OPT(t->gates, r * 4 * H), *cp = PW_OPT(t->aux0, r * H);
        PW_T *tc = PW_OPT(t->aux1, r * H), *y = PW_OPT(t->y, r * H);
        int64_t j = 0;
        for (; j + 2 * PW_W <= n; j += 2 * PW_W) { /* two independent chains per row */
            PW_FN(lstm_vec)(xp + j, hh + j, ts, c + j, PW_OPT(act, j), H, PW_OPT(tc, j), h + j,
                            PW_OPT(cp, j), PW_OPT(y, j));
            PW_FN(lstm_vec)(xp + j + PW_W, hh + j + PW_W, ts, c + j + PW_W, PW_OPT(act, j + PW_W),
                            H, PW_OPT(tc, j + PW_W), h + j + PW_W, PW_OPT(cp, j + PW_W),
                            PW_OPT(y, j + PW_W));
        }
        for (; j + PW_W <= n; j += PW_W)
            PW_FN(lstm_vec)(xp + j, hh + j, ts, c + j, PW_OPT(act, j), H, PW_OPT(tc, j), h + j,
                            PW_OPT(cp, j), PW_OPT(y, j));
        if (j < n)
            PW_FN(lstm_part)(n - j, ts, xp + j, hh + j, c + j, PW_OPT(act, j), H, PW_OPT(tc, j),
                             h + j, PW_OPT(cp, j), PW_OPT(y, j));
    }
}

/* One vector of GRU units; act (gate g at +g*as), hn (hh_n + bhn) and y (h) are stores made where
   not NULL. */
static FR_ALWAYS_INLINE PW_TARGET void PW_FN(gru_vec)(const PW_T *xp, const PW_T *hh, int64_t ts,
                                                     const PW_T *bhn, const PW_T *hprev,
                                                     PW_T *act, int64_t as, PW_T *hn, PW_T *h,
                                                     PW_T *y) {
    const PW_V r = PW_SIG(PW_ADD(PW_LOAD(xp), PW_LOAD(hh)));
    const PW_V z = PW_SIG(PW_ADD(PW_LOAD(xp + ts), PW_LOAD(hh + ts)));
    const PW_V hv = PW_ADD(PW_LOAD(hh + 2 * ts), PW_LOAD(bhn));
    const PW_V nv = PW_TANH(PW_ADD(PW_LOAD(xp + 2 * ts), PW_MUL(r, hv)));
    const PW_V hnew = PW_ADD(PW_MUL(PW_SUB(PW_SET1((PW_T)1), z), nv), PW_MUL(z, PW_LOAD(hprev)));
    PW_STORE(h, hnew);
    if (y) PW_STORE(y, hnew);
    if (hn) PW_STORE(hn, hv);
    if (act) {
        PW_STORE(act, r);
        PW_STORE(act + as, z);
        PW_STORE(act + 2 * as, nv);
    }
}

static __attribute__((noinline)) PW_TARGET void PW_FN(gru_part)(int64_t m, int64_t ts,
                                                                const PW_T *xp, const PW_T *hh,
                                                                const PW_T *bhn,
                                                                const PW_T *hprev, PW_T *act,
                                                                int64_t as, PW_T *hn, PW_T *h,
                                                                PW_T *y) {
    PW_T bx[3 * PW_W] = {0}, bh[3 * PW_W] = {0}, bb[PW_W] = {0}, bp[PW_W] = {0}, ba[3 * PW_W],
         bn[PW_W], bo[PW_W];
    for (int64_t g = 0; g < 3; g++) {
        memcpy(bx + g * PW_W, xp + g * ts, (size_t)m * sizeof(PW_T));
        memcpy(bh + g * PW_W, hh + g * ts, (size_t)m * sizeof(PW_T));
    }
    memcpy(bb, bhn, (size_t)m * sizeof(PW_T));
    memcpy(bp, hprev, (size_t)m * sizeof(PW_T));
    PW_FN(gru_vec)(bx, bh, PW_W, bb, bp, ba, PW_W, bn, bo, NULL);
    if (act)
        for (int64_t g = 0; g < 3; g++) memcpy(act + g * as, ba + g * PW_W, (size_t)m * sizeof(PW_T));
    if (hn) memcpy(hn, bn, (size_t)m * sizeof(PW_T));
    memcpy(h, bo, (size_t)m * sizeof(PW_T));
    if (y) memcpy(y, bo, (size_t)m * sizeof(PW_T));
}

static PW_TARGET void PW_FN(gru_tile)(const PW_TILE *t, int nonlin) {
    (void)nonlin;
    const int64_t n = t->n, ts = t->ts, H = t->H;
    const PW_T *bhn = t->bhn;
    FR_TILE_ROWS(t, i, r) {
        const PW_T *xp = t->xp + i * t->ldxp, *hh = t->hh + i * t->ldhh;
        const PW_T *hp = t->hprev + i * t->ldh;
        PW_T *h = t->h + i * t->ldh;
        PW_T *act = PW_OPT(t->gates, r * 3 * H), *hn = PW_OPT(t->aux0, r * H);
        PW_T *y = PW_OPT(t->y, r * H);
        int64_t j = 0;
        for (; j + 2 * PW_W <= n; j += 2 * PW_W) { /* two independent chains per row */
            PW_FN(gru_vec)(xp + j, hh + j, ts, bhn + j, hp + j, PW_OPT(act, j), H, PW_OPT(hn, j),
                           h + j, PW_OPT(y, j));
            PW_FN(gru_vec)(xp + j + PW_W, hh + j + PW_W, ts, bhn + j + PW_W, hp + j + PW_W,
                           PW_OPT(act, j + PW_W), H, PW_OPT(hn, j + PW_W), h + j + PW_W,
                           PW_OPT(y, j + PW_W));
        }
        for (; j + PW_W <= n; j += PW_W)
            PW_FN(gru_vec)(xp + j, hh + j, ts, bhn + j, hp + j, PW_OPT(act, j), H, PW_OPT(hn, j),
                           h + j, PW_OPT(y, j));
        if (j < n)
            PW_FN(gru_part)(n - j, ts, xp + j, hh + j, bhn + j, hp + j, PW_OPT(act, j), H,
                            PW_OPT(hn, j), h + j, PW_OPT(y, j));
    }
}

#undef PW_T
#undef PW_V
#undef PW_W
#undef PW_TILE
#undef PW_TARGET
#undef PW_FN
#undef PW_I
#undef PW_LOAD
#undef PW_STORE
#undef PW_ADD
#undef PW_SUB
#undef PW_MUL
#undef PW_SET1
#undef PW_SIG
#undef PW_TANH
#undef PW_OPT
