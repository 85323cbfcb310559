"""Keras-compatible recurrent layers on top of :mod:`fastrnn.functional`.

Every cell takes the same route: the layer's forward is one
:func:`fastrnn.functional.cell_forward` call per direction and its backward one
:func:`~fastrnn.functional.cell_backward` (from the layer's ``ops`` module, which
:meth:`_RNNBase.set_ops` can switch to :mod:`fastrnn.reference`); what differs per cell comes
from the cell table (:data:`fastrnn._cells.CELLS`), and Keras's weight layout from the layer
class. The ``(batch, time, features)`` input is transposed once to the kernels' time-major
layout, masks become per-sequence lengths, and ``go_backwards`` is the kernels' ``reverse``
flag. Weights are stored in the kernels' layout (``W_ih`` (G·H, I), ``W_hh`` (G·H, H), PyTorch
gate order) and converted only in ``get_weights``/``set_weights``/``Variable.numpy``: Keras's
``kernel`` is ``W_ih.T``, ``recurrent_kernel`` is ``W_hh.T``; for GRU Keras's gate blocks z, r,
h are our r, z, n permuted, and its ``(2, 3H)`` bias holds the input bias then the recurrent
bias.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .. import _native
from .. import functional as F
from .._cells import CELLS
from . import activations as _acts
from . import initializers as _inits
from . import mixed_precision as _mp
from .backend import rng
from .base import Layer, Variable, check_float, mask_to_lengths, serialize_initializer


class _Tokens:
    """Token ids whose Embedding lookup is folded into the next recurrent layer.

    ``Embedding(V, I)`` then a recurrent layer computes ``W_ih E[id]`` for every token: T*B
    products of an I-vector. Here the layer projects the V table rows once per call
    (``P = E W_ih^T``, V x G*H) and picks ``P[id]`` per token; its backward sums the input
    pre-activation gradients per id (``dP``) and gets ``dE = dP W_ih`` and
    ``dW_ih = dP^T E`` from two V-row GEMMs instead of T*B-row ones. That pays when
    ``2 V <= T B`` (see :func:`fold_pays`). Results equal the unfolded path's up to rounding
    (products are summed in another order).

    Attributes
    ----------
    emb : Embedding
        The layer whose table is used and whose gradient the recurrent layer sets.
    ids : ndarray of int64, shape (T, B)
        Time-major, validated ids.
    """

    __slots__ = ("emb", "ids")

    def __init__(self, emb: Layer, ids_tm: np.ndarray) -> None:
        self.emb = emb
        self.ids = ids_tm

    @staticmethod
    def fold_pays(vocab: int, T: int, B: int) -> bool:
        """Whether the table projection costs less than the per-token one (2V <= T*B)."""
        return 2 * vocab <= T * B

    def project(self, w_ih: np.ndarray) -> np.ndarray:
        """``E W_ih^T``: the input projection of every table row, (V, G*H), no biases (the
        kernels pick row ``ids[t, b]`` for step t, batch entry b)."""
        table = self.emb.embeddings.value
        # on a kept block: fresh pages would fault on every batch
        return _native.gemm(table, w_ih, _native.empty((table.shape[0], w_ih.shape[0]),
                                                       table.dtype), transb=True)

    def backward(self, dgx: np.ndarray, w_ih: np.ndarray) -> np.ndarray:
        """Add the table's gradient to the Embedding's and return ``dW_ih``, from ``dgx``
        (T, B, G*H), the gradient of the input pre-activations."""
        table = self.emb.embeddings.value
        gh = dgx.shape[2]
        dp = _native.zeros((table.shape[0], gh), dgx.dtype)
        _native.scatter_add_rows(dp, dgx.reshape(-1, gh), self.ids.reshape(-1))
        d_table = _native.gemm(dp, w_ih, _native.empty(table.shape, dgx.dtype))
        var = self.emb.embeddings
        var.grad = d_table if var.grad is None else var.grad + d_table
        return _native.gemm(dp, table, _native.empty(w_ih.shape, dgx.dtype), transa=True)


def _call_with_state(layer: Layer, inputs: Any, mask: Any, training: Any,
                     initial_state: Any, kwargs: dict, state_dtype: Any = None) -> Any:
    """The shared ``__call__`` of the recurrent layers and of :class:`RNN`.

    Records a symbolic call when any input or initial state is symbolic; otherwise
    runs ``layer.forward`` eagerly on ``inputs`` (plus ``initial_state``, a list of
    arrays or one array, cast to ``state_dtype`` when given) and returns the output,
    or ``[output, *final_states]`` (copies) with ``layer.return_state``.
    """
    from .symbolic import is_symbolic, symbolic_call

    if is_symbolic(inputs, {"initial_state": initial_state}):
        return symbolic_call(layer, inputs, mask=mask, training=training,
                             initial_state=initial_state, **kwargs)
    if kwargs:
        raise TypeError(f"layer {layer.name!r} got unexpected keyword arguments: "
                        f"{', '.join(sorted(kwargs))}")
    x = layer._prepare_input(inputs)
    layer._build_for((None,) + tuple(x.shape[1:]))
    layer.check_batch(x)
    m = None if mask is None else np.asarray(mask, dtype=bool)
    if initial_state is not None:
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) \
            else [initial_state]
        if state_dtype is not None:
            states = [np.asarray(a, dtype=state_dtype) for a in states]
        y, _ = layer.forward([x, *states], [m] + [None] * len(states), bool(training))
    else:
        y, _ = layer.forward(x, m, bool(training))
    if layer.return_state:
        return [y[0]] + [np.array(a, copy=True) for a in y[1:]]
    return y


def _time_major(layer: Layer, what: str, x: Any) -> tuple[Any, int, int]:
    """A recurrent layer's input as the kernels take it: ``(xt, T, B)``, xt the contiguous
    time-major (T, B, F) copy of a (B, T, F) batch, or the :class:`_Tokens` themselves."""
    if isinstance(x, _Tokens):
        T, B = x.ids.shape
        return x, T, B
    if x.ndim != 3:
        raise ValueError(f"layer {layer.name!r} ({what}) expects a 3-D input "
                         f"(batch, timesteps, features), got shape {x.shape}")
    B, T, _ = x.shape
    return np.ascontiguousarray(x.transpose(1, 0, 2), dtype=layer.dtype), T, B


def _t(a: np.ndarray) -> np.ndarray:
    return a.T


def _gru_perm(a: np.ndarray, axis: int) -> np.ndarray:
    """Swap the first two of three gate blocks along ``axis`` (z,r,h <-> r,z,n)."""
    h = a.shape[axis] // 3
    idx = np.r_[h:2 * h, 0:h, 2 * h:3 * h]
    return np.take(a, idx, axis=axis)


def _gru_kernel_from_keras(k: np.ndarray) -> np.ndarray:
    return _gru_perm(k, 1).T


def _gru_kernel_to_keras(w: np.ndarray) -> np.ndarray:
    return _gru_perm(w, 0).T


def _gru_bias_perm(b: np.ndarray) -> np.ndarray:
    return _gru_perm(b, 1)


def _check_units(cls: str, units: Any) -> int:
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
        raise ValueError(f"{cls}: units must be a positive int, got {units!r}")
    return int(units)


# The functions of fastrnn.functional (and fastrnn.reference) the recurrent layers call.
_OPS = ("cell_forward", "cell_backward")


class _RNNBase(Layer):
    """Shared machinery of SimpleRNN, LSTM and GRU (see their docstrings)."""

    supports_masking = True
    _cell = ""  # the cell's name in fastrnn._cells.CELLS

    def __init__(self, units: int, activation: Any = "tanh", use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform",
                 recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, recurrent_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 recurrent_constraint: Any = None, bias_constraint: Any = None,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, seed: int | None = None,
                 return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 zero_output_for_mask: bool = False, **kwargs: Any) -> None:
        cls = type(self).__name__
        for k, v in (("kernel_regularizer", kernel_regularizer),
                     ("recurrent_regularizer", recurrent_regularizer),
                     ("bias_regularizer", bias_regularizer),
                     ("kernel_constraint", kernel_constraint),
                     ("recurrent_constraint", recurrent_constraint),
                     ("bias_constraint", bias_constraint)):
            if v is not None:
                raise NotImplementedError(f"{cls}: {k} is not supported")
        kwargs.pop("implementation", None)  # Keras 2 argument, no effect on results
        kwargs.pop("use_cudnn", None)
        if kwargs.pop("time_major", False):
            raise NotImplementedError(f"{cls}: time_major=True is not supported; pass "
                                      "(batch, timesteps, features) inputs")
        super().__init__(**kwargs)
        self.units = _check_units(cls, units)
        self.activation = _acts.resolve(activation, "activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        dropout = check_float(cls, "dropout", dropout, 0.0, 1.0, hi_open=True)
        if check_float(cls, "recurrent_dropout", recurrent_dropout, 0.0, 1.0,
                       hi_open=True) != 0.0:
            raise NotImplementedError(
                f"{cls}: recurrent_dropout={recurrent_dropout!r} is not supported by fastrnn's "
                "fused kernels; use dropout= (input dropout) or a Dropout layer instead")
        self.dropout = float(dropout)
        self.recurrent_dropout = 0.0
        self.seed = seed
        self._rng = rng(seed) if seed is not None else None
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._states: list[np.ndarray] | None = None
        self.ops: ModuleType = F
        self._ctx: Any = None
        self._tokens: _Tokens | None = None
        self._dmask: np.ndarray | None = None
        self._last_states: list[np.ndarray] = []
        self._prepared: Any = None  # PreparedWeights of the precision in use, made on use

    # -- weights ------------------------------------------------------------------------
    def _converters(self) -> tuple:
        return _t, _t, None, None

    def _bias_initial(self, shape: tuple[int, ...]) -> Any:
        return self.bias_initializer

    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (3,), "(batch, timesteps, features)")
        if shape[-1] is None or shape[-1] == 0:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) needs a known, "
                             f"non-zero feature dimension, got input shape {tuple(shape)}")
        if self.built and shape[-1] != self.input_size:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) was built for "
                             f"{self.input_size} input features, got input shape {tuple(shape)}")

    def build(self, input_shape: tuple) -> None:
        n_in = int(input_shape[-1])
        gh = CELLS[self._cell].gates * self.units
        k_to, k_from, b_to, b_from = self._converters()
        self.input_size = n_in
        self.kernel = self.add_weight("kernel", (n_in, gh), self.kernel_initializer, k_to, k_from)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, gh),
                                                self.recurrent_initializer, k_to, k_from)
        self.bias = None
        if self.use_bias:
            shape = self._bias_shape()
            self.bias = self.add_weight("bias", shape, self._bias_initial(shape), b_to, b_from)
        self.built = True

    def _bias_shape(self) -> tuple[int, ...]:
        return (CELLS[self._cell].gates * self.units,)

    def _op_biases(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The ops' ``(b_ih, b_hh)`` from the bias weight: Keras's single (G*H,) bias is the
        input bias."""
        return (None, None) if self.bias is None else (self.bias.value, None)

    def _bias_grad(self, db_ih: np.ndarray, db_hh: np.ndarray | None) -> np.ndarray:
        """The bias weight's gradient from the ops' bias gradients (inverse of
        :meth:`_op_biases`)."""
        return db_ih

    @property
    def cell(self) -> str:
        """The layer's cell in the cell table (:data:`fastrnn._cells.CELLS`)."""
        return self._cell

    @property
    def nonlinearity(self) -> str | None:
        """The non-linearity the ops take (the activation of a cell with a choice of one,
        else None)."""
        return self.activation if CELLS[self._cell].nonlinearities else None

    def op_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                  np.ndarray | None]:
        """The weights as the ops take them: ``(w_ih, w_hh, b_ih, b_hh)`` in the ops' layout
        (views of the layer's current values; read-only use)."""
        return (self.kernel.value, self.recurrent_kernel.value, *self._op_biases())

    def compute_output_shape(self, input_shape: tuple) -> Any:
        b, t = input_shape[0], input_shape[1]
        out = (b, t, self.units) if self.return_sequences else (b, self.units)
        if self.return_state:
            return [out] + [(b, self.units)] * self._n_states
        return out

    def compute_mask(self, inputs: Any, mask: np.ndarray | None) -> np.ndarray | None:
        return mask if self.return_sequences else None

    # -- precision ----------------------------------------------------------------------
    @property
    def precision(self) -> str:
        """The ops' ``precision=`` of this layer's inference: ``"float32"`` (the arrays'
        dtype), ``"bfloat16"`` under the ``"mixed_bfloat16"`` policy, ``"int8"`` once
        quantized (:meth:`quantize`; training then raises)."""
        return self.dtype_policy.precision

    def quantize(self, mode: str, type_check: bool = True, config: Any = None) -> None:
        """Quantize the layer for inference (Keras 3's ``Layer.quantize``).

        The weights stay float32 (the master copy: saved, returned by ``get_weights``); the
        layer's inference runs the int8 kernels on weights quantized once per output channel
        and reused until the weights change. Training the layer afterwards raises.

        Parameters
        ----------
        mode : {"int8"}
        type_check, config
            Keras's arguments; ``config`` must be None (fastrnn's scheme is fixed: symmetric
            int8 weights per output channel, activations per row at run time).

        Raises
        ------
        ValueError
            For an unbuilt or already quantized layer, another mode, a float64 layer or a
            ``config``.
        """
        if not self.built:
            raise ValueError(f"Cannot quantize a layer that isn't yet built. Layer "
                             f"'{self.name}' (of type '{type(self).__name__}') is not built yet.")
        if self.dtype_policy.quantization_mode is not None:
            raise ValueError(f"Layer '{self.name}' is already quantized with "
                             f"dtype_policy='{self.dtype_policy.name}'. Received: mode={mode}")
        if mode not in _mp.QUANTIZATION_MODES:
            raise ValueError(f"Invalid quantization mode. Expected one of "
                             f"{_mp.QUANTIZATION_MODES}. Received: mode={mode}")
        if config is not None:
            raise ValueError(f"layer {self.name!r}: quantize(config=...) is not supported (the "
                             "int8 scheme is per-channel symmetric weights, per-row "
                             "activations)")
        if self.dtype != "float32":
            raise ValueError(f"layer {self.name!r} has dtype {self.dtype}: int8 quantization "
                             "needs a float32 layer")
        self.dtype_policy = _mp.QuantizedDTypePolicy(mode, self.dtype_policy.name)
        self._prepared = None

    def _weights_version(self) -> tuple[int, ...]:
        """The versions of the weights (:attr:`fastrnn.keras.base.Variable.version`)."""
        return tuple(v.version for v in self._variables)

    def prepared_weights(self) -> Any:
        """The weights prepared for :attr:`precision` (float32: packed once for inference):
        made once, reused by every call, made again when a weight's version changed (the
        optimizer's step, ``set_weights``, loading) or its array was replaced.

        Returns
        -------
        fastrnn.functional.PreparedWeights
        """
        prec = self.precision
        pw, version = self._prepared, self._weights_version()
        if pw is None or pw.precision != prec:
            pw = F.prepare_weights(self._cell, *self.op_weights(), precision=prec,
                                   check="identity")
        elif pw.version != version:
            pw.update(*self.op_weights())
        pw.version = version
        self._prepared = pw
        return pw

    # -- ops ----------------------------------------------------------------------------
    def set_ops(self, ops: ModuleType) -> None:
        """Choose the module whose recurrent ops the layer calls (its ``ops`` attribute).

        Parameters
        ----------
        ops : module
            :mod:`fastrnn.functional` (the native kernels; every layer's default) or
            :mod:`fastrnn.reference` (the same functions in NumPy: slow, to time or check the
            kernels against). Only the native ops fold an Embedding into the layer.

        Raises
        ------
        TypeError
            If ``ops`` lacks one of the functions the layer calls.
        """
        missing = [n for n in _OPS if not callable(getattr(ops, n, None))]
        if missing:
            raise TypeError(f"layer {self.name!r}: ops must provide {', '.join(_OPS)} (like "
                            f"fastrnn.functional or fastrnn.reference); {ops!r} lacks "
                            f"{', '.join(missing)}")
        self.ops = ops

    # -- state --------------------------------------------------------------------------
    @property
    def _n_states(self) -> int:
        return 2 if CELLS[self._cell].has_cell_state else 1

    @property
    def states(self) -> list[np.ndarray] | None:
        """Current recurrent state of a stateful layer (None before the first call)."""
        return self._states

    def reset_states(self, states: Any = None) -> None:
        """Zero the carried state of a stateful layer (or set it to ``states``)."""
        if not self.stateful:
            return
        if states is None:
            self._states = None
            return
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        if len(states) != self._n_states:
            raise ValueError(f"{self.name}: expected {self._n_states} state arrays, got "
                             f"{len(states)}")
        out = []
        for s in states:
            s = np.asarray(s)
            if s.dtype.kind not in "fiu":
                raise TypeError(f"{self.name}: states must be real arrays, got dtype {s.dtype}")
            s = s.astype(self.dtype, copy=False)
            if s.ndim != 2 or s.shape[1] != self.units:
                raise ValueError(f"{self.name}: each state must have shape (batch, "
                                 f"{self.units}), got {s.shape}")
            out.append(np.ascontiguousarray(s))
        self._states = out

    def _initial_states(self, batch: int) -> list[np.ndarray | None]:
        if not self.stateful or self._states is None:
            return [None] * self._n_states
        if self._states[0].shape[0] != batch:
            raise ValueError(
                f"layer {self.name!r} is stateful and carries state for batch size "
                f"{self._states[0].shape[0]}, got a batch of {batch}: stateful layers need "
                "every batch to have the same size (choose a batch_size dividing the number "
                "of samples, or call reset_states())")
        return list(self._states)

    # -- time-major core (shared with Bidirectional) -------------------------------------
    def _core_forward(self, xt: np.ndarray, lengths: np.ndarray | None,
                      training: bool, init: list[np.ndarray | None] | None = None
                      ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run the kernel on a contiguous time-major ``xt`` (T, B, I), from the initial
        states ``init`` (``[h0]`` or ``[h0, c0]``; default: the carried state of a stateful
        layer, else zeros).

        Returns the time-major outputs (in original time order; zeros past each sequence's
        end) and the final states ``[h]`` or ``[h, c]``.
        """
        tokens = xt if isinstance(xt, _Tokens) else None
        T, B = xt.ids.shape if tokens else xt.shape[:2]
        self._dmask = None
        self._tokens = tokens if training else None
        if not tokens and training and self.dropout > 0.0:
            g = self._rng if self._rng is not None else rng()
            keep = (g.random((B, xt.shape[2])) >= self.dropout).astype(self.dtype)
            keep *= 1.0 / (1.0 - self.dropout)
            self._dmask = keep
            xt = xt * keep
        if init is None:
            init = self._initial_states(B)  # [h0] or [h0, c0]
        h0, c0 = init[0], (init[1] if len(init) > 1 else None)
        w_ih, w_hh, b_ih, b_hh = self.op_weights()
        kw: dict[str, Any] = {"nonlinearity": self.nonlinearity, "lengths": lengths,
                              "reverse": self.go_backwards, "training": training}
        if self.precision != "float32":
            if training and self.dtype_policy.quantization_mode is not None:
                raise ValueError(
                    f"Layer '{self.name}' is quantized with dtype_policy="
                    f"'{self.dtype_policy.name}': int8 runs inference only. Train the "
                    "float model, then call quantize('int8') for inference.")
            kw["precision"] = self.precision
            if self.ops is F:
                kw["prepared"] = self.prepared_weights()
        elif (not training and not tokens and self.ops is F and w_hh.dtype == np.float32
              and _native.packed_weights_read(self._cell, w_hh.shape[1])):
            # inference (predict, evaluate, streams' warm-up) on weights packed once where the
            # kernels read them: the same results, less packing per call (training steps
            # change the weights every call)
            kw["prepared"] = self.prepared_weights()
        if tokens:
            # Embedding folded in (the caller checked accepts_tokens: no input dropout): the
            # kernels pick the projected table's rows
            y, h_n, c_n, self._ctx = _native.forward_rows(
                self._cell, tokens.project(w_ih), tokens.ids, h0, c0, w_hh, b_ih, b_hh, **kw)
        else:
            y, h_n, c_n, self._ctx = self.ops.cell_forward(
                self._cell, xt, h0, c0, w_ih, w_hh, b_ih, b_hh, **kw)
        states = [h_n] if c_n is None else [h_n, c_n]
        if self.stateful:
            self._states = [np.array(s, copy=True) for s in states]
        return y, states

    def accepts_tokens(self, emb: Layer, T: int, B: int) -> bool:
        """Whether a training or inference call may take :class:`_Tokens` from ``emb``
        instead of its embedded vectors (input dropout needs the vectors)."""
        return (self.dropout == 0.0 and emb.dtype == self.dtype and self.ops is F
                and self.precision == "float32" and _Tokens.fold_pays(emb.input_dim, T, B))

    def _core_backward(self, dy_tm: np.ndarray | None, dh_n: np.ndarray | None,
                       dc_n: np.ndarray | None = None, need_dx: bool = True
                       ) -> np.ndarray | None:
        """Backward of :meth:`_core_forward`: sets the weights' grads, returns dx (T, B, I),
        or None when the forward took :class:`_Tokens` (the Embedding's grad is set) or
        ``need_dx`` is False."""
        ctx = self._ctx
        self._ctx = None
        tokens = self._tokens
        self._tokens = None
        if ctx is None:
            raise RuntimeError(f"layer {self.name!r}: backward() needs a forward() with "
                               "training=True first")
        need_dx = need_dx or bool(tokens)  # the fold's table grads come from dx
        dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh = self.ops.cell_backward(
            ctx, dy_tm, dh_n, dc_n, need_dx=need_dx)
        self._d_init = [dh0] if dc0 is None else [dh0, dc0]
        if tokens:
            dw_ih = tokens.backward(dx, self.kernel.value)
            dx = None
        self.kernel.grad = dw_ih
        self.recurrent_kernel.grad = dw_hh
        if self.bias is not None:
            self.bias.grad = self._bias_grad(db_ih, db_hh)
        if self._dmask is not None:
            dx = None if dx is None else dx * self._dmask
            self._dmask = None
        return dx

    # -- Keras-facing forward/backward ----------------------------------------------------
    def check_initial_state(self, shapes: list[tuple]) -> None:
        """Check the shapes of ``initial_state`` tensors: ``[h]`` (``[h, c]`` for LSTM), each
        ``(batch, units)``."""
        n = self._n_states
        if len(shapes) != n:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}): initial_state "
                             f"expected {n} state arrays, got {len(shapes)} "
                             f"({'[h, c]' if n == 2 else '[h]'} expected)")
        for s in shapes:
            if len(s) != 2 or (s[1] is not None and s[1] != self.units):
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}): in "
                                 f"initial_state, each state must have shape (batch, "
                                 f"{self.units}), got {tuple(s)}")

    def _states_in(self, states: list[Any], batch: int) -> list[np.ndarray]:
        arrs = [np.asarray(s) for s in states]
        for a in arrs:
            if a.dtype.kind not in "fiub":
                raise TypeError(f"layer {self.name!r}: initial states must be real arrays, "
                                f"got dtype {a.dtype}")
        self.check_initial_state([a.shape for a in arrs])
        for a in arrs:
            if a.shape[0] != batch:
                raise ValueError(f"layer {self.name!r}: initial_state carries state for batch "
                                 f"size {a.shape[0]}, got a batch of {batch}")
        return [np.ascontiguousarray(a, dtype=self.dtype) for a in arrs]

    def forward(self, x: Any, mask: Any, training: bool) -> tuple[Any, np.ndarray | None]:
        """As :meth:`Layer.forward`; ``x`` may also be ``[x, *initial_states]`` (with a list of
        masks). With ``return_state=True`` the output is ``[output, *final_states]``."""
        init = None
        self._with_init = isinstance(x, list)
        if self._with_init:
            x, *states = x
            mask = mask[0] if mask is not None else None
        xt, T, B = _time_major(self, type(self).__name__, x)
        if self._with_init:
            init = self._states_in(states, B)
        lengths = mask_to_lengths(mask, B, T)
        y, states = self._core_forward(xt, lengths, training, init)
        self._last_states = states
        fill = None
        if self.return_sequences:
            if lengths is not None and not self.zero_output_for_mask and not self.go_backwards:
                # Keras repeats the last valid output over masked steps
                fill = ((np.arange(T)[:, None] >= lengths[None, :])
                        & (lengths[None, :] > 0))[:, :, None]
                y = np.where(fill, states[0][None], y)
            out = (y[::-1] if self.go_backwards else y).transpose(1, 0, 2)
            out_mask = mask
        else:
            out = states[0]
            if self.zero_output_for_mask and lengths is not None:
                fill = (lengths > 0)[:, None] if self.go_backwards else (lengths == T)[:, None]
                out = np.where(fill, out, 0).astype(self.dtype, copy=False)
            out_mask = None
        if training:
            self._fwd_cache = fill
        if self.return_state:
            return [out, *states], out_mask
        return out, out_mask

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """As :meth:`Layer.backward`; with ``return_state=True`` ``dy`` is the list of output
        gradients (None for an output without one); after a forward with initial states the
        result is ``[dx, *d_initial_states]``."""
        fill = self._fwd_cache
        self._fwd_cache = None
        dstates: list[Any] = [None] * self._n_states
        if self.return_state:
            dy, *dstates = dy
        dt = self.dtype

        def add(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else a + b

        if self.return_sequences:
            dh_n = None
            if dy is None:
                dyt = None
            else:
                dyt = dy.transpose(1, 0, 2)
                if self.go_backwards:
                    dyt = dyt[::-1]
                dyt = np.ascontiguousarray(dyt, dtype=dt)
                if fill is not None:
                    dh_n = np.where(fill, dyt, 0).sum(axis=0, dtype=dt)
                    dyt = np.where(fill, 0, dyt).astype(dt, copy=False)
        else:
            dyt = None
            dh_n = None if dy is None else np.ascontiguousarray(dy, dtype=dt)
            if fill is not None and dh_n is not None:
                dh_n = np.where(fill, dh_n, 0).astype(dt, copy=False)
        dh_n = add(dh_n, dstates[0])
        dh_n = None if dh_n is None else np.ascontiguousarray(dh_n, dtype=dt)
        dc_n = None
        if len(dstates) > 1 and dstates[1] is not None:
            dc_n = np.ascontiguousarray(dstates[1], dtype=dt)
        if dyt is None and dh_n is None:
            dh_n = np.zeros((self._ctx_batch(), self.units), dt)
        dx = self._core_backward(dyt, dh_n, dc_n, need_dx=need_dx)
        dx = None if dx is None else dx.transpose(1, 0, 2)
        if getattr(self, "_with_init", False):
            return [dx, *self._d_init]
        return dx

    def _ctx_batch(self) -> int:
        return int(self._last_states[0].shape[0])

    def __call__(self, inputs: Any, mask: Any = None, training: bool | None = None,
                 initial_state: Any = None, **kwargs: Any) -> Any:
        """Run eagerly on a ``(batch, timesteps, features)`` array, or record a call in a
        functional graph when given symbolic tensors.

        Returns the output, or ``[output, *final_states]`` with ``return_state=True``.
        ``initial_state``: a list of ``(batch, units)`` arrays (``[h]``, or ``[h, c]`` for
        LSTM), or symbolic tensors in a functional model.
        """
        return _call_with_state(self, inputs, mask, training, initial_state, kwargs)

    def get_config(self) -> dict:
        cfg = {**super().get_config(), "units": self.units, "activation": self.activation,
               "use_bias": self.use_bias,
               "kernel_initializer": serialize_initializer(self.kernel_initializer),
               "recurrent_initializer": serialize_initializer(self.recurrent_initializer),
               "bias_initializer": serialize_initializer(self.bias_initializer),
               "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
               "seed": self.seed, "return_sequences": self.return_sequences,
               "return_state": self.return_state, "go_backwards": self.go_backwards,
               "stateful": self.stateful, "unroll": self.unroll,
               "zero_output_for_mask": self.zero_output_for_mask}
        return cfg


class SimpleRNN(_RNNBase):
    """Fully-connected RNN: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    Parameters
    ----------
    units : int
        Hidden size H. Weights: ``kernel`` (I, H), ``recurrent_kernel`` (H, H), ``bias`` (H,):
        ``H(I + H + 1)`` parameters.
    activation : {'tanh', 'relu'}
        Other activations raise a clear error (the fused kernels implement these two).
    use_bias : bool
    kernel_initializer, recurrent_initializer, bias_initializer : str or Initializer
        Defaults ``'glorot_uniform'``, ``'orthogonal'``, ``'zeros'``.
    dropout : float
        Input dropout rate; one mask over input features per sequence, shared by all steps.
    recurrent_dropout : float
        Must be 0 (not supported by the fused kernels).
    return_sequences : bool
        Return every step ``(batch, timesteps, H)`` instead of the last ``(batch, H)``.
    return_state : bool
        Calling the layer returns ``[output, h]`` (not usable inside ``Sequential``).
    go_backwards : bool
        Process the sequence backwards (outputs are then in reversed order, as Keras).
    stateful : bool
        Carry the final state of each batch into the next one (same batch size each time);
        clear it with ``reset_states()``.
    zero_output_for_mask : bool
        With a mask and ``return_sequences``: zeros on masked steps instead of Keras's
        default of repeating the last valid output.
    **kwargs
        ``name``, ``dtype``, ``input_shape``, ``batch_size``, ``trainable``.
    """

    _cell = "rnn"

    def __init__(self, units: int, activation: Any = "tanh", **kwargs: Any) -> None:
        super().__init__(units, activation=activation, **kwargs)
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"SimpleRNN: activation={activation!r} is not supported by the "
                             "fused kernels; use 'tanh' or 'relu'")


class _GatedRNN(_RNNBase):
    """Shared part of LSTM and GRU: a gate activation beside the cell's activation (the fused
    kernels implement the defaults, tanh and sigmoid, only)."""

    def __init__(self, units: int, activation: Any = "tanh",
                 recurrent_activation: Any = "sigmoid", **kwargs: Any) -> None:
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = _acts.resolve(recurrent_activation, "recurrent_activation")
        if self.activation != "tanh" or self.recurrent_activation != "sigmoid":
            raise ValueError(
                f"{type(self).__name__}: activation={activation!r}, recurrent_activation="
                f"{recurrent_activation!r} is not supported by the fused kernels; use the "
                "defaults activation='tanh', recurrent_activation='sigmoid'")

    def get_config(self) -> dict:
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation}


class LSTM(_GatedRNN):
    """Long short-term memory layer (Hochreiter & Schmidhuber), Keras's maths and layout.

    Gates i, f, c, o (Keras's order, the kernels' too): ``kernel`` (I, 4H),
    ``recurrent_kernel`` (H, 4H), ``bias`` (4H,): ``4H(I + H + 1)`` parameters.

    Parameters
    ----------
    units : int
    activation : 'tanh'
        Cell/output activation; only the default is supported by the fused kernels.
    recurrent_activation : 'sigmoid'
        Gate activation; only the default is supported.
    unit_forget_bias : bool
        Initialise the forget gate's bias to one (Keras's default).
    **kwargs
        As :class:`SimpleRNN` (``use_bias``, initializers, ``dropout``,
        ``return_sequences``, ``return_state``, ``go_backwards``, ``stateful``, ...).
    """

    _cell = "lstm"

    def __init__(self, units: int, activation: Any = "tanh",
                 recurrent_activation: Any = "sigmoid", unit_forget_bias: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_initial(self, shape):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base = _inits.get(self.bias_initializer)
        h = self.units

        def init(shape: Any, dtype: Any = None) -> np.ndarray:
            return np.concatenate([base((h,), dtype), np.ones(h, dtype=dtype or self.dtype),
                                   base((2 * h,), dtype)])

        return init

    def get_config(self) -> dict:
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(_GatedRNN):
    """Gated recurrent unit, Keras's ``reset_after=True`` variant (the PyTorch/cuDNN maths).

    Keras's weights: ``kernel`` (I, 3H) and ``recurrent_kernel`` (H, 3H) with gate blocks
    z, r, h; ``bias`` (2, 3H) = input bias and recurrent bias: ``3H(I + H + 2)`` parameters.

    Parameters
    ----------
    units : int
    activation : 'tanh'
    recurrent_activation : 'sigmoid'
        Only the defaults are supported by the fused kernels.
    reset_after : bool
        Must be True (Keras's default); ``reset_after=False`` raises a clear error.
    **kwargs
        As :class:`SimpleRNN`.
    """

    _cell = "gru"

    def __init__(self, units: int, activation: Any = "tanh",
                 recurrent_activation: Any = "sigmoid", reset_after: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, **kwargs)
        if not reset_after:
            raise NotImplementedError("GRU: reset_after=False (the original GRU) is not "
                                      "supported; fastrnn implements reset_after=True, Keras's "
                                      "default")
        self.reset_after = True

    def _converters(self):
        return _gru_kernel_to_keras, _gru_kernel_from_keras, _gru_bias_perm, _gru_bias_perm

    def _bias_shape(self):
        return (2, 3 * self.units)

    def _op_biases(self):
        # Keras's (2, 3H) bias: the input bias, then the recurrent bias
        return (None, None) if self.bias is None else (self.bias.value[0], self.bias.value[1])

    def _bias_grad(self, db_ih, db_hh):
        return np.stack([db_ih, db_hh])

    def get_config(self) -> dict:
        return {**super().get_config(), "reset_after": True}


_MERGE_MODES = ("concat", "sum", "mul", "ave")


class Bidirectional(Layer):
    """Run a recurrent layer forwards and backwards over the sequence and merge the outputs.

    Parameters
    ----------
    layer : SimpleRNN, LSTM or GRU
        The forward layer's template; the backward copy has ``go_backwards=True``.
    merge_mode : {'concat', 'sum', 'mul', 'ave'}
        How the two outputs combine (``concat``: forward features then backward ones).
    backward_layer : SimpleRNN, LSTM or GRU, optional
        An explicit backward layer (must have ``go_backwards=True`` and the same
        ``return_sequences``/``return_state``/``stateful``).
    **kwargs
        ``name``, ``input_shape``, ... as any layer.

    Notes
    -----
    Both directions share one time-major copy of the input and run as two kernel calls;
    with a mask each direction covers only the valid steps (the backward one starts at each
    sequence's own last step), and masked output steps are zero (Keras's behaviour here).
    """

    supports_masking = True

    def __init__(self, layer: _RNNBase, merge_mode: str | None = "concat", weights: Any = None,
                 backward_layer: _RNNBase | None = None, **kwargs: Any) -> None:
        if not isinstance(layer, _RNNBase):
            raise ValueError(f"Bidirectional wraps a SimpleRNN, LSTM or GRU layer, got {layer!r}")
        if merge_mode is None:
            raise NotImplementedError("Bidirectional(merge_mode=None) returns two outputs; "
                                      "fastrnn models need one: use 'concat', 'sum', 'mul' or "
                                      "'ave'")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {_MERGE_MODES}, got "
                             f"{merge_mode!r}")
        if layer.return_state:
            raise NotImplementedError("Bidirectional with return_state=True is not supported")
        kwargs.setdefault("dtype", layer.dtype_policy.name)
        if layer._batch_input_shape is not None and "input_shape" not in kwargs \
                and "batch_input_shape" not in kwargs:
            kwargs["batch_input_shape"] = layer._batch_input_shape
        super().__init__(**kwargs)
        self.merge_mode = merge_mode
        self._layer_config = _serialize_rnn(layer)
        cfg = dict(self._layer_config["config"])
        cfg.pop("batch_input_shape", None)
        cfg["name"] = "forward_" + layer.name.removeprefix("forward_")
        self.forward_layer = type(layer).from_config(cfg)
        self._backward_config = None
        if backward_layer is None:
            cfg = dict(self._layer_config["config"])
            cfg.pop("batch_input_shape", None)
            cfg["go_backwards"] = True
            cfg["name"] = "backward_" + layer.name.removeprefix("backward_")
            self.backward_layer = type(layer).from_config(cfg)
        else:
            if not isinstance(backward_layer, _RNNBase):
                raise ValueError("backward_layer must be a SimpleRNN, LSTM or GRU layer")
            self._backward_config = _serialize_rnn(backward_layer)
            cfg = dict(self._backward_config["config"])
            cfg.pop("batch_input_shape", None)
            self.backward_layer = type(backward_layer).from_config(cfg)
        f, b = self.forward_layer, self.backward_layer
        if f.go_backwards == b.go_backwards:
            raise ValueError("Bidirectional: the forward and backward layers must have "
                             f"different go_backwards, got {f.go_backwards} for both")
        for a in ("stateful", "return_sequences", "return_state"):
            if getattr(f, a) != getattr(b, a):
                raise ValueError(f"Bidirectional: forward and backward layers must agree on "
                                 f"{a}, got {getattr(f, a)} and {getattr(b, a)}")
        if f.dtype != b.dtype:
            raise ValueError("Bidirectional: forward and backward layers must share a dtype")
        self.return_sequences = f.return_sequences
        self.return_state = False
        self.stateful = f.stateful
        self._initial_weights = weights

    def check_input_shape(self, shape: tuple) -> None:
        self.forward_layer.check_input_shape(shape)
        self.backward_layer.check_input_shape(shape)

    def build(self, input_shape: tuple) -> None:
        for sub in (self.forward_layer, self.backward_layer):
            sub._build_for(tuple(input_shape))
            for v in sub.weights:
                v.path = f"{self.name}/{sub.name}/{v.name}"
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None
        self.built = True

    @property
    def weights(self) -> list[Variable]:
        return self.forward_layer.weights + self.backward_layer.weights

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        out = self.forward_layer.compute_output_shape(input_shape)
        if self.merge_mode == "concat":
            out = tuple(out[:-1]) + (out[-1] * 2,)
        return tuple(out)

    def compute_mask(self, inputs: Any, mask: np.ndarray | None) -> np.ndarray | None:
        return mask if self.return_sequences else None

    def reset_states(self) -> None:
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    def quantize(self, mode: str, type_check: bool = True, config: Any = None) -> None:
        """As :meth:`_RNNBase.quantize`, for both directions (kept in the saved config)."""
        if not self.built:
            raise ValueError(f"Cannot quantize a layer that isn't yet built. Layer "
                             f"'{self.name}' (of type 'Bidirectional') is not built yet.")
        for sub in (self.forward_layer, self.backward_layer):
            sub.quantize(mode, type_check, config)
        for c in (self._layer_config, self._backward_config):
            if c is not None:
                c["config"] = {**c["config"], "dtype": self.forward_layer.dtype_policy.name}
        self.dtype_policy = _mp.QuantizedDTypePolicy(mode, self.dtype_policy.name)

    def set_ops(self, ops: ModuleType) -> None:
        """As :meth:`_RNNBase.set_ops`, for both directions."""
        self.forward_layer.set_ops(ops)
        self.backward_layer.set_ops(ops)

    def accepts_tokens(self, emb: Layer, T: int, B: int) -> bool:
        """As :meth:`_RNNBase.accepts_tokens`, for both directions."""
        return (self.forward_layer.accepts_tokens(emb, T, B)
                and self.backward_layer.accepts_tokens(emb, T, B))

    def forward(self, x: np.ndarray | _Tokens, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        xt, T, B = _time_major(self, "Bidirectional", x)
        lengths = mask_to_lengths(mask, B, T)
        yf, sf = self.forward_layer._core_forward(xt, lengths, training)
        yb, sb = self.backward_layer._core_forward(xt, lengths, training)
        if self.return_sequences:
            # Keras: concat(y_forward_layer, flip(y_backward_layer)), each layer's outputs in
            # its processing order; the kernels return original time order
            a = yf[::-1] if self.forward_layer.go_backwards else yf
            b = yb if self.backward_layer.go_backwards else yb[::-1]
        else:
            a, b = sf[0], sb[0]
        m = self.merge_mode
        if m == "concat":
            out = np.concatenate([a, b], axis=-1)
        elif m == "sum":
            out = a + b
        elif m == "ave":
            out = (a + b) * 0.5
        else:
            out = a * b
        if training:
            self._cache = (a, b) if m == "mul" else None
        if self.return_sequences:
            return out.transpose(1, 0, 2), mask
        return out, None

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        h = self.forward_layer.units
        dt = self.dtype
        dyt = (np.ascontiguousarray(dy.transpose(1, 0, 2), dtype=dt) if self.return_sequences
               else np.ascontiguousarray(dy, dtype=dt))
        m = self.merge_mode
        if m == "concat":
            da = np.ascontiguousarray(dyt[..., :h])
            db = np.ascontiguousarray(dyt[..., h:])
        elif m == "sum":
            da = db = dyt
        elif m == "ave":
            da = db = dyt * 0.5
        else:
            a, b = self._cache
            da, db = dyt * b, dyt * a
        self._cache = None
        f, bw = self.forward_layer, self.backward_layer
        if self.return_sequences:
            if f.go_backwards:
                da = np.ascontiguousarray(da[::-1])
            if not bw.go_backwards:
                db = np.ascontiguousarray(db[::-1])
            dx = f._core_backward(da, None, need_dx=need_dx)
            dx2 = bw._core_backward(db, None, need_dx=need_dx)
        else:
            dx = f._core_backward(None, da, need_dx=need_dx)
            dx2 = bw._core_backward(None, db, need_dx=need_dx)
        if dx is None:  # both took _Tokens (the Embedding's grad holds both directions'
            return None  # parts), or no input gradient is needed
        dx += dx2
        return dx.transpose(1, 0, 2)

    def get_config(self) -> dict:
        cfg = {**super().get_config(), "layer": self._layer_config,
               "merge_mode": self.merge_mode}
        if self._backward_config is not None:
            cfg["backward_layer"] = self._backward_config
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        config = dict(config)
        config["layer"] = _deserialize_rnn(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = _deserialize_rnn(config["backward_layer"])
        return cls(**config)


_RNN_CLASSES = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}


def _serialize_rnn(layer: _RNNBase) -> dict:
    name = type(layer).__name__
    if _RNN_CLASSES.get(name) is not type(layer):
        raise ValueError(f"Bidirectional: cannot wrap custom layer type {name}")
    return {"class_name": name, "config": layer.get_config()}


def _deserialize_rnn(config: Any) -> _RNNBase:
    if not isinstance(config, dict) or config.get("class_name") not in _RNN_CLASSES:
        raise ValueError(f"Bidirectional: invalid wrapped layer config {config!r}")
    return _RNN_CLASSES[config["class_name"]].from_config(dict(config.get("config") or {}))
