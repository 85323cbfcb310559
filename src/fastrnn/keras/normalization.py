"""Normalization layers: :class:`BatchNormalization` and :class:`LayerNormalization`.

Both normalise ``x`` by a mean and variance over some axes, ``(x - mean) / sqrt(var + eps)``,
then scale by ``gamma`` and shift by ``beta`` (Keras 3's maths, weight names and order); one
pair of functions (:func:`moments_forward`/:func:`moments_backward`) serves both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer, Variable, check_float, serialize_initializer

__all__ = ["BatchNormalization", "LayerNormalization", "moments_backward", "moments_forward"]

# Keras's backend.epsilon(): added to the weight sum of masked moments
_MASK_EPS = 1e-7


def moments_forward(x: np.ndarray, axes: tuple[int, ...], eps: float,
                    w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Centre and normalise ``x`` over ``axes``.

    Parameters
    ----------
    x : ndarray
    axes : tuple of int
        The reduction axes.
    eps : float
        Added to the variance.
    w : ndarray, optional
        0/1 weights broadcastable to ``x`` (Keras's masked moments: divided by
        ``sum(w) + 1e-7``).

    Returns
    -------
    mean, var : ndarray
        Kept-dims statistics.
    xhat : ndarray
        The normalised input.
    ctx : tuple
        What :func:`moments_backward` needs.
    """
    if w is None:
        mean = x.mean(axis=axes, keepdims=True)
        xc = x - mean
        var = np.mean(xc * xc, axis=axes, keepdims=True)
        ne = None
    else:
        ne = np.sum(np.broadcast_to(w, x.shape), axis=axes, keepdims=True) + _MASK_EPS
        mean = np.sum(w * x, axis=axes, keepdims=True) / ne
        xc = x - mean
        d = w * xc
        var = np.sum(d * d, axis=axes, keepdims=True) / ne
    inv = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv
    return mean, var, xhat, (xc, inv, axes, w, ne)


def moments_backward(dxhat: np.ndarray, ctx: Any) -> np.ndarray:
    """Input gradient of :func:`moments_forward`'s ``xhat`` (the statistics differentiated)."""
    xc, inv, axes, w, ne = ctx
    n = np.prod([xc.shape[a] for a in axes]) if w is None else None
    dxc = dxhat * inv
    dvar = np.sum(dxhat * xc, axis=axes, keepdims=True) * (-0.5) * inv ** 3
    if w is None:
        dx = dxc + dvar * 2.0 * xc / n
        dmean = -np.sum(dx, axis=axes, keepdims=True)
        return dx + dmean / n
    dd = dvar * 2.0 * w * xc / ne
    dx = dxc + w * dd
    dmean = -np.sum(dxc, axis=axes, keepdims=True) - np.sum(w * dd, axis=axes, keepdims=True)
    return dx + dmean * w / ne


def _param_axes(owner: Layer, axis: Any, rank: int) -> tuple[int, ...]:
    """``axis`` (int or list) as sorted non-negative non-batch axes of a rank-``rank`` input."""
    axes = [axis] if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) else axis
    try:
        out = sorted({int(a) + rank if int(a) < 0 else int(a) for a in axes})
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{type(owner).__name__}: axis must be an int or a list of ints, got "
                        f"{axis!r}") from exc
    if not out or any(not 1 <= a < rank for a in out):
        raise ValueError(f"layer {owner.name!r} ({type(owner).__name__}): axis={axis!r} is not "
                         f"a non-batch axis of inputs of rank {rank}")
    return tuple(out)


def _check_axis_arg(cls: str, axis: Any) -> Any:
    if isinstance(axis, (list, tuple)):
        if not axis or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                               for a in axis):
            raise TypeError(f"{cls}: axis must be an int or a list of ints, got {axis!r}")
        return [int(a) for a in axis]
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{cls}: axis must be an int or a list of ints, got {axis!r}")
    return int(axis)


_UNSUPPORTED = ("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint")


