"""Keras's ``keras.preprocessing.sequence``: :func:`pad_sequences`."""

from __future__ import annotations

from ..utils.sequence_utils import pad_sequences

__all__ = ["pad_sequences"]
