"""Symbolic tensors of the functional API and the record of layer calls on them.

:class:`KerasTensor` is what ``keras.Input`` and a layer called on symbolic tensors return;
:class:`Node` records one such call. :mod:`fastrnn.keras.functional` turns the nodes between a
model's inputs and outputs into the graph a ``Model`` runs. This module stands below the layers
(it only calls their methods) so that every layer can record itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import floatx

__all__ = ["KerasTensor", "Node", "is_symbolic", "symbolic_call"]

_NO_VALUES = ("is a symbolic tensor of the functional API (what keras.Input and layers called "
              "on it return): it has no values. Build a model with keras.Model(inputs, "
              "outputs) and call model.predict(...) on NumPy arrays, or call layers on NumPy "
              "arrays directly")


class KerasTensor:
    """A symbolic tensor: the ``shape`` (a tuple, batch axis first, None where unknown),
    ``dtype`` (a string) and ``name`` of a value a functional model will compute."""

    __slots__ = ("shape", "dtype", "name", "_node", "_index")

    def __init__(self, shape: tuple, dtype: str, name: str, node: Node | None = None,
                 index: int = 0) -> None:
        self.shape = tuple(shape)
        self.dtype = str(dtype)
        self.name = name
        self._node = node
        self._index = index

    @property
    def ndim(self) -> int:
        """Rank (batch axis included)."""
        return len(self.shape)

    @property
    def _keras_history(self) -> tuple:
        """``(layer, node_index, tensor_index)``, as Keras names a tensor's origin."""
        assert self._node is not None
        layer = self._node.layer
        return layer, layer._inbound_nodes.index(self._node), self._index

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(f"{self!r} {_NO_VALUES}")

    def numpy(self) -> np.ndarray:
        """Refused: a symbolic tensor has no values."""
        raise TypeError(f"{self!r} {_NO_VALUES}")

    def __iter__(self) -> Any:
        raise TypeError(f"{self!r} cannot be iterated: it is one symbolic tensor (a layer "
                        "with several outputs returns a list of them)")

    def __bool__(self) -> bool:
        raise TypeError(f"{self!r} has no truth value: {_NO_VALUES}")

    def _no_op(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"operators and keras.ops on symbolic tensors are not supported by fastrnn's "
            f"functional API ({self!r}); use layers: keras.layers.Add, Multiply, Concatenate, "
            "or a Lambda layer")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _no_op
    __rtruediv__ = __matmul__ = __rmatmul__ = __neg__ = __getitem__ = __pow__ = _no_op

    def __repr__(self) -> str:
        shape = "(" + ", ".join("None" if s is None else str(s) for s in self.shape) + \
            ("," if len(self.shape) == 1 else "") + ")"
        return f"<KerasTensor shape={shape}, dtype={self.dtype}, name={self.name}>"


class Node:
    """One call of a layer in a graph: the ``layer`` (or model), its ``inputs`` and
    ``outputs`` (lists of :class:`KerasTensor`), ``list_call`` (forward/backward take lists:
    several inputs, or initial states), ``multi_output`` (forward returns a list),
    ``training`` (a ``training=`` given at the call, overriding the model's mode, else None)
    and ``n_states`` (how many of the inputs are initial states)."""

    __slots__ = ("layer", "inputs", "outputs", "list_call", "multi_output", "training",
                 "n_states")

    def __init__(self, layer: Any, inputs: list[KerasTensor], list_call: bool,
                 training: bool | None = None, n_states: int = 0) -> None:
        self.layer = layer
        self.inputs = inputs
        self.outputs: list[KerasTensor] = []
        self.list_call = list_call
        self.multi_output = False
        self.training = training
        self.n_states = n_states

    @property
    def is_input(self) -> bool:
        """Whether this is an Input's node (no inputs)."""
        return not self.inputs

    @property
    def parent_nodes(self) -> list[Node]:
        """The nodes that produced this node's inputs."""
        return [t._node for t in self.inputs if t._node is not None]


def is_symbolic(inputs: Any, kwargs: dict | None = None) -> bool:
    """Whether a layer call's arguments hold a symbolic tensor (so the call builds a graph)."""
    if isinstance(inputs, KerasTensor):
        return True
    if isinstance(inputs, (list, tuple)) and any(isinstance(t, KerasTensor) for t in inputs):
        return True
    if kwargs:
        st = kwargs.get("initial_state")
        if isinstance(st, KerasTensor) or (isinstance(st, (list, tuple))
                                           and any(isinstance(t, KerasTensor) for t in st)):
            return True
    return False


def _describe(layer: Any) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def symbolic_call(layer: Any, inputs: Any, mask: Any = None, training: Any = None,
                  initial_state: Any = None, **kwargs: Any) -> Any:
    """Record ``layer(inputs)`` in the graph and return its symbolic output(s).

    Checks the input shapes (building the layer on its first call), so a wrong rank or
    feature size fails here, naming the layer and the shape it expects.
    """
    if kwargs:
        raise TypeError(f"{_describe(layer)} got unexpected keyword arguments in a functional "
                        f"call: {', '.join(sorted(kwargs))}")
    if mask is not None:
        raise NotImplementedError(f"{_describe(layer)}: passing mask= in a functional call is "
                                  "not supported; masks flow from Embedding(mask_zero=True) "
                                  "and Masking layers automatically")
    if training is not None and not isinstance(training, bool):
        raise TypeError(f"{_describe(layer)}: training must be True, False or None, got "
                        f"{training!r}")
    multi = bool(getattr(layer, "multi_input", False))
    if multi:
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(f"{_describe(layer)} takes a list of inputs (e.g. [x1, x2]), got "
                            f"{inputs!r}")
        tensors = list(inputs)
    else:
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise TypeError(f"{_describe(layer)} takes one input, got a list of "
                                f"{len(inputs)}")
            inputs = inputs[0]
        tensors = [inputs]
    n_states = 0
    if initial_state is not None:
        if not hasattr(layer, "check_initial_state"):
            raise TypeError(f"{_describe(layer)} does not take initial_state")
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) \
            else [initial_state]
        n_states = len(states)
        tensors += states
    for t in tensors:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"{_describe(layer)} was called on a mix of symbolic tensors "
                            f"(keras.Input) and other values ({type(t).__name__}); in the "
                            "functional API every input must come from keras.Input or another "
                            "layer's output")
    shapes = [t.shape for t in tensors]
    if multi:
        out_shape = layer._build_for(shapes)
    else:
        out_shape = layer._build_for(shapes[0])
    if n_states:
        layer.check_initial_state(shapes[1:])
    node = Node(layer, tensors, multi or n_states > 0, training, n_states)
    multi_out = isinstance(out_shape, list)
    node.multi_output = multi_out
    out_shapes = out_shape if multi_out else [out_shape]
    dtypes = getattr(layer, "output_dtypes", None)
    nodes = layer.__dict__.setdefault("_inbound_nodes", [])
    base = layer.name if not nodes else f"{layer.name}_{len(nodes)}"
    for i, s in enumerate(out_shapes):
        dt = dtypes[i] if dtypes else str(np.dtype(getattr(layer, "dtype", None) or floatx()))
        node.outputs.append(KerasTensor(tuple(s), dt, base if len(out_shapes) == 1
                                        else f"{base}_{i}", node, i))
    nodes.append(node)
    return node.outputs if multi_out else node.outputs[0]


