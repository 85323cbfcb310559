"""Property-based tests (hypothesis) of the functional ops: native (``fastrnn.functional``)
against the NumPy oracle (``fastrnn.reference``) over random shapes, dtypes, lengths, bias,
reverse, values and memory layouts, and of the documented errors for bad input.

Every property either checks agreement with the reference or a documented exception whose
message names the argument; every case also checks that no input was modified. Examples are
derandomized (the same on every run, so CI is reproducible) and small (the whole file runs in
a few seconds). Deterministic edge cases (empty dimensions, size limits) are in test_sizes.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn.functional as F
import fastrnn.reference as R

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
# hidden sizes around the SIMD tile widths (8/16 floats, 4/8 doubles, panels of 2 vectors)
TILE_EDGES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49, 63, 64, 65]
TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-4}


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Problem:
    cell: str
    T: int
    B: int
    I: int
    H: int
    dtype: type
    b_ih: bool
    b_hh: bool
    h0: bool
    c0: bool
    lengths: str  # "none", "full" (all T), "random" (each in [0, T])
    reverse: bool
    values: str  # "normal", "large"
    seed: int

    @property
    def G(self) -> int:
        return GATES[self.cell]

    @property
    def lstm(self) -> bool:
        return self.cell == "lstm"


@st.composite
def problems(draw, dtypes=(np.float64, np.float32), values=("normal", "large"), min_b=0):
    return Problem(
        cell=draw(st.sampled_from(CELLS)),
        T=draw(st.integers(0, 6)),
        B=draw(st.one_of(st.just(1), st.integers(min_b, 5))),
        I=draw(st.integers(0, 9)),
        H=draw(st.one_of(st.integers(1, 70), st.sampled_from(TILE_EDGES))),
        dtype=draw(st.sampled_from(dtypes)),
        b_ih=draw(st.booleans()),
        b_hh=draw(st.booleans()),
        h0=draw(st.booleans()),
        c0=draw(st.booleans()),
        lengths=draw(st.sampled_from(["none", "full", "random"])),
        reverse=draw(st.booleans()),
        values=draw(st.sampled_from(values)),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def arrays(p: Problem) -> dict:
    """Inputs and output gradients of a problem (None for what it leaves out)."""
    rng = np.random.default_rng(p.seed)
    T, B, I, H, G = p.T, p.B, p.I, p.H, p.G
    s = 1.0 / np.sqrt(H)
    a = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H)) if p.h0 else None,
        "c0": rng.standard_normal((B, H)) if p.lstm and p.c0 else None,
        "w_ih": rng.uniform(-s, s, (G * H, I)),
        "w_hh": rng.uniform(-s, s, (G * H, H)),
        "b_ih": rng.uniform(-s, s, G * H) if p.b_ih else None,
        "b_hh": rng.uniform(-s, s, G * H) if p.b_hh else None,
        "dy": rng.standard_normal((T, B, H)),
        "dh_n": rng.standard_normal((B, H)),
        "dc_n": rng.standard_normal((B, H)) if p.lstm else None,
    }
    if p.values == "large":  # saturating gates, huge relu states: +-1e4 with random signs
        a["x"] = a["x"] * 1e4
        if a["h0"] is not None:
            a["h0"] = np.sign(a["h0"]) * 1e4
        if a["b_ih"] is not None:
            a["b_ih"] = a["b_ih"] * 1e4
    if p.lengths == "full":
        a["lengths"] = np.full(B, T, np.int64)
    elif p.lengths == "random":
        a["lengths"] = rng.integers(0, T + 1, B)
    else:
        a["lengths"] = None
    return {n: (v if v is None or n == "lengths" else v.astype(p.dtype)) for n, v in a.items()}


FWD_ARGS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")


def forward(mod, cell: str, a: dict, reverse: bool = False, training: bool = True):
    """Returns (outputs tuple, ctx)."""
    kw = {"lengths": a.get("lengths"), "reverse": reverse, "training": training}
    if cell == "lstm":
        y, h, c, ctx = mod.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"],
                                        a["b_ih"], a["b_hh"], **kw)
        return (y, h, c), ctx
    args = (a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    if cell == "gru":
        y, h, ctx = mod.gru_forward(*args, **kw)
    else:
        y, h, ctx = mod.rnn_forward(*args, nonlinearity=cell[4:], **kw)
    return (y, h), ctx


def backward(mod, cell: str, ctx, a: dict):
    if cell == "lstm":
        return mod.lstm_backward(ctx, a["dy"], a["dh_n"], a["dc_n"])
    fn = mod.gru_backward if cell == "gru" else mod.rnn_backward
    return fn(ctx, a["dy"], a["dh_n"])


def snapshot(a: dict) -> dict:
    return {n: (None if v is None else np.array(v, copy=True)) for n, v in a.items()}


def assert_unchanged(a: dict, before: dict) -> None:
    for n, v in a.items():
        if v is not None:
            np.testing.assert_array_equal(v, before[n], err_msg=f"{n} was modified")


def assert_close(got, want, dtype, what: str) -> None:
    """Agreement up to the dtype's tolerance, relative to the result's magnitude; non-finite
    values must sit at the same positions."""
    if want is None:
        assert got is None, what
        return
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape)
    tol = TOL[np.dtype(dtype)]
    finite = want[np.isfinite(want)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


def run_both(p: Problem, a: dict):
    outs_r, ctx_r = forward(R, p.cell, a, p.reverse)
    outs_n, ctx_n = forward(F, p.cell, a, p.reverse)
    grads_r = backward(R, p.cell, ctx_r, a)
    grads_n = backward(F, p.cell, ctx_n, a)
    return outs_n, outs_r, grads_n, grads_r, ctx_n


OUT_NAMES = {False: ("y", "h_n"), True: ("y", "h_n", "c_n")}
GRAD_NAMES = {False: ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"),
              True: ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")}


# ---------------------------------------------------------------- agreement with the oracle


@_settings(300)
@given(p=problems())
def test_native_matches_reference(p):
    a = arrays(p)
    before = snapshot(a)
    outs_n, outs_r, grads_n, grads_r, _ = run_both(p, a)
    for name, n, r in zip(OUT_NAMES[p.lstm], outs_n, outs_r, strict=True):
        assert_close(n, r, p.dtype, name)
    for name, n, r in zip(GRAD_NAMES[p.lstm], grads_n, grads_r, strict=True):
        assert_close(n, r, p.dtype, name)
    # documented shapes and optional gradients
    assert outs_n[0].shape == (p.T, p.B, p.H)
    assert (grads_n[-2] is None) == (not p.b_ih) and (grads_n[-1] is None) == (not p.b_hh)
    # inference gives the same outputs bit for bit and no ctx
    outs_i, ctx_i = forward(F, p.cell, a, p.reverse, training=False)
    assert ctx_i is None
    for n, i in zip(outs_n, outs_i, strict=True):
        np.testing.assert_array_equal(i, n)
    # lengths all T is the same as no lengths
    if p.lengths == "full":
        outs_0, _ = forward(F, p.cell, {**a, "lengths": None}, p.reverse)
        for n, z in zip(outs_n, outs_0, strict=True):
            assert_close(n, z, p.dtype, "lengths=T vs None")
    assert_unchanged(a, before)


NONFINITE_TARGETS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n", "dc_n")


@_settings(250)
@given(p=problems(min_b=1), target=st.sampled_from(NONFINITE_TARGETS),
       value=st.sampled_from([np.nan, np.inf, -np.inf]), count=st.integers(1, 3))
def test_non_finite_values_propagate(p, target, value, count):
    """NaN/inf anywhere (inputs, weights, states, output gradients) never crashes. Forward:
    the same NaN and inf positions as the reference and agreement elsewhere. Backward: where
    the reference is finite the native gradient agrees (the native kernels may be finite where
    the reference multiplies an exact zero by a non-finite value)."""
    a = arrays(p)
    if a[target] is None or a[target].size == 0:
        return
    rng = np.random.default_rng(p.seed + 1)
    flat = a[target].reshape(-1)
    flat[rng.integers(0, flat.size, count)] = value
    before = snapshot(a)
    outs_n, outs_r, grads_n, grads_r, _ = run_both(p, a)
    for name, n, r in zip(OUT_NAMES[p.lstm], outs_n, outs_r, strict=True):
        assert_close(n, r, p.dtype, name)
    for name, n, r in zip(GRAD_NAMES[p.lstm], grads_n, grads_r, strict=True):
        if r is None:
            assert n is None
            continue
        ok = np.isfinite(r)
        assert np.isfinite(n[ok]).all(), f"{name}: non-finite where the reference is finite"
        assert_close(np.where(ok, n, 0), np.where(ok, r, 0), p.dtype, name)
    # a NaN in x, h0, c0 or the weights reaches the outputs unless every step is masked out
    if value is not value and target in FWD_ARGS and p.T > 0 and p.lengths == "none":
        assert any(np.isnan(o).any() for o in outs_n), "NaN input vanished"
    assert_unchanged(a, before)


# ---------------------------------------------------------------- memory layouts


def _layout(v: np.ndarray, kind: str, rng) -> np.ndarray:
    if kind == "fortran":
        return np.asfortranarray(v)
    if kind == "strided":
        big = np.zeros(tuple(2 * s + 1 for s in v.shape), v.dtype)
        view = big[tuple(slice(1, None, 2) for _ in v.shape)]
        view[...] = v
        return view
    if kind == "reversed":
        big = np.ascontiguousarray(v[tuple(slice(None, None, -1) for _ in v.shape)])
        return big[tuple(slice(None, None, -1) for _ in v.shape)]
    if kind == "readonly":
        w = v.copy()
        w.flags.writeable = False
        return w
    if kind == "list" and v.size:  # (an empty nested list cannot carry its shape)
        return v.tolist()
    return v


def _shared(vs: list[np.ndarray]) -> list[np.ndarray]:
    """Views of one buffer, each overlapping the next, holding the given values where they do
    not overlap (overlapping elements take the later array's values)."""
    sizes = [v.size for v in vs]
    starts, pos = [], 0
    for s in sizes:
        starts.append(pos)
        pos += max(1, s - 1) if s else 0  # the next view starts on this view's last element
    buf = np.zeros(pos + 1, vs[0].dtype)
    out = []
    for v, s0 in zip(vs, starts, strict=True):
        buf[s0:s0 + v.size] = v.reshape(-1)
    for v, s0 in zip(vs, starts, strict=True):
        out.append(buf[s0:s0 + v.size].reshape(v.shape))
    return out


@_settings(150)
@given(p=problems(values=("normal",)),
       kinds=st.lists(st.sampled_from(["c", "fortran", "strided", "reversed", "readonly", "list"]),
                      min_size=len(FWD_ARGS) + 4, max_size=len(FWD_ARGS) + 4),
       share=st.booleans())
def test_any_layout_same_result(p, kinds, share):
    """Non-contiguous, Fortran, negative-stride, read-only, list or overlapping (views of one
    buffer: w_ih/w_hh, b_ih/b_hh, dy/dh_n) arguments give exactly the results of C-contiguous
    copies of the same values, and are never modified."""
    a = arrays(p)
    rng = np.random.default_rng(p.seed)
    if share:
        a["w_ih"], a["w_hh"] = _shared([a["w_ih"], a["w_hh"]])
        if a["b_ih"] is not None:
            a["b_hh"] = a["b_ih"]  # the very same object for both biases
        a["dy"], a["dh_n"] = _shared([a["dy"], a["dh_n"]])
    plain = {n: (None if v is None else np.array(v, copy=True)) for n, v in a.items()}
    names = [*FWD_ARGS, "dy", "dh_n", "dc_n", "lengths"]
    weird = {n: (None if a[n] is None else _layout(a[n], k, rng))
             for n, k in zip(names, kinds, strict=True)}
    if share:  # keep the sharing: no copies of the shared arguments
        for n in ("w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n"):
            weird[n] = a[n]
    before = snapshot({n: (None if v is None else np.asarray(v)) for n, v in weird.items()})
    outs_p, ctx_p = forward(F, p.cell, plain, p.reverse)
    grads_p = backward(F, p.cell, ctx_p, plain)
    outs_w, ctx_w = forward(F, p.cell, weird, p.reverse)
    grads_w = backward(F, p.cell, ctx_w, weird)
    for u, v in zip((*outs_p, *grads_p), (*outs_w, *grads_w), strict=True):
        if u is None:
            assert v is None
        else:
            np.testing.assert_array_equal(v, u)
    after = {n: (None if v is None else np.asarray(v)) for n, v in weird.items()}
    assert_unchanged(after, before)


# ---------------------------------------------------------------- dtypes

DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.float16, np.float32,
          np.float64, np.complex64, np.complex128, np.bool_, np.object_, np.str_]


