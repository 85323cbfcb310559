/*
 * recurrence.h — internal interface between the cell files (rnn.c, lstm.c, gru.c) and the shared
 * whole-sequence driver (recurrence.c). Not part of the public API. The per-dtype declarations are
 * this file's template body (template.h): fr_tile_s / fr_tile_d and so on.
 *
 * A cell is described by its gate count and two pointwise functions that work on a tile of rows
 * (fr_tile, fr_bw_tile) and a segment of n <= FR_MAX_NR hidden units [j0, j0+n). The driver owns everything else: packing,
 * input projection, the per-step recurrent GEMM, threading, lengths and reverse, the cache layout
 * and the weight-gradient GEMMs.
 *
 * Cache layout (rows r = t*B + b are indexed by time, not by step):
 *   hprev (T*B, H) | gates (T*B, G*H) post-activation, natural gate order | aux_k (T*B, H), k < naux
 * LSTM: aux0 = c_prev, aux1 = tanh(c). GRU: aux0 = W_hn h + b_hn. RNN: none; gates = new h.
 */
#ifndef REAL
#ifndef FASTRNN_RECURRENCE_H
#define FASTRNN_RECURRENCE_H

#include "fastrnn.h"
#include "simd_target.h" /* FR_CLONES */

#define FR_MAX_NR 64 /* widest panel a microkernel may use */
#define FR_MAX_MR 12 /* most rows a microkernel tile may have */

/* dst[j] = a[j] + b[j] for j < n, b NULL meaning zeros (the incoming state gradient of a segment:
   later steps' dh plus this step's dy). */
#define FR_SEG_ADD(dst, a, b, n)                                                                  \
    do {                                                                                          \
        if (b)                                                                                    \
            for (int64_t j_ = 0; j_ < (n); j_++) (dst)[j_] = (a)[j_] + (b)[j_];                   \
        else                                                                                      \
            for (int64_t j_ = 0; j_ < (n); j_++) (dst)[j_] = (a)[j_];                             \
    } while (0)

/* Loop over the rows i of tile t that are not skipped, r their time rows. */
#define FR_TILE_ROWS(t, i, r)                                                                     \
    for (int64_t i = 0, r; i < (t)->m; i++)                                                       \
        if ((r = (t)->rows[i]) >= 0)

/* rows(t, stream) with stream a constant (1 where the tile's cache stores go around the caches,
   fr_tile.stream), so that the always-inlined row loop is compiled once for each. */
#define FR_TILE_BY_STREAM(rows, t)                                                                \
    do {                                                                                          \
        if ((t)->stream)                                                                          \
            rows(t, 1);                                                                           \
        else                                                                                      \
            rows(t, 0);                                                                           \
    } while (0)

/* p + k, or NULL where p is NULL (the optional stores of a tile). */
#define FR_OPT(p, k) ((p) ? (p) + (k) : NULL)

/* fr_cell_prepack_*'s buffer: a header in its first FR_PREPACK_HEAD bytes (the slice after it
   starts a page where the buffer does), FR_PREPACK_MAGIC first; sizes up to FR_PREPACK_MAX_H. */
#define FR_PREPACK_HEAD 4096
#define FR_PREPACK_MAGIC 0x3233504b50524655ull /* "UFRPKP32" */
#define FR_PREPACK_MAX_H ((int64_t)1 << 24)

/* Cache elements for a cell with G gates and naux aux blocks; -1 for a negative size or a count
   that would overflow int64_t. */
int64_t fr_rec_cache_size(int G, int naux, int64_t T, int64_t B, int64_t H);

/* Training-cache bytes from which a forward writes its cache around the processor's caches
   (fr_tile.stream): the backward reads it back only after the whole sequence, by then long gone
   from them, and a non-temporal store spares each line a read before its write (LSTM (100, 64,
   512, 512) bf16 training forward: 44 -> 37 ms). Below it the cache's last steps are still in
   L2 for the backward's first ones. */
#define FR_STREAM_CACHE_BYTES ((int64_t)32 << 20)

/* Whether a forward writes its training cache (fr_rec_cache_size elements of esize bytes)
   non-temporally: from FR_STREAM_CACHE_BYTES, or the bytes fr_set_stream_cache_bytes set. */
int fr_rec_stream_cache(int G, int naux, int64_t T, int64_t B, int64_t H, int64_t esize);

