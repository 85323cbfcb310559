"""Model files of the Keras-compatible API: one zip archive, JSON config plus ``.npy`` arrays.

Layout of the archive::

    config.json            format marker, version, model config, compile config, and for
                           every array its name, shape, dtype and member file
    weights/00000.npy ...  the model's weights in Keras's layout and order
    optimizer/00000.npy    the optimizer's state (iterations, slots), when saved

The model is a ``Sequential`` or a functional ``Model`` (whose config lists its layers, then
its layer calls in execution order, each naming its input tensors by layer, call and output
index; a reference to anything not defined before it is an error).

Loading is safe for files from an untrusted source. It executes no code: the JSON is parsed,
layer classes come from a fixed registry, arrays are never unpickled. Memory and time stay
bounded by what the model needs:

- the archive may hold at most 100,000 members, each stored or deflated (zipfile bounds what
  a deflate stream expands to per read; bzip2 and lzma it does not), none named twice;
- ``config.json`` (and any extra JSON member the CLI stores, see :func:`read_json_member`) is
  at most 4 MiB as declared and as decompressed, and nested at most 64 levels;
- the rebuilt model may allocate no more weight bytes than the archive's weight members
  declare (at most what the file's bytes can expand to);
- every array entry (weights, optimizer state) is checked for count, shape and dtype against
  the rebuilt model (and its optimizer, built for it) before any array data is read; no two
  entries may name the same member; the members' declared sizes together must fit
  :func:`array_budget` (the model's parameter bytes × 5 + 1 MiB);
- each member's ``.npy`` header must give the expected shape and a plain dtype, and its
  declared size must be exactly that header plus that data, which is then read in 1 MiB
  chunks into an array allocated for it (a stream that expands beyond its declared size is
  cut there by zipfile and fails its CRC).

Anything else is a :class:`ModelFileError`.

Saving writes a temporary file beside the target and renames it over the target, so an
interrupted save never destroys an existing file. The file replaced keeps its permission bits
(a new file gets ``0o666 & ~umask``); a symlink is followed, so its target is replaced and the
link stays a link.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .base import weight_budget
from .lambda_layer import unsafe_deserialization

FORMAT = "fastrnn.keras"
VERSION = 1
_MAX_CONFIG_BYTES = 4 << 20  # a model config (and each extra JSON member) at most
_MAX_JSON_DEPTH = 64  # a Sequential config is about 8 levels deep
_MAX_MEMBERS = 100_000  # members of one archive (4 per weight with Adam's amsgrad)
_CHUNK = 1 << 20  # array data is read in pieces of at most this size
_OPTIMIZER_FACTOR = 4  # optimizer state: at most this many arrays per weight (the slots)
_BUDGET_SLACK = 1 << 20  # npy headers and the iteration count
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


def save_target(path: str) -> str:
    """The file a save to ``path`` writes: ``path`` itself, or where its symlink(s) lead.

    Parameters
    ----------
    path : str

    Returns
    -------
    str
    """
    return os.path.realpath(path) if os.path.islink(path) else path


def replace_keeping_mode(tmp: str, path: str) -> None:
    """Rename the finished temporary file ``tmp`` over ``path``, keeping ``path``'s mode.

    ``path`` should already be :func:`_target`'s result (the real file, not a symlink). An
    existing file's permission bits are copied to ``tmp`` first (a checkpoint made private
    with ``chmod 600`` stays private); a new file gets the ordinary ``0o666 & ~umask``, not
    ``mkstemp``'s private 0600.

    Parameters
    ----------
    tmp : str
        The temporary file, in the same directory as ``path``.
    path : str
        The file to replace or create.
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def atomic_write(path: str, write: Callable[[Any], None], overwrite: bool = True) -> None:
    """Write a file through a temporary file and an atomic rename.

    ``write(f)`` writes the contents to the open binary file ``f``. The temporary file is made
    in the directory of the file written and renamed over it, so an interrupted save never
    leaves a half-written file. An existing file keeps its permission bits; a new one gets
    the default mode (``0o666 & ~umask``). When ``path`` is a symlink, the file it points to
    is replaced (the link stays a link, as when a program opens the link for writing).

    Parameters
    ----------
    path : str
        The file to write.
    write : callable
        Writes the contents to the binary file object it is given.
    overwrite : bool
        When False and ``path`` exists (or is a symlink), raise FileExistsError.

    Raises
    ------
    FileExistsError
        ``overwrite=False`` and ``path`` exists.
    FileNotFoundError
        The directory of the file written does not exist.
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    real = save_target(path)
    d = os.path.dirname(os.path.abspath(real))
    if not os.path.isdir(d):
        raise FileNotFoundError(f"directory {d} does not exist")
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(real) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        replace_keeping_mode(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_zip(path: str, members: list[tuple[str, bytes]], overwrite: bool = True) -> None:
    """Write a zip archive of ``members`` (names and contents, in order) with
    :func:`atomic_write` (mode kept, symlinks written through, never half-written).

    Parameters
    ----------
    path : str
    members : list of (str, bytes)
    overwrite : bool
    """
    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            for name, data in members:
                z.writestr(name, data)

    atomic_write(path, write, overwrite)


def atomic_write_file(path: str, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` with :func:`atomic_write`.

    Parameters
    ----------
    path : str
    data : bytes
    overwrite : bool
    """
    atomic_write(path, lambda f: f.write(data), overwrite)


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


