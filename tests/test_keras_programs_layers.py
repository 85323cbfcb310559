"""Keras programs that use the issue-22 layers and data helpers, written as a Keras user would
(our own equivalents of keras-io examples, with synthetic data of the same shapes and tiny
sizes): the only change from Keras is ``import fastrnn.keras as keras`` /
``from fastrnn.keras import layers``."""

from __future__ import annotations

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras import layers


def test_weather_forecasting_with_timeseries_datasets(tmp_path):
    """Multivariate series -> windows from timeseries_dataset_from_array -> LSTM regressor,
    validation on a second dataset, checkpoint and early stopping, predictions per batch."""
    rng = np.random.default_rng(0)
    steps, features = 300, 7
    t = np.arange(steps)
    features_data = np.stack([np.sin(t / (5 + i)) + 0.1 * rng.normal(size=steps)
                              for i in range(features)], axis=1).astype("float32")
    mean, std = features_data[:200].mean(axis=0), features_data[:200].std(axis=0)
    features_data = (features_data - mean) / std
    past, future, step = 24, 6, 2
    sequence_length = past // step
    train_split = 200
    x_train = features_data[:train_split]
    y_train = features_data[past + future:train_split + past + future, [1]]
    dataset_train = keras.utils.timeseries_dataset_from_array(
        x_train, y_train, sequence_length=sequence_length, sampling_rate=step, batch_size=32)
    x_val = features_data[train_split:-(past + future)]
    y_val = features_data[train_split + past + future:, [1]]
    dataset_val = keras.utils.timeseries_dataset_from_array(
        x_val, y_val, sequence_length=sequence_length, sampling_rate=step, batch_size=32)
    for batch in dataset_train:
        inputs, targets = batch
        break
    assert inputs.shape == (32, sequence_length, features) and targets.shape == (32, 1)

    inputs = keras.layers.Input(shape=(inputs.shape[1], inputs.shape[2]))
    lstm_out = keras.layers.LSTM(16)(inputs)
    outputs = keras.layers.Dense(1)(lstm_out)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    path_checkpoint = str(tmp_path / "model_checkpoint.weights.h5")
    es_callback = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=5)
    modelckpt_callback = keras.callbacks.ModelCheckpoint(
        monitor="val_loss", filepath=path_checkpoint, verbose=0, save_weights_only=True,
        save_best_only=True)
    history = model.fit(dataset_train, epochs=6, validation_data=dataset_val,
                        callbacks=[es_callback, modelckpt_callback], verbose=0)
    loss, val_loss = history.history["loss"], history.history["val_loss"]
    assert loss[-1] < loss[0] and np.all(np.isfinite(val_loss))
    for x, y in dataset_val:
        pred = model.predict(x, verbose=0)
        assert pred.shape == y.shape
        break
    assert model.evaluate(dataset_val, verbose=0) == model.evaluate(
        np.concatenate([b[0] for b in dataset_val]), np.concatenate([b[1] for b in dataset_val]),
        batch_size=32, verbose=0)


def test_bidirectional_lstm_imdb_with_pad_sequences():
    """Integer reviews of varied length -> pad_sequences -> Embedding -> two Bidirectional
    LSTMs -> sigmoid, functional style."""
    rng = np.random.default_rng(1)
    max_features, maxlen = 200, 30
    x_train = [list(rng.integers(1, max_features, size=rng.integers(5, 60)))
               for _ in range(64)]
    y_train = rng.integers(0, 2, size=64)
    x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
    assert x_train.shape == (64, maxlen) and x_train.dtype == np.int32

    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(max_features, 16)(inputs)
    x = layers.Bidirectional(layers.LSTM(8, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(8))(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    h = model.fit(x_train, y_train, batch_size=16, epochs=2, validation_split=0.25, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_text_classification_conv1d_global_max_pooling():
    """keras-io's 'text classification from scratch' model: Embedding, Conv1D with strides,
    GlobalMaxPooling1D, Dropout, on a PyDataset of token batches."""
    rng = np.random.default_rng(2)
    max_features, sequence_length, embedding_dim = 300, 40, 16

    class Reviews(keras.utils.PyDataset):
        def __init__(self, n, batch_size, **kwargs):
            super().__init__(**kwargs)
            self.x = rng.integers(0, max_features, size=(n, sequence_length))
            self.y = (self.x[:, :5].mean(axis=1) > max_features / 2).astype("float32")
            self.batch_size = batch_size

        def __len__(self):
            return int(np.ceil(len(self.x) / self.batch_size))

        def __getitem__(self, idx):
            s = slice(idx * self.batch_size, (idx + 1) * self.batch_size)
            return self.x[s], self.y[s]

    inputs = keras.Input(shape=(None,), dtype="int64")
    x = layers.Embedding(max_features, embedding_dim)(inputs)
    x = layers.Dropout(0.5)(x)
    x = layers.Conv1D(16, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.Conv1D(16, 3, padding="valid", activation="relu", strides=1)(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    predictions = layers.Dense(1, activation="sigmoid", name="predictions")(x)
    model = keras.Model(inputs, predictions)
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    h = model.fit(Reviews(96, 32), validation_data=Reviews(32, 32), epochs=2, verbose=0)
    assert len(h.history["val_accuracy"]) == 2
    assert model.evaluate(Reviews(32, 16), verbose=0)[1] >= 0.0


def test_working_with_rnns_cells_and_custom_cell():
    """The guide's 'RNN layers and RNN cells' section (RNN(LSTMCell) is the fused LSTM) and a
    minimal custom cell run by RNN one step at a time."""
    model = keras.Sequential()
    model.add(keras.Input((10, 5)))
    model.add(layers.RNN(layers.LSTMCell(16), return_sequences=True))
    model.add(layers.RNN(layers.StackedRNNCells([layers.GRUCell(8), layers.SimpleRNNCell(4)])))
    model.add(layers.Dense(2))
    model.compile("adam", "mse")
    x = np.random.default_rng(3).normal(size=(8, 10, 5)).astype("float32")
    model.fit(x, np.zeros((8, 2), "float32"), epochs=1, verbose=0)

    class MinimalRNNCell(layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight("kernel", (input_shape[-1], self.units),
                                          "glorot_uniform")
            self.recurrent_kernel = self.add_weight("recurrent_kernel",
                                                    (self.units, self.units), "orthogonal")

        def call(self, inputs, states):
            prev_output = states[0]
            h = inputs @ self.kernel.value
            output = h + prev_output @ self.recurrent_kernel.value
            return output, [output]

    layer = layers.RNN(MinimalRNNCell(32))
    y = layer(x)
    assert y.shape == (8, 32)
    k, r = layer.cell.kernel.value, layer.cell.recurrent_kernel.value
    h = np.zeros((8, 32), "float32")
    for t in range(10):
        h = x[:, t] @ k + h @ r
    np.testing.assert_allclose(y, h, rtol=1e-4, atol=1e-5)
