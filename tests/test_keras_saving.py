"""Model files: bitwise round trips, resumed training, and clear errors for unreadable,
truncated, tampered or mismatched files; saving never destroys an existing file."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from fastrnn import layers as L
from fastrnn import optimizers
from fastrnn.models import ModelFileError, Sequential, load_model, set_random_seed


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
    path = tmp_path / "model.keras"
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


def test_save_before_fit_and_weights_only(tmp_path):
    m = Sequential([L.Input((5, 3)), L.LSTM(4), L.Dense(1)])
    m.save(tmp_path / "a.keras")
    m2 = load_model(tmp_path / "a.keras")
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
    good = tmp_path / "good.keras"
    m.save(good)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.keras")
    (tmp_path / "junk.keras").write_bytes(b"this is not a zip")
    with pytest.raises(ModelFileError, match="not a fastrnn model file"):
        load_model(tmp_path / "junk.keras")
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        (tmp_path / "cut.keras").write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            load_model(tmp_path / "cut.keras")
    bad = tmp_path / "bad.keras"

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
        cfg["model"]["config"]["layers"][0]["class_name"] = "Lambda"

    _rewrite(good, bad, layer)
    with pytest.raises(ModelFileError, match="unknown layer type 'Lambda'"):
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
    path = tmp_path / "m.keras"
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
    assert os.listdir(tmp_path) == ["m.keras"]  # no temporary file left behind
    with pytest.raises(FileExistsError):
        m2.save(path, overwrite=False)
    m2.save(path)
    assert load_model(path).layers[0].units == 8


def test_unbuilt_model_cannot_be_saved(tmp_path):
    m = Sequential([L.LSTM(3)])
    with pytest.raises(ValueError, match="not built"):
        m.save(tmp_path / "x.keras")


def test_saved_file_has_ordinary_permissions(tmp_path):
    """Saving goes through a private temporary file; the result must not stay 0600."""
    import os
    import stat

    from fastrnn.layers import Dense
    from fastrnn.models import Sequential

    m = Sequential([Dense(2, input_shape=(3,))])
    path = tmp_path / "m.keras"
    old = os.umask(0o022)
    try:
        m.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
