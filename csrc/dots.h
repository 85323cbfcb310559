/*
 * dots.h — products of a few rows with weights as they are given (row-major, not packed): dot
 * products with weight rows (the unpacked length-1 forward, recurrence.c's step1) and the
 * transposed product, rows times the weight matrix (its backward), per SIMD path. Internal, not
 * part of the public API.
 */
#ifndef FASTRNN_DOTS_H
#define FASTRNN_DOTS_H

#include <stdint.h>

/* The most rows a call takes. */
#define FR_DOTS_MAX_B 4

/* C[b*ldc + o] = sum_{k<K} A[b*lda + k] * W[o*ldw + k] for b < B (1..FR_DOTS_MAX_B), o < O. */
typedef void (*fr_dots_fn_s)(const float *W, int64_t ldw, int64_t O, const float *A, int64_t lda,
                             int64_t B, int64_t K, float *C, int64_t ldc);
typedef void (*fr_dots_fn_d)(const double *W, int64_t ldw, int64_t O, const double *A,
                             int64_t lda, int64_t B, int64_t K, double *C, int64_t ldc);

/* The kernel of SIMD path arch (FR_ARCH_*): each sum depends on K and the path only (not on O or
   where the run of weight rows starts), so any split of the rows gives the same bits. */
fr_dots_fn_s fr_dots_for_s(int arch);
fr_dots_fn_d fr_dots_for_d(int arch);

/* The transposed product, rows times the weights: for b < B (1..FR_DOTS_MAX_B) and c < N,
   s = sum_{k<K} A[b*lda + k] * W[k*ldw + c], summed in k order from 0 (one running sum per
   output: the same bits for any split of the columns, on every path), then
   C[b*ldc + c] = s (acc 0) or C[b*ldc + c] += s (acc 1); rows b with skip[b] != 0 (skip NULL:
   none) are not written. */
typedef void (*fr_dots_t_fn_s)(const float *W, int64_t ldw, int64_t N, const float *A,
                               int64_t lda, int64_t B, int64_t K, float *C, int64_t ldc, int acc,
                               const unsigned char *skip);
typedef void (*fr_dots_t_fn_d)(const double *W, int64_t ldw, int64_t N, const double *A,
                               int64_t lda, int64_t B, int64_t K, double *C, int64_t ldc,
                               int acc, const unsigned char *skip);

/* The transposed kernel of SIMD path arch (FR_ARCH_*). */
fr_dots_t_fn_s fr_dots_t_for_s(int arch);
fr_dots_t_fn_d fr_dots_t_for_d(int arch);

#endif /* FASTRNN_DOTS_H */
