"""Model files: bitwise round trips, resumed training, and clear errors for unreadable,
truncated, tampered or mismatched files; saving never destroys an existing file."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

import fastrnn
from fastrnn.keras import layers as L
from fastrnn.keras import optimizers
from fastrnn.keras.models import ModelFileError, Sequential, load_model, set_random_seed


def _model():
    m = Sequential([L.Embedding(20, 4, mask_zero=True),
                    L.Bidirectional(L.GRU(5, return_sequences=True), merge_mode="sum"),
                    L.LSTM(3, return_sequences=True, go_backwards=True),
                    L.SimpleRNN(3, activation="relu"), L.Dropout(0.1),
                    L.Dense(2, activation="softmax")], name="saved")
    m.compile(optimizer=optimizers.Adam(0.01, clipnorm=1.0),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _data(n=24):
    rs = np.random.default_rng(0)
    x = rs.integers(1, 20, size=(n, 6))
    x[::3, 4:] = 0
    return x, rs.integers(0, 2, size=n)


def test_roundtrip_is_bitwise_and_training_resumes_identically(tmp_path):
    set_random_seed(1)
    m = _model()
    x, y = _data()
    m.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = tmp_path / "model.fr"
    m.save(path)
    m2 = load_model(path)
    assert [type(a) for a in m2.layers] == [type(a) for a in m.layers]
    assert m2.name == "saved" and m2.count_params() == m.count_params()
    for a, b in zip(m.get_weights(), m2.get_weights(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    np.testing.assert_array_equal(m.predict(x, verbose=0), m2.predict(x, verbose=0))
    assert m2.optimizer.iterations == m.optimizer.iterations == 6
    assert m2.optimizer.clipnorm == 1.0
    # same continued training (same shuffling and dropout draws) from original and copy
    set_random_seed(7)
    h1 = m.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    set_random_seed(7)
    h2 = m2.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert h1 == h2
    for a, b in zip(m.get_weights(), m2.get_weights(), strict=True):
        assert np.array_equal(a, b)


DATA = os.path.join(os.path.dirname(__file__), "data")


def _flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def test_files_saved_by_the_flat_layout_still_load():
    """Files written by commit f31c9ad (tests/data/README.md) load with their weights,
    optimizer state and compile settings, predict what that code predicted and train on from
    where it stopped."""
    e = np.load(os.path.join(DATA, "model_f31c9ad_expected.npz"))
    m = load_model(os.path.join(DATA, "model_f31c9ad.keras"))
    assert m.name == "saved_f31c9ad"
    assert [type(a).__name__ for a in m.layers] == [
        "Embedding", "Bidirectional", "LSTM", "SimpleRNN", "Dropout", "Dense"]
    np.testing.assert_array_equal(_flat(m.get_weights()), e["weights"])
    np.testing.assert_array_equal(_flat(m.optimizer.get_state()), e["optimizer_state"])
    assert m.optimizer.iterations == 2 and m.optimizer.clipnorm == 1.0
    np.testing.assert_allclose(m.predict(e["x"], verbose=0), e["predict"], rtol=1e-5, atol=1e-7)
    set_random_seed(7)
    m.train_on_batch(e["x"][:4], e["y"][:4])
    np.testing.assert_allclose(_flat(m.get_weights()), e["weights_after_step"], rtol=1e-5,
                               atol=1e-7)
    w = Sequential.from_config(m.get_config())
    w.load_weights(os.path.join(DATA, "weights_f31c9ad.keras"))
    np.testing.assert_array_equal(_flat(w.get_weights()), e["weights"])


def test_save_before_fit_and_weights_only(tmp_path):
    m = Sequential([L.Input((5, 3)), L.LSTM(4), L.Dense(1)])
    m.save(tmp_path / "a.fr")
    m2 = load_model(tmp_path / "a.fr")
    assert not m2.compiled
    for a, b in zip(m.get_weights(), m2.get_weights(), strict=True):
        assert np.array_equal(a, b)
    m.save_weights(tmp_path / "w.weights.npz")
    m3 = Sequential([L.Input((5, 3)), L.LSTM(4), L.Dense(1)])
    m3.load_weights(tmp_path / "w.weights.npz")
    for a, b in zip(m.get_weights(), m3.get_weights(), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(ModelFileError, match="holds only weights"):
        load_model(tmp_path / "w.weights.npz")
    other = Sequential([L.Input((5, 3)), L.LSTM(5), L.Dense(1)])
    with pytest.raises(ModelFileError, match="lstm.*kernel"):
        other.load_weights(tmp_path / "w.weights.npz")


def _rewrite(src, dst, edit_config=None, replace=None):
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if edit_config is not None:
        cfg = json.loads(members["config.json"])
        edit_config(cfg)
        members["config.json"] = json.dumps(cfg).encode()
    for k, v in (replace or {}).items():
        members[k] = v
    with zipfile.ZipFile(dst, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)


def _npy(a, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def test_unreadable_truncated_and_mismatched_files_raise_clearly(tmp_path):
    m = Sequential([L.Input((5, 3)), L.GRU(4), L.Dense(2)])
    good = tmp_path / "good.fr"
    m.save(good)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.fr")
    (tmp_path / "junk.fr").write_bytes(b"this is not a zip")
    with pytest.raises(ModelFileError, match="not a fastrnn model file"):
        load_model(tmp_path / "junk.fr")
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        (tmp_path / "cut.fr").write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            load_model(tmp_path / "cut.fr")
    bad = tmp_path / "bad.fr"

    def shape(cfg):
        cfg["weights"][0]["shape"] = [3, 13]

    _rewrite(good, bad, shape)
    with pytest.raises(ModelFileError, match=r"gru(_\d+)?/kernel"):
        load_model(bad)

    def dtype(cfg):
        cfg["weights"][1]["dtype"] = "float64"

    _rewrite(good, bad, dtype)
    with pytest.raises(ModelFileError, match="float64"):
        load_model(bad)
    _rewrite(good, bad, replace={"weights/00000.npy": _npy(np.zeros((3, 12), np.float64))})
    with pytest.raises(ModelFileError, match="config says"):
        load_model(bad)
    _rewrite(good, bad, replace={"weights/00001.npy": _npy(np.array([{}], dtype=object),
                                                           allow_pickle=True)})
    with pytest.raises(ModelFileError, match="unreadable"):  # pickled arrays are refused
        load_model(bad)

    def layer(cfg):
        cfg["model"]["config"]["layers"][0]["class_name"] = "EvalCode"

    _rewrite(good, bad, layer)
    with pytest.raises(ModelFileError, match="unknown layer type 'EvalCode'"):
        load_model(bad)

    def lambda_layer(cfg):  # a Lambda naming a function: refused before anything is imported
        cfg["model"]["config"]["layers"][0] = {
            "class_name": "Lambda", "config": {"function": "os:system", "name": "evil"}}

    _rewrite(good, bad, lambda_layer)
    with pytest.raises(ModelFileError, match="pass safe_mode=False"):
        load_model(bad)

    def fmt(cfg):
        cfg["format"] = "keras"

    _rewrite(good, bad, fmt)
    with pytest.raises(ModelFileError, match="does not describe a fastrnn model"):
        load_model(bad)
    _rewrite(good, bad, replace={"config.json": b"{not json"})
    with pytest.raises(ModelFileError, match="config.json is unreadable"):
        load_model(bad)
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "weights/00002.npy"}
    with zipfile.ZipFile(bad, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    with pytest.raises(ModelFileError, match="missing from the archive"):
        load_model(bad)


def test_failed_save_keeps_the_existing_file(tmp_path, monkeypatch):
    m = Sequential([L.Input((5, 3)), L.LSTM(4), L.Dense(1)])
    path = tmp_path / "m.fr"
    m.save(path)
    before = path.read_bytes()
    m2 = Sequential([L.Input((5, 3)), L.LSTM(8), L.Dense(1)])
    calls = {"n": 0}
    real = zipfile.ZipFile.writestr

    def failing(self, name, data, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(self, name, data, *a, **k)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(OSError, match="disk full"):
        m2.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.fr"]  # no temporary file left behind
    with pytest.raises(FileExistsError):
        m2.save(path, overwrite=False)
    m2.save(path)
    assert load_model(path).layers[0].units == 8


def test_unbuilt_model_cannot_be_saved(tmp_path):
    m = Sequential([L.LSTM(3)])
    with pytest.raises(ValueError, match="not built"):
        m.save(tmp_path / "x.fr")


def test_saved_file_has_ordinary_permissions(tmp_path):
    """Saving goes through a private temporary file; the result must not stay 0600."""
    import os
    import stat

    from fastrnn.keras.layers import Dense
    from fastrnn.keras.models import Sequential

    m = Sequential([Dense(2, input_shape=(3,))])
    path = tmp_path / "m.fr"
    old = os.umask(0o022)
    try:
        m.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


# -- hand-edited, hostile and interrupted files ---------------------------------------------

class _Evil:
    """Unpickling this would create a marker file: it must never happen."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _good(tmp_path):
    m = Sequential([L.Input((5, 3)), L.LSTM(4), L.Dense(2)])
    m.compile("adam", "mse")
    m.train_on_batch(np.zeros((2, 5, 3), np.float32), np.zeros((2, 2), np.float32))
    path = tmp_path / "good.fr"
    m.save(path)
    return path


