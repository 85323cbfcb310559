"""Dropout: :class:`Dropout` (with an optional noise shape) and :class:`SpatialDropout1D`
(whole channels), which shares its mask and backward."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import rng
from .base import Layer, check_float, normalize_shape

__all__ = ["SpatialDropout1D"]  # Dropout is documented in fastrnn.keras.layers


class Dropout(Layer):
    """Zero a fraction ``rate`` of the inputs during training, scaling the rest by
    ``1 / (1 - rate)``; identity at inference.

    Parameters
    ----------
    rate : float
        In ``[0, 1)``.
    noise_shape : tuple, optional
        Shape of the dropout mask, broadcast over the input (None entries take the input's).
    seed : int, optional
    """

    supports_masking = True
    _what = "Dropout"  # the name in error messages

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = check_float(self._what, "rate", rate, 0.0, 1.0, hi_open=True)
        self.noise_shape = None if noise_shape is None else normalize_shape(noise_shape,
                                                                            "noise_shape")
        self.seed = seed
        self._rng = rng(seed) if seed is not None else None

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        if not training or self.rate == 0.0:
            self._cache = None
            return x, mask
        g = self._rng if self._rng is not None else rng()
        keep = (g.random(self._mask_shape(x)) >= self.rate).astype(x.dtype)
        keep *= 1.0 / (1.0 - self.rate)
        self._cache = keep
        return x * keep, mask

    def _mask_shape(self, x: np.ndarray) -> tuple:
        """Shape of the keep mask drawn for ``x`` (broadcast over it)."""
        if self.noise_shape is None:
            return x.shape
        if len(self.noise_shape) != x.ndim:
            raise ValueError(f"Dropout: noise_shape {self.noise_shape} does not match the "
                             f"input rank {x.ndim}")
        return tuple(s if n is None else n
                     for s, n in zip(x.shape, self.noise_shape, strict=True))

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        keep = self._cache
        self._cache = None
        return dy if keep is None else dy * keep

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
                "seed": self.seed}


class SpatialDropout1D(Dropout):
    """Drop whole channels of a ``(batch, steps, channels)`` input in training (one draw per
    sample and channel, shared by all steps), scaling the rest by ``1 / (1 - rate)``; identity
    at inference. Keras 3's ``layers.SpatialDropout1D``.

    Parameters
    ----------
    rate : float
        In ``[0, 1)``.
    seed : int, optional
    """

    _what = "SpatialDropout1D"

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(rate, None, seed, **kwargs)

    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (3,), "(batch, steps, channels)")

    def _mask_shape(self, x: np.ndarray) -> tuple:
        return (x.shape[0], 1, x.shape[2])

    def get_config(self) -> dict:
        cfg = super().get_config()
        del cfg["noise_shape"]  # Keras's SpatialDropout1D config has rate and seed only
        return cfg
