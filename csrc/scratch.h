/*
 * scratch.h — the kernels' working memory: big blocks on transparent huge pages, and freed
 * blocks kept for later calls. Internal, not part of the public API.
 *
 * Why: a training step needs tens of MB of scratch (the backward pass holds the gate gradients of
 * the whole sequence). Fresh memory from the kernel costs a page fault per 4 KiB (on the machines
 * measured here ~30 ms per 52 MB, as much as 10% of a large LSTM step); huge pages cut the faults
 * 512-fold and reusing the previous call's blocks removes them.
 * The Python layer also places its big outputs (y, dx, weight gradients, training caches) in these
 * blocks, so a training loop's steady state asks the kernel for no fresh pages at all.
 */
#ifndef FASTRNN_SCRATCH_H
#define FASTRNN_SCRATCH_H

#include <stddef.h>

/* A block of at least `bytes` bytes, 64-byte aligned (NULL when out of memory). Thread-safe. */
void *fr_scratch_alloc(size_t bytes);

/* Give back a block from fr_scratch_alloc (NULL is ignored); it may be kept for a later call
   (at most 16 blocks and 1 GiB are kept; the oldest go first). */
void fr_scratch_free(void *p);

/* Free every kept block (memory checkers, or a caller that wants the memory back). */
void fr_scratch_release(void);

/* Bytes currently kept for reuse (0 when none). */
size_t fr_scratch_kept(void);

/* Take / let go of the kept list's lock: the fork handlers (fork.c) hold it across fork() so that
   a child never inherits it held. Nothing else may call fr_scratch_* in between. */
void fr_scratch_lock(void);
void fr_scratch_unlock(void);

#endif
