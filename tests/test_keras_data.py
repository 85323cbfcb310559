"""Data the way Keras 3 takes it (issue 22): generators and PyDataset in fit/evaluate/predict
(equal to array fits on the same batches), and keras.utils' pad_sequences, to_categorical,
timeseries_dataset_from_array and set_random_seed (equal to Keras's outputs where Keras runs
without TensorFlow)."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

import fastrnn.keras as fk
from fastrnn.keras import layers as L
from fastrnn.keras import utils
from fastrnn.keras.models import Sequential
from fastrnn.keras.preprocessing.sequence import pad_sequences as pp_pad


def _model(seed=0):
    utils.set_random_seed(seed)
    m = Sequential([L.Input((6, 3)), L.LSTM(5), L.Dense(2)])
    m.compile("adam", "mse", metrics=["mae"])
    return m


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 6, 3)).astype(np.float32),
            rng.normal(size=(n, 2)).astype(np.float32),
            rng.uniform(0.5, 2.0, size=n).astype(np.float32))


def _batches(x, y, sw=None, bs=8):
    for i in range(0, len(x), bs):
        s = slice(i, i + bs)
        yield (x[s], y[s]) if sw is None else (x[s], y[s], sw[s])


class Batches(utils.PyDataset):
    def __init__(self, x, y, sw=None, bs=8, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.sw, self.bs = x, y, sw, bs
        self.epochs_begun = self.epochs_ended = 0

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __getitem__(self, i):
        s = slice(i * self.bs, (i + 1) * self.bs)
        return (self.x[s], self.y[s]) if self.sw is None else (self.x[s], self.y[s], self.sw[s])

    def on_epoch_begin(self):
        self.epochs_begun += 1

    def on_epoch_end(self):
        self.epochs_ended += 1


def _same(m1, m2, h1, h2):
    assert h1.history.keys() == h2.history.keys()
    for k in h1.history:
        np.testing.assert_array_equal(h1.history[k], h2.history[k])
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("weighted", [False, True])
def test_generator_fit_equals_array_fit_on_the_same_batches(weighted):
    x, y, sw = _data()
    sw = sw if weighted else None
    xv, yv, _ = _data(8, seed=1)
    ref = _model()
    h_ref = ref.fit(x, y, sample_weight=sw, batch_size=8, epochs=3, shuffle=False,
                    validation_data=(xv, yv), verbose=0)
    m = _model()
    gen = itertools.cycle(list(_batches(x, y, sw)))
    h = m.fit(gen, steps_per_epoch=3, epochs=3, validation_data=(xv, yv), verbose=0)
    _same(ref, m, h_ref, h)
    # validation data as a generator too
    m2 = _model()
    vgen = itertools.cycle([(xv, yv)])
    h2 = m2.fit(itertools.cycle(list(_batches(x, y, sw))), steps_per_epoch=3, epochs=3,
                validation_data=vgen, validation_steps=1, verbose=0)
    _same(ref, m2, h_ref, h2)


def test_pydataset_fit_equals_array_fit_and_calls_its_epoch_hooks():
    x, y, sw = _data()
    xv, yv, _ = _data(16, seed=1)
    ref = _model()
    h_ref = ref.fit(x, y, sample_weight=sw, batch_size=8, epochs=2, shuffle=False,
                    validation_data=(xv, yv), validation_batch_size=8, verbose=0)
    m = _model()
    ds, vds = Batches(x, y, sw), Batches(xv, yv)
    h = m.fit(ds, epochs=2, validation_data=vds, verbose=0)
    for k in ("loss", "mae"):
        np.testing.assert_array_equal(h.history[k], h_ref.history[k])
    np.testing.assert_allclose(h.history["val_loss"], h_ref.history["val_loss"], rtol=1e-6)
    for a, b in zip(m.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ds.epochs_begun == ds.epochs_ended == 2
    assert vds.epochs_ended == 2
    # steps_per_epoch takes the first batches
    m3, ref3 = _model(), _model()
    m3.fit(Batches(x, y), steps_per_epoch=2, epochs=1, verbose=0)
    ref3.fit(x[:16], y[:16], batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(m3.get_weights(), ref3.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_evaluate_and_predict_take_generators_and_pydatasets():
    x, y, sw = _data()
    m = _model()
    ref_eval = m.evaluate(x, y, batch_size=8, verbose=0)
    np.testing.assert_allclose(m.evaluate(_batches(x, y), verbose=0), ref_eval, rtol=1e-6)
    np.testing.assert_allclose(m.evaluate(Batches(x, y), verbose=0), ref_eval, rtol=1e-6)
    np.testing.assert_allclose(m.evaluate(itertools.cycle(_batches(x, y)), steps=3,
                                          verbose=0), ref_eval, rtol=1e-6)
    d = m.evaluate(Batches(x, y), return_dict=True, verbose=0)
    assert set(d) == {"loss", "mae"}
    # the same batches of 8 as the generators' (numpy's BLAS may round a row of a product
    # differently with another number of rows: OpenBLAS on Zen 3 does)
    ref_pred = m.predict(x, batch_size=8, verbose=0)
    np.testing.assert_array_equal(m.predict(Batches(x, y), verbose=0), ref_pred)
    np.testing.assert_array_equal(m.predict((x[i:i + 8] for i in range(0, 24, 8)), verbose=0),
                                  ref_pred)
    np.testing.assert_array_equal(m.predict(itertools.cycle([x[:8]]), steps=2, verbose=0),
                                  np.concatenate([ref_pred[:8]] * 2))


def test_a_finite_generator_runs_out_with_a_warning():
    x, y, _ = _data()
    m = _model()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(_batches(x, y), epochs=3, verbose=0)
    assert len(h.history["loss"]) == 1


def test_bad_data_is_a_clear_error():
    x, y, _ = _data()
    m = _model()
    with pytest.raises(ValueError, match=r"must yield \(x, y\) batches"):
        m.fit((x[i:i + 8] for i in range(0, 24, 8)), verbose=0)
    with pytest.raises(ValueError, match="y must not be given"):
        m.fit(_batches(x, y), y, verbose=0)
    with pytest.raises(ValueError, match="validation_split is not supported"):
        m.fit(_batches(x, y), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="a batch must be"):
        m.fit(iter([(x, y, None, None)]), verbose=0)

    class NoLen(utils.PyDataset):
        def __getitem__(self, i):
            return x[:8], y[:8]

    with pytest.raises(ValueError, match="without __len__ needs steps"):
        m.fit(NoLen(), verbose=0)
    m.fit(NoLen(), steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be an int >= 1"):
        m.fit(_batches(x, y), steps_per_epoch=0, verbose=0)
    with pytest.raises(ValueError, match=r"x and y must have the same number of samples"):
        m.fit(iter([(x, y[:3])]), verbose=0)


def test_callbacks_see_generator_training():
    x, y, _ = _data()
    m = _model()
    seen = []

    class Rec(fk.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    stop = fk.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
    h = m.fit(itertools.cycle(list(_batches(x, y))), steps_per_epoch=3, epochs=5,
              callbacks=[Rec(), stop], verbose=0)
    assert seen[:3] == [0, 1, 2]
    assert len(h.history["loss"]) < 5


# -- keras.utils ------------------------------------------------------------------------------
SEQS = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9], [10, 11]]


@pytest.mark.parametrize("kw", [{}, {"maxlen": 3}, {"padding": "post"},
                                {"truncating": "post", "maxlen": 2},
                                {"padding": "post", "truncating": "post", "maxlen": 4,
                                 "value": -1},
                                {"dtype": "float32", "value": 0.5, "maxlen": 6}])
def test_pad_sequences_equals_keras(kw):
    ours = utils.pad_sequences(SEQS, **kw)
    ref = keras.utils.pad_sequences(SEQS, **kw)
    assert ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(pp_pad(SEQS, **kw), ref)


def test_pad_sequences_of_vectors_and_bad_arguments():
    seqs = [np.ones((2, 3)), np.ones((4, 3)) * 2]
    ours = utils.pad_sequences(seqs, dtype="float32", padding="post")
    np.testing.assert_array_equal(ours, keras.utils.pad_sequences(seqs, dtype="float32",
                                                                  padding="post"))
    assert utils.pad_sequences(SEQS, maxlen=0).shape == (5, 0)  # Keras 3.15 fails on this
    for kw, match in [({"padding": "mid"}, "padding"), ({"truncating": "x"}, "truncating"),
                      ({"maxlen": -1}, "maxlen")]:
        with pytest.raises(ValueError, match=match):
            utils.pad_sequences(SEQS, **kw)
    with pytest.raises(ValueError, match="list of iterables"):
        utils.pad_sequences([1, 2])
    with pytest.raises(ValueError, match="differs from the expected shape"):
        utils.pad_sequences([np.ones((2, 3)), np.ones((2, 4))])


@pytest.mark.parametrize("x,n", [([0, 2, 1, 2], None), ([[1], [0], [3]], 5),
                                 (np.array([[0, 1], [2, 0]]), 3), ([], 2)])
def test_to_categorical_equals_keras(x, n):
    ours = utils.to_categorical(x, n)
    ref = keras.utils.to_categorical(np.asarray(x, dtype=np.int64), n)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


def test_to_categorical_bad_input():
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 2\)"):
        utils.to_categorical([0, 2], 2)
    with pytest.raises(ValueError, match="integer class indices"):
        utils.to_categorical([0.5])
    with pytest.raises(TypeError, match="integer class indices"):
        utils.to_categorical(["a"])


def _windows_reference(data, targets, length, stride, rate, start, end):
    """Keras's documented semantics: window i starts at start + i*stride, takes length steps
    every rate steps, and its target is targets[start + i*stride]."""
    end = len(data) if end is None else end
    out, tg = [], []
    p = 0
    while start + p + (length - 1) * rate < end and (targets is None or start + p < len(targets)):
        out.append(data[start + p:start + p + (length - 1) * rate + 1:rate])
        if targets is not None:
            tg.append(targets[start + p])
        p += stride
    return np.array(out), (None if targets is None else np.array(tg))


@pytest.mark.parametrize("kw", [{"sequence_length": 10, "sampling_rate": 2, "batch_size": 7},
                                {"sequence_length": 5, "sequence_stride": 3, "batch_size": 4,
                                 "start_index": 7, "end_index": 60},
                                {"sequence_length": 1, "batch_size": 128}])
def test_timeseries_dataset_windows(kw):
    data = np.arange(100 * 2).reshape(100, 2)
    targets = np.arange(100) * 10
    ds = utils.timeseries_dataset_from_array(data, targets, **kw)
    xs = np.concatenate([b[0] for b in ds])
    ys = np.concatenate([b[1] for b in ds])
    rx, ry = _windows_reference(data, targets, kw["sequence_length"],
                                kw.get("sequence_stride", 1), kw.get("sampling_rate", 1),
                                kw.get("start_index", 0), kw.get("end_index"))
    np.testing.assert_array_equal(xs, rx)
    np.testing.assert_array_equal(ys, ry)
    assert all(len(b[0]) <= kw["batch_size"] for b in ds)
    assert isinstance(ds, utils.PyDataset) and len(ds) == -(-len(rx) // kw["batch_size"])


def test_timeseries_keras_docs_example_and_forecasting_fit():
    # Keras's docstring example: data [0..99], sequence_length=10, sampling_rate=2 -> the first
    # sample is [0, 2, 4, ..., 18], the second [2, 4, ..., 20]
    ds = utils.timeseries_dataset_from_array(np.arange(100), None, sequence_length=10,
                                             sampling_rate=2, sequence_stride=2,
                                             batch_size=None)
    np.testing.assert_array_equal(ds[0], np.arange(0, 20, 2))
    np.testing.assert_array_equal(ds[1], np.arange(2, 22, 2))
    # the weather-forecasting pattern: x[t : t+L] predicts y[t + L]
    rng = np.random.default_rng(0)
    series = rng.normal(size=(60, 3)).astype(np.float32)
    L_ = 8
    train = utils.timeseries_dataset_from_array(series[:-L_], series[L_:, :1],
                                                sequence_length=L_, batch_size=16,
                                                shuffle=True, seed=3)
    m = Sequential([L.Input((L_, 3)), L.Conv1D(4, 3, padding="causal"), L.LSTM(4),
                    L.Dense(1)])
    m.compile("adam", "mse")
    h = m.fit(train, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2
    assert m.predict(train, verbose=0).shape == (len(series) - 2 * L_ + 1, 1)
    with pytest.raises(ValueError, match="sequence_length must be a positive int"):
        utils.timeseries_dataset_from_array(series, None, 0)
    with pytest.raises(ValueError, match="start_index"):
        utils.timeseries_dataset_from_array(series, None, 3, start_index=100)


def test_set_random_seed_makes_runs_repeatable():
    x, y, _ = _data()
    hs = []
    for _ in range(2):
        m = _model(seed=7)
        hs.append(m.fit(x, y, epochs=2, verbose=0).history["loss"])
    assert hs[0] == hs[1]
    assert fk.utils.set_random_seed is utils.set_random_seed
    assert utils.Sequence is utils.PyDataset
