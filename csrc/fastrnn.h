/*
 * fastrnn.h — the public C interface of fastrnn's kernels.
 *
 * Conventions:
 *   - Row-major, time-major. Size letters: T time, B batch, I input width, H hidden, G gates.
 *   - Functions return an int status (FR_OK on success); C never prints, exits or aborts.
 *   - Arguments: outputs first, then saved state (cache), then inputs and weights, then sizes.
 *     A `d` prefix means "gradient of the tensor of that name".
 *   - Suffix _s = float32, _d = float64.
 *   - Memory of inputs/outputs/caches is owned by the caller; per-call scratch is allocated once
 *     per call, never per timestep.
 */
#ifndef FASTRNN_H
#define FASTRNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------------------------ */
enum {
    FR_OK = 0,
    FR_ERR_ARG = 1,   /* invalid argument (sizes, NULL where required, unknown enum) */
    FR_ERR_NOMEM = 2, /* scratch allocation failed */
    FR_ERR_ARCH = 3   /* requested SIMD path not supported by this CPU/build */
};

/* ---- cpu.c: SIMD path selection ---------------------------------------------------------- */
enum { FR_ARCH_GENERIC = 0, FR_ARCH_AVX2 = 1, FR_ARCH_AVX512 = 2, FR_ARCH_COUNT = 3 };

/* 1 if this CPU (and OS) can run the given path, else 0. */
int fr_cpu_supports(int arch);
/* The best path this CPU supports. */
int fr_best_arch(void);
/* The path in use: on first call initialised from env FASTRNN_ARCH (generic|avx2|avx512), else best.
   If FASTRNN_ARCH names an unsupported/unknown path, the generic path is used and
   fr_arch_env_error() returns 1. */
int fr_get_arch(void);
/* 1 if FASTRNN_ARCH was set to a path this CPU lacks or to an unknown name. */
int fr_arch_env_error(void);
/* Select the path for all later calls; FR_ERR_ARCH if unsupported. Not thread-safe with running kernels. */
int fr_set_arch(int arch);
/* Static name of a path ("generic", "avx2", "avx512"), or "unknown". */
const char *fr_arch_name(int arch);
/* 1 if built with OpenMP. */
int fr_has_openmp(void);
/* omp_get_max_threads() (1 without OpenMP). */
int fr_omp_max_threads(void);
/* Bounds of fr_l2_bytes: the smallest L2 of the target machines (Zen 3), and a cap. */
#define FR_L2_MIN_BYTES (512 * 1024)
#define FR_L2_MAX_BYTES (2 * 1024 * 1024)
/* One core's L2 cache in bytes as the OS reports it, within [FR_L2_MIN_BYTES, FR_L2_MAX_BYTES]
   (the minimum where it does not tell). */
int64_t fr_l2_bytes(void);

/* ---- fork.c: fork safety ----------------------------------------------------------------- */
/* Install the fork handlers (once; later calls do nothing): before a fork, the forking thread's
   OpenMP worker pool is released and no thread holds the kept-block lock, so that a child can
   run the kernels, with any thread count. FR_OK, or FR_ERR_NOMEM. */
int fr_fork_guard_install(void);
/* 1 if the last fork (in this process or, read in a child, in its parent before the fork)
   released the forking thread's pool or found none, so a child may start threads; 0 if it could
   not (a libgomp older than GCC 9): that child must stay single-threaded. */
int fr_fork_pool_released(void);

/* ---- gemm.c: packed-panel GEMM ----------------------------------------------------------- */
/*
 * A microkernel computes an (m x nr) tile, m <= mr:
 *   C[i*ldc + c] (accumulate ? += : =) sum_{k<K} A[i*lda + k] * Bp[k*nr + c],  i < m, c < nr.
 * Bp is one packed panel (K x nr, contiguous, zero-padded past the matrix edge).
 * A is read row-wise (any lda >= K); C rows are written for c < nr (all nr columns).
 */
typedef void (*fr_ukr_s_fn)(int64_t m, int64_t K, const float *A, int64_t lda, const float *Bp,
                            float *C, int64_t ldc, int accumulate);
typedef void (*fr_ukr_d_fn)(int64_t m, int64_t K, const double *A, int64_t lda, const double *Bp,
                            double *C, int64_t ldc, int accumulate);
/* A bias form: C[i*ldc + c] = sum_{k<K} A[i*lda + k] * Bp[k*nr + c] + bias[c] (the sum rounded,
   then the bias added: the results of ukr with accumulate = 0 followed by C += bias). */