def _layer_cfg(cfg, i):
    return cfg["model"]["config"]["layers"][i]["config"]


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.update(version=2), "unsupported file version 2"),
    (lambda c: c.update(version="1"), "unsupported file version '1'"),
    (lambda c: c.pop("version"), "unsupported file version None"),
    (lambda c: _layer_cfg(c, 0).update(units=10**9), "larger than the arrays the file holds"),
    (lambda c: _layer_cfg(c, 1).update(units=10**12), "larger than the arrays the file holds"),
    (lambda c: c["model"]["config"]["input"].update(batch_shape=[None, 5, 10**10]),
     "larger than the arrays the file holds"),
    (lambda c: _layer_cfg(c, 0).update(units=-3), "units must be a positive int"),
    (lambda c: _layer_cfg(c, 0).update(units="4"), "units must be a positive int"),
    (lambda c: _layer_cfg(c, 0).update(dtype="float16"), "dtype must be 'float32' or"),
    (lambda c: _layer_cfg(c, 0).update(dropout=7), "dropout must be in"),
    (lambda c: _layer_cfg(c, 1).update(activation="__import__('os')"), "unknown activation"),
    (lambda c: c["model"]["config"]["layers"][0].update(class_name="Lambda"),
     "pass safe_mode=False"),
    (lambda c: c["model"]["config"]["layers"][0].update(class_name="EvalCode"),
     "unknown layer type 'EvalCode'"),
    (lambda c: c["model"].update(class_name="Functional"), "unknown model class"),
    (lambda c: c["model"].update(config=[]), "invalid model config"),
    (lambda c: c.update(weights=None), "weights list is malformed"),
    (lambda c: c["weights"][0].update(shape=[3, -16]), r"is \(3, -16\) float32 in the file"),
    (lambda c: c["weights"][0].update(shape=[10**6, 10**6]), "is .* in the file but the model"),
    (lambda c: c["weights"][0].update(dtype="object"), r"is \(3, 16\) object in the file"),
    (lambda c: c["weights"].pop(), "holds 4 weight arrays but the model has 5"),
    (lambda c: c["compile"].update(optimizer={"class_name": "Evil"}), "invalid compile config"),
    (lambda c: c["compile"].update(loss="os.system"), "invalid compile config"),
    (lambda c: c["optimizer_state"].pop(), "holds 10 optimizer arrays but the model has 11"),
    (lambda c: c["optimizer_state"][1].update(shape=[99]),
     r"optimizer 'optimizer/1' is \(99,\) float32 in the file but the optimizer's array 1 is "
     r"\(16, 3\) float32"),
])
def test_hand_edited_config_is_a_clear_error(tmp_path, edit, match):
    good = _good(tmp_path)
    bad = tmp_path / "bad.fr"
    _rewrite(good, bad, edit)
    with pytest.raises(ModelFileError, match=match):
        load_model(bad)


