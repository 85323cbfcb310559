/*
 * recurrence.c — the shared whole-sequence driver for every cell, float and double
 * (the body is recurrence_impl.h, instantiated twice).
 */
#include <stdlib.h>
#include <string.h>

#include "recurrence.h"
#include "scratch.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int64_t fr_rec_cache_size(int G, int naux, int64_t T, int64_t B, int64_t H) {
    return T * B * H * (int64_t)(1 + G + naux);
}

#define FR_TEMPLATE "recurrence_impl.h"
#include "template.h"
