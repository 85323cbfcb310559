/*
 * rows.c — row scatter-add by index (an embedding table's gradient from per-token rows), float
 * and double (this file is its own template body, template.h).
 *
 * Each thread owns a range of columns and walks the source rows in order, so the sums are
 * deterministic (the same for any thread count) and no two threads write the same element.
 */
#ifndef REAL
#include <stdint.h>

#include "fastrnn.h"
#include "omp_share.h"
#include "prefetch.h"
#include "team_load.h"

#define FR_TEMPLATE "rows.c"
#include "template.h"

#else /* the body, per dtype */

int SFX(fr_scatter_add_rows)(REAL *dst, int64_t V, int64_t n, const REAL *src,
                             const int64_t *idx, int64_t R, int nthreads) {
    if (V < 0 || n < 0 || R < 0 || nthreads < 1 || (R > 0 && n > 0 && (!dst || !src || !idx)))
        return FR_ERR_ARG;
    for (int64_t r = 0; r < R; r++)
        if (idx[r] < 0 || idx[r] >= V) return FR_ERR_ARG;
    if (R == 0 || n == 0) return FR_OK;
    /* one thread per ~64 KiB of source, and column ranges of whole cache lines */
    int64_t nt = (int64_t)((double)R * (double)n * (double)sizeof(REAL) / 65536.0);
    const int64_t line = 64 / (int64_t)sizeof(REAL);
    if (nt > (n + line - 1) / line) nt = (n + line - 1) / line;
    if (nt > nthreads) nt = nthreads;
    if (nt < 1) nt = 1;
    int *const workers = nt > 1 ? fr_load_worker_slots() : NULL;
#pragma omp parallel num_threads((int)nt) if (nt > 1)
    {
        int64_t l0, l1; /* this thread's cache lines of a row */
        fr_load_note_worker(workers, fr_omp_thread());
        fr_omp_share((n + line - 1) / line, &l0, &l1);
        const int64_t c0 = l0 * line, c1 = l1 * line < n ? l1 * line : n;
        for (int64_t r = 0; r < R; r++) {
            if (r + FR_PREFETCH_ROWS_AHEAD < R) /* destination rows are random table rows */
                fr_prefetch(dst + idx[r + FR_PREFETCH_ROWS_AHEAD] * n + c0,
                            (c1 - c0) * (int64_t)sizeof(REAL), 1);
            REAL *d = dst + idx[r] * n;
            const REAL *s = src + r * n;
            for (int64_t c = c0; c < c1; c++) d[c] += s[c];
        }
    }
    fr_load_region_done((int)nt);
    return FR_OK;
}

#endif
