"""Input validation and normalisation shared by ``fastrnn.reference`` and ``fastrnn.functional``.

Both implementations of the functional ops call :func:`prepare` first and
:func:`prepare_grads` at the start of a backward, so they accept and reject exactly the
same inputs with the same messages.

Dtype policy
------------
Every op computes in one floating dtype, float32 or float64:

* float64 if any array argument is float64, float32 if any is float32; both present is a
  ``TypeError`` that says which arguments are float32 and which float64;
* otherwise float32 if any array is float16, else (integers only) float64;
* each array is then converted to the compute dtype only when the conversion is lossless
  (``np.can_cast(src, dst, "safe")``), else ``TypeError`` naming the argument.

Only arguments that carry a dtype (NumPy arrays and scalars, or objects with a ``dtype``
attribute) take part in choosing the dtype. Python lists and scalars are "weak", as Python
scalars are in NumPy 2: they are converted to whatever dtype the arrays chose (float64
when every argument is weak). Complex, boolean, string, object and other non-numeric
dtypes are a ``TypeError`` naming the argument.

The returned arrays are C-contiguous; a copy is made only when needed (wrong dtype or
layout), so a returned array may be the caller's own object: never write into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ._cells import CELLS, cell_spec

__all__ = ["BATCH_FIRST_HINT", "PRECISIONS", "TIME_MAJOR", "Grads", "Prepared", "check_ctx",
           "check_precision", "prepare",
           "prepare_grads"]

_F16 = np.dtype(np.float16)
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


@dataclass(slots=True, eq=False)
class Prepared:
    """Validated, normalised inputs of one forward op.

    Attributes
    ----------
    cell : str
        A name in the cell table (:data:`fastrnn._cells.CELLS`).
    x : ndarray of shape (T, B, I), or None
        None only for a native forward whose projected input rows come from a table
        (:func:`fastrnn._native.forward_rows`, the Keras layers' Embedding fold).
    h0 : ndarray, shape (B, H)
        Always an array: zeros (freshly allocated) when the caller passed None.
    c0 : ndarray of shape (B, H), or None
        LSTM only (zeros when the caller passed None); None for RNN and GRU.
    w_ih : ndarray of shape (G*H, I), or None
        None: the identity (I = G*H; x holds the input projection).
    w_hh : ndarray, shape (G*H, H)
    b_ih, b_hh : ndarray of shape (G*H,), or None
        None when the caller passed None (a zero bias whose gradient is None).
    lengths : ndarray of int64, shape (B,), or None
        Values in [0, T].
    nonlinearity : str or None
        ``"tanh"`` or ``"relu"`` for the RNN, None for LSTM and GRU.
    reverse, training : bool
    T, B, I, H, G : int
        Sequence length, batch, input width, hidden size, gate count.
    dtype : numpy.dtype
        float32 or float64; every float array above has this dtype and is C-contiguous.
    h0_given, c0_given : bool
        Whether the caller passed h0 / c0 (False: they were None and are zeros here).
    precision : str
        The compute precision, a name in :data:`PRECISIONS` (``"float32"``: the dtype's
        own arithmetic; ``"bfloat16"`` and ``"int8"`` need float32 arrays).
    """

    cell: str
    x: np.ndarray | None
    h0: np.ndarray
    c0: np.ndarray | None
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    lengths: np.ndarray | None
    nonlinearity: str | None
    reverse: bool
    training: bool
    T: int
    B: int
    I: int
    H: int
    G: int
    dtype: np.dtype
    h0_given: bool
    c0_given: bool
    precision: str = "float32"

    @property
    def has_b_ih(self) -> bool:
        """Whether ``b_ih`` was given (not None)."""
        return self.b_ih is not None

    @property
    def has_b_hh(self) -> bool:
        """Whether ``b_hh`` was given (not None)."""
        return self.b_hh is not None


class Grads(NamedTuple):
    """Validated output gradients of one backward op (None means zero).

    ``dy`` is (T, B, H), ``dh_n`` and ``dc_n`` are (B, H); all C-contiguous in the
    forward's dtype.
    """

    dy: np.ndarray | None
    dh_n: np.ndarray | None
    dc_n: np.ndarray | None


def _to_array(name: str, value: Any) -> tuple[np.ndarray, bool]:
    """Return ``(array, weak)``; weak means the value carried no dtype of its own."""
    weak = not hasattr(value, "dtype")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} could not be converted to a numeric array: {e}") from None
    if arr.dtype.kind not in "fiu" or (arr.dtype.kind == "f" and arr.dtype.itemsize > 8):
        raise TypeError(
            f"{name} must be an array of real floating-point (float32 or float64) or integer "
            f"values, got dtype {arr.dtype}"
        )
    return arr, weak


def _common_float_dtype(given: dict[str, Any]) -> np.dtype | None:
    """The dtype when every non-None value is a C-contiguous ndarray (not a subclass) of one
    dtype, float32 or float64 (the kernels take them as they are); else None."""
    dtype = None
    for v in given.values():
        if v is None:
            continue
        if type(v) is not np.ndarray or not v.flags.c_contiguous:
            return None
        if dtype is None:
            dtype = v.dtype
            if dtype != _F32 and dtype != _F64:
                return None
        elif v.dtype != dtype:
            return None
    return dtype


#: What every message about the layout says.
TIME_MAJOR = "x is time-major (T, B, I)"
#: The advice of a message whose shapes suggest a batch-first ``x``.
BATCH_FIRST_HINT = ("for a batch-first x of shape (B, T, I) pass x.transpose(1, 0, 2) (and "
                    "transpose y back)")


def _check_shape(name: str, arr: np.ndarray, expected: tuple[int, ...],
                 what: str | Callable[[], str], note: str | Callable[[], str] = "") -> None:
    """``what`` names the expected shape, ``note`` follows the shapes (why, or a hint); a
    callable builds that text only on a mismatch."""
    if arr.shape != expected:
        if callable(what):
            what = what()
        if callable(note):
            note = note()
        raise ValueError(f"{name} must have shape {what} = {expected}, got {arr.shape}"
                         + (f": {note}" if note else ""))


def _batch_note(name: str, shape: tuple[int, ...], T: int, B: int, H: int) -> str:
    """Why a state's first size must be B; the batch-first hint when it is T instead."""
    note = f"{TIME_MAJOR}, so B = x.shape[1] = {B}"
    if T != B and shape == (T, H):
        note += f"; {name}'s batch {T} is x.shape[0]: {BATCH_FIRST_HINT}"
    return note


def _choose_dtype(strong: dict[str, np.dtype]) -> np.dtype:
    f64 = [n for n, d in strong.items() if d == _F64]
    f32 = [n for n, d in strong.items() if d == _F32]
    if f64 and f32:
        raise TypeError(
            "inputs mix float32 and float64: "
            f"{', '.join(f32)} {'is' if len(f32) == 1 else 'are'} float32 but "
            f"{', '.join(f64)} {'is' if len(f64) == 1 else 'are'} float64; "
            "convert them all to one dtype"
        )
    if f64:
        return _F64
    if f32:
        return _F32
    if any(d == _F16 for d in strong.values()):
        return _F32
    return _F64


def _convert(name: str, arr: np.ndarray, weak: bool, dtype: np.dtype) -> np.ndarray:
    if not weak and not np.can_cast(arr.dtype, dtype, "safe"):
        raise TypeError(
            f"{name} has dtype {arr.dtype}, which cannot be converted to the compute dtype "
            f"{dtype} without loss; pass it as {dtype}"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


def _prepare_lengths(lengths: Any, T: int, B: int) -> np.ndarray | None:
    if lengths is None:
        return None
    weak = not hasattr(lengths, "dtype")
    try:
        arr = np.asarray(lengths)
    except (ValueError, TypeError) as e:
        raise TypeError(f"lengths could not be converted to an integer array: {e}") from None
    if arr.dtype.kind not in "iu":
        if weak and arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"lengths must be an array of integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        note = f"one length per sequence; {TIME_MAJOR}, so B = x.shape[1] = {B}"
        if T != B and arr.shape == (T,):
            note += f"; these are x.shape[0] lengths: {BATCH_FIRST_HINT}"
        raise ValueError(f"lengths must have shape (B,) = ({B},), got {arr.shape}: {note}")
    bad = (arr < 0) | (arr > T)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"lengths must be in [0, T] = [0, {T}], got lengths[{i}] = "
                         f"{int(arr[i])}: {TIME_MAJOR}, so T = x.shape[0] = {T} steps")
    return np.ascontiguousarray(arr, dtype=np.int64)


#: Bytes an array may hold (NumPy's limit; the C kernels index with int64_t).
_MAX_BYTES = int(np.iinfo(np.intp).max)
#: Cache blocks of (T, B, H) a training forward keeps, at most (LSTM: h, 4 gates, c, tanh c).
_MAX_CACHE_BLOCKS = 7


def _check_sizes(T: int, B: int, H: int, dtype: np.dtype, training: bool) -> None:
    """Reject sizes whose outputs could not exist: a ValueError naming the sizes instead of
    NumPy's "array is too big" deep inside. Reachable only with an empty input (I = 0), which
    NumPy allows to have a huge T*B; every other size is bounded by an array the caller holds."""
    n = T * B * H * (_MAX_CACHE_BLOCKS if training else 1)
    if n * dtype.itemsize > _MAX_BYTES:
        cache = " and the training cache" if training else ""
        raise ValueError(
            f"sizes T={T}, B={B}, H={H} (from x and w_hh) are too large: y (T, B, H){cache} "
            f"would need {n * dtype.itemsize} bytes, more than an array can hold ({_MAX_BYTES})"
        )


#: The compute precisions of the ops: the dtype's own arithmetic, bfloat16 GEMM operands
#: (float32 accumulation), int8 GEMM operands (int32 accumulation; inference only).
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "int8")
_PRECISION_ALIASES = {"bf16": "bfloat16", "fp32": "float32"}


