/*
 * gemm.c — panel-packed GEMM for the shapes RNNs use.
 *
 * op(B) is packed into K x nr panels (gate-interleaved for the recurrent weights, see fastrnn.h),
 * and a microkernel computes m x nr tiles (m <= mr) reading A row-wise. The microkernels of each
 * SIMD path live in gemm_avx2.c / gemm_avx512.c (template gemm_ukr.h); cpu.c chooses the path at
 * run time; the portable C kernel here is always present. The driver and packing are in
 * gemm_impl.h, instantiated for float and double.
 *
 * fr_gemm_*: each thread owns a rectangle of C (a grid of row groups x panel groups chosen for
 * balance), packs its own panels of op(B) a KC x NC block at a time and never shares partial sums,
 * so there is one parallel region and no barrier, and every element of C is computed by the same
 * kernel calls in the same order whatever the thread count: results are bitwise reproducible.
 */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fastrnn.h"
#include "scratch.h"
#include "gemm_kernels.h"

/* Portable microkernel shape. */
#define GEN_MR 4
#define GEN_NR 16
/* K block: an mr x KC slice of A (8 KiB in float at mr = 8) stays in L1 while the panels stream. */
#define GEMM_KC 256
/* Packed B block per thread (KC x NC): half of the smaller L2 of the target machines (Zen 3,
   512 KiB), so it stays in L2 while the thread sweeps all its rows. */
#define GEMM_BBLOCK_BYTES (256 * 1024)
/* Below this many flops per thread, a fork/join costs more than the extra thread saves. */
#define GEMM_MIN_FLOPS_PER_THREAD 200000.0
/* k rows per pass when packing a transposed op(B). */
#define PACK_KB 16
/* Read op(B) in place (no packing) when each thread has at most this many row blocks. */
#define GEMM_DIRECT_RB 8
/* Costs of packing, for the thread grid choice: a panel of B, in rows of microkernel work; an
   mr-row slice of A, in panels of microkernel work on it. */
#define GEMM_PACK_ROWS 8
#define GEMM_PACK_A_PANELS 0.25
/* Direct reading copies each panel first (prefetching the next one meanwhile) when at least
   GEMM_COPY_MIN_RB row blocks re-read it, B's rows are at least GEMM_COPY_MIN_STRIDE bytes apart (a
   page each: hardware prefetchers stop at page boundaries, and such rows share few cache sets) and
   op(B) has at least GEMM_COPY_MIN_BYTES (it then comes from memory, not L3). Measured on one Zen 4
   core, 64 x 1024 x N: N = 3072 73 -> 82 GFLOP/s; 64 x 1024 x 1024 (4 MiB) is faster in place. */
#define GEMM_COPY_MIN_RB 3
#define GEMM_COPY_MIN_STRIDE 4096
#define GEMM_COPY_MIN_BYTES (8.0 * 1024 * 1024)

/* Prefetch one cache line (no-op where the compiler has no prefetch builtin). */
#if defined(__GNUC__) || defined(__clang__)
#define FR_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define FR_PREFETCH(p) ((void)(p))
#endif

#define FR_TEMPLATE "gemm_impl.h"
#include "template.h"
