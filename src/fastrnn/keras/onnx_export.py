"""Export a fastrnn Keras-style model to ONNX, with the standard recurrent operators.

:func:`export_onnx` writes a model (``Sequential``, or a functional ``Model`` with several
inputs and outputs, nested models, shared layers, ``initial_state`` and ``return_state``)
that ONNX Runtime (or any ONNX backend) runs without fastrnn: every
:class:`~fastrnn.keras.layers.SimpleRNN`, :class:`~fastrnn.keras.layers.LSTM` and
:class:`~fastrnn.keras.layers.GRU` becomes one standard ``RNN``/``LSTM``/``GRU`` node
(:class:`~fastrnn.keras.layers.Bidirectional` one node with ``direction="bidirectional"``),
the other layers the ordinary operators (``MatMul``, ``Gather``, ``Softmax``, ...).

What the conversion does, layer by layer:

- Keras's batch-first ``(batch, time, features)`` tensors are transposed to ONNX's
  time-major layout around each recurrent node (``Transpose``), and back.
- Weights go from the kernels' layout (PyTorch gate order) to ONNX's: LSTM gates
  i, f, g, o become i, o, f, c; GRU gates r, z, n become z, r, h, and fastrnn's GRU (Keras's
  ``reset_after=True``) is ``linear_before_reset=1``; ``B`` holds the input bias then the
  recurrent bias (zeros where the layer has none).
- Masks (``Masking``, ``Embedding(mask_zero=True)``) are computed in the graph from the
  input and become the recurrent nodes' ``sequence_lens`` (the number of valid steps of
  each sequence; as in fastrnn, masks must be padding at the end of each sequence). Keras's
  outputs on masked steps are reproduced: the last valid output repeated
  (``return_sequences`` forwards), zeros (``go_backwards``, ``Bidirectional``,
  ``zero_output_for_mask``). The graph cannot raise fastrnn's error for a mask with gaps
  (pre-padding): it counts the valid steps as if they came first.
- ``go_backwards`` is ``direction="reverse"`` and its outputs are flipped in time, as
  Keras returns them; ``Bidirectional`` merges the two directions with ``Concat``, ``Add``,
  ``Mul`` or their mean.
- With ``states=True`` (the default for a model with a ``stateful`` layer) every recurrent
  layer gets graph inputs for its states, ``<layer>_h0`` (and ``<layer>_c0`` for an
  LSTM) of shape ``(batch, units)``, and the final states as outputs ``<layer>_h``
  (``<layer>_c``): feed each call's final states to the next call to carry state as a
  stateful layer does (zeros at the start, as after ``reset_states()``).
- ``Dropout`` and ``SpatialDropout1D`` are the identity (inference), ``Embedding`` a
  ``Gather``, ``Dense`` a ``MatMul`` and ``Add`` plus its activation; ``Flatten``,
  ``Reshape``, ``RepeatVector`` and ``TimeDistributed`` the matching shape operators.
- ``RNN`` of the built-in cells (``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``, a
  ``StackedRNNCells`` or list of them) is the same recurrent nodes as the fused layers, one
  per cell; an ``RNN`` of your own cell raises, naming the layer and the cell.
- ``Conv1D`` is ``Conv`` (transposed to channels-first and back; ``'same'`` padding as
  ``SAME_UPPER``, or explicit pads with a dilation; ``'causal'`` pads on the left),
  ``MaxPooling1D``/``AveragePooling1D`` are ``MaxPool``/``AveragePool`` (padded steps not
  counted), ``GlobalMaxPooling1D``/``GlobalAveragePooling1D`` ``GlobalMaxPool``/
  ``GlobalAveragePool``, the average over the valid steps when there is a mask (as Keras).
- ``BatchNormalization`` (inference) is a ``Mul`` and an ``Add`` with the moving
  statistics folded in; ``LayerNormalization`` the ``LayerNormalization`` operator from
  opset 17 (over trailing axes), else ``ReduceMean``/``Sqrt``/``Div``; ``LeakyReLU`` is
  ``LeakyRelu``.
- ``Add``, ``Multiply`` and ``Concatenate`` are ``Add``, ``Mul`` and ``Concat`` with Keras's
  merged masks; ``Attention`` (dot or concat scores, optional scale) and
  ``AdditiveAttention`` are ``MatMul``/``Tanh``/``ReduceSum`` scores, the value mask and the
  causal mask (``use_causal_mask``) subtracting 1e9 as Keras, ``Softmax`` and ``MatMul``
  with the value; the query mask zeroes the output and is its mask. ``Lambda`` has no ONNX
  form (its function is Python).

The batch size and the number of steps are dynamic axes (``batch``, ``time``), whatever
the model was built or trained with (the number of steps stays fixed when the model's input
shape fixes it and a ``Flatten`` or ``Reshape`` layer depends on it). The ONNX model
computes in float32 (a float64 model's weights are rounded to float32). A layer with no
ONNX form raises :class:`OnnxExportError` naming it.

``onnx`` is an optional dependency (``pip install 'fastrnn[onnx]'``), imported only here,
when a model is exported.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._cells import CELLS
from . import activations as _acts
from .advanced_activations import LeakyReLU
from .attention import _BIG as _ATTENTION_BIG
from .attention import AdditiveAttention, Attention
from .convolutional import Conv1D
from .layers import (
    Activation,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    InputLayer,
    Masking,
    RepeatVector,
    Reshape,
    TimeDistributed,
)
from .merging import Add, Concatenate, Multiply
from .normalization import BatchNormalization, LayerNormalization
from .pooling import AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D, MaxPooling1D
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN, _RNNBase
from .regularization import SpatialDropout1D
from .rnn_cells import RNN

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "OnnxExportError", "export_onnx"]

#: The ONNX opset written by default (ONNX Runtime 1.14 and later run it).
DEFAULT_OPSET = 17
#: The oldest opset the exporter writes (``ReduceSum`` with its axes as an input).
MIN_OPSET = 13

# Each cell's ONNX operator, its gate order there (the kernels' order is CELLS[...].gate_order)
# and the operator's fixed attributes.
_ONNX_CELLS: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "rnn": ("RNN", ("h",), {}),
    "lstm": ("LSTM", ("i", "o", "f", "g"), {}),
    "gru": ("GRU", ("z", "r", "n"), {"linear_before_reset": 1}),
}

# Activations that are one ONNX node: name -> (op, attributes)
_ACT_NODES: dict[str, tuple[str, dict[str, Any]]] = {
    "relu": ("Relu", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "softmax": ("Softmax", {"axis": -1}),
    "softplus": ("Softplus", {}),
    "softsign": ("Softsign", {}),
    "elu": ("Elu", {"alpha": 1.0}),
    "selu": ("Selu", {"alpha": _acts._SELU_ALPHA, "gamma": _acts._SELU_SCALE}),
    "exponential": ("Exp", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.2}),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
}


class OnnxExportError(ValueError):
    """A model that cannot be exported to ONNX (the message names the layer and why)."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("exporting to ONNX needs the 'onnx' package: pip install onnx "
                          "(or pip install 'fastrnn[onnx]', which adds onnxruntime to run "
                          "the exported model)") from exc
    return onnx


