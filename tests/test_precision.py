"""bfloat16 and int8: the kernels against the reference of the same rounding (every SIMD path
this machine has, the portable kernels forced), the rounding and quantization scheme itself,
prepared weights (reuse, invalidation), the bf16 backward, streaming, and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels, _native, functional, reference
from fastrnn._cells import CELLS

CELL_NAMES = tuple(CELLS)
REDUCED = ("bfloat16", "int8")
# the kernels sum in float32 in another order than NumPy and a state may round the other way
# at a bf16/int8 boundary: far below the distance to the float32 result (checked below)
TOL = 2e-4


def _weights(rng, cell, I, H, scale=0.3, identity=False):
    G = CELLS[cell].gates
    w_ih = None if identity else (rng.standard_normal((G * H, I)) * scale).astype(np.float32)
    w_hh = (rng.standard_normal((G * H, H)) * scale).astype(np.float32)
    b_ih = rng.standard_normal(G * H).astype(np.float32) * 0.5
    b_hh = rng.standard_normal(G * H).astype(np.float32) * 0.5
    return w_ih, w_hh, b_ih, b_hh


def _nl(cell):
    return "tanh" if CELLS[cell].nonlinearities else None


def _inputs(rng, cell, T, B, I, H):
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = (rng.standard_normal((B, H)) * 0.5).astype(np.float32)
    c0 = (rng.standard_normal((B, H)) * 0.5).astype(np.float32) \
        if CELLS[cell].has_cell_state else None
    return x, h0, c0


@pytest.fixture(params=["amx", "vnni", "plain"])
def amx(request):
    """The kernel choices of the AVX-512 path: AMX (bf16 and int8) where the machine has it;
    without AMX (AVX512_BF16 vdpbf16ps, VNNI vpdpbusd); without AMX and VNNI (int8 on the
    widening AVX2 kernel). On a machine without a feature the choices coincide."""
    _kernels.lp_set_amx(request.param == "amx")
    _kernels.lp_set_vnni(request.param != "plain")
    yield request.param
    _kernels.lp_set_amx(True)
    _kernels.lp_set_vnni(True)


def _run(mod, cell, x, h0, c0, w, **kw):
    return mod.cell_forward(cell, x, h0, c0, *w, nonlinearity=_nl(cell), **kw)


# ---- the scheme ---------------------------------------------------------------------------


def test_round_bf16_values():
    a = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-9, 1 + 2**-7 + 2**-8, -2.5, np.inf, -np.inf,
                  3.3961776e38, 0.0], np.float32)
    want = np.array([1.0, 1.0, 1 + 2**-7, 1 + 2**-6, -2.5, np.inf, -np.inf, np.inf, 0.0],
                    np.float32)
    np.testing.assert_array_equal(reference.round_bf16(a), want)
    assert np.isnan(reference.round_bf16(np.array([np.nan], np.float32)))[0]
    r = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(_kernels.round_bf16(r), reference.round_bf16(r))
    assert not np.any(reference.round_bf16(r).view(np.uint32) & 0xFFFF)
    assert np.all(np.abs(reference.round_bf16(r) - r) <= np.abs(r) * 2.0**-8)


def test_quantize_rows_int8():
    a = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [1.0, np.nan, 2.0]], np.float32)
    q, s = reference.quantize_rows_int8(a)
    assert q.dtype == np.int8 and s.dtype == np.float32
    np.testing.assert_array_equal(q[0], [64, -127, 32])  # 63.5 rounds to even 64; 31.75 -> 32
    assert s[0] == np.float32(1.0) / np.float32(127)
    np.testing.assert_array_equal(q[1], 0)
    assert s[1] == 0
    assert np.isnan(s[2]) and not q[2].any()
    r = np.random.default_rng(1).standard_normal((20, 33)).astype(np.float32)
    q, s = reference.quantize_weights_int8(r)
    assert np.abs(q).max() == 127
    assert np.all(np.abs(q * s[:, None] - r) <= s[:, None] * 0.5 + 1e-7)


# ---- kernels against the reference of the same rounding ------------------------------------


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_forward_matches_reference(arch, amx, cell, precision):
    rng = np.random.default_rng(2)
    T, B, I, H = 7, 11, 40, 70
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H)
    y, h, c, _ = _run(functional, cell, x, h0, c0, w, training=False, precision=precision)
    yr, hr, cr, _ = _run(reference, cell, x, h0, c0, w, training=False, precision=precision)
    y32 = _run(reference, cell, x, h0, c0, w, training=False)[0]
    err = np.abs(y - yr).max()
    assert err < TOL
    np.testing.assert_allclose(h, hr, atol=TOL)
    if c is not None:
        np.testing.assert_allclose(c, cr, atol=TOL)
    # a missing rounding step would land near the float32 result: it is much further away
    assert np.abs(y32 - yr).max() > 20 * TOL


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_portable_kernels_match(cell, precision):
    """The portable C kernels (generic path) give the SIMD kernels' numbers."""
    rng = np.random.default_rng(3)
    x, h0, c0 = _inputs(rng, cell, 5, 9, 37, 45)
    w = _weights(rng, cell, 37, 45)
    old = _kernels.get_arch()
    try:
        _kernels.set_arch("generic")
        assert _kernels.lowp_info()[precision] == "portable"
        yg = _run(functional, cell, x, h0, c0, w, training=False, precision=precision)[0]
    finally:
        _kernels.set_arch(old)
    y = _run(functional, cell, x, h0, c0, w, training=False, precision=precision)[0]
    yr = _run(reference, cell, x, h0, c0, w, training=False, precision=precision)[0]
    assert np.abs(yg - yr).max() < TOL
    assert np.abs(yg - y).max() < TOL


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_lengths_reverse(cell, precision, reverse):
    rng = np.random.default_rng(4)
    T, B, I, H = 9, 13, 20, 40
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H)
    lengths = rng.integers(0, T + 1, B)
    lengths[0], lengths[1] = 0, T
    kw = dict(training=False, precision=precision, lengths=lengths, reverse=reverse)
    y, h, _, _ = _run(functional, cell, x, h0, c0, w, **kw)
    yr, hr, _, _ = _run(reference, cell, x, h0, c0, w, **kw)
    assert np.abs(y - yr).max() < TOL
    assert np.abs(h - hr).max() < TOL
    np.testing.assert_array_equal(h[0], h0[0])  # an empty sequence keeps its state
    for b in range(B):
        assert not y[lengths[b]:, b].any()


