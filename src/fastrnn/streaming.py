"""Streaming inference: feed a model one timestep at a time.

``session = model.stream(batch_size=1)`` prepares the weights of a :class:`Sequential` model of
causal layers once (packed for the SIMD kernels), then ``session.step(x_t)`` advances every
recurrent state by one timestep and returns the last layer's output for that step, in a single
call into C that releases the GIL and allocates nothing but the returned array.

Stepping through a sequence gives the same outputs as ``model.predict`` on the whole sequence
(every step's output when the last recurrent layer has ``return_sequences=True``, the last
step's otherwise): equal to float32 rounding, and exactly where the arithmetic order matches.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _native
from ._cells import NONLINEARITIES

__all__ = ["StreamSession"]

# Layers a stream passes through unchanged (inference-time identities).
_IDENTITY = ("Dropout", "InputLayer")


def _plan(model: Any) -> tuple[list[tuple], list[Any], np.dtype]:
    """Translate a built Sequential model into kernel layer specs (weights in kernel layout)."""
    specs: list[tuple] = []
    recurrent: list[Any] = []
    dtype = None
    for i, layer in enumerate(model.layers):
        kind = type(layer).__name__
        where = f"layer {i} ({layer.name!r}, {kind})"
        if kind in _IDENTITY:
            continue
        if hasattr(layer, "op_weights"):  # a recurrent layer (SimpleRNN, LSTM, GRU)
            if layer.go_backwards:
                raise ValueError(f"{where} has go_backwards=True: it reads the sequence from the "
                                 "end, so it cannot be streamed one step at a time")
            act = layer.nonlinearity or "tanh"
            if act not in NONLINEARITIES:
                raise ValueError(f"{where}: activation {act!r} has no streaming kernel "
                                 "(tanh or relu)")
            w_ih, w_hh, b_ih, b_hh = layer.op_weights()
            specs.append((layer.cell, w_ih, w_hh, b_ih, b_hh, act))
            recurrent.append(layer)
            dtype = dtype or w_ih.dtype
        elif kind == "Dense":
            if layer.activation not in _native.DENSE_ACTIVATIONS:
                raise ValueError(f"{where}: activation {layer.activation!r} has no streaming "
                                 f"kernel (one of {', '.join(_native.DENSE_ACTIVATIONS)})")
            bias = layer.bias.value if layer.bias is not None else None
            specs.append(("dense", layer.kernel.value, bias, layer.activation))
            dtype = dtype or layer.kernel.value.dtype
        elif kind == "Embedding":
            if specs:
                raise ValueError(f"{where}: an Embedding can only come first in a stream")
            specs.append(("embedding", layer.embeddings.value))
            dtype = dtype or layer.embeddings.value.dtype
        elif kind == "Bidirectional":
            raise ValueError(f"{where} runs part of the sequence backwards in time, so it cannot "
                             "be streamed one step at a time")
        else:
            raise ValueError(f"{where} cannot be streamed: streams support SimpleRNN, LSTM, "
                             "GRU (unidirectional), Dense, Embedding and Dropout")
    if not specs:
        raise ValueError("the model has no layer to stream")
    return specs, recurrent, np.dtype(dtype)


class StreamSession:
    """A model advanced one timestep at a time (see :meth:`Sequential.stream`).

    Parameters
    ----------
    model : fastrnn.keras.models.Sequential
        A built model of causal layers: SimpleRNN/LSTM/GRU (any depth, not ``go_backwards``,
        not Bidirectional), Dense, Embedding (first), Dropout (identity).
    batch_size : int
        Independent streams advanced together.
    precision : {"float32", "bfloat16", "bf16", "int8"}
        The recurrent layers' compute precision (see :mod:`fastrnn.functional`); a reduced
        one needs a float32 model. Each step computes what the whole-sequence op of that
        precision computes with T = 1 (in float32 the sums may run in another order: equal to
        rounding, not always to the bit).

    Notes
    -----
    The session copies the weights when it opens: later changes to the model (training,
    ``set_weights``) do not reach an open session. Masks play no part in streaming: every id an
    ``Embedding(mask_zero=True)`` receives is treated as a real token.
    """

    def __init__(self, model: Any, batch_size: int = 1, precision: str = "float32") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not getattr(model, "built", False):
            raise ValueError("the model has no weights yet: build it first (give the first "
                             "layer an input_shape, call model.build(...), fit or predict)")
        specs, self._layers, self.dtype = _plan(model)
        self.batch_size = int(batch_size)
        self._stream = _native.Stream(specs, self.batch_size, self.dtype, precision)
        self.precision: str = self._stream.precision
        self._takes_ids = self._stream.takes_ids
        first = specs[0]
        self._n_in = (None if first[0] == "embedding" else
                      int(first[1].shape[0]) if first[0] == "dense" else int(first[1].shape[1]))

    def _cast(self, x: Any) -> np.ndarray:
        """Inputs as the model computes them (Keras casts float inputs to the model's dtype)."""
        a = np.asarray(x)
        if not self._takes_ids and a.dtype != self.dtype:
            if a.dtype.kind not in "fiub":
                raise TypeError(f"input must be real numbers, got dtype {a.dtype}")
            a = a.astype(self.dtype)
        return a

    def _one(self, x: Any) -> tuple[Any, bool]:
        """Accept (features,) or token id for batch 1, else (B, features) / (B,)."""
        a = self._cast(x)
        single = self.batch_size == 1 and (a.ndim == (0 if self._takes_ids else 1))
        return (a.reshape(1, -1) if not self._takes_ids else a.reshape(1)) if single else a, \
            single

    def step(self, x_t: Any) -> np.ndarray:
        """Advance one timestep.

        Parameters
        ----------
        x_t : array_like
            One timestep's input: shape (batch_size, features), or (batch_size,) token ids
            when the model starts with an Embedding. With ``batch_size=1`` a single feature
            vector (features,) or a single id is accepted too.

        Returns
        -------
        ndarray
            The last layer's output for this step, shape (batch_size, units) — or (units,)
            when a single unbatched input was given.
        """
        a, single = self._one(x_t)
        if a.ndim != (1 if self._takes_ids else 2):
            want = (f"({self.batch_size},) token ids" if self._takes_ids else
                    f"({self.batch_size}, {self._n_in}) (batch_size, features)")
            raise ValueError(f"x must have shape {want} for one timestep, got "
                             f"{np.shape(x_t)}; use run() for several timesteps")
        out = self._stream.step(a)
        return out[0] if single else out

    def run(self, x_chunk: Any) -> np.ndarray:
        """Advance several timesteps in one call.

        Parameters
        ----------
        x_chunk : array_like
            Shape (batch_size, T, features) — Keras's batch-major layout — or
            (batch_size, T) token ids; with ``batch_size=1`` also (T, features) or (T,).

        Returns
        -------
        ndarray
            Outputs of every step, shape (batch_size, T, units) (or (T, units) for an
            unbatched chunk).
        """
        a = self._cast(x_chunk)
        ids = self._takes_ids
        single = self.batch_size == 1 and a.ndim == (1 if ids else 2)
        if single:
            a = a[None]
        want = (f"({self.batch_size}, T)" if ids else
                f"({self.batch_size}, T, {self._n_in})")
        if a.ndim != (2 if ids else 3) or a.shape[0] != self.batch_size \
                or (not ids and a.shape[2] != self._n_in):
            raise ValueError(f"x_chunk must have shape {want} (batch_size, T"
                             f"{'' if ids else ', features'}), got {np.shape(x_chunk)}")
        y = self._stream.run(np.swapaxes(a, 0, 1))  # (T, B, O)
        y = np.swapaxes(y, 0, 1)
        return y[0] if single else np.ascontiguousarray(y)

    def reset(self) -> None:
        """Zero every recurrent state (start new streams)."""
        self._stream.reset()

    @property
    def state(self) -> list[np.ndarray]:
        """Copies of the recurrent states, in layer order: ``h`` (and ``c`` after it for an
        LSTM), each of shape (batch_size, units). Assign such a list to restore them."""
        out = []
        for h, c in self._stream.states():
            out.append(h.copy())
            if c is not None:
                out.append(c.copy())
        return out

    @state.setter
    def state(self, values: Any) -> None:
        live = [a for h, c in self._stream.states() for a in (h, c) if a is not None]
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"state must be a list of {len(live)} arrays (h, and c for each "
                            f"LSTM, per recurrent layer), got {type(values).__name__}")
        values = list(values)
        if len(values) != len(live):
            raise ValueError(f"state must be a list of {len(live)} arrays (h, and c for each "
                             f"LSTM, per recurrent layer), got {len(values)}")
        new = []
        for k, (v, cur) in enumerate(zip(values, live, strict=True)):
            a = np.asarray(v)
            if a.shape != cur.shape:
                raise ValueError(f"state[{k}] must have shape {cur.shape}, got {a.shape}")
            if a.dtype.kind not in "fiu":
                raise TypeError(f"state[{k}] must be a real array, got dtype {a.dtype}")
            new.append(a)
        for a, cur in zip(new, live, strict=True):
            cur[...] = a