class _Graph:
    """An ONNX graph under construction: nodes, initializers and fresh names."""

    def __init__(self, onnx: Any, opset: int = DEFAULT_OPSET) -> None:
        self.onnx = onnx
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.inputs: list[Any] = []
        self.outputs: list[Any] = []
        self._n = 0
        self._consts: dict[tuple, str] = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value: Any, dtype: Any = np.float32, hint: str = "const") -> str:
        a = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = (a.dtype.str, a.shape, a.tobytes())
        if a.size <= 16 and key in self._consts:
            return self._consts[key]
        n = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(a, n))
        if a.size <= 16:
            self._consts[key] = n
        return n

    def ints(self, values: Any) -> str:
        return self.const(values, np.int64, "ints")

    def node(self, op: str, inputs: list[str], n_out: int = 1, hint: str | None = None,
             **attrs: Any) -> Any:
        outs = [self.name(hint or op.lower()) for _ in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outs, name=self.name(op),
                                                     **attrs))
        return outs[0] if n_out == 1 else outs


class _Tensor:
    """A value flowing between layers: its name, rank and Keras mask ((batch, time) bool
    tensor name, or None)."""

    __slots__ = ("mask", "name", "rank")

    def __init__(self, name: str, rank: int, mask: str | None = None) -> None:
        self.name, self.rank, self.mask = name, rank, mask


def _activation(g: _Graph, x: str, name: str, layer: Any) -> str:
    if name == "linear":
        return x
    if name in _ACT_NODES:
        op, attrs = _ACT_NODES[name]
        return g.node(op, [x], **attrs)
    if name == "relu6":
        return g.node("Clip", [x, g.const(0.0), g.const(6.0)])
    if name in ("swish", "silu"):
        return g.node("Mul", [x, g.node("Sigmoid", [x])])
    raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}): activation "
                          f"{name!r} has no ONNX form in fastrnn's exporter")


