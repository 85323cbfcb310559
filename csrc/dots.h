/*
 * dots.h — dot products of a few rows with weight rows as they are given (row-major, not packed):
 * the kernel of the unpacked length-1 forward (recurrence.c's step1), per SIMD path. Internal, not
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

#endif /* FASTRNN_DOTS_H */
