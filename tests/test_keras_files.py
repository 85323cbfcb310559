"""Keras's own files with real Keras 3 (torch backend), both directions: ``.keras`` archives,
``.weights.h5`` weights, legacy ``.h5`` models; layers fastrnn lacks listed; hostile HDF5
and zip files refused within a bounded memory; saving keeps modes and writes through
symlinks."""

from __future__ import annotations

import json
import os
import stat
import tracemalloc
import zipfile

import h5py
import keras
import numpy as np
import pytest

from fastrnn.keras import layers as FL
from fastrnn.keras.models import ModelFileError, Sequential, load_model

BOMB = 512 << 20
PEAK_LIMIT = 64 << 20  # the most a refused file may make the loader allocate


# -- the models, built the same way in both libraries -----------------------------------------

def _lstm_classifier(L, S):
    return S([L.Input((7,), dtype="int32"), L.Embedding(30, 8, mask_zero=True), L.LSTM(6),
              L.Dense(3, activation="softmax")])


def _gru_forecaster(L, S):
    return S([L.Input((None, 3)), L.GRU(8, return_sequences=True), L.GRU(4), L.Dense(1)])


def _bidirectional(L, S):
    return S([L.Input((6, 4)), L.Masking(0.0), L.Bidirectional(L.LSTM(5, return_sequences=True)),
              L.Bidirectional(L.GRU(3), merge_mode="sum"), L.Dense(2)])


def _stateful(L, S):
    return S([L.Input(batch_shape=(2, 5, 3)), L.GRU(4, stateful=True, return_sequences=True),
              L.TimeDistributed(L.Dense(2))])


def _others(L, S):
    return S([L.Input((5, 3)), L.SimpleRNN(4, return_sequences=True, go_backwards=True),
              L.Dropout(0.2), L.Flatten(), L.Dense(6, activation="relu"), L.Reshape((2, 3)),
              L.Activation("tanh"), L.Flatten(), L.RepeatVector(2), L.LSTM(2)])


def _conv_forecaster(L, S):
    return S([L.Input((12, 3)), L.Conv1D(4, 3, padding="causal", dilation_rate=2),
              L.MaxPooling1D(2), L.Conv1D(5, 2, strides=2, activation="relu", padding="same"),
              L.AveragePooling1D(2, padding="same"), L.LSTM(5, return_sequences=True),
              L.GlobalAveragePooling1D(), L.Dense(1)])


def _normalized(L, S):
    return S([L.Input((6, 3)), L.BatchNormalization(), L.LSTM(4, return_sequences=True),
              L.LayerNormalization(), L.LeakyReLU(0.2), L.SpatialDropout1D(0.1),
              L.BatchNormalization(center=False, epsilon=0.01), L.GlobalMaxPooling1D(),
              L.Dense(2)])


def _rnn_cells(L, S):
    return S([L.Input((6, 3)), L.RNN(L.LSTMCell(4), return_sequences=True),
              L.RNN(L.StackedRNNCells([L.GRUCell(3), L.SimpleRNNCell(2), L.GRUCell(2)]))])


MODELS = {"lstm_classifier": _lstm_classifier, "gru_forecaster": _gru_forecaster,
          "bidirectional": _bidirectional, "stateful": _stateful, "others": _others,
          "conv_forecaster": _conv_forecaster, "normalized": _normalized,
          "rnn_cells": _rnn_cells}


def _inputs(name, rng):
    """Two batches per model; the masked models' sequences end in padding (post)."""
    if name == "lstm_classifier":
        xs = [rng.integers(1, 30, (4, 7)) for _ in range(2)]
        xs[0][1, 4:] = 0
        xs[1][2, 2:] = 0
        return xs
    if name == "gru_forecaster":
        return [rng.normal(size=(3, 9, 3)).astype(np.float32) for _ in range(2)]
    if name == "bidirectional":
        xs = [rng.normal(size=(3, 6, 4)).astype(np.float32) for _ in range(2)]
        xs[0][0, 3:] = 0
        xs[1][2, 5:] = 0
        return xs
    if name == "stateful":
        return [rng.normal(size=(2, 5, 3)).astype(np.float32) for _ in range(2)]
    if name == "conv_forecaster":
        return [rng.normal(size=(3, 12, 3)).astype(np.float32) for _ in range(2)]
    if name in ("normalized", "rnn_cells"):
        return [rng.normal(size=(3, 6, 3)).astype(np.float32) for _ in range(2)]
    return [rng.normal(size=(4, 5, 3)).astype(np.float32) for _ in range(2)]


def _randomize(model, rng):
    """Random weights; variances (BatchNormalization's moving statistics) positive."""
    arrays = [rng.normal(scale=0.4, size=w.shape).astype(w.dtype) for w in model.get_weights()]
    for i, v in enumerate(model.weights):
        if "variance" in v.path:
            arrays[i] = np.abs(arrays[i]) + np.float32(0.5)
    model.set_weights(arrays)


def _keras_model(name, rng):
    m = MODELS[name](keras.layers, keras.Sequential)
    _randomize(m, rng)
    return m


def _fastrnn_model(name, rng):
    m = MODELS[name](FL, Sequential)
    _randomize(m, rng)
    return m


