"""PyTorch drop-in: :class:`RNN`, :class:`LSTM` and :class:`GRU` running on fastrnn's kernels.

The three classes subclass :class:`torch.nn.RNN`, :class:`torch.nn.LSTM` and
:class:`torch.nn.GRU` and take exactly their arguments, so parameters, ``state_dict``,
``repr`` and ``load_state_dict`` are torch's own. Their ``forward`` accepts what torch's
accepts (batched or unbatched tensors, ``batch_first``, ``h0`` / ``(h0, c0)``,
:class:`~torch.nn.utils.rnn.PackedSequence`, sorted or not) and returns what torch returns;
on CPU float32/float64 tensors it runs fastrnn's forward kernels, and autograd calls
fastrnn's backward kernels (one :class:`torch.autograd.Function` per layer and direction).
A backward that is itself differentiated (``create_graph=True``: gradient penalties,
Hessian-vector products, ``gradgradcheck``) re-runs that layer-direction in torch's own ops
and differentiates it, so higher-order gradients are torch's.
Stacking, bidirectional concatenation and inter-layer dropout (torch's own dropout, so
seeds behave as in torch) are composed here.

The kernels are also registered as the custom operators ``fastrnn::cell_forward``,
``fastrnn::cell_infer`` (a graph's forward that needs no gradient) and
``fastrnn::cell_backward`` (:mod:`torch.library`: shape functions, autograd, vmap rules).
Inside ``torch.compile`` (``fullgraph=True`` included) and ``torch.export`` the drop-ins call
them, so the graphs keep fastrnn's kernels; a packed sequence inside ``torch.compile`` runs
eagerly on the kernels outside the graph (its layout is data-dependent; torch's own modules
break the graph there too). The first drop-in constructed or converted by :func:`accelerate`
sets ``torch._dynamo.config.allow_rnn``, without which ``torch.compile`` refuses to trace any
``nn.RNN/LSTM/GRU`` instance; from then on torch's own modules in the process trace with
torch's experimental support (importing this module alone changes nothing). Batched gradients
(``autograd.grad(..., is_grads_batched=True)``, ``jacobian(..., vectorize=True)``) run the
backward operator once per gradient. Under ``torch.func`` transforms (``grad``, ``vmap``,
``jacrev``, ``jacfwd``) and forward-mode AD the drop-ins run the cells' maths in torch ops
(differentiable in every mode, and batchable by ``vmap``, which torch's own modules are not),
after a one-time :class:`FallbackWarning`.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` float32 input runs fastrnn's bfloat16
kernels (GEMM operands rounded to bfloat16, float32 accumulation and gate maths; training
works) and returns torch's output dtypes under autocast (bfloat16 for the LSTM and RNN,
float32 for the GRU). :func:`quantize_dynamic` switches drop-ins to fastrnn's int8 inference
kernels. The weights are prepared (rounded, quantized, packed) once per module and
layer-direction and again whenever a parameter changes storage or ``_version`` (an
optimizer step, ``load_state_dict``); they are kept outside the module's state.

``LSTM(proj_size=P)`` (LSTM with projections) runs on fastrnn's float32/float64 kernels
(``csrc/lstm_proj.c``) on every path above: eager, autograd, packed sequences,
``torch.compile`` (the custom operators take an optional ``w_hr``) and the torch-ops paths.

Anything else not accelerated (other devices, other dtypes, TorchScript, autocast to float16,
autocast or int8 inside ``torch.compile``, bfloat16 or int8 with ``proj_size > 0``) runs
torch's own implementation after a one-time :class:`FallbackWarning` that says why.

:func:`accelerate` turns every ``nn.RNN/LSTM/GRU`` inside an existing model into its
fastrnn equivalent in place (the very same parameter tensors, so optimizers and hooks
keep working); :func:`restore` does the reverse. Pickling (``torch.save(model)``) stores a
drop-in as the ``torch.nn`` class it subclasses, so the file loads in any torch process
(with ``weights_only=True`` too) as torch's modules; :func:`accelerate` after loading makes
them fastrnn's again. Copies (:func:`copy.copy`, :func:`copy.deepcopy`) keep the drop-in.

Importing this module needs PyTorch (``pip install 'fastrnn[torch]'``); nothing else in
fastrnn imports torch.
"""

from __future__ import annotations

import copy
import functools
import warnings
import weakref
from typing import Any

import numpy as np

try:
    import torch
    import torch.autograd.forward_ad as _fwad
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.utils.rnn import PackedSequence
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "fastrnn.torch needs PyTorch, which is not installed; install it with "
        "pip install 'fastrnn[torch]' (the CPU build is enough)"
    ) from exc

# The ops: fastrnn's native kernels (fastrnn.reference has the same signatures).
from . import _native, _validate
from . import functional as _ops
from ._cells import CELLS, NONLINEARITIES

__all__ = ["GRU", "LSTM", "RNN", "FallbackWarning", "accelerate", "quantize_dynamic", "restore"]

_FLOATS = (torch.float32, torch.float64)


def _allow_rnn_tracing() -> None:
    """Let torch.compile trace the drop-ins into fastrnn's custom operators.

    Dynamo refuses every ``nn.RNN/LSTM/GRU`` instance, the drop-ins included, unless
    ``torch._dynamo.config.allow_rnn`` is set. The flag is process-wide and also sends torch's
    own modules through torch's experimental support, which fails for a compiled
    ``nn.LSTM``'s training in torch 2.13 (its ``mkldnn_rnn_layer`` outputs). So it is set when
    the first drop-in comes into being (constructed, or converted by :func:`accelerate`),
    not on import: a process that imports this module and uses no drop-in keeps torch's
    behaviour.
    """
    if not torch._dynamo.config.allow_rnn:
        torch._dynamo.config.allow_rnn = True
#: torch's RNN modes as fastrnn cells and non-linearities.
_MODES: dict[str, tuple[str, str | None]] = {
    "RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"), "LSTM": ("lstm", None),
    "GRU": ("gru", None)}
_PLAIN = (torch.Tensor, nn.Parameter)


def _onnx_export_check() -> Any:
    """A check equal to ``torch.onnx.is_in_onnx_export()`` without its two imports per call
    (1 us of a 40 us one-step call): the flags it reads, looked up once; torch's own function
    where they are not where this torch keeps them, and inside torch.compile (dynamo knows
    torch's function, and refuses to trace the flags' getter)."""
    try:
        from torch.onnx._internal.exporter import _flags
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    except ImportError:
        return torch.onnx.is_in_onnx_export
    if not (hasattr(_flags, "_is_onnx_exporting") and hasattr(GLOBALS, "in_onnx_export")):
        return torch.onnx.is_in_onnx_export
    return lambda: (torch.onnx.is_in_onnx_export() if torch.compiler.is_compiling() else
                    GLOBALS.in_onnx_export or _flags._is_onnx_exporting)


_in_onnx_export = _onnx_export_check()


class FallbackWarning(UserWarning):
    """A fastrnn drop-in module ran torch's own implementation instead of fastrnn's."""


_warned: set[str] = set()


def _warn_once(reason: str, instead: str = "torch's own implementation") -> None:
    if reason in _warned:
        return
    _warned.add(reason)
    warnings.warn(
        f"fastrnn.torch: {reason}; running {instead} instead (this warning is shown once)",
        FallbackWarning,
        stacklevel=5,  # _warn_once, forward, Module._call_impl, Module.__call__, caller
    )


