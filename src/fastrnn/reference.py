"""Pure-NumPy reference implementation of the functional RNN, LSTM and GRU ops.

This is the oracle the native kernels (``fastrnn.functional``) are tested against and the
baseline of the benchmarks. Same functions, same signatures, same maths (PyTorch's).

Layout: time-major, ``x`` is (T, B, I); states (B, H); ``w_ih`` (G*H, I), ``w_hh``
(G*H, H), biases (G*H,) with G = 1 (RNN), 4 (LSTM, gates i, f, g, o), 3 (GRU, gates
r, z, n). Written vectorised over the batch; only time is a Python loop. The input
projection of all timesteps is one GEMM before the loop and the weight and input
gradients are one GEMM each after the backward loop.

The ctx of a training forward keeps references to (not copies of) ``x`` and the weights
when they were already C-contiguous in the compute dtype: do not modify them in place
between a forward and its backward. The returned arrays are always fresh.

Variable lengths use PyTorch's packed-sequence semantics. A sequence ``b`` is active at
time ``t`` when ``t < lengths[b]``; inactive steps leave its state unchanged and output
zeros. The reverse direction visits t = T-1, ..., 0 with the same mask, so each sequence
starts from h0 at its own last valid step.

Reduced precision (``precision=`` of :func:`cell_forward`; the kernels of
:mod:`fastrnn.functional` do exactly this rounding, up to float32 summation order):

* ``"bfloat16"``: every GEMM operand is rounded to bfloat16 (:func:`round_bf16`:
  round-to-nearest-even to 8 significant bits, kept in float32) as it enters the GEMM: the
  weights ``w_ih`` and ``w_hh`` once, the input rows ``x_t`` and the state rows ``h_{t-1}``
  of every step. Products are accumulated in float32; the biases, gate maths, cell state,
  outputs and the state carried to the next step stay float32 (only the copy that enters the
  GEMM is rounded). Backward (``~``: rounded to bf16): the recurrence carries float32
  gradients; each step's gate gradients ``delta`` (float32) enter the recurrent product
  rounded, ``dh_{t-1} += delta~ W~_hh`` (float32 accumulation); the three big GEMMs after it
  round both operands, ``dx = delta~ W~_ih``, ``dw_ih = sum delta~^T x~``,
  ``dw_hh = sum delta~^T h~_{t-1}`` (float32 accumulation); the bias gradients are float32
  sums of ``delta``. Up to the rounding of ``delta`` in those products this is the exact
  gradient of the bf16 forward with the rounding treated as the identity (straight-through).
* ``"int8"`` (inference only): ``w_ih`` and ``w_hh`` are quantized once per output channel
  (:func:`quantize_weights_int8`: symmetric, scale ``max|w_row| / 127``); each step's
  input rows and state rows are quantized per row on the fly (:func:`quantize_rows_int8`,
  the same scheme); the int8 products are summed exactly in int32 and dequantized as
  ``float32(acc) * (row_scale * channel_scale)`` (the scale product in float32), then the
  float32 bias and gate maths follow. A row whose largest magnitude is 0 has scale 0 (its
  product is 0); a row with a NaN or an infinity gets a NaN scale, so the non-finite value
  propagates to every output it touches.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ._validate import (
    PRECISIONS,
    Grads,
    Prepared,
    PreparedProj,
    check_ctx,
    check_proj_args,
    prepare,
    prepare_grads,
    prepare_grads_proj,
    prepare_proj,
)

__all__ = [
    "PRECISIONS",
    "cell_backward",
    "cell_forward",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "quantize_rows_int8",
    "quantize_weights_int8",
    "rnn_backward",
    "rnn_forward",
    "round_bf16",
]

_MODULE = "fastrnn.reference"
_F = TypeVar("_F", bound=Callable[..., Any])


def _quiet(fn: _F) -> _F:
    """Run ``fn`` with NumPy's floating-point warnings off.

    Non-finite inputs are allowed and simply propagate (as in the native kernels), and
    exp overflow in the sigmoid is the correct limit; neither deserves a warning.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(eq=False)
class _Ctx:
    """What a forward saves for its backward (arrays indexed by time t, shape (T, B, .))."""

    cell: str
    p: Prepared
    mask: np.ndarray | None  # (T, B, 1) bool: t < lengths[b]; None when no lengths
    h_prev: np.ndarray  # (T, B, H) state entering step t
    act: np.ndarray  # post-activation gates (T, B, G*H); RNN: new h before masking
    c_prev: np.ndarray | None = None  # LSTM (T, B, H)
    tanh_c: np.ndarray | None = None  # LSTM (T, B, H): tanh(c_t)
    hn_lin: np.ndarray | None = None  # GRU (T, B, H): W_hn h + b_hn