/* After a thread's last non-temporal store of a pass (they are weakly ordered): they are visible
   before anything the thread stores after it, such as its arrival at the team's barrier. */
static inline void fr_stream_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_sfence();
#endif
}

/* The batch-group count set by fr_set_batch_groups (0: the drivers choose). */
int fr_rec_batch_groups_forced(void);
/* The team size set by fr_set_team_threads (0: the load rules choose). */
int fr_rec_team_threads_forced(void);

/* Batch groups for a team of nt threads over B rows, njb hidden blocks, tiles of at most mr rows,
   wbytes of weights read per step and a required work cut of `cut` percent (recurrence.c). */
int fr_rec_batch_groups(int nt, int64_t B, int64_t mr, int64_t njb, int64_t wbytes, int cut);

/* Chunks of shared rows for a forward's team of nt threads over B rows (tiles of at most mr rows,
   wbytes of weights read per step), as a team the machine's load would cut takes them
   (team_load.h fr_load_threads): 2 nt - 1 chunks (3 for 2 threads: 1.5 chunks' work a thread),
   fewer where the rows do not allow them (more chunks than threads, each of 6 rows or more,
   every row's sums as with one group); 0 where no count does or the weights exceed a core's
   L2 share; the count fr_set_shared_rows forces where allowed. */
int fr_rec_shared_chunks(int nt, int64_t B, int64_t mr, int64_t wbytes);

/* Threads for a one-off parallel region (a GEMM) of `flops` work: one per 4 Mflop, at most the
   share of nthreads the fastrnn passes in flight leave and, for a large region, the processors
   other runnable threads leave free (team_load.h), at least 1; min(n, nthreads) whatever the
   work and the load where fr_set_team_threads(n) forces teams. */
int fr_rec_threads_for(int nthreads, double flops);

/* Time index of batch row b of length L at step s of a pass (reverse: the row runs backward
   over its own L steps; steps past L keep their index): a bijection on [0, T) for each row. */
static inline int64_t fr_rec_time_of(int64_t s, int64_t L, int reverse) {
    return (reverse && s < L) ? L - 1 - s : s;
}

/* Rows of the next microkernel tile when `left` rows remain, tiles of at most mr rows: the rows
   split evenly over the fewest tiles (14 rows of mr = 12: 7 + 7, not 12 + 2): tiles of 3 rows or
   more wherever the rows allow, which the microkernel sums in one order (gemm_ukr.c's UKR_U), so
   that batch groups can keep a row's sums as they are without groups (recurrence.c). */
static inline int64_t fr_rec_tile_rows(int64_t left, int64_t mr) {
    return left / ((left + mr - 1) / mr);
}

/* Whether a microkernel call on nv valid columns (of panels nr wide) takes the kernel's
   half-width form (fastrnn.h's ukr_half): about half the cost of a whole panel. */
static inline int fr_rec_half_block(int64_t nv, int64_t nr) { return 2 * nv <= nr; }

/* Whether panel q of a hidden block of nv units of G gates (fastrnn.h's fr_pack_b: a partial
   block puts the gates' units side by side) takes the half-width form: its valid columns fit in
   half a panel. */
static inline int fr_rec_half_panel(int64_t G, int64_t nv, int64_t nr, int64_t q) {
    const int64_t cols = nv < nr ? G * nv : G * nr;
    return fr_rec_half_block(cols - q * nr < nr ? cols - q * nr : nr, nr);
}

#define FR_TEMPLATE "recurrence.h"
#include "template.h"

#endif /* FASTRNN_RECURRENCE_H */
#else /* the declarations of one dtype */

/*
 * One tile of a forward step for a cell's pointwise kernel: rows i < m (consecutive batch rows)
 * and the n <= FR_MAX_NR hidden units [j0, j0+n) of every gate; per-row pointers point at row 0,
 * unit j0. Gate g's pre-activation of row i is xp[i*ldxp + g*ts + j] + hh[i*ldhh + g*ts + j].
 * rows[i] is row i's time row r = t*B + b (its row of y and of the cache), or -1 for a row the
 * kernel skips (its sequence has ended: the driver handles it).
 * LSTM: c in/out (c_prev -> c_new), h = o*tanh(c_new). GRU: hn = hh_n + bhn,
 * n = tanh(xp_n + r*hn), h = (1-z)*n + z*hprev. RNN: h = act(xp + hh).
 * y (+r*H) and the cache rows gates (+r*G*H, gate g at +g*H), aux0 and aux1 (+r*H) are stored
 * where not NULL (the cache layout above; NULL in inference). fr_rec_step leaves y NULL and
 * writes a step's rows of y itself after its tiles; the length-1 forward and lowp.c's forward
 * pass it.
 */
