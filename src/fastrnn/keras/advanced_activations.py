"""Activation layers with a parameter: :class:`LeakyReLU`."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .base import Layer, check_float

__all__ = ["LeakyReLU"]


class LeakyReLU(Layer):
    """``x`` where ``x >= 0``, else ``negative_slope * x`` (Keras 3's ``layers.LeakyReLU``).

    Parameters
    ----------
    negative_slope : float
        Slope for negative inputs, >= 0 (default 0.3). Keras 2's name ``alpha`` is accepted
        with a warning, as Keras 3 does.
    """

    supports_masking = True

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.",
                          stacklevel=2)
        super().__init__(**kwargs)
        self.negative_slope = check_float("LeakyReLU", "negative_slope", negative_slope, 0.0)

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        pos = x >= 0
        y = np.where(pos, x, x * self.negative_slope).astype(x.dtype, copy=False)
        self._cache = pos if training else None
        return y, mask

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        pos = self._cache
        self._cache = None
        return np.where(pos, dy, dy * self.negative_slope).astype(dy.dtype, copy=False)

    def get_config(self) -> dict:
        return {**super().get_config(), "negative_slope": self.negative_slope}