def _assert_same_predictions(a, b, xs):
    """Both models over successive batches (a stateful model carries its state)."""
    for x in xs:
        np.testing.assert_allclose(a.predict(x, verbose=0), np.asarray(b.predict(x, verbose=0)),
                                   rtol=2e-5, atol=2e-6)


# -- both directions ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_keras_file_loads_in_fastrnn(tmp_path, name):
    rng = np.random.default_rng(0)
    km = _keras_model(name, rng)
    km.save(tmp_path / "k.keras")
    fm = load_model(tmp_path / "k.keras")
    assert isinstance(fm, Sequential)
    assert [type(layer).__name__ for layer in fm.layers] == \
        [type(layer).__name__ for layer in km.layers]
    for a, b in zip(fm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    _assert_same_predictions(fm, km, _inputs(name, rng))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fastrnn_keras_file_loads_in_keras(tmp_path, name):
    rng = np.random.default_rng(1)
    fm = _fastrnn_model(name, rng)
    fm.save(tmp_path / "f.keras")
    with zipfile.ZipFile(tmp_path / "f.keras") as z:
        assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert json.loads(z.read("metadata.json"))["saved_by"] == "fastrnn"
    km = keras.saving.load_model(tmp_path / "f.keras")
    for a, b in zip(fm.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    _assert_same_predictions(fm, km, _inputs(name, rng))
    # and back: fastrnn reads its own .keras file
    fm2 = load_model(tmp_path / "f.keras")
    fm.reset_states()
    _assert_same_predictions(fm, fm2, _inputs(name, np.random.default_rng(2)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_weights_h5_both_directions(tmp_path, name):
    rng = np.random.default_rng(3)
    km = _keras_model(name, rng)
    fm = _fastrnn_model(name, rng)
    km.save_weights(tmp_path / "k.weights.h5")
    fm.load_weights(tmp_path / "k.weights.h5")
    _assert_same_predictions(fm, km, _inputs(name, rng))
    _randomize(fm, rng)
    fm.save_weights(tmp_path / "f.weights.h5")
    km.load_weights(tmp_path / "f.weights.h5")
    fm.reset_states()
    for layer in km.layers:  # Keras 3 resets each stateful layer
        if getattr(layer, "stateful", False):
            layer.reset_state()
    _assert_same_predictions(fm, km, _inputs(name, rng))


def test_weights_load_from_a_keras_archive(tmp_path):
    rng = np.random.default_rng(4)
    km = _keras_model("bidirectional", rng)
    km.save(tmp_path / "k.keras")
    fm = _fastrnn_model("bidirectional", rng)
    fm.load_weights(tmp_path / "k.keras")
    _assert_same_predictions(fm, km, _inputs("bidirectional", rng))


def test_fastrnn_format_stays_the_default_and_says_so(tmp_path):
    fm = _fastrnn_model("gru_forecaster", np.random.default_rng(5))
    fm.compile("adam", "mse")
    fm.save(tmp_path / "m.fr")
    with zipfile.ZipFile(tmp_path / "m.fr") as z:
        cfg = json.loads(z.read("config.json"))
    assert cfg["format"] == "fastrnn.keras" and cfg["kind"] == "model"
    assert load_model(tmp_path / "m.fr").optimizer is not None


# -- legacy Keras 2 HDF5 models ----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_legacy_h5_written_by_keras_loads(tmp_path, name):
    rng = np.random.default_rng(6)
    km = _keras_model(name, rng)
    km.save(tmp_path / "legacy.h5")  # Keras 3 still writes the legacy format
    with h5py.File(tmp_path / "legacy.h5") as f:
        assert "model_config" in f.attrs and "model_weights" in f
    fm = load_model(tmp_path / "legacy.h5")
    _assert_same_predictions(fm, km, _inputs(name, rng))
    fm2 = _fastrnn_model(name, rng)
    fm2.load_weights(tmp_path / "legacy.h5")
    fm.reset_states()
    _assert_same_predictions(fm2, fm, _inputs(name, rng))


def _keras2_file(path, weights, lstm_name="lstm"):
    """A Keras 2.x (TensorFlow) full-model HDF5 file, written by hand following its layout:
    ``model_config`` JSON attribute, ``model_weights/<layer>`` groups with ``weight_names``."""
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4, 3],
                                                "dtype": "float32", "sparse": False,
                                                "ragged": False, "name": "lstm_input"}},
        {"class_name": "LSTM", "config": {
            "name": lstm_name, "trainable": True, "dtype": "float32",
            "batch_input_shape": [None, 4, 3], "return_sequences": False,
            "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
            "time_major": False, "units": 5, "activation": "tanh",
            "recurrent_activation": "sigmoid", "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "recurrent_initializer": {"class_name": "Orthogonal",
                                      "config": {"gain": 1.0, "seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "unit_forget_bias": True, "kernel_regularizer": None,
            "recurrent_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None,
            "recurrent_constraint": None, "bias_constraint": None, "dropout": 0.0,
            "recurrent_dropout": 0.0, "implementation": 2}},
        {"class_name": "Dense", "config": {
            "name": "dense", "trainable": True, "dtype": "float32", "units": 2,
            "activation": "linear", "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None}}]},
        "keras_version": "2.13.1", "backend": "tensorflow"}
    names = {lstm_name: [f"{lstm_name}/lstm_cell/kernel:0",
                         f"{lstm_name}/lstm_cell/recurrent_kernel:0",
                         f"{lstm_name}/lstm_cell/bias:0"],
             "dense": ["dense/kernel:0", "dense/bias:0"]}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.13.1"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = [n.encode() for n in names]
        it = iter(weights)
        for layer, wnames in names.items():
            g = mw.create_group(layer)
            g.attrs["weight_names"] = [n.encode() for n in wnames]
            for n in wnames:
                g.create_dataset(n, data=next(it))
    return config


def test_hand_written_keras2_h5_loads(tmp_path):
    rng = np.random.default_rng(7)
    km = keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(5), keras.layers.Dense(2)])
    _randomize(km, rng)
    _keras2_file(tmp_path / "k2.h5", km.get_weights())
    fm = load_model(tmp_path / "k2.h5")
    assert fm.layers[0].name == "lstm" and fm.input_shape == (None, 4, 3)
    _assert_same_predictions(fm, km, [rng.normal(size=(3, 4, 3)).astype(np.float32)])


# -- what fastrnn lacks ----------------------------------------------------------------------

def test_layers_fastrnn_lacks_are_all_listed(tmp_path):
    km = keras.Sequential([keras.Input((8, 3)), keras.layers.GaussianNoise(0.1),
                           keras.layers.Lambda(lambda t: t * 2),
                           keras.layers.RNN(keras.layers.LSTMCell(3)),
                           keras.layers.UnitNormalization()])
    km.save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"layers fastrnn does not have .*GaussianNoise "
                                             r"\('gaussian_noise(_\d+)?'\), Lambda "
                                             r"\('lambda(_\d+)?': a Lambda layer's function "
                                             r"is Python bytecode.*\), "
                                             r"UnitNormalization"):
        load_model(tmp_path / "k.keras")


