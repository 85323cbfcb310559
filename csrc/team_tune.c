/*
 * team_tune.c — the measured choice between two team plans (see team_tune.h).
 */
#include "team_tune.h"

#include <stdatomic.h>
#include <string.h>

typedef struct {
    uint64_t key; /* 0: free */
    int rule, alternative;
    double best[2]; /* best time per step: the rule's plan, the alternative */
    int n[2];       /* counted calls of each */
    int runs;       /* calls planned so far (which plan the next runs: alternately) */
    int decision;   /* -1 measuring, 0 the rule, 1 the alternative */
} tune_slot;

static tune_slot table[FR_TUNE_SLOTS];
static atomic_flag busy = ATOMIC_FLAG_INIT;
static _Atomic int enabled = 1;

static int try_lock(void) {
    return !atomic_flag_test_and_set_explicit(&busy, memory_order_acquire);
}
static void unlock(void) { atomic_flag_clear_explicit(&busy, memory_order_release); }

uint64_t fr_tune_key(const int64_t *v, int n) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) {
            h ^= (uint64_t)(((uint64_t)v[i] >> (8 * b)) & 0xffu);
            h *= 1099511628211ull;
        }
    return h ? h : 1; /* 0 marks a free slot */
}

/* The slot of key (with rule and alternative), a new one where there is room; -1 if none. */
static int find(uint64_t key, int rule, int alternative) {
    int free_slot = -1;
    for (int i = 0; i < FR_TUNE_SLOTS; i++) {
        if (table[i].key == key && table[i].rule == rule && table[i].alternative == alternative)
            return i;
        if (table[i].key == 0 && free_slot < 0) free_slot = i;
    }
    if (free_slot >= 0) {
        tune_slot *s = &table[free_slot];
        memset(s, 0, sizeof *s);
        s->key = key;
        s->rule = rule;
        s->alternative = alternative;
        s->decision = -1;
    }
    return free_slot;
}

int fr_tune_groups(fr_tune_ticket *t, uint64_t key, int rule, int alternative, int explore) {
    t->slot = -1;
    t->alt = 0;
    t->key = key;
    if (!atomic_load_explicit(&enabled, memory_order_relaxed) || !try_lock()) return rule;
    const int i = find(key, rule, alternative);
    if (i >= 0) {
        tune_slot *s = &table[i];
        if (s->decision >= 0) {
            t->alt = s->decision;
        } else if (explore) {
            t->slot = i;
            t->alt = s->runs++ & 1;
        }
    }
    unlock();
    return t->alt ? alternative : rule;
}

void fr_tune_report(const fr_tune_ticket *t, double ns_per_step, int undisturbed) {
    if (t->slot < 0 || !undisturbed || !(ns_per_step > 0)) return;
    if (!try_lock()) return;
    tune_slot *s = &table[t->slot];
    if (s->key == t->key && s->decision < 0) { /* (not after a reset meanwhile) */
        const int k = t->alt;
        if (s->n[k] == 0 || ns_per_step < s->best[k]) s->best[k] = ns_per_step;
        s->n[k]++;
        if (s->n[0] >= FR_TUNE_SAMPLES && s->n[1] >= FR_TUNE_SAMPLES)
            s->decision = 100.0 * s->best[1] < (100.0 - FR_TUNE_MARGIN_PCT) * s->best[0];
    }
    unlock();
}

void fr_tune_set(int on) {
    while (!try_lock()) {
    }
    memset(table, 0, sizeof table);
    atomic_store_explicit(&enabled, on != 0, memory_order_relaxed);
    unlock();
}

int fr_tune_decision(uint64_t key) {
    int d = -1;
    while (!try_lock()) {
    }
    for (int i = 0; i < FR_TUNE_SLOTS; i++)
        if (table[i].key == key) d = table[i].decision;
    unlock();
    return d;
}

void fr_tune_after_fork(void) { unlock(); }
