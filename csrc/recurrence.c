/*
 * recurrence.c — the whole-sequence driver shared by every cell, float and double, and the public
 * cell entry points (fr_cell_*). This file is its own template body (template.h): the dtype-free
 * parts first, then the driver per dtype.
 *
 * Forward: one parallel region for the whole sequence. Thread `tid` owns hidden blocks [jb0, jb1)
 * of width nr for all gates: it packs its slices of W_ih and W_hh once (they stay in its cache),
 * computes its columns of the input projection for a chunk of steps at a time (one GEMM per chunk:
 * no cache of size T unless training), and per step computes its tile of the recurrent product
 * and applies the cell's pointwise function while the tile is in L1. One barrier per step
 * publishes the new state. Backward mirrors it (dh_prev = dG * W_hh by hidden columns, one barrier
 * per step, ping-pong step buffer); weight gradients are single GEMMs after the loop.
 *
 * Both directions run as a pass through the same phases: plan the team (threads, batch groups,
 * hidden blocks per thread), lay out the scratch (rows padded by a cache line), acquire it, run
 * the team's region, and start over with a smaller team when the runtime gives fewer threads than
 * planned (run_pass).
 */
#ifndef REAL
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dots.h"
#include "lowp.h"
#include "omp_share.h"
#include "prefetch.h"
#include "recurrence.h"
#include "scratch.h"
#include "team_load.h"
#include "team_sync.h"
#include "team_tune.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Steps per input-projection chunk: about PROJ_ROWS rows of (T*B, I) per GEMM. */
#define PROJ_ROWS 256
/* Recurrent weight bytes above which batch groups lose to splitting hidden units only, at the
   least (measured: LSTM H=128 gains with groups at 512 KiB of the forward's W_ih and W_hh, H=256
   loses or breaks even at 2 MiB); where a core's L2 is larger, 3/4 of it (group_max_bytes). */
#define FR_GROUP_MAX_WEIGHT_BYTES (1 << 20)
/* Rows per batch group from which groups always pay where the weights stay in L2 (measured with
   tiles of 8 rows: two tiles a group; small LSTM training without them, one group of 32 rows,
   1.3x the time). */
#define FR_GROUP_ROWS 16
/* Shared rows (a team on a loaded machine, fr_rec_shared_chunks): the fewest rows of a chunk
   (smaller chunks lose more to their tiles: LSTM (60, B, 100, 200) on one thread, the time per
   24 rows with chunks of 6 rows 1.057x that of 24, of 8 1.027x, of 12 1.013x), and about how
   many rows of input projection a segment of a chunk's steps takes (segments are the unit a
   thread takes: the shorter, the less the last one, held by a thread that lost its processor,
   delays the pass). */
#define FR_SHARE_ROWS 6
#define FR_SHARE_SEG_ROWS 64
/* Steps between a team's checks for another pass entering (go_solo_check). */
#define FR_SOLO_EVERY 8
/* Rows per call of the backward pointwise. */
#define FR_BW_ROWS 16
/* A pass's flops from which a one-thread pass measures its waits for a processor (two reads of
   about a microsecond against about 50 us of work). */
#define FR_MEASURE_FLOPS 1.0e6
/* A pass's flops from which every pass measures (about 0.5 ms of work: the reads, a few
   microseconds on the team's critical path, stay under 1%); smaller passes measure one in
   FR_MEASURE_EVERY (and always after idle, and the first), so that a contended machine is still
   noticed within a few calls while a batch-1 call does not pay ~10% for it. */
#define FR_MEASURE_ALL_FLOPS 1.0e8
#define FR_MEASURE_EVERY 8
/* A one-off region's flops from which fr_rec_threads_for reads the runnable threads beside it. */
#define FR_FREE_CHECK_FLOPS 5.0e7
/* Flops per step and thread below which an extra thread costs more than it saves. */
#define MIN_FLOPS_PER_THREAD 16000.0
/* A length-1 forward of at most STEP1_MAX_B batch rows runs on the weights as given,
   without packing them (fr_rec_forward's step1): the dots kernel (dots.h) reads each weight row
   once for up to FR_DOTS_MAX_B rows. Packing reads every weight and writes it again; with one
   step to run, that copy took 57% of an LSTM(256) call on one thread. Past 8 rows the packed
   microkernel's arithmetic wins where the weights are small: (1, 12, 64, 64) and (1, 16, 32, 32)
   measured 15-18% slower unpacked on one thread, (1, 16, 256, 256) 28% faster. */
#define STEP1_MAX_B 8
/* Hidden units per pointwise tile of that forward. */
#define STEP1_UNITS 16
/* Flops from which that forward takes a team (fastrnn.h's FR_STEP1_TEAM_FLOPS, which the Python
   layer's GIL rule shares). Measured, one warm call, 2 threads against 1: LSTM (1,1,32,32)
   1.13x, (1,1,64,64) 0.95x (65536 flops: a few microseconds either way), (1,1,96,96) 0.77x,
   (1,4,64,64) 0.78x, (1,1,128,128) 0.67x. */
#define STEP1_TEAM_FLOPS FR_STEP1_TEAM_FLOPS
/* Its backward runs on the weights as given too (the transposed dots kernel, FR_DOTS_MAX_B rows
   per pass over them) for up to FR_DOTS_MAX_B rows, and up to STEP1_MAX_B where the weights take
   at most STEP1_BW_BYTES: past that a second pass over weights beyond the caches costs more than
   packing (LSTM training, paired against packing: (1,8,256,256) 0.80x, (1,8,384,384) 0.91x,
   (1,6,512,512) GRU 1.01x, (1,5,512,512) 1.10x, (1,8,512,512) 1.04x; (1,4,512,512) 0.85x). */
#define STEP1_BW_BYTES ((int64_t)4 << 20)

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

int64_t fr_rec_cache_size(int G, int naux, int64_t T, int64_t B, int64_t H) {
    if (T < 0 || B < 0 || H < 0) return -1;
    if (T == 0 || B == 0 || H == 0) return 0;
    /* T * B * H * (1 + G + naux), or -1 where the product would overflow int64_t */
    const int64_t f[4] = {T, B, H, (int64_t)(1 + G + naux)};
    int64_t n = 1;
    for (int k = 0; k < 4; k++) {
        if (n > INT64_MAX / f[k]) return -1;
        n *= f[k];
    }
    return n;
}

/* 0: the drivers choose their batch groups; n > 0: n groups wherever the team allows */
static _Atomic int forced_groups;

int fr_set_batch_groups(int n) {
    if (n < 0) return FR_ERR_ARG;
    atomic_store_explicit(&forced_groups, n, memory_order_relaxed);
    return FR_OK;
}

int fr_rec_batch_groups_forced(void) {
    return atomic_load_explicit(&forced_groups, memory_order_relaxed);
}

/* 0: FR_STREAM_CACHE_BYTES; n > 0: the cache bytes from which forwards stream their cache */
static _Atomic int64_t stream_bytes;

int fr_set_stream_cache_bytes(int64_t n) {
    if (n < 0) return FR_ERR_ARG;
    atomic_store_explicit(&stream_bytes, n, memory_order_relaxed);
    return FR_OK;
}

int fr_rec_stream_cache(int G, int naux, int64_t T, int64_t B, int64_t H, int64_t esize) {
    const int64_t n = atomic_load_explicit(&stream_bytes, memory_order_relaxed);
    const int64_t elems = fr_rec_cache_size(G, naux, T, B, H);
    return elems > 0 && elems >= (n > 0 ? n : FR_STREAM_CACHE_BYTES) / esize;
}

/* Testing knobs (fastrnn.h): a forced team size, a forced step from which passes go on alone. */
static _Atomic int forced_threads;
static _Atomic int64_t forced_solo_step;
static _Atomic int64_t solo_passes;
static _Atomic int64_t measured_passes;
static _Atomic int64_t step1_passes;
static _Atomic int64_t step1_team_passes;
static _Atomic int64_t prepacked_reads; /* threads of forwards that read fr_cell_prepack's slice */

int fr_rec_team_threads_forced(void) {
    return atomic_load_explicit(&forced_threads, memory_order_relaxed);
}

int fr_set_team_threads(int n) {
    if (n < 0) return FR_ERR_ARG;
    atomic_store_explicit(&forced_threads, n, memory_order_relaxed);
    return FR_OK;
}

int fr_set_solo_step(int64_t s) {
    if (s < 0) return FR_ERR_ARG;
    atomic_store_explicit(&forced_solo_step, s, memory_order_relaxed);
    return FR_OK;
}

int64_t fr_solo_passes(void) { return atomic_load_explicit(&solo_passes, memory_order_relaxed); }

int64_t fr_step1_passes(void) {
    return atomic_load_explicit(&step1_passes, memory_order_relaxed);
}

int64_t fr_step1_team_passes(void) {
    return atomic_load_explicit(&step1_team_passes, memory_order_relaxed);
}

int64_t fr_prepacked_reads(void) {
    return atomic_load_explicit(&prepacked_reads, memory_order_relaxed);
}

int64_t fr_measured_passes(void) {
    return atomic_load_explicit(&measured_passes, memory_order_relaxed);
}

int fr_cell_gates(int cell) {
    const fr_cell_s *cd = fr_rec_cell_of_s(cell);
    return cd ? cd->G : -1;
}

int64_t fr_cell_cache_size(int cell, int64_t T, int64_t B, int64_t H) {
    const fr_cell_s *cd = fr_rec_cell_of_s(cell);
    return cd ? fr_rec_cache_size(cd->G, cd->naux, T, B, H) : -1;
}

/* ---- phase 1: team planning ------------------------------------------------------------------ */

/* A pass's thread team: nt threads in nbg batch groups of nhg threads; hidden blocks of nr units
   (njb of them, at most njt per thread); microkernel tiles of at most mr rows. With shared rows
   (shared = 1), nbg > nt chunks of rows that the nt threads (nhg = 1) take in turn, a segment of
   steps at a time (fr_rec_shared_chunks). */
typedef struct {
    int nt, nbg, nhg, shared;
    int64_t mr, nr, njb, njt;
} fr_team_plan;

/* Threads for a pass: one per MIN_FLOPS_PER_THREAD of a step's work, at most one per hidden block
   and nthreads; then what the machine leaves it (team_load.h: concurrent passes, contention, the
   cost of waking an idle team for the pass's `flops` of work). */
static int pick_threads(int nthreads, int64_t njb, int64_t B, int64_t I, int64_t H, int64_t G,
                        const fr_load_ticket *tk, double flops, int *shared) {
    *shared = 0;
    double step_flops = 2.0 * (double)B * (double)(I + H) * (double)G * (double)H;
    int64_t nt = (int64_t)(step_flops / MIN_FLOPS_PER_THREAD);
    if (nt < 1) nt = 1;
    if (nt > nthreads) nt = nthreads;
    if (nt > njb) nt = njb;
    const int forced = atomic_load_explicit(&forced_threads, memory_order_relaxed);
    if (forced > 0) nt = imin(imin(forced, nthreads), njb); /* the testing knob */
#ifndef _OPENMP
    nt = 1;
#endif
    if (nt <= 1) return 1;
    return forced > 0 ? (int)nt : fr_load_threads(tk, nthreads, (int)nt, flops, shared);
}

/* Whether rows split into tiles of at most mr rows (fr_rec_tile_rows) give every tile 3 rows or
   more: from 3 rows up with mr = 6, 8 or 12 (6 rows: 3 + 3 in groups, 6 in one tile). */
static int tiles_of_three(int64_t rows, int64_t mr) {
    return rows >= 3 && rows / ((rows + mr - 1) / mr) >= 3;
}

/* Whether splitting B rows into nbg groups leaves every row's sums as they are with one group.
   The microkernel sums a row in one of UKR_U(m) orders, m its tile's row count (gemm_ukr.c: 1 for
   m >= 3, more for 1-2 rows); one group tiles the steps' B rows and the flattened projection's
   k*B rows, a group its own rows per step. Where all of those tiles have 3 rows or more, every
   row is summed in the one order, so a call's results do not depend on the team it gets (the
   idle, contention and concurrency rules change teams from call to call). */
static int groups_keep_sums(int64_t B, int64_t mr, int nbg) {
    for (int64_t k = 1; k <= mr; k++)
        if (!tiles_of_three(k * B, mr)) return 0;
    for (int64_t g = 0; g < nbg; g++)
        if (!tiles_of_three(B * (g + 1) / nbg - B * g / nbg, mr)) return 0;
    return 1;
}

/* Whether nbg batch groups can split a team of nt threads over B rows with every row's sums as
   with one group. */
static int groups_allowed(int nt, int64_t B, int64_t mr, int nbg) {
    return nt % nbg == 0 && B >= nbg && groups_keep_sums(B, mr, nbg);
}

/* The most weight bytes a step may read for batch groups to pay: every group reads all of them
   each step, from its own core's L2 while they fit (measured on a 2 MiB L2, LSTM forward with
   groups against without: H = 300 (1.4 MiB of W_hh) 0.96-0.97x the time, H = 384 (2.3 MiB)
   1.11x). */
static int64_t group_max_bytes(void) {
    const int64_t l2 = fr_l2_bytes() / 4 * 3;
    return l2 > FR_GROUP_MAX_WEIGHT_BYTES ? l2 : FR_GROUP_MAX_WEIGHT_BYTES;
}

int fr_prepack_read(int G, int64_t H, int64_t esize, int nthreads) {
    return nthreads <= 1 || G * H * H * esize <= group_max_bytes();
}

/* Split a team of nt threads into nbg batch groups of nt/nbg threads each: a group owns rows
   [B*g/nbg, B*(g+1)/nbg) for the whole sequence (rows never interact, so groups never wait for
   each other) and splits the njb hidden blocks among its threads (one barrier per step inside the
   group). Every thread of a group packs all the group's weight columns, so groups pay off while
   the weights a step reads (wbytes) stay in a core's L2 and each group keeps FR_GROUP_ROWS rows,
   or where they cut the busiest thread's tile work (hidden blocks it owns x its rows) by `cut`
   percent, the pass's own (fr_pass.group_cut: the forward's 10 pays for its packing all the
   weights; at 0 an equal work is enough). Off the tile grid, e.g. H = 200 in 7 blocks of 32,
   B = 24: 4 blocks x 24 rows in one group, 7 x 12 in two. */