def _onnx_weights(layers: list[_RNNBase]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ONNX's ``W`` (D, G*H, I), ``R`` (D, G*H, H) and ``B`` (D, 2*G*H) of one recurrent node
    whose directions are ``layers`` (one, or forward and backward)."""
    cell = layers[0].cell
    kernel_order = CELLS[cell].gate_order
    perm = [kernel_order.index(gate) for gate in _ONNX_CELLS[cell][1]]
    Ws, Rs, Bs = [], [], []
    for layer in layers:
        w_ih, w_hh, b_ih, b_hh = layer.op_weights()
        h = layer.units
        idx = np.concatenate([np.arange(p * h, (p + 1) * h) for p in perm])
        zeros = np.zeros(w_ih.shape[0], np.float64)
        Ws.append(w_ih[idx])
        Rs.append(w_hh[idx])
        Bs.append(np.concatenate([(zeros if b_ih is None else b_ih)[idx],
                                  (zeros if b_hh is None else b_hh)[idx]]))
    return tuple(np.stack(a).astype(np.float32) for a in (Ws, Rs, Bs))  # type: ignore[return-value]


def _same_cell(f: _RNNBase, b: _RNNBase) -> bool:
    return (type(f) is type(b) and f.units == b.units and f.activation == b.activation
            and f.input_size == b.input_size)


class _Exporter:
    """Converts a model's layers one by one into ``_Graph`` nodes."""

    def __init__(self, g: _Graph, states: bool) -> None:
        self.g = g
        self.states = states

    # -- recurrent layers -------------------------------------------------------------
    def _state_inputs(self, layer: _RNNBase) -> list[str]:
        """New graph inputs ``<layer>_h0`` (``_c0``), each (batch, units)."""
        g, onnx = self.g, self.g.onnx
        names = [f"{layer.name}_{s}0" for s in ("h", "c")[:layer._n_states]]
        g.inputs += [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT,
                                                        ["batch", layer.units]) for n in names]
        return names

    def _state_outputs(self, layer: _RNNBase, finals: list[str]) -> None:
        """The final states ``finals`` (each (batch, units)) as graph outputs ``<layer>_h``
        (``_c``)."""
        g, onnx = self.g, self.g.onnx
        for s, t in zip(("h", "c"), finals, strict=False):
            name = f"{layer.name}_{s}"
            g.nodes.append(onnx.helper.make_node("Identity", [t], [name],
                                                 name=g.name("Identity")))
            g.outputs.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, ["batch", layer.units]))

    def _recurrent_node(self, layers: list[_RNNBase], xt: str, lengths: str | None,
                        inits: list[list[str]] | None = None) -> tuple[str, list[list[str]]]:
        """One ONNX RNN/LSTM/GRU node over time-major ``xt`` whose directions are
        ``layers`` (each runs forward, or reversed when its ``go_backwards``), from the
        initial states ``inits`` (per layer ``[h0]`` or ``[h0, c0]``, each (batch, units);
        with ``states=True`` new graph inputs by default, else zeros). Returns ``Y``
        (T, D, B, H) and each layer's final states ``[h]`` or ``[h, c]``, (batch, units)."""
        g = self.g
        first = layers[0]
        op, _, attrs = _ONNX_CELLS[first.cell]
        W, R, B = _onnx_weights(layers)
        if len(layers) == 2:
            direction = "bidirectional"
        else:
            direction = "reverse" if first.go_backwards else "forward"
        attrs = dict(attrs, hidden_size=first.units, direction=direction)
        if op == "RNN":
            attrs["activations"] = [first.activation.capitalize()] * len(layers)
        inputs = [xt, g.const(W, hint=f"{first.name}_W"), g.const(R, hint=f"{first.name}_R"),
                  g.const(B, hint=f"{first.name}_B"), lengths or ""]
        if inits is None and self.states:
            inits = [self._state_inputs(layer) for layer in layers]
        if inits is not None:
            # ONNX wants each state as (D, batch, units): the directions stacked
            inputs += [g.node("Concat", [g.node("Unsqueeze", [t, g.ints([0])]) for t in ts],
                              axis=0) for ts in zip(*inits, strict=True)]
        while inputs[-1] == "":
            inputs.pop()
        outs = g.node(op, inputs, n_out=1 + first._n_states, hint=first.name, **attrs)
        finals = [[self._pick(t, d, 0) for t in outs[1:]] for d in range(len(layers))]
        if inits is not None and lengths is not None:
            # an empty sequence keeps its initial state (ONNX Runtime returns zeros)
            empty = g.node("Unsqueeze", [g.node("Equal", [lengths, g.const(0, np.int32)]),
                                         g.ints([1])])
            finals = [[g.node("Where", [empty, h0, h]) for h0, h in zip(i, f, strict=True)]
                      for i, f in zip(inits, finals, strict=True)]
        if self.states:
            for layer, fin in zip(layers, finals, strict=True):
                self._state_outputs(layer, fin)
        return outs[0], finals

    def _lengths(self, mask: str | None) -> str | None:
        if mask is None:
            return None
        g = self.g
        n = g.node("ReduceSum", [g.node("Cast", [mask], to=self.g.onnx.TensorProto.INT64),
                                 g.ints([1])], keepdims=0)
        return g.node("Cast", [n], to=g.onnx.TensorProto.INT32, hint="sequence_lens")

    def _flip_time(self, y: str) -> str:
        g = self.g
        return g.node("Slice", [y, g.ints([-1]), g.ints([np.iinfo(np.int64).min]), g.ints([0]),
                                g.ints([-1])])

    def _pick(self, t: str, d: int, axis: int) -> str:
        """Direction ``d`` of ``t`` along ``axis`` (removed)."""
        g = self.g
        one = g.node("Slice", [t, g.ints([d]), g.ints([d + 1]), g.ints([axis])])
        return g.node("Squeeze", [one, g.ints([axis])])

    def _time_major(self, layer: Any, x: _Tensor) -> str:
        if x.rank != 3:
            raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}) expects a "
                                  f"3-D input (batch, timesteps, features), got rank {x.rank}")
        return self.g.node("Transpose", [x.name], perm=[1, 0, 2])

    def rnn(self, layer: _RNNBase, x: _Tensor) -> _Tensor:
        if layer.return_state:
            raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}): "
                                  "return_state=True has no place in a one-output model")
        return self.rnn_call(layer, x)[0]

    def rnn_call(self, layer: _RNNBase, x: _Tensor, init: list[str] | None = None
                 ) -> tuple[_Tensor, list[str]]:
        """A SimpleRNN/LSTM/GRU on ``x`` from the initial states ``init`` (``[h0]`` or
        ``[h0, c0]``, each (batch, units)): its Keras output and its final states."""
        g = self.g
        lengths = self._lengths(x.mask)
        Y, per_layer = self._recurrent_node([layer], self._time_major(layer, x), lengths,
                                            None if init is None else [init])
        finals = per_layer[0]
        if layer.return_sequences:
            y = self._pick(Y, 0, 1)  # (T, B, H)
            if lengths is not None and not layer.zero_output_for_mask \
                    and not layer.go_backwards:
                # Keras repeats the last valid output over the masked steps
                steps = g.node("Range", [g.const(0, np.int64), g.node(
                    "Gather", [g.node("Shape", [y]), g.const(0, np.int64)]),
                    g.const(1, np.int64)])
                len64 = g.node("Cast", [lengths], to=g.onnx.TensorProto.INT64)
                past = g.node("GreaterOrEqual", [g.node("Unsqueeze", [steps, g.ints([1])]),
                                                 len64])
                fill = g.node("And", [past, g.node("Greater", [len64, g.const(0, np.int64)])])
                y = g.node("Where", [g.node("Unsqueeze", [fill, g.ints([2])]), finals[0], y])
            if layer.go_backwards:
                y = self._flip_time(y)
            return _Tensor(g.node("Transpose", [y], perm=[1, 0, 2]), 3, x.mask), finals
        out = finals[0]  # (B, H)
        if layer.zero_output_for_mask and lengths is not None:
            len64 = g.node("Cast", [lengths], to=g.onnx.TensorProto.INT64)
            if layer.go_backwards:
                keep = g.node("Greater", [len64, g.const(0, np.int64)])
            else:
                steps = g.node("Gather", [g.node("Shape", [x.name]), g.const(1, np.int64)])
                keep = g.node("Equal", [len64, steps])
            out = g.node("Where", [g.node("Unsqueeze", [keep, g.ints([1])]), out,
                                   g.const(0.0)])
        return _Tensor(out, 2, None), finals

    def bidirectional(self, layer: Bidirectional, x: _Tensor,
                      init: list[str] | None = None) -> _Tensor:
        """Both directions on ``x``, merged; ``init``: the forward layer's initial states,
        then the backward layer's (as Keras's ``initial_state``)."""
        g = self.g
        f, b = layer.forward_layer, layer.backward_layer
        inits = None if init is None else [init[:f._n_states], init[f._n_states:]]
        lengths = self._lengths(x.mask)
        xt = self._time_major(layer, x)
        if not f.go_backwards and _same_cell(f, b):
            Y, finals = self._recurrent_node([f, b], xt, lengths, inits)
            ys = [self._pick(Y, d, 1) for d in (0, 1)]
        else:  # two nodes (e.g. a backward layer of another kind or size)
            ys, finals = [], []
            for d, sub in enumerate((f, b)):
                Y, fin = self._recurrent_node([sub], xt, lengths,
                                              None if inits is None else [inits[d]])
                ys.append(self._pick(Y, 0, 1))
                finals += fin
        hs = [finals[0][0], finals[1][0]]
        if layer.return_sequences:
            # Keras: the forward layer's outputs in its processing order, the backward
            # layer's flipped back; the nodes return the original time order
            a = self._flip_time(ys[0]) if f.go_backwards else ys[0]
            bb = ys[1] if b.go_backwards else self._flip_time(ys[1])
        else:
            a, bb = hs
        m = layer.merge_mode
        if m == "concat":
            out = g.node("Concat", [a, bb], axis=-1)
        elif m == "sum":
            out = g.node("Add", [a, bb])
        elif m == "ave":
            out = g.node("Mul", [g.node("Add", [a, bb]), g.const(0.5)])
        else:
            out = g.node("Mul", [a, bb])
        if layer.return_sequences:
            return _Tensor(g.node("Transpose", [out], perm=[1, 0, 2]), 3, x.mask)
        return _Tensor(out, 2, None)

    # -- the other layers -------------------------------------------------------------
    def dense(self, layer: Dense, x: _Tensor) -> _Tensor:
        g = self.g
        y = g.node("MatMul", [x.name, g.const(layer.kernel.value, hint=f"{layer.name}_kernel")])
        if layer.bias is not None:
            y = g.node("Add", [y, g.const(layer.bias.value, hint=f"{layer.name}_bias")])
        return _Tensor(_activation(g, y, layer.activation, layer), x.rank, x.mask)

    def activation(self, layer: Activation, x: _Tensor) -> _Tensor:
        return _Tensor(_activation(self.g, x.name, layer.activation, layer), x.rank, x.mask)

    def embedding(self, layer: Embedding, x: _Tensor) -> _Tensor:
        g = self.g
        ids = g.node("Cast", [x.name], to=g.onnx.TensorProto.INT64)
        y = g.node("Gather", [g.const(layer.embeddings.value, hint=f"{layer.name}_embeddings"),
                              ids], axis=0)
        mask = None
        if layer.mask_zero:
            mask = g.node("Not", [g.node("Equal", [ids, g.const(0, np.int64)])], hint="mask")
        return _Tensor(y, x.rank + 1, mask)

    def masking(self, layer: Masking, x: _Tensor) -> _Tensor:
        g = self.g
        differs = g.node("Not", [g.node("Equal", [x.name, g.const(layer.mask_value)])])
        count = g.node("ReduceSum", [g.node("Cast", [differs], to=g.onnx.TensorProto.FLOAT),
                                     g.ints([-1])], keepdims=0)
        mask = g.node("Greater", [count, g.const(0.0)], hint="mask")
        keep = g.node("Cast", [g.node("Unsqueeze", [mask, g.ints([-1])])],
                      to=g.onnx.TensorProto.FLOAT)
        return _Tensor(g.node("Mul", [x.name, keep]), x.rank, mask)

    def dropout(self, layer: Dropout, x: _Tensor) -> _Tensor:
        return x

    def flatten(self, layer: Flatten, x: _Tensor) -> _Tensor:
        return _Tensor(self.g.node("Flatten", [x.name], axis=1), 2, None)

    def reshape(self, layer: Reshape, x: _Tensor) -> _Tensor:
        g = self.g
        y = g.node("Reshape", [x.name, g.ints([0, *layer.target_shape])])
        return _Tensor(y, 1 + len(layer.target_shape), None)

    def repeat_vector(self, layer: RepeatVector, x: _Tensor) -> _Tensor:
        g = self.g
        y = g.node("Tile", [g.node("Unsqueeze", [x.name, g.ints([1])]),
                            g.ints([1, layer.n, 1])])
        return _Tensor(y, 3, None)

    def time_distributed(self, layer: TimeDistributed, x: _Tensor) -> _Tensor:
        g = self.g
        shape = g.node("Shape", [x.name])
        rest = g.node("Slice", [shape, g.ints([2]), g.ints([x.rank]), g.ints([0])])
        flat = g.node("Reshape", [x.name, g.node("Concat", [g.ints([-1]), rest], axis=0)])
        inner = self.layer(layer.layer, _Tensor(flat, x.rank - 1, None))
        inner_rest = g.node("Slice", [g.node("Shape", [inner.name]), g.ints([1]),
                                      g.ints([inner.rank]), g.ints([0])])
        bt = g.node("Slice", [shape, g.ints([0]), g.ints([2]), g.ints([0])])
        y = g.node("Reshape", [inner.name, g.node("Concat", [bt, inner_rest], axis=0)])
        return _Tensor(y, inner.rank + 1, x.mask)

    def run_graph(self, graph: Any, inputs: list[_Tensor]) -> list[_Tensor]:
        """Convert a functional graph's nodes in their execution order; ``inputs`` stand for
        ``graph.inputs``. Returns the tensors of ``graph.outputs``."""
        env = {id(t): x for t, x in zip(graph.inputs, inputs, strict=True)}
        for node in graph.nodes:
            outs = self.call(node, [env[id(t)] for t in node.inputs])
            for t, y in zip(node.outputs, outs, strict=True):
                env[id(t)] = y
        return [env[id(t)] for t in graph.outputs]

    def call(self, node: Any, xs: list[_Tensor]) -> list[_Tensor]:
        """One node of a functional graph: a layer call (or a nested model) on ``xs``."""
        layer = node.layer
        inner = getattr(layer, "_graph", None)
        if inner is not None:  # a model used as a layer
            return self.run_graph(inner, xs)
        recurrent = isinstance(layer, _RNNBase) and type(layer) in self._DISPATCH
        if recurrent or type(layer) is RNN:
            x, init = xs[0], [t.name for t in xs[1:]] or None
            run = self.rnn_call if recurrent else self.rnn_cells_call
            if init is not None:
                # as fastrnn's graphs (and Keras 3): a call with initial_state runs unmasked,
                # its output carrying the sequence's mask
                out, finals = run(layer, _Tensor(x.name, x.rank, None), init)
                out.mask = x.mask if layer.return_sequences else None
            else:
                out, finals = run(layer, x)
            if layer.return_state:
                return [out] + [_Tensor(f, 2, None) for f in finals]
            return [out]
        method = self._MULTI.get(type(layer))
        if method is not None:
            return [getattr(self, method)(layer, xs)]
        if len(xs) != 1:
            raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}) called on "
                                  f"{len(xs)} inputs has no ONNX form in fastrnn's exporter")
        return [self.layer(layer, xs[0])]

    # -- the layers of issue 22 ----------------------------------------------------------
    def rnn_cells(self, layer: RNN, x: _Tensor) -> _Tensor:
        if layer.return_state:
            raise OnnxExportError(f"layer {layer.name!r} (RNN): return_state=True has no place "
                                  "in a one-output model")
        return self.rnn_cells_call(layer, x)[0]

    def rnn_cells_call(self, layer: RNN, x: _Tensor, init: list[str] | None = None
                       ) -> tuple[_Tensor, list[str]]:
        """``RNN`` of built-in cells: its fused layers one after the other, as fastrnn runs
        them (the same ONNX nodes as the fused layers); your own cells have no ONNX form."""
        fused = getattr(layer, "_fused", None)
        if fused is None:
            raise OnnxExportError(f"layer {layer.name!r} (RNN) runs the custom cell "
                                  f"{getattr(layer.cell, 'name', layer.cell)!r} "
                                  f"({type(layer.cell).__name__}), which has no ONNX form; "
                                  "the built-in cells (SimpleRNNCell, LSTMCell, GRUCell, "
                                  "StackedRNNCells of them) export")
        finals: list[str] = []
        k = 0
        for lay in fused:
            st = None if init is None else init[k:k + lay._n_states]
            k += lay._n_states
            x, fin = self.rnn_call(lay, x, st)
            finals += fin
        return x, finals

    def leaky_relu(self, layer: LeakyReLU, x: _Tensor) -> _Tensor:
        return _Tensor(self.g.node("LeakyRelu", [x.name], alpha=float(layer.negative_slope)),
                       x.rank, x.mask)

    def batch_normalization(self, layer: BatchNormalization, x: _Tensor) -> _Tensor:
        """Inference: ``x * a + b`` with the moving statistics folded into ``a`` and ``b``."""
        bs = layer._bshape(x.rank)
        inv = 1.0 / np.sqrt(layer.moving_variance.value.astype(np.float64) + layer.epsilon)
        a = inv if layer.gamma is None else inv * layer.gamma.value
        b = -layer.moving_mean.value * a
        if layer.beta is not None:
            b = b + layer.beta.value
        g = self.g
        y = g.node("Mul", [x.name, g.const(np.reshape(a, bs), hint=f"{layer.name}_scale")])
        y = g.node("Add", [y, g.const(np.reshape(b, bs), hint=f"{layer.name}_shift")])
        return _Tensor(y, x.rank, x.mask)

    def _mean(self, x: str, axes: list[int]) -> str:
        """``ReduceMean`` over ``axes``, kept (axes an attribute before opset 18)."""
        g = self.g
        if g.opset >= 18:
            return g.node("ReduceMean", [x, g.ints(axes)], keepdims=1)
        return g.node("ReduceMean", [x], axes=axes, keepdims=1)

    def layer_normalization(self, layer: LayerNormalization, x: _Tensor) -> _Tensor:
        g = self.g
        axes = sorted(a % x.rank for a in layer._axes)
        bs = layer._bshape(x.rank)
        trailing = axes == list(range(axes[0], x.rank))
        if g.opset >= 17 and trailing:  # the LayerNormalization operator
            pshape = [bs[a] for a in axes]
            gamma = np.ones(pshape) if layer.gamma is None else layer.gamma.value.reshape(pshape)
            ins = [x.name, g.const(gamma, hint=f"{layer.name}_gamma")]
            if layer.beta is not None:
                ins.append(g.const(layer.beta.value.reshape(pshape), hint=f"{layer.name}_beta"))
            y = g.node("LayerNormalization", ins, axis=axes[0], epsilon=float(layer.epsilon))
            return _Tensor(y, x.rank, x.mask)
        xc = g.node("Sub", [x.name, self._mean(x.name, axes)])
        var = self._mean(g.node("Mul", [xc, xc]), axes)
        y = g.node("Div", [xc, g.node("Sqrt", [g.node("Add", [var, g.const(layer.epsilon)])])])
        if layer.gamma is not None:
            y = g.node("Mul", [y, g.const(layer.gamma.value.reshape(bs))])
        if layer.beta is not None:
            y = g.node("Add", [y, g.const(layer.beta.value.reshape(bs))])
        return _Tensor(y, x.rank, x.mask)

    def _channels_first(self, layer: Any, x: _Tensor) -> str:
        if x.rank != 3:
            raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}) expects a "
                                  f"3-D input (batch, steps, channels), got rank {x.rank}")
        return self.g.node("Transpose", [x.name], perm=[0, 2, 1])

    def _window_attrs(self, layer: Any, size: int, stride: int, dilation: int, padding: str
                      ) -> dict[str, Any]:
        attrs: dict[str, Any] = {"kernel_shape": [size], "strides": [stride]}
        span = dilation * (size - 1) + 1
        if padding == "same" and dilation == 1:  # the extra step on the right, as Keras
            attrs["auto_pad"] = "SAME_UPPER"
        elif padding == "same" and stride == 1:  # ONNX Runtime: no SAME_* with dilations
            attrs["pads"] = [(span - 1) // 2, span - 1 - (span - 1) // 2]
        elif padding == "same":
            raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}): "
                                  "padding='same' with both strides and dilation_rate above 1 "
                                  "has no ONNX form in fastrnn's exporter (its padding depends "
                                  "on the sequence length)")
        elif padding == "causal":
            attrs["pads"] = [dilation * (size - 1), 0]
        return attrs

    def conv1d(self, layer: Conv1D, x: _Tensor) -> _Tensor:
        g = self.g
        w = np.transpose(layer.kernel.value, (2, 1, 0))  # (filters, channels, size)
        ins = [self._channels_first(layer, x), g.const(w, hint=f"{layer.name}_kernel")]
        if layer.bias is not None:
            ins.append(g.const(layer.bias.value, hint=f"{layer.name}_bias"))
        y = g.node("Conv", ins, dilations=[layer.dilation_rate],
                   **self._window_attrs(layer, layer.kernel_size, layer.strides,
                                        layer.dilation_rate, layer.padding))
        y = g.node("Transpose", [y], perm=[0, 2, 1])
        return _Tensor(_activation(g, y, layer.activation, layer), 3, None)

    def pooling1d(self, layer: MaxPooling1D | AveragePooling1D, x: _Tensor) -> _Tensor:
        g = self.g
        op = "MaxPool" if isinstance(layer, MaxPooling1D) else "AveragePool"
        y = g.node(op, [self._channels_first(layer, x)],
                   **self._window_attrs(layer, layer.pool_size, layer.strides, 1,
                                        layer.padding))
        return _Tensor(g.node("Transpose", [y], perm=[0, 2, 1]), 3, None)

    def global_pooling1d(self, layer: GlobalMaxPooling1D | GlobalAveragePooling1D,
                         x: _Tensor) -> _Tensor:
        """Over the time axis; the average over the valid steps only when there is a mask
        (as Keras; the max ignores it, as Keras 3)."""
        g = self.g
        if isinstance(layer, GlobalAveragePooling1D) and x.mask is not None:
            m = g.node("Cast", [g.node("Unsqueeze", [x.mask, g.ints([-1])])],
                       to=g.onnx.TensorProto.FLOAT)
            y = g.node("Div", [g.node("ReduceSum", [g.node("Mul", [x.name, m]), g.ints([1])],
                                      keepdims=1),
                               g.node("ReduceSum", [m, g.ints([1])], keepdims=1)])
        else:
            op = "GlobalMaxPool" if isinstance(layer, GlobalMaxPooling1D) else \
                "GlobalAveragePool"
            y = g.node("Transpose", [g.node(op, [self._channels_first(layer, x)])],
                       perm=[0, 2, 1])
        if not layer.keepdims:
            return _Tensor(g.node("Squeeze", [y, g.ints([1])]), 2, None)
        return _Tensor(y, 3, None)

    def _full_mask(self, x: _Tensor) -> str:
        """``x``'s (batch, time) mask, all True where it has none."""
        g = self.g
        if x.mask is not None:
            return x.mask
        bt = g.node("Slice", [g.node("Shape", [x.name]), g.ints([0]), g.ints([2]), g.ints([0])])
        return g.node("Expand", [g.const(True, np.bool_), bt])

    def _or(self, masks: list[str]) -> str:
        out = masks[0]
        for m in masks[1:]:
            out = self.g.node("Or", [out, m])
        return out

    def add(self, layer: Add, xs: list[_Tensor]) -> _Tensor:
        g = self.g
        y = xs[0].name
        for x in xs[1:]:
            y = g.node("Add", [y, x.name])
        masks = [x.mask for x in xs]
        return _Tensor(y, xs[0].rank, None if None in masks else self._or(masks))

    def multiply(self, layer: Multiply, xs: list[_Tensor]) -> _Tensor:
        """Keras 3: an input's masked entries count as 1; with masks on every input the
        output is 0 where none is valid (and masked by their OR)."""
        g = self.g
        names = [x.name if x.mask is None else g.node("Where", [
            g.node("Unsqueeze", [x.mask, g.ints([-1])]), x.name, g.const(1.0)]) for x in xs]
        y = names[0]
        for n in names[1:]:
            y = g.node("Mul", [y, n])
        masks = [x.mask for x in xs]
        if None in masks:
            return _Tensor(y, xs[0].rank, None)
        keep = self._or(masks)
        y = g.node("Where", [g.node("Unsqueeze", [keep, g.ints([-1])]), y, g.const(0.0)])
        return _Tensor(y, xs[0].rank, keep)

    def concatenate(self, layer: Concatenate, xs: list[_Tensor]) -> _Tensor:
        g = self.g
        rank = xs[0].rank
        ax = layer._axis(rank)
        y = g.node("Concat", [x.name for x in xs], axis=ax)
        mask = None
        if any(x.mask is not None for x in xs):
            if ax == rank - 1:  # Keras: any valid entry of the step (a missing mask: valid)
                mask = None if any(x.mask is None for x in xs) else \
                    self._or([x.mask for x in xs])
            elif rank == 3 and ax == 1:  # along time: the masks side by side
                mask = g.node("Concat", [self._full_mask(x) for x in xs], axis=1)
            else:
                raise OnnxExportError(f"layer {layer.name!r} (Concatenate): masked inputs "
                                      f"concatenated on axis {layer.axis} of rank {rank} have "
                                      "no ONNX form in fastrnn's exporter")
        return _Tensor(y, rank, mask)

    def attention(self, layer: Attention | AdditiveAttention, xs: list[_Tensor]) -> _Tensor:
        """Scores (dot, concat or additive), value mask and causal mask as ``s - 1e9``
        (Keras), ``Softmax`` over the value steps, ``MatMul`` with the value; the query mask
        zeroes the output and is its mask. Dropout is the identity (inference)."""
        g = self.g
        q, v = xs[0], xs[1]
        k = xs[2] if len(xs) > 2 else v
        if any(t.rank != 3 for t in (q, v, k)):
            raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}) expects "
                                  "3-D inputs (batch, steps, dim)")
        if isinstance(layer, Attention) and layer.score_mode == "dot":
            s = g.node("MatMul", [q.name, g.node("Transpose", [k.name], perm=[0, 2, 1])])
            if layer.scale is not None:
                s = g.node("Mul", [s, g.const(layer.scale.value, hint=f"{layer.name}_scale")])
        else:
            a = g.node("Add", [g.node("Unsqueeze", [q.name, g.ints([2])]),
                               g.node("Unsqueeze", [k.name, g.ints([1])])])
            if isinstance(layer, Attention):
                if layer.scale is not None:
                    a = g.node("Mul", [a, g.const(layer.scale.value)])
                s = g.node("ReduceSum", [g.node("Tanh", [a]), g.ints([-1])], keepdims=0)
                s = g.node("Mul", [s, g.const(layer.concat_score_weight.value)])
            else:
                t = g.node("Tanh", [a])
                if layer.scale is not None:
                    t = g.node("Mul", [t, g.const(layer.scale.value, hint=f"{layer.name}_scale")])
                s = g.node("ReduceSum", [t, g.ints([-1])], keepdims=0)
        smask = None if v.mask is None else g.node("Unsqueeze", [v.mask, g.ints([1])])
        if layer.causal:
            def steps(t: _Tensor) -> str:
                n = g.node("Gather", [g.node("Shape", [t.name]), g.const(1, np.int64)])
                return g.node("Range", [g.const(0, np.int64), n, g.const(1, np.int64)])
            causal = g.node("GreaterOrEqual", [g.node("Unsqueeze", [steps(q), g.ints([1])]),
                                               g.node("Unsqueeze", [steps(k), g.ints([0])])])
            smask = causal if smask is None else g.node("And", [smask, causal])
        if smask is not None:
            s = g.node("Where", [smask, s, g.node("Sub", [s, g.const(_ATTENTION_BIG)])])
        out = g.node("MatMul", [g.node("Softmax", [s], axis=-1), v.name])
        if q.mask is not None:
            out = g.node("Where", [g.node("Unsqueeze", [q.mask, g.ints([-1])]), out,
                                   g.const(0.0)])
        return _Tensor(out, 3, q.mask)

    _MULTI: dict[type, str] = {Add: "add", Multiply: "multiply", Concatenate: "concatenate",
                               Attention: "attention", AdditiveAttention: "attention"}

    _DISPATCH: dict[type, str] = {
        SimpleRNN: "rnn", LSTM: "rnn", GRU: "rnn", Bidirectional: "bidirectional",
        Dense: "dense", Activation: "activation", Embedding: "embedding", Masking: "masking",
        Dropout: "dropout", Flatten: "flatten", Reshape: "reshape",
        RepeatVector: "repeat_vector", TimeDistributed: "time_distributed",
        RNN: "rnn_cells", LeakyReLU: "leaky_relu", BatchNormalization: "batch_normalization",
        LayerNormalization: "layer_normalization", Conv1D: "conv1d",
        MaxPooling1D: "pooling1d", AveragePooling1D: "pooling1d",
        GlobalMaxPooling1D: "global_pooling1d", GlobalAveragePooling1D: "global_pooling1d",
        SpatialDropout1D: "dropout",
    }

    def layer(self, layer: Any, x: _Tensor) -> _Tensor:
        """Convert one layer applied to ``x`` (fastrnn's own layer classes only: a subclass
        may compute something else)."""
        if _is_sequential(layer):  # a Sequential model used as a layer
            for inner in _chain(layer):
                x = self.layer(inner, x)
            return x
        if getattr(layer, "_graph", None) is not None:  # a functional model used as a layer
            outs = self.run_graph(layer._graph, [x])
            if len(outs) != 1:
                raise OnnxExportError(f"model {layer.name!r} used as a layer has "
                                      f"{len(outs)} outputs where one is expected")
            return outs[0]
        method = self._DISPATCH.get(type(layer))
        if method is None:
            raise OnnxExportError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no ONNX form in fastrnn's "
                "exporter; supported layers: "
                + ", ".join(sorted(c.__name__ for c in [*self._DISPATCH, *self._MULTI])))
        return getattr(self, method)(layer, x)