typedef struct {
    int64_t m, n, ts, H;
    const REAL *xp;
    int64_t ldxp;
    const REAL *hh;
    int64_t ldhh;
    const REAL *bhn;   /* GRU recurrent n-bias, shared by the rows */
    const REAL *hprev; /* previous state, row i at +i*ldh */
    REAL *h;           /* new state, row i at +i*ldh */
    int64_t ldh;
    REAL *c; /* LSTM cell state, row i at +i*ldc */
    int64_t ldc;
    const int64_t *rows;
    REAL *y, *gates, *aux0, *aux1;
    int stream; /* the cache rows (gates, aux0, aux1) stored non-temporally: a cache of at least
                   FR_STREAM_CACHE_BYTES (the pass ends with fr_stream_fence) */
} SFX(fr_tile);

/* A cell's forward pointwise kernel over a tile (act: the RNN non-linearity). */
typedef void (*SFX(fr_point_fn))(const SFX(fr_tile) *t, int act);

/*
 * Rows i < m of a backward step for a cell's backward pointwise, on hidden units [j0, j0+n):
 * rows[i] is row i's time row r (-1: skip). Cache rows (gates +r*G*H, aux0, aux1, hprev +r*H), dy
 * (+r*H, NULL = 0) and the pre-activation gradients dgh, dgx (+r*G*H) point at unit j0 of time
 * row 0; dh, dc (+i*H) and the step rows dgs (+i*ldd) at row i = 0.
 * dh: in, the gradient w.r.t. the new state from later steps; out, the direct gradient w.r.t.
 * hprev (excluding the W_hh product). dc: LSTM cell gradient, in/out. dgh: gradient w.r.t. the
 * recurrent pre-activations (gate g at +g*H), written to both dgh and dgs. dgx: GRU only, gradient
 * w.r.t. the input pre-activations (NULL for cells where it equals dgh).
 */
typedef struct {
    int64_t m, n, H;
    const int64_t *rows;
    const REAL *gates, *aux0, *aux1, *hprev, *dy;
    REAL *dh, *dc, *dgh, *dgx, *dgs;
    int64_t ldd;
} SFX(fr_bw_tile);

/* A cell's backward pointwise kernel over a tile of rows (act: the RNN non-linearity). */
typedef void (*SFX(fr_bw_fn))(const SFX(fr_bw_tile) *t, int act);

/* A cell, as the driver sees it (one per cell file, by designated initialisers). */
typedef struct {
    int G;            /* gates in the weights */
    int naux;         /* extra (T*B, H) cache blocks */
    int has_c;        /* LSTM cell state */
    int split_n;      /* GRU: b_hh's n part stays out of the input projection */
    int bw_hprev;     /* the backward pointwise reads h_prev (GRU) */
    SFX(fr_bw_fn) bw; /* backward pointwise of a tile of rows */
    /* the forward pointwise kernel of SIMD path arch (resolved once per driver call: once per
       row segment cost ~4% of an LSTM inference step, measured) */
    SFX(fr_point_fn) (*point_for)(int arch);
} SFX(fr_cell);

/* The cell descriptors (defined in rnn.c, lstm.c, gru.c). */
extern const SFX(fr_cell) SFX(fr_rnn_cell), SFX(fr_lstm_cell), SFX(fr_gru_cell);

/* A thread's share of the forward weights, packed: hidden units [u0, u1), in nj blocks of nr
   from u0 (the last one partial where nr does not divide u1 - u0). */
typedef struct {
    int64_t u0, u1, nj, nr;
    REAL *wih, *whh, *bias, *bhn; /* panels of W_ih and W_hh, folded bias, GRU n-bias */
} SFX(fr_slice);

/* Elements needed to pack a slice of njt hidden blocks. */
int64_t SFX(fr_rec_slice_size)(const SFX(fr_cell) *cell, int64_t I, int64_t H, int64_t nr,
                               int64_t njt);
