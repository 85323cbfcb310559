/*
 * team_load.c — the process-wide load a recurrence pass sees and the thread count it picks
 * (team_load.h). Estimates are exponential moving averages kept in atomics (a race between two
 * updates loses one sample, which is harmless).
 */
#define _GNU_SOURCE
#include "team_load.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __linux__
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

static _Atomic int inflight;
static _Atomic int64_t last_end_ns;        /* when the last pass with a team ended (0: never) */
static _Atomic int last_team;              /* the threads of that pass (or later region) */
static _Atomic int64_t cuts;               /* teams cut for other runnable threads (stats) */
static _Atomic int64_t moves;              /* workers moved off the caller's processor (stats) */
static _Atomic int force_moves;            /* the testing knob of fr_load_force_moves */
static _Atomic int64_t seen_ns;            /* when the last check saw others (0: it saw none) */
static _Atomic int64_t last_any_ns;        /* when the last pass of any size ended (0: never) */
static _Atomic int64_t last_region_ns;     /* when the last team region outside a pass ended */
static _Atomic int64_t share_lost_ns;      /* when a pass on shared rows last lost (0: never) */
static _Atomic int64_t shared_ns;          /* when a pass last entered beside another (0: never) */
static _Atomic int64_t wake_est_ns = FR_LOAD_WAKE_NS;
static _Atomic int64_t ns_per_gflop = (int64_t)(FR_LOAD_NS_PER_FLOP * 1e9);
static _Atomic int64_t contended_until_ns; /* 0: not contended */
static _Atomic int64_t bucket_empty_ns;    /* when the wait bucket will be empty */
static _Atomic int64_t waited_all_ns;      /* the waits counted in all (for the stats) */
static _Atomic int64_t pool_start_ns;      /* when the first team ended (0: none yet) */

int64_t fr_load_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void fr_load_enter(fr_load_ticket *t) {
    t->inflight = atomic_fetch_add_explicit(&inflight, 1, memory_order_relaxed) + 1;
    t->t_enter = fr_load_now_ns();
    if (t->inflight > 1) atomic_store_explicit(&shared_ns, t->t_enter, memory_order_relaxed);
    /* the team sleeps, and no pass ran lately: calls come apart (a stream with pauses), each
       would pay the wake. Calls that come close together pay it once and find the team warm. */
    const int64_t team = atomic_load_explicit(&last_end_ns, memory_order_relaxed);
    const int64_t any = atomic_load_explicit(&last_any_ns, memory_order_relaxed);
    const int64_t region = atomic_load_explicit(&last_region_ns, memory_order_relaxed);
    t->first = team == 0;
    t->warm = fr_load_warm_rule(t->t_enter, team, region);
    t->idle = !t->warm &&
              (any == 0 || t->t_enter - any > FR_LOAD_IDLE_NS);
}

/* Whether a team of n threads pays for its start: not idle, or the (1 - 1/n) of the serial time
   its threads save is worth twice the cost of waking them. */
static int wake_pays(int idle, int n, double serial_ns, double wake_ns) {
    return !idle || n < 2 || serial_ns * (1.0 - 1.0 / n) >= 2.0 * wake_ns;
}

int fr_load_share_rule(int before, int nt, double flops, double serial_ns, int idle,
                       double wake_ns, int lost) {
    if (before < 2 || 2 * nt > before || flops < FR_LOAD_SHARE_FLOPS || lost) return 0;
    return wake_pays(idle, before, serial_ns, wake_ns) ? before : 0;
}

int fr_load_share_lost_rule(int64_t mine, int64_t n, int64_t busy_ns, int64_t wait_ns) {
    return mine >= 1 && n > mine &&
           (double)wait_ns > (double)(n - mine) * ((double)busy_ns / (double)mine);
}

