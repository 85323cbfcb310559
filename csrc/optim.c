/*
 * optim.c — fused optimizer updates (Adam), float and double (the body is optim_impl.h,
 * instantiated twice).
 */
#include <stdint.h>
#include <math.h>

#include "fastrnn.h"
#include "omp_share.h"
#include "simd_target.h"

/* sqrtf for float, sqrt for double (both correctly rounded, as NumPy's) */
#define FR_SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)

#define FR_TEMPLATE "optim_impl.h"
#include "template.h"