def _check_depth(path: str, value: Any, what: str) -> None:
    """Refuse JSON nested deeper than :data:`_MAX_JSON_DEPTH` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > _MAX_JSON_DEPTH:
            raise _fail(path, f"{what} is nested more than {_MAX_JSON_DEPTH} levels deep")
        if isinstance(v, dict):
            stack.extend((c, depth + 1) for c in v.values())
        elif isinstance(v, list):
            stack.extend((c, depth + 1) for c in v)


def _open_zip(path: str) -> zipfile.ZipFile:
    """Open the archive, refusing one with more members than a model file has, a member
    that is encrypted or neither stored nor deflated, or a member name that occurs twice
    (the reader would see one of them, a checker the other)."""
    try:
        z = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _fail(path, f"not a fastrnn model file (unreadable or truncated zip archive: "
                          f"{exc})") from exc
    infos = z.infolist()
    if len(infos) > _MAX_MEMBERS:
        z.close()
        raise _fail(path, f"the archive has {len(infos)} members, more than a model file has "
                          f"({_MAX_MEMBERS})")
    for i in infos:
        if i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or i.flag_bits & 1:
            z.close()
            # zipfile bounds what a deflate stream expands to per read, not bzip2 or lzma
            raise _fail(path, f"the member {i.filename!r} is encrypted or compressed with "
                              f"method {i.compress_type} (a model file is stored or deflated)")
    if len({i.filename for i in infos}) != len(infos):
        seen: set[str] = set()
        dup = next(i.filename for i in infos if i.filename in seen or seen.add(i.filename))
        z.close()
        raise _fail(path, f"the archive holds the member {dup!r} twice")
    return z


def _read_json(path: str, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    """Parse one JSON member: its declared size at most :data:`_MAX_CONFIG_BYTES`, the
    decompressed stream no longer than declared, the nesting at most :data:`_MAX_JSON_DEPTH`."""
    if info.file_size > _MAX_CONFIG_BYTES:
        raise _fail(path, f"{info.filename} is {info.file_size} bytes, more than a model "
                          f"config can be ({_MAX_CONFIG_BYTES})")
    try:
        with z.open(info) as f:
            raw = f.read(info.file_size + 1)  # zipfile stops at the declared size (CRC error)
        if len(raw) != info.file_size:
            raise _fail(path, f"{info.filename} does not hold the {info.file_size} bytes its "
                              f"zip entry declares")
        value = json.loads(raw.decode("utf-8"))
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, ValueError,
            RecursionError) as exc:
        raise _fail(path, f"{info.filename} is unreadable ({exc})") from exc
    _check_depth(path, value, info.filename)
    return value


def read_archive(path: Any) -> tuple[dict, zipfile.ZipFile]:
    """Open a model file and parse its config (the caller closes the returned ZipFile).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    config : dict
        The parsed ``config.json``.
    zip : zipfile.ZipFile
        The open archive.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ModelFileError
        If the archive is unreadable, has duplicate members or too many, or its config is
        too large, too deeply nested, not JSON or not a fastrnn model of this version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    z = _open_zip(path)
    try:
        try:
            info = z.getinfo("config.json")
        except KeyError as exc:
            raise _fail(path, "the archive has no config.json (not a fastrnn model file)") \
                from exc
        config = _read_json(path, z, info)
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise _fail(path, "config.json does not describe a fastrnn model (Keras's "
                              ".keras files are read by fastrnn.keras.models.load_model)")
        if config.get("version") != VERSION:
            raise _fail(path, f"unsupported file version {config.get('version')!r} (this "
                              f"fastrnn reads version {VERSION})")
    except BaseException:
        z.close()
        raise
    return config, z


