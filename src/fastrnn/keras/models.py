"""Keras-compatible models: :class:`Sequential`, the functional :class:`Model`,
:func:`load_model`, global settings.

Typical Keras code runs after changing its import::

    import fastrnn.keras as keras          # was: import keras
    from fastrnn.keras import layers

    model = keras.Sequential()
    model.add(layers.Embedding(1000, 64))
    model.add(layers.LSTM(128))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.summary()
    history = model.fit(x, y, batch_size=32, epochs=5, validation_split=0.1)

    inputs = keras.Input(shape=(None, 8))               # the functional API
    seq, h, c = layers.LSTM(32, return_sequences=True, return_state=True)(inputs)
    model = keras.Model(inputs, [layers.Dense(1)(seq), h])

Both kinds share one training loop (``_Trainer``): ``compile``, ``fit``, ``evaluate``,
``predict``, weights, ``summary`` and saving behave the same; a functional model takes lists or
dicts of arrays for several inputs and outputs.

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

from . import data_adapters as _data
from . import keras_files as _files
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from . import saving as _saving
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
from .callbacks import CallbackList, History
from .functional import Graph, _as_tensor_list
from .layers import (
    Activation,
    Dropout,
    Embedding,
    Flatten,
    Input,
    InputLayer,
    Masking,
    RepeatVector,
    Reshape,
    deserialize,
    serialize,
)
from .saving import ModelFileError
from .symbolic import KerasTensor, Node, is_symbolic, symbolic_call

__all__ = ["Functional", "Model", "ModelFileError", "Sequential", "floatx", "load_model",
           "set_floatx", "set_random_seed"]

_NO_FEATURES_NEEDED = (Embedding, Dropout, Activation, Masking, Flatten, Reshape, RepeatVector)


def load_model(filepath: Any, compile: bool = True, safe_mode: bool = True) -> Any:
    """Load a model saved with :meth:`Sequential.save` or :meth:`Model.save`.

    Parameters
    ----------
    filepath : str or PathLike
        fastrnn's own model file, a ``.keras`` file (Keras 3's, or fastrnn's in that format)
        or a legacy Keras HDF5 model (``.h5``): told apart by content, see
        :mod:`fastrnn.keras.keras_files`.
    compile : bool
        Restore the optimizer (with its state), loss and metrics when they were saved.

    safe_mode : bool
        Refuse Lambda layers, whose functions would be imported (code run) to rebuild them;
        False allows them, for files you trust (as Keras). Nothing else is ever executed.

    Returns
    -------
    Sequential or Model

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
    return _files.load_model(filepath, _MODEL_CLASSES, compile=compile, safe_mode=safe_mode)


def _as_array(a: Any, what: str) -> np.ndarray:
    if a is None:
        raise ValueError(f"{what} is required")
    if isinstance(a, (list, tuple)) and a and all(isinstance(e, np.ndarray) for e in a) \
            and len({e.shape for e in a}) > 1:
        raise ValueError(f"{what}: got a list of arrays of different shapes, but the model has "
                         "one input/output (a Sequential model has one of each)")
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


_check_verbose = _data._check_verbose


def _take(arrays: list[Any], idx: Any) -> list[Any]:
    """The batch ``idx`` of each array (None stays None)."""
    return [None if a is None else a[idx] for a in arrays]


_callback_list = _data._callbacks


class _Tracker:
    """Batch-size-weighted running mean of the loss (Keras's loss tracker)."""

    direction = "down"

    def __init__(self, name: str = "loss") -> None:
        self.name = name
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


