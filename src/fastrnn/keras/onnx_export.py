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
- ``Dropout`` is the identity (inference), ``Embedding`` a ``Gather``, ``Dense`` a
  ``MatMul`` and ``Add`` plus its activation; ``Flatten``, ``Reshape``, ``RepeatVector``
  and ``TimeDistributed`` the matching shape operators.

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
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN, _RNNBase

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

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
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
        if isinstance(layer, _RNNBase) and type(layer) in self._DISPATCH:
            x, init = xs[0], [t.name for t in xs[1:]] or None
            if init is not None:
                # as fastrnn's graphs (and Keras 3): a call with initial_state runs unmasked,
                # its output carrying the sequence's mask
                out, finals = self.rnn_call(layer, _Tensor(x.name, x.rank, None), init)
                out.mask = x.mask if layer.return_sequences else None
            else:
                out, finals = self.rnn_call(layer, x)
            if layer.return_state:
                return [out] + [_Tensor(f, 2, None) for f in finals]
            return [out]
        if len(xs) != 1:
            raise OnnxExportError(f"layer {layer.name!r} ({type(layer).__name__}) called on "
                                  f"{len(xs)} inputs has no ONNX form in fastrnn's exporter")
        return [self.layer(layer, xs[0])]

    _DISPATCH: dict[type, str] = {
        SimpleRNN: "rnn", LSTM: "rnn", GRU: "rnn", Bidirectional: "bidirectional",
        Dense: "dense", Activation: "activation", Embedding: "embedding", Masking: "masking",
        Dropout: "dropout", Flatten: "flatten", Reshape: "reshape",
        RepeatVector: "repeat_vector", TimeDistributed: "time_distributed",
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
                + ", ".join(sorted(c.__name__ for c in self._DISPATCH)))
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
        else (layer,)) if isinstance(s, _RNNBase)]
    if states is None:
        states = any(r.stateful for r in rnns)
    g = _Graph(onnx)
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
