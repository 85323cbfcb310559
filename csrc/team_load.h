/*
 * team_load.h — what a recurrence pass knows of the machine it actually gets, and the thread count
 * it picks from that. Internal, not part of the public API.
 *
 * Process-wide state, all atomics: the passes in flight (concurrent callers share the thread
 * budget instead of each spinning a full team against the others); when the last team finished
 * (after FR_LOAD_IDLE_NS of idle, the team's threads sleep and waking them has a cost); the wake
 * cost measured on the passes that paid it (the delay until the last thread of the team starts);
 * the serial speed measured on the passes run (nanoseconds per flop); the recent time the team's
 * threads waited for a processor (runnable but not running: other pools' spinning threads, other
 * processes, other callers hold the cores; Linux's per-thread schedstat), a leaky bucket that
 * drains FR_LOAD_WAIT_SHARE of the time that passes; and until when the machine counts as
 * contended (the bucket held more than FR_LOAD_WAIT_MARK_NS), during which teams are halved. A
 * warm team's thread that starts late (FR_LOAD_LATE_NS) waited for a processor too. Waits in the
 * first FR_LOAD_SETTLE_NS after the thread pool starts do not count.
 *
 * Why the wait for a processor and not wall minus CPU time: a thread asleep in the per-step
 * barrier, a team still starting (pool start, a wake from sleep) and a page fault take wall time
 * without CPU time on a quiet machine, where no thread waits for a processor. And not the count
 * of preemptions: a thread that sleeps in the barrier and then waits for its processor to come
 * free is not preempted, and that is how a loaded machine slows a team most.
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
/* The share of the time that passes which the wait bucket drains: waits below about this share
   of a team's time never mark the machine. */
#define FR_LOAD_WAIT_SHARE 0.125
/* Wait in the bucket above which the machine counts as contended, ns (a burst allowance). */
#define FR_LOAD_WAIT_MARK_NS 1000000
/* A delay until the last thread of a warm team starts (its threads still spin or have just gone
   to sleep; a quiet machine starts them within tens of microseconds) from which that thread
   waited for a processor: that delay counts as a wait, ns. */
#define FR_LOAD_LATE_NS 500000
/* Time after the first team pass (the thread pool's start) during which waits do not mark the
   machine, ns: the scheduler is still placing the new threads (on the development VM, with the
   caller's processor shared at first, the second and third team passes waited 9-14 ms for a
   processor with nothing else running: a libgomp thread spinning where the other must run). */
#define FR_LOAD_SETTLE_NS 100000000
/* How long the machine counts as contended after it is marked (at least), ns. */
#define FR_LOAD_CONTENDED_NS 50000000

/* A pass's flops from which a team that the load would cut to half or less shares its rows
   instead (fr_load_threads), unless a pass on shared rows lost within FR_LOAD_SHARE_BACKOFF_NS
   (fr_load_share_done): about 20 ms of one AVX-512 core's work (the serial speed estimate, which
   small passes' fixed costs drag down to 40-50 GFLOP/s in a mixed process, would put a 7 ms pass
   near any time floor). On a shorter pass, one that lasts a few of the scheduler's time slices,
   a thread that loses its processor holds its chunk for a slice and the pass waits for it.
   Measured on the 2-vCPU development VM, LSTM (T, 24, 100, 200) inference (T = 60: 0.69 GFLOP),
   time over the quiet time (median of 16-24 calls), shared rows against one thread: beside a
   busy process, T = 60 (7 ms serial) 2.42-2.54x against 1.93-2.04x, T = 120 1.95x against
   2.08x, T = 200 1.86x against 2.04x, T = 400 (46 ms) 1.52-1.63x against 2.02-2.07x; right after
   a numpy matmul (OpenBLAS's worker spinning), T = 60 1.25-1.54x, but a third of the calls
   2.7x (against 2.10x, always), T = 200 1.80x against 2.02x, T = 400 1.51-1.55x against
   1.98-2.01x. */
#define FR_LOAD_SHARE_FLOPS 2.0e9
/* How long teams do not share rows after a pass on shared rows lost, ns. */
#define FR_LOAD_SHARE_BACKOFF_NS 1000000000
/* A pass's serial time (estimated) from which it reads how many threads are runnable beside it
   (fr_load_free_threads: a microsecond or two), ns. */
#define FR_LOAD_RUNNABLE_MIN_NS 100000
/* How far apart two checks that see other runnable threads may be for the second to cut a
   team, ns. One sighting is not enough: on Linux 6.12 and later a thread that has just gone to
   sleep can stay counted as runnable (delayed dequeue) for as long as the processors stay busy,
   and on the development VM 5% of the back-to-back 3 ms calls of one process saw such a thread
   (for 400 us and more) while only the caller and its worker were running. Another pool's
   spinning threads (OpenBLAS spins about 100 ms after a call) or a busy process show in check
   after check. */
#define FR_LOAD_SEEN_NS 250000000
/* The worker threads of a caller's OpenMP pool whose state is read (the rest count as others). */
#define FR_LOAD_MAX_WORKERS 64