def check_precision(precision: Any, training: bool = False) -> str:
    """The canonical name of ``precision`` (``"bf16"`` is ``"bfloat16"``).

    Raises
    ------
    ValueError
        An unknown name, or ``"int8"`` with ``training`` (int8 is inference-only).
    """
    if not isinstance(precision, str):
        raise TypeError(f"precision must be a str, one of {PRECISIONS}, got "
                        f"{type(precision).__name__}")
    name = _PRECISION_ALIASES.get(precision, precision)
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} (or 'bf16'), got {precision!r}")
    if name == "int8" and training:
        raise ValueError("int8 is inference-only: pass training=False with precision='int8' "
                         "(or train in 'bfloat16' or 'float32')")
    return name


def _reduced_dtype(precision: str, strong: dict[str, np.dtype]) -> np.dtype:
    """float32, the one compute dtype of a reduced precision; TypeError naming a float64."""
    f64 = [n for n, d in strong.items() if d == _F64]
    if f64:
        raise TypeError(
            f"precision={precision!r} computes on float32 arrays, but "
            f"{', '.join(f64)} {'is' if len(f64) == 1 else 'are'} float64; pass "
            f"{'it' if len(f64) == 1 else 'them'} as float32 (e.g. .astype(np.float32))")
    return _F32


