"""The LSTM with a projection (LSTMP, ``torch.nn.LSTM(proj_size=P)``): kernels
(csrc/lstm_proj.c) against the NumPy reference, finite differences, and the functional API's
argument checks. The torch drop-in's side is in tests/test_torch_lstm_proj.py."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn import functional as F
from fastrnn import reference as R

T, B, I, H, P = 5, 4, 3, 6, 2


def arrays(dtype=np.float64, seed=0, *, biases=True, states=True):
    rng = np.random.default_rng(seed)

    def r(*shape, s=0.5):
        return (rng.standard_normal(shape) * s).astype(dtype)

    return dict(x=r(T, B, I, s=1.0), h0=r(B, P) if states else None,
                c0=r(B, H) if states else None, w_ih=r(4 * H, I), w_hh=r(4 * H, P),
                w_hr=r(P, H), b_ih=r(4 * H) if biases else None,
                b_hh=r(4 * H) if biases else None)


def run(mod, a, **kw):
    return mod.cell_forward("lstm", a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"],
                            a["b_hh"], w_hr=a["w_hr"], **kw)


LENGTHS = [None, np.array([5, 2, 0, 3])]


@pytest.mark.parametrize("lengths", LENGTHS, ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("given", [True, False], ids=["states_biases", "none"])
def test_kernels_equal_the_reference_float64(lengths, reverse, given):
    a = arrays(biases=given, states=given)
    y, h_n, c_n, ctx = run(F, a, lengths=lengths, reverse=reverse)
    ry, rh, rc, rctx = run(R, a, lengths=lengths, reverse=reverse)
    assert y.shape == (T, B, P) and h_n.shape == (B, P) and c_n.shape == (B, H)
    for got, want in zip((y, h_n, c_n), (ry, rh, rc), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    rng = np.random.default_rng(1)
    dy, dh, dc = rng.standard_normal((T, B, P)), rng.standard_normal((B, P)), \
        rng.standard_normal((B, H))
    got = F.cell_backward(ctx, dy, dh, dc)
    want = R.cell_backward(rctx, dy, dh, dc)
    assert len(got) == len(want) == 8
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        if w is None:
            assert g is None, k
        else:
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12, err_msg=str(k))
    if lengths is not None:  # past a sequence's end: zero output, state passes through
        assert not y[lengths[1]:, 1].any() and not y[:, 2].any()
        np.testing.assert_array_equal(h_n[2], a["h0"][2] if given else 0)


def test_float32_matches_the_float64_reference():
    a64 = arrays()
    a32 = {k: None if v is None else v.astype(np.float32) for k, v in a64.items()}
    y, h_n, c_n, ctx = run(F, a32, lengths=LENGTHS[1], reverse=True)
    ry, rh, rc, rctx = run(R, a64, lengths=LENGTHS[1], reverse=True)
    assert y.dtype == np.float32
    for got, want in zip((y, h_n, c_n), (ry, rh, rc), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    dy = np.ones((T, B, P))
    for g, w in zip(F.cell_backward(ctx, dy.astype(np.float32), None, None),
                    R.cell_backward(rctx, dy, None, None), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_need_dx_false_skips_dx():
    a = arrays()
    *_, ctx = run(F, a)
    dx, *rest = F.cell_backward(ctx, np.ones((T, B, P)), None, None, need_dx=False)
    assert dx is None and rest[-1].shape == (P, H)


@pytest.mark.parametrize("reverse", [False, True])
def test_finite_differences_of_every_input(reverse):
    """Central differences of a fixed scalar loss of (y, h_n, c_n) against the kernels'
    backward for every input: x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh."""
    a = arrays(seed=3)
    lengths = np.array([5, 3, 1, 4])
    rng = np.random.default_rng(4)
    wy, wh, wc = rng.standard_normal((T, B, P)), rng.standard_normal((B, P)), \
        rng.standard_normal((B, H))

    def loss(arr):
        y, h_n, c_n, _ = run(F, arr, lengths=lengths, reverse=reverse, training=False)
        return float((wy * y).sum() + (wh * h_n).sum() + (wc * c_n).sum())

    *_, ctx = run(F, a, lengths=lengths, reverse=reverse)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = F.cell_backward(ctx, wy, wh, wc)
    grads = dict(x=dx, h0=dh0, c0=dc0, w_ih=dw_ih, w_hh=dw_hh, w_hr=dw_hr, b_ih=db_ih,
                 b_hh=db_hh)
    eps = 1e-6
    for name, g in grads.items():
        num = np.zeros_like(g)
        for idx in np.ndindex(*g.shape):
            plus = {k: (v.copy() if v is not None else None) for k, v in a.items()}
            minus = {k: (v.copy() if v is not None else None) for k, v in a.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            num[idx] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7, err_msg=name)


def test_bad_arguments_name_what_is_wrong():
    a = arrays()
    with pytest.raises(ValueError, match="only for the LSTM"):
        F.cell_forward("gru", a["x"], None, None, a["w_ih"][:18], a["w_hh"][:18], None, None,
                       w_hr=a["w_hr"])
    with pytest.raises(ValueError, match=r"w_hh must have shape \(4\*H, P\)"):
        F.cell_forward("lstm", a["x"], None, None, a["w_ih"], np.zeros((4 * H, H)), None,
                       None, w_hr=a["w_hr"])
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, P\)"):
        F.cell_forward("lstm", a["x"], np.zeros((B, H)), None, a["w_ih"], a["w_hh"], None,
                       None, w_hr=a["w_hr"])
    with pytest.raises(ValueError, match="precision"):
        run(F, {k: None if v is None else v.astype(np.float32) for k, v in a.items()},
            precision="bfloat16")
    with pytest.raises(TypeError, match="w_ih is required"):
        F.cell_forward("lstm", a["x"], None, None, None, a["w_hh"], None, None, w_hr=a["w_hr"])
    with pytest.raises(TypeError, match="mix float32 and float64"):
        F.cell_forward("lstm", a["x"], None, None, a["w_ih"], a["w_hh"], None, None,
                       w_hr=a["w_hr"].astype(np.float32))
    *_, ctx = run(F, a)
    with pytest.raises(ValueError, match=r"dy must have shape \(T, B, P\)"):
        F.cell_backward(ctx, np.zeros((T, B, H)), None, None)
    with pytest.raises(ValueError, match=r"dc_n must have shape \(B, H\)"):
        F.cell_backward(ctx, None, None, np.zeros((B, P)))


def test_empty_sizes():
    a = arrays()
    y, h_n, c_n, ctx = F.cell_forward("lstm", a["x"][:0], a["h0"], a["c0"], a["w_ih"],
                                      a["w_hh"], None, None, w_hr=a["w_hr"])
    assert y.shape == (0, B, P)
    np.testing.assert_array_equal(h_n, a["h0"])
    np.testing.assert_array_equal(c_n, a["c0"])
    dx, dh0, dc0, *_, dw_hr = F.cell_backward(ctx, None, np.ones((B, P)), None)
    assert dx.shape == (0, B, I) and not dw_hr.any()
    np.testing.assert_array_equal(dh0, 1.0)
