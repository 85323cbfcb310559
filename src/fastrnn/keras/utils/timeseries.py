"""``timeseries_dataset_from_array``: sliding windows over a series as a :class:`PyDataset`
(Keras's function returns a ``tf.data.Dataset``; this one needs no TensorFlow)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .py_dataset import PyDataset

__all__ = ["TimeseriesDataset", "timeseries_dataset_from_array"]


def _pos_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"timeseries_dataset_from_array: {name} must be a positive int, got "
                         f"{v!r}")
    return int(v)


class TimeseriesDataset(PyDataset):
    """Batches of windows ``data[start + p + arange(sequence_length) * sampling_rate]`` (and
    ``targets[start + p]``), what :func:`timeseries_dataset_from_array` returns.

    Attributes
    ----------
    start_positions : ndarray
        Start of each window, relative to ``start_index``, in serving order.
    """

    def __init__(self, data: np.ndarray, targets: np.ndarray | None, indices: np.ndarray,
                 target_indices: np.ndarray, batch_size: int | None) -> None:
        super().__init__()
        self.data, self.targets = data, targets
        self._indices, self._tindices = indices, target_indices
        self.batch_size = batch_size

    def __len__(self) -> int:
        n = len(self._indices)
        return n if self.batch_size is None else -(-n // self.batch_size)

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not -len(self) <= index < len(self):
            raise IndexError(f"batch index {index!r} out of range for {len(self)} batches")
        index = int(index) % len(self)
        if self.batch_size is None:  # unbatched, as Keras with batch_size=None
            sl: Any = index
        else:
            sl = slice(index * self.batch_size, (index + 1) * self.batch_size)
        x = self.data[self._indices[sl]]
        if self.targets is None:
            return x
        return x, self.targets[self._tindices[sl]]

    def __iter__(self) -> Any:
        for i in range(len(self)):
            yield self[i]


def timeseries_dataset_from_array(data: Any, targets: Any, sequence_length: int,
                                  sequence_stride: int = 1, sampling_rate: int = 1,
                                  batch_size: int | None = 128, shuffle: bool = False,
                                  seed: int | None = None, start_index: int | None = None,
                                  end_index: int | None = None) -> TimeseriesDataset:
    """Sliding windows over a time series, as ``keras.utils.timeseries_dataset_from_array``.

    Window ``i`` starts at step ``start_index + p_i`` with ``p_i = i * sequence_stride`` and
    holds ``sequence_length`` steps taken every ``sampling_rate`` steps; its target is
    ``targets[start_index + p_i]``. The result is a :class:`~fastrnn.keras.utils.PyDataset`
    that ``fit``, ``evaluate`` and ``predict`` take (and that can be iterated).

    Parameters
    ----------
    data : array-like
        ``(steps, ...)``.
    targets : array-like or None
        One target per step (None: the batches are inputs only).
    sequence_length, sequence_stride, sampling_rate : int
    batch_size : int or None
        Windows per batch (None: single windows, unbatched).
    shuffle : bool
        Shuffle the windows (``numpy.random.RandomState(seed)``, the first step of Keras's
        shuffling; Keras's tf.data pipeline then also shuffles within a buffer).
    seed : int, optional
    start_index, end_index : int, optional
        Only steps ``start_index <= t < end_index`` are used.

    Returns
    -------
    TimeseriesDataset
    """
    data = np.asarray(data)
    if data.ndim < 1 or data.dtype.kind not in "fiub":
        raise ValueError(f"timeseries_dataset_from_array: data must be a numeric array with a "
                         f"time axis, got shape {data.shape} dtype {data.dtype}")
    tgt = None if targets is None else np.asarray(targets)
    sequence_length = _pos_int("sequence_length", sequence_length)
    sequence_stride = _pos_int("sequence_stride", sequence_stride)
    sampling_rate = _pos_int("sampling_rate", sampling_rate)
    if batch_size is not None:
        batch_size = _pos_int("batch_size", batch_size)
    n = len(data)
    start = 0 if start_index is None else int(start_index)
    end = n if end_index is None else int(end_index)
    if not 0 <= start < n:
        raise ValueError(f"timeseries_dataset_from_array: start_index must be in [0, {n}), got "
                         f"{start_index!r}")
    if end_index is not None and not start < end < n:
        raise ValueError(f"timeseries_dataset_from_array: end_index must be in "
                         f"({start}, {n}), got {end_index!r}")
    for name, v in (("sampling_rate", sampling_rate), ("sequence_stride", sequence_stride)):
        if v >= n:
            raise ValueError(f"timeseries_dataset_from_array: {name} must be lower than the "
                             f"length of the data ({n}), got {v}")
    num = end - start - (sequence_length - 1) * sampling_rate
    if tgt is not None:
        num = min(num, len(tgt) - start)
    pos = np.arange(0, max(num, 0), sequence_stride, dtype=np.int64)
    if shuffle:
        rs = np.random.RandomState(np.random.randint(1e6) if seed is None else seed)
        rs.shuffle(pos)
    indices = start + pos[:, None] + np.arange(sequence_length) * sampling_rate
    ds = TimeseriesDataset(data, tgt, indices, start + pos, batch_size)
    ds.start_positions = pos
    return ds