@pytest.mark.parametrize("H", [24, 70])
@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_identity_input(cell, precision, H):
    """w_ih None: x holds the projection; it enters no GEMM and is not rounded. H = 70: three
    hidden blocks (the RNN's first two in one pointwise call, LP_SPAN)."""
    rng = np.random.default_rng(5)
    G = CELLS[cell].gates
    x, h0, c0 = _inputs(rng, cell, 6, 4, G * H, H)
    w = _weights(rng, cell, G * H, H, identity=True)
    y = _run(functional, cell, x, h0, c0, w, training=False, precision=precision)[0]
    yr = _run(reference, cell, x, h0, c0, w, training=False, precision=precision)[0]
    assert np.abs(y - yr).max() < TOL


def _check_bf16_backward(cell, shape, seed, tol, gap, ragged, reverse=False, scale=0.3):
    """The bf16 backward of a random problem against the reference of the same rounding (the
    relative norm of each gradient's difference below tol) and against the float32 reference
    (above gap: the rounding is measurable in each gradient). ragged: random lengths and
    gradients of the final states too."""
    rng = np.random.default_rng(seed)
    T, B, I, H = shape
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H, scale=scale)
    kw = dict(training=True, lengths=rng.integers(1, T + 1, B) if ragged else None,
              reverse=reverse)
    y, _, _, ctx = _run(functional, cell, x, h0, c0, w, precision="bf16", **kw)
    _, _, _, ctxr = _run(reference, cell, x, h0, c0, w, precision="bf16", **kw)
    _, _, _, ctx32 = _run(reference, cell, x, h0, c0, w, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dh = rng.standard_normal(h0.shape).astype(np.float32) if ragged else None
    dc = rng.standard_normal(h0.shape).astype(np.float32) if ragged and c0 is not None else None
    got = functional.cell_backward(ctx, dy, dh, dc)
    want = reference.cell_backward(ctxr, dy, dh, dc)
    want32 = reference.cell_backward(ctx32, dy, dh, dc)
    for g, r, r32 in zip(got, want, want32, strict=True):
        if r is None:
            assert g is None
            continue
        size = float(np.linalg.norm(r))
        assert np.linalg.norm(g - r) < tol * size
        assert np.linalg.norm(r32 - r) > gap * size


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bf16_backward_matches_reference(arch, amx, cell):
    """Relative norms: a gate gradient on a bf16 rounding boundary may round the other way in
    the kernel (its float32 sums differ in the last bits), moving one product term."""
    _check_bf16_backward(cell, (6, 5, 17, 33), seed=6, tol=3e-4, gap=2e-3, ragged=True)


@pytest.mark.parametrize("T", [2, 40])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bf16_batch_of_one_both_row_kernels(amx, cell, T):
    """A batch of one: its forward's one-row products run on vdpbf16ps for a short call (T = 2)
    and, where the machine has AMX, on AMX tiles for a longer one (T = 40: each row's work over
    the call passes LP_AMX_ROW_MACS); the backward's on vdpbf16ps. H = 70: three hidden blocks,
    the RNN's first two in one pointwise call (LP_SPAN) and its last alone. Against the
    reference of the same rounding, forward and backward."""
    I, H = 40, 70
    G = CELLS[cell].gates
    macs = T * (I + H) * G * H
    assert (macs >= 98304) == (T == 40)
    info = _kernels.lowp_info()["bfloat16"]
    small = "avx512_bf16" if info == "amx_bf16" else info
    assert _kernels.lowp_rows_path("bfloat16", 1, macs) == (info if T == 40 else small)
    _check_bf16_backward(cell, (T, 1, I, H), seed=31, tol=3e-4, gap=8e-4, ragged=False,
                         scale=0.1)
    rng = np.random.default_rng(32)
    x, h0, c0 = _inputs(rng, cell, T, 1, I, H)
    w = _weights(rng, cell, I, H, scale=0.1)
    kw = dict(training=False, precision="bf16")
    y, h, _, _ = _run(functional, cell, x, h0, c0, w, **kw)
    yr, hr, _, _ = _run(reference, cell, x, h0, c0, w, **kw)
    assert np.abs(y - yr).max() < TOL
    assert np.abs(h - hr).max() < TOL


@pytest.mark.parametrize("ragged,reverse", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_bf16_backward_keeping_gate_gradients_in_bf16_only(arch, amx, cell, ragged, reverse):
    """G*H a multiple of 32 (H = 32): the backward keeps its gate gradients as bf16 rows only
    (recurrence.c's step_only: the float ones stay in each step's rows, whence the bias sums and
    the bf16 copy are taken), with lengths that end rows early and reversed sequences. The
    bounds of test_bf16_backward_long_sequence: gate gradients rounded to bf16 once, as the
    kernels do, move a product term where one sits on a rounding boundary."""
    _check_bf16_backward(cell, (7, 6, 17, 32), seed=9, tol=1.8e-3, gap=2e-3, ragged=ragged,
                         reverse=reverse)


def test_bf16_backward_gemms_in_k_slabs_same_bits_on_any_team(amx):
    """The bf16 GEMMs sum each tile over K in slabs (gemm_bf16.c's BF_KC words), the tiles owned
    by panels or, with fewer panels than threads, by row blocks: dx's GEMM with K = G*H = 1152
    (2 slabs; its 20 columns, one panel, split by rows on 2 and 3 threads) and the weight
    gradients' with K = T*B = 1120. The gradients match the reference of the same rounding and
    are the same bits on 1, 2 and 3 threads (each run on fresh memory: a kept block holding the
    previous run's packed operands would hide a part left unpacked)."""
    rng = np.random.default_rng(11)
    T, B, I, H = 8, 140, 20, 288
    x, h0, c0 = _inputs(rng, "lstm", T, B, I, H)
    w = _weights(rng, "lstm", I, H)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    _, _, _, ctxr = _run(reference, "lstm", x, h0, c0, w, precision="bf16", training=True)
    _, _, _, ctx32 = _run(reference, "lstm", x, h0, c0, w, training=True)
    want = reference.cell_backward(ctxr, dy, None, None)
    want32 = reference.cell_backward(ctx32, dy, None, None)
    runs = []
    try:
        for n in (1, 2, 3):
            fastrnn.set_num_threads(n)
            _kernels.set_team_threads(n)  # whatever the load (the reference's BLAS threads)
            _native.release_memory()
            _, _, _, ctx = _run(functional, "lstm", x, h0, c0, w, precision="bf16",
                                training=True)
            runs.append(functional.cell_backward(ctx, dy, None, None))
    finally:
        fastrnn.set_num_threads(None)
        _kernels.set_team_threads(0)
    for got in runs[1:]:
        for g, g1 in zip(got, runs[0], strict=True):
            np.testing.assert_array_equal(g, g1)
    for g, r, r32 in zip(runs[0], want, want32, strict=True):
        size = float(np.linalg.norm(r))
        assert np.linalg.norm(g - r) < 6e-3 * size
        assert np.linalg.norm(r32 - r) > 1.2e-2 * size


def test_bf16_backward_long_sequence(arch, amx):
    """A bf16 LSTM backward whose weight-gradient GEMMs have K = T*B = 1100 (lowp_kernels.c's
    transposed copy runs in passes of 64 words: 9 of them, the last partial; 4*H = 320 rows over
    the threads). Over 50 steps the gate gradients on a bf16 rounding boundary add up to
    relative differences of about 1e-3 against the reference of the same rounding, against 6e-3
    to 1e-2 between the float32 and the bf16 reference: the bound sits between the two."""
    _check_bf16_backward("lstm", (50, 22, 40, 80), seed=16, tol=3e-3, gap=5e-3, ragged=False)


@pytest.mark.parametrize("H", [32, 33])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bf16_backward_rounds_its_float_operands(arch, amx, cell, H):
    """The bf16 backward is the float32 backward of the rounded operands (straight-through), and
    it takes x and the weights as floats: each of its products rounds them as it packs them
    (fastrnn.h, fr_cell_backward_hq_s). A context whose x and weights were rounded beforehand
    gives the same bits; a product that used a float operand as it stands would differ. H = 32:
    the backward's bf16-only gate gradients (LSTM, RNN); 33: the float ones."""
    rng = np.random.default_rng(7)
    x, h0, c0 = _inputs(rng, cell, 4, 3, 8, H)
    w = _weights(rng, cell, 8, H)
    y, _, _, ctx = _run(functional, cell, x, h0, c0, w, training=True, precision="bfloat16")
    assert ctx.p.precision == "bfloat16"
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = functional.cell_backward(ctx, dy, None, None)
    p = ctx.p
    assert not np.array_equal(p.x, reference.round_bf16(p.x))  # rounding moves these values
    ctx.p = dataclasses.replace(p, x=reference.round_bf16(p.x),
                                w_ih=reference.round_bf16(p.w_ih),
                                w_hh=reference.round_bf16(p.w_hh))
    again = functional.cell_backward(ctx, dy, None, None)
    for g, g2 in zip(got, again, strict=True):
        np.testing.assert_array_equal(g, g2)
    assert all(a is None or np.isfinite(a).all() for a in got)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_bf16_backward_reads_no_cached_previous_state(arch, amx, cell):
    """The bf16 training forward of an LSTM or RNN leaves the cache's h_{t-1} rows unwritten
    (lowp.c): their backward takes the rounded h_{t-1} (hq) for dw_hh and their pointwise does
    not read it. NaN in those rows changes no gradient, with lengths and without."""
    rng = np.random.default_rng(12)
    T, B, I, H = 5, 4, 9, 33
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H)
    for lengths in (None, np.array([5, 2, 4, 1])):
        y, _, _, ctx = _run(functional, cell, x, h0, c0, w, training=True, precision="bf16",
                            lengths=lengths)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        got = functional.cell_backward(ctx, dy, None, None)
        ctx.cache[:T * B * H] = np.nan
        again = functional.cell_backward(ctx, dy, None, None)
        for g, g2 in zip(got, again, strict=True):
            np.testing.assert_array_equal(g, g2)
        assert all(g is None or np.isfinite(g).all() for g in got)


@pytest.mark.parametrize("transa", [False, True])
@pytest.mark.parametrize("transb", [False, True])
def test_gemm_bf16_matches_the_product_of_rounded_operands(arch, amx, transa, transb):
    """fr_gemm_bf16 (the bf16 backward's GEMMs) rounds both operands to bf16 as it packs them,
    op(B) = B^T included (its columns are B's rows: lowp_kernels.c's lp_pack_nk_bf16), and sums
    in float32: against float64 products of the rounded operands, the float32 bound of
    test_gemm.py (4*K*eps32 relative to |op(A)| @ |op(B)|); odd K, partial panels and row
    blocks, whole 32 x 32 tiles summed in place over two slabs of K (AMX's lp_kernel.acc),
    beta 0 and 1, 1 and 2 threads, rows at a stride."""
    rng = np.random.default_rng(11)
    for M, N, K in [(1, 1, 1), (3, 17, 7), (33, 40, 65), (70, 97, 300), (5, 64, 1100),
                    (64, 70, 1100)]:
        a_shape = (K, M) if transa else (M, K)
        b_shape = (N, K) if transb else (K, N)
        A = rng.standard_normal((a_shape[0], a_shape[1] + 3)).astype(np.float32)[:, :a_shape[1]]
        B = rng.standard_normal((b_shape[0], b_shape[1] + 5)).astype(np.float32)[:, :b_shape[1]]
        a = reference.round_bf16(A.T if transa else A).astype(np.float64)
        b = reference.round_bf16(B.T if transb else B).astype(np.float64)
        C0 = rng.standard_normal((M, N)).astype(np.float32)
        for beta in (0.0, 1.0):
            want = a @ b + (C0 if beta else 0.0)
            bound = 4 * K * float(np.finfo(np.float32).eps) * (
                np.abs(a) @ np.abs(b) + (np.abs(C0) if beta else 0.0)) + 1e-30
            for nt in (1, 2):
                C = C0.copy()
                _kernels.gemm(A, B, C, transa=transa, transb=transb, beta=beta, nthreads=nt,
                              bf16=True)
                assert np.all(np.abs(C - want) <= bound), (M, N, K, beta, nt)
                if K > 1:  # the operands' rounding is measurable: not a float32 product
                    exact = (A.T if transa else A).astype(np.float64) @ (
                        B.T if transb else B).astype(np.float64) + (C0 if beta else 0.0)
                    assert np.abs(C - want).max() * 10 < np.abs(C - exact).max()


# ---- prepared weights ----------------------------------------------------------------------


@pytest.mark.parametrize("precision", REDUCED)
def test_prepared_reused_and_invalidated(precision):
    rng = np.random.default_rng(8)
    cell = "gru"
    x, h0, _ = _inputs(rng, cell, 5, 3, 12, 20)
    w = list(_weights(rng, cell, 12, 20))
    pw = functional.prepare_weights(cell, *w, precision=precision)
    assert isinstance(pw, functional.PreparedWeights)
    y1 = _run(functional, cell, x, h0, None, w, training=False, precision=precision,
              prepared=pw)[0]
    packed = pw.packed()
    y2 = _run(functional, cell, x, h0, None, w, training=False, precision=precision,
              prepared=pw)[0]
    np.testing.assert_array_equal(y1, y2)
    assert pw.packed() is packed  # reused, not packed again
    w[1][3, 4] += 1.0  # in place: the next call must see it
    w[2][0] = 5.0
    y3 = _run(functional, cell, x, h0, None, w, training=False, precision=precision,
              prepared=pw)[0]
    yr = _run(reference, cell, x, h0, None, w, training=False, precision=precision)[0]
    assert np.abs(y3 - yr).max() < TOL
    assert np.abs(y3 - y1).max() > 1e-3
    # other arrays with other values: packed again from them
    w2 = [a.copy() * 0.5 for a in w]
    y4 = _run(functional, cell, x, h0, None, w2, training=False, precision=precision,
              prepared=pw)[0]
    yr2 = _run(reference, cell, x, h0, None, w2, training=False, precision=precision)[0]
    assert np.abs(y4 - yr2).max() < TOL


def test_prepared_identity_check_and_update():
    rng = np.random.default_rng(9)
    x, h0, c0 = _inputs(rng, "lstm", 4, 2, 6, 10)
    w = list(_weights(rng, "lstm", 6, 10))
    pw = functional.prepare_weights("lstm", *w, precision="int8", check="identity")
    pw.version = 1
    y1 = _run(functional, "lstm", x, h0, c0, w, training=False, precision="int8",
              prepared=pw)[0]
    w[1] *= 2.0  # in place, the owner tells the object
    pw.update(*w)
    pw.version = 2
    y2 = _run(functional, "lstm", x, h0, c0, w, training=False, precision="int8",
              prepared=pw)[0]
    yr = _run(reference, "lstm", x, h0, c0, w, training=False, precision="int8")[0]
    assert np.abs(y2 - yr).max() < TOL and np.abs(y2 - y1).max() > 1e-3
    assert pw.version == 2


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_prepared_identity_check_sees_other_arrays(precision):
    """With check='identity' the object holds its weights by which arrays they are (data
    pointer, shape, strides, dtype): a call with other arrays (even ones equal in shape) is packed
    again from them, a strided view of the same memory too."""
    rng = np.random.default_rng(10)
    x, h0, c0 = _inputs(rng, "lstm", 4, 2, 6, 10)
    w = list(_weights(rng, "lstm", 6, 10))
    pw = functional.prepare_weights("lstm", *w, precision=precision, check="identity")
    y1 = _run(functional, "lstm", x, h0, c0, w, training=False, precision=precision,
              prepared=pw)[0]
    w2 = [a * 0.5 for a in w]  # new arrays, same shapes
    y2 = _run(functional, "lstm", x, h0, c0, w2, training=False, precision=precision,
              prepared=pw)[0]
    yr = _run(reference, "lstm", x, h0, c0, w2, training=False, precision=precision)[0]
    assert np.abs(y2 - yr).max() < TOL and np.abs(y2 - y1).max() > 1e-3
    wide = np.zeros((w[1].shape[0] * 2, w[1].shape[1]), np.float32)
    wide[::2] = w[1]
    w3 = [w[0], wide[::2], w[2], w[3]]  # the first weights' values in a strided view
    y3 = _run(functional, "lstm", x, h0, c0, w3, training=False, precision=precision,
              prepared=pw)[0]
    np.testing.assert_array_equal(y3, y1)


def test_array_key_tells_arrays_apart():
    from fastrnn import _kernels
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert _kernels.array_key(a) == _kernels.array_key(a)
    assert _kernels.array_key(a) != _kernels.array_key(a.copy())
    assert _kernels.array_key(a) != _kernels.array_key(a.reshape(4, 3))
    assert _kernels.array_key(a[:, ::2]) != _kernels.array_key(a[:, :2])
    assert _kernels.array_key(a) != _kernels.array_key(a.view(np.int32))
    with pytest.raises(TypeError, match="ndarray"):
        _kernels.array_key([1.0])


def test_prepared_mismatch_errors():
    rng = np.random.default_rng(10)
    x, h0, c0 = _inputs(rng, "lstm", 3, 2, 6, 10)
    w = _weights(rng, "lstm", 6, 10)
    pw = functional.prepare_weights("lstm", *w, precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        _run(functional, "lstm", x, h0, c0, w, training=False, precision="int8", prepared=pw)
    with pytest.raises(TypeError, match="prepared"):
        _run(functional, "lstm", x, h0, c0, w, training=False, precision="bf16",
             prepared=object())
    wg = _weights(rng, "gru", 6, 10)
    pg = functional.prepare_weights("gru", *wg, precision="bf16")
    with pytest.raises(ValueError, match="cell"):
        _run(functional, "lstm", x, h0, c0, w, training=False, precision="bf16", prepared=pg)
    with pytest.raises(ValueError, match="check"):
        functional.prepare_weights("lstm", *w, precision="bf16", check="never")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_packed_weights_fill_their_whole_aligned_buffer(precision):
    # The packed buffer is cut 64-byte aligned out of a larger array. numpy's arrays start
    # 16-byte aligned, so most sizes need an offset: an offset computed with C's signed
    # remainder once cut an empty array from the end, and the packing wrote past it.
    for H in (1, 4, 20, 33, 64, 100):
        for I in (1, 7, 64):
            w = _weights(np.random.default_rng(H * 100 + I), "lstm", I, H)
            packed = _kernels.lp_pack("lstm", "bfloat16" if precision == "bf16" else precision,
                                      *w)
            assert packed.ctypes.data % 64 == 0
            assert packed.size > 0
            assert packed.base.size == packed.size + 64


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bf16_panels_hold_the_rounded_weights(arch, cell):
    """The packed W_ih / W_hh panels (lowp.h: panel (jb, g), word (p, c) = bf16 W[g*H + 32*jb + c]
    at k = 2p (low half) and 2p + 1 (high half), zero past K and past H) equal the reference's
    rounding on every path, at sizes with K odd, under and over a 16-word transpose block, and
    H not a multiple of the 32 columns; the weights include NaN, +-inf, denormals and halfway
    cases."""
    G = CELLS[cell].gates
    hdr = ("magic", "cell", "prec", "identity", "I", "H", "G", "njb", "off_bias", "off_bhn",
           "off_ih", "off_hh", "pb_ih", "pb_hh", "total")
    for I, H in ((1, 1), (7, 17), (33, 40), (45, 50), (64, 33), (129, 70)):
        w = list(_weights(np.random.default_rng(I * 1000 + H), cell, I, H))
        for a in w[:2]:
            flat = a.reshape(-1)
            flat[::7] = np.float32(1.0 + 2.0 ** -8)  # halfway: to even
            flat[3::11] = np.float32(1.5e-40)  # denormal: kept
            flat[:4] = np.array([np.nan, np.inf, -np.inf, -0.0], np.float32)[:flat.size]
        packed = _kernels.lp_pack(cell, "bfloat16", *w)
        h = dict(zip(hdr, packed[:len(hdr) * 8].view(np.int64).tolist(), strict=True))
        assert (h["I"], h["H"], h["G"]) == (I, H, G)
        for off, pb, W, K in (("off_ih", "pb_ih", w[0], I), ("off_hh", "pb_hh", w[1], H)):
            bits = reference.round_bf16(W).view(np.uint32) >> 16  # (G*H, K)
            kw = (K + 1) // 2
            for jb in range(h["njb"]):
                for g in range(G):
                    at = h[off] + (jb * G + g) * h[pb]
                    got = packed[at:at + kw * 32 * 4].view(np.uint32).reshape(kw, 32)
                    want = np.zeros((kw, 32), np.uint32)
                    cols = np.arange(32 * jb, min(H, 32 * jb + 32))
                    rows = bits[g * H + cols]  # (n, K)
                    pad = np.zeros((len(cols), 2 * kw), np.uint32)
                    pad[:, :K] = rows
                    want[:, :len(cols)] = (pad[:, 0::2] | (pad[:, 1::2] << 16)).T
                    np.testing.assert_array_equal(got, want, err_msg=f"{off} {jb} {g} {I} {H}")


def test_packed_weights_must_be_lp_packs_whole_array():
    rng = np.random.default_rng(13)
    x, h0, c0 = _inputs(rng, "lstm", 3, 2, 6, 10)
    w = _weights(rng, "lstm", 6, 10)
    packed = _kernels.lp_pack("lstm", "bfloat16", *w)

    def run(pk):
        y, h_n, c_n = (np.empty((3, 2, 10), np.float32), np.empty((2, 10), np.float32),
                       np.empty((2, 10), np.float32))
        _kernels.lp_forward("lstm", pk, y, h_n, c_n, None, None, x, h0, c0, None, 0, False, 1)
        return y

    y = run(packed)
    np.testing.assert_array_equal(y, _run(functional, "lstm", x, h0, c0, w, training=False,
                                          precision="bf16")[0])
    with pytest.raises(ValueError, match="whole array"):
        run(packed[:-64])  # a truncated copy would be read past its end
    with pytest.raises(ValueError, match="whole array"):
        run(packed[64:])  # no header where one is expected
    for field in (1, 6, 7, 11, 13):  # cell, G, njb, an offset, a panel size
        bad = _kernels.lp_pack("lstm", "bfloat16", *w)
        bad[:128].view(np.int64)[field] += 1
        with pytest.raises(ValueError):
            run(bad)


def test_prepared_float32_precision():
    rng = np.random.default_rng(11)
    x, h0, c0 = _inputs(rng, "lstm", 3, 2, 6, 10)
    w = _weights(rng, "lstm", 6, 10)
    pw = functional.prepare_weights("lstm", *w, precision="float32")
    y = _run(functional, "lstm", x, h0, c0, w, training=False, prepared=pw)[0]
    np.testing.assert_array_equal(y, _run(functional, "lstm", x, h0, c0, w, training=False)[0])


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_float64_refused(precision):
    rng = np.random.default_rng(12)
    x, h0, c0 = _inputs(rng, "lstm", 3, 2, 6, 10)
    w = _weights(rng, "lstm", 6, 10)
    with pytest.raises(TypeError, match="x is float64"):
        _run(functional, "lstm", x.astype(np.float64), h0, c0, w, training=False,
             precision=precision)
    w64 = (w[0], w[1].astype(np.float64), w[2], w[3])
    with pytest.raises(TypeError, match="w_hh"):
        _run(functional, "lstm", x, h0, c0, w64, training=False, precision=precision)
    with pytest.raises(TypeError, match="w_hh"):
        functional.prepare_weights("lstm", *w64, precision=precision)


def test_int8_training_and_unknown_refused():
    rng = np.random.default_rng(13)
    x, h0, c0 = _inputs(rng, "lstm", 3, 2, 6, 10)
    w = _weights(rng, "lstm", 6, 10)
    with pytest.raises(ValueError, match="int8 is inference-only"):
        _run(functional, "lstm", x, h0, c0, w, training=True, precision="int8")
    with pytest.raises(ValueError, match="precision"):
        _run(functional, "lstm", x, h0, c0, w, training=False, precision="fp8")
    assert functional.PRECISIONS == ("float32", "bfloat16", "int8")


@pytest.mark.parametrize("precision", REDUCED)
def test_nonfinite_propagates(precision):
    rng = np.random.default_rng(14)
    x, h0, c0 = _inputs(rng, "lstm", 3, 4, 6, 10)
    w = _weights(rng, "lstm", 6, 10)
    x[1, 2, 3] = np.nan
    y = _run(functional, "lstm", x, h0, c0, w, training=False, precision=precision)[0]
    yr = _run(reference, "lstm", x, h0, c0, w, training=False, precision=precision)[0]
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yr))
    assert np.isnan(y[1:, 2]).all() and not np.isnan(y[:, [0, 1, 3]]).any()