def prepare(
    cell: str,
    x: Any,
    h0: Any,
    c0: Any,
    w_ih: Any,
    w_hh: Any,
    b_ih: Any,
    b_hh: Any,
    lengths: Any = None,
    nonlinearity: str | None = None,
    reverse: Any = False,
    training: Any = True,
    precision: Any = "float32",
) -> Prepared:
    """Validate and normalise the inputs of a forward op.

    Parameters
    ----------
    cell : {"rnn", "lstm", "gru"}
    x : array_like, shape (T, B, I)
    h0 : array_like of shape (B, H), or None
    c0 : array_like of shape (B, H), or None
        LSTM only; must be None for the other cells.
    w_ih : array_like of shape (G*H, I), or None
        None: x already holds the input projection (then I must equal G*H).
    w_hh : array_like, shape (G*H, H)
        H is read from ``w_hh.shape[1]`` and must be at least 1.
    b_ih, b_hh : array_like of shape (G*H,), or None
    lengths : array_like of int, shape (B,), or None
        Each in [0, T].
    nonlinearity : {"tanh", "relu"} or None
        Required for the RNN (``"tanh"`` or ``"relu"``); must be None for LSTM and GRU.
    reverse, training : bool
    precision : {"float32", "bfloat16", "bf16", "int8"}
        A reduced precision needs float32 arrays (a float64 one is a TypeError naming it;
        dtype-less values become float32); ``"int8"`` needs ``training`` False.

    Returns
    -------
    Prepared
        C-contiguous arrays in one compute dtype (see the module docstring) and the sizes.

    Raises
    ------
    ValueError
        A wrong rank or shape, a length out of range, an unknown nonlinearity; the
        message names the argument and the expected shape.
    TypeError
        A non-numeric, complex or boolean dtype, mixed float32/float64, a lossy
        conversion, a non-integer ``lengths``; the message names the argument.
    """
    spec = cell_spec(cell)
    G = spec.gates
    cname = spec.title
    if spec.nonlinearities:
        if not isinstance(nonlinearity, str) or nonlinearity not in spec.nonlinearities:
            raise ValueError(f"nonlinearity must be {' or '.join(map(repr, spec.nonlinearities))}"
                             f", got {nonlinearity!r}")
    elif nonlinearity is not None:
        raise ValueError(f"nonlinearity is only for the RNN; {cname} takes None")
    if not spec.has_cell_state and c0 is not None:
        raise ValueError(f"c0 is only for the LSTM; {cname} takes None")
    reverse = _flag("reverse", reverse)
    training = _flag("training", training)
    precision = check_precision(precision, training)
    reduced = precision != "float32"

    given = {"x": x, "h0": h0, "c0": c0, "w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}
    for name in ("x", "w_hh"):
        if given[name] is None:
            raise TypeError(f"{name} is required, got None")
    fast_dtype = _common_float_dtype(given)
    if fast_dtype is not None:  # nothing to convert: skip the general path (stream calls)
        arrays = {name: (v, False) for name, v in given.items() if v is not None}
    else:
        arrays = {name: _to_array(name, v) for name, v in given.items() if v is not None}

    xa = arrays["x"][0]
    if xa.ndim != 3:
        hint = "; one sequence of shape (T, I) is x[:, None, :]" if xa.ndim == 2 else ""
        raise ValueError(f"x must be a 3-D time-major array of shape (T, B, I) (steps, batch, "
                         f"features), got shape {xa.shape}{hint}")
    T, B, I = (int(s) for s in xa.shape)
    whh = arrays["w_hh"][0]
    if whh.ndim != 2:
        raise ValueError(
            f"w_hh must be a 2-D array of shape (G*H, H) for {cname}, got shape {whh.shape}"
        )
    H = int(whh.shape[1])
    if H < 1:
        raise ValueError(f"the hidden size H = w_hh.shape[1] must be >= 1, got {whh.shape}")
    def sizes() -> str:
        return f"for {cname} with hidden size {H}"

    _check_shape("w_hh", whh, (G * H, H), lambda: f"(G*H, H) {sizes()}")
    if "w_ih" in arrays:
        _check_shape("w_ih", arrays["w_ih"][0], (G * H, I),
                     lambda: f"(G*H, I) {sizes()} and input size {I}")
    elif I != G * H:
        raise ValueError(
            f"w_ih=None means x already holds the input projection, so x must have the "
            f"time-major shape (T, B, G*H) = (T, B, {G * H}) {sizes()}; got x of shape "
            f"{xa.shape} (pass w_ih of "
            f"shape (G*H, I) = ({G * H}, {I}) to project it)")
    for name in ("b_ih", "b_hh"):
        if name in arrays:
            _check_shape(name, arrays[name][0], (G * H,), lambda: f"(G*H,) {sizes()}")
    for name in ("h0", "c0"):
        if name in arrays:
            a = arrays[name][0]
            if a.shape != (B, H):
                _check_shape(name, a, (B, H), f"(B, H) {sizes()}",
                             _batch_note(name, a.shape, T, B, H))

    if reduced and fast_dtype != _F32:
        strong = {n: a.dtype for n, (a, weak) in arrays.items() if not weak}
        dtype = _reduced_dtype(precision, strong)
        _check_sizes(T, B, H, dtype, training)
        out = {n: _convert(n, a, weak, dtype) for n, (a, weak) in arrays.items()}
    elif fast_dtype is not None:  # float32 arrays for a reduced precision too
        dtype = fast_dtype
        _check_sizes(T, B, H, dtype, training)
        out = {n: a for n, (a, _) in arrays.items()}
    else:
        dtype = _choose_dtype({n: a.dtype for n, (a, weak) in arrays.items() if not weak})
        _check_sizes(T, B, H, dtype, training)
        out = {n: _convert(n, a, weak, dtype) for n, (a, weak) in arrays.items()}
    lens = _prepare_lengths(lengths, T, B)

    h0a = out["h0"] if "h0" in out else np.zeros((B, H), dtype)
    c0a: np.ndarray | None = None
    if spec.has_cell_state:
        c0a = out["c0"] if "c0" in out else np.zeros((B, H), dtype)
    return Prepared(
        cell=cell,
        x=out["x"],
        h0=h0a,
        c0=c0a,
        w_ih=out.get("w_ih"),
        w_hh=out["w_hh"],
        b_ih=out.get("b_ih"),
        b_hh=out.get("b_hh"),
        lengths=lens,
        nonlinearity=nonlinearity if spec.nonlinearities else None,
        reverse=reverse,
        training=training,
        T=T,
        B=B,
        I=I,
        H=H,
        G=G,
        dtype=dtype,
        h0_given=h0 is not None,
        c0_given=c0 is not None,
        precision=precision,
    )


def _prepare_grad(
    name: str, value: Any, shape: tuple[int, ...], what: str, dtype: np.dtype,
    note: Callable[[tuple[int, ...]], str] | None = None,
) -> np.ndarray | None:
    if value is None:
        return None
    arr, weak = _to_array(name, value)
    _check_shape(name, arr, shape, what, "" if note is None else lambda: note(arr.shape))
    if not weak and arr.dtype in (_F32, _F64) and arr.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {arr.dtype} but the forward ran in {dtype}; "
            "float32 and float64 cannot be mixed"
        )
    return _convert(name, arr, weak, dtype)