# ---------------------------------------------------------------------------------------
# numpy <-> ops bridge


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    """Zero-copy numpy view of a CPU tensor (None stays None)."""
    return None if t is None else t.detach().numpy()


def _ops_forward(cell: str, nonlinearity: str | None, reverse: bool, lengths: np.ndarray | None,
                 training: bool, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None, *,
                 precision: str = "float32", prepared: Any = None):
    """The functional forward of ``cell`` on numpy arrays; returns (y, h_n, c_n, ctx).
    ``w_hr``: the LSTM's projection (``proj_size``), or None."""
    return _ops.cell_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                             nonlinearity=nonlinearity, lengths=lengths, reverse=reverse,
                             training=training, precision=precision, prepared=prepared,
                             w_hr=w_hr)


def _ops_backward(ctx: Any, dy, dh_n, dc_n, need_dx: bool):
    """The functional backward; returns (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr),
    dx None unless ``need_dx``, dw_hr None without a projection."""
    out = _ops.cell_backward(ctx, dy, dh_n, dc_n, need_dx=need_dx)
    return out if len(out) == 8 else (*out, None)


def _t(a: np.ndarray | None) -> torch.Tensor | None:
    return None if a is None else torch.from_numpy(a)


# ---------------------------------------------------------------------------------------
# The differentiable path: the cells' maths in torch ops (PyTorch's formulation), used only
# when a backward is itself differentiated (create_graph=True), where fastrnn's backward
# kernels, whose results carry no graph, would give silently wrong higher-order gradients.


def _rnn_step(gi: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, w_hh: torch.Tensor,
              b_hh: torch.Tensor | None, nonlinearity: str | None):
    """``h' = act(gi + W_hh h + b_hh)``; returns ``(h', None)``."""
    a = gi + F.linear(h, w_hh, b_hh)
    return (torch.relu(a) if nonlinearity == "relu" else torch.tanh(a)), None


def _lstm_step(gi: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, w_hh: torch.Tensor,
               b_hh: torch.Tensor | None, nonlinearity: str | None):
    """Gates i, f, g, o; ``c' = f c + i g``, ``h' = o tanh(c')``; returns ``(h', c')``."""
    i, f, g, o = (gi + F.linear(h, w_hh, b_hh)).chunk(4, 1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _gru_step(gi: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, w_hh: torch.Tensor,
              b_hh: torch.Tensor | None, nonlinearity: str | None):
    """Gates r, z, n with ``b_hn`` inside ``r * (...)``; ``h' = n + z (h - n)``."""
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, 1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n), None


#: One step of each cell in torch ops: ``step(gi, h, c, w_hh, b_hh, nonlinearity)`` with
#: ``gi = W_ih x_t + b_ih`` returns ``(h', c')`` (``c'`` None without a cell state).
_TORCH_STEPS = {"rnn": _rnn_step, "lstm": _lstm_step, "gru": _gru_step}