def _dims(shape: tuple, dynamic_time: bool, sequence: bool) -> list[Any]:
    """A graph input's ONNX shape: ``batch`` for axis 0, for a ``sequence`` ``time`` for
    axis 1 when ``dynamic_time`` or unknown, the known sizes elsewhere (``dimK`` where
    unknown)."""
    out: list[Any] = ["batch"]
    for i, s in enumerate(shape[1:], start=1):
        if sequence and i == 1 and (dynamic_time or s is None):
            out.append("time")
        else:
            out.append(f"dim{i}" if s is None else int(s))
    return out


def _check_opset(opset: Any, onnx: Any) -> int:
    hi = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= hi:
        raise ValueError(f"opset must be an int in [{MIN_OPSET}, {hi}] (the installed onnx "
                         f"package knows opsets up to {hi}), got {opset!r}")
    return int(opset)


def _is_sequential(obj: Any) -> bool:
    """Whether ``obj`` is a fastrnn Sequential model (the class is not imported:
    fastrnn.keras.models calls this module)."""
    return type(obj).__name__ == "Sequential" and isinstance(getattr(obj, "layers", None), list)


def _chain(model: Any) -> list[Any]:
    """A Sequential model's layers, its Input left out."""
    return [layer for layer in model.layers if not isinstance(layer, InputLayer)]


