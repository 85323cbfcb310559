"""Cross-implementation tests of the functional ops.

Every implementation (``fastrnn.reference``, the NumPy oracle, and ``fastrnn.functional``,
the native kernels) is compared with the reference on random shapes, and with PyTorch's
``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (forward outputs, final states and every gradient).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from fastrnn import reference as REF

IMPLS = {"reference": "fastrnn.reference", "native": "fastrnn.functional"}
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

# Tolerances of an implementation against the reference.
F64_RTOL = 1e-10
F64_ATOL = 1e-12
F32_RTOL = 1e-4
F32_ATOL = 1e-5  # scaled by max(1, max|reference|) for each compared array
# Against PyTorch (float64).
TORCH_RTOL = 1e-10
TORCH_ATOL = 1e-12


@pytest.fixture(params=list(IMPLS), scope="module")
def impl(request):
    return importlib.import_module(IMPLS[request.param])


def make(cell, T, B, I, H, *, seed, dtype=np.float64, bias=(True, True), h0=True):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    k = 1.0 / np.sqrt(H)
    a = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H)) * 0.5 if h0 else None,
        "c0": rng.standard_normal((B, H)) * 0.5 if (h0 and cell == "lstm") else None,
        "w_ih": rng.uniform(-k, k, (G * H, I)),
        "w_hh": rng.uniform(-k, k, (G * H, H)),
        "b_ih": rng.uniform(-k, k, G * H) if bias[0] else None,
        "b_hh": rng.uniform(-k, k, G * H) if bias[1] else None,
    }
    return {n: (None if v is None else v.astype(dtype)) for n, v in a.items()}


def forward(mod, cell, a, *, lengths=None, reverse=False, training=True):
    """Run ``mod``'s forward of ``cell``; returns (outputs tuple, ctx)."""
    kw = {"lengths": lengths, "reverse": reverse, "training": training}
    args = (a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if cell == "lstm":
        y, h, c, ctx = mod.lstm_forward(
            a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], **kw
        )
        return (y, h, c), ctx
    if cell == "gru":
        y, h, ctx = mod.gru_forward(*args, **kw)
    else:
        y, h, ctx = mod.rnn_forward(*args, nonlinearity=cell[4:], **kw)
    return (y, h), ctx


def backward(mod, cell, ctx, douts):
    """Run ``mod``'s backward of ``cell``; returns a dict input name -> gradient."""
    if cell == "lstm":
        g = mod.lstm_backward(ctx, *douts)
        names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
    else:
        g = (mod.gru_backward if cell == "gru" else mod.rnn_backward)(ctx, *douts)
        names = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    assert len(g) == len(names)
    return dict(zip(names, g, strict=True))


def assert_close(got, want, dtype, what):
    if want is None:
        assert got is None, f"{what}: expected None"
        return
    assert isinstance(got, np.ndarray), f"{what}: not an ndarray"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype} != {dtype}"
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=F64_RTOL, atol=F64_ATOL, err_msg=what)
    else:
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        np.testing.assert_allclose(got, want, rtol=F32_RTOL, atol=F32_ATOL * scale, err_msg=what)