def _torch_forward(cell: str, nonlinearity: str | None, reverse: bool,
                   lengths: np.ndarray | None, x: torch.Tensor, h0: torch.Tensor | None,
                   c0: torch.Tensor | None, w_ih: torch.Tensor, w_hh: torch.Tensor,
                   b_ih: torch.Tensor | None, b_hh: torch.Tensor | None,
                   w_hr: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The kernels' forward (same arguments and conventions) in differentiable torch ops.

    Parameters
    ----------
    cell : str
        A name in :data:`fastrnn._cells.CELLS`.
    nonlinearity : str or None
        The RNN's ``"tanh"`` or ``"relu"``; None for the other cells.
    reverse : bool
        Run each sequence from its last valid step back to step 0.
    lengths : ndarray of int, shape (B,), or None
        Valid steps per sequence: outputs past a sequence's end are zero, and its state stays
        the one at its last valid step.
    x : Tensor, shape (T, B, I)
    h0, c0 : Tensor of shape (B, H), or None (zeros); ``c0`` for the LSTM only
    w_ih, w_hh, b_ih, b_hh : Tensor
        Weights in torch's layout; biases may be None.
    w_hr : Tensor of shape (P, H), or None
        The LSTM's projection (``proj_size = P``): the state and output are
        ``h_t = W_hr (o tanh(c_t))``, so ``h0``, ``h_n`` and ``y`` have P units.

    Returns
    -------
    y : Tensor, shape (T, B, H)
    h_n : Tensor, shape (B, H)
    c_n : Tensor of shape (B, H), or None (a cell without a cell state)
    """
    step = _TORCH_STEPS[cell]
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    gi = F.linear(x, w_ih, b_ih)
    h = x.new_zeros(B, H) if h0 is None else h0
    c = None
    if CELLS[cell].has_cell_state:  # H cell units (H != h's P units with a projection)
        c = x.new_zeros(B, w_hh.shape[0] // CELLS[cell].gates) if c0 is None else c0
    mask = None
    if lengths is not None:
        mask = (torch.arange(T)[:, None] < torch.from_numpy(lengths)[None, :]).unsqueeze(2)
    ys: list[torch.Tensor] = [x] * T  # placeholders, each step overwritten below
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h_new, c_new = step(gi[t], h, c, w_hh, b_hh, nonlinearity)
        if w_hr is not None:
            h_new = F.linear(h_new, w_hr)
        if mask is None:
            ys[t], h, c = h_new, h_new, c_new
        else:
            ys[t] = torch.where(mask[t], h_new, 0.0)
            h = torch.where(mask[t], h_new, h)
            c = None if c is None else torch.where(mask[t], c_new, c)
    return torch.stack(ys), h, c


def _differentiable_backward(args: tuple, inputs: tuple, needs: tuple, grads: tuple) -> tuple:
    """The gradients of one layer-direction as a differentiable graph (for create_graph).

    Re-runs the forward on the saved ``inputs`` (the original tensors, so the graph reaches
    what they depend on) with :func:`_torch_forward` and differentiates it with
    ``create_graph=True``: the gradients depend differentiably on the inputs and on
    ``grads``. ``args`` are ``(cell, nonlinearity, reverse, lengths)``, ``needs`` the
    inputs' ``needs_input_grad``; returns one gradient (or None) per input.
    """
    outs = _torch_forward(*args, *inputs)
    wanted = [k for k, (t, need) in enumerate(zip(inputs, needs, strict=True))
              if t is not None and need]
    pairs = [(o, g) for o, g in zip(outs, grads, strict=True) if o is not None and g is not None]
    result: list[torch.Tensor | None] = [None] * len(inputs)
    if wanted and pairs:
        got = torch.autograd.grad([o for o, _ in pairs], [inputs[k] for k in wanted],
                                  [g for _, g in pairs], create_graph=True, allow_unused=True)
        for k, g in zip(wanted, got, strict=True):
            result[k] = g
    return tuple(result)


def _batched(*ts: torch.Tensor | None) -> bool:
    """Whether any of ``ts`` is batched by vmap (torch.func's, or the legacy one that
    ``autograd.grad(..., is_grads_batched=True)`` uses)."""
    f = torch._C._functorch
    return any(t is not None and (f.is_batchedtensor(t) or f.is_legacy_batchedtensor(t))
               for t in ts)


def _batched_backward(args: tuple, fctx: Any, inputs: tuple, needs: tuple,
                      grads: tuple) -> tuple:
    """The kernels' backward through ``fastrnn::cell_backward`` (for vmapped gradients).

    ``args`` are ``(cell, nonlinearity, reverse, lengths)``, ``fctx`` the forward's
    functional context (its cache), ``inputs`` the saved inputs, ``needs`` their
    ``needs_input_grad``; returns one gradient (or None) per input.
    """
    cell, nonlinearity, reverse, lengths = args
    dy, dh_n, dc_n = grads
    *tensors, w_hr = inputs
    out = torch.ops.fastrnn.cell_backward(
        cell, nonlinearity or "", reverse, _t(lengths), torch.from_numpy(fctx.cache), *tensors,
        dy, dh_n, dc_n if CELLS[cell].has_cell_state else None, needs[0], w_hr)
    return tuple(g if need and t is not None else None
                 for g, t, need in zip(out, inputs, needs, strict=True))


class _CellFunction(torch.autograd.Function):
    """One layer in one direction over a whole time-major sequence, on fastrnn's kernels.

    Inputs ``x`` (T, B, I), ``h0``/``c0`` (B, H) or None, weights in torch's layout (which
    is the functional layout); outputs ``y`` (T, B, H), ``h_n`` (B, H) and, for the LSTM,
    ``c_n`` (B, H). The backward is fastrnn's backward kernel; a backward that is itself
    differentiated (``create_graph=True``: grad mode is on inside it) runs
    :func:`_differentiable_backward` instead, so higher-order gradients are torch's.
    """

    @staticmethod
    def forward(ctx, cell, nonlinearity, reverse, lengths, kernel_options, x, h0, c0,
                w_ih, w_hh, b_ih, b_hh, w_hr):
        ctx.set_materialize_grads(False)
        precision, prepared = kernel_options
        y, h_n, c_n, fctx = _ops_forward(cell, nonlinearity, reverse, lengths, True,
                                         _np(x), _np(h0), _np(c0), _np(w_ih), _np(w_hh),
                                         _np(b_ih), _np(b_hh), w_hr=_np(w_hr),
                                         precision=precision, prepared=prepared)
        ctx.args = (cell, nonlinearity, reverse, lengths)
        ctx.precision = precision
        ctx.has = (h0 is not None, c0 is not None, b_ih is not None, b_hh is not None)
        # The functional context (with the kernel cache) rides on an empty tensor saved for
        # backward, so that autograd frees it exactly when it frees saved tensors: after a
        # backward without retain_graph, even while the outputs are still referenced. The
        # inputs are saved so that autograd detects in-place changes to them before
        # backward (the functional context holds views of their memory), and for the
        # differentiable backward.
        holder = torch.empty(0)
        holder.fastrnn_ctx = fctx
        ctx.save_for_backward(holder, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
        if c_n is not None:
            return torch.from_numpy(y), torch.from_numpy(h_n), torch.from_numpy(c_n)
        return torch.from_numpy(y), torch.from_numpy(h_n)

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n=None):
        # Raises torch's own errors when an input was modified in place since forward, or
        # when the graph was already freed (a second backward without retain_graph).
        holder, *inputs = ctx.saved_tensors
        batched = _batched(dy, dh_n, dc_n)
        if torch.is_grad_enabled() or (batched and ctx.precision != "float32"):
            # create_graph=True: this backward is differentiated (batched gradients of a
            # bfloat16 forward: the backward operator knows the float32 kernels only)
            return (None,) * 5 + _differentiable_backward(
                ctx.args, tuple(inputs), ctx.needs_input_grad[5:], (dy, dh_n, dc_n))
        if batched:
            # batched gradients (is_grads_batched, vectorized jacobians): the backward op,
            # which vmap runs once per gradient (its vmap rule, or torch's batching fallback)
            return (None,) * 5 + _batched_backward(
                ctx.args, holder.fastrnn_ctx, tuple(inputs), ctx.needs_input_grad[5:],
                (dy, dh_n, dc_n))
        # an input that needs no gradient (data) saves the backward its dx GEMM
        dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr = _ops_backward(
            holder.fastrnn_ctx, _np(dy), _np(dh_n), _np(dc_n), ctx.needs_input_grad[5])
        has_h0, has_c0, has_bi, has_bh = ctx.has
        return (None, None, None, None, None, _t(dx),
                _t(dh0) if has_h0 else None, _t(dc0) if has_c0 else None,
                _t(dw_ih), _t(dw_hh),
                _t(db_ih) if has_bi else None, _t(db_hh) if has_bh else None, _t(dw_hr))


# ---------------------------------------------------------------------------------------
# Custom operators (torch.library): fastrnn's forward and backward as the ops
# ``fastrnn::cell_forward`` and ``fastrnn::cell_backward``, with shape functions (fake
# tensors), autograd and vmap rules, so torch.compile and torch.export keep them in their
# graphs. The training cache is an output tensor of the forward op and an input of the
# backward op (like the reserve buffer of cuDNN's RNN op); a missing optional output (c_n of a
# cell without a cell state, an unwanted dx, a gradient of an absent bias) is an empty
# tensor of shape (0,).

_FWD_SCHEMA = ("(str cell, str nonlinearity, bool reverse, Tensor? lengths, bool training, "
               "Tensor x, Tensor? h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
               "Tensor? b_hh, Tensor? w_hr=None) -> (Tensor, Tensor, Tensor, Tensor)")
_BWD_SCHEMA = ("(str cell, str nonlinearity, bool reverse, Tensor? lengths, Tensor cache, "
               "Tensor x, Tensor? h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
               "Tensor? b_hh, Tensor? dy, Tensor? dh_n, Tensor? dc_n, bool need_dx, "
               "Tensor? w_hr=None) -> "
               "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)")


@functools.cache
def _cache_per_element(cell: str) -> int:
    """Cache elements per (step, batch row, hidden unit) of ``cell``'s training forward."""
    one = np.zeros((1, 1, 1))
    G = CELLS[cell].gates
    nl = CELLS[cell].nonlinearities[0] if CELLS[cell].nonlinearities else None
    *_, fctx = _ops.cell_forward(cell, one, None, None, np.zeros((G, 1)), np.zeros((G, 1)),
                                 None, None, nonlinearity=nl)
    return int(fctx.cache.size)


def _cache_numel(cell: str, x: torch.Tensor, w_hh: torch.Tensor,
                 w_hr: torch.Tensor | None) -> int:
    """Elements of the training cache of a forward of these sizes (with or without a
    projection ``w_hr``)."""
    T, B = x.shape[0], x.shape[1]
    if w_hr is not None:  # hprev (P) | gates (4H) | c_prev, tanh(c), r (H each)
        P, H = w_hr.shape[0], w_hr.shape[1]
        return T * B * (P + 7 * H)
    return T * B * w_hh.shape[1] * _cache_per_element(cell)


def _none_if_empty(t: torch.Tensor) -> torch.Tensor | None:
    return None if t.dim() == 1 and t.shape[0] == 0 else t


#: The functional context of each training ``fastrnn::cell_forward`` without its cache, by the
#: address of the cache it returned, with the key of its inputs (:func:`_inputs_key`) and the
#: cache's size: a ``fastrnn::cell_backward`` given that cache memory and the same, unchanged
#: inputs (as torch.compile's and torch.export's graphs give them, and autograd, whose saved
#: copy of the cache is another tensor object on the same memory) reuses the validated inputs
#: instead of validating and wrapping them again; any other call rebuilds the context from its
#: arguments. An entry goes when the cache's memory does (a finalizer on its array), so a later
#: cache at the same address never finds it.
_CONTEXTS: dict[int, tuple] = {}