def read_json_member(path: Any, member: str) -> Any:
    """Read one extra JSON member of a model file (what the CLI stores beside the model),
    with the same limits as ``config.json``.

    Parameters
    ----------
    path : str or PathLike
    member : str
        The member's name.

    Returns
    -------
    object or None
        The parsed JSON, or None when the archive has no such member.

    Raises
    ------
    ModelFileError
        If the archive or the member is unreadable, too large or too deeply nested.
    """
    path = os.fspath(path)
    with _open_zip(path) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            return None
        return _read_json(path, z, info)


def _check_entries(path: str, entries: Any, expected: list[tuple[tuple[int, ...], str, str]],
                   what: str) -> None:
    """The entry list must be well formed and name exactly the expected shapes and dtypes
    (``expected`` holds shape, dtype name and a label such as ``"the model's 'lstm/kernel'"``
    per array), all before any array data is read."""
    if not isinstance(entries, list):
        raise _fail(path, f"{what}s list is malformed")
    if len(entries) != len(expected):
        raise _fail(path, f"the file holds {len(entries)} {what} arrays but the model has "
                          f"{len(expected)}")
    for i, (e, (shape, dtype, label)) in enumerate(zip(entries, expected, strict=True)):
        if not (isinstance(e, dict) and isinstance(e.get("file"), str)
                and isinstance(e.get("shape"), list) and len(e["shape"]) <= 32):
            raise _fail(path, f"{what} entry {i} is malformed: {str(e)[:200]}")
        if e["shape"] != list(shape) or e.get("dtype") != dtype:
            raise _fail(path, f"{what} {str(e.get('name', i))[:100]!r} is "
                              f"{tuple(e['shape'])} {str(e.get('dtype'))[:20]} in the file but "
                              f"{label} is {shape} {dtype}")


def _npy_header(f: Any) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f".npy format version {version} is not supported")


class _Mismatch(Exception):
    """An .npy header that disagrees with the config's shape or dtype."""


def read_arrays(path: str, z: zipfile.ZipFile, entries: list, what: str,
                budget: int) -> list[np.ndarray]:
    """Read the arrays an entry list describes, checking every one before reading its data.

    The caller has checked the entries' shapes and dtypes against the model
    (:func:`_check_entries`). Here every member must exist and be named by one entry only;
    the sizes the zip directory declares for all of them together must fit ``budget``; each
    member's ``.npy`` header must give the entry's shape and dtype (never objects: no
    pickle) and the declared size must be exactly the header plus that much data, which is
    then read in bounded chunks into an array allocated for it (zipfile stops a stream that
    would expand beyond the declared size, and checks its CRC).

    Parameters
    ----------
    path : str
        The file (for messages).
    z : zipfile.ZipFile
    entries : list of dict
        ``{"name", "shape", "dtype", "file"}`` per array.
    what : str
        ``"weight"`` or ``"optimizer"`` (for messages).
    budget : int
        The most bytes the members may declare in all.

    Returns
    -------
    list of ndarray

    Raises
    ------
    ModelFileError
        For a missing, repeated, oversized, mismatched, truncated or corrupt member.
    """
    infos = []
    seen: set[str] = set()
    for i, e in enumerate(entries):
        name = e.get("name", i)
        if e["file"] in seen:
            raise _fail(path, f"{what} array {name!r} names the member {e['file']!r}, which "
                              f"another array already uses")
        seen.add(e["file"])
        try:
            infos.append(z.getinfo(e["file"]))
        except KeyError:
            raise _fail(path, f"{what} array {name!r} is missing from the archive") from None
    total = sum(info.file_size for info in infos)
    if total > budget:
        raise _fail(path, f"its {what} arrays declare {total} bytes, more than the model "
                          f"needs ({budget})")
    out = []
    for e, info in zip(entries, infos, strict=True):
        name = e.get("name", "?")
        try:
            with z.open(info) as f:
                out.append(_read_npy(f, info.file_size, tuple(e["shape"]), e["dtype"]))
        except _Mismatch as exc:
            raise _fail(path, f"{what} array {name!r} has {exc}, but the config says "
                              f"{tuple(e['shape'])} and {e['dtype']}") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise _fail(path, f"{what} array {name!r} is unreadable or truncated "
                              f"({exc})") from exc
    return out


