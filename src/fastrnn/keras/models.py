"""Keras-compatible models: :class:`Sequential`, :func:`load_model`, global settings.

Typical Keras code runs after changing its imports::

    from fastrnn.keras.models import Sequential
    from fastrnn.keras.layers import Embedding, LSTM, Dense

    model = Sequential()
    model.add(Embedding(1000, 64))
    model.add(LSTM(128))
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.summary()
    history = model.fit(x, y, batch_size=32, epochs=5, validation_split=0.1)

Float type: layers are float32 by default (Keras's default and the fast path);
``set_floatx('float64')`` before building a model (or ``dtype='float64'`` on each layer)
gives float64 models, e.g. for exact gradient checks.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from .backend import floatx, rng, set_floatx, set_random_seed, unique_name
from .base import (
    Layer,
    Variable,
    assign_weights,
    check_float,
    check_int,
    normalize_shape,
    weights_list,
)
from .callbacks import CallbackList, History, ProgbarLogger
from .layers import (
    Activation,
    Dropout,
    Embedding,
    Flatten,
    InputLayer,
    Masking,
    RepeatVector,
    Reshape,
    deserialize,
    serialize,
)
from .saving import ModelFileError
from .saving import load_model as _load_model
from .saving import load_weights as _load_weights
from .saving import save_model as _save_model

__all__ = ["ModelFileError", "Sequential", "floatx", "load_model", "set_floatx",
           "set_random_seed"]

_NO_FEATURES_NEEDED = (Embedding, Dropout, Activation, Masking, Flatten, Reshape, RepeatVector)


def load_model(filepath: Any, compile: bool = True) -> Sequential:
    """Load a model saved with :meth:`Sequential.save`.

    Parameters
    ----------
    filepath : str or PathLike
    compile : bool
        Restore the optimizer (with its state), loss and metrics when they were saved.

    Returns
    -------
    Sequential

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFileError (a ValueError)
        If the file is unreadable, truncated, not a fastrnn model, or any array's count,
        shape or dtype disagrees with the config and the rebuilt model. No code from the file
        is ever executed, and a hostile file (duplicate members, lying sizes, zip bombs) is
        refused within bounded memory: see :mod:`fastrnn.keras.saving`.
    """
    return _load_model(filepath, {"Sequential": Sequential}, compile=compile)


def _as_array(a: Any, what: str) -> np.ndarray:
    if a is None:
        raise ValueError(f"{what} is required")
    if isinstance(a, (list, tuple)) and a and all(isinstance(e, np.ndarray) for e in a) \
            and len({e.shape for e in a}) > 1:
        raise ValueError(f"{what}: multiple inputs/outputs are not supported by Sequential")
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{what} must have a batch axis, got a scalar")
    return arr


def _check_finite(a: np.ndarray, name: str, what: str) -> None:
    """ValueError naming the first NaN/inf of a float array."""
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        v = a[tuple(bad)]
        raise ValueError(f"{what}: {name} contains {v} at index {tuple(int(i) for i in bad)}; "
                         f"training and evaluation need finite values (clean or impute the "
                         f"data first)")


def _check_verbose(verbose: Any) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or not isinstance(verbose, (int, np.integer)) or verbose < 0:
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _callback_list(callbacks: Any) -> list:
    """A list of callbacks from None, one callback or a sequence (as Keras flattens them)."""
    if callbacks is None:
        return []
    if isinstance(callbacks, (list, tuple)):
        return list(callbacks)
    return [callbacks]


class _Tracker:
    """Batch-size-weighted running mean of the loss (Keras's loss tracker)."""

    name = "loss"
    direction = "down"

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def update(self, v: float, n: int) -> None:
        self.total += v * n
        self.count += n

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def reset_state(self) -> None:
        self.total = 0.0
        self.count = 0.0


class Sequential:
    """A linear stack of layers with Keras's training API.

    Parameters
    ----------
    layers : list of Layer, optional
        Layers to add in order (an :func:`fastrnn.keras.layers.Input` first is allowed).
    name : str, optional

    Notes
    -----
    The model is built (weights created) as soon as the input's feature sizes are known:
    from an ``Input``, a first layer's ``input_shape``, or a first ``Embedding`` layer;
    otherwise on the first ``fit``/``predict``/``evaluate``.
    """

    def __init__(self, layers: Sequence[Layer] | None = None, name: str | None = None,
                 trainable: bool = True) -> None:
        self.name = name or unique_name("sequential")
        self._layers: list[Layer] = []
        self._input_layer: InputLayer | None = None
        self._batch_input_shape: tuple | None = None
        self.built = False
        self.trainable = trainable
        self.optimizer: _optimizers.Optimizer | None = None
        self.loss: Any = None
        self._loss_obj: _losses.Loss | None = None
        self._metric_ids: list[Any] = []
        self._metric_objs: list[_metrics.Metric] | None = None
        self._loss_tracker = _Tracker()
        self.compiled = False
        self.stop_training = False
        self.history: History | None = None
        self.output_shape: tuple | None = None
        for layer in layers or []:
            self.add(layer)

    # -- structure ------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The model's layers (the Input is not a layer, as in Keras 3)."""
        return list(self._layers)

    @property
    def input_shape(self) -> tuple | None:
        """Input shape with the batch axis (None entries unknown)."""
        return self._batch_input_shape

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index (Keras's ``get_layer``)."""
        if index is not None:
            if name is not None:
                raise ValueError("pass either name or index, not both")
            if not -len(self._layers) <= index < len(self._layers):
                raise ValueError(f"index {index} is out of range for {len(self._layers)} layers")
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: "
                         f"{', '.join(l.name for l in self._layers)}")

    def add(self, layer: Layer) -> None:
        """Append a layer (or set the input with an :func:`~fastrnn.keras.layers.Input`)."""
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("an Input can only be added first, once")
            self._input_layer = layer
            self._batch_input_shape = layer.batch_shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a fastrnn layer, got {layer!r} (a Keras "
                            "layer? import layers from fastrnn.keras.layers)")
        if getattr(layer, "return_state", False):
            raise ValueError(f"layer {layer.name!r} has return_state=True, which returns several "
                             "outputs; a Sequential model needs layers with one output")
        if any(layer is l for l in self._layers):
            raise ValueError(f"layer {layer.name!r} is already in the model")
        if any(layer.name == l.name for l in self._layers):
            raise ValueError(f"all layers of a Sequential model need unique names; "
                             f"{layer.name!r} is already used")
        if not self._layers and self._batch_input_shape is None \
                and layer._batch_input_shape is not None:
            self._batch_input_shape = layer._batch_input_shape
        self._layers.append(layer)
        self._try_build()

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError("there are no layers to remove")
        layer = self._layers.pop()
        self._try_build()
        return layer

    def _try_build(self) -> None:
        """Build every layer whose input shape is known (errors for incompatible layers)."""
        shape = self._batch_input_shape
        self.built = False
        self.output_shape = None
        if shape is None:
            return
        for layer in self._layers:
            if len(shape) and shape[-1] is None and not isinstance(layer, _NO_FEATURES_NEEDED):
                return
            shape = layer._build_for(shape)
        self.output_shape = shape
        self.built = bool(self._layers)

    def build(self, input_shape: Any = None) -> None:
        """Build the model for inputs of ``input_shape`` (batch axis included)."""
        if input_shape is not None:
            self._batch_input_shape = normalize_shape(input_shape, "input_shape")
        if self._batch_input_shape is None:
            raise ValueError("build() needs an input_shape (batch axis included)")
        self._try_build()
        if not self.built:
            raise ValueError(f"cannot build the model from input shape "
                             f"{self._batch_input_shape}: a feature dimension is unknown")

    def _ensure_built(self, x: np.ndarray) -> None:
        if not self._layers:
            raise ValueError("the model has no layers")
        shape = (None,) + tuple(x.shape[1:])
        if self.built:
            spec = self._batch_input_shape
            assert spec is not None
            ok = len(spec) == len(shape) and all(
                s is None or s == d for s, d in zip(spec[1:], shape[1:], strict=True))
            if not ok:
                first = self._layers[0]
                raise ValueError(f"the model expects inputs of shape {spec} (first layer "
                                 f"{first.name!r}, {type(first).__name__}), got x of shape "
                                 f"{x.shape}")
            return
        if self._batch_input_shape is not None:
            spec = self._batch_input_shape
            if len(spec) != len(shape):
                raise ValueError(f"the model expects inputs of shape {spec}, got x of shape "
                                 f"{x.shape}")
            shape = tuple(d if s is None else s for s, d in zip(spec, shape, strict=True))
        self._batch_input_shape = (self._batch_input_shape or (None,))[:1] + shape[1:]
        self._try_build()
        if not self.built:
            raise ValueError(f"could not build the model for inputs of shape {x.shape}")

    # -- weights --------------------------------------------------------------------------
    @property
    def weights(self) -> list[Variable]:
        """All weights, layer by layer, in Keras's order."""
        return [v for layer in self._layers for v in layer.weights]

    @property
    def trainable_weights(self) -> list[Variable]:
        """Weights the optimizer updates."""
        if not self.trainable:
            return []
        return [v for layer in self._layers for v in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        """Weights the optimizer leaves alone."""
        if not self.trainable:
            return self.weights
        return [v for layer in self._layers for v in layer.non_trainable_weights]

    def _trainable_vars(self) -> list[Variable]:
        return self.trainable_weights

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights in Keras's layout and order (interchangeable with Keras's
        ``model.get_weights()`` for the same architecture)."""
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set all weights from arrays in Keras's layout and order (e.g. from a Keras model's
        ``get_weights()``); shapes are checked before anything is written."""
        if not self.built:
            raise ValueError("build the model (give it an input shape) before set_weights")
        ws = self.weights
        weights = weights_list(weights, "set_weights")
        if len(weights) != len(ws):
            raise ValueError(f"the model has {len(ws)} weight arrays, got {len(weights)}")
        assign_weights(ws, weights, lambda v: f"weight {v.path!r}")

    def count_params(self) -> int:
        """Total number of weights (Keras's count)."""
        return sum(layer.count_params() for layer in self._layers)

    def reset_states(self) -> None:
        """Zero the carried state of every stateful recurrent layer."""
        for layer in self._layers:
            layer.reset_states()

    # -- compile --------------------------------------------------------------------------
    def set_ops(self, ops: ModuleType) -> None:
        """Run the model's recurrent layers on the ops of ``ops``.

        Parameters
        ----------
        ops : module
            :mod:`fastrnn.functional` (the native kernels, every layer's default) or
            :mod:`fastrnn.reference` (the same functions in pure NumPy: slow, to time or check
            the kernels against the same model). The choice is no part of the model's config:
            layers added later, copies and loaded models start on :mod:`fastrnn.functional`.

        Raises
        ------
        TypeError
            If ``ops`` lacks one of the functions the layers call.
        """
        for layer in self._layers:
            if hasattr(layer, "set_ops"):
                layer.set_ops(ops)

    def quantize(self, mode: str | None = None, config: Any = None, filters: Any = None,
                 **kwargs: Any) -> None:
        """Quantize the recurrent layers for int8 inference (Keras 3's ``model.quantize``).

        Each SimpleRNN, LSTM and GRU layer (also inside Bidirectional) gets the policy
        ``"int8_from_<its policy>"`` and its inference (``predict``, ``evaluate``, calling
        the model, ``stream()``) runs fastrnn's int8 kernels on weights quantized once per
        output channel. The float32 weights stay (saved, trainable no more: ``fit`` then
        raises a ValueError naming the layer). Other layers (Dense, Embedding) keep
        computing in float32, where Keras would quantize Dense too.

        Parameters
        ----------
        mode : {"int8"}
        config, filters
            Keras's arguments: ``config`` must be None; ``filters`` (a layer name regex, a
            list of them, or a callable taking the layer) selects the layers.

        Raises
        ------
        ValueError
            For an unbuilt model, another mode, a layer quantized already or a float64 one.
        """
        import re

        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to Sequential: {kwargs}")
        if not self.built:
            raise ValueError("Cannot quantize a model that isn't yet built: give it an input "
                             "shape (or fit/predict once) first")

        def selected(layer: Layer) -> bool:
            if filters is None:
                return True
            if callable(filters):
                return bool(filters(layer))
            pats = [filters] if isinstance(filters, str) else list(filters)
            return any(re.search(p, layer.name) for p in pats)

        for layer in self._layers:
            if hasattr(layer, "quantize") and selected(layer):
                layer.quantize(mode, config=config)

    def stream(self, batch_size: int = 1) -> Any:
        """Open a streaming session: feed the model one timestep at a time.

        Parameters
        ----------
        batch_size : int
            Independent streams advanced together.

        Returns
        -------
        fastrnn.streaming.StreamSession
            ``step(x_t)`` returns that step's output of the last layer; ``run(chunk)`` steps
            through a chunk; ``reset()``; ``state`` (readable and assignable). Only causal
            layers stream (unidirectional RNN/LSTM/GRU, Dense, Embedding, Dropout); others
            raise a ValueError naming the layer. The recurrent layers step in their
            precision: bfloat16 under the ``"mixed_bfloat16"`` policy, int8 after
            :meth:`quantize` (all of them in the same one).
        """
        from ..streaming import StreamSession

        precision = self._recurrent_precision()
        if precision == "float32":
            return StreamSession(self, batch_size)
        return StreamSession(self, batch_size, precision=precision)

    def _recurrent_precision(self) -> str:
        """The one ``precision=`` of the recurrent layers (``"float32"`` without any): the
        ``"mixed_bfloat16"`` policy's ``"bfloat16"``, or ``"int8"`` after :meth:`quantize`.

        Raises
        ------
        ValueError
            When the recurrent layers differ (a stream runs one precision).
        """
        precs = {layer.name: layer.precision for layer in self._layers
                 if hasattr(layer, "precision")}
        if len(set(precs.values())) > 1:
            raise ValueError("a stream runs every recurrent layer in one precision; the "
                             "layers have " + ", ".join(f"{n}: {p}" for n, p in precs.items()))
        return next(iter(precs.values()), "float32")

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, loss_weights: Any = None,
                metrics: Any = None, weighted_metrics: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: Any = "auto",
                auto_scale_loss: bool = True) -> None:
        """Configure training.

        Parameters
        ----------
        optimizer : str or Optimizer
            ``'sgd'``, ``'adam'``, ``'rmsprop'``, ``'adagrad'`` or an instance.
        loss : str or Loss
            ``'mse'``, ``'mae'``, ``'huber'``, ``'binary_crossentropy'``,
            ``'categorical_crossentropy'``, ``'sparse_categorical_crossentropy'``, a
            :class:`fastrnn.keras.losses.Loss`, ...
        metrics : list, optional
            ``'accuracy'`` (resolved from the data's shapes as Keras does), ``'mae'``,
            ``'mse'``, metric objects or functions.
        loss_weights, weighted_metrics
            Accepted for compatibility; both must be None.
        run_eagerly, steps_per_execution, jit_compile, auto_scale_loss
            Accepted for compatibility.
        """
        if loss_weights is not None:
            raise NotImplementedError("loss_weights is not supported (Sequential has one output)")
        if weighted_metrics is not None:
            raise NotImplementedError("weighted_metrics is not supported; use metrics=")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = loss
        self._loss_obj = None
        if loss is not None and not (isinstance(loss, str)
                                     and loss.lower() in ("crossentropy", "ce")):
            self._loss_obj = _losses.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, _metrics.Metric)) or callable(metrics):
            metrics = [metrics]
        elif isinstance(metrics, dict):
            raise NotImplementedError("metrics as a dict is not supported (one output)")
        elif not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics must be a list of metric names or objects, got "
                            f"{metrics!r}")
        for m in metrics:  # fail early on unknown names and odd objects
            if isinstance(m, str):
                if m.lower() not in ("accuracy", "acc"):
                    _metrics.get(m)
            elif not (isinstance(m, _metrics.Metric) or callable(m)):
                raise TypeError(f"metrics entries must be names, Metric objects or functions, "
                                f"got {m!r}")
        self._metric_ids = list(metrics)
        self._metric_objs = None
        self.compiled = True

    def _compile_config(self) -> dict | None:
        if not self.compiled or self.optimizer is None:
            return None
        try:
            opt = _optimizers.serialize(self.optimizer)
            if isinstance(self.loss, str) or self.loss is None:
                loss: Any = self.loss
            else:
                loss = _losses.serialize(_losses.get(self.loss))
        except ValueError:
            return None
        mets = [m for m in self._metric_ids if isinstance(m, str)]
        if len(mets) != len(self._metric_ids):
            return None
        return {"optimizer": opt, "loss": loss, "metrics": mets}

    def _compile_from_config(self, cfg: dict) -> None:
        loss = cfg.get("loss")
        if isinstance(loss, dict):
            loss = _losses.deserialize(loss)
        self.compile(optimizer=_optimizers.deserialize(cfg["optimizer"]), loss=loss,
                     metrics=list(cfg.get("metrics") or []))

    @property
    def metrics(self) -> list[Any]:
        """The loss tracker and the compiled metrics (after the first batch)."""
        return [self._loss_tracker] + list(self._metric_objs or [])

    @property
    def metrics_names(self) -> list[str]:
        """Names of :attr:`metrics`."""
        return [m.name for m in self.metrics]

    def _resolve(self, y: np.ndarray) -> None:
        """Resolve 'crossentropy' and 'accuracy' from the shapes of y and the output."""
        assert self.output_shape is not None
        probe = np.empty((0,) + tuple(1 if s is None else s for s in self.output_shape[1:]))
        ytrue = np.empty((0,) + y.shape[1:])
        if self._loss_obj is None and self.loss is not None:
            is_binary, is_sparse = _metrics.is_binary_or_sparse_categorical(ytrue, probe)
            self._loss_obj = (_losses.BinaryCrossentropy() if is_binary else
                              _losses.SparseCategoricalCrossentropy() if is_sparse else
                              _losses.CategoricalCrossentropy())
        if self._metric_objs is None:
            self._metric_objs = [_metrics.get(m, ytrue, probe) for m in self._metric_ids]

    # -- compute --------------------------------------------------------------------------
    def _forward(self, x: np.ndarray, training: bool) -> tuple[np.ndarray, np.ndarray | None]:
        mask = None
        layers = self._layers
        for i, layer in enumerate(layers):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if (isinstance(layer, Embedding) and x.ndim == 2 and nxt is not None
                    and hasattr(nxt, "accepts_tokens")
                    and nxt.accepts_tokens(layer, x.shape[1], x.shape[0])):
                # the recurrent layer folds the lookup into its input projection; its
                # backward sets the Embedding's gradient and stops there
                x, mask = layer.tokens(x)
            else:
                x, mask = layer.forward(x, mask, training)
        return x, mask

    def _backward(self, g: np.ndarray) -> None:
        # a layer's input gradient matters once a trainable weight precedes the layer
        need_dx, need = [], False
        for layer in self._layers:
            need_dx.append(need)
            need = need or bool(layer.trainable_weights)
        for layer, need in zip(reversed(self._layers), reversed(need_dx), strict=True):
            g = layer.backward(g, need)
            if g is None:
                break

    def __call__(self, x: Any, training: bool = False) -> np.ndarray:
        """Forward pass on a NumPy batch."""
        x = self._prepare_x(_as_array(x, "x"))
        self._ensure_built(x)
        return self._forward(x, bool(training))[0]

    def _prepare_x(self, x: np.ndarray) -> np.ndarray:
        if not self._layers:
            raise ValueError("the model has no layers")
        first = self._layers[0]
        if isinstance(first, Embedding):
            if x.dtype.kind == "f":
                return x.astype(np.int64)
            return x
        return x if x.dtype == np.dtype(first.dtype) else x.astype(first.dtype)

    def _prepare_y(self, y: np.ndarray) -> np.ndarray:
        if isinstance(self._loss_obj, _losses.SparseCategoricalCrossentropy):
            return y
        dt = self._layers[-1].dtype if self._layers else floatx()
        return y if y.dtype == np.dtype(dt) else y.astype(dt)

    def _train_batch(self, xb: np.ndarray, yb: np.ndarray, swb: np.ndarray | None,
                     variables: list[Variable]) -> None:
        out, mask = self._forward(xb, True)
        assert self._loss_obj is not None
        loss, g = self._loss_obj.value_and_grad(yb, out, swb, mask)
        self._backward(g)
        grads = []
        for v in variables:
            if v.grad is None:
                raise RuntimeError(f"no gradient reached weight {v.path!r}")
            grads.append(v.grad)
        assert self.optimizer is not None
        self.optimizer.apply([v.value for v in variables], grads)
        for v in variables:
            v.grad = None
            v.version += 1  # prepared (bfloat16/int8) weights are made again
        self._loss_tracker.update(loss, xb.shape[0])
        self._update_metrics(yb, out, swb, mask)

    def _update_metrics(self, yb, out, swb, mask) -> None:
        for m in self._metric_objs or []:
            if isinstance(m, _metrics.MeanMetricWrapper):
                m.update_state(yb, out, swb, mask=mask)
            else:
                m.update_state(yb, out, swb)

    def _logs(self, prefix: str = "") -> dict[str, float]:
        """Running loss and metrics, keys sorted as Keras 3 reports them."""
        logs = {prefix + "loss": float(self._loss_tracker.result())}
        for m in self._metric_objs or []:
            logs[prefix + m.name] = float(m.result())
        return dict(sorted(logs.items()))

    def _reset_metrics(self) -> None:
        self._loss_tracker.reset_state()
        for m in self._metric_objs or []:
            m.reset_state()

    # -- data -----------------------------------------------------------------------------
    def _standardize(self, x: Any, y: Any, sample_weight: Any, class_weight: Any = None,
                     need_y: bool = True, what: str = "fit"
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Checked arrays for training/evaluation: x, y, sample weights (None if not given).

        Training and evaluation refuse empty data and non-finite values in x, y or
        sample_weight (they would silently turn the loss and then the weights into NaN);
        ``predict`` takes any values and propagates NaN/inf per sample.
        """
        if x is not None and y is None and isinstance(x, tuple) and len(x) in (2, 3):
            x, y, *rest = x
            sample_weight = rest[0] if rest else sample_weight
        x_in = _as_array(x, "x")
        if len(x_in) == 0:
            raise ValueError(f"{what}: x is empty (0 samples); it needs at least one sample")
        _check_finite(x_in, "x", what)
        xa = self._prepare_x(x_in)
        ya = None
        if y is not None:
            ya = _as_array(y, "y")
            _check_finite(ya, "y", what)
            if len(ya) != len(xa):
                raise ValueError(f"x and y must have the same number of samples: x has "
                                 f"{len(xa)}, y has {len(ya)}")
        elif need_y:
            raise ValueError("y is required (fastrnn does not take datasets or generators; "
                             "pass NumPy arrays)")
        sw = None
        if sample_weight is not None:
            sw = _as_array(sample_weight, "sample_weight")
            if sw.ndim == 0 or len(sw) != len(xa):
                raise ValueError(f"sample_weight must have one entry per sample ({len(xa)}), "
                                 f"got shape {sw.shape}")
            _check_finite(sw, "sample_weight", what)
            sw = sw.astype(np.float64, copy=False)
        if class_weight is not None:
            if ya is None:
                raise ValueError("class_weight needs y")
            if not isinstance(class_weight, dict):
                raise TypeError(f"class_weight must be a dict mapping class index to weight, "
                                f"got {type(class_weight).__name__}")
            labels = ya
            if labels.ndim > 1 and labels.shape[-1] > 1:
                labels = labels.argmax(axis=-1)
            elif labels.ndim > 1:
                labels = labels[..., 0]
            cw = np.vectorize(lambda c: float(class_weight.get(int(c), 1.0)), otypes=[float])(
                labels.astype(np.int64)) if labels.size else np.ones(labels.shape)
            sw = cw if sw is None else sw.reshape(sw.shape + (1,) * (cw.ndim - sw.ndim)) * cw
        self._ensure_built(xa)
        return xa, ya, sw

    @staticmethod
    def _batches(n: int, batch_size: int, order: np.ndarray | None):
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield (slice(start, stop) if order is None else order[start:stop])

    def _check_batch_size(self, batch_size: Any, default: int = 32) -> int:
        if batch_size is None:
            return default
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        return int(batch_size)

    # -- fit / evaluate / predict ---------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Any = None, validation_split: float = 0.0,
            validation_data: Any = None, shuffle: Any = True, class_weight: Any = None,
            sample_weight: Any = None, initial_epoch: int = 0, steps_per_epoch: Any = None,
            validation_steps: Any = None, validation_batch_size: Any = None,
            validation_freq: int = 1) -> History:
        """Train the model (Keras's ``fit``).

        Parameters
        ----------
        x, y : array-like
            Inputs ``(samples, ...)`` and targets.
        batch_size : int, default 32
        epochs : int
        verbose : 'auto', 0, 1 or 2
            0 silent, 1 progress bar, 2 one line per epoch ('auto' is 1).
        callbacks : list of Callback, optional
        validation_split : float
            Fraction of the data (the last samples, before shuffling) held out.
        validation_data : tuple, optional
            ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)``; overrides
            ``validation_split``.
        shuffle : bool
            Reshuffle the training samples every epoch.
        class_weight : dict, optional
            Class index -> weight of its samples in the loss.
        sample_weight : array-like, optional
            Per-sample loss weights.
        initial_epoch : int
            Epoch to start from (for resuming).
        validation_batch_size : int, optional
        validation_freq : int
            Validate every that many epochs.

        Returns
        -------
        History
            ``history.history`` maps ``'loss'``, metric names and ``'val_*'`` to per-epoch
            values.
        """
        if not self.compiled or self.optimizer is None:
            raise RuntimeError("call compile(optimizer, loss, ...) before fit()")
        if self.loss is None:
            raise ValueError("compile() was called without a loss; fit() needs one")
        if steps_per_epoch is not None or validation_steps is not None:
            raise NotImplementedError("steps_per_epoch/validation_steps need dataset inputs, "
                                      "which fastrnn does not take; pass NumPy arrays")
        verbose = _check_verbose(verbose)
        batch_size = self._check_batch_size(batch_size)
        validation_split = check_float("fit", "validation_split", validation_split, 0.0, 1.0,
                                       hi_open=True)
        epochs = check_int("fit", "epochs", epochs, 0)
        initial_epoch = check_int("fit", "initial_epoch", initial_epoch, 0)
        validation_freq = check_int("fit", "validation_freq", validation_freq, 1)
        xa, ya, sw = self._standardize(x, y, sample_weight, class_weight, what="fit")
        assert ya is not None
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (x_val, y_val) or (x_val, y_val, "
                                 "sample_weight_val)")
            vx, vy, vsw = self._standardize(validation_data[0], validation_data[1],
                                            validation_data[2] if len(validation_data) == 3
                                            else None, what="fit (validation_data)")
            val = (vx, vy, vsw)
        elif validation_split:
            split = int(math.ceil(len(xa) * (1.0 - validation_split)))
            if split == 0 or split == len(xa):
                raise ValueError(f"validation_split={validation_split} leaves no samples for "
                                 f"{'training' if split == 0 else 'validation'} out of "
                                 f"{len(xa)}")
            val = (xa[split:], ya[split:], None if sw is None else sw[split:])
            xa, ya, sw = xa[:split], ya[:split], None if sw is None else sw[:split]
        self._resolve(ya)
        ya = self._prepare_y(ya)
        if val is not None:
            val = (val[0], self._prepare_y(val[1]), val[2])
        variables = self._trainable_vars()
        n = len(xa)
        steps = math.ceil(n / batch_size)
        history = History()
        cbs_list = _callback_list(callbacks)
        if verbose:
            cbs_list.insert(0, ProgbarLogger(verbose))
        cbs_list.append(history)
        cbs = CallbackList(cbs_list, model=self,
                           params={"epochs": epochs, "steps": steps, "verbose": verbose,
                                   "batch_size": batch_size, "samples": n})
        want_begin = cbs.has("on_train_batch_begin")
        want_end = cbs.has("on_train_batch_end")
        self.stop_training = False
        self.history = history
        cbs.on_train_begin()
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            cbs.on_epoch_begin(epoch)
            order = rng().permutation(n) if shuffle else None
            for step, idx in enumerate(self._batches(n, batch_size, order)):
                if want_begin:
                    cbs.on_train_batch_begin(step)
                self._train_batch(xa[idx], ya[idx], None if sw is None else sw[idx], variables)
                if want_end:
                    cbs.on_train_batch_end(step, self._logs())
                if self.stop_training:
                    break
            logs = self._logs()
            if val is not None and (epoch + 1) % validation_freq == 0:
                vlogs = self._evaluate_arrays(*val, self._check_batch_size(
                    validation_batch_size, batch_size))
                logs.update({"val_" + k: v for k, v in vlogs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def _evaluate_arrays(self, x: np.ndarray, y: np.ndarray, sw: np.ndarray | None,
                         batch_size: int) -> dict[str, float]:
        self._reset_metrics()
        assert self._loss_obj is not None
        for idx in self._batches(len(x), batch_size, None):
            xb, yb = x[idx], y[idx]
            swb = None if sw is None else sw[idx]
            out, mask = self._forward(xb, False)
            loss = self._loss_obj(yb, out, swb) if mask is None else \
                self._loss_obj.value_and_grad(yb, out, swb, mask)[0]
            self._loss_tracker.update(float(loss), len(xb))
            self._update_metrics(yb, out, swb, mask)
        return self._logs()

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", sample_weight: Any = None, steps: Any = None,
                 callbacks: Any = None, return_dict: bool = False) -> Any:
        """Loss and metrics on data, in inference mode.

        Returns
        -------
        float, list or dict
            The loss when there are no metrics, else ``[loss, *metrics]`` (or a dict with
            ``return_dict=True``).
        """
        if not self.compiled or self.loss is None:
            raise RuntimeError("call compile(optimizer, loss, ...) before evaluate()")
        if steps is not None:
            raise NotImplementedError("steps= needs dataset inputs; pass NumPy arrays")
        verbose = _check_verbose(verbose)
        batch_size = self._check_batch_size(batch_size)
        xa, ya, sw = self._standardize(x, y, sample_weight, what="evaluate")
        assert ya is not None
        self._resolve(ya)
        ya = self._prepare_y(ya)
        cbs = CallbackList(_callback_list(callbacks), model=self)
        cbs.on_test_begin()
        t0 = time.perf_counter()
        logs = self._evaluate_arrays(xa, ya, sw, batch_size)
        cbs.on_test_end(logs)
        if verbose:
            _print_oneline(math.ceil(len(xa) / batch_size), time.perf_counter() - t0, logs,
                           len(xa))
        return self._result(logs, return_dict)

    def _result(self, logs: dict[str, float], return_dict: bool) -> Any:
        """Keras's return value: a dict, the loss alone, or [loss, *metrics]."""
        if return_dict:
            return logs
        vals = [logs["loss"]] + [logs[m.name] for m in self._metric_objs or []]
        return vals[0] if len(vals) == 1 else vals

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto",
                steps: Any = None, callbacks: Any = None) -> np.ndarray:
        """Outputs for ``x``, computed batch by batch in inference mode (no caches kept)."""
        if steps is not None:
            raise NotImplementedError("steps= needs dataset inputs; pass NumPy arrays")
        verbose = _check_verbose(verbose)
        batch_size = self._check_batch_size(batch_size)
        xa = self._prepare_x(_as_array(x, "x"))
        self._ensure_built(xa)
        cbs = CallbackList(_callback_list(callbacks), model=self)
        cbs.on_predict_begin()
        t0 = time.perf_counter()
        outs = []
        for i, idx in enumerate(self._batches(len(xa), batch_size, None)):
            cbs.on_predict_batch_begin(i)
            outs.append(np.ascontiguousarray(self._forward(xa[idx], False)[0]))
            cbs.on_predict_batch_end(i, {"outputs": outs[-1]})
        cbs.on_predict_end()
        if verbose:
            _print_oneline(len(outs), time.perf_counter() - t0, {}, len(xa))
        if not outs:
            assert self.output_shape is not None
            return np.empty((0,) + tuple(s or 0 for s in self.output_shape[1:]),
                            dtype=self._layers[-1].dtype)
        return np.concatenate(outs, axis=0)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        """Outputs for one batch."""
        return self(x)

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: Any = None, return_dict: bool = False) -> Any:
        """One optimisation step on one batch; returns the loss (and metrics) of that batch."""
        if not self.compiled or self.loss is None or self.optimizer is None:
            raise RuntimeError("call compile(optimizer, loss, ...) before train_on_batch()")
        xa, ya, sw = self._standardize(x, y, sample_weight, class_weight, what="train_on_batch")
        assert ya is not None
        self._resolve(ya)
        self._reset_metrics()
        self._train_batch(xa, self._prepare_y(ya), sw, self._trainable_vars())
        return self._result(self._logs(), return_dict)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                      return_dict: bool = False) -> Any:
        """Loss (and metrics) on one batch, in inference mode."""
        return self.evaluate(x, y, batch_size=max(len(_as_array(x, "x")), 1), verbose=0,
                             sample_weight=sample_weight, return_dict=return_dict)

    # -- summary --------------------------------------------------------------------------
    def summary(self, line_length: int | None = None, positions: Sequence[float] | None = None,
                print_fn: Any = None, expand_nested: bool = False, show_trainable: bool = False,
                layer_range: Any = None) -> None:
        """Print Keras 3's summary table: layer (type), output shape, parameter count, totals.

        Parameters
        ----------
        line_length : int, optional
            Table width (default: 88, or the terminal width minus 4 if smaller).
        positions : list of float, optional
            Relative column ends (default ``[0.45, 0.80, 1.0]``).
        print_fn : callable, optional
            Receives the whole summary as one string (default: print to stdout).
        """
        text = _summary_text(self, line_length, positions)
        if print_fn is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            print_fn(text)

    # -- saving ---------------------------------------------------------------------------
    def save(self, filepath: Any, overwrite: bool = True, include_optimizer: bool = True,
             **kwargs: Any) -> None:
        """Save architecture, weights, compile settings and optimizer state to one file.

        The file is a zip archive with a JSON config and ``.npy`` arrays (no pickle); it is
        written to a temporary file and renamed, so a failure never destroys an existing
        model. An existing file keeps its permission bits (a new one gets the umask's mode);
        when ``filepath`` is a symlink, the file it points to is written and the link stays.
        Read it back with :func:`load_model`.
        """
        _save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath: Any, overwrite: bool = True) -> None:
        """Save only the weights (same file format; read with :meth:`load_weights`)."""
        _save_model(self, filepath, overwrite=overwrite, weights_only=True)

    def load_weights(self, filepath: Any) -> None:
        """Load weights from a file written by :meth:`save` or :meth:`save_weights`."""
        _load_weights(self, filepath)

    def get_config(self) -> dict:
        """The architecture as a JSON-compatible dict."""
        cfg: dict[str, Any] = {"name": self.name,
                               "layers": [serialize(layer) for layer in self._layers]}
        if self._input_layer is not None:
            cfg["input"] = self._input_layer.get_config()
        if self._batch_input_shape is not None:
            cfg["build_input_shape"] = list(self._batch_input_shape)
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        """Rebuild a model from :meth:`get_config`'s output (built-in layers only)."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("a Sequential config must be a dict with a 'layers' list")
        model = cls(name=config.get("name"))
        inp = config.get("input")
        if inp is not None:
            if not isinstance(inp, dict):
                raise ValueError("invalid input config")
            model.add(InputLayer(**inp))
        for lc in config["layers"]:
            model.add(deserialize(lc))
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            model.build(shape)
        return model

    def __repr__(self) -> str:
        return f"<Sequential name={self.name!r} layers={len(self._layers)} built={self.built}>"


# -- printing helpers --------------------------------------------------------------------

def _print_oneline(steps: int, dt: float, logs: dict, samples: int) -> None:
    per = dt / max(steps, 1)
    t = f"{per:.0f}s/step" if per >= 1 else f"{per * 1e3:.0f}ms/step" if per >= 1e-3 else \
        f"{per * 1e6:.0f}us/step"
    rate = f" - {samples / dt:,.0f} samples/s" if dt > 0 else ""
    mets = "".join(f" - {k}: {v:.4f}" if abs(v) > 1e-3 else f" - {k}: {v:.4e}"
                   for k, v in logs.items())
    print(f"{steps}/{steps} {'━' * 20} {dt:.0f}s {t}{rate}{mets}")


def _readable_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n / 1024 < 1:
            return f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PB"


def _ratio_reduce(total: int, widths: list[int]) -> list[int]:
    """rich's ratio_reduce with equal ratios (how Keras's table shrinks columns)."""
    ratios = [1] * len(widths)
    total_ratio = sum(ratios)
    remaining = total
    out = []
    for ratio, w in zip(ratios, widths, strict=True):
        distributed = min(w, round(ratio * remaining / total_ratio))
        out.append(w - distributed)
        remaining -= distributed
        total_ratio -= ratio
    return out


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    words = text.split(" ")
    lines, cur = [], ""
    for w in words:
        while len(w) > width:
            if cur:
                lines.append(cur)
                cur = ""
            lines.append(w[:width])
            w = w[width:]
        if not cur:
            cur = w
        elif len(cur) + 1 + len(w) <= width:
            cur += " " + w
        else:
            lines.append(cur)
            cur = w
    if cur:
        lines.append(cur)
    return lines


def _fmt_shape(shape: tuple | None) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")"


def _summary_text(model: Sequential, line_length: int | None,
                  positions: Sequence[float] | None) -> str:
    if line_length is None:
        line_length = min(88, shutil.get_terminal_size().columns - 4)
    positions = list(positions or [0.45, 0.80, 1.0])
    if positions[-1] <= 1:
        positions = [p * line_length for p in positions]
    widths, cur = [], 0
    for p in positions:
        w = int(p) - cur
        if w < 4:
            raise ValueError("insufficient width to print the summary")
        widths.append(w)
        cur += w
    excess = sum(widths) + 4 - line_length
    if excess > 0:
        widths = _ratio_reduce(excess, widths)
    header = ["Layer (type)", "Output Shape", "Param #"]
    align = ["l", "l", "r"]
    rows = []
    for layer in model.layers:
        name = f"{layer.name} ({type(layer).__name__})"
        shape = _fmt_shape(layer.output_shape) if layer.built else "?"
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        rows.append([name, shape, params])

    def cell_lines(texts: list[str]) -> list[str]:
        cols = [_wrap(t, w - 2) for t, w in zip(texts, widths, strict=True)]
        height = max(len(c) for c in cols)
        out = []
        for i in range(height):
            parts = []
            for c, w, a in zip(cols, widths, align, strict=True):
                t = c[i] if i < len(c) else ""
                parts.append(" " + (t.rjust(w - 2) if a == "r" else t.ljust(w - 2)) + " ")
            out.append(parts)
        return out

    lines = [f'Model: "{model.name}"']
    lines.append("┏" + "┳".join("━" * w for w in widths) + "┓")
    for parts in cell_lines(header):
        lines.append("┃" + "┃".join(parts) + "┃")
    lines.append("┡" + "╇".join("━" * w for w in widths) + "┩")
    for i, r in enumerate(rows):
        for parts in cell_lines(r):
            lines.append("│" + "│".join(parts) + "│")
        if i != len(rows) - 1:
            lines.append("├" + "┼".join("─" * w for w in widths) + "┤")
    lines.append("└" + "┴".join("─" * w for w in widths) + "┘")
    trainable = model.trainable_weights
    non_trainable = model.non_trainable_weights
    t_count = sum(math.prod(v.shape) for v in trainable)
    n_count = sum(math.prod(v.shape) for v in non_trainable)
    t_size = sum(math.prod(v.shape) * v.dtype.itemsize for v in trainable)
    n_size = sum(math.prod(v.shape) * v.dtype.itemsize for v in non_trainable)
    o_count = o_size = 0
    opt = model.optimizer
    if model.compiled and opt is not None and opt.built:
        ov = opt.variables
        o_count = sum(int(np.size(a)) for a in ov)
        # Keras counts its iteration counter as int64 and the rest in the variables' dtype
        o_size = sum(a.nbytes for a in ov)
    lines.append(f" Total params: {t_count + n_count + o_count:,} "
                 f"({_readable_size(t_size + n_size + o_size)})")
    lines.append(f" Trainable params: {t_count:,} ({_readable_size(t_size)})")
    lines.append(f" Non-trainable params: {n_count:,} ({_readable_size(n_size)})")
    if o_count:
        lines.append(f" Optimizer params: {o_count:,} ({_readable_size(o_size)})")
    return "\n".join(lines) + "\n"
