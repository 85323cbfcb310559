"""The C kernels as NumPy functions on trusted arguments: what the layers above need.

The public ops (:mod:`fastrnn.functional`) check and normalise their arguments, then call
:func:`forward` and :func:`backward` here. The Keras-style layers, the optimizers and
streaming also come here, for what is not a whole-sequence op: kept-memory arrays, the GEMM,
the row scatter, the row pick of an Embedding folded into a recurrent layer, the fused Adam
update and the streaming stack. Nothing above this module imports ``fastrnn._kernels``.

Arguments here are trusted: C-contiguous arrays of one float dtype (ids and lengths int64),
as :func:`fastrnn._validate.prepare` returns them; the Cython bridge still checks shapes and
dtypes before any pointer reaches C.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import _kernels
from ._cells import CELLS, NONLINEARITIES
from ._threads import enable_threadpoolctl, get_num_threads, threads_arg
from ._validate import PRECISIONS, Grads, Prepared, PreparedProj, check_precision

__all__ = [
    "DENSE_ACTIVATIONS",
    "Context",
    "PreparedWeights",
    "ProjContext",
    "Stream",
    "adam_update",
    "backward",
    "backward_proj",
    "build_info",
    "empty",
    "forward",
    "forward_proj",
    "forward_prec",
    "forward_rows",
    "gemm",
    "release_memory",
    "scatter_add_rows",
    "team_load",
    "zeros",
]

enable_threadpoolctl()  # the kernels' library is loaded: threadpoolctl may list and limit it

#: Activations the streaming Dense step runs in C.
DENSE_ACTIVATIONS: tuple[str, ...] = _kernels.DENSE_ACTIVATIONS
#: The streaming stack of layers (weights packed once, one call per timestep).
Stream = _kernels.Stream

#: Arrays of at least this many bytes live on the kernels' kept blocks (csrc/scratch.c), which
#: go back to a short list of kept blocks when the array and its views die and serve the next
#: call of the same size. Fresh memory from the OS costs a page fault and a page clear per 4 KiB:
#: 5-9% of a small LSTM training or inference call measured here, whenever malloc hands big
#: arrays to mmap (its default above 128 KiB, until a free raises the threshold; heap trimming
#: gives pages back too). Smaller arrays come from malloc's heap, which is warm already.
KEPT_MIN = 1 << 17


def _threads(nthreads: int | None) -> int:
    return threads_arg(nthreads)


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty(shape, dtype)``, on a kept block when it is big (see ``KEPT_MIN``).

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy dtype
        float32 or float64 for a kept block; any dtype below ``KEPT_MIN`` bytes.

    Returns
    -------
    ndarray
        Uninitialised, C-contiguous.
    """
    dt = np.dtype(dtype)
    n = dt.itemsize
    for d in shape:
        n *= d
    return _kernels.kept_empty(tuple(shape), dt) if n >= KEPT_MIN else np.empty(shape, dt)