typedef void (*fr_ukr_bias_s_fn)(int64_t m, int64_t K, const float *A, int64_t lda,
                                 const float *Bp, const float *bias, float *C, int64_t ldc);
typedef void (*fr_ukr_bias_d_fn)(int64_t m, int64_t K, const double *A, int64_t lda,
                                 const double *Bp, const double *bias, double *C, int64_t ldc);

/* A kernel's half-width form (ukr_half) has the same contract over columns c < nr / 2 only: it
   reads Bp's first nr / 2 columns of each row (the panel's row stride is still nr) and writes C
   only there, each column summed in the same order as by ukr (for a last hidden block whose
   valid columns fit in the first half). Its pair form (ukr_pair) computes two adjacent panels,
   Bp and Bp + K * nr, into C's 2 * nr columns with the results of ukr on each (faster for a few
   rows, whose single panel leaves the FMA units waiting). */
typedef struct {
    int mr;               /* max rows per microkernel call */
    int nr;               /* panel width (columns) */
    fr_ukr_s_fn ukr;      /* the microkernel */
    fr_ukr_s_fn ukr_half; /* its half-width form */
    fr_ukr_s_fn ukr_pair; /* its two-panel form */
    fr_ukr_bias_s_fn ukr_bias;      /* the microkernel adding a bias row (accumulate = 0) */
    fr_ukr_bias_s_fn ukr_bias_half; /* its half-width form (bias[c], c < nr / 2) */
} fr_kernel_s;

typedef struct {
    int mr;
    int nr;
    fr_ukr_d_fn ukr;
    fr_ukr_d_fn ukr_half;
    fr_ukr_d_fn ukr_pair;
    fr_ukr_bias_d_fn ukr_bias;
    fr_ukr_bias_d_fn ukr_bias_half;
} fr_kernel_d;

/* The microkernel of the path in use (fr_get_arch()). Never NULL. */
const fr_kernel_s *fr_kernel_get_s(void);
const fr_kernel_d *fr_kernel_get_d(void);
/* The microkernel of a given path (NULL if the path is not compiled in). */
const fr_kernel_s *fr_kernel_for_arch_s(int arch);
const fr_kernel_d *fr_kernel_for_arch_d(int arch);

/*
 * Gate-interleaved panel packing of op(B) (K x N) with N = G*H columns, column n = g*H + j:
 * hidden block jb = 0..ceil(H/nr)-1 holds its nv = min(nr, H - jb*nr) units of every gate, gate g
 * at block column g*nv (block column g*nv + u is op(B)'s column g*H + jb*nr + u), zero past
 * G*nv, in FR_BLOCK_PANELS(G, nv, nr) panels of K x nr, panel q at dst + ((jb*G + q) * K) * nr
 * (a block of nr units: panel g is gate g; a last partial block puts the gates' units side by
 * side, H = 200 in blocks of 32: one panel of 4 x 8 units, not four of 8).
 * op(B)[k][n] = transb ? B[n*ldb + k] : B[k*ldb + n].
 * Only hidden blocks [jb0, jb1) are packed, block jb at dst + (jb - jb0)*G * K * nr.
 * With G = 1, H = N this is plain panel packing.
 */
#define FR_BLOCK_PANELS(G, nv, nr) ((nv) < (nr) ? ((G) * (nv) + (nr) - 1) / (nr) : (G))
void fr_pack_b_s(float *dst, const float *B, int64_t ldb, int transb, int64_t K, int64_t H, int64_t G,
                 int64_t nr, int64_t jb0, int64_t jb1);
void fr_pack_b_d(double *dst, const double *B, int64_t ldb, int transb, int64_t K, int64_t H,
                 int64_t G, int64_t nr, int64_t jb0, int64_t jb1);
/* The same for hidden units [u0, u1) (0 <= u0 < u1 <= H): blocks of nr units from u0, the last
   one partial where nr does not divide u1 - u0, block l at dst + l*G * K * nr. */
void fr_pack_b_units_s(float *dst, const float *B, int64_t ldb, int transb, int64_t K, int64_t H,
                       int64_t G, int64_t nr, int64_t u0, int64_t u1);
void fr_pack_b_units_d(double *dst, const double *B, int64_t ldb, int transb, int64_t K,
                       int64_t H, int64_t G, int64_t nr, int64_t u0, int64_t u1);