def _keep_context(fctx: Any, cache: torch.Tensor, key: tuple, inputs: tuple) -> None:
    """Keep ``fctx`` (its cache dropped: the entry must not keep the memory alive) for the
    backward of ``cache``."""
    ptr, arr = cache.data_ptr(), fctx.cache
    fctx.cache = None
    _CONTEXTS[ptr] = (key, fctx, inputs, cache.numel())
    weakref.finalize(arr, _CONTEXTS.pop, ptr, None)


def _kept_context(cache: torch.Tensor, *inputs: Any) -> Any:
    """The context kept by :func:`_keep_context` for this cache memory and these inputs (the
    arguments of :func:`_inputs_key`, whose key is only made where an entry is kept), on the
    given cache; None if there is none."""
    saved = _CONTEXTS.get(cache.data_ptr())
    if saved is None or saved[3] != cache.numel():
        return None
    key = _inputs_key(*inputs)
    if key is None or saved[0] != key:
        return None
    f = saved[1]
    if isinstance(f, _native.ProjContext):
        return _native.ProjContext(f.p, _np(cache))
    return _native.Context(f.cell, f.act, f.reverse, f.p, _np(cache), f.hq)


def _inputs_key(cell, nonlinearity, reverse, lengths, *tensors) -> tuple | None:
    """What a forward's context depends on: the arguments, and each tensor's memory, shape,
    strides, dtype and version (an in-place change bumps the version); None when a tensor
    keeps no version (an inference tensor), so that nothing is reused."""
    key: list = [cell, nonlinearity, reverse]
    for t in (lengths, *tensors):
        if t is None:
            key.append(None)
        elif t.is_inference():
            return None
        else:
            key.append((t.data_ptr(), t._version, t.shape, t.stride(), t.dtype))
    return tuple(key)


# torch.library.define/impl rather than custom_op: custom_op's wrapper checks every call's
# outputs for aliasing, a cost per call that these fresh outputs do not need
torch.library.define("fastrnn::cell_forward", _FWD_SCHEMA)
torch.library.define("fastrnn::cell_backward", _BWD_SCHEMA)


def _op_forward(cell, nonlinearity, reverse, lengths, training, x, h0, c0, w_ih, w_hh, b_ih,
                b_hh, w_hr=None):
    """``fastrnn::cell_forward``: :func:`fastrnn.functional.cell_forward` on tensors.

    Returns ``(y, h_n, c_n, cache)``; ``c_n`` is empty without a cell state, ``cache``
    empty unless ``training``. ``nonlinearity`` is ``""`` for the cells without one.
    """
    y, h_n, c_n, fctx = _ops_forward(cell, nonlinearity or None, reverse, _np(lengths),
                                     training, _np(x), _np(h0), _np(c0), _np(w_ih), _np(w_hh),
                                     _np(b_ih), _np(b_hh), w_hr=_np(w_hr))
    if fctx is None:
        cache = x.new_empty(0)
    else:
        cache = torch.from_numpy(fctx.cache)
        key = _inputs_key(cell, nonlinearity, reverse, lengths, x, h0, c0, w_ih, w_hh, b_ih,
                          b_hh, w_hr)
        if key is not None:  # the inputs held too: their memory is not reused meanwhile
            _keep_context(fctx, cache, key, (lengths, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr))
    return (torch.from_numpy(y), torch.from_numpy(h_n),
            x.new_empty(0) if c_n is None else torch.from_numpy(c_n), cache)


# (torch.library.impl used as a decorator returns None: registered by call, below, so that
# the names keep the functions, which the vmap rules call)
torch.library.impl("fastrnn::cell_forward", "CPU", _op_forward)


@torch.library.register_fake("fastrnn::cell_forward")
def _op_forward_fake(cell, nonlinearity, reverse, lengths, training, x, h0, c0, w_ih, w_hh,
                     b_ih, b_hh, w_hr=None):
    T, B, H = x.shape[0], x.shape[1], w_hh.shape[1]
    has_c = CELLS[cell].has_cell_state
    Hc = w_hh.shape[0] // CELLS[cell].gates  # the cell state's units (H, or H of w_hr)
    return (x.new_empty(T, B, H), x.new_empty(B, H),
            x.new_empty(B, Hc) if has_c else x.new_empty(0),
            x.new_empty(_cache_numel(cell, x, w_hh, w_hr) if training else 0))


def _op_backward(cell, nonlinearity, reverse, lengths, cache, x, h0, c0, w_ih, w_hh, b_ih,
                 b_hh, dy, dh_n, dc_n, need_dx, w_hr=None):
    """``fastrnn::cell_backward``: :func:`fastrnn.functional.cell_backward` of a
    ``fastrnn::cell_forward`` with ``training`` (its ``cache`` and the same inputs).

    Returns ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr)``, each empty where absent
    (dx unless ``need_dx``, dc0 without a cell state, a bias gradient without that bias, dw_hr
    without a projection).
    """
    nl = nonlinearity or None
    if cache.numel() != _cache_numel(cell, x, w_hh, w_hr):
        raise RuntimeError("fastrnn::cell_backward: the cache is not a training forward's "
                           "(run fastrnn::cell_forward with training=True)")
    # the forward's own context, where the inputs are unchanged since
    fctx: Any = _kept_context(cache, cell, nonlinearity, reverse, lengths, x, h0, c0, w_ih, w_hh,
                              b_ih, b_hh, w_hr)
    if fctx is None and w_hr is not None:
        pp = _validate.prepare_proj(_np(x), _np(h0), _np(c0), _np(w_ih), _np(w_hh), _np(w_hr),
                                    _np(b_ih), _np(b_hh), _np(lengths), reverse, True)
        fctx = _native.ProjContext(pp, _np(cache))
    elif fctx is None:
        p = _validate.prepare(cell, _np(x), _np(h0), _np(c0), _np(w_ih), _np(w_hh), _np(b_ih),
                              _np(b_hh), _np(lengths), nl, reverse, True)
        fctx = _native.Context(cell, NONLINEARITIES[nl] if nl else 0, reverse, p, _np(cache))
    out = _ops_backward(fctx, _np(dy), _np(dh_n), _np(dc_n), need_dx)
    return tuple(x.new_empty(0) if a is None else torch.from_numpy(a) for a in out)


torch.library.impl("fastrnn::cell_backward", "CPU", _op_backward)


@torch.library.register_fake("fastrnn::cell_backward")
def _op_backward_fake(cell, nonlinearity, reverse, lengths, cache, x, h0, c0, w_ih, w_hh, b_ih,
                      b_hh, dy, dh_n, dc_n, need_dx, w_hr=None):
    B, H = x.shape[1], w_hh.shape[1]
    has_c = CELLS[cell].has_cell_state
    Hc = w_hh.shape[0] // CELLS[cell].gates
    return (torch.empty_like(x) if need_dx else x.new_empty(0), x.new_empty(B, H),
            x.new_empty(B, Hc) if has_c else x.new_empty(0), torch.empty_like(w_ih),
            torch.empty_like(w_hh), x.new_empty(0) if b_ih is None else torch.empty_like(b_ih),
            x.new_empty(0) if b_hh is None else torch.empty_like(b_hh),
            x.new_empty(0) if w_hr is None else torch.empty_like(w_hr))


def _op_forward_setup(ctx, inputs, output):
    cell, nonlinearity, reverse, lengths, training, x, h0, c0, w_ih, w_hh, b_ih, b_hh, *rest = \
        inputs
    w_hr = rest[0] if rest else None
    ctx.set_materialize_grads(False)
    ctx.args = (cell, nonlinearity, reverse)
    ctx.save_for_backward(lengths, output[3], x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)


