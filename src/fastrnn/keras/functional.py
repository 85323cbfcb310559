"""Keras's functional API: symbolic tensors, nodes, and the graph a :class:`Model` runs.

``keras.Input(shape)`` returns a :class:`KerasTensor`: a shape, a dtype and a name, no values.
Calling a layer on symbolic tensors records a :class:`Node` (the layer, its input tensors, its
output tensors) and returns new symbolic tensors; ``keras.Model(inputs, outputs)`` then walks
the nodes back from the outputs (:class:`Graph`) and runs them in order on NumPy batches.

The graph adds per-layer Python only: each node is one ``layer.forward`` call on whole
``(batch, timesteps, ...)`` arrays (recurrent layers stay one fused kernel call), and backward
one ``layer.backward`` per node in reverse order. A layer used at several nodes (a shared
layer) keeps one cache per node: after each node's forward the graph snapshots the layer's
attributes (those of the layers it wraps too) and restores them before that node's backward;
weight gradients of the nodes are summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Layer
from .layers import Embedding
from .symbolic import KerasTensor, Node

__all__ = ["Graph"]


def _as_tensor_list(value: Any, what: str) -> tuple[list[KerasTensor], list[str] | None]:
    """Flatten a model's ``inputs``/``outputs`` argument: a tensor, list/tuple or dict."""
    keys = None
    if isinstance(value, KerasTensor):
        items = [value]
    elif isinstance(value, dict):  # in sorted key order, as Keras flattens dicts
        keys = sorted(str(k) for k in value)
        items = [value[k] for k in sorted(value)]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise TypeError(f"Model: {what} must be a symbolic tensor (from keras.Input or a layer "
                        f"call), a list or a dict of them, got {type(value).__name__}"
                        + (": did you pass NumPy arrays? Models are built from keras.Input"
                           if isinstance(value, np.ndarray) else ""))
    if not items:
        raise ValueError(f"Model: {what} is empty")
    for t in items:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"Model: every entry of {what} must be a symbolic tensor (from "
                            f"keras.Input or a layer called on one), got {type(t).__name__}: "
                            "did you pass NumPy arrays? Models are built from keras.Input")
    return items, keys


