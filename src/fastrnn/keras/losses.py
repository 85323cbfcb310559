"""Loss functions with Keras's names, formulas, reductions and mask handling.

Each loss reduces over the last axis (per-sample loss, e.g. ``(batch,)`` or
``(batch, timesteps)`` for sequence outputs), then reduces with ``reduction``: the default
``'sum_over_batch_size'`` divides the (weighted) sum by the number of per-sample entries. A
padding mask on the model's output (from ``Embedding(mask_zero=True)`` or ``Masking``) makes it
the mean over valid steps, as in Keras 3.

Besides Keras's ``loss(y_true, y_pred)`` call, every loss has :meth:`Loss.value_and_grad`,
which the training loop uses: fastrnn computes gradients explicitly, so a custom loss is a
subclass of :class:`Loss` implementing :meth:`Loss.compute` (per-sample values and their
derivative).

Examples
--------
>>> import numpy as np
>>> from fastrnn.keras import losses
>>> losses.get("mse")(np.zeros((2, 3)), np.ones((2, 3)))
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import check_float

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Huber",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "categorical_crossentropy",
    "deserialize",
    "get",
    "huber",
    "mae",
    "mean_absolute_error",
    "mean_squared_error",
    "mse",
    "serialize",
    "sparse_categorical_crossentropy",
]

EPSILON = 1e-7  # Keras's backend.epsilon()

_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None)


def _float(a: Any, like: np.ndarray) -> np.ndarray:
    dt = like.dtype if like.dtype.kind == "f" else np.dtype(np.float32)
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"loss targets must be real numbers, got dtype {arr.dtype}")
    return arr.astype(dt, copy=False)


def squeeze_or_expand_to_same_rank(
    x1: np.ndarray, x2: np.ndarray, expand_rank_1: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Keras's rule: squeeze or expand a trailing axis of size 1 when ranks differ by one."""
    r1, r2 = x1.ndim, x2.ndim
    if r1 == r2:
        return x1, x2
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    if r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


