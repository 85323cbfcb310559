"""Training callbacks with Keras's hooks: History, EarlyStopping, ModelCheckpoint, ...

Subclass :class:`Callback` and override any ``on_*`` hook to write your own; ``self.model``
is the model being trained and ``self.params`` holds ``epochs``, ``steps`` and ``verbose``.
Setting ``self.model.stop_training = True`` ends ``fit`` after the current epoch.

Examples
--------
>>> from fastrnn.keras.callbacks import EarlyStopping, ModelCheckpoint
>>> cbs = [EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
...        ModelCheckpoint("best.keras", save_best_only=True)]
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .base import check_int

__all__ = [
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgbarLogger",
    "TerminateOnNaN",
]


class Callback:
    """Base class of callbacks; every hook does nothing by default."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict = {}

    def set_model(self, model: Any) -> None:
        """Attach the model (called by ``fit``/``evaluate``/``predict``)."""
        self.model = model

    def set_params(self, params: dict) -> None:
        """Receive ``epochs``, ``steps``, ``verbose``."""
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_begin(self, logs: dict | None = None) -> None: ...
    def on_test_end(self, logs: dict | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_begin(self, logs: dict | None = None) -> None: ...
    def on_predict_end(self, logs: dict | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None: ...

    # Keras 2 spellings
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: dict | None = None) -> None: ...


_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
          "on_test_begin", "on_test_end", "on_predict_begin", "on_predict_end")
_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
                "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")


class CallbackList:
    """Dispatch each hook to a list of callbacks (skipping the ones that do not override a
    batch hook, so per-batch cost stays near zero)."""

    def __init__(self, callbacks: Iterable[Callback] | None = None, model: Any = None,
                 params: dict | None = None) -> None:
        self.callbacks = list(callbacks or [])
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise TypeError("callbacks must be fastrnn.keras.callbacks.Callback instances, "
                                f"got {c!r}")
            if model is not None:
                c.set_model(model)
            if params is not None:
                c.set_params(params)
        self._batch: dict[str, list[Callable]] = {}
        for hook in _BATCH_HOOKS:
            fns = []
            for c in self.callbacks:
                if _overrides(c, hook):
                    fns.append(getattr(c, hook))
                if hook in ("on_train_batch_begin", "on_train_batch_end"):
                    legacy = hook.replace("train_", "")
                    if _overrides(c, legacy):
                        fns.append(getattr(c, legacy))
            self._batch[hook] = fns

    def __getattr__(self, name: str) -> Callable:
        if name in _HOOKS:
            def call(*args: Any, **kwargs: Any) -> None:
                for c in self.callbacks:
                    getattr(c, name)(*args, **kwargs)
            return call
        if name in _BATCH_HOOKS:
            fns = self.__dict__["_batch"][name]

            def call_batch(batch: int, logs: dict | None = None) -> None:
                for f in fns:
                    f(batch, logs)
            return call_batch
        raise AttributeError(name)

    def has(self, hook: str) -> bool:
        """Whether any callback overrides a batch hook."""
        return bool(self._batch.get(hook))


def _overrides(c: Callback, hook: str) -> bool:
    if hook in vars(c):
        return True
    for klass in type(c).__mro__:
        if klass is Callback:
            return False
        if hook in klass.__dict__:
            return True
    return False


