/*
 * stream.c — single-step inference for streaming sessions, float and double (this file is its
 * own template body, template.h). Weights are packed once per layer; each step projects the
 * input, runs one recurrent step with the same code as the sequence driver (recurrence.c), and
 * allocates nothing.
 */
#ifndef REAL
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "recurrence.h"

#define DENSE_TILE (FR_MAX_NR * FR_MAX_NR) /* bound on mr * nr */

int64_t fr_dense_work_size(void) { return DENSE_TILE; }

#define FR_TEMPLATE "stream.c"
#include "template.h"

#else /* the body, per dtype */

int64_t SFX(fr_step_packed_size)(int cell, int64_t I, int64_t H) {
    const SFX(fr_cell) *cd = SFX(fr_rec_cell_of)(cell);
    if (cd == NULL || I < 0 || H < 1) return -1;
    const int64_t nr = SFX(fr_kernel_get)()->nr, njb = (H + nr - 1) / nr;
    return SFX(fr_rec_slice_size)(cd, I, H, nr, njb);
}

int64_t SFX(fr_step_work_size)(int cell, int64_t B, int64_t H) {
    const SFX(fr_cell) *cd = SFX(fr_rec_cell_of)(cell);
    if (cd == NULL || B < 0 || H < 1) return -1;
    const SFX(fr_kernel) *kern = SFX(fr_kernel_get)();
    const int64_t nr = kern->nr, njb = (H + nr - 1) / nr;
    return B * cd->G * njb * nr + B * H + kern->mr * cd->G * nr;
}

int SFX(fr_step_pack)(REAL *packed, int cell, const REAL *w_ih, const REAL *w_hh, const REAL *b_ih,
                      const REAL *b_hh, int64_t I, int64_t H) {
    const SFX(fr_cell) *cd = SFX(fr_rec_cell_of)(cell);
    if (cd == NULL || packed == NULL || w_hh == NULL || I < 0 || H < 1 || (I > 0 && w_ih == NULL))
        return FR_ERR_ARG;
    const int64_t nr = SFX(fr_kernel_get)()->nr, njb = (H + nr - 1) / nr;
    SFX(fr_slice) sl;
    SFX(fr_rec_pack_slice)(cd, &sl, packed, w_ih, w_hh, b_ih, b_hh, I, H, nr, 0, H, njb);
    return FR_OK;
}

int SFX(fr_step)(REAL *h, REAL *c, REAL *work, const REAL *packed, int cell, int act,
                 const REAL *x, int64_t B, int64_t I, int64_t H) {
    const SFX(fr_cell) *cd = SFX(fr_rec_cell_of)(cell);
    if (cd == NULL || h == NULL || work == NULL || packed == NULL || B < 0 || I < 0 || H < 1 ||
        (cd->has_c && c == NULL) || (B > 0 && I > 0 && x == NULL) ||
        (cell == FR_CELL_RNN && act != FR_RNN_TANH && act != FR_RNN_RELU))
        return FR_ERR_ARG;
    if (B == 0) return FR_OK;
    const SFX(fr_kernel) *kern = SFX(fr_kernel_get)();
    const int64_t nr = kern->nr, njb = (H + nr - 1) / nr, ldxp = cd->G * njb * nr;
    if (nr > FR_MAX_NR || kern->mr > FR_MAX_MR) return FR_ERR_ARG;
    SFX(fr_slice) sl;
    /* the view only hands out pointers into packed, which the step reads and never writes */
    SFX(fr_rec_slice_view)(cd, &sl, (REAL *)(uintptr_t)packed, I, H, nr, 0, H, njb);
    REAL *xp = work, *hn = xp + B * ldxp, *tile = hn + B * H;
    SFX(fr_rec_project)(cd, kern, &sl, x, B, B, 0, I, xp, ldxp);
    /* one step at time 0 of a length-1 sequence, without a separate output (hn is the output) */
    SFX(fr_rec_step)(cd, kern, &sl, 0, 1, B, 0, B, H, NULL, 0, h, hn, H, c, xp, ldxp, 0, NULL, NULL,
                     0, tile, cd->point_for(fr_get_arch()), act);
    memcpy(h, hn, (size_t)(B * H) * sizeof(REAL));
    return FR_OK;
}

int64_t SFX(fr_dense_packed_size)(int64_t I, int64_t O) {
    const int64_t nr = SFX(fr_kernel_get)()->nr, np = (O + nr - 1) / nr;
    return np * nr * (I + 1);
}

void SFX(fr_dense_pack)(REAL *packed, const REAL *kernel, const REAL *bias, int64_t I, int64_t O) {
    const int64_t nr = SFX(fr_kernel_get)()->nr, np = (O + nr - 1) / nr;
    SFX(fr_pack_b)(packed, kernel, O, 0, I, O, 1, nr, 0, np);
    REAL *bp = packed + np * nr * I;
    for (int64_t n = 0; n < np * nr; n++) bp[n] = (bias && n < O) ? bias[n] : (REAL)0;
}

int SFX(fr_dense_step)(REAL *y, REAL *work, const REAL *packed, int act, const REAL *x, int64_t B,
                       int64_t I, int64_t O) {
    if (y == NULL || work == NULL || packed == NULL || B < 0 || I < 0 || O < 1 ||
        (B > 0 && I > 0 && x == NULL) || act < FR_ACT_LINEAR || act > FR_ACT_SOFTMAX)
        return FR_ERR_ARG;
    const SFX(fr_kernel) *kern = SFX(fr_kernel_get)();
    const int64_t nr = kern->nr, mr = kern->mr, np = (O + nr - 1) / nr;
    if (mr * nr > DENSE_TILE) return FR_ERR_ARG;
    const REAL *bp = packed + np * nr * I;
    for (int64_t p = 0; p < np; p++) {
        const int64_t nv = (O - p * nr) < nr ? (O - p * nr) : nr;
        for (int64_t b0 = 0; b0 < B; b0 += mr) {
            const int64_t m = (B - b0) < mr ? (B - b0) : mr;
            if (I > 0)
                kern->ukr(m, I, x + b0 * I, I, packed + p * I * nr, work, nr, 0);
            else
                memset(work, 0, (size_t)(m * nr) * sizeof(REAL));
            for (int64_t i = 0; i < m; i++)
                for (int64_t c = 0; c < nv; c++)
                    y[(b0 + i) * O + p * nr + c] = work[i * nr + c] + bp[p * nr + c];
        }
    }
    const int64_t n = B * O;
    switch (act) {
    case FR_ACT_RELU:
        for (int64_t k = 0; k < n; k++) y[k] = y[k] < (REAL)0 ? (REAL)0 : y[k];
        break;
    case FR_ACT_TANH: SFX(fr_tanh)(y, y, n); break;
    case FR_ACT_SIGMOID: SFX(fr_sigmoid)(y, y, n); break;
    case FR_ACT_SOFTMAX:
        for (int64_t b = 0; b < B; b++) {
            REAL *row = y + b * O, mx = row[0], sum = 0;
            for (int64_t k = 1; k < O; k++) mx = row[k] > mx ? row[k] : mx;
            for (int64_t k = 0; k < O; k++) {
                row[k] = (REAL)exp((double)(row[k] - mx));
                sum += row[k];
            }
            for (int64_t k = 0; k < O; k++) row[k] /= sum;
        }
        break;
    default: break;
    }
    return FR_OK;
}

#endif