def round_bf16(a: Any) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), returned as float32.

    Parameters
    ----------
    a : array_like of float32

    Returns
    -------
    ndarray of float32
        Each value with its low 16 bits rounded off: round-to-nearest-even on the 16-bit
        boundary (a finite value past the largest bfloat16 becomes an infinity); NaN stays
        NaN (quiet), infinities stay.
    """
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = (u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) & np.uint32(0xFFFF0000)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    r = np.where(nan, (u | np.uint32(0x00400000)) & np.uint32(0xFFFF0000), r)
    return r.astype(np.uint32).view(np.float32)


@_quiet
def quantize_rows_int8(a: Any) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantization: ``a[r] ~ q[r] * scale[r]``.

    ``amax = max|a[r]|``; ``scale = amax / 127`` and ``q = rint(a * (127 / amax))``
    (float32 arithmetic, ties to even, clipped to [-127, 127]). ``amax = 0`` gives scale 0
    and q 0; a row holding NaN or an infinity gets scale NaN and q 0.

    Parameters
    ----------
    a : array_like of float32, shape (R, K)

    Returns
    -------
    q : ndarray of int8, shape (R, K)
    scale : ndarray of float32, shape (R,)
    """
    a = np.ascontiguousarray(a, dtype=np.float32)
    amax = np.max(np.abs(a), axis=1) if a.shape[1] else np.zeros(a.shape[0], np.float32)
    finite = np.isfinite(amax)
    pos = finite & (amax > 0)
    safe = np.where(pos, amax, np.float32(1))
    inv = np.where(pos, np.float32(127) / safe, np.float32(0)).astype(np.float32)
    q = np.rint(np.where(finite[:, None], a, 0) * inv[:, None])
    q = np.clip(q, -127, 127).astype(np.int8)
    scale = np.where(finite, amax / np.float32(127), np.float32(np.nan)).astype(np.float32)
    return q, scale


def quantize_weights_int8(w: Any) -> tuple[np.ndarray, np.ndarray]:
    """A weight matrix (N, K) quantized per output channel (row): :func:`quantize_rows_int8`.

    Returns
    -------
    q : ndarray of int8, shape (N, K)
    scale : ndarray of float32, shape (N,)
    """
    return quantize_rows_int8(w)


class _Gemm:
    """``a @ w.T`` for a fixed weight ``w`` (N, K) in a precision (the module docstring)."""

    def __init__(self, w: np.ndarray, precision: str) -> None:
        self.precision = precision
        if precision == "int8":
            q, self.scale = quantize_weights_int8(w)
            self.qt = q.astype(np.int64).T
        else:
            self.wt = (round_bf16(w) if precision == "bfloat16" else w).T

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if self.precision == "int8":
            qa, sa = quantize_rows_int8(a)
            acc = qa.astype(np.int64) @ self.qt
            return acc.astype(np.float32) * (sa[:, None] * self.scale[None, :])
        if self.precision == "bfloat16":
            return round_bf16(a) @ self.wt
        return a @ self.wt


def _bw_operands(ctx: _Ctx) -> tuple[Prepared, np.ndarray]:
    """The backward's GEMM operands: (p with x and weights as the forward's GEMMs saw them,
    the states h_{t-1} likewise)."""
    p = ctx.p
    if p.precision != "bfloat16":
        return p, ctx.h_prev
    rw = {k: round_bf16(getattr(p, k)) for k in ("x", "w_ih", "w_hh")
          if getattr(p, k) is not None}
    return dataclasses.replace(p, **rw), round_bf16(ctx.h_prev)


def _bw_rec(p: Prepared, d: np.ndarray) -> np.ndarray:
    """The backward's recurrent product ``d @ w_hh`` (``d`` a step's gate gradients): in
    bfloat16 ``d`` enters it rounded too (``p`` from :func:`_bw_operands`: ``w_hh`` already
    rounded)."""
    return (round_bf16(d) if p.precision == "bfloat16" else d) @ p.w_hh


def _sigmoid(a: np.ndarray) -> np.ndarray:
    # exp overflow for very negative a gives inf -> 1/inf = 0, the right limit.
    return 1.0 / (1.0 + np.exp(-a))


