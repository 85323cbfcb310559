"""RNN, LSTM and GRU ops over whole sequences, running on fastrnn's C kernels.

One call is one layer in one direction over a time-major sequence. The signatures, shapes and
maths are identical to :mod:`fastrnn.reference` (the pure-NumPy oracle) and PyTorch's.
:func:`cell_forward` / :func:`cell_backward` take the cell by name (the cell table,
:mod:`fastrnn._cells`); the per-cell functions are that op with the cell's own arguments.

Layout: time-major. ``x`` is (T, B, I), steps first, not the batch-first (B, T, I) of Keras
and of torch's ``batch_first=True``: pass such an array as ``x.transpose(1, 0, 2)`` (a
batch-first array of valid shape would silently run with T and B swapped; a shape error that
suggests one says so).

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

Precision (``precision=``, one of :data:`PRECISIONS`; ``"bf16"`` is ``"bfloat16"``):

* ``"float32"`` (default): the arrays' own dtype (float32 or float64) throughout.
* ``"bfloat16"``: GEMM operands rounded to bfloat16 (weights once, ``x_t`` and ``h_{t-1}`` as
  they enter the GEMM), float32 accumulation, float32 gate maths, state, outputs and
  gradients; training works (:func:`cell_backward` of its context gives the gradients of this
  forward; its big GEMMs take bf16 operands, see :mod:`fastrnn.reference`). Kernels: AMX
  (``tdpbf16ps``) where the CPU and OS allow, else AVX512_BF16 (``vdpbf16ps``), else portable
  C on the same rounded operands (``fastrnn.info()["precision"]`` says which).
* ``"int8"``: inference only (``training=False``; else ValueError). Weights quantized per
  output channel, ``x_t``/``h_{t-1}`` rows per row on the fly, int32 accumulation,
  dequantized into float32 gate maths. Kernels: AMX (``tdpbusd``), AVX512_VNNI or AVX-VNNI
  (``vpdpbusd``), AVX2 (widening ``vpmaddwd``), else portable C (exact integer sums: the same
  numbers everywhere).

Both need float32 arrays (a float64 one is a TypeError naming it). The rounding is written
out in :mod:`fastrnn.reference` (``cell_forward(..., precision=...)`` models it exactly, up to
float32 summation order). :func:`prepare_weights` converts/quantizes the weights once for
many calls (``cell_forward(..., prepared=pw)``); without it each call prepares its own. In
float32 it packs them once into the layout the forward's threads otherwise each pack per call
(the same results, bit for bit).
"""

from __future__ import annotations

from typing import Any

from . import _native
from ._native import PreparedWeights
from ._validate import (
    PRECISIONS,
    check_ctx,
    check_precision,
    check_proj_args,
    prepare,
    prepare_grads,
    prepare_grads_proj,
    prepare_proj,
)

__all__ = [
    "PRECISIONS",
    "PreparedWeights",
    "cell_backward",
    "cell_forward",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "prepare_weights",
    "rnn_backward",
    "rnn_forward",
]

_MODULE = "fastrnn.functional"


def prepare_weights(cell: str, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, *,
                    precision: str, check: str = "content") -> PreparedWeights:
    """A layer's weights packed once: in float32 as the forward's threads read them,
    converted (bfloat16) or quantized (int8) for the reduced precisions.

    Pass the result as ``prepared=`` to every :func:`cell_forward` of these weights (one
    object per layer and direction). It never runs stale weights: each call checks that the
    weights it is given are the arrays the object was made from (same data pointer, shape
    and dtype) and, with ``check="content"``, that their bytes did not change since (a
    checksum in C, one pass over the weights: measured 4 us for an LSTM(64)'s weights, about
    3% of its (200, 1, 64, 64) int8 call, and 0.3 ms for LSTM(512), 1-8% of its large rows);
    on any difference it packs again from the given arrays before running. With
    ``check="identity"`` the content pass is skipped: the owner promises to call
    :meth:`PreparedWeights.update` whenever it changes the weights (the Keras layers and the
    torch drop-in do, tracking ``PreparedWeights.version``).

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
    w_ih : array_like of float32, shape (G*H, I), or None (identity: see :func:`cell_forward`)
    w_hh : array_like of float32, shape (G*H, H)
    b_ih, b_hh : array_like of float32, shape (G*H,), or None
    precision : {"float32", "bfloat16", "bf16", "int8"}
    check : {"content", "identity"}

    Returns
    -------
    PreparedWeights
    """
    return PreparedWeights(cell, w_ih, w_hh, b_ih, b_hh, precision=precision, check=check)