def test_pickle_in_an_npy_is_never_unpickled(tmp_path):
    good = _good(tmp_path)
    _Evil.marker = str(tmp_path / "pwned")
    evil = _npy(np.array([_Evil()], dtype=object), allow_pickle=True)
    for member in ("weights/00000.npy", "optimizer/00001.npy"):
        bad = tmp_path / "bad.fr"
        _rewrite(good, bad, replace={member: evil})
        with pytest.raises(ModelFileError, match="Python objects, which need pickle"):
            load_model(bad)
        m = Sequential([L.Input((5, 3)), L.LSTM(4), L.Dense(2)])
        if member.startswith("weights"):
            with pytest.raises(ModelFileError, match="never loads pickled data"):
                m.load_weights(bad)
    assert not os.path.exists(_Evil.marker)


def test_lying_npy_header_is_refused_before_allocating(tmp_path):
    good = _good(tmp_path)
    bad = tmp_path / "bad.fr"
    header = _npy(np.zeros((3, 16), np.float32))
    # claim 10^12 floats (4 TB) but hold 192 bytes: must not try to allocate
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    hdr = hdr.ljust(118) + "\n"
    lie = b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode() + b"\0" * 192
    _rewrite(good, bad, replace={"weights/00000.npy": lie})
    with pytest.raises(ModelFileError, match=r"\(1000000, 1000000\).*config says \(3, 16\)"):
        load_model(bad)
    extra = header + b"\0" * 8  # trailing bytes after the array data
    _rewrite(good, bad, replace={"weights/00000.npy": extra})
    with pytest.raises(ModelFileError, match="expected 192 bytes of array data, the member "
                                             "holds 200"):
        load_model(bad)
    short = header[:-8]
    _rewrite(good, bad, replace={"weights/00000.npy": short})
    with pytest.raises(ModelFileError, match="expected 192 bytes of array data, the member "
                                             "holds 184"):
        load_model(bad)