/*
 * General GEMM, row-major: C (M x N, ldc) = beta*C + op(A) (M x K) * op(B) (K x N),
 * op(X) = X^T when transX. beta must be 0 or 1 (beta = 0 never reads C). Uses up to nthreads
 * threads; deterministic for a given thread count (K is never split across threads).
 * Returns FR_OK, FR_ERR_ARG or FR_ERR_NOMEM.
 */
int fr_gemm_s(int transa, int transb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int nthreads);
int fr_gemm_d(int transa, int transb, int64_t M, int64_t N, int64_t K, const double *A, int64_t lda,
              const double *B, int64_t ldb, double beta, double *C, int64_t ldc, int nthreads);
/* C1 = beta*C1 + op(A) B1 (K x N1) and C2 = beta*C2 + op(A) B2 (K x N2), op(A) packed once for
   both (the backward's dw_ih and dw_hh share the gate gradients); each C bit for bit fr_gemm's. */
int fr_gemm_pair_s(int transa, int64_t M, int64_t K, const float *A, int64_t lda, int64_t N1,
                   const float *B1, int64_t ldb1, float *C1, int64_t ldc1, int64_t N2,
                   const float *B2, int64_t ldb2, float *C2, int64_t ldc2, float beta,
                   int nthreads);
int fr_gemm_pair_d(int transa, int64_t M, int64_t K, const double *A, int64_t lda, int64_t N1,
                   const double *B1, int64_t ldb1, double *C1, int64_t ldc1, int64_t N2,
                   const double *B2, int64_t ldb2, double *C2, int64_t ldc2, double beta,
                   int nthreads);

/* ---- activations.c: vectorised elementwise non-linearities (path in use) ------------------ */
/* (In-register forms for fused SIMD code: csrc/simd_math.h, fr_v{exp,sigmoid,tanh}_{avx2,avx512}_{s,d}.) */
/* y[i] = 1 / (1 + exp(-x[i])); max relative error 1e-6 (float) / 1e-14 (double); y may alias x. */
void fr_sigmoid_s(float *y, const float *x, int64_t n);
void fr_sigmoid_d(double *y, const double *x, int64_t n);
/* y[i] = tanh(x[i]); same accuracy; y may alias x. NaN propagates, +-inf saturate to +-1. */
void fr_tanh_s(float *y, const float *x, int64_t n);
void fr_tanh_d(double *y, const double *x, int64_t n);

/* ---- the cells: maths in rnn.c / lstm.c / gru.c, whole-sequence driver in recurrence.c ----- */
/*
 * Shapes: y (T,B,H); h0, c0, h_n, c_n (B,H); x (T,B,I); w_ih (G*H, I); w_hh (G*H, H);
 * b_ih, b_hh (G*H) or NULL (zero); lengths (B) in [0,T] or NULL (all T); h0/c0 NULL = zeros.
 * cell: FR_CELL_*; G = fr_cell_gates(cell). The cell state arguments (c0, c_n, dc0, dc_n) are used
 * by the LSTM only (ignored, and may be NULL, for the others); act (FR_RNN_TANH/RELU) by the RNN
 * only. cache: NULL for inference, else fr_cell_cache_size(cell, T, B, H) elements written by
 * forward and read by backward (layout private to the kernels). nthreads >= 1.
 *
 * Backward write rule: dx, dh0, dc0, dw_ih and dw_hh are written (=); db_ih, db_hh accumulate
 * (+=), the caller zeroes them; db_* may be NULL (no bias). dy, dh_n, dc_n may be NULL (zero). dx may be
 * NULL when w_ih is not (the input's gradient is then not computed: one GEMM less). Backward
 * needs the same x, h0, c0, weights, lengths, reverse and sizes as the forward that filled cache.
 *
 * Projected input: w_ih NULL with I = G*H means W_ih is the identity, i.e. x already holds the
 * input projection of every step (gate g at columns [g*H, (g+1)*H), biases not included). The
 * backward then writes the gradients of the input pre-activations to dx (T,B,G*H), leaves dw_ih
 * alone (it may be NULL) and does not read x. (An Embedding before the cell uses this: the
 * projection of a vocabulary row is computed once per call, not once per token.)
 */
enum { FR_CELL_RNN = 0, FR_CELL_LSTM = 1, FR_CELL_GRU = 2 };
enum { FR_RNN_TANH = 0, FR_RNN_RELU = 1 };

