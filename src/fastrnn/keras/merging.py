"""Layers that merge several inputs: :class:`Concatenate`, :class:`Add`, :class:`Multiply`.

They follow the multi-input layer protocol (class attribute ``multi_input = True``):

- ``forward(xs, masks, training) -> (y, out_mask)`` takes a list of arrays and a list of
  masks (or None);
- ``backward(dy, need_dx=True) -> list`` returns one gradient per input;
- calling the layer eagerly on a list of NumPy arrays, ``Add()([a, b])``, works as in Keras.

Masks follow Keras 3: the output mask of :class:`Add`/:class:`Multiply` is the OR of the
input masks (None unless every input has one), :class:`Concatenate` concatenates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Layer

__all__ = ["Add", "Concatenate", "Multiply", "MultiInputLayer"]


class MultiInputLayer(Layer):
    """Base of layers that take a list of inputs (see the module docstring).

    ``input_shape`` after building is the list of the inputs' shapes.
    """

    multi_input = True
    supports_masking = True
    #: Fewest inputs the layer takes.
    min_inputs = 2
    #: Most inputs the layer takes (None: any number).
    max_inputs: int | None = None

    def _shapes(self, input_shape: Any) -> list[tuple]:
        ok = isinstance(input_shape, (list, tuple)) and input_shape and all(
            isinstance(s, (list, tuple)) for s in input_shape)
        if not ok:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects a list of "
                             f"inputs, got a single input of shape {input_shape}")
        shapes = [tuple(s) for s in input_shape]
        n = len(shapes)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            want = (f"{self.min_inputs}" if self.max_inputs == self.min_inputs else
                    f"at least {self.min_inputs}" if self.max_inputs is None else
                    f"{self.min_inputs} to {self.max_inputs}")
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects {want} "
                             f"inputs, got {n}")
        return shapes

    def _build_for(self, input_shape: Any) -> tuple:
        shapes = self._shapes(input_shape)
        self.check_input_shape(shapes)
        if not self.built:
            self.build(shapes)
            self.built = True
        out = self.compute_output_shape(shapes)
        self.input_shape = shapes  # type: ignore[assignment]
        self.output_shape = out
        return out

    def check_batch(self, xs: Any) -> None:
        if self.input_shape is None:
            return
        for i, (x, spec) in enumerate(zip(xs, self.input_shape, strict=True)):
            bad = x.ndim != len(spec) or any(
                b is not None and a != b for a, b in zip(x.shape[1:], spec[1:], strict=False))
            if bad:
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects input "
                                 f"{i} of shape {tuple(spec)}, got {x.shape}")

    def __call__(self, inputs: Any, mask: Any = None, training: Any = None,
                 **kwargs: Any) -> Any:
        """Run eagerly on a list of NumPy arrays (builds the layer on first use), or record a
        call in a functional graph when given symbolic tensors."""
        from .symbolic import is_symbolic, symbolic_call

        if is_symbolic(inputs, kwargs):
            return symbolic_call(self, inputs, mask=mask, training=training, **kwargs)
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects a list of "
                             f"inputs, got {type(inputs).__name__}")
        xs = [self._prepare_input(x) for x in inputs]
        self._build_for([(None,) + tuple(x.shape[1:]) for x in xs])
        self.check_batch(xs)
        masks = None
        if mask is not None:
            if not isinstance(mask, (list, tuple)) or len(mask) != len(xs):
                raise ValueError(f"layer {self.name!r}: mask must be a list with one entry "
                                 f"(array or None) per input ({len(xs)})")
            masks = [None if m is None else np.asarray(m, dtype=bool) for m in mask]
        y, _ = self.forward(xs, masks, bool(training), **kwargs)
        return y

    def compute_mask(self, inputs: Any, mask: Any) -> Any:
        """The output mask for a list of input masks (None when there is none)."""
        raise NotImplementedError

    def forward(self, xs: list[np.ndarray], masks: list[np.ndarray | None] | None,  # type: ignore[override]
                training: bool) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True  # type: ignore[override]
                 ) -> list[np.ndarray | None]:
        raise NotImplementedError


def _masks_or(masks: Sequence[np.ndarray | None] | None) -> np.ndarray | None:
    """Keras's merged mask: the OR of the masks when every input has one, else None."""
    if not masks or any(m is None for m in masks):
        return None
    out = np.asarray(masks[0], dtype=bool)
    for m in masks[1:]:
        out = out | np.asarray(m, dtype=bool)
    return out


class _Elementwise(MultiInputLayer):
    """Shared checks of the elementwise merges (inputs of one shape)."""

    def check_input_shape(self, shapes: Any) -> None:
        ref = shapes[0]
        for i, s in enumerate(shapes[1:], start=1):
            same = len(s) == len(ref) and all(
                a is None or b is None or a == b for a, b in zip(s[1:], ref[1:], strict=True))
            if not same:
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects inputs "
                                 f"of one shape, got {tuple(ref)} and {tuple(s)} (input {i})")

    def compute_output_shape(self, input_shape: Any) -> tuple:
        shapes = [tuple(s) for s in input_shape]
        return tuple(next((s[i] for s in shapes if s[i] is not None), None)
                     for i in range(len(shapes[0])))

    def compute_mask(self, inputs: Any, mask: Any) -> np.ndarray | None:
        return _masks_or(mask)


