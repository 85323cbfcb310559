"""The ready path of ``functional.cell_forward``: an inference call whose arrays are already as
the kernels take them skips the validating path (``_validate.prepare``); its results must be
those of the validating path bit for bit, and anything not ready must decline to it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastrnn import _native, functional
from fastrnn._cells import CELLS
from fastrnn._validate import prepare

CELL_NAMES = tuple(CELLS)


def _nl(cell):
    return "tanh" if CELLS[cell].nonlinearities else None


def _arrays(rng, cell, T, B, I, H, dtype, biases=True, states=True):
    G = CELLS[cell].gates
    x = rng.standard_normal((T, B, I)).astype(dtype)
    w_ih = (rng.standard_normal((G * H, I)) * 0.2).astype(dtype)
    w_hh = (rng.standard_normal((G * H, H)) * 0.2).astype(dtype)
    b_ih = rng.standard_normal(G * H).astype(dtype) if biases else None
    b_hh = rng.standard_normal(G * H).astype(dtype) if biases else None
    h0 = rng.standard_normal((B, H)).astype(dtype) if states else None
    c0 = (rng.standard_normal((B, H)).astype(dtype)
          if states and CELLS[cell].has_cell_state else None)
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh


def _validating(cell, args, reverse=False, precision="float32", prepared=None):
    """The outputs of the validating path (what every call ran before the ready path)."""
    p = prepare(cell, *args, None, _nl(cell), reverse, False, precision)
    if prepared is None and precision == "float32":
        return _native.forward(p)[:3]
    return _native.forward_prec(p, prepared)[:3]


def _equal(got, want):
    assert len(got) == 3
    for a, b in zip(got, want, strict=True):
        if b is None:
            assert a is None
        else:
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ready_calls_equal_the_validating_path(cell, dtype):
    """Every cell and dtype, one step and several, with and without biases and initial states,
    forward and reverse: the ready path runs and gives the validating path's bits."""
    rng = np.random.default_rng(0)
    for (T, B, I, H), biases, states, reverse in itertools.product(
            [(1, 1, 5, 7), (1, 3, 20, 33), (4, 2, 9, 16)], [True, False], [True, False],
            [False, True]):
        args = _arrays(rng, cell, T, B, I, H, dtype, biases, states)
        ready = _native.forward_ready(cell, _nl(cell), *args, reverse)
        assert ready is not None
        _equal(ready, _validating(cell, args, reverse))
        out = functional.cell_forward(cell, *args, nonlinearity=_nl(cell), reverse=reverse,
                                      training=False)
        assert out[3] is None
        _equal(out[:3], ready)


def test_a_missing_state_starts_at_zeros_as_an_array():
    """A state given as None runs as an array of zeros (as the validating path makes it), not
    as no state: with an infinite recurrent weight, 0 * inf is NaN in both."""
    rng = np.random.default_rng(1)
    x, _, _, w_ih, w_hh, b_ih, b_hh = _arrays(rng, "rnn", 1, 2, 4, 3, np.float32)
    w_hh[0, 0] = np.inf
    args = (x, None, None, w_ih, w_hh, b_ih, b_hh)
    ready = _native.forward_ready("rnn", "tanh", *args, False)
    _equal(ready, _validating("rnn", args))
    assert np.isnan(ready[0][0, :, 0]).all()