int fr_rec_batch_groups(int nt, int64_t B, int64_t mr, int64_t njb, int64_t wbytes, int cut) {
    int nbg = fr_rec_batch_groups_forced();
    if (nbg > 0) return groups_allowed(nt, B, mr, nbg) ? nbg : 1;
    if (wbytes > group_max_bytes()) return 1;
    int64_t work[2] = {0, 0}; /* one group, nbg groups */
    for (nbg = nt; nbg > 1; nbg--) {
        if (!groups_allowed(nt, B, mr, nbg)) continue;
        if (B / nbg >= FR_GROUP_ROWS) return nbg;
        for (int k = 0; k < 2; k++) {
            const int64_t g = k ? nbg : 1, nhg = nt / g;
            work[k] = (njb + nhg - 1) / nhg * ((B + g - 1) / g);
        }
        if (cut > 0 ? 100 * work[1] < (100 - cut) * work[0] : work[1] <= work[0]) return nbg;
    }
    return 1;
}

/* The other batch-group count with a pass's results (groups_keep_sums) where the rule's choice
   `rule` is not clear-cut, for the measured choice (team_tune.h): with one group, the most groups
   that keep the sums; with groups of fewer than FR_GROUP_ROWS rows, one group; 0 for none (the
   weights a step reads beyond group_max_bytes, or no such count). */
static int group_alternative(int nt, int64_t B, int64_t mr, int64_t wbytes, int rule) {
    if (nt < 2 || wbytes > group_max_bytes()) return 0;
    if (rule > 1) return B / rule >= FR_GROUP_ROWS ? 0 : 1;
    for (int nbg = nt; nbg > 1; nbg--)
        if (groups_allowed(nt, B, mr, nbg)) return nbg;
    return 0;
}

/* A plan's nbg batch groups and the split of the hidden blocks between a group's threads. */
static void set_groups(fr_team_plan *p, int nbg) {
    p->nbg = nbg;
    p->nhg = p->nt / p->nbg;
    p->njt = (p->njb + p->nhg - 1) / p->nhg;
    p->shared = 0;
}

/* 0: chunks of shared rows only where the load cuts a team (plan_team); k > 0: k chunks wherever
   a pass can share rows and k is allowed (the testing knob fr_set_shared_rows) */
static _Atomic int forced_shared;
static _Atomic int64_t shared_passes;

int fr_set_shared_rows(int k) {
    if (k < 0) return FR_ERR_ARG;
    atomic_store_explicit(&forced_shared, k, memory_order_relaxed);
    return FR_OK;
}

int64_t fr_shared_passes(void) {
    return atomic_load_explicit(&shared_passes, memory_order_relaxed);
}

/* Whether nt threads may take B rows in k chunks in turn: more chunks than threads (a thread that
   loses its processor then holds one chunk while the others go on with the rest), chunks of
   FR_SHARE_ROWS rows or more with the sums of one group (groups_keep_sums), and weights that
   every thread can keep in its L2 (group_max_bytes). */
static int share_allowed(int nt, int64_t B, int64_t mr, int64_t wbytes, int k) {
    return nt > 1 && k > nt && B / k >= FR_SHARE_ROWS && wbytes <= group_max_bytes() &&
           groups_keep_sums(B, mr, k);
}

/* Shared rows (recurrence.h fr_rec_shared_chunks): instead of fewer threads, nt threads that take
   chunks of rows a segment of steps at a time, so that a thread that loses its processor to the
   load delays the pass by about the segment it holds, where fewer threads would leave a
   processor's share unused. */
int fr_rec_shared_chunks(int nt, int64_t B, int64_t mr, int64_t wbytes) {
    const int forced = atomic_load_explicit(&forced_shared, memory_order_relaxed);
    if (forced > 0) return share_allowed(nt, B, mr, wbytes, forced) ? forced : 0;
    for (int k = 2 * nt - 1; k > nt; k--)
        if (share_allowed(nt, B, mr, wbytes, k)) return k;
    return 0;
}

/* A plan's k chunks of shared rows: each thread runs every hidden unit. */
static void set_shared(fr_team_plan *p, int k) {
    p->nbg = k;
    p->nhg = 1;
    p->njt = p->njb;
    p->shared = 1;
}

/* Plan the team of a pass over B rows, H units and G gates for at most nthreads threads; flops_I:
   the input width a step's work is counted with, wbytes: the packed weights a step reads, cut:
   the work cut batch groups must bring (fr_rec_batch_groups). tk, flops: the pass's entry in the
   process-wide load and its work in all (pick_threads).
   FR_ERR_ARG for a microkernel wider than the driver's bounds. */
static int plan_team(fr_team_plan *p, int64_t mr, int64_t nr, int nthreads, int64_t B,
                     int64_t flops_I, int64_t H, int64_t G, int64_t wbytes, int cut, int can_share,
                     const fr_load_ticket *tk, double flops) {
    if (nr > FR_MAX_NR || mr > FR_MAX_MR) return FR_ERR_ARG;
    p->mr = mr;
    p->nr = nr;
    p->njb = (H + nr - 1) / nr;
    int shared = 0; /* the team for shared rows the load leaves (team_load.h), or 0 */
    p->nt = pick_threads(nthreads, p->njb, B, flops_I, H, G, tk, flops, &shared);
    const int forced = atomic_load_explicit(&forced_shared, memory_order_relaxed) > 0;
    if (can_share && (forced || shared > p->nt)) {
        const int nt = forced ? p->nt : shared;
        const int k = fr_rec_shared_chunks(nt, B, mr, wbytes);
        if (k > 0) {
            p->nt = nt;
            set_shared(p, k);
            return FR_OK;
        }
    }
    set_groups(p, fr_rec_batch_groups(p->nt, B, mr, p->njb, wbytes, cut));
    return FR_OK;
}

/* Whether a batch group of nb rows projects each step's rows where they are in x (fr_rec_project
   in segments of nb rows) rather than copied side by side first: where each step's row tiles
   keep FR_IN_PLACE_ROWS rows or the kernel's most (AVX-512: 8 rows, 16 FMA chains; AVX2: whole
   tiles of 6), so that they run as fast as the copy's taller tiles. Measured (2 threads, AVX-512,
   the time against the copy, 15 rounds): LSTM (40,48,300,300) 0.996, (30,40,200,250) 0.988
   (tiles of 10 against 12); AVX2 tiles of 5 against 6: 1.004. */
#define FR_IN_PLACE_ROWS 8
static inline int fw_in_place_rows(int64_t nb, int64_t mr) {
    return fr_rec_tile_rows(nb, mr) >= (mr < FR_IN_PLACE_ROWS ? mr : FR_IN_PLACE_ROWS);
}

/* Hidden blocks [*jb0, *jb0 + *nj) owned by thread hg of its group: njb / nhg blocks each, one
   more for the last njb % nhg threads (at most njt), so that the thread holding the last block,
   often a partial one, holds as many others as any thread (H = 200 in 7 blocks: 3 and 3 + the
   last, not 4 and 2 + the last). */
static inline void my_blocks(const fr_team_plan *p, int64_t hg, int64_t *jb0, int64_t *nj) {
    *jb0 = p->njb * hg / p->nhg;
    *nj = p->njb * (hg + 1) / p->nhg - *jb0;
}

/* Hidden units [*u0, *u1) of H owned in the forward by thread hg of its group: H split evenly
   at multiples of half a block (nr / 2), each thread's last block partial where that leaves one
   (its gates' units side by side: fastrnn.h's fr_pack_b). Against whole blocks this evens out
   the work where the blocks do not split evenly: H = 100 in blocks of 32 on 2 threads, 48 + 52
   units (6 and 6.5 panels of work) instead of 64 + 36 (8 and 4.5). Where H is too small for
   that, whole blocks (my_blocks). */
static void fw_units(const fr_team_plan *p, int64_t H, int64_t hg, int64_t *u0, int64_t *u1) {
    const int64_t nhg = p->nhg, gran = p->nr > 1 ? p->nr / 2 : 1;
    int64_t prev = 0;
    *u0 = 0;
    *u1 = H;
    for (int64_t k = 1; k <= nhg; k++) {
        const int64_t b = k == nhg ? H : imin(H, (H * k / nhg + gran / 2) / gran * gran);
        if (b <= prev) { /* an empty share: whole blocks */
            int64_t jb0, nj;
            my_blocks(p, hg, &jb0, &nj);
            *u0 = imin(H, jb0 * p->nr);
            *u1 = imin(H, (jb0 + nj) * p->nr);
            return;
        }
        if (k == hg + 1) {
            *u0 = prev;
            *u1 = b;
        }
        prev = b;
    }
}

/* Rows [*rb0, *rb1) of B owned by batch group bg. */
static inline void my_rows(const fr_team_plan *p, int64_t B, int64_t bg, int64_t *rb0,
                           int64_t *rb1) {
    *rb0 = B * bg / p->nbg;
    *rb1 = B * (bg + 1) / p->nbg;
}

/* ---- phase 2: padding and layout ------------------------------------------------------------- */

/* The stride of rows of n elements of esize bytes, padded by a cache line: with a row size a
   multiple of 4 KiB (H = 256, 512, 1024... in float) the microkernel's rows would all map to the
   same L1 set. */
static inline int64_t padded_ld(int64_t n, int64_t esize) {
    const int64_t line = 64 / esize;
    return (n + line - 1) / line * line + line;
}

/* ---- phase 3: scratch and the team's barrier flags ----------------------------------------- */

/* Whether the team's per-step barrier can spin (team_sync.h): only with a processor per thread;
   oversubscribed, spinning threads would take the processors from the threads they wait for, so
   libgomp's barrier (which sleeps) is used instead. */
static inline int spin_team(int nt) {
#ifdef _OPENMP
    return nt > 1 && nt <= omp_get_num_procs();
#else
    (void)nt;
    return 0;
#endif
}

/* A pass's working memory: the scratch, and the barrier flags when the team spins (team NULL
   otherwise). */
typedef struct {
    void *scratch;
    fr_team_flag *team;
    int spin;
} fr_team_mem;

/* Acquire bytes of scratch and the flags p's team needs; FR_ERR_NOMEM (nothing held) on failure. */
static int acquire(fr_team_mem *mem, const fr_team_plan *p, size_t bytes) {
    mem->scratch = fr_scratch_alloc(bytes);
    mem->spin = p->nhg > 1 && spin_team(p->nt);
    mem->team = mem->spin ? fr_team_new(p->nt) : NULL;
    if (mem->scratch == NULL || (mem->spin && mem->team == NULL)) {
        fr_team_free(mem->team);
        fr_scratch_free(mem->scratch);
        mem->scratch = NULL;
        mem->team = NULL;
        return FR_ERR_NOMEM;
    }
    return FR_OK;
}

/* Release the flags (the scratch stays). */
static void release_flags(fr_team_mem *mem) {
    fr_team_free(mem->team);
    mem->team = NULL;
}

/* Release everything acquire took. */
static void release(fr_team_mem *mem) {
    release_flags(mem);
    fr_scratch_free(mem->scratch);
    mem->scratch = NULL;
}

/* The k-th per-step barrier of the threads of batch group bg (hg: this thread's index in it). */
static inline void group_barrier(const fr_team_mem *mem, const fr_team_plan *p, int bg, int hg,
                                 int64_t k) {
    if (mem->spin) {
        fr_team_barrier(mem->team + bg * p->nhg, hg, p->nhg, k);
    } else if (p->nhg > 1) { /* libgomp makes a futex call even for a team of one */
#pragma omp barrier
    }
}

/* ---- shared rows: chunks that the threads take in turn ------------------------------------- */

/* A chunk of shared rows: the next segment of steps to run (the chunk is done at the pass's
   segment count) and whether a thread holds it; a cache line each. */
typedef struct {
    _Atomic int64_t seg;
    _Atomic int busy;
    char pad[64 - sizeof(int64_t) - sizeof(int)];
} fr_share_chunk;

/* Take a chunk of k for its next segment (of nseg): the free one least far on (so that the chunks
   move on together and none is left for one thread at the end), from thread tid's own on among
   equals; waits while every chunk not done is held. Returns the chunk with *seg its segment, or
   -1 when every chunk is done. A thread that took a chunk sees its rows' state as the thread
   that released it left it (acquire; fr_share_release). */
static int share_take(fr_share_chunk *c, int k, int64_t nseg, int tid, int64_t *seg) {
    for (;;) {
        int best = -1, left = 0;
        int64_t best_seg = nseg;
        for (int i = 0; i < k; i++) {
            const int j = (tid + i) % k;
            const int64_t s = atomic_load_explicit(&c[j].seg, memory_order_relaxed);
            if (s >= nseg) continue;
            left = 1;
            if (s < best_seg && atomic_load_explicit(&c[j].busy, memory_order_relaxed) == 0) {
                best = j;
                best_seg = s;
            }
        }
        if (!left) return -1;
        int free = 0;
        if (best >= 0 && atomic_compare_exchange_strong_explicit(&c[best].busy, &free, 1,
                                                                 memory_order_acquire,
                                                                 memory_order_relaxed)) {
            *seg = atomic_load_explicit(&c[best].seg, memory_order_relaxed);
            if (*seg < nseg) return best;
            atomic_store_explicit(&c[best].busy, 0, memory_order_release);
        } else if (best < 0) {
            FR_TEAM_PAUSE(); /* every chunk left is held: one is released within a segment */
        }
    }
}

/* Release chunk j after its segment seg: its next segment is free to any thread. */
static void share_release(fr_share_chunk *c, int j, int64_t seg) {
    atomic_store_explicit(&c[j].seg, seg + 1, memory_order_relaxed);
    atomic_store_explicit(&c[j].busy, 0, memory_order_release);
}

/* ---- phase 4: the team's region, and the retry with a smaller team ------------------------- */

/* Threads in the current team (1 outside a parallel region or without OpenMP). */
static inline int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}


/*
 * A pass of a driver (forward or backward), as run_pass sees it: the sizes its team is planned
 * for, and its phases: layout (the scratch bytes for ps->plan, filling the pass's layout), begin
 * (after the scratch is acquired, before the region; may be NULL) and thread (the work of thread
 * tid in the region). A driver's own pass type starts with this struct.
 */
typedef struct fr_pass fr_pass;
struct fr_pass {
    int64_t mr, nr;           /* the microkernel's tile */
    int64_t T, B, flops_I, H, G; /* plan_team's sizes (T: steps) */
    int64_t wbytes;
    /* the cut (percent) of the busiest thread's tile work from which batch groups are taken
       (fr_rec_batch_groups; 0: an equal work is enough) */
    int group_cut;
    /* whether the pass can go on alone on its first thread from a step on (go_solo) */
    int can_solo;
    /* whether its threads can take chunks of rows in turn (shared rows: plan_team) */
    int can_share;
    size_t (*layout)(fr_pass *ps);
    void (*begin)(fr_pass *ps);
    void (*thread)(const fr_pass *ps, int tid);
    fr_team_plan plan;
    fr_team_mem mem;
    fr_tune_ticket tune; /* the measured choice of its batch groups (tune_groups) */
    /* set by run_pass: the passes in flight at entry, and where the team may go on alone, the
       step number from which it does (solo_from, INT64_MAX until then; NULL where it cannot) */
    int inflight0;
    int64_t solo_step; /* the testing knob's step (fr_set_solo_step; 0: none) */
    _Atomic int64_t *solo_from;
};