def _expected_dtype_error(name: str, bad: np.dtype, base: np.dtype, grads: bool) -> bool:
    """Whether replacing argument ``name`` (``base`` dtype problem) by dtype ``bad`` must be a
    TypeError naming it, per fastrnn._validate's dtype policy."""
    if bad.kind not in "fiu":
        return True  # complex, bool, object, str
    if grads:  # output gradients: any float must match the forward's; others must cast safely
        return not np.can_cast(bad, base, "safe")
    if bad.kind == "f" and bad != np.float16 and bad != base:
        return True  # float32 mixed with float64
    return not np.can_cast(bad, base, "safe")  # lossy, e.g. int64 -> float32


@_settings(200)
@given(p=problems(min_b=1, values=("normal",)),
       name=st.sampled_from(["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n",
                             "dc_n"]),
       bad=st.sampled_from(DTYPES))
def test_dtypes(p, name, bad):
    a = arrays(p)
    if a[name] is None:
        return
    bad = np.dtype(bad)
    base = np.dtype(p.dtype)
    v = a[name]
    if bad.kind in "iub":
        v = np.round(v * 3)
    if bad.kind == "u":
        v = np.abs(v)
    a[name] = v.astype(bad)
    grads = name in ("dy", "dh_n", "dc_n")
    before = snapshot(a)
    if _expected_dtype_error(name, bad, base, grads):
        for mod in (F, R):
            with pytest.raises(TypeError, match=rf"\b{name}\b"):
                outs, ctx = forward(mod, p.cell, a, p.reverse)
                backward(mod, p.cell, ctx, a)
    else:  # converted losslessly: the same as passing the converted values
        conv = {n: (None if w is None or n == "lengths" else np.asarray(w, dtype=base))
                for n, w in a.items()}
        conv["lengths"] = a["lengths"]
        outs, ctx = forward(F, p.cell, a, p.reverse)
        grads_ = backward(F, p.cell, ctx, a)
        outs_c, ctx_c = forward(F, p.cell, conv, p.reverse)
        grads_c = backward(F, p.cell, ctx_c, conv)
        for u, w in zip((*outs, *grads_), (*outs_c, *grads_c), strict=True):
            if u is not None:
                assert u.dtype == base
                np.testing.assert_array_equal(u, w)
    assert_unchanged(a, before)


