"""Keras 3's :class:`PyDataset`: a Python class that serves batches by index."""

from __future__ import annotations

from typing import Any

__all__ = ["PyDataset"]


class PyDataset:
    """Base class of datasets that ``fit``/``evaluate``/``predict`` take: subclass it and
    define ``__len__`` (the number of batches) and ``__getitem__(index)`` (one batch:
    ``(x, y)``, ``(x, y, sample_weight)``, or ``x`` for ``predict``).

    ``on_epoch_begin`` and ``on_epoch_end`` are called around every epoch (e.g. to reshuffle).
    Batches are read in order on the calling thread: ``workers``, ``use_multiprocessing``
    and ``max_queue_size`` are accepted for Keras code and have no effect.

    Examples
    --------
    >>> class Windows(PyDataset):
    ...     def __init__(self, x, y, batch_size, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.x, self.y, self.batch_size = x, y, batch_size
    ...     def __len__(self):
    ...         return -(-len(self.x) // self.batch_size)
    ...     def __getitem__(self, i):
    ...         s = slice(i * self.batch_size, (i + 1) * self.batch_size)
    ...         return self.x[s], self.y[s]
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10) -> None:
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    @property
    def workers(self) -> int:
        """Accepted for Keras code (batches are read on the calling thread)."""
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self) -> bool:
        """Accepted for Keras code."""
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self) -> int:
        """Accepted for Keras code."""
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index: int) -> Any:
        """Batch number ``index``."""
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __len__(self) -> int:
        """Number of batches (``num_batches``)."""
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    @property
    def num_batches(self) -> int | None:
        """Number of batches per epoch (None when ``__len__`` is not defined)."""
        try:
            return len(self)
        except NotImplementedError:
            return None

    def on_epoch_begin(self) -> None:
        """Called before every epoch."""

    def on_epoch_end(self) -> None:
        """Called after every epoch."""
