"""Input validation of the functional ops (reference and native): bad input raises a
ValueError/TypeError naming the argument; odd-but-valid input (non-contiguous, read-only,
lists, non-finite values) is accepted and never modified."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

IMPLS = {"reference": "fastrnn.reference", "native": "fastrnn.functional"}
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
T, B, I, H = 3, 2, 4, 5


@pytest.fixture(params=list(IMPLS), scope="module")
def impl(request):
    return importlib.import_module(IMPLS[request.param])


@pytest.fixture(params=list(IMPLS), scope="module")
def other_impl(request):
    return importlib.import_module(IMPLS[request.param])


def make(cell, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    a = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H)),
        "c0": rng.standard_normal((B, H)) if cell == "lstm" else None,
        "w_ih": rng.uniform(-0.4, 0.4, (G * H, I)),
        "w_hh": rng.uniform(-0.4, 0.4, (G * H, H)),
        "b_ih": rng.uniform(-0.4, 0.4, G * H),
        "b_hh": rng.uniform(-0.4, 0.4, G * H),
    }
    return {n: (None if v is None else v.astype(dtype)) for n, v in a.items()}


def forward(mod, cell, a, **kw):
    """Returns (outputs tuple, ctx)."""
    if cell == "lstm":
        y, h, c, ctx = mod.lstm_forward(
            a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], **kw
        )
        return (y, h, c), ctx
    args = (a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if cell == "gru":
        y, h, ctx = mod.gru_forward(*args, **kw)
    else:
        kw.setdefault("nonlinearity", cell[4:])
        y, h, ctx = mod.rnn_forward(*args, **kw)
    return (y, h), ctx


def backward(mod, cell, ctx, douts):
    if cell == "lstm":
        return mod.lstm_backward(ctx, *douts)
    return (mod.gru_backward if cell == "gru" else mod.rnn_backward)(ctx, *douts)


# (id, argument, replacement(G) -> value, exception, match template)
# Templates are formatted with GH = G*H, and the sizes T, B, I, H.
SHAPE_CASES = [
    ("x-2d", "x", lambda G: np.zeros((T, B)), ValueError, r"\bx\b.*\(T, B, I\)"),
    ("x-4d", "x", lambda G: np.zeros((T, B, I, 1)), ValueError, r"\bx\b.*\(T, B, I\)"),
    ("h0-1d", "h0", lambda G: np.zeros(H), ValueError, r"\bh0\b.*\({B}, {H}\)"),
    ("h0-batch", "h0", lambda G: np.zeros((B + 1, H)), ValueError, r"\bh0\b.*\({B}, {H}\)"),
    ("h0-hidden", "h0", lambda G: np.zeros((B, H + 1)), ValueError, r"\bh0\b.*\({B}, {H}\)"),
    ("w_ih-in", "w_ih", lambda G: np.zeros((G * H, I + 1)), ValueError, r"w_ih.*\({GH}, {I}\)"),
    ("w_ih-out", "w_ih", lambda G: np.zeros((G * H + 1, I)), ValueError, r"w_ih.*\({GH}, {I}\)"),
    ("w_ih-3d", "w_ih", lambda G: np.zeros((G * H, I, 1)), ValueError, r"w_ih.*\({GH}, {I}\)"),
    ("w_hh-rows", "w_hh", lambda G: np.zeros((G * H - 1, H)), ValueError, r"w_hh.*\({GH}, {H}\)"),
    ("w_hh-1d", "w_hh", lambda G: np.zeros(G * H), ValueError, r"w_hh"),
    ("w_hh-H0", "w_hh", lambda G: np.zeros((0, 0)), ValueError, r"w_hh|hidden"),
    ("b_ih-len", "b_ih", lambda G: np.zeros(G * H + 1), ValueError, r"b_ih.*\({GH},\)"),
    ("b_hh-len", "b_hh", lambda G: np.zeros(G * H - 1), ValueError, r"b_hh.*\({GH},\)"),
    ("b_hh-2d", "b_hh", lambda G: np.zeros((1, G * H)), ValueError, r"b_hh.*\({GH},\)"),
]


@pytest.mark.parametrize("case", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
@pytest.mark.parametrize("cell", CELLS)
def test_bad_shapes(impl, cell, case):
    _, name, value, exc, pattern = case
    G = GATES[cell]
    a = make(cell)
    a[name] = value(G)
    with pytest.raises(exc, match=pattern.format(GH=G * H, T=T, B=B, I=I, H=H)):
        forward(impl, cell, a)


def test_bad_c0_shape(impl):
    a = make("lstm")
    a["c0"] = np.zeros((B, H, 1))
    with pytest.raises(ValueError, match=rf"\bc0\b.*\({B}, {H}\)"):
        forward(impl, "lstm", a)


LENGTH_CASES = [
    ("too-long", [T + 1, 1], ValueError, r"lengths.*\[0, {T}\]"),
    ("negative", [1, -1], ValueError, r"lengths.*\[0, {T}\]"),
    ("wrong-count", [1, 1, 1], ValueError, r"lengths.*\({B},\)"),
    ("2d", [[1, 1]], ValueError, r"lengths.*\({B},\)"),
    ("scalar", 2, ValueError, r"lengths.*\({B},\)"),
    ("float", np.array([1.0, 2.0]), TypeError, r"lengths"),
    ("float-list", [1.5, 2.0], TypeError, r"lengths"),
    ("bool", np.array([True, False]), TypeError, r"lengths"),
]


@pytest.mark.parametrize("case", LENGTH_CASES, ids=[c[0] for c in LENGTH_CASES])
@pytest.mark.parametrize("cell", CELLS)
def test_bad_lengths(impl, cell, case):
    _, lengths, exc, pattern = case
    with pytest.raises(exc, match=pattern.format(T=T, B=B)):
        forward(impl, cell, make(cell), lengths=lengths)


@pytest.mark.parametrize("cell", CELLS)
def test_integer_lengths_of_any_kind(impl, cell):
    a = make(cell)
    ref, _ = forward(impl, cell, a, lengths=np.array([3, 0]))
    for lengths in ([3, 0], (3, 0), np.array([3, 0], np.uint8), np.array([3, 0], np.int32)):
        outs, _ = forward(impl, cell, a, lengths=lengths)
        for o, r in zip(outs, ref, strict=True):
            np.testing.assert_array_equal(o, r)


@pytest.mark.parametrize(
    "f32_args", [("x",), ("w_hh",), ("h0", "b_ih")], ids=["x", "w_hh", "h0+b_ih"]
)
@pytest.mark.parametrize("cell", CELLS)
def test_mixed_float32_float64(impl, cell, f32_args):
    a = make(cell)
    for n in f32_args:
        a[n] = a[n].astype(np.float32)
    f64_arg = "w_ih"  # stays float64
    with pytest.raises(TypeError) as ei:
        forward(impl, cell, a)
    msg = str(ei.value)
    assert "float32" in msg and "float64" in msg, msg
    for n in (*f32_args, f64_arg):
        assert n in msg, f"{n!r} not named in: {msg}"


BAD_DTYPES = [
    ("x", np.complex128),
    ("w_ih", object),
    ("h0", bool),
    ("b_ih", np.str_),
    ("w_hh", np.complex64),
    ("b_hh", np.bool_),
]


@pytest.mark.parametrize("name,dtype", BAD_DTYPES, ids=[f"{n}-{d.__name__}" for n, d in BAD_DTYPES])
@pytest.mark.parametrize("cell", CELLS)
def test_bad_dtypes(impl, cell, name, dtype):
    a = make(cell)
    a[name] = a[name].astype(dtype)
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        forward(impl, cell, a)


def test_bad_dtype_c0(impl):
    a = make("lstm")
    a["c0"] = a["c0"].astype(np.complex128)
    with pytest.raises(TypeError, match=r"\bc0\b"):
        forward(impl, "lstm", a)


def test_dtype_promotion(impl):
    # integers and float16 convert losslessly; lists are "weak" and take the arrays' dtype
    a = make("gru")
    a32 = {n: v.astype(np.float32) for n, v in a.items() if v is not None}
    a32["c0"] = None
    ref32, _ = forward(impl, "gru", a32)
    b = dict(a32)
    b["x"] = a32["x"].astype(np.float16)
    outs, _ = forward(impl, "gru", b)
    assert outs[0].dtype == np.float32
    b = dict(a32)
    b["x"] = np.ones((T, B, I), np.int16)
    outs, _ = forward(impl, "gru", b)
    assert outs[0].dtype == np.float32
    b = dict(a32)
    b["h0"] = a32["h0"].tolist()
    outs, _ = forward(impl, "gru", b)
    np.testing.assert_array_equal(outs[0], ref32[0])
    # int64 -> float32 is lossy: rejected, naming the argument
    b = dict(a32)
    b["x"] = np.ones((T, B, I), np.int64)
    with pytest.raises(TypeError, match=r"\bx\b"):
        forward(impl, "gru", b)
    # all integers / all float16 / all lists
    ints = {n: (None if v is None else np.round(v * 4).astype(np.int32)) for n, v in a.items()}
    outs, _ = forward(impl, "gru", ints)
    assert outs[0].dtype == np.float64
    halves = {n: (None if v is None else v.astype(np.float16)) for n, v in a.items()}
    outs, _ = forward(impl, "gru", halves)
    assert outs[0].dtype == np.float32
    lists = {n: (None if v is None else v.tolist()) for n, v in a.items()}
    outs, _ = forward(impl, "gru", lists)
    ref64, _ = forward(impl, "gru", a)
    assert outs[0].dtype == np.float64
    np.testing.assert_array_equal(outs[0], ref64[0])


@pytest.mark.parametrize("bad", ["sigmoid", "Tanh", None, 1])
def test_bad_nonlinearity(impl, bad):
    with pytest.raises(ValueError, match="nonlinearity"):
        forward(impl, "rnn_tanh", make("rnn_tanh"), nonlinearity=bad)


# ------------------------------------------------------------------ backward


@pytest.mark.parametrize("cell", CELLS)
def test_ctx_of_wrong_cell(impl, cell):
    other = {"rnn_tanh": "lstm", "rnn_relu": "gru", "lstm": "gru", "gru": "rnn_tanh"}[cell]
    outs, ctx = forward(impl, other, make(other))
    n = 3 if cell == "lstm" else 2
    with pytest.raises(TypeError, match="ctx"):
        backward(impl, cell, ctx, [None] * n)


@pytest.mark.parametrize("cell", CELLS)
def test_ctx_none_or_foreign(impl, other_impl, cell):
    n = 3 if cell == "lstm" else 2
    with pytest.raises(TypeError, match="ctx"):
        backward(impl, cell, None, [None] * n)
    with pytest.raises(TypeError, match="ctx"):
        backward(impl, cell, object(), [None] * n)
    _, ictx = forward(impl, cell, make(cell), training=False)
    with pytest.raises(TypeError, match="ctx"):
        backward(impl, cell, ictx, [None] * n)
    if other_impl is not impl:
        _, octx = forward(other_impl, cell, make(cell))
        with pytest.raises(TypeError, match="ctx"):
            backward(impl, cell, octx, [None] * n)


GRAD_CASES = [
    ("dy-T", 0, (T + 1, B, H), ValueError, r"\bdy\b.*\({T}, {B}, {H}\)"),
    ("dy-2d", 0, (B, H), ValueError, r"\bdy\b.*\({T}, {B}, {H}\)"),
    ("dy-H", 0, (T, B, H + 1), ValueError, r"\bdy\b.*\({T}, {B}, {H}\)"),
    ("dh_n-B", 1, (B + 1, H), ValueError, r"\bdh_n\b.*\({B}, {H}\)"),
    ("dh_n-3d", 1, (1, B, H), ValueError, r"\bdh_n\b.*\({B}, {H}\)"),
    ("dc_n-H", 2, (B, H - 1), ValueError, r"\bdc_n\b.*\({B}, {H}\)"),
]


GRAD_PARAMS = [
    pytest.param(cell, case, id=f"{cell}-{case[0]}")
    for cell in CELLS
    for case in GRAD_CASES
    if case[1] < 2 or cell == "lstm"  # dc_n only exists for the LSTM
]


@pytest.mark.parametrize("cell,case", GRAD_PARAMS)
def test_bad_output_gradient_shapes(impl, cell, case):
    _, k, shape, exc, pattern = case
    outs, ctx = forward(impl, cell, make(cell))
    d = [np.zeros_like(o) for o in outs]
    d[k] = np.zeros(shape)
    with pytest.raises(exc, match=pattern.format(T=T, B=B, H=H)):
        backward(impl, cell, ctx, d)


@pytest.mark.parametrize("cell", CELLS)
def test_bad_output_gradient_dtypes(impl, cell):
    outs, ctx = forward(impl, cell, make(cell))
    for k, name in enumerate(["dy", "dh_n", "dc_n"][: len(outs)]):
        for dtype in (np.float32, np.complex128, object):
            d = [np.zeros_like(o) for o in outs]
            d[k] = d[k].astype(dtype)
            with pytest.raises(TypeError, match=rf"\b{name}\b"):
                backward(impl, cell, ctx, d)
    outs32, ctx32 = forward(impl, cell, make(cell, np.float32))
    d = [np.zeros(o.shape, np.float64) for o in outs32]
    with pytest.raises(TypeError, match=r"\bdy\b"):
        backward(impl, cell, ctx32, d)


# ------------------------------------------------------------------ odd but valid input


@pytest.mark.parametrize("cell", CELLS)
def test_non_finite_values_propagate(impl, cell):
    a = make(cell)
    a["w_hh"][0, 0] = np.nan
    outs, ctx = forward(impl, cell, a)
    assert np.isnan(outs[0]).any()
    d = [np.ones_like(o) for o in outs]
    g = backward(impl, cell, ctx, d)
    assert any(np.isnan(v).any() for v in g if v is not None)
    a = make(cell)
    a["x"][0, 0, 0] = np.inf
    a["b_ih"][-1] = -np.inf
    outs, ctx = forward(impl, cell, a, lengths=[3, 1])
    backward(impl, cell, ctx, d)
    for o in outs:
        assert o.shape[-1] == H


def _weird_layout(v, kind):
    """The same values as ``v`` in an unusual memory layout."""
    if kind == "strided":  # every other element of a bigger array
        big = np.zeros(tuple(2 * s for s in v.shape), v.dtype)
        big[tuple(slice(None, None, 2) for _ in v.shape)] = v
        return big[tuple(slice(None, None, 2) for _ in v.shape)]
    if kind == "fortran":
        return np.asfortranarray(v)
    if kind == "readonly":
        w = v.copy()
        w.flags.writeable = False
        return w
    if kind == "reversed":  # negative strides
        big = np.ascontiguousarray(v[tuple(slice(None, None, -1) for _ in v.shape)])
        return big[tuple(slice(None, None, -1) for _ in v.shape)]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["strided", "fortran", "readonly", "reversed"])
@pytest.mark.parametrize("cell", CELLS)
def test_any_layout_gives_same_results(impl, cell, kind):
    a = make(cell)
    rng = np.random.default_rng(1)
    outs, ctx = forward(impl, cell, a, lengths=[3, 2], reverse=True)
    d = [rng.standard_normal(o.shape) for o in outs]
    g = backward(impl, cell, ctx, d)
    wa = {n: (None if v is None else _weird_layout(v, kind)) for n, v in a.items()}
    wd = [_weird_layout(v, kind) for v in d]
    if kind in ("strided", "reversed", "fortran"):
        assert not wa["x"].flags.c_contiguous
    lengths = _weird_layout(np.array([3, 2]), kind)
    keep = {n: (None if v is None else v.copy()) for n, v in wa.items()}
    keep_d = [v.copy() for v in wd]
    wouts, wctx = forward(impl, cell, wa, lengths=lengths, reverse=True)
    wg = backward(impl, cell, wctx, wd)
    for o, w in zip(outs, wouts, strict=True):
        np.testing.assert_allclose(w, o, rtol=1e-12, atol=1e-14)
    for u, v in zip(g, wg, strict=True):
        if u is not None:
            np.testing.assert_allclose(v, u, rtol=1e-12, atol=1e-14)
    for n, v in wa.items():  # inputs are never modified
        if v is not None:
            np.testing.assert_array_equal(v, keep[n], err_msg=n)
    for v, k in zip(wd, keep_d, strict=True):
        np.testing.assert_array_equal(v, k)


@pytest.mark.parametrize("cell", CELLS)
def test_inputs_never_modified(impl, cell):
    for dtype in (np.float64, np.float32):
        a = make(cell, dtype)
        keep = {n: (None if v is None else v.copy()) for n, v in a.items()}
        lengths = np.array([1, 3])
        outs, ctx = forward(impl, cell, a, lengths=lengths)
        d = [np.full_like(o, 0.5) for o in outs]
        keep_d = [v.copy() for v in d]
        backward(impl, cell, ctx, d)
        backward(impl, cell, ctx, d)
        for n, v in a.items():
            if v is not None:
                np.testing.assert_array_equal(v, keep[n], err_msg=n)
        for v, k in zip(d, keep_d, strict=True):
            np.testing.assert_array_equal(v, k)
        np.testing.assert_array_equal(lengths, [1, 3])


@pytest.mark.parametrize("cell", CELLS)
def test_python_lists_accepted(impl, cell):
    a = make(cell)
    outs, ctx = forward(impl, cell, a, lengths=[3, 1])
    la = {n: (None if v is None else v.tolist()) for n, v in a.items()}
    louts, lctx = forward(impl, cell, la, lengths=[3, 1])
    for o, w in zip(outs, louts, strict=True):
        np.testing.assert_array_equal(o, w)
    g = backward(impl, cell, ctx, [o.tolist() for o in outs])
    lg = backward(impl, cell, lctx, [o for o in outs])
    for u, v in zip(g, lg, strict=True):
        if u is not None:
            np.testing.assert_array_equal(u, v)


# A batch-first x of shape (B, T, I) with B != T: each argument sized for the batch-first
# reading (h0/c0 and lengths sized by x.shape[0], dy of shape (B, T, H)) gets the hint.
BATCH_FIRST_HINT = r"x is time-major \(T, B, I\).*x\.transpose\(1, 0, 2\)"


@pytest.mark.parametrize("name", ["h0", "c0", "lengths"])
def test_batch_first_input_gets_the_transpose_hint(impl, name):
    a = make("lstm")
    a["x"] = a["x"].transpose(1, 0, 2).copy()  # (B, T, I): read as T = B, B = T
    kw = {}
    if name == "lengths":
        a["h0"] = a["c0"] = None
        kw["lengths"] = [T] * B
    else:
        a["h0" if name == "c0" else "c0"] = None  # the other state sized to match
    with pytest.raises(ValueError, match=rf"\b{name}\b.*{BATCH_FIRST_HINT}"):
        forward(impl, "lstm", a, **kw)


def test_batch_first_dy_gets_the_transpose_hint(impl):
    outs, ctx = forward(impl, "gru", make("gru"))
    dy = np.zeros((B, T, H))
    with pytest.raises(ValueError, match=r"\bdy\b.*time-major.*dy\.transpose\(1, 0, 2\)"):
        backward(impl, "gru", ctx, [dy, None])


@pytest.mark.parametrize("case", [
    ("x", {"x": np.zeros((T, I))}, {}),
    ("h0", {"h0": np.zeros((B, H + 1))}, {}),
    ("lengths-count", {}, {"lengths": [1] * (B + 2)}),  # B + 2: neither B nor T
    ("lengths-range", {}, {"lengths": [T + 1] * B}),
], ids=lambda c: c[0])
def test_shape_messages_say_x_is_time_major(impl, case):
    """Every message about x's sizes names the layout, hint or no hint."""
    _, args, kw = case
    a = {**make("rnn_tanh"), **args}
    with pytest.raises(ValueError, match=r"time-major") as err:
        forward(impl, "rnn_tanh", a, **kw)
    assert "transpose" not in str(err.value)


def test_no_transpose_hint_when_the_sizes_do_not_suggest_it(impl):
    a = make("lstm")
    a["h0"] = np.zeros((B + 2, H))  # neither B nor T
    with pytest.raises(ValueError, match=r"time-major") as err:
        forward(impl, "lstm", a)
    assert "transpose" not in str(err.value)