def test_per_cell_wrappers_pass_precision():
    rng = np.random.default_rng(15)
    x, h0, c0 = _inputs(rng, "lstm", 3, 2, 6, 10)
    w = _weights(rng, "lstm", 6, 10)
    a = functional.lstm_forward(x, h0, c0, *w, training=False, precision="int8")[0]
    b = functional.cell_forward("lstm", x, h0, c0, *w, training=False, precision="int8")[0]
    np.testing.assert_array_equal(a, b)
    wr = _weights(rng, "rnn", 6, 10)
    a = functional.rnn_forward(x, h0, *wr, training=False, precision="bf16")[0]
    b = reference.rnn_forward(x, h0, *wr, training=False)[0]
    assert 1e-5 < np.abs(a - b).max() < 0.1
    wg = _weights(rng, "gru", 6, 10)
    _, _, ctx = functional.gru_forward(x, h0, *wg, precision="bf16")
    assert ctx.p.precision == "bfloat16"


# ---- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_stream_steps_equal_sequence(amx, cell, precision):
    rng = np.random.default_rng(16)
    T, B, I, H = 6, 2, 5, 33
    x, _, _ = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H)
    st = _native.Stream([(cell, *w, "tanh")], B, np.float32, precision)
    assert st.precision == precision
    ys = np.stack([st.step(x[t]) for t in range(T)])
    y = _run(functional, cell, x, None, None, w, training=False, precision=precision)[0]
    np.testing.assert_array_equal(ys, y)


