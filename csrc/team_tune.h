/*
 * team_tune.h — a pass's choice between two team plans that give the same results, made by
 * measuring both on the first calls of each problem size. Internal, not part of the public API.
 *
 * Why: a team of 2 threads can split a step's hidden units (one barrier per step) or the batch
 * rows (batch groups: no barrier, but every thread reads all the weights and works on fewer rows
 * a tile). Which is faster depends on the tile shapes, the weights' partial blocks and the cost
 * of a barrier on the machine: measured on the development VM, LSTM inference at T = 60,
 * I = H/2, forced groups against the hidden split took 0.84-0.95x the time at H = 100, B = 8-14,
 * but 1.06-1.09x at H = 128, B = 6-7 and 1.09-1.18x at H = 200, B = 7 and 9; a work model in
 * panels with a per-step barrier cost did not fit these. Both plans sum every row in one order
 * (recurrence.c's groups_keep_sums), so a call's results are the same whichever it runs, and the
 * choice can be left to measurement.
 *
 * What: per problem key (the pass's sizes, its kind and its team size), the first calls that start
 * undisturbed (no other pass in flight, the team warm) run the rule's plan and the alternative in
 * turn; a call counts only where nothing else ran beside it to its end either. After
 * FR_TUNE_SAMPLES counted calls of each, the alternative is kept where its best time per step is
 * FR_TUNE_MARGIN_PCT percent below the rule's, the rule otherwise, for the rest of the process.
 * FR_TUNE_SLOTS keys at most (more run the rule's plan). The table's lock is only ever tried,
 * never waited for: a call that finds it taken runs the rule's plan, so that no thread waits on
 * it and a forked child that inherits it taken (reset by fork.c) cannot hang.
 */
#ifndef FASTRNN_TEAM_TUNE_H
#define FASTRNN_TEAM_TUNE_H
#include <stdint.h>

#define FR_TUNE_SLOTS 64
#define FR_TUNE_SAMPLES 3
#define FR_TUNE_MARGIN_PCT 3

/* A pass's place in the table: slot -1 (not tuned: the rule's plan), or the slot and whether
   this call runs the alternative (alt). */
typedef struct {
    int slot, alt;
    uint64_t key;
} fr_tune_ticket;

/* The batch-group count for a pass of `key` whose rule gives `rule` and whose other plan with
   the same results is `alternative` (> 0, != rule): one of the two, t filled for
   fr_tune_report. Before a decision, a pass that may not `explore` runs the rule's plan and
   leaves the key's turns and times as they are. */
int fr_tune_groups(fr_tune_ticket *t, uint64_t key, int rule, int alternative, int explore);

/* The time per step (ns) of the pass t planned, counted where `undisturbed`. */
void fr_tune_report(const fr_tune_ticket *t, double ns_per_step, int undisturbed);

/* Turn the measuring on (the default) or off (every pass then runs its rule's plan); either way
   forget every key. For the tests and benchmarks. */
void fr_tune_set(int on);

/* The decision for `key`: -1 none yet (or not in the table), 0 the rule's plan, 1 the other. */
int fr_tune_decision(uint64_t key);

/* In a forked child: the table's lock let go (its holder is not the child's). */
void fr_tune_after_fork(void);

/* A key from a pass's sizes (FNV-1a over the values). */
uint64_t fr_tune_key(const int64_t *v, int n);

#endif /* FASTRNN_TEAM_TUNE_H */
