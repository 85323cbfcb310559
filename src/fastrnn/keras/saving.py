"""Model files of the Keras-compatible API: one zip archive, JSON config plus ``.npy`` arrays.

Layout of the archive::

    config.json            format marker, version, model config, compile config, and for
                           every array its name, shape, dtype and member file
    weights/00000.npy ...  the model's weights in Keras's layout and order
    optimizer/00000.npy    the optimizer's state (iterations, slots), when saved

Loading executes no code: the JSON is parsed, layer classes come from a fixed registry, arrays
are read with ``allow_pickle=False`` and every shape and dtype is checked against the config
and the rebuilt model. Saving writes a temporary file beside the target and renames it over
the target, so an interrupted save never destroys an existing file.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import weight_budget

FORMAT = "fastrnn.keras"
VERSION = 1
_ALLOWED_DTYPES = ("float32", "float64", "int64")
_MAX_CONFIG_BYTES = 16 << 20
_MAX_DEFLATE_RATIO = 1032  # the most one byte of a deflate stream can expand to


class ModelFileError(ValueError):
    """A model file that cannot be read, is truncated, or does not match its config."""


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a if a.flags.c_contiguous else a.copy(order="C"),
                              allow_pickle=False)
    return buf.getvalue()


def _umask() -> int:
    """The process's file-creation mask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_zip(path: str, members: list[tuple[str, bytes]], overwrite: bool = True) -> None:
    """Write a zip archive to ``path`` through a temporary file and an atomic rename."""
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise FileNotFoundError(f"directory {d} does not exist")
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
                for name, data in members:
                    z.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # an ordinary file, not mkstemp's private 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _array_entries(arrays: list[np.ndarray], prefix: str, names: list[str]
                   ) -> tuple[list[dict], list[tuple[str, bytes]]]:
    entries, members = [], []
    for i, (a, name) in enumerate(zip(arrays, names, strict=True)):
        member = f"{prefix}/{i:05d}.npy"
        entries.append({"name": name, "shape": list(a.shape), "dtype": a.dtype.name,
                        "file": member})
        members.append((member, _npy_bytes(a)))
    return entries, members


def save_model(model: Any, path: Any, overwrite: bool = True, include_optimizer: bool = True,
               weights_only: bool = False) -> None:
    """Write ``model`` (config, weights, compile settings and optimizer state) to ``path``."""
    path = os.fspath(path)
    if not model.built:
        raise ValueError("cannot save a model that is not built yet: give it an input shape "
                         "(Input(...) or input_shape=) or call fit/predict first")
    weights = model.get_weights()
    names = [v.path for v in model.weights]
    w_entries, members = _array_entries(weights, "weights", names)
    config: dict[str, Any] = {"format": FORMAT, "version": VERSION,
                              "kind": "weights" if weights_only else "model",
                              "weights": w_entries}
    if not weights_only:
        config["model"] = {"class_name": type(model).__name__, "config": model.get_config()}
        config["compile"] = model._compile_config()
        if include_optimizer and config["compile"] is not None and model.optimizer is not None \
                and model.optimizer.built:
            state = model.optimizer.get_state()
            o_entries, o_members = _array_entries(
                state, "optimizer", [f"optimizer/{i}" for i in range(len(state))])
            config["optimizer_state"] = o_entries
            members += o_members
    blob = json.dumps(config, indent=1, allow_nan=False).encode("utf-8")
    atomic_write_zip(path, [("config.json", blob)] + members, overwrite)


def _fail(path: str, msg: str) -> ModelFileError:
    return ModelFileError(f"cannot load {path!r}: {msg}")


def read_archive(path: Any) -> tuple[dict, zipfile.ZipFile]:
    """Open a model file and parse its config (the caller closes the returned ZipFile)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    try:
        z = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _fail(path, f"not a fastrnn model file (unreadable or truncated zip archive: "
                          f"{exc})") from exc
    try:
        try:
            info = z.getinfo("config.json")
        except KeyError as exc:
            raise _fail(path, "the archive has no config.json (not a fastrnn model file)") \
                from exc
        if info.file_size > _MAX_CONFIG_BYTES:
            raise _fail(path, f"config.json is {info.file_size} bytes, more than a model "
                              f"config can be ({_MAX_CONFIG_BYTES})")
        with z.open(info) as f:
            raw = f.read(_MAX_CONFIG_BYTES + 1)
        if len(raw) > _MAX_CONFIG_BYTES:
            raise _fail(path, "config.json is larger than a model config can be")
        config = json.loads(raw.decode("utf-8"))
    except ModelFileError:
        z.close()
        raise
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, ValueError,
            RecursionError) as exc:
        z.close()
        raise _fail(path, f"config.json is unreadable ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        z.close()
        raise _fail(path, "config.json does not describe a fastrnn model (a Keras .keras file "
                          "cannot be read directly: move weights with get_weights/set_weights)")
    if config.get("version") != VERSION:
        z.close()
        raise _fail(path, f"unsupported file version {config.get('version')!r} (this fastrnn "
                          f"reads version {VERSION})")
    return config, z


def read_arrays(path: str, z: zipfile.ZipFile, entries: Any, what: str) -> list[np.ndarray]:
    """Read and validate the arrays an entry list describes."""
    if not isinstance(entries, list):
        raise _fail(path, f"{what} list is malformed")
    out = []
    for i, e in enumerate(entries):
        if not (isinstance(e, dict) and isinstance(e.get("file"), str)
                and isinstance(e.get("shape"), list) and e.get("dtype") in _ALLOWED_DTYPES):
            raise _fail(path, f"{what} entry {i} is malformed: {e!r}")
        shape = tuple(e["shape"])
        if not all(isinstance(s, int) and s >= 0 for s in shape):
            raise _fail(path, f"{what} entry {i} has an invalid shape {e['shape']!r}")
        name = e.get("name", i)
        try:
            with z.open(e["file"]) as f:
                a = _read_npy(f, shape, e["dtype"])
        except KeyError as exc:
            raise _fail(path, f"{what} array {name!r} is missing from the archive") from exc
        except _Mismatch as exc:
            raise _fail(path, f"{what} array {name!r} has {exc}, but the config says {shape} "
                              f"and {e['dtype']}") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise _fail(path, f"{what} array {name!r} is unreadable or truncated "
                              f"({exc})") from exc
        out.append(a)
    return out


class _Mismatch(Exception):
    """An .npy header that disagrees with the config's shape or dtype."""