void fr_load_share_done(int64_t mine, int64_t n, int64_t busy_ns, int64_t wait_ns) {
    if (fr_load_share_lost_rule(mine, n, busy_ns, wait_ns))
        atomic_store_explicit(&share_lost_ns, fr_load_now_ns(), memory_order_relaxed);
}

int fr_load_threads(const fr_load_ticket *t, int nthreads, int want, double flops, int *shared) {
    int nt = want;
    /* concurrent passes: this one's share of the budget */
    const int share = nthreads / (t->inflight > 0 ? t->inflight : 1);
    if (nt > share) nt = share;
    const int before = nt;
    if (nt > 1 && t->t_enter < atomic_load_explicit(&contended_until_ns, memory_order_relaxed))
        nt = (nt + 1) / 2;
    /* the pass's serial time, estimated from the measured speed */
    const double serial =
        flops * 1e-9 * (double)atomic_load_explicit(&ns_per_gflop, memory_order_relaxed);
    if (nt > 1) {
        /* other threads runnable now (another pool still spinning, a busy process, another
           caller): a team larger than the free processors would wait for them at every step;
           a team that ended within FR_LOAD_IDLE_NS left its workers spinning (libgomp spins
           for milliseconds between regions): as many runnable threads are taken for them */
        const int spinning =
            t->warm ? atomic_load_explicit(&last_team, memory_order_relaxed) - 1 : 0;
        if (serial >= FR_LOAD_RUNNABLE_MIN_NS) nt = fr_load_free_threads(nt, spinning);
    }
    /* after idle, waking the team costs wake_est */
    const double wake = (double)atomic_load_explicit(&wake_est_ns, memory_order_relaxed);
    if (shared) {
        const int64_t lost = atomic_load_explicit(&share_lost_ns, memory_order_relaxed);
        *shared = fr_load_share_rule(before, nt, flops, serial, t->idle, wake,
                                     lost != 0 && t->t_enter - lost < FR_LOAD_SHARE_BACKOFF_NS);
    }
    if (!wake_pays(t->idle, nt, serial, wake)) nt = 1;
    return nt < 1 ? 1 : nt;
}

/* avg += (x - avg) / 4 */
static void ema(_Atomic int64_t *avg, int64_t x) {
    const int64_t a = atomic_load_explicit(avg, memory_order_relaxed);
    atomic_store_explicit(avg, a + (x - a) / 4, memory_order_relaxed);
}

#ifdef __linux__
/* Each thread keeps its /proc/thread-self/schedstat open (an open costs microseconds, a read
   under one): the key's value is the descriptor + 1; the destructor closes it at thread exit,
   and a forked child forgets the forking thread's (it reads the parent's thread). */
static pthread_key_t stat_key;
static pthread_once_t stat_once = PTHREAD_ONCE_INIT;
static int stat_key_ok;

static void stat_close(void *v) { close((int)(intptr_t)v - 1); }

static void stat_init(void) { stat_key_ok = pthread_key_create(&stat_key, stat_close) == 0; }

static int stat_fd(void) {
    pthread_once(&stat_once, stat_init);
    if (!stat_key_ok) return -1;
    const intptr_t v = (intptr_t)pthread_getspecific(stat_key);
    if (v != 0) return (int)v - 1;
    const int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) pthread_setspecific(stat_key, (void *)(intptr_t)(fd + 1));
    return fd;
}

/* In a forked child: close the forking thread's descriptor (it reads the parent's thread). */
static void stat_forget(void) {
    if (!stat_key_ok) return;
    const intptr_t v = (intptr_t)pthread_getspecific(stat_key);
    if (v != 0) {
        close((int)v - 1);
        pthread_setspecific(stat_key, NULL);
    }
}
#endif

int fr_load_free_rule(int want, int ncpu, int running, int own) {
    int others = running - 1 - own;
    if (others < 0) others = 0;
    const int free = ncpu - others;
    return free < 1 ? 1 : (free > want ? want : free);
}