def test_stream_precision_needs_float32():
    w = _weights(np.random.default_rng(17), "lstm", 4, 8)
    with pytest.raises(TypeError, match="float32"):
        _native.Stream([("lstm", *w, "tanh")], 1, np.float64, "int8")
    with pytest.raises(ValueError, match="precision"):
        _native.Stream([("lstm", *w, "tanh")], 1, np.float32, "int4")


def test_amx_vnni_switch():
    _kernels.lp_set_amx(False)
    _kernels.lp_set_vnni(False)
    try:
        assert "amx" not in _kernels.lowp_info()["bfloat16"]
        assert "vnni" not in _kernels.lowp_info()["int8"]
        assert "amx" not in _kernels.lowp_info()["int8"]
    finally:
        _kernels.lp_set_amx(True)
        _kernels.lp_set_vnni(True)


@pytest.mark.parametrize("B", [1, 3, 4, 5, 9, 17, 33])
def test_int8_row_tiles(arch, amx, B):
    rng = np.random.default_rng(19)
    x, h0, c0 = _inputs(rng, "gru", 3, B, 45, 50)
    w = _weights(rng, "gru", 45, 50)
    y = _run(functional, "gru", x, h0, c0, w, training=False, precision="int8")[0]
    yr = _run(reference, "gru", x, h0, c0, w, training=False, precision="int8")[0]
    assert np.abs(y - yr).max() < TOL