def _time_order(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def _mask(p: Prepared) -> np.ndarray | None:
    if p.lengths is None:
        return None
    return (np.arange(p.T)[:, None] < p.lengths[None, :])[:, :, None]


def _input_projection(p: Prepared, bias: np.ndarray | None) -> np.ndarray:
    """``x @ w_ih.T + bias`` for all timesteps at once: (T, B, G*H)."""
    x2 = p.x.reshape(p.T * p.B, p.I)
    if p.w_ih is None:  # the projection itself: no GEMM, nothing rounded
        gx = x2.copy()
    else:
        gx = _Gemm(p.w_ih, p.precision)(x2)
    gx = gx.reshape(p.T, p.B, p.G * p.H)
    if bias is not None:
        gx += bias
    return gx


def _bias_sum(p: Prepared) -> np.ndarray | None:
    if p.b_ih is None:
        return p.b_hh
    if p.b_hh is None:
        return p.b_ih
    return p.b_ih + p.b_hh


def _weight_grads(
    p: Prepared, dgx: np.ndarray, dgh: np.ndarray, h_prev: np.ndarray, need_dx: bool
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray | None,
           np.ndarray | None]:
    """dx, dw_ih, dw_hh, db_ih, db_hh from the per-step gate gradients (one GEMM each);
    dw_ih is None when w_ih is (None: the identity), dx None unless need_dx."""
    TB, GH = p.T * p.B, p.G * p.H
    dgx2 = dgx.reshape(TB, GH)
    dgh2 = dgh.reshape(TB, GH)
    db_ih = dgx2.sum(axis=0) if p.b_ih is not None else None
    db_hh = dgh2.sum(axis=0) if p.b_hh is not None else None
    if not need_dx:
        dx = None
    elif p.w_ih is None:  # identity: x was the input projection itself
        dx = dgx2.copy().reshape(p.T, p.B, p.I)
    if p.precision == "bfloat16":  # the gate gradients enter these GEMMs as bf16 too
        dgx2, dgh2 = round_bf16(dgx2), round_bf16(dgh2)
    if need_dx and p.w_ih is not None:
        dx = (dgx2 @ p.w_ih).reshape(p.T, p.B, p.I)
    dw_ih = None if p.w_ih is None else dgx2.T @ p.x.reshape(TB, p.I)
    dw_hh = dgh2.T @ h_prev.reshape(TB, p.H)
    return dx, dw_ih, dw_hh, db_ih, db_hh


def _start_grads(p: Prepared, dh_n: np.ndarray | None) -> np.ndarray:
    return np.zeros((p.B, p.H), p.dtype) if dh_n is None else dh_n.copy()


# ----------------------------------------------------------------------------- RNN


@_quiet
def rnn_forward(
    x: Any,
    h0: Any,
    w_ih: Any,
    w_hh: Any,
    b_ih: Any,
    b_hh: Any,
    *,
    nonlinearity: str = "tanh",
    lengths: Any = None,
    reverse: bool = False,
    training: bool = True,
) -> tuple[np.ndarray, np.ndarray, _Ctx | None]:
    r"""Run an Elman RNN layer (one direction) over a whole sequence.

    .. math:: h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    with act = tanh or relu; ``y[t] = h_t``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
        Time-major (steps first); a batch-first ``xb`` (B, T, I) is ``xb.transpose(1, 0, 2)``.
    h0 : array_like of shape (B, H), or None (zeros)
    w_ih : array_like of shape (H, I), or None
        None: x already holds the input projection ``W_ih x_t`` (I = H, biases not included).
    w_hh : array_like, shape (H, H)
    b_ih, b_hh : array_like of shape (H,), or None (no bias)
    nonlinearity : {"tanh", "relu"}
    lengths : array_like of int, shape (B,), or None
        Valid steps of each sequence, in [0, T]. Outputs past a sequence's end are zero
        and its final state is the state at its last valid step.
    reverse : bool
        Run each sequence from its last valid step back to step 0.
    training : bool
        Save what the backward needs; when False, ``ctx`` is None.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n : ndarray, shape (B, H)
    ctx : object or None
        Pass to :func:`rnn_backward`.
    """
    y, h_n, _, ctx = cell_forward("rnn", x, h0, None, w_ih, w_hh, b_ih, b_hh,
                                  nonlinearity=nonlinearity, lengths=lengths, reverse=reverse,
                                  training=training)
    return y, h_n, ctx


@_quiet
def _rnn_forward(p: Prepared) -> tuple:
    """The RNN's forward maths on prepared inputs: ``(y, h_n, None, ctx)``."""
    T, B, H = p.T, p.B, p.H
    relu = p.nonlinearity == "relu"
    mask = _mask(p)
    gx = _input_projection(p, _bias_sum(p))
    hh = _Gemm(p.w_hh, p.precision)
    y = np.zeros((T, B, H), p.dtype)
    h = p.h0.copy()
    h_prev = np.empty((T, B, H), p.dtype) if p.training else None
    for t in _time_order(T, p.reverse):
        if h_prev is not None:
            h_prev[t] = h
        a = gx[t] + hh(h)
        h_new = np.maximum(a, 0) if relu else np.tanh(a)
        if mask is None:
            y[t] = h_new
            h = h_new
        else:
            m = mask[t]
            y[t] = np.where(m, h_new, 0)
            h = np.where(m, h_new, h)
    if not p.training:
        return y, h, None, None
    # At active steps y[t] is the new state (elsewhere act is unused); copied so that a
    # caller writing into y cannot corrupt the backward.
    return y, h, None, _Ctx("rnn", p, mask, h_prev, y.copy())


@_quiet
def rnn_backward(
    ctx: _Ctx, dy: Any, dh_n: Any, *, need_dx: bool = True
) -> tuple[
    np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None
]:
    r"""Gradients of an :func:`rnn_forward` by backpropagation through time.

    With :math:`\delta_t = (\partial L/\partial h_t)\,\mathrm{act}'(a_t)` (``act' = 1 - h^2``
    for tanh, ``[a > 0]`` for relu): :math:`\partial L/\partial h_{t-1} = W_{hh}^T\delta_t`,
    ``dx = delta @ W_ih``, ``dw_ih = sum_t delta_t^T x_t``,
    ``dw_hh = sum_t delta_t^T h_{t-1}``, ``db_ih = db_hh = sum delta``.

    Parameters
    ----------
    ctx : object
        From ``rnn_forward(..., training=True)`` of this module.
    dy : array_like of shape (T, B, H), or None (zero)
        Gradient of the loss with respect to ``y``; entries past a sequence's length are
        ignored (those outputs are constant zeros).
    dh_n : array_like of shape (B, H), or None (zero)
    need_dx : bool
        Compute ``dx`` (False: None in its place, one GEMM less).

    Returns
    -------
    dx : ndarray (T, B, I), or None (need_dx False)
    dh0 : ndarray (B, H)
        Always an array, also when ``h0`` was None.
    dw_ih : ndarray of shape (H, I), or None (w_ih None)
    dw_hh : ndarray (H, H)
    db_ih, db_hh : ndarray (H,), or None when that bias was None
    """
    check_ctx(ctx, _Ctx, "rnn", _MODULE)
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = cell_backward(ctx, dy, dh_n, need_dx=need_dx)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


@_quiet
def _rnn_backward(ctx: _Ctx, g: Grads, need_dx: bool) -> tuple:
    """The RNN's backward maths: ``(dx, dh0, None, dw_ih, dw_hh, db_ih, db_hh)``."""
    p, h_prev_mm = _bw_operands(ctx)
    T, B, H = p.T, p.B, p.H
    relu = p.nonlinearity == "relu"
    mask = ctx.mask
    delta = np.zeros((T, B, H), p.dtype)
    dh = _start_grads(p, g.dh_n)
    for t in reversed(_time_order(T, p.reverse)):
        hn = ctx.act[t]
        dht = dh + g.dy[t] if g.dy is not None else dh
        d = dht * (hn > 0) if relu else dht * (1 - hn * hn)
        dprev = _bw_rec(p, d)
        if mask is None:
            delta[t] = d
            dh = dprev
        else:
            m = mask[t]
            delta[t] = np.where(m, d, 0)
            dh = np.where(m, dprev, dh)
    dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(p, delta, delta, h_prev_mm, need_dx)
    return dx, dh, None, dw_ih, dw_hh, db_ih, db_hh


# ----------------------------------------------------------------------------- LSTM


@_quiet
def lstm_forward(
    x: Any,
    h0: Any,
    c0: Any,
    w_ih: Any,
    w_hh: Any,
    b_ih: Any,
    b_hh: Any,
    *,
    lengths: Any = None,
    reverse: bool = False,
    training: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Ctx | None]:
    r"""Run an LSTM layer (one direction) over a whole sequence.

    Gates i, f, g, o (in that order in the rows of the weights):

    .. math::

        [a_i, a_f, a_g, a_o] &= W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} \\
        i = \sigma(a_i),\ f &= \sigma(a_f),\ g = \tanh(a_g),\ o = \sigma(a_o) \\
        c_t = f c_{t-1} + i g,&\quad h_t = o \tanh(c_t)

    and ``y[t] = h_t``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
        Time-major (steps first); a batch-first ``xb`` (B, T, I) is ``xb.transpose(1, 0, 2)``.
    h0, c0 : array_like of shape (B, H), or None (zeros)
    w_ih : array_like of shape (4*H, I), or None
        None: x already holds the input projection ``W_ih x_t`` (I = 4*H, biases not included).
    w_hh : array_like, shape (4*H, H)
    b_ih, b_hh : array_like of shape (4*H,), or None (no bias)
    lengths : array_like of int, shape (B,), or None
        Valid steps of each sequence, in [0, T]. Outputs past a sequence's end are zero
        and its final states are those at its last valid step.
    reverse : bool
        Run each sequence from its last valid step back to step 0.
    training : bool
        Save what the backward needs; when False, ``ctx`` is None.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n, c_n : ndarray, shape (B, H)
    ctx : object or None
        Pass to :func:`lstm_backward`.
    """
    return cell_forward("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths,
                        reverse=reverse, training=training)


@_quiet
def _lstm_forward(p: Prepared) -> tuple:
    """The LSTM's forward maths on prepared inputs: ``(y, h_n, c_n, ctx)``."""
    T, B, H = p.T, p.B, p.H
    mask = _mask(p)
    gx = _input_projection(p, _bias_sum(p))
    hh = _Gemm(p.w_hh, p.precision)
    y = np.zeros((T, B, H), p.dtype)
    h = p.h0.copy()
    c = p.c0.copy()
    if p.training:
        h_prev = np.empty((T, B, H), p.dtype)
        c_prev = np.empty((T, B, H), p.dtype)
        act = np.empty((T, B, 4 * H), p.dtype)
        tanh_c = np.empty((T, B, H), p.dtype)
    for t in _time_order(T, p.reverse):
        a = gx[t] + hh(h)
        gates = _sigmoid(a)  # right for i, f, o; g is overwritten with its tanh
        gates[:, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])
        i, f, gg, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
        c_new = f * c + i * gg
        tc = np.tanh(c_new)
        h_new = o * tc
        if p.training:
            h_prev[t] = h
            c_prev[t] = c
            act[t] = gates
            tanh_c[t] = tc
        if mask is None:
            y[t] = h_new
            h, c = h_new, c_new
        else:
            m = mask[t]
            y[t] = np.where(m, h_new, 0)
            h = np.where(m, h_new, h)
            c = np.where(m, c_new, c)
    if not p.training:
        return y, h, c, None
    ctx = _Ctx("lstm", p, mask, h_prev, act, c_prev=c_prev, tanh_c=tanh_c)
    return y, h, c, ctx


