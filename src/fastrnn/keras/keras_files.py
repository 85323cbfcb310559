"""Keras's own model files: ``.keras`` archives, ``.weights.h5`` weights, legacy ``.h5`` models.

What is read and written
------------------------
Sequential and functional models (Keras's ``Functional`` config: layers with their
``inbound_nodes``, run in an order where every call's inputs exist; ``initial_state``
tensors; list or dict inputs and outputs). A model used as a layer inside another is not
read or written in Keras's format (fastrnn's own format keeps it).

- ``.keras`` (Keras 3): a zip archive of ``config.json`` (the model's Keras config),
  ``metadata.json`` and ``model.weights.h5`` (the weights, HDF5). :func:`load_model` reads the
  ones Keras writes; ``model.save("m.keras")`` writes one that ``keras.saving.load_model``
  reads. The architecture, the weights, the compile settings (optimizer, loss, metrics by
  name) and the optimizer's state (``optimizer/vars``: iteration, learning rate, then the
  slots in Keras's order) travel both ways; compile settings fastrnn lacks leave the loaded
  model uncompiled with a warning, as Keras does.
- ``.weights.h5`` (Keras 3): the weights alone, in the same HDF5 layout as inside a
  ``.keras`` archive (``layers/<layer>/vars/<i>``; a recurrent layer's under
  ``layers/<layer>/cell/vars``, a Bidirectional's under ``forward_layer/`` and
  ``backward_layer/``, a TimeDistributed's under ``layer/``, an ``RNN(cell)``'s under
  ``cell/vars`` and a ``StackedRNNCells``'s under ``cell/cells/<cell>/vars``; the group names
  are the layer classes in snake case, numbered ``_1``, ``_2``, ... when repeated, as Keras
  names them). Every layer fastrnn has crosses (convolution, pooling, normalization with
  BatchNormalization's moving statistics, merging, attention, LeakyReLU,
  SpatialDropout1D, ``RNN`` of the built-in cells) but ``Lambda``: Keras stores its
  function as marshalled Python bytecode, which fastrnn never loads (even with
  ``safe_mode=False``) nor writes.
- Legacy Keras 2 HDF5 models (``.h5``): the ``model_config`` attribute and the
  ``model_weights/<layer name>`` groups (each with its ``weight_names`` attribute) are read;
  fastrnn does not write this format (Keras 3 calls it legacy too).

The file kind is read from the file's first bytes (HDF5 signature, or a zip whose
``config.json`` is or is not fastrnn's), never from its suffix; saving picks the format from
the suffix: ``.keras`` and ``.weights.h5`` as above, ``.h5``/``.hdf5`` refused, anything else
fastrnn's own format (:mod:`fastrnn.keras.saving`).

Files from an untrusted source
------------------------------
Nothing in a file executes code: the config is JSON, layer classes come from fastrnn's fixed
registry (a file naming a class fastrnn lacks, a ``Lambda`` layer, a custom cell or a custom
object, fails with a message listing all of them). The rebuilt model may allocate no more
weight bytes than the file's HDF5 part holds (its zip member's declared size, capped by what
the archive's bytes can expand to, or the ``.h5`` file's size). The zip archive is opened as
fastrnn's own (members stored or deflated, none named twice, ``config.json`` at most 4 MiB
and 64 levels deep), and ``model.weights.h5`` may declare at most the model's array budget
(:func:`fastrnn.keras.saving.array_budget`) plus 4 MiB of HDF5 bookkeeping; a stream that
expands beyond its declared size fails its CRC. In the HDF5 part only the paths the model
needs are visited, each step through a hard link (soft and external links are refused, never
followed), at most :data:`MAX_H5_DEPTH` levels deep; each ``vars`` group must hold exactly
the expected datasets; each dataset's shape and dtype must be the model's before any of it
is read, and its storage contiguous or compact in the file itself (external files, virtual
datasets and chunked, possibly compressed, storage are refused). Anything else is a
:class:`~fastrnn.keras.saving.ModelFileError`.

h5py is an optional dependency (``pip install 'fastrnn[keras-files]'``), imported only when
a Keras HDF5 file is read or written.
"""

from __future__ import annotations

import datetime
import inspect
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import saving as _saving
from .base import Layer, Variable, weight_budget
from .layers import _REGISTRY, TimeDistributed
from .recurrent import Bidirectional, _RNNBase
from .rnn_cells import _RNN_ARGS, RNN, StackedRNNCells
from .saving import ModelFileError

__all__ = ["file_format", "load_model", "load_weights", "save_model", "save_weights",
           "MAX_H5_DEPTH"]

H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: The deepest HDF5 path (in groups) a Keras weights file may make the reader follow.
MAX_H5_DEPTH = 16
_H5_SLACK = 4 << 20  # HDF5 bookkeeping (superblock, group and dataset headers) allowed
_MAX_NAME = 1024  # a legacy weight name's length at most
_MAX_LEGACY_LAYERS = 10_000  # entries of a legacy file's layer_names at most
_KERAS_VERSION = "3.0.0"  # written to metadata.json (the oldest Keras that reads the file)

# Keras settings fastrnn's layers do not take, harmless with these values (or any value:
# ``None`` in the table): dropped when a Keras config is read.
_HARMLESS: dict[str, Any] = {
    "data_format": "channels_last", "implementation": None, "use_cudnn": None,
    "sparse": False, "ragged": False, "optional": False, "quantization_config": None,
    "lora_rank": None, "lora_alpha": None, "shared_object_id": None, "synchronized": False,
    "renorm_momentum": None,  # BatchNormalization's, used only with renorm=True (refused)
}
# Keras's Lambda stores its function as marshalled Python bytecode: never read or written
_LAMBDA_REFUSED = ("a Lambda layer's function is Python bytecode in a Keras file, which "
                   "fastrnn never loads or writes")


def _fail(path: str, msg: str) -> ModelFileError:
    return ModelFileError(f"cannot load {path!r}: {msg}")


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - CI installs h5py
        raise ImportError("Keras's HDF5 files (.keras, .weights.h5, .h5) need h5py: "
                          "pip install 'fastrnn[keras-files]' (or pip install h5py)") from exc
    return h5py