@pytest.mark.parametrize("B", [1, 15, 16, 17, 32, 33, 40, 64])
def test_bf16_row_tiles(amx, B):
    """Batch sizes around the kernels' row tiles (8 rows; AMX: 16 and 32) and K not a multiple of
    32."""
    rng = np.random.default_rng(18)
    x, h0, c0 = _inputs(rng, "lstm", 4, B, 45, 50)
    w = _weights(rng, "lstm", 45, 50)
    y = _run(functional, "lstm", x, h0, c0, w, training=False, precision="bf16")[0]
    yr = _run(reference, "lstm", x, h0, c0, w, training=False, precision="bf16")[0]
    assert np.abs(y - yr).max() < TOL


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bf16_row_bits_do_not_depend_on_its_tile(amx, cell):
    """One thread, H = 300 (K = 300: two slabs of lowp.c's LP_KSLAB words): at B = 32 the step's
    products run as whole 32-row AMX tiles summed on C slab by slab (lp_kernel.acc), at B = 31 as
    a partial tile in one pass (ukr). A row's products do not depend on the other rows, so the
    first 31 rows agree bit for bit, outputs, training cache and rounded states."""
    import fastrnn
    rng = np.random.default_rng(27)
    T, I, H = 3, 40, 300
    x, h0, c0 = _inputs(rng, cell, T, 32, I, H)
    w = _weights(rng, cell, I, H, scale=0.05)
    old = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(1)
        for training in (False, True):
            kw = dict(training=training, precision="bfloat16")
            full = _run(functional, cell, x, h0, c0, w, **kw)
            part = _run(functional, cell, x[:, :31], h0[:31], None if c0 is None else c0[:31],
                        w, **kw)
            for a, b in zip(full[:3], part[:3], strict=True):
                if a is not None:
                    np.testing.assert_array_equal(a[..., :31, :] if a.ndim == 3 else a[:31], b)
            if training:
                np.testing.assert_array_equal(full[3].hq[:, :31], part[3].hq)
    finally:
        fastrnn.set_num_threads(old)


