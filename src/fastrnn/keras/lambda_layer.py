"""Wrap a Python function as a layer: :class:`Lambda`.

Saving a model with a Lambda layer records the function by name (``module:qualname``;
anonymous and nested functions cannot be saved). Loading it imports that module and so runs
code, which a model file must not do on its own: ``load_model`` refuses Lambda layers unless
called with ``safe_mode=False``, as Keras does.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .base import Layer, normalize_shape

__all__ = ["Lambda", "unsafe_deserialization"]

_UNSAFE = [False]


@contextlib.contextmanager
def unsafe_deserialization(enabled: bool = True) -> Iterator[None]:
    """Within the block, :meth:`Lambda.from_config` may import the functions a config names
    (``load_model(..., safe_mode=False)``)."""
    old, _UNSAFE[0] = _UNSAFE[0], bool(enabled)
    try:
        yield
    finally:
        _UNSAFE[0] = old


def _function_name(fn: Callable, what: str, layer: str) -> str:
    qual = getattr(fn, "__qualname__", "")
    mod = getattr(fn, "__module__", None)
    if not mod or not qual or "<" in qual:
        raise ValueError(f"Lambda layer {layer!r}: its {what} {fn!r} is anonymous or nested and "
                         "cannot be saved; use a function defined at module level")
    return f"{mod}:{qual}"


def _resolve(ref: Any, what: str) -> Callable | None:
    if ref is None:
        return None
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ValueError(f"Lambda: {what} must be 'module:qualname', got {ref!r}")
    mod, qual = ref.split(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"Lambda: {what} {ref!r} is not callable")
    return obj


class Lambda(Layer):
    """Apply ``function(inputs, **arguments)`` (Keras's ``layers.Lambda``).

    Parameters
    ----------
    function : callable
        Maps a NumPy batch to a NumPy batch.
    output_shape : tuple or callable, optional
        The output shape without the batch axis, or ``f(input_shape) -> output_shape``
        (batch axis included). Inferred by running ``function`` on zeros when omitted.
    mask : callable, optional
        ``mask(inputs, input_mask) -> output_mask``; without it no mask is passed on.
    arguments : dict, optional
        Keyword arguments for ``function``.
    backward : callable, optional
        fastrnn's addition (NumPy has no autodiff): ``backward(dy, x, y) -> dx``, the input
        gradient, needed when layers with weights come before this one in a trained model.
        Without it, training such a model raises a clear error.

    Notes
    -----
    Model files store the functions by name; ``load_model`` imports them only with
    ``safe_mode=False``.
    """

    def __init__(self, function: Callable, output_shape: Any = None, mask: Any = None,
                 arguments: dict | None = None, backward: Callable | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda: function must be callable, got {function!r}")
        if mask is not None and not callable(mask):
            raise TypeError(f"Lambda: mask must be a callable or None, got {mask!r}")
        if backward is not None and not callable(backward):
            raise TypeError(f"Lambda: backward must be a callable or None, got {backward!r}")
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"Lambda: arguments must be a dict, got {arguments!r}")
        self.function = function
        self.mask = mask
        self.arguments = dict(arguments or {})
        self.backward_function = backward
        self._output_shape = output_shape
        self.supports_masking = mask is not None

    def _call(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(self.function(x, **self.arguments))
        if y.dtype.kind == "f" and y.dtype != self.dtype:
            y = y.astype(self.dtype)
        return y

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        spec = self._output_shape
        if callable(spec):
            return tuple(spec(tuple(input_shape)))
        if spec is not None:
            return (input_shape[0],) + normalize_shape(spec, "output_shape")
        # probe with two sizes for unknown axes: sizes that follow them are unknown too
        probes = []
        for fill in (2, 3):
            shape = tuple(fill if s is None else s for s in input_shape)
            probes.append(self._call(np.zeros(shape, dtype=self.dtype)).shape)
        a, b = probes
        if len(a) != len(b):
            return (input_shape[0],) + (None,) * (len(a) - 1)
        return (input_shape[0],) + tuple(x if x == y else None
                                         for x, y in zip(a[1:], b[1:], strict=True))

    def compute_mask(self, inputs: Any, mask: Any) -> Any:
        return None if self.mask is None else self.mask(inputs, mask)

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        y = self._call(x)
        self._cache = (x, y) if training else None
        return y, self.compute_mask(x, mask)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        x, y = self._cache
        self._cache = None
        if not need_dx:
            return None
        if self.backward_function is None:
            raise NotImplementedError(
                f"Lambda layer {self.name!r} has no gradient: NumPy has no autodiff, so a Lambda "
                "after layers with weights needs backward=f(dy, x, y) -> dx (or use a built-in "
                "layer instead)")
        dx = np.asarray(self.backward_function(dy, x, y))
        if dx.shape != x.shape:
            raise ValueError(f"Lambda layer {self.name!r}: backward returned shape {dx.shape}, "
                             f"expected the input's {x.shape}")
        return dx.astype(x.dtype, copy=False)

    def get_config(self) -> dict:
        spec = self._output_shape
        if callable(spec):
            spec = {"function": _function_name(spec, "output_shape", self.name)}
        elif spec is not None:
            spec = list(normalize_shape(spec, "output_shape"))
        return {**super().get_config(),
                "function": _function_name(self.function, "function", self.name),
                "output_shape": spec,
                "mask": None if self.mask is None else _function_name(self.mask, "mask",
                                                                      self.name),
                "arguments": self.arguments,
                "backward": None if self.backward_function is None else
                _function_name(self.backward_function, "backward", self.name)}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        if not _UNSAFE[0]:
            raise ValueError(
                "Requested the deserialization of a Lambda layer: loading it imports and runs "
                "the Python function the file names, which could be arbitrary code, so it is "
                "disallowed by default. If you trust the source of the saved model, pass "
                "safe_mode=False to load_model to allow Lambda layer loading.")
        config = dict(config)
        config["function"] = _resolve(config.get("function"), "function")
        config["mask"] = _resolve(config.get("mask"), "mask")
        config["backward"] = _resolve(config.get("backward"), "backward")
        spec = config.get("output_shape")
        if isinstance(spec, dict):
            config["output_shape"] = _resolve(spec.get("function"), "output_shape")
        return cls(**config)