/*
 * Going on alone. Another pass entering the process (a second Python caller) would share the
 * processors with this pass's team, whose per-step barrier then waits for threads that lost
 * their processor. Where the team is one group of spinning threads, its first thread checks the
 * passes in flight at every step (one relaxed load) and, when another has entered since, asks
 * the team to stop at the next barrier: from then on thread 0 runs every thread's part (its
 * "role": the packed slice, input projection and hidden blocks that thread had) in the same
 * order, so that results stay bit for bit those of the team; the others park on thread 0's flag
 * (asleep, not spinning in the runtime's barrier) until it is done.
 */

/* Called by thread 0 before its arrival at barrier k (a pass numbers its barriers by steps
   done, 1, 2, ...): ask the team to go on alone from k on where another pass has entered the
   process since this one did (or the testing knob says so). */
static inline void go_solo_check(const fr_pass *ps, int64_t k) {
    if (ps->solo_from == NULL) return;
    /* every FR_SOLO_EVERY steps (a batch-1 step is about a microsecond) */
    if (k % FR_SOLO_EVERY != 0 && ps->solo_step == 0) return;
    if (fr_load_inflight() > ps->inflight0 || (ps->solo_step > 0 && k >= ps->solo_step))
        atomic_store_explicit(ps->solo_from, k, memory_order_relaxed);
}

/* After barrier k: whether the team goes on alone from here (the barrier made thread 0's
   request visible). */
static inline int gone_solo(const fr_pass *ps, int64_t k) {
    return ps->solo_from != NULL && atomic_load_explicit(ps->solo_from, memory_order_relaxed) <= k;
}

/* A thread other than 0 after the team went on alone: sleep until thread 0 arrives at the
   pass's end (fr_team_arrive(k_end)). */
static inline void park(const fr_pass *ps, int64_t k_end) { fr_team_sleep(ps->mem.team, k_end); }

/* Thread 0 at the end of a pass it finished alone: wake the parked threads. */
static inline void unpark(const fr_pass *ps, int64_t k_end) {
    fr_team_arrive(ps->mem.team, 0, k_end);
    atomic_fetch_add_explicit(&solo_passes, 1, memory_order_relaxed);
}

/* Where ps's plan has another batch-group count with the same results and no knob forces one:
   the count the measured choice gives (team_tune.h), the team's split redone for it. Plans are
   tried only by a pass that starts undisturbed (tk: no other pass in flight, the team warm), so
   that callers that only ever run side by side keep the rule's plan rather than alternate. */
static void tune_groups(fr_pass *ps, const fr_load_ticket *tk) {
    fr_team_plan *p = &ps->plan;
    ps->tune.slot = -1;
    ps->tune.alt = 0;
    if (p->nt < 2 || p->shared || fr_rec_batch_groups_forced() > 0) return;
    const int alt = group_alternative(p->nt, ps->B, p->mr, ps->wbytes, p->nbg);
    if (alt == 0) return;
    const int64_t v[] = {ps->B, ps->flops_I, ps->H, ps->G, ps->wbytes, ps->group_cut, p->nt, p->mr,
                         p->nr};
    const int explore = tk->inflight == 1 && !tk->idle && !tk->first;
    set_groups(p, fr_tune_groups(&ps->tune, fr_tune_key(v, (int)(sizeof v / sizeof v[0])),
                                 p->nbg, alt, explore));
}

/* Plan ps's team for nthreads, lay out and acquire its scratch, run its threads in one parallel
   region; where the runtime gives a smaller team (OMP_THREAD_LIMIT, a nested region), none of
   them runs: release and start over with that many threads. On FR_OK the pass still holds its
   memory (the caller releases it); on failure it holds nothing. */
static int run_pass(fr_pass *ps, int nthreads) {
    fr_load_ticket tk;
    fr_load_enter(&tk);
    const double flops = 2.0 * (double)ps->T * (double)ps->B * (double)(ps->flops_I + ps->H) *
                         (double)ps->G * (double)ps->H;
    for (;;) {
        int st = plan_team(&ps->plan, ps->mr, ps->nr, nthreads, ps->B, ps->flops_I, ps->H, ps->G,
                           ps->wbytes, ps->group_cut, ps->can_share, &tk, flops);
        if (st == FR_OK) tune_groups(ps, &tk);
        if (st == FR_OK && ps->plan.shared)
            atomic_fetch_add_explicit(&shared_passes, 1, memory_order_relaxed);
        if (st == FR_OK) st = acquire(&ps->mem, &ps->plan, ps->layout(ps));
        if (st != FR_OK) {
            fr_load_leave(&tk, 1, 0.0, 0, 0);
            return st;
        }
        if (ps->begin) ps->begin(ps);
        const int nt = ps->plan.nt;
        int short_team = 0;
        _Atomic int64_t solo_from = INT64_MAX;
        ps->inflight0 = tk.inflight;
        ps->solo_step = atomic_load_explicit(&forced_solo_step, memory_order_relaxed);
        ps->solo_from = ps->can_solo && nt > 1 && ps->plan.nbg == 1 && ps->mem.spin ? &solo_from
                                                                                   : NULL;
        /* measured where it costs nothing next to the work: a team's start-up and its threads'
           waits for a processor (team_load.h). `first` (no team has run yet) matters to a team
           only: a process whose passes all run on one thread stays `first` for good */
        static _Atomic unsigned passes;
        const int measure =
            flops > FR_MEASURE_ALL_FLOPS || tk.idle || (tk.first && nt > 1) ||
            ((nt > 1 || flops > FR_MEASURE_FLOPS) &&
             atomic_fetch_add_explicit(&passes, 1, memory_order_relaxed) % FR_MEASURE_EVERY == 0);
        if (measure) atomic_fetch_add_explicit(&measured_passes, 1, memory_order_relaxed);
        const int64_t t0 = measure || ps->tune.slot >= 0 ? fr_load_now_ns() : 0;
        _Atomic int64_t last_start = t0; /* when the team's last thread started */
        _Atomic int64_t waited = 0;      /* the threads' waits for a processor, ns */
        const fr_load_region rg = fr_load_region_open(nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            fr_load_cpus mask; /* a worker queued on the caller's processor moves (team_load.h) */
            const int moved = fr_load_region_enter(&rg, fr_omp_thread(), &mask);
            const int64_t ts = measure ? fr_load_now_ns() : 0;
            const int64_t w0 = measure ? fr_load_thread_wait_ns() : -1;
            int64_t seen = atomic_load_explicit(&last_start, memory_order_relaxed);
            while (ts > seen && !atomic_compare_exchange_weak_explicit(
                                    &last_start, &seen, ts, memory_order_relaxed,
                                    memory_order_relaxed)) {
            }
            if (team_size() != nt) { /* a smaller team than asked: redo with it below */
                if (fr_omp_thread() == 0) short_team = team_size();
            } else {
                ps->thread(ps, fr_omp_thread());
            }
            if (w0 >= 0) {
                const int64_t w1 = fr_load_thread_wait_ns();
                if (w1 > w0) atomic_fetch_add(&waited, w1 - w0);
            }
            if (moved) fr_load_restore_cpus(&mask);
        }
        if (short_team == 0) {
            if (ps->tune.slot >= 0) /* counted where nothing else ran beside it */
                fr_tune_report(&ps->tune, (double)(fr_load_now_ns() - t0) / (double)ps->T,
                               tk.inflight == 1 && fr_load_inflight() == 1 && !tk.idle &&
                                   !tk.first);
            fr_load_leave(&tk, nt, flops, atomic_load(&last_start) - t0,
                          measure ? atomic_load(&waited) : -1);
            return FR_OK;
        }
        release(&ps->mem);
        nthreads = short_team;
    }
}

int fr_rec_threads_for(int nthreads, double flops) { /* fork/join is not free */
    const int forced = fr_rec_team_threads_forced(); /* fr_set_team_threads: whatever the load */
    if (forced > 0) return forced < nthreads ? forced : nthreads;
    const double per_thread = 4.0e6;
    nthreads = fr_load_share(nthreads); /* the share the passes in flight leave */
    int nt = (int)(flops / per_thread);
    nt = nt < 1 ? 1 : (nt > nthreads ? nthreads : nt);
    /* a large region (about a millisecond or more): the processors other runnable threads leave
       free (the read costs microseconds; the recurrence's per-step regions stay below this) */
    return nt > 1 && flops >= FR_FREE_CHECK_FLOPS ? fr_load_free_threads(nt, 0) : nt;
}

#define FR_TEMPLATE "recurrence.c"
#include "template.h"

#else /* the driver of one dtype */

#define CELL SFX(fr_cell)
#define KERN SFX(fr_kernel)

/* Prefetch n elements at p into L2 (for writing when w). */
static FR_PF_INLINE void SFX(prefetch_span)(const REAL *p, int64_t n, int w) {
    fr_prefetch(p, n * (int64_t)sizeof(REAL), w);
}

/* Prefetch for writing the training cache and output lines a forward step stores for row r,
   hidden units [j0, j0+nv) (y may be NULL). Inference (no cache) measured no gain from it. */
static FR_PF_INLINE void SFX(prefetch_fw_row)(const CELL *cell, int64_t r, int64_t j0, int64_t nv,
                                        int64_t H, const REAL *y, const REAL *hprev_c,
                                        const REAL *gates_c, const REAL *aux0_c,
                                        const REAL *aux1_c) {
    const int64_t G = cell->G;
    if (y) SFX(prefetch_span)(y + r * H + j0, nv, 1);
    SFX(prefetch_span)(hprev_c + r * H + j0, nv, 1);
    for (int64_t g = 0; g < G; g++) SFX(prefetch_span)(gates_c + r * G * H + g * H + j0, nv, 1);
    if (cell->naux > 0) SFX(prefetch_span)(aux0_c + r * H + j0, nv, 1);
    if (cell->naux > 1) SFX(prefetch_span)(aux1_c + r * H + j0, nv, 1);
}

/* Prefetch the lines the backward pointwise reads (cache, dy) and writes (gate grads) for row r,
   hidden units [j0, j0+nv) (dy, dgh and dgx may be NULL). */
static FR_PF_INLINE void SFX(prefetch_bw_row)(const CELL *cell, int64_t r, int64_t j0, int64_t nv,
                                        int64_t H, const REAL *hprev_c, const REAL *gates_c,
                                        const REAL *aux0_c, const REAL *aux1_c, const REAL *dy,
                                        const REAL *dgh, const REAL *dgx) {
    const int64_t G = cell->G, GH = G * H;
    for (int64_t g = 0; g < G; g++) {
        SFX(prefetch_span)(gates_c + r * GH + g * H + j0, nv, 0);
        if (dgh) SFX(prefetch_span)(dgh + r * GH + g * H + j0, nv, 1);
        if (dgx) SFX(prefetch_span)(dgx + r * GH + g * H + j0, nv, 1);
    }
    if (cell->naux > 0) SFX(prefetch_span)(aux0_c + r * H + j0, nv, 0);
    if (cell->naux > 1) SFX(prefetch_span)(aux1_c + r * H + j0, nv, 0);
    if (cell->bw_hprev) SFX(prefetch_span)(hprev_c + r * H + j0, nv, 0);
    if (dy) SFX(prefetch_span)(dy + r * H + j0, nv, 0);
}

int64_t SFX(fr_rec_slice_size)(const CELL *cell, int64_t I, int64_t H, int64_t nr, int64_t njt) {
    return njt * cell->G * nr * (I + H + 1) + njt * nr;
}

void SFX(fr_rec_slice_view)(const CELL *cell, SFX(fr_slice) *sl, REAL *dst, int64_t I, int64_t H,
                            int64_t nr, int64_t u0, int64_t u1, int64_t njt) {
    const int64_t G = cell->G;
    sl->u0 = u0;
    sl->u1 = u1;
    sl->nj = u1 > u0 ? (u1 - u0 + nr - 1) / nr : 0;
    sl->nr = nr;
    sl->wih = dst;                        /* nj*G panels of I x nr */
    sl->whh = dst + njt * G * nr * I;     /* nj*G panels of H x nr */
    sl->bias = sl->whh + njt * G * nr * H; /* nj*G*nr folded input-side biases */
    sl->bhn = sl->bias + njt * G * nr;     /* nj*nr GRU n recurrent bias */
}

/* The bias folded into gate g's input projection at output o: b_ih + b_hh, the GRU's n part of
   b_hh aside (it stays with the recurrent product); either may be NULL. */
static inline REAL SFX(folded_bias)(const CELL *cell, const REAL *b_ih, const REAL *b_hh,
                                    int64_t g, int64_t o) {
    REAL v = 0;
    if (b_ih) v += b_ih[o];
    if (b_hh && !(cell->split_n && g == cell->G - 1)) v += b_hh[o];
    return v;
}

void SFX(fr_rec_pack_slice)(const CELL *cell, SFX(fr_slice) *sl, REAL *dst, const REAL *w_ih,
                            const REAL *w_hh, const REAL *b_ih, const REAL *b_hh, int64_t I,
                            int64_t H, int64_t nr, int64_t u0, int64_t u1, int64_t njt) {
    const int64_t G = cell->G;
    SFX(fr_rec_slice_view)(cell, sl, dst, I, H, nr, u0, u1, njt);
    const int64_t nj = sl->nj;
    if (nj <= 0) return;
    if (I > 0 && w_ih != NULL) SFX(fr_pack_b_units)(sl->wih, w_ih, I, 1, I, H, G, nr, u0, u1);
    SFX(fr_pack_b_units)(sl->whh, w_hh, H, 1, H, H, G, nr, u0, u1);
    for (int64_t jl = 0; jl < nj; jl++) {
        /* the block's columns as its panels hold them (fastrnn.h's fr_pack_b): gate g's nv
           units at g*nv, zero past G*nv */
        const int64_t j0 = u0 + jl * nr, nv = imin(nr, u1 - j0);
        REAL *bb = sl->bias + jl * G * nr;
        for (int64_t c = 0; c < G * nr; c++) bb[c] = 0;
        for (int64_t g = 0; g < G; g++) {
            for (int64_t u = 0; u < nv; u++)
                bb[g * nv + u] = SFX(folded_bias)(cell, b_ih, b_hh, g, g * H + j0 + u);
        }
        for (int64_t c = 0; c < nr; c++) {
            const int64_t j = j0 + c;
            sl->bhn[jl * nr + c] = (cell->split_n && b_hh && j < u1) ? b_hh[(G - 1) * H + j] : 0;
        }
    }
}