class History(Callback):
    """Record each epoch's logs: ``history.history['loss']`` is the list of epoch losses.

    ``fit`` returns one and stores it as ``model.history``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self


def _fmt_value(v: float) -> str:
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def _fmt_time_per_step(t: float) -> str:
    if t >= 1 or t == 0:
        return f"{t:.0f}s/step"
    if t >= 1e-3:
        return f"{t * 1e3:.0f}ms/step"
    return f"{t * 1e6:.0f}us/step"


class ProgbarLogger(Callback):
    """Keras-style progress output of ``fit`` (added automatically when ``verbose > 0``).

    ``verbose=1``: a live bar per epoch (steps, elapsed time, time per step, samples per
    second, running loss and metrics); on a non-terminal stream only the final line of each
    epoch is written. ``verbose=2``: one line per epoch.
    """

    def __init__(self, verbose: int = 1, stream: Any = None, width: int = 20,
                 interval: float = 0.05) -> None:
        super().__init__()
        self.verbose = verbose
        self.stream = stream
        self.width = width
        self.interval = interval

    def _out(self) -> Any:
        return self.stream if self.stream is not None else sys.stdout

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epochs = self.params.get("epochs", 1)
        self.steps = self.params.get("steps")
        self.batch_size = self.params.get("batch_size")
        out = self._out()
        self._dynamic = bool(getattr(out, "isatty", lambda: False)()) or "ipykernel" in sys.modules

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._last = 0.0
        self._prev_width = 0
        self._seen = 0
        if self.verbose:
            self._write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._seen = batch + 1
        if self.verbose != 1 or not self._dynamic:
            return
        now = time.perf_counter()
        if now - self._last < self.interval and self._seen != self.steps:
            return
        self._last = now
        self._render(logs or {}, final=False)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.verbose == 1:
            self._render(logs, final=True)
        elif self.verbose == 2:
            n = self.steps or self._seen
            dt = time.perf_counter() - self._start
            digits = int(math.log10(max(n, 1))) + 1
            line = (f"{self._seen:{digits}d}/{n} - {dt:.0f}s - "
                    f"{_fmt_time_per_step(dt / max(self._seen, 1))}"
                    f"{self._rate(dt)}{self._metrics(logs)}\n")
            self._write(line)

    def _rate(self, dt: float) -> str:
        samples = self.params.get("samples")
        if not samples or dt <= 0:
            return ""
        done = min(samples, self._seen * (self.batch_size or samples))
        return f" - {done / dt:,.0f} samples/s"

    @staticmethod
    def _metrics(logs: dict) -> str:
        return "".join(f" - {k}: {_fmt_value(float(v))}" for k, v in logs.items()
                       if isinstance(v, (int, float, np.floating)))

    def _render(self, logs: dict, final: bool) -> None:
        n = self.steps or self._seen
        now = time.perf_counter()
        dt = now - self._start
        digits = int(math.log10(max(n, 1))) + 1
        cur = self._seen
        prog = int(self.width * cur / n) if n else self.width
        color = self._dynamic
        count = f"{cur:{digits}d}/{n}"
        bar_done = "━" * prog
        bar_left = "━" * (self.width - prog)
        if color:
            bar = (f"\x1b[1m{count}\x1b[0m \x1b[32m{bar_done}\x1b[0m\x1b[37m{bar_left}\x1b[0m")
            plain_len = len(count) + 1 + self.width
        else:
            bar = f"{count} {bar_done}{bar_left}"
            plain_len = len(bar)
        per_step = dt / max(cur, 1)
        if final:
            tinfo = f"{dt:.0f}s"
        else:
            eta = per_step * (n - cur)
            tinfo = (f"{eta // 3600:.0f}:{(eta % 3600) // 60:02.0f}:{eta % 60:02.0f}"
                     if eta > 3600 else f"{eta // 60:.0f}:{eta % 60:02.0f}" if eta > 60
                     else f"{eta:.0f}s")
        tinfo = f"\x1b[1m{tinfo}\x1b[0m" if color else tinfo
        info = f" {tinfo} {_fmt_time_per_step(per_step)}{self._rate(dt)}{self._metrics(logs)}"
        width = plain_len + len(info) - (8 if color else 0)
        msg = info
        pad = " " * max(self._prev_width - width, 0)
        self._prev_width = width
        if color:
            self._write("\r" + bar + msg + pad + ("\n" if final else ""))
        elif final:
            self._write(bar + msg + "\n")

    def _write(self, s: str) -> None:
        out = self._out()
        out.write(s)
        out.flush()


class _Monitor(Callback):
    """Shared logic of callbacks watching a logged quantity (Keras's MonitorCallback)."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", baseline: Any = None,
                 min_delta: float = 0.0) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{type(self).__name__}: monitor must be the name of a logged "
                            f"quantity ('val_loss', 'loss', 'val_accuracy', ...), got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode {mode!r} is unknown, fallback to auto "
                          "mode", stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op: Callable[[float, float], bool] | None = None

    def _set_monitor_op(self) -> None:
        if self.mode == "min":
            self._greater = False
        elif self.mode == "max":
            self._greater = True
        else:
            name = self.monitor.removeprefix("val_")
            direction = None
            if name == "loss":
                direction = "down"
            elif self.model is not None:
                for m in getattr(self.model, "metrics", []):
                    if getattr(m, "name", None) == name:
                        direction = getattr(m, "direction", None)
            if direction is None:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor!r}, but "
                    "cannot tell whether it should be maximized or minimized; pass mode='max' "
                    "or mode='min'")
            self._greater = direction == "up"
        delta = self.min_delta if self._greater else -self.min_delta
        if self._greater:
            self.monitor_op = lambda cur, ref: cur - delta > ref
        else:
            self.monitor_op = lambda cur, ref: cur - delta < ref

    def _is_improvement(self, current: float, reference: Any) -> bool:
        if reference is None:
            return True
        assert self.monitor_op is not None
        return bool(self.monitor_op(current, reference))


