"""Metrics with Keras's names and meanings: streaming means over batches.

``'accuracy'`` (or ``'acc'``) given to ``compile`` is resolved the way Keras resolves it, from
the shapes of ``y`` and of the model's output: binary accuracy when the output has one unit,
sparse categorical accuracy when ``y`` holds class ids, else categorical accuracy. Metrics
respect the output's padding mask (mean over valid steps).

Examples
--------
>>> import numpy as np
>>> from fastrnn.keras import metrics
>>> m = metrics.SparseCategoricalAccuracy()
>>> m.update_state(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]))
>>> float(m.result())
0.5
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .losses import squeeze_or_expand_to_same_rank

__all__ = [
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "Mean",
    "MeanAbsoluteError",
    "MeanMetricWrapper",
    "MeanSquaredError",
    "Metric",
    "RootMeanSquaredError",
    "SparseCategoricalAccuracy",
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "get",
    "mae",
    "mean_absolute_error",
    "mean_squared_error",
    "mse",
    "sparse_categorical_accuracy",
]


class Metric:
    """Base class: ``update_state`` accumulates, ``result`` reads, ``reset_state`` clears.

    ``direction`` is ``'up'`` when larger is better (accuracies) and ``'down'`` otherwise; the
    monitoring callbacks use it in ``mode='auto'``.
    """

    direction = "down"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or _default_name(type(self))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate one batch."""
        raise NotImplementedError

    def result(self) -> float:
        """The current value."""
        raise NotImplementedError

    def reset_state(self) -> None:
        """Forget everything accumulated."""
        raise NotImplementedError

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"name": self.name}

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> float:
        """Stateless evaluation on one batch (as Keras's ``metric(y_true, y_pred)``)."""
        self.reset_state()
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()


def _default_name(cls: type) -> str:
    from .backend import to_snake_case

    return to_snake_case(cls.__name__)


class Mean(Metric):
    """Weighted mean of everything passed to ``update_state(values, sample_weight=None)``."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += float(values.size)
        else:
            w = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64), values.shape)
            self.total += float((values * w).sum())
            self.count += float(w.sum())

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0


class MeanMetricWrapper(Mean):
    """Mean over samples of ``fn(y_true, y_pred)`` (one value per sample or per step)."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 name: str | None = None, direction: str = "down", **kwargs: Any) -> None:
        super().__init__(name or getattr(fn, "__name__", "mean_metric_wrapper"))
        self._fn = fn
        self._fn_kwargs = kwargs
        self.direction = direction

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None,  # type: ignore[override]
                     mask: Any = None) -> None:
        values = np.asarray(self._fn(np.asarray(y_true), np.asarray(y_pred), **self._fn_kwargs))
        w = None
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape == values.shape:
                w = mask.astype(np.float64)
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=np.float64)
            if sw.ndim == values.ndim + 1 and sw.shape[-1] == 1:
                sw = sw[..., 0]
            sw = sw.reshape(sw.shape + (1,) * (values.ndim - sw.ndim))
            w = sw if w is None else w * sw
        super().update_state(values, w)


def _to_labels(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if y_true.ndim == y_pred.ndim and y_true.ndim > 0 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    return y_true, np.argmax(y_pred, axis=-1)


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> np.ndarray:
    """``y_true == (y_pred > threshold)`` averaged over the last axis (Keras 3 semantics)."""
    yt, yp = squeeze_or_expand_to_same_rank(np.asarray(y_true), np.asarray(y_pred))
    if yt.shape != yp.shape:
        raise ValueError(f"binary_accuracy: y has shape {np.shape(y_true)} but the model's output "
                         f"has shape {np.shape(y_pred)}")
    m = (yt.astype(np.float64) == (yp > threshold)).astype(np.float64)
    return m.mean(axis=-1) if m.ndim > 1 else m


def categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """``argmax(y_true) == argmax(y_pred)`` per sample (one-hot targets)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.shape != yp.shape:
        raise ValueError(f"categorical_accuracy: y has shape {yt.shape} but the model's output has "
                         f"shape {yp.shape}; one-hot targets must match it")
    return (np.argmax(yt, axis=-1) == np.argmax(yp, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """``y_true == argmax(y_pred)`` per sample (integer class targets)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    yt, pred = _to_labels(yt, yp)
    if yt.shape != pred.shape:
        raise ValueError(f"sparse_categorical_accuracy: y has shape {np.shape(y_true)} but the "
                         f"model's output has shape {yp.shape}; class ids need shape "
                         f"{yp.shape[:-1]}")
    return (yt.astype(np.float64) == pred).astype(np.float64)


def accuracy(y_true: Any, y_pred: Any) -> np.ndarray:
    """Exact equality ``y_true == y_pred`` (Keras's ``keras.metrics.Accuracy``)."""
    yt, yp = squeeze_or_expand_to_same_rank(np.asarray(y_true), np.asarray(y_pred))
    return (yt == yp).astype(np.float64)


def mean_squared_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-sample mean squared error over the last axis."""
    from .losses import mean_squared_error as f

    return f(y_true, y_pred)


def mean_absolute_error(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-sample mean absolute error over the last axis."""
    from .losses import mean_absolute_error as f

    return f(y_true, y_pred)


mse = mean_squared_error
mae = mean_absolute_error


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly."""

    def __init__(self, name: str = "accuracy") -> None:
        super().__init__(accuracy, name, "up")


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches binary labels."""

    def __init__(self, name: str = "binary_accuracy", threshold: float = 0.5) -> None:
        super().__init__(binary_accuracy, name, "up", threshold=threshold)
        self.threshold = threshold

    def get_config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred)`` matches one-hot labels."""

    def __init__(self, name: str = "categorical_accuracy") -> None:
        super().__init__(categorical_accuracy, name, "up")


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often ``argmax(y_pred)`` matches integer labels."""

    def __init__(self, name: str = "sparse_categorical_accuracy") -> None:
        super().__init__(sparse_categorical_accuracy, name, "up")