@_quiet
def lstm_backward(
    ctx: _Ctx, dy: Any, dh_n: Any, dc_n: Any, *, need_dx: bool = True
) -> tuple[
    np.ndarray | None,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray | None,
    np.ndarray | None,
]:
    r"""Gradients of an :func:`lstm_forward` by backpropagation through time.

    Per step, with :math:`\bar h = \partial L/\partial h_t` and
    :math:`\bar c = \partial L/\partial c_t + \bar h\, o\,(1-\tanh^2 c_t)`:
    :math:`\bar o = \bar h \tanh c_t`, :math:`\bar i = \bar c g`, :math:`\bar g = \bar c i`,
    :math:`\bar f = \bar c c_{t-1}`, :math:`\partial L/\partial c_{t-1} = \bar c f`; the
    pre-activation gradients :math:`\delta` multiply by :math:`\sigma' = s(1-s)` and
    :math:`\tanh' = 1-g^2`; :math:`\partial L/\partial h_{t-1} = W_{hh}^T\delta`.
    ``dx = delta @ W_ih``, ``dw_ih = sum_t delta_t^T x_t``,
    ``dw_hh = sum_t delta_t^T h_{t-1}``, ``db_ih = db_hh = sum delta``.

    Parameters
    ----------
    ctx : object
        From ``lstm_forward(..., training=True)`` of this module.
    dy : array_like of shape (T, B, H), or None (zero)
    dh_n, dc_n : array_like of shape (B, H), or None (zero)
    need_dx : bool
        Compute ``dx`` (False: None in its place, one GEMM less).

    Returns
    -------
    dx : ndarray (T, B, I), or None (need_dx False)
    dh0, dc0 : ndarray (B, H)
    dw_ih : ndarray of shape (4*H, I), or None (w_ih None)
    dw_hh : ndarray (4*H, H)
    db_ih, db_hh : ndarray (4*H,), or None when that bias was None
    """
    check_ctx(ctx, _Ctx, "lstm", _MODULE)
    return cell_backward(ctx, dy, dh_n, dc_n, need_dx=need_dx)