def test_build_info_reports_precision():
    info = _native.build_info()["precision"]
    assert set(info) == {"avx512_bf16", "avx512_vnni", "avx_vnni", "bfloat16", "int8"}
    assert info["bfloat16"] in ("amx_bf16", "avx512_bf16", "portable")
    assert info["int8"] in ("amx_int8", "avx512_vnni", "avx_vnni", "avx2_madd", "portable")
    if info["avx512_bf16"] and _kernels.get_arch() == "avx512":
        assert info["bfloat16"] in ("amx_bf16", "avx512_bf16")


@pytest.mark.parametrize("precision", REDUCED)
def test_forward_rows_precision(precision):
    """The Embedding fold's op (rows of a projected table) in a reduced precision."""
    rng = np.random.default_rng(20)
    H, V, T, B = 12, 9, 5, 3
    G = CELLS["lstm"].gates
    table = rng.standard_normal((V, G * H)).astype(np.float32)
    ids = rng.integers(0, V, (T, B)).astype(np.int64)
    _, w_hh, b_ih, b_hh = _weights(rng, "lstm", 1, H)
    training = precision == "bfloat16"
    y, h, c, ctx = _native.forward_rows("lstm", table, ids, None, None, w_hh, b_ih, b_hh,
                                        training=training, precision=precision)
    yr = reference.cell_forward("lstm", table[ids], None, None, None, w_hh, b_ih, b_hh,
                                training=False, precision=precision)[0]
    assert np.abs(y - yr).max() < TOL
    if training:
        dx = functional.cell_backward(ctx, np.ones_like(y), None, None)[0]
        assert dx.shape == (T, B, G * H)
    with pytest.raises(ValueError, match="ids"):
        _native.forward_rows("lstm", table, ids + V, None, None, w_hh, b_ih, b_hh,
                             training=False, precision=precision)