#ifdef __linux__
/* A caller's table of its pool's workers: their thread ids (written by the workers in the team's
   region, read by the caller after it) and the caller's open descriptors of their stat files. */
typedef struct {
    int tid[FR_LOAD_MAX_WORKERS];
    int fd_tid[FR_LOAD_MAX_WORKERS]; /* whose stat fd[k] reads (0: none open) */
    int fd[FR_LOAD_MAX_WORKERS];
} worker_table;

static pthread_key_t table_key;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static int table_key_ok;

static void table_clear(worker_table *w) {
    for (int k = 0; k < FR_LOAD_MAX_WORKERS; k++) {
        if (w->fd_tid[k] != 0) close(w->fd[k]);
        w->fd_tid[k] = 0;
        w->tid[k] = 0;
    }
}

static void table_free(void *v) {
    table_clear(v);
    free(v);
}

static void table_init(void) { table_key_ok = pthread_key_create(&table_key, table_free) == 0; }

static worker_table *my_table(int create) {
    pthread_once(&table_once, table_init);
    if (!table_key_ok) return NULL;
    worker_table *w = pthread_getspecific(table_key);
    if (w == NULL && create && (w = calloc(1, sizeof *w)) != NULL &&
        pthread_setspecific(table_key, w) != 0) {
        free(w);
        w = NULL;
    }
    return w;
}

/* Processors this process may run on, where they are all the online ones (0 otherwise: the
   system-wide runnable count would include threads on processors it cannot use). */
static int machine_cpus(void) {
    static _Atomic int cpus = -1;
    int n = atomic_load_explicit(&cpus, memory_order_relaxed);
    if (n < 0) {
        cpu_set_t set;
        const long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == online
                ? (int)online
                : 0;
        atomic_store_explicit(&cpus, n, memory_order_relaxed);
    }
    return n;
}

/* Threads runnable on the machine now, the caller included (the kernel's nr_running, the first
   number of /proc/loadavg's fourth field), or -1. */
static int runnable_once(void) {
    static _Atomic int fd = -1;
    int f = atomic_load_explicit(&fd, memory_order_relaxed);
    if (f < 0) {
        f = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
        if (f < 0) return -1;
        int expected = -1;
        if (!atomic_compare_exchange_strong(&fd, &expected, f)) { /* another thread opened it */
            close(f);
            f = expected;
        }
    }
    char buf[128];
    const ssize_t k = pread(f, buf, sizeof buf - 1, 0);
    if (k <= 0) return -1;
    buf[k] = '\0';
    /* "0.35 0.84 0.97 1/84 12178" */
    const char *p = buf;
    for (int field = 0; field < 3 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL) p++;
    }
    if (p == NULL) return -1;
    char *end;
    const long n = strtol(p, &end, 10);
    return end == p || *end != '/' || n < 1 ? -1 : (int)n;
}

/* The caller's workers that are runnable now (spinning between its passes). */
static int own_runnable(void) {
    worker_table *w = my_table(0);
    if (w == NULL) return 0;
    int n = 0;
    for (int k = 1; k < FR_LOAD_MAX_WORKERS; k++) {
        if (w->tid[k] == 0) continue;
        if (w->fd_tid[k] != w->tid[k]) {
            if (w->fd_tid[k] != 0) close(w->fd[k]);
            char path[64];
            snprintf(path, sizeof path, "/proc/self/task/%d/stat", w->tid[k]);
            w->fd[k] = open(path, O_RDONLY | O_CLOEXEC);
            w->fd_tid[k] = w->fd[k] >= 0 ? w->tid[k] : 0;
            if (w->fd_tid[k] == 0) { /* the worker has exited (a fork's prepare ends the pool) */
                w->tid[k] = 0;
                continue;
            }
        }
        char buf[256];
        const ssize_t len = pread(w->fd[k], buf, sizeof buf - 1, 0);
        if (len <= 0) { /* exited since */
            close(w->fd[k]);
            w->fd_tid[k] = 0;
            w->tid[k] = 0;
            continue;
        }
        buf[len] = '\0';
        /* "<tid> (<name>) <state> ...": the name may hold spaces and parentheses */
        const char *q = strrchr(buf, ')');
        if (q != NULL && q[1] == ' ' && q[2] == 'R') n++;
    }
    return n;
}
#endif

