"""One-dimensional convolution, :class:`Conv1D` (Keras 3's maths and weight layout).

The forward is an im2col: the padded input's windows ``(batch * steps_out, kernel_size *
channels)`` times the kernel reshaped to ``(kernel_size * channels, filters)`` on fastrnn's
GEMM; the backward is two more GEMMs and one strided add per kernel tap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _native
from . import activations as _acts
from .base import Layer, reject_unsupported, serialize_initializer

__all__ = ["Conv1D", "padded_length", "window_geometry"]

_PADDINGS = ("valid", "same", "causal")


def window_geometry(steps: int, size: int, stride: int, dilation: int, padding: str
                    ) -> tuple[int, int, int]:
    """``(pad_left, pad_right, steps_out)`` of a sliding window over ``steps`` steps.

    ``'valid'`` pads nothing; ``'same'`` gives ``ceil(steps / stride)`` outputs with the
    padding split as TensorFlow and Keras do (the extra step on the right); ``'causal'`` pads
    ``dilation * (size - 1)`` steps on the left.
    """
    span = dilation * (size - 1) + 1
    if padding == "valid":
        return 0, 0, max((steps - span) // stride + 1, 0)
    if padding == "causal":
        return span - 1, 0, (steps - 1) // stride + 1 if steps else 0
    out = -(-steps // stride)
    total = max((out - 1) * stride + span - steps, 0)
    return total // 2, total - total // 2, out


def padded_length(steps: Any, size: int, stride: int, dilation: int, padding: str) -> Any:
    """Output steps for ``steps`` input steps (None stays None)."""
    if steps is None:
        return None
    return window_geometry(int(steps), size, stride, dilation, padding)[2]


def check_window_arg(cls: str, name: str, value: Any) -> int:
    """A positive int from an int or a one-element tuple/list (Keras accepts both)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{cls}: {name} must be a positive int (or a 1-tuple of one), got "
                         f"{value!r}")
    return int(value)


def check_data_format(cls: str, data_format: Any) -> str:
    """Only ``'channels_last'`` (Keras's default) is supported."""
    if data_format not in (None, "channels_last"):
        raise NotImplementedError(f"{cls}: data_format={data_format!r} is not supported; "
                                  "pass (batch, steps, channels) inputs (channels_last)")
    return "channels_last"