/* Identity input weights (w_ih NULL, I = G*H: A holds projected rows, gate g at +g*H): the
   slice's columns of A plus the folded bias, in the blocks' column order (fr_rec_pack_slice);
   padding columns stay unwritten (the pointwise kernels read a block's nv units only). Row q is
   A + q*G*H, or A + ids[q]*G*H when ids is not NULL (rows picked from a table). */
static void SFX(project_identity)(const CELL *cell, const SFX(fr_slice) *sl, const REAL *A,
                                  const int64_t *ids, int64_t rows, int64_t H, REAL *xp,
                                  int64_t ldxp) {
    const int64_t G = cell->G, nr = sl->nr;
    for (int64_t q = 0; q < rows; q++) {
        const REAL *a = A + (ids ? ids[q] : q) * G * H;
        if (ids && q + FR_PREFETCH_ROWS_AHEAD < rows) { /* table rows: load a later row's slice */
            const REAL *an = A + ids[q + FR_PREFETCH_ROWS_AHEAD] * G * H + sl->u0;
            const int64_t ncols = sl->u1 - sl->u0;
            for (int64_t g = 0; g < G; g++) SFX(prefetch_span)(an + g * H, ncols, 0);
        }
        for (int64_t jl = 0; jl < sl->nj; jl++) {
            const int64_t j0 = sl->u0 + jl * nr, nv = imin(nr, sl->u1 - j0);
            for (int64_t g = 0; g < G; g++) { /* gate g at g*nv (fr_rec_pack_slice) */
                const REAL *bp = sl->bias + jl * G * nr + g * nv;
                REAL *o = xp + q * ldxp + jl * G * nr + g * nv;
                for (int64_t c = 0; c < nv; c++) o[c] = a[g * H + j0 + c] + bp[c];
            }
        }
    }
}

/* o[i*ldo + c] = bp[c] for rows i < m, columns c < n (a projection of width 0). */
static void SFX(set_bias)(REAL *o, int64_t ldo, int64_t m, const REAL *bp, int64_t n) {
    for (int64_t i = 0; i < m; i++) memcpy(o + i * ldo, bp, (size_t)n * sizeof(REAL));
}

void SFX(fr_rec_project)(const CELL *cell, const KERN *kern, const SFX(fr_slice) *sl,
                         const REAL *A, int64_t rows, int64_t seg, int64_t lds, int64_t I, REAL *xp,
                         int64_t ldxp) {
    const int64_t G = cell->G, nr = sl->nr, mr = kern->mr;
    for (int64_t jl = 0; jl < sl->nj; jl++) {
        const int64_t nv = imin(nr, sl->u1 - (sl->u0 + jl * nr));
        for (int64_t q = 0; q < FR_BLOCK_PANELS(G, nv, nr); q++) {
            const int half = fr_rec_half_panel(G, nv, nr, q);
            const int64_t nw = half ? nr / 2 : nr; /* the columns computed */
            const REAL *panel = sl->wih + (jl * G + q) * I * nr;
            REAL *out = xp + (jl * G + q) * nr;
            const REAL *bp = sl->bias + (jl * G + q) * nr;
            for (int64_t s0 = 0; s0 < rows; s0 += seg) { /* segment s0 / seg, tiles within it */
                const REAL *As = A + s0 / seg * lds;
                const int64_t sr = imin(rows - s0, seg);
                REAL *os = out + s0 * ldxp;
                for (int64_t r0 = 0, m; r0 < sr; r0 += m) {
                    m = fr_rec_tile_rows(sr - r0, mr);
                    if (I > 0) /* the bias added in register (fastrnn.h's ukr_bias) */
                        (half ? kern->ukr_bias_half : kern->ukr_bias)(
                            m, I, As + r0 * I, I, panel, bp, os + r0 * ldxp, ldxp);
                    else
                        SFX(set_bias)(os + r0 * ldxp, ldxp, m, bp, nw);
                }
            }
        }
    }
}

void SFX(fr_rec_step)(const CELL *cell, const KERN *kern, const SFX(fr_slice) *sl, int64_t s,
                      int64_t Tn, int64_t B, int64_t rb0, int64_t rb1, int64_t H,
                      const int64_t *lengths, int reverse,
                      const REAL *hp, REAL *hn, int64_t ldh, REAL *c, const REAL *xp, int64_t ldxp,
                      int64_t qbase, REAL *y, REAL *cache, int stream, REAL *tile,
                      SFX(fr_point_fn) pw, int act) {
    const int64_t G = cell->G, GH = G * H, nr = sl->nr, mr = kern->mr, TB = Tn * B;
    REAL *hprev_c = cache, *gates_c = cache ? cache + TB * H : NULL;
    REAL *aux0_c = cache && cell->naux > 0 ? gates_c + TB * GH : NULL;
    REAL *aux1_c = cache && cell->naux > 1 ? aux0_c + TB * H : NULL;
    int64_t rows[FR_MAX_MR];
    SFX(fr_tile) tl = {.H = H, .ldxp = ldxp, .hh = tile, .ldhh = G * nr, .ldh = ldh, .ldc = ldh,
                       .rows = rows, .stream = stream};
    for (int64_t jl = 0; jl < sl->nj; jl++) {
        const int64_t j0 = sl->u0 + jl * nr, nv = imin(nr, sl->u1 - j0);
        const int64_t npan = FR_BLOCK_PANELS(G, nv, nr);
        const REAL *wpanel = sl->whh + jl * G * H * nr;
        tl.n = nv;
        tl.ts = nv; /* gate g at g*nv (fastrnn.h's fr_pack_b) */
        tl.bhn = sl->bhn + jl * nr;
        tl.gates = gates_c ? gates_c + j0 : NULL;
        tl.aux0 = aux0_c ? aux0_c + j0 : NULL;
        tl.aux1 = aux1_c ? aux1_c + j0 : NULL;
        for (int64_t b0 = rb0, m; b0 < rb1; b0 += m) {
            m = fr_rec_tile_rows(rb1 - b0, mr);
            for (int64_t q = 0; q < npan; q++) {
                const int half = fr_rec_half_panel(G, nv, nr, q);
                if (!half && q + 1 < npan && !fr_rec_half_panel(G, nv, nr, q + 1)) {
                    kern->ukr_pair(m, H, hp + b0 * ldh, ldh, wpanel + q * H * nr, tile + q * nr,
                                   G * nr, 0);
                    q++;
                } else {
                    (half ? kern->ukr_half : kern->ukr)(m, H, hp + b0 * ldh, ldh,
                                                        wpanel + q * H * nr, tile + q * nr,
                                                        G * nr, 0);
                }
            }
            for (int64_t i = 0; i < m; i++) {
                const int64_t b = b0 + i;
                const int64_t L = lengths ? lengths[b] : Tn;
                const int64_t r = fr_rec_time_of(s, L, reverse) * B + b;
                if (cache && s + 1 < Tn) /* the row's next step, one step ahead of its stores */
                    SFX(prefetch_fw_row)(cell, fr_rec_time_of(s + 1, L, reverse) * B + b, j0, nv,
                                         H, y, hprev_c, gates_c, aux0_c, aux1_c);
                if (s < L) {
                    rows[i] = r;
                    if (cache) memcpy(hprev_c + r * H + j0, hp + b * ldh + j0, (size_t)nv * sizeof(REAL));
                } else { /* the row's sequence has ended: its state passes through */
                    rows[i] = -1;
                    memcpy(hn + b * ldh + j0, hp + b * ldh + j0, (size_t)nv * sizeof(REAL));
                    if (cache) memset(hprev_c + r * H + j0, 0, (size_t)nv * sizeof(REAL));
                }
            }
            tl.m = m;
            tl.xp = xp + (qbase + b0) * ldxp + jl * G * nr;
            tl.hprev = hp + b0 * ldh + j0;
            tl.h = hn + b0 * ldh + j0;
            tl.c = cell->has_c ? c + b0 * ldh + j0 : NULL;
            pw(&tl, act);
        }
    }
    if (!y) return;
    /* The output rows from the new state, one span of the slice's units a row, after the
       pointwise (tl.y NULL): its stores in the tiles, 64 bytes at a time at the stride of y's
       rows, missed the caches and stalled the pointwise (measured: LSTM (50,20,70,130) inference
       0.91-0.95x the time of storing y there). Rows whose sequence has ended get zeros. */
    const int64_t u0 = sl->u0, nu = sl->u1 - sl->u0;
    for (int64_t b = rb0; b < rb1; b++) {
        const int64_t L = lengths ? lengths[b] : Tn;
        REAL *yr = y + (fr_rec_time_of(s, L, reverse) * B + b) * H + u0;
        if (s < L)
            memcpy(yr, hn + b * ldh + u0, (size_t)nu * sizeof(REAL));
        else
            memset(yr, 0, (size_t)nu * sizeof(REAL));
    }
}

/* ---- forward ------------------------------------------------------------------------------ */

/* The forward pass: its arguments and its layout (fw_layout). */
typedef struct {
    fr_pass ps;
    const CELL *cell;
    const KERN *kern;
    SFX(fr_point_fn) pw;
    REAL *y, *h_n, *c_n, *cache;
    const REAL *x, *w_ih, *w_hh, *b_ih, *b_hh;
    const int64_t *ids, *lengths;
    /* NULL, or the slice of every hidden unit packed once (fr_cell_prepack_*), which a thread
       whose role covers every unit (a team of one, batch groups of one thread) reads instead of
       packing its own */
    const REAL *packed;
    int64_t Tn, B, I, H;
    int act, reverse, identity, gather;
    int64_t Tc, bmax, njt, ldxp, slice, grows, per_thread, ldh, BL, CL, shared;
    int64_t chunk_at; /* shared rows: where the chunks' records start in the scratch (REALs) */
} SFX(fw_pass);

/* Scratch: shared (h ping-pong, c rows, gather rows) + per thread (packed slice, x-proj, tile),
   then in batch groups per thread its group's input rows of a chunk (fw_project_chunk's gx). */
static size_t SFX(fw_layout)(fr_pass *ps) {
    SFX(fw_pass) *f = (SFX(fw_pass) *)ps;
    const fr_team_plan *p = &ps->plan;
    const int64_t G = f->cell->G, B = f->B, H = f->H;
    f->bmax = (B + p->nbg - 1) / p->nbg; /* max rows per group */
    /* shared rows: a segment of steps is the unit a thread takes (FR_SHARE_SEG_ROWS) */
    f->Tc = ((p->shared ? FR_SHARE_SEG_ROWS : PROJ_ROWS) + f->bmax - 1) / f->bmax;
    if (f->Tc > f->Tn) f->Tc = f->Tn;
    f->njt = 0; /* the most blocks a thread's units take (fw_units) */
    for (int64_t hg = 0; hg < p->nhg; hg++) {
        int64_t u0, u1;
        fw_units(p, H, hg, &u0, &u1);
        const int64_t nj = (u1 - u0 + p->nr - 1) / p->nr;
        if (nj > f->njt) f->njt = nj;
    }
    f->ldxp = f->njt * G * p->nr;
    f->slice = SFX(fr_rec_slice_size)(f->cell, f->identity ? 0 : f->I, H, p->nr, f->njt);
    /* a group's rows of a chunk's steps, side by side (fw_project_chunk) */
    f->grows = p->nbg > 1 && !f->identity ? f->Tc * f->bmax * f->I : 0;
    f->per_thread = f->slice + f->Tc * f->bmax * f->ldxp + p->mr * G * p->nr;
    f->ldh = padded_ld(H, (int64_t)sizeof(REAL)); /* state rows */
    f->BL = B * f->ldh;
    /* the cell state's rows, padded as h's: threads update adjacent rows (groups) or
       adjacent units of a row (hidden split) every step, which in the caller's c_n rows of H
       could share a cache line */
    f->CL = f->cell->has_c ? f->BL : 0;
    f->shared = 2 * f->BL + f->CL + (f->gather ? f->Tc * B * f->I : 0);
    if (p->shared) { /* the chunks' records, on cache lines of their own */
        const int64_t line = 64 / (int64_t)sizeof(REAL);
        f->chunk_at = (f->shared + line - 1) / line * line;
        f->shared = f->chunk_at + p->nbg * (int64_t)(sizeof(fr_share_chunk) / sizeof(REAL));
    }
    return (size_t)(f->shared + p->nt * (f->per_thread + f->grows)) * sizeof(REAL);
}

/* The chunks' records of shared rows (fw_layout). */
static fr_share_chunk *SFX(fw_chunks)(const SFX(fw_pass) *f) {
    return (fr_share_chunk *)((REAL *)f->ps.mem.scratch + f->chunk_at);
}

/* The initial state into the first state buffer (and the cell state into its rows). */
static void SFX(fw_begin)(fr_pass *ps) {
    SFX(fw_pass) *f = (SFX(fw_pass) *)ps;
    REAL *hbuf = (REAL *)ps->mem.scratch, *cbuf = hbuf + 2 * f->BL;
    if (ps->plan.shared) {
        fr_share_chunk *c = SFX(fw_chunks)(f);
        for (int k = 0; k < ps->plan.nbg; k++) {
            atomic_init(&c[k].seg, 0);
            atomic_init(&c[k].busy, 0);
        }
    }
    for (int64_t b = 0; b < f->B; b++) {
        memcpy(hbuf + b * f->ldh, f->h_n + b * f->H, (size_t)f->H * sizeof(REAL));
        if (f->CL) memcpy(cbuf + b * f->ldh, f->c_n + b * f->H, (size_t)f->H * sizeof(REAL));
    }
}

/* The input projection of the chunk of steps [s0, s1): this thread's columns (slice sl) for its
   rows [rb0, rb1), into xp, nb = rb1 - rb0 rows per step in the order the steps' input rows are
   read (fw_thread's qbase finds them). Reversed sequences with lengths first gather the chunk's
   input rows into the shared gbuf (all threads take part). A batch group's rows (nb < B) are
   copied side by side into gx first (f->grows elements a thread, after every thread's own
   scratch, so that the rest keeps the layout a team without groups has), so that one GEMM
   of (s1 - s0) * nb rows projects them in tiles as tall as a group of one's, not a GEMM of nb
   rows per step (LSTM (100, 7, 50, 100) on 2 threads: two groups of 3 and 4 rows). A group
   whose rows fill tall tiles within each step (fw_in_place_rows) projects them where they are,
   with no copy. */
