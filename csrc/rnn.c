/*
 * rnn.c — RNN cell kernels, float and double (the body is rnn_impl.h, instantiated twice).
 * The whole-sequence time loop, threading and GEMMs live in recurrence.c.
 */
#include <string.h>

#include "recurrence.h"

#define FR_TEMPLATE "rnn_impl.h"
#include "template.h"