def _all_layers(layers: list[Any]) -> list[Any]:
    """``layers`` with each nested model replaced by its own layers (at any depth)."""
    out: list[Any] = []
    for layer in layers:
        graph = getattr(layer, "_graph", None)
        if graph is not None:
            out += _all_layers([node.layer for node in graph.nodes])
        elif _is_sequential(layer):
            out += _all_layers(_chain(layer))
        else:
            out.append(layer)
    return out


def _kind(model: Any) -> str:
    """``'sequential'`` or ``'functional'`` (the classes are not imported:
    fastrnn.keras.models calls this module)."""
    name = type(model).__name__
    if _is_sequential(model):
        return "sequential"
    if name == "Model" and getattr(model, "_graph", None) is not None:
        return "functional"
    raise TypeError(f"export_onnx expects a fastrnn.keras Sequential or functional Model, got "
                    f"{name}")


def export_onnx(model: Any, path: str | os.PathLike | None = None, *,
                opset: int = DEFAULT_OPSET, states: bool | None = None,
                input_name: str = "input", output_name: str = "output") -> Any:
    """Convert a fastrnn Keras-style model to an ONNX model (and write it to ``path``).

    Parameters
    ----------
    model : fastrnn.keras.Sequential or fastrnn.keras.Model
        A built model (called, fitted, loaded, or given an input shape); a functional
        ``Model`` may have several inputs and outputs, nested models, shared layers and
        recurrent layers with ``initial_state`` and ``return_state``.
    path : str or PathLike, optional
        Where to write the ``.onnx`` file (None: only return the model).
    opset : int
        The ONNX opset to write (default :data:`DEFAULT_OPSET`; at least :data:`MIN_OPSET`).
    states : bool, optional
        Add the recurrent layers' initial states as inputs and their final states as
        outputs (see the module's description). Default: True when a layer is ``stateful``.
    input_name, output_name : str
        The graph's input and output names for a ``Sequential`` model (a functional
        model's are its ``input_names`` and ``output_names``).

    Returns
    -------
    onnx.ModelProto
        The checked model (``onnx.checker.check_model(full_check=True)`` passed).

    Raises
    ------
    ImportError
        When the ``onnx`` package is not installed.
    OnnxExportError (a ValueError)
        When a layer has no ONNX form (the message names it), or the model is not built.
    TypeError
        When ``model`` is not a fastrnn Sequential or functional model.
    """
    onnx = _onnx()
    kind = _kind(model)
    opset = _check_opset(opset, onnx)
    for argname, v in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"{argname} must be a non-empty string, got {v!r}")
    if kind == "sequential":
        layers = _chain(model)
        if not layers:
            raise OnnxExportError("the model has no layers to export")
        if not all(layer.built for layer in layers) or model.input_shape is None:
            raise OnnxExportError("the model is not built: call it on data, fit it, or give "
                                  "its first layer an input shape before exporting")
        tokens = isinstance(_all_layers(layers[:1])[0], Embedding)
        # (name, shape, integer ids?) of each graph input; names of the outputs
        ins = [(input_name, tuple(model.input_shape), tokens)]
        outs = [output_name]
    else:
        layers = [node.layer for node in model._graph.nodes]
        ins = [(n, tuple(t.shape), np.dtype(t.dtype).kind in "iu")
               for n, t in zip(model.input_names, model._graph.inputs, strict=True)]
        outs = list(model.output_names)
    top, layers = layers, _all_layers(layers)
    rnns = [s for layer in layers for s in (
        (layer.forward_layer, layer.backward_layer) if isinstance(layer, Bidirectional)
        else (getattr(layer, "_fused", None) or ()) if isinstance(layer, RNN)
        else (layer,)) if isinstance(s, _RNNBase)]
    if states is None:
        states = any(r.stateful for r in rnns)
    g = _Graph(onnx, opset)
    # the time axis is dynamic unless a layer's output size depends on it (Flatten, Reshape)
    fixed = any(isinstance(layer, (Flatten, Reshape)) for layer in layers)
    tensors = []
    for name, shape, ids in ins:
        sequence = len(shape) == 3 or (ids and len(shape) == 2)
        dims = _dims(shape, sequence and not fixed, sequence)
        if len(ins) > 1:  # each input its own time axis (an encoder's and a decoder's differ)
            dims = [f"{name}_time" if d == "time" else d for d in dims]
        elem = onnx.TensorProto.INT64 if ids else onnx.TensorProto.FLOAT
        g.inputs.append(onnx.helper.make_tensor_value_info(name, elem, dims))
        tensors.append(_Tensor(name, len(shape), None))
    ex = _Exporter(g, bool(states))
    if kind == "sequential":
        x = tensors[0]
        for layer in top:
            x = ex.layer(layer, x)
        results = [x]
    else:
        results = ex.run_graph(model._graph, tensors)
    for k, (name, x) in enumerate(zip(outs, results, strict=True)):
        g.nodes.append(onnx.helper.make_node("Identity", [x.name], [name],
                                             name=g.name("Identity")))
        g.outputs.insert(k, onnx.helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, ["batch"] + [None] * (x.rank - 1)))
    graph = onnx.helper.make_graph(g.nodes, model.name or "fastrnn_model", g.inputs, g.outputs,
                                   g.initializers)
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="fastrnn")
    # the oldest IR version that holds the opset, so that older runtimes accept the file
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        onnx.save_model(proto, os.fspath(path))
    return proto
