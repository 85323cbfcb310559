"""Numerical robustness: saturation at huge and infinite inputs, non-finite gradients under
clipping, and float32 against float64 over long (500-step) sequences.

What the kernels do with extreme inputs (every SIMD path, float32 and float64):

- ``sigmoid(±1e4)``, ``sigmoid(±inf)`` are exactly 1 / 0, ``tanh(±1e4)``, ``tanh(±inf)``
  exactly ±1; NaN stays NaN.
- Whole cells: inputs of ±1e4 give finite outputs in [-1, 1] (gates saturate; the LSTM cell
  state stays bounded by the number of steps). Inputs of ±inf give the saturated result when
  every pre-activation is a well-defined ±inf (e.g. one infinite feature and non-zero weights
  in its column); where the maths itself is undefined (``inf - inf`` from features of both
  signs, or ``0 * inf`` from a zero weight) the output is NaN, as in the NumPy reference and
  PyTorch.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastrnn import _kernels
from fastrnn import functional as F
from fastrnn import reference as R
from fastrnn.keras import layers as L
from fastrnn.keras import optimizers
from fastrnn.keras.models import Sequential

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
# the ``arch`` fixture (tests/conftest.py) runs a test once per SIMD path the machine has


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_hooks_saturate_exactly(arch, dtype):
    x = np.array([-np.inf, -1e4, -200.0, 200.0, 1e4, np.inf, np.nan], dtype)
    s, t = _kernels.sigmoid(x), _kernels.tanh(x)
    np.testing.assert_array_equal(s[[0, 1, 4, 5]], [0, 0, 1, 1])
    np.testing.assert_array_equal(t[[0, 1, 2, 3, 4, 5]], [-1, -1, -1, 1, 1, 1])
    assert 0 <= s[2] < 1e-80 or dtype == np.float32 and s[2] == 0
    assert np.isnan(s[6]) and np.isnan(t[6])
    # no overflow warnings or errors anywhere
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _kernels.sigmoid(np.full(37, -1e4, dtype))
        _kernels.tanh(np.full(37, 1e4, dtype))


def _weights(cell, I, H, dtype, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    w_ih = rng.uniform(-scale, scale, (G * H, I)).astype(dtype)
    w_hh = rng.uniform(-scale, scale, (G * H, H)).astype(dtype)
    # no exact zeros: 0 * inf is undefined
    w_ih[w_ih == 0] = 0.1
    b = rng.uniform(-scale, scale, (2, G * H)).astype(dtype)
    return w_ih, w_hh, b[0], b[1]


def _forward(mod, cell, x, w, training=False):
    if cell == "lstm":
        y, h, c, ctx = mod.lstm_forward(x, None, None, *w, training=training)
        return y, (h, c), ctx
    if cell == "gru":
        y, h, ctx = mod.gru_forward(x, None, *w, training=training)
    else:
        y, h, ctx = mod.rnn_forward(x, None, *w, training=training)
    return y, (h,), ctx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_huge_inputs_give_finite_outputs_in_range(arch, cell, dtype):
    T, B, I, H = 9, 4, 5, 19  # odd H: the SIMD tails too
    w = _weights(cell, I, H, dtype)
    rng = np.random.default_rng(1)
    x = (np.sign(rng.standard_normal((T, B, I))) * 1e4).astype(dtype)
    y, states, _ = _forward(F, cell, x, w)
    assert np.isfinite(y).all() and (np.abs(y) <= 1).all()
    assert all(np.isfinite(s).all() for s in states)
    assert (np.abs(states[0]) <= 1).all()
    if cell == "lstm":
        assert (np.abs(states[1]) <= T).all()  # |c_t| <= |c_{t-1}| + 1
    want, _, _ = _forward(R, cell, x, w)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    # training path: forward the same, backward finite
    y2, _, ctx = _forward(F, cell, x, w, training=True)
    np.testing.assert_array_equal(y2, y)
    grads = getattr(F, f"{cell}_backward")(ctx, np.ones_like(y), *(None,) * (len(states)))
    assert all(g is None or np.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_infinite_input_saturates_where_defined(arch, cell, dtype, sign):
    """One infinite feature per step (the others finite): every pre-activation is ±inf, so the
    gates are exactly 0/1 and the outputs are the saturated values, not NaN."""
    T, B, I, H = 5, 3, 4, 11
    w = _weights(cell, I, H, dtype, seed=2)
    x = np.random.default_rng(3).standard_normal((T, B, I)).astype(dtype)
    x[:, :, 1] = sign * np.inf
    y, states, _ = _forward(F, cell, x, w)
    assert np.isfinite(y).all() and (np.abs(y) <= 1).all()
    with np.errstate(invalid="ignore", over="ignore"):
        want, _, _ = _forward(R, cell, x, w)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    if cell == "rnn":  # h = tanh(±inf + finite) = ±1 exactly, the sign of w_ih[:, 1]
        np.testing.assert_array_equal(y, np.broadcast_to(np.sign(sign * w[0][:, 1]), y.shape))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_undefined_infinite_inputs_give_nan_like_the_reference(cell):
    """inf - inf inside the input projection is undefined: NaN, exactly where the reference
    has NaN (no crash, no garbage finite values)."""
    T, B, I, H = 4, 3, 4, 6
    w = _weights(cell, I, H, np.float64, seed=4)
    x = np.zeros((T, B, I))
    x[:, 0, 0], x[:, 0, 1] = np.inf, -np.inf  # sample 0 undefined, others fine
    y, _, _ = _forward(F, cell, x, w)
    with np.errstate(invalid="ignore"):
        want, _, _ = _forward(R, cell, x, w)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1:]).all()


def test_relu_rnn_keeps_a_nan_and_clamps_below_zero(arch):
    """The relu RNN's forward on every SIMD path: a NaN pre-activation stays NaN (as the
    portable ``v < 0 ? 0 : v`` keeps it), a negative one is 0, and the rest is the reference's."""
    T, B, I, H = 4, 3, 5, 37
    rng = np.random.default_rng(5)
    x = rng.standard_normal((T, B, I))
    x[:, 0, 2] = np.nan  # row 0 undefined from the first step
    w_ih = rng.standard_normal((H, I))
    w_hh = rng.standard_normal((H, H)) * 0.1
    b = rng.standard_normal(H)
    y, h, _ = F.rnn_forward(x, None, w_ih, w_hh, b, b, nonlinearity="relu")
    want, _, _ = R.rnn_forward(x, None, w_ih, w_hh, b, b, nonlinearity="relu")
    assert np.isnan(y[:, 0]).all()
    assert (y[:, 1:] >= 0).all() and (y[:, 1:] == 0).any()
    np.testing.assert_allclose(y[:, 1:], want[:, 1:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", [L.SimpleRNN, L.LSTM, L.GRU])
def test_keras_layers_saturate_on_huge_inputs(layer):
    x = np.full((2, 30, 3), 1e4, np.float32)
    x[1] *= -1
    m = Sequential([L.Input((30, 3)), layer(7, return_sequences=True)])
    y = m.predict(x, verbose=0)
    assert np.isfinite(y).all() and (np.abs(y) <= 1).all()


# -- gradient clipping with non-finite gradients (Keras 3.15's results) ---------------------

def _step(opt_kw, g0):
    opt = optimizers.SGD(learning_rate=1.0, **opt_kw)
    v, w = np.zeros(2), np.zeros(2)
    with np.errstate(invalid="ignore"):
        opt.apply([v, w], [np.array(g0), np.array([3.0, 4.0])])
    return -v, -w  # the applied gradients


@pytest.mark.parametrize("kw, g0, want_v, want_w", [
    ({"clipnorm": 1.0}, [np.inf, 1.0], [np.nan, 0.0], [0.6, 0.8]),
    ({"clipnorm": 1.0}, [np.nan, 1.0], [np.nan, np.nan], [0.6, 0.8]),
    ({"global_clipnorm": 1.0}, [np.inf, 1.0], [np.nan, np.nan], [np.nan, np.nan]),
    ({"global_clipnorm": 1.0}, [np.nan, 1.0], [np.nan, np.nan], [np.nan, np.nan]),
    ({"clipvalue": 1.0}, [np.inf, 1.0], [1.0, 1.0], [1.0, 1.0]),
    ({"clipvalue": 1.0}, [-np.inf, np.nan], [-1.0, np.nan], [1.0, 1.0]),
    ({}, [np.inf, 1.0], [np.inf, 1.0], [3.0, 4.0]),
])
def test_clipping_non_finite_gradients_matches_keras(kw, g0, want_v, want_w):
    v, w = _step(kw, g0)
    np.testing.assert_allclose(v, want_v, rtol=1e-15, atol=0)  # NaN where Keras has NaN
    np.testing.assert_allclose(w, want_w, rtol=1e-15, atol=0)


def test_clipping_finite_gradients_exactly():
    v, w = _step({"clipnorm": 2.5}, [3.0, 4.0])
    np.testing.assert_allclose(v, [1.5, 2.0], rtol=1e-15)
    v, w = _step({"global_clipnorm": 5.0}, [3.0, 4.0])  # joint norm 5*sqrt(2)
    np.testing.assert_allclose(np.r_[v, w], np.r_[3.0, 4, 3, 4] / np.sqrt(2), rtol=1e-15)
    v, w = _step({"clipnorm": 0.0}, [3.0, 4.0])  # 0 disables clipping, as in Keras
    np.testing.assert_array_equal(v, [3.0, 4.0])


def test_clipnorm_keeps_training_finite_on_exploding_gradients():
    """Huge but finite gradients (a relu RNN with large recurrent weights) stay finite with
    clipping; the weights move by at most lr * clipnorm per step."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 40, 3)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    m = Sequential([L.Input((40, 3)), L.SimpleRNN(8, activation="relu"), L.Dense(1)])
    k, rk, b = m.layers[0].get_weights()
    m.layers[0].set_weights([k * 3, np.eye(8, dtype=np.float32) * 1.6, b])
    m.compile(optimizer=optimizers.SGD(0.1, clipnorm=1.0), loss="mse")
    for _ in range(5):
        before = m.get_weights()
        m.train_on_batch(x, y)
        for a, c in zip(before, m.get_weights(), strict=True):
            assert np.isfinite(c).all()
            assert np.linalg.norm(c - a) <= 0.1 * 1.0 * (1 + 1e-5)


# -- float32 against float64 over 500 steps ------------------------------------------------

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_float32_long_sequence_tracks_float64(cell):
    T, B, I, H = 500, 4, 8, 24
    w64 = _weights(cell, I, H, np.float64, seed=6, scale=1 / np.sqrt(H))
    w32 = tuple(a.astype(np.float32) for a in w64)
    x64 = np.random.default_rng(7).standard_normal((T, B, I))
    x32 = x64.astype(np.float32)
    y64, s64, ctx64 = _forward(F, cell, x64, w64, training=True)
    y32, s32, ctx32 = _forward(F, cell, x32, w32, training=True)
    assert np.isfinite(y32).all()
    np.testing.assert_allclose(y32, y64, rtol=0, atol=2e-4)
    dy = np.random.default_rng(8).standard_normal(y64.shape) / np.sqrt(T * B)
    n_states = len(s64)
    g64 = getattr(F, f"{cell}_backward")(ctx64, dy, *(None,) * n_states)
    g32 = getattr(F, f"{cell}_backward")(ctx32, dy.astype(np.float32), *(None,) * n_states)
    for a32, a64 in zip(g32, g64, strict=True):
        if a64 is None:
            continue
        assert np.isfinite(a32).all()
        err = np.linalg.norm(a32 - a64) / np.linalg.norm(a64)
        assert err < 1e-4, err


@pytest.mark.parametrize("layer", [L.SimpleRNN, L.LSTM, L.GRU])
def test_float32_training_on_500_step_sequences_tracks_float64(layer):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((8, 500, 2))
    y = (x[:, -20:, :1].mean(axis=1) > 0).astype(np.float64)
    losses = {}
    init = None
    for dt in ("float64", "float32"):
        m = Sequential([L.Input((500, 2)), layer(6, dtype=dt), L.Dense(1, dtype=dt)])
        if init is None:
            init = m.get_weights()
        m.set_weights(init)
        m.compile(optimizer=optimizers.Adam(0.01, clipnorm=1.0), loss="mse")
        losses[dt] = [float(m.train_on_batch(x.astype(dt), y.astype(dt))) for _ in range(4)]
        assert all(np.isfinite(losses[dt]))
        assert all(np.isfinite(w).all() for w in m.get_weights())
    np.testing.assert_allclose(losses["float32"], losses["float64"], rtol=1e-3)
