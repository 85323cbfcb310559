"""``pad_sequences``: a list of sequences as one padded array (Keras's semantics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pad_sequences"]


def pad_sequences(sequences: Sequence[Any], maxlen: int | None = None, dtype: Any = "int32",
                  padding: str = "pre", truncating: str = "pre",
                  value: Any = 0.0) -> np.ndarray:
    """Pad (or truncate) sequences to one length, as ``keras.utils.pad_sequences``.

    Parameters
    ----------
    sequences : list of sequences
        Each a list or array of values (or of equal-shaped vectors).
    maxlen : int, optional
        The output length (default: the longest sequence).
    dtype : str or dtype
        Output dtype (default ``'int32'``; strings need ``object``).
    padding : {'pre', 'post'}
        Pad before or after each sequence. fastrnn's recurrent layers need ``'post'`` when
        the padding is masked.
    truncating : {'pre', 'post'}
        Drop values from the start or the end of sequences longer than ``maxlen``.
    value : scalar
        The padding value.

    Returns
    -------
    ndarray
        ``(len(sequences), maxlen) + sample_shape``.
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("pad_sequences: sequences must be iterable (a list of sequences)")
    if padding not in ("pre", "post"):
        raise ValueError(f"pad_sequences: padding must be 'pre' or 'post', got {padding!r}")
    if truncating not in ("pre", "post"):
        raise ValueError(f"pad_sequences: truncating must be 'pre' or 'post', got "
                         f"{truncating!r}")
    if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer))
                               or maxlen < 0):
        raise ValueError(f"pad_sequences: maxlen must be a non-negative int or None, got "
                         f"{maxlen!r}")
    lengths, sample_shape = [], ()
    for i, s in enumerate(sequences):
        try:
            n = len(s)
        except TypeError as exc:
            raise ValueError(f"pad_sequences: sequences must be a list of iterables; item {i} "
                             f"is {s!r}") from exc
        lengths.append(n)
        if n and not sample_shape:
            sample_shape = np.asarray(s).shape[1:]
    if maxlen is None:
        maxlen = max(lengths, default=0)
    dt = np.dtype(dtype)
    if dt.kind in "fiu" and isinstance(value, str):
        raise ValueError(f"pad_sequences: dtype {dt} cannot hold the padding value {value!r}; "
                         "use dtype=object for strings")
    out = np.full((len(sequences), maxlen) + tuple(sample_shape), value, dtype=dt)
    for i, s in enumerate(sequences):
        if not len(s) or not maxlen:
            continue
        trunc = np.asarray(s, dtype=dt)[-maxlen:] if truncating == "pre" else \
            np.asarray(s, dtype=dt)[:maxlen]
        if trunc.shape[1:] != tuple(sample_shape):
            raise ValueError(f"pad_sequences: shape of sample {trunc.shape[1:]} of sequence "
                             f"{i} differs from the expected shape {tuple(sample_shape)}")
        if padding == "post":
            out[i, :len(trunc)] = trunc
        else:
            out[i, -len(trunc):] = trunc
    return out