class _Trainer:
    """Keras's training API (compile, fit, evaluate, predict, weights, saving), shared by
    :class:`Sequential` and the functional :class:`Model`: one training loop for both.

    A model provides ``layers``, ``_input_names``/``_output_names``, ``_prepare_inputs``
    (checks and casts the input arrays, building the model if needed), ``_output_specs``
    (each output's shape and dtype), ``_run(xs, training) -> (outs, masks)`` and
    ``_run_backward(grads)`` (sets every trainable weight's ``grad``).
    """

    def _init_training(self) -> None:
        self.optimizer: _optimizers.Optimizer | None = None
        self.loss: Any = None
        self.loss_weights: Any = None
        self._loss_objs: list[_losses.Loss | None] | None = None
        self._loss_ids: list[Any] = []
        self._loss_w: list[float] = []
        self._metric_ids: list[list[Any]] = []
        self._metric_objs: list[_metrics.Metric] | None = None
        self._metric_out: list[int] = []
        self._loss_tracker = _Tracker()
        self._out_trackers: list[_Tracker] = []
        self.compiled = False
        self.stop_training = False
        self.history: History | None = None

    # -- weights --------------------------------------------------------------------------
    def get_layer(self, name: str | None = None, index: int | None = None) -> Any:
        """A layer by name or by index (Keras's ``get_layer``)."""
        layers = self.layers
        if index is not None:
            if name is not None:
                raise ValueError("pass either name or index, not both")
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"index {index} is out of range for {len(layers)} layers")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: "
                         f"{', '.join(l.name for l in layers)}")

    @property
    def weights(self) -> list[Variable]:
        """All weights, layer by layer, in Keras's order."""
        return [v for layer in self.layers for v in layer.weights]

    @property
    def trainable_weights(self) -> list[Variable]:
        """Weights the optimizer updates."""
        if not self.trainable:
            return []
        return [v for layer in self.layers for v in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        """Weights the optimizer leaves alone."""
        if not self.trainable:
            return self.weights
        return [v for layer in self.layers for v in layer.non_trainable_weights]

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
        return sum(layer.count_params() for layer in self.layers)

    def reset_states(self) -> None:
        """Zero the carried state of every stateful recurrent layer."""
        for layer in self.layers:
            layer.reset_states()

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
        for layer in self.layers:
            if hasattr(layer, "set_ops"):
                layer.set_ops(ops)

    def quantize(self, mode: str | None = None, config: Any = None, filters: Any = None,
                 **kwargs: Any) -> None:
        """Quantize the recurrent layers for int8 inference (Keras 3's ``model.quantize``).

        Each SimpleRNN, LSTM and GRU layer (also inside Bidirectional and nested models) gets
        the policy ``"int8_from_<its policy>"`` and its inference (``predict``, ``evaluate``,
        calling the model, ``stream()``) runs fastrnn's int8 kernels on weights quantized
        once per output channel. The float32 weights stay (saved, trainable no more: ``fit``
        then raises a ValueError naming the layer). Other layers (Dense, Embedding) keep
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
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                             f"{kwargs}")
        if not self.built:
            raise ValueError("Cannot quantize a model that isn't yet built: give it an input "
                             "shape (or fit/predict once) first")

        def selected(layer: Any) -> bool:
            if filters is None:
                return True
            if callable(filters):
                return bool(filters(layer))
            pats = [filters] if isinstance(filters, str) else list(filters)
            return any(re.search(p, layer.name) for p in pats)

        for layer in self.layers:
            if hasattr(layer, "quantize") and selected(layer):
                layer.quantize(mode, config=config)

    def _recurrent_precision(self) -> str:
        """The one ``precision=`` of the recurrent layers (``"float32"`` without any): the
        ``"mixed_bfloat16"`` policy's ``"bfloat16"``, or ``"int8"`` after :meth:`quantize`.

        Raises
        ------
        ValueError
            When the recurrent layers differ (a stream runs one precision).
        """
        precs = {layer.name: layer.precision for layer in self.layers
                 if hasattr(layer, "precision")}
        if len(set(precs.values())) > 1:
            raise ValueError("a stream runs every recurrent layer in one precision; the "
                             "layers have " + ", ".join(f"{n}: {p}" for n, p in precs.items()))
        return next(iter(precs.values()), "float32")

    # -- the Layer protocol, so that a model can be called inside another model --------------
    @property
    def multi_input(self) -> bool:
        """Whether the model, used as a layer, takes a list of inputs."""
        return len(self._input_names) > 1

    @property
    def dtype(self) -> str:
        """The float type of the model's first output."""
        return self._output_specs()[0][1]

    def compute_mask(self, inputs: Any, mask: Any) -> Any:
        return None

    # -- compile --------------------------------------------------------------------------
    def _per_output(self, value: Any, what: str, allow_none: bool = False) -> list[Any]:
        """A compile argument as one entry per output: a single value (every output), a list
        (in output order) or a dict keyed by output name."""
        names = self._output_names
        if isinstance(value, dict):
            unknown = [k for k in value if k not in names]
            if unknown:
                raise ValueError(f"compile: {what} has keys {unknown} that are not output "
                                 f"names; the model's outputs are {names}")
            if not allow_none and len(value) != len(names):
                missing = [n for n in names if n not in value]
                raise ValueError(f"compile: {what} lacks an entry for outputs {missing}")
            return [value.get(n) for n in names]
        if isinstance(value, (list, tuple)) and len(names) == 1 and len(value) == 1 \
                and what != "metrics":
            return [value[0]]  # loss=["mse"] for one output
        if isinstance(value, (list, tuple)) and len(names) > 1:
            if len(value) != len(names):
                raise ValueError(f"compile: {what} has {len(value)} entries for "
                                 f"{len(names)} outputs {names}")
            return list(value)
        return [value] * len(names)

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, loss_weights: Any = None,
                metrics: Any = None, weighted_metrics: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: Any = "auto",
                auto_scale_loss: bool = True) -> None:
        """Configure training.

        Parameters
        ----------
        optimizer : str or Optimizer
            ``'sgd'``, ``'adam'``, ``'rmsprop'``, ``'adagrad'`` or an instance.
        loss : str, Loss, list or dict
            ``'mse'``, ``'mae'``, ``'huber'``, ``'binary_crossentropy'``,
            ``'categorical_crossentropy'``, ``'sparse_categorical_crossentropy'``, a
            :class:`fastrnn.keras.losses.Loss`, ...; for a model with several outputs, one
            loss for all, a list (output order) or a dict keyed by output name (an output
            without a loss does not train).
        loss_weights : float, list or dict, optional
            Weight of each output's loss in the total (default 1 each).
        metrics : list or dict, optional
            ``'accuracy'`` (resolved from the data's shapes as Keras does), ``'mae'``,
            ``'mse'``, metric objects or functions; for several outputs a list applies to
            every output, a dict keyed by output name (or a list of lists) to each its own.
        weighted_metrics
            Accepted for compatibility; must be None.
        run_eagerly, steps_per_execution, jit_compile, auto_scale_loss
            Accepted for compatibility.
        """
        if weighted_metrics is not None:
            raise NotImplementedError("weighted_metrics is not supported; use metrics=")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = loss
        self.loss_weights = loss_weights
        losses = self._per_output(loss, "loss", allow_none=True)
        for lo in losses:
            if lo is not None and not (isinstance(lo, str)
                                       and lo.lower() in ("crossentropy", "ce")):
                _losses.get(lo)  # fail early on unknown names
        if loss is not None and all(lo is None for lo in losses):
            raise ValueError("compile: no output has a loss")
        self._loss_ids = losses
        needs_shapes = any(isinstance(lo, str) and lo.lower() in ("crossentropy", "ce")
                           for lo in losses)
        self._loss_objs = None if needs_shapes else \
            [None if lo is None else _losses.get(lo) for lo in losses]
        weights = self._per_output(1.0 if loss_weights is None else loss_weights,
                                   "loss_weights", allow_none=True)
        self._loss_w = [check_float("compile", "loss_weights", 1.0 if w is None else w)
                        for w in weights]
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, _metrics.Metric)) or callable(metrics):
            metrics = [metrics]
        n_out = len(self._output_names)
        if isinstance(metrics, dict):
            per = [m if isinstance(m, (list, tuple)) else [] if m is None else [m]
                   for m in self._per_output(metrics, "metrics", allow_none=True)]
        elif isinstance(metrics, (list, tuple)):
            if n_out > 1 and metrics and all(isinstance(m, (list, tuple)) or m is None
                                             for m in metrics):
                per = [list(m or []) for m in self._per_output(list(metrics), "metrics")]
            else:
                per = [list(metrics) for _ in range(n_out)]
        else:
            raise TypeError(f"metrics must be a list of metric names or objects, got "
                            f"{metrics!r}")
        for ms in per:
            for m in ms:  # fail early on unknown names and odd objects
                if isinstance(m, str):
                    if m.lower() not in ("accuracy", "acc"):
                        _metrics.get(m)
                elif not (isinstance(m, _metrics.Metric) or callable(m)):
                    raise TypeError(f"metrics entries must be names, Metric objects or "
                                    f"functions, got {m!r}")
        self._metric_ids = per
        self._metric_objs = None
        self._out_trackers = [_Tracker(f"{n}_loss") for n in self._output_names] \
            if n_out > 1 else []
        self.compiled = True

    def _compile_config(self) -> dict | None:
        if not self.compiled or self.optimizer is None:
            return None

        def ser(lo: Any) -> Any:
            if isinstance(lo, str) or lo is None:
                return lo
            return _losses.serialize(_losses.get(lo))

        try:
            opt = _optimizers.serialize(self.optimizer)
            if isinstance(self.loss, dict):
                loss: Any = {k: ser(v) for k, v in self.loss.items()}
            elif isinstance(self.loss, (list, tuple)):
                loss = [ser(v) for v in self.loss]
            else:
                loss = ser(self.loss)
        except ValueError:
            return None
        if not all(isinstance(m, str) for ms in self._metric_ids for m in ms):
            return None
        cfg: dict[str, Any] = {"optimizer": opt, "loss": loss}
        if len(self._output_names) == 1:
            cfg["metrics"] = list(self._metric_ids[0])
        else:
            cfg["metrics"] = {n: list(ms) for n, ms in zip(self._output_names,
                                                           self._metric_ids, strict=True)}
            cfg["loss_weights"] = list(self._loss_w)
        return cfg

    def _compile_from_config(self, cfg: dict) -> None:
        def de(lo: Any) -> Any:
            return _losses.deserialize(lo) if isinstance(lo, dict) and "class_name" in lo \
                else lo

        loss = cfg.get("loss")
        if isinstance(loss, dict) and "class_name" not in loss:
            loss = {k: de(v) for k, v in loss.items()}
        elif isinstance(loss, list):
            loss = [de(v) for v in loss]
        else:
            loss = de(loss)
        mets = cfg.get("metrics")
        self.compile(optimizer=_optimizers.deserialize(cfg["optimizer"]), loss=loss,
                     metrics=mets if isinstance(mets, dict) else list(mets or []),
                     loss_weights=cfg.get("loss_weights"))

    @property
    def _loss_obj(self) -> Any:
        """The first output's resolved loss (None before the first fit/evaluate)."""
        return self._loss_objs[0] if self._loss_objs else None

    @property
    def metrics(self) -> list[Any]:
        """The loss tracker(s) and the compiled metrics (after the first batch)."""
        return [self._loss_tracker] + self._out_trackers + list(self._metric_objs or [])

    @property
    def metrics_names(self) -> list[str]:
        """Names of :attr:`metrics`."""
        return [m.name for m in self.metrics]

    def _resolve(self, ys: list[np.ndarray]) -> None:
        """Resolve 'crossentropy' and 'accuracy' from the shapes of y and the outputs."""
        specs = self._output_specs()
        probes = [np.empty((0,) + tuple(1 if s is None else s for s in shape[1:]))
                  for shape, _ in specs]
        trues = [np.empty((0,) + y.shape[1:]) for y in ys]
        if self._loss_objs is None:
            objs: list[Any] = []
            for lo, yt, pr in zip(self._loss_ids, trues, probes, strict=True):
                if lo is None:
                    objs.append(None)
                elif isinstance(lo, str) and lo.lower() in ("crossentropy", "ce"):
                    is_binary, is_sparse = _metrics.is_binary_or_sparse_categorical(yt, pr)
                    objs.append(_losses.BinaryCrossentropy() if is_binary else
                                _losses.SparseCategoricalCrossentropy() if is_sparse else
                                _losses.CategoricalCrossentropy())
                else:
                    objs.append(_losses.get(lo))
            self._loss_objs = objs
        if self._metric_objs is None:
            objs, outs = [], []
            multi = len(ys) > 1
            for i, ms in enumerate(self._metric_ids):
                for m in ms:
                    obj = _metrics.get(m, trues[i], probes[i])
                    if multi:
                        obj.name = f"{self._output_names[i]}_{obj.name}"
                    objs.append(obj)
                    outs.append(i)
            self._metric_objs, self._metric_out = objs, outs

    def _prepare_y(self, ys: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        assert self._loss_objs is not None
        for y, lo, (_, dt) in zip(ys, self._loss_objs, self._output_specs(), strict=True):
            if isinstance(lo, _losses.SparseCategoricalCrossentropy):
                out.append(y)
            else:
                out.append(y if y.dtype == np.dtype(dt) else y.astype(dt))
        return out

    # -- one step -------------------------------------------------------------------------
    def _losses_of(self, yb: list, outs: list, swb: list, masks: list, grad: bool
                   ) -> tuple[float, list[Any]]:
        """Total weighted loss, and each output's loss gradient (None: no loss there);
        updates the per-output loss trackers."""
        assert self._loss_objs is not None
        total, grads = 0.0, []
        n = len(outs[0]) if outs else 0
        for i, lo in enumerate(self._loss_objs):
            if lo is None:
                grads.append(None)
                continue
            if grad or masks[i] is not None:
                v, g = lo.value_and_grad(yb[i], outs[i], swb[i], masks[i])
            else:
                v, g = lo(yb[i], outs[i], swb[i]), None
            w = self._loss_w[i]
            total += w * float(v)
            grads.append(None if g is None or not grad else g if w == 1.0 else g * w)
            if self._out_trackers:
                self._out_trackers[i].update(float(v), n)
        return total, grads

    def _train_batch(self, xb: list[np.ndarray], yb: list[np.ndarray], swb: list[Any],
                     variables: list[Variable]) -> None:
        outs, masks = self._run(xb, True)
        loss, g = self._losses_of(yb, outs, swb, masks, True)
        self._run_backward(g)
        grads = []
        for v in variables:
            if v.grad is None:  # no output's loss depends on it (Keras skips it too)
                v.grad = np.zeros_like(v.value)
            grads.append(v.grad)
        assert self.optimizer is not None
        self.optimizer.apply([v.value for v in variables], grads)
        for v in variables:
            v.grad = None
            v.version += 1  # prepared (bfloat16/int8) weights are made again
        self._loss_tracker.update(loss, xb[0].shape[0])
        self._update_metrics(yb, outs, swb, masks)

    def _update_metrics(self, yb: list, outs: list, swb: list, masks: list) -> None:
        for m, i in zip(self._metric_objs or [], self._metric_out, strict=True):
            if isinstance(m, _metrics.MeanMetricWrapper):
                m.update_state(yb[i], outs[i], swb[i], mask=masks[i])
            else:
                m.update_state(yb[i], outs[i], swb[i])

    def _logs(self, prefix: str = "") -> dict[str, float]:
        """Running loss and metrics, keys sorted as Keras 3 reports them."""
        logs = {prefix + "loss": float(self._loss_tracker.result())}
        for t, lo in zip(self._out_trackers, self._loss_objs or [], strict=False):
            if lo is not None:
                logs[prefix + t.name] = float(t.result())
        for m in self._metric_objs or []:
            logs[prefix + m.name] = float(m.result())
        return dict(sorted(logs.items()))

    def _reset_metrics(self) -> None:
        self._loss_tracker.reset_state()
        for t in self._out_trackers:
            t.reset_state()
        for m in self._metric_objs or []:
            m.reset_state()

    # -- data -----------------------------------------------------------------------------
    def _split(self, value: Any, names: list[str], what: str, kind: str) -> list[Any]:
        """``x`` or ``y`` as one array per input/output: an array (one input), a list in
        order, or a dict keyed by input/output name."""
        n = len(names)
        if isinstance(value, dict):
            unknown = [k for k in value if k not in names]
            if unknown:
                raise ValueError(f"{what}: unknown keys {unknown} in the dict of {kind}s; the "
                                 f"model's {kind}s are {names}")
            missing = [k for k in names if k not in value]
            if missing:
                raise ValueError(f"{what}: the dict of {kind}s lacks {missing}; the model's "
                                 f"{kind}s are {names}")
            return [value[k] for k in names]
        if n == 1:
            if isinstance(value, (list, tuple)) and len(value) == 1 \
                    and isinstance(value[0], np.ndarray):
                return [value[0]]
            return [value]
        if not isinstance(value, (list, tuple)) or len(value) != n:
            got = (f"a list of {len(value)}" if isinstance(value, (list, tuple))
                   else type(value).__name__)
            raise ValueError(f"{what}: the model has {n} {kind}s {names}; pass a list of {n} "
                             f"arrays or a dict keyed by {kind} name, got {got}")
        return list(value)

    def _arrays(self, value: Any, names: list[str], what: str, kind: str, arg: str
                ) -> list[np.ndarray]:
        parts = self._split(value, names, what, kind)
        if len(parts) == 1:
            return [_as_array(parts[0], arg)]
        return [_as_array(p, f"{arg}[{k!r}]") for p, k in zip(parts, names, strict=True)]

    def _standardize(self, x: Any, y: Any, sample_weight: Any, class_weight: Any = None,
                     need_y: bool = True, what: str = "fit"
                     ) -> tuple[list[np.ndarray], list[np.ndarray] | None, list[Any]]:
        """Checked arrays for training/evaluation: inputs, targets and sample weights (one
        per output, None where not given).

        Training and evaluation refuse empty data and non-finite values in x, y or
        sample_weight (they would silently turn the loss and then the weights into NaN);
        ``predict`` takes any values and propagates NaN/inf per sample.
        """
        if x is not None and y is None and isinstance(x, tuple) and len(x) in (2, 3) \
                and len(self._input_names) == 1:
            x, y, *rest = x
            sample_weight = rest[0] if rest else sample_weight
        xs = self._arrays(x, self._input_names, what, "input", "x")
        n = len(xs[0])
        for a, nm in zip(xs, self._input_names, strict=True):
            if len(a) == 0:
                raise ValueError(f"{what}: x is empty (0 samples); it needs at least one "
                                 "sample")
            if len(a) != n:
                raise ValueError(f"{what}: all inputs need the same number of samples; "
                                 f"input {nm!r} has {len(a)}, the first has {n}")
            _check_finite(a, "x" if len(xs) == 1 else f"x[{nm!r}]", what)
        xs = self._prepare_inputs(xs)
        ys = None
        if y is not None:
            ys = self._arrays(y, self._output_names, what, "output", "y")
            for a in ys:
                _check_finite(a, "y", what)
                if len(a) != n:
                    raise ValueError(f"x and y must have the same number of samples: x has "
                                     f"{n}, y has {len(a)}")
        elif need_y:
            raise ValueError("y is required (pass arrays x and y, or a generator or "
                             "keras.utils.PyDataset yielding (x, y) batches)")
        n_out = len(self._output_names)
        sws: list[Any] = [None] * n_out
        if sample_weight is not None:
            if isinstance(sample_weight, (dict, list, tuple)) and n_out > 1:
                parts = self._split(sample_weight, self._output_names, what, "output")
            else:
                parts = [sample_weight] * n_out
            for i, p in enumerate(parts):
                if p is None:
                    continue
                sw = _as_array(p, "sample_weight")
                if sw.ndim == 0 or len(sw) != n:
                    raise ValueError(f"sample_weight must have one entry per sample ({n}), "
                                     f"got shape {sw.shape}")
                _check_finite(sw, "sample_weight", what)
                sws[i] = sw.astype(np.float64, copy=False)
        if class_weight is not None:
            if ys is None:
                raise ValueError("class_weight needs y")
            if n_out > 1:
                raise NotImplementedError("class_weight is not supported for models with "
                                          "several outputs; use sample_weight per output")
            if not isinstance(class_weight, dict):
                raise TypeError(f"class_weight must be a dict mapping class index to weight, "
                                f"got {type(class_weight).__name__}")
            labels = ys[0]
            if labels.ndim > 1 and labels.shape[-1] > 1:
                labels = labels.argmax(axis=-1)
            elif labels.ndim > 1:
                labels = labels[..., 0]
            cw = np.vectorize(lambda c: float(class_weight.get(int(c), 1.0)), otypes=[float])(
                labels.astype(np.int64)) if labels.size else np.ones(labels.shape)
            sw = sws[0]
            sws[0] = cw if sw is None else sw.reshape(sw.shape + (1,) * (cw.ndim - sw.ndim)) * cw
        return xs, ys, sws

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
        if _data.is_dataset(x):  # a generator or keras.utils.PyDataset
            return _data.fit(self, **_data.arguments(locals()))
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
        xs, ys, sw = self._standardize(x, y, sample_weight, class_weight, what="fit")
        assert ys is not None
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (x_val, y_val) or (x_val, y_val, "
                                 "sample_weight_val)")
            val = self._standardize(validation_data[0], validation_data[1],
                                    validation_data[2] if len(validation_data) == 3
                                    else None, what="fit (validation_data)")
        elif validation_split:
            n_all = len(xs[0])
            split = int(math.ceil(n_all * (1.0 - validation_split)))
            if split == 0 or split == n_all:
                raise ValueError(f"validation_split={validation_split} leaves no samples for "
                                 f"{'training' if split == 0 else 'validation'} out of "
                                 f"{n_all}")
            tail, head = slice(split, None), slice(None, split)
            val = (_take(xs, tail), _take(ys, tail), _take(sw, tail))
            xs, ys, sw = _take(xs, head), _take(ys, head), _take(sw, head)
        self._resolve(ys)
        ys = self._prepare_y(ys)
        if val is not None:
            assert val[1] is not None
            val = (val[0], self._prepare_y(val[1]), val[2])
        variables = self._trainable_vars()
        n = len(xs[0])
        steps = math.ceil(n / batch_size)
        cbs, history = _data._fit_callbacks(
            self, callbacks, verbose, {"epochs": epochs, "steps": steps, "verbose": verbose,
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
                self._train_batch(_take(xs, idx), _take(ys, idx), _take(sw, idx), variables)
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

    def _evaluate_arrays(self, xs: list[np.ndarray], ys: list[np.ndarray], sw: list[Any],
                         batch_size: int) -> dict[str, float]:
        self._reset_metrics()
        for idx in self._batches(len(xs[0]), batch_size, None):
            xb, yb, swb = _take(xs, idx), _take(ys, idx), _take(sw, idx)
            outs, masks = self._run(xb, False)
            loss, _ = self._losses_of(yb, outs, swb, masks, False)
            self._loss_tracker.update(loss, len(xb[0]))
            self._update_metrics(yb, outs, swb, masks)
        return self._logs()

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: Any = "auto", sample_weight: Any = None, steps: Any = None,
                 callbacks: Any = None, return_dict: bool = False) -> Any:
        """Loss and metrics on data, in inference mode.

        Returns
        -------
        float, list or dict
            The loss when there are no metrics (and one output), else ``[loss,
            *output_losses, *metrics]`` (or a dict with ``return_dict=True``).
        """
        if _data.is_dataset(x):  # a generator or keras.utils.PyDataset
            return _data.evaluate(self, **_data.arguments(locals()))
        if not self.compiled or self.loss is None:
            raise RuntimeError("call compile(optimizer, loss, ...) before evaluate()")
        if steps is not None:
            raise NotImplementedError("steps= needs dataset inputs; pass NumPy arrays")
        verbose = _check_verbose(verbose)
        batch_size = self._check_batch_size(batch_size)
        xs, ys, sw = self._standardize(x, y, sample_weight, what="evaluate")
        assert ys is not None
        self._resolve(ys)
        ys = self._prepare_y(ys)
        cbs = CallbackList(_callback_list(callbacks), model=self)
        cbs.on_test_begin()
        t0 = time.perf_counter()
        logs = self._evaluate_arrays(xs, ys, sw, batch_size)
        cbs.on_test_end(logs)
        if verbose:
            _print_oneline(math.ceil(len(xs[0]) / batch_size), time.perf_counter() - t0, logs,
                           len(xs[0]))
        return self._result(logs, return_dict)

    def _result(self, logs: dict[str, float], return_dict: bool) -> Any:
        """Keras's return value: a dict, the loss alone, or [loss, *metrics]."""
        if return_dict:
            return logs
        vals = [logs[m.name] for m in self.metrics if m.name in logs]
        return vals[0] if len(vals) == 1 else vals

    def _x_for_predict(self, x: Any) -> list[np.ndarray]:
        xs = self._arrays(x, self._input_names, "predict", "input", "x")
        n = len(xs[0])
        for a, nm in zip(xs, self._input_names, strict=True):
            if len(a) != n:
                raise ValueError(f"predict: all inputs need the same number of samples; "
                                 f"input {nm!r} has {len(a)}, the first has {n}")
        return self._prepare_inputs(xs)

    def _structure_outputs(self, outs: list[np.ndarray]) -> Any:
        """Outputs as the model was declared: one array, a list, or a dict."""
        keys = getattr(self, "_output_keys", None)
        if keys is not None:
            return dict(zip(keys, outs, strict=True))
        return outs[0] if len(outs) == 1 else outs  # as Keras, even for outputs=[y]

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = "auto",
                steps: Any = None, callbacks: Any = None) -> Any:
        """Outputs for ``x``, computed batch by batch in inference mode (no caches kept): one
        array, or a list/dict for a model declared with several outputs."""
        if _data.is_dataset(x):  # a generator or keras.utils.PyDataset
            return _data.predict(self, **_data.arguments(locals()))
        if steps is not None:
            raise NotImplementedError("steps= needs dataset inputs; pass NumPy arrays")
        verbose = _check_verbose(verbose)
        batch_size = self._check_batch_size(batch_size)
        xs = self._x_for_predict(x)
        cbs = CallbackList(_callback_list(callbacks), model=self)
        cbs.on_predict_begin()
        t0 = time.perf_counter()
        outs: list[list[np.ndarray]] = []
        n = len(xs[0])
        for i, idx in enumerate(self._batches(n, batch_size, None)):
            cbs.on_predict_batch_begin(i)
            outs.append([np.ascontiguousarray(o) for o in self._run(_take(xs, idx), False)[0]])
            cbs.on_predict_batch_end(i, {"outputs": self._structure_outputs(outs[-1])})
        cbs.on_predict_end()
        if verbose:
            _print_oneline(len(outs), time.perf_counter() - t0, {}, n)
        if not outs:
            return self._structure_outputs(
                [np.empty((0,) + tuple(s or 0 for s in shape[1:]), dtype=dt)
                 for shape, dt in self._output_specs()])
        return self._structure_outputs([np.concatenate([o[k] for o in outs], axis=0)
                                        for k in range(len(outs[0]))])

    def predict_on_batch(self, x: Any) -> Any:
        """Outputs for one batch."""
        return self._structure_outputs(self._run(self._x_for_predict(x), False)[0])

    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                       class_weight: Any = None, return_dict: bool = False) -> Any:
        """One optimisation step on one batch; returns the loss (and metrics) of that batch."""
        if not self.compiled or self.loss is None or self.optimizer is None:
            raise RuntimeError("call compile(optimizer, loss, ...) before train_on_batch()")
        xs, ys, sw = self._standardize(x, y, sample_weight, class_weight, what="train_on_batch")
        assert ys is not None
        self._resolve(ys)
        self._reset_metrics()
        self._train_batch(xs, self._prepare_y(ys), sw, self._trainable_vars())
        return self._result(self._logs(), return_dict)

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None,
                      return_dict: bool = False) -> Any:
        """Loss (and metrics) on one batch, in inference mode."""
        xs = self._split(x, self._input_names, "test_on_batch", "input")
        return self.evaluate(x, y, batch_size=max(len(_as_array(xs[0], "x")), 1), verbose=0,
                             sample_weight=sample_weight, return_dict=return_dict)

    # -- summary --------------------------------------------------------------------------
    def summary(self, line_length: int | None = None, positions: Sequence[float] | None = None,
                print_fn: Any = None, expand_nested: bool = False, show_trainable: bool = False,
                layer_range: Any = None) -> None:
        """Print Keras 3's summary table: layer (type), output shape, parameter count (and,
        for a functional model that is not a plain chain, the "Connected to" column), totals.

        Parameters
        ----------
        line_length : int, optional
            Table width (default: 88, 108 with "Connected to", or the terminal width minus 4
            if smaller).
        positions : list of float, optional
            Relative column ends (default ``[0.45, 0.80, 1.0]``, with "Connected to"
            ``[0.3, 0.56, 0.74, 1.0]``).
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
        Read it back with :func:`load_model`. A ``.keras`` suffix writes Keras 3's format
        instead (Keras loads it); ``.h5`` is refused (see :mod:`fastrnn.keras.keras_files`).
        """
        _files.save_model(self, filepath, overwrite=overwrite,
                          include_optimizer=include_optimizer)

    def save_weights(self, filepath: Any, overwrite: bool = True) -> None:
        """Save only the weights (fastrnn's format; ``.weights.h5``: Keras's layout)."""
        _files.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath: Any) -> None:
        """Load weights from a file written by :meth:`save` or :meth:`save_weights`, or by
        Keras (``.weights.h5``, ``.keras``, legacy ``.h5``)."""
        _files.load_weights(self, filepath)

    def export(self, filepath: Any, format: str = "onnx", verbose: bool = True,
               **kwargs: Any) -> None:
        """Export the model for inference, as Keras's ``model.export``: ``format="onnx"``
        only (the other formats are TensorFlow's), written by
        :func:`fastrnn.keras.onnx_export.export_onnx` (``kwargs``: ``opset``, ``states``,
        ``input_name``, ``output_name``). Needs the ``onnx`` package."""
        if format != "onnx":
            raise ValueError(f"export: format must be 'onnx' (fastrnn exports ONNX only), got "
                             f"{format!r}")
        from .onnx_export import export_onnx

        export_onnx(self, filepath, **kwargs)
        if verbose:
            print(f"Saved the ONNX model to {filepath}")