/* The cell's gate count G, or -1 for an unknown cell. */
int fr_cell_gates(int cell);
/* Cache elements (T*B*H times a per-cell factor); -1 for an unknown cell, a negative size or a
   count that would overflow int64_t. */
int64_t fr_cell_cache_size(int cell, int64_t T, int64_t B, int64_t H);

/* Whole-sequence forward of a cell: y, h_n (and c_n), and cache when not NULL. FR_ERR_ARG for an
   unknown cell, a bad size or act, or a missing required array. */
int fr_cell_forward_s(int cell, float *y, float *h_n, float *c_n, float *cache, const float *x,
                      const float *h0, const float *c0, const float *w_ih, const float *w_hh,
                      const float *b_ih, const float *b_hh, const int64_t *lengths, int64_t T,
                      int64_t B, int64_t I, int64_t H, int act, int reverse, int nthreads);
int fr_cell_forward_d(int cell, double *y, double *h_n, double *c_n, double *cache,
                      const double *x, const double *h0, const double *c0, const double *w_ih,
                      const double *w_hh, const double *b_ih, const double *b_hh,
                      const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int act,
                      int reverse, int nthreads);
/* Weights packed once for the forward: the slice of every hidden unit that a thread running all
   of them reads (a team of one; batch groups of one thread each), as fr_cell_forward_* packs it
   per call, with a header of what it was made for (cell, input width, H, dtype, SIMD path).
   fr_cell_prepack_bytes_*: its bytes for W_ih of I columns (I = 0: no W_ih, the identity input),
   -1 for a bad cell or size. fr_cell_prepack_*: pack W_ih (NULL: identity), W_hh and the biases
   into packed (that many bytes, 64-byte aligned; 4096 keeps the slice on pages of its own).
   fr_cell_forward_prepacked_*: fr_cell_forward_* with the same arguments, whose threads that run
   every unit read packed (bytes long) instead of packing; results bit for bit those of
   fr_cell_forward_*. A buffer whose header does not match the call (another cell, size or
   SIMD path) is not read: the call packs as fr_cell_forward_* does. The caller keeps packed in
   step with the weights (fastrnn's PreparedWeights). */
int64_t fr_cell_prepack_bytes_s(int cell, int64_t I, int64_t H);
int64_t fr_cell_prepack_bytes_d(int cell, int64_t I, int64_t H);
int fr_cell_prepack_s(void *packed, int cell, const float *w_ih, const float *w_hh,
                      const float *b_ih, const float *b_hh, int64_t I, int64_t H);
int fr_cell_prepack_d(void *packed, int cell, const double *w_ih, const double *w_hh,
                      const double *b_ih, const double *b_hh, int64_t I, int64_t H);
int fr_cell_forward_prepacked_s(int cell, float *y, float *h_n, float *c_n, float *cache,
                                const float *x, const float *h0, const float *c0,
                                const float *w_ih, const float *w_hh, const float *b_ih,
                                const float *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                                int64_t I, int64_t H, int act, int reverse, int nthreads,
                                const void *packed, int64_t bytes);
int fr_cell_forward_prepacked_d(int cell, double *y, double *h_n, double *c_n, double *cache,
                                const double *x, const double *h0, const double *c0,
                                const double *w_ih, const double *w_hh, const double *b_ih,
                                const double *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                                int64_t I, int64_t H, int act, int reverse, int nthreads,
                                const void *packed, int64_t bytes);
/* Whether a forward of a cell with G gates and H units (elements of esize bytes) on nthreads
   threads may read a prepacked slice: one thread, or W_hh small enough for batch groups (every
   group's thread runs every unit); larger weights on a team split the units, and a packed copy
   would only take memory. */
int fr_prepack_read(int G, int64_t H, int64_t esize, int nthreads);
/* Threads of forwards so far that read a prepacked slice instead of packing their own. */
int64_t fr_prepacked_reads(void);
/* Whole-sequence backward of a cell from the cache of fr_cell_forward_* (write rule above). */
int fr_cell_backward_s(int cell, float *dx, float *dh0, float *dc0, float *dw_ih, float *dw_hh,
                       float *db_ih, float *db_hh, const float *cache, const float *x,
                       const float *w_ih, const float *w_hh, const float *dy, const float *dh_n,
                       const float *dc_n, const int64_t *lengths, int64_t T, int64_t B, int64_t I,
                       int64_t H, int act, int reverse, int nthreads);