# (T, B, I, H, lengths, reverse, bias, h0/c0 given)
CASES = {
    "plain": (7, 5, 3, 9, None, False, (True, True), True),
    "T1-B1-reverse-noh0": (1, 1, 4, 3, None, True, (True, True), False),
    "lengths": (6, 4, 5, 7, [6, 0, 3, 1], False, (True, True), True),
    "lengths-reverse-nobias": (6, 4, 5, 7, [2, 6, 0, 5], True, (False, False), True),
    "H1-B1-bih-only": (5, 1, 2, 1, None, False, (True, False), False),
    "lengths-reverse-bhh-only": (3, 6, 1, 11, [3, 1, 2, 3, 0, 1], True, (False, True), True),
    "wide-noh0": (9, 3, 17, 13, [9, 4, 8], False, (True, True), False),
    "B1-len1-reverse": (4, 1, 3, 5, [1], True, (True, True), True),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cell", CELLS)
def test_matches_reference(impl, cell, case, dtype):
    T, B, I, H, lengths, reverse, bias, h0 = CASES[case]
    a = make(cell, T, B, I, H, seed=list(CASES).index(case), dtype=dtype, bias=bias, h0=h0)
    kw = {"lengths": lengths, "reverse": reverse}
    outs, ctx = forward(impl, cell, a, **kw)
    routs, rctx = forward(REF, cell, a, **kw)
    names = ["y", "h_n", "c_n"]
    for n, o, r in zip(names[: len(routs)], outs, routs, strict=True):
        assert_close(o, r, dtype, n)
    # inference mode gives the same outputs and no ctx
    iouts, ictx = forward(impl, cell, a, training=False, **kw)
    assert ictx is None
    for n, o, r in zip(names[: len(routs)], iouts, routs, strict=True):
        assert_close(o, r, dtype, f"{n} (training=False)")
    rng = np.random.default_rng(100 + list(CASES).index(case))
    d = [rng.standard_normal(o.shape).astype(dtype) for o in routs]
    g = backward(impl, cell, ctx, d)
    rg = backward(REF, cell, rctx, d)
    for n in rg:
        assert_close(g[n], rg[n], dtype, f"d{n}")


def _check_against_reference(impl, cell, a, dtype, lengths, reverse, seed, what):
    kw = {"lengths": lengths, "reverse": reverse}
    outs, ctx = forward(impl, cell, a, **kw)
    routs, rctx = forward(REF, cell, a, **kw)
    for n, o, r in zip(["y", "h_n", "c_n"][: len(routs)], outs, routs, strict=True):
        assert_close(o, r, dtype, f"{n} {what}")
    rng = np.random.default_rng(seed)
    d = [rng.standard_normal(o.shape).astype(dtype) for o in routs]
    g = backward(impl, cell, ctx, d)
    rg = backward(REF, cell, rctx, d)
    for n in rg:
        assert_close(g[n], rg[n], dtype, f"d{n} {what}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", CELLS)
def test_random_shapes(impl, cell, dtype):
    """A seeded sweep of shapes across the kernels' tile and slice boundaries."""
    rng = np.random.default_rng(7 + CELLS.index(cell))
    for draw in range(10):
        T = int(rng.integers(1, 7))
        B = int(rng.integers(1, 14))
        I = int(rng.integers(1, 70))
        H = int(rng.integers(1, 70))
        bias = (bool(rng.integers(2)), bool(rng.integers(2)))
        lengths = rng.integers(0, T + 1, B) if rng.integers(2) else None
        reverse = bool(rng.integers(2))
        a = make(cell, T, B, I, H, seed=draw, dtype=dtype, bias=bias, h0=bool(rng.integers(2)))
        what = f"(draw {draw}: T={T} B={B} I={I} H={H} lengths={lengths} reverse={reverse})"
        _check_against_reference(impl, cell, a, dtype, lengths, reverse, draw, what)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_thread_counts(impl, cell, threads):
    import fastrnn

    a = make(cell, 4, 5, 19, 33, seed=11)
    fastrnn.set_num_threads(threads)
    try:
        assert fastrnn.get_num_threads() == threads
        _check_against_reference(impl, cell, a, np.float64, [4, 0, 2, 3, 1], True, 12, "")
    finally:
        fastrnn.set_num_threads(None)  # back to the default


@pytest.mark.parametrize("cell", CELLS)
def test_none_output_gradients(impl, cell):
    T, B, I, H = 4, 3, 2, 5
    a = make(cell, T, B, I, H, seed=42)
    lengths = [4, 2, 0]
    outs, ctx = forward(impl, cell, a, lengths=lengths)
    routs, rctx = forward(REF, cell, a, lengths=lengths)
    rng = np.random.default_rng(43)
    full = [rng.standard_normal(o.shape) for o in routs]
    n = len(full)
    # every subset of the output gradients set to None
    for mask in range(1 << n):
        d = [full[k] if mask >> k & 1 else None for k in range(n)]
        g = backward(impl, cell, ctx, d)
        rg = backward(REF, cell, rctx, d)
        for name in rg:
            assert_close(g[name], rg[name], np.float64, f"d{name} (mask {mask:b})")
        if mask == 0:
            for name, v in g.items():
                assert v is None or not v.any(), name


@pytest.mark.parametrize("cell", CELLS)
def test_backward_twice_and_fresh_outputs(impl, cell):
    a = make(cell, 3, 2, 3, 4, seed=44)
    outs, ctx = forward(impl, cell, a, lengths=[3, 1])
    d = [np.ones_like(o) for o in outs]
    g1 = backward(impl, cell, ctx, d)
    for o in outs:  # writing into the outputs must not affect the ctx
        o[...] = 7.0
    g2 = backward(impl, cell, ctx, d)
    for n in g1:
        if g1[n] is not None:
            np.testing.assert_array_equal(g1[n], g2[n], err_msg=n)
            g1[n][...] = 0.0  # writable, and the next call returns fresh arrays
    g3 = backward(impl, cell, ctx, d)
    for n in g2:
        if g2[n] is not None:
            np.testing.assert_array_equal(g2[n], g3[n], err_msg=n)


@pytest.mark.parametrize("cell", CELLS)
def test_empty_sizes(impl, cell):
    G = GATES[cell]
    for T, B, I, lengths in ((0, 2, 3, None), (0, 2, 3, [0, 0]), (3, 0, 2, []), (3, 2, 0, [3, 1])):
        H = 3
        a = make(cell, T, B, I, H, seed=45)
        outs, ctx = forward(impl, cell, a, lengths=lengths)
        routs, rctx = forward(REF, cell, a, lengths=lengths)
        for o, r in zip(outs, routs, strict=True):
            assert_close(o, r, np.float64, f"output T={T} B={B} I={I}")
        d = [np.ones_like(o) for o in routs]
        g = backward(impl, cell, ctx, d)
        rg = backward(REF, cell, rctx, d)
        for n in rg:
            assert_close(g[n], rg[n], np.float64, f"d{n} T={T} B={B} I={I}")
        assert g["w_hh"].shape == (G * H, H)


# ------------------------------------------------------------------ against PyTorch


def _torch_module(torch, cell, I, H, bias):
    if cell == "lstm":
        return torch.nn.LSTM(I, H, bias=bias, bidirectional=True).double()
    if cell == "gru":
        return torch.nn.GRU(I, H, bias=bias, bidirectional=True).double()
    return torch.nn.RNN(I, H, nonlinearity=cell[4:], bias=bias, bidirectional=True).double()


TORCH_CASES = {
    # (T, B, I, H, lengths, bias)
    "plain": (5, 3, 4, 6, None, True),
    "lengths": (6, 4, 3, 5, [6, 1, 3, 6], True),
    "lengths-nobias": (4, 3, 2, 7, [2, 4, 1], False),
    "T1-B1": (1, 1, 3, 3, None, True),
    "B1-lengths": (5, 1, 2, 4, [3], False),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
@pytest.mark.parametrize("cell", CELLS)
def test_matches_torch(impl, cell, case):
    torch = pytest.importorskip("torch")
    T, B, I, H, lengths, bias = TORCH_CASES[case]
    seed = list(TORCH_CASES).index(case)
    torch.manual_seed(seed)
    rng = np.random.default_rng(200 + seed)
    mod = _torch_module(torch, cell, I, H, bias)
    is_lstm = cell == "lstm"

    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((2, B, H))
    c0 = rng.standard_normal((2, B, H))
    dy = rng.standard_normal((T, B, 2 * H))
    dh = rng.standard_normal((2, B, H))
    dc = rng.standard_normal((2, B, H))
    if lengths is not None:  # padded outputs are zero, their gradient is irrelevant
        dy[np.arange(T)[:, None] >= np.array(lengths)[None, :]] = 0.0

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True)
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), enforce_sorted=False
        )
    if is_lstm:
        out, (hn, cn) = mod(inp, (h0t, c0t))
    else:
        out, hn = mod(inp, h0t)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    loss = (out * torch.tensor(dy)).sum() + (hn * torch.tensor(dh)).sum()
    if is_lstm:
        loss = loss + (cn * torch.tensor(dc)).sum()
    loss.backward()

    dx_total = np.zeros_like(x)
    for k, suffix in enumerate(["_l0", "_l0_reverse"]):
        params = {
            n: getattr(mod, n + suffix).detach().numpy().copy()
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            if hasattr(mod, n + suffix)
        }
        a = {
            "x": x,
            "h0": h0[k],
            "c0": c0[k] if is_lstm else None,
            "w_ih": params["weight_ih"],
            "w_hh": params["weight_hh"],
            "b_ih": params.get("bias_ih"),
            "b_hh": params.get("bias_hh"),
        }
        outs, ctx = forward(impl, cell, a, lengths=lengths, reverse=bool(k))
        want = [out[:, :, k * H : (k + 1) * H], hn[k]] + ([cn[k]] if is_lstm else [])
        for name, o, w in zip(["y", "h_n", "c_n"][: len(want)], outs, want, strict=True):
            np.testing.assert_allclose(
                o, w.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"{name}{suffix}"
            )
        d = [dy[:, :, k * H : (k + 1) * H], dh[k]] + ([dc[k]] if is_lstm else [])
        g = backward(impl, cell, ctx, d)
        dx_total += g["x"]
        tg = {"h0": h0t.grad[k], "c0": c0t.grad[k] if is_lstm else None}
        for ours, theirs in (
            ("w_ih", "weight_ih"),
            ("w_hh", "weight_hh"),
            ("b_ih", "bias_ih"),
            ("b_hh", "bias_hh"),
        ):
            p = getattr(mod, theirs + suffix, None)
            tg[ours] = None if p is None else p.grad
        for n, want_g in tg.items():
            if n == "c0" and not is_lstm:
                continue
            if want_g is None:
                assert g[n] is None, f"d{n}{suffix} should be None without bias"
                continue
            np.testing.assert_allclose(
                g[n], want_g.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL, err_msg=f"d{n}{suffix}"
            )
    np.testing.assert_allclose(dx_total, xt.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)


