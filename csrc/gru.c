/*
 * gru.c — GRU cell kernels, float and double (the body is gru_impl.h, instantiated twice).
 * The whole-sequence time loop, threading and GEMMs live in recurrence.c.
 */
#include <string.h>

#include "recurrence.h"

#define REAL float
#define SFX(name) name##_s
#include "gru_impl.h"
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_d
#include "gru_impl.h"
#undef REAL
#undef SFX

int64_t fr_gru_cache_size(int64_t T, int64_t B, int64_t H) { return fr_rec_cache_size(3, 1, T, B, H); }
