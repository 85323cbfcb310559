"""``fit``/``evaluate``/``predict`` on Python generators and :class:`~fastrnn.keras.utils.PyDataset`
objects, as Keras 3 takes them.

A generator (any iterator) yields batches ``(x, y)``, ``(x, y, sample_weight)`` or ``x``;
with ``steps_per_epoch`` each epoch takes that many batches from it (the generator carries on
across epochs), without it an epoch lasts until the generator is exhausted (a finite
generator then ends training with a warning, as Keras). A PyDataset serves batches
``0 .. len(ds) - 1`` every epoch (the first ``steps_per_epoch`` when given), with its
``on_epoch_begin``/``on_epoch_end`` called around each epoch. Each batch then takes the
array path of the model: the same checks, training step, metrics and callbacks, so a fit on
a generator equals a fit on arrays cut into the same batches.

The model calls :func:`is_dataset` on ``x`` and hands such data to :func:`fit`,
:func:`evaluate` or :func:`predict` here.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from .base import check_int
from .callbacks import CallbackList, History, ProgbarLogger
from .utils.py_dataset import PyDataset

__all__ = ["arguments", "evaluate", "fit", "is_dataset", "predict"]


def is_dataset(x: Any) -> bool:
    """Whether ``x`` is a generator/iterator or a PyDataset (not arrays, lists or dicts)."""
    if isinstance(x, PyDataset):
        return True
    if isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    return isinstance(x, Iterator)


def arguments(local_vars: dict) -> dict:
    """A model method's arguments (its ``locals()`` at entry) without ``self``."""
    return {k: v for k, v in local_vars.items() if k != "self"}


def _steps_arg(name: str, v: Any) -> int | None:
    return None if v is None else check_int("fit", name, v, 1)


class _Source:
    """One epoch's batches of a generator or a PyDataset."""

    def __init__(self, data: Any, steps: int | None, what: str) -> None:
        self.data, self.steps, self.what = data, steps, what
        self.is_pyds = isinstance(data, PyDataset)
        if self.is_pyds:
            n = data.num_batches
            if n is None and steps is None:
                raise ValueError(f"{what}: a PyDataset without __len__ needs steps")
            self.steps = n if steps is None else steps if n is None else min(steps, n)

    def epoch(self) -> Iterator[Any]:
        if self.is_pyds:
            self.data.on_epoch_begin()
            try:
                for i in range(self.steps or 0):
                    yield self.data[i]
            finally:
                self.data.on_epoch_end()
        else:
            yield from itertools.islice(self.data, self.steps)