/* Describe a slice packed at dst (pointers only, no packing). */
void SFX(fr_rec_slice_view)(const SFX(fr_cell) *cell, SFX(fr_slice) *sl, REAL *dst, int64_t I,
                            int64_t H, int64_t nr, int64_t u0, int64_t u1, int64_t njt);
/* Pack hidden units [u0, u1) (at most njt blocks) into dst (fr_rec_slice_size elements) and
   describe it. */
void SFX(fr_rec_pack_slice)(const SFX(fr_cell) *cell, SFX(fr_slice) *sl, REAL *dst,
                            const REAL *w_ih, const REAL *w_hh, const REAL *b_ih, const REAL *b_hh,
                            int64_t I, int64_t H, int64_t nr, int64_t u0, int64_t u1,
                            int64_t njt);
/* The slice's columns of A W_ih^T + bias into xp (row stride ldxp) for rows rows of A (row
   stride I) taken seg at a time (seg > 0), segment k's first row at A + k * lds: xp's rows in
   that order. seg = rows, lds = 0: A is rows x I. */
void SFX(fr_rec_project)(const SFX(fr_cell) *cell, const SFX(fr_kernel) *kern,
                         const SFX(fr_slice) *sl, const REAL *A, int64_t rows, int64_t seg,
                         int64_t lds, int64_t I, REAL *xp, int64_t ldxp);
/* Step s for rows [rb0, rb1) of B on the slice's hidden units: recurrent tile + pointwise. Reads
   hp, writes hn and c (LSTM; its rows at ldh too) there; xp row qbase+b holds row b's
   projection; y and cache may be NULL; y's rows of the step (the slice's units) are copied from
   hn after the tiles, zeros for rows whose sequence has ended; lengths/reverse/Tn map (s, b) to
   a time index as in the forward; stream: the cache's stores non-temporal (fr_tile.stream). */
void SFX(fr_rec_step)(const SFX(fr_cell) *cell, const SFX(fr_kernel) *kern,
                      const SFX(fr_slice) *sl, int64_t s, int64_t Tn, int64_t B, int64_t rb0,
                      int64_t rb1, int64_t H, const int64_t *lengths, int reverse, const REAL *hp,
                      REAL *hn, int64_t ldh, REAL *c, const REAL *xp, int64_t ldxp, int64_t qbase,
                      REAL *y, REAL *cache, int stream, REAL *tile, SFX(fr_point_fn) pw,
                      int act);
/* The descriptor of FR_CELL_RNN/LSTM/GRU, NULL for another value. */
const SFX(fr_cell) *SFX(fr_rec_cell_of)(int cell);
/* Whole-sequence forward of a cell; arguments as the public fr_cell_forward_*, plus ids (NULL,
   or T*B row indices into x, then a table of V rows of G*H projected inputs) and packed (NULL, or
   the slice of every unit packed once, checked: fr_cell_forward_prepacked_*). */
int SFX(fr_rec_forward)(const SFX(fr_cell) *cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache,
                        const REAL *x, const int64_t *ids, int64_t V, const REAL *h0,
                        const REAL *c0, const REAL *w_ih, const REAL *w_hh, const REAL *b_ih,
                        const REAL *b_hh, const int64_t *lengths, int64_t Tn, int64_t B, int64_t I,
                        int64_t H, int act, int reverse, int nthreads, const REAL *packed);
/* Whole-sequence backward; arguments as the public fr_cell_backward_*, plus hprev_w: NULL, or (a
   bf16 forward's backward, float only) the (T*B, H) bf16-rounded states h_{t-1} the weight
   gradient dw_hh is taken with instead of the cache's; dx, dw_ih and dw_hh then run on
   fr_gemm_bf16 (the gate gradients rounded to bf16 as they enter those GEMMs). */
int SFX(fr_rec_backward)(const SFX(fr_cell) *cell, REAL *dx, REAL *dh0, REAL *dc0, REAL *dw_ih,
                         REAL *dw_hh, REAL *db_ih, REAL *db_hh, const REAL *cache, const REAL *x,
                         const REAL *w_ih, const REAL *w_hh, const REAL *dy, const REAL *dh_n,
                         const REAL *dc_n, const int64_t *lengths, int64_t Tn, int64_t B,
                         int64_t I, int64_t H, int act, int reverse, int nthreads,
                         const REAL *hprev_w);

#endif