class MeanSquaredError(MeanMetricWrapper):
    """Mean squared error."""

    def __init__(self, name: str = "mean_squared_error") -> None:
        super().__init__(mean_squared_error, name)


class MeanAbsoluteError(MeanMetricWrapper):
    """Mean absolute error."""

    def __init__(self, name: str = "mean_absolute_error") -> None:
        super().__init__(mean_absolute_error, name)


class RootMeanSquaredError(MeanMetricWrapper):
    """Square root of the mean squared error (over everything seen)."""

    def __init__(self, name: str = "root_mean_squared_error") -> None:
        super().__init__(lambda yt, yp: (np.asarray(yp) - _aligned(yt, yp)) ** 2, name)

    def result(self) -> float:
        return float(np.sqrt(super().result()))


def _aligned(yt: Any, yp: Any) -> np.ndarray:
    a, b = squeeze_or_expand_to_same_rank(np.asarray(yt, dtype=np.float64), np.asarray(yp))
    return a.reshape(np.shape(yp))


_NAMES: dict[str, Callable[[], Metric]] = {
    "mse": lambda: MeanSquaredError("mse"),
    "mean_squared_error": MeanSquaredError,
    "mae": lambda: MeanAbsoluteError("mae"),
    "mean_absolute_error": MeanAbsoluteError,
    "rmse": lambda: RootMeanSquaredError("rmse"),
    "root_mean_squared_error": RootMeanSquaredError,
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
}
_CLASSES: dict[str, type[Metric]] = {
    c.__name__: c for c in (Accuracy, BinaryAccuracy, CategoricalAccuracy,
                            SparseCategoricalAccuracy, MeanSquaredError, MeanAbsoluteError,
                            RootMeanSquaredError)
}
_FUNCTIONS = {
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
    binary_accuracy: BinaryAccuracy, categorical_accuracy: CategoricalAccuracy,
    sparse_categorical_accuracy: SparseCategoricalAccuracy, accuracy: Accuracy,
}


def is_binary_or_sparse_categorical(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[bool, bool]:
    """Keras's shape rule behind ``'accuracy'`` and ``'crossentropy'``."""
    yt_rank, yp_rank = np.ndim(y_true), np.ndim(y_pred)
    yt_last = np.shape(y_true)[-1] if yt_rank else 1
    yp_last = np.shape(y_pred)[-1] if yp_rank else 1
    is_binary = yp_last == 1
    is_sparse = yt_rank < yp_rank or (yt_last == 1 and yp_last > 1)
    return is_binary, is_sparse


def get(identifier: Any, y_true: Any = None, y_pred: Any = None) -> Metric:
    """Resolve a metric from a Keras name, function, class name or instance.

    Parameters
    ----------
    identifier : str, callable or Metric
        ``'accuracy'``/``'acc'`` (resolved from the shapes of ``y_true`` and ``y_pred``, which
        must then be given), ``'binary_accuracy'``, ``'categorical_accuracy'``,
        ``'sparse_categorical_accuracy'``, ``'mae'``, ``'mse'``, ``'rmse'`` and long names,
        a function of this module, any callable ``f(y_true, y_pred) -> per-sample values``,
        or a :class:`Metric`.
    y_true, y_pred : array-like, optional
        A batch of targets and outputs, needed to resolve ``'accuracy'``.

    Returns
    -------
    Metric
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            if y_true is None or y_pred is None:
                raise ValueError("'accuracy' is resolved from the shapes of y and of the model's "
                                 "output; pass y_true and y_pred")
            is_binary, is_sparse = is_binary_or_sparse_categorical(y_true, y_pred)
            if is_binary:
                return BinaryAccuracy(name=identifier)
            if is_sparse:
                return SparseCategoricalAccuracy(name=identifier)
            return CategoricalAccuracy(name=identifier)
        if key in _NAMES:
            m = _NAMES[key]()
            m.name = identifier
            return m
        if identifier in _CLASSES:
            return _CLASSES[identifier]()
        raise ValueError(f"unknown metric {identifier!r}; expected 'accuracy', 'acc' or one of "
                         f"{', '.join(sorted(_NAMES))}")
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        if identifier in _FUNCTIONS:
            m = _FUNCTIONS[identifier]()
            m.name = identifier.__name__
            return m
        return MeanMetricWrapper(identifier)
    raise ValueError(f"could not interpret metric {identifier!r}")
