"""Pooling over time: :class:`MaxPooling1D`, :class:`AveragePooling1D`,
:class:`GlobalMaxPooling1D`, :class:`GlobalAveragePooling1D` (Keras 3, channels_last).

``padding='same'`` windows only count real steps (the average divides by the number of real
steps in the window, as TensorFlow's and JAX's Keras do).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer
from .convolutional import (
    check_data_format,
    check_window_arg,
    padded_length,
    windows,
    windows_backward,
)

__all__ = ["AveragePooling1D", "GlobalAveragePooling1D", "GlobalMaxPooling1D", "MaxPooling1D"]


class _Pooling1D(Layer):
    """Shared arguments and shapes of the windowed poolings."""

    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid",
                 data_format: Any = None, **kwargs: Any) -> None:
        cls = type(self).__name__
        super().__init__(**kwargs)
        self.pool_size = check_window_arg(cls, "pool_size", pool_size)
        self.strides = (self.pool_size if strides is None
                        else check_window_arg(cls, "strides", strides))
        if padding not in ("valid", "same"):
            raise ValueError(f"{cls}: padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding
        self.data_format = check_data_format(cls, data_format)

    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (3,), "(batch, steps, channels)")
        if self.padding == "valid" and shape[1] is not None and shape[1] < self.pool_size:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}): {shape[1]} steps "
                             f"are fewer than pool_size={self.pool_size} with padding='valid'")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], padded_length(input_shape[1], self.pool_size, self.strides, 1,
                                              self.padding), input_shape[2])

    def _windows(self, x: np.ndarray, fill: float) -> tuple[np.ndarray, Any]:
        if self.padding == "valid" and x.shape[1] < self.pool_size:
            self.check_input_shape(x.shape)
        return windows(x, self.pool_size, self.strides, 1, self.padding, fill)

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_size": [self.pool_size],
                "strides": [self.strides], "padding": self.padding,
                "data_format": self.data_format}


class MaxPooling1D(_Pooling1D):
    """Maximum over windows of ``pool_size`` steps every ``strides`` steps (default
    ``pool_size``). The gradient goes to the first maximum of each window."""

    def forward(self, x, mask, training):
        win, geo = self._windows(x, -np.inf)
        arg = win.argmax(axis=2)
        y = np.take_along_axis(win, arg[:, :, None], axis=2)[:, :, 0]
        self._cache = (arg, x.shape[1], geo) if training else None
        return y, None

    def backward(self, dy, need_dx=True):
        arg, steps, geo = self._cache
        self._cache = None
        dwin = np.zeros(dy.shape[:2] + (self.pool_size, dy.shape[2]), dtype=dy.dtype)
        np.put_along_axis(dwin, arg[:, :, None], dy[:, :, None], axis=2)
        return windows_backward(dwin, steps, self.strides, 1, geo)


class AveragePooling1D(_Pooling1D):
    """Mean over windows of ``pool_size`` steps every ``strides`` steps (default
    ``pool_size``); with ``padding='same'`` padded steps are not counted."""

    def forward(self, x, mask, training):
        win, geo = self._windows(x, 0.0)
        ones = np.ones((1, x.shape[1], 1), dtype=x.dtype)
        count = windows(ones, self.pool_size, self.strides, 1, self.padding)[0].sum(axis=2)
        y = win.sum(axis=2) / count
        self._cache = (count, x.shape[1], geo) if training else None
        return y.astype(x.dtype, copy=False), None

    def backward(self, dy, need_dx=True):
        count, steps, geo = self._cache
        self._cache = None
        g = dy / count
        dwin = np.broadcast_to(g[:, :, None, :], g.shape[:2] + (self.pool_size, g.shape[2]))
        return windows_backward(np.ascontiguousarray(dwin), steps, self.strides, 1, geo)


class _GlobalPooling1D(Layer):
    """Shared arguments of the global poolings."""

    def __init__(self, data_format: Any = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = check_data_format(type(self).__name__, data_format)
        self.keepdims = bool(keepdims)

    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (3,), "(batch, steps, channels)")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        if self.keepdims:
            return (input_shape[0], 1, input_shape[2])
        return (input_shape[0], input_shape[2])

    def compute_mask(self, inputs: Any, mask: Any) -> None:
        return None

    def _shape_out(self, y: np.ndarray) -> np.ndarray:
        return y[:, None, :] if self.keepdims else y

    def _grad_in(self, dy: np.ndarray) -> np.ndarray:
        return dy[:, 0, :] if self.keepdims else dy

    def get_config(self) -> dict:
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Maximum over the time axis: ``(batch, steps, channels)`` -> ``(batch, channels)``.

    A mask is ignored, as in Keras 3. The gradient goes to the first maximum.
    """

    def forward(self, x, mask, training):
        arg = x.argmax(axis=1)
        y = np.take_along_axis(x, arg[:, None, :], axis=1)[:, 0, :]
        self._cache = (arg, x.shape) if training else None
        return self._shape_out(y), None

    def backward(self, dy, need_dx=True):
        arg, shape = self._cache
        self._cache = None
        dx = np.zeros(shape, dtype=dy.dtype)
        np.put_along_axis(dx, arg[:, None, :], self._grad_in(dy)[:, None, :], axis=1)
        return dx


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the time axis: ``(batch, steps, channels)`` -> ``(batch, channels)``.

    With a mask (e.g. from ``Embedding(mask_zero=True)``) only valid steps are averaged, as
    Keras 3 (a sequence with no valid step gives NaN there, as Keras).
    """

    supports_masking = True

    def forward(self, x, mask, training):
        if mask is None:
            w = np.full((1, x.shape[1], 1), 1.0 / max(x.shape[1], 1), dtype=x.dtype)
            y = x.mean(axis=1)
        else:
            m = np.asarray(mask, dtype=bool)[:, :, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                w = m / m.sum(axis=1, keepdims=True, dtype=x.dtype)
                y = np.where(m, x, 0).sum(axis=1) / m.sum(axis=1, dtype=x.dtype)
        self._cache = w if training else None
        return self._shape_out(y.astype(x.dtype, copy=False)), None

    def backward(self, dy, need_dx=True):
        w = self._cache
        self._cache = None
        return (self._grad_in(dy)[:, None, :] * w).astype(dy.dtype, copy=False)
