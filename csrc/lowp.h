/*
 * lowp.h — private interface of the reduced-precision (bfloat16, int8) recurrence: the operand
 * formats, the per-path microkernels and row converters (lowp_kernels.c) the driver (lowp.c)
 * uses. Not part of the public API (that is in fastrnn.h, section lowp.c).
 *
 * Formats (K the reduction length, LP_NR = 32 output columns per panel):
 *   bfloat16: an A row is kw = 16*ceil(K/32) uint32 words, word p holding bf16(a[2p]) in its low
 *     half and bf16(a[2p+1]) in its high half (0 past K). A panel is kw groups of LP_NR words,
 *     word (p, c) holding column c's weights k = 2p, 2p+1 the same way: the operand order of
 *     vdpbf16ps, and (16 pairs by 16 columns at a time) of AMX's tdpbf16ps B tiles.
 *   int8: an A row is kw = 16*ceil(K/64) uint32 words of 4 unsigned bytes u = q + 128 (q the
 *     row's symmetric int8 value, 128 past K), plus the row's float scale. A panel is kw groups
 *     of LP_NR words of 4 signed bytes (column c's weights k = 4p..4p+3, 0 past K), followed by
 *     LP_NR int32 compensations 128 * sum_k w[k][c] and LP_NR float channel scales: the operand
 *     order of vpdpbusd (and of AMX's tdpbusd B tiles); sum_k u*w - comp = sum_k q*w exactly in
 *     int32.
 */
#ifndef FASTRNN_LOWP_H
#define FASTRNN_LOWP_H

#include <stdint.h>

#include "fastrnn.h"

#define LP_NR 32 /* output columns per panel (a hidden block of LP_NR units per gate) */
#define LP_MR 32 /* most rows per microkernel call on any path (lp_kernel.mr: this path's) */

/* uint32 words of an A row / of a panel's k-group for K and precision prec (FR_PREC_*). */
static inline int64_t lp_kwords(int prec, int64_t K) {
    return prec == FR_PREC_BF16 ? (K + 31) / 32 * 16 : (K + 63) / 64 * 16;
}
/* Bytes of one panel (LP_NR columns, K deep), its int8 tail included. */
static inline int64_t lp_panel_bytes(int prec, int64_t K) {
    return lp_kwords(prec, K) * LP_NR * 4 + (prec == FR_PREC_INT8 ? 2 * LP_NR * 4 : 0);
}

/*
 * A microkernel: rows i < m <= LP_MR of C (row stride ldc), columns c < LP_NR:
 *   C[i][c] = dot(A row i, panel column c) (+ bias[c] when bias is not NULL),
 * bf16: float32 sums of the bf16 products; int8: float(int32 sum - comp[c]) * (ascale[i] *
 * wscale[c]) (ascale NULL for bf16). A rows at stride lda words; kw words per row.
 */
typedef void (*lp_ukr_fn)(int64_t m, int64_t kw, const uint32_t *A, int64_t lda,
                          const uint32_t *panel, const float *ascale, const float *bias, float *C,
                          int64_t ldc);
/* Convert n rows of K floats (row stride lds) into A rows (stride lda words); int8 also writes
   each row's scale to scale[r]. */
typedef void (*lp_rows_fn)(uint32_t *A, int64_t lda, float *scale, const float *src, int64_t lds,
                           int64_t n, int64_t K);

typedef struct {
    lp_ukr_fn ukr;
    lp_rows_fn rows;
    const char *name; /* "amx_bf16", "avx512_bf16", "avx512_vnni", "portable", ... */
    int mr;           /* rows per ukr call, <= LP_MR; A buffers hold mr - 1 readable rows past
                         the last (AMX loads whole tiles; their results are not used) */
    void (*begin)(void); /* NULL, or called by each thread before its first ukr call */
    void (*end)(void);   /* NULL, or called by each thread after its last */
    /* NULL, or a whole tile of LP_MR rows x LP_NR columns of C (row stride ldc) summed in place:
       C = (add ? C : 0) + A rows x panel (bf16; ukr's arguments otherwise), each product added
       to C as it comes (other roundings than ukr's sums added after), for callers that go over
       K in slabs */
    void (*acc)(int64_t kw, const uint32_t *A, int64_t lda, const uint32_t *panel, float *C,
                int64_t ldc, int add);
} lp_kernel;

/* The kernels of precision prec on SIMD path arch (FR_ARCH_*), falling back to what the CPU has
   (the portable C kernels at worst). Never NULL for FR_PREC_BF16 / FR_PREC_INT8. */
const lp_kernel *lp_kernel_for(int prec, int arch);

/* The kernels of a product with rows rows (a thread's step rows, a projection chunk's rows), each
   taking row_macs multiply-adds over the call: lp_kernel_for's, or in place of AMX the AVX-512
   kernels of the same operand format where rows is at most the small-rows limit (1, or what
   fr_lp_set_small_rows set; bf16 by the rule only below LP_AMX_ROW_MACS). Never NULL. */
const lp_kernel *lp_kernel_for_rows(int prec, int arch, int64_t rows, double row_macs);

