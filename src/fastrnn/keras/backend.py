"""Shared state of the Keras-compatible API: default float type, random generator, names.

Public entry points are re-exported from :mod:`fastrnn.keras.models` (``floatx``, ``set_floatx``,
``set_random_seed``).
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

_FLOATX = "float32"
_RNG = np.random.default_rng()
_NAME_COUNTS: defaultdict[str, int] = defaultdict(int)

_FLOAT_TYPES = ("float32", "float64")


def floatx() -> str:
    """Return the default float type of new layers and models: ``'float32'`` or ``'float64'``."""
    return _FLOATX


def set_floatx(value: str) -> None:
    """Set the default float type of layers created from now on.

    Parameters
    ----------
    value : {'float32', 'float64'}
        ``'float32'`` is Keras's default and the fast path; ``'float64'`` is there for exact
        gradient checks.
    """
    global _FLOATX
    _FLOATX = standardize_float_dtype(value, "value")


def standardize_float_dtype(value: object, argname: str = "dtype") -> str:
    """Return ``'float32'`` or ``'float64'`` for a dtype-like value, else raise ValueError."""
    try:
        name = np.dtype(value).name  # type: ignore[arg-type]
    except TypeError as exc:
        raise ValueError(f"{argname} must be 'float32' or 'float64', got {value!r}") from exc
    if name not in _FLOAT_TYPES:
        raise ValueError(f"{argname} must be 'float32' or 'float64', got {value!r}")
    return name


def set_random_seed(seed: int) -> None:
    """Seed the generator behind weight initialisation, dropout and shuffling.

    Parameters
    ----------
    seed : int
        Any non-negative integer. Two runs with the same seed and the same thread count
        give the same weights and the same training trajectory.
    """
    global _RNG
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _RNG = np.random.default_rng(int(seed))


def rng(seed: int | None = None) -> np.random.Generator:
    """The global generator, or a fresh one for an explicit ``seed``."""
    if seed is not None:
        return np.random.default_rng(int(seed))
    return _RNG


def to_snake_case(name: str) -> str:
    """``'SimpleRNN'`` -> ``'simple_rnn'``, ``'LSTM'`` -> ``'lstm'`` (Keras's naming)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    return s


def unique_name(base: str) -> str:
    """Keras-style unique object names: ``lstm``, ``lstm_1``, ``lstm_2``, ..."""
    n = _NAME_COUNTS[base]
    _NAME_COUNTS[base] += 1
    return base if n == 0 else f"{base}_{n}"