def _op_forward_autograd(ctx, dy, dh_n, dc_n, dcache):
    lengths, cache, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = ctx.saved_tensors
    cell, nonlinearity, reverse = ctx.args
    n_in = len(ctx.needs_input_grad)
    if not CELLS[cell].has_cell_state:
        dc_n = None
    if dy is None and dh_n is None and dc_n is None:
        return (None,) * n_in
    grads = torch.ops.fastrnn.cell_backward(cell, nonlinearity, reverse, lengths, cache, x, h0,
                                            c0, w_ih, w_hh, b_ih, b_hh, dy, dh_n, dc_n,
                                            ctx.needs_input_grad[5], w_hr)
    needs = (*ctx.needs_input_grad[5:13], *(False,) * (13 - n_in))  # w_hr's: False if absent
    return ((None,) * 5 + tuple(g if need and t is not None else None for g, t, need in zip(
        grads, (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr), needs, strict=True)))[:n_in]


def _op_backward_setup(ctx, inputs, output):
    (cell, nonlinearity, reverse, lengths, cache, x, h0, c0, w_ih, w_hh, b_ih, b_hh, dy, dh_n,
     dc_n, need_dx, *rest) = inputs
    w_hr = rest[0] if rest else None
    ctx.set_materialize_grads(False)
    ctx.args = (cell, nonlinearity or None, reverse)
    ctx.save_for_backward(lengths, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, dy, dh_n, dc_n)


def _op_backward_autograd(ctx, *gouts):
    """The backward op differentiated (double backward): torch's ops, differentiably.

    The first-order gradients are recomputed as a graph (:func:`_differentiable_backward`)
    and differentiated against ``gouts``; with grad mode on (a third order) that graph is
    kept as well.
    """
    lengths, *saved = ctx.saved_tensors
    cell, nonlinearity, reverse = ctx.args
    keep = torch.is_grad_enabled()
    n_in = len(ctx.needs_input_grad)
    g = ctx.needs_input_grad
    # the inputs x..b_hh, w_hr, then dy, dh_n, dc_n, in the order saved
    needs = (*g[5:12], g[16] if n_in > 16 else False, *g[12:15])
    with torch.enable_grad():
        prims = [t if t is None or t.requires_grad else t.detach().requires_grad_(True)
                 for t in saved]
        inputs, grads = tuple(prims[:8]), tuple(prims[8:])
        firsts = _differentiable_backward(
            (cell, nonlinearity, reverse, _np(lengths)), inputs,
            tuple(t is not None for t in inputs), grads)
        pairs = [(f, g) for f, g in zip(firsts, gouts, strict=True)
                 if f is not None and g is not None and g.shape == f.shape]
        wanted = [k for k, (t, need) in enumerate(zip(prims, needs, strict=True))
                  if need and t is not None]
        result: list[torch.Tensor | None] = [None] * 11
        if pairs and wanted:
            got = torch.autograd.grad([f for f, _ in pairs], [prims[k] for k in wanted],
                                      [g for _, g in pairs], create_graph=keep,
                                      allow_unused=True)
            for k, gk in zip(wanted, got, strict=True):
                result[k] = gk
    # back to the op's argument order: x..b_hh, dy, dh_n, dc_n, need_dx, w_hr
    out = (None,) * 5 + tuple(result[:7]) + tuple(result[8:]) + (None, result[7])
    return out[:n_in]


torch.library.register_autograd("fastrnn::cell_forward", _op_forward_autograd,
                                setup_context=_op_forward_setup)
torch.library.register_autograd("fastrnn::cell_backward", _op_backward_autograd,
                                setup_context=_op_backward_setup)


def _vmap_by_slices(op):
    """A vmap rule that runs ``op`` once per slice of the vmapped dimension (a batched
    gradient runs fastrnn's kernels once per gradient, as a loop over them would)."""
    def rule(info, in_dims, *args):
        outs = [op(*(a.select(d, i) if d is not None else a
                     for a, d in zip(args, in_dims, strict=True)))
                for i in range(info.batch_size)]
        stacked = tuple(torch.stack([o[k] for o in outs]) for k in range(len(outs[0])))
        return stacked, (0,) * len(stacked)
    return rule


torch.library.register_vmap("fastrnn::cell_forward", _vmap_by_slices(_op_forward))
torch.library.register_vmap("fastrnn::cell_backward", _vmap_by_slices(_op_backward))

# ``fastrnn::cell_infer``: the forward of a graph that needs no gradient (torch.compile under
# no_grad or inference_mode). The same kernel with no autograd kernel to pass through: the
# dispatcher's Autograd key then costs nothing in Python (measured: 39 -> 32 us per call of an
# LSTM (50, 1, 32, 32)). It is only put in graphs traced with no gradient wanted.
_INFER_SCHEMA = ("(str cell, str nonlinearity, bool reverse, Tensor? lengths, Tensor x, "
                 "Tensor? h0, Tensor? c0, Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, "
                 "Tensor? w_hr=None) -> (Tensor, Tensor, Tensor)")
torch.library.define("fastrnn::cell_infer", _INFER_SCHEMA)


def _op_infer(cell, nonlinearity, reverse, lengths, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
              w_hr=None):
    """``fastrnn::cell_infer``: ``fastrnn::cell_forward`` without training; ``(y, h_n, c_n)``."""
    return _op_forward(cell, nonlinearity, reverse, lengths, False, x, h0, c0, w_ih, w_hh, b_ih,
                       b_hh, w_hr)[:3]


torch.library.impl("fastrnn::cell_infer", "CPU", _op_infer)


@torch.library.register_fake("fastrnn::cell_infer")
def _op_infer_fake(cell, nonlinearity, reverse, lengths, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                   w_hr=None):
    return _op_forward_fake(cell, nonlinearity, reverse, lengths, False, x, h0, c0, w_ih, w_hh,
                            b_ih, b_hh, w_hr)[:3]


torch.library.register_vmap("fastrnn::cell_infer", _vmap_by_slices(_op_infer))


#: How a layer-direction runs: fastrnn's kernels called directly (eager), fastrnn's custom
#: operators (inside torch.compile / torch.export, which keep them in their graphs), or the
#: cells' maths in torch ops (under torch.func transforms and forward-mode AD, which fastrnn's
#: kernels cannot serve).
KERNEL, OPS, TORCH_OPS = "kernel", "ops", "torch_ops"


def _run_cell(path: str, cell: str, nonlinearity: str | None, reverse: bool,
              lengths: np.ndarray | None, x: torch.Tensor, h0, c0, w_ih, w_hh, b_ih, b_hh,
              kernel_options: tuple = ("float32", None), w_hr: torch.Tensor | None = None):
    """One layer-direction on ``path``; returns ``(y, h_n, c_n or None)``.

    On the kernel path: through autograd when a gradient is needed, else cache-free;
    ``kernel_options`` are the kernels' ``(precision, prepared)`` (int8: never through
    autograd, its kernels are inference-only).
    """
    tensors = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    if path == TORCH_OPS:
        return _torch_forward(cell, nonlinearity, reverse, lengths, *tensors)
    precision, prepared = kernel_options
    training = precision != "int8" and torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors)
    if path == OPS:
        lt = None if lengths is None else torch.from_numpy(lengths)
        if training:
            y, h_n, c_n, _ = torch.ops.fastrnn.cell_forward(cell, nonlinearity or "", reverse, lt,
                                                            True, *tensors)
        else:
            y, h_n, c_n = torch.ops.fastrnn.cell_infer(cell, nonlinearity or "", reverse, lt,
                                                       *tensors)
        return y, h_n, (c_n if CELLS[cell].has_cell_state else None)
    if training:
        out = _CellFunction.apply(cell, nonlinearity, reverse, lengths, kernel_options,
                                  *tensors)
        return (out[0], out[1], out[2]) if CELLS[cell].has_cell_state else (out[0], out[1], None)
    y, h_n, c_n, _ = _ops_forward(cell, nonlinearity, reverse, lengths, False,
                                  *(_np(t) for t in tensors[:7]), w_hr=_np(w_hr),
                                  precision=precision, prepared=prepared)
    return torch.from_numpy(y), torch.from_numpy(h_n), _t(c_n)


