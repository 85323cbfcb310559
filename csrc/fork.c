/*
 * fork.c — a process forked from one that has run the kernels can run them too.
 *
 * Why: libgomp keeps, for each thread that has opened a parallel region, a pool of worker threads
 * that waits between regions. fork() copies only the calling thread, and libgomp installs no fork
 * handler: the child's copy of the pool still lists its workers as waiting, so the child's next
 * region of 2 or more threads "starts" workers that no longer exist, and the calling thread waits
 * for them forever (at the team's first per-step barrier, or at libgomp's own). LLVM's libomp
 * re-initialises itself in the child; libgomp does not.
 *
 * What: pthread_atfork handlers, installed once when the Python module loads.
 *   - before fork, in the forking thread: its pool is released (omp_pause_resource_all: the
 *     workers are woken, exit and are joined), so the child starts with no pool and builds a fresh
 *     one if it asks for threads; the parent builds its own again on its next region (one thread
 *     start per worker per fork). Then the kept-block list's spin lock is taken, so that no thread
 *     holds it at the moment of the fork (the child would inherit it held by a thread it lacks).
 *   - after fork, in the parent and in the child: the lock is let go.
 * The per-step barrier's flags belong to one call (recurrence.c acquires them per pass), and team
 * plans are made per call; the measured plan choices (team_tune.c) sit behind a lock that is only
 * ever tried, let go in the child: the kernels keep no other state that a fork could leave held.
 * The Python layer adds the policy: a forked child runs its kernels single-threaded until it sets
 * a count itself (fastrnn._threads).
 */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdatomic.h>

#include "fastrnn.h"
#include "scratch.h"
#include "team_load.h"
#include "team_tune.h"

/* GCC's -fopenmp means libgomp, which has omp_pause_resource_all from GCC 9 on (while it still
   reports _OPENMP 201511). It releases only the host's threads (omp_pause_resource would start
   the offloading plugins first). Other compilers' runtime (LLVM's libomp) handles fork itself. */
#if defined(_OPENMP) && defined(__GNUC__) && !defined(__clang__)
#include <omp.h>
#define FR_LIBGOMP 1
#if __GNUC__ >= 9
#define FR_CAN_PAUSE 1
#endif
#endif

static atomic_flag installed = ATOMIC_FLAG_INIT;
static int pool_released = 1; /* whether the last fork's prepare released the forking thread's pool */

static void prepare(void) {
#if defined(FR_CAN_PAUSE)
    /* 0 when the thread had no pool or it was released; nonzero inside a parallel region. */
    pool_released = omp_pause_resource_all(omp_pause_soft) == 0;
#elif defined(FR_LIBGOMP)
    pool_released = 0; /* an older libgomp: a pool, if any, cannot be released */
#endif
    fr_scratch_lock();
}

static void after(void) { fr_scratch_unlock(); }

/* The child has only the forking thread: passes the parent's other threads had in flight are
   not the child's (team_load.h would otherwise leave the child a fraction of its threads). */
static void after_in_child(void) {
    fr_load_forget_inflight();
    fr_tune_after_fork();
    fr_scratch_unlock();
}

int fr_fork_guard_install(void) {
    if (atomic_flag_test_and_set(&installed)) return FR_OK;
    if (pthread_atfork(prepare, after, after_in_child) != 0) {
        atomic_flag_clear(&installed);
        return FR_ERR_NOMEM; /* pthread_atfork fails only for want of memory */
    }
    return FR_OK;
}

int fr_fork_pool_released(void) { return pool_released; }