# ---------------------------------------------------------------- lengths and shapes


@st.composite
def bad_lengths(draw, T: int, B: int):
    kind = draw(st.sampled_from(["negative", "too-long", "count", "2d", "float", "bool",
                                 "str", "scalar"]))
    base = list(np.minimum(np.arange(B), T))
    i = draw(st.integers(0, max(0, B - 1)))
    if kind == "negative":
        base[i] = -draw(st.integers(1, 2**40))
        return ValueError, np.array(base, draw(st.sampled_from([np.int64, np.int32, np.int8])))
    if kind == "too-long":
        base[i] = T + draw(st.integers(1, 2**40))
        return ValueError, np.array(base, np.int64)
    if kind == "count":
        n = draw(st.integers(0, B + 3).filter(lambda n: n != B))
        return ValueError, np.zeros(n, np.int64)
    if kind == "2d":
        return ValueError, np.array(base, np.int64).reshape(1, B)
    if kind == "float":
        return TypeError, np.array(base, np.float64) + draw(st.sampled_from([0.0, 0.5]))
    if kind == "bool":
        return TypeError, np.ones(B, bool)
    if kind == "str":
        return TypeError, np.array([str(v) for v in base])
    return ValueError, draw(st.integers(0, T))  # a scalar: not shape (B,)