def _current_path() -> str:
    """The path (see :data:`KERNEL`) for a forward that fastrnn can run at all."""
    if torch.compiler.is_compiling():
        return OPS
    if torch._C._functorch.maybe_current_level() is not None or _fwad._current_level >= 0:
        _warn_once("torch.func transforms and forward-mode AD cannot run fastrnn's kernels",
                   "the cells' maths in torch ops")
        return TORCH_OPS
    return KERNEL


# ---------------------------------------------------------------------------------------
# Reduced precision: bfloat16 under CPU autocast, int8 after quantize_dynamic

#: The modes whose outputs torch's CPU autocast to bfloat16 returns in bfloat16 (lstm,
#: rnn_tanh and rnn_relu are on its lower-precision list; the GRU's GEMMs run in bfloat16
#: but it returns float32): the drop-ins follow it (tests/test_torch_precision.py checks the
#: output dtypes against torch's).
_AUTOCAST_BF16_OUTPUTS = frozenset({"LSTM", "RNN_TANH", "RNN_RELU"})
#: Drop-ins that :func:`quantize_dynamic` made int8 (weakly held: not part of their state).
_INT8: weakref.WeakSet = weakref.WeakSet()
#: Each module's prepared weights per (layer-direction, precision), outside its state (so
#: pickling and state_dict never see them). A new storage or ``_version`` (an optimizer step,
#: load_state_dict) prepares them again. Writes through ``param.data`` (a manual SGD step,
#: ``p.data.clamp_()``) do not count in ``_version``:
#: - bfloat16 (autocast) checks the weights' bytes each call (``check="content"``: one checksum
#:   pass, cheaper than the bfloat16 copy of the weights torch's autocast makes per region), and
#:   so sees them, as torch's autocast does;
#: - int8 does not (``check="identity"``): torch's dynamically quantized modules keep the
#:   weights of the moment they were quantized, and a content check per call would cost 1.5-2.5x
#:   on a decode loop's step; :func:`quantize_dynamic` again re-quantizes.
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prepared(module: nn.Module, k: int, precision: str, cell: str, ws: tuple) -> Any:
    """The :class:`fastrnn.functional.PreparedWeights` of layer-direction ``k``."""
    key = tuple(None if w is None else (w.data_ptr(), w._version) for w in ws)
    cache = _PREPARED.setdefault(module, {})
    pw = cache.get((k, precision))
    if pw is None or pw.version != key:
        pw = _ops.prepare_weights(cell, *(_np(w) for w in ws), precision=precision,
                                  check="content" if precision == "bfloat16" else "identity")
        pw.version = key
        cache[(k, precision)] = pw
    return pw


# ---------------------------------------------------------------------------------------
# PackedSequence layout


def _packed_layout(batch_sizes: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, int, int]:
    """Map packed rows to rows of a time-major (T*B) padded layout.

    Returns ``(idx, lengths, T, B)``: packed row ``k`` is padded row ``idx[k] = t*B + b``
    (batch entries in the packed, i.e. sorted, order), ``lengths`` (B,) int64.
    """
    bs = batch_sizes.numpy() if batch_sizes.device.type == "cpu" else batch_sizes.cpu().numpy()
    T = int(bs.shape[0])
    B = int(bs[0])
    mask = np.arange(B)[None, :] < bs[:, None]  # (T, B), row-major = packed order
    idx = torch.from_numpy(np.flatnonzero(mask))
    lengths = mask.sum(axis=0).astype(np.int64)
    return idx, lengths, T, B


# ---------------------------------------------------------------------------------------
# The modules