static void SFX(fw_project_chunk)(const SFX(fw_pass) *f, const SFX(fr_slice) *sl, int64_t s0,
                                  int64_t s1, int64_t rb0, int64_t rb1, REAL *xp,
                                  REAL *gx) {
    const CELL *cell = f->cell;
    const REAL *x = f->x;
    const int64_t *ids = f->ids, *lengths = f->lengths;
    const int64_t Tn = f->Tn, B = f->B, I = f->I, H = f->H, ldxp = f->ldxp;
    const int64_t rows = (s1 - s0) * B, nb = rb1 - rb0;
    const int reverse = f->reverse, gather = f->gather;
    REAL *gbuf = (REAL *)f->ps.mem.scratch + 2 * f->BL + f->CL;
    const REAL *A;
    const int64_t *ids_c = NULL; /* ids of the chunk's rows (rows of x otherwise) */
    if (gather) {
        /* gbuf is shared: without per-step barriers (batch groups) a thread could
           overwrite rows another group has not projected yet */
        if (f->ps.plan.nbg > 1) {
#pragma omp barrier
        }
#pragma omp for schedule(static)
        for (int64_t q = 0; q < rows; q++) {
            const int64_t s = s0 + q / B, b = q % B;
            const int64_t t = fr_rec_time_of(s, lengths[b], 1);
            const int64_t r = ids ? ids[t * B + b] : t * B + b;
            memcpy(gbuf + q * I, x + r * I, (size_t)I * sizeof(REAL));
        }
        A = gbuf;
    } else if (ids) {
        A = x;
        ids_c = ids + (reverse ? Tn - s1 : s0) * B;
    } else {
        A = reverse ? x + (Tn - s1) * B * I : x + s0 * B * I;
    }
    /* this thread's columns of the input projection for the chunk, its rows only
       (A holds B rows per step; xp nb) */
    if (nb != B && f->grows > 0 && !ids_c && fw_in_place_rows(nb, f->kern->mr)) {
        SFX(fr_rec_project)(cell, f->kern, sl, A + rb0 * I, (s1 - s0) * nb, nb, B * I, I, xp,
                            ldxp);
        return;
    }
    if (nb != B && f->grows > 0) {
        for (int64_t k = 0; k < s1 - s0; k++)
            for (int64_t i = 0; i < nb; i++) {
                const int64_t q = k * B + rb0 + i;
                memcpy(gx + (k * nb + i) * I, ids_c ? A + ids_c[q] * I : A + q * I,
                       (size_t)I * sizeof(REAL));
            }
        SFX(fr_rec_project)(cell, f->kern, sl, gx, (s1 - s0) * nb, (s1 - s0) * nb, 0, I, xp,
                            ldxp);
        return;
    }
    for (int64_t k = 0; k < (nb == B ? 1 : s1 - s0); k++) {
        const int64_t rk = nb == B ? rows : nb;
        const REAL *Ak = ids_c ? A : A + (k * B + rb0) * I;
        const int64_t *idk = ids_c ? ids_c + k * B + rb0 : NULL;
        if (f->identity)
            SFX(project_identity)(cell, sl, Ak, idk, rk, H, xp + k * nb * ldxp, ldxp);
        else
            SFX(fr_rec_project)(cell, f->kern, sl, Ak, rk, rk, 0, I, xp + k * nb * ldxp, ldxp);
    }
}

/* Role r's packed slice (packed at the pass's start by thread r) and input projection rows. */
static void SFX(fw_role)(const SFX(fw_pass) *f, int r, SFX(fr_slice) *sl, REAL **xp) {
    const fr_team_plan *p = &f->ps.plan;
    int64_t u0, u1;
    fw_units(p, f->H, r % p->nhg, &u0, &u1);
    REAL *mine = (REAL *)f->ps.mem.scratch + f->shared + r * f->per_thread;
    SFX(fr_rec_slice_view)(f->cell, sl, mine, f->identity ? 0 : f->I, f->H, p->nr, u0, u1, f->njt);
    *xp = mine + f->slice;
}

/* Thread tid of a forward with shared rows (its slice sl of every unit, its projection rows xp
   and group input rows gx, its tile; stream: the cache's stores non-temporal): chunks of rows taken in turn, a segment of steps (a chunk
   of input projection and its steps) at a time, until every chunk is done; the final state of a
   chunk's rows by the thread that runs its last segment. */
static void SFX(fw_run_shared)(const SFX(fw_pass) *f, int tid, const SFX(fr_slice) *sl, REAL *xp,
                               REAL *gx, REAL *tile, int stream) {
    const fr_pass *ps = &f->ps;
    const fr_team_plan *p = &ps->plan;
    const CELL *cell = f->cell;
    const int64_t Tn = f->Tn, B = f->B, H = f->H, Tc = f->Tc, ldh = f->ldh, BL = f->BL;
    REAL *hbuf = (REAL *)ps->mem.scratch, *cbuf = f->CL ? hbuf + 2 * BL : NULL;
    fr_share_chunk *chunks = SFX(fw_chunks)(f);
    const int64_t nseg = (Tn + Tc - 1) / Tc;
    int64_t seg, mine = 0, busy = 0, wait = 0, t_free = fr_load_now_ns();
    for (int k; (k = share_take(chunks, p->nbg, nseg, tid, &seg)) >= 0;) {
        const int64_t t_take = fr_load_now_ns();
        wait += t_take - t_free;
        int64_t rb0, rb1;
        my_rows(p, B, k, &rb0, &rb1);
        const int64_t nb = rb1 - rb0, s0 = seg * Tc, s1 = imin(Tn, s0 + Tc);
        SFX(fw_project_chunk)(f, sl, s0, s1, rb0, rb1, xp, gx);
        for (int64_t s = s0; s < s1; s++) {
            const int64_t qbase = (f->reverse ? (s1 - 1 - s) * nb : (s - s0) * nb) - rb0;
            SFX(fr_rec_step)(cell, f->kern, sl, s, Tn, B, rb0, rb1, H, f->lengths, f->reverse,
                             hbuf + (s & 1) * BL, hbuf + ((s + 1) & 1) * BL, ldh, cbuf, xp,
                             f->ldxp, qbase, f->y, f->cache, stream, tile, f->pw, f->act);
        }
        if (s1 == Tn) { /* the chunk's final state */
            const REAL *hf = hbuf + (Tn & 1) * BL;
            for (int64_t b = rb0; b < rb1; b++) {
                memcpy(f->h_n + b * H, hf + b * ldh, (size_t)H * sizeof(REAL));
                if (cbuf) memcpy(f->c_n + b * H, cbuf + b * ldh, (size_t)H * sizeof(REAL));
            }
        }
        fr_stream_fence(); /* its cache stores, before another thread may take the chunk */
        share_release(chunks, k, seg);
        t_free = fr_load_now_ns();
        busy += t_free - t_take;
        mine++;
    }
    /* whether one thread would have done better (the load rules stop sharing for a while) */
    fr_load_share_done(mine, p->nbg * nseg, busy, wait + fr_load_now_ns() - t_free);
}

/* Thread tid of the forward: its weight slice, then chunks of input projection and steps; where
   the team goes on alone (go_solo_check), thread 0 runs every role from then on. With shared
   rows, fw_run_shared after the slice. */
static void SFX(fw_thread)(const fr_pass *ps, int tid) {
    const SFX(fw_pass) *f = (const SFX(fw_pass) *)ps;
    const fr_team_plan *p = &ps->plan;
    const CELL *cell = f->cell;
    const KERN *kern = f->kern;
    const SFX(fr_point_fn) pw = f->pw;
    REAL *y = f->y, *h_n = f->h_n, *c_n = f->c_n, *cache = f->cache;
    const int64_t *lengths = f->lengths;
    const int64_t Tn = f->Tn, B = f->B, I = f->I, H = f->H, nr = p->nr;
    const int stream = cache && fr_rec_stream_cache(cell->G, cell->naux, Tn, B, H,
                                                    (int64_t)sizeof(REAL));
    const int64_t Tc = f->Tc, bmax = f->bmax, ldxp = f->ldxp, ldh = f->ldh, BL = f->BL;
    const int act = f->act, reverse = f->reverse, identity = f->identity, gather = f->gather;
    REAL *scratch = (REAL *)ps->mem.scratch;
    REAL *hbuf = scratch, *cbuf = f->CL ? scratch + 2 * BL : NULL;
    const int64_t k_end = Tn + 1; /* past every step's barrier number */

    const int bg = tid / p->nhg, hg = tid % p->nhg;
    int64_t rb0, rb1, u0, u1;
    my_rows(p, B, bg, &rb0, &rb1);
    fw_units(p, H, hg, &u0, &u1);
    const int64_t nb = rb1 - rb0;
    REAL *mine = scratch + f->shared + tid * f->per_thread;
    REAL *tile = mine + f->slice + Tc * bmax * ldxp; /* mr x G*nr */
    REAL *gx = scratch + f->shared + p->nt * f->per_thread + tid * f->grows;
    SFX(fr_slice) own; /* this thread's role: its packed slice and projection rows */
    if (f->packed && p->nhg == 1) { /* every unit: the weights packed once (u0 = 0, u1 = H) */
        SFX(fr_rec_slice_view)(cell, &own, (REAL *)f->packed, identity ? 0 : I, H, nr, u0, u1,
                               f->njt);
        atomic_fetch_add_explicit(&prepacked_reads, 1, memory_order_relaxed);
    } else {
        SFX(fr_rec_pack_slice)(cell, &own, mine, f->w_ih, f->w_hh, f->b_ih, f->b_hh,
                               identity ? 0 : I, H, nr, u0, u1, f->njt);
    }
    REAL *own_xp = mine + f->slice;
    if (p->shared) {
        SFX(fw_run_shared)(f, tid, &own, own_xp, gx, tile, stream);
        return;
    }
    int r0 = tid, r1 = tid + 1; /* the roles this thread runs */
    for (int64_t s0 = 0; s0 < Tn; s0 += Tc) {
        const int64_t s1 = imin(Tn, s0 + Tc);
        for (int r = r0; r < r1; r++) {
            SFX(fr_slice) sl = own;
            REAL *xp = own_xp;
            if (r != tid) SFX(fw_role)(f, r, &sl, &xp);
            SFX(fw_project_chunk)(f, &sl, s0, s1, rb0, rb1, xp, gx);
        }
        for (int64_t s = s0; s < s1; s++) {
            /* xp row of (s, b) is qbase + b */
            const int64_t qbase =
                ((reverse && !gather) ? (s1 - 1 - s) * nb : (s - s0) * nb) - rb0;
            for (int r = r0; r < r1; r++) {
                SFX(fr_slice) sl = own;
                REAL *xp = own_xp;
                if (r != tid) SFX(fw_role)(f, r, &sl, &xp);
                SFX(fr_rec_step)(cell, kern, &sl, s, Tn, B, rb0, rb1, H, lengths, reverse,
                                 hbuf + (s & 1) * BL, hbuf + ((s + 1) & 1) * BL, ldh, cbuf, xp,
                                 ldxp, qbase, y, cache, stream, tile, pw, act);
            }
            if (r1 - r0 == 1 && p->nt > 1) { /* in a team */
                if (tid == 0) go_solo_check(ps, s + 1);
                group_barrier(&ps->mem, p, bg, hg, s + 1);
                if (gone_solo(ps, s + 1)) {
                    if (tid != 0) {
                        fr_stream_fence(); /* its cache stores, before it parks */
                        park(ps, k_end);
                        return;
                    }
                    r0 = 0;
                    r1 = p->nt;
                }
            }
        }
    }
    /* final state: the rows and columns of this thread's roles */
    const REAL *hf = hbuf + (Tn & 1) * BL;
    for (int r = r0; r < r1; r++) {
        fw_units(p, H, r % p->nhg, &u0, &u1);
        for (int64_t b = rb0; b < rb1; b++) {
            memcpy(h_n + b * H + u0, hf + b * ldh + u0, (size_t)(u1 - u0) * sizeof(REAL));
            if (cbuf)
                memcpy(c_n + b * H + u0, cbuf + b * ldh + u0, (size_t)(u1 - u0) * sizeof(REAL));
        }
    }
    fr_stream_fence(); /* the cache's non-temporal stores (fr_tile.stream), before the pass ends */
    if (r1 - r0 > 1) unpark(ps, k_end);
}

/* ---- forward of a length-1 sequence on the weights as given ------------------------------- */

/* Units [u, u + n) of every gate for rows b < B, in the pointwise tile's layout (gate g's unit j
   at g*n + j): xp = x_b . W_ih[o] + folded_bias (as fr_rec_pack_slice folds it; identity input:
   x_b[o] + folded_bias), hh = h0_b . W_hh[o] (0 without h0),
   o = g*H + u + j; the dot products by the path's dots kernel (dots.h), FR_DOTS_MAX_B rows at a
   time. */
static void SFX(step1_gates)(const CELL *cell, SFX(fr_dots_fn) dots, const REAL *x,
                             const REAL *h0, const REAL *w_ih, const REAL *w_hh, const REAL *b_ih,
                             const REAL *b_hh, int64_t B, int64_t I, int64_t H, int64_t u,
                             int64_t n, REAL *xp, REAL *hh) {
    const int64_t G = cell->G, ld = G * n;
    for (int64_t g = 0; g < G; g++) {
        const int64_t o0 = g * H + u;
        if (w_ih && I > 0) {
            for (int64_t b0 = 0; b0 < B; b0 += FR_DOTS_MAX_B)
                dots(w_ih + o0 * I, I, n, x + b0 * I, I, imin(FR_DOTS_MAX_B, B - b0), I,
                     xp + b0 * ld + g * n, ld);
        } else {
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < n; j++)
                    xp[b * ld + g * n + j] = I > 0 ? x[b * I + o0 + j] : (REAL)0;
        }
        if (h0) {
            for (int64_t b0 = 0; b0 < B; b0 += FR_DOTS_MAX_B)
                dots(w_hh + o0 * H, H, n, h0 + b0 * H, H, imin(FR_DOTS_MAX_B, B - b0), H,
                     hh + b0 * ld + g * n, ld);
        } else {
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < n; j++) hh[b * ld + g * n + j] = 0;
        }
        for (int64_t j = 0; j < n; j++) {
            const REAL bias = SFX(folded_bias)(cell, b_ih, b_hh, g, o0 + j);
            for (int64_t b = 0; b < B; b++) xp[b * ld + g * n + j] += bias;
        }
    }
}

/* fr_rec_forward of one step (Tn == 1) for B <= STEP1_MAX_B rows, h_n and c_n already holding
   the initial state; the cache (NULL in inference) is written as the sequence driver writes it.
   The hidden units split between the threads in tiles of STEP1_UNITS, each thread taking the
   gates and the pointwise of its own units (no barrier: a step's units are independent). Bit
   for bit the same for any team. */