def _layers_of(obj: Any, seen: set[int], out: list[Any]) -> None:
    """``obj`` and the layers it holds as attributes (wrapped layers), for snapshots."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    out.append(obj)
    for v in obj.__dict__.values():
        if isinstance(v, Layer):
            _layers_of(v, seen, out)
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], Layer):
            for e in v:
                if isinstance(e, Layer):
                    _layers_of(e, seen, out)


def _snapshot(layer: Any) -> list[tuple[Any, dict]]:
    objs: list[Any] = []
    _layers_of(layer, set(), objs)
    return [(o, dict(o.__dict__)) for o in objs]


class Graph:
    """The nodes between a model's inputs and outputs, in execution order.

    Parameters
    ----------
    inputs, outputs : list of KerasTensor

    Raises
    ------
    ValueError
        When an output cannot be computed from the inputs ("graph disconnected", naming the
        layer and the tensor it lacks), when the graph has a cycle, or when two layers share a
        name.
    """

    def __init__(self, inputs: list[KerasTensor], outputs: list[KerasTensor]) -> None:
        self.inputs = inputs
        self.outputs = outputs
        ids = [id(t) for t in inputs]
        if len(set(ids)) != len(ids):
            raise ValueError("Model: the same tensor appears twice in inputs")
        nodes, op_index = self._build_map()
        self.layers = self._order_layers(nodes, op_index)
        names = [l.name for l in self.layers]
        for n in names:
            if names.count(n) > 1:
                raise ValueError(f'The name "{n}" is used {names.count(n)} times in the model. '
                                 "All layer names should be unique.")
        # slots: one per tensor; inputs first
        slot: dict[int, int] = {id(t): i for i, t in enumerate(inputs)}
        computable = set(slot)
        done_layers: list[str] = []
        self.nodes: list[Node] = []
        for node in nodes:
            if node.is_input:
                if id(node.outputs[0]) not in computable:
                    raise ValueError(self._disconnected(node.outputs[0], done_layers))
                continue
            if any(id(t) in slot and t in inputs for t in node.outputs):
                continue  # an intermediate tensor given as a model input: its node is outside
            for t in node.inputs:
                if id(t) not in computable:
                    raise ValueError(self._disconnected(t, done_layers, node.layer))
            for t in node.outputs:
                slot.setdefault(id(t), len(slot))
                computable.add(id(t))
            self.nodes.append(node)
            done_layers.append(node.layer.name)
        for t in outputs:
            if id(t) not in computable:
                raise ValueError(self._disconnected(t, done_layers))
        self.n_slots = len(slot)
        self.in_slots = [[slot[id(t)] for t in n.inputs] for n in self.nodes]
        self.out_slots = [[slot[id(t)] for t in n.outputs] for n in self.nodes]
        self.output_slots = [slot[id(t)] for t in outputs]
        counts: dict[int, int] = {}
        for n in self.nodes:
            counts[id(n.layer)] = counts.get(id(n.layer), 0) + 1
        self.shared = [counts[id(n.layer)] > 1 for n in self.nodes]
        self.casts = [None if isinstance(n.layer, Embedding) or not isinstance(n.layer, Layer)
                      else np.dtype(n.layer.dtype) for n in self.nodes]
        # An Embedding whose output feeds only one single-input recurrent call (and is no model
        # output) may hand that layer its ids: the lookup folds into the recurrent layer's input
        # projection, as in Sequential (decided per batch by the layer's accepts_tokens).
        users: dict[int, list[Node]] = {}
        for n in self.nodes:
            for s in n.inputs:
                users.setdefault(id(s), []).append(n)
        out_ids = {id(t) for t in outputs}
        self.fold_into: list[Any] = []
        for n in self.nodes:
            u = users.get(id(n.outputs[0]), [])
            ok = (isinstance(n.layer, Embedding) and not n.list_call and len(u) == 1
                  and not u[0].list_call and id(n.outputs[0]) not in out_ids
                  and hasattr(u[0].layer, "accepts_tokens"))
            self.fold_into.append(u[0].layer if ok else None)

    def _disconnected(self, t: KerasTensor, done: list[str], at: Any = None) -> str:
        where = f" at layer {at.name!r}" if at is not None else " (a model output)"
        src = t._node.layer.name if t._node is not None else "?"
        return (f"Graph disconnected: cannot obtain value for tensor {t!r} (from layer "
                f"{src!r}){where}: it is not computed from the model's inputs "
                f"{[i.name for i in self.inputs]}. Pass every keras.Input it depends on in "
                f"inputs=. The following previous layers were accessed without issue: "
                f"{done}")

    def _build_map(self) -> tuple[list[Node], dict[int, int]]:
        """Keras's depth-first topological sort from the outputs."""
        finished: set[int] = set()
        in_progress: set[int] = set()
        order: list[Node] = []
        op_index: dict[int, int] = {}
        input_ids = {id(t) for t in self.inputs}

        def visit(t: KerasTensor) -> None:
            node = t._node
            if node is None or id(node) in finished:
                return
            if not node.is_input and id(t) in input_ids:
                finished.add(id(node))
                order.append(node)
                return
            if id(node) in in_progress:
                raise ValueError(f"tensor {t!r} from layer {node.layer.name!r} is part of a "
                                 "cycle")
            op_index.setdefault(id(node.layer), len(op_index))
            in_progress.add(id(node))
            for x in node.inputs:
                visit(x)
            finished.add(id(node))
            in_progress.discard(id(node))
            order.append(node)

        for t in self.outputs:
            visit(t)
        for t in self.inputs:  # unused Inputs still belong to the model
            node = t._node
            if node is not None and node.is_input and id(node) not in finished:
                op_index.setdefault(id(node.layer), -1)
                finished.add(id(node))
                order.insert(0, node)
        return order, op_index

    def _order_layers(self, nodes: list[Node], op_index: dict[int, int]) -> list[Any]:
        """Keras's layer order: by depth from the outputs (deepest first), then by first
        traversal; this is the order of ``model.layers`` and of ``get_weights``."""
        input_ids = {id(t) for t in self.inputs}
        inside = [n for n in nodes if n.is_input
                  or not any(id(t) in input_ids for t in n.outputs)]
        in_graph = {id(n) for n in inside}
        node_depth: dict[int, int] = {}
        op_depth: dict[int, int] = {}
        layer_of: dict[int, Any] = {}
        for node in reversed(inside):
            d = node_depth.setdefault(id(node), 0)
            d = max(d, op_depth.get(id(node.layer), 0))
            op_depth[id(node.layer)] = d
            layer_of[id(node.layer)] = node.layer
            node_depth[id(node)] = d
            for p in node.parent_nodes:
                if id(p) in in_graph:
                    node_depth[id(p)] = max(d + 1, node_depth.get(id(p), 0))
        by_depth: dict[int, list[int]] = {}
        for k, d in op_depth.items():
            by_depth.setdefault(d, []).append(k)
        out = []
        for d in sorted(by_depth, reverse=True):
            out.extend(layer_of[k] for k in sorted(by_depth[d],
                                                   key=lambda k: op_index.get(k, -1)))
        return out

    # -- running ----------------------------------------------------------------------------
    def forward(self, xs: Sequence[np.ndarray], masks: Sequence[Any] | None, training: bool,
                tape: list | None) -> tuple[list[np.ndarray], list[Any]]:
        """Run the nodes on input arrays; returns the outputs and their masks. With a
        ``tape`` list (training), each node's layer state is recorded there for
        :meth:`backward`."""
        vals: list[Any] = [None] * self.n_slots
        msk: list[Any] = [None] * self.n_slots
        for i, x in enumerate(xs):
            vals[i] = x
            msk[i] = None if masks is None else masks[i]
        for k, node in enumerate(self.nodes):
            cast = self.casts[k]
            ins = []
            for s in self.in_slots[k]:
                v = vals[s]
                if not isinstance(v, np.ndarray):
                    pass  # folded Embedding ids (_Tokens)
                elif cast is not None and v.dtype != cast:
                    v = v.astype(cast)
                elif cast is None and isinstance(node.layer, Layer) and v.dtype.kind == "f":
                    v = v.astype(np.int64)  # Embedding ids given as floats
                ins.append(v)
            tr = training if node.training is None else node.training
            nxt = self.fold_into[k]
            if nxt is not None and ins[0].ndim == 2 \
                    and nxt.accepts_tokens(node.layer, ins[0].shape[1], ins[0].shape[0]):
                s = self.out_slots[k][0]
                vals[s], msk[s] = node.layer.tokens(ins[0])
                if tape is not None:
                    tape.append(None)  # its gradient comes from the recurrent layer
                continue
            if node.n_states:
                # Keras 3 passes a mask only to calls with one tensor argument: a recurrent
                # layer given initial_state runs unmasked, and its output carries the
                # sequence's mask on (Layer.compute_mask of the first input's mask)
                y, m = node.layer.forward(ins, None, tr)
                m = node.layer.compute_mask(None, msk[self.in_slots[k][0]])
            elif node.list_call:
                y, m = node.layer.forward(ins, [msk[s] for s in self.in_slots[k]], tr)
            else:
                y, m = node.layer.forward(ins[0], msk[self.in_slots[k][0]], tr)
            if node.multi_output:
                ms = m if isinstance(m, list) else [m] + [None] * (len(y) - 1)
                for s, v, mm in zip(self.out_slots[k], y, ms, strict=True):
                    vals[s], msk[s] = v, mm
            else:
                s = self.out_slots[k][0]
                vals[s], msk[s] = y, m
            if tape is not None:
                tape.append(_snapshot(node.layer) if tr else None)
        return [vals[s] for s in self.output_slots], [msk[s] for s in self.output_slots]

    def backward(self, grads: Sequence[np.ndarray | None], tape: list, need_dx: bool,
                 restore_all: bool = False) -> list[np.ndarray | None]:
        """Backward through the recorded nodes from output gradients (None: no gradient
        into that output); sums weight gradients of shared layers; returns the gradients
        of the inputs (None where ``need_dx`` is False or none flows)."""
        g: list[Any] = [None] * self.n_slots
        for s, d in zip(self.output_slots, grads, strict=True):
            if d is not None:
                g[s] = d if g[s] is None else g[s] + d
        n_in = len(self.inputs)
        needs = [need_dx] * n_in + [False] * (self.n_slots - n_in)
        for k, node in enumerate(self.nodes):
            nd = any(needs[s] for s in self.in_slots[k]) or bool(node.layer.trainable_weights)
            for s in self.out_slots[k]:
                needs[s] = nd
        for k in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[k]
            gs = [g[s] for s in self.out_slots[k]]
            if all(d is None for d in gs) or tape[k] is None:
                continue
            if restore_all or self.shared[k]:
                for obj, snap in tape[k]:
                    obj.__dict__.update(snap)
            need = [needs[s] for s in self.in_slots[k]]
            ws = node.layer.trainable_weights
            prev = [v.grad for v in ws]
            for v in ws:
                v.grad = None
            if node.multi_output:
                r = node.layer.backward(gs, any(need))
            else:
                dy = gs[0]
                r = node.layer.backward(dy, any(need))
            for v, p in zip(ws, prev, strict=True):
                if p is not None:
                    v.grad = p if v.grad is None else v.grad + p
            dxs = r if node.list_call else [r]
            for s, d, n in zip(self.in_slots[k], dxs, need, strict=True):
                if d is not None and n:
                    g[s] = d if g[s] is None else g[s] + d
        return [g[i] for i in range(n_in)]