def test_int8_size_limit():
    """int8 sums stay in int32: an input wider than 65536 is refused, not overflowed."""
    w_ih = np.zeros((4, 65537), np.float32)
    w_hh = np.zeros((4, 1), np.float32)
    with pytest.raises(ValueError, match="65536"):
        functional.prepare_weights("lstm", w_ih, w_hh, None, None, precision="int8")


# ---- the small-rows kernel choice (AMX or AVX-512 by a product's rows) -----------------------


@pytest.fixture(params=["rule", "amx_always", "avx512_upto_64"])
def small_rows(request):
    """The measured rule (one row off AMX), AMX on every product, and every product of up to 64
    rows off AMX (a step of a batch up to 64 on AVX-512 while a longer projection chunk stays on
    AMX). On a machine without AMX the three coincide."""
    _kernels.lp_set_small_rows({"rule": -1, "amx_always": 0, "avx512_upto_64": 64}[request.param])
    yield request.param
    _kernels.lp_set_small_rows(-1)


def test_small_rows_rule_paths():
    """Which kernels a product's rows choose, both ways forced and by the rule."""
    info = _kernels.lowp_info()
    off = {"bfloat16": "avx512_bf16", "int8": "avx512_vnni"}
    try:
        for p in REDUCED:
            path = info[p]
            small = off[p] if path.startswith("amx") else path
            _kernels.lp_set_small_rows(-1)
            assert _kernels.lowp_rows_path(p, 1) == small
            assert _kernels.lowp_rows_path(p, 2) == path
            # one row of bf16 takes AMX once the call's work a row pays for the tiles' set-up
            # (LP_AMX_ROW_MACS, 98304); int8 stays on VNNI
            assert _kernels.lowp_rows_path(p, 1, 98303.0) == small
            assert _kernels.lowp_rows_path(p, 1, 98304.0) == (path if p == "bfloat16" else small)
            _kernels.lp_set_small_rows(0)
            assert _kernels.lowp_rows_path(p, 1) == path
            _kernels.lp_set_small_rows(64)
            assert _kernels.lowp_rows_path(p, 64) == small
            assert _kernels.lowp_rows_path(p, 64, 1e9) == small  # forced: whatever the work
            assert _kernels.lowp_rows_path(p, 65) == path
            assert _kernels.lowp_info()[p] == path  # the whole-path name does not move
    finally:
        _kernels.lp_set_small_rows(-1)


@pytest.mark.parametrize("B", [1, 2, 17])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_small_rows_forward_matches_reference(small_rows, cell, precision, reverse, B):
    """Every kernel choice of the step and the projection against the reference, with lengths,
    reverse and both directions (a bidirectional layer's two calls)."""
    rng = np.random.default_rng(21)
    T, I, H = 9, 37, 45
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    kw = dict(training=False, precision=precision, lengths=lengths, reverse=reverse)
    y, h, c, _ = _run(functional, cell, x, h0, c0, w, **kw)
    yr, hr, cr, _ = _run(reference, cell, x, h0, c0, w, **kw)
    assert np.abs(y - yr).max() < TOL
    assert np.abs(h - hr).max() < TOL
    if c is not None:
        assert np.abs(c - cr).max() < TOL
    y32 = _run(reference, cell, x, h0, c0, w, training=False, lengths=lengths, reverse=reverse)[0]
    assert np.abs(y32 - yr).max() > 20 * TOL


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_small_rows_stream_and_long_layer(small_rows, cell, precision):
    """A batch-1 stream step (one-row projection and step) against the sequence call (whose
    projection has T rows) and the reference (int8 sums are exact: identical; bf16 sums of
    another kernel may differ in the last bits)."""
    rng = np.random.default_rng(22)
    T, I, H = 4, 200, 160
    x, _, _ = _inputs(rng, cell, T, 1, I, H)
    w = _weights(rng, cell, I, H, scale=0.05)
    st = _native.Stream([(cell, *w, "tanh")], 1, np.float32, precision)
    ys = np.stack([st.step(x[t]) for t in range(T)])
    y = _run(functional, cell, x, None, None, w, training=False, precision=precision)[0]
    yr = _run(reference, cell, x, None, None, w, training=False, precision=precision)[0]
    if precision == "int8":
        np.testing.assert_array_equal(ys, y)
    assert np.abs(ys - y).max() < TOL
    assert np.abs(y - yr).max() < TOL
    assert np.abs(ys - yr).max() < TOL


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_small_rows_bf16_training_forward(small_rows, cell):
    """The bf16 training forward (cache, rounded h_{t-1}) of a batch of one under each choice."""
    rng = np.random.default_rng(23)
    T, B, I, H = 7, 1, 19, 33
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H)
    y, _, _, ctx = _run(functional, cell, x, h0, c0, w, training=True, precision="bf16")
    yr, _, _, ctxr = _run(reference, cell, x, h0, c0, w, training=True, precision="bf16")
    assert np.abs(y - yr).max() < TOL
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = functional.cell_backward(ctx, dy, None, None)
    want = reference.cell_backward(ctxr, dy, None, None)
    for g, r in zip(got, want, strict=True):
        if r is not None:
            assert np.linalg.norm(g - r) < 3e-4 * float(np.linalg.norm(r))


# ---- the thread team: rows split (a batch), hidden blocks split (a batch of one) ------------


@pytest.fixture(params=[1, 2])
def threads(request):
    import fastrnn
    old = fastrnn.get_num_threads()
    fastrnn.set_num_threads(request.param)
    yield request.param
    fastrnn.set_num_threads(old)


