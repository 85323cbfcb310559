/*
 * optim.c — fused optimizer updates (Adam), float and double (this file is its own template
 * body, template.h). Each update is one pass over the arrays, in the same operation order as the
 * NumPy formulation in fastrnn/optimizers.py, so results are bit-identical to it.
 */
#ifndef REAL
#include <stdint.h>
#include <math.h>

#include "fastrnn.h"
#include "omp_share.h"
#include "simd_target.h"
#include "team_load.h"

/* sqrtf for float, sqrt for double (both correctly rounded, as NumPy's) */
#define FR_SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)

#define FR_TEMPLATE "optim.c"
#include "template.h"

#else /* the body, per dtype */

FR_CLONES static void SFX(adam_span)(REAL *w, const REAL *g, REAL *m, REAL *v, int64_t n, REAL c1,
                                     REAL c2, REAL alpha, REAL eps) {
    for (int64_t i = 0; i < n; i++) {
        const REAL gi = g[i];
        const REAL mi = m[i] + (gi - m[i]) * c1;
        const REAL vi = v[i] + (gi * gi - v[i]) * c2;
        m[i] = mi;
        v[i] = vi;
        w[i] -= (mi * alpha) / (FR_SQRT(vi) + eps);
    }
}

int SFX(fr_adam_update)(REAL *w, const REAL *g, REAL *m, REAL *v, int64_t n, REAL c1, REAL c2,
                        REAL alpha, REAL eps, int nthreads) {
    if (n < 0 || nthreads < 1 || (n > 0 && (!w || !g || !m || !v))) return FR_ERR_ARG;
    /* a thread per 256 Ki elements: below that the fork costs more than it saves */
    int64_t nt = n >> 18;
    if (nt > nthreads) nt = nthreads;
    if (nt < 1) nt = 1;
    int *const workers = nt > 1 ? fr_load_worker_slots() : NULL;
#pragma omp parallel num_threads((int)nt) if (nt > 1)
    {
        int64_t i0, i1;
        fr_load_note_worker(workers, fr_omp_thread());
        fr_omp_share(n, &i0, &i1);
        SFX(adam_span)(w + i0, g + i0, m + i0, v + i0, i1 - i0, c1, c2, alpha, eps);
    }
    fr_load_region_done((int)nt);
    return FR_OK;
}

#endif
