"""``keras.layers.RNN(cell)``: recurrent cells and the layer that runs them over time.

Two paths:

- **Built-in cells** (:class:`SimpleRNNCell`, :class:`LSTMCell`, :class:`GRUCell`, and
  :class:`StackedRNNCells` of them) run on the fused kernels: each cell owns a
  :class:`~fastrnn.keras.recurrent.SimpleRNN`/``LSTM``/``GRU`` layer, so ``RNN(LSTMCell(u))``
  computes, trains and stores exactly what ``LSTM(u)`` does, with the same weights.
- **Your own cell** (any object with ``state_size`` and ``call(inputs, states)`` returning
  ``(output, new_states)``, usually a :class:`~fastrnn.keras.base.Layer` subclass) runs one
  Python step per timestep: correct, and much slower than the fused cells. To train it, give
  the cell a ``backward(d_output, d_states) -> (d_inputs, d_prev_states)`` that undoes its
  most recent ``call`` (calls are undone last-in first-out, one per timestep) and *adds* its
  weight gradients into each weight's ``grad`` (the layer zeroes them before the backward
  pass). Without it, training raises a clear error; inference works.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Layer, Variable, mask_to_lengths, registered_class, serialize_registered
from .recurrent import GRU, LSTM, SimpleRNN, _call_with_state, _RNNBase

__all__ = ["GRUCell", "LSTMCell", "RNN", "SimpleRNNCell", "StackedRNNCells"]

# arguments of the recurrent layers that belong to RNN, not to the cell
_RNN_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll",
             "zero_output_for_mask")
_LAYER_ONLY = _RNN_ARGS + ("batch_input_shape",)


class _FusedCell(Layer):
    """A built-in cell: its arguments, and the fused layer that holds its weights."""

    _layer_cls: type[_RNNBase] = _RNNBase

    def __init__(self, units: int, **kwargs: Any) -> None:
        common = {k: kwargs.pop(k) for k in ("name", "trainable", "dtype") if k in kwargs}
        super().__init__(**common)
        bad = sorted(set(kwargs) & set(_RNN_ARGS))
        if bad:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments: "
                            f"{', '.join(bad)} (they are RNN's arguments)")
        self.layer: _RNNBase = self._layer_cls(units, name=self.name, trainable=self.trainable,
                                               dtype=self.dtype, **kwargs)
        self.units = self.layer.units

    @property
    def state_size(self) -> Any:
        """The size of each state (a list for LSTM's ``[h, c]``)."""
        return [self.units, self.units] if isinstance(self.layer, LSTM) else self.units

    @property
    def output_size(self) -> int:
        """The size of the output of a step."""
        return self.units

    @property
    def weights(self) -> list[Variable]:
        return self.layer.weights

    def __getattr__(self, name: str) -> Any:
        # kernel, recurrent_kernel, bias, activation, ... of the layer that holds them
        if name.startswith("_") or name == "layer" or "layer" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["layer"], name)

    def build(self, input_shape: tuple) -> None:
        """Build for a step input ``(batch, features)``."""
        self.layer._build_for((input_shape[0], None, input_shape[-1]))
        self.built = True

    def __call__(self, inputs: Any, states: Any, training: bool = False) -> Any:
        """One step eagerly: ``(output, new_states)`` for ``inputs`` (batch, features)."""
        x = self._prepare_input(inputs)
        if x.ndim != 2:
            raise ValueError(f"cell {self.name!r} ({type(self).__name__}) expects a step input "
                             f"of shape (batch, features), got shape {x.shape}")
        states = [states] if isinstance(states, np.ndarray) else list(states)
        lay = self.layer
        saved = (lay.return_sequences, lay.return_state)
        lay.return_sequences, lay.return_state = False, True
        try:
            y, *new = lay(x[:, None, :], initial_state=states, training=training)
        finally:
            lay.return_sequences, lay.return_state = saved
        self.built = True
        return y, new

    def get_config(self) -> dict:
        cfg = self.layer.get_config()
        for k in _LAYER_ONLY:
            cfg.pop(k, None)
        cfg["name"] = self.name
        return cfg


class SimpleRNNCell(_FusedCell):
    """The cell of :class:`~fastrnn.keras.recurrent.SimpleRNN` (same arguments, minus the
    sequence ones); ``RNN(SimpleRNNCell(u))`` is ``SimpleRNN(u)``."""

    _layer_cls = SimpleRNN


class LSTMCell(_FusedCell):
    """The cell of :class:`~fastrnn.keras.recurrent.LSTM` (same arguments, minus the sequence
    ones); ``RNN(LSTMCell(u))`` is ``LSTM(u)``: states ``[h, c]``."""

    _layer_cls = LSTM


