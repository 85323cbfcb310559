"""``to_categorical``: class indices as one-hot rows (Keras's semantics)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_categorical"]


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """One-hot encode integer class labels, as ``keras.utils.to_categorical``.

    Parameters
    ----------
    x : array-like of int
        Class indices in ``[0, num_classes)``; a trailing axis of size 1 is dropped.
    num_classes : int, optional
        Default ``max(x) + 1``.

    Returns
    -------
    ndarray of float
        ``x.shape + (num_classes,)``, float64 as Keras returns for NumPy input.
    """
    a = np.asarray(x)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError("to_categorical: x must hold integer class indices")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iub":
        raise TypeError(f"to_categorical: x must hold integer class indices, got dtype "
                        f"{a.dtype}")
    a = a.astype(np.int64)
    shape = a.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    a = a.reshape(-1)
    if num_classes is None:
        num_classes = int(a.max()) + 1 if a.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 0:
        raise ValueError(f"to_categorical: num_classes must be a non-negative int, got "
                         f"{num_classes!r}")
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(f"to_categorical: class indices must be in [0, {num_classes}), got "
                         f"values in [{a.min()}, {a.max()}]")
    out = np.zeros((a.size, int(num_classes)))
    out[np.arange(a.size), a] = 1.0
    return out.reshape(shape + (int(num_classes),))