def file_format(path: Any) -> str:
    """The format a save to ``path`` writes, from its suffix.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    str
        ``'keras'`` (``.keras``), ``'keras-weights'`` (``.weights.h5``), ``'legacy-h5'``
        (any other ``.h5``/``.hdf5``: not written) or ``'fastrnn'`` (anything else).
    """
    p = os.fspath(path).lower()
    if p.endswith(".weights.h5"):
        return "keras-weights"
    if p.endswith(".keras"):
        return "keras"
    if p.endswith((".h5", ".hdf5")):
        return "legacy-h5"
    return "fastrnn"


def _snake(name: str) -> str:
    """Keras's snake case of a class name (``SimpleRNN`` -> ``simple_rnn``)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


# -- where each weight lives in Keras's HDF5 layout -------------------------------------------

def _layer_groups(layer: Layer, prefix: str) -> list[tuple[str, str, list[Variable]]]:
    """``(group path, its 'name' attribute, the variables it holds)`` of one layer, as Keras
    3 lays it out (read from files Keras wrote: an RNN's weights are its cell's)."""
    own = (f"{prefix}/vars", layer.name)
    if isinstance(layer, Bidirectional):
        return [(*own, [])] + _layer_groups(layer.forward_layer, f"{prefix}/forward_layer") \
            + _layer_groups(layer.backward_layer, f"{prefix}/backward_layer")
    if isinstance(layer, _RNNBase):
        cell = _snake(type(layer).__name__) + "_cell"
        return [(*own, []), (f"{prefix}/cell/vars", cell, list(layer.weights))]
    if isinstance(layer, TimeDistributed):
        return [(*own, [])] + _layer_groups(layer.layer, f"{prefix}/layer")
    if isinstance(layer, RNN):
        return [(*own, [])] + _cell_groups(layer.cell, f"{prefix}/cell")
    return [(*own, list(layer.weights))]


def _cell_groups(cell: Any, prefix: str) -> list[tuple[str, str, list[Variable]]]:
    """The groups of an ``RNN``'s cell: a stack's cells under ``cells/<class>[_n]``, named
    as Keras names list members (read from files Keras wrote)."""
    name = getattr(cell, "name", _snake(type(cell).__name__))
    if not isinstance(cell, StackedRNNCells):
        return [(f"{prefix}/vars", name, list(getattr(cell, "weights", [])))]
    out: list[tuple[str, str, list[Variable]]] = [(f"{prefix}/vars", name, [])]
    counts: dict[str, int] = {}
    for c in cell.cells:
        base = _snake(type(c).__name__)
        n = counts.get(base, 0)
        counts[base] = n + 1
        out += _cell_groups(c, f"{prefix}/cells/" + (base if n == 0 else f"{base}_{n}"))
    return out


def weight_plan(model: Any) -> list[tuple[str, str, list[Variable]]]:
    """Every group of the model's Keras weights file, in the model's weight order.

    Parameters
    ----------
    model : Sequential or Model
        A built model.

    Returns
    -------
    list of (str, str, list of Variable)
        The group's path, its ``name`` attribute and the variables it holds (datasets
        ``0``, ``1``, ... in Keras's order).
    """
    counts: dict[str, int] = {}
    plan: list[tuple[str, str, list[Variable]]] = []
    for layer in model.layers:
        base = _snake(type(layer).__name__)
        n = counts.get(base, 0)
        counts[base] = n + 1
        plan += _layer_groups(layer, "layers/" + (base if n == 0 else f"{base}_{n}"))
    flat = [v for _, _, vs in plan for v in vs]
    weights = model.weights
    if len(flat) != len(weights) or any(a is not b for a, b in zip(flat, weights, strict=True)):
        raise ValueError("the model's weights are not its layers' in order: cannot map them "
                         "to Keras's weights file")
    return plan


# Keras creates these slots of an optimizer together, interleaved per variable (one
# ``add_optimizer_variables`` call); every other slot follows one slot name at a time (read
# from ``optimizer.variables`` of each Keras optimizer).
_INTERLEAVED = {"Adam": ("momentum", "velocity")}


def _slot_order(opt: Any, n: int) -> list[tuple[int, int]]:
    """(slot index, variable index) of each optimizer array after iteration and learning
    rate, in Keras's order."""
    names = list(opt._slot_names)
    together = [s for s in _INTERLEAVED.get(type(opt).__name__, ()) if s in names]
    order = [(names.index(s), i) for i in range(n) for s in together]
    for k, s in enumerate(names):
        if s not in together:
            order += [(k, i) for i in range(n)]
    return order


def _optimizer_arrays(model: Any) -> list[np.ndarray] | None:
    """The compiled model's optimizer state as Keras's ``optimizer/vars`` (iteration,
    learning rate, the slots in Keras's order and weight layout), or None."""
    opt = getattr(model, "optimizer", None)
    if not getattr(model, "compiled", False) or opt is None or not opt.built \
            or callable(opt.learning_rate):
        return None
    variables = model._trainable_vars()
    out = [np.array(opt.iterations, dtype=np.int64),
           np.array(opt.learning_rate, dtype=np.float32)]
    for k, i in _slot_order(opt, len(variables)):
        v, a = variables[i], opt._slots[k][i]
        # np.array, not ascontiguousarray: that makes a 0-d slot (Attention's scale) 1-d
        out.append(np.array(a if v._to_keras is None else v._to_keras(a), order="C"))
    return out