/* bf16 panel (lowp.h's format) of columns n0 <= n < n0 + nv (nv <= LP_NR) of B (K rows at
   stride ldb): word (p, c) = (bf16 B[2p][n0 + c], bf16 B[2p + 1][n0 + c]), zero past K and nv
   (the AVX-512 rounding on that path: the same bits). */
void lp_pack_kn_bf16(uint32_t *P, const float *B, int64_t ldb, int64_t K, int64_t n0, int64_t nv);
/* bf16 panel of rows c < nv (nv <= LP_NR) of W (K columns, row stride ldw), the panel's column c
   being W's row c: word (p, c) = (bf16 W[c][2p], bf16 W[c][2p + 1]), zero past K and nv. */
void lp_pack_nk_bf16(uint32_t *P, const float *W, int64_t ldw, int64_t K, int64_t nv);
/* bf16 A rows i0 <= i < i1 (stride kw words = lp_kwords(BF16, K)) of A^T: row i holds column i of
   A (K rows at stride lda), zero past K. */
void lp_pack_t_rows_bf16(uint32_t *Ab, int64_t kw, const float *A, int64_t lda, int64_t K,
                         int64_t i0, int64_t i1);

/* bf16 of n floats (lp_bf16 each) into dst, nothing past n written: the function of the SIMD path
   in use (the AVX-512 rounding where it has it: the same bits), looked up once per pass. */
typedef void (*lp_span_fn)(uint16_t *dst, const float *src, int64_t n);
lp_span_fn lp_bf16_span_fn(void);
/* lp_pack_t_rows_bf16 from A already in bf16 (K rows of uint16 at stride lda): the same rows. */
void lp_pack_t16_rows_bf16(uint32_t *Ab, int64_t kw, const uint16_t *A, int64_t lda, int64_t K,
                           int64_t i0, int64_t i1);

/* fr_gemm_bf16 and fr_gemm_bf16_pair (fastrnn.h) with A already rounded to bf16 (uint16 rows at
   stride lda elements): transa 0: A's rows are the kernels' A rows as they stand, so lda is even,
   the elements past K up to 2 * lp_kwords(BF16, K) are zero and LP_MR rows past M are readable;
   transa 1: op(A) = A^T is packed from it (lp_pack_t16_rows_bf16). Results bit for bit those of
   the float calls on the floats A was rounded from. */
int lp_gemm_bf16_h(int transa, int64_t M, int64_t N, int64_t K, const uint16_t *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc, int nthreads);
int lp_gemm_bf16_pair_h(int transa, int64_t M, int64_t K, const uint16_t *A, int64_t lda,
                        int64_t N1, const float *B1, int64_t ldb1, float *C1, int64_t ldc1,
                        int64_t N2, const float *B2, int64_t ldb2, float *C2, int64_t ldc2,
                        float beta, int nthreads);

/* The bf16 backward's recurrent product dh_{t-1} += delta~ W~_hh (delta~ the step's gate
   gradients rounded to bf16 as they enter it, W~_hh the weights rounded once), for
   recurrence.c's backward: the bf16 panels of w_hh (G*H rows of H; GH = G*H) and scratch for
   up to nthreads threads of a B-row pass. NULL when out of memory or for bad
   sizes; free with lp_bw_free (NULL is ignored). */
typedef struct lp_bw lp_bw;
lp_bw *lp_bw_new(const float *w_hh, int64_t GH, int64_t H, int64_t B, int nthreads);
void lp_bw_free(lp_bw *bw);
/* A thread's first and last call around its lp_bw_dh_prev calls (AMX's tile configuration,
   made once a pass, not once a step). */
void lp_bw_thread_begin(const lp_bw *bw);
void lp_bw_thread_end(const lp_bw *bw);
/* Thread tid (< the nthreads of lp_bw_new): dh[b][c] += sum_n bf16(dstep[b][n]) * W~_hh[n][c]
   (float32 sums) for rows b in [rb0, rb1) still active at step s (lengths NULL: all) and
   columns c in [c0, c1); dstep rows at stride ldd, dh rows at stride H. rounded: NULL, or those
   rows already rounded, as A rows (stride lp_kwords(BF16, G*H) words; the rows up to LP_MR past
   them readable and not written meanwhile): then dstep is not read. */
void lp_bw_dh_prev(const lp_bw *bw, int tid, float *dh, const float *dstep, int64_t ldd,
                   const uint32_t *rounded, const int64_t *lengths, int64_t s, int64_t rb0,
                   int64_t rb1, int64_t c0, int64_t c1);

/* bf16 of a float, round to nearest even (NaN stays a quiet NaN): the upper half of the result. */
static inline uint16_t lp_bf16(float f) {
    union {
        float f;
        uint32_t u;
    } v = {.f = f};
    if ((v.u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((v.u | 0x00400000u) >> 16);
    return (uint16_t)((v.u + 0x7FFFu + ((v.u >> 16) & 1u)) >> 16);
}

#endif /* FASTRNN_LOWP_H */