def prepare_grads(meta: Any, dy: Any, dh_n: Any, dc_n: Any = None) -> Grads:
    """Validate and normalise the output gradients given to a backward op.

    Parameters
    ----------
    meta : Prepared or any object with attributes ``cell``, ``T``, ``B``, ``H``, ``dtype``
        Describes the forward (typically the ``Prepared`` kept in the ctx).
    dy : array_like of shape (T, B, H), or None
    dh_n : array_like of shape (B, H), or None
    dc_n : array_like of shape (B, H), or None
        LSTM only; must be None for the other cells.

    Returns
    -------
    Grads
        ``(dy, dh_n, dc_n)``, each None (zero) or a C-contiguous array in ``meta.dtype``.

    Raises
    ------
    ValueError
        A wrong shape (the message names the argument and the expected shape).
    TypeError
        A non-numeric dtype, a float dtype other than the forward's, a lossy conversion.
    """
    T, B, H, dtype = meta.T, meta.B, meta.H, np.dtype(meta.dtype)
    spec = CELLS[meta.cell]
    if not spec.has_cell_state and dc_n is not None:
        raise ValueError(f"dc_n is only for the LSTM; {spec.title} takes None")

    def dy_note(shape: tuple[int, ...]) -> str:
        note = f"dy is time-major (T, B, H) like y, as {TIME_MAJOR}"
        if T != B and shape == (B, T, H):
            note += "; for a batch-first dy of shape (B, T, H) pass dy.transpose(1, 0, 2)"
        return note

    def state_note(shape: tuple[int, ...]) -> str:
        return f"{TIME_MAJOR}, so B = x.shape[1] = {B}"

    return Grads(
        _prepare_grad("dy", dy, (T, B, H), "(T, B, H)", dtype, dy_note),
        _prepare_grad("dh_n", dh_n, (B, H), "(B, H)", dtype, state_note),
        _prepare_grad("dc_n", dc_n, (B, H), "(B, H)", dtype, state_note),
    )


