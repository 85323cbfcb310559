/*
 * team_load.c — the process-wide load a recurrence pass sees and the thread count it picks
 * (team_load.h). Estimates are exponential moving averages kept in atomics (a race between two
 * updates loses one sample, which is harmless).
 */
#define _GNU_SOURCE
#include "team_load.h"

#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>

static _Atomic int inflight;
static _Atomic int64_t last_end_ns;        /* when the last pass with a team ended (0: never) */
static _Atomic int64_t last_any_ns;        /* when the last pass of any size ended (0: never) */
static _Atomic int64_t wake_est_ns = FR_LOAD_WAKE_NS;
static _Atomic int64_t ns_per_gflop = (int64_t)(FR_LOAD_NS_PER_FLOP * 1e9);
static _Atomic int64_t contended_until_ns; /* 0: not contended */
static _Atomic int64_t bucket_empty_ns;    /* when the preemption bucket will be empty */
static _Atomic int64_t preempts_seen;      /* preemptions seen in all (for the stats) */

int64_t fr_load_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fr_load_enter(fr_load_ticket *t) {
    t->inflight = atomic_fetch_add_explicit(&inflight, 1, memory_order_relaxed) + 1;
    t->t_enter = fr_load_now_ns();
    /* the team sleeps, and no pass ran lately: calls come apart (a stream with pauses), each
       would pay the wake. Calls that come close together pay it once and find the team warm. */
    const int64_t team = atomic_load_explicit(&last_end_ns, memory_order_relaxed);
    const int64_t any = atomic_load_explicit(&last_any_ns, memory_order_relaxed);
    t->first = team == 0;
    t->warm = team != 0 && t->t_enter - team <= FR_LOAD_IDLE_NS;
    t->idle = !t->warm &&
              (any == 0 || t->t_enter - any > FR_LOAD_IDLE_NS);
}

int fr_load_threads(const fr_load_ticket *t, int nthreads, int want, double flops) {
    int nt = want;
    /* concurrent passes: this one's share of the budget */
    const int share = nthreads / (t->inflight > 0 ? t->inflight : 1);
    if (nt > share) nt = share;
    if (nt > 1 && t->t_enter < atomic_load_explicit(&contended_until_ns, memory_order_relaxed))
        nt = (nt + 1) / 2;
    if (nt > 1 && t->idle) {
        /* the threads save (1 - 1/nt) of the serial time; waking them costs wake_est */
        const double serial = flops * 1e-9 *
                              (double)atomic_load_explicit(&ns_per_gflop, memory_order_relaxed);
        const double wake = (double)atomic_load_explicit(&wake_est_ns, memory_order_relaxed);
        if (serial * (1.0 - 1.0 / nt) < 2.0 * wake) nt = 1;
    }
    return nt < 1 ? 1 : nt;
}

/* avg += (x - avg) / 4 */
static void ema(_Atomic int64_t *avg, int64_t x) {
    const int64_t a = atomic_load_explicit(avg, memory_order_relaxed);
    atomic_store_explicit(avg, a + (x - a) / 4, memory_order_relaxed);
}

int64_t fr_load_thread_preempts(void) {
#ifdef RUSAGE_THREAD
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) return -1;
    return (int64_t)ru.ru_nivcsw;
#else
    return -1;
#endif
}

int fr_load_preempt_bucket(int64_t *full, int64_t start, int64_t now, int64_t n) {
    /* the bucket drained until the pass started; its preemptions came in during the pass, which
       drained them as they came */
    const int64_t cap = (int64_t)FR_LOAD_PREEMPT_MARK * FR_LOAD_PREEMPT_DRAIN_NS;
    int64_t f = (*full > start ? *full : start) + n * FR_LOAD_PREEMPT_DRAIN_NS;
    if (f > now + cap) f = now + cap; /* capped: once contention ends, it drains within cap */
    *full = f;
    /* holding more than MARK - 1 (a drained preemption leaves a part of one) */
    return f - now > cap - FR_LOAD_PREEMPT_DRAIN_NS;
}

void fr_load_leave(const fr_load_ticket *t, int nt, double flops, int64_t wake_ns,
                   int64_t preempts) {
    const int64_t now = fr_load_now_ns(), wall = now - t->t_enter;
    /* a warm team's thread that starts late waited for a processor: count it as a preemption */
    if (nt > 1 && t->warm && wake_ns > FR_LOAD_LATE_NS)
        preempts = (preempts > 0 ? preempts : 0) + 1;
    /* the pool's first start: its threads sit where the scheduler first put them (perhaps
       sharing the caller's processor until it moves one), which says nothing of later passes */
    if (preempts > 0 && !(nt > 1 && t->first)) {
        /* even a pass of one thread that loses its core marks the machine: more threads would
           lose theirs more often. A race between two passes' updates loses one's preemptions. */
        atomic_fetch_add_explicit(&preempts_seen, preempts, memory_order_relaxed);
        int64_t full = atomic_load_explicit(&bucket_empty_ns, memory_order_relaxed);
        const int mark = fr_load_preempt_bucket(&full, t->t_enter, now, preempts);
        atomic_store_explicit(&bucket_empty_ns, full, memory_order_relaxed);
        if (mark) {
            const int64_t hold = 4 * wall > FR_LOAD_CONTENDED_NS ? 4 * wall : FR_LOAD_CONTENDED_NS;
            atomic_store_explicit(&contended_until_ns, now + hold, memory_order_relaxed);
        }
    }
    if (nt > 1) {
        /* the first team's start is the pool's creation, paid once: not a wake */
        if (t->idle && !t->first && wake_ns > 0) ema(&wake_est_ns, wake_ns);
        atomic_store_explicit(&last_end_ns, now, memory_order_relaxed);
    } else if (flops > 1e5 && t->inflight == 1) {
        /* a serial pass alone: its speed (small passes are dominated by fixed costs) */
        ema(&ns_per_gflop, (int64_t)((double)wall / flops * 1e9));
    }
    atomic_store_explicit(&last_any_ns, now, memory_order_relaxed);
    atomic_fetch_sub_explicit(&inflight, 1, memory_order_relaxed);
}

int fr_load_share(int nthreads) {
    const int others = atomic_load_explicit(&inflight, memory_order_relaxed);
    const int share = nthreads / (others + 1);
    return share < 1 ? 1 : share;
}

void fr_load_forget_inflight(void) {
    atomic_store_explicit(&inflight, 0, memory_order_relaxed);
    atomic_store_explicit(&last_end_ns, 0, memory_order_relaxed);
}

void fr_load_stats(int64_t *wake_ns, int64_t *ns_per_mflop, int *n_inflight, int *contended,
                   int64_t *preempts) {
    *wake_ns = atomic_load_explicit(&wake_est_ns, memory_order_relaxed);
    *ns_per_mflop = atomic_load_explicit(&ns_per_gflop, memory_order_relaxed) / 1000;
    *n_inflight = atomic_load_explicit(&inflight, memory_order_relaxed);
    *contended = fr_load_now_ns() <
                 atomic_load_explicit(&contended_until_ns, memory_order_relaxed);
    *preempts = atomic_load_explicit(&preempts_seen, memory_order_relaxed);
}