def zeros(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.zeros(shape, dtype)``, on a kept block when it is big (see :func:`empty`)."""
    a = empty(shape, dtype)
    a.fill(0)
    return a


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, *, transa: bool = False,
         transb: bool = False, nthreads: int | None = None) -> np.ndarray:
    """``op(a) @ op(b)`` on the kernels' GEMM, into ``out`` when given.

    Parameters
    ----------
    a, b : ndarray
        2-D, one float dtype; rows may be strided, elements contiguous.
    out : ndarray, optional
        C-contiguous (M, N) result (e.g. from :func:`empty`); a new array when None.
    transa, transb : bool
        Use the transpose of ``a`` / ``b``.
    nthreads : int, optional
        Threads (default :func:`fastrnn.get_num_threads`).

    Returns
    -------
    ndarray
        ``out`` (or the new array).
    """
    return _kernels.gemm(a, b, out, transa=transa, transb=transb, nthreads=_threads(nthreads))


def scatter_add_rows(dst: np.ndarray, src: np.ndarray, idx: np.ndarray,
                     nthreads: int | None = None) -> None:
    """``dst[idx[r]] += src[r]`` for every row r, in row order (deterministic).

    Parameters
    ----------
    dst : ndarray, shape (V, n)
    src : ndarray, shape (R, n)
    idx : ndarray of int64, shape (R,)
        Values in [0, V) (else ValueError, nothing written).
    nthreads : int, optional
    """
    _kernels.scatter_add_rows(dst, src, idx, _threads(nthreads))


def adam_update(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, c1: float,
                c2: float, alpha: float, eps: float, nthreads: int | None = None) -> None:
    """One fused Adam step in place on ``w``, ``m``, ``v`` from the gradient ``g``.

    ``m += (g - m)*c1; v += (g*g - v)*c2; w -= (m*alpha)/(sqrt(v) + eps)``, with
    ``c1 = 1 - beta_1``, ``c2 = 1 - beta_2`` and ``alpha`` the bias-corrected rate.
    """
    _kernels.adam_update(w, g, m, v, c1, c2, alpha, eps, _threads(nthreads))


def build_info() -> dict[str, Any]:
    """How the kernels were built and what they run on (SIMD path, OpenMP, threads).

    ``info["precision"]``: whether the CPU has ``avx512_bf16``, ``avx512_vnni`` and
    ``avx_vnni``, and the kernels ``bfloat16`` and ``int8`` run on with the SIMD path in use
    (``"amx_bf16"``, ``"avx512_bf16"``, ``"amx_int8"``, ``"avx512_vnni"``, ``"avx_vnni"``,
    ``"avx2_madd"`` or ``"portable"``: float32/int32 arithmetic in C on the same rounded
    operands, the same numbers).
    """
    return dict(_kernels.build_info())


def release_memory() -> int:
    """Give the kept blocks back to the OS; returns the bytes they held."""
    n = int(_kernels.scratch_kept())
    _kernels.scratch_release()
    return n


def team_load() -> dict[str, int | bool]:
    """What the recurrence's thread teams have measured of the machine (``csrc/team_load.h``).

    Returns
    -------
    dict
        ``wake_ns``: the cost of waking an idle team; ``ns_per_mflop``: the serial speed;
        ``inflight``: fastrnn passes running now; ``contended``: whether teams are halved now
        (the team's threads waited for a processor for more than a small share of their time);
        ``waited_ns``: the team threads' waits for a processor counted so far;
        ``others_runnable``: threads runnable now besides the caller and its own idle workers
        (other pools, callers, processes; a team takes no more threads than the processors they
        leave free), -1 where the system does not tell; ``cuts``: the teams taken smaller
        for such threads so far.
    """
    return dict(_kernels.team_load())


class Context:
    """What a native backward needs from its forward: inputs, weights and the kernel cache.

    The cache lives on a kept block: when the context (and any view of its cache) dies, the
    block serves the next training forward of the same size.
    """

    __slots__ = ("cell", "act", "reverse", "p", "cache", "hq")

    def __init__(self, cell: str, act: int, reverse: bool, p: Prepared,
                 cache: np.ndarray, hq: np.ndarray | None = None) -> None:
        self.cell = cell
        self.act = act
        self.reverse = reverse
        self.p = p  # inputs and weights (float32 for bf16 too: its products round them)
        self.cache = cache
        self.hq = hq  # a bf16 forward's rounded h_{t-1} (T, B, H), for dw_hh

    def __repr__(self) -> str:
        p = self.p
        return (f"<fastrnn.functional {self.cell} context T={p.T} B={p.B} I={p.I} H={p.H} "
                f"dtype={p.dtype} precision={p.precision}>")


def forward(p: Prepared, rows: tuple[np.ndarray, np.ndarray] | None = None,
            packed: np.ndarray | None = None) -> tuple:
    """The whole-sequence forward of prepared inputs.

    Parameters
    ----------
    p : Prepared
        From :func:`fastrnn._validate.prepare` (or built by :func:`forward_rows`).
    rows : (table, ids), optional
        Pick the projected input of step t, batch row b from ``table[ids[t, b]]`` (``p.x`` is
        then None and ``p.w_ih`` None).
    packed : ndarray, optional
        p's weights packed once (:meth:`PreparedWeights.packed` of float32): the same results
        with less packing per call (not with ``rows``).

    Returns
    -------
    y, h_n, c_n, ctx
        ``c_n`` None for a cell without a cell state; ``ctx`` None unless ``p.training``.
    """
    spec = CELLS[p.cell]
    T, B, H, dt = p.T, p.B, p.H, p.dtype
    act = NONLINEARITIES[p.nonlinearity] if p.nonlinearity is not None else 0
    y = empty((T, B, H), dt)
    h_n = np.empty((B, H), dtype=dt)
    c_n = np.empty((B, H), dtype=dt) if spec.has_cell_state else None
    # The kernels write every cache element they later read: old contents never matter.
    cache = (_kernels.kept_empty((_kernels.cache_size(p.cell, T, B, H),), dt)
             if p.training else None)
    nt = get_num_threads()
    if rows is None:
        _kernels.cell_forward(p.cell, y, h_n, c_n, cache, p.x, p.h0, p.c0, p.w_ih, p.w_hh,
                              p.b_ih, p.b_hh, p.lengths, act, p.reverse, nt, packed=packed)
    else:
        _kernels.cell_forward_rows(p.cell, y, h_n, c_n, cache, rows[0], rows[1], p.h0, p.c0,
                                   p.w_hh, p.b_ih, p.b_hh, p.lengths, act, p.reverse, nt)
    ctx = Context(p.cell, act, p.reverse, p, cache) if p.training else None
    return y, h_n, c_n, ctx


#: The act code of every (cell, nonlinearity) pair that prepare accepts.
_ACTS = {(name, nl): NONLINEARITIES[nl] if nl is not None else 0
         for name, spec in CELLS.items() for nl in (spec.nonlinearities or (None,))}


def forward_ready(cell: Any, nonlinearity: Any, x: Any, h0: Any, c0: Any, w_ih: Any,
                  w_hh: Any, b_ih: Any, b_hh: Any, reverse: bool) -> tuple | None:
    """An inference forward without the validating path, where the arguments allow it.

    Parameters
    ----------
    cell, nonlinearity, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse
        As :func:`fastrnn.functional.cell_forward`'s, unchecked.

    Returns
    -------
    (y, h_n, c_n) or None
        The outputs of ``forward(prepare(...))`` with ``training=False``, bit for bit, where
        every array is already as the kernels take them (``_kernels.forward_ready``); None,
        with nothing run, otherwise: the caller then takes the validating path.
    """
    act = _act_of(cell, nonlinearity)
    if act is None:
        return None
    return _kernels.forward_ready(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, act, reverse,
                                  get_num_threads())


def _act_of(cell: Any, nonlinearity: Any) -> int | None:
    """The act code of a (cell, nonlinearity) that prepare accepts; None for any other."""
    if type(cell) is not str or not (nonlinearity is None or type(nonlinearity) is str):
        return None
    return _ACTS.get((cell, nonlinearity))


#: Rows (T*B) from which a float32 call on prepared weights reads their packed copy. Fewer
#: rows measured no gain from it (LSTM (10, 1, 256, 256): 155 us either way, the packing hidden
#: by the steps) against the check's microsecond (LSTM (10, 1, 64, 64): 15.9 against 14.9 us);
#: more gain (C calls, one run, time ratios: (20, 16, 128, 128) 0.94, (60, 24, 100, 200) 0.97,
#: (5, 64, 256, 256) 0.90).
PACKED_MIN_ROWS = 64


def packed_weights_read(cell: str, H: int) -> bool:
    """Whether float32 forwards of ``cell`` with H units on the current thread count may read
    weights packed once (:func:`fastrnn._kernels.prepack_read`): where not, an owner such as a
    Keras layer keeps no packed copy."""
    return _kernels.prepack_read(cell, H, get_num_threads())


def few_rows(prepared: Any, cell: Any, x: Any) -> bool:
    """Whether a float32 inference of x on ``prepared`` (float32 weights of ``cell``) runs as
    without them: one step (on the weights as given, fr_cell_forward's step1) or fewer than
    :data:`PACKED_MIN_ROWS` rows, whose call skips the weights' check. False for anything else
    (a PreparedWeights of another cell or precision, x not a 3-D ndarray): the prepared path
    then checks and says what is wrong."""
    return (type(prepared) is PreparedWeights and prepared.precision == "float32"
            and prepared.cell == cell and _kernels.few_rows(x, PACKED_MIN_ROWS))


def forward_ready_prec(prepared: PreparedWeights, precision: str, cell: Any, nonlinearity: Any,
                       x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
                       reverse: bool) -> tuple | None:
    """:func:`forward_ready` of an inference on prepared weights (any precision).

    Returns
    -------
    (y, h_n, c_n) or None
        The outputs of ``forward_prec(prepare(...), prepared)``, where the call names the
        prepared weights' cell, precision and arrays (checked as ``prepared`` checks them: the
        same arrays, and the same bytes under ``check="content"``) and x and the states are
        as the kernels take them; None, with nothing run, otherwise.
    """
    act = _act_of(cell, nonlinearity)
    if act is None or prepared.cell != cell or prepared.precision != precision:
        return None
    if not prepared._holds((w_ih, w_hh, b_ih, b_hh)):  # False for anything but ndarray or None
        return None
    if precision == "float32":
        return _kernels.forward_ready(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, act, reverse,
                                      get_num_threads(), packed=prepared.packed())
    return _kernels.lp_forward_ready(cell, prepared.packed(), x, h0, c0, prepared.H, act,
                                     reverse, get_num_threads())


def forward_rows(cell: str, table: np.ndarray, ids: np.ndarray, h0: np.ndarray | None,
                 c0: np.ndarray | None, w_hh: np.ndarray, b_ih: np.ndarray | None,
                 b_hh: np.ndarray | None, *, nonlinearity: str | None = None,
                 lengths: np.ndarray | None = None, reverse: bool = False,
                 training: bool = True, precision: str = "float32",
                 prepared: PreparedWeights | None = None) -> tuple:
    """The forward of ``cell`` with ``w_ih=None`` and ``x = table[ids]``, without building x.

    For the Keras layers' Embedding fold: ``table`` (V, G*H) holds the projected embedding
    rows (no biases), ``ids`` (T, B) picks one per step and batch entry. The arguments are
    trusted (C-contiguous, one float dtype, ``ids`` int64; the kernel checks the id range).
    A reduced ``precision`` (float32 arrays; ``prepared`` made with ``w_ih=None``) builds
    ``x = table[ids]`` and runs the identity-input op of that precision: the picked rows enter
    no GEMM and are not rounded.

    Returns
    -------
    y, h_n, c_n, ctx
        As :func:`fastrnn.functional.cell_forward`; ``ctx`` works with its backward, whose
        ``dx`` is then the (T, B, G*H) gradient of the picked rows and ``dw_ih`` None.
    """
    spec = CELLS[cell]
    dt = table.dtype
    T, B = ids.shape
    H = w_hh.shape[1]
    G = spec.gates
    if spec.has_cell_state:
        c0 = np.zeros((B, H), dt) if c0 is None else c0
    else:
        c0 = None
    if spec.nonlinearities:
        nonlinearity = spec.nonlinearities[0] if nonlinearity is None else nonlinearity
    else:
        nonlinearity = None
    p = Prepared(cell=cell, x=None, h0=np.zeros((B, H), dt) if h0 is None else h0, c0=c0,
                 w_ih=None, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, lengths=lengths,
                 nonlinearity=nonlinearity, reverse=reverse, training=training, T=T, B=B,
                 I=G * H, H=H, G=G, dtype=dt, h0_given=h0 is not None,
                 c0_given=c0 is not None)
    precision = check_precision(precision, training)
    if precision == "float32" and prepared is None:
        return forward(p, (table, ids))
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise ValueError(f"ids must lie in [0, {table.shape[0]})")
    x = np.ascontiguousarray(table[ids], dtype=dt)
    return forward_prec(dataclasses.replace(p, x=x, precision=precision), prepared)


def backward(ctx: Context, grads: Grads, need_dx: bool = True) -> tuple:
    """The whole-sequence backward of a training forward.

    Parameters
    ----------
    ctx : Context
        From :func:`forward` with ``p.training``.
    grads : Grads
        Validated ``(dy, dh_n, dc_n)`` (see :func:`fastrnn._validate.prepare_grads`).
    need_dx : bool
        Compute ``dx`` (always computed with ``w_ih`` None: it is the projected input's).

    Returns
    -------
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh
        ``dc0`` None without a cell state; ``dw_ih`` None with ``w_ih`` None; bias gradients
        None where the bias was None; ``dx`` None when not ``need_dx``.
    """
    p = ctx.p
    spec = CELLS[ctx.cell]
    dt = p.dtype
    T, B, I, H, G = p.T, p.B, p.I, p.H, p.G
    # with w_ih None the kernel writes the input pre-activation grads to dx: always needed
    dx = empty((T, B, I), dt) if need_dx or p.w_ih is None else None
    dh0 = np.empty((B, H), dtype=dt)
    dc0 = np.empty((B, H), dtype=dt) if spec.has_cell_state else None
    dw_ih = None if p.w_ih is None else empty((G * H, I), dt)  # written by the kernels
    dw_hh = empty((G * H, H), dt)
    db_ih = np.zeros(G * H, dtype=dt) if p.b_ih is not None else None
    db_hh = np.zeros(G * H, dtype=dt) if p.b_hh is not None else None
    _kernels.cell_backward(ctx.cell, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, ctx.cache, p.x,
                           p.w_ih, p.w_hh, grads.dy, grads.dh_n, grads.dc_n, p.lengths, ctx.act,
                           ctx.reverse, get_num_threads(), ctx.hq)
    return (dx if need_dx else None), dh0, dc0, dw_ih, dw_hh, db_ih, db_hh


class ProjContext:
    """What the backward of an LSTM with a projection needs: its inputs and the cache."""

    __slots__ = ("p", "cache")
    cell = "lstm"

    def __init__(self, p: PreparedProj, cache: np.ndarray) -> None:
        self.p = p
        self.cache = cache

    def __repr__(self) -> str:
        p = self.p
        return (f"<fastrnn.functional lstm (projection) context T={p.T} B={p.B} I={p.I} "
                f"H={p.H} P={p.P} dtype={p.dtype}>")


def forward_proj(p: PreparedProj) -> tuple:
    """The whole-sequence forward of an LSTM with a projection (``p.w_hr``).

    Returns
    -------
    y (T, B, P), h_n (B, P), c_n (B, H), ctx
        ``ctx`` (a :class:`ProjContext`) None unless ``p.training``.
    """
    T, B, H, P, dt = p.T, p.B, p.H, p.P, p.dtype
    y = empty((T, B, P), dt)
    h_n = np.empty((B, P), dtype=dt)
    c_n = np.empty((B, H), dtype=dt)
    cache = (_kernels.kept_empty((_kernels.lstmp_cache_size(T, B, H, P),), dt)
             if p.training else None)
    _kernels.lstmp_forward(y, h_n, c_n, cache, p.x, p.h0, p.c0, p.w_ih, p.w_hh, p.w_hr,
                           p.b_ih, p.b_hh, p.lengths, p.reverse, get_num_threads())
    return y, h_n, c_n, (ProjContext(p, cache) if p.training else None)


def backward_proj(ctx: ProjContext, grads: Grads, need_dx: bool = True) -> tuple:
    """The backward of :func:`forward_proj`: ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh,
    dw_hr)`` (``dx`` None unless ``need_dx``; a bias gradient None where that bias was)."""
    p = ctx.p
    dt = p.dtype
    T, B, I, H, P = p.T, p.B, p.I, p.H, p.P
    dx = empty((T, B, I), dt) if need_dx else None
    dh0 = np.empty((B, P), dtype=dt)
    dc0 = np.empty((B, H), dtype=dt)
    dw_ih = zeros((4 * H, I), dt)
    dw_hh = zeros((4 * H, P), dt)
    dw_hr = zeros((P, H), dt)
    db_ih = np.zeros(4 * H, dtype=dt) if p.b_ih is not None else None
    db_hh = np.zeros(4 * H, dtype=dt) if p.b_hh is not None else None
    _kernels.lstmp_backward(dx, dh0, dc0, dw_ih, dw_hh, dw_hr, db_ih, db_hh, ctx.cache, p.x,
                            p.w_ih, p.w_hh, p.w_hr, grads.dy, grads.dh_n, grads.dc_n,
                            p.lengths, p.reverse, get_num_threads())
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr


_WEIGHTS = ("w_ih", "w_hh", "b_ih", "b_hh")


def _key(a: np.ndarray | None) -> tuple | None:
    """Which array ``a`` is: its data pointer, shape, strides and dtype."""
    return None if a is None else _kernels.array_key(a)


def _checksum(arrays: tuple) -> tuple:
    """Checksums of the arrays' bytes (fr_checksum: one pass; catches any change of a weight)."""
    return tuple(None if a is None else _kernels.checksum(a) for a in arrays)


class PreparedWeights:
    """A layer's weights prepared once for a precision: see
    :func:`fastrnn.functional.prepare_weights`.

    Attributes
    ----------
    cell, precision : str
    check : {"content", "identity"}
        What a call checks before using the prepared weights (see ``prepare_weights``).
    version : object
        Free for the owner (a layer, the drop-in) to record which version of its weights the
        object holds; nothing here reads or changes it.
    I, H, G : int
    """

    __slots__ = ("cell", "precision", "check", "version", "I", "H", "G", "_arrays", "_keys",
                 "_sum", "_packed", "_arch")

    def __init__(self, cell: str, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, *,
                 precision: str, check: str = "content") -> None:
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {tuple(CELLS)}, got {cell!r}")
        if check not in ("content", "identity"):
            raise ValueError(f"check must be 'content' or 'identity', got {check!r}")
        self.cell = cell
        self.precision = check_precision(precision)
        self.check = check
        self.version: Any = None
        self.update(w_ih, w_hh, b_ih, b_hh)

    def update(self, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any) -> None:
        """Prepare again from these weights (after the owner changed them).

        Parameters
        ----------
        w_ih : array_like of float32, shape (G*H, I), or None
        w_hh : array_like of float32, shape (G*H, H)
        b_ih, b_hh : array_like of float32, shape (G*H,), or None
        """
        from ._validate import prepare
        spec = CELLS[self.cell]
        G = spec.gates
        H = int(np.shape(w_hh)[1]) if np.ndim(w_hh) == 2 else 0
        I = int(np.shape(w_ih)[1]) if w_ih is not None and np.ndim(w_ih) == 2 else G * H
        x = np.empty((0, 1, I), np.float32)
        p = prepare(self.cell, x, None, None, w_ih, w_hh, b_ih, b_hh, None,
                    spec.nonlinearities[0] if spec.nonlinearities else None, False, False,
                    self.precision)
        self._set(p)

    def _set(self, p: Prepared) -> None:
        arrays = tuple(getattr(p, k) for k in _WEIGHTS)
        self.I, self.H, self.G = p.I, p.H, p.G
        self._arrays = arrays  # held: their memory cannot be reused by other arrays
        self._keys = tuple(_key(a) for a in arrays)
        self._sum = _checksum(arrays) if self.check == "content" else None
        self._packed: np.ndarray | None = None
        if self.precision != "float32":
            self.packed()

    def packed(self) -> np.ndarray:
        """The weights packed once (made on first use): for the reduced-precision kernels, or
        for float32 the slice the forward's threads would each pack per call
        (:func:`fastrnn._kernels.prepack`, made again after :func:`fastrnn.set_arch` changed
        the SIMD path, whose tiles it follows)."""
        if self.precision == "float32" and self._packed is not None and \
                self._arch != _kernels.arch_code():
            self._packed = None
        if self._packed is None:
            self._arch = _kernels.arch_code()
            w_ih, w_hh, b_ih, b_hh = self._arrays
            self._packed = (
                _kernels.prepack(self.cell, w_ih, w_hh, b_ih, b_hh)
                if self.precision == "float32" else
                _kernels.lp_pack(self.cell, self.precision, w_ih, w_hh, b_ih, b_hh))
        return self._packed

    def _sync(self, p: Prepared) -> None:
        """Make the object hold p's weights: pack again if they are other arrays or changed."""
        if p.cell != self.cell:
            raise ValueError(f"prepared weights are for cell {self.cell!r}, the call runs "
                             f"{p.cell!r}")
        if p.precision != self.precision:
            raise ValueError(f"prepared weights are for precision {self.precision!r}, the call "
                             f"asks for {p.precision!r}")
        if not self._holds(tuple(getattr(p, k) for k in _WEIGHTS)):
            self._set(p)

    def _holds(self, arrays: tuple) -> bool:
        """Whether the object holds these (w_ih, w_hh, b_ih, b_hh) ndarrays (or None) as
        prepared: the same arrays and, under ``check="content"``, the same bytes."""
        return _kernels.keys_match(arrays, self._keys) and (
            self.check != "content" or _checksum(arrays) == self._sum)

    def __repr__(self) -> str:
        return (f"<fastrnn PreparedWeights {self.cell} {self.precision} I={self.I} H={self.H} "
                f"check={self.check}>")


def forward_prec(p: Prepared, prepared: PreparedWeights | None) -> tuple:
    """The whole-sequence forward of p in its precision, with prepared weights (or not).

    Returns
    -------
    y, h_n, c_n, ctx
        As :func:`forward`.
    """
    if prepared is not None:
        prepared._sync(p)
    if p.precision == "float32":
        return forward(p, packed=prepared.packed() if prepared is not None else None)
    # a one-off call packs its weights itself (no prepared-weights object: its keys and checks
    # serve later calls only)
    packed = (prepared.packed() if prepared is not None else
              _kernels.lp_pack(p.cell, p.precision, p.w_ih, p.w_hh, p.b_ih, p.b_hh))
    spec = CELLS[p.cell]
    T, B, H = p.T, p.B, p.H
    act = NONLINEARITIES[p.nonlinearity] if p.nonlinearity is not None else 0
    y = empty((T, B, H), np.float32)
    h_n = np.empty((B, H), dtype=np.float32)
    c_n = np.empty((B, H), dtype=np.float32) if spec.has_cell_state else None
    cache = (_kernels.kept_empty((_kernels.cache_size(p.cell, T, B, H),), np.dtype(np.float32))
             if p.training else None)
    hq = empty((T, B, H), np.float32) if p.training else None
    _kernels.lp_forward(p.cell, packed, y, h_n, c_n, cache, hq, p.x, p.h0, p.c0,
                        p.lengths, act, p.reverse, get_num_threads())
    if not p.training:
        return y, h_n, c_n, None
    # the backward's bf16 products round x and the weights as they pack them (fastrnn.h,
    # fr_cell_backward_hq_s): the float32 arrays go as they are
    return y, h_n, c_n, Context(p.cell, act, p.reverse, p, cache, hq)


assert PRECISIONS[0] == "float32"