int *fr_load_worker_slots(void) {
#ifdef __linux__
    worker_table *w = my_table(1);
    return w ? w->tid : NULL;
#else
    return NULL;
#endif
}

int fr_load_cpu(void) {
#ifdef __linux__
    return sched_getcpu();
#else
    return -1;
#endif
}

fr_load_region fr_load_region_open(int nt) {
    const fr_load_region r = {nt > 1 ? fr_load_worker_slots() : NULL, nt > 1 ? fr_load_cpu() : -1};
    return r;
}

int fr_load_region_enter(const fr_load_region *r, int k, fr_load_cpus *saved) {
    fr_load_note_worker(r->workers, k);
    return k > 0 && fr_load_move_off(r->cpu0, saved);
}

int fr_load_move_off(int cpu, fr_load_cpus *saved) {
#ifdef __linux__
    _Static_assert(sizeof(fr_load_cpus) == sizeof(cpu_set_t), "fr_load_cpus is a cpu_set_t");
    if (atomic_load_explicit(&force_moves, memory_order_relaxed)) cpu = sched_getcpu();
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getcpu() != cpu) return 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0 || !CPU_ISSET(cpu, &set) ||
        CPU_COUNT(&set) < 2)
        return 0;
    memcpy(saved, &set, sizeof set);
    CPU_CLR(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) return 0;
    atomic_fetch_add_explicit(&moves, 1, memory_order_relaxed);
    return 1;
#else
    (void)cpu;
    (void)saved;
    return 0;
#endif
}

void fr_load_restore_cpus(const fr_load_cpus *saved) {
#ifdef __linux__
    cpu_set_t set;
    memcpy(&set, saved, sizeof set);
    (void)sched_setaffinity(0, sizeof set, &set);
#else
    (void)saved;
#endif
}

int fr_load_probe_move(void) {
    fr_load_cpus saved;
    /* the thread can be moved between reading its processor and fr_load_move_off's own read:
       try again then */
    for (int tries = 0; tries < 1000; tries++) {
        const int cpu = fr_load_cpu();
        if (cpu < 0) return -1;
        if (!fr_load_move_off(cpu, &saved)) {
            if (fr_load_cpu() != cpu) continue;
            return -1;
        }
        const int now = fr_load_cpu();
        fr_load_restore_cpus(&saved);
        return now != cpu;
    }
    return -1;
}

void fr_load_note_worker(int *slots, int k) {
#ifdef __linux__
    static _Thread_local int me;
    if (slots == NULL || k < 1 || k >= FR_LOAD_MAX_WORKERS) return;
    if (me == 0) me = (int)syscall(SYS_gettid);
    if (slots[k] != me) slots[k] = me;
#else
    (void)slots;
    (void)k;
#endif
}

int fr_load_others_runnable(void) {
#ifdef __linux__
    const int running = machine_cpus() > 0 ? runnable_once() : -1;
    if (running < 0) return -1;
    const int others = running - 1 - own_runnable();
    return others < 0 ? 0 : others;
#else
    return -1;
#endif
}

int fr_load_probe_workers(int nt) {
    int *slots = fr_load_worker_slots();
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        fr_load_note_worker(slots, omp_get_thread_num());
#endif
    }
#ifdef __linux__
    return slots ? own_runnable() : -1;
#else
    return -1;
#endif
}