@_quiet
def _lstm_backward(ctx: _Ctx, g: Grads, need_dx: bool) -> tuple:
    """The LSTM's backward maths: ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)``."""
    p, h_prev_mm = _bw_operands(ctx)
    T, B, H = p.T, p.B, p.H
    mask = ctx.mask
    # Local derivatives of every step at once; the loop below only carries the recurrence.
    gates = ctx.act.reshape(T, B, 4, H)
    i, f, gg, o = (gates[:, :, k] for k in range(4))
    tc = ctx.tanh_c
    dh_dc = o * (1 - tc * tc)  # dh_t/dc_t  (h_t = o tanh(c_t))
    # dc_t/d(a_i, a_f, a_g) (a: pre-activations), each (T, B, H), stacked on axis 2
    dc_da = np.stack([gg * i * (1 - i), ctx.c_prev * f * (1 - f), i * (1 - gg * gg)], axis=2)
    dh_dao = tc * o * (1 - o)  # dh_t/da_o
    delta = np.zeros((T, B, 4 * H), p.dtype)
    dh = _start_grads(p, g.dh_n)
    dc = _start_grads(p, g.dc_n)
    d = np.empty((B, 4, H), p.dtype)
    for t in reversed(_time_order(T, p.reverse)):
        dht = dh + g.dy[t] if g.dy is not None else dh
        dct = dc + dht * dh_dc[t]
        np.multiply(dct[:, None, :], dc_da[t], out=d[:, :3])
        np.multiply(dht, dh_dao[t], out=d[:, 3])
        d2 = d.reshape(B, 4 * H)
        dh_new = _bw_rec(p, d2)
        dc_new = dct * f[t]
        if mask is None:
            delta[t] = d2
            dh, dc = dh_new, dc_new
        else:
            m = mask[t]
            delta[t] = np.where(m, d2, 0)
            dh = np.where(m, dh_new, dh)
            dc = np.where(m, dc_new, dc)
    dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(p, delta, delta, h_prev_mm, need_dx)
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh


# ----------------------------------------------------------------------------- GRU