class Loss:
    """Base class of losses.

    Subclasses implement :meth:`compute`, returning per-sample losses (``y_pred`` reduced over
    its last axis) and the derivative of each per-sample loss with respect to ``y_pred``.

    Parameters
    ----------
    name : str, optional
    reduction : {'sum_over_batch_size', 'mean', 'sum', 'none', None}
        How per-sample losses become one number (Keras's meanings).
    """

    default_name = "loss"

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.name = name or self.default_name
        self.reduction = reduction

    # -- to implement -------------------------------------------------------------------
    def compute(self, y_true: np.ndarray, y_pred: np.ndarray,
                need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-sample losses ``L`` and ``dL/dy_pred`` (shape of ``y_pred``; None if not needed).

        Parameters
        ----------
        y_true : ndarray
            Targets, as given by the user (not yet reshaped).
        y_pred : ndarray
            Model outputs, float.
        need_grad : bool
            Whether to compute the derivative.
        """
        raise NotImplementedError

    # -- Keras API ----------------------------------------------------------------------
    def call(self, y_true: Any, y_pred: Any) -> np.ndarray:
        """Per-sample losses (no reduction), as Keras's ``Loss.call``."""
        y_pred = np.asarray(y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float32)
        return self.compute(np.asarray(y_true), y_pred, False)[0]

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """The reduced loss (a float; an array for ``reduction='none'``)."""
        y_pred = np.asarray(y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float32)
        L, _ = self.compute(np.asarray(y_true), y_pred, False)
        w = _weights(L, sample_weight, None, self.reduction)
        if self.reduction in ("none", None):
            return L if w is None else L * w
        return _reduce(L, w, self.reduction)

    def value_and_grad(self, y_true: np.ndarray, y_pred: np.ndarray,
                       sample_weight: np.ndarray | None = None,
                       mask: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """The reduced loss and its gradient with respect to ``y_pred``.

        Parameters
        ----------
        y_true, y_pred : ndarray
        sample_weight : ndarray, optional
            Per-sample weights, shape ``(batch,)`` or the per-sample loss shape.
        mask : ndarray of bool, optional
            Output mask, shape of the per-sample losses (e.g. ``(batch, timesteps)``).

        Returns
        -------
        (float, ndarray)
            The loss and ``d loss / d y_pred`` (shape and dtype of ``y_pred``).
        """
        if self.reduction in ("none", None):
            raise ValueError(f"loss {self.name!r} has reduction={self.reduction!r}: training "
                             "needs a scalar loss ('sum_over_batch_size', 'mean' or 'sum')")
        L, dL = self.compute(y_true, y_pred, True)
        assert dL is not None
        w = _weights(L, sample_weight, mask, self.reduction)
        value = _reduce(L, w, self.reduction)
        scale = (1.0 / L.size if L.size else 0.0) if self.reduction != "sum" else 1.0
        if w is None:
            dL *= scale
        else:
            dL *= (w * scale).astype(dL.dtype, copy=False).reshape(
                w.shape + (1,) * (dL.ndim - w.ndim))
        return value, dL

    def get_config(self) -> dict:
        """Constructor arguments as a JSON-compatible dict."""
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: dict) -> Loss:
        """Rebuild from :meth:`get_config`."""
        return cls(**config)


def _weights(L: np.ndarray, sample_weight: Any, mask: Any, reduction: str | None
             ) -> np.ndarray | None:
    """Merge sample weights and the mask into one weight array of L's shape (Keras 3 rule)."""
    w = None
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != L.shape:
            raise ValueError(f"mask of shape {mask.shape} does not match the per-sample loss "
                             f"shape {L.shape}")
        if reduction in ("mean", "sum_over_batch_size"):
            valid = int(mask.sum())
            w = np.where(mask, (mask.size / valid) if valid else 0.0, 0.0)
        else:
            w = mask.astype(np.float64)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.ndim == L.ndim + 1 and sw.shape[-1] == 1:
            sw = sw[..., 0]
        if sw.shape != L.shape:
            if sw.ndim >= 1 and sw.shape == L.shape[: sw.ndim]:
                sw = sw.reshape(sw.shape + (1,) * (L.ndim - sw.ndim))
            else:
                raise ValueError(f"sample_weight of shape {sw.shape} does not match the "
                                 f"per-sample loss shape {L.shape}")
        w = sw if w is None else w * sw
        w = np.broadcast_to(w, L.shape)
    return w


def _reduce(L: np.ndarray, w: np.ndarray | None, reduction: str | None) -> float:
    total = float(np.sum(L, dtype=np.float64)) if w is None else float(
        np.sum(L * w, dtype=np.float64))
    if reduction == "sum":
        return total
    return total / L.size if L.size else 0.0


def _check_same_shape(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y has shape {y_true.shape} but the model's output has shape "
                         f"{y_pred.shape}; this loss needs them equal")


def _align(name: str, y_true: Any, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yt = _float(y_true, y_pred)
    yt2, yp2 = squeeze_or_expand_to_same_rank(yt, y_pred)
    if yt2.shape != yp2.shape:
        raise ValueError(f"{name}: y has shape {yt.shape} but the model's output has shape "
                         f"{y_pred.shape}; this loss needs them equal")
    return yt2, yp2


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)**2, axis=-1)``; string names ``'mse'``, ``'mean_squared_error'``."""

    default_name = "mean_squared_error"

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray,
                need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        yt, yp = _align(self.name, y_true, y_pred)
        d = yp - yt
        n = d.shape[-1] if d.ndim else 1
        L = np.mean(d * d, axis=-1) if d.ndim else d * d
        return L, ((2.0 / n) * d).reshape(y_pred.shape) if need_grad else None


class MeanAbsoluteError(Loss):
    """``mean(abs(y_pred - y_true), axis=-1)``; names ``'mae'``, ``'mean_absolute_error'``."""

    default_name = "mean_absolute_error"

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray,
                need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        yt, yp = _align(self.name, y_true, y_pred)
        d = yp - yt
        n = d.shape[-1] if d.ndim else 1
        L = np.mean(np.abs(d), axis=-1) if d.ndim else np.abs(d)
        return L, (np.sign(d) * (1.0 / n)).astype(yp.dtype).reshape(
            y_pred.shape) if need_grad else None


class Huber(Loss):
    """Huber loss with threshold ``delta`` (quadratic inside, linear outside); name ``'huber'``."""

    default_name = "huber_loss"

    def __init__(self, delta: float = 1.0, name: str | None = None,
                 reduction: str | None = "sum_over_batch_size") -> None:
        super().__init__(name, reduction)
        self.delta = check_float("Huber", "delta", delta, 0.0, lo_open=True)

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray,
                need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        yt, yp = _align(self.name, y_true, y_pred)
        d = yp - yt
        a = np.abs(d)
        dl = self.delta
        inside = a <= dl
        n = d.shape[-1] if d.ndim else 1
        per = np.where(inside, 0.5 * d * d, dl * a - 0.5 * dl * dl)
        L = np.mean(per, axis=-1) if d.ndim else per
        if not need_grad:
            return L, None
        g = np.where(inside, d, dl * np.sign(d)) * (1.0 / n)
        return L.astype(yp.dtype, copy=False), g.astype(yp.dtype).reshape(y_pred.shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "delta": self.delta}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


class _Crossentropy(Loss):
    """Shared part of the binary and categorical crossentropies: ``from_logits`` and
    ``label_smoothing`` (see theirs)."""

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0,
                 name: str | None = None, reduction: str | None = "sum_over_batch_size"):
        super().__init__(name, reduction)
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_float(type(self).__name__, "label_smoothing",
                                           label_smoothing, 0.0, 1.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class BinaryCrossentropy(_Crossentropy):
    """Binary cross-entropy, averaged over the last axis; name ``'binary_crossentropy'``.

    Parameters
    ----------
    from_logits : bool
        ``y_pred`` are logits (a sigmoid is applied inside, stably) instead of probabilities
        (clipped to ``[1e-7, 1 - 1e-7]`` as Keras does).
    label_smoothing : float
        Targets become ``y * (1 - s) + 0.5 * s``.
    """

    default_name = "binary_crossentropy"

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray,
                need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        yt, yp = _align(self.name, y_true, y_pred)
        if self.label_smoothing:
            yt = yt * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        n = yp.shape[-1] if yp.ndim else 1
        if self.from_logits:
            per = np.maximum(yp, 0) - yp * yt + np.log1p(np.exp(-np.abs(yp)))
            g = (_sigmoid(yp) - yt) * (1.0 / n) if need_grad else None
        else:
            p = np.clip(yp, EPSILON, 1.0 - EPSILON)
            per = -(yt * np.maximum(np.log(p), -100) + (1 - yt) * np.maximum(np.log1p(-p), -100))
            if need_grad:
                inside = (yp >= EPSILON) & (yp <= 1.0 - EPSILON)
                g = ((1 - yt) / (1 - p) - yt / p) * inside * (1.0 / n)
            else:
                g = None
        L = np.mean(per, axis=-1) if per.ndim else per
        if g is not None:
            g = g.astype(y_pred.dtype, copy=False).reshape(y_pred.shape)
        return L, g


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _cce_from_probs(yt_onehot_or_idx: np.ndarray, yp: np.ndarray, sparse: bool,
                    need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Keras's probability path: normalise, clip to [eps, 1-eps], -sum(y log q)."""
    s = yp.sum(axis=-1, keepdims=True)
    q = yp / s
    qc = np.clip(q, EPSILON, 1.0 - EPSILON)
    if sparse:
        idx = yt_onehot_or_idx[..., None]
        qsel = np.take_along_axis(qc, idx, axis=-1)[..., 0]
        L = -np.log(qsel)
        if not need_grad:
            return L, None
        qraw = np.take_along_axis(q, idx, axis=-1)[..., 0]
        gsel = np.where((qraw >= EPSILON) & (qraw <= 1.0 - EPSILON), -1.0 / qsel, 0.0)
        g = np.zeros_like(yp)
        np.put_along_axis(g, idx, gsel[..., None].astype(yp.dtype), axis=-1)
    else:
        yt = yt_onehot_or_idx
        L = -np.sum(yt * np.log(qc), axis=-1)
        if not need_grad:
            return L, None
        g = -yt / qc * ((q >= EPSILON) & (q <= 1.0 - EPSILON))
    g = (g - np.sum(g * q, axis=-1, keepdims=True)) / s
    return L, g.astype(yp.dtype, copy=False)


class CategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with one-hot (or soft) targets; name ``'categorical_crossentropy'``.

    Parameters
    ----------
    from_logits : bool
        ``y_pred`` are logits (log-softmax inside) instead of probabilities.
    label_smoothing : float
        Targets become ``y * (1 - s) + s / num_classes``.
    """

    default_name = "categorical_crossentropy"

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray,
                need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        yt = _float(y_true, y_pred)
        if y_pred.ndim < 1:
            raise ValueError(f"{self.name}: the model's output must have a class axis")
        _check_same_shape(self.name, yt, y_pred)
        if self.label_smoothing:
            yt = yt * (1.0 - self.label_smoothing) + self.label_smoothing / yt.shape[-1]
        if self.from_logits:
            logp = _log_softmax(y_pred)
            L = -np.sum(yt * logp, axis=-1)
            g = (np.exp(logp) * yt.sum(axis=-1, keepdims=True) - yt) if need_grad else None
            return L, g
        return _cce_from_probs(yt, y_pred, False, need_grad)


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer class targets; name ``'sparse_categorical_crossentropy'``.

    ``y_true`` has the model output's shape without its class axis (a trailing axis of size 1
    is allowed) and holds integers in ``[0, num_classes)``.

    Parameters
    ----------
    from_logits : bool
        ``y_pred`` are logits instead of probabilities.
    ignore_class : int, optional
        Targets equal to it contribute nothing (and are excluded from the mean).
    """

    default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 name: str | None = None, reduction: str | None = "sum_over_batch_size"):
        super().__init__(name, reduction)
        self.from_logits = bool(from_logits)
        if ignore_class is not None and (isinstance(ignore_class, bool)
                                         or not isinstance(ignore_class, (int, np.integer))):
            raise TypeError(f"SparseCategoricalCrossentropy: ignore_class must be an int or "
                            f"None, got {ignore_class!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def labels(self, y_true: Any, y_pred: np.ndarray) -> np.ndarray:
        """Validated integer labels of shape ``y_pred.shape[:-1]``."""
        yt = np.asarray(y_true)
        if yt.ndim == y_pred.ndim and yt.ndim > 0 and yt.shape[-1] == 1:
            yt = yt[..., 0]
        if y_pred.ndim < 1 or yt.shape != y_pred.shape[:-1]:
            raise ValueError(
                f"{self.name}: y must hold integer class ids of shape {y_pred.shape[:-1]} "
                f"(the model's output shape {y_pred.shape} without its class axis), got shape "
                f"{yt.shape}" + (" (one-hot targets need 'categorical_crossentropy')"
                                 if yt.shape == y_pred.shape else ""))
        if yt.dtype.kind == "f":
            if not np.all(np.isfinite(yt)) or np.any(yt != np.floor(yt)):
                raise ValueError(f"{self.name}: y must hold integer class ids")
        elif yt.dtype.kind not in "iub":
            raise ValueError(f"{self.name}: y must hold integer class ids, got dtype {yt.dtype}")
        yt = yt.astype(np.intp)
        n = y_pred.shape[-1]
        check = yt if self.ignore_class is None else yt[yt != self.ignore_class]
        if check.size and (check.min() < 0 or check.max() >= n):
            raise ValueError(f"{self.name}: class ids must be in [0, {n}), got values in "
                             f"[{check.min()}, {check.max()}]")
        return yt

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray,
                need_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
        yt = self.labels(y_true, y_pred)
        ignore = None
        if self.ignore_class is not None:
            ignore = yt == self.ignore_class
            yt = np.where(ignore, 0, yt)
        if self.from_logits:
            logp = _log_softmax(y_pred)
            L = -np.take_along_axis(logp, yt[..., None], axis=-1)[..., 0]
            if need_grad:
                g = np.exp(logp)
                np.put_along_axis(g, yt[..., None],
                                  np.take_along_axis(g, yt[..., None], axis=-1) - 1, axis=-1)
            else:
                g = None
        else:
            L, g = _cce_from_probs(yt, y_pred, True, need_grad)
        if ignore is not None:
            L = np.where(ignore, 0.0, L).astype(L.dtype, copy=False)
            if g is not None:
                g[ignore] = 0
        return L, g

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits,
                "ignore_class": self.ignore_class}


