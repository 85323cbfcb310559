"""Vectorised sigmoid and tanh (fr_sigmoid_*, fr_tanh_*) on every SIMD path the machine has.

Error metric: |y - t| / max(|t|, tiny), t the exact value (float64 for float32 inputs, long double
for float64 inputs), tiny the smallest normal number of the output type, so that outputs in the
denormal range are held to a fixed number of denormal steps. Bounds: float32 1e-6, float64 1e-14.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn import _kernels

ARCHES = _kernels.available_arches()


def _sigmoid_exact(x):
    """Sigmoid in x's (wider) precision, without overflow: e/(1+e) with e = exp(-|x|)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _rel_err(y, t, out_dtype):
    tiny = np.finfo(out_dtype).tiny
    t = np.asarray(t)
    return np.abs(y.astype(t.dtype) - t) / np.maximum(np.abs(t), tiny)


def _float32_sweep():
    """Every 4099th float32 bit pattern (both signs, all exponents: zeros, denormals, normals,
    infinities; NaNs removed) and the edges of the algorithms' ranges (tanh: ln2/4, where
    expm1(-2|x|)'s reduction leaves n = 0, and 10, its clamp)."""
    bits = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    edges = np.array([0.0, 1e-45, 1e-38, 0.17328678, 0.1732868, 0.4, 9.0, 9.999999, 10.0,
                      10.000001, 87.3, 88.7, 89.0, 103.9, 104.0, 200.0, np.finfo(np.float32).max,
                      np.inf], np.float32)
    x = np.concatenate([x, edges, -edges])
    return x[~np.isnan(x)]


def _float64_sample():
    rng = np.random.default_rng(0)
    edges = np.array([0.0, 5e-324, 2.2e-308, 1e-20, 0.25, np.log(2) / 4, 18.0, 19.5,
                      np.nextafter(20.0, 0), 20.0, 20.000001, 700.0, 708.5, 709.8, 745.0, 746.0,
                      800.0, 1.7e308, np.inf])
    parts = [
        rng.standard_normal(100_000) * 4,
        rng.standard_normal(50_000) * 300,
        rng.uniform(-0.3, 0.3, 50_000),
        np.geomspace(1e-310, 1e3, 50_000),
        edges,
    ]
    x = np.concatenate(parts)
    return np.concatenate([x, -x])


@pytest.mark.parametrize("fn", ["sigmoid", "tanh"])
def test_float32_whole_range(arch, fn):
    x = _float32_sweep()
    y = getattr(_kernels, fn)(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    x64 = x.astype(np.float64)
    t = _sigmoid_exact(x64) if fn == "sigmoid" else np.tanh(x64)
    err = _rel_err(y, t, np.float32)
    worst = int(np.argmax(err))
    assert err[worst] <= 1e-6, f"{fn}({x[worst]!r}) = {y[worst]!r}, exact {t[worst]!r}"


@pytest.mark.parametrize("fn", ["sigmoid", "tanh"])
def test_float64_accuracy(arch, fn):
    x = _float64_sample()
    y = getattr(_kernels, fn)(x)
    assert y.dtype == np.float64
    xl = x.astype(np.longdouble)
    t = _sigmoid_exact(xl) if fn == "sigmoid" else np.tanh(xl)
    err = _rel_err(y, t, np.float64)
    worst = int(np.argmax(err))
    assert err[worst] <= 1e-14, f"{fn}({x[worst]!r}) = {y[worst]!r}, exact {t[worst]!r}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(arch, dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], dtype=dtype)
    s = _kernels.sigmoid(x)
    t = _kernels.tanh(x)
    assert s[0] == 1.0 and s[1] == 0.0 and np.isnan(s[2]) and s[3] == 0.5 and s[4] == 0.5
    assert t[0] == 1.0 and t[1] == -1.0 and np.isnan(t[2]) and t[3] == 0.0
    assert np.signbit(t[4]) and not np.signbit(t[3])
    # denormal inputs: tanh(x) = x exactly, sigmoid(x) = 1/2
    d = np.array([np.finfo(dtype).smallest_subnormal, -np.finfo(dtype).smallest_subnormal,
                  np.finfo(dtype).tiny / 3], dtype=dtype)
    assert np.array_equal(_kernels.tanh(d), d)
    assert np.all(_kernels.sigmoid(d) == 0.5)
    # saturation far out, and no overflow warnings or infinities
    big = np.array([1e4, -1e4, np.finfo(dtype).max, -np.finfo(dtype).max], dtype=dtype)
    assert np.array_equal(_kernels.sigmoid(big), np.array([1, 0, 1, 0], dtype=dtype))
    assert np.array_equal(_kernels.tanh(big), np.array([1, -1, 1, -1], dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tails_and_shapes(arch, dtype):
    """Lengths 0..40 cover the partial last vector of every width (4, 8, 16): each element's
    result is the same wherever it sits; any shape is accepted."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(41) * 3).astype(dtype)
    for fn in (_kernels.sigmoid, _kernels.tanh):
        full = fn(x)
        for n in range(0, 41):
            assert np.array_equal(fn(x[:n].copy()), full[:n])
        x3 = x[:40].reshape(2, 4, 5)
        assert np.array_equal(fn(x3), full[:40].reshape(2, 4, 5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_simd_paths_match_portable(dtype):
    """Every SIMD path against the portable (libm) one: within twice the accuracy bound."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(10_000) * 6).astype(dtype)
    bound = 2e-6 if dtype == np.float32 else 2e-14
    old = _kernels.get_arch()
    try:
        _kernels.set_arch("generic")
        ref = {f: getattr(_kernels, f)(x) for f in ("sigmoid", "tanh")}
        for name in ARCHES:
            _kernels.set_arch(name)
            for f, r in ref.items():
                got = getattr(_kernels, f)(x)
                assert np.all(_rel_err(got, r.astype(np.float64), dtype) <= bound), (name, f)
    finally:
        _kernels.set_arch(old)
