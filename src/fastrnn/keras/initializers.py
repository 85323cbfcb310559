"""Weight initializers with Keras's names, arguments and defaults.

Every initializer is called as ``init(shape, dtype=None)`` and returns a NumPy array. Shapes
are in Keras's layout (a kernel is ``(fan_in, fan_out)``); recurrent layers convert to the
kernels' layout afterwards. Randomness comes from the generator seeded by
:func:`fastrnn.keras.models.set_random_seed`, or from ``seed`` when given.

Examples
--------
>>> from fastrnn.keras import initializers
>>> w = initializers.get("glorot_uniform")((64, 512))
>>> initializers.Orthogonal(seed=0)((128, 512)).shape
(128, 512)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backend import floatx, rng, standardize_float_dtype

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "deserialize",
    "get",
    "serialize",
]


def _dtype(dtype: Any) -> np.dtype:
    return np.dtype(standardize_float_dtype(dtype if dtype is not None else floatx()))


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise ValueError(f"shape must be a tuple of ints, got {shape!r}") from exc
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must have non-negative entries, got {shape}")
    return shape


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras's ``(fan_in, fan_out)`` of a weight shape."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: subclasses implement ``__call__(shape, dtype=None)`` and ``get_config``."""

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        """Return the constructor arguments as a JSON-compatible dict."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Initializer:
        """Rebuild an initializer from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        return np.zeros(_shape(shape), dtype=_dtype(dtype))


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        return np.ones(_shape(shape), dtype=_dtype(dtype))