def mean_squared_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-sample mean squared error over the last axis."""
    return MeanSquaredError().call(y_true, y_pred)


def mean_absolute_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-sample mean absolute error over the last axis."""
    return MeanAbsoluteError().call(y_true, y_pred)


def huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> np.ndarray:
    """Per-sample Huber loss over the last axis."""
    return Huber(delta).call(y_true, y_pred)


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0) -> np.ndarray:
    """Per-sample binary cross-entropy (mean over the last axis)."""
    return BinaryCrossentropy(from_logits, label_smoothing).call(y_true, y_pred)


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0) -> np.ndarray:
    """Per-sample categorical cross-entropy."""
    return CategoricalCrossentropy(from_logits, label_smoothing).call(y_true, y_pred)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None) -> np.ndarray:
    """Per-sample sparse categorical cross-entropy."""
    return SparseCategoricalCrossentropy(from_logits, ignore_class).call(y_true, y_pred)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error

_FUNCTIONS = {
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
    huber: Huber, binary_crossentropy: BinaryCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
}
_NAMES: dict[str, type[Loss]] = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_CLASSES: dict[str, type[Loss]] = {
    c.__name__: c for c in (MeanSquaredError, MeanAbsoluteError, Huber, BinaryCrossentropy,
                            CategoricalCrossentropy, SparseCategoricalCrossentropy)
}