def cell_forward(cell: str, x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any,
                 b_hh: Any, *, nonlinearity: str | None = None, lengths: Any = None,
                 reverse: bool = False, training: bool = True, precision: str = "float32",
                 prepared: PreparedWeights | None = None, w_hr: Any = None) -> tuple:
    """Any cell over a whole sequence: the one op behind ``rnn/lstm/gru_forward``.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
        A name in the cell table (:data:`fastrnn._cells.CELLS`).
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, training
        As in the cell's own forward (e.g. :func:`lstm_forward`).
    c0 : array_like of shape (B, H), or None
        The initial cell state of a cell that has one (the LSTM); must be None otherwise.
    nonlinearity : str or None
        Required for a cell with a choice of non-linearity (the RNN: ``"tanh"`` or
        ``"relu"``); must be None for the others.
    precision : {"float32", "bfloat16", "bf16", "int8"}
        The compute precision (the module docstring); ``"int8"`` needs ``training=False``,
        the reduced ones need float32 arrays.
    prepared : PreparedWeights, optional
        From :func:`prepare_weights` for these weights, cell and precision (re-packed when
        the weights changed; see there). None: the call prepares the weights itself.
    w_hr : array_like of shape (P, H), or None
        The LSTM's projection (``torch.nn.LSTM(proj_size=P)``): ``h_t = W_hr (o * tanh(c_t))``
        of size P, so ``w_hh`` is (4*H, P), ``h0``/``h_n``/``y`` have P units (``c0``/``c_n``
        keep H) and :func:`cell_backward` returns ``dw_hr`` as an eighth value. LSTM only,
        in the arrays' own precision (``"float32"``, no ``prepared``), with ``w_ih`` given.

    Returns
    -------
    y : ndarray, shape (T, B, H)
        Time-major, like ``x`` (P units with ``w_hr``).
    h_n : ndarray, shape (B, H)
    c_n : ndarray of shape (B, H), or None (a cell without a cell state)
    ctx : object or None
        Pass to :func:`cell_backward` (or the cell's own backward).
    """
    precision = check_precision(precision, training)
    if (training is False and w_hr is None and lengths is None
            and (reverse is False or reverse is True)):
        # arrays already as the kernels take them skip the validating path (a few microseconds
        # of a one-step call); anything else declines and takes it
        ready = None
        if precision == "float32" and (prepared is None or _native.few_rows(prepared, cell, x)):
            ready = _native.forward_ready(cell, nonlinearity, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                          reverse)
        elif isinstance(prepared, PreparedWeights):
            ready = _native.forward_ready_prec(prepared, precision, cell, nonlinearity, x, h0,
                                               c0, w_ih, w_hh, b_ih, b_hh, reverse)
        if ready is not None:
            return (*ready, None)
    if w_hr is not None:
        check_proj_args(cell, precision, nonlinearity, prepared)
        return _native.forward_proj(prepare_proj(x, h0, c0, w_ih, w_hh, w_hr, b_ih, b_hh,
                                                 lengths, reverse, training))
    if prepared is not None and not isinstance(prepared, PreparedWeights):
        raise TypeError(f"prepared must be a PreparedWeights (from prepare_weights) or None, "
                        f"got {type(prepared).__name__}")
    p = prepare(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity, reverse,
                training, precision)
    if precision == "float32" and prepared is None:
        return _native.forward(p)
    return _native.forward_prec(p, prepared)


def cell_backward(ctx: Any, dy: Any, dh_n: Any, dc_n: Any = None, *,
                  need_dx: bool = True) -> tuple:
    """Gradients of a :func:`cell_forward` call (or of any cell's own forward).

    Parameters
    ----------
    ctx : object
        The context returned by a forward with ``training=True``.
    dy : array_like, shape (T, B, H), or None
        Gradient of the loss w.r.t. ``y`` (None = zero), time-major like ``y``.
    dh_n : array_like, shape (B, H), or None
        Gradient w.r.t. ``h_n`` (None = zero).
    dc_n : array_like of shape (B, H), or None
        Gradient w.r.t. ``c_n``, for a cell with a cell state only.
    need_dx : bool
        Compute ``dx``. False returns None in its place and skips one GEMM (a third of the
        backward's weight-gradient work): for an input that needs no gradient, such as data.

    Returns
    -------
    dx : ndarray, shape (T, B, I), or None (need_dx False)
    dh0 : ndarray, shape (B, H)
    dc0 : ndarray of shape (B, H), or None (a cell without a cell state)
    dw_ih : ndarray of shape (G*H, I), or None (w_ih None)
    dw_hh : ndarray, shape (G*H, H)
    db_ih, db_hh : ndarray, shape (G*H,), or None when that bias was None
    dw_hr : ndarray, shape (P, H)
        Only for a forward with ``w_hr`` (an eighth value); ``dh0`` is then (B, P) and
        ``dy``/``dh_n`` have P units.
    """
    if isinstance(ctx, _native.ProjContext):
        return _native.backward_proj(ctx, prepare_grads_proj(ctx.p, dy, dh_n, dc_n), need_dx)
    check_ctx(ctx, _native.Context, None, _MODULE)
    return _native.backward(ctx, prepare_grads(ctx.p, dy, dh_n, dc_n), need_dx)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, nonlinearity: str = "tanh", lengths=None,
                reverse: bool = False, training: bool = True, precision: str = "float32",
                prepared: PreparedWeights | None = None):
    """Elman RNN over a whole sequence: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
        Time-major input (steps first); a batch-first array ``xb`` of shape (B, T, I) is
        ``xb.transpose(1, 0, 2)``.
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
    precision, prepared
        As in :func:`cell_forward`.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n : ndarray, shape (B, H)
    ctx : object or None
        Pass to :func:`rnn_backward`.
    """
    y, h_n, _, ctx = cell_forward("rnn", x, h0, None, w_ih, w_hh, b_ih, b_hh,
                                  nonlinearity=nonlinearity, lengths=lengths, reverse=reverse,
                                  training=training, precision=precision, prepared=prepared)
    return y, h_n, ctx


