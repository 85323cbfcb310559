"""Thread settings: validation and the cap (issue 21).

"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastrnn
from fastrnn import _native, _threads
from fastrnn import functional as F


@pytest.fixture(autouse=True)
def _restore_threads():
    old = _threads._num_threads
    yield
    _threads._num_threads = old


def _lstm_args(seed=0, T=30, B=4, I=16, H=64):
    r = np.random.default_rng(seed)
    return (r.standard_normal((T, B, I)), np.zeros((B, H)), np.zeros((B, H)),
            r.standard_normal((4 * H, I)) * 0.1, r.standard_normal((4 * H, H)) * 0.1,
            np.zeros(4 * H), np.zeros(4 * H))


# ---- validation and the cap ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 2**31, 99999999999, _threads.MAX_THREADS + 1, 1.5, "2",
                                 True, 2.0])
def test_set_num_threads_rejects_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match=r"set_num_threads: n must be a positive int in 1\.\.8192"):
        fastrnn.set_num_threads(bad)


def test_set_num_threads_takes_numpy_ints():
    fastrnn.set_num_threads(np.int64(2))
    assert fastrnn.get_num_threads() == 2 and type(fastrnn.get_num_threads()) is int


def test_count_above_the_cap_is_clamped_with_one_warning():
    """set_num_threads(1000) on a small machine used to start 1000 threads; now the kernels get
    the cap (4 per usable CPU), a call works, and the warning comes once."""
    cap = _threads.thread_cap()
    assert cap == _threads.THREADS_PER_CPU * _threads.usable_cpus()
    n = min(cap + 1 + 997, _threads.MAX_THREADS)
    _threads._warned.clear()
    fastrnn.set_num_threads(n)
    with pytest.warns(RuntimeWarning, match=f"set_num_threads asks for {n} threads; using {cap}"):
        assert fastrnn.get_num_threads() == cap
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fastrnn.get_num_threads() == cap
        y = F.lstm_forward(*_lstm_args(), training=False)[0]
    assert np.isfinite(y).all()


def test_largest_setting_runs_instead_of_overflowing():
    """The issue's set_num_threads(2**31) was accepted and then every call raised a bare
    OverflowError; the largest accepted setting now runs at the cap."""
    fastrnn.set_num_threads(_threads.MAX_THREADS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        F.lstm_forward(*_lstm_args(), training=False)


@pytest.mark.parametrize("value, want", [("3", 3), (" 3 ", 3), ("4,2", 4), ("2, 1", 2),
                                         ("", None), ("  ", None)])
def test_omp_num_threads_forms(monkeypatch, value, want):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    fastrnn.set_num_threads(None)
    expect = want if want is not None else _threads.usable_cpus()
    assert fastrnn.get_num_threads() == min(expect, _threads.thread_cap())


@pytest.mark.parametrize("value", ["99999999999", "abc", "0", "-2", "+4", "1.5", ",2", "8193",
                                   "\u0663", "9" * 5000])
def test_bad_omp_num_threads_is_an_error_naming_it(monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    fastrnn.set_num_threads(None)
    with pytest.raises(ValueError, match=r"OMP_NUM_THREADS=.* is not a thread count.*1\.\.8192"):
        fastrnn.get_num_threads()
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):  # not OverflowError from the bridge
        F.lstm_forward(*_lstm_args(), training=False)
    fastrnn.set_num_threads(1)  # an explicit count takes precedence over the variable
    F.lstm_forward(*_lstm_args(), training=False)


def test_explicit_nthreads_argument_is_validated():
    a = np.ones((8, 8), np.float32)
    with pytest.raises(ValueError, match=r"nthreads must be a positive int in 1\.\.8192"):
        _native.gemm(a, a, nthreads=2**31)
    with pytest.raises(ValueError, match="nthreads"):
        _native.gemm(a, a, nthreads=0)
    np.testing.assert_allclose(_native.gemm(a, a, nthreads=2), a @ a)
