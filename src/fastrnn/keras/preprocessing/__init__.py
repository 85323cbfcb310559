"""Keras's ``keras.preprocessing``: :mod:`~fastrnn.keras.preprocessing.sequence`."""

from __future__ import annotations

from . import sequence

__all__ = ["sequence"]