@_quiet
def gru_forward(
    x: Any,
    h0: Any,
    w_ih: Any,
    w_hh: Any,
    b_ih: Any,
    b_hh: Any,
    *,
    lengths: Any = None,
    reverse: bool = False,
    training: bool = True,
) -> tuple[np.ndarray, np.ndarray, _Ctx | None]:
    r"""Run a GRU layer (one direction) over a whole sequence.

    Gates r, z, n (in that order in the rows of the weights), reset applied after the
    recurrent product (PyTorch; Keras ``reset_after=True``):

    .. math::

        r &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n &= \tanh(W_{in} x_t + b_{in} + r (W_{hn} h_{t-1} + b_{hn})) \\
        h_t &= (1 - z) n + z h_{t-1}

    and ``y[t] = h_t``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
        Time-major (steps first); a batch-first ``xb`` (B, T, I) is ``xb.transpose(1, 0, 2)``.
    h0 : array_like of shape (B, H), or None (zeros)
    w_ih : array_like of shape (3*H, I), or None
        None: x already holds the input projection ``W_ih x_t`` (I = 3*H, biases not included).
    w_hh : array_like, shape (3*H, H)
    b_ih, b_hh : array_like of shape (3*H,), or None (no bias)
    lengths : array_like of int, shape (B,), or None
        Valid steps of each sequence, in [0, T]. Outputs past a sequence's end are zero
        and its final state is the state at its last valid step.
    reverse : bool
        Run each sequence from its last valid step back to step 0.
    training : bool
        Save what the backward needs; when False, ``ctx`` is None.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n : ndarray, shape (B, H)
    ctx : object or None
        Pass to :func:`gru_backward`.
    """
    y, h_n, _, ctx = cell_forward("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths=lengths,
                                  reverse=reverse, training=training)
    return y, h_n, ctx


@_quiet
def _gru_forward(p: Prepared) -> tuple:
    """The GRU's forward maths on prepared inputs: ``(y, h_n, None, ctx)``."""
    T, B, H = p.T, p.B, p.H
    mask = _mask(p)
    gx = _input_projection(p, p.b_ih)
    if p.b_hh is not None:  # r and z take both biases; b_hn stays inside r * (...)
        gx[:, :, : 2 * H] += p.b_hh[: 2 * H]
    b_hn = p.b_hh[2 * H :] if p.b_hh is not None else None
    hh = _Gemm(p.w_hh, p.precision)
    y = np.zeros((T, B, H), p.dtype)
    h = p.h0.copy()
    if p.training:
        h_prev = np.empty((T, B, H), p.dtype)
        act = np.empty((T, B, 3 * H), p.dtype)
        hn_lin = np.empty((T, B, H), p.dtype)
    for t in _time_order(T, p.reverse):
        gh = hh(h)
        if b_hn is not None:
            gh[:, 2 * H :] += b_hn
        rz = _sigmoid(gx[t, :, : 2 * H] + gh[:, : 2 * H])
        r, z = rz[:, :H], rz[:, H:]
        hn = gh[:, 2 * H :]
        n = np.tanh(gx[t, :, 2 * H :] + r * hn)
        h_new = n + z * (h - n)
        if p.training:
            h_prev[t] = h
            act[t, :, : 2 * H] = rz
            act[t, :, 2 * H :] = n
            hn_lin[t] = hn
        if mask is None:
            y[t] = h_new
            h = h_new
        else:
            m = mask[t]
            y[t] = np.where(m, h_new, 0)
            h = np.where(m, h_new, h)
    if not p.training:
        return y, h, None, None
    return y, h, None, _Ctx("gru", p, mask, h_prev, act, hn_lin=hn_lin)


@_quiet
def gru_backward(
    ctx: _Ctx, dy: Any, dh_n: Any, *, need_dx: bool = True
) -> tuple[
    np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None
]:
    r"""Gradients of a :func:`gru_forward` by backpropagation through time.

    Per step, with :math:`\bar h = \partial L/\partial h_t` and :math:`\hat n =
    W_{hn} h_{t-1} + b_{hn}`: :math:`\delta_n = \bar h (1-z)(1-n^2)`,
    :math:`\delta_z = \bar h (h_{t-1} - n) z (1-z)`,
    :math:`\delta_r = \delta_n \hat n\, r (1-r)`. The input-side gate gradient is
    :math:`\delta^x = [\delta_r, \delta_z, \delta_n]`, the recurrent-side one
    :math:`\delta^h = [\delta_r, \delta_z, r\,\delta_n]`, and
    :math:`\partial L/\partial h_{t-1} = \bar h z + W_{hh}^T \delta^h`.
    ``dx = delta^x @ W_ih``, ``dw_ih = sum_t delta^x_t^T x_t``, ``db_ih = sum delta^x``,
    ``dw_hh = sum_t delta^h_t^T h_{t-1}``, ``db_hh = sum delta^h``.

    Parameters
    ----------
    ctx : object
        From ``gru_forward(..., training=True)`` of this module.
    dy : array_like of shape (T, B, H), or None (zero)
    dh_n : array_like of shape (B, H), or None (zero)
    need_dx : bool
        Compute ``dx`` (False: None in its place, one GEMM less).

    Returns
    -------
    dx : ndarray (T, B, I), or None (need_dx False)
    dh0 : ndarray (B, H)
    dw_ih : ndarray of shape (3*H, I), or None (w_ih None)
    dw_hh : ndarray (3*H, H)
    db_ih, db_hh : ndarray (3*H,), or None when that bias was None
    """
    check_ctx(ctx, _Ctx, "gru", _MODULE)
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = cell_backward(ctx, dy, dh_n, need_dx=need_dx)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