static int SFX(step1_forward)(const CELL *cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache,
                              const REAL *x, const REAL *h0, const REAL *w_ih, const REAL *w_hh,
                              const REAL *b_ih, const REAL *b_hh, const int64_t *lengths,
                              int64_t B, int64_t I, int64_t H, int act, int nthreads) {
    static const REAL zeros[STEP1_UNITS];
    const int64_t G = cell->G, ntiles = (H + STEP1_UNITS - 1) / STEP1_UNITS;
    const int64_t flops_I = w_ih ? I : 0;
    /* the cache of a length-1 sequence (fr_rec_step's layout with T*B = B rows) */
    REAL *hprev_c = cache, *gates_c = cache ? cache + B * H : NULL;
    REAL *aux0_c = cache && cell->naux > 0 ? gates_c + B * G * H : NULL;
    REAL *aux1_c = cache && cell->naux > 1 ? aux0_c + B * H : NULL;
    const double flops = 2.0 * (double)B * (double)(flops_I + H) * (double)G * (double)H;
    const SFX(fr_point_fn) pw = cell->point_for(fr_get_arch());
    const SFX(fr_dots_fn) dots = SFX(fr_dots_for)(fr_get_arch());
    atomic_fetch_add_explicit(&step1_passes, 1, memory_order_relaxed);
    fr_load_ticket tk;
    fr_load_enter(&tk);
    /* a step under STEP1_TEAM_FLOPS runs on the calling thread */
    int shared; /* (one step has no rows to share) */
    int nt = flops < STEP1_TEAM_FLOPS && atomic_load_explicit(&forced_threads,
                                                               memory_order_relaxed) == 0
                 ? 1
                 : pick_threads(nthreads, ntiles, B, flops_I, H, G, &tk, flops, &shared);
    /* a step is tens of microseconds: beside other callers, a team's fork and join, and its
       workers spinning afterwards on processors the others need, cost more than it saves
       ((1,3,200,300), 2 Python threads calling at once: 0.42x the serial throughput with
       teams, 1.5x with one thread each) */
    if (nt > 1 && atomic_load_explicit(&forced_threads, memory_order_relaxed) == 0 &&
        fr_load_shared_lately(&tk))
        nt = 1;
    if (nt > 1) atomic_fetch_add_explicit(&step1_team_passes, 1, memory_order_relaxed);
    const fr_load_region rg = fr_load_region_open(nt);
    const REAL *hp = h0 ? h0 : h_n; /* without h0, h_n holds zeros */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        fr_load_cpus mask; /* a worker queued on the caller's processor moves (team_load.h) */
        const int moved = fr_load_region_enter(&rg, fr_omp_thread(), &mask);
        const int64_t me = fr_omp_thread(), size = team_size();
        REAL xp[STEP1_MAX_B * 4 * STEP1_UNITS], hh[STEP1_MAX_B * 4 * STEP1_UNITS];
        int64_t rows[STEP1_MAX_B];
        for (int64_t b = 0; b < B; b++) rows[b] = lengths && lengths[b] < 1 ? -1 : b;
        for (int64_t q = ntiles * me / size; q < ntiles * (me + 1) / size; q++) {
            const int64_t u = q * STEP1_UNITS, n = imin(STEP1_UNITS, H - u);
            SFX(step1_gates)(cell, dots, x, h0, w_ih, w_hh, b_ih, b_hh, B, I, H, u, n, xp, hh);
            for (int64_t b = 0; b < B && cache; b++) /* before the pointwise writes h_n */
                if (rows[b] < 0)
                    memset(hprev_c + b * H + u, 0, (size_t)n * sizeof(REAL));
                else
                    memcpy(hprev_c + b * H + u, hp + b * H + u, (size_t)n * sizeof(REAL));
            const SFX(fr_tile) tl = {
                .m = B, .n = n, .ts = n, .H = H, .xp = xp, .ldxp = G * n, .hh = hh,
                .ldhh = G * n, .bhn = cell->split_n && b_hh ? b_hh + (G - 1) * H + u : zeros,
                /* hp = h_n: the pointwise reads this thread's units only, before writing them */
                .hprev = hp + u, .h = h_n + u, .ldh = H,
                .c = cell->has_c ? c_n + u : NULL, .ldc = H, .rows = rows, .y = y + u,
                .gates = FR_OPT(gates_c, u), .aux0 = FR_OPT(aux0_c, u),
                .aux1 = FR_OPT(aux1_c, u)};
            pw(&tl, act);
            for (int64_t b = 0; b < B; b++) /* an empty sequence: its state passes through */
                if (rows[b] < 0) memset(y + b * H + u, 0, (size_t)n * sizeof(REAL));
        }
        if (moved) fr_load_restore_cpus(&mask);
    }
    fr_load_leave(&tk, nt, flops, 0, -1);
    return FR_OK;
}

int SFX(fr_rec_forward)(const CELL *cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache, const REAL *x,
                        const int64_t *ids, int64_t V, const REAL *h0, const REAL *c0,
                        const REAL *w_ih, const REAL *w_hh, const REAL *b_ih, const REAL *b_hh,
                        const int64_t *lengths, int64_t Tn, int64_t B, int64_t I, int64_t H,
                        int act, int reverse, int nthreads, const REAL *packed) {
    if (Tn < 0 || B < 0 || I < 0 || H < 1 || nthreads < 1 || y == NULL || h_n == NULL ||
        (cell->has_c && c_n == NULL) || (Tn > 0 && B > 0 && I > 0 && x == NULL) || w_hh == NULL ||
        (I > 0 && w_ih == NULL && I != cell->G * H) ||
        (cache != NULL && fr_rec_cache_size(cell->G, cell->naux, Tn, B, H) < 0) ||
        (ids != NULL && (w_ih != NULL || I != cell->G * H)))
        return FR_ERR_ARG;
    if (ids != NULL)
        for (int64_t r = 0; r < Tn * B; r++)
            if (ids[r] < 0 || ids[r] >= V) return FR_ERR_ARG;
    const int64_t G = cell->G, BH = B * H;
    const int identity = I > 0 && w_ih == NULL; /* x holds the input projection already */
    /* initial state */
    for (int64_t k = 0; k < BH; k++) h_n[k] = h0 ? h0[k] : (REAL)0;
    if (cell->has_c)
        for (int64_t k = 0; k < BH; k++) c_n[k] = c0 ? c0[k] : (REAL)0;
    if (Tn == 0 || B == 0) return FR_OK;
    if (Tn == 1 && ids == NULL && B <= STEP1_MAX_B && cell->G <= 4)
        return SFX(step1_forward)(cell, y, h_n, c_n, cache, x, h0, w_ih, w_hh, b_ih, b_hh, lengths,
                                  B, I, H, act, nthreads);

    const KERN *kern = SFX(fr_kernel_get)();
    SFX(fw_pass) f = {
        .ps = {.mr = kern->mr, .nr = kern->nr, .T = Tn, .B = B, .flops_I = I, .H = H, .G = G,
               /* W_hh: a step's reads (W_ih is read once per chunk of steps) */
               .wbytes = G * H * H * (int64_t)sizeof(REAL),
               /* every thread of a group packs all of W_ih and W_hh, each call */
               .group_cut = 10,
               /* not with gathered reversed rows: every thread takes part in the gather */
               .can_solo = !(reverse && lengths != NULL),
               .can_share = !(reverse && lengths != NULL),
               .layout = SFX(fw_layout), .begin = SFX(fw_begin), .thread = SFX(fw_thread)},
        .cell = cell, .kern = kern, .pw = cell->point_for(fr_get_arch()),
        .y = y, .h_n = h_n, .c_n = c_n, .cache = cache,
        .x = x, .w_ih = w_ih, .w_hh = w_hh, .b_ih = b_ih, .b_hh = b_hh,
        .ids = ids, .lengths = lengths, .packed = packed, .Tn = Tn, .B = B, .I = I, .H = H,
        .act = act, .reverse = reverse, .identity = identity, .gather = reverse && lengths != NULL,
    };
    const int st = run_pass(&f.ps, nthreads);
    if (st == FR_OK) release(&f.ps.mem);
    return st;
}

/* ---- backward ----------------------------------------------------------------------------- */

/* The backward pass: its arguments and its layout (bw_layout). */
typedef struct {
    fr_pass ps;
    const CELL *cell;
    const KERN *kern;
    REAL *dx, *dh0, *dc0;
    const REAL *cache, *w_hh, *dy;
    const int64_t *lengths;
    int64_t Tn, B, H;
    int act, reverse, identity;
    int64_t nacc; /* bias-gradient sums: 0 (no bias), 1, or 2 (dgh and GRU's dgx) */
    int64_t ldd, per_thread, own_dgx, shared;
    const lp_bw *lpbw; /* a bf16 forward's backward: dh_{t-1} on bf16 operands (lowp.h) */
    /* a length-1 backward of at most STEP1_MAX_B rows: dh_{t-1} by the transposed dots kernel
       on W_hh as given (no panels packed), as the forward's step1 */
    SFX(fr_dots_t_fn) dots_t;
    /* NULL, or the gate gradients rounded to bf16 as they are written ((T*B + LP_MR) x G*H: the
       bf16 GEMMs' A rows; see fr_rec_backward), by span */
    uint16_t *dgb;
    lp_span_fn span;
    /* the gate gradients go to the step rows only, not to (T*B, G*H) rows: where dgb (their bf16
       copy) serves every later use (not with an identity W_ih, whose dx they are) */
    int step_only;
} SFX(bw_pass);

/* Scratch: shared (the (T*B, G*H) pre-activation grads dx does not take, the ping-pong step rows)
   + per thread (packed W_hh panels, a tile, the bias-gradient sums). */
static size_t SFX(bw_layout)(fr_pass *ps) {
    SFX(bw_pass) *w = (SFX(bw_pass) *)ps;
    const fr_team_plan *p = &ps->plan;
    const int64_t GH = w->cell->G * w->H, TB = w->Tn * w->B;
    const int split = w->cell->split_n;
    w->ldd = padded_ld(GH, (int64_t)sizeof(REAL)); /* step rows */
    w->per_thread = (w->dots_t ? 0 : p->njt * GH * p->nr) + p->mr * 2 * p->nr; /* + tile */
    /* the (T*B, G*H) input pre-activation grads go straight to dx when W_ih is the identity */
    w->own_dgx = w->step_only ? 0 : w->identity ? (split ? 1 : 0) : (split ? 2 : 1);
    /* bias gradients: per batch row, the sums over its steps of its gate gradients (B x nacc*GH,
       bw_acc), added up over the rows after the loop (bias_grads) */
    w->shared = TB * GH * w->own_dgx + 2 * w->B * w->ldd + w->B * w->nacc * GH;
    return (size_t)(w->shared + p->nt * w->per_thread) * sizeof(REAL);
}

/* (T*B, G*H) grads of the recurrent pre-activations; NULL where the pass keeps none (step_only). */
static REAL *SFX(bw_dgh_all)(const SFX(bw_pass) *w) {
    if (w->step_only) return NULL;
    return (w->identity && !w->cell->split_n) ? w->dx : (REAL *)w->ps.mem.scratch;
}

/* (T*B, G*H) grads of the input pre-activations (the same as dgh_all for all cells but GRU). */
static REAL *SFX(bw_dgx_all)(const SFX(bw_pass) *w) {
    if (w->identity) return w->dx;
    return w->cell->split_n ? (REAL *)w->ps.mem.scratch + w->Tn * w->B * w->cell->G * w->H
                            : SFX(bw_dgh_all)(w);
}

/* The bias-gradient sums per batch row (B rows of nacc*G*H: dgh's, then GRU's dgx's), at the end
   of the shared scratch. */
static REAL *SFX(bw_acc)(const SFX(bw_pass) *w) {
    return (REAL *)w->ps.mem.scratch + w->shared - w->B * w->nacc * w->cell->G * w->H;
}
/* acc[(b0 + i)*lda + g*H + j] += d[q*ld + g*H + j] for the tile's rows i (q: their time rows r
   in the (T*B, G*H) rows, ld = G*H, or with step, i itself in the step rows, ld = ldd; batch rows
   b0 + i), gates g < G and units j < t->n (d and acc at the tile's first unit): each batch row
   sums its own steps, in step order, by whichever thread owns it, so the sums do not depend on
   the team. */
FR_CLONES static void SFX(sum_rows)(const SFX(fr_bw_tile) *t, int64_t G, const REAL *d, int64_t ld,
                                    int step, REAL *acc, int64_t b0, int64_t lda) {
    const int64_t n = t->n, H = t->H;
    FR_TILE_ROWS(t, i, r) {
        for (int64_t g = 0; g < G; g++) {
            const REAL *restrict src = d + (step ? i : r) * ld + g * H;
            REAL *restrict dst = acc + (b0 + i) * lda + g * H;
            for (int64_t j = 0; j < n; j++) dst[j] += src[j];
        }
    }
}

/* Zero the per-row bias-gradient sums (the pass's begin). */
static void SFX(bw_begin)(fr_pass *ps) {
    const SFX(bw_pass) *w = (const SFX(bw_pass) *)ps;
    if (w->nacc > 0)
        memset(SFX(bw_acc)(w), 0, (size_t)(w->B * w->nacc * w->cell->G * w->H) * sizeof(REAL));
}

/* db_hh (and db_ih) += the per-row sums of the gate gradients (sum_rows) added over the batch
   rows in order: the same sums whatever team ran the pass. */
static void SFX(bias_grads)(const SFX(bw_pass) *w, REAL *db_ih, REAL *db_hh) {
    const int64_t GH = w->cell->G * w->H, lda = w->nacc * GH;
    const int split = w->cell->split_n;
    const REAL *acc = SFX(bw_acc)(w);
    for (int64_t b = 1; b < w->B; b++) { /* into row 0 */
        REAL *restrict dst = (REAL *)acc;
        const REAL *restrict src = acc + b * lda;
        for (int64_t c = 0; c < lda; c++) dst[c] += src[c];
    }
    for (int64_t c = 0; c < GH; c++) {
        if (db_hh) db_hh[c] += acc[c];
        if (db_ih) db_ih[c] += acc[split ? GH + c : c];
    }
}

/* dh_prev[:, own columns] += dstep (B x G*H) * W_hh[:, own columns] (whh_p: the thread's nj
   packed panels of (G*H) x nr, hidden blocks from jb0; tile: mr x 2*nr of its scratch), for the
   rows [rb0, rb1) active at step s only: an inactive row's state passed through unchanged, and its
   zero dstep row times a non-finite W_hh would otherwise turn its gradient into NaN. Two whole
   blocks side by side take the microkernel's pair form (fewer rows than a tile keep more FMA
   chains in flight that way; the same sums). */