def test_oversized_and_deeply_nested_config(tmp_path, monkeypatch):
    good = _good(tmp_path)
    bad = tmp_path / "bad.fr"
    _rewrite(good, bad, replace={"config.json": b"[" * 100_000 + b"]" * 100_000})
    with pytest.raises(ModelFileError, match="config.json is unreadable"):
        load_model(bad)
    from fastrnn.keras import saving

    monkeypatch.setattr(saving, "_MAX_CONFIG_BYTES", 100)
    with pytest.raises(ModelFileError, match="more than a model config can be"):
        load_model(good)


@pytest.mark.parametrize("where", ["arrays", "zip", "fsync", "chmod", "rename"])
def test_failure_at_any_save_step_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch,
                                                                         where):
    from fastrnn.keras import saving

    path = _good(tmp_path)
    before = path.read_bytes()
    m2 = Sequential([L.Input((5, 3)), L.GRU(7), L.Dense(2)])

    def boom(*a, **k):
        raise OSError(f"injected failure at {where}")

    target = {"arrays": (saving, "_npy_bytes"), "zip": (zipfile.ZipFile, "writestr"),
              "fsync": (os, "fsync"), "chmod": (os, "chmod"), "rename": (os, "replace")}[where]
    monkeypatch.setattr(*target, boom)
    with pytest.raises(OSError, match=f"injected failure at {where}"):
        m2.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["good.fr"]
    assert isinstance(load_model(path).layers[0], L.LSTM)


def test_interrupt_during_save_keeps_the_old_file(tmp_path, monkeypatch):
    from fastrnn.keras import saving

    path = _good(tmp_path)
    before = path.read_bytes()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        saving.save_model(Sequential([L.Input((2,)), L.Dense(1)]), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["good.fr"]



def _keras_imports() -> dict[str, set[str]]:
    """For each module of fastrnn.keras, the fastrnn.keras modules it imports (anywhere in it,
    function bodies included)."""
    import ast
    import pathlib

    pkg = pathlib.Path(fastrnn.__file__).resolve().parent / "keras"
    names = {p.stem for p in pkg.glob("*.py")} - {"__init__"}
    graph = {}
    for name in names:
        deps = set()
        for node in ast.walk(ast.parse((pkg / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "fastrnn.keras"):
                deps |= {node.module.removeprefix("fastrnn.keras").lstrip(".")}
        graph[name] = deps & names
    return graph


def test_no_import_cycle_in_the_keras_package():
    """saving (the file format) stands below models: models passes it the model classes."""
    graph = _keras_imports()
    assert "models" not in graph["saving"]

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for d in graph[todo.pop()] - seen:
                seen.add(d)
                todo.append(d)
        return seen

    assert [m for m in sorted(graph) if m in reach(m)] == []
