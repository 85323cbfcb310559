/*
 * lstm.c — LSTM cell kernels, float and double (the body is lstm_impl.h, instantiated twice).
 * The whole-sequence time loop, threading and GEMMs live in recurrence.c.
 */
#include <string.h>

#include "recurrence.h"

#define FR_TEMPLATE "lstm_impl.h"
#include "template.h"

int64_t fr_lstm_cache_size(int64_t T, int64_t B, int64_t H) {
    return fr_rec_cache_size(fr_lstm_cell_s.G, fr_lstm_cell_s.naux, T, B, H);
}