def check_ctx(ctx: Any, ctx_type: type, cell: str | None, module: str) -> None:
    """Check that ``ctx`` is a training ctx of ``ctx_type`` made by ``<cell>_forward``.

    ``ctx_type`` must have a ``cell`` attribute; ``cell`` None accepts any cell's ctx (the
    generic ``cell_backward``). ``module`` is used in the message (e.g.
    ``"fastrnn.reference"``). Raises ``TypeError`` otherwise.
    """
    name = cell or "cell"
    if ctx is None:
        raise TypeError(
            f"ctx is None: {name}_backward needs the ctx of {name}_forward(..., training=True)"
        )
    if not isinstance(ctx, ctx_type):
        raise TypeError(
            f"ctx must be the ctx returned by {module}.{name}_forward, "
            f"got {type(ctx).__module__}.{type(ctx).__qualname__}"
        )
    if cell is not None and ctx.cell != cell:
        raise TypeError(
            f"ctx comes from {ctx.cell}_forward, but {cell}_backward needs the ctx of "
            f"{cell}_forward"
        )


@dataclass(slots=True, eq=False)
class PreparedProj:
    """Validated, normalised inputs of an LSTM forward with a projection (``w_hr``).

    As :class:`Prepared` for the LSTM, with ``w_hh`` (4*H, P), ``w_hr`` (P, H), ``h0``
    (B, P), ``c0`` (B, H) and the outputs ``y`` (T, B, P), ``h_n`` (B, P), ``c_n`` (B, H).
    """

    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    w_hr: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    lengths: np.ndarray | None
    reverse: bool
    training: bool
    T: int
    B: int
    I: int
    H: int
    P: int
    dtype: np.dtype
    cell: str = "lstm"
    G: int = 4


