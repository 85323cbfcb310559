"""Keras-compatible layers: recurrent layers on fastrnn's kernels plus the usual companions.

Names, arguments and defaults follow Keras 3, so Keras code runs after changing its imports::

    from fastrnn.keras.models import Sequential
    from fastrnn.keras.layers import LSTM, Dense, Embedding

    model = Sequential([Embedding(1000, 64), LSTM(128), Dense(10, activation="softmax")])

Recurrent layers (:class:`SimpleRNN`, :class:`LSTM`, :class:`GRU`, :class:`Bidirectional`)
take masks from ``Embedding(mask_zero=True)`` or :class:`Masking` as per-sequence lengths, so
the mask must be padding at the end of each sequence (``padding='post'``).

Every layer computes its gradient explicitly: see :class:`Layer` for the protocol.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _native
from . import activations as _acts
from .backend import floatx, unique_name
from .base import (
    Layer,
    Variable,
    check_float,
    normalize_shape,
    registered_class,
    reject_unsupported,
    serialize_initializer,
    serialize_registered,
)
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN, _Tokens
from .regularization import Dropout, SpatialDropout1D
from .symbolic import KerasTensor, Node

__all__ = [
    "GRU",
    "LSTM",
    "Activation",
    "Bidirectional",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "Input",
    "InputLayer",
    "Layer",
    "Masking",
    "RepeatVector",
    "Reshape",
    "SimpleRNN",
    "TimeDistributed",
    "Variable",
    "deserialize",
    "serialize",
]


def _last_axis_2d(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """View ``x`` (..., F) as 2-D without copying when it is a (B, T, F) transpose of a
    contiguous time-major array; returns (2-D array, time_major flag)."""
    if x.ndim == 3 and not x.flags.c_contiguous:
        xt = x.transpose(1, 0, 2)
        if xt.flags.c_contiguous:
            return xt.reshape(-1, x.shape[-1]), True
    return x.reshape(-1, x.shape[-1]), False


def _restore(a2: np.ndarray, shape: tuple, time_major: bool) -> np.ndarray:
    if time_major:
        return a2.reshape(shape[1], shape[0], a2.shape[-1]).transpose(1, 0, 2)
    return a2.reshape(shape[:-1] + (a2.shape[-1],))


class InputLayer(Layer):
    """The input of a :class:`~fastrnn.keras.models.Sequential` model (what :func:`Input` returns).

    Parameters
    ----------
    shape : tuple
        Shape of one sample, no batch axis (None for a variable dimension).
    batch_size : int, optional
    dtype : str, optional
        ``'int32'``/``'int64'`` for token ids, else a float type.
    batch_shape : tuple, optional
        Full shape including the batch axis (instead of ``shape`` + ``batch_size``).
    """

    def __init__(self, shape: Any = None, batch_size: int | None = None, dtype: Any = None,
                 sparse: bool | None = None, batch_shape: Any = None, name: str | None = None,
                 input_shape: Any = None, **kwargs: Any) -> None:
        if sparse:
            raise NotImplementedError("sparse inputs are not supported")
        if shape is None and input_shape is not None:
            shape = input_shape
        if batch_shape is None:
            if shape is None:
                raise ValueError("Input needs shape= (one sample's shape) or batch_shape=")
            batch_shape = (batch_size,) + normalize_shape(shape, "shape")
        self.input_dtype = None
        if dtype is not None:
            try:
                dt = np.dtype(dtype)
            except TypeError as exc:
                raise TypeError(f"Input: dtype must be a float or integer type, got {dtype!r}") \
                    from exc
            if dt.kind not in "fiu":
                raise TypeError(f"Input: dtype must be a float type ('float32', 'float64') or "
                                f"an integer type for token ids, got {dtype!r}")
            self.input_dtype = dt.name
        super().__init__(name=name, batch_input_shape=batch_shape,
                         dtype=dtype if dtype is not None and np.dtype(dtype).kind == "f"
                         else None, **kwargs)

    @property
    def batch_shape(self) -> tuple:
        """Full input shape with the batch axis."""
        assert self._batch_input_shape is not None
        return self._batch_input_shape

    def get_config(self) -> dict:
        return {"batch_shape": list(self.batch_shape), "dtype": self.input_dtype,
                "name": self.name}


def Input(shape: Any = None, batch_size: int | None = None, dtype: Any = None,
          sparse: bool | None = None, batch_shape: Any = None, name: str | None = None,
          tensor: Any = None, optional: bool = False, **kwargs: Any) -> KerasTensor:
    """A model input, as ``keras.Input``: a symbolic tensor to call layers on (functional
    API) or the first entry of a ``Sequential`` model.

    Parameters
    ----------
    shape : tuple
        Shape of one sample (no batch axis), e.g. ``(None, 8)`` for sequences of any length
        with 8 features.
    batch_size : int, optional
        Fixed batch size (needed by stateful recurrent layers).
    dtype : str, optional
        A float type, or an integer type for token ids (default: the float type).
    batch_shape : tuple, optional
        Full shape including the batch axis (instead of ``shape`` + ``batch_size``).
    name : str, optional
        The input's name (the key of this input when data comes as a dict).

    Returns
    -------
    KerasTensor
    """
    if tensor is not None:
        raise NotImplementedError("Input(tensor=...) is not supported")
    if optional:
        raise NotImplementedError("Input(optional=True) is not supported")
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                       batch_shape=batch_shape, name=name or unique_name("input_layer"),
                       **kwargs)
    node = Node(layer, [], False)
    dt = layer.input_dtype or floatx()
    out = KerasTensor(layer.batch_shape, dt, layer.name, node, 0)
    node.outputs = [out]
    layer.__dict__.setdefault("_inbound_nodes", []).append(node)
    layer.built = True
    layer.output_shape = layer.batch_shape
    return out


def _matmul(a: np.ndarray, b: np.ndarray, transa: bool = False,
            transb: bool = False) -> np.ndarray:
    """op(a) @ op(b) on fastrnn's own GEMM (C-contiguous float32/float64 operands).

    Not numpy's ``@``: OpenBLAS's worker threads keep spinning for a while after each call and
    then compete with the recurrent kernels' threads for the same cores (a character-LSTM
    training step measured 50-77 ms with ``@`` in its Dense layer, 38 ms with OpenBLAS on one
    thread).
    """
    return _native.gemm(a, b, transa=transa, transb=transb)


class Dense(Layer):
    """``activation(x @ kernel + bias)`` on the last axis (2-D and N-D inputs).

    Parameters
    ----------
    units : int
    activation : str, optional
        A Keras activation name (``'relu'``, ``'softmax'``, ``'sigmoid'``, ``'tanh'``, ...).
    use_bias : bool
    kernel_initializer, bias_initializer : str or Initializer
    """

    supports_masking = True

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 kernel_constraint: Any = None, bias_constraint: Any = None,
                 lora_rank: Any = None, **kwargs: Any) -> None:
        reject_unsupported("Dense", kernel_regularizer=kernel_regularizer,
                           bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint,
                           bias_constraint=bias_constraint, lora_rank=lora_rank)
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units = int(units)
        self.activation = _acts.resolve(activation)
        self._act_fwd, self._act_bwd = _acts.get(self.activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) < 2:
            raise ValueError(f"layer {self.name!r} (Dense) expects an input of rank >= 2 "
                             f"(batch, ..., features), got shape {tuple(shape)}")
        if shape[-1] is None or shape[-1] == 0:
            raise ValueError(f"layer {self.name!r} (Dense) needs a known, non-zero last "
                             f"dimension, got input shape {tuple(shape)}")
        if self.built and shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"layer {self.name!r} (Dense) was built for {self.kernel.shape[0]} "
                             f"input features, got input shape {tuple(shape)}")

    def build(self, input_shape: tuple) -> None:
        n_in = int(input_shape[-1])
        self.kernel = self.add_weight("kernel", (n_in, self.units), self.kernel_initializer)
        self.bias = (self.add_weight("bias", (self.units,), self.bias_initializer)
                     if self.use_bias else None)
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        x2, tm = _last_axis_2d(x)
        if x2.dtype != self.kernel.value.dtype:
            x2 = x2.astype(self.kernel.value.dtype)
        x2 = np.ascontiguousarray(x2)
        z = _matmul(x2, self.kernel.value)
        if self.bias is not None:
            z += self.bias.value
        y = self._act_fwd(z) if self.activation != "linear" else z
        if training:
            self._cache = (x2, z, y, x.shape, tm)
        return _restore(y, x.shape, tm), mask

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        x2, z, y, xshape, tm = self._cache
        self._cache = None
        d = dy.shape[-1]
        if tm:
            dy2 = np.ascontiguousarray(dy.transpose(1, 0, 2)).reshape(-1, d)
        else:
            dy2 = dy.reshape(-1, d)
        dz = self._act_bwd(dy2, z, y) if self.activation != "linear" else dy2
        dz = np.ascontiguousarray(dz, dtype=x2.dtype)
        self.kernel.grad = _matmul(x2, dz, transa=True)
        if self.bias is not None:
            self.bias.grad = dz.sum(axis=0)
        dx2 = _matmul(dz, self.kernel.value, transb=True)
        return _restore(dx2, xshape, tm)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": serialize_initializer(self.kernel_initializer),
                "bias_initializer": serialize_initializer(self.bias_initializer)}


class Activation(Layer):
    """Apply an activation function elementwise (softmax on the last axis)."""

    supports_masking = True

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = _acts.resolve(activation)
        self._fwd, self._bwd = _acts.get(self.activation)

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        y = self._fwd(x)
        if training:
            self._cache = (x, y)
        return y, mask

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        x, y = self._cache
        self._cache = None
        return self._bwd(dy, x, y)

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": self.activation}


class Embedding(Layer):
    """Map integer ids to dense vectors: ``embeddings[ids]``.

    Parameters
    ----------
    input_dim : int
        Vocabulary size; ids must be in ``[0, input_dim)``.
    output_dim : int
        Vector size.
    embeddings_initializer : str or Initializer
        Keras's default ``'uniform'`` (uniform on ±0.05).
    mask_zero : bool
        Treat id 0 as padding: the output carries a mask that recurrent layers turn into
        sequence lengths (pad at the end of sequences).
    input_length : int, optional
        Accepted for Keras 2 code: the sequence length, used for the summary's shapes.
    """

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: Any = "uniform", embeddings_regularizer: Any = None,
                 embeddings_constraint: Any = None, mask_zero: bool = False,
                 weights: Any = None, lora_rank: Any = None, input_length: int | None = None,
                 **kwargs: Any) -> None:
        reject_unsupported("Embedding", embeddings_regularizer=embeddings_regularizer,
                           embeddings_constraint=embeddings_constraint, lora_rank=lora_rank)
        super().__init__(**kwargs)
        for argname, v in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"Embedding: {argname} must be a positive int, got {v!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero = bool(mask_zero)
        self.input_length = None if input_length is None else int(input_length)
        if self._batch_input_shape is None:
            self._batch_input_shape = (None, self.input_length)
        self._initial_weights = weights

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) < 1:
            raise ValueError(f"layer {self.name!r} (Embedding) expects integer ids of shape "
                             f"(batch, timesteps), got shape {tuple(shape)}")

    def build(self, input_shape: tuple) -> None:
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, inputs: Any, mask: np.ndarray | None) -> np.ndarray | None:
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def _prepare_input(self, inputs):
        return np.asarray(inputs)

    def _ids(self, x: np.ndarray) -> np.ndarray:
        """``x`` as intp ids; float arrays must hold whole numbers (Keras pipelines often
        produce float ids), anything else is a TypeError, out-of-range ids a ValueError."""
        where = f"layer {self.name!r} (Embedding)"
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{where} expects integer ids, got dtype {x.dtype}")
        if x.size:
            if x.dtype.kind == "f":
                bad = ~np.isfinite(x)
                bad |= x != np.round(x)
                if bad.any():
                    v = x[np.unravel_index(int(np.argmax(bad)), x.shape)]
                    raise ValueError(f"{where} expects integer ids, got the non-integer value "
                                     f"{float(v)} in a float array")
            lo, hi = x.min(), x.max()
            if lo < 0 or hi >= self.input_dim:
                raise ValueError(f"{where}: ids must be in [0, {self.input_dim}), got values "
                                 f"in [{lo}, {hi}]")
        return x if x.dtype == np.intp else x.astype(np.intp)

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        ids = self._ids(x)
        w = self.embeddings.value
        if ids.ndim == 2:
            # gather time-major and return a (batch, time, dim) view: a following recurrent
            # layer then gets its time-major input without another copy
            idt = np.ascontiguousarray(ids.T)
            y = np.take(w, idt, axis=0).transpose(1, 0, 2)
            if training:
                self._cache = (idt.reshape(-1), True)
        else:
            y = np.take(w, ids, axis=0)
            if training:
                self._cache = (ids.reshape(-1), False)
        out_mask = (ids != 0) if self.mask_zero else None
        return y, out_mask

    def tokens(self, x: np.ndarray) -> tuple[_Tokens, np.ndarray | None]:
        """The forward for a following recurrent layer that folds this lookup into its input
        projection (see ``_Tokens``): validated time-major ids instead of vectors, and the mask.
        That layer's backward sets this layer's gradient."""
        ids = self._ids(x)
        if ids.ndim != 2:
            raise ValueError(f"layer {self.name!r} (Embedding): folding into a recurrent layer "
                             f"needs ids of shape (batch, timesteps), got shape {ids.shape}")
        out_mask = (ids != 0) if self.mask_zero else None
        return _Tokens(self, np.ascontiguousarray(ids.T, dtype=np.int64)), out_mask

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        flat_ids, tm = self._cache
        self._cache = None
        d = self.output_dim
        if tm:
            dyt = dy.transpose(1, 0, 2)
            dy2 = (dyt if dyt.flags.c_contiguous else np.ascontiguousarray(dyt)).reshape(-1, d)
        else:
            dy2 = np.ascontiguousarray(dy).reshape(-1, d)
        g = np.zeros_like(self.embeddings.value)
        if flat_ids.size:
            # sum rows per id: sort once, then one reduceat (several times faster than add.at)
            order = np.argsort(flat_ids, kind="stable")
            sorted_ids = flat_ids[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            g[sorted_ids[starts]] = np.add.reduceat(dy2[order], starts, axis=0)
        self.embeddings.grad = g
        return None

    def get_config(self) -> dict:
        cfg = {**super().get_config(), "input_dim": self.input_dim,
               "output_dim": self.output_dim,
               "embeddings_initializer": serialize_initializer(self.embeddings_initializer),
               "mask_zero": self.mask_zero}
        if self.input_length is not None:
            cfg["input_length"] = self.input_length
        if cfg.get("batch_input_shape") == [None, self.input_length]:
            del cfg["batch_input_shape"]
        return cfg


class Masking(Layer):
    """Mask timesteps whose features all equal ``mask_value`` (and zero them, as Keras).

    The resulting mask must be padding at the end of sequences for recurrent layers.
    """

    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_value = check_float("Masking", "mask_value", mask_value)

    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (3,), "(batch, timesteps, features)")

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        m = np.any(x != self.mask_value, axis=-1)
        y = x * m[..., None]
        if training:
            self._cache = m
        return y, m

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        m = self._cache
        self._cache = None
        return dy * m[..., None]

    def get_config(self) -> dict:
        return {**super().get_config(), "mask_value": self.mask_value}


class RepeatVector(Layer):
    """Repeat a ``(batch, features)`` input ``n`` times: ``(batch, n, features)``."""

    def __init__(self, n: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"RepeatVector: n must be a positive int, got {n!r}")
        self.n = int(n)

    def check_input_shape(self, shape: tuple) -> None:
        self._expect_rank(shape, (2,), "(batch, features)")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.n, input_shape[1])

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        return np.broadcast_to(x[:, None, :], (x.shape[0], self.n, x.shape[1])), None

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dy.sum(axis=1)

    def get_config(self) -> dict:
        return {**super().get_config(), "n": self.n}


class Flatten(Layer):
    """Flatten all axes but the batch axis."""

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        rest = input_shape[1:]
        n = None if any(s is None for s in rest) else int(math.prod(rest))
        return (input_shape[0], n)

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        if training:
            self._cache = x.shape
        return x.reshape(x.shape[0], -1), None

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        shape = self._cache
        self._cache = None
        return dy.reshape(shape)


class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one entry may be -1)."""

    def __init__(self, target_shape: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        ok = isinstance(target_shape, (list, tuple)) and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and (s > 0 or s == -1)
            for s in target_shape) and sum(s == -1 for s in target_shape) <= 1
        if not ok:
            raise ValueError(f"Reshape: target_shape must be a tuple of positive ints with at "
                             f"most one -1, got {target_shape!r}")
        ts = target_shape
        self.target_shape = tuple(int(s) for s in ts)

    def check_input_shape(self, shape: tuple) -> None:
        rest = shape[1:]
        if any(s is None for s in rest):
            return
        n, known = int(math.prod(rest)), math.prod(s for s in self.target_shape if s != -1)
        if (n % known if -1 in self.target_shape else n != known):
            raise ValueError(f"layer {self.name!r} (Reshape) cannot reshape inputs of shape "
                             f"{tuple(shape)} ({n} values per sample) to target_shape "
                             f"{self.target_shape}")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        rest = input_shape[1:]
        if -1 in self.target_shape:
            if any(s is None for s in rest):
                return (input_shape[0],) + tuple(None if s == -1 else s
                                                 for s in self.target_shape)
            known = math.prod(s for s in self.target_shape if s != -1)
            fill = int(math.prod(rest)) // known
            return (input_shape[0],) + tuple(fill if s == -1 else s for s in self.target_shape)
        return (input_shape[0],) + self.target_shape

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        self.check_input_shape(x.shape)
        if training:
            self._cache = x.shape
        return x.reshape((x.shape[0],) + self.target_shape), None

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        shape = self._cache
        self._cache = None
        return dy.reshape(shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class TimeDistributed(Layer):
    """Apply a layer to every timestep: ``(batch, time, ...)`` -> ``(batch, time, ...)``.

    Works with per-step layers such as :class:`Dense`, :class:`Activation` and
    :class:`Dropout` (the wrapped layer sees ``(batch * time, ...)``).
    """

    supports_masking = True

    def __init__(self, layer: Layer, **kwargs: Any) -> None:
        if not isinstance(layer, Layer) or isinstance(layer, InputLayer):
            raise ValueError(f"TimeDistributed wraps a layer, got {layer!r}")
        super().__init__(**kwargs)
        self.layer = layer

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) < 3:
            raise ValueError(f"layer {self.name!r} (TimeDistributed) expects an input of rank "
                             f">= 3 (batch, timesteps, ...), got shape {tuple(shape)}")

    def build(self, input_shape: tuple) -> None:
        self.layer._build_for((None,) + tuple(input_shape[2:]))
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return tuple(input_shape[:2]) + tuple(inner[1:])

    @property
    def weights(self) -> list[Variable]:
        return self.layer.weights

    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        b, t = x.shape[:2]
        y, _ = self.layer.forward(x.reshape((b * t,) + x.shape[2:]), None, training)
        if training:
            self._cache = x.shape
        return y.reshape((b, t) + y.shape[1:]), mask

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        shape = self._cache
        self._cache = None
        b, t = dy.shape[:2]
        dx = self.layer.backward(dy.reshape((b * t,) + dy.shape[2:]), need_dx)
        return None if dx is None else dx.reshape(shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        config = dict(config)
        config["layer"] = deserialize(config["layer"])
        return cls(**config)


_REGISTRY: dict[str, type[Layer]] = {
    c.__name__: c for c in (InputLayer, Dense, Activation, Embedding, Masking, Dropout,
                            RepeatVector, Flatten, Reshape, TimeDistributed, SimpleRNN, LSTM, GRU,
                            Bidirectional)
}


def serialize(layer: Layer) -> dict:
    """``{'class_name': ..., 'config': ...}`` of a built-in layer (JSON-compatible)."""
    return serialize_registered(_REGISTRY, layer, "layer")


def deserialize(config: dict) -> Layer:
    """Build a layer from :func:`serialize`'s output (built-in layer classes only)."""
    cls, cfg = registered_class(_REGISTRY, config, "layer")
    try:
        return cls.from_config(cfg)
    except TypeError as exc:
        raise ValueError(f"invalid config for layer {config['class_name']}: {exc}") from exc


# -- the layers RNN programs use beside the recurrent ones (issue 22) --------------------------
from .advanced_activations import LeakyReLU  # noqa: E402
from .attention import AdditiveAttention, Attention  # noqa: E402
from .convolutional import Conv1D  # noqa: E402
from .lambda_layer import Lambda  # noqa: E402
from .merging import Add, Concatenate, Multiply  # noqa: E402
from .normalization import BatchNormalization, LayerNormalization  # noqa: E402
from .pooling import (  # noqa: E402
    AveragePooling1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
)
from .rnn_cells import RNN, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells  # noqa: E402

_EXTRA_LAYERS = (LeakyReLU, Attention, AdditiveAttention, Conv1D, Lambda, Add, Concatenate,
                 Multiply, BatchNormalization, LayerNormalization, AveragePooling1D,
                 GlobalAveragePooling1D, GlobalMaxPooling1D, MaxPooling1D, SpatialDropout1D,
                 RNN, SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells)
_REGISTRY.update({c.__name__: c for c in _EXTRA_LAYERS})
__all__ += [c.__name__ for c in _EXTRA_LAYERS]
# Keras's lower-case aliases of the pooling layers
MaxPool1D, AvgPool1D = MaxPooling1D, AveragePooling1D
GlobalMaxPool1D, GlobalAvgPool1D = GlobalMaxPooling1D, GlobalAveragePooling1D
__all__ += ["AvgPool1D", "GlobalAvgPool1D", "GlobalMaxPool1D", "MaxPool1D"]