class _FastRNNMixin:
    """The shared forward of the drop-in modules (mixed in before torch's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _allow_rnn_tracing()
        super().__init__(*args, **kwargs)

    # Attributes provided by torch.nn.RNNBase.
    mode: str
    num_layers: int
    bidirectional: bool
    batch_first: bool
    bias: bool
    dropout: float
    proj_size: int
    training: bool
    _flat_weights: list
    _flat_weights_names: list

    def _update_flat_weights(self) -> None:
        """torch's ``_update_flat_weights`` (the flat weight list follows parameters replaced
        since the last call, as ``torch.func.functional_call`` replaces them), with its check
        read from the parameter dict instead of ``hasattr`` and ``getattr`` per weight (4.5 ->
        1 us a call of a one-layer RNN); anything that check cannot see (a parametrized weight,
        an instance attribute of that name, a weight that was None) goes to torch's own."""
        params = self._parameters  # type: ignore[attr-defined]
        inst = self.__dict__
        refs = inst.get("_flat_weight_refs")
        if refs is None:
            return super()._update_flat_weights()  # type: ignore[misc]
        for ref, name in zip(refs, self._flat_weights_names, strict=True):
            w = params.get(name)
            if w is None or ref is None or name in inst:
                return super()._update_flat_weights()  # type: ignore[misc]
            if ref() is not w:
                self._init_flat_weights()  # type: ignore[attr-defined]
                return None
        return None

    def _fastrnn_unsupported(self, input: Any, hx: Any, weights: list) -> str | None:
        """Why this call cannot run on fastrnn: a reason to warn about, "" for a silent
        fallback (torch raises its own error, or there is nothing to compute), None when
        it can."""
        # ONNX export (issue 23; keep when merging): torch.onnx.export, TorchScript-based
        # (dynamo=False) or dynamo-based, must see torch.nn's own forward so that it writes
        # the standard ONNX RNN/LSTM/GRU operators; a silent fallback, not a warning.
        if _in_onnx_export():
            return ""
        if isinstance(input, PackedSequence):
            data = input.data
        elif isinstance(input, torch.Tensor):
            data = input
        else:
            return ""
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            return "TorchScript tracing/scripting cannot see fastrnn's kernels"
        if not data.is_cpu:
            return f"input on device '{data.device.type}' (fastrnn runs on the CPU only)"
        if data.dtype not in _FLOATS:
            return f"input dtype {data.dtype} (fastrnn supports float32 and float64)"
        precision = self._fastrnn_precision(data.dtype, _current_path())
        if self.proj_size > 0 and precision not in ("float32", None):
            return ("proj_size > 0 (LSTM with projections) runs on fastrnn's float32/float64 "
                    "kernels only, not its bfloat16 or int8 ones")
        if precision is None:
            if self in _INT8:
                return ("int8 drop-ins run fastrnn's int8 kernels on float32 input in eager "
                        "mode only")
            return (f"CPU autocast to {torch.get_autocast_dtype('cpu')} of {data.dtype} "
                    "input is accelerated to bfloat16 in eager mode only")
        # inside torch.compile / torch.export the tensors are the tracer's (fake) tensors
        tracing = torch.compiler.is_compiling()

        def odd(t: torch.Tensor) -> bool:
            return t.layout != torch.strided or (type(t) not in _PLAIN and not tracing)

        if odd(data):
            return "tensor subclasses and non-strided tensors are not accelerated"
        dtype = data.dtype
        for w in weights:
            if not isinstance(w, torch.Tensor) or not w.is_cpu or w.dtype != dtype:
                return ""  # torch reports the mismatch
            if odd(w):
                return "tensor subclasses and non-strided weights are not accelerated"
        if data is input and input.dim() not in (2, 3):
            return ""  # torch raises its error
        if hx is not None:
            has_c = CELLS[_MODES[self.mode][0]].has_cell_state
            hs = hx if has_c else (hx,)
            if has_c and not (isinstance(hx, tuple) and len(hx) == 2):
                return ""
            for h in hs:
                if not isinstance(h, torch.Tensor) or not h.is_cpu or h.dtype != dtype:
                    return ""
                if data is input and h.dim() != input.dim():
                    return ""
                if odd(h):
                    return "tensor subclasses and non-strided states are not accelerated"
        if data.numel() == 0:
            return ""
        return None

    def _fastrnn_precision(self, dtype: torch.dtype, path: str) -> str | None:
        """The kernels' precision for input of ``dtype`` on ``path`` (:func:`_current_path`):
        ``"float32"`` (the arrays' own dtype), ``"bfloat16"`` (CPU autocast to bfloat16 on
        float32 input), ``"int8"`` (after :func:`quantize_dynamic`);
        None where such a call is not accelerated (inside torch.compile or a torch.func
        transform, another autocast dtype)."""
        eager = path == KERNEL
        if self in _INT8:
            return "int8" if eager and dtype == torch.float32 else None
        if not torch.is_autocast_enabled("cpu") or dtype != torch.float32:
            return "float32"  # torch's autocast leaves this call in its own dtype too
        return "bfloat16" if eager and torch.get_autocast_dtype("cpu") == torch.bfloat16 \
            else None

    # -- pickling: as torch.nn's class, so that any torch process loads it --------------

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickle a drop-in as the ``torch.nn`` class it subclasses (see :func:`accelerate`).

        The pickle names only ``torch.nn.RNN/LSTM/GRU``: it is rebuilt from cheap
        constructor arguments (1x1, parameters on the meta device, so no random draws) and
        then takes this module's state (its parameters, hooks and attributes), so
        ``torch.load`` with ``weights_only=True`` loads it wherever torch's own modules
        load, in a process without fastrnn too. A user subclass pickles as itself.
        """
        torch_cls = _TO_TORCH.get(type(self))
        if torch_cls is None:
            return super().__reduce_ex__(protocol)
        # (input_size, hidden_size, num_layers, [nonlinearity,] bias, batch_first, dropout,
        # bidirectional, proj_size, device): every value overwritten by the state
        args = (1, 1, 1, *(("tanh",) if torch_cls is nn.RNN else ()),
                True, False, 0.0, False, 0, "meta")
        return torch_cls, args, self.__getstate__()  # type: ignore[attr-defined]

    def __copy__(self) -> Any:
        """A shallow copy keeps the drop-in's class (only pickling names torch's)."""
        new = type(self).__new__(type(self))
        new.__setstate__(self.__getstate__())  # type: ignore[attr-defined]
        return new

    def __deepcopy__(self, memo: dict) -> Any:
        """A deep copy keeps the drop-in's class (only pickling names torch's)."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))  # type: ignore[attr-defined]
        return new

    def forward(self, input, hx=None):  # noqa: A002 - torch's argument name
        """Run the layer stack; the same inputs and outputs as torch's ``forward``."""
        if torch.compiler.is_compiling():
            # the same list, without the attribute write that a compiled graph would replay
            # (as bytecode around the graph) on every call
            weights = [getattr(self, n) for n in self._flat_weights_names]
        else:
            self._update_flat_weights()  # type: ignore[attr-defined]
            weights = self._flat_weights
        reason = self._fastrnn_unsupported(input, hx, weights)
        if reason is not None:
            if reason:
                _warn_once(reason)
            return super().forward(input, hx)  # type: ignore[misc]
        path = _current_path()
        if isinstance(input, PackedSequence):
            if path == OPS:  # torch.compile: a graph break, as for torch's own modules
                return _packed_outside_graph(self, input, hx)
            return self._fastrnn_packed(input, hx, path)
        return self._fastrnn_padded(input, hx, path)

    # -- argument handling (mirrors torch's, so that errors are torch's) --------------

    def _fastrnn_padded(self, input: torch.Tensor, hx, path: str):
        lstm = CELLS[_MODES[self.mode][0]].has_cell_state
        is_batched = input.dim() == 3  # 2 or 3, and states of matching rank: checked above
        batch_dim = 0 if self.batch_first else 1
        if not is_batched:
            input = input.unsqueeze(batch_dim)
        if hx is not None:
            hs = hx if lstm else (hx,)
            if not is_batched:
                hs = tuple(h.unsqueeze(1) for h in hs)
            hx = hs if lstm else hs[0]
            self.check_forward_args(input, hx, None)  # type: ignore[attr-defined]
        else:
            self.check_input(input, None)  # type: ignore[attr-defined]
        x = input.transpose(0, 1) if self.batch_first else input
        y, h_n, c_n = self._fastrnn_stack(x.contiguous(), hx, None, None, path)
        if self.batch_first:
            y = y.transpose(0, 1)
        if not is_batched:
            y = y.squeeze(batch_dim)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        return y, ((h_n, c_n) if lstm else h_n)

    def _fastrnn_packed(self, input: PackedSequence, hx, path: str):
        lstm = CELLS[_MODES[self.mode][0]].has_cell_state
        data, batch_sizes, sorted_indices, unsorted_indices = input
        self.check_input(data, batch_sizes)  # type: ignore[attr-defined]
        if hx is not None:
            hx = self.permute_hidden(hx, sorted_indices)  # type: ignore[attr-defined]
            self.check_forward_args(data, hx, batch_sizes)  # type: ignore[attr-defined]
        idx, lengths, T, B = _packed_layout(batch_sizes)
        x = data.new_zeros(T * B, data.shape[1]).index_copy(0, idx, data)
        y, h_n, c_n = self._fastrnn_stack(x.view(T, B, -1), hx, lengths, idx, path)
        out = y.reshape(T * B, -1).index_select(0, idx)
        hidden = (h_n, c_n) if lstm else h_n
        return (PackedSequence(out, batch_sizes, sorted_indices, unsorted_indices),
                self.permute_hidden(hidden, unsorted_indices))  # type: ignore[attr-defined]

    # -- the layer stack ------------------------------------------------------------

    def _fastrnn_stack(self, x: torch.Tensor, hx, lengths: np.ndarray | None,
                       idx: torch.Tensor | None, path: str):
        """Layers x directions over time-major ``x`` (T, B, I); returns (y, h_n, c_n|None)."""
        cell, nonlinearity = _MODES[self.mode]
        has_c = CELLS[cell].has_cell_state
        if hx is None:
            h0s = c0s = None
        elif has_c:
            h0s, c0s = hx
        else:
            h0s, c0s = hx, None
        D = 2 if self.bidirectional else 1
        proj = self.proj_size > 0  # torch's flat weights end with w_hr per layer-direction
        n_w = (4 if self.bias else 2) + (1 if proj else 0)
        weights = [getattr(self, n) for n in self._flat_weights_names] if path == OPS \
            else self._flat_weights  # see forward
        precision = self._fastrnn_precision(x.dtype, path) if path == KERNEL else "float32"
        T, B = x.shape[0], x.shape[1]
        hs: list[torch.Tensor] = []
        cs: list[torch.Tensor] = []
        layer_in = x
        for layer in range(self.num_layers):
            ys = []
            for d in range(D):
                k = layer * D + d
                w = weights[k * n_w:(k + 1) * n_w]
                b_ih, b_hh = (w[2], w[3]) if self.bias else (None, None)
                options = ("float32", None) if precision in (None, "float32") else (
                    precision, _prepared(self, k, precision, cell, (w[0], w[1], b_ih, b_hh)))
                y, h_n, c_n = _run_cell(
                    path, cell, nonlinearity, d == 1, lengths, layer_in,
                    None if h0s is None else h0s[k], None if c0s is None else c0s[k],
                    w[0], w[1], b_ih, b_hh, options, w[-1] if proj else None)
                ys.append(y)
                hs.append(h_n)
                if c_n is not None:
                    cs.append(c_n)
            layer_out = ys[0] if D == 1 else torch.cat(ys, 2)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                if idx is None:
                    layer_out = F.dropout(layer_out, self.dropout, True)
                else:
                    # Torch drops out the packed data: same shape, same random draws.
                    flat = layer_out.view(T * B, -1)
                    packed = F.dropout(flat.index_select(0, idx), self.dropout, True)
                    layer_out = flat.new_zeros(flat.shape).index_copy(0, idx, packed)
                    layer_out = layer_out.view(T, B, -1)
            layer_in = layer_out
        if len(hs) == 1 and path != OPS:  # a view is cheaper than stack's copy (but in a
            # compiled graph, an output that is a view of an intermediate costs AOTAutograd
            # a view replay per call, more than this small copy)
            h_n = hs[0].unsqueeze(0)
            c_n = cs[0].unsqueeze(0) if has_c else None
        else:
            h_n = torch.stack(hs)
            c_n = torch.stack(cs) if has_c else None
        if precision == "bfloat16" and self.mode in _AUTOCAST_BF16_OUTPUTS:
            return (layer_in.to(torch.bfloat16), h_n.to(torch.bfloat16),
                    None if c_n is None else c_n.to(torch.bfloat16))
        return layer_in, h_n, c_n