def test_prepare_fast_path_takes_arrays_as_given_and_still_checks():
    """C-contiguous arrays of one float dtype go to the kernels as they are (no copy); any
    other mix takes the converting path, so dtype mixing and shapes are still rejected."""
    from fastrnn import _validate

    rng = np.random.default_rng(0)
    T, B, I, H = 3, 2, 4, 5
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    w_ih = rng.standard_normal((4 * H, I)).astype(np.float32)
    w_hh = rng.standard_normal((4 * H, H)).astype(np.float32)
    b = np.zeros(4 * H, np.float32)
    p = _validate.prepare("lstm", x, None, None, w_ih, w_hh, b, b)
    assert p.x is x and p.w_ih is w_ih and p.w_hh is w_hh and p.b_ih is b
    assert p.dtype == np.float32
    with pytest.raises(TypeError, match="mix float32 and float64"):
        _validate.prepare("lstm", x, None, None, w_ih, w_hh.astype(np.float64), b, b)
    with pytest.raises(ValueError, match=r"w_hh must have shape \(G\*H, H\)"):
        _validate.prepare("lstm", x, None, None, w_ih, w_hh[:-1], b, b)
    with pytest.raises(ValueError, match=r"b_ih must have shape \(G\*H,\)"):
        _validate.prepare("lstm", x, None, None, w_ih, w_hh, b[:-1], b)
    xf = np.asfortranarray(x)  # converting path: a C-contiguous copy, same values
    q = _validate.prepare("lstm", xf, None, None, w_ih, w_hh, b, b)
    assert q.x.flags.c_contiguous and np.array_equal(q.x, x)
    h16 = np.zeros((B, H), np.float16)  # float16 state: converted to the float32 of the rest
    assert _validate.prepare("lstm", x, h16, None, w_ih, w_hh, b, b).h0.dtype == np.float32


