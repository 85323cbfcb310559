"""Activation functions with their derivatives (Keras's names), for Dense and Activation.

Each entry maps a name to ``(forward(x) -> y, backward(dy, x, y) -> dx)``; backward gets both
the input and the output so each derivative uses whichever is cheaper.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Forward = Callable[[np.ndarray], np.ndarray]
Backward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow warnings for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def _softmax_bwd(dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


def _swish_bwd(dy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    s = _sigmoid(x)
    return dy * (s + y * (1 - s))


ACTIVATIONS: dict[str, tuple[Forward, Backward]] = {
    "linear": (lambda x: x, lambda dy, x, y: dy),
    "relu": (lambda x: np.maximum(x, 0), lambda dy, x, y: dy * (x > 0)),
    "relu6": (lambda x: np.clip(x, 0, 6), lambda dy, x, y: dy * ((x > 0) & (x < 6))),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.2 * x).astype(x.dtype, copy=False),
                   lambda dy, x, y: dy * np.where(x > 0, 1.0, 0.2).astype(x.dtype)),
    "sigmoid": (_sigmoid, lambda dy, x, y: dy * y * (1 - y)),
    "hard_sigmoid": (lambda x: np.clip(x / 6.0 + 0.5, 0, 1).astype(x.dtype, copy=False),
                     lambda dy, x, y: dy * (((x > -3) & (x < 3)) / 6.0).astype(x.dtype)),
    "tanh": (np.tanh, lambda dy, x, y: dy * (1 - y * y)),
    "softmax": (_softmax, _softmax_bwd),
    "softplus": (lambda x: np.logaddexp(x, 0).astype(x.dtype, copy=False),
                 lambda dy, x, y: dy * _sigmoid(x)),
    "softsign": (lambda x: x / (1 + np.abs(x)), lambda dy, x, y: dy / (1 + np.abs(x)) ** 2),
    "elu": (_elu, lambda dy, x, y: dy * np.where(x > 0, 1, y + 1).astype(x.dtype)),
    "selu": (lambda x: _SELU_SCALE * _elu(x, _SELU_ALPHA),
             lambda dy, x, y: dy * np.where(x > 0, _SELU_SCALE, y + _SELU_SCALE * _SELU_ALPHA)
             .astype(x.dtype)),
    "exponential": (np.exp, lambda dy, x, y: dy * y),
    "swish": (lambda x: x * _sigmoid(x), _swish_bwd),
}
ACTIVATIONS["silu"] = ACTIVATIONS["swish"]


def resolve(name: object, argname: str = "activation") -> str:
    """Canonical activation name (``None`` means ``'linear'``), or a clear ValueError."""
    if name is None:
        return "linear"
    if callable(name):
        fname = getattr(name, "__name__", None)
        if isinstance(fname, str) and fname.lower() in ACTIVATIONS:
            return fname.lower()
        raise ValueError(f"{argname}: custom activation callables are not supported (fastrnn "
                         "computes gradients explicitly); use one of "
                         f"{', '.join(sorted(ACTIVATIONS))}")
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(f"unknown {argname} {name!r}; expected one of "
                         f"{', '.join(sorted(ACTIVATIONS))}")
    return name.lower()


def get(name: str) -> tuple[Forward, Backward]:
    """``(forward, backward)`` for a canonical name."""
    return ACTIVATIONS[name]