/* A pass's entry in the process-wide load: fill with fr_load_enter, end with fr_load_leave. */
typedef struct {
    int64_t t_enter; /* clock at entry, ns */
    int inflight;    /* passes in flight at entry, this one included */
    int idle;        /* whether the team had been idle for FR_LOAD_IDLE_NS at entry */
    int warm;        /* whether a team ran within FR_LOAD_IDLE_NS before entry */
    int first;       /* whether no team ran before (this one may start the thread pool) */
} fr_load_ticket;

/* Monotonic clock, nanoseconds. */
int64_t fr_load_now_ns(void);

/* Count a pass in (before it plans its team). */
void fr_load_enter(fr_load_ticket *t);

/* Threads for a pass that would use `want` (the size-based count, already capped by the caller's
   budget `nthreads`) for `flops` of work in all: the share of the budget left to it by the
   passes in flight, halved while the machine is contended, 1 where waking an idle team costs
   more than the threads would save. Always within [1, want]. Where shared is not NULL, *shared
   gets the team a pass that can share its rows takes instead (recurrence.c: its threads take
   chunks of rows in turn, so that one that loses its processor holds up only the chunk it
   holds): the count before the machine's load (contention, other runnable threads) cut it to
   half or less, for a pass of FR_LOAD_SHARE_FLOPS or more (waking that many paying where the
   team is idle), unless a pass on shared rows lost lately; 0 otherwise. */
int fr_load_threads(const fr_load_ticket *t, int nthreads, int want, double flops, int *shared);
/* Its rule for *shared, pure: a team of `before` threads that the load cut to nt, a pass of
   `flops` work and serial_ns estimated serial time, idle the team, wake_ns the cost of waking it,
   lost whether a pass on shared rows lost within FR_LOAD_SHARE_BACKOFF_NS. */
int fr_load_share_rule(int before, int nt, double flops, double serial_ns, int idle,
                       double wake_ns, int lost);
/* A thread of a pass on shared rows that ran `mine` of its n segments in busy_ns and waited
   wait_ns for chunks others held: where the pass lost against one thread (fr_load_share_lost_rule),
   teams stop sharing rows for FR_LOAD_SHARE_BACKOFF_NS. */
void fr_load_share_done(int64_t mine, int64_t n, int64_t busy_ns, int64_t wait_ns);
/* Its rule, pure: lost where the wait was longer than this thread would have taken to run the
   others' segments itself (at its own time per segment): one thread would have finished first. */
int fr_load_share_lost_rule(int64_t mine, int64_t n, int64_t busy_ns, int64_t wait_ns);

/* The calling thread's table of its OpenMP pool's workers (fr_load_note_worker fills it), or NULL
   where it cannot be had (out of memory, not Linux). Owned by the calling thread. */
int *fr_load_worker_slots(void);

/* In a team's region: worker k (1 <= k) of the caller whose table is slots (NULL: nothing) notes
   its thread id, so that the caller can tell its own idle workers' spinning from other load. */
void fr_load_note_worker(int *slots, int k);

/* A processor set, as the system's affinity calls take it (1024 processors). */
typedef struct {
    unsigned long bits[1024 / (8 * sizeof(unsigned long))];
} fr_load_cpus;

/* The processor the calling thread runs on now, -1 where the system does not tell. */
int fr_load_cpu(void);

/* A team's worker that finds itself on processor cpu, that of the team's first thread, moves to
   the other processors it may use (its affinity mask without cpu), saving its mask in *saved:
   1 if it moved (fr_load_restore_cpus puts the mask back; the thread stays where it is), 0 if
   not (another processor, cpu < 0, no other processor allowed, not Linux). Why: Linux often
   queues a woken thread on its waker's processor, and moves it to an idle one only at the next
   balancing, a scheduler tick later; until then the two take turns on one processor while
   another idles (measured after 150 ms idle: 2 calls in 6 with both threads waiting ~4 ms,
   5-8 times the call's usual time, and a wait that marked the machine contended). */
int fr_load_move_off(int cpu, fr_load_cpus *saved);

/* Put back the calling thread's affinity mask saved by fr_load_move_off. */
void fr_load_restore_cpus(const fr_load_cpus *saved);

/* What a team's threads need of their caller: its workers' table and its processor (NULL and -1
   for a team of one). Fill with fr_load_region_open before the parallel region. */
typedef struct {
    int *workers;
    int cpu0;
} fr_load_region;

/* The caller's side of a region of nt threads (fr_load_worker_slots, fr_load_cpu). */
fr_load_region fr_load_region_open(int nt);

/* Thread k's start in the region: note it as the caller's worker and, for k >= 1, move it off the
   caller's processor if it was queued there (fr_load_move_off): 1 if it moved, and then
   fr_load_restore_cpus(saved) at its end. */
int fr_load_region_enter(const fr_load_region *r, int k, fr_load_cpus *saved);

/* For the tests: fr_load_move_off from the processor the calling thread is on, then
   fr_load_restore_cpus: 1 if it ran on another processor in between, 0 if it did not move, -1
   where it could not (one processor allowed, not Linux). */
int fr_load_probe_move(void);