def _read_optimizer(path: str, root: Any, model: Any) -> None:
    """Restore the optimizer state Keras saved under ``optimizer/vars`` into the compiled
    model's optimizer, every array checked first; a state for another optimizer or model is
    skipped with a warning, as Keras does."""
    h5py = _h5py()
    opt = model.optimizer
    g = _node(path, root, "optimizer/vars")
    if g is None or len(g) == 0 or callable(opt.learning_rate):
        return
    variables = model._trainable_vars()
    order = _slot_order(opt, len(variables))
    if len(g) != 2 + len(order):
        warnings.warn(f"{path!r}: optimizer state skipped: the file holds {len(g)} optimizer "
                      f"arrays, the model's {type(opt).__name__} has {2 + len(order)}",
                      stacklevel=3)
        return
    it = _node(path, g, "0", "optimizer/vars")
    if not isinstance(it, h5py.Dataset) or it.shape != () or it.dtype.kind not in "iu" \
            or it.dtype.itemsize > 8:
        raise _fail(path, "'optimizer/vars/0' is not the iteration count (a scalar integer)")
    expected = [Variable("iteration", np.zeros((), it.dtype), ()),
                Variable("learning_rate", np.zeros((), np.float32), ())]
    for k, i in order:
        v = variables[i]
        expected.append(Variable(f"{v.path}/{opt._slot_names[k]}", np.zeros((), v.dtype),
                                 v.shape))
    checked = []
    for j, e in enumerate(expected):
        ds = _node(path, g, str(j), "optimizer/vars")
        where = f"optimizer/vars/{j}"
        if ds is None:
            raise _fail(path, f"{where!r} is missing")
        if not isinstance(ds, h5py.Dataset) or (ds.shape, ds.dtype) != \
                (tuple(e.shape), np.dtype(e.dtype)):
            _read_dataset(path, ds, where, e)
        checked.append((ds, where, e))
    arrays = [_read_dataset(path, ds, where, e) for ds, where, e in checked]
    opt.build([v.value for v in variables])
    opt.iterations = int(arrays[0])
    for (k, i), a in zip(order, arrays[2:], strict=True):
        v = variables[i]
        opt._slots[k][i][...] = a if v._from_keras is None else v._from_keras(a)


# -- Keras config <-> fastrnn config ----------------------------------------------------------

def _accepted(cls: type) -> set[str]:
    keys: set[str] = set()
    for c in cls.__mro__:
        if "__init__" in c.__dict__:
            keys |= {p.name for p in inspect.signature(c.__dict__["__init__"]).parameters.values()
                     if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return keys - {"self", "weights"}


def _dtype_name(v: Any) -> Any:
    if isinstance(v, dict):  # Keras 3's DTypePolicy
        cfg = v.get("config")
        return cfg.get("name") if isinstance(cfg, dict) else None
    return v


def _unsupported(layers: list, found: list[str]) -> None:
    """Collect ``"Class ('name')"`` for every layer (nested ones too) fastrnn lacks."""
    for d in layers:
        if not isinstance(d, dict):
            found.append(f"a malformed layer entry {str(d)[:80]}")
            continue
        cls, cfg = d.get("class_name"), d.get("config")
        name = cfg.get("name") if isinstance(cfg, dict) else None
        custom = d.get("registered_name") not in (None, cls) or \
            not str(d.get("module") or "keras").startswith("keras")
        if not isinstance(cls, str) or cls not in _REGISTRY or custom:
            what = "custom object " if custom else ""
            found.append(f"{what}{str(cls)[:60]} ({str(name)[:60]!r})")
            continue
        if cls == "Lambda":
            found.append(f"Lambda ({str(name)[:60]!r}: {_LAMBDA_REFUSED})")
            continue
        if isinstance(cfg, dict):
            inner = [cfg[k] for k in ("layer", "backward_layer", "cell")
                     if isinstance(cfg.get(k), dict)]
            if isinstance(cfg.get("cells"), list):
                inner += cfg["cells"]
            _unsupported(inner, found)


def _layer_from_keras(d: dict, problems: list[str]) -> dict:
    """One Keras layer config (Keras 2 or 3) as fastrnn's ``{'class_name', 'config'}``;
    settings fastrnn lacks are listed in ``problems`` (harmless ones are dropped)."""
    cls = d["class_name"]
    cfg = d.get("config")
    if not isinstance(cfg, dict):
        raise ValueError(f"the config of a {cls} layer is not a dict")
    layer_cls = _REGISTRY[cls]
    accepted = _accepted(layer_cls)
    if hasattr(layer_cls, "_layer_cls"):  # a built-in cell takes its fused layer's settings
        accepted |= _accepted(layer_cls._layer_cls) - set(_RNN_ARGS)
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if k == "dtype":
            v = _dtype_name(v)
        elif k.endswith("_initializer"):
            continue  # the weights come from the file
        elif k in ("layer", "backward_layer", "cell") and isinstance(v, dict):
            v = _layer_from_keras(v, problems)
        elif k == "cells" and isinstance(v, list):
            v = [_layer_from_keras(c, problems) for c in v]
        elif cls == "InputLayer" and k == "batch_input_shape":  # Keras 2
            k = "batch_shape"
        if k in accepted:
            out[k] = v
        elif v is None or v is False or (k in _HARMLESS and _HARMLESS[k] in (None, v)):
            continue
        else:
            problems.append(f"{cls} {str(cfg.get('name'))[:60]!r}: {k}={str(v)[:60]}")
    return {"class_name": cls, "config": out}


def _sequential_from_keras(path: str, config: Any, build_config: Any) -> dict:
    """A Keras ``Sequential`` config as fastrnn's :meth:`Sequential.get_config` output."""
    if isinstance(config, list):  # Keras 2.0-2.2 wrote the layer list itself
        config = {"layers": config}
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise _fail(path, "the Sequential config has no 'layers' list")
    layers = config["layers"]
    found: list[str] = []
    _unsupported(layers, found)
    if found:
        raise _fail(path, "the model uses layers fastrnn does not have (or custom objects, "
                          "which would run code from the file): " + ", ".join(found))
    problems: list[str] = []
    converted = [_layer_from_keras(d, problems) for d in layers]
    if problems:
        raise _fail(path, "the model uses settings fastrnn does not support: "
                          + "; ".join(problems))
    out: dict[str, Any] = {"name": config.get("name"), "layers": converted}
    if converted and converted[0]["class_name"] == "InputLayer":
        out["input"] = converted.pop(0)["config"]
    if isinstance(build_config, dict) and isinstance(build_config.get("input_shape"), list):
        out["build_input_shape"] = build_config["input_shape"]
    return out


def _ref(t: Any) -> list:
    """A Keras tensor reference ``[layer, node, tensor]`` (Keras 3's ``__keras_tensor__``
    or a Keras 2 node entry)."""
    if isinstance(t, dict) and t.get("class_name") == "__keras_tensor__" \
            and isinstance(t.get("config"), dict):
        t = t["config"].get("keras_history")
    if isinstance(t, list) and len(t) >= 3:
        return list(t[:3])
    raise ValueError(f"invalid tensor reference {str(t)[:100]}")


def _refs(v: Any) -> list[list]:
    """The tensor references in a (possibly nested list of) tensor(s)."""
    if isinstance(v, list) and v and not isinstance(v[0], str) and \
            not (isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str)):
        return [r for x in v for r in _refs(x)]
    return [_ref(v)]