# ------------------------------------------------------------------ the cell-generic op


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_cell_forward_is_the_cells_own_op(impl, cell, reverse):
    """``cell_forward`` / ``cell_backward`` give exactly what the per-cell functions give,
    and the per-cell backward refuses another cell's ctx while the generic one takes any."""
    name = cell.split("_")[0]
    nl = cell.split("_")[1] if name == "rnn" else None
    a = make(cell, 6, 3, 5, 7, seed=11)
    lengths = np.array([6, 2, 0])
    outs, ctx = forward(impl, cell, a, lengths=lengths, reverse=reverse)
    y, h_n, c_n, gctx = impl.cell_forward(name, a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"],
                                          a["b_ih"], a["b_hh"], nonlinearity=nl,
                                          lengths=lengths, reverse=reverse)
    assert (c_n is None) == (name != "lstm")
    for got, want in zip((y, h_n, c_n) if c_n is not None else (y, h_n), outs, strict=True):
        assert np.array_equal(got, want)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    want = impl.cell_backward(ctx, dy, None)
    got = impl.cell_backward(gctx, dy, None)
    assert len(got) == 7 and (got[2] is None) == (name != "lstm")
    for g, w in zip(got, want, strict=True):
        assert (g is None and w is None) or np.array_equal(g, w)
    other = "gru" if name != "gru" else "lstm"
    with pytest.raises(TypeError, match="ctx"):
        getattr(impl, f"{other}_backward")(gctx, dy, None, *([None] if other == "lstm" else []))