@torch.compiler.disable
def _packed_outside_graph(module: _FastRNNMixin, input: PackedSequence, hx):  # noqa: A002
    """A packed sequence inside torch.compile: its layout is data-dependent (read from
    ``batch_sizes``), so it runs eagerly on fastrnn's kernels, outside the graph (torch's
    own modules break the graph on packed sequences too)."""
    return module._fastrnn_packed(input, hx, KERNEL)


class RNN(_FastRNNMixin, nn.RNN):
    """Drop-in :class:`torch.nn.RNN` (tanh or relu) running on fastrnn's kernels.

    Takes torch's arguments ``(input_size, hidden_size, num_layers=1, nonlinearity='tanh',
    bias=True, batch_first=False, dropout=0.0, bidirectional=False, device=None,
    dtype=None)`` and has torch's parameters, ``state_dict`` and ``forward`` contract:
    ``output, h_n = rnn(input, h0=None)`` with ``input`` (L, N, H_in), (N, L, H_in) when
    ``batch_first``, (L, H_in) unbatched, or a ``PackedSequence``.
    """


class LSTM(_FastRNNMixin, nn.LSTM):
    """Drop-in :class:`torch.nn.LSTM` running on fastrnn's kernels.

    Takes torch's arguments ``(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, device=None,
    dtype=None)``; ``output, (h_n, c_n) = lstm(input, (h0, c0)=None)``. ``proj_size > 0``
    runs on fastrnn's projection kernels (float32/float64).
    """


class GRU(_FastRNNMixin, nn.GRU):
    """Drop-in :class:`torch.nn.GRU` running on fastrnn's kernels.

    Takes torch's arguments ``(input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``;
    ``output, h_n = gru(input, h0=None)``.
    """


_TO_FAST: dict[type, type] = {nn.RNN: RNN, nn.LSTM: LSTM, nn.GRU: GRU}
_TO_TORCH: dict[type, type] = {v: k for k, v in _TO_FAST.items()}


def _swap_classes(module: nn.Module, table: dict[type, type]) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    for m in module.modules():
        _INT8.discard(m)  # both ways out of quantize_dynamic's int8 inference
        new = table.get(type(m))
        if new is not None:
            if new in _TO_TORCH:
                _allow_rnn_tracing()
            m.__class__ = new
    return module


def accelerate(module: nn.Module) -> nn.Module:
    """Make every ``torch.nn.RNN/LSTM/GRU`` inside ``module`` a fastrnn drop-in, in place.

    Each such submodule (and ``module`` itself, if it is one) becomes an instance of
    :class:`fastrnn.torch.RNN`, :class:`LSTM` or :class:`GRU` while keeping the very same
    parameter tensors, buffers and hooks: ``state_dict`` is unchanged, and an optimizer
    or ``DistributedDataParallel`` wrapper built before the call keeps working. Only
    modules whose type is exactly ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` are converted
    (user subclasses may override ``forward`` and are left alone). ``torch.save(module)``
    stores the converted modules as torch's classes; call ``accelerate`` again after
    ``torch.load``.

    Parameters
    ----------
    module : torch.nn.Module
        The model to accelerate.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.
    """
    return _swap_classes(module, _TO_FAST)


def quantize_dynamic(module: nn.Module) -> nn.Module:
    """fastrnn's counterpart of ``torch.ao.quantization.quantize_dynamic`` for recurrent layers.

    Every ``nn.RNN/LSTM/GRU`` in ``module`` becomes a fastrnn drop-in (as :func:`accelerate`)
    that runs fastrnn's int8 inference kernels on float32 input: weights quantized per output
    channel once (and again whenever a parameter changes through torch's ops: an optimizer
    step, ``load_state_dict``, an in-place op under ``no_grad``; writes through ``param.data``
    are not seen, as torch's own dynamically quantized modules keep the weights of the moment
    they were quantized: call this function again after such writes), the inputs and states
    of each step quantized per row, int32 sums, float32 gate maths
    (:mod:`fastrnn.functional`, ``precision="int8"``). The parameters stay the float32
    tensors they were (``state_dict`` and pickling unchanged); the outputs carry no gradient
    (int8 is inference-only, as torch's dynamically quantized modules). :func:`restore` or
    :func:`accelerate` on the module returns it to float32.

    Parameters
    ----------
    module : torch.nn.Module
        The model, changed in place.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.
    """
    accelerate(module)
    for m in module.modules():
        if isinstance(m, _FastRNNMixin):
            _INT8.add(m)
            _PREPARED.pop(m, None)  # quantized again from the weights as they are now
    return module


def restore(module: nn.Module) -> nn.Module:
    """Undo :func:`accelerate`: fastrnn drop-ins inside ``module`` become torch's own again.

    Every :class:`fastrnn.torch.RNN`, :class:`LSTM` and :class:`GRU` (including ``module``
    itself) becomes an instance of the matching ``torch.nn`` class, in place, with the same
    parameter tensors.

    Parameters
    ----------
    module : torch.nn.Module
        The model to restore.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.
    """
    return _swap_classes(module, _TO_TORCH)
