"""Optimizers with Keras 3's update rules, defaults and gradient clipping.

All optimizers take ``learning_rate`` (a float or a callable ``schedule(iterations) -> lr``),
``weight_decay`` (decoupled, as Keras applies it), and at most one of ``clipnorm`` (clip each
weight's gradient to that L2 norm), ``clipvalue`` (clip each entry to ``±clipvalue``) and
``global_clipnorm`` (scale all gradients together so their joint norm is at most that).
Updates happen in place on NumPy arrays.

Non-finite gradients are not skipped, exactly as in Keras 3 (whose results these match):

- ``clipnorm``: a weight whose gradient norm is NaN gets an all-NaN gradient; a norm of inf
  scales the gradient by 0, so its finite entries become 0 and its inf entries NaN. Other
  weights are clipped normally.
- ``global_clipnorm``: a non-finite joint norm makes every gradient all-NaN.
- ``clipvalue``: ±inf entries are clipped to ±clipvalue, NaN entries stay NaN.
- no clipping: the gradient is used as it is.

So one non-finite gradient poisons the weights it reaches (NaN weights, NaN loss); stop
training with a callback that watches the loss, or clean the data (``fit`` already refuses
NaN/inf in x, y and sample_weight).

Examples
--------
>>> from fastrnn.keras import optimizers
>>> opt = optimizers.get("adam")
>>> opt = optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True, clipnorm=1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _native
from .._threads import get_num_threads
from .base import check_float

__all__ = ["SGD", "Adagrad", "Adam", "Optimizer", "RMSprop", "deserialize", "get", "serialize"]


class Optimizer:
    """Base class. Subclasses define ``_slot_names`` and ``_update``.

    Parameters
    ----------
    learning_rate : float or callable
        Step size, or ``schedule(iterations) -> float`` evaluated before each step.
    weight_decay : float, optional
        Decoupled weight decay: ``w -= w * weight_decay * lr`` before the update.
    clipnorm, clipvalue, global_clipnorm : float, optional
        Gradient clipping (at most one of them).
    name : str, optional
    """

    _slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: Any = 0.001, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        for k in ("use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
                  "gradient_accumulation_steps"):
            v = kwargs.pop(k, None)
            if v not in (None, False, 0.99):
                raise NotImplementedError(f"optimizer argument {k}={v!r} is not supported")
        if kwargs:
            raise TypeError(f"unexpected optimizer arguments: {', '.join(sorted(kwargs))}")
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm can be set; got "
                             f"clipnorm={clipnorm}, clipvalue={clipvalue}, "
                             f"global_clipnorm={global_clipnorm}")
        owner = type(self).__name__
        for argname, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                           ("global_clipnorm", global_clipnorm), ("weight_decay", weight_decay)):
            if v is not None:
                check_float(owner, argname, v, 0.0)
        clipnorm, clipvalue, global_clipnorm, weight_decay = (
            None if v is None else float(v)
            for v in (clipnorm, clipvalue, global_clipnorm, weight_decay))
        if not callable(learning_rate):
            learning_rate = check_float(owner, "learning_rate", learning_rate, 0.0)
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots: list[list[np.ndarray]] = []  # per slot name, one array per variable
        self._built = False

    # -- state ----------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether the per-variable state exists (after the first step or :meth:`build`)."""
        return self._built

    def build(self, variables: Sequence[np.ndarray]) -> None:
        """Create the per-variable state (zeros, or the subclass's initial value)."""
        self._slots = [[self._init_slot(name, v) for v in variables] for name in self._slot_names]
        self._built = True

    def _init_slot(self, name: str, v: np.ndarray) -> np.ndarray:
        return np.zeros_like(v)

    @property
    def variables(self) -> list[np.ndarray]:
        """Keras's optimizer variables: iterations, learning rate, then the slots (per slot
        name, one per model variable; e.g. Adam's momentums then velocities)."""
        if not self._built:
            return []
        it = np.array(self.iterations, dtype=np.int64)
        lr = np.array(self._current_lr(), dtype=np.float32)
        out = [it] + ([lr] if not callable(self.learning_rate) else [])
        for slot in self._slots:
            out.extend(slot)
        return out

    def get_state(self) -> list[np.ndarray]:
        """The arrays :meth:`set_state` takes back: iterations, then every slot array."""
        return [np.array(self.iterations, dtype=np.int64)] + [a for s in self._slots for a in s]

    def set_state(self, state: Sequence[np.ndarray], variables: Sequence[np.ndarray]) -> None:
        """Restore :meth:`get_state`'s arrays for the given model variables."""
        self.build(variables)
        flat = [a for s in self._slots for a in s]
        if len(state) != 1 + len(flat):
            raise ValueError(f"optimizer state has {len(state)} arrays, expected {1 + len(flat)}")
        self.iterations = int(state[0])
        for dst, src in zip(flat, state[1:], strict=True):
            if dst.shape != src.shape:
                raise ValueError(f"optimizer state array of shape {src.shape} does not match "
                                 f"the variable's shape {dst.shape}")
            dst[...] = src

    def _current_lr(self) -> float:
        lr = self.learning_rate
        if not callable(lr):
            return lr
        v = lr(self.iterations)
        owner = type(self).__name__
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: the learning_rate schedule must return a number, got "
                            f"{v!r}") from None
        return check_float(owner, "learning rate from the schedule", f, 0.0)

    # -- stepping -------------------------------------------------------------------------
    def clip_gradients(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        """Apply ``clipnorm``, ``global_clipnorm`` or ``clipvalue`` (Keras's order).

        Non-finite gradients follow Keras (see the module docstring): a NaN norm gives NaN
        gradients, an inf norm scales by zero.
        """
        if self.clipnorm:
            out = []
            for g in grads:
                n = math.sqrt(float(np.vdot(g, g)))
                if math.isnan(n):
                    out.append(np.full_like(g, np.nan))
                elif n > self.clipnorm:
                    out.append(g * (self.clipnorm / n))
                else:
                    out.append(g)
            return out
        if self.global_clipnorm:
            n = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
            if not math.isfinite(n):
                return [np.full_like(g, np.nan) for g in grads]
            if n > self.global_clipnorm:
                s = self.global_clipnorm / n
                return [g * s for g in grads]
            return grads
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def apply(self, variables: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """One optimisation step: update each variable in place from its gradient.

        Parameters
        ----------
        variables : sequence of ndarray
            The model's trainable arrays (always the same ones, in the same order).
        grads : sequence of ndarray
            Their gradients (same shapes).
        """
        variables, grads = list(variables), list(grads)
        if len(grads) != len(variables):
            raise ValueError(f"got {len(grads)} gradients for {len(variables)} variables")
        for i, (v, g) in enumerate(zip(variables, grads, strict=True)):
            if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
                raise TypeError(f"variable {i} must be a float ndarray (updated in place), got "
                                f"{type(v).__name__}")
            if np.shape(g) != v.shape:
                raise ValueError(f"gradient {i} has shape {np.shape(g)} but its variable has "
                                 f"shape {v.shape}")
        if not self._built:
            self.build(variables)
        elif self._slots and (len(self._slots[0]) != len(variables) or any(
                a.shape != v.shape for a, v in zip(self._slots[0], variables, strict=True))):
            raise ValueError("the optimizer was built for a different set of variables")
        grads = self.clip_gradients(grads)
        lr = self._current_lr()
        if self.weight_decay:
            f = 1.0 - self.weight_decay * lr
            for v in variables:
                v *= f
        self._step(variables, grads, lr)
        self.iterations += 1

    def apply_gradients(self, grads_and_vars: Any) -> None:
        """Keras's spelling: a sequence of ``(gradient, variable)`` pairs."""
        pairs = list(grads_and_vars)
        vs = [v.value if hasattr(v, "value") else v for _, v in pairs]
        self.apply(vs, [g for g, _ in pairs])

    def _step(self, variables: Sequence[np.ndarray], grads: Sequence[np.ndarray],
              lr: float) -> None:
        raise NotImplementedError

    # -- config ---------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments (JSON-compatible; a callable learning rate cannot be saved)."""
        if callable(self.learning_rate):
            raise ValueError("cannot serialize an optimizer with a callable learning_rate")
        return {"name": self.name, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config: dict) -> Optimizer:
        """Rebuild from :meth:`get_config`."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} lr={self.learning_rate} iterations={self.iterations}>"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, Keras's formulation.

    ``m = momentum * m - lr * g``; ``w += m`` (or ``w += momentum * m - lr * g`` with
    ``nesterov=True``); without momentum ``w -= lr * g``.
    """

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.momentum = check_float("SGD", "momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)
        self._slot_names = ("momentum",) if self.momentum != 0 else ()

    def _step(self, variables, grads, lr):
        if self.momentum == 0:
            for v, g in zip(variables, grads, strict=True):
                v -= lr * g
            return
        mom = self.momentum
        for v, g, m in zip(variables, grads, self._slots[0], strict=True):
            m *= mom
            m -= lr * g
            if self.nesterov:
                v += mom * m - lr * g
            else:
                v += m

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


def _fusable(v: np.ndarray, *others: Any) -> bool:
    """Whether a fused C update applies: float32/float64 arrays, one dtype and shape, all
    C-contiguous (anything else takes the NumPy formulation)."""
    if v.dtype not in (np.float32, np.float64) or not v.flags.c_contiguous:
        return False
    return all(isinstance(a, np.ndarray) and a.dtype == v.dtype and a.shape == v.shape
               and a.flags.c_contiguous for a in others)


class Adam(Optimizer):
    """Adam (Kingma & Ba), Keras's formulation with ``epsilon`` outside the square root.

    ``m += (g - m)(1 - b1)``; ``v += (g² - v)(1 - b2)``;
    ``w -= lr·sqrt(1 - b2^t)/(1 - b1^t) · m / (sqrt(v) + eps)``.
    """

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = check_float("Adam", "beta_1", beta_1, 0.0, 1.0, hi_open=True)
        self.beta_2 = check_float("Adam", "beta_2", beta_2, 0.0, 1.0, hi_open=True)
        self.epsilon = check_float("Adam", "epsilon", epsilon, 0.0)
        self.amsgrad = bool(amsgrad)
        self._slot_names = ("momentum", "velocity") + (("velocity_hat",) if amsgrad else ())

    def _step(self, variables, grads, lr):
        t = self.iterations + 1
        b1, b2 = self.beta_1, self.beta_2
        alpha = lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
        vh = self._slots[2] if self.amsgrad else [None] * len(variables)
        nt = get_num_threads()
        for v, g, m, vel, vhat in zip(variables, grads, self._slots[0], self._slots[1], vh,
                                      strict=True):
            if vhat is None and _fusable(v, g, m, vel):
                # one pass in C, same operations in the same order: bit-identical to below
                _native.adam_update(v, g, m, vel, 1.0 - b1, 1.0 - b2, alpha, self.epsilon, nt)
                continue
            m += (g - m) * (1.0 - b1)
            vel += (g * g - vel) * (1.0 - b2)
            if vhat is not None:
                np.maximum(vhat, vel, out=vhat)
                vel = vhat
            denom = np.sqrt(vel)
            denom += self.epsilon
            v -= (m * alpha) / denom

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class RMSprop(Optimizer):
    """RMSprop, Keras's formulation (``epsilon`` inside the square root; optional momentum and
    centering)."""

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho = check_float("RMSprop", "rho", rho, 0.0, 1.0)
        self.momentum = check_float("RMSprop", "momentum", momentum, 0.0, 1.0)
        self.epsilon = check_float("RMSprop", "epsilon", epsilon, 0.0)
        self.centered = bool(centered)
        names = ["velocity"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        self._slot_names = tuple(names)

    def _step(self, variables, grads, lr):
        n = len(variables)
        vel = self._slots[0]
        mom = self._slots[self._slot_names.index("momentum")] if self.momentum > 0 else [None] * n
        avg = (self._slots[self._slot_names.index("average_gradient")] if self.centered
               else [None] * n)
        rho = self.rho
        for v, g, ve, mo, av in zip(variables, grads, vel, mom, avg, strict=True):
            ve *= rho
            ve += (1.0 - rho) * (g * g)
            if av is not None:
                av *= rho
                av += (1.0 - rho) * g
                denom = ve - av * av + self.epsilon
            else:
                denom = ve + self.epsilon
            inc = (lr * g) / np.sqrt(denom)
            if mo is not None:
                mo *= self.momentum
                mo += inc
                v -= mo
            else:
                v -= inc

    def get_config(self) -> dict:
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad: ``acc += g²``; ``w -= lr·g / sqrt(acc + eps)``; ``acc`` starts at
    ``initial_accumulator_value`` (0.1, as Keras)."""

    def __init__(self, learning_rate: Any = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = check_float("Adagrad", "initial_accumulator_value",
                                                     initial_accumulator_value, 0.0)
        self.epsilon = check_float("Adagrad", "epsilon", epsilon, 0.0)
        self._slot_names = ("accumulator",)

    def _init_slot(self, name, v):
        return np.full_like(v, self.initial_accumulator_value)

    def _step(self, variables, grads, lr):
        for v, g, acc in zip(variables, grads, self._slots[0], strict=True):
            acc += g * g
            v -= (lr * g) / np.sqrt(acc + self.epsilon)

    def get_config(self) -> dict:
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


_NAMES: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop,
                                      "adagrad": Adagrad}
_CLASSES: dict[str, type[Optimizer]] = {c.__name__: c for c in (SGD, Adam, RMSprop, Adagrad)}


def get(identifier: Any) -> Optimizer:
    """Resolve ``'sgd'``, ``'adam'``, ``'rmsprop'``, ``'adagrad'`` (any case), a serialized dict
    or an :class:`Optimizer` instance (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; expected one of "
                             f"{', '.join(sorted(_NAMES))} or an Optimizer instance")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"could not interpret optimizer {identifier!r}; pass a name ('adam', ...) or "
                     "a fastrnn.keras.optimizers instance (not a Keras optimizer)")


def serialize(optimizer: Optimizer) -> dict:
    """``{'class_name': ..., 'config': ...}`` for a built-in optimizer."""
    if type(optimizer).__name__ not in _CLASSES:
        raise ValueError(f"cannot serialize custom optimizer {optimizer!r}")
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict) -> Optimizer:
    """Inverse of :func:`serialize`."""
    if not isinstance(config, dict) or config.get("class_name") not in _CLASSES:
        raise ValueError(f"unknown optimizer config {config!r}")
    return _CLASSES[config["class_name"]].from_config(dict(config.get("config") or {}))