class Add(_Elementwise):
    """Sum of the inputs (all of one shape), Keras's ``layers.Add``."""

    def forward(self, xs, masks, training):
        y = xs[0].copy()
        for x in xs[1:]:
            y += x
        if training:
            self._cache = len(xs)
        return y, _masks_or(masks)

    def backward(self, dy, need_dx=True):
        n = self._cache
        self._cache = None
        return [dy] * n


class Multiply(_Elementwise):
    """Elementwise product of the inputs (all of one shape), Keras's ``layers.Multiply``.

    With masks on every input (Keras 3): masked entries of an input count as 1 and the
    output is 0 where no input is valid.
    """

    def forward(self, xs, masks, training):
        keep = None
        if masks and all(m is not None for m in masks):
            xs = [np.where(m[..., None], x, 1).astype(x.dtype, copy=False)
                  for x, m in zip(xs, masks, strict=True)]
            keep = _masks_or(masks)
        elif masks:
            # Keras: an input's masked entries still count as 1, the output stays unmasked
            xs = [x if m is None else np.where(m[..., None], x, 1).astype(x.dtype, copy=False)
                  for x, m in zip(xs, masks, strict=True)]
        y = xs[0].copy()
        for x in xs[1:]:
            y *= x
        if keep is not None:
            y = np.where(keep[..., None], y, 0).astype(y.dtype, copy=False)
        if training:
            self._cache = (xs, masks, keep)
        return y, keep

    def backward(self, dy, need_dx=True):
        xs, masks, keep = self._cache
        self._cache = None
        if keep is not None:
            dy = np.where(keep[..., None], dy, 0)
        out = []
        for i in range(len(xs)):
            g = dy.copy()
            for j, x in enumerate(xs):
                if j != i:
                    g *= x
            if masks and masks[i] is not None:
                g = np.where(masks[i][..., None], g, 0).astype(g.dtype, copy=False)
            out.append(g)
        return out


class Concatenate(MultiInputLayer):
    """Concatenate inputs along ``axis`` (Keras's ``layers.Concatenate``).

    Parameters
    ----------
    axis : int
        Axis to join along (default -1); the other axes must agree. The batch axis (0) is
        refused.
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Concatenate: axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def _axis(self, rank: int) -> int:
        ax = self.axis + rank if self.axis < 0 else self.axis
        if not 1 <= ax < rank:
            raise ValueError(f"layer {self.name!r} (Concatenate): axis={self.axis} is not a "
                             f"non-batch axis of inputs of rank {rank}")
        return ax

    def check_input_shape(self, shapes: Any) -> None:
        ref = shapes[0]
        ax = self._axis(len(ref))
        for i, s in enumerate(shapes[1:], start=1):
            ok = len(s) == len(ref) and all(
                k == ax or a is None or b is None or a == b
                for k, (a, b) in enumerate(zip(s, ref, strict=True)) if k)
            if not ok:
                raise ValueError(f"layer {self.name!r} (Concatenate) expects inputs whose "
                                 f"shapes agree except on axis {self.axis}, got {tuple(ref)} "
                                 f"and {tuple(s)} (input {i})")

    def compute_output_shape(self, input_shape: Any) -> tuple:
        shapes = [tuple(s) for s in input_shape]
        ax = self._axis(len(shapes[0]))
        out = list(shapes[0])
        sizes = [s[ax] for s in shapes]
        out[ax] = None if any(v is None for v in sizes) else int(sum(sizes))
        for k in range(1, len(out)):
            if k != ax and out[k] is None:
                out[k] = next((s[k] for s in shapes if s[k] is not None), None)
        return tuple(out)

    def compute_mask(self, inputs: Any, mask: Any) -> np.ndarray | None:
        if mask is None or all(m is None for m in mask):
            return None
        shapes = [np.shape(x) for x in inputs]
        ax = self._axis(len(shapes[0]))
        full = [np.ones(s, dtype=bool) if m is None else
                np.broadcast_to(np.asarray(m, dtype=bool)[..., None], s)
                if np.ndim(m) < len(s) else np.asarray(m, dtype=bool)
                for m, s in zip(mask, shapes, strict=True)]
        return np.concatenate(full, axis=ax).any(axis=-1)

    def forward(self, xs, masks, training):
        ax = self._axis(xs[0].ndim)
        y = np.concatenate(xs, axis=ax)
        if training:
            self._cache = (ax, [x.shape[ax] for x in xs])
        return y, self.compute_mask(xs, masks)

    def backward(self, dy, need_dx=True):
        ax, sizes = self._cache
        self._cache = None
        return list(np.split(dy, np.cumsum(sizes)[:-1], axis=ax))

    def get_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis}