int fr_load_free_threads(int want, int spinning) {
#ifdef __linux__
    /* cheapest first (a read is 1-2 us; a quiet back-to-back call takes one): one count, then the
       caller's own workers (spinning right after its last pass: taken as `spinning` without a
       look where they account for every other thread) */
    const int ncpu = machine_cpus();
    const int running = ncpu > 0 ? runnable_once() : -1;
    if (running < 0) return want;
    int free = want;
    if (ncpu - (running - 1) < want && running - 1 > spinning)
        free = fr_load_free_rule(want, ncpu, running, own_runnable());
    if (free >= want) {
        atomic_store_explicit(&seen_ns, 0, memory_order_relaxed);
        return want;
    }
    /* others seen: a team is cut only where the check before saw them too (FR_LOAD_SEEN_NS) */
    const int64_t now = fr_load_now_ns();
    const int64_t prev = atomic_exchange_explicit(&seen_ns, now, memory_order_relaxed);
    if (prev == 0 || now - prev > FR_LOAD_SEEN_NS) return want;
    atomic_fetch_add_explicit(&cuts, 1, memory_order_relaxed);
    return free;
#else
    return want;
#endif
}

int64_t fr_load_thread_wait_ns(void) {
#ifdef __linux__
    const int fd = stat_fd();
    if (fd < 0) return -1;
    char buf[96];
    const ssize_t k = pread(fd, buf, sizeof buf - 1, 0);
    if (k <= 0) return -1;
    buf[k] = '\0';
    /* "<ns on the processor> <ns waiting for one> <slices>" */
    char *p = buf;
    (void)strtoll(p, &p, 10);
    char *q = p;
    const long long w = strtoll(p, &q, 10);
    return q == p || w < 0 ? -1 : (int64_t)w;
#else
    return -1;
#endif
}

int fr_load_wait_bucket(int64_t *full, int64_t start, int64_t now, int64_t wait_ns) {
    /* the bucket drained until the pass started; its waits came in during the pass, which
       drained them as they came. In time: the bucket empties wait / share after it starts. */
    const int64_t mark = (int64_t)(FR_LOAD_WAIT_MARK_NS / FR_LOAD_WAIT_SHARE);
    int64_t f = (*full > start ? *full : start) + (int64_t)((double)wait_ns / FR_LOAD_WAIT_SHARE);
    if (f > now + 2 * mark) f = now + 2 * mark; /* capped: once waits end, it drains soon */
    *full = f;
    return f - now > mark;
}

void fr_load_leave(const fr_load_ticket *t, int nt, double flops, int64_t wake_ns,
                   int64_t wait_ns) {
    const int64_t now = fr_load_now_ns(), wall = now - t->t_enter;
    /* a warm team's thread that starts late waited for a processor */
    if (nt > 1 && t->warm && wake_ns > FR_LOAD_LATE_NS)
        wait_ns = (wait_ns > 0 ? wait_ns : 0) + wake_ns;
    /* the pool's first FR_LOAD_SETTLE_NS: its threads sit where the scheduler first put them
       (perhaps sharing the caller's processor, where a spinning libgomp thread holds it for up
       to its spin count, until the scheduler moves one), which says nothing of later passes */
    int64_t pool = 0;
    if (nt > 1 && t->first) /* the first team (or one of the first, racing) */
        atomic_compare_exchange_strong_explicit(&pool_start_ns, &pool, now, memory_order_relaxed,
                                                memory_order_relaxed);
    pool = atomic_load_explicit(&pool_start_ns, memory_order_relaxed);
    const int settling = pool != 0 && now - pool < FR_LOAD_SETTLE_NS;
    if (wait_ns > 0 && !settling) {
        /* even a pass of one thread that waits for its core marks the machine: more threads would
           wait longer. A race between two passes' updates loses one's waits. */
        atomic_fetch_add_explicit(&waited_all_ns, wait_ns, memory_order_relaxed);
        int64_t full = atomic_load_explicit(&bucket_empty_ns, memory_order_relaxed);
        const int mark = fr_load_wait_bucket(&full, t->t_enter, now, wait_ns);
        atomic_store_explicit(&bucket_empty_ns, full, memory_order_relaxed);
        if (mark) {
            const int64_t hold = 4 * wall > FR_LOAD_CONTENDED_NS ? 4 * wall : FR_LOAD_CONTENDED_NS;
            atomic_store_explicit(&contended_until_ns, now + hold, memory_order_relaxed);
        }
    }
    if (nt > 1) {
        /* the first team's start is the pool's creation, paid once: not a wake */
        if (t->idle && !t->first && wake_ns > 0) ema(&wake_est_ns, wake_ns);
        atomic_store_explicit(&last_team, nt, memory_order_relaxed);
        atomic_store_explicit(&last_end_ns, now, memory_order_relaxed);
    } else if (flops > 1e5 && t->inflight == 1) {
        /* a serial pass alone: its speed (small passes are dominated by fixed costs) */
        ema(&ns_per_gflop, (int64_t)((double)wall / flops * 1e9));
    }
    atomic_store_explicit(&last_any_ns, now, memory_order_relaxed);
    atomic_fetch_sub_explicit(&inflight, 1, memory_order_relaxed);
}