/* Threads runnable on the machine now besides the caller and its own pool's workers (which spin
   for a while between passes, libgomp's GOMP_SPINCOUNT, and are free for its next team): other
   pools' spinning threads, other callers, other processes. -1 where the system does not tell (not
   Linux) or cannot tell for this process (its affinity leaves out some online processors, whose
   threads the count would include). Reads /proc/loadavg and the states of the caller's workers. */
int fr_load_others_runnable(void);

/* Processors free now for a team of want threads (fr_load_free_rule on the reading above; the
   workers' states are read only where the others could matter, and not where at most
   `spinning` threads besides the caller are runnable: the caller knows that many of its own
   workers spin, a team having just ended; others must have been seen by the check before as
   well, FR_LOAD_SEEN_NS): within [1, want], want where the system does not tell. */
int fr_load_free_threads(int want, int spinning);

/* For the tests: run an OpenMP region of nt threads whose workers note themselves, then return
   how many of the calling thread's workers are runnable now (-1 where states cannot be read). */
int fr_load_probe_workers(int nt);

/* The rule, pure: processors free for a team of want threads on ncpu processors where `running`
   threads are runnable (the caller included) of which `own` are the caller's idle workers: within
   [1, want]. */
int fr_load_free_rule(int want, int ncpu, int running, int own);

/* Count a pass out: it ran nt threads over `flops` of work; wake_ns: the delay until its last
   thread started (0 when nt == 1); wait_ns: its threads' time waiting for a processor while in
   the pass (the sum of fr_load_thread_wait_ns differences; negative: not measured). */
void fr_load_leave(const fr_load_ticket *t, int nt, double flops, int64_t wake_ns,
                   int64_t wait_ns);

/* A parallel region of nt threads outside a pass (a GEMM, an optimizer or row update) ended now:
   for nt > 1 its workers spin as a pass's would, so the next pass finds the team warm (without
   this, a training step whose dx and weight-gradient GEMMs took over FR_LOAD_IDLE_NS made its next
   pass count the team as idle and run on one thread: LSTM (50,20,70,130) backward 1.45 ms
   against 0.75). Not a pass: no speed or wait sample, and the pool's start stays a pass's. */
void fr_load_region_done(int nt);
/* When the last such region of more than one thread ended (fr_load_now_ns clock; 0: none yet). */
int64_t fr_load_region_end_ns(void);
/* The warm rule, pure: a pass entering at t_enter finds the team warm where the last pass with a
   team ended at team (0: never) or the last region outside a pass at region (0: never), whichever
   is later, at most FR_LOAD_IDLE_NS before. */
int fr_load_warm_rule(int64_t t_enter, int64_t team, int64_t region);

/* Nanoseconds the calling thread has waited for a processor so far (runnable, not running), or
   -1 where the system does not tell (not Linux, no schedstat). */
int64_t fr_load_thread_wait_ns(void);

/* The wait bucket's rule, pure: given the time *full at which the bucket would be empty, a pass
   that ran from start to now and whose threads waited wait_ns >= 0 for a processor (counted in
   as the bucket drains), store the new empty time in *full (the bucket holds at most twice
   FR_LOAD_WAIT_MARK_NS) and return whether it holds more than FR_LOAD_WAIT_MARK_NS (the machine
   is contended). */
int fr_load_wait_bucket(int64_t *full, int64_t start, int64_t now, int64_t wait_ns);

/* The share of a budget of nthreads left to a parallel region outside a pass by the passes in
   flight (at least 1). */
int fr_load_share(int nthreads);

/* Count every pass out and forget the last team, the pool's start and the calling thread's
   schedstat descriptor (a forked child's handler: the passes in flight were its parent's, its
   thread pool is new, and the descriptor reads the parent's thread). */
void fr_load_forget_inflight(void);

/* Passes in flight now (a team checks it every few steps: another pass entering makes it go on
   alone). */
int fr_load_inflight(void);

/* Whether t's pass has company: another pass in flight at its entry, or one that entered beside
   another within FR_LOAD_IDLE_NS before it (concurrent callers taking turns; their pools'
   workers may still be spinning). */
int fr_load_shared_lately(const fr_load_ticket *t);
/* Its rule: a pass entering at t_enter with inflight passes in flight (itself included), the last
   entry beside another at shared (0: none yet). */
int fr_load_shared_rule(int inflight, int64_t t_enter, int64_t shared);

/* Teams taken smaller than asked by fr_load_free_threads so far (for the benchmark). */
int64_t fr_load_cuts(void);
/* Workers moved off the caller's processor so far (fr_load_move_off; stats). */
int64_t fr_load_moves(void);
/* The testing knob: on, fr_load_move_off moves a worker off whatever processor it is on (as if
   it shared the caller's), so that the move and the mask's return run on every team pass. */
void fr_load_force_moves(int on);

/* The current estimates, for the benchmark and tests: wake cost (ns), serial speed (ns per flop
   times 1e6), passes in flight, whether contended now, the team threads' waits for a processor
   so far in all (ns). */
void fr_load_stats(int64_t *wake_ns, int64_t *ns_per_mflop, int *inflight, int *contended,
                   int64_t *waited_ns);

#endif
