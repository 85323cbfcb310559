"""Base classes of the Keras-compatible layers: :class:`Variable` and :class:`Layer`.

A layer computes forward and backward explicitly (no autodiff engine):

- ``forward(x, mask, training) -> (y, out_mask)`` caches what ``backward`` needs when
  ``training`` is true;
- ``backward(dy) -> dx`` returns the input gradient (None when the input is not
  differentiable, e.g. Embedding's ids) and sets ``variable.grad`` for every weight.

Several inputs or outputs (the functional API, :mod:`fastrnn.keras.functional`):

- a layer whose class sets ``multi_input = True`` (merge layers, attention; a recurrent layer
  given ``initial_state``) takes ``forward(xs, masks, training)`` with ``xs`` a list of
  arrays and ``masks`` a list (one mask or None per input) or None; its
  ``backward(dy, need_dx)`` returns a list with one gradient (or None) per input. Its
  ``build``/``compute_output_shape``/``check_input_shape`` receive a list of shapes. Eager
  ``layer([a, b])`` works on NumPy arrays.
- a layer with several outputs (a recurrent layer with ``return_state=True``) returns a list
  of outputs from ``forward`` (its mask belongs to the first) and a list of shapes from
  ``compute_output_shape``; its ``backward`` takes a list of output gradients, None for an
  output that received none.
- ``backward`` always refers to the layer's last ``forward``. A layer shared by several nodes
  of a graph is the graph's business: it snapshots the layer's attributes after each node's
  forward and restores them before that node's backward, and it sums the weight gradients of
  the nodes (a layer's ``backward`` overwrites ``variable.grad``).

Weights are stored in whatever layout the compute path wants (for recurrent layers, the
kernels' ``(G·H, I)`` layout); ``get_weights``/``set_weights`` and ``Variable.numpy()`` always
speak Keras's layout.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import initializers as _inits
from . import mixed_precision as _mp
from .backend import to_snake_case, unique_name

Shape = tuple  # a shape with None for unknown dimensions

# Bytes new weights may still take (None: no limit). load_model sets it from the archive so that
# a hand-edited config (units=10**9) fails cleanly instead of allocating what the file never held.
_WEIGHT_BUDGET: list[int] | None = None


@contextlib.contextmanager
def weight_budget(nbytes: int) -> Iterator[None]:
    """Within the block, creating weights of more than ``nbytes`` in all raises ValueError."""
    global _WEIGHT_BUDGET
    old, _WEIGHT_BUDGET = _WEIGHT_BUDGET, [int(nbytes)]
    try:
        yield
    finally:
        _WEIGHT_BUDGET = old


class Variable:
    """One weight of a layer.

    Attributes
    ----------
    name : str
        Keras's name (``'kernel'``, ``'recurrent_kernel'``, ``'bias'``, ``'embeddings'``).
    value : ndarray
        The stored array (the compute layout; updated in place by optimizers).
    grad : ndarray or None
        Gradient of the loss with respect to ``value`` after a backward pass.
    trainable : bool
    version : int
        Counts the changes of ``value``: :meth:`assign` and the model's optimizer steps bump
        it, so that what is derived from the weights (a recurrent layer's bfloat16 or int8
        prepared weights) is made again. Code that writes ``value`` in place otherwise bumps
        it too.
    """

    __slots__ = ("name", "path", "value", "grad", "trainable", "_to_keras", "_from_keras",
                 "keras_shape", "version")

    def __init__(self, name: str, value: np.ndarray, keras_shape: tuple[int, ...],
                 to_keras: Callable[[np.ndarray], np.ndarray] | None = None,
                 from_keras: Callable[[np.ndarray], np.ndarray] | None = None,
                 trainable: bool = True, path: str = "") -> None:
        self.name = name
        self.path = path or name
        self.value = value
        self.grad: np.ndarray | None = None
        self.trainable = trainable
        self.keras_shape = tuple(int(s) for s in keras_shape)
        self._to_keras = to_keras
        self._from_keras = from_keras
        self.version = 0

    @property
    def shape(self) -> tuple[int, ...]:
        """Keras's shape of this weight."""
        return self.keras_shape

    @property
    def dtype(self) -> np.dtype:
        """The weight's dtype."""
        return self.value.dtype

    def numpy(self) -> np.ndarray:
        """A copy of the value in Keras's layout."""
        if self._to_keras is None:
            return self.value.copy()
        return np.ascontiguousarray(self._to_keras(self.value))

    def assign(self, keras_value: Any) -> None:
        """Set the value from an array in Keras's layout (shape checked, cast to dtype)."""
        a = np.asarray(keras_value)
        if a.shape != self.keras_shape:
            raise ValueError(f"weight {self.path!r} expects shape {self.keras_shape}, "
                             f"got {a.shape}")
        if a.dtype.kind not in "fiu":
            raise TypeError(f"weight {self.path!r} expects a real (float or int) array, got "
                            f"dtype {a.dtype}")
        conv = a if self._from_keras is None else self._from_keras(a)
        self.value[...] = conv
        self.version += 1

    def __repr__(self) -> str:
        return f"<Variable {self.path} shape={self.keras_shape} dtype={self.value.dtype}>"