def test_lambda_never_crosses_a_keras_file(tmp_path):
    """Keras stores a Lambda's function as marshalled bytecode: fastrnn refuses it even with
    safe_mode=False, reading and writing."""
    km = keras.Sequential([keras.Input((4, 3)), keras.layers.Lambda(lambda t: t * 2),
                           keras.layers.LSTM(2)])
    km.save(tmp_path / "k.keras")
    for safe in (True, False):
        with pytest.raises(ModelFileError, match=r"Lambda \('lambda(_\d+)?': a Lambda layer's "
                                                 r"function is Python bytecode"):
            load_model(tmp_path / "k.keras", safe_mode=safe)
    fm = Sequential([FL.Input((4, 3)), FL.Lambda(np.tanh), FL.LSTM(2)])
    with pytest.raises(ValueError, match=r"cannot write the Lambda layer 'lambda.*' to a Keras "
                                         r"file"):
        fm.save(tmp_path / "f.keras")
    assert not (tmp_path / "f.keras").exists()
    fm.save_weights(tmp_path / "f.weights.h5")  # weights alone hold no function
    km.load_weights(tmp_path / "f.weights.h5")


def test_custom_cells_are_refused(tmp_path):
    @keras.saving.register_keras_serializable(package="mine")
    class MyCell(keras.layers.Layer):
        state_size = 2

        def call(self, x, states):
            return x[:, :2], [x[:, :2]]

    keras.Sequential([keras.Input((4, 3)), keras.layers.RNN(MyCell())]).save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"custom object MyCell"):
        load_model(tmp_path / "k.keras")


def test_custom_objects_are_refused(tmp_path):
    @keras.saving.register_keras_serializable(package="mine")
    class MyDense(keras.layers.Dense):
        pass

    km = keras.Sequential([keras.Input((3,)), MyDense(2)])
    km.save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"custom object MyDense"):
        load_model(tmp_path / "k.keras")


def test_settings_fastrnn_lacks_are_listed(tmp_path):
    km = keras.Sequential([keras.Input((4, 3)),
                           keras.layers.LSTM(3, activation="relu", unroll=True),
                           keras.layers.Dense(2, kernel_regularizer="l2")])
    km.save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"invalid model config|settings fastrnn does not"):
        load_model(tmp_path / "k.keras")


def _seq2seq(K):
    """A functional seq2seq model: encoder states into the decoder, a Dense shared by two
    outputs (two calls of one layer)."""
    L = K.layers
    ei = K.Input((None, 5), name="enc")
    _, h, c = L.LSTM(4, return_state=True)(ei)
    di = K.Input((None, 6), name="dec")
    seq, _, _ = L.LSTM(4, return_sequences=True, return_state=True)(di, initial_state=[h, c])
    shared = L.Dense(6)
    side = L.Bidirectional(L.GRU(2, return_sequences=True))(ei)
    return K.Model([ei, di], [shared(seq), shared(L.Dense(4)(side))])


def _dict_model(K):
    L = K.layers
    a, b = K.Input((4, 3), name="a"), K.Input((4, 3), name="b")
    rnn = L.GRU(3)
    return K.Model({"a": a, "b": b}, {"left": L.Dense(2)(rnn(a)), "right": L.Dense(1)(rnn(b))})


def _seq2seq_inputs(rng):
    x = [rng.normal(size=(3, 7, 5)).astype(np.float32),
         rng.normal(size=(3, 4, 6)).astype(np.float32)]
    return x


