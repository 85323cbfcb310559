/*
 * recurrence.h — internal interface between the cell files (rnn.c, lstm.c, gru.c) and the shared
 * whole-sequence driver (recurrence.c). Not part of the public API.
 *
 * A cell is described by its gate count and two pointwise functions that work on one batch row and
 * a segment of n <= FR_MAX_NR hidden units [j0, j0+n). The driver owns everything else: packing,
 * input projection, the per-step recurrent GEMM, threading, lengths and reverse, the cache layout
 * and the weight-gradient GEMMs.
 *
 * Cache layout (rows r = t*B + b are indexed by time, not by step):
 *   hprev (T*B, H) | gates (T*B, G*H) post-activation, natural gate order | aux_k (T*B, H), k < naux
 * LSTM: aux0 = c_prev, aux1 = tanh(c). GRU: aux0 = W_hn h + b_hn. RNN: none; gates = new h.
 */
#ifndef FASTRNN_RECURRENCE_H
#define FASTRNN_RECURRENCE_H

#include "fastrnn.h"
#include "simd_target.h" /* FR_CLONES */

#define FR_MAX_NR 64 /* widest panel a microkernel may use */


/* dst[j] = a[j] + b[j] for j < n, b NULL meaning zeros (the incoming state gradient of a segment:
   later steps' dh plus this step's dy). */
#define FR_SEG_ADD(dst, a, b, n)                                                                  \
    do {                                                                                          \
        if (b)                                                                                    \
            for (int64_t j_ = 0; j_ < (n); j_++) (dst)[j_] = (a)[j_] + (b)[j_];                   \
        else                                                                                      \
            for (int64_t j_ = 0; j_ < (n); j_++) (dst)[j_] = (a)[j_];                             \
    } while (0)

/* A cell's pointwise kernel for one SIMD path, as a generic function pointer: the driver resolves
   it once per call (cell->point_for) and the cell casts it back to its own type. Choosing the path
   once per row segment instead cost ~4% of an LSTM inference step (measured). */
typedef void (*fr_point_fn)(void);

/* pointwise.c: fused forward pointwise of n hidden units. Gate g's pre-activation is
   xp[g*ts + j] + hh[g*ts + j]; activated gates go to act[g*as + j].
   LSTM: c in/out (c_prev -> c_new), tc = tanh(c_new), h = o*tc; cp (c_prev) and y (h) are copies
   written when not NULL.
   GRU: hn = hh_n + bhn, n = tanh(xp_n + r*hn), h = (1-z)*n + z*hprev.
   fr_<cell>_point_for_* returns the kernel of SIMD path `arch` (FR_ARCH_*; portable C for any
   other value). */
#define FR_DECLARE_POINT(T, S)                                                                    \
    typedef void (*fr_lstm_point_fn_##S)(int64_t n, int64_t ts, const T *xp, const T *hh, T *c,  \
                                         T *act, int64_t as, T *tc, T *h, T *cp, T *y);           \
    typedef void (*fr_gru_point_fn_##S)(int64_t n, int64_t ts, const T *xp, const T *hh,          \
                                        const T *bhn, const T *hprev, T *act, int64_t as, T *hn,  \
                                        T *h);                                                    \
    fr_point_fn fr_lstm_point_for_##S(int arch);                                                  \
    fr_point_fn fr_gru_point_for_##S(int arch);
FR_DECLARE_POINT(float, s)
FR_DECLARE_POINT(double, d)
#undef FR_DECLARE_POINT

/*
 * Forward pointwise for one row segment.
 * xp, hh: input projection (incl. folded biases) and recurrent product, gate g at +g*ts.
 * bhn: GRU recurrent n-bias segment (NULL = 0). hprev: previous state; h: new state (out);
 * c: LSTM cell state (in: c_prev, out: c_new). y: output (out). gates/aux0/aux1: cache rows, gate g
 * of gates at +g*H (NULL in inference). act: RNN non-linearity. pw: the cell's pointwise kernel
 * (cell->point_for(arch), NULL for a cell without one).
 */
