"""Edge sizes of the functional ops and the C bridge: empty dimensions give the documented
results in both implementations; sizes beyond what an array can hold are a clear ValueError
(tested with empty inputs and the C size functions, never by allocating them); 64-bit size
arithmetic; single-row operands of the GEMM hook; masked rows with non-finite weights."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from fastrnn import _kernels

IMPLS = {"reference": "fastrnn.reference", "native": "fastrnn.functional"}
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


@pytest.fixture(params=list(IMPLS), scope="module")
def impl(request):
    return importlib.import_module(IMPLS[request.param])


def _args(cell, T, B, I, H, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    return {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((B, H)),
            "c0": rng.standard_normal((B, H)) if cell == "lstm" else None,
            "w_ih": rng.standard_normal((G * H, I)), "w_hh": rng.standard_normal((G * H, H)),
            "b_ih": rng.standard_normal(G * H), "b_hh": rng.standard_normal(G * H)}


def _run(mod, cell, a, d, **kw):
    """(outputs, grads) of a forward and a backward with output gradients d."""
    if cell == "lstm":
        *outs, ctx = mod.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"],
                                      a["b_hh"], **kw)
        return outs, mod.lstm_backward(ctx, *d)
    args = (a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if cell == "gru":
        *outs, ctx = mod.gru_forward(*args, **kw)
        return outs, mod.gru_backward(ctx, *d)
    *outs, ctx = mod.rnn_forward(*args, nonlinearity=cell[4:], **kw)
    return outs, mod.rnn_backward(ctx, *d)


def _forward(mod, cell, a, **kw):
    if cell == "lstm":
        return mod.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"],
                                a["b_hh"], **kw)
    args = (a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if cell == "gru":
        return mod.gru_forward(*args, **kw)
    return mod.rnn_forward(*args, nonlinearity=cell[4:], **kw)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_empty_sequence_T0(impl, cell, reverse):
    """T = 0: y is (0, B, H), the final state is the initial state, dh0/dc0 = dh_n/dc_n and
    every other gradient is zero (dx has shape (0, B, I))."""
    B, I, H = 3, 4, 5
    a = _args(cell, 0, B, I, H)
    rng = np.random.default_rng(1)
    d = [np.zeros((0, B, H)), rng.standard_normal((B, H))]
    if cell == "lstm":
        d.append(rng.standard_normal((B, H)))
    outs, grads = _run(impl, cell, a, d, reverse=reverse, lengths=np.zeros(B, np.int64))
    assert outs[0].shape == (0, B, H)
    np.testing.assert_array_equal(outs[1], a["h0"])
    if cell == "lstm":
        np.testing.assert_array_equal(outs[2], a["c0"])
        dx, dh0, dc0, *wgrads = grads
        np.testing.assert_array_equal(dc0, d[2])
    else:
        dx, dh0, *wgrads = grads
    assert dx.shape == (0, B, I)
    np.testing.assert_array_equal(dh0, d[1])
    for g in wgrads:
        assert g.shape[0] == GATES[cell] * H and not g.any()


@pytest.mark.parametrize("cell", CELLS)
def test_empty_batch_B0(impl, cell):
    """B = 0: outputs and state gradients are empty, weight gradients are zero."""
    T, I, H = 4, 3, 6
    a = _args(cell, T, 0, I, H)
    d = [np.zeros((T, 0, H)), None] + ([None] if cell == "lstm" else [])
    outs, grads = _run(impl, cell, a, d, lengths=np.zeros(0, np.int64))
    assert [o.shape for o in outs] == [(T, 0, H)] + [(0, H)] * (len(outs) - 1)
    assert grads[0].shape == (T, 0, I)
    for g in grads[1:]:
        assert not g.any()


@pytest.mark.parametrize("cell", CELLS)
def test_no_input_features_I0(cell):
    """I = 0: the input projection is just the biases; native and reference agree and dx,
    dw_ih are empty."""
    import fastrnn.functional as F
    import fastrnn.reference as R

    T, B, H = 5, 2, 7
    a = _args(cell, T, B, 0, H)
    rng = np.random.default_rng(2)
    d = [rng.standard_normal((T, B, H)), rng.standard_normal((B, H))]
    if cell == "lstm":
        d.append(rng.standard_normal((B, H)))
    a["w_hh"] *= 0.3
    outs_n, grads_n = _run(F, cell, a, d, lengths=[5, 2], reverse=True)
    outs_r, grads_r = _run(R, cell, a, d, lengths=[5, 2], reverse=True)
    for u, v in zip((*outs_n, *grads_n), (*outs_r, *grads_r), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
    assert grads_n[0].shape == (T, B, 0)
    assert np.abs(outs_n[0]).sum() > 0  # the biases and h0 drive the state


@pytest.mark.parametrize("cell", CELLS)
def test_zero_hidden_size_H0_is_an_error(impl, cell):
    a = _args(cell, 3, 2, 4, 1)
    G = GATES[cell]
    a.update(h0=None, c0=None, w_ih=np.zeros((0, 4)), w_hh=np.zeros((0, 0)), b_ih=np.zeros(0),
             b_hh=np.zeros(0))
    d = [None, None] + ([None] if cell == "lstm" else [])
    with pytest.raises(ValueError, match=r"hidden size H = w_hh\.shape\[1\] must be >= 1"):
        _run(impl, cell, a, d)
    assert G >= 1


# ---------------------------------------------------------------- sizes beyond any array


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_output_too_large_is_a_value_error(impl, cell, training):
    """An empty x (I = 0) may describe T*B far beyond memory; the output y (T, B, H) (and the
    training cache) would then not fit in any array: a ValueError naming the sizes, before any
    allocation, in both implementations."""
    T, B, H = 2**40, 2**19, 64
    x = np.empty((T, B, 0))  # NumPy allows it: no element exists
    G = GATES[cell]
    a = {"x": x, "h0": None, "c0": None, "w_ih": np.zeros((G * H, 0)),
         "w_hh": np.zeros((G * H, H)), "b_ih": None, "b_hh": None}
    with pytest.raises(ValueError, match=rf"T={T}, B={B}, H={H}.*too large.*y \(T, B, H\)"):
        _forward(impl, cell, a, training=training)
    # with B = 0 the same T and H are fine (y is empty; native only: the reference would loop
    # over T in Python)
    a["x"] = np.empty((T, 0, 0))
    import fastrnn.functional as F

    y = _forward(F, cell, a, training=training)[0]
    assert y.shape == (T, 0, H)


def test_cache_size_is_64_bit_and_checked():
    # long training sequence: T*B*H*7 = 4.6e10 elements, far past 2**31 and 2**32
    T, B, H = 100_000, 64, 1024
    assert _kernels.cache_size("lstm", T, B, H) == T * B * H * 7
    assert _kernels.cache_size("gru", T, B, H) == T * B * H * 5
    assert _kernels.cache_size("rnn", T, B, H) == T * B * H * 2
    assert _kernels.cache_size("lstm", 2**40, 2**20, 0) == 0
    big = 2**63 - 1
    assert _kernels.cache_size("rnn", big // 2, 1, 1) == (big // 2) * 2
    with pytest.raises(ValueError, match="more elements than fit in a 64-bit size"):
        _kernels.cache_size("rnn", big // 2 + 1, 1, 1)
    with pytest.raises(ValueError, match="more elements than fit in a 64-bit size"):
        _kernels.cache_size("lstm", 2**40, 2**20, 2**10)  # wrapped to 0 before
    for k in range(3):
        dims = [1, 1, 1]
        dims[k] = -1
        with pytest.raises(ValueError, match=f"{'TBH'[k]} must be >= 0"):
            _kernels.cache_size("gru", *dims)
    with pytest.raises(OverflowError):
        _kernels.cache_size("gru", 2**64, 1, 1)


# ---------------------------------------------------------------- GEMM hook operands


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_single_row_operand_needs_unit_column_stride(dtype):
    """A one-row A, B or C with a non-unit or negative column stride used to be read (or
    written) as if contiguous: wrong results and reads past the array. Now a ValueError."""
    big = np.arange(64, dtype=dtype).reshape(1, 64)
    eye = np.eye(64, dtype=dtype)
    for A in (big[:, ::-1], big[:, ::2]):
        with pytest.raises(ValueError, match="A must have contiguous rows"):
            _kernels.gemm(A, eye[: A.shape[1]])
    with pytest.raises(ValueError, match="B must have contiguous rows"):
        _kernels.gemm(np.ones((3, 1), dtype), big[:, ::-1])
    C = np.zeros((1, 128), dtype)[:, ::2]
    with pytest.raises(ValueError, match="C must have contiguous rows"):
        _kernels.gemm(big, eye, C)
    # a one-row operand that is contiguous (or a one-element row with any stride) is fine
    A = np.ascontiguousarray(big[:, ::-1])
    np.testing.assert_array_equal(_kernels.gemm(A, eye), A @ eye)
    col = np.arange(6, dtype=dtype).reshape(6, 1)
    np.testing.assert_array_equal(_kernels.gemm(col.T[:, :1], np.ones((1, 3), dtype)),
                                  np.zeros((1, 3), dtype))


# ---------------------------------------------------------------- masked rows, bad weights


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("cell", CELLS)
def test_finished_sequence_gradient_ignores_non_finite_w_hh(cell, value):
    """A sequence of length 0 never touches W_hh: its dh0 is dh_n even when W_hh holds NaN or
    inf (the native backward used to add 0 * W_hh to it, giving NaN)."""
    import fastrnn.functional as F
    import fastrnn.reference as R

    T, B, I, H = 4, 3, 2, 9
    a = _args(cell, T, B, I, H)
    a["w_hh"][1, 2] = value
    rng = np.random.default_rng(3)
    d = [rng.standard_normal((T, B, H)), rng.standard_normal((B, H))]
    if cell == "lstm":
        d.append(rng.standard_normal((B, H)))
    for mod in (F, R):
        outs, grads = _run(mod, cell, a, d, lengths=[4, 0, 2])
        np.testing.assert_array_equal(outs[1][1], a["h0"][1])
        np.testing.assert_array_equal(grads[1][1], d[1][1])
