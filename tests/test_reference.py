"""Tests of the NumPy reference ops on their own: finite-difference gradient checks and the
variable-length / reverse / inference semantics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastrnn import reference as R

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

FD_EPS = 1e-6  # central-difference step (float64)
FD_RTOL = 1e-6  # max normwise relative error between analytic and numeric gradient
FD_ATOL = 1e-8  # max elementwise absolute error
F32_RTOL = 1e-5  # float32 run vs float64 run
F32_ATOL = 1e-5


def make(cell, T, B, I, H, *, seed=0, dtype=np.float64, bias=(True, True), h0=True, c0=True):
    """Random inputs and weights (weights ~ U(-1/sqrt(H), 1/sqrt(H)) scaled up a bit)."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    k = 1.5 / np.sqrt(H)
    a = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H)) * 0.5 if h0 else None,
        "c0": rng.standard_normal((B, H)) * 0.5 if (c0 and cell == "lstm") else None,
        "w_ih": rng.uniform(-k, k, (G * H, I)),
        "w_hh": rng.uniform(-k, k, (G * H, H)),
        "b_ih": rng.uniform(-k, k, G * H) if bias[0] else None,
        "b_hh": rng.uniform(-k, k, G * H) if bias[1] else None,
    }
    return {n: (None if v is None else v.astype(dtype)) for n, v in a.items()}


def forward(cell, a, *, lengths=None, reverse=False, training=True):
    """Run the reference forward; returns (outputs tuple, ctx)."""
    kw = {"lengths": lengths, "reverse": reverse, "training": training}
    args = (a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if cell == "lstm":
        y, h, c, ctx = R.lstm_forward(
            a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], **kw
        )
        return (y, h, c), ctx
    if cell == "gru":
        y, h, ctx = R.gru_forward(*args, **kw)
    else:
        y, h, ctx = R.rnn_forward(*args, nonlinearity=cell[4:], **kw)
    return (y, h), ctx


def backward(cell, ctx, douts):
    """Run the reference backward; returns a dict name -> gradient."""
    if cell == "lstm":
        g = R.lstm_backward(ctx, *douts)
        names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    else:
        fn = R.gru_backward if cell == "gru" else R.rnn_backward
        g = fn(ctx, *douts)
        names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    assert len(g) == len(names)
    return dict(zip(names, g, strict=True))


FD_CASES = {
    # name: (T, B, I, H, lengths, reverse, bias, h0 given)
    "lengths": (4, 3, 2, 3, [4, 0, 2], False, (True, True), True),
    "lengths-reverse": (4, 3, 2, 3, [2, 4, 0], True, (True, True), True),
    "nobias-noh0": (3, 2, 3, 3, None, False, (False, False), False),
    "bih-only-reverse": (3, 2, 2, 5, None, True, (True, False), True),
    "bhh-only-lengths": (3, 3, 2, 3, [1, 3, 2], False, (False, True), False),
    "T1-B1-oddH": (1, 1, 3, 5, None, False, (True, True), True),
    "T1-B1-reverse-len": (1, 1, 2, 3, [1], True, (True, True), True),
}


