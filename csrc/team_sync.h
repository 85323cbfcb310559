/*
 * team_sync.h — the per-step barrier of the recurrence's thread team: spin briefly, then sleep.
 * Internal, not part of the public API.
 *
 * Why: libgomp's barrier ends in a futex wake-up system call by the last thread to arrive, on the
 * critical path of every time step (a batch-1 step is ~1 us of work here). Here each thread
 * publishes the number of the barrier it reached in its own cache line and waits for the others'
 * numbers by spinning (pause). A spin that lasts longer than FR_TEAM_SPIN_NS means the awaited
 * thread has lost its processor (another pool's spinning threads, a busy process, more callers
 * than cores): the waiter then sleeps on a futex until the awaited thread arrives (and wakes it),
 * so that it stops taking the processor from the thread it waits for.
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

/* Polls before a wait starts to look at the clock (a balanced step's wait ends well before). */
#define FR_TEAM_SPINS 256
/* Nanoseconds a wait spins before it sleeps: far more than a quiet team's imbalance on a step
   of up to a few hundred microseconds, far less than a scheduler's time slice (~3 ms). */
#define FR_TEAM_SPIN_NS 50000
/* Nanoseconds (from the wait's start) until which it then yields before it sleeps. */
#define FR_TEAM_YIELD_NS 1000000

/* One thread's arrival count, alone in a cache line, with what a sleeping waiter needs. */
typedef struct {
    _Atomic int64_t n;         /* the last barrier this thread reached */
    _Atomic int32_t sleepers;  /* threads asleep (or about to sleep) on n's low 32 bits */
    char pad[64 - sizeof(int64_t) - sizeof(int32_t)];
} fr_team_flag;

/* Flags for nt threads, every count 0 (NULL when out of memory); free with fr_team_free. */
fr_team_flag *fr_team_new(int nt);

/* Free flags from fr_team_new (NULL is ignored). */
void fr_team_free(fr_team_flag *f);

/* Wake every thread asleep on flag f (the slow path of an arrival). */
void fr_team_wake(fr_team_flag *f);

/* Wait until f->n >= k: spin up to FR_TEAM_SPIN_NS, yield up to FR_TEAM_YIELD_NS, then sleep (or
   go on yielding where the sleep's process-wide barrier, membarrier, is not available). */
void fr_team_wait(fr_team_flag *f, int64_t k);

/* Sleep until f->n >= k, without spinning first (a thread parked for the rest of a pass). */
void fr_team_sleep(fr_team_flag *f, int64_t k);

/* Thread tid's arrival at number k (its writes before are visible to a thread that sees it),
   waking the threads asleep on its flag; the first half of fr_team_barrier. */
static inline void fr_team_arrive(fr_team_flag *f, int tid, int64_t k) {
    fr_team_flag *me = &f[tid];
    /* one store: a second one to this line (which the others are polling) would take it back
       from them (measured: 12% of a batch-1 LSTM(64) call); sleepers wait on n's low half */
    atomic_store_explicit(&me->n, k, memory_order_release);
    /* No fence here (a locked store costs ~16% of a batch-1 LSTM(64) call): a waiter sleeps only
       after counting itself in sleepers and a process-wide barrier (fr_team_wait: membarrier),
       which orders that count before this load or this arrival before its recheck. */
    atomic_signal_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&me->sleepers, memory_order_relaxed) > 0) fr_team_wake(me);
}

/* Barrier number k (1, 2, ... in order) for thread tid of nt: returns when all nt threads have
   arrived at it; every thread's writes before its arrival are visible to all after. */
static inline void fr_team_barrier(fr_team_flag *f, int tid, int nt, int64_t k) {
    fr_team_arrive(f, tid, k);
    for (int i = 0; i < nt; i++) {
        if (i == tid) continue;
        int spins = 0;
        while (atomic_load_explicit(&f[i].n, memory_order_acquire) < k) {
            if (++spins < FR_TEAM_SPINS) {
                FR_TEAM_PAUSE();
            } else {
                fr_team_wait(&f[i], k);
                break;
            }
        }
    }
}

#endif