def _io(v: Any) -> tuple[list, list | None, bool]:
    """Keras's ``input_layers``/``output_layers``: references, dict keys, whether a list."""
    if isinstance(v, dict):
        return [_ref(x) for x in v.values()], list(v), True
    if isinstance(v, list) and len(v) >= 3 and isinstance(v[0], str):
        return [_ref(v)], None, False
    if isinstance(v, list):
        return [_ref(x) for x in v], None, True
    raise ValueError("the functional config has no input_layers/output_layers")


def _functional_from_keras(path: str, config: Any) -> dict:
    """A Keras functional config (Keras 3, or Keras 2's ``Model``/``Functional``) as
    fastrnn's :meth:`Model.get_config` output: the layer calls in an execution order."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise _fail(path, "the functional config has no 'layers' list")
    found: list[str] = []
    _unsupported(config["layers"], found)
    if found:
        raise _fail(path, "the model uses layers fastrnn does not have (or custom objects, "
                          "which would run code from the file): " + ", ".join(found))
    problems: list[str] = []
    layers, pending = [], []
    try:
        for d in config["layers"]:
            layers.append(_layer_from_keras(d, problems))
            name = d.get("name") or d["config"].get("name")
            for k, node in enumerate(d.get("inbound_nodes") or []):
                if isinstance(node, dict):  # Keras 3: the call's args and kwargs
                    args, kwargs = node.get("args") or [], node.get("kwargs") or {}
                    if len(args) != 1:
                        problems.append(f"{name!r}: a call with {len(args)} positional inputs")
                        continue
                    main = _refs(args[0])
                    states = _refs(kwargs["initial_state"]) if kwargs.get("initial_state") \
                        else []
                    attention = "causal" in _accepted(_REGISTRY[d["class_name"]])
                    if attention:  # fastrnn records use_causal_mask on the layer
                        causal = kwargs.get("use_causal_mask") or False
                        if layers[-1]["config"].setdefault("causal", causal) is not causal:
                            problems.append(f"{name!r}: use_causal_mask={str(causal)[:20]} "
                                            f"in one call but not in all (fastrnn keeps one "
                                            f"setting per layer)")
                    for key, val in kwargs.items():
                        if attention and (key == "use_causal_mask" or (
                                key == "return_attention_scores" and val is False)):
                            continue
                        if key not in ("initial_state", "training", "mask") or \
                                (key == "mask" and val is not None):
                            problems.append(f"{name!r}: call argument {key}")
                else:  # Keras 2: a list of [layer, node, tensor, kwargs]
                    refs = [_ref(e) for e in node]
                    rnn = d.get("class_name") in ("SimpleRNN", "LSTM", "GRU")
                    main, states = (refs[:1], refs[1:]) if rnn else (refs, [])
                pending.append((name, k, main, states))
        inputs, in_keys, in_listed = _io(config.get("input_layers"))
        outputs, out_keys, out_listed = _io(config.get("output_layers"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _fail(path, f"invalid functional config ({exc})") from exc
    if problems:
        raise _fail(path, "the model uses settings fastrnn does not support: "
                          + "; ".join(problems))
    # the calls in an order where each one's inputs exist (and a layer's calls in order)
    done = {(r[0], 0) for r in inputs}
    done |= {(d["config"].get("name"), 0) for d in layers if d["class_name"] == "InputLayer"}
    nodes = []
    while pending:
        ready = [p for p in pending if all((r[0], r[1]) in done for r in p[2] + p[3])
                 and (p[1] == 0 or (p[0], p[1] - 1) in done)]
        if not ready:
            raise _fail(path, f"the functional config's calls cannot be ordered (the call "
                              f"{pending[0][0]!r} #{pending[0][1]} needs a tensor no call "
                              f"makes)")
        first = ready[0]
        pending.remove(first)
        done.add((first[0], first[1]))
        nodes.append({"layer": first[0], "inputs": first[2] + first[3],
                      "n_states": len(first[3]), "training": None})
    return {"name": config.get("name"), "trainable": bool(config.get("trainable", True)),
            "layers": layers, "nodes": nodes, "inputs": inputs, "outputs": outputs,
            "input_keys": in_keys, "output_keys": out_keys, "inputs_listed": in_listed,
            "outputs_listed": out_listed}


def _model_from_keras(path: str, config: Any, model_classes: Mapping[str, Any],
                      budget: int) -> Any:
    """Rebuild the model a Keras config describes (no weights yet), allocating at most
    ``budget`` weight bytes."""
    if not isinstance(config, dict):
        raise _fail(path, "the model config is not a JSON object")
    cls = config.get("class_name")
    if cls in ("Functional", "Model") and "Model" in model_classes:
        cls = "Model"
        fcfg = _functional_from_keras(path, config.get("config"))
    elif cls == "Sequential" and cls in model_classes:
        fcfg = _sequential_from_keras(path, config.get("config"), config.get("build_config"))
    else:
        raise _fail(path, f"the file holds a Keras {str(cls)[:60]!r} model; fastrnn reads "
                          f"Keras's Sequential" + (" and functional" if "Model" in model_classes
                                                   else "") + " models")
    try:
        with weight_budget(budget):
            model = model_classes[cls].from_config(fcfg)
    except (TypeError, ValueError, KeyError, AttributeError, NotImplementedError,
            RecursionError) as exc:
        raise _fail(path, f"invalid model config ({exc})") from exc
    if not model.built:
        raise _fail(path, "the model config has no input shape")
    return model


# settings of fastrnn's layers that Keras 3's same layer does not take (from Keras's configs)
_KERAS_LACKS = {"SpatialDropout1D": ("trainable",)}


def _layer_to_keras(d: dict) -> dict:
    if d["class_name"] == "Lambda":
        raise ValueError(f"cannot write the Lambda layer {d['config'].get('name')!r} to a "
                         f"Keras file: {_LAMBDA_REFUSED}; save the model in fastrnn's own "
                         f"format")
    cfg: dict[str, Any] = {}
    for k, v in d["config"].items():
        if k.endswith("_initializer") and isinstance(v, dict):
            v = {"module": "keras.initializers", "class_name": v["class_name"],
                 "config": v.get("config") or {}, "registered_name": None}
        elif k in ("layer", "backward_layer", "cell") and isinstance(v, dict):
            v = _layer_to_keras(v)
        elif k == "cells" and isinstance(v, list):
            v = [_layer_to_keras(c) for c in v]
        elif k == "batch_input_shape":
            continue  # the InputLayer carries the input shape
        elif k == "causal" and d["class_name"] in ("Attention", "AdditiveAttention"):
            continue  # a call argument in Keras 3 (use_causal_mask): see _functional_to_keras
        elif k in _KERAS_LACKS.get(d["class_name"], ()):
            continue
        cfg[k] = v
    if d["class_name"] == "Bidirectional" and "backward_layer" not in cfg:
        # written out: Keras would otherwise derive it by serializing the forward layer while
        # loading, which its object-sharing scope can confuse with an earlier object
        back = json.loads(json.dumps(cfg["layer"]))
        back["config"]["name"] = "backward_" + str(back["config"].get("name"))
        back["config"]["go_backwards"] = not back["config"].get("go_backwards", False)
        cfg["backward_layer"] = back
    return {"module": "keras.layers", "class_name": d["class_name"], "config": cfg,
            "registered_name": None}


def keras_config(model: Any) -> dict:
    """The model's config as Keras 3 writes it in a ``.keras`` file's ``config.json``.

    Parameters
    ----------
    model : Sequential or Model
        A built model.

    Returns
    -------
    dict
    """
    cfg = model.get_config()
    if "nodes" in cfg:
        return _functional_to_keras(model, cfg)
    inp = dict(cfg.get("input") or {"batch_shape": list(model._batch_input_shape),
                                     "name": "input_layer"})
    inp["dtype"] = inp.get("dtype") or model.layers[0].dtype
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "config": inp,
               "registered_name": None}] + [_layer_to_keras(d) for d in cfg["layers"]]
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": model.name, "trainable": True, "layers": layers},
            "registered_name": None,
            "build_config": {"input_shape": list(model._batch_input_shape)},
            "compile_config": _compile_to_keras(model._compile_config())}


def _functional_to_keras(model: Any, cfg: dict) -> dict:
    """A functional model's config as Keras 3's ``Functional`` config."""
    known: dict[tuple[str, int], list] = {}  # each call's outputs (shape, dtype)
    calls: dict[str, int] = {}
    for t in model._graph.inputs:
        known[(t._node.layer.name, 0)] = [t]
        calls[t._node.layer.name] = 1
    for node in model._graph.nodes:
        if node.is_input:
            continue
        k = calls.get(node.layer.name, 0)
        calls[node.layer.name] = k + 1
        known[(node.layer.name, k)] = node.outputs

    def tensor(r: list) -> dict:
        t = known[(r[0], r[1])][r[2]]
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(t.shape), "dtype": t.dtype, "keras_history": list(r)}}

    def io(refs: list, keys: Any, listed: Any) -> Any:
        if keys is not None:
            return dict(zip(keys, refs, strict=True))
        return refs if listed or len(refs) > 1 else refs[0]

    layers, by_name = [], {}
    for d in cfg["layers"]:
        if d["class_name"] not in _REGISTRY:
            raise ValueError(f"cannot write the {d['class_name']} inside model {model.name!r} "
                             f"to a .keras file (a model used as a layer); save it in "
                             f"fastrnn's own format")
        if d["class_name"] == "InputLayer":
            c = dict(d["config"])
            c["dtype"] = c.get("dtype") or model.weights[0].dtype.name if model.weights \
                else c.get("dtype") or "float32"
            k = {"module": "keras.layers", "class_name": "InputLayer", "config": c,
                 "registered_name": None}
        else:
            k = _layer_to_keras(d)
        k["name"] = d["config"]["name"]
        k["inbound_nodes"] = []
        by_name[k["name"]] = k
        layers.append(k)
    for n in cfg["nodes"]:
        ins, n_states = n["inputs"], n.get("n_states", 0)
        main = ins[:len(ins) - n_states]
        kwargs: dict[str, Any] = {}
        if n_states:
            kwargs["initial_state"] = [tensor(r) for r in ins[len(ins) - n_states:]]
        if n.get("training") is not None:
            kwargs["training"] = n["training"]
        if by_name[n["layer"]]["class_name"] in ("Attention", "AdditiveAttention") and \
                model.get_layer(n["layer"]).causal:
            kwargs["use_causal_mask"] = True
        arg = tensor(main[0]) if len(main) == 1 else [tensor(r) for r in main]
        by_name[n["layer"]]["inbound_nodes"].append({"args": [arg], "kwargs": kwargs})
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": model.name, "trainable": True, "layers": layers,
                       "input_layers": io(cfg["inputs"], cfg.get("input_keys"),
                                          cfg.get("inputs_listed")),
                       "output_layers": io(cfg["outputs"], cfg.get("output_keys"),
                                           cfg.get("outputs_listed"))},
            "registered_name": "Functional", "build_config": {"input_shape": None},
            "compile_config": _compile_to_keras(model._compile_config())}


def _compile_to_keras(cfg: dict | None) -> dict | None:
    """fastrnn's compile settings as Keras's ``compile_config`` (None: not compiled, or
    with something that cannot be saved, such as a loss function)."""
    if cfg is None:
        return None
    opt, loss = cfg["optimizer"], cfg["loss"]
    opt = {"module": "keras.optimizers", "class_name": opt["class_name"],
           "config": opt["config"], "registered_name": None}
    if isinstance(loss, dict):
        loss = {"module": "keras.losses", "class_name": loss["class_name"],
                "config": loss["config"], "registered_name": None}
    return {"optimizer": opt, "loss": loss, "loss_weights": None,
            "metrics": list(cfg["metrics"]) or None, "weighted_metrics": None,
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


# -- reading HDF5 safely -----------------------------------------------------------------------

def _node(path: str, root: Any, rel: str, base: str = "") -> Any:
    """The object at ``rel`` under ``root`` (the group ``base``, for messages), reached
    through hard links only (None if absent)."""
    h5py = _h5py()
    parts = rel.split("/")
    if len(parts) > MAX_H5_DEPTH or any(p in ("", ".", "..") for p in parts):
        raise _fail(path, f"the weight path {rel[:200]!r} is deeper than {MAX_H5_DEPTH} "
                          f"levels or malformed")
    node = root
    for i, p in enumerate(parts):
        where = "/".join(([base] if base else []) + parts[:i + 1])
        if not isinstance(node, h5py.Group):
            raise _fail(path, f"{where.rpartition('/')[0]!r} is not a group")
        link = node.get(p, getlink=True)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            raise _fail(path, f"{where!r} is a {type(link).__name__}: fastrnn follows no soft "
                              f"or external links in a weights file")
        node = node[p]
    return node


def _read_dataset(path: str, ds: Any, where: str, var: Variable) -> np.ndarray:
    """Check one dataset against the variable (shape, dtype, storage), then read it."""
    h5py = _h5py()
    if not isinstance(ds, h5py.Dataset):
        raise _fail(path, f"{where!r} is not a dataset (the model's {var.path!r})")
    want = (tuple(var.shape), np.dtype(var.dtype))
    if (ds.shape, ds.dtype) != want:
        raise _fail(path, f"{where!r} is {ds.shape} {ds.dtype} in the file but the model's "
                          f"{var.path!r} is {want[0]} {want[1]}")
    plist = ds.id.get_create_plist()
    if plist.get_external_count():
        raise _fail(path, f"{where!r} keeps its data in external files")
    layout = plist.get_layout()
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT):
        kind = "virtual" if layout == getattr(h5py.h5d, "VIRTUAL", -1) else "chunked"
        raise _fail(path, f"{where!r} is a {kind} dataset (Keras writes contiguous ones)")
    a = np.empty(want[0], dtype=want[1])
    try:
        if a.size:
            ds.read_direct(a)
    except (OSError, ValueError, TypeError) as exc:
        raise _fail(path, f"{where!r} is unreadable ({exc})") from exc
    return a


def _read_keras_layout(path: str, root: Any, model: Any) -> list[np.ndarray]:
    """The model's weights from Keras 3's layout under ``root``, every group and dataset
    checked first."""
    h5py = _h5py()
    plan = weight_plan(model)
    groups = []
    for rel, _, variables in plan:
        g = _node(path, root, rel)
        if g is None:
            if variables:
                raise _fail(path, f"the weights file has no {rel!r} (the model's "
                                  f"{variables[0].path.rpartition('/')[0]!r})")
            continue
        if not isinstance(g, h5py.Group):
            raise _fail(path, f"{rel!r} is not a group")
        if len(g) != len(variables):
            raise _fail(path, f"{rel!r} holds {len(g)} entries but the model's layer has "
                              f"{len(variables)} weights")
        groups.append((rel, g, variables))
    checked = []
    for rel, g, variables in groups:  # every shape and dtype before any data
        for i, v in enumerate(variables):
            ds = _node(path, g, str(i), rel)
            if ds is None:
                raise _fail(path, f"{rel}/{i} is missing (the model's {v.path!r})")
            if not isinstance(ds, h5py.Dataset) or (ds.shape, ds.dtype) != \
                    (tuple(v.shape), np.dtype(v.dtype)):
                _read_dataset(path, ds, f"{rel}/{i}", v)  # raises the full message
            checked.append((ds, f"{rel}/{i}", v))
    return [_read_dataset(path, ds, where, v) for ds, where, v in checked]


def _attr(path: str, obj: Any, name: str, max_count: int) -> Any:
    """An attribute of at most ``max_count`` elements (checked before it is read)."""
    h5py = _h5py()
    if name not in obj.attrs:
        return None
    aid = h5py.h5a.open(obj.id, name.encode())
    count = int(np.prod(aid.shape)) if aid.shape else 1
    if count == 0:
        return np.empty(0, dtype=object)
    size = aid.get_storage_size()
    if count > max_count or size > _saving._MAX_CONFIG_BYTES:
        raise _fail(path, f"the attribute {name!r} holds {count} entries ({size} bytes), "
                          f"more than expected")
    try:
        return obj.attrs[name]
    except (OSError, ValueError, TypeError) as exc:
        raise _fail(path, f"the attribute {name!r} is unreadable ({exc})") from exc


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _read_legacy_layout(path: str, root: Any, model: Any) -> list[np.ndarray]:
    """The model's weights from Keras 2's layout, matched by order as Keras 2 does: the
    ``layer_names`` attribute lists ``root``'s layer groups, each with a ``weight_names``
    attribute naming its datasets in order; the groups that hold weights pair with the
    model's layers that have weights."""
    h5py = _h5py()
    names = _attr(path, root, "layer_names", _MAX_LEGACY_LAYERS)
    if names is None:
        raise _fail(path, "the file has no layer_names attribute (not a Keras weights file)")
    most = max((len(layer.weights) for layer in model.layers), default=0)
    in_file = []
    for n in (_text(n) for n in np.ravel(names)):
        g = _node(path, root, n)
        if not isinstance(g, h5py.Group):
            raise _fail(path, f"the layer group {n[:100]!r} is missing or not a group")
        wn = _attr(path, g, "weight_names", most)
        wn = [] if wn is None else [_text(w) for w in np.ravel(wn)]
        if wn:
            in_file.append((n, g, wn))
    layers = [layer for layer in model.layers if layer.weights]
    if len(in_file) != len(layers):
        raise _fail(path, f"the file holds weights for {len(in_file)} layers but the model has "
                          f"{len(layers)} layers with weights")
    checked = []
    for (n, g, wn), layer in zip(in_file, layers, strict=True):
        variables = list(layer.weights)
        if len(wn) != len(variables):
            raise _fail(path, f"layer {n[:100]!r} has {len(wn)} weights in the file but the "
                              f"model's {layer.name!r} has {len(variables)}")
        for w, v in zip(wn, variables, strict=True):
            if len(w) > _MAX_NAME:
                raise _fail(path, f"a weight name of layer {n[:100]!r} is too long")
            where = f"{n}/{w}"
            ds = _node(path, g, w, n)
            if ds is None:
                raise _fail(path, f"{where!r} is missing")
            if not isinstance(ds, h5py.Dataset) or (ds.shape, ds.dtype) != \
                    (tuple(v.shape), np.dtype(v.dtype)):
                _read_dataset(path, ds, where, v)
            checked.append((ds, where, v))
    return [_read_dataset(path, ds, where, v) for ds, where, v in checked]


