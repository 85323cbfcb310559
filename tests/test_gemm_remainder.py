"""Remainder tiles of the packed GEMM (fr_gemm_*) on every SIMD path the machine has, portable C
included: row counts m = 1..mr+3 and panel remainders N mod nr = 1..nr+3, where the last panel
runs the half-width kernel (nv <= nr/2, straight into C when nv == nr/2) or the full one through
an edge tile (nv > nr/2).

Values are checked against numpy in float64 with the bound of test_gemm; a remainder column is
also checked to be bitwise the one the full-width kernel computes for the same column of a wider
matrix (the half-width kernel sums each column in the same order), so a half kernel that read the
wrong columns, skipped rows or summed differently fails either way.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_gemm import DTYPES, _check, _operands

from fastrnn import _kernels


def _tile(dtype) -> tuple[int, int]:
    info = _kernels.kernel_info()[np.dtype(dtype).name]
    return info["mr"], info["nr"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transb", [False, True])
def test_remainder_tiles_match_numpy(arch, dtype, transb):
    """Every m up to mr+3 against every panel remainder up to nr+3, K small and odd, with and
    without beta (C accumulated), for the direct (untransposed B, few rows) and packed paths."""
    mr, nr = _tile(dtype)
    rng = np.random.default_rng(11)
    for N in [*range(1, nr + 4), 2 * nr + nr // 2, 2 * nr + nr // 2 + 1, 3 * nr - 1]:
        for M in range(1, mr + 4):
            for K in (1, 2, 3, 7, 17):
                A, B = _operands(rng, M, N, K, False, transb, dtype)
                C0 = rng.standard_normal((M, N)).astype(dtype)
                for beta in (0.0, 1.0):
                    C = C0.copy()
                    _kernels.gemm(A, B, C, transb=transb, beta=beta)
                    _check(C, A, B, C0, False, transb, beta, K)


@pytest.mark.parametrize("dtype", DTYPES)
def test_remainder_larger_odd_shapes(arch, dtype):
    """Larger odd M, N, K (several K blocks of 256, so the half kernel accumulates into C)."""
    _, nr = _tile(dtype)
    rng = np.random.default_rng(12)
    for M, N, K in [(37, 4 * nr + 1, 301), (101, 5 * nr + nr // 2, 259), (9, 7 * nr + 3, 517),
                    (200, 200, 100), (24, 800 + nr // 2 - 1, 200)]:
        for transa in (False, True):
            for transb in (False, True):
                A, B = _operands(rng, M, N, K, transa, transb, dtype)
                C0 = rng.standard_normal((M, N)).astype(dtype)
                for nt in (1, 2):
                    C = C0.copy()
                    _kernels.gemm(A, B, C, transa=transa, transb=transb, beta=1.0, nthreads=nt)
                    _check(C, A, B, C0, transa, transb, 1.0, K)


@pytest.mark.parametrize("dtype", DTYPES)
def test_remainder_columns_bitwise_full_kernel(arch, dtype):
    """C = A @ B[:, :n] equals (A @ B)[:, :n] bitwise for n ending in a partial last panel: the
    remainder panel (half-width or edge tile) computes each element as the full panel does."""
    mr, nr = _tile(dtype)
    rng = np.random.default_rng(13)
    for M, K in [(1, 5), (3, 40), (mr, 33), (2 * mr + 1, 300)]:
        for transb in (False, True):
            A, B = _operands(rng, M, 3 * nr, K, False, transb, dtype)
            full = _kernels.gemm(A, B, transb=transb)
            for n in (nr + 1, nr + nr // 2 - 1, nr + nr // 2, nr + nr // 2 + 1, 2 * nr + 3):
                Bn = np.ascontiguousarray(B[:n] if transb else B[:, :n])
                part = _kernels.gemm(A, Bn, transb=transb)
                assert np.array_equal(part, full[:, :n]), (M, K, n, transb)
                C0 = rng.standard_normal((M, n)).astype(dtype)
                acc_full = np.zeros((M, 3 * nr), dtype)
                acc_full[:, :n] = C0
                _kernels.gemm(A, B, acc_full, transb=transb, beta=1.0)
                acc = C0.copy()
                _kernels.gemm(A, Bn, acc, transb=transb, beta=1.0)
                assert np.array_equal(acc, acc_full[:, :n]), (M, K, n, transb, "beta=1")