@_quiet
def _gru_backward(ctx: _Ctx, g: Grads, need_dx: bool) -> tuple:
    """The GRU's backward maths: ``(dx, dh0, None, dw_ih, dw_hh, db_ih, db_hh)``."""
    p, h_prev_mm = _bw_operands(ctx)
    T, B, H = p.T, p.B, p.H
    mask = ctx.mask
    # Local derivatives of every step at once; the loop below only carries the recurrence.
    r, z, n = ctx.act[:, :, :H], ctx.act[:, :, H : 2 * H], ctx.act[:, :, 2 * H :]
    dh_dan = (1 - z) * (1 - n * n)  # dh_t/da_n  (a: pre-activations)
    dh_daz = (ctx.h_prev - n) * z * (1 - z)  # dh_t/da_z
    dan_dar = ctx.hn_lin * r * (1 - r)  # da_n/da_r
    dgx = np.zeros((T, B, 3 * H), p.dtype)
    dgh = np.zeros((T, B, 3 * H), p.dtype)
    dh = _start_grads(p, g.dh_n)
    for t in reversed(_time_order(T, p.reverse)):
        dht = dh + g.dy[t] if g.dy is not None else dh
        dn = dht * dh_dan[t]
        dx_t = np.concatenate([dn * dan_dar[t], dht * dh_daz[t], dn], axis=1)
        dh_t = dx_t.copy()
        dh_t[:, 2 * H :] *= r[t]
        dprev = dht * z[t] + _bw_rec(p, dh_t)
        if mask is None:
            dgx[t] = dx_t
            dgh[t] = dh_t
            dh = dprev
        else:
            m = mask[t]
            dgx[t] = np.where(m, dx_t, 0)
            dgh[t] = np.where(m, dh_t, 0)
            dh = np.where(m, dprev, dh)
    dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(p, dgx, dgh, h_prev_mm, need_dx)
    return dx, dh, None, dw_ih, dw_hh, db_ih, db_hh


# ----------------------------------------------------------------------------- LSTM with projection


@dataclass
class _ProjCtx:
    """A training forward of the LSTM with a projection: inputs and per-step values (T, B, .)."""

    p: PreparedProj
    mask: np.ndarray | None
    h_prev: np.ndarray
    act: np.ndarray
    c_prev: np.ndarray
    tanh_c: np.ndarray
    r: np.ndarray
    cell: str = "lstm"


@_quiet
def _lstmp_forward(p: PreparedProj) -> tuple:
    """The LSTM with projection: the LSTM's step with ``r_t = o tanh(c_t)`` and
    ``h_t = r_t W_hr^T`` (P units) as the state and output; ``(y, h_n, c_n, ctx)``."""
    T, B, H, P = p.T, p.B, p.H, p.P
    mask = None if p.lengths is None else (np.arange(T)[:, None] < p.lengths[None, :])[:, :, None]
    bias = 0 if p.b_ih is None and p.b_hh is None else (
        (0 if p.b_ih is None else p.b_ih) + (0 if p.b_hh is None else p.b_hh))
    gx = (p.x.reshape(T * B, p.I) @ p.w_ih.T).reshape(T, B, 4 * H) + bias
    y = np.zeros((T, B, P), p.dtype)
    h, c = p.h0.copy(), p.c0.copy()
    h_prev = np.zeros((T, B, P), p.dtype)
    act = np.zeros((T, B, 4 * H), p.dtype)
    c_prev = np.zeros((T, B, H), p.dtype)
    tanh_c = np.zeros((T, B, H), p.dtype)
    rs = np.zeros((T, B, H), p.dtype)
    for t in _time_order(T, p.reverse):
        a = gx[t] + h @ p.w_hh.T
        gates = _sigmoid(a)
        gates[:, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])
        i, f, gg, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
        c_new = f * c + i * gg
        tc = np.tanh(c_new)
        r = o * tc
        h_new = r @ p.w_hr.T
        m = True if mask is None else mask[t]
        h_prev[t] = np.where(m, h, 0)
        c_prev[t] = np.where(m, c, 0)
        act[t] = np.where(m, gates, 0)
        tanh_c[t] = np.where(m, tc, 0)
        rs[t] = np.where(m, r, 0)
        y[t] = np.where(m, h_new, 0)
        h = np.where(m, h_new, h)
        c = np.where(m, c_new, c)
    ctx = _ProjCtx(p, mask, h_prev, act, c_prev, tanh_c, rs) if p.training else None
    return y, h, c, ctx