static void SFX(bw_dh_prev)(const KERN *kern, REAL *dh, const REAL *dstep, int64_t ldd,
                            const REAL *whh_p, REAL *tile, const int64_t *lengths, int64_t s,
                            int64_t rb0, int64_t rb1, int64_t jb0, int64_t nj, int64_t H,
                            int64_t GH) {
    const int64_t mr = kern->mr, nr = kern->nr, ldt = 2 * nr;
    for (int64_t jl = 0, nb; jl < nj; jl += nb) {
        const int64_t j0 = (jb0 + jl) * nr;
        nb = jl + 1 < nj && j0 + 2 * nr <= H ? 2 : 1; /* blocks this pass */
        const int64_t nv = imin(nb * nr, H - j0);
        const int half = nb == 1 && fr_rec_half_block(nv, nr);
        for (int64_t b0 = rb0, m; b0 < rb1; b0 += m) {
            m = fr_rec_tile_rows(rb1 - b0, mr);
            if (nb == 2)
                kern->ukr_pair(m, GH, dstep + b0 * ldd, ldd, whh_p + jl * GH * nr, tile, ldt, 0);
            else
                (half ? kern->ukr_half : kern->ukr)(m, GH, dstep + b0 * ldd, ldd,
                                                    whh_p + jl * GH * nr, tile, ldt, 0);
            for (int64_t i = 0; i < m; i++) {
                if (lengths && s >= lengths[b0 + i]) continue;
                REAL *d = dh + (b0 + i) * H + j0;
                for (int64_t c = 0; c < nv; c++) d[c] += tile[i * ldt + c];
            }
        }
    }
}

/* Role r's pointwise at step s: the gate gradients of its hidden blocks for its rows (into
   dstep and the (T*B, G*H) arrays), their per-row sums and bf16 copy. */
static void SFX(bw_point)(const SFX(bw_pass) *w, int r, int64_t s, REAL *dstep) {
    const fr_pass *ps = &w->ps;
    const fr_team_plan *p = &ps->plan;
    const CELL *cell = w->cell;
    const REAL *dy = w->dy;
    const int64_t *lengths = w->lengths;
    const int64_t Tn = w->Tn, B = w->B, H = w->H, G = cell->G, GH = G * H, TB = Tn * B;
    const int64_t nr = p->nr, ldd = w->ldd, nacc = w->nacc;
    const int act = w->act, reverse = w->reverse, split = cell->split_n;
    REAL *dgh_all = SFX(bw_dgh_all)(w), *dgx_all = SFX(bw_dgx_all)(w);
    const REAL *hprev_c = w->cache, *gates_c = w->cache + TB * H;
    const REAL *aux0_c = cell->naux > 0 ? gates_c + TB * GH : NULL;
    const REAL *aux1_c = cell->naux > 1 ? aux0_c + TB * H : NULL;
    REAL *dh = w->dh0, *dc = cell->has_c ? w->dc0 : NULL;
    REAL *acc = SFX(bw_acc)(w);
    int64_t rb0, rb1, jb0, nj;
    my_rows(p, B, r / p->nhg, &rb0, &rb1);
    my_blocks(p, r % p->nhg, &jb0, &nj);
    int64_t rows[FR_BW_ROWS];
    SFX(fr_bw_tile) bt = {.H = H, .rows = rows, .ldd = ldd};
    for (int64_t jl = 0; jl < nj; jl++) {
        const int64_t j0 = (jb0 + jl) * nr, nv = imin(nr, H - j0);
        bt.n = nv;
        bt.gates = gates_c + j0;
        bt.aux0 = aux0_c ? aux0_c + j0 : NULL;
        bt.aux1 = aux1_c ? aux1_c + j0 : NULL;
        bt.hprev = hprev_c + j0;
        bt.dy = dy ? dy + j0 : NULL;
        bt.dgh = dgh_all ? dgh_all + j0 : NULL;
        bt.dgx = split ? dgx_all + j0 : NULL;
        for (int64_t b0 = rb0; b0 < rb1; b0 += FR_BW_ROWS) {
            const int64_t m = imin(FR_BW_ROWS, rb1 - b0);
            for (int64_t i = 0; i < m; i++) {
                const int64_t b = b0 + i;
                const int64_t L = lengths ? lengths[b] : Tn;
                const int64_t rr = fr_rec_time_of(s, L, reverse) * B + b;
                if (s > 0) /* the row's next step, one step ahead of use */
                    SFX(prefetch_bw_row)(cell, fr_rec_time_of(s - 1, L, reverse) * B + b, j0, nv,
                                         H, hprev_c, gates_c, aux0_c, aux1_c, dy, dgh_all,
                                         split ? dgx_all : NULL);
                rows[i] = s < L ? rr : -1;
                if (s >= L) /* past the row's end: zero gradients */
                    for (int64_t g = 0; g < G; g++) {
                        if (dgh_all)
                            memset(dgh_all + rr * GH + g * H + j0, 0, (size_t)nv * sizeof(REAL));
                        memset(dstep + b * ldd + g * H + j0, 0, (size_t)nv * sizeof(REAL));
                        if (split) memset(dgx_all + rr * GH + g * H + j0, 0, (size_t)nv * sizeof(REAL));
                    }
            }
            bt.m = m;
            bt.dh = dh + b0 * H + j0;
            bt.dc = dc ? dc + b0 * H + j0 : NULL;
            bt.dgs = dstep + b0 * ldd + j0;
            cell->bw(&bt, act);
            if (nacc > 0) { /* while the rows just written are in L1 */
                if (bt.dgh)
                    SFX(sum_rows)(&bt, G, bt.dgh, GH, 0, acc + j0, b0, nacc * GH);
                else
                    SFX(sum_rows)(&bt, G, bt.dgs, ldd, 1, acc + j0, b0, nacc * GH);
                if (split) SFX(sum_rows)(&bt, G, bt.dgx, GH, 0, acc + GH + j0, b0, nacc * GH);
            }
#if FR_F32
            if (w->dgb) /* their bf16 copy, also from L1 (ended rows: zeros) */
                for (int64_t i = 0; i < m; i++) {
                    const int64_t b = b0 + i;
                    const int64_t rr = fr_rec_time_of(s, lengths ? lengths[b] : Tn, reverse) * B + b;
                    const REAL *src = bt.dgh ? bt.dgh + rr * GH : bt.dgs + i * ldd;
                    for (int64_t g = 0; g < G; g++)
                        w->span(w->dgb + rr * GH + g * H + j0, src + g * H, nv);
                }
#endif
        }
    }
}

/* Role r's columns of dh_{t-1} at step s (tile: the calling thread's). */
static void SFX(bw_dhp)(const SFX(bw_pass) *w, int r, int64_t s, const REAL *dstep, REAL *tile) {
    const fr_team_plan *p = &w->ps.plan;
    const int64_t B = w->B, H = w->H, GH = w->cell->G * H;
    int64_t rb0, rb1, jb0, nj;
    my_rows(p, B, r / p->nhg, &rb0, &rb1);
    my_blocks(p, r % p->nhg, &jb0, &nj);
#if FR_F32
    if (w->lpbw) {
        const int64_t nr = p->nr;
        /* the step's rows rounded already, where they lie together in dgb (no lengths) and the
           rows past them that whole-tile loads read are final: the next time step's, done
           earlier in this loop, or dgb's padding (not reversed; the last batch group, whose rows
           no other group is writing) */
        const uint32_t *rounded = w->dgb && !w->lengths && !w->reverse && rb1 == B
                                      ? (const uint32_t *)(w->dgb + (s * B + rb0) * GH)
                                      : NULL;
        lp_bw_dh_prev(w->lpbw, r, w->dh0, dstep, w->ldd, rounded, w->lengths, s, rb0, rb1,
                      jb0 * nr, imin(H, (jb0 + nj) * nr));
        return;
    }
#endif
    if (w->dots_t) {
        const int64_t c0 = imin(H, jb0 * p->nr), c1 = imin(H, (jb0 + nj) * p->nr);
        for (int64_t b0 = rb0; b0 < rb1 && c0 < c1; b0 += FR_DOTS_MAX_B) {
            const int64_t m = imin(FR_DOTS_MAX_B, rb1 - b0);
            unsigned char skip[FR_DOTS_MAX_B]; /* rows whose state passed through (bw_dh_prev) */
            for (int64_t i = 0; i < m; i++) skip[i] = w->lengths && s >= w->lengths[b0 + i];
            w->dots_t(w->w_hh + c0, H, c1 - c0, dstep + b0 * w->ldd, w->ldd, m, GH,
                      w->dh0 + b0 * H + c0, H, 1, skip);
        }
        return;
    }
    const REAL *whh_p = (const REAL *)w->ps.mem.scratch + w->shared + r * w->per_thread;
    SFX(bw_dh_prev)(w->kern, w->dh0, dstep, w->ldd, whh_p, tile, w->lengths, s, rb0, rb1, jb0, nj,
                    H, GH);
}

/* Thread tid of the backward: its W_hh panels, then the steps from last to first; where the team
   goes on alone (go_solo_check), thread 0 runs every role from then on. */
static void SFX(bw_thread)(const fr_pass *ps, int tid) {
    const SFX(bw_pass) *w = (const SFX(bw_pass) *)ps;
    const fr_team_plan *p = &ps->plan;
    const int64_t Tn = w->Tn, B = w->B, H = w->H, GH = w->cell->G * H, TB = Tn * B;
    const int64_t nr = p->nr;
    REAL *scratch = (REAL *)ps->mem.scratch;
    REAL *dgs = scratch + TB * GH * w->own_dgx; /* 2 x (B, ldd) ping-pong step rows */
    const int64_t k_end = Tn + 1; /* past every step's barrier number */

    const int bg = tid / p->nhg, hg = tid % p->nhg;
    int64_t jb0, nj;
    my_blocks(p, hg, &jb0, &nj);
    REAL *whh_p = scratch + w->shared + tid * w->per_thread; /* nj panels of (G*H) x nr */
    REAL *tile = whh_p + (w->dots_t ? 0 : p->njt * GH * nr);
    if (nj > 0 && !w->lpbw && !w->dots_t)
        SFX(fr_pack_b)(whh_p, w->w_hh, H, 0, GH, H, 1, nr, jb0, jb0 + nj);

    int r0 = tid, r1 = tid + 1; /* the roles this thread runs */
#if FR_F32
    if (w->lpbw) lp_bw_thread_begin(w->lpbw);
#endif
    for (int64_t s = Tn - 1; s >= 0; s--) {
        REAL *dstep = dgs + (s & 1) * B * w->ldd;
        for (int r = r0; r < r1; r++) SFX(bw_point)(w, r, s, dstep);
        if (r1 - r0 == 1 && p->nt > 1) { /* in a team */
            if (tid == 0) go_solo_check(ps, Tn - s);
            group_barrier(&ps->mem, p, bg, hg, Tn - s);
            if (gone_solo(ps, Tn - s)) {
                if (tid != 0) {
#if FR_F32
                    if (w->lpbw) lp_bw_thread_end(w->lpbw);
#endif
                    park(ps, k_end);
                    return;
                }
                r0 = 0;
                r1 = p->nt;
            }
        }
        for (int r = r0; r < r1; r++) SFX(bw_dhp)(w, r, s, dstep, tile);
    }
#if FR_F32
    if (w->lpbw) lp_bw_thread_end(w->lpbw);
#endif
    if (r1 - r0 > 1) unpark(ps, k_end);
}

/* C (B x N, rows at stride ldc) = A (B x K, stride lda) W (K x N, stride ldw) by the transposed
   dots kernel (dots.h), B <= STEP1_MAX_B, the columns split between nt threads: the same bits for
   any nt. */
static void SFX(rows_times_w)(SFX(fr_dots_t_fn) dots_t, const REAL *W, int64_t ldw, int64_t N,
                              const REAL *A, int64_t lda, int64_t B, int64_t K, REAL *C,
                              int64_t ldc, int nt) {
    const int64_t chunks = (N + 63) / 64; /* whole cache lines of float columns per thread */
    if (nt > chunks) nt = (int)chunks;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int64_t me = fr_omp_thread(), size = team_size();
        const int64_t c0 = imin(N, chunks * me / size * 64);
        const int64_t c1 = imin(N, chunks * (me + 1) / size * 64);
        for (int64_t b0 = 0; b0 < B && c0 < c1; b0 += FR_DOTS_MAX_B)
            dots_t(W + c0, ldw, c1 - c0, A + b0 * lda, lda, imin(FR_DOTS_MAX_B, B - b0), K,
                   C + b0 * ldc + c0, ldc, 0, NULL);
    }
    fr_load_region_done(nt);
}

/* The backward's GEMMs: fr_gemm, or with bf (float only) the bf16-operand GEMM. */
static int SFX(wgemm)(int bf, int ta, int tb, int64_t M, int64_t N, int64_t K, const REAL *A,
                      int64_t lda, const REAL *B, int64_t ldb, REAL beta, REAL *C, int64_t ldc,
                      int nt) {
#if FR_F32
    if (bf) return fr_gemm_bf16(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, nt);
#endif
    (void)bf;
    return SFX(fr_gemm)(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc, nt);
}

/* The weight gradients over all steps: dw_ih = dgx^T x (where ih) and dw_hh = dgh^T hq. With one
   delta for both (every cell but the GRU, whose n gate splits it), delta^T is packed once
   (fr_gemm_pair; with bf16 operands rounded too, fr_gemm_bf16_pair, from its bf16 copy dgb where
   the backward made one). */
static int SFX(wgrads)(int bf, int ih, int64_t GH, int64_t TB, int64_t I, int64_t H,
                       const REAL *dgx, const REAL *dgh, const uint16_t *dgb, const REAL *x,
                       const REAL *hq, REAL *dw_ih, REAL *dw_hh, int nt) {
#if FR_F32
    if (dgb && ih)
        return lp_gemm_bf16_pair_h(1, GH, TB, dgb, GH, I, x, I, dw_ih, I, H, hq, H, dw_hh, H, 0.0f,
                                   nt);
    if (dgb)
        return lp_gemm_bf16_h(1, GH, H, TB, dgb, GH, hq, H, 0.0f, dw_hh, H, nt);
    if (bf && ih && dgx == dgh)
        return fr_gemm_bf16_pair(1, GH, TB, dgh, GH, I, x, I, dw_ih, I, H, hq, H, dw_hh, H, 0.0f,
                                 nt);
#else
    (void)dgb;
#endif
    if (!bf && ih && dgx == dgh) /* one delta for both: delta^T packed once */
        return SFX(fr_gemm_pair)(1, GH, TB, dgh, GH, I, x, I, dw_ih, I, H, hq, H, dw_hh, H, 0, nt);
    const int st = ih ? SFX(wgemm)(bf, 1, 0, GH, I, TB, dgx, GH, x, I, 0, dw_ih, I, nt) : FR_OK;
    return st == FR_OK ? SFX(wgemm)(bf, 1, 0, GH, H, TB, dgh, GH, hq, H, 0, dw_hh, H, nt) : st;
}

