/*
 * pointwise_impl.h — fused LSTM and GRU forward pointwise over one row segment, in registers,
 * included by pointwise.c once per (instruction set, dtype) after defining:
 *   PW_T (scalar), PW_V (vector), PW_W (lanes), PW_TARGET, PW_FN(name) (suffixed name),
 *   PW_I(op) (the intrinsic of op: loadu, storeu, add, sub, mul, set1), PW_SIG, PW_TANH
 *   (simd_math.h's in-register sigmoid and tanh).
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

static FR_ALWAYS_INLINE PW_TARGET void PW_FN(lstm_vec)(const PW_T *xp, const PW_T *hh, int64_t ts, PW_T *c,
                                      PW_T *act, int64_t as, PW_T *tc, PW_T *h, PW_T *cp,
                                      PW_T *y) {
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
    PW_STORE(tc, t);
    PW_STORE(h, hv);
    if (y) PW_STORE(y, hv);
    PW_STORE(act, i);
    PW_STORE(act + as, f);
    PW_STORE(act + 2 * as, g);
    PW_STORE(act + 3 * as, o);
}

/* cp (the old c) and y (a copy of h) may be NULL. */
static PW_TARGET void PW_FN(lstm_point)(int64_t n, int64_t ts, const PW_T *xp, const PW_T *hh,
                                        PW_T *c, PW_T *act, int64_t as, PW_T *tc, PW_T *h,
                                        PW_T *cp, PW_T *y) {
    int64_t j = 0;
#define PW_OPT(p, k) ((p) ? (p) + (k) : NULL)
    for (; j + 2 * PW_W <= n; j += 2 * PW_W) { /* two independent chains in flight */
        PW_FN(lstm_vec)(xp + j, hh + j, ts, c + j, act + j, as, tc + j, h + j, PW_OPT(cp, j),
                        PW_OPT(y, j));
        PW_FN(lstm_vec)(xp + j + PW_W, hh + j + PW_W, ts, c + j + PW_W, act + j + PW_W, as,
                        tc + j + PW_W, h + j + PW_W, PW_OPT(cp, j + PW_W), PW_OPT(y, j + PW_W));
    }
    for (; j + PW_W <= n; j += PW_W)
        PW_FN(lstm_vec)(xp + j, hh + j, ts, c + j, act + j, as, tc + j, h + j, PW_OPT(cp, j),
                        PW_OPT(y, j));
#undef PW_OPT
    if (j < n) {
        const int64_t m = n - j;
        PW_T bx[4 * PW_W] = {0}, bh[4 * PW_W] = {0}, ba[4 * PW_W], bc[PW_W] = {0}, bt[PW_W], bo[PW_W];
        for (int64_t g = 0; g < 4; g++) {
            memcpy(bx + g * PW_W, xp + g * ts + j, (size_t)m * sizeof(PW_T));
            memcpy(bh + g * PW_W, hh + g * ts + j, (size_t)m * sizeof(PW_T));
        }
        memcpy(bc, c + j, (size_t)m * sizeof(PW_T));
        if (cp) memcpy(cp + j, bc, (size_t)m * sizeof(PW_T));
        PW_FN(lstm_vec)(bx, bh, PW_W, bc, ba, PW_W, bt, bo, NULL, NULL);
        for (int64_t g = 0; g < 4; g++) memcpy(act + g * as + j, ba + g * PW_W, (size_t)m * sizeof(PW_T));
        memcpy(c + j, bc, (size_t)m * sizeof(PW_T));
        memcpy(tc + j, bt, (size_t)m * sizeof(PW_T));
        memcpy(h + j, bo, (size_t)m * sizeof(PW_T));
        if (y) memcpy(y + j, bo, (size_t)m * sizeof(PW_T));
    }
}

static FR_ALWAYS_INLINE PW_TARGET void PW_FN(gru_vec)(const PW_T *xp, const PW_T *hh, int64_t ts, const PW_T *bhn,
                                     const PW_T *hprev, PW_T *act, int64_t as, PW_T *hn, PW_T *h) {
    const PW_V r = PW_SIG(PW_ADD(PW_LOAD(xp), PW_LOAD(hh)));
    const PW_V z = PW_SIG(PW_ADD(PW_LOAD(xp + ts), PW_LOAD(hh + ts)));
    const PW_V hv = PW_ADD(PW_LOAD(hh + 2 * ts), PW_LOAD(bhn));
    const PW_V nv = PW_TANH(PW_ADD(PW_LOAD(xp + 2 * ts), PW_MUL(r, hv)));
    const PW_V hnew = PW_ADD(PW_MUL(PW_SUB(PW_SET1((PW_T)1), z), nv), PW_MUL(z, PW_LOAD(hprev)));
    PW_STORE(hn, hv);
    PW_STORE(h, hnew);
    PW_STORE(act, r);
    PW_STORE(act + as, z);
    PW_STORE(act + 2 * as, nv);
}

static PW_TARGET void PW_FN(gru_point)(int64_t n, int64_t ts, const PW_T *xp, const PW_T *hh,
                                       const PW_T *bhn, const PW_T *hprev, PW_T *act, int64_t as,
                                       PW_T *hn, PW_T *h) {
    int64_t j = 0;
    for (; j + 2 * PW_W <= n; j += 2 * PW_W) { /* two independent chains in flight */
        PW_FN(gru_vec)(xp + j, hh + j, ts, bhn + j, hprev + j, act + j, as, hn + j, h + j);
        PW_FN(gru_vec)(xp + j + PW_W, hh + j + PW_W, ts, bhn + j + PW_W, hprev + j + PW_W,
                       act + j + PW_W, as, hn + j + PW_W, h + j + PW_W);
    }
    for (; j + PW_W <= n; j += PW_W)
        PW_FN(gru_vec)(xp + j, hh + j, ts, bhn + j, hprev + j, act + j, as, hn + j, h + j);
    if (j < n) {
        const int64_t m = n - j;
        PW_T bx[3 * PW_W] = {0}, bh[3 * PW_W] = {0}, bb[PW_W] = {0}, bp[PW_W] = {0}, ba[3 * PW_W],
             bn[PW_W], bo[PW_W];
        for (int64_t g = 0; g < 3; g++) {
            memcpy(bx + g * PW_W, xp + g * ts + j, (size_t)m * sizeof(PW_T));
            memcpy(bh + g * PW_W, hh + g * ts + j, (size_t)m * sizeof(PW_T));
        }
        memcpy(bb, bhn + j, (size_t)m * sizeof(PW_T));
        memcpy(bp, hprev + j, (size_t)m * sizeof(PW_T));
        PW_FN(gru_vec)(bx, bh, PW_W, bb, bp, ba, PW_W, bn, bo);
        for (int64_t g = 0; g < 3; g++) memcpy(act + g * as + j, ba + g * PW_W, (size_t)m * sizeof(PW_T));
        memcpy(hn + j, bn, (size_t)m * sizeof(PW_T));
        memcpy(h + j, bo, (size_t)m * sizeof(PW_T));
    }
}

#undef PW_T
#undef PW_V
#undef PW_W
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
