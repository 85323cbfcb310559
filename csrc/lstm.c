/*
 * lstm.c — LSTM cell kernels, float and double (the body is lstm_impl.h, instantiated twice).
 * The whole-sequence time loop, threading and GEMMs live in recurrence.c.
 */
#include <string.h>

#include "recurrence.h"

#define FR_TEMPLATE "lstm_impl.h"
#include "template.h"