class _Normalization(Layer):
    """Shared parts: the ``axis``, ``epsilon``, ``center``, ``scale`` arguments and weights."""

    supports_masking = True

    def __init__(self, axis: Any, epsilon: float, center: bool, scale: bool,
                 beta_initializer: Any, gamma_initializer: Any, **kwargs: Any) -> None:
        cls = type(self).__name__
        for k in _UNSUPPORTED:
            if kwargs.pop(k, None) is not None:
                raise NotImplementedError(f"{cls}: {k} is not supported")
        super().__init__(**kwargs)
        self.axis = _check_axis_arg(cls, axis)
        self.epsilon = check_float(cls, "epsilon", epsilon, 0.0, lo_open=True)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) < 2:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects an input of "
                             f"rank >= 2 (batch, ..., features), got shape {tuple(shape)}")
        axes = _param_axes(self, self.axis, len(shape))
        if any(shape[a] is None for a in axes):
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) needs known sizes on "
                             f"axis {self.axis}, got input shape {tuple(shape)}")
        if self.built and tuple(shape[a] for a in axes) != self._pshape:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) was built for "
                             f"size {self._pshape} on axis {self.axis}, got input shape "
                             f"{tuple(shape)}")

    def _build_params(self, input_shape: tuple) -> None:
        rank = len(input_shape)
        self._axes = _param_axes(self, self.axis, rank)
        self._pshape = tuple(int(input_shape[a]) for a in self._axes)
        self.gamma: Variable | None = (self.add_weight("gamma", self._pshape,
                                                       self.gamma_initializer)
                                       if self.scale else None)
        self.beta: Variable | None = (self.add_weight("beta", self._pshape,
                                                      self.beta_initializer)
                                      if self.center else None)

    def _bshape(self, rank: int) -> tuple[int, ...]:
        """Broadcast shape of a parameter for an input of ``rank``."""
        out = [1] * rank
        for a in self._axes:
            out[a] = self._pshape[self._axes.index(a)]
        return tuple(out)

    def _affine(self, xhat: np.ndarray) -> np.ndarray:
        bs = self._bshape(xhat.ndim)
        y = xhat if self.gamma is None else xhat * self.gamma.value.reshape(bs)
        if self.beta is not None:
            y = y + self.beta.value.reshape(bs)
        return y.astype(self.dtype, copy=False)

    def _affine_backward(self, dy: np.ndarray, xhat: np.ndarray) -> np.ndarray:
        """Set gamma's and beta's gradients; return the gradient of ``xhat``."""
        rank = dy.ndim
        red = tuple(a for a in range(rank) if a not in self._axes)
        if self.beta is not None:
            self.beta.grad = dy.sum(axis=red).reshape(self._pshape)
        if self.gamma is None:
            return dy
        self.gamma.grad = (dy * xhat).sum(axis=red).reshape(self._pshape)
        return dy * self.gamma.value.reshape(self._bshape(rank))

    def _base_config(self) -> dict:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": serialize_initializer(self.beta_initializer),
                "gamma_initializer": serialize_initializer(self.gamma_initializer)}


