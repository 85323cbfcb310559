"""Dropout of whole channels: :class:`SpatialDropout1D`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import rng
from .base import Layer, check_float

__all__ = ["SpatialDropout1D"]


class SpatialDropout1D(Layer):
    """Drop whole channels of a ``(batch, steps, channels)`` input in training (one draw per
    sample and channel, shared by all steps), scaling the rest by ``1 / (1 - rate)``; identity
    at inference. Keras 3's ``layers.SpatialDropout1D``.

    Parameters
    ----------
    rate : float
        In ``[0, 1)``.
    seed : int, optional
    """

    supports_masking = True

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = check_float("SpatialDropout1D", "rate", rate, 0.0, 1.0, hi_open=True)
        self.seed = seed
        self._rng = rng(seed) if seed is not None else None

    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (3,), "(batch, steps, channels)")

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        if not training or self.rate == 0.0:
            self._cache = None
            return x, mask
        g = self._rng if self._rng is not None else rng()
        keep = (g.random((x.shape[0], 1, x.shape[2])) >= self.rate).astype(x.dtype)
        keep *= 1.0 / (1.0 - self.rate)
        self._cache = keep
        return x * keep, mask

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        keep = self._cache
        self._cache = None
        return dy if keep is None else dy * keep

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