def _not_ready(rng, cell):
    """(what, args, nonlinearity) of calls the ready path must decline; each is either valid
    (the validating path converts it) or an error (the validating path names it)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _arrays(rng, cell, 2, 3, 6, 5, np.float32)
    base = [x, h0, c0, w_ih, w_hh, b_ih, b_hh]
    nl = _nl(cell)
    cases = []

    def with_(i, value, what, nonlin=nl):
        args = list(base)
        args[i] = value
        cases.append((what, tuple(args), nonlin))

    with_(0, np.asfortranarray(x), "x not C-contiguous")
    with_(0, x.astype(">f4"), "x byte-swapped")
    raw = np.zeros(x.nbytes + 1, np.uint8)
    mis = raw[1:].view(np.float32).reshape(x.shape)
    mis[...] = x
    with_(0, mis, "x misaligned")
    with_(0, x.astype(np.float64), "x float64, the weights float32")
    with_(0, x.astype(np.float16), "x float16")
    with_(0, x.tolist(), "x a list")
    with_(0, x[:, :, :4].copy(), "x of another input size")
    with_(0, x[0], "x 2-D")
    with_(0, x[:0], "x of no steps")
    with_(0, x[:, :0], "x of no rows")
    with_(0, x[:, :, :0].copy(), "x of no inputs")
    with_(1, h0[:2].copy(), "h0 of another batch")
    with_(1, h0.T.copy(), "h0 transposed")
    with_(3, None, "w_ih None (the identity)")
    with_(3, w_ih[:, ::2], "w_ih a strided view")
    with_(4, w_hh[:-1].copy(), "w_hh of a wrong row count")
    with_(4, w_hh.view(np.ndarray).view(type("Sub", (np.ndarray,), {})), "w_hh a subclass")
    with_(5, b_ih[:-1].copy(), "b_ih too short")
    with_(6, b_hh.astype(np.float64), "b_hh float64")
    if CELLS[cell].has_cell_state:
        with_(2, c0[:, :-1].copy(), "c0 too narrow")
    else:
        with_(2, h0.copy(), "c0 given to a cell without a cell state")
    with_(0, x, "an unknown nonlinearity", nonlin="sigmoid")
    with_(0, x, "an unhashable nonlinearity", nonlin=["tanh"])
    return cases


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_anything_not_ready_declines_to_the_validating_path(cell):
    """The ready path runs nothing for arrays it would have to convert or reject; the public
    call then gives the validating path's result (a converted call) or its error."""
    rng = np.random.default_rng(2)
    for what, args, nonlin in _not_ready(rng, cell):
        assert _native.forward_ready(cell, nonlin, *args, False) is None, what
        try:
            p = prepare(cell, *args, None, nonlin, False, False, "float32")
        except (TypeError, ValueError) as e:
            with pytest.raises(type(e)) as got:
                functional.cell_forward(cell, *args, nonlinearity=nonlin, training=False)
            assert str(got.value) == str(e), what
        else:
            out = functional.cell_forward(cell, *args, nonlinearity=nonlin, training=False)
            _equal(out[:3], _native.forward(p)[:3])
    assert _native.forward_ready("conv", None, *_arrays(rng, "gru", 1, 1, 2, 2, np.float32),
                                 False) is None
    assert _native.forward_ready(["lstm"], None, *_arrays(rng, "lstm", 1, 1, 2, 2, np.float32),
                                 False) is None


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_ready_reduced_precision_calls_equal_the_validating_path(cell, precision):
    """Prepared weights of a reduced precision: the ready path gives the validating path's
    bits; under ``check="content"`` a weight changed in place declines it, and the validating
    path re-packs (the result is a fresh preparation's)."""
    rng = np.random.default_rng(3)
    for (T, B, I, H), states in itertools.product([(1, 1, 20, 40), (1, 5, 33, 70),
                                                   (3, 2, 16, 32)], [True, False]):
        args = _arrays(rng, cell, T, B, I, H, np.float32, True, states)
        pw = functional.prepare_weights(cell, *args[3:], precision=precision)
        ready = _native.forward_ready_prec(pw, precision, cell, _nl(cell), *args, False)
        assert ready is not None
        _equal(ready, _validating(cell, args, precision=precision, prepared=pw))
        out = functional.cell_forward(cell, *args, nonlinearity=_nl(cell), training=False,
                                      precision=precision, prepared=pw)
        _equal(out[:3], ready)
        args[4][0, 0] += 1.0  # w_hh changed in place: the same array, other bytes
        assert _native.forward_ready_prec(pw, precision, cell, _nl(cell), *args, False) is None
        out = functional.cell_forward(cell, *args, nonlinearity=_nl(cell), training=False,
                                      precision=precision, prepared=pw)
        fresh = functional.prepare_weights(cell, *args[3:], precision=precision)
        _equal(out[:3], _validating(cell, args, precision=precision, prepared=fresh))


def test_reduced_precision_calls_not_ready_decline():
    """Prepared weights named with another cell, precision or arrays, a float64 x, or an
    int8 call's x of another input size: nothing runs on the ready path."""
    rng = np.random.default_rng(4)
    args = _arrays(rng, "lstm", 1, 2, 8, 16, np.float32)
    pw = functional.prepare_weights("lstm", *args[3:], precision="int8")
    ok = _native.forward_ready_prec(pw, "int8", "lstm", None, *args, False)
    assert ok is not None
    x64 = (args[0].astype(np.float64),) + args[1:]
    other_w = args[:4] + (args[4].copy(),) + args[5:]
    narrow = (args[0][:, :, :4].copy(),) + args[1:]
    for prec, cell, a in [("bfloat16", "lstm", args), ("int8", "gru", args),
                          ("int8", "lstm", x64), ("int8", "lstm", other_w),
                          ("int8", "lstm", narrow)]:
        assert _native.forward_ready_prec(pw, prec, cell, None, *a, False) is None