@pytest.mark.parametrize("case", list(FD_CASES))
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell, case):
    T, B, I, H, lengths, reverse, bias, h0 = FD_CASES[case]
    a = make(cell, T, B, I, H, seed=list(FD_CASES).index(case), bias=bias, h0=h0, c0=h0)
    rng = np.random.default_rng(1)
    nout = 3 if cell == "lstm" else 2
    shapes = [(T, B, H)] + [(B, H)] * (nout - 1)
    coefs = [rng.standard_normal(s) for s in shapes]

    def loss(args):
        outs, ctx = forward(cell, args, lengths=lengths, reverse=reverse, training=False)
        assert ctx is None
        return sum(float((c * o).sum()) for c, o in zip(coefs, outs, strict=True))

    _, ctx = forward(cell, a, lengths=lengths, reverse=reverse)
    grads = backward(cell, ctx, coefs)

    # None states are zeros; their gradients must still be returned as arrays.
    full = dict(a)
    for s in ("h0", "c0"):
        if s in grads and full[s] is None:
            full[s] = np.zeros((B, H))
    for name, g in grads.items():
        if full[name] is None:  # a missing bias has no gradient
            assert g is None, name
            continue
        assert isinstance(g, np.ndarray) and g.dtype == np.float64, name
        assert g.shape == full[name].shape, name
        num = np.zeros_like(g)
        p = full[name]
        for idx in np.ndindex(p.shape):
            orig = p[idx]
            pert = dict(full)
            pp = p.copy()
            pp[idx] = orig + FD_EPS
            pert[name] = pp
            lp = loss(pert)
            pp[idx] = orig - FD_EPS
            lm = loss(pert)
            num[idx] = (lp - lm) / (2 * FD_EPS)
        assert np.abs(num).max() > 1e-3, f"degenerate check for d{name}"
        err = np.linalg.norm(g - num) / max(np.linalg.norm(num), 1e-300)
        assert err < FD_RTOL, f"d{name}: relative error {err:.2e}"
        np.testing.assert_allclose(g, num, rtol=0, atol=FD_ATOL, err_msg=f"d{name}")


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_lengths_semantics(cell, reverse):
    T, B, I, H = 5, 4, 3, 4
    lengths = np.array([5, 0, 2, 1])
    a = make(cell, T, B, I, H, seed=3)
    outs, _ = forward(cell, a, lengths=lengths, reverse=reverse, training=False)
    y = outs[0]
    for b, L in enumerate(lengths):
        # outputs past a sequence's length are exactly zero
        assert np.all(y[L:, b] == 0)
        sub = dict(a)
        sub["x"] = a["x"][:L, b : b + 1]
        for s in ("h0", "c0"):
            if a[s] is not None:
                sub[s] = a[s][b : b + 1]
        # reverse == running the reversed valid prefix forward
        if reverse:
            sub["x"] = sub["x"][::-1]
        souts, _ = forward(cell, sub, training=False)
        sy = souts[0][::-1] if reverse else souts[0]
        np.testing.assert_allclose(y[:L, b : b + 1], sy, rtol=1e-13, atol=1e-15)
        # final states are those of the last valid step (h0/c0 for an empty sequence)
        for o, so in zip(outs[1:], souts[1:], strict=True):
            np.testing.assert_allclose(o[b : b + 1], so, rtol=1e-13, atol=1e-15)
        if L == 0:
            np.testing.assert_array_equal(outs[1][b], a["h0"][b])
        else:
            last = 0 if reverse else L - 1
            np.testing.assert_array_equal(outs[1][b], y[last, b])


@pytest.mark.parametrize("cell", CELLS)
def test_full_lengths_equal_no_lengths(cell):
    T, B, I, H = 4, 3, 2, 3
    a = make(cell, T, B, I, H, seed=4)
    rng = np.random.default_rng(5)
    for reverse in (False, True):
        o1, c1 = forward(cell, a, reverse=reverse)
        o2, c2 = forward(cell, a, lengths=[T] * B, reverse=reverse)
        for u, v in zip(o1, o2, strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-14, atol=1e-15)
        d = [rng.standard_normal(o.shape) for o in o1]
        g1, g2 = backward(cell, c1, d), backward(cell, c2, d)
        for n in g1:
            np.testing.assert_allclose(g1[n], g2[n], rtol=1e-13, atol=1e-14, err_msg=n)


@pytest.mark.parametrize("cell", CELLS)
def test_inference_mode_matches_training(cell):
    a = make(cell, 4, 3, 5, 3, seed=6)
    for lengths in (None, [1, 4, 0]):
        o1, ctx1 = forward(cell, a, lengths=lengths, training=True)
        o2, ctx2 = forward(cell, a, lengths=lengths, training=False)
        assert ctx1 is not None and ctx2 is None
        for u, v in zip(o1, o2, strict=True):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_matches_float64(cell):
    T, B, I, H = 6, 3, 4, 5
    lengths = [6, 3, 1]
    a64 = make(cell, T, B, I, H, seed=7)
    a32 = {n: (None if v is None else v.astype(np.float32)) for n, v in a64.items()}
    rng = np.random.default_rng(8)
    o64, c64 = forward(cell, a64, lengths=lengths, reverse=True)
    o32, c32 = forward(cell, a32, lengths=lengths, reverse=True)
    d = [rng.standard_normal(o.shape) for o in o64]
    g64 = backward(cell, c64, d)
    g32 = backward(cell, c32, [v.astype(np.float32) for v in d])
    for u, v in zip(o32, o64, strict=True):
        assert u.dtype == np.float32
        np.testing.assert_allclose(u, v, rtol=F32_RTOL, atol=F32_ATOL)
    for n in g64:
        assert g32[n].dtype == np.float32, n
        scale = max(1.0, float(np.abs(g64[n]).max()))
        np.testing.assert_allclose(g32[n], g64[n], rtol=F32_RTOL, atol=F32_ATOL * scale, err_msg=n)