@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_team_rows_split(threads, small_rows, cell, precision, reverse, lengths):
    """A call big enough for two threads (over 8 MFLOP): with two, each owns rows of the batch
    for the whole sequence (odd B: unequal shares), its projection and step on its own rows."""
    rng = np.random.default_rng(24)
    T, B, I, H = 8, 17, 200, 100
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H, scale=0.05)
    ln = rng.integers(1, T + 1, B) if lengths else None
    kw = dict(training=precision == "bfloat16", precision=precision, lengths=ln,
              reverse=reverse)
    y, h, c, ctx = _run(functional, cell, x, h0, c0, w, **kw)
    yr, hr, cr, ctxr = _run(reference, cell, x, h0, c0, w, **kw)
    y32 = _run(reference, cell, x, h0, c0, w, training=False, lengths=ln, reverse=reverse)[0]
    # a state the kernel's float32 maths put on the other side of a bf16/int8 rounding boundary
    # moves a few entries by up to ~1e-3 for a step or two (a wrong row or column: by ~0.1-1);
    # far from the distance to the float32 result over all entries (the rounding is there)
    for a, r in ((y, yr), (h, hr), (c, cr)):
        if r is not None:
            assert np.abs(a - r).max() < 10 * TOL
    assert np.linalg.norm(y - yr) < 0.05 * np.linalg.norm(y32 - yr)
    if precision == "bfloat16":  # the cache and rounded states the backward reads, per row
        dy = rng.standard_normal(y.shape).astype(np.float32)
        for g, r in zip(functional.cell_backward(ctx, dy, None, None),
                        reference.cell_backward(ctxr, dy, None, None), strict=True):
            # relative norms, as in test_bf16_backward_matches_reference; this problem has
            # more bf16 roundings that a last-bit difference of the kernel's float32 maths can
            # send the other way: over 8 seeds x 3 cells up to 4.7e-4 (3.1e-4 before the
            # expm1 tanh); a wrong row or column moves a gradient by 1e-2 or more
            if r is not None:
                assert np.linalg.norm(g - r) < 1e-3 * float(np.linalg.norm(r))


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_team_blocks_split_batch_of_one(threads, cell, precision):
    """A batch of one with a step of over 4 MFLOP (GRU: 4.4): two threads split the hidden
    blocks and meet at a barrier every step."""
    rng = np.random.default_rng(25)
    T, B, I, H = 3, 1, 600, 610
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H, scale=0.04)
    for reverse in (False, True):
        kw = dict(training=False, precision=precision, reverse=reverse)
        y, h, _, _ = _run(functional, cell, x, h0, c0, w, **kw)
        yr, hr, _, _ = _run(reference, cell, x, h0, c0, w, **kw)
        assert np.abs(y - yr).max() < TOL
        assert np.abs(h - hr).max() < TOL


@pytest.mark.parametrize("B", [1, 3, 9])
@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_one_step_team_splits_the_hidden_blocks(amx, cell, precision, B):
    """A sequence of one step splits the hidden blocks between the threads at any batch (no
    barrier: one step's blocks are independent), so every thread runs the kernels of all B
    rows and the result is the one-thread result bit for bit, the bf16 training cache and
    rounded states included. H = 200: 7 blocks of 32, the last one of 8 units."""
    import fastrnn
    rng = np.random.default_rng(26)
    T, I, H = 1, 150, 200
    x, h0, c0 = _inputs(rng, cell, T, B, I, H)
    w = _weights(rng, cell, I, H, scale=0.05)
    training = precision == "bfloat16"
    kw = dict(training=training, precision=precision)
    old = fastrnn.get_num_threads()
    try:
        fastrnn.set_num_threads(1)
        one = _run(functional, cell, x, h0, c0, w, **kw)
        fastrnn.set_num_threads(2)
        _kernels.set_team_threads(2)
        steps, teams = _kernels.lp_step1_passes(), _kernels.lp_step1_team_passes()
        two = _run(functional, cell, x, h0, c0, w, **kw)
        assert _kernels.lp_step1_passes() == steps + 1
        assert _kernels.lp_step1_team_passes() == teams + 1
    finally:
        _kernels.set_team_threads(0)
        fastrnn.set_num_threads(old)
    for a, b in zip(one[:3], two[:3], strict=True):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    if training:  # LSTM, RNN: the cache's h_{t-1} rows are not written (hq serves)
        skip = 0 if cell == "gru" else T * B * H
        np.testing.assert_array_equal(one[3].cache[skip:], two[3].cache[skip:])
        np.testing.assert_array_equal(one[3].hq, two[3].hq)
    want = _run(reference, cell, x, h0, c0, w, **kw)
    for a, r in zip(two[:3], want[:3], strict=True):
        if r is not None:
            assert np.abs(a - r).max() < TOL


def test_a_small_one_step_call_takes_no_team():
    """A step of fewer than 2**18 weights (the fork and join cost more than the second thread
    saves) runs on one thread, whatever the thread count."""
    import fastrnn
    rng = np.random.default_rng(27)
    x, h0, c0 = _inputs(rng, "lstm", 1, 4, 64, 64)
    w = _weights(rng, "lstm", 64, 64)
    old = fastrnn.get_num_threads()
    fastrnn.set_num_threads(2)
    try:
        teams = _kernels.lp_step1_team_passes()
        for precision in REDUCED:
            _run(functional, "lstm", x, h0, c0, w, training=False, precision=precision)
    finally:
        fastrnn.set_num_threads(old)
    assert _kernels.lp_step1_team_passes() == teams


@pytest.mark.parametrize("n", [1, 15, 16, 17, 64, 1000, 4099])
def test_the_weights_checksum_sees_every_kind_of_change(n):
    """fr_checksum (the prepared weights' content check): equal bytes give equal sums
    wherever they lie; one changed word at any position, a swap of two words, every sign
    flipped (``p.data.neg_()``: a change of 2**31 in every word), a halving, or a changed
    tail byte give another."""
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype(np.float32)
    base = _kernels.checksum(a)
    assert _kernels.checksum(a.copy()) == base
    changed = []
    for i in {0, n // 3, n // 2, n - 1}:
        b = a.copy()
        b[i] = np.nextafter(b[i], np.float32(np.inf))
        changed.append(b)
        if n > 1:
            s = a.copy()
            j = (i + 1 + n // 2) % n
            s[i], s[j] = a[j], a[i]
            if a[i] != a[j]:
                changed.append(s)
    changed += [-a, a * np.float32(0.5)]
    for b in changed:
        assert _kernels.checksum(b) != base
    raw = a.view(np.uint8).copy()
    raw[-1] ^= 1
    assert _kernels.checksum(raw) != _kernels.checksum(a.view(np.uint8))