class Constant(Initializer):
    """Every entry equal to ``value``."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        return np.full(_shape(shape), self.value, dtype=_dtype(dtype))

    def get_config(self) -> dict:
        return {"value": self.value}


class _Seeded(Initializer):
    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed

    def _rng(self) -> np.random.Generator:
        return rng(self.seed)


class RandomUniform(_Seeded):
    """Uniform on ``[minval, maxval)``; Keras's ``'uniform'`` (the Embedding default)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.minval = float(minval)
        self.maxval = float(maxval)

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        out = self._rng().uniform(self.minval, self.maxval, size=_shape(shape))
        return out.astype(_dtype(dtype))

    def get_config(self) -> dict:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class RandomNormal(_Seeded):
    """Normal with ``mean`` and ``stddev``."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean = float(mean)
        self.stddev = float(stddev)

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        out = self._rng().normal(self.mean, self.stddev, size=_shape(shape))
        return out.astype(_dtype(dtype))

    def get_config(self) -> dict:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


def _truncated_normal(g: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Normal(0, std) redrawn outside two standard deviations (as Keras does)."""
    out = g.normal(0.0, 1.0, size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = g.normal(0.0, 1.0, size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * std


class TruncatedNormal(_Seeded):
    """Normal with ``mean`` and ``stddev``, values beyond two ``stddev`` redrawn."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean = float(mean)
        self.stddev = float(stddev)

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        out = self.mean + _truncated_normal(self._rng(), _shape(shape), self.stddev)
        return out.astype(_dtype(dtype))

    def get_config(self) -> dict:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class VarianceScaling(_Seeded):
    """Scale / fan variance scaling: the family behind Glorot, He and LeCun.

    Parameters
    ----------
    scale : float
        Positive scaling factor.
    mode : {'fan_in', 'fan_out', 'fan_avg'}
    distribution : {'truncated_normal', 'untruncated_normal', 'uniform'}
    seed : int or None
    """

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None) -> None:
        super().__init__(seed)
        if scale <= 0.0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError("distribution must be 'uniform', 'truncated_normal' or "
                             f"'untruncated_normal', got {distribution!r}")
        self.scale = float(scale)
        self.mode = mode
        self.distribution = distribution

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        shape = _shape(shape)
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[
            self.mode]
        scale = self.scale / max(1.0, fan)
        g = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            out = g.uniform(-limit, limit, size=shape)
        elif self.distribution == "untruncated_normal":
            out = g.normal(0.0, math.sqrt(scale), size=shape)
        else:
            out = _truncated_normal(g, shape, math.sqrt(scale) / 0.87962566103423978)
        return out.astype(_dtype(dtype))

    def get_config(self) -> dict:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


class GlorotUniform(VarianceScaling):
    """Uniform on ``±sqrt(6 / (fan_in + fan_out))`` (Keras's default kernel initializer)."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_avg", "uniform", seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class GlorotNormal(VarianceScaling):
    """Truncated normal with ``stddev = sqrt(2 / (fan_in + fan_out))``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class HeUniform(VarianceScaling):
    """Uniform on ``±sqrt(6 / fan_in)``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(2.0, "fan_in", "uniform", seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class HeNormal(VarianceScaling):
    """Truncated normal with ``stddev = sqrt(2 / fan_in)``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(2.0, "fan_in", "truncated_normal", seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class LecunUniform(VarianceScaling):
    """Uniform on ``±sqrt(3 / fan_in)``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_in", "uniform", seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class LecunNormal(VarianceScaling):
    """Truncated normal with ``stddev = sqrt(1 / fan_in)``."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(1.0, "fan_in", "truncated_normal", seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class Orthogonal(_Seeded):
    """A (semi-)orthogonal matrix times ``gain`` (Keras's default recurrent initializer).

    For a shape ``(rows, cols)`` with ``rows < cols`` the rows are orthonormal, else the
    columns are, exactly as Keras builds it (QR of a normal matrix, signs fixed by ``diag(R)``).
    """

    def __init__(self, gain: float = 1.0, seed: int | None = None) -> None:
        super().__init__(seed)
        self.gain = float(gain)

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        shape = _shape(shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a shape of rank >= 2, got {shape}")
        rows = math.prod(shape[:-1])
        cols = shape[-1]
        a = self._rng().normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(_dtype(dtype))

    def get_config(self) -> dict:
        return {"gain": self.gain, "seed": self.seed}


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only)."""

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        shape = _shape(shape)
        if len(shape) != 2:
            raise ValueError(f"Identity needs a 2-D shape, got {shape}")
        return (self.gain * np.eye(*shape)).astype(_dtype(dtype))

    def get_config(self) -> dict:
        return {"gain": self.gain}


_ALIASES: dict[str, type[Initializer]] = {
    "zeros": Zeros, "zero": Zeros, "ones": Ones, "one": Ones, "constant": Constant,
    "uniform": RandomUniform, "random_uniform": RandomUniform,
    "normal": RandomNormal, "random_normal": RandomNormal,
    "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "orthogonal": Orthogonal, "identity": Identity,
}
_CLASSES: dict[str, type[Initializer]] = {
    c.__name__: c for c in (Zeros, Ones, Constant, RandomUniform, RandomNormal, TruncatedNormal,
                            VarianceScaling, GlorotUniform, GlorotNormal, HeUniform, HeNormal,
                            LecunUniform, LecunNormal, Orthogonal, Identity)
}


def serialize(initializer: Initializer) -> dict:
    """``{'class_name': ..., 'config': ...}`` for a built-in initializer."""
    if type(initializer).__name__ not in _CLASSES:
        raise ValueError(f"cannot serialize custom initializer {initializer!r}: only the "
                         f"built-in ones ({', '.join(sorted(_CLASSES))}) can be saved")
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}


def deserialize(config: dict) -> Initializer:
    """Inverse of :func:`serialize`."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"an initializer config must be a dict with 'class_name', got {config!r}")
    name = config["class_name"]
    cls = _CLASSES.get(name) or _ALIASES.get(str(name).lower())
    if cls is None:
        raise ValueError(f"unknown initializer {name!r}")
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier: Any) -> Initializer:
    """Resolve a string, a serialized dict or an initializer instance.

    Parameters
    ----------
    identifier : str, dict, Initializer or callable
        ``'glorot_uniform'``, ``'orthogonal'``, ``'zeros'``, ``'uniform'``, ... (Keras's
        names, case-insensitive; class names work too), a dict from :func:`serialize`, or an
        object with ``__call__(shape, dtype=None)``.

    Returns
    -------
    Initializer
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"unknown initializer {identifier!r}; expected one of "
                             f"{', '.join(sorted(_ALIASES))}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier  # type: ignore[return-value]
    raise ValueError(f"could not interpret initializer {identifier!r}")
