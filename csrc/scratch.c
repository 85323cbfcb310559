/*
 * scratch.c — working memory for the kernels (see scratch.h).
 *
 * Every block carries a 64-byte header with its usable size. Blocks of at least FR_HUGE_MIN bytes
 * are 2 MiB aligned and advised as huge pages (Linux); smaller ones come from aligned_alloc. Up to
 * FR_KEEP_N freed blocks (FR_KEEP_MAX bytes in all) are kept and handed to later requests they fit:
 * a training step frees and asks again for the same handful of sizes (outputs, gradients, caches,
 * packed panels), and each kept block spares the kernel a page fault and a page clear per 4 KiB.
 * A spin lock (atomic_flag) guards the kept list: it is held for a few dozen instructions only.
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
#define FR_KEEP_MAX ((size_t)1 << 30)       /* never keep more than 1 GiB in all */
#define FR_KEEP_N 16                        /* nor more than this many blocks */

static atomic_flag lock = ATOMIC_FLAG_INIT;
static void *kept[FR_KEEP_N]; /* payload pointers of the kept blocks, oldest first */
static int n_kept = 0;
static size_t kept_bytes = 0;

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

/* Remove entry i of the kept list (lock held) and return it. */
static void *take_at(int i) {
    void *p = kept[i];
    for (int k = i + 1; k < n_kept; k++) kept[k - 1] = kept[k];
    n_kept--;
    kept_bytes -= block_size(p);
    return p;
}

/* A request takes the smallest kept block that holds it, but not one more than twice its size
   (plus a huge page): a small request must not take the block a big one will ask for next. */
void *fr_scratch_alloc(size_t bytes) {
    void *p = NULL;
    acquire();
    int best = -1;
    for (int i = 0; i < n_kept; i++) {
        const size_t n = block_size(kept[i]);
        /* kept blocks are at most FR_KEEP_MAX, so with n >= bytes nothing here overflows */
        if (n >= bytes && n - bytes <= bytes + FR_HUGE_PAGE && (best < 0 || n < block_size(kept[best])))
            best = i;
    }
    if (best >= 0) p = take_at(best);
    release();
    return p ? p : block_new(bytes);
}

/* A freed block joins the kept list as its newest entry; the oldest entries make room for it. A
   block bigger than FR_KEEP_MAX is freed at once. */
void fr_scratch_free(void *p) {
    if (p == NULL) return;
    const size_t n = block_size(p);
    if (n > FR_KEEP_MAX) {
        block_free(p);
        return;
    }
    void *drop[FR_KEEP_N];
    int n_drop = 0;
    acquire();
    while (n_kept > 0 && (n_kept == FR_KEEP_N || kept_bytes + n > FR_KEEP_MAX)) drop[n_drop++] = take_at(0);
    kept[n_kept++] = p;
    kept_bytes += n;
    release();
    for (int i = 0; i < n_drop; i++) block_free(drop[i]); /* outside the lock */
}

void fr_scratch_release(void) {
    void *drop[FR_KEEP_N];
    acquire();
    const int n = n_kept;
    for (int i = 0; i < n; i++) drop[i] = kept[i];
    n_kept = 0;
    kept_bytes = 0;
    release();
    for (int i = 0; i < n; i++) block_free(drop[i]);
}

void fr_scratch_lock(void) { acquire(); }

void fr_scratch_unlock(void) { release(); }

size_t fr_scratch_kept(void) {
    acquire();
    const size_t n = kept_bytes;
    release();
    return n;
}
