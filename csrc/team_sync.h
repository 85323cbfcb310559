/*
 * team_sync.h — the per-step barrier of the recurrence's thread team, without system calls.
 * Internal, not part of the public API.
 *
 * Why: libgomp's barrier ends in a futex wake-up system call by the last thread to arrive, on the
 * critical path of every time step (a batch-1 step is ~1 us of work here). Here each thread
 * publishes the number of the barrier it reached in its own cache line and waits for the others'
 * numbers by spinning (pause), falling back to sched_yield after FR_TEAM_SPINS polls so that an
 * oversubscribed machine still makes progress.
 */
#ifndef FASTRNN_TEAM_SYNC_H
#define FASTRNN_TEAM_SYNC_H

#include <stdatomic.h>
#include <stdint.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FR_TEAM_PAUSE() _mm_pause()
#else
#define FR_TEAM_PAUSE() ((void)0)
#endif

#define FR_TEAM_SPINS 20000

/* One thread's arrival count, alone in a cache line. */
typedef struct {
    _Atomic int64_t n;
    char pad[64 - sizeof(_Atomic int64_t)];
} fr_team_flag;

/* Flags for nt threads, every count 0 (NULL when out of memory); free with fr_team_free. */
fr_team_flag *fr_team_new(int nt);

/* Free flags from fr_team_new (NULL is ignored). */
void fr_team_free(fr_team_flag *f);

/* Let another thread run (the slow path of a wait). */
void fr_team_yield(void);

/* Barrier number k (1, 2, ... in order) for thread tid of nt: returns when all nt threads have
   arrived at it; every thread's writes before its arrival are visible to all after. */
static inline void fr_team_barrier(fr_team_flag *f, int tid, int nt, int64_t k) {
    atomic_store_explicit(&f[tid].n, k, memory_order_release);
    for (int i = 0; i < nt; i++) {
        int spins = 0;
        while (atomic_load_explicit(&f[i].n, memory_order_acquire) < k) {
            if (spins < FR_TEAM_SPINS) {
                spins++;
                FR_TEAM_PAUSE();
            } else {
                fr_team_yield();
            }
        }
    }
}

#endif