def get(identifier: Any) -> Loss:
    """Resolve a loss from a Keras name, a Keras loss function, a dict or a Loss instance.

    Parameters
    ----------
    identifier : str, callable, dict or Loss
        ``'mse'``, ``'mae'``, ``'huber'``, ``'binary_crossentropy'``,
        ``'categorical_crossentropy'``, ``'sparse_categorical_crossentropy'`` (and their long
        names / class names), one of this module's functions, or a :class:`Loss`.

    Returns
    -------
    Loss

    Raises
    ------
    ValueError
        For unknown names and for plain callables (there is no autodiff: subclass
        :class:`Loss` and implement :meth:`Loss.compute`).
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; expected one of "
                             f"{', '.join(sorted(_NAMES))}")
        obj = cls()
        obj.name = identifier if identifier in _NAMES else obj.name
        return obj
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier) and identifier in _FUNCTIONS:
        obj = _FUNCTIONS[identifier]()
        obj.name = identifier.__name__
        return obj
    if callable(identifier):
        raise ValueError(
            f"loss {identifier!r}: plain callables (and Keras loss objects) are not supported "
            "because fastrnn computes "
            "gradients explicitly; subclass fastrnn.keras.losses.Loss and implement "
            "compute(y_true, y_pred, need_grad) returning per-sample losses and their derivative")
    raise ValueError(f"could not interpret loss {identifier!r}")


def serialize(loss: Loss) -> dict:
    """``{'class_name': ..., 'config': ...}`` for a built-in loss."""
    if type(loss).__name__ not in _CLASSES:
        raise ValueError(f"cannot serialize custom loss {loss!r}: only built-in losses "
                         "can be saved with the model")
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config: dict) -> Loss:
    """Inverse of :func:`serialize`."""
    if not isinstance(config, dict) or config.get("class_name") not in _CLASSES:
        raise ValueError(f"unknown loss config {config!r}")
    return _CLASSES[config["class_name"]].from_config(dict(config.get("config") or {}))