#define FR_DECLARE_CELL(T, S)                                                                     \
    typedef void (*fr_fw_##S##_fn)(fr_point_fn pw, int64_t n, int64_t ts, int64_t H, const T *xp, \
                                   const T *hh, const T *bhn, const T *hprev, T *h, T *c, T *y,   \
                                   T *gates, T *aux0, T *aux1, int act);                          \
    /* Backward pointwise for one row segment. dy: output gradient (NULL = 0). dh: in, gradient   \
       w.r.t. the new state from later steps; out, the direct gradient w.r.t. hprev (excluding    \
       the W_hh product). dc: LSTM cell gradient, in/out. dgh: gradient w.r.t. the recurrent      \
       pre-activations (gate g at +g*H), written to both dgh and dgs. dgx: GRU only, gradient     \
       w.r.t. the input pre-activations (NULL for cells where it equals dgh). */                  \
    typedef void (*fr_bw_##S##_fn)(int64_t n, int64_t H, const T *gates, const T *aux0,           \
                                   const T *aux1, const T *hprev, const T *dy, T *dh, T *dc,      \
                                   T *dgh, T *dgs, T *dgx, int act);                              \
    typedef struct {                                                                              \
        int G;              /* gates in the weights */                                            \
        int naux;           /* extra (T*B, H) cache blocks */                                     \
        int has_c;          /* LSTM cell state */                                                 \
        int split_n;        /* GRU: b_hh's n part stays out of the input projection */            \
        int bw_hprev;       /* the backward pointwise reads h_prev (GRU) */                       \
        fr_fw_##S##_fn fw;  /* forward pointwise */                                               \
        fr_bw_##S##_fn bw;  /* backward pointwise */                                              \
        fr_point_fn (*point_for)(int arch); /* fw's pointwise kernel per SIMD path, or NULL */    \
    } fr_cell_##S;                                                                                \
    /* A thread's share of the forward weights, packed: hidden blocks [jb0, jb0+nj) of width nr. */ \
    typedef struct {                                                                              \
        int64_t jb0, nj, nr;                                                                      \
        T *wih, *whh, *bias, *bhn; /* panels of W_ih and W_hh, folded bias, GRU n-bias */         \
    } fr_slice_##S;                                                                               \
    /* Elements needed to pack a slice of njt hidden blocks. */                                   \
    int64_t fr_rec_slice_size_##S(const fr_cell_##S *cell, int64_t I, int64_t H, int64_t nr,      \
                                  int64_t njt);                                                   \
    /* Describe a slice packed at dst (pointers only, no packing). */                             \
    void fr_rec_slice_view_##S(const fr_cell_##S *cell, fr_slice_##S *sl, T *dst, int64_t I,      \
                               int64_t H, int64_t nr, int64_t jb0, int64_t nj, int64_t njt);      \
    /* Pack hidden blocks [jb0, jb0+nj) into dst (fr_rec_slice_size elements) and describe it. */ \
    void fr_rec_pack_slice_##S(const fr_cell_##S *cell, fr_slice_##S *sl, T *dst, const T *w_ih,  \
                               const T *w_hh, const T *b_ih, const T *b_hh, int64_t I, int64_t H, \
                               int64_t nr, int64_t jb0, int64_t nj, int64_t njt);                 \
    /* The slice's columns of A (rows x I) W_ih^T + bias into xp (row stride ldxp). */            \
    void fr_rec_project_##S(const fr_cell_##S *cell, const fr_kernel_##S *kern,                   \
                            const fr_slice_##S *sl, const T *A, int64_t rows, int64_t I, T *xp,   \
                            int64_t ldxp);                                                        \
    /* Step s for rows [rb0, rb1) of B on the slice's hidden units: recurrent tile + pointwise.   \
       Reads hp, writes hn and c (LSTM) there; xp row qbase+b holds row b's projection; y and     \
       cache may be NULL; lengths/reverse/Tn map (s, b) to a time index as in the forward. */     \
    void fr_rec_step_##S(const fr_cell_##S *cell, const fr_kernel_##S *kern,                      \
                         const fr_slice_##S *sl, int64_t s, int64_t Tn, int64_t B, int64_t rb0,   \
                         int64_t rb1, int64_t H, const int64_t *lengths, int reverse,             \
                         const T *hp, T *hn, int64_t ldh,                                         \
                         T *c,                                                                     \
                         const T *xp, int64_t ldxp, int64_t qbase, T *y, T *cache, T *tile,       \
                         fr_point_fn pw, int act);                                                \
    /* The descriptor of FR_CELL_RNN/LSTM/GRU, NULL for another value. */                         \
    const fr_cell_##S *fr_rec_cell_of_##S(int cell);                                              \
    /* Whole-sequence forward of a cell; arguments as the public fr_<cell>_forward_*, plus ids    \
       (NULL, or T*B row indices into x, then a table of V rows of G*H projected inputs). */      \
    int fr_rec_forward_##S(const fr_cell_##S *cell, T *y, T *h_n, T *c_n, T *cache, const T *x,   \
                           const int64_t *ids, int64_t V,                                         \
                           const T *h0, const T *c0, const T *w_ih, const T *w_hh, const T *b_ih, \
                           const T *b_hh, const int64_t *lengths, int64_t Tn, int64_t B,          \
                           int64_t I, int64_t H, int act, int reverse, int nthreads);             \
    /* Whole-sequence backward; arguments as the public fr_<cell>_backward_*. */                  \
    int fr_rec_backward_##S(const fr_cell_##S *cell, T *dx, T *dh0, T *dc0, T *dw_ih, T *dw_hh,   \
                            T *db_ih, T *db_hh, const T *cache, const T *x, const T *w_ih,        \
                            const T *w_hh, const T *dy, const T *dh_n, const T *dc_n,             \
                            const int64_t *lengths, int64_t Tn, int64_t B, int64_t I, int64_t H,  \
                            int act, int reverse, int nthreads);

FR_DECLARE_CELL(float, s)
FR_DECLARE_CELL(double, d)

/* The cell descriptors (defined in rnn.c, lstm.c, gru.c). */
extern const fr_cell_s fr_rnn_cell_s, fr_lstm_cell_s, fr_gru_cell_s;
extern const fr_cell_d fr_rnn_cell_d, fr_lstm_cell_d, fr_gru_cell_d;

/* Cache elements for a cell with G gates and naux aux blocks; -1 for a negative size or a count
   that would overflow int64_t. */
int64_t fr_rec_cache_size(int G, int naux, int64_t T, int64_t B, int64_t H);

/* The batch-group count set by fr_set_batch_groups (0: the drivers choose). */
int fr_rec_batch_groups_forced(void);

#endif /* FASTRNN_RECURRENCE_H */