def _open_h5(path: str, source: Any) -> Any:
    h5py = _h5py()
    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise _fail(path, f"not a readable HDF5 file ({exc})") from exc


def _set(path: str, model: Any, arrays: list[np.ndarray]) -> None:
    try:
        model.set_weights(arrays)
    except (ValueError, TypeError) as exc:
        raise _fail(path, f"the weights do not fit the model ({exc})") from exc


# -- files -----------------------------------------------------------------------------------

def _sniff(path: str) -> str:
    """``'h5'``, ``'zip'`` or ``'other'`` from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:  # a directory, ...: fastrnn's loader says what it is not
        return "other"
    if head == H5_SIGNATURE:
        return "h5"
    return "zip" if head[:2] == b"PK" else "other"


def _keras_archive(path: str) -> tuple[zipfile.ZipFile, Any] | None:
    """The open archive and its config when ``path`` is a Keras (not a fastrnn) archive."""
    z = _saving._open_zip(path)
    try:
        info = z.getinfo("config.json")
    except KeyError:
        z.close()
        return None
    try:
        config = _saving._read_json(path, z, info)
    except BaseException:
        z.close()
        raise
    if not isinstance(config, dict) or "format" in config or "class_name" not in config:
        z.close()  # fastrnn's own (or neither's): fastrnn's loader says which
        return None
    return z, config


def _h5_member(path: str, z: zipfile.ZipFile, budget: int) -> bytes:
    """``model.weights.h5`` of a ``.keras`` archive: declared size within ``budget``, the
    stream no longer than declared."""
    try:
        info = z.getinfo("model.weights.h5")
    except KeyError:
        raise _fail(path, "the archive has no model.weights.h5") from None
    if info.file_size > budget:
        raise _fail(path, f"model.weights.h5 declares {info.file_size} bytes, more than the "
                          f"model's weights need ({budget})")
    try:
        with z.open(info) as f:
            data = f.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _fail(path, f"model.weights.h5 is unreadable or truncated ({exc})") from exc
    if len(data) != info.file_size:
        raise _fail(path, f"model.weights.h5 does not hold the {info.file_size} bytes its zip "
                          f"entry declares")
    return data


def _build_budget(path: str, z: zipfile.ZipFile) -> int:
    try:
        declared = z.getinfo("model.weights.h5").file_size
    except KeyError:
        raise _fail(path, "the archive has no model.weights.h5") from None
    return min(declared, _saving._MAX_DEFLATE_RATIO * os.path.getsize(path))


def _plain(v: Any) -> Any:
    """Keras's serialized objects (``module``, ``registered_name``, ...) as fastrnn's
    ``{'class_name', 'config'}``, inside dicts (per output) and lists too."""
    if isinstance(v, dict) and "class_name" in v:
        return {"class_name": v["class_name"], "config": v.get("config")}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _compile(path: str, model: Any, cfg: Any) -> bool:
    """Compile ``model`` as Keras's ``compile_config`` says (optimizer, loss, metrics; the
    optimizer's state is not restored). What fastrnn lacks is a warning, as in Keras, and the
    model stays uncompiled."""
    if not isinstance(cfg, dict) or not cfg:
        return False
    try:
        fcfg = {"optimizer": _plain(cfg.get("optimizer")), "loss": _plain(cfg.get("loss")),
                "metrics": cfg.get("metrics") or []}
        if cfg.get("loss_weights") is not None:
            fcfg["loss_weights"] = cfg["loss_weights"]
        model._compile_from_config(fcfg)
    except (TypeError, ValueError, KeyError, AttributeError, NotImplementedError) as exc:
        model.compiled = False
        model.optimizer = None
        warnings.warn(f"{path!r}: the model was not compiled (its compile settings use "
                      f"something fastrnn lacks: {str(exc)[:300]}); call model.compile()",
                      stacklevel=3)
        return False
    return True


def _load_archive(path: str, z: zipfile.ZipFile, config: Any,
                  model_classes: Mapping[str, Any], compile: bool) -> Any:
    with z:
        model = _model_from_keras(path, config, model_classes, _build_budget(path, z))
        data = _h5_member(path, z, _saving.array_budget(model) + _H5_SLACK)
    with _open_h5(path, io.BytesIO(data)) as f:
        _set(path, model, _read_keras_layout(path, f, model))
        if compile and _compile(path, model, config.get("compile_config")):
            _read_optimizer(path, f, model)
    return model


def _load_legacy(path: str, model_classes: Mapping[str, Any], compile: bool) -> Any:
    with _open_h5(path, path) as f:
        raw = _attr(path, f, "model_config", 1)
        if raw is None:
            raise _fail(path, "this HDF5 file holds no model_config (a weights file: build the "
                              "model and call model.load_weights(path))")
        raw = _text(np.ravel(raw)[0] if isinstance(raw, np.ndarray) else raw)
        if len(raw) > _saving._MAX_CONFIG_BYTES:
            raise _fail(path, "model_config is larger than a model config can be")
        try:
            config = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise _fail(path, f"model_config is not JSON ({exc})") from exc
        _saving._check_depth(path, config, "model_config")
        model = _model_from_keras(path, config, model_classes, os.path.getsize(path))
        weights = _node(path, f, "model_weights")
        if weights is None:
            raise _fail(path, "the file has no model_weights group")
        _set(path, model, _read_legacy_layout(path, weights, model))
        training = _attr(path, f, "training_config", 1) if compile else None
    if training is not None:
        try:
            training = json.loads(_text(np.ravel(training)[0] if isinstance(
                training, np.ndarray) else training))
        except (ValueError, RecursionError) as exc:
            raise _fail(path, f"training_config is not JSON ({exc})") from exc
        _saving._check_depth(path, training, "training_config")
        if isinstance(training, dict):
            _compile(path, model, {"optimizer": training.get("optimizer_config"),
                                   "loss": training.get("loss"),
                                   "metrics": training.get("metrics")})
    return model


def load_model(path: Any, model_classes: Mapping[str, Any], compile: bool = True,
               safe_mode: bool = True) -> Any:
    """Load a model file of any format fastrnn reads, told apart by its content.

    Parameters
    ----------
    path : str or PathLike
        A ``.keras`` archive written by Keras 3 (or by fastrnn), a legacy Keras HDF5 model
        (``.h5``), or fastrnn's own model file.
    model_classes : mapping of str to class
        The model classes a file may name (``{"Sequential": Sequential}``).
    compile : bool
        Restore the optimizer (with its state), loss and metrics when the file has them.
    safe_mode : bool
        Accepted for Keras compatibility: nothing from a file is ever executed (``Lambda``
        layers and custom objects are refused either way).

    Returns
    -------
    object
        The model.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    fastrnn.keras.saving.ModelFileError
        If the file is unreadable, hostile (see the module docstring), uses layers or
        settings fastrnn lacks (all listed), or disagrees with its config.
    ImportError
        For a Keras HDF5 file when h5py is not installed.
    """
    return _saving.load_model(path, model_classes, compile=compile, safe_mode=safe_mode)


def _load_keras_file(path: Any, model_classes: Mapping[str, Any], compile: bool) -> Any:
    """The model in a Keras file (``.keras`` archive or HDF5 model), or None for any other
    file (fastrnn's own: :func:`fastrnn.keras.saving.load_model` goes on with it)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    kind = _sniff(path)
    if kind == "h5":
        return _load_legacy(path, model_classes, compile)
    if kind == "zip":
        found = _keras_archive(path)
        if found is not None:
            return _load_archive(path, *found, model_classes, compile)
    return None


# fastrnn.keras.saving.load_model (keras.saving.load_model) reads Keras's files through this
_saving.KERAS_FILE_LOADER = _load_keras_file


def load_weights(model: Any, path: Any) -> None:
    """Load weights into a built model from any weights file fastrnn reads.

    Parameters
    ----------
    model : Sequential
    path : str or PathLike
        Keras's ``.weights.h5``, a legacy Keras HDF5 file (its ``model_weights``), a
        ``.keras`` archive, or a fastrnn file (``save`` or ``save_weights``).

    Raises
    ------
    fastrnn.keras.saving.ModelFileError
        If the file is unreadable, hostile or does not match the model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such weights file: {path!r}")
    kind = _sniff(path)
    if kind in ("h5", "zip") and not model.built:
        raise ValueError("build the model (give it an input shape) before load_weights")
    if kind == "h5":
        with _open_h5(path, path) as f:
            if _node(path, f, "layers") is not None:
                arrays = _read_keras_layout(path, f, model)
            else:
                root = _node(path, f, "model_weights") or f
                arrays = _read_legacy_layout(path, root, model)
            _set(path, model, arrays)
        return
    if kind == "zip":
        found = _keras_archive(path)
        if found is not None:
            z = found[0]
            with z:
                data = _h5_member(path, z, _saving.array_budget(model) + _H5_SLACK)
            with _open_h5(path, io.BytesIO(data)) as f:
                _set(path, model, _read_keras_layout(path, f, model))
            return
    _saving.load_weights(model, path)


# -- writing ---------------------------------------------------------------------------------

def _weights_h5(model: Any, with_optimizer: bool = True) -> bytes:
    """The model's weights (and its optimizer's state) in Keras 3's HDF5 layout."""
    h5py = _h5py()
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for rel, name, variables in weight_plan(model):
            g = f.require_group(rel)
            g.attrs["name"] = name
            for i, v in enumerate(variables):
                g.create_dataset(str(i), data=v.numpy())
        f.require_group("vars").attrs["name"] = model.name
        state = _optimizer_arrays(model) if with_optimizer else None
        if state is not None:
            g = f.require_group("optimizer/vars")
            g.attrs["name"] = model.optimizer.name
            for i, a in enumerate(state):
                g.create_dataset(str(i), data=a)
    return buf.getvalue()