int fr_cell_backward_d(int cell, double *dx, double *dh0, double *dc0, double *dw_ih,
                       double *dw_hh, double *db_ih, double *db_hh, const double *cache,
                       const double *x, const double *w_ih, const double *w_hh, const double *dy,
                       const double *dh_n, const double *dc_n, const int64_t *lengths, int64_t T,
                       int64_t B, int64_t I, int64_t H, int act, int reverse, int nthreads);
/* ---- lstm_proj.c: the LSTM with a projection (torch.nn.LSTM(proj_size=P)) ---------------- */
/*
 * As fr_cell_forward_* / fr_cell_backward_* of the LSTM, with h_t = W_hr r_t where r_t = o*tanh(c_t):
 * y (T,B,P); h0, h_n, dh0, dh_n (B,P); c0, c_n, dc0, dc_n (B,H); w_hh (4H,P); w_hr (P,H) (no
 * bias). cache: NULL for inference, else fr_lstmp_cache_size(T, B, H, P) elements. The write
 * rule, lengths and reverse are the whole-sequence driver's (dw_hr accumulates). H, P >= 1.
 */
/* Cache elements of a training forward; -1 for a negative size or an int64_t overflow. */
int64_t fr_lstmp_cache_size(int64_t T, int64_t B, int64_t H, int64_t P);
/* Whole-sequence forward with projection. FR_ERR_ARG, FR_ERR_NOMEM. */
int fr_lstmp_forward_s(float *y, float *h_n, float *c_n, float *cache, const float *x,
                       const float *h0, const float *c0, const float *w_ih, const float *w_hh,
                       const float *w_hr, const float *b_ih, const float *b_hh,
                       const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H,
                       int64_t P, int reverse, int nthreads);
int fr_lstmp_forward_d(double *y, double *h_n, double *c_n, double *cache, const double *x,
                       const double *h0, const double *c0, const double *w_ih,
                       const double *w_hh, const double *w_hr, const double *b_ih,
                       const double *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                       int64_t I, int64_t H, int64_t P, int reverse, int nthreads);
/* Whole-sequence backward from the cache of fr_lstmp_forward_*. FR_ERR_ARG, FR_ERR_NOMEM. */
int fr_lstmp_backward_s(float *dx, float *dh0, float *dc0, float *dw_ih, float *dw_hh,
                        float *dw_hr, float *db_ih, float *db_hh, const float *cache,
                        const float *x, const float *w_ih, const float *w_hh, const float *w_hr,
                        const float *dy, const float *dh_n, const float *dc_n,
                        const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H,
                        int64_t P, int reverse, int nthreads);
int fr_lstmp_backward_d(double *dx, double *dh0, double *dc0, double *dw_ih, double *dw_hh,
                        double *dw_hr, double *db_ih, double *db_hh, const double *cache,
                        const double *x, const double *w_ih, const double *w_hh,
                        const double *w_hr, const double *dy, const double *dh_n,
                        const double *dc_n, const int64_t *lengths, int64_t T, int64_t B,
                        int64_t I, int64_t H, int64_t P, int reverse, int nthreads);

/* Forward whose projected input is picked from a table: the input of step t, batch row b is
   table[ids[t*B+b]] (V rows of G*H, biases not included), exactly as fr_cell_forward_* with w_ih
   NULL and x = those rows (an embedding folded into W_ih, without materialising x). Its backward
   is fr_cell_backward_* with w_ih NULL and x NULL (dx is then the (T,B,G*H) gradient of the
   projected input). FR_ERR_ARG for an id outside [0, V). */
int fr_cell_forward_rows_s(int cell, float *y, float *h_n, float *c_n, float *cache,
                           const float *table, int64_t V, const int64_t *ids, const float *h0,
                           const float *c0, const float *w_hh, const float *b_ih,
                           const float *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                           int64_t H, int act, int reverse, int nthreads);
int fr_cell_forward_rows_d(int cell, double *y, double *h_n, double *c_n, double *cache,
                           const double *table, int64_t V, const int64_t *ids, const double *h0,
                           const double *c0, const double *w_hh, const double *b_ih,
                           const double *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                           int64_t H, int act, int reverse, int nthreads);
/* Batch groups of the whole-sequence driver's thread team for all later calls (a tuning and
   testing knob): 0 lets each call choose (the default), n > 0 asks for n groups of rows, used
   wherever the call's team size is a multiple of n and the groups keep every row's sums as they
   are without groups (tiles of 3 rows or more). FR_ERR_ARG for n < 0. */