def _same(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        a, b = [a[k] for k in sorted(a)], [b[k] for k in sorted(b)]
    for p, q in zip(a, b, strict=True):
        np.testing.assert_allclose(p, np.asarray(q), rtol=2e-5, atol=2e-6)


def test_functional_seq2seq_both_directions(tmp_path):
    import fastrnn.keras as fk

    rng = np.random.default_rng(12)
    x = _seq2seq_inputs(rng)
    km = _seq2seq(keras)
    _randomize(km, rng)
    km.save(tmp_path / "k.keras")
    fm = load_model(tmp_path / "k.keras")
    assert isinstance(fm, fk.Model)
    assert [layer.name for layer in fm.layers] == [layer.name for layer in km.layers]
    _same(fm.predict(x, verbose=0), km.predict(x, verbose=0))
    km.save(tmp_path / "legacy.h5")
    _same(load_model(tmp_path / "legacy.h5").predict(x, verbose=0), km.predict(x, verbose=0))

    fm = _seq2seq(fk)
    _randomize(fm, rng)
    fm.compile("adam", ["mse", "mae"])
    fm.fit(x, [np.zeros((3, 4, 6), np.float32), np.zeros((3, 7, 6), np.float32)], verbose=0)
    fm.save(tmp_path / "f.keras")
    km = keras.saving.load_model(tmp_path / "f.keras")
    _same(fm.predict(x, verbose=0), km.predict(x, verbose=0))
    assert int(km.optimizer.iterations) == fm.optimizer.iterations == 1
    # weights alone, both ways
    km.save_weights(tmp_path / "k.weights.h5")
    fm2 = _seq2seq(fk)
    fm2.load_weights(tmp_path / "k.weights.h5")
    _same(fm2.predict(x, verbose=0), km.predict(x, verbose=0))
    fm2.save_weights(tmp_path / "f.weights.h5")
    km2 = _seq2seq(keras)
    km2.load_weights(tmp_path / "f.weights.h5")
    _same(fm2.predict(x, verbose=0), km2.predict(x, verbose=0))


def test_functional_dict_inputs_and_outputs_both_directions(tmp_path):
    rng = np.random.default_rng(13)
    x = {"a": rng.normal(size=(2, 4, 3)).astype(np.float32),
         "b": rng.normal(size=(2, 4, 3)).astype(np.float32)}
    km = _dict_model(keras)
    _randomize(km, rng)
    km.save(tmp_path / "k.keras")
    fm = load_model(tmp_path / "k.keras")
    _same(fm.predict(x, verbose=0), km.predict(x, verbose=0))
    fm.save(tmp_path / "f.keras")
    _same(fm.predict(x, verbose=0), keras.saving.load_model(tmp_path / "f.keras")
          .predict(x, verbose=0))


def test_models_used_as_layers_are_clear_errors(tmp_path):
    import fastrnn.keras as fk

    i = keras.Input((4, 3))
    sub = keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(2)], name="sub")
    keras.Model(i, keras.layers.Dense(1)(sub(i))).save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"does not have .*Sequential \('sub'\)"):
        load_model(tmp_path / "k.keras")
    i = fk.Input((4, 3))
    inner = fk.Model(i, fk.layers.GRU(2)(i), name="inner")
    j = fk.Input((4, 3))
    with pytest.raises(ValueError, match=r"cannot write the Model inside model .* \(a model "
                                         r"used as a layer\)"):
        fk.Model(j, inner(j)).save(tmp_path / "f.keras")
    assert not (tmp_path / "f.keras").exists()


# -- saving: suffixes, modes, symlinks ------------------------------------------------------

def test_suffixes_that_are_not_written(tmp_path):
    fm = _fastrnn_model("gru_forecaster", np.random.default_rng(8))
    with pytest.raises(ValueError, match="does not write legacy Keras HDF5 model files"):
        fm.save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match="holds weights only: use model.save_weights"):
        fm.save(tmp_path / "m.weights.h5")
    with pytest.raises(ValueError, match="end in .weights.h5"):
        fm.save_weights(tmp_path / "m.h5")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("how, suffix", [("save", ".keras"), ("save_weights", ".weights.h5")])
def test_keras_files_keep_mode_and_write_through_symlinks(tmp_path, how, suffix):
    fm = _fastrnn_model("gru_forecaster", np.random.default_rng(9))
    real_dir = tmp_path / "store"
    real_dir.mkdir()
    real = real_dir / f"m{suffix}"
    getattr(fm, how)(real)
    os.chmod(real, 0o600)
    link = tmp_path / f"latest{suffix}"
    os.symlink(real, link)
    getattr(fm, how)(link)
    assert os.path.islink(link) and os.readlink(link) == str(real)
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600
    assert sorted(os.listdir(real_dir)) == [f"m{suffix}"]
    with pytest.raises(FileExistsError):
        getattr(fm, how)(link, overwrite=False)


# -- hostile files -----------------------------------------------------------------------------

def _good_keras(tmp_path):
    """A Keras-written .keras file of a small LSTM model, and its members."""
    km = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    path = tmp_path / "good.keras"
    km.save(path)
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _edit_h5(members, tmp_path, edit):
    """The archive's members with model.weights.h5 changed by ``edit(h5py.File)``."""
    p = tmp_path / "w.h5"
    p.write_bytes(members["model.weights.h5"])
    with h5py.File(p, "r+") as f:
        edit(f, tmp_path)
    return {**members, "model.weights.h5": p.read_bytes()}