def test_cell_forward_names_the_cells(impl):
    a = make("gru", 2, 1, 3, 4, seed=0)
    with pytest.raises(ValueError, match=r"cell must be one of \['gru', 'lstm', 'rnn'\]"):
        impl.cell_forward("lstmp", a["x"], None, None, a["w_ih"], a["w_hh"], None, None)
    with pytest.raises(ValueError, match="nonlinearity"):
        impl.cell_forward("rnn", a["x"], None, None, a["w_ih"][:4], a["w_hh"][:4], None, None)
    with pytest.raises(ValueError, match="c0 is only for the LSTM"):
        impl.cell_forward("gru", a["x"], None, np.zeros((1, 4)), a["w_ih"], a["w_hh"], None,
                          None)


# --------------------------------------------------------------------------------------
# A length-1 forward on the weights as given (csrc/recurrence.c's step1 with the
# dots kernels of csrc/dots.c: no packing for up to 8 batch rows; the decode loop's call)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_step_unpacked_equals_the_reference(cell, dtype, arch):
    """Every cell, both dtypes and every SIMD path: h0 given or not, biases or not, empty rows
    (length 0), identity input, units not a multiple of the tile (H = 9, 37, 70, 130), input
    sizes not a multiple of the vector (the dots' masked tail), 1 to 8 rows (the dots take 4
    at a time); equal to the reference, bit for bit the same on one and two threads and with
    or without the training cache, its backward equal to the reference's, and run on the
    unpacked route (its counter)."""
    import fastrnn
    from fastrnn import _kernels, functional

    G = GATES[cell]
    rtol, atol = (F64_RTOL, F64_ATOL) if dtype == np.float64 else (F32_RTOL, F32_ATOL)
    cases = [(1, 100, 37, True, (True, True), None), (2, 190, 70, False, (False, True), None),
             (4, 500, 37, True, (True, False), [1, 0, 1, 1]), (1, 0, 130, True, (True, True), None),
             (7, 3, 9, True, (True, True), [1, 1, 0, 1, 1, 1, 0]),
             (8, 33, 70, False, (True, True), None)]
    for seed, (B, I, H, h0, bias, lengths) in enumerate(cases):
        a = make(cell, 1, B, max(I, 1), H, seed=seed, dtype=dtype, bias=bias, h0=h0)
        if I == 0:  # identity input: x holds the projection (T, B, G*H)
            a["x"] = (np.random.default_rng(seed).standard_normal((1, B, G * H)) * 0.5
                      ).astype(dtype)
            a["w_ih"] = None
        lens = None if lengths is None else np.array(lengths, np.int64)
        want, _ = forward(REF, cell, a, lengths=lens, training=False)
        results = []
        for threads in (1, 2):
            fastrnn.set_num_threads(threads)
            try:
                before = _kernels.step1_passes()
                got, _ = forward(functional, cell, a, lengths=lens, training=False)
                trained, ctx = forward(functional, cell, a, lengths=lens, training=True)
                assert _kernels.step1_passes() == before + 2
            finally:
                fastrnn.set_num_threads(None)
            results.append(got)
            for g, t, w in zip(got, trained, want, strict=True):
                assert g.dtype == dtype
                np.testing.assert_array_equal(t, g)  # with or without the cache, the same
                np.testing.assert_allclose(g, w, rtol=rtol,
                                           atol=atol * max(1.0, float(np.abs(w).max())))
        for g1, g2 in zip(*results, strict=True):
            np.testing.assert_array_equal(g1, g2)
        # the backward of the cache it wrote (dh0 and dx by the transposed dots kernel, no
        # packing: bit for bit the same on one thread and on a team of two)
        douts = [np.random.default_rng(seed + 9).standard_normal(o.shape).astype(dtype)
                 for o in want]
        _, ctx_r = forward(REF, cell, a, lengths=lens, training=True)
        grads = backward(functional, cell, ctx, douts)
        fastrnn.set_num_threads(2)
        _kernels.set_team_threads(2)
        try:
            grads2 = backward(functional, cell, ctx, douts)
        finally:
            _kernels.set_team_threads(0)
            fastrnn.set_num_threads(None)
        for name, g in grads.items():
            if g is not None:
                np.testing.assert_array_equal(grads2[name], g, err_msg=name)
        for name, g in backward(REF, cell, ctx_r, douts).items():
            if g is None:
                assert grads[name] is None, name
            else:
                np.testing.assert_allclose(grads[name], g, rtol=rtol,
                                           atol=atol * max(1.0, float(np.abs(g).max())),
                                           err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_one_step_backward_passes_an_ended_rows_state_gradient_through(cell, arch):
    """A row of length 0 in a length-1 backward: its state gradient passes through unchanged,
    even where W_hh holds an infinity (its zero gate gradients times inf would be NaN), while
    the other rows' gradients are the reference's."""
    from fastrnn import functional

    a = make(cell, 1, 3, 5, 20, seed=4, dtype=np.float64)
    a["w_hh"][0, :] = np.inf  # gate row 0: every other row's gradient gets inf*delta (or NaN)
    lens = np.array([1, 0, 1], np.int64)
    _, ctx = forward(functional, cell, a, lengths=lens, training=True)
    douts = [np.random.default_rng(5).standard_normal(o.shape) for o in
             forward(REF, cell, a, lengths=lens, training=False)[0]]
    grads = backward(functional, cell, ctx, douts)
    np.testing.assert_array_equal(grads["h0"][1], douts[1][1])
    np.testing.assert_array_equal(grads["x"][0, 1], 0.0)
    assert not np.isfinite(grads["h0"][[0, 2]]).all()  # the active rows do meet the infinity


def test_one_step_backward_splits_dx_between_threads():
    """dx of a length-1 backward large enough for two threads (17 MFLOP): its columns split
    between them, bit for bit the one-thread result, and the reference's."""
    import fastrnn
    from fastrnn import functional

    a = make("lstm", 1, 4, 520, 512, seed=6, dtype=np.float32)
    douts = [np.random.default_rng(7).standard_normal(o.shape).astype(np.float32)
             for o in forward(REF, "lstm", a, training=False)[0]]
    got = []
    for threads in (1, 2):
        fastrnn.set_num_threads(threads)
        try:
            _, ctx = forward(functional, "lstm", a, training=True)
            got.append(backward(functional, "lstm", ctx, douts))
        finally:
            fastrnn.set_num_threads(None)
    for name, g in got[0].items():
        np.testing.assert_array_equal(got[1][name], g, err_msg=name)
    _, ctx_r = forward(REF, "lstm", a, training=True)
    want = backward(REF, "lstm", ctx_r, douts)["x"]
    np.testing.assert_allclose(got[1]["x"], want, rtol=F32_RTOL,
                               atol=F32_ATOL * float(np.abs(want).max()))


def test_a_small_one_step_call_runs_on_the_calling_thread():
    """A length-1 forward under FR_STEP1_TEAM_FLOPS (2**17: an LSTM(64) step is 65536) takes no
    team whatever the thread count: its fork and join cost about what a second thread saves,
    and the call keeps the GIL for its few microseconds (_kernels.pyx's _gil_off)."""
    import fastrnn
    from fastrnn import _kernels, functional

    fastrnn.set_num_threads(2)
    try:
        for cell, (B, I, H) in [("lstm", (1, 64, 64)), ("gru", (2, 40, 50)),
                                ("rnn_tanh", (2, 100, 100))]:
            a = make(cell, 1, B, I, H, seed=1, dtype=np.float32)
            steps, teams = _kernels.step1_passes(), _kernels.step1_team_passes()
            forward(functional, cell, a, training=False)
            assert _kernels.step1_passes() == steps + 1, cell
            assert _kernels.step1_team_passes() == teams, cell
    finally:
        fastrnn.set_num_threads(None)


def test_one_step_takes_the_packed_route_for_more_rows_or_steps():
    from fastrnn import _kernels, functional

    def ran_unpacked(T, B, I, H, training=False):
        a = make("lstm", T, B, I, H, seed=0, dtype=np.float32)
        before = _kernels.step1_passes()
        forward(functional, "lstm", a, training=training)
        return _kernels.step1_passes() - before

    assert ran_unpacked(1, 1, 64, 64) == 1
    assert ran_unpacked(1, 8, 5, 3) == 1
    assert ran_unpacked(1, 1, 64, 64, training=True) == 1
    assert ran_unpacked(1, 9, 64, 64) == 0  # more than 8 rows: the microkernel's reuse pays
    assert ran_unpacked(2, 1, 64, 64) == 0  # two steps