int fr_load_warm_rule(int64_t t_enter, int64_t team, int64_t region) {
    const int64_t latest = region > team ? region : team; /* the pool's workers last ran */
    return latest != 0 && t_enter - latest <= FR_LOAD_IDLE_NS;
}

void fr_load_region_done(int nt) {
    if (nt < 2) return;
    atomic_store_explicit(&last_team, nt, memory_order_relaxed);
    atomic_store_explicit(&last_region_ns, fr_load_now_ns(), memory_order_relaxed);
}

int64_t fr_load_region_end_ns(void) {
    return atomic_load_explicit(&last_region_ns, memory_order_relaxed);
}

int fr_load_share(int nthreads) {
    const int others = atomic_load_explicit(&inflight, memory_order_relaxed);
    const int share = nthreads / (others + 1);
    return share < 1 ? 1 : share;
}

void fr_load_forget_inflight(void) {
#ifdef __linux__
    stat_forget();
    worker_table *w = my_table(0); /* the parent's workers */
    if (w != NULL) table_clear(w);
#endif
    atomic_store_explicit(&inflight, 0, memory_order_relaxed);
    atomic_store_explicit(&last_end_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&last_region_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&share_lost_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&pool_start_ns, 0, memory_order_relaxed);
}

int fr_load_inflight(void) { return atomic_load_explicit(&inflight, memory_order_relaxed); }

int fr_load_shared_rule(int inflight, int64_t t_enter, int64_t shared) {
    return inflight > 1 || (shared != 0 && t_enter - shared <= FR_LOAD_IDLE_NS);
}

int fr_load_shared_lately(const fr_load_ticket *t) {
    return fr_load_shared_rule(t->inflight, t->t_enter,
                               atomic_load_explicit(&shared_ns, memory_order_relaxed));
}

int64_t fr_load_cuts(void) { return atomic_load_explicit(&cuts, memory_order_relaxed); }

int64_t fr_load_moves(void) { return atomic_load_explicit(&moves, memory_order_relaxed); }

void fr_load_force_moves(int on) {
    atomic_store_explicit(&force_moves, on != 0, memory_order_relaxed);
}

void fr_load_stats(int64_t *wake_ns, int64_t *ns_per_mflop, int *n_inflight, int *contended,
                   int64_t *waited_ns) {
    *wake_ns = atomic_load_explicit(&wake_est_ns, memory_order_relaxed);
    *ns_per_mflop = atomic_load_explicit(&ns_per_gflop, memory_order_relaxed) / 1000;
    *n_inflight = atomic_load_explicit(&inflight, memory_order_relaxed);
    *contended = fr_load_now_ns() <
                 atomic_load_explicit(&contended_until_ns, memory_order_relaxed);
    *waited_ns = atomic_load_explicit(&waited_all_ns, memory_order_relaxed);
}
