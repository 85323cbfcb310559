/*
 * team_sync.c — allocation and the yielding slow path of team_sync.h's barrier.
 */
#define _DEFAULT_SOURCE
#include "team_sync.h"

#include <sched.h>
#include <stdlib.h>

fr_team_flag *fr_team_new(int nt) {
    if (nt < 1) return NULL;
    fr_team_flag *f = aligned_alloc(64, (size_t)nt * sizeof(fr_team_flag));
    if (f == NULL) return NULL;
    for (int i = 0; i < nt; i++) atomic_init(&f[i].n, 0);
    return f;
}

void fr_team_free(fr_team_flag *f) { free(f); }

void fr_team_yield(void) { sched_yield(); }
