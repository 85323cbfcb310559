/*
 * scratch.c — working memory for the kernels (see scratch.h).
 *
 * Every block carries a 64-byte header with its usable size. Blocks of at least FR_HUGE_MIN bytes
 * are 2 MiB aligned and advised as huge pages (Linux); smaller ones come from aligned_alloc. One
 * freed block, the largest seen lately and at most FR_KEEP_MAX bytes, is kept and handed to the
 * next request it is big enough for. A spin lock (atomic_flag) guards the kept block: it is held
 * for a few instructions only.
 */
#define _DEFAULT_SOURCE
#include "scratch.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define FR_HEADER 64                        /* keeps the payload 64-byte aligned */
#define FR_HUGE_PAGE ((size_t)2 << 20)      /* x86-64 huge page */
#define FR_HUGE_MIN ((size_t)4 << 20)       /* below this, huge pages would waste memory */
#define FR_KEEP_MAX ((size_t)1 << 30)       /* never keep more than 1 GiB */

static atomic_flag lock = ATOMIC_FLAG_INIT;
static void *kept = NULL; /* payload pointer of the kept block, or NULL */

static void acquire(void) {
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire)) {
    }
}

static void release(void) { atomic_flag_clear_explicit(&lock, memory_order_release); }

static size_t block_size(const void *p) { return *(const size_t *)((const char *)p - FR_HEADER); }

static void block_free(void *p) {
    if (p) free((char *)p - FR_HEADER);
}

static void *block_new(size_t bytes) {
    if (bytes > SIZE_MAX - FR_HUGE_PAGE - FR_HEADER) return NULL;
    const size_t align = bytes >= FR_HUGE_MIN ? FR_HUGE_PAGE : (size_t)FR_HEADER;
    const size_t total = (bytes + FR_HEADER + align - 1) / align * align; /* a multiple of align */
    char *base = (char *)aligned_alloc(align, total);
    if (base == NULL) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == FR_HUGE_PAGE) (void)madvise(base, total, MADV_HUGEPAGE); /* advice only */
#endif
    *(size_t *)base = total - FR_HEADER;
    return base + FR_HEADER;
}

void *fr_scratch_alloc(size_t bytes) {
    void *p = NULL;
    acquire();
    if (kept && block_size(kept) >= bytes) {
        p = kept;
        kept = NULL;
    }
    release();
    return p ? p : block_new(bytes);
}

void fr_scratch_free(void *p) {
    if (p == NULL) return;
    void *drop = p;
    const size_t n = block_size(p);
    acquire();
    if (n <= FR_KEEP_MAX && (kept == NULL || block_size(kept) < n)) {
        drop = kept;
        kept = p;
    }
    release();
    block_free(drop);
}

void fr_scratch_release(void) {
    acquire();
    void *p = kept;
    kept = NULL;
    release();
    block_free(p);
}

size_t fr_scratch_kept(void) {
    acquire();
    const size_t n = kept ? block_size(kept) : 0;
    release();
    return n;
}