class BatchNormalization(_Normalization):
    """Normalise each feature over the batch (and time) axes, Keras 3's ``BatchNormalization``.

    In training (``fit``, or a call with ``training=True`` on a trainable layer) the batch's
    mean and variance normalise the input and update the moving statistics::

        moving_mean = moving_mean * momentum + mean * (1 - momentum)

    In inference (``predict``, ``evaluate``) the moving statistics are used. A frozen layer
    (``trainable=False``) always runs in inference mode, as in Keras 3. With a mask
    ``(batch, timesteps)`` the training statistics are over the valid steps only.

    Parameters
    ----------
    axis : int or list of int
        The feature axis (default -1): one ``gamma``/``beta``/moving statistic per entry.
    momentum : float
        Default 0.99.
    epsilon : float
        Default 1e-3.
    center, scale : bool
        Whether to learn ``beta`` / ``gamma``.
    beta_initializer, gamma_initializer : str or Initializer
    moving_mean_initializer, moving_variance_initializer : str or Initializer

    Notes
    -----
    Weights, in Keras's order: ``gamma``, ``beta`` (trainable), ``moving_mean``,
    ``moving_variance`` (not trainable).
    """

    def __init__(self, axis: Any = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", synchronized: bool = False,
                 renorm: bool = False, **kwargs: Any) -> None:
        if renorm:
            raise NotImplementedError("BatchNormalization: renorm=True is not supported")
        kwargs.pop("renorm_clipping", None)
        kwargs.pop("renorm_momentum", None)
        kwargs.pop("fused", None)
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)
        self.momentum = check_float("BatchNormalization", "momentum", momentum, 0.0, 1.0)
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer
        self.synchronized = bool(synchronized)

    def build(self, input_shape: tuple) -> None:
        self._build_params(input_shape)
        self.moving_mean = self.add_weight("moving_mean", self._pshape,
                                           self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", self._pshape,
                                               self.moving_variance_initializer,
                                               trainable=False)
        self.built = True

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        rank = x.ndim
        red = tuple(a for a in range(rank) if a not in self._axes)
        bs = self._bshape(rank)
        if training and self.trainable:
            w = None
            if mask is not None:
                if mask.shape != x.shape[:-1]:
                    raise ValueError(f"layer {self.name!r} (BatchNormalization): the mask must "
                                     f"have shape {x.shape[:-1]}, got {mask.shape}")
                w = mask[..., None].astype(x.dtype)
            mean, var, xhat, ctx = moments_forward(x, red, self.epsilon, w)
            m = self.momentum
            self.moving_mean.value[...] = (self.moving_mean.value * m
                                           + mean.reshape(self._pshape) * (1.0 - m))
            self.moving_variance.value[...] = (self.moving_variance.value * m
                                               + var.reshape(self._pshape) * (1.0 - m))
            self._cache = (xhat, ctx)
        else:
            inv = 1.0 / np.sqrt(self.moving_variance.value.reshape(bs) + self.epsilon)
            xhat = (x - self.moving_mean.value.reshape(bs)) * inv
            self._cache = (xhat, inv) if training else None
        return self._affine(xhat), mask

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        xhat, ctx = self._cache
        self._cache = None
        dxhat = self._affine_backward(dy, xhat)
        if isinstance(ctx, tuple):
            return moments_backward(dxhat, ctx).astype(self.dtype, copy=False)
        return (dxhat * ctx).astype(self.dtype, copy=False)

    def get_config(self) -> dict:
        return {**self._base_config(), "momentum": self.momentum,
                "moving_mean_initializer": serialize_initializer(self.moving_mean_initializer),
                "moving_variance_initializer":
                    serialize_initializer(self.moving_variance_initializer),
                "synchronized": self.synchronized}


class LayerNormalization(_Normalization):
    """Normalise each sample over its feature axis, Keras 3's ``LayerNormalization``.

    Parameters
    ----------
    axis : int or list of int
        Axes to normalise over (default -1); ``gamma``/``beta`` have their sizes.
    epsilon : float
        Default 1e-3.
    center, scale : bool
    beta_initializer, gamma_initializer : str or Initializer
    rms_scaling : bool
        Scale by the root mean square only (no centring, no ``beta``), as Keras.

    Notes
    -----
    Weights, in Keras's order: ``gamma``, ``beta``. Masks pass through unchanged.
    """

    def __init__(self, axis: Any = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, rms_scaling: bool = False,
                 beta_initializer: Any = "zeros", gamma_initializer: Any = "ones",
                 **kwargs: Any) -> None:
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         **kwargs)
        self.rms_scaling = bool(rms_scaling)
        if self.rms_scaling:
            raise NotImplementedError("LayerNormalization: rms_scaling=True is not supported")

    def build(self, input_shape: tuple) -> None:
        self._build_params(input_shape)
        self.built = True

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        _, _, xhat, ctx = moments_forward(x, self._axes, self.epsilon)
        self._cache = (xhat, ctx) if training else None
        return self._affine(xhat), mask

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        xhat, ctx = self._cache
        self._cache = None
        dxhat = self._affine_backward(dy, xhat)
        return moments_backward(dxhat, ctx).astype(self.dtype, copy=False)

    def get_config(self) -> dict:
        return {**self._base_config(), "rms_scaling": self.rms_scaling}
