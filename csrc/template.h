/*
 * template.h — instantiate a template body once per dtype.
 *
 * Define FR_TEMPLATE as the body's header name (a string), then include this file. The body is
 * compiled with REAL = float, SFX(name) = name##_s and with REAL = double, SFX(name) = name##_d.
 */
#ifndef FR_TEMPLATE
#error "define FR_TEMPLATE before including template.h"
#endif

#define REAL float
#define SFX(name) name##_s
#include FR_TEMPLATE
#undef REAL
#undef SFX

#define REAL double
#define SFX(name) name##_d
#include FR_TEMPLATE
#undef REAL
#undef SFX

#undef FR_TEMPLATE
