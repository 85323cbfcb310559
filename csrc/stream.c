/*
 * stream.c — single-step inference for streaming sessions (float and double; the body is
 * stream_impl.h). Weights are packed once per layer; each step projects the input, runs one
 * recurrent step with the same code as the sequence driver (recurrence.c), and allocates nothing.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "recurrence.h"

#define DENSE_TILE (FR_MAX_NR * FR_MAX_NR) /* bound on mr * nr */

int64_t fr_dense_work_size(void) { return DENSE_TILE; }

#define FR_TEMPLATE "stream_impl.h"
#include "template.h"
