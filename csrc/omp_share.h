/*
 * omp_share.h — the calling thread's share of a range split evenly over its OpenMP team.
 * Internal, not part of the public API.
 */
#ifndef FASTRNN_OMP_SHARE_H
#define FASTRNN_OMP_SHARE_H

#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The calling thread's number in its OpenMP team (0 outside a parallel region or without
   OpenMP). */
static inline int fr_omp_thread(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* [*i0, *i1): the calling thread's part of [0, n), the team's threads in order (all of [0, n)
   outside a parallel region or without OpenMP). */
static inline void fr_omp_share(int64_t n, int64_t *i0, int64_t *i1) {
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int64_t tid = 0, nth = 1;
#endif
    *i0 = n * tid / nth;
    *i1 = n * (tid + 1) / nth;
}

#endif