@_settings(100)
@given(p=problems(min_b=1, values=("normal",)), data=st.data())
def test_bad_lengths(p, data):
    exc, lengths = data.draw(bad_lengths(p.T, p.B))
    a = arrays(p)
    a["lengths"] = lengths
    before = snapshot(a)
    msgs = []
    for mod in (F, R):
        with pytest.raises(exc, match=r"\blengths\b") as ei:
            forward(mod, p.cell, a, p.reverse)
        msgs.append(str(ei.value))
    assert msgs[0] == msgs[1]  # one validation for both implementations
    assert_unchanged(a, before)


@_settings(150)
@given(p=problems(values=("normal",)),
       name=st.sampled_from(["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "dy", "dh_n",
                             "dc_n"]),
       how=st.sampled_from(["grow", "shrink", "add-axis", "drop-axis"]), data=st.data())
def test_bad_shapes(p, name, how, data):
    """A wrong shape of any argument is a ValueError naming it, the same in both
    implementations (the forward's arguments before any work, the output gradients in
    backward)."""
    a = arrays(p)
    v = a[name]
    if v is None:
        return
    shape = list(v.shape)
    if how in ("grow", "shrink"):
        k = data.draw(st.integers(0, len(shape) - 1))
        if how == "shrink" and shape[k] == 0:
            return
        shape[k] += 1 if how == "grow" else -1
    elif how == "add-axis":
        shape.insert(data.draw(st.integers(0, len(shape))), 1)
    else:
        shape.pop(data.draw(st.integers(0, len(shape) - 1)))
    if name in ("x", "w_hh") and len(shape) == len(v.shape):
        # x and w_hh define T, B, I and H: the arguments that then disagree are named
        pattern = r"\b(x|h0|c0|w_ih|w_hh|b_ih|b_hh|lengths|dy|dh_n|dc_n|hidden size)\b"
    else:
        pattern = rf"\b{name}\b"
    a[name] = np.zeros(shape, p.dtype)
    msgs = []
    for mod in (F, R):
        with pytest.raises(ValueError, match=pattern) as ei:
            outs, ctx = forward(mod, p.cell, a, p.reverse)
            backward(mod, p.cell, ctx, a)
        msgs.append(re.sub(r"fastrnn\.\w+", "", str(ei.value)))
    assert msgs[0] == msgs[1]