@_quiet
def _lstmp_backward(ctx: _ProjCtx, g: Grads, need_dx: bool) -> tuple:
    """Backpropagation through :func:`_lstmp_forward`: per step ``dh_t`` (P units, later steps'
    plus ``dy_t``) gives ``dr = dh_t W_hr`` and ``dW_hr += dh_t^T r_t``; the LSTM's pointwise
    backward runs on ``dr``; ``dh_{t-1} = delta W_hh``. Returns ``(dx, dh0, dc0, dw_ih, dw_hh,
    db_ih, db_hh, dw_hr)``."""
    p = ctx.p
    T, B, H, P = p.T, p.B, p.H, p.P
    delta = np.zeros((T, B, 4 * H), p.dtype)
    dhs = np.zeros((T, B, P), p.dtype)
    dh = np.zeros((B, P), p.dtype) if g.dh_n is None else g.dh_n.copy()
    dc = np.zeros((B, H), p.dtype) if g.dc_n is None else g.dc_n.copy()
    for t in reversed(_time_order(T, p.reverse)):
        m = True if ctx.mask is None else ctx.mask[t]
        dht = dh + g.dy[t] if g.dy is not None else dh
        dr = dht @ p.w_hr
        i, f, gg, o = (ctx.act[t][:, k * H : (k + 1) * H] for k in range(4))
        tc = ctx.tanh_c[t]
        dct = dc + dr * o * (1 - tc * tc)
        d = np.concatenate([dct * gg * i * (1 - i), dct * ctx.c_prev[t] * f * (1 - f),
                            dct * i * (1 - gg * gg), dr * tc * o * (1 - o)], axis=1)
        delta[t] = np.where(m, d, 0)
        dhs[t] = np.where(m, dht, 0)
        dh = np.where(m, delta[t] @ p.w_hh, dh)
        dc = np.where(m, dct * f, dc)
    d2 = delta.reshape(T * B, 4 * H)
    dx = (d2 @ p.w_ih).reshape(T, B, p.I) if need_dx else None
    dw_ih = d2.T @ p.x.reshape(T * B, p.I)
    dw_hh = d2.T @ ctx.h_prev.reshape(T * B, P)
    dw_hr = dhs.reshape(T * B, P).T @ ctx.r.reshape(T * B, H)
    db = d2.sum(axis=0)
    return (dx, dh, dc, dw_ih, dw_hh, None if p.b_ih is None else db,
            None if p.b_hh is None else db.copy(), dw_hr)


# ----------------------------------------------------------------------------- any cell

#: Each cell's maths on prepared inputs: (forward(p), backward(ctx, grads, need_dx)).
_MATHS: dict[str, tuple[Callable[..., tuple], Callable[..., tuple]]] = {
    "rnn": (_rnn_forward, _rnn_backward),
    "lstm": (_lstm_forward, _lstm_backward),
    "gru": (_gru_forward, _gru_backward),
}


def cell_forward(cell: str, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any,
                 b_hh: Any, *, nonlinearity: str | None = None, lengths: Any = None,
                 reverse: bool = False, training: bool = True,
                 precision: str = "float32", w_hr: Any = None) -> tuple:
    """Any cell over a whole sequence; the same op as :func:`fastrnn.functional.cell_forward`.

    ``w_hr`` (P, H): the LSTM's projection (``torch.nn.LSTM(proj_size=P)``), as there.

    ``precision`` (one of :data:`PRECISIONS`, or ``"bf16"``) models the rounding of the
    kernels' reduced-precision paths (the module docstring); a reduced precision needs float32
    arrays and ``"int8"`` needs ``training=False``. :func:`cell_backward` of a bfloat16
    context gives the gradients of the bfloat16 forward.

    Returns
    -------
    y, h_n, c_n, ctx
        ``c_n`` None for a cell without a cell state; ``ctx`` None unless ``training``.
    """
    if w_hr is not None:
        check_proj_args(cell, precision, nonlinearity)
        return _lstmp_forward(prepare_proj(x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh, lengths,
                                           reverse, training))
    p = prepare(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse,
                training, precision)
    return _MATHS[cell][0](p)


def cell_backward(ctx: Any, dy: Any, dh_n: Any, dc_n: Any = None, *,
                  need_dx: bool = True) -> tuple:
    """Gradients of any cell's forward; as :func:`fastrnn.functional.cell_backward`.

    Returns
    -------
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh
        ``dc0`` None for a cell without a cell state; ``dx`` None when not ``need_dx``;
        ``dw_hr`` as an eighth value after a forward with ``w_hr``.
    """
    if isinstance(ctx, _ProjCtx):
        return _lstmp_backward(ctx, prepare_grads_proj(ctx.p, dy, dh_n, dc_n), need_dx)
    check_ctx(ctx, _Ctx, None, _MODULE)
    return _MATHS[ctx.cell][1](ctx, prepare_grads(ctx.p, dy, dh_n, dc_n), need_dx)