int fr_set_batch_groups(int n);
/* Shared rows of the whole-sequence forward for all later calls (a testing knob): 0 takes them
   only where the machine's load would cut a team (the default), k > 0 runs every forward that
   can with k chunks of rows its threads take in turn, where its team and rows allow k (more
   chunks than threads, each of 6 rows or more, every row's sums as without groups). The results
   are those of any other team. FR_ERR_ARG for k < 0. */
int fr_set_shared_rows(int k);
/* Forward passes run with shared rows so far. */
int64_t fr_shared_passes(void);
/* Training-cache bytes from which later forwards store their cache non-temporally (a testing and
   tuning knob): 0 restores the default (recurrence.h's FR_STREAM_CACHE_BYTES), n > 0 sets it.
   FR_ERR_ARG for n < 0. */
int fr_set_stream_cache_bytes(int64_t n);
/* Testing knobs of the whole-sequence drivers' teams, for all later calls: fr_set_team_threads(n)
   with n > 0 makes every pass take min(n, nthreads, hidden blocks) threads whatever the load
   (fr_lp_forward's batch split: min(n, nthreads, B)), and every one-off region of theirs (the
   gradients' GEMMs) min(n, nthreads) (0: the load rules choose, the default);
   fr_set_solo_step(s) with s > 0 makes every pass that can continue on one thread do so from its
   step s on (as when another pass enters the process meanwhile; 0: only then, the default).
   FR_ERR_ARG for a negative value. */
int fr_set_team_threads(int n);
int fr_set_solo_step(int64_t s);
/* Passes that went on alone on their first thread so far (the others parked). */
int64_t fr_solo_passes(void);
/* Passes that measured their team's start and waits so far (team_load.h; a sample of the rest). */
int64_t fr_measured_passes(void);
/* A length-1 forward under this many flops (2 * B * (I + H) * G * H) runs on the calling
   thread alone, whatever the thread count (a team's fork and join cost about what it saves). */
#define FR_STEP1_TEAM_FLOPS 131072.0
/* Length-1 forwards run on the weights as given, unpacked, so far (recurrence.c). */
int64_t fr_step1_passes(void);
/* Those of them that ran on a team of more than one thread. */
int64_t fr_step1_team_passes(void);

/* ---- rows.c: rows by index --------------------------------------------------------------- */
/* dst[idx[r], :] += src[r, :] for r < R, rows of n elements, in row order (deterministic for any
   thread count); FR_ERR_ARG (nothing written) if an index is outside [0, V). */
int fr_scatter_add_rows_s(float *dst, int64_t V, int64_t n, const float *src, const int64_t *idx,
                          int64_t R, int nthreads);
int fr_scatter_add_rows_d(double *dst, int64_t V, int64_t n, const double *src,
                          const int64_t *idx, int64_t R, int nthreads);

/* ---- optim.c: fused optimizer updates ---------------------------------------------------- */
/* Adam, one pass over n elements: m += (g - m)*c1; v += (g*g - v)*c2; w -= (m*alpha)/(sqrt(v) + eps)
   (c1 = 1 - beta_1, c2 = 1 - beta_2, alpha the bias-corrected rate), in that operation order. */
int fr_adam_update_s(float *w, const float *g, float *m, float *v, int64_t n, float c1, float c2,
                     float alpha, float eps, int nthreads);
int fr_adam_update_d(double *w, const double *g, double *m, double *v, int64_t n, double c1,
                     double c2, double alpha, double eps, int nthreads);

/* ---- stream.c: single-step inference with weights packed once ------------------------------ */
/*
 * For streaming: a layer's weights are packed once (for the SIMD path in use at packing time;
 * repack after fr_set_arch), then each call advances B rows by one timestep, single-threaded,
 * without allocating. cell: FR_CELL_*; act: FR_RNN_TANH/RELU for RNN (ignored otherwise).
 */
enum { FR_ACT_LINEAR = 0, FR_ACT_RELU = 1, FR_ACT_TANH = 2, FR_ACT_SIGMOID = 3, FR_ACT_SOFTMAX = 4 };

