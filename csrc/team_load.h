/*
 * team_load.h — what a recurrence pass knows of the machine it actually gets, and the thread count
 * it picks from that. Internal, not part of the public API.
 *
 * Process-wide state, all atomics: the passes in flight (concurrent callers share the thread
 * budget instead of each spinning a full team against the others); when the last team finished
 * (after FR_LOAD_IDLE_NS of idle, the team's threads sleep and waking them has a cost); the wake
 * cost measured on the passes that paid it (the delay until the last thread of the team starts);
 * the serial speed measured on the passes run (nanoseconds per flop); and until when the machine
 * counts as contended (a recent pass's threads were off their cores for a large part of its time:
 * waiting for the processor or asleep in the per-step barrier, because other pools' threads, other
 * processes or other callers hold the cores), during which teams are halved.
 */
#ifndef FASTRNN_TEAM_LOAD_H
#define FASTRNN_TEAM_LOAD_H

#include <stdint.h>

/* Idle time after which the team's threads (and cores) are asleep. libgomp's threads spin about
   300000 polls (under a millisecond) before they sleep on a futex. */
#define FR_LOAD_IDLE_NS 1000000
/* The wake cost assumed until one is measured, ns. Measured on the 2-core development VM after
   100 ms idle: 2 threads cost 3.4 ms against 0.36 ms on 1 for a batch-1 LSTM(64), T = 100
   (the report: 11.8 ms against 0.43 ms); the team's own estimate there: 1 to 5 ms. */
#define FR_LOAD_WAKE_NS 1000000
/* The serial speed assumed until one is measured, ns per flop (50 GFLOP/s; one AVX-512 core of
   the development VM measures 50 to 100, an AVX2 core about half). */
#define FR_LOAD_NS_PER_FLOP 0.02
/* Share of a pass's thread time spent off the processor from which the machine counts as
   contended. */
#define FR_LOAD_CONTENDED_SHARE 0.2
/* Off-processor time below which a pass never marks the machine contended, ns (one preemption
   of a sub-millisecond pass is not a machine held by others). */
#define FR_LOAD_CONTENDED_MIN_NS 200000
/* How long the machine counts as contended after such a pass (at least), ns. */
#define FR_LOAD_CONTENDED_NS 50000000

/* A pass's entry in the process-wide load: fill with fr_load_enter, end with fr_load_leave. */
typedef struct {
    int64_t t_enter; /* clock at entry, ns */
    int inflight;    /* passes in flight at entry, this one included */
    int idle;        /* whether the team had been idle for FR_LOAD_IDLE_NS at entry */
} fr_load_ticket;

/* Monotonic clock, nanoseconds. */
int64_t fr_load_now_ns(void);

/* Count a pass in (before it plans its team). */
void fr_load_enter(fr_load_ticket *t);

/* Threads for a pass that would use `want` (the size-based count, already capped by the caller's
   budget `nthreads`) for `flops` of work in all: the share of the budget left to it by the
   passes in flight, halved while the machine is contended, 1 where waking an idle team costs
   more than the threads would save. Always within [1, want]. */
int fr_load_threads(const fr_load_ticket *t, int nthreads, int want, double flops);

/* Count a pass out: it ran nt threads over `flops` of work; wake_ns: the delay until its last
   thread started (0 when nt == 1); off_ns: its threads' total time off the processor while in
   the pass (wall minus CPU time; negative: not measured). */
void fr_load_leave(const fr_load_ticket *t, int nt, double flops, int64_t wake_ns,
                   int64_t off_ns);

/* CPU time of the calling thread, nanoseconds. */
int64_t fr_load_thread_cpu_ns(void);

/* The share of a budget of nthreads left to a parallel region outside a pass by the passes in
   flight (at least 1). */
int fr_load_share(int nthreads);

/* Count every pass out (a forked child's handler: the passes in flight were its parent's). */
void fr_load_forget_inflight(void);

/* The current estimates, for the benchmark and tests: wake cost (ns), serial speed (ns per flop
   times 1e6), passes in flight, whether contended now. */
void fr_load_stats(int64_t *wake_ns, int64_t *ns_per_mflop, int *inflight, int *contended);

#endif