def _replace(f, name, **kw):
    del f[name]
    f.create_dataset(name, **kw)


def _external_link(f, d):
    with h5py.File(d / "other.h5", "w") as o:
        o.create_dataset("k", data=np.zeros((3, 16), np.float32))
    del f["layers/lstm/cell/vars/0"]
    f["layers/lstm/cell/vars/0"] = h5py.ExternalLink(str(d / "other.h5"), "k")


def _soft_link(f, d):
    f.create_dataset("elsewhere", data=np.zeros((3, 16), np.float32))
    del f["layers/lstm/cell/vars/0"]
    f["layers/lstm/cell/vars/0"] = h5py.SoftLink("/elsewhere")


def _soft_link_group(f, d):
    f.copy("layers/lstm/cell", "stash")
    del f["layers/lstm/cell"]
    f["layers/lstm/cell"] = h5py.SoftLink("/stash")


def _huge_shape(f, d):
    # declared, never allocated (HDF5 allocates contiguous storage late): a tiny file
    _replace(f, "layers/lstm/cell/vars/0", shape=(10**6, 10**6), dtype=np.float32)


def _wrong_dtype(f, d):
    _replace(f, "layers/lstm/cell/vars/0", data=np.zeros((3, 16), np.float64))


def _object_dtype(f, d):
    _replace(f, "layers/dense/vars/1", shape=(2,), dtype=h5py.string_dtype())


def _deep_nesting(f, d):
    del f["layers/lstm/cell/vars/0"]
    g = f["layers/lstm/cell/vars"].create_group("0")
    for _ in range(200):
        g = g.create_group("x")


def _extra_dataset(f, d):
    f["layers/dense/vars"].create_dataset("2", data=np.zeros(3, np.float32))


def _external_storage(f, d):
    (d / "raw.bin").write_bytes(b"\0" * 192)
    _replace(f, "layers/lstm/cell/vars/0", shape=(3, 16), dtype=np.float32,
             external=[(str(d / "raw.bin"), 0, 192)])


def _virtual(f, d):
    with h5py.File(d / "src.h5", "w") as o:
        o.create_dataset("k", data=np.ones((3, 16), np.float32))
    layout = h5py.VirtualLayout(shape=(3, 16), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(d / "src.h5"), "k", shape=(3, 16))
    del f["layers/lstm/cell/vars/0"]
    f["layers/lstm/cell/vars"].create_virtual_dataset("0", layout)


def _chunked_bomb(f, d):
    _replace(f, "layers/lstm/cell/vars/0", data=np.zeros((3, 16), np.float32),
             chunks=(3, 16), compression="gzip")


H5_CASES = {
    "external_link": (_external_link, "'layers/lstm/cell/vars/0' is a ExternalLink: fastrnn "
                                      "follows no soft or external links"),
    "soft_link": (_soft_link, "'layers/lstm/cell/vars/0' is a SoftLink"),
    "soft_link_group": (_soft_link_group, "'layers/lstm/cell' is a SoftLink"),
    "huge_shape": (_huge_shape, r"is \(1000000, 1000000\) float32 in the file but the model's "
                                r"'lstm(_\d+)?/kernel' is \(3, 16\) float32"),
    "wrong_dtype": (_wrong_dtype, r"is \(3, 16\) float64 in the file but"),
    "object_dtype": (_object_dtype, r"'layers/dense/vars/1' is \(2,\) object in the file"),
    "deep_nesting": (_deep_nesting, "'layers/lstm/cell/vars/0' is not a dataset"),
    "extra_dataset": (_extra_dataset, "'layers/dense/vars' holds 3 entries but the model's "
                                      "layer has 2 weights"),
    "external_storage": (_external_storage, "keeps its data in external files"),
    "virtual": (_virtual, "is a virtual dataset"),
    "chunked_compressed": (_chunked_bomb, "is a chunked dataset"),
}


def _write_zip(path, members, bombs=()):
    from test_safe_files import _write

    _write(path, members, bombs)