/* Elements of a cell layer's packed weights (I inputs, H units), or -1 for a bad cell. */
int64_t fr_step_packed_size_s(int cell, int64_t I, int64_t H);
int64_t fr_step_packed_size_d(int cell, int64_t I, int64_t H);
/* Elements of scratch one fr_step call needs for B rows. */
int64_t fr_step_work_size_s(int cell, int64_t B, int64_t H);
int64_t fr_step_work_size_d(int cell, int64_t B, int64_t H);
/* Pack w_ih (G*H, I), w_hh (G*H, H), b_ih, b_hh (G*H or NULL) into packed. */
int fr_step_pack_s(float *packed, int cell, const float *w_ih, const float *w_hh, const float *b_ih,
                   const float *b_hh, int64_t I, int64_t H);
int fr_step_pack_d(double *packed, int cell, const double *w_ih, const double *w_hh,
                   const double *b_ih, const double *b_hh, int64_t I, int64_t H);
/* One timestep: h (B,H) and, for LSTM, c (B,H) are updated in place from x (B,I). */
int fr_step_s(float *h, float *c, float *work, const float *packed, int cell, int act,
              const float *x, int64_t B, int64_t I, int64_t H);
int fr_step_d(double *h, double *c, double *work, const double *packed, int cell, int act,
              const double *x, int64_t B, int64_t I, int64_t H);

/* Elements of a dense layer's packed weights (I inputs, O outputs). */
int64_t fr_dense_packed_size_s(int64_t I, int64_t O);
int64_t fr_dense_packed_size_d(int64_t I, int64_t O);
/* Pack kernel (I, O) (Keras layout, y = x kernel + bias) and bias (O or NULL). */
void fr_dense_pack_s(float *packed, const float *kernel, const float *bias, int64_t I, int64_t O);
void fr_dense_pack_d(double *packed, const double *kernel, const double *bias, int64_t I,
                     int64_t O);
/* y (B,O) = act(x (B,I) kernel + bias), act FR_ACT_*; work holds fr_dense_work_size elements. */
int fr_dense_step_s(float *y, float *work, const float *packed, int act, const float *x, int64_t B,
                    int64_t I, int64_t O);
int fr_dense_step_d(double *y, double *work, const double *packed, int act, const double *x,
                    int64_t B, int64_t I, int64_t O);
/* Elements of scratch one fr_dense_step call needs. */
int64_t fr_dense_work_size(void);

/* ---- lowp.c, lowp_kernels.c: reduced-precision forward (bfloat16, int8), float32 I/O --------- */
/*
 * bf16: weights, x_t and h_{t-1} rounded to bfloat16 (nearest even) as they enter the GEMMs,
 * float32 accumulation; int8: weights quantized per output channel, x_t and h_{t-1} per row
 * (symmetric, scale max|row|/127), exact int32 sums dequantized by row scale * channel scale.
 * Gate maths, states, outputs and biases stay float32. (fastrnn.reference writes it out.)
 * The weights are packed once (fr_lp_pack) into a caller-owned block, valid on every SIMD path;
 * each forward picks the kernels of the path in use.
 */
enum { FR_PREC_F32 = 0, FR_PREC_BF16 = 1, FR_PREC_INT8 = 2 };
enum { FR_CPU_AVX512_BF16 = 0, FR_CPU_AVX512_VNNI = 1, FR_CPU_AVX_VNNI = 2 };

/* 1 if this CPU has the feature (FR_CPU_*), else 0. */
int fr_cpu_has_lowp(int feature);
/* Static name of the kernels precision prec runs on now ("avx512_bf16", "avx512_vnni",
   "avx_vnni", "avx2_madd", "amx_bf16", "amx_int8", "portable"), or "unknown" for another prec. */
const char *fr_lowp_path(int prec);
/* Let bfloat16 and int8 use AMX (tdpbf16ps, tdpbusd) where the CPU and OS allow (on = 1, the
   default) or not (0: AVX512_BF16 vdpbf16ps, VNNI vpdpbusd): a testing and tuning knob. FR_OK. */
int fr_lp_set_amx(int on);
/* Let int8 use VNNI (vpdpbusd) where the CPU has it (on = 1, the default) or not (0: the AVX2
   path's widening vpmaddwd kernel on the AVX2 and AVX-512 paths): a testing knob. FR_OK. */
int fr_lp_set_vnni(int on);
/* Set the small-rows limit: a product with at most rows rows (a thread's step rows, a projection
   chunk's rows) runs on the AVX-512 kernels (vdpbf16ps, vpdpbusd) in place of AMX; rows < 0
   restores the measured rule (1 row; bf16 only for calls of little work per row), 0 keeps AMX
   everywhere. A testing and tuning knob. FR_OK. */