def windows(x: np.ndarray, size: int, stride: int, dilation: int, padding: str,
            fill: float = 0.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The windows of ``x`` (B, L, C) as a (B, L_out, size, C) array, and the geometry."""
    b, steps, c = x.shape
    left, right, out = window_geometry(steps, size, stride, dilation, padding)
    xp = x
    if left or right:
        xp = np.full((b, steps + left + right, c), fill, dtype=x.dtype)
        xp[:, left:left + steps] = x
    idx = np.arange(out)[:, None] * stride + np.arange(size)[None, :] * dilation
    return xp[:, idx, :], (left, right, out)


def windows_backward(dwin: np.ndarray, steps: int, stride: int, dilation: int,
                     geometry: tuple[int, int, int]) -> np.ndarray:
    """Gradient of :func:`windows`' input from the windows' gradient (B, L_out, size, C)."""
    b, out, size, c = dwin.shape
    left, right, _ = geometry
    dxp = np.zeros((b, steps + left + right, c), dtype=dwin.dtype)
    if out:
        for j in range(size):
            start = j * dilation
            dxp[:, start:start + stride * (out - 1) + 1:stride] += dwin[:, :, j]
    return dxp[:, left:left + steps]


class Conv1D(Layer):
    """1-D convolution over time, Keras 3's ``layers.Conv1D`` (channels_last).

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size : int
    strides : int
    padding : {'valid', 'same', 'causal'}
        ``'causal'`` pads on the left so step t sees only steps <= t (for forecasting).
    data_format : 'channels_last'
    dilation_rate : int
    groups : int
        Must be 1.
    activation : str, optional
    use_bias : bool
    kernel_initializer, bias_initializer : str or Initializer

    Notes
    -----
    Weights: ``kernel`` (kernel_size, channels, filters) and ``bias`` (filters,). Masks are not
    propagated (as Keras's Conv1D).
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = 1, padding: str = "valid",
                 data_format: Any = None, dilation_rate: Any = 1, groups: int = 1,
                 activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 kernel_constraint: Any = None, bias_constraint: Any = None,
                 **kwargs: Any) -> None:
        reject_unsupported("Conv1D", kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint,
                           bias_constraint=bias_constraint)
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) \
                or filters <= 0:
            raise ValueError(f"Conv1D: filters must be a positive int, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = check_window_arg("Conv1D", "kernel_size", kernel_size)
        self.strides = check_window_arg("Conv1D", "strides", strides)
        self.dilation_rate = check_window_arg("Conv1D", "dilation_rate", dilation_rate)
        if padding not in _PADDINGS:
            raise ValueError(f"Conv1D: padding must be one of {_PADDINGS}, got {padding!r}")
        self.padding = padding
        self.data_format = check_data_format("Conv1D", data_format)
        if groups != 1:
            raise NotImplementedError(f"Conv1D: groups={groups!r} is not supported (only 1)")
        self.groups = 1
        self.activation = _acts.resolve(activation)
        self._act_fwd, self._act_bwd = _acts.get(self.activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (3,), "(batch, steps, channels)")
        if shape[-1] is None or shape[-1] == 0:
            raise ValueError(f"layer {self.name!r} (Conv1D) needs a known, non-zero channel "
                             f"dimension, got input shape {tuple(shape)}")
        if self.built and shape[-1] != self.kernel.shape[1]:
            raise ValueError(f"layer {self.name!r} (Conv1D) was built for "
                             f"{self.kernel.shape[1]} input channels, got input shape "
                             f"{tuple(shape)}")
        steps = shape[1]
        if steps is not None and padding_too_short(steps, self.kernel_size, self.strides,
                                                   self.dilation_rate, self.padding):
            raise ValueError(f"layer {self.name!r} (Conv1D): {steps} steps are fewer than the "
                             f"kernel's span {self.dilation_rate * (self.kernel_size - 1) + 1} "
                             f"with padding='valid'")

    def build(self, input_shape: tuple) -> None:
        c = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", (self.kernel_size, c, self.filters),
                                      self.kernel_initializer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer)
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], padded_length(input_shape[1], self.kernel_size, self.strides,
                                              self.dilation_rate, self.padding), self.filters)

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        b, steps, c = x.shape
        if padding_too_short(steps, self.kernel_size, self.strides, self.dilation_rate,
                             self.padding):
            self.check_input_shape(x.shape)
        win, geo = windows(x, self.kernel_size, self.strides, self.dilation_rate, self.padding)
        out = geo[2]
        cols = np.ascontiguousarray(win, dtype=self.dtype).reshape(b * out, -1)
        w2 = self.kernel.value.reshape(-1, self.filters)
        z = _native.gemm(cols, w2) if cols.size else np.zeros((b * out, self.filters),
                                                               dtype=self.dtype)
        if self.bias is not None:
            z += self.bias.value
        y = self._act_fwd(z) if self.activation != "linear" else z
        self._cache = (cols, z, y, (b, steps, c), geo) if training else None
        return y.reshape(b, out, self.filters), None

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        cols, z, y, (b, steps, c), geo = self._cache
        self._cache = None
        dy2 = np.ascontiguousarray(dy, dtype=self.dtype).reshape(-1, self.filters)
        dz = self._act_bwd(dy2, z, y) if self.activation != "linear" else dy2
        dz = np.ascontiguousarray(dz, dtype=self.dtype)
        w2 = self.kernel.value.reshape(-1, self.filters)
        if cols.size:
            self.kernel.grad = _native.gemm(cols, dz, transa=True).reshape(self.kernel.value.shape)
        else:
            self.kernel.grad = np.zeros_like(self.kernel.value)
        if self.bias is not None:
            self.bias.grad = dz.sum(axis=0)
        if not need_dx:
            return None
        dcols = _native.gemm(dz, w2, transb=True) if cols.size else \
            np.zeros((0, self.kernel_size * c), dtype=self.dtype)
        dwin = dcols.reshape(b, geo[2], self.kernel_size, c)
        return windows_backward(dwin, steps, self.strides, self.dilation_rate, geo)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": [self.kernel_size], "strides": [self.strides],
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": [self.dilation_rate], "groups": self.groups,
                "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "bias_initializer": serialize_initializer(self.bias_initializer)}


def padding_too_short(steps: int, size: int, stride: int, dilation: int, padding: str) -> bool:
    """Whether ``'valid'`` windows of this span do not fit in ``steps`` steps."""
    return padding == "valid" and steps < dilation * (size - 1) + 1