def rnn_backward(ctx, dy, dh_n, *, need_dx: bool = True):
    """Gradients of an :func:`rnn_forward` call.

    Parameters
    ----------
    ctx : object
        The context returned by ``rnn_forward(..., training=True)``.
    dy : array_like, shape (T, B, H), or None
        Gradient of the loss w.r.t. ``y`` (None = zero), time-major like ``y``.
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
    check_ctx(ctx, _native.Context, "rnn", _MODULE)
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = cell_backward(ctx, dy, dh_n, need_dx=need_dx)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *, lengths=None, reverse: bool = False,
                 training: bool = True, precision: str = "float32",
                 prepared: PreparedWeights | None = None):
    """LSTM over a whole sequence (PyTorch's gates i, f, g, o).

    ``i, f, o = sigmoid(.)``, ``g = tanh(.)`` of ``W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``
    (chunks in that order); ``c_t = f*c_{t-1} + i*g``; ``h_t = o*tanh(c_t)``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
        Time-major input, as in :func:`rnn_forward`.
    h0, c0 : array_like, shape (B, H), or None (zeros)
    w_ih : array_like of shape (4H, I), or None
        None: x already holds the input projection ``W_ih x_t`` (I = 4H, biases not included).
    w_hh : array_like, shape (4H, H)
    b_ih, b_hh : array_like, shape (4H,), or None
    lengths, reverse, training, precision, prepared
        As in :func:`rnn_forward` and :func:`cell_forward`.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n, c_n : ndarray, shape (B, H)
    ctx : object or None
    """
    return cell_forward("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=lengths,
                        reverse=reverse, training=training, precision=precision,
                        prepared=prepared)


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
    check_ctx(ctx, _native.Context, "lstm", _MODULE)
    return cell_backward(ctx, dy, dh_n, dc_n, need_dx=need_dx)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, lengths=None, reverse: bool = False,
                training: bool = True, precision: str = "float32",
                prepared: PreparedWeights | None = None):
    """GRU over a whole sequence (PyTorch's gates r, z, n; reset after the recurrent product).

    ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``, ``z`` likewise,
    ``n = tanh(W_in x + b_in + r*(W_hn h + b_hn))``, ``h_t = (1-z)*n + z*h_{t-1}``.

    Parameters
    ----------
    x : array_like, shape (T, B, I)
        Time-major input, as in :func:`rnn_forward`.
    h0 : array_like, shape (B, H), or None
    w_ih : array_like of shape (3H, I), or None
        None: x already holds the input projection ``W_ih x_t`` (I = 3H, biases not included).
    w_hh : array_like, shape (3H, H)
    b_ih, b_hh : array_like, shape (3H,), or None
    lengths, reverse, training, precision, prepared
        As in :func:`rnn_forward` and :func:`cell_forward`.

    Returns
    -------
    y : ndarray, shape (T, B, H)
    h_n : ndarray, shape (B, H)
    ctx : object or None
    """
    y, h_n, _, ctx = cell_forward("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths=lengths,
                                  reverse=reverse, training=training, precision=precision,
                                  prepared=prepared)
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
    check_ctx(ctx, _native.Context, "gru", _MODULE)
    dx, dh0, _, dw_ih, dw_hh, db_ih, db_hh = cell_backward(ctx, dy, dh_n, need_dx=need_dx)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