def _read_npy(f: Any, declared: int, shape: tuple, dtype: str) -> np.ndarray:
    """Read one .npy stream of ``declared`` bytes, checking its header before allocating
    anything: object arrays (which need pickle) are refused, the shape and dtype must be the
    expected ones and the declared size exactly the header plus their data."""
    got_shape, fortran, dt = _npy_header(f)
    if dt.hasobject:
        raise ValueError("it holds Python objects, which need pickle; fastrnn never loads "
                         "pickled data")
    if tuple(got_shape) != shape or dt.name != dtype:
        raise _Mismatch(f"shape {tuple(got_shape)} and dtype {dt}")
    n = math.prod(shape) * dt.itemsize
    if declared - f.tell() != n:
        raise ValueError(f"expected {n} bytes of array data, the member holds "
                         f"{declared - f.tell()}")
    a = np.empty(shape, dtype=dt, order="F" if fortran else "C")
    buf = memoryview(a.reshape(-1, order="A").view(np.uint8))
    pos = 0
    while pos < n:
        got = f.readinto(buf[pos:pos + _CHUNK])
        if not got:
            raise ValueError(f"expected {n} bytes of array data, found {pos}")
        pos += got
    if f.read(1):
        raise ValueError("the member holds more than its declared size")
    if a.flags.c_contiguous and dt.isnative:
        return a
    return np.array(a, dtype=dt.newbyteorder("="), order="C")


def check_against_model(path: str, model: Any, entries: Any) -> None:
    """Check the declared weights match the rebuilt model's weights one by one.

    Parameters
    ----------
    path : str
        The file (for messages).
    model : object
        A built model (its ``weights``).
    entries : object
        The config's ``weights`` list.

    Raises
    ------
    ModelFileError
        If the list is malformed or its count, a shape or a dtype differs.
    """
    _check_entries(path, entries, [(tuple(v.shape), v.dtype.name, f"the model's {v.path!r}")
                                   for v in model.weights], "weight")


def _optimizer_expected(model: Any) -> list[tuple[tuple[int, ...], str, str]]:
    """What the compiled model's optimizer state holds: built for the model's trainable
    variables, its :meth:`get_state` arrays' shapes and dtypes."""
    opt = model.optimizer
    opt.build([v.value for v in model._trainable_vars()])
    return [(tuple(a.shape), a.dtype.name, f"the optimizer's array {i}")
            for i, a in enumerate(opt.get_state())]


def array_budget(model: Any) -> int:
    """The most bytes the arrays of one model file may declare in all.

    The model's parameter bytes times ``1 + 4`` (the weights, and an optimizer state of at
    most four arrays per weight) plus 1 MiB (``.npy`` headers and the iteration count).
    Every array is also checked against the model's exact shapes, so this is a second
    limit: whatever a file declares, loading it reads no more than this.

    Parameters
    ----------
    model : object
        The built model.

    Returns
    -------
    int
    """
    params = sum(int(v.value.nbytes) for v in model.weights)
    return (1 + _OPTIMIZER_FACTOR) * params + _BUDGET_SLACK


def _weight_bytes(path: str, z: zipfile.ZipFile) -> int:
    """An upper bound of the weight bytes the archive can hold (what a rebuilt model may
    allocate): the sizes its directory records, capped by what the file's bytes can expand to."""
    listed = sum(i.file_size for i in z.infolist() if i.filename.startswith("weights/"))
    return min(listed, _MAX_DEFLATE_RATIO * os.path.getsize(path))