int fr_lp_set_small_rows(int rows);
/* Static name of the kernels (as fr_lowp_path) a product of precision prec with rows rows, each
   taking row_macs multiply-adds over its call, runs on now. */
const char *fr_lowp_rows_path(int prec, int64_t rows, double row_macs);
/* Bytes of the packed weights of cell with I inputs (identity: w_ih NULL, I = G*H) and H units
   in precision prec; -1 for a bad cell, precision or size (int8: I and H at most 65536, so
   that its int32 sums cannot overflow). */
int64_t fr_lp_packed_bytes(int cell, int prec, int identity, int64_t I, int64_t H);
/* Pack w_ih (G*H, I) (NULL: the identity, I = G*H), w_hh (G*H, H), b_ih, b_hh (G*H or NULL) into
   packed (fr_lp_packed_bytes bytes, 64-byte aligned). FR_OK or FR_ERR_ARG. */
int fr_lp_pack(void *packed, int cell, int prec, const float *w_ih, const float *w_hh,
               const float *b_ih, const float *b_hh, int64_t I, int64_t H);
/* Whole-sequence forward on packed weights; arguments as fr_cell_forward_s (cell, I, H and the
   precision come from packed; I and H must match). packed: the whole of fr_lp_pack's buffer,
   bytes long, its header untouched (else FR_ERR_ARG). hq: NULL, or (bf16 training) T*B*H floats
   receiving h_{t-1} as the GEMM saw it (bf16-rounded; zero past a row's length), the operand of
   the backward's dw_hh; with hq, the cache's h_{t-1} rows are left unwritten for the cells whose
   backward does not read them (LSTM, RNN: fr_cell_backward_hq_s). FR_ERR_ARG, FR_ERR_NOMEM. */
int fr_lp_forward(const void *packed, int64_t bytes, float *y, float *h_n, float *c_n,
                  float *cache, float *hq, const float *x, const float *h0, const float *c0,
                  const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int act,
                  int reverse, int nthreads);
/* fr_lp_forward calls of one step (T = 1) so far, and those of them that ran on a team. */
int64_t fr_lp_step1_passes(void);
int64_t fr_lp_step1_team_passes(void);
/* fr_cell_backward_s of a bf16 forward: the same recurrence (float32 gate gradients) with every
   product on bf16 operands and float32 sums: dh_{t-1} = delta W_hh, dx = delta W_ih, dw_ih =
   delta^T x, dw_hh = delta^T hq (hq: fr_lp_forward's bf16-rounded h_{t-1}, T*B*H). x, w_ih and
   w_hh are rounded to bf16 as they are packed: arrays rounded already give the same bits. */
int fr_cell_backward_hq_s(int cell, float *dx, float *dh0, float *dc0, float *dw_ih, float *dw_hh,
                          float *db_ih, float *db_hh, const float *cache, const float *hq,
                          const float *x, const float *w_ih, const float *w_hh, const float *dy,
                          const float *dh_n, const float *dc_n, const int64_t *lengths, int64_t T,
                          int64_t B, int64_t I, int64_t H, int act, int reverse, int nthreads);
/* fr_gemm_s with both operands rounded to bfloat16 as they are packed, float32 accumulation
   (C = beta*C + op(A) op(B), beta 0 or 1): AMX, AVX512_BF16 or portable kernels. */
int fr_gemm_bf16(int transa, int transb, int64_t M, int64_t N, int64_t K, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                 int nthreads);
/* fr_gemm_bf16's C1 = beta*C1 + op(A) B1 (K x N1) and C2 = beta*C2 + op(A) B2 (K x N2) with op(A)
   rounded and packed once (the bf16 backward's dw_ih and dw_hh share delta^T). */
int fr_gemm_bf16_pair(int transa, int64_t M, int64_t K, const float *A, int64_t lda, int64_t N1,
                      const float *B1, int64_t ldb1, float *C1, int64_t ldc1, int64_t N2,
                      const float *B2, int64_t ldb2, float *C2, int64_t ldc2, float beta,
                      int nthreads);
/* dst[i] = src[i] rounded to bfloat16 (nearest even; NaN stays NaN), as float32; may alias. */
void fr_round_bf16(float *dst, const float *src, int64_t n);
/* A 64-bit checksum of n bytes (Fletcher-style over 32-bit words in 16 lanes: any change of one
   word, and any swap of two, changes it). For the prepared weights' staleness check. */
uint64_t fr_checksum(const void *p, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* FASTRNN_H */
