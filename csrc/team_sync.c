/*
 * team_sync.c — allocation and the slow paths (timed spin, futex sleep, wake) of team_sync.h's
 * barrier. Without futexes (not Linux) the sleep is a sched_yield loop.
 */
#define _GNU_SOURCE
#include "team_sync.h"

#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* The longest single sleep: a wake-up missed for any reason costs at most this much. */
#define FR_TEAM_SLEEP_NS 2000000

fr_team_flag *fr_team_new(int nt) {
    if (nt < 1) return NULL;
    fr_team_flag *f = aligned_alloc(64, (size_t)nt * sizeof(fr_team_flag));
    if (f == NULL) return NULL;
    for (int i = 0; i < nt; i++) {
        atomic_init(&f[i].n, 0);
        atomic_init(&f[i].sleepers, 0);
    }
    return f;
}

void fr_team_free(fr_team_flag *f) { free(f); }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The futex word: the low 32 bits of f->n (the kernel reads them as they are in memory). */
static uint32_t *futex_word(fr_team_flag *f) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)(void *)&f->n + 1;
#else
    return (uint32_t *)(void *)&f->n;
#endif
}

void fr_team_wake(fr_team_flag *f) {
#ifdef __linux__
    syscall(SYS_futex, futex_word(f), FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)f;
#endif
}

#ifdef __linux__
#include <linux/membarrier.h>
#include <pthread.h>

static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;
static int membarrier_ok;

static void membarrier_register(void) {
    membarrier_ok =
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}
#endif

/* A full memory barrier on every running thread of the process (the heavy side of the
   barrier's asymmetric fence: team_sync.h's arrivals use none); 0 where there is none
   (no membarrier, a forked child whose registration did not carry over, a tool's emulation). */
static int process_barrier(void) {
#ifdef __linux__
    pthread_once(&membarrier_once, membarrier_register);
    return membarrier_ok &&
           syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
    return 0;
#endif
}

/* Sleep while n's low 32 bits == w (or up to FR_TEAM_SLEEP_NS; spurious returns are fine). */
static void sleep_on(fr_team_flag *f, uint32_t w) {
#ifdef __linux__
    const struct timespec limit = {0, FR_TEAM_SLEEP_NS};
    syscall(SYS_futex, futex_word(f), FUTEX_WAIT_PRIVATE, w, &limit, NULL, 0);
#else
    (void)f;
    (void)w;
    sched_yield();
#endif
}

void fr_team_wait(fr_team_flag *f, int64_t k) {
    const int64_t t0 = now_ns();
    int64_t t = t0;
    while (atomic_load_explicit(&f->n, memory_order_acquire) < k && t - t0 < FR_TEAM_SPIN_NS) {
        for (int i = 0; i < 64; i++) FR_TEAM_PAUSE();
        t = now_ns();
    }
    /* then yield: a processor another runnable thread wants goes to it, but an idle one stays
       with us. Sleeping at once would let an idle virtual processor halt, and its wake-up (up to
       ~100 us) would make the awaited thread sleep at the next step in turn: measured right after
       torch's calls, a batch-1 LSTM(64) call stayed at 3-5 ms against 0.2 ms. */
    while (atomic_load_explicit(&f->n, memory_order_acquire) < k && t - t0 < FR_TEAM_YIELD_NS) {
        sched_yield();
        t = now_ns();
    }
    fr_team_sleep(f, k);
}

void fr_team_sleep(fr_team_flag *f, int64_t k) {
    while (atomic_load_explicit(&f->n, memory_order_acquire) < k) {
        const uint32_t w = (uint32_t)atomic_load_explicit(&f->n, memory_order_seq_cst);
        atomic_fetch_add_explicit(&f->sleepers, 1, memory_order_seq_cst);
        /* after the process-wide barrier, the awaited thread either has arrived (seen below) or
           will see sleepers > 0 when it does, and wake us */
        if (!process_barrier())
            sched_yield();
        else if (atomic_load_explicit(&f->n, memory_order_seq_cst) < k)
            sleep_on(f, w);
        atomic_fetch_sub_explicit(&f->sleepers, 1, memory_order_seq_cst);
    }
}
