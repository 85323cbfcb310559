/*
 * rows.c — row scatter-add by index (an embedding table's gradient from per-token rows), float
 * and double (the body is rows_impl.h, instantiated twice).
 */
#include <stdint.h>

#include "fastrnn.h"
#include "omp_share.h"
#include "prefetch.h"

#define FR_TEMPLATE "rows_impl.h"
#include "template.h"