def check_proj_args(cell: str, precision: str, nonlinearity: Any,
                    prepared: Any = None) -> None:
    """Raise ValueError unless the arguments beside ``w_hr`` fit an LSTM with a projection:
    ``cell="lstm"``, ``precision="float32"``, no ``prepared`` weights, no nonlinearity.
    (The forwards of :mod:`fastrnn.functional` and :mod:`fastrnn.reference` call it.)"""
    if cell != "lstm":
        raise ValueError(f"w_hr (a projection) is only for the LSTM, got cell {cell!r}")
    if precision != "float32" or prepared is not None:
        raise ValueError("w_hr (LSTM with projection) runs in the arrays' own precision "
                         "only: pass precision='float32' and prepared=None")
    if nonlinearity is not None:
        raise ValueError("nonlinearity is only for the RNN; LSTM takes None")


def prepare_proj(x: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, w_hr: Any, b_ih: Any,
                 b_hh: Any, lengths: Any = None, reverse: Any = False,
                 training: Any = True) -> PreparedProj:
    """Validate and normalise the inputs of an LSTM forward with a projection.

    Shapes: ``x`` (T, B, I), ``h0`` (B, P) or None, ``c0`` (B, H) or None, ``w_ih``
    (4*H, I), ``w_hh`` (4*H, P), ``w_hr`` (P, H) (H and P are read from it), biases (4*H,)
    or None, ``lengths`` (B,) or None. ValueError names a wrong shape, TypeError a wrong
    dtype (as :func:`prepare`).
    """
    reverse = _flag("reverse", reverse)
    training = _flag("training", training)
    given = {"x": x, "h0": h0, "c0": c0, "w_ih": w_ih, "w_hh": w_hh, "w_hr": w_hr,
             "b_ih": b_ih, "b_hh": b_hh}
    for name in ("x", "w_ih", "w_hh", "w_hr"):
        if given[name] is None:
            raise TypeError(f"{name} is required with a projection, got None")
    arrays = {name: _to_array(name, v) for name, v in given.items() if v is not None}
    xa = arrays["x"][0]
    if xa.ndim != 3:
        raise ValueError(f"x must be a 3-D time-major array of shape (T, B, I), got shape "
                         f"{xa.shape}")
    T, B, I = (int(s) for s in xa.shape)
    whr = arrays["w_hr"][0]
    if whr.ndim != 2 or whr.shape[0] < 1 or whr.shape[1] < 1:
        raise ValueError(f"w_hr must be a 2-D array of shape (P, H) with P, H >= 1, got "
                         f"shape {whr.shape}")
    P, H = (int(s) for s in whr.shape)
    what = f"for the LSTM with hidden size H = {H} and projection size P = {P} (from w_hr)"
    expected = {"w_ih": (4 * H, I), "w_hh": (4 * H, P), "b_ih": (4 * H,), "b_hh": (4 * H,),
                "h0": (B, P), "c0": (B, H)}
    text = {"w_ih": "(4*H, I)", "w_hh": "(4*H, P)", "b_ih": "(4*H,)", "b_hh": "(4*H,)",
            "h0": "(B, P)", "c0": "(B, H)"}
    for name, shape in expected.items():
        if name in arrays:
            _check_shape(name, arrays[name][0], shape, f"{text[name]} {what}")
    dtype = _choose_dtype({n: a.dtype for n, (a, weak) in arrays.items() if not weak})
    _check_sizes(T, B, H + P, dtype, training)
    out = {n: _convert(n, a, weak, dtype) for n, (a, weak) in arrays.items()}
    return PreparedProj(
        x=out["x"], h0=out["h0"] if "h0" in out else np.zeros((B, P), dtype),
        c0=out["c0"] if "c0" in out else np.zeros((B, H), dtype), w_ih=out["w_ih"],
        w_hh=out["w_hh"], w_hr=out["w_hr"], b_ih=out.get("b_ih"), b_hh=out.get("b_hh"),
        lengths=_prepare_lengths(lengths, T, B), reverse=reverse, training=training, T=T, B=B,
        I=I, H=H, P=P, dtype=dtype)


def prepare_grads_proj(p: PreparedProj, dy: Any, dh_n: Any, dc_n: Any) -> Grads:
    """The output gradients of an LSTM forward with a projection: ``dy`` (T, B, P), ``dh_n``
    (B, P), ``dc_n`` (B, H), each None (zero) or an array (checked as :func:`prepare_grads`)."""
    return Grads(
        _prepare_grad("dy", dy, (p.T, p.B, p.P), "(T, B, P)", p.dtype),
        _prepare_grad("dh_n", dh_n, (p.B, p.P), "(B, P)", p.dtype),
        _prepare_grad("dc_n", dc_n, (p.B, p.H), "(B, H)", p.dtype),
    )