class GRUCell(_FusedCell):
    """The cell of :class:`~fastrnn.keras.recurrent.GRU` (same arguments, minus the sequence
    ones); ``RNN(GRUCell(u))`` is ``GRU(u)``."""

    _layer_cls = GRU


def _state_sizes(cell: Any) -> list[int]:
    size = cell.state_size
    return [int(s) for s in size] if isinstance(size, (list, tuple)) else [int(size)]


def _has_backward(cell: Any) -> bool:
    """Whether a cell defines its own per-step backward (Layer's abstract one does not count)."""
    fn = getattr(type(cell), "backward", None)
    return callable(fn) and fn is not Layer.backward


def _accepts_training(fn: Any) -> bool:
    try:
        return "training" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class StackedRNNCells(Layer):
    """Several cells run one after the other within each step (Keras's
    ``layers.StackedRNNCells``): ``RNN(StackedRNNCells([c1, c2]))`` is a two-layer recurrent
    network whose states are those of every cell, in order.

    Stacks of built-in cells run on the fused kernels (one fused layer per cell); stacks
    holding your own cells take the per-step path.
    """

    def __init__(self, cells: Sequence[Any], **kwargs: Any) -> None:
        if isinstance(cells, (str, bytes)) or not isinstance(cells, Sequence) or not cells:
            raise ValueError(f"StackedRNNCells expects a non-empty list of cells, got {cells!r}")
        if "dtype" not in kwargs and isinstance(cells[0], Layer):
            kwargs["dtype"] = cells[0].dtype
        super().__init__(**kwargs)
        for c in cells:
            _check_cell(c, "StackedRNNCells")
        self.cells = list(cells)

    @property
    def state_size(self) -> list[int]:
        """Every cell's state sizes, in order."""
        return [s for c in self.cells for s in _state_sizes(c)]

    @property
    def output_size(self) -> int:
        last = self.cells[-1]
        return int(getattr(last, "output_size", _state_sizes(last)[0]))

    @property
    def weights(self) -> list[Variable]:
        return [v for c in self.cells for v in getattr(c, "weights", [])]

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        for c in self.cells:
            if hasattr(c, "build") and not getattr(c, "built", False):
                c.build(shape)
                if isinstance(c, Layer):
                    c.built = True
            shape = (shape[0], int(getattr(c, "output_size", _state_sizes(c)[0])))
        self.built = True

    def call(self, inputs: np.ndarray, states: list, training: bool = False) -> tuple:
        """One step through every cell (the per-step path)."""
        out, new, i = inputs, [], 0
        for c in self.cells:
            n = len(_state_sizes(c))
            kw = {"training": training} if _accepts_training(c.call) else {}
            out, st = c.call(out, list(states[i:i + n]), **kw)
            new.extend([st] if isinstance(st, np.ndarray) else list(st))
            i += n
        return out, new

    def backward(self, d_out: np.ndarray, d_states: list) -> tuple:
        """Undo the last :meth:`call` (every cell's ``backward``, last cell first)."""
        d_prev: list = [None] * len(d_states)
        sizes = [len(_state_sizes(c)) for c in self.cells]
        ends = np.cumsum(sizes)
        for c, n, end in zip(reversed(self.cells), reversed(sizes), reversed(ends), strict=True):
            if not _has_backward(c) or isinstance(c, _FusedCell):
                raise NotImplementedError(f"cell {getattr(c, 'name', c)!r} has no per-step "
                                          "backward(d_output, d_states)")
            d_out, dp = c.backward(d_out, list(d_states[end - n:end]))
            d_prev[end - n:end] = list(dp)
        return d_out, d_prev

    def get_config(self) -> dict:
        return {**super().get_config(), "cells": [serialize_cell(c) for c in self.cells]}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        config = dict(config)
        config["cells"] = [deserialize_cell(c) for c in config.get("cells", [])]
        return cls(**config)


def _check_cell(cell: Any, where: str) -> None:
    if isinstance(cell, (_FusedCell, StackedRNNCells)):
        return
    if not hasattr(cell, "state_size") or not callable(getattr(cell, "call", None)):
        raise ValueError(f"{where}: a cell needs a state_size attribute and a "
                         f"call(inputs, states) method, got {cell!r}")


def _fused_layers(cell: Any) -> list[_RNNBase] | None:
    """The fused layers behind a built-in cell or a stack of them (None otherwise)."""
    if isinstance(cell, _FusedCell):
        return [cell.layer]
    if isinstance(cell, StackedRNNCells) and all(isinstance(c, _FusedCell) for c in cell.cells):
        return [c.layer for c in cell.cells]
    return None