class EarlyStopping(_Monitor):
    """Stop training when a monitored quantity has stopped improving (Keras semantics).

    Parameters
    ----------
    monitor : str
        A key of the epoch logs (``'val_loss'``, ``'loss'``, ``'val_accuracy'``, ...).
    min_delta : float
        Smaller changes do not count as improvement.
    patience : int
        Epochs without improvement before stopping.
    verbose : int
    mode : {'auto', 'min', 'max'}
    baseline : float, optional
        Training stops if the quantity does not beat it within ``patience`` epochs.
    restore_best_weights : bool
        At the end, restore the weights of the best epoch.
    start_from_epoch : int
        Epochs to wait before monitoring starts.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__(monitor, mode, None, min_delta)
        self.patience = check_int("EarlyStopping", "patience", patience, 0)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = check_int("EarlyStopping", "start_from_epoch",
                                          start_from_epoch, 0)
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Early stopping conditioned on metric {self.monitor!r} which is not "
                          f"available. Available metrics are: {', '.join(logs or {})}",
                          stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model (or its weights) during training.

    Parameters
    ----------
    filepath : str or PathLike
        May contain ``{epoch}`` and log keys with format specs, e.g.
        ``'ckpt-{epoch:02d}-{val_loss:.2f}.fr'``. Files are written by ``model.save`` (the
        suffix picks the format: ``.keras`` is Keras 3's; any other but ``.h5`` fastrnn's
        own) and :func:`fastrnn.keras.models.load_model` reads them; with
        ``save_weights_only`` the file holds only the weights (``model.save_weights``;
        ``model.load_weights`` reads it).
    monitor : str
    verbose : int
    save_best_only : bool
        Only save when the monitored quantity improves.
    save_weights_only : bool
    mode : {'auto', 'min', 'max'}
    save_freq : 'epoch' or int
        Save every epoch, or every that many batches.
    initial_value_threshold : float, optional
        Initial "best" value for ``save_best_only``.
    """

    def __init__(self, filepath: Any, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: Any = "epoch",
                 initial_value_threshold: float | None = None) -> None:
        super().__init__(monitor, mode, initial_value_threshold)
        try:
            self.filepath = os.fspath(filepath)
        except TypeError:
            raise TypeError(f"ModelCheckpoint: filepath must be a str or PathLike, got "
                            f"{filepath!r}") from None
        if not isinstance(self.filepath, str):
            raise TypeError(f"ModelCheckpoint: filepath must be a str or PathLike, got "
                            f"{filepath!r}")
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        if save_freq != "epoch" and (isinstance(save_freq, bool)
                                     or not isinstance(save_freq, (int, np.integer))
                                     or save_freq <= 0):
            raise ValueError(f"save_freq must be 'epoch' or a positive int, got {save_freq!r}")
        self.save_freq = save_freq
        self._batches_seen = 0
        self._current_epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current_epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches_seen += 1
        if self._batches_seen % self.save_freq == 0:
            self._save(self._current_epoch, logs or {}, batch=batch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, logs or {})

    def _path(self, epoch: int, logs: dict, batch: int | None) -> str:
        try:
            if batch is None or "{batch" not in self.filepath:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as exc:
            raise KeyError(f"ModelCheckpoint: filepath {self.filepath!r} refers to {exc} which "
                           f"is not in the logs (available: {', '.join(logs)})") from exc

    def _save(self, epoch: int, logs: dict, batch: int | None = None) -> None:
        path = self._path(epoch, logs, batch)
        if self.save_best_only:
            if self.monitor_op is None:
                self._set_monitor_op()
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available, "
                              "skipping.", stacklevel=2)
                return
            if not self._is_improvement(current, self.best):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                          f"{self.best:.5f}")
                return
            if self.verbose > 0:
                prev = "inf" if self.best is None else f"{self.best:.5f}"
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {prev} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at each epoch from ``schedule(epoch, lr) -> lr``."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function "
                            f"schedule(epoch, lr) -> lr, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        opt = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(opt.learning_rate))
        except TypeError:
            lr = self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(lr)) or lr < 0:
            raise ValueError(f"LearningRateScheduler: the schedule must return a finite "
                             f"non-negative float, got {lr!r} at epoch {epoch}")
        opt.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class TerminateOnNaN(Callback):
    """Stop training as soon as the loss becomes NaN or infinite."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda e, logs: ...)``."""

    def __init__(self, on_epoch_begin: Callable | None = None,
                 on_epoch_end: Callable | None = None, on_train_begin: Callable | None = None,
                 on_train_end: Callable | None = None, on_train_batch_begin: Callable | None = None,
                 on_train_batch_end: Callable | None = None, **kwargs: Any) -> None:
        super().__init__()
        given = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "on_train_begin": on_train_begin, "on_train_end": on_train_end,
                 "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end, **kwargs}
        for name, fn in given.items():
            if fn is not None:
                if not hasattr(Callback, name):
                    raise TypeError(f"LambdaCallback: unknown hook {name!r}")
                if not callable(fn):
                    raise TypeError(f"LambdaCallback: {name} must be a function, got {fn!r}")
                setattr(self, name, fn)
