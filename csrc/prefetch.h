/*
 * prefetch.h — software prefetch of a span of memory into L2, for rows far apart in memory that
 * hardware prefetchers do not follow (a step's rows of the training cache, table rows picked by
 * id). Internal, not part of the public API.
 *
 * Every function here is always inlined: GCC infers that a function which only prefetches is pure
 * and drops calls to it, prefetches included.
 */
#ifndef FASTRNN_PREFETCH_H
#define FASTRNN_PREFETCH_H

#include <stdint.h>

/* How far ahead a loop over rows picked by index (table rows) prefetches: measured on the Keras
   Embedding fold, the row pick of the recurrence drivers and the row scatter-add. */
#define FR_PREFETCH_ROWS_AHEAD 4

#if defined(__GNUC__) || defined(__clang__)
#define FR_PF_INLINE inline __attribute__((always_inline))
#define FR_PF_LINE(p, w) __builtin_prefetch((p), (w), 2)
#else
#define FR_PF_INLINE inline
#define FR_PF_LINE(p, w) ((void)(p))
#endif

/* Prefetch the cache lines holding bytes [p, p + nbytes) into L2, for writing when w (a constant
   after inlining). Addresses are only computed as integers: nothing is dereferenced. */
static FR_PF_INLINE void fr_prefetch(const void *p, int64_t nbytes, int w) {
    if (nbytes <= 0) return;
    const uintptr_t end = (uintptr_t)p + (uintptr_t)nbytes;
    for (uintptr_t a = (uintptr_t)p & ~(uintptr_t)63; a < end; a += 64) {
        if (w)
            FR_PF_LINE((const void *)a, 1);
        else
            FR_PF_LINE((const void *)a, 0);
    }
}

#endif /* FASTRNN_PREFETCH_H */
