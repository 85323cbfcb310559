"""The packed GEMM (fr_gemm_*) and the microkernels of every SIMD path the machine has.

Reference: numpy in float64 (and float32 inputs promoted to float64). Error bounds are stated
relative to |op(A)| @ |op(B)| (+ |C| when beta = 1), the scale of rounding error in a dot product:
float64 4*K*eps (about 1e-13 at K = 500), float32 4*K*eps32 (about 2e-4 at K = 500): a wrong
element, row or panel gives errors of order 1 and fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn import _kernels

ARCHES = _kernels.available_arches()
DTYPES = [np.float64, np.float32]

# odd sizes on both sides of every block edge: microkernel rows (4, 6, 8) and panel widths
# (8, 16, 32), the K block (256) and the per-thread panel chunk (256 KiB of packed B)
SHAPES = [  # (M, N, K)
    (1, 1, 1),
    (2, 3, 7),
    (3, 17, 2),
    (7, 33, 17),
    (17, 100, 33),
    (33, 7, 100),
    (100, 65, 3),
    (64, 300, 257),
    (130, 129, 513),
]


def _tol(dtype, K: int) -> float:
    return 4.0 * max(K, 1) * float(np.finfo(dtype).eps)


def _operands(rng, M, N, K, transa, transb, dtype):
    A = rng.standard_normal((K, M) if transa else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if transb else (K, N)).astype(dtype)
    return A, B


def _check(C, A, B, C0, transa, transb, beta, K):
    a = (A.T if transa else A).astype(np.float64)
    b = (B.T if transb else B).astype(np.float64)
    ref = a @ b
    scale = np.abs(a) @ np.abs(b)
    if beta:
        ref = ref + C0.astype(np.float64)
        scale = scale + np.abs(C0.astype(np.float64))
    err = np.abs(C.astype(np.float64) - ref)
    bound = _tol(C.dtype, K) * scale + np.finfo(C.dtype).tiny
    assert np.all(err <= bound), f"max error {np.max(err - bound):.3e} above bound"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transa", [False, True])
@pytest.mark.parametrize("transb", [False, True])
def test_gemm_matches_numpy(arch, dtype, transa, transb):
    rng = np.random.default_rng(1)
    for M, N, K in SHAPES:
        A, B = _operands(rng, M, N, K, transa, transb, dtype)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        for beta in (0.0, 1.0):
            for nt in (1, 2):
                C = C0.copy()
                out = _kernels.gemm(A, B, C, transa=transa, transb=transb, beta=beta,
                                    nthreads=nt)
                assert out is C
                _check(C, A, B, C0, transa, transb, beta, K)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_few_rows_big_b(arch, dtype):
    """Few rows and a large untransposed B (>= 8 MiB, rows >= 4 KiB apart): the panel-copy
    variant of reading B in place, with a partial last panel."""
    rng = np.random.default_rng(8)
    M, K, N = 40, 1030, 2050
    A, B = _operands(rng, M, N, K, False, False, dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    for nt in (1, 2):
        C = C0.copy()
        _kernels.gemm(A, B, C, beta=1.0, nthreads=nt)
        _check(C, A, B, C0, False, False, 1.0, K)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_strided_operands(arch, dtype):
    """Leading dimensions larger than the rows (column slices); C outside its columns untouched."""
    rng = np.random.default_rng(2)
    for M, N, K in [(5, 9, 11), (70, 40, 300), (9, 33, 64)]:
        for transa in (False, True):
            for transb in (False, True):
                ash = (K, M) if transa else (M, K)
                bsh = (N, K) if transb else (K, N)
                A = rng.standard_normal((ash[0], ash[1] + 5)).astype(dtype)[:, : ash[1]]
                B = rng.standard_normal((bsh[0], bsh[1] + 3)).astype(dtype)[:, : bsh[1]]
                big = np.full((M, N + 7), 7.0, dtype=dtype)
                C = big[:, :N]
                C0 = rng.standard_normal((M, N)).astype(dtype)
                C[...] = C0
                _kernels.gemm(A, B, C, transa=transa, transb=transb, beta=1.0, nthreads=2)
                _check(C, A, B, C0, transa, transb, 1.0, K)
                assert np.all(big[:, N:] == 7.0), "wrote past the columns of C"


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta0_never_reads_c(arch, dtype):
    rng = np.random.default_rng(3)
    A, B = _operands(rng, 37, 45, 29, False, False, dtype)
    C = np.full((37, 45), np.nan, dtype=dtype)
    _kernels.gemm(A, B, C, beta=0.0, nthreads=2)
    assert np.all(np.isfinite(C))
    _check(C, A, B, None, False, False, 0.0, 29)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_zero_sizes(arch, dtype):
    A = np.ones((4, 0), dtype=dtype)
    B = np.ones((0, 3), dtype=dtype)
    C = np.full((4, 3), 5.0, dtype=dtype)
    _kernels.gemm(A, B, C, beta=1.0)
    assert np.all(C == 5.0)
    _kernels.gemm(A, B, C, beta=0.0)
    assert np.all(C == 0.0)
    assert _kernels.gemm(np.ones((0, 4), dtype), np.ones((4, 3), dtype)).shape == (0, 3)
    assert _kernels.gemm(np.ones((2, 4), dtype), np.ones((4, 0), dtype)).shape == (2, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_deterministic(arch, dtype):
    """Bitwise the same on a repeated call, and the same for 1 and 2 threads (K is never split:
    every element is summed by the same kernel calls in the same order)."""
    rng = np.random.default_rng(4)
    for M, N, K, ta, tb in [(300, 200, 600, False, False), (20, 700, 300, True, True),
                            (7, 300, 100, False, True)]:
        A, B = _operands(rng, M, N, K, ta, tb, dtype)
        c1 = _kernels.gemm(A, B, transa=ta, transb=tb, nthreads=2)
        c2 = _kernels.gemm(A, B, transa=ta, transb=tb, nthreads=2)
        c3 = _kernels.gemm(A, B, transa=ta, transb=tb, nthreads=1)
        assert np.array_equal(c1, c2)
        assert np.array_equal(c1, c3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_paths_match_portable(dtype):
    """Every SIMD path against the portable C kernel on the same inputs."""
    rng = np.random.default_rng(5)
    A, B = _operands(rng, 45, 70, 130, False, True, dtype)
    old = _kernels.get_arch()
    try:
        _kernels.set_arch("generic")
        ref = _kernels.gemm(A, B, transb=True)
        for name in ARCHES:
            _kernels.set_arch(name)
            got = _kernels.gemm(A, B, transb=True, nthreads=2)
            scale = np.abs(A) @ np.abs(B.T)
            assert np.all(np.abs(got - ref) <= 2 * _tol(dtype, 130) * scale), name
    finally:
        _kernels.set_arch(old)


def test_gemm_rejects_bad_layouts():
    a = np.zeros((6, 6))
    with pytest.raises(ValueError, match="contiguous rows"):
        _kernels.gemm(a[:, ::2], a[:3, :])
    with pytest.raises(ValueError, match="overlap"):
        _kernels.gemm(np.lib.stride_tricks.as_strided(a, (4, 4), (8, 8)), a[:4, :4])
    with pytest.raises(ValueError, match="beta"):
        _kernels.gemm(a, a, a.copy(), beta=0.5)
    with pytest.raises(ValueError, match="inner dimensions"):
        _kernels.gemm(a, a[:5, :])


# ---- the microkernel contract (fastrnn.h, fr_ukr_*_fn) -------------------------------------------

@pytest.mark.parametrize("half", [False, True], ids=["full", "half"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ukr_contract(arch, dtype, half):
    """Every row count m = 1..mr, K small and odd, accumulate or not, lda > K and ldc > nr; rows
    past m and columns past nr (nr // 2 for the half-width form) of C's storage are left alone,
    and the half-width form sums each column exactly as the full kernel does. The bias form
    (fastrnn.h's ukr_bias, ukr_bias_half) gives, bit for bit, the product with the bias then
    added (what the input projection stored and then added before)."""
    info = _kernels.kernel_info()[np.dtype(dtype).name]
    mr, nr = info["mr"], info["nr"]
    nc = nr // 2 if half else nr
    rng = np.random.default_rng(6)
    for m in range(1, mr + 1):
        for K in (0, 1, 2, 3, 7, 17, 100):
            A = rng.standard_normal((m, K + 3)).astype(dtype)[:, :K]
            Bp = rng.standard_normal((K, nr)).astype(dtype)
            for accumulate in (False, True):
                store = np.full((m + 2, nr + 5), 3.0, dtype=dtype)
                C = store[:m, :nc]
                C0 = rng.standard_normal((m, nr)).astype(dtype)
                C[...] = C0[:, :nc]
                _kernels.ukr(A, Bp, C, accumulate=accumulate, half=half)
                ref = A.astype(np.float64) @ Bp[:, :nc].astype(np.float64)
                scale = np.abs(A.astype(np.float64)) @ np.abs(Bp[:, :nc].astype(np.float64))
                if accumulate:
                    ref += C0[:, :nc]
                    scale += np.abs(C0[:, :nc])
                assert np.all(np.abs(C - ref) <= _tol(dtype, K) * scale + 1e-300), (m, K)
                assert np.all(store[m:, :] == 3.0) and np.all(store[:, nc:] == 3.0), (m, K)
                if half:
                    full = C0.copy()
                    _kernels.ukr(A, Bp, full, accumulate=accumulate)
                    np.testing.assert_array_equal(C, full[:, :nc])
                if not accumulate:
                    bias = (rng.standard_normal(nc) * 10).astype(dtype)
                    bstore = np.full_like(store, 3.0)
                    _kernels.ukr(A, Bp, bstore[:m, :nc], half=half, bias=bias)
                    np.testing.assert_array_equal(bstore[:m, :nc], C + bias, err_msg=(m, K))
                    assert np.all(bstore[m:, :] == 3.0) and np.all(bstore[:, nc:] == 3.0)
    with pytest.raises(ValueError, match="bias"):
        _kernels.ukr(A, Bp, C, half=half, bias=bias, accumulate=True)
    with pytest.raises(ValueError, match="bias"):
        _kernels.ukr(A, Bp, C, half=half, bias=bias[:-1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_ukr_pair_gives_each_panels_results(arch, dtype):
    """The two-panel form (fastrnn.h's ukr_pair) gives, bit for bit, the microkernel's results on
    each panel, for every row count, K and accumulate, and leaves C's storage past its 2 * nr
    columns alone."""
    info = _kernels.kernel_info()[np.dtype(dtype).name]
    mr, nr = info["mr"], info["nr"]
    rng = np.random.default_rng(8)
    for m in range(1, mr + 1):
        for K in (0, 1, 2, 3, 7, 17, 100):
            A = rng.standard_normal((m, K + 3)).astype(dtype)[:, :K]
            Bp = rng.standard_normal((2, K, nr)).astype(dtype)
            for accumulate in (False, True):
                C0 = rng.standard_normal((m, 2 * nr)).astype(dtype)
                store = np.full((m + 1, 2 * nr + 3), 3.0, dtype=dtype)
                C = store[:m, :2 * nr]
                C[...] = C0
                _kernels.ukr(A, Bp, C, accumulate=accumulate, pair=True)
                each = C0.copy()
                for p in range(2):
                    _kernels.ukr(A, np.ascontiguousarray(Bp[p]), each[:, p * nr:(p + 1) * nr],
                                 accumulate=accumulate)
                np.testing.assert_array_equal(C, each, err_msg=f"m={m} K={K}")
                assert np.all(store[m:, :] == 3.0) and np.all(store[:, 2 * nr:] == 3.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ukr_sums_a_row_alike_in_tiles_of_three_rows_or_more(arch, dtype):
    """A row's sums do not depend on the tile it is computed in, from 3 rows up: batch groups
    (recurrence.c's groups_keep_sums) rely on it to give a call's results whatever team it gets,
    e.g. 7 rows as one tile or as 3 + 4."""
    info = _kernels.kernel_info()[np.dtype(dtype).name]
    mr, nr = info["mr"], info["nr"]
    rng = np.random.default_rng(9)
    K = 301
    A = rng.standard_normal((mr, K)).astype(dtype)
    Bp = rng.standard_normal((K, nr)).astype(dtype)
    whole = np.empty((mr, nr), dtype=dtype)
    _kernels.ukr(A, Bp, whole)
    for m in range(3, mr + 1):
        C = np.empty((m, nr), dtype=dtype)
        _kernels.ukr(A[:m], Bp, C)
        np.testing.assert_array_equal(C, whole[:m], err_msg=f"m={m}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_ukr_exact_buffers(arch, dtype):
    """A exactly (m, K) and Bp exactly (K, nr): under FASTRNN_SANITIZE=1 any read past row m-1,
    column K-1 or the panel's end is a reported heap overflow."""
    info = _kernels.kernel_info()[np.dtype(dtype).name]
    mr, nr = info["mr"], info["nr"]
    rng = np.random.default_rng(7)
    for m in range(1, mr + 1):
        for K in (1, 5, 33):
            A = rng.standard_normal((m, K)).astype(dtype)
            Bp = rng.standard_normal((K, nr)).astype(dtype)
            C = np.empty((m, nr), dtype=dtype)
            _kernels.ukr(A, Bp, C)
            ref = A.astype(np.float64) @ Bp.astype(np.float64)
            scale = np.abs(A.astype(np.float64)) @ np.abs(Bp.astype(np.float64))
            assert np.all(np.abs(C - ref) <= _tol(dtype, K) * scale)


def test_kernel_info_shapes():
    for name in ARCHES:
        old = _kernels.get_arch()
        _kernels.set_arch(name)
        try:
            info = _kernels.kernel_info()
        finally:
            _kernels.set_arch(old)
        assert info["arch"] == name
        for dt in ("float32", "float64"):
            assert 1 <= info[dt]["mr"] <= 12 and info[dt]["nr"] in (8, 16, 32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_transposed_a_in_blocks(arch, dtype):
    """Transposed A whose storage rows lie a page or more apart (M >= 1024 floats) is packed a
    block of row slices at a time (gemm.c's pack_a_block): rows over several blocks per thread
    with a partial last block and slice, K over several K blocks, a partial last panel; bitwise
    equal to the same product from A transposed in memory (the same kernel calls on the same
    values), for 1 and 2 threads. Nearer rows (M = 397) take the slice by slice copy."""
    rng = np.random.default_rng(9)
    for M, N, K in [(1100, 70, 300), (2053, 33, 513), (1029, 64, 40), (397, 70, 300)]:
        A, B = _operands(rng, M, N, K, True, False, dtype)
        At = np.ascontiguousarray(A.T)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        for nt in (1, 2):
            C = C0.copy()
            _kernels.gemm(A, B, C, transa=True, beta=1.0, nthreads=nt)
            _check(C, A, B, C0, True, False, 1.0, K)
            D = C0.copy()
            _kernels.gemm(At, B, D, beta=1.0, nthreads=nt)
            assert np.array_equal(C, D)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("transa", [False, True])
def test_gemm_pair_equals_two_gemms(arch, dtype, transa):
    """fr_gemm_pair (op(A) packed once for two products, as the backward's dw_ih and dw_hh):
    each C bit for bit fr_gemm's, whatever the thread grid it takes (panels of the second
    product after the first's, a partial last panel in each, A's slices split by rows or by
    panels), with beta 0 and 1, and an empty product on either side."""
    rng = np.random.default_rng(21)
    for M, N1, N2, K in [(512, 128, 128, 700), (130, 33, 70, 257), (37, 300, 7, 100),
                         (1100, 70, 45, 300), (5, 0, 17, 20), (9, 12, 0, 31), (3, 1, 1, 1)]:
        A = rng.standard_normal((K, M) if transa else (M, K)).astype(dtype)
        B1 = rng.standard_normal((K, N1)).astype(dtype)
        B2 = rng.standard_normal((K, N2)).astype(dtype)
        for beta in (0.0, 1.0):
            C01 = rng.standard_normal((M, N1)).astype(dtype)
            C02 = rng.standard_normal((M, N2)).astype(dtype)
            for nt in (1, 2, 3):
                C1, C2, D1, D2 = C01.copy(), C02.copy(), C01.copy(), C02.copy()
                _kernels.gemm_pair(A, B1, C1, B2, C2, transa=transa, beta=beta, nthreads=nt)
                _kernels.gemm(A, B1, D1, transa=transa, beta=beta, nthreads=nt)
                _kernels.gemm(A, B2, D2, transa=transa, beta=beta, nthreads=nt)
                assert np.array_equal(C1, D1) and np.array_equal(C2, D2), (M, N1, N2, K, nt)
                _check(C1, A, B1, C01, transa, False, beta, K)
    with pytest.raises(ValueError, match="B2 must have"):
        _kernels.gemm_pair(A, B1, C1, B2[:-1], C2, transa=transa)
