"""RNN, LSTM and GRU ops over whole sequences, running on fastrnn's C kernels.

One call is one layer in one direction over a time-major sequence. The signatures, shapes and
maths are identical to :mod:`fastrnn.reference` (the pure-NumPy oracle); see DESIGN.md §2.

Shapes: ``x`` (T, B, I); ``h0``, ``c0``, ``h_n``, ``c_n`` (B, H); ``w_ih`` (G·H, I);
``w_hh`` (G·H, H); ``b_ih``, ``b_hh`` (G·H,) or None; ``lengths`` (B,) or None;
``y`` (T, B, H). G = 1 (RNN), 4 (LSTM: gates i, f, g, o), 3 (GRU: gates r, z, n).

Edge sizes and values (the same in :mod:`fastrnn.reference`; tests/test_sizes.py):

* T = 0: ``y`` has shape (0, B, H), ``h_n``/``c_n`` equal ``h0``/``c0`` (zeros when None);
  backward gives ``dh0 = dh_n``, ``dc0 = dc_n``, ``dx`` of shape (0, B, I) and zero weight
  and bias gradients. A sequence with ``lengths[b] = 0`` behaves the same for its row.
* B = 0: empty outputs and state gradients, zero weight gradients.
* I = 0: the input projection is the biases alone; ``dx`` and ``dw_ih`` are empty.
* H = 0 (``w_hh`` of shape (0, 0)) is a ``ValueError``.
* Sizes whose output (or training cache) could not be an array at all (more bytes than
  ``np.intp`` counts; reachable only through an empty ``x``) are a ``ValueError`` naming T, B
  and H, raised before any allocation.
* NaN and inf in any input, weight or output gradient propagate and never crash: the
  forward's NaN/inf positions equal the reference's; a row past its length is never touched
  by the weights (its state and gradient pass through unchanged).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _kernels
from ._threads import get_num_threads
from ._validate import Prepared, prepare, prepare_grads

__all__ = [
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "rnn_backward",
    "rnn_forward",
]

_ACT = {"tanh": 0, "relu": 1}


#: Arrays of at least this many bytes live on the kernels' kept blocks (csrc/scratch.c), which
#: go back to a short list of kept blocks when the array and its views die and serve the next
#: call of the same size. Fresh memory from the OS costs a page fault and a page clear per 4 KiB:
#: 5-9% of a small LSTM training or inference call measured here, whenever malloc hands big
#: arrays to mmap (its default above 128 KiB, until a free raises the threshold; heap trimming
#: gives pages back too). Smaller arrays come from malloc's heap, which is warm already.
_KEPT_MIN = 1 << 17


def _empty(shape: tuple, dt: np.dtype) -> np.ndarray:
    """``np.empty(shape, dt)``, on a kept block when it is big (see ``_KEPT_MIN``)."""
    n = dt.itemsize
    for d in shape:
        n *= d
    return _kernels.kept_empty(shape, dt) if n >= _KEPT_MIN else np.empty(shape, dt)


def _zeros(shape: tuple, dt: np.dtype) -> np.ndarray:
    """``np.zeros(shape, dt)``, on a kept block when it is big (see ``_KEPT_MIN``)."""
    a = _empty(shape, dt)
    a.fill(0)
    return a


class _Context:
    """What a native backward needs from its forward: inputs, weights and the kernel cache.

    The cache lives on a kept block: when the context (and any view of its cache) dies, the
    block serves the next training forward of the same size.
    """

    __slots__ = ("cell", "act", "reverse", "p", "cache")

    def __init__(self, cell: str, act: int, reverse: bool, p: Any, cache: np.ndarray) -> None:
        self.cell = cell
        self.act = act
        self.reverse = reverse
        self.p = p
        self.cache = cache

    def __repr__(self) -> str:
        p = self.p
        return (f"<fastrnn.functional {self.cell} context T={p.T} B={p.B} I={p.I} H={p.H} "
                f"dtype={p.dtype}>")


def _forward(cell: str, p: Any, act: int, rows: tuple | None = None):
    """The native forward of prepared inputs; ``rows`` = (table, ids) picks the projected
    input rows from a table (p.x is then None, see :func:`_forward_rows`)."""
    T, B, H = p.T, p.B, p.H
    training = p.training
    dt = p.dtype
    y = _empty((T, B, H), dt)
    h_n = np.empty((B, H), dtype=dt)
    c_n = np.empty((B, H), dtype=dt) if cell == "lstm" else None
    # The kernels write every cache element they later read: old contents never matter.
    cache = _kernels.kept_empty((_kernels.cache_size(cell, T, B, H),), dt) if training else None
    c0 = p.c0 if cell == "lstm" else None
    if rows is None:
        _kernels.cell_forward(cell, y, h_n, c_n, cache, p.x, p.h0, c0, p.w_ih, p.w_hh, p.b_ih,
                              p.b_hh, p.lengths, act, p.reverse, get_num_threads())
    else:
        _kernels.cell_forward_rows(cell, y, h_n, c_n, cache, rows[0], rows[1], p.h0, c0, p.w_hh,
                                   p.b_ih, p.b_hh, p.lengths, act, p.reverse, get_num_threads())
    ctx = _Context(cell, act, p.reverse, p, cache) if training else None
    return y, h_n, c_n, ctx


def _forward_rows(cell: str, table: np.ndarray, ids: np.ndarray, h0: np.ndarray | None,
                  c0: np.ndarray | None, w_hh: np.ndarray, b_ih: np.ndarray | None,
                  b_hh: np.ndarray | None, *, nonlinearity: str | None = None,
                  lengths: np.ndarray | None = None, reverse: bool = False,
                  training: bool = True) -> tuple:
    """The forward of ``cell`` with ``w_ih=None`` and ``x = table[ids]``, without building x.

    For the Keras layers' Embedding fold: ``table`` (V, G*H) holds the projected embedding
    rows (no biases), ``ids`` (T, B) picks one per step and batch entry. The arguments are
    trusted (C-contiguous, one float dtype, ``ids`` int64; the kernel checks the id range).
    Returns what the public forward returns: ``(y, h_n, c_n, ctx)`` for the LSTM, else
    ``(y, h_n, ctx)``; ``ctx`` works with the public backward, whose ``dx`` is then the
    (T, B, G*H) gradient of the picked rows and ``dw_ih`` None.
    """
    dt = table.dtype
    T, B = ids.shape
    H = w_hh.shape[1]
    G = w_hh.shape[0] // H
    lstm = cell == "lstm"
    p = Prepared(cell=cell, x=None, h0=np.zeros((B, H), dt) if h0 is None else h0,
                 c0=(np.zeros((B, H), dt) if c0 is None else c0) if lstm else None, w_ih=None,
                 w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, lengths=lengths,
                 nonlinearity=nonlinearity if cell == "rnn" else None, reverse=reverse,
                 training=training, T=T, B=B, I=G * H, H=H, G=G, dtype=dt,
                 h0_given=h0 is not None, c0_given=c0 is not None)
    y, h_n, c_n, ctx = _forward(cell, p, _ACT[nonlinearity] if cell == "rnn" else 0,
                                (table, ids))
    return (y, h_n, c_n, ctx) if lstm else (y, h_n, ctx)


def _backward(cell: str, ctx: Any, dy: Any, dh_n: Any, dc_n: Any, need_dx: bool = True):
    if not isinstance(ctx, _Context):
        raise TypeError(
            f"ctx must be the context returned by fastrnn.functional.{cell}_forward("
            f"training=True), got {type(ctx).__name__}")
    if ctx.cell != cell:
        raise TypeError(f"ctx comes from {ctx.cell}_forward, not {cell}_forward")
    p = ctx.p
    dy, dh_n, dc_n = prepare_grads(p, dy, dh_n, dc_n)
    dt = p.dtype
    T, B, I, H, G = p.T, p.B, p.I, p.H, p.G
    # with w_ih None the kernel writes the input pre-activation grads to dx: always needed
    dx = _empty((T, B, I), dt) if need_dx or p.w_ih is None else None
    dh0 = np.empty((B, H), dtype=dt)
    dc0 = np.empty((B, H), dtype=dt) if cell == "lstm" else None
    dw_ih = None if p.w_ih is None else _zeros((G * H, I), dt)
    dw_hh = _zeros((G * H, H), dt)
    db_ih = np.zeros(G * H, dtype=dt) if p.b_ih is not None else None
    db_hh = np.zeros(G * H, dtype=dt) if p.b_hh is not None else None
    _kernels.cell_backward(cell, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, ctx.cache, p.x, p.w_ih,
                           p.w_hh, dy, dh_n, dc_n if cell == "lstm" else None, p.lengths, ctx.act,
                           ctx.reverse, get_num_threads())
    return (dx if need_dx else None), dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, nonlinearity: str = "tanh", lengths=None,
                reverse: bool = False, training: bool = True):
    """Elman RNN over a whole sequence: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
        Time-major input.
    h0 : array_like, shape (B, H), or None
        Initial hidden state (None = zeros).
    w_ih : array_like of shape (H, I), or None
        None: x already holds the input projection ``W_ih x_t`` (I = H, biases not included).
    w_hh : array_like, shape (H, H)
    b_ih, b_hh : array_like, shape (H,), or None
        Biases (None = no bias; the matching gradient is then None).
    nonlinearity : {"tanh", "relu"}
    lengths : array_like of int, shape (B,), or None
        Valid steps per sequence, in [0, T]. Outputs past a sequence's end are zero and its
        final state is the state at its last valid step.
    reverse : bool
        Run each sequence from its last valid step back to step 0.
    training : bool
        Keep what the backward needs. With False no cache is kept and ``ctx`` is None.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n : ndarray, shape (B, H)
    ctx : object or None
        Pass to :func:`rnn_backward`.
    """
    p = prepare("rnn", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse,
                training)
    y, h_n, _, ctx = _forward("rnn", p, _ACT[p.nonlinearity])
    return y, h_n, ctx


def rnn_backward(ctx, dy, dh_n, *, need_dx: bool = True):
    """Gradients of an :func:`rnn_forward` call.

    Parameters
    ----------
    ctx : object
        The context returned by ``rnn_forward(..., training=True)``.
    dy : array_like, shape (T, B, H), or None
        Gradient of the loss w.r.t. ``y`` (None = zero).
    dh_n : array_like, shape (B, H), or None
        Gradient w.r.t. ``h_n`` (None = zero).
    need_dx : bool
        Compute ``dx``. False returns None in its place and skips one GEMM (a third of the
        backward's weight-gradient work): for an input that needs no gradient, such as data.

    Returns
    -------
    dx : ndarray, shape (T, B, I), or None (need_dx False)
    dh0 : ndarray, shape (B, H)
    dw_ih : ndarray of shape (H, I), or None (w_ih None)
    dw_hh : ndarray, shape (H, H)
    db_ih, db_hh : ndarray, shape (H,), or None when that bias was None
    """
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = _backward("rnn", ctx, dy, dh_n, None, need_dx)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, lengths=None, reverse: bool = False,
                 training: bool = True):
    """LSTM over a whole sequence (PyTorch's gates i, f, g, o).

    ``i, f, o = sigmoid(.)``, ``g = tanh(.)`` of ``W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``
    (chunks in that order); ``c_t = f*c_{t-1} + i*g``; ``h_t = o*tanh(c_t)``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
    h0, c0 : array_like, shape (B, H), or None (zeros)
    w_ih : array_like of shape (4H, I), or None
        None: x already holds the input projection ``W_ih x_t`` (I = 4H, biases not included).
    w_hh : array_like, shape (4H, H)
    b_ih, b_hh : array_like, shape (4H,), or None
    lengths, reverse, training
        As in :func:`rnn_forward`.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n, c_n : ndarray, shape (B, H)
    ctx : object or None
    """
    p = prepare("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, None, reverse, training)
    y, h_n, c_n, ctx = _forward("lstm", p, 0)
    return y, h_n, c_n, ctx


def lstm_backward(ctx, dy, dh_n, dc_n, *, need_dx: bool = True):
    """Gradients of an :func:`lstm_forward` call.

    Parameters
    ----------
    ctx : object
        From ``lstm_forward(..., training=True)``.
    dy : array_like, shape (T, B, H), or None
    dh_n, dc_n : array_like, shape (B, H), or None
    need_dx : bool
        Compute ``dx``. False returns None in its place and skips one GEMM (a third of the
        backward's weight-gradient work): for an input that needs no gradient, such as data.

    Returns
    -------
    dx : ndarray, shape (T, B, I), or None (need_dx False)
    dh0, dc0 : ndarray, shape (B, H)
    dw_ih : ndarray of shape (4H, I), or None (w_ih None)
    dw_hh : ndarray, shape (4H, H)
    db_ih, db_hh : ndarray, shape (4H,), or None
    """
    return _backward("lstm", ctx, dy, dh_n, dc_n, need_dx)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, lengths=None, reverse: bool = False,
                training: bool = True):
    """GRU over a whole sequence (PyTorch's gates r, z, n; reset after the recurrent product).

    ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``, ``z`` likewise,
    ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``, ``h_t = (1-z)*n + z*h_{t-1}``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
    h0 : array_like, shape (B, H), or None
    w_ih : array_like of shape (3H, I), or None
        None: x already holds the input projection ``W_ih x_t`` (I = 3H, biases not included).
    w_hh : array_like, shape (3H, H)
    b_ih, b_hh : array_like, shape (3H,), or None
    lengths, reverse, training
        As in :func:`rnn_forward`.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n : ndarray, shape (B, H)
    ctx : object or None
    """
    p = prepare("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, None, reverse, training)
    y, h_n, _, ctx = _forward("gru", p, 0)
    return y, h_n, ctx


def gru_backward(ctx, dy, dh_n, *, need_dx: bool = True):
    """Gradients of a :func:`gru_forward` call.

    Parameters
    ----------
    ctx : object
        From ``gru_forward(..., training=True)``.
    dy : array_like, shape (T, B, H), or None
    dh_n : array_like, shape (B, H), or None
    need_dx : bool
        Compute ``dx``. False returns None in its place and skips one GEMM (a third of the
        backward's weight-gradient work): for an input that needs no gradient, such as data.

    Returns
    -------
    dx : ndarray, shape (T, B, I), or None (need_dx False)
    dh0 : ndarray, shape (B, H)
    dw_ih : ndarray of shape (3H, I), or None (w_ih None)
    dw_hh : ndarray, shape (3H, H)
    db_ih, db_hh : ndarray, shape (3H,), or None
    """
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = _backward("gru", ctx, dy, dh_n, None, need_dx)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
