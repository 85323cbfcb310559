"""Keras's ``keras.utils``: data helpers that need no TensorFlow.

- :class:`PyDataset` (and its Keras 2 name ``Sequence``): batches by index, for ``fit``;
- :func:`pad_sequences`, :func:`to_categorical`;
- :func:`timeseries_dataset_from_array`: sliding windows as a :class:`PyDataset`;
- :func:`set_random_seed`.
"""

from __future__ import annotations

from ..backend import set_random_seed
from .numerical_utils import to_categorical
from .py_dataset import PyDataset
from .sequence_utils import pad_sequences
from .timeseries import TimeseriesDataset, timeseries_dataset_from_array

Sequence = PyDataset  # Keras 2's name

__all__ = ["PyDataset", "Sequence", "TimeseriesDataset", "pad_sequences", "set_random_seed",
           "timeseries_dataset_from_array", "to_categorical"]