@pytest.mark.parametrize("cell", CELLS)
def test_none_output_grads_are_zero(cell):
    a = make(cell, 3, 2, 2, 3, seed=9)
    outs, ctx = forward(cell, a, lengths=[3, 1])
    zeros = [np.zeros_like(o) for o in outs]
    g0 = backward(cell, ctx, zeros)
    gn = backward(cell, ctx, [None] * len(outs))
    for n in g0:
        np.testing.assert_array_equal(g0[n], gn[n])
        assert not np.any(gn[n]), n
    # a single non-None gradient equals that gradient with zeros for the rest
    rng = np.random.default_rng(10)
    for k in range(len(outs)):
        d = [None] * len(outs)
        d[k] = rng.standard_normal(outs[k].shape)
        dz = [v if v is not None else z for v, z in zip(d, zeros, strict=True)]
        g1, g2 = backward(cell, ctx, d), backward(cell, ctx, dz)
        for n in g1:
            np.testing.assert_array_equal(g1[n], g2[n])


@pytest.mark.parametrize("cell", CELLS)
def test_empty_sizes(cell):
    G = GATES[cell]
    # T = 0: no steps, final state = initial state
    a = make(cell, 0, 2, 3, 4, seed=11)
    outs, ctx = forward(cell, a)
    assert outs[0].shape == (0, 2, 4)
    np.testing.assert_array_equal(outs[1], a["h0"])
    assert not np.shares_memory(outs[1], a["h0"])
    g = backward(cell, ctx, [np.ones_like(o) for o in outs])
    assert g["x"].shape == (0, 2, 3)
    np.testing.assert_array_equal(g["h0"], np.ones((2, 4)))
    assert g["w_ih"].shape == (G * 4, 3) and not g["w_ih"].any()
    assert g["w_hh"].shape == (G * 4, 4) and not g["w_hh"].any()
    assert g["b_ih"].shape == (G * 4,) and not g["b_ih"].any()
    # B = 0
    a = make(cell, 3, 0, 2, 3, seed=12)
    outs, ctx = forward(cell, a, lengths=[])
    assert outs[0].shape == (3, 0, 3) and outs[1].shape == (0, 3)
    g = backward(cell, ctx, [None] * len(outs))
    assert g["x"].shape == (3, 0, 2) and g["w_hh"].shape == (G * 3, 3)
    # I = 0: only the recurrence and the biases drive the state
    a = make(cell, 3, 2, 0, 3, seed=13)
    outs, ctx = forward(cell, a)
    assert outs[0].shape == (3, 2, 3) and np.all(np.isfinite(outs[0]))
    g = backward(cell, ctx, [np.ones_like(o) for o in outs])
    assert g["x"].shape == (3, 2, 0) and g["w_ih"].shape == (G * 3, 0)


@pytest.mark.parametrize("cell", CELLS)
def test_outputs_are_fresh_arrays(cell):
    a = make(cell, 3, 2, 2, 3, seed=14)
    outs, ctx = forward(cell, a)
    ins = [v for v in a.values() if v is not None]
    for o in outs:
        assert o.flags.c_contiguous and o.flags.writeable
        assert not any(np.shares_memory(o, i) for i in ins)
    d = [np.ones_like(o) for o in outs]
    g = backward(cell, ctx, d)
    for v in g.values():
        assert not any(np.shares_memory(v, i) for i in ins + d + list(outs))
    # writing into the outputs must not change a later backward
    g_before = backward(cell, ctx, d)
    for o in outs:
        o[...] = 123.0
    g_after = backward(cell, ctx, d)
    for n in g_before:
        np.testing.assert_array_equal(g_before[n], g_after[n])


def test_sigmoid_saturates_without_warnings():
    # huge pre-activations: exp overflows internally; results are the exact limits.
    a = make("lstm", 2, 2, 1, 2, seed=15)
    a["x"] = np.array([[[1e4], [-1e4]], [[-1e4], [1e4]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (y, h, c), ctx = forward("lstm", a)
        backward("lstm", ctx, [np.ones_like(y), None, None])
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(c))