def _load_bounded(path, fn=load_model):
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as info:
            fn(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"the loader allocated {peak} bytes"
    return str(info.value)


@pytest.mark.parametrize("case", sorted(H5_CASES))
def test_hostile_h5_inside_a_keras_file_is_refused(tmp_path, case):
    import re

    edit, expected = H5_CASES[case]
    members = _edit_h5(_good_keras(tmp_path), tmp_path, edit)
    path = tmp_path / "bad.keras"
    _write_zip(path, members)
    assert re.search(expected, _load_bounded(path))


@pytest.mark.parametrize("case", sorted(H5_CASES))
def test_hostile_weights_h5_is_refused(tmp_path, case):
    import re

    edit, expected = H5_CASES[case]
    members = _edit_h5(_good_keras(tmp_path), tmp_path, edit)
    path = tmp_path / "bad.weights.h5"
    path.write_bytes(members["model.weights.h5"])
    fm = Sequential([FL.Input((5, 3)), FL.LSTM(4), FL.Dense(2)])
    assert re.search(expected, _load_bounded(path, fm.load_weights))


def test_legacy_h5_links_and_deep_weight_names_are_refused(tmp_path):
    rng = np.random.default_rng(10)
    weights = [rng.normal(size=s).astype(np.float32)
               for s in ((3, 20), (5, 20), (20,), (5, 2), (2,))]
    path = tmp_path / "k2.h5"
    _keras2_file(path, weights)
    with h5py.File(path, "r+") as f:
        g = f["model_weights/lstm"]
        g.attrs["weight_names"] = [("a/" * 40 + "k").encode(), b"x", b"y"]
    assert "deeper than 16 levels" in _load_bounded(path)
    _keras2_file(path, weights)
    with h5py.File(tmp_path / "o.h5", "w") as o:
        o.create_dataset("k", data=weights[3])
    with h5py.File(path, "r+") as f:
        del f["model_weights/dense/dense/kernel:0"]
        f["model_weights/dense/dense/kernel:0"] = h5py.ExternalLink(str(tmp_path / "o.h5"), "k")
    assert "is a ExternalLink" in _load_bounded(path)
    _keras2_file(path, weights)
    with h5py.File(path, "r+") as f:
        f["model_weights/dense"].attrs["weight_names"] = [b"n%d" % i for i in range(1000)]
    assert "'weight_names' holds 1000 entries" in _load_bounded(path)


def test_legacy_h5_huge_config_units_is_refused_before_allocating(tmp_path):
    weights = [np.zeros(s, np.float32) for s in ((3, 20), (5, 20), (20,), (5, 2), (2,))]
    path = tmp_path / "k2.h5"
    _keras2_file(path, weights)
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        cfg["config"]["layers"][1]["config"]["units"] = 10**6
        f.attrs["model_config"] = json.dumps(cfg).encode()
    assert "invalid model config" in _load_bounded(path)


def test_keras_zip_duplicate_members_are_refused(tmp_path):
    good = _good_keras(tmp_path)
    for dup in ("model.weights.h5", "config.json"):
        path = tmp_path / "dup.keras"
        _write_zip(path, list(good.items()) + [(dup, good[dup])])
        assert f"holds the member {dup!r} twice" in _load_bounded(path)


def test_keras_zip_weights_bomb_is_refused(tmp_path):
    good = _good_keras(tmp_path)
    path = tmp_path / "bomb.keras"
    members = {k: v for k, v in good.items() if k != "model.weights.h5"}
    _write_zip(path, members, [("model.weights.h5", good["model.weights.h5"][:512], BOMB,
                                b"\0")])
    assert os.path.getsize(path) < 4 << 20
    msg = _load_bounded(path)
    assert "model.weights.h5 declares 536870912 bytes, more than the model's weights" in msg


def test_keras_zip_lying_sizes_are_refused(tmp_path):
    from test_safe_files import _declare_size

    good = _good_keras(tmp_path)
    members = {k: v for k, v in good.items() if k != "model.weights.h5"}
    # the directory declares the real size; the deflate stream expands to 512 MiB
    path = tmp_path / "lie.keras"
    _write_zip(path, members, [("model.weights.h5", good["model.weights.h5"], BOMB, b"\0")])
    _declare_size(path, "model.weights.h5", len(good["model.weights.h5"]))
    assert "model.weights.h5 is unreadable or truncated" in _load_bounded(path)
    # the directory declares more than the stream holds
    path = tmp_path / "short.keras"
    _write_zip(path, good)
    _declare_size(path, "model.weights.h5", len(good["model.weights.h5"]) + 1000)
    assert "model.weights.h5" in _load_bounded(path)
    # config.json: a bomb behind a small declared size
    path = tmp_path / "cfg.keras"
    _write_zip(path, {k: v for k, v in good.items() if k != "config.json"},
               [("config.json", b"{", BOMB, b" ")])
    _declare_size(path, "config.json", 1000)
    assert "config.json is unreadable" in _load_bounded(path)


def test_keras_config_huge_units_and_deep_json_are_refused(tmp_path):
    good = _good_keras(tmp_path)
    cfg = json.loads(good["config.json"])
    cfg["config"]["layers"][1]["config"]["units"] = 10**6
    path = tmp_path / "units.keras"
    _write_zip(path, {**good, "config.json": json.dumps(cfg).encode()})
    assert "invalid model config" in _load_bounded(path)
    deep: list = []
    for _ in range(100):
        deep = [deep]
    cfg = json.loads(good["config.json"])
    cfg["config"]["layers"][1]["config"]["extra"] = deep
    _write_zip(path, {**good, "config.json": json.dumps(cfg).encode()})
    assert "nested more than 64 levels deep" in _load_bounded(path)


def test_truncated_and_missing_weights_are_clear_errors(tmp_path):
    good = _good_keras(tmp_path)
    path = tmp_path / "cut.keras"
    _write_zip(path, {**good, "model.weights.h5": good["model.weights.h5"][:-500]})
    assert "not a readable HDF5 file" in _load_bounded(path)
    _write_zip(path, {k: v for k, v in good.items() if k != "model.weights.h5"})
    assert "has no model.weights.h5" in _load_bounded(path)
    members = _edit_h5(good, tmp_path, lambda f, d: f.__delitem__("layers/dense"))
    _write_zip(path, members)
    assert "has no 'layers/dense/vars'" in _load_bounded(path)


# -- compile settings and optimizer state ---------------------------------------------------

OPTIMIZERS = {"adam": lambda: keras.optimizers.Adam(),
              "adam_amsgrad": lambda: keras.optimizers.Adam(amsgrad=True),
              "sgd": lambda: keras.optimizers.SGD(),
              "sgd_momentum": lambda: keras.optimizers.SGD(momentum=0.9),
              "rmsprop": lambda: keras.optimizers.RMSprop(),
              "rmsprop_centered": lambda: keras.optimizers.RMSprop(momentum=0.5, centered=True),
              "adagrad": lambda: keras.optimizers.Adagrad()}


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_training_resumes_identically_across_libraries(tmp_path, opt):
    """Optimizer settings and state cross in both directions: one more step from the loaded
    file gives the same weights in Keras and fastrnn (float32 rounding)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 5, 3)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    km = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4, return_sequences=True),
                           keras.layers.LSTM(3), keras.layers.Dense(2)])
    km.compile(OPTIMIZERS[opt](), "mse", metrics=["mae"])
    km.fit(x, y, epochs=3, batch_size=4, verbose=0)
    km.save(tmp_path / "k.keras")
    fm = load_model(tmp_path / "k.keras")
    assert type(fm.optimizer).__name__ == type(km.optimizer).__name__
    assert fm.optimizer.iterations == int(km.optimizer.iterations) == 6
    assert fm.loss == "mse" and fm._compile_config()["metrics"] == ["mae"]

    def step_both(a, b):
        a.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        b.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_allclose(wa, np.asarray(wb), rtol=1e-5, atol=1e-6)

    step_both(fm, km)
    fm.save(tmp_path / "f.keras")
    km2 = keras.saving.load_model(tmp_path / "f.keras")
    assert int(km2.optimizer.iterations) == 7
    step_both(fm, km2)


def test_keras_compile_settings_fastrnn_lacks_warn_and_load_uncompiled(tmp_path):
    km = keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(3), keras.layers.Dense(2)])
    km.compile(keras.optimizers.Nadam(), "mse")
    km.fit(np.zeros((2, 4, 3)), np.zeros((2, 2)), verbose=0)
    km.save(tmp_path / "k.keras")
    with pytest.warns(UserWarning, match="the model was not compiled .*Nadam"):
        fm = load_model(tmp_path / "k.keras")
    assert not fm.compiled and fm.optimizer is None
    assert not load_model(tmp_path / "k.keras", compile=False).compiled


def test_hostile_optimizer_state_is_refused(tmp_path):
    km = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    km.compile("adam", "mse")
    km.fit(np.zeros((2, 5, 3)), np.zeros((2, 2)), verbose=0)
    km.save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as z:
        good = {n: z.read(n) for n in z.namelist()}
    cases = {
        "huge": (lambda f, d: _replace(f, "optimizer/vars/3", shape=(10**6, 10**6),
                                       dtype=np.float32),
                 r"'optimizer/vars/3' is \(1000000, 1000000\) float32 in the file"),
        "link": (lambda f, d: (f.__delitem__("optimizer/vars/4"),
                               f.__setitem__("optimizer/vars/4", h5py.SoftLink("/layers"))),
                 "'optimizer/vars/4' is a SoftLink"),
        "iteration": (lambda f, d: _replace(f, "optimizer/vars/0", data=np.zeros(3)),
                      "is not the iteration count"),
    }
    for name, (edit, expected) in cases.items():
        path = tmp_path / f"{name}.keras"
        _write_zip(path, _edit_h5(good, tmp_path, edit))
        import re

        msg = _load_bounded(path)
        assert re.search(expected, msg), (name, msg)
        assert load_model(path, compile=False).optimizer is None  # weights alone still load


def test_legacy_h5_training_config_compiles_the_model(tmp_path):
    km = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    km.compile(keras.optimizers.RMSprop(0.01), "mse", metrics=["mae"])
    km.fit(np.zeros((2, 5, 3)), np.zeros((2, 2)), verbose=0)
    km.save(tmp_path / "c.h5")
    fm = load_model(tmp_path / "c.h5")
    assert type(fm.optimizer).__name__ == "RMSprop" and fm.optimizer.learning_rate == \
        pytest.approx(0.01) and fm._compile_config()["metrics"] == ["mae"]
    assert not load_model(tmp_path / "c.h5", compile=False).compiled


def test_keras_saving_load_model_reads_keras_files_too(tmp_path):
    """``import fastrnn.keras as keras; keras.saving.load_model(path)`` as in Keras."""
    import fastrnn.keras as fk

    rng = np.random.default_rng(14)
    km = _keras_model("gru_forecaster", rng)
    km.save(tmp_path / "k.keras")
    km.save(tmp_path / "k.h5")
    x = _inputs("gru_forecaster", rng)
    for name in ("k.keras", "k.h5"):
        _assert_same_predictions(fk.saving.load_model(tmp_path / name), km, x)


def _attention_seq2seq(K):
    """A functional seq2seq model with attention and merges: the decoder attends to the
    encoder's sequence (Attention with a scale, AdditiveAttention causal over itself)."""
    L = K.layers
    ei, di = K.Input((None, 5), name="enc"), K.Input((None, 6), name="dec")
    enc, h, c = L.LSTM(4, return_sequences=True, return_state=True)(ei)
    dec = L.RNN(L.LSTMCell(4), return_sequences=True)(di, initial_state=[h, c])
    ctx = L.Attention(use_scale=True)([dec, enc])
    own = L.AdditiveAttention()([dec, dec], use_causal_mask=True)
    plain = L.Attention()([dec, enc])  # no scale: a layer without weights
    concat = L.Attention(score_mode="concat")([dec, enc])
    x = L.Concatenate()([L.Add()([dec, own, plain]), L.Multiply()([ctx, dec]), concat])
    return K.Model([ei, di], L.Dense(3)(L.LeakyReLU(0.1)(x)))


def test_functional_attention_seq2seq_both_directions(tmp_path):
    import fastrnn.keras as fk

    rng = np.random.default_rng(15)
    x = _seq2seq_inputs(rng)
    km = _attention_seq2seq(keras)
    _randomize(km, rng)
    km.save(tmp_path / "k.keras")
    fm = load_model(tmp_path / "k.keras")
    causal = [la.causal for la in fm.layers if type(la).__name__ == "AdditiveAttention"]
    assert causal == [True]
    _same([fm.predict(x, verbose=0)], [km.predict(x, verbose=0)])
    fm.compile("adam", "mse")  # optimizer state of 0-d weights (Attention's scale) crosses
    fm.fit(x, np.zeros((3, 4, 3), np.float32), verbose=0)
    fm.save(tmp_path / "f.keras")
    kf = keras.saving.load_model(tmp_path / "f.keras")
    _same([fm.predict(x, verbose=0)], [kf.predict(x, verbose=0)])
    assert int(kf.optimizer.iterations) == 1
    assert load_model(tmp_path / "f.keras").optimizer.iterations == 1
    km.save_weights(tmp_path / "k.weights.h5")
    fm2 = _attention_seq2seq(fk)
    fm2.load_weights(tmp_path / "k.weights.h5")
    _same([fm2.predict(x, verbose=0)], [km.predict(x, verbose=0)])
    _randomize(fm2, rng)
    fm2.save_weights(tmp_path / "f.weights.h5")
    km.load_weights(tmp_path / "f.weights.h5")
    _same([fm2.predict(x, verbose=0)], [km.predict(x, verbose=0)])


def test_hostile_h5_in_the_new_layers_paths_is_refused(tmp_path):
    """The nested cell groups and BatchNormalization's moving statistics get the same checks
    (links, shapes before reading, exact dataset counts) as every other weight."""
    import re

    km = keras.Sequential([keras.Input((5, 3)), keras.layers.BatchNormalization(),
                           keras.layers.RNN(keras.layers.StackedRNNCells(
                               [keras.layers.GRUCell(4), keras.layers.LSTMCell(2)]))])
    km.save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as z:
        good = {n: z.read(n) for n in z.namelist()}
    cells = "layers/rnn/cell/cells"

    def soft_cell(f, d):
        f.copy(f"{cells}/gru_cell", "stash")
        del f[f"{cells}/gru_cell"]
        f[f"{cells}/gru_cell"] = h5py.SoftLink("/stash")

    def external_cell(f, d):
        with h5py.File(d / "o.h5", "w") as o:
            o.create_dataset("k", data=np.zeros((3, 12), np.float32))
        del f[f"{cells}/gru_cell/vars/0"]
        f[f"{cells}/gru_cell/vars/0"] = h5py.ExternalLink(str(d / "o.h5"), "k")

    cases = {
        "soft_cell": (soft_cell, f"'{cells}/gru_cell' is a SoftLink"),
        "huge_moving_variance": (
            lambda f, d: _replace(f, "layers/batch_normalization/vars/3",
                                  shape=(10**6, 10**6), dtype=np.float32),
            r"'layers/batch_normalization/vars/3' is \(1000000, 1000000\) float32 in the file "
            r"but the model's 'batch_normalization(_\d+)?/moving_variance' is \(3,\)"),
        "extra_in_cell": (
            lambda f, d: f[f"{cells}/lstm_cell/vars"].create_dataset("3", data=np.zeros(2)),
            f"'{cells}/lstm_cell/vars' holds 4 entries but the model's layer has 3 weights"),
        "external_cell_weight": (external_cell,
                                 f"'{cells}/gru_cell/vars/0' is a ExternalLink"),
    }
    for name, (edit, expected) in cases.items():
        path = tmp_path / f"{name}.keras"
        _write_zip(path, _edit_h5(good, tmp_path, edit))
        msg = _load_bounded(path)
        assert re.search(expected, msg), (name, msg)
    fm = load_model(tmp_path / "good.keras")
    x = np.random.default_rng(16).normal(size=(2, 5, 3)).astype(np.float32)
    _assert_same_predictions(fm, km, [x])


def test_attention_called_causal_and_not_is_refused(tmp_path):
    q = keras.Input((4, 3))
    att = keras.layers.Attention()
    out = keras.layers.Add()([att([q, q], use_causal_mask=True), att([q, q])])
    keras.Model(q, out).save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match=r"'attention(_\d+)?': use_causal_mask=False in one "
                                             r"call but not in all"):
        load_model(tmp_path / "k.keras")