def _check_built(model: Any) -> None:
    if not model.built:
        raise ValueError("cannot save a model that is not built yet: give it an input shape "
                         "(Input(...) or input_shape=) or call fit/predict first")


def save_model(model: Any, path: Any, overwrite: bool = True,
               include_optimizer: bool = True) -> None:
    """Save ``model`` in the format its suffix names (see :func:`file_format`).

    ``.keras`` writes Keras 3's archive (architecture, weights, compile settings and
    optimizer state; Keras reads it with ``keras.saving.load_model``); ``.weights.h5`` is
    refused (use ``save_weights``), as are ``.h5``/``.hdf5`` (legacy Keras, not written);
    any other suffix writes fastrnn's own format. Saving writes a temporary file and
    renames it, keeps the replaced file's permission bits and writes through a symlink
    (:func:`fastrnn.keras.saving.atomic_write_zip`).

    Parameters
    ----------
    model : Sequential
    path : str or PathLike
    overwrite : bool
    include_optimizer : bool
        Save the optimizer's state too (its compile settings are always saved).
    """
    fmt = file_format(path)
    if fmt == "fastrnn":
        _saving.save_model(model, path, overwrite=overwrite,
                           include_optimizer=include_optimizer)
        return
    if fmt == "keras-weights":
        raise ValueError(f"{os.fspath(path)!r}: a .weights.h5 file holds weights only: use "
                         f"model.save_weights, or save the model to a .keras file")
    if fmt == "legacy-h5":
        raise ValueError(f"{os.fspath(path)!r}: fastrnn does not write legacy Keras HDF5 "
                         f"model files: save to a .keras file (Keras 3's format, which Keras "
                         f"reads) or use another suffix for fastrnn's own format")
    _check_built(model)
    meta = {"keras_version": _KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "saved_by": "fastrnn"}
    members = [("metadata.json", json.dumps(meta).encode()),
               ("config.json", json.dumps(keras_config(model), allow_nan=False).encode()),
               ("model.weights.h5", _weights_h5(model, include_optimizer))]
    _saving.atomic_write_zip(path, members, overwrite)


def save_weights(model: Any, path: Any, overwrite: bool = True) -> None:
    """Save the weights: ``.weights.h5`` in Keras 3's layout, other suffixes (but ``.h5``)
    in fastrnn's own format.

    Parameters
    ----------
    model : Sequential
    path : str or PathLike
    overwrite : bool
    """
    fmt = file_format(path)
    if fmt == "legacy-h5":
        raise ValueError(f"{os.fspath(path)!r}: Keras's weights files end in .weights.h5; "
                         f"fastrnn does not write legacy HDF5 weights")
    if fmt != "keras-weights":
        _saving.save_model(model, path, overwrite=overwrite, weights_only=True)
        return
    _check_built(model)
    _saving.atomic_write_file(path, _weights_h5(model), overwrite)