class Sequential(_Trainer):
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
        self._init_training()
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

    def add(self, layer: Layer) -> None:
        """Append a layer (or set the input with an :func:`~fastrnn.keras.layers.Input`)."""
        if isinstance(layer, KerasTensor):
            node = layer._node
            if node is None or not node.is_input:
                raise TypeError(f"Sequential.add takes layers or a keras.Input, got the "
                                f"output of layer {layer._keras_history[0].name!r} ({layer!r});"
                                " build a keras.Model(inputs, outputs) for a functional graph")
            layer = node.layer
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

    # -- the hooks of the shared training loop --------------------------------------------
    _input_names = ["x"]
    _output_names = ["output"]

    def _prepare_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        x = self._prepare_x(xs[0])
        self._ensure_built(x)
        return [x]

    def _output_specs(self) -> list[tuple[tuple, str]]:
        assert self.output_shape is not None
        return [(self.output_shape, self._layers[-1].dtype if self._layers else floatx())]

    def _run(self, xs: list[np.ndarray], training: bool) -> tuple[list, list]:
        out, mask = self._forward(xs[0], training)
        return [out], [mask]

    def _run_backward(self, grads: list[Any]) -> None:
        self._backward(grads[0])

    # -- used as a layer inside a functional model -----------------------------------------
    def _build_for(self, input_shape: Any) -> tuple:
        shape = tuple(input_shape)
        if not self.built:
            self._batch_input_shape = (None,) + shape[1:]
            self._try_build()
            if not self.built:
                raise ValueError(f"model {self.name!r} cannot be built for input shape "
                                 f"{shape}")
        spec = self._batch_input_shape
        assert spec is not None and self.output_shape is not None
        if len(spec) != len(shape) or any(s is not None and d is not None and s != d
                                           for s, d in zip(spec[1:], shape[1:], strict=True)):
            raise ValueError(f"model {self.name!r} expects inputs of shape {spec}, got "
                             f"{shape}")
        return (shape[0],) + tuple(self.output_shape[1:])

    def forward(self, x: np.ndarray, mask: Any, training: bool) -> tuple[np.ndarray, Any]:
        """The Layer protocol: the model's output (and mask) for a batch."""
        return self._forward(self._prepare_x(x), training, mask)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """The Layer protocol: backward through every layer; returns the input gradient."""
        return self._backward(dy, need_dx)

    # -- compute --------------------------------------------------------------------------
    # -- compute --------------------------------------------------------------------------
    def _forward(self, x: np.ndarray, training: bool, mask: Any = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
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

    def _backward(self, g: np.ndarray, need_input: bool = False) -> np.ndarray | None:
        # a layer's input gradient matters once a trainable weight precedes the layer
        need_dx, need = [], need_input
        for layer in self._layers:
            need_dx.append(need)
            need = need or bool(layer.trainable_weights)
        for layer, need in zip(reversed(self._layers), reversed(need_dx), strict=True):
            g = layer.backward(g, need)
            if g is None:
                break
        return g

    def __call__(self, x: Any, training: bool | None = None, mask: Any = None) -> Any:
        """Forward pass on a NumPy batch, or, on symbolic tensors, a call of the model as a
        layer of a functional model."""
        if is_symbolic(x):
            return symbolic_call(self, x, training=training, mask=mask)
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


_SUBCLASS_MSG = ("fastrnn.keras.Model supports the functional API, keras.Model(inputs, outputs): "
                 "subclassing keras.Model with your own call() method is not supported (fastrnn "
                 "computes gradients layer by layer, without an autodiff engine). Build the same "
                 "model from keras.Input and layer calls, or use keras.Sequential")


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        m, k = n, 1
        while m in out:
            m, k = f"{n}_{k}", k + 1
        out.append(m)
    return out


class Model(_Trainer):
    """A functional model: the layers between ``inputs`` and ``outputs`` (Keras's
    ``keras.Model(inputs, outputs)``).

    Parameters
    ----------
    inputs : KerasTensor, list or dict of KerasTensor
        What :func:`fastrnn.keras.Input` returned (or intermediate tensors of a graph, to cut
        a sub-model out of a trained one).
    outputs : KerasTensor, list or dict of KerasTensor
        Tensors computed from ``inputs`` by calling layers.
    name : str, optional
    trainable : bool

    Notes
    -----
    Data for several inputs (outputs) is a list in declaration order or a dict keyed by the
    input names (the ``name=`` of each ``keras.Input``; output names are the names of the
    layers producing them, or the keys of a dict of outputs). A model is a layer too: call it
    on symbolic tensors inside another model. Subclassing with a custom ``call`` is not
    supported.
    """

    def __init__(self, inputs: Any = None, outputs: Any = None, name: str | None = None,
                 trainable: bool = True, **kwargs: Any) -> None:
        if type(self) is not Model and "call" in {k for c in type(self).__mro__[:-1]
                                                  if c not in (Model, _Trainer)
                                                  for k in vars(c)}:
            raise NotImplementedError(_SUBCLASS_MSG)
        if inputs is None and outputs is None:
            raise NotImplementedError(_SUBCLASS_MSG)
        if inputs is None or outputs is None:
            raise ValueError("keras.Model needs both inputs= and outputs= (symbolic tensors "
                             "from keras.Input and layer calls)")
        if kwargs:
            raise TypeError(f"Model got unexpected keyword arguments: "
                            f"{', '.join(sorted(kwargs))}")
        ins, in_keys = _as_tensor_list(inputs, "inputs")
        outs, out_keys = _as_tensor_list(outputs, "outputs")
        self._graph = Graph(ins, outs)
        self.name = name or unique_name("functional")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.trainable = bool(trainable)
        self.built = True
        self._input_keys = in_keys
        self._output_keys = out_keys
        self._inputs_listed = isinstance(inputs, (list, tuple))
        self._outputs_listed = isinstance(outputs, (list, tuple))
        self._input_names = in_keys or _unique([t.name for t in ins])
        self._output_names = out_keys or _unique([t._node.layer.name if t._node else t.name
                                                  for t in outs])
        self._tape: list | None = None
        self._init_training()

    # -- structure ------------------------------------------------------------------------
    @property
    def layers(self) -> list[Any]:
        """The layers in Keras's order (Input layers included, as Keras 3 lists them); the
        order of :meth:`get_weights`."""
        return list(self._graph.layers)

    @property
    def inputs(self) -> list[KerasTensor]:
        """The symbolic inputs."""
        return list(self._graph.inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        """The symbolic outputs."""
        return list(self._graph.outputs)

    @property
    def input(self) -> Any:
        """The symbolic input (a list, or the dict given, for several)."""
        ins = self._graph.inputs
        if self._input_keys is not None:
            return dict(zip(self._input_keys, ins, strict=True))
        return ins[0] if len(ins) == 1 and not self._inputs_listed else list(ins)

    @property
    def output(self) -> Any:
        """The symbolic output (a list, or the dict given, for several)."""
        outs = self._graph.outputs
        if self._output_keys is not None:
            return dict(zip(self._output_keys, outs, strict=True))
        return outs[0] if len(outs) == 1 and not self._outputs_listed else list(outs)

    @property
    def input_shape(self) -> Any:
        """Input shape(s) with the batch axis."""
        shapes = [t.shape for t in self._graph.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self) -> Any:
        """Output shape(s) with the batch axis."""
        shapes = [t.shape for t in self._graph.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_names(self) -> list[str]:
        """Names (dict keys) of the inputs."""
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        """Names (dict keys) of the outputs, as losses and metrics are keyed."""
        return list(self._output_names)

    def build(self, input_shape: Any = None) -> None:
        """A functional model is built when it is created (accepted for compatibility)."""

    # -- the hooks of the shared training loop --------------------------------------------
    def _prepare_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for x, t, name in zip(xs, self._graph.inputs, self._input_names, strict=True):
            spec = t.shape
            if x.ndim != len(spec) or any(s is not None and s != d
                                          for s, d in zip(spec[1:], x.shape[1:], strict=True)):
                user = self._input_users(t)
                raise ValueError(f"input {name!r} of model {self.name!r} expects shape {spec}"
                                 f"{user}, got an array of shape {x.shape}")
            dt = np.dtype(t.dtype)
            if x.dtype != dt and not (dt.kind in "iu" and x.dtype.kind in "iu"):
                if dt.kind in "iu" and x.dtype.kind == "f":
                    x = x.astype(np.int64)
                elif dt.kind == "f":
                    x = x.astype(dt)
            out.append(x)
        return out

    def _input_users(self, t: KerasTensor) -> str:
        users = [n.layer for n in self._graph.nodes if any(i is t for i in n.inputs)]
        if not users:
            return ""
        return f" (it feeds layer {users[0].name!r}, {type(users[0]).__name__})"

    def _output_specs(self) -> list[tuple[tuple, str]]:
        return [(t.shape, t.dtype) for t in self._graph.outputs]

    def _run(self, xs: list[np.ndarray], training: bool, masks: Any = None
             ) -> tuple[list, list]:
        tape: list | None = [] if training else None
        outs, out_masks = self._graph.forward(xs, masks, training, tape)
        self._tape = tape
        return outs, out_masks

    def _run_backward(self, grads: list[Any], need_dx: bool = False,
                      restore_all: bool = False) -> list[Any]:
        tape = self._tape
        if tape is None:
            raise RuntimeError(f"model {self.name!r}: backward needs a forward with "
                               "training=True first")
        self._tape = None
        return self._graph.backward(grads, tape, need_dx, restore_all)

    # -- a model used as a layer ----------------------------------------------------------
    def __call__(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        """On symbolic tensors: the model as a layer of another functional model. On arrays:
        the outputs for one batch (as :meth:`predict_on_batch`, in ``training`` mode if
        asked)."""
        if is_symbolic(inputs):
            return symbolic_call(self, inputs, training=training, mask=mask)
        return self._structure_outputs(self._run(self._x_for_predict(inputs),
                                                 bool(training))[0])

    def _build_for(self, input_shape: Any) -> Any:
        shapes = input_shape if self.multi_input else [input_shape]
        if len(shapes) != len(self._graph.inputs):
            raise ValueError(f"model {self.name!r} takes {len(self._graph.inputs)} inputs, "
                             f"got {len(shapes)}")
        batch = None
        for shape, t, name in zip(shapes, self._graph.inputs, self._input_names, strict=True):
            shape = tuple(shape)
            spec = t.shape
            if len(shape) != len(spec) or any(
                    s is not None and d is not None and s != d
                    for s, d in zip(spec[1:], shape[1:], strict=True)):
                raise ValueError(f"model {self.name!r} (used as a layer) expects input "
                                 f"{name!r} of shape {spec}, got {shape}")
            batch = shape[0]
        outs = [(batch,) + tuple(t.shape[1:]) for t in self._graph.outputs]
        return outs if len(outs) > 1 else outs[0]

    @property
    def output_dtypes(self) -> list[str]:
        """The dtypes of the outputs (for symbolic calls of the model)."""
        return [t.dtype for t in self._graph.outputs]

    def forward(self, x: Any, mask: Any, training: bool) -> tuple[Any, Any]:
        """The Layer protocol: the model's output(s) for a batch."""
        xs = list(x) if self.multi_input else [x]
        masks = (list(mask) if mask is not None else None) if self.multi_input else [mask]
        xs = self._prepare_inputs(xs)
        outs, out_masks = self._run(xs, training, masks)
        if len(outs) == 1:
            return outs[0], out_masks[0]
        return outs, out_masks

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """The Layer protocol: backward through the graph; the input gradient(s)."""
        grads = list(dy) if len(self._graph.outputs) > 1 else [dy]
        dxs = self._run_backward(grads, need_dx, restore_all=True)
        return dxs if self.multi_input else dxs[0]

    # -- streaming ------------------------------------------------------------------------
    def stream(self, batch_size: int = 1) -> Any:
        """Open a streaming session (see :meth:`Sequential.stream`) for a model whose graph is
        a causal chain: one input, one output, each layer feeding the next.

        Raises
        ------
        ValueError
            For a graph with several inputs or outputs, branches, shared layers or layers
            that cannot stream.
        """
        from ..streaming import StreamSession

        g = self._graph
        prev = g.inputs[0] if len(g.inputs) == 1 else None
        chain = len(g.inputs) == 1 and len(g.outputs) == 1 and not any(g.shared)
        for node in g.nodes:
            if not chain:
                break
            chain = (len(node.inputs) == 1 and not node.multi_output
                     and node.inputs[0] is prev)
            prev = node.outputs[0]
        if not chain or prev is not g.outputs[0]:
            raise ValueError(f"model {self.name!r} cannot be streamed: model.stream() needs a "
                             "functional model that is a chain (one input, one output, each "
                             "layer feeding only the next, no shared layers, no "
                             "return_state/initial_state); stream the chain part as its own "
                             "keras.Model, or use predict()")
        precision = self._recurrent_precision()
        if precision == "float32":
            return StreamSession(self, batch_size)
        return StreamSession(self, batch_size, precision=precision)

    # -- config ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        """The graph as a JSON-compatible dict: the layers' configs, then the calls (nodes)
        in execution order, each naming its input tensors as ``[layer, call, output]``."""
        g = self._graph
        local: dict[int, tuple[str, int]] = {}  # id(node) -> (layer name, call index)
        count: dict[str, int] = {}
        in_nodes = [t._node for t in g.inputs]

        def ref(t: KerasTensor) -> list:
            name, k = local[id(t._node)]
            return [name, k, t._index]

        for node in in_nodes + list(g.nodes):
            if node is not None and id(node) not in local:
                nm = node.layer.name
                local[id(node)] = (nm, count.get(nm, 0))
                count[nm] = count.get(nm, 0) + 1
        layers = []
        for layer in g.layers:
            if isinstance(layer, _Trainer):
                layers.append({"class_name": type(layer).__name__,
                               "config": layer.get_config()})
            else:
                layers.append(serialize(layer))
        for t in g.inputs:
            if not t._node.is_input:
                raise ValueError(f"model {self.name!r} takes an intermediate tensor {t!r} as "
                                 "an input; only models whose inputs are keras.Input tensors "
                                 "can be saved")
        nodes = [{"layer": n.layer.name, "inputs": [ref(t) for t in n.inputs],
                  "n_states": n.n_states, "training": n.training} for n in g.nodes]
        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "nodes": nodes, "inputs": [ref(t) for t in g.inputs],
                "outputs": [ref(t) for t in g.outputs], "input_keys": self._input_keys,
                "output_keys": self._output_keys, "inputs_listed": self._inputs_listed,
                "outputs_listed": self._outputs_listed}

    @classmethod
    def from_config(cls, config: dict) -> Model:
        """Rebuild a model from :meth:`get_config`'s output (built-in layers only; nothing
        in the config is executed)."""
        if not isinstance(config, dict):
            raise ValueError("a Model config must be a dict")
        for k, typ in (("layers", list), ("nodes", list), ("inputs", list), ("outputs", list)):
            if not isinstance(config.get(k), typ):
                raise ValueError(f"a Model config needs a {k!r} list")
        layers: dict[str, Any] = {}
        tensors: dict[tuple[str, int], list[KerasTensor]] = {}
        calls: dict[str, int] = {}
        for lc in config["layers"]:
            if not isinstance(lc, dict):
                raise ValueError("invalid layer config in a Model config")
            cname = lc.get("class_name")
            if cname in _MODEL_CLASSES:
                layer = _MODEL_CLASSES[cname].from_config(lc.get("config"))
            elif cname == "InputLayer":
                icfg = lc.get("config")
                if not isinstance(icfg, dict):
                    raise ValueError("invalid InputLayer config")
                t = Input(batch_shape=icfg.get("batch_shape"), dtype=icfg.get("dtype"),
                          name=icfg.get("name"))
                layer = t._node.layer
                tensors[(layer.name, 0)] = [t]
                calls[layer.name] = 1
            else:
                layer = deserialize(lc)
            if not isinstance(layer.name, str) or layer.name in layers:
                raise ValueError(f"duplicate or invalid layer name {layer.name!r} in a Model "
                                 "config")
            layers[layer.name] = layer

        def get(r: Any) -> KerasTensor:
            if not (isinstance(r, list) and len(r) == 3 and isinstance(r[0], str)
                    and all(isinstance(i, int) and not isinstance(i, bool) for i in r[1:])):
                raise ValueError(f"invalid tensor reference {r!r} in a Model config")
            outs = tensors.get((r[0], r[1]))
            if outs is None or not 0 <= r[2] < len(outs):
                raise ValueError(f"tensor reference {r!r} in a Model config names no "
                                 "earlier layer call")
            return outs[r[2]]

        for nc in config["nodes"]:
            if not isinstance(nc, dict) or nc.get("layer") not in layers \
                    or not isinstance(nc.get("inputs"), list) or not nc["inputs"]:
                raise ValueError(f"invalid node {nc!r} in a Model config")
            layer = layers[nc["layer"]]
            ins = [get(r) for r in nc["inputs"]]
            n_states = nc.get("n_states", 0)
            if not isinstance(n_states, int) or not 0 <= n_states < len(ins):
                raise ValueError(f"invalid n_states in node {nc!r}")
            training = nc.get("training")
            if training not in (None, True, False):
                raise ValueError(f"invalid training flag in node {nc!r}")
            main = ins[:len(ins) - n_states]
            arg: Any = main if getattr(layer, "multi_input", False) else main[0] \
                if len(main) == 1 else main
            kw: dict[str, Any] = {}
            if n_states:
                kw["initial_state"] = ins[len(ins) - n_states:]
            if training is not None:
                kw["training"] = training
            out = layer(arg, **kw)
            k = calls.get(layer.name, 0)
            calls[layer.name] = k + 1
            tensors[(layer.name, k)] = out if isinstance(out, list) else [out]
        ins = [get(r) for r in config["inputs"]]
        outs = [get(r) for r in config["outputs"]]

        def keyed(items: list, keys: Any, listed: Any) -> Any:
            if keys is not None:
                if not isinstance(keys, list) or len(keys) != len(items) \
                        or not all(isinstance(k, str) for k in keys):
                    raise ValueError("invalid input/output keys in a Model config")
                return dict(zip(keys, items, strict=True))
            return items if listed or len(items) > 1 else items[0]

        return cls(keyed(ins, config.get("input_keys"), config.get("inputs_listed")),
                   keyed(outs, config.get("output_keys"), config.get("outputs_listed")),
                   name=config.get("name"), trainable=bool(config.get("trainable", True)))

    def __repr__(self) -> str:
        return (f"<Model name={self.name!r} inputs={len(self._graph.inputs)} "
                f"outputs={len(self._graph.outputs)} layers={len(self._graph.layers)}>")


Functional = Model
_MODEL_CLASSES: dict[str, Any] = {"Sequential": Sequential, "Model": Model}
_saving.MODEL_CLASSES.update(_MODEL_CLASSES)



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


def _sequential_like(model: Any) -> bool:
    """Keras's test for the summary's plain layout: a chain of one-input layers, each used
    once (else the table gets the "Connected to" column)."""
    if not isinstance(model, Model):
        return True
    g = model._graph
    if len(g.inputs) != 1 or any(g.shared):
        return False
    prev = g.inputs[0]._node
    for node in g.nodes:
        if len(node.inputs) != 1 or node.inputs[0]._node is not prev:
            return False
        prev = node
    return True


def _layer_shape(layer: Any) -> str:
    """The output shape(s) of a layer's last call, as Keras's summary prints them."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return _fmt_shape(layer.output_shape) if getattr(layer, "built", False) else "?"
    shapes = [_fmt_shape(t.shape) for t in nodes[-1].outputs]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _connections(layer: Any, nodes: list[Node]) -> str:
    """Keras's "Connected to" cell: ``producer[call][output]`` for each input of each of the
    layer's calls in this model."""
    parts = []
    for node in getattr(layer, "_inbound_nodes", []):
        if any(node is n for n in nodes):
            for t in node.inputs:
                prod, k, i = t._keras_history
                parts.append(f"{prod.name}[{k}][{i}]")
    return ", ".join(parts) or "-"


def _summary_text(model: Any, line_length: int | None,
                  positions: Sequence[float] | None) -> str:
    seq = _sequential_like(model)
    default = 88 if seq else 108
    if line_length is None:
        line_length = min(default, shutil.get_terminal_size().columns - 4)
    positions = list(positions or ([0.45, 0.80, 1.0] if seq else [0.3, 0.56, 0.74, 1.0]))
    if positions[-1] <= 1:
        positions = [p * line_length for p in positions]
    widths, cur = [], 0
    for p in positions:
        w = int(p) - cur
        if w < 4:
            raise ValueError("insufficient width to print the summary")
        widths.append(w)
        cur += w
    excess = sum(widths) + len(widths) + 1 - line_length
    if excess > 0:
        widths = _ratio_reduce(excess, widths)
    header = ["Layer (type)", "Output Shape", "Param #"]
    align = ["l", "l", "r"]
    if not seq:
        header.append("Connected to")
        align.append("l")
    nodes = list(model._graph.nodes) + [t._node for t in model._graph.inputs] \
        if isinstance(model, Model) else []
    rows = []
    for layer in model.layers:
        kind = "Functional" if isinstance(layer, Model) else type(layer).__name__
        name = f"{layer.name} ({kind})"
        if isinstance(model, Model):
            shape = _layer_shape(layer)
        else:
            shape = _fmt_shape(layer.output_shape) if layer.built else "?"
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        row = [name, shape, params]
        if not seq:
            row.append(_connections(layer, nodes))
        rows.append(row)

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