def _unpack(batch: Any, what: str, need_y: bool) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` from a batch as Keras reads it."""
    if isinstance(batch, tuple):
        if not 1 <= len(batch) <= 3:
            raise ValueError(f"{what}: a batch must be (x,), (x, y) or (x, y, sample_weight), "
                             f"got a tuple of {len(batch)}")
        x, y, sw = (tuple(batch) + (None, None))[:3]
    else:
        x, y, sw = batch, None, None
    if need_y and y is None:
        raise ValueError(f"{what}: the generator/PyDataset must yield (x, y) batches, got a "
                         f"batch without targets ({type(batch).__name__})")
    return x, y, sw


def _check_verbose(verbose: Any) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or not isinstance(verbose, (int, np.integer)) or verbose < 0:
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _callbacks(callbacks: Any) -> list:
    """A list of callbacks from None, one callback or a sequence (as Keras flattens them)."""
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def _fit_callbacks(model: Any, callbacks: Any, verbose: int,
                   params: dict) -> tuple[CallbackList, History]:
    """The callbacks of a ``fit``: a progress bar first when ``verbose``, the user's, then
    the returned :class:`History` last."""
    history = History()
    cbs_list = _callbacks(callbacks)
    if verbose:
        cbs_list.insert(0, ProgbarLogger(verbose))
    cbs_list.append(history)
    return CallbackList(cbs_list, model=model, params=params), history


def _eval_batch(model: Any, x: Any, y: Any, sw: Any, what: str) -> None:
    xs, ys, sws = model._standardize(x, y, sw, what=what)
    model._resolve(ys)
    ys = model._prepare_y(ys)
    outs, masks = model._run(xs, False)
    loss, _ = model._losses_of(ys, outs, sws, masks, False)
    model._loss_tracker.update(loss, len(xs[0]))
    model._update_metrics(ys, outs, sws, masks)


def _evaluate_source(model: Any, src: _Source, what: str) -> dict[str, float]:
    model._reset_metrics()
    seen = 0
    for batch in src.epoch():
        x, y, sw = _unpack(batch, what, True)
        _eval_batch(model, x, y, sw, what)
        seen += 1
    if not seen:
        raise ValueError(f"{what}: the data produced no batch")
    return model._logs()


def fit(model: Any, x: Any, epochs: int = 1, verbose: Any = "auto", callbacks: Any = None,
        validation_data: Any = None, class_weight: Any = None, initial_epoch: int = 0,
        steps_per_epoch: Any = None, validation_steps: Any = None,
        validation_freq: int = 1, **ignored: Any) -> History:
    """``model.fit`` on a generator or PyDataset ``x`` (see the module docstring).

    ``validation_data`` may be arrays ``(x, y[, sample_weight])``, a generator or a
    PyDataset (``validation_steps`` batches of it; a generator without ``validation_steps``
    is read to its end). ``batch_size``, ``shuffle``, ``sample_weight`` and
    ``validation_split`` do not apply to such data, as in Keras (``validation_split`` and
    ``sample_weight`` given anyway are an error).
    """
    if not model.compiled or model.optimizer is None:
        raise RuntimeError("call compile(optimizer, loss, ...) before fit()")
    if model.loss is None:
        raise ValueError("compile() was called without a loss; fit() needs one")
    if ignored.get("validation_split"):
        raise ValueError("validation_split is not supported with a generator or PyDataset; "
                         "pass validation_data")
    for k in ("y", "sample_weight"):
        if ignored.get(k) is not None:
            raise ValueError(f"fit: {k} must not be given when x is a generator or PyDataset "
                             "(its batches carry the targets and weights)")
    verbose = _check_verbose(verbose)
    epochs = check_int("fit", "epochs", epochs, 0)
    initial_epoch = check_int("fit", "initial_epoch", initial_epoch, 0)
    validation_freq = check_int("fit", "validation_freq", validation_freq, 1)
    src = _Source(x, _steps_arg("steps_per_epoch", steps_per_epoch), "fit")
    val: Any = None
    if validation_data is not None:
        if is_dataset(validation_data):
            val = _Source(validation_data, _steps_arg("validation_steps", validation_steps),
                          "fit (validation_data)")
        elif isinstance(validation_data, (tuple, list)) and len(validation_data) in (2, 3):
            val = tuple(validation_data) + ((None,) if len(validation_data) == 2 else ())
        else:
            raise ValueError("validation_data must be (x_val, y_val), (x_val, y_val, "
                             "sample_weight_val), a generator or a PyDataset")
    cbs, history = _fit_callbacks(model, callbacks, verbose,
                                  {"epochs": epochs, "steps": src.steps, "verbose": verbose})
    model.stop_training = False
    model.history = history
    variables = None
    cbs.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(initial_epoch, epochs):
        model._reset_metrics()
        cbs.on_epoch_begin(epoch)
        seen = 0
        for step, batch in enumerate(src.epoch()):
            cbs.on_train_batch_begin(step)
            xb, yb, swb = _unpack(batch, "fit", True)
            xs, ys, sws = model._standardize(xb, yb, swb, class_weight, what="fit")
            model._resolve(ys)
            if variables is None:
                variables = model._trainable_vars()
            model._train_batch(xs, model._prepare_y(ys), sws, variables)
            seen += 1
            cbs.on_train_batch_end(step, model._logs())
            if model.stop_training:
                break
        if not seen:
            warnings.warn("Your input ran out of data; interrupting training. Make sure that "
                          "your dataset or generator can generate at least `steps_per_epoch "
                          "* epochs` batches.", stacklevel=3)
            break
        logs = model._logs()
        if val is not None and (epoch + 1) % validation_freq == 0:
            if isinstance(val, _Source):
                vlogs = _evaluate_source(model, val, "fit (validation_data)")
            else:
                vx, vy, vsw = model._standardize(val[0], val[1], val[2],
                                                 what="fit (validation_data)")
                model._resolve(vy)
                vlogs = model._evaluate_arrays(vx, model._prepare_y(vy), vsw, 32)
            logs.update({"val_" + k: v for k, v in vlogs.items()})
        cbs.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return history


def evaluate(model: Any, x: Any, verbose: Any = "auto", steps: Any = None,
             callbacks: Any = None, return_dict: bool = False, **ignored: Any) -> Any:
    """``model.evaluate`` on a generator or PyDataset (``steps`` batches, or to its end)."""
    if not model.compiled or model.loss is None:
        raise RuntimeError("call compile(optimizer, loss, ...) before evaluate()")
    verbose = _check_verbose(verbose)
    src = _Source(x, _steps_arg("steps", steps), "evaluate")
    cbs = CallbackList(_callbacks(callbacks), model=model)
    cbs.on_test_begin()
    t0 = time.perf_counter()
    logs = _evaluate_source(model, src, "evaluate")
    cbs.on_test_end(logs)
    if verbose:
        print(f"evaluate - {time.perf_counter() - t0:.0f}s"
              + "".join(f" - {k}: {v:.4f}" for k, v in logs.items()))
    return model._result(logs, return_dict)


def predict(model: Any, x: Any, verbose: Any = "auto", steps: Any = None,
            callbacks: Any = None, **ignored: Any) -> np.ndarray:
    """``model.predict`` on a generator or PyDataset: the outputs of its batches (their
    ``x``; targets are ignored), concatenated."""
    _check_verbose(verbose)
    src = _Source(x, _steps_arg("steps", steps), "predict")
    cbs = CallbackList(_callbacks(callbacks), model=model)
    cbs.on_predict_begin()
    outs = []
    for i, batch in enumerate(src.epoch()):
        cbs.on_predict_batch_begin(i)
        xb = _unpack(batch, "predict", False)[0]
        outs.append(model.predict(xb, verbose=0))
        cbs.on_predict_batch_end(i, {"outputs": outs[-1]})
    cbs.on_predict_end()
    if not outs:
        raise ValueError("predict: the data produced no batch")
    first = outs[0]
    if isinstance(first, dict):
        return {k: np.concatenate([o[k] for o in outs]) for k in first}
    if isinstance(first, list):
        return [np.concatenate([o[k] for o in outs]) for k in range(len(first))]
    return np.concatenate(outs, axis=0)