int SFX(fr_rec_backward)(const CELL *cell, REAL *dx, REAL *dh0, REAL *dc0, REAL *dw_ih, REAL *dw_hh,
                         REAL *db_ih, REAL *db_hh, const REAL *cache, const REAL *x, const REAL *w_ih,
                         const REAL *w_hh, const REAL *dy, const REAL *dh_n, const REAL *dc_n,
                         const int64_t *lengths, int64_t Tn, int64_t B, int64_t I, int64_t H, int act,
                         int reverse, int nthreads, const REAL *hprev_w) {
    const int identity = I > 0 && w_ih == NULL; /* W_ih is the identity: dx gets the gate grads */
    if (Tn < 0 || B < 0 || I < 0 || H < 1 || nthreads < 1 || dh0 == NULL ||
        (dw_ih == NULL && !identity) || dw_hh == NULL || (cell->has_c && dc0 == NULL) ||
        (Tn > 0 && B > 0 && cache == NULL) || (identity && I != cell->G * H) ||
        (Tn > 0 && B > 0 && I > 0 && (identity ? dx == NULL : x == NULL)) || w_hh == NULL ||
        fr_rec_cache_size(cell->G, cell->naux, Tn, B, H) < 0)
        return FR_ERR_ARG;
    const int64_t G = cell->G, GH = G * H, BH = B * H, TB = Tn * B;
    for (int64_t k = 0; k < BH; k++) dh0[k] = dh_n ? dh_n[k] : (REAL)0;
    if (cell->has_c)
        for (int64_t k = 0; k < BH; k++) dc0[k] = dc_n ? dc_n[k] : (REAL)0;
    if (TB == 0) { /* no step: zero weight gradients (they are written, fastrnn.h) */
        if (I > 0 && !identity) memset(dw_ih, 0, (size_t)(GH * I) * sizeof(REAL));
        memset(dw_hh, 0, (size_t)(GH * H) * sizeof(REAL));
        return FR_OK;
    }

    const KERN *kern = SFX(fr_kernel_get)();
    const int split = cell->split_n;
    SFX(bw_pass) w = {
        .ps = {.mr = kern->mr, .nr = kern->nr, .T = Tn, .B = B, .flops_I = 0, .H = H, .G = G,
               .wbytes = GH * H * (int64_t)sizeof(REAL), .layout = SFX(bw_layout),
               /* W_hh only, and a group's steps skip the team's barrier: measured, medium LSTM
                  training (50,16,256,256) 0.94x the time with groups at an equal work */
               .group_cut = 0,
               .can_solo = 1,
               .begin = SFX(bw_begin),
               .thread = SFX(bw_thread)},
        .cell = cell, .kern = kern, .dx = dx, .dh0 = dh0, .dc0 = dc0,
        .cache = cache, .w_hh = w_hh, .dy = dy, .lengths = lengths, .Tn = Tn, .B = B, .H = H,
        .act = act, .reverse = reverse, .identity = identity,
        .nacc = (db_ih || db_hh) ? (split ? 2 : 1) : 0,
        /* one step of a few rows (float arithmetic): packing W_hh for one product, and W_ih for
           dx's, cost more than the products (as in the forward's step1) */
        .dots_t = Tn == 1 && hprev_w == NULL &&
                          (B <= FR_DOTS_MAX_B ||
                           (B <= STEP1_MAX_B && GH * ((identity ? 0 : I) + H) *
                                                        (int64_t)sizeof(REAL) <= STEP1_BW_BYTES))
                      ? SFX(fr_dots_t_for)(fr_get_arch())
                      : NULL,
    };
    lp_bw *lpbw = NULL;
#if FR_F32
    if (hprev_w != NULL && (lpbw = lp_bw_new(w_hh, GH, H, B, nthreads)) == NULL)
        return FR_ERR_NOMEM;
    w.lpbw = lpbw;
    /* a bf16 forward's backward with one delta (not the GRU) whose rows are the bf16 GEMMs' A
       rows as they stand (G*H a multiple of 32 words' pairs): the delta rounded once, as written,
       instead of read back and rounded by dx's GEMM and again (transposed) by the weights' */
    if (hprev_w != NULL && !split && GH % 32 == 0) {
        w.dgb = fr_scratch_alloc((size_t)((TB + LP_MR) * GH) * sizeof(uint16_t));
        if (w.dgb == NULL) {
            lp_bw_free(lpbw);
            return FR_ERR_NOMEM;
        }
        memset(w.dgb + TB * GH, 0, (size_t)(LP_MR * GH) * sizeof(uint16_t));
        w.span = lp_bf16_span_fn();
        w.step_only = !identity;
    }
#endif
    int st = run_pass(&w.ps, nthreads);
    lp_bw_free(lpbw);
    if (st != FR_OK) {
        fr_scratch_free(w.dgb);
        return st;
    }
    release_flags(&w.ps.mem);

    /* the weight gradients: single GEMMs over all steps */
    const REAL *dgh_all = SFX(bw_dgh_all)(&w), *dgx_all = SFX(bw_dgx_all)(&w);
    const REAL *hprev_c = hprev_w ? hprev_w : cache;
    const int ntg = fr_rec_threads_for(nthreads, 2.0 * (double)TB * (double)GH *
                                                     (double)(identity ? H : I + H));
    const int bf = hprev_w != NULL; /* a bf16 forward's backward: bf16 operands (fastrnn.h) */
    if (w.nacc > 0) SFX(bias_grads)(&w, db_ih, db_hh);
    if (I > 0 && !identity && dx && w.dots_t) {
        SFX(rows_times_w)(w.dots_t, w_ih, I, I, dgx_all, GH, B, GH, dx, I, ntg);
    } else if (I > 0 && !identity && dx) {
#if FR_F32
        if (w.dgb)
            st = lp_gemm_bf16_h(0, TB, I, GH, w.dgb, GH, w_ih, I, 0.0f, dx, I, ntg);
        else
#endif
            st = SFX(wgemm)(bf, 0, 0, TB, I, GH, dgx_all, GH, w_ih, I, 0, dx, I, ntg);
    }
    if (st == FR_OK)
        st = SFX(wgrads)(bf, I > 0 && !identity, GH, TB, I, H, dgx_all, dgh_all, w.dgb, x, hprev_c,
                         dw_ih, dw_hh, ntg);
    fr_scratch_free(w.dgb);
    release(&w.ps.mem);
    return st;
}

/* ---- the cells and the public entry points ------------------------------------------------ */

const CELL *SFX(fr_rec_cell_of)(int cell) {
    switch (cell) {
    case FR_CELL_RNN: return &SFX(fr_rnn_cell);
    case FR_CELL_LSTM: return &SFX(fr_lstm_cell);
    case FR_CELL_GRU: return &SFX(fr_gru_cell);
    default: return NULL;
    }
}

/* The descriptor of cell, or NULL where cell or act is not valid. */
static const CELL *SFX(checked_cell)(int cell, int act) {
    if (cell == FR_CELL_RNN && act != FR_RNN_TANH && act != FR_RNN_RELU) return NULL;
    return SFX(fr_rec_cell_of)(cell);
}

int SFX(fr_cell_forward)(int cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache, const REAL *x,
                         const REAL *h0, const REAL *c0, const REAL *w_ih, const REAL *w_hh,
                         const REAL *b_ih, const REAL *b_hh, const int64_t *lengths, int64_t T,
                         int64_t B, int64_t I, int64_t H, int act, int reverse, int nthreads) {
    const CELL *cd = SFX(checked_cell)(cell, act);
    if (cd == NULL) return FR_ERR_ARG;
    return SFX(fr_rec_forward)(cd, y, h_n, cd->has_c ? c_n : NULL, cache, x, NULL, 0, h0,
                               cd->has_c ? c0 : NULL, w_ih, w_hh, b_ih, b_hh, lengths, T, B, I, H,
                               act, reverse, nthreads, NULL);
}

/* ---- weights packed once ------------------------------------------------------------------ */

/* The header of fr_cell_prepack_*'s buffer: what the packed slice after it was made for. */
typedef struct {
    uint64_t magic;
    int32_t cell, arch, esize, nr;
    int64_t I, H, bytes; /* I: W_ih's columns, 0 for the identity input */
} SFX(prepack_head);

int64_t SFX(fr_cell_prepack_bytes)(int cell, int64_t I, int64_t H) {
    const CELL *cd = SFX(fr_rec_cell_of)(cell);
    if (cd == NULL || I < 0 || H < 1 || H > FR_PREPACK_MAX_H || I > FR_PREPACK_MAX_H) return -1;
    const int64_t nr = SFX(fr_kernel_get)()->nr;
    return FR_PREPACK_HEAD +
           SFX(fr_rec_slice_size)(cd, I, H, nr, (H + nr - 1) / nr) * (int64_t)sizeof(REAL);
}

int SFX(fr_cell_prepack)(void *packed, int cell, const REAL *w_ih, const REAL *w_hh,
                         const REAL *b_ih, const REAL *b_hh, int64_t I, int64_t H) {
    const int64_t Ip = w_ih ? I : 0, bytes = SFX(fr_cell_prepack_bytes)(cell, Ip, H);
    if (packed == NULL || bytes < 0 || w_hh == NULL || (uintptr_t)packed % 64 != 0)
        return FR_ERR_ARG;
    const CELL *cd = SFX(fr_rec_cell_of)(cell);
    const int64_t nr = SFX(fr_kernel_get)()->nr;
    SFX(fr_slice) sl;
    SFX(fr_rec_pack_slice)(cd, &sl, (REAL *)((char *)packed + FR_PREPACK_HEAD), w_ih, w_hh, b_ih,
                           b_hh, Ip, H, nr, 0, H, (H + nr - 1) / nr);
    const SFX(prepack_head) hd = {.magic = FR_PREPACK_MAGIC, .cell = cell, .arch = fr_get_arch(),
                                  .esize = (int32_t)sizeof(REAL), .nr = (int32_t)nr, .I = Ip,
                                  .H = H, .bytes = bytes};
    memcpy(packed, &hd, sizeof hd);
    return FR_OK;
}

/* The packed slice of buffer `packed` where its header says it was made for this cell, input
   width, H, dtype, SIMD path and size; NULL (the forward packs as without it) otherwise. */
static const REAL *SFX(prepacked_slice)(const void *packed, int64_t bytes, int cell,
                                        const REAL *w_ih, int64_t I, int64_t H) {
    if (packed == NULL || bytes < FR_PREPACK_HEAD || (uintptr_t)packed % 64 != 0) return NULL;
    SFX(prepack_head) hd;
    memcpy(&hd, packed, sizeof hd);
    const int64_t Ip = w_ih ? I : 0;
    if (hd.magic != FR_PREPACK_MAGIC || hd.cell != cell || hd.arch != fr_get_arch() ||
        hd.esize != (int32_t)sizeof(REAL) || hd.nr != SFX(fr_kernel_get)()->nr || hd.I != Ip ||
        hd.H != H || hd.bytes != bytes || SFX(fr_cell_prepack_bytes)(cell, Ip, H) != bytes)
        return NULL;
    return (const REAL *)((const char *)packed + FR_PREPACK_HEAD);
}

int SFX(fr_cell_forward_prepacked)(int cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache,
                                   const REAL *x, const REAL *h0, const REAL *c0,
                                   const REAL *w_ih, const REAL *w_hh, const REAL *b_ih,
                                   const REAL *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                                   int64_t I, int64_t H, int act, int reverse, int nthreads,
                                   const void *packed, int64_t bytes) {
    const CELL *cd = SFX(checked_cell)(cell, act);
    if (cd == NULL) return FR_ERR_ARG;
    return SFX(fr_rec_forward)(cd, y, h_n, cd->has_c ? c_n : NULL, cache, x, NULL, 0, h0,
                               cd->has_c ? c0 : NULL, w_ih, w_hh, b_ih, b_hh, lengths, T, B, I, H,
                               act, reverse, nthreads,
                               SFX(prepacked_slice)(packed, bytes, cell, w_ih, I, H));
}

int SFX(fr_cell_forward_rows)(int cell, REAL *y, REAL *h_n, REAL *c_n, REAL *cache,
                              const REAL *table, int64_t V, const int64_t *ids, const REAL *h0,
                              const REAL *c0, const REAL *w_hh, const REAL *b_ih, const REAL *b_hh,
                              const int64_t *lengths, int64_t T, int64_t B, int64_t H, int act,
                              int reverse, int nthreads) {
    const CELL *cd = SFX(checked_cell)(cell, act);
    if (cd == NULL || H < 1 || V < 0 || (T > 0 && B > 0 && (ids == NULL || table == NULL)))
        return FR_ERR_ARG;
    return SFX(fr_rec_forward)(cd, y, h_n, cd->has_c ? c_n : NULL, cache, table, ids, V, h0,
                               cd->has_c ? c0 : NULL, NULL, w_hh, b_ih, b_hh, lengths, T, B,
                               cd->G * H, H, act, reverse, nthreads, NULL);
}

int SFX(fr_cell_backward)(int cell, REAL *dx, REAL *dh0, REAL *dc0, REAL *dw_ih, REAL *dw_hh,
                          REAL *db_ih, REAL *db_hh, const REAL *cache, const REAL *x,
                          const REAL *w_ih, const REAL *w_hh, const REAL *dy, const REAL *dh_n,
                          const REAL *dc_n, const int64_t *lengths, int64_t T, int64_t B,
                          int64_t I, int64_t H, int act, int reverse, int nthreads) {
    const CELL *cd = SFX(checked_cell)(cell, act);
    if (cd == NULL) return FR_ERR_ARG;
    return SFX(fr_rec_backward)(cd, dx, dh0, cd->has_c ? dc0 : NULL, dw_ih, dw_hh, db_ih, db_hh,
                                cache, x, w_ih, w_hh, dy, dh_n, cd->has_c ? dc_n : NULL, lengths, T,
                                B, I, H, act, reverse, nthreads, NULL);
}

#undef CELL
#undef KERN

#endif