class RNN(Layer):
    """Run a cell over the time axis (Keras's ``layers.RNN``).

    Parameters
    ----------
    cell : cell, list of cells or StackedRNNCells
        :class:`SimpleRNNCell`, :class:`LSTMCell`, :class:`GRUCell` (fused kernels), a list
        or :class:`StackedRNNCells` of cells, or your own cell (see the module docstring: a
        per-step Python path, much slower).
    return_sequences, return_state, go_backwards, stateful, unroll, zero_output_for_mask
        As for :class:`~fastrnn.keras.recurrent.LSTM`. With ``return_state`` an eager call
        returns ``[output, *states]`` (every cell's states in order for a stack).

    Notes
    -----
    ``RNN(LSTMCell(u))`` and ``LSTM(u)`` have the same weights (``kernel``,
    ``recurrent_kernel``, ``bias``), outputs and gradients; a stack's weights are its cells'
    in order. Masks must be padding at the end of sequences, as for the fused layers.
    """

    supports_masking = True

    def __init__(self, cell: Any, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 zero_output_for_mask: bool = False, **kwargs: Any) -> None:
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        _check_cell(cell, "RNN")
        if "dtype" not in kwargs and isinstance(cell, Layer):
            kwargs["dtype"] = cell.dtype
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._fused = _fused_layers(cell)
        if self._fused is not None:
            n = len(self._fused)
            for i, lay in enumerate(self._fused):
                if lay.dtype != self.dtype:
                    raise ValueError(f"RNN: cell dtype {lay.dtype} differs from the layer's "
                                     f"{self.dtype}")
                last = i == n - 1
                lay.return_sequences = self.return_sequences if last else True
                lay.return_state = self.return_state
                lay.go_backwards = self.go_backwards and i == 0
                lay.stateful = self.stateful
                lay.zero_output_for_mask = self.zero_output_for_mask if last else False
        elif self.stateful:
            raise NotImplementedError("RNN: stateful=True is supported with the built-in cells "
                                      "only")
        self._sizes = _state_sizes(cell)
        self._last: list[np.ndarray] = []

    # -- shapes ---------------------------------------------------------------------------
    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (3,), "(batch, timesteps, features)")
        if shape[-1] is None:
            raise ValueError(f"layer {self.name!r} (RNN) needs a known feature dimension, got "
                             f"input shape {tuple(shape)}")
        if self._fused is not None and self._fused[0].built:
            self._fused[0].check_input_shape(shape)

    def build(self, input_shape: tuple) -> None:
        if self._fused is not None:
            shape = tuple(input_shape)
            for lay in self._fused:
                shape = lay._build_for(shape)
                if isinstance(shape, list):  # [output, *states] with return_state
                    shape = shape[0]
        elif not getattr(self.cell, "built", False):
            if hasattr(self.cell, "build"):
                self.cell.build((input_shape[0], input_shape[-1]))
            if isinstance(self.cell, Layer):
                self.cell.built = True
        if isinstance(self.cell, Layer):
            self.cell.built = True
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> Any:
        b, t = input_shape[0], input_shape[1]
        n = int(getattr(self.cell, "output_size", self._sizes[0]))
        out = (b, t, n) if self.return_sequences else (b, n)
        if self.return_state:
            return [out] + [(b, s) for s in self._sizes]
        return out

    def check_initial_state(self, shapes: list[tuple]) -> None:
        """Check ``initial_state`` shapes: one ``(batch, size)`` per state of every cell."""
        want = [(None, s) for s in self._sizes]
        ok = len(shapes) == len(want) and all(
            len(s) == 2 and (s[1] is None or s[1] == w[1]) for s, w in zip(shapes, want,
                                                                         strict=True))
        if not ok:
            raise ValueError(f"layer {self.name!r} (RNN): initial_state expects "
                             f"{len(want)} states of shapes {want}, got "
                             f"{[tuple(s) for s in shapes]}")

    def compute_mask(self, inputs: Any, mask: Any) -> Any:
        return mask if self.return_sequences else None

    @property
    def weights(self) -> list[Variable]:
        if self._fused is not None:
            return [v for lay in self._fused for v in lay.weights]
        return list(getattr(self.cell, "weights", []))

    @property
    def states(self) -> list[np.ndarray] | None:
        """The carried states of a stateful layer (every cell's, in order)."""
        if self._fused is None:
            return None
        out = [s for lay in self._fused for s in (lay.states or [])]
        return out or None

    def reset_states(self, states: Any = None) -> None:
        """Clear (or set) the carried states of a stateful layer."""
        if self._fused is None:
            return
        parts = self._split(states)
        for lay, st in zip(self._fused, parts, strict=True):
            lay.reset_states(st)

    def set_ops(self, ops: Any) -> None:
        """Run the fused cells on another ops module (see ``Sequential.set_ops``)."""
        for lay in self._fused or []:
            lay.set_ops(ops)

    @property
    def _last_states(self) -> list[np.ndarray]:
        if self._fused is not None:
            return [s for lay in self._fused for s in lay._last_states]
        return self._last

    def _split(self, states: Any) -> list[Any]:
        """Per fused layer, its part of a flat list of states (None stays None)."""
        assert self._fused is not None
        if states is None:
            return [None] * len(self._fused)
        states = [states] if isinstance(states, np.ndarray) else list(states)
        counts = [lay._n_states for lay in self._fused]
        if len(states) != sum(counts):
            raise ValueError(f"layer {self.name!r} (RNN) expects {sum(counts)} initial states "
                             f"(one per state of each cell), got {len(states)}")
        states = [np.ascontiguousarray(a, dtype=self.dtype) for a in states]
        out, i = [], 0
        for n in counts:
            out.append(states[i:i + n])
            i += n
        return out

    # -- compute --------------------------------------------------------------------------
    # The recurrent layers' protocol: forward takes x or [x, *initial_states] (with a list of
    # masks) and returns the output, or [output, *final_states] with return_state; backward
    # takes the output gradient (a list with return_state, None for states without one) and
    # returns dx, or [dx, *d_initial_states] after a forward with initial states.
    def forward(self, x: Any, mask: Any, training: bool) -> tuple[Any, np.ndarray | None]:
        init = None
        self._with_init = isinstance(x, list)
        if self._with_init:
            x, *init = x
            mask = mask[0] if isinstance(mask, list) else mask
            b = np.shape(x)[0]
            self.check_initial_state([np.shape(s) for s in init])
            if any(np.shape(s)[0] != b for s in init):
                raise ValueError(f"layer {self.name!r} (RNN): initial_state carries state for "
                                 f"another batch size than the input's {b}")
        if self._fused is None:
            y, m = self._step_forward(x, mask, training, init)
            return ([y, *self._last] if self.return_state else y), m
        m = mask
        states: list[np.ndarray] = []
        for lay, st in zip(self._fused, self._split(init), strict=True):
            if st is None:
                x, m = lay.forward(x, m, training)
            else:
                x, m = lay.forward([x, *st], [m] + [None] * len(st), training)
            if self.return_state:
                x, *st_out = x
                states += st_out
        return ([x, *states] if self.return_state else x), m

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        with_init = getattr(self, "_with_init", False)
        if self._fused is None:
            return self._step_backward(dy, need_dx, with_init)
        dstates: list[Any] = [None] * len(self._sizes)
        if self.return_state:
            dy, *dstates = dy
        counts = [lay._n_states for lay in self._fused]
        ends = np.cumsum(counts)
        g: Any = dy
        d_init: list[Any] = []
        for i in range(len(self._fused) - 1, -1, -1):
            lay = self._fused[i]
            ds = dstates[ends[i] - counts[i]:ends[i]]
            g = lay.backward([g, *ds] if self.return_state else g, need_dx or i > 0)
            if getattr(lay, "_with_init", False):
                g, *di = g
                d_init = list(di) + d_init
            else:
                d_init = [None] * counts[i] + d_init
        return [g, *d_init] if with_init else g

    def __call__(self, inputs: Any, mask: Any = None, training: Any = None,
                 initial_state: Any = None, **kwargs: Any) -> Any:
        """Run eagerly (or record a call on symbolic tensors); returns the output, or
        ``[output, *final_states]`` with ``return_state=True``."""
        return _call_with_state(self, inputs, mask, training, initial_state, kwargs,
                                state_dtype=self.dtype)

    # -- the per-step path (your own cells) -----------------------------------------------
    def _step_forward(self, x, mask, training, initial_state):
        cell = self.cell
        if training and not _has_backward(cell):
            raise NotImplementedError(
                f"layer {self.name!r} (RNN): cell {getattr(cell, 'name', cell)!r} has no "
                "backward(d_output, d_states) method, so it cannot be trained (inference "
                "works); see fastrnn.keras.rnn_cells")
        b, steps = x.shape[0], x.shape[1]
        if initial_state is None:
            states = [np.zeros((b, s), dtype=self.dtype) for s in self._sizes]
        else:
            states = [np.asarray(s, dtype=self.dtype) for s in
                      ([initial_state] if isinstance(initial_state, np.ndarray)
                       else initial_state)]
            if [s.shape for s in states] != [(b, n) for n in self._sizes]:
                raise ValueError(f"layer {self.name!r} (RNN) expects initial states of shapes "
                                 f"{[(b, n) for n in self._sizes]}, got "
                                 f"{[s.shape for s in states]}")
        if mask is not None:
            mask_to_lengths(mask, b, steps)  # same shape check as the fused layers
            mask = np.asarray(mask, dtype=bool)
        kw = {"training": training} if _accepts_training(cell.call) else {}
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        outs, prev = [], None
        for t in order:
            out, new = cell.call(x[:, t], list(states), **kw)
            new = [new] if isinstance(new, np.ndarray) else list(new)
            out = np.asarray(out, dtype=self.dtype)
            if mask is not None:
                m = mask[:, t][:, None]
                prev = np.zeros_like(out) if prev is None else prev
                out = np.where(m, out, prev)
                new = [np.where(m, n, s) for n, s in zip(new, states, strict=True)]
            states, prev = [np.asarray(s, dtype=self.dtype) for s in new], out
            outs.append(out)
        self._last = states
        if training:
            self._step_cache = (mask, list(order), x.shape)
        if not outs:
            raise ValueError(f"layer {self.name!r} (RNN) needs at least one timestep")
        if self.return_sequences:
            y = np.stack(outs, axis=1)
            return y, mask
        return outs[-1], None

    def _step_backward(self, dy, need_dx, with_init):
        mask, order, xshape = self._step_cache
        self._step_cache = None
        for v in self.weights:
            v.grad = np.zeros_like(v.value)
        dx = np.zeros(xshape, dtype=self.dtype)
        d_states = [np.zeros((xshape[0], s), dtype=self.dtype) for s in self._sizes]
        if self.return_state:  # gradients of the final states join the last step's
            dy, *ds = dy
            d_states = [z if d is None else z + d for z, d in zip(d_states, ds, strict=True)]
        n_out = int(getattr(self.cell, "output_size", self._sizes[0]))
        if dy is None:
            dy = np.zeros((xshape[0], xshape[1], n_out) if self.return_sequences
                          else (xshape[0], n_out), dtype=self.dtype)
        d_carry = np.zeros((xshape[0], n_out), dtype=self.dtype)  # into the previous output
        n = len(order)
        for i in range(n - 1, -1, -1):
            t = order[i]
            d_out = d_carry + (dy[:, i] if self.return_sequences else
                               (dy if i == n - 1 else 0))
            if mask is not None:
                m = mask[:, t][:, None]
                d_cell_out = np.where(m, d_out, 0)
                d_carry = np.where(m, 0, d_out)
                d_new = [np.where(m, d, 0) for d in d_states]
                keep = [np.where(m, 0, d) for d in d_states]
            else:
                d_cell_out, d_carry, d_new, keep = d_out, np.zeros_like(d_out), d_states, None
            d_in, d_prev = self.cell.backward(d_cell_out, d_new)
            d_prev = [d_prev] if isinstance(d_prev, np.ndarray) else list(d_prev)
            if keep is not None:
                d_prev = [p + k for p, k in zip(d_prev, keep, strict=True)]
            d_states = d_prev
            dx[:, t] = d_in
        if with_init:
            return [dx, *d_states]
        return dx if need_dx else None

    # -- config ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        cfg = {**super().get_config(), "cell": serialize_cell(self.cell)}
        cfg.update({k: getattr(self, k) for k in _RNN_ARGS})
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        config = dict(config)
        config["cell"] = deserialize_cell(config.get("cell"))
        return cls(**config)

    def __getattr__(self, name: str) -> Any:
        # one built-in cell: the fused layer's other attributes (kernel, units, ...)
        d = self.__dict__
        fused = d.get("_fused")
        if name.startswith("__") or fused is None or len(fused) != 1:
            raise AttributeError(name)
        return getattr(fused[0], name)


_CELLS: dict[str, type[Layer]] = {c.__name__: c for c in (SimpleRNNCell, LSTMCell, GRUCell,
                                                           StackedRNNCells)}


def serialize_cell(cell: Any) -> dict:
    """``{'class_name', 'config'}`` of a built-in cell (your own cells cannot be saved)."""
    return serialize_registered(_CELLS, cell, "cell")


def deserialize_cell(config: Any) -> Any:
    """Rebuild a cell from :func:`serialize_cell`'s output (built-in cells only)."""
    cls, cfg = registered_class(_CELLS, config, "cell")
    return cls.from_config(cfg)
