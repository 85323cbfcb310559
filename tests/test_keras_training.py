"""fit/evaluate/predict on small synthetic tasks in the four sequence-model shapes, callbacks,
progress output, and clear errors for bad training arguments."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from fastrnn.keras import callbacks as C
from fastrnn.keras import layers as L
from fastrnn.keras import losses, metrics, optimizers
from fastrnn.keras.models import Sequential, set_random_seed


@pytest.fixture(autouse=True)
def _seed():
    set_random_seed(0)


def _sine(n=128, t=12, seed=0):
    rs = np.random.default_rng(seed)
    phase = rs.uniform(0, 2 * np.pi, size=(n, 1))
    s = np.sin(phase + 0.4 * np.arange(t + 1)[None, :])
    return s[:, :t, None].astype(np.float32), s[:, t:].astype(np.float32)


def test_many_to_one_sine_forecasting_with_simple_rnn():
    x, y = _sine()
    m = Sequential([L.Input((12, 1)), L.SimpleRNN(16), L.Dense(1)])
    m.compile(optimizer="adam", loss="mse", metrics=["mae"])
    before = m.evaluate(x, y, verbose=0)
    h = m.fit(x, y, batch_size=16, epochs=25, verbose=0)
    after = m.evaluate(x, y, verbose=0)
    assert set(h.history) == {"loss", "mae"} and len(h.history["loss"]) == 25
    assert after[0] < 0.1 * before[0]
    assert h.history["loss"][-1] < 0.2 * h.history["loss"][0]
    assert m.predict(x[:5], verbose=0).shape == (5, 1)


def test_many_to_one_sequence_classification_with_embedding_lstm():
    rs = np.random.default_rng(1)
    n, t = 192, 10
    x = rs.integers(1, 30, size=(n, t))
    lengths = rs.integers(4, t + 1, size=n)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0  # post-padding
    y = (x[:, 0] >= 15).astype(np.int64)  # class set by the first token
    m = Sequential([L.Embedding(30, 8, mask_zero=True), L.LSTM(16),
                    L.Dense(2, activation="softmax")])
    m.compile(optimizer=optimizers.Adam(0.02), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    h = m.fit(x, y, batch_size=32, epochs=20, verbose=0, validation_split=0.25)
    assert isinstance(m.metrics[1], metrics.SparseCategoricalAccuracy)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    assert h.history["accuracy"][-1] > 0.9
    assert "val_accuracy" in h.history and "val_loss" in h.history


def test_many_to_many_tagging_with_bidirectional_gru():
    rs = np.random.default_rng(2)
    n, t = 128, 8
    x = rs.integers(1, 12, size=(n, t))
    # a tag that needs both directions: is the token larger than both neighbours' mean?
    pad = np.pad(x, ((0, 0), (1, 1)), constant_values=6)
    y = (x > (pad[:, :-2] + pad[:, 2:]) / 2).astype(np.int64)
    m = Sequential([L.Embedding(12, 8), L.Bidirectional(L.GRU(16, return_sequences=True)),
                    L.Dense(2, activation="softmax")])
    m.compile(optimizer=optimizers.Adam(0.02), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    assert m.output_shape == (None, None, 2)
    h = m.fit(x, y, batch_size=32, epochs=15, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]
    assert h.history["accuracy"][-1] > 0.85
    assert m.predict(x[:3], verbose=0).shape == (3, t, 2)


def test_one_to_many_with_repeat_vector_and_stacked_layers():
    rs = np.random.default_rng(3)
    a = rs.uniform(-1, 1, size=(96, 2)).astype(np.float32)
    y = (a[:, :1, None] * np.linspace(0, 1, 6)[None, :, None] + a[:, 1:, None]).astype(
        np.float32)
    m = Sequential([L.Input((2,)), L.Dense(16, activation="tanh"), L.RepeatVector(6),
                    L.LSTM(16, return_sequences=True), L.GRU(16, return_sequences=True),
                    L.TimeDistributed(L.Dense(1))])
    m.compile(optimizer=optimizers.RMSprop(0.01), loss="huber")
    h = m.fit(x=a, y=y, batch_size=16, epochs=20, verbose=0)
    assert h.history["loss"][-1] < 0.2 * h.history["loss"][0]


def test_one_to_one_dense():
    rs = np.random.default_rng(4)
    x = rs.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    m = Sequential([L.Dense(1, input_shape=(3,))])
    m.compile(optimizer=optimizers.SGD(0.1, momentum=0.9, nesterov=True), loss="mae")
    m.fit(x, y, epochs=30, verbose=0)
    assert m.evaluate(x, y, verbose=0) < 0.1


def test_gradient_clipping_keeps_training_stable():
    x, y = _sine(64)
    for kw in ({"clipnorm": 0.1}, {"clipvalue": 0.01}, {"global_clipnorm": 0.1}):
        m = Sequential([L.Input((12, 1)), L.LSTM(8), L.Dense(1)])
        m.compile(optimizer=optimizers.SGD(0.5, **kw), loss="mse")
        w0 = m.get_weights()
        m.fit(x, y, batch_size=64, epochs=1, verbose=0)  # one step
        delta = [a - b for a, b in zip(m.get_weights(), w0, strict=True)]
        if "clipvalue" in kw:
            assert max(np.abs(d).max() for d in delta) <= 0.5 * 0.01 + 1e-7
        elif "clipnorm" in kw:
            assert max(np.linalg.norm(d) for d in delta) <= 0.5 * 0.1 + 1e-6
        else:
            assert np.sqrt(sum(np.sum(d * d) for d in delta)) <= 0.5 * 0.1 + 1e-6


def test_callbacks_history_early_stopping_restore_best(tmp_path):
    x, y = _sine(64)
    m = Sequential([L.Input((12, 1)), L.SimpleRNN(4), L.Dense(1)])
    m.compile(optimizer=optimizers.SGD(0.0), loss="mse")  # loss never improves
    events = []

    class Recorder(C.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_end(self, epoch, logs=None):
            events.append(("epoch", epoch, sorted(logs)))

        def on_train_batch_end(self, batch, logs=None):
            events.append("batch")

    es = C.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    h = m.fit(x, y, batch_size=32, epochs=10, verbose=0, callbacks=[Recorder(), es])
    assert len(h.history["loss"]) == 3  # epoch 0 sets the best, then two without improvement
    assert events[0] == "train_begin" and events.count("batch") == 6
    assert events[-1] == ("epoch", 2, ["loss"])
    assert es.stopped_epoch == 2 and m.history is h


def test_early_stopping_restores_the_best_epoch():
    x, y = _sine(64)
    m = Sequential([L.Input((12, 1)), L.SimpleRNN(4), L.Dense(1)])
    m.compile(optimizer=optimizers.SGD(0.05), loss="mse")
    snapshots = []

    class Diverge(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["loss"], m.get_weights()))
            if epoch == 1:  # make later epochs worse
                self.model.optimizer.learning_rate = 50.0

    es = C.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    m.fit(x, y, batch_size=64, epochs=6, verbose=0, callbacks=[Diverge(), es])
    best = min(range(len(snapshots)), key=lambda i: snapshots[i][0])
    for a, b in zip(m.get_weights(), snapshots[best][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_and_lambda_callback(tmp_path):
    x, y = _sine(32)
    m = Sequential([L.Input((12, 1)), L.GRU(4), L.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    seen = []
    cbs = [C.ModelCheckpoint(str(tmp_path / "ck-{epoch:02d}-{loss:.3f}.keras")),
           C.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_loss",
                             save_best_only=True),
           C.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))]
    m.fit(x, y, epochs=3, verbose=0, callbacks=cbs, validation_data=(x, y))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len([f for f in files if f.startswith("ck-")]) == 3 and "best.keras" in files
    assert [f for f in files if f.startswith("ck-")][0].startswith("ck-01-")
    assert seen == [0, 1, 2]


def test_progress_output_formats(capsys):
    x, y = _sine(40)
    m = Sequential([L.Input((12, 1)), L.SimpleRNN(4), L.Dense(1)])
    m.compile(optimizer="adam", loss="mse", metrics=["mae"])
    m.fit(x, y, batch_size=16, epochs=2, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2"
    assert out[1].startswith("3/3 - ") and "/step" in out[1] and "samples/s" in out[1]
    assert " - loss: " in out[1] and " - mae: " in out[1]
    m.fit(x, y, batch_size=16, epochs=1, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/1" and out[1].startswith("3/3 ━━━━━━━━━━━━━━━━━━━━ ")
    assert "samples/s" in out[1] and " - loss: " in out[1]
    m.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
    # on a terminal the bar is redrawn in place with \r and colours
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    pb = C.ProgbarLogger(1, stream=stream, interval=0.0)
    m.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[pb])
    text = stream.getvalue()
    assert text.count("\r") == 5 + 1 and "\x1b[32m" in text and text.endswith("\n")


def test_sample_and_class_weights():
    x, y = _sine(32)
    m = Sequential([L.Input((12, 1)), L.SimpleRNN(4), L.Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    sw = np.zeros(32)
    w0 = m.get_weights()
    m.fit(x, y, epochs=1, verbose=0, sample_weight=sw)
    for a, b in zip(m.get_weights(), w0, strict=True):
        np.testing.assert_array_equal(a, b)  # zero weights: zero gradient
    yc = (y[:, 0] > 0).astype(np.int64)
    mc = Sequential([L.Input((12, 1)), L.SimpleRNN(4), L.Dense(2, activation="softmax")])
    mc.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    w0 = mc.get_weights()
    mc.fit(x, yc, epochs=1, verbose=0, class_weight={0: 0.0, 1: 0.0})
    for a, b in zip(mc.get_weights(), w0, strict=True):
        np.testing.assert_array_equal(a, b)


def test_train_on_batch_and_evaluate_return_values():
    x, y = _sine(16)
    m = Sequential([L.Input((12, 1)), L.LSTM(4), L.Dense(1)])
    m.compile(optimizer="adam", loss="mse", metrics=["mae", "mse"])
    r = m.train_on_batch(x, y)
    assert isinstance(r, list) and len(r) == 3
    d = m.evaluate(x, y, verbose=0, return_dict=True)
    assert set(d) == {"loss", "mae", "mse"}
    assert np.isclose(d["loss"], d["mse"], rtol=1e-6)
    assert m.metrics_names == ["loss", "mae", "mse"]


def test_float64_models_via_dtype():
    x, y = _sine(16)
    m = Sequential([L.Input((12, 1)), L.GRU(4, dtype="float64"), L.Dense(1, dtype="float64")])
    m.compile(optimizer="adam", loss="mse")
    m.fit(x, y, epochs=1, verbose=0)
    assert m.predict(x, verbose=0).dtype == np.float64
    assert all(w.dtype == np.float64 for w in m.get_weights())


# -- clear errors -------------------------------------------------------------------------

def test_bad_training_arguments_are_clear_errors():
    x, y = _sine(16)
    m = Sequential([L.Input((12, 1)), L.LSTM(4), L.Dense(1)])
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="unknown loss 'mean_squared_errror'"):
        m.compile(optimizer="adam", loss="mean_squared_errror")
    with pytest.raises(ValueError, match="unknown optimizer 'adamw2'"):
        m.compile(optimizer="adamw2", loss="mse")
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        m.compile(optimizer="adam", loss="mse", metrics=["acuracy"])
    with pytest.raises(ValueError, match="plain callables .* are not supported"):
        m.compile(optimizer="adam", loss=lambda a, b: (a - b) ** 2)
    m.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="same number of samples"):
        m.fit(x, y[:10], verbose=0)
    with pytest.raises(ValueError, match=r"mse: y has shape \(16, 3\)"):
        m.fit(x, np.zeros((16, 3)), verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        m.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="only one of clipnorm"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)


def test_wrong_target_shapes_for_classification_losses():
    x, _ = _sine(16)
    m = Sequential([L.Input((12, 1)), L.LSTM(4), L.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="one-hot targets need 'categorical_crossentropy'"):
        m.fit(x, np.eye(3)[np.zeros(16, int)], verbose=0)
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 3\)"):
        m.fit(x, np.full(16, 3), verbose=0)
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="needs them equal"):
        m.fit(x, np.zeros(16, int), verbose=0)


def test_losses_and_metrics_functions():
    yt = np.array([[0.0, 1.0], [1.0, 0.0]])
    yp = np.array([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(losses.mse(yt, yp), [0.04, 0.16])
    np.testing.assert_allclose(losses.mae(yt, yp), [0.2, 0.4])
    np.testing.assert_allclose(losses.categorical_crossentropy(yt, yp), -np.log([0.8, 0.6]))
    assert metrics.CategoricalAccuracy()(yt, yp) == 1.0
    assert metrics.get("acc", np.array([1, 0]), yp).name == "acc"
    assert metrics.BinaryAccuracy()(np.array([[1.0], [0.0]]), np.array([[0.7], [0.6]])) == 0.5
    assert losses.get("huber").delta == 1.0
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="avg")


def test_crossentropy_and_accuracy_are_resolved_from_shapes():
    x, _ = _sine(16)
    m = Sequential([L.Input((12, 1)), L.SimpleRNN(4), L.Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="crossentropy", metrics=["accuracy"])
    m.fit(x, (x[:, 0] > 0).astype(np.float32), epochs=1, verbose=0)
    assert isinstance(m._loss_obj, losses.BinaryCrossentropy)
    assert isinstance(m.metrics[1], metrics.BinaryAccuracy)


def test_stdout_untouched_by_silent_apis(capsys):
    m = Sequential([L.Input((3, 2)), L.LSTM(2)])
    m.predict(np.zeros((2, 3, 2)), verbose=0)
    assert capsys.readouterr().out == ""
    assert sys.stdout is not None