def _read_npy(f: Any, shape: tuple, dtype: str) -> np.ndarray:
    """Read one .npy stream, checking its header before allocating anything: object arrays
    (which need pickle) are refused, the shape and dtype must be the declared ones and the data
    exactly as long as they say."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        got_shape, fortran, dt = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        got_shape, fortran, dt = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    if dt.hasobject:
        raise ValueError("it holds Python objects, which need pickle; fastrnn never loads "
                         "pickled data")
    if tuple(got_shape) != shape or dt.name != dtype:
        raise _Mismatch(f"shape {tuple(got_shape)} and dtype {dt}")
    n = math.prod(shape) * dt.itemsize
    data = f.read(n + 1)
    if len(data) != n:
        raise ValueError(f"expected {n} bytes of array data, found "
                         f"{'more' if len(data) > n else len(data)}")
    a = np.frombuffer(data, dtype=dt).reshape(shape, order="F" if fortran else "C")
    return np.array(a, dtype=dt.newbyteorder("="), order="C")


def check_against_model(path: str, model: Any, entries: list) -> None:
    """Check the declared weights match the rebuilt model's weights one by one."""
    vs = model.weights
    if len(entries) != len(vs):
        raise _fail(path, f"the file holds {len(entries)} weight arrays but the model has "
                          f"{len(vs)}")
    for e, v in zip(entries, vs, strict=True):
        if tuple(e.get("shape", ())) != tuple(v.shape) or e.get("dtype") != v.dtype.name:
            raise _fail(path, f"weight {e.get('name')!r} is {tuple(e.get('shape', ()))} "
                              f"{e.get('dtype')} in the file but the model's {v.path!r} is "
                              f"{tuple(v.shape)} {v.dtype.name}")


def _weight_bytes(path: str, z: zipfile.ZipFile) -> int:
    """An upper bound of the weight bytes the archive can hold (what a rebuilt model may
    allocate): the sizes its directory records, capped by what the file's bytes can expand to."""
    listed = sum(i.file_size for i in z.infolist() if i.filename.startswith("weights/"))
    return min(listed, _MAX_DEFLATE_RATIO * os.path.getsize(path))


def load_model(path: Any, model_classes: Mapping[str, Any], compile: bool = True) -> Any:
    """Rebuild a model saved by ``model.save``.

    Parameters
    ----------
    path : str or PathLike
    model_classes : mapping of str to class
        The model classes a file may name, by class name (the fixed registry: nothing else is
        ever instantiated); each has ``from_config``. :func:`fastrnn.keras.models.load_model`
        passes ``{"Sequential": Sequential}``.
    compile : bool
        Restore the optimizer (with its state), loss and metrics when they were saved.

    Returns
    -------
    object
        The model, an instance of one of ``model_classes``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFileError
        If the file is unreadable, truncated, not a fastrnn model, names a class that
        ``model_classes`` does not hold, or disagrees with its config.
    """
    path = os.fspath(path)
    config, z = read_archive(path)
    with z:
        if config.get("kind") != "model" or not isinstance(config.get("model"), dict):
            raise _fail(path, "this file holds only weights (saved with save_weights): build "
                              "the model and call model.load_weights(path)")
        mcfg = config["model"]
        cls = mcfg.get("class_name")
        if not isinstance(cls, str) or cls not in model_classes:
            raise _fail(path, f"unknown model class {cls!r}")
        try:
            with weight_budget(_weight_bytes(path, z)):
                model = model_classes[cls].from_config(mcfg.get("config"))
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            raise _fail(path, f"invalid model config ({exc})") from exc
        if not model.built:
            raise _fail(path, "the model config has no input shape")
        entries = config.get("weights")
        if not isinstance(entries, list):
            raise _fail(path, "weights list is malformed")
        check_against_model(path, model, entries)
        arrays = read_arrays(path, z, entries, "weight")
        model.set_weights(arrays)
        ccfg = config.get("compile")
        if compile and ccfg is not None:
            try:
                model._compile_from_config(ccfg)
            except (TypeError, ValueError, KeyError) as exc:
                raise _fail(path, f"invalid compile config ({exc})") from exc
            ostate = config.get("optimizer_state")
            if ostate is not None:
                state = read_arrays(path, z, ostate, "optimizer")
                try:
                    model.optimizer.set_state(state, [v.value for v in model._trainable_vars()])
                except ValueError as exc:
                    raise _fail(path, f"optimizer state does not match the model ({exc})") \
                        from exc
    return model


def load_weights(model: Any, path: Any) -> None:
    """Load weights saved by ``save`` or ``save_weights`` into a model of the same shape."""
    path = os.fspath(path)
    config, z = read_archive(path)
    with z:
        entries = config.get("weights")
        if not isinstance(entries, list):
            raise _fail(path, "weights list is malformed")
        if not model.built:
            raise ValueError("build the model (give it an input shape) before load_weights")
        check_against_model(path, model, entries)
        model.set_weights(read_arrays(path, z, entries, "weight"))