def check_float(owner: str, argname: str, value: Any, lo: float = -math.inf,
                hi: float = math.inf, lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a finite float within the given bounds, else a ValueError/TypeError that
    names ``owner`` and ``argname`` and the accepted range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {argname} must be a number, got {value!r}")
    v = float(value)
    lo_ok = v > lo if lo_open else v >= lo
    hi_ok = v < hi if hi_open else v <= hi
    if not (math.isfinite(v) and lo_ok and hi_ok):
        if math.isfinite(lo) and math.isfinite(hi):
            where = f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        elif math.isfinite(lo):
            where = f" {'>' if lo_open else '>='} {lo:g}"
        else:
            where = " a finite number"
        raise ValueError(f"{owner}: {argname} must be{where}, got {value!r}")
    return v


def reject_unsupported(owner: str, **args: Any) -> None:
    """NotImplementedError naming the first of the Keras arguments ``args`` (in order) that
    is not None: fastrnn does not implement them (regularizers, constraints, LoRA...)."""
    for k, v in args.items():
        if v is not None:
            raise NotImplementedError(f"{owner}: {k} is not supported")


def check_int(owner: str, argname: str, value: Any, lo: int = 0) -> int:
    """``value`` as an int ``>= lo`` (bools and floats refused) or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {argname} must be an int >= {lo}, got {value!r}")
    if value < lo:
        raise ValueError(f"{owner}: {argname} must be an int >= {lo}, got {value!r}")
    return int(value)


def normalize_shape(shape: Any, argname: str) -> tuple:
    """A shape tuple with ints or None."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if isinstance(shape, (str, bytes)):
        raise ValueError(f"{argname} must be a tuple of ints or None, got {shape!r}")
    try:
        out = tuple(None if s is None else _int_entry(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{argname} must be a tuple of ints or None, got {shape!r}") from exc
    if any(s is not None and s < 0 for s in out):
        raise ValueError(f"{argname} must have non-negative entries, got {shape!r}")
    return out


def _int_entry(s: Any) -> int:
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
        raise TypeError(f"not an int: {s!r}")
    return int(s)


def weights_list(weights: Any, what: str) -> list:
    """``weights`` as a list of arrays, or a TypeError naming ``what``."""
    if isinstance(weights, (str, bytes, np.ndarray)) or not isinstance(weights, Sequence) \
            and not hasattr(weights, "__iter__"):
        raise TypeError(f"{what} expects a list of arrays (as get_weights() returns), got "
                        f"{type(weights).__name__}")
    return list(weights)


def assign_weights(variables: Sequence[Variable], weights: list,
                   describe: Callable[[Variable], str]) -> None:
    """Write ``weights[i]`` into ``variables[i]`` after checking every shape first (nothing is
    written when one is wrong).

    Parameters
    ----------
    variables : sequence of Variable
    weights : list of array-like
        As many arrays as ``variables`` (the caller checks the count), in Keras's layout.
    describe : callable
        ``describe(variable)`` names the variable in the error message.

    Raises
    ------
    ValueError
        For the first array whose shape is not its variable's.
    """
    for v, w in zip(variables, weights, strict=True):
        if np.shape(w) != v.shape:
            raise ValueError(f"{describe(v)} expects shape {v.shape}, got {np.shape(w)}")
    for v, w in zip(variables, weights, strict=True):
        v.assign(w)


def mask_to_lengths(mask: np.ndarray | None, batch: int, steps: int) -> np.ndarray | None:
    """Per-sequence lengths of a post-padding mask (None when nothing is masked).

    Raises
    ------
    ValueError
        When the mask is not a padding mask at the end of each sequence.
    """
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (batch, steps):
        raise ValueError(f"mask must have shape (batch, timesteps) = {(batch, steps)}, got "
                         f"{mask.shape}")
    lengths = mask.sum(axis=1)
    if int(lengths.min(initial=steps)) == steps:
        return None
    expected = np.arange(steps)[None, :] < lengths[:, None]
    if not np.array_equal(mask, expected):
        bad = int(np.nonzero((mask != expected).any(axis=1))[0][0])
        raise ValueError(
            "mask is not a padding mask at the end of the sequences: sequence "
            f"{bad} has masked steps before valid ones ({mask[bad].astype(int).tolist()[:20]}"
            f"{'...' if steps > 20 else ''}). fastrnn's recurrent layers need post-padding: pad "
            "with padding='post' (keras.utils.pad_sequences defaults to 'pre')")
    return lengths.astype(np.int64)


_COMMON_KWARGS = ("name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
                  "input_dim", "input_length")


class Layer:
    """Base class of fastrnn's Keras-compatible layers.

    Inputs of another real dtype (float16, ints, bools) are cast to the layer's float type,
    as Keras autocasts; complex, object and string arrays are a TypeError. NaN and inf in the
    input propagate to the outputs of the affected samples (nothing is checked per value).

    Parameters
    ----------
    name : str, optional
        Unique name; Keras-style default (``'lstm'``, ``'lstm_1'``, ...).
    trainable : bool
        Whether optimizers update this layer's weights.
    dtype : {'float32', 'float64', 'mixed_bfloat16'} or DTypePolicy, optional
        The layer's float type, or a dtype policy (:mod:`fastrnn.keras.mixed_precision`;
        default the global policy, initially :func:`fastrnn.keras.models.floatx`).
    input_shape : tuple, optional
        Shape of one sample (no batch axis), as Keras's first-layer ``input_shape``.
    batch_input_shape : tuple, optional
        Shape including the batch axis.
    batch_size : int, optional
        Fixed batch size (with ``input_shape``), needed by stateful layers.
    """

    supports_masking = False
    multi_input = False  # True: forward/backward take/give lists (see the module docstring)

    def __init__(self, name: str | None = None, trainable: bool = True, dtype: Any = None,
                 input_shape: Any = None, batch_input_shape: Any = None,
                 batch_size: int | None = None, input_dim: int | None = None,
                 **kwargs: Any) -> None:
        kwargs.pop("input_length", None)
        for k in ("activity_regularizer",):
            if kwargs.pop(k, None) is not None:
                raise NotImplementedError(f"{type(self).__name__}: {k} is not supported")
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments: "
                            f"{', '.join(sorted(kwargs))}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.trainable = bool(trainable)
        #: the layer's dtype policy (:mod:`fastrnn.keras.mixed_precision`); ``dtype`` is
        #: its variable dtype, the type of the weights and of the arrays between layers
        self.dtype_policy = _mp.get(dtype)
        self.dtype = self.dtype_policy.variable_dtype
        self._batch_input_shape: tuple | None = None
        if batch_input_shape is not None:
            self._batch_input_shape = normalize_shape(batch_input_shape, "batch_input_shape")
        elif input_shape is not None:
            self._batch_input_shape = (batch_size,) + normalize_shape(input_shape, "input_shape")
        elif input_dim is not None:
            self._batch_input_shape = (batch_size, int(input_dim))
        self.built = False
        self.input_shape: tuple | None = None
        self.output_shape: tuple | None = None
        self._variables: list[Variable] = []

    @property
    def compute_dtype(self) -> str:
        """The dtype the layer computes in (its policy's; ``"bfloat16"`` for a recurrent
        layer under ``"mixed_bfloat16"``, whose inputs and outputs stay :attr:`dtype`)."""
        return self.dtype_policy.compute_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype of the weights (:attr:`dtype`)."""
        return self.dtype_policy.variable_dtype

    # -- shapes and building --------------------------------------------------------------
    def build(self, input_shape: tuple) -> None:
        """Create the weights for inputs of ``input_shape`` (batch axis included)."""
        self.built = True

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Output shape for an input shape (batch axis included, None for unknown)."""
        return tuple(input_shape)

    def compute_mask(self, inputs: Any, mask: np.ndarray | None) -> np.ndarray | None:
        """The output mask (Keras semantics)."""
        return mask if self.supports_masking else None

    def _build_for(self, input_shape: Any) -> Any:
        """Check, build if needed, record shapes; returns the output shape (a list of shapes
        for several outputs). A :attr:`multi_input` layer gets a list of shapes."""
        input_shape = ([tuple(s) for s in input_shape] if self.multi_input
                       else tuple(input_shape))
        self.check_input_shape(input_shape)
        if not self.built:
            self.build(input_shape)
            self.built = True
        out = self.compute_output_shape(input_shape)
        self.input_shape = input_shape
        self.output_shape = out
        return out

    def check_input_shape(self, shape: tuple) -> None:
        """Raise a clear ValueError if ``shape`` (batch axis included) cannot feed this layer."""

    def _expect_rank(self, shape: tuple, ranks: Sequence[int], what: str) -> None:
        if len(shape) not in ranks:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects a "
                             f"{'-D or '.join(str(r) for r in ranks)}-D input {what}, got an "
                             f"input of shape {tuple(shape)}")

    # -- weights --------------------------------------------------------------------------
    def add_weight(self, name: str, keras_shape: tuple[int, ...], initializer: Any,
                   to_keras: Callable | None = None, from_keras: Callable | None = None,
                   trainable: bool = True) -> Variable:
        """Create a weight initialised in Keras's layout, stored in the compute layout."""
        init = _inits.get(initializer)
        if _WEIGHT_BUDGET is not None:
            _WEIGHT_BUDGET[0] -= math.prod(keras_shape) * np.dtype(self.dtype).itemsize
            if _WEIGHT_BUDGET[0] < 0:
                raise ValueError(f"weight {self.name}/{name} of shape {tuple(keras_shape)} "
                                 "makes the model larger than the arrays the file holds")
        keras_value = np.asarray(init(keras_shape, dtype=self.dtype), dtype=self.dtype)
        if keras_value.shape != tuple(keras_shape):
            raise ValueError(f"initializer for {self.name}/{name} returned shape "
                             f"{keras_value.shape}, expected {tuple(keras_shape)}")
        value = keras_value if from_keras is None else from_keras(keras_value)
        value = np.ascontiguousarray(value, dtype=self.dtype)
        v = Variable(name, value, keras_shape, to_keras, from_keras, trainable,
                     path=f"{self.name}/{name}")
        self._variables.append(v)
        return v

    @property
    def weights(self) -> list[Variable]:
        """All weights, in Keras's order."""
        return list(self._variables)

    @property
    def trainable_weights(self) -> list[Variable]:
        """Weights optimizers update."""
        return [v for v in self.weights if v.trainable] if self.trainable else []

    @property
    def non_trainable_weights(self) -> list[Variable]:
        """Weights optimizers leave alone."""
        if not self.trainable:
            return self.weights
        return [v for v in self.weights if not v.trainable]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights in Keras's layout and order."""
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Set the weights from arrays in Keras's layout and order (shapes checked)."""
        ws = self.weights
        weights = weights_list(weights, f"layer {self.name!r}: set_weights")
        if len(weights) != len(ws):
            raise ValueError(f"layer {self.name!r} has {len(ws)} weights "
                             f"({', '.join(f'{v.name}{v.shape}' for v in ws)}), got "
                             f"{len(weights)} arrays")
        assign_weights(ws, weights, lambda v: f"layer {self.name!r}: weight {v.name!r}")

    def count_params(self) -> int:
        """Number of scalars in the weights (Keras's count)."""
        return int(sum(math.prod(v.shape) for v in self.weights))

    # -- compute --------------------------------------------------------------------------
    def forward(self, x: np.ndarray, mask: np.ndarray | None, training: bool
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """Compute the output and output mask, caching for :meth:`backward` if training."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Input gradient from the output gradient; sets each weight's ``grad``.

        Parameters
        ----------
        dy : ndarray
            Gradient of the loss with respect to the output of the last :meth:`forward`
            (which had ``training=True``).
        need_dx : bool
            Whether the caller uses the input gradient. ``Sequential`` passes False to layers
            that no trainable weight precedes (their input is data); a layer may then skip
            computing it and return None (the recurrent layers do).

        Returns
        -------
        ndarray or None
            The input gradient, or None when the input is not differentiable (Embedding's
            ids) or ``need_dx`` is False and the layer skipped it.
        """
        raise NotImplementedError

    def __call__(self, inputs: Any, mask: Any = None, training: bool | None = None,
                 **kwargs: Any) -> Any:
        """Run the layer eagerly on a NumPy batch (builds it on first use), or, called on
        :func:`fastrnn.keras.Input` tensors, record it in a functional graph and return its
        symbolic output(s)."""
        from .symbolic import is_symbolic, symbolic_call

        if is_symbolic(inputs, kwargs):
            return symbolic_call(self, inputs, mask=mask, training=training, **kwargs)
        if kwargs:
            raise TypeError(f"layer {self.name!r} ({type(self).__name__}) got unexpected "
                            f"keyword arguments: {', '.join(sorted(kwargs))}")
        if self.multi_input:
            if not isinstance(inputs, (list, tuple)) or not inputs:
                raise TypeError(f"layer {self.name!r} ({type(self).__name__}) takes a list of "
                                f"inputs, got {type(inputs).__name__}")
            xs = [self._prepare_input(a) for a in inputs]
            self._build_for([(None,) + tuple(x.shape[1:]) for x in xs])
            masks = None if mask is None else [None if m is None else np.asarray(m, dtype=bool)
                                               for m in mask]
            return self.forward(xs, masks, bool(training))[0]
        x = self._prepare_input(inputs)
        self._build_for((None,) + tuple(x.shape[1:]))
        self.check_batch(x)
        y, _ = self.forward(x, None if mask is None else np.asarray(mask, dtype=bool),
                            bool(training))
        return y

    # -- functional-graph connectivity (Keras's layer.input / layer.output) ----------------
    def _only_node(self, what: str) -> Any:
        nodes = getattr(self, "_inbound_nodes", [])
        if not nodes:
            raise AttributeError(f"layer {self.name!r} has never been called on a symbolic "
                                 f"tensor (keras.Input), so it has no {what}")
        if len(nodes) > 1:
            raise AttributeError(f"layer {self.name!r} has been called {len(nodes)} times "
                                 f"(a shared layer), so its {what} is ambiguous; use the "
                                 "tensors its calls returned")
        return nodes[0]

    @property
    def input(self) -> Any:
        """The symbolic input of the layer's one call in a functional graph (a list for
        several inputs)."""
        node = self._only_node("input")
        if not node.inputs:  # an InputLayer: its tensor
            return node.outputs[0]
        return node.inputs[0] if len(node.inputs) == 1 else list(node.inputs)

    @property
    def output(self) -> Any:
        """The symbolic output of the layer's one call (a list for several outputs)."""
        node = self._only_node("output")
        return node.outputs[0] if len(node.outputs) == 1 else list(node.outputs)

    def _prepare_input(self, inputs: Any) -> np.ndarray:
        x = np.asarray(inputs)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"layer {self.name!r} expects a numeric array, got dtype {x.dtype}"
                            + (" (a list of symbolic and non-symbolic values? the functional "
                               "API calls layers on keras.Input tensors only)"
                               if x.dtype == object else ""))
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        return x

    def check_batch(self, x: np.ndarray) -> None:
        """Validate an actual input batch against the built input shape."""
        if self.input_shape is None:
            return
        spec = self.input_shape
        if x.ndim != len(spec):
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects input of "
                             f"rank {len(spec)} (shape {spec}), got shape {x.shape}")
        for i, (a, b) in enumerate(zip(x.shape[1:], spec[1:], strict=True), start=1):
            if b is not None and a != b:
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}) expects input "
                                 f"shape {spec}, got {x.shape} (axis {i} differs)")

    # -- state / config -------------------------------------------------------------------
    def reset_states(self) -> None:
        """Reset recurrent state (stateful layers only; no-op otherwise)."""

    def get_config(self) -> dict:
        """Constructor arguments as a JSON-compatible dict (Keras-style)."""
        cfg: dict[str, Any] = {"name": self.name, "trainable": self.trainable,
                               "dtype": self.dtype_policy.name}
        if self._batch_input_shape is not None:
            cfg["batch_input_shape"] = list(self._batch_input_shape)
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        """Rebuild a layer from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


def serialize_registered(registry: dict, obj: Any, what: str) -> dict:
    """``{'class_name', 'config'}`` of ``obj``, whose class must be ``registry``'s entry for
    its name (``what``: "layer" or "cell", for the error message)."""
    name = type(obj).__name__
    if registry.get(name) is not type(obj):
        raise ValueError(f"cannot serialize {what} {getattr(obj, 'name', obj)!r} of type "
                         f"{name}: only fastrnn's built-in {what}s can be saved "
                         f"({', '.join(sorted(registry))})")
    return {"class_name": name, "config": obj.get_config()}


def registered_class(registry: dict, config: Any, what: str) -> tuple[type, dict]:
    """The class ``registry`` holds for ``config["class_name"]`` and a copy of
    ``config["config"]``; ValueError names what is wrong with ``config``."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"a {what} config must be a dict with 'class_name', got {config!r}")
    cls = registry.get(config["class_name"])
    if cls is None:
        raise ValueError(f"unknown {what} type {config['class_name']!r}; known: "
                         f"{', '.join(sorted(registry))}")
    cfg = config.get("config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{what} config of {config['class_name']} must be a dict")
    return cls, dict(cfg)


def serialize_initializer(init: Any) -> Any:
    """JSON form of an initializer argument."""
    return _inits.serialize(_inits.get(init))