# The model classes a file may name (filled by fastrnn.keras.models, which stands above this
# module: Sequential and the functional Model).
MODEL_CLASSES: dict[str, Any] = {}
# Reads Keras's own model files (``.keras`` archives, HDF5 models) and returns None for any
# other file: set by fastrnn.keras.keras_files, which stands above this module.
KERAS_FILE_LOADER: Callable[[Any, Mapping[str, Any], bool], Any] | None = None


def load_model(path: Any, model_classes: Mapping[str, Any] | None = None, compile: bool = True,
               safe_mode: bool = True, custom_objects: Any = None) -> Any:
    """Rebuild a model saved by ``model.save`` (also reached as ``keras.saving.load_model``).

    Parameters
    ----------
    path : str or PathLike
    model_classes : mapping of str to class, optional
        The model classes a file may name, by class name (the fixed registry: nothing else is
        ever instantiated); each has ``from_config``. Default :data:`MODEL_CLASSES`
        (``Sequential`` and the functional ``Model``).
    compile : bool
        Restore the optimizer (with its state), loss and metrics when they were saved.
    safe_mode : bool
        Refuse Lambda layers (rebuilding one imports the function the file names, i.e. runs
        code); False allows them, for files you trust, as Keras. Nothing else from the file is
        ever executed.
    custom_objects : None
        Custom classes are not supported (only built-in layers load).

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
    if custom_objects:
        raise NotImplementedError("load_model: custom_objects are not supported; fastrnn "
                                  "model files hold built-in layers only")
    if model_classes is None:
        model_classes = MODEL_CLASSES
    if KERAS_FILE_LOADER is not None:  # a file Keras wrote (or fastrnn in Keras's format)
        model = KERAS_FILE_LOADER(path, model_classes, compile)
        if model is not None:
            return model
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
            with weight_budget(_weight_bytes(path, z)), \
                    unsafe_deserialization(not safe_mode):
                model = model_classes[cls].from_config(mcfg.get("config"))
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            raise _fail(path, f"invalid model config ({exc})") from exc
        if not model.built:
            raise _fail(path, "the model config has no input shape")
        entries = config.get("weights")
        check_against_model(path, model, entries)
        ccfg = config.get("compile")
        ostate = config.get("optimizer_state") if compile and ccfg is not None else None
        if compile and ccfg is not None:
            try:
                model._compile_from_config(ccfg)
            except (TypeError, ValueError, KeyError) as exc:
                raise _fail(path, f"invalid compile config ({exc})") from exc
            if ostate is not None:
                _check_entries(path, ostate, _optimizer_expected(model), "optimizer")
        # every entry checked: now the members, under one budget for the whole file
        _distinct_members(path, entries, ostate or [])
        budget = array_budget(model)
        sizes = {i.filename: i.file_size for i in z.infolist()}
        declared = sum(sizes.get(e["file"], 0) for e in entries + (ostate or []))
        if declared > budget:
            raise _fail(path, f"its arrays declare {declared} bytes, more than the model "
                              f"needs ({budget})")
        arrays = read_arrays(path, z, entries, "weight", budget)
        model.set_weights(arrays)
        if ostate is not None:
            state = read_arrays(path, z, ostate, "optimizer", budget)
            try:
                model.optimizer.set_state(state, [v.value for v in model._trainable_vars()])
            except ValueError as exc:
                raise _fail(path, f"optimizer state does not match the model ({exc})") \
                    from exc
    return model


def _distinct_members(path: str, *lists: list) -> None:
    """No two entries (weights and optimizer state together) may name the same member."""
    seen: set[str] = set()
    for entries in lists:
        for e in entries:
            if e["file"] in seen:
                raise _fail(path, f"two arrays name the same member {e['file']!r}")
            seen.add(e["file"])


def load_weights(model: Any, path: Any) -> None:
    """Load weights saved by ``save`` or ``save_weights`` into a model of the same shape."""
    path = os.fspath(path)
    config, z = read_archive(path)
    with z:
        if not model.built:
            raise ValueError("build the model (give it an input shape) before load_weights")
        entries = config.get("weights")
        check_against_model(path, model, entries)
        model.set_weights(read_arrays(path, z, entries, "weight", array_budget(model)))
