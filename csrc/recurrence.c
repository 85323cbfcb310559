/*
 * recurrence.c — the shared whole-sequence driver for every cell, float and double
 * (the body is recurrence_impl.h, instantiated twice).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "omp_share.h"
#include "prefetch.h"
#include "recurrence.h"
#include "scratch.h"
#include "team_sync.h"

#ifdef _OPENMP
#include <omp.h>
#endif

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

int fr_cell_gates(int cell) {
    const fr_cell_s *cd = fr_rec_cell_of_s(cell);
    return cd ? cd->G : -1;
}

int64_t fr_cell_cache_size(int cell, int64_t T, int64_t B, int64_t H) {
    const fr_cell_s *cd = fr_rec_cell_of_s(cell);
    return cd ? fr_rec_cache_size(cd->G, cd->naux, T, B, H) : -1;
}

#define FR_TEMPLATE "recurrence_impl.h"
#include "template.h"