# ---------------------------------------------------------------- models


def _model_problems():
    return st.tuples(st.sampled_from(["SimpleRNN", "LSTM", "GRU"]), st.integers(1, 12),
                     st.booleans(), st.booleans(), st.integers(1, 4), st.integers(1, 5),
                     st.integers(1, 6), st.integers(0, 2**32 - 1))


@_settings(60)
@given(spec=_model_problems())
def test_model_predict_matches_reference(spec):
    """Sequential([<recurrent layer>]).predict equals the reference ops run on the weights the
    layer reports in Keras's layout (kernel (I, G*H), recurrent_kernel (H, G*H); GRU gate
    blocks z, r, h and a (2, 3H) bias), and a wrong-rank input is a clear ValueError."""
    from fastrnn.keras import initializers, layers
    from fastrnn.keras.models import Sequential

    kind, H, return_sequences, use_bias, N, T, I, seed = spec
    rng = np.random.default_rng(seed)
    s = seed % 2**31  # seeded initializers: the global generator other tests rely on is untouched
    layer = getattr(layers, kind)(
        H, return_sequences=return_sequences, use_bias=use_bias,
        kernel_initializer=initializers.GlorotUniform(seed=s),
        recurrent_initializer=initializers.Orthogonal(seed=s + 1),
        bias_initializer=initializers.RandomUniform(seed=s + 2) if use_bias else "zeros",
        input_shape=(None, I))
    model = Sequential([layer])
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    got = model.predict(x, verbose=0)
    w = layer.get_weights()
    kernel, rec = w[0].astype(np.float64), w[1].astype(np.float64)
    bias = w[2].astype(np.float64) if use_bias else None
    xt = x.astype(np.float64).transpose(1, 0, 2)
    if kind == "GRU":
        perm = np.r_[H:2 * H, 0:H, 2 * H:3 * H]  # Keras z, r, h -> r, z, n
        b_ih, b_hh = (bias[0][perm], bias[1][perm]) if use_bias else (None, None)
        y, h, _ = R.gru_forward(xt, None, kernel[:, perm].T, rec[:, perm].T, b_ih, b_hh,
                                training=False)
    elif kind == "LSTM":
        y, h, _, _ = R.lstm_forward(xt, None, None, kernel.T, rec.T, bias, None, training=False)
    else:
        y, h, _ = R.rnn_forward(xt, None, kernel.T, rec.T, bias, None, training=False)
    want = y.transpose(1, 0, 2) if return_sequences else h
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    for bad in (x[0], x[..., None]):
        with pytest.raises(ValueError, match=r"shape"):
            model.predict(bad, verbose=0)
