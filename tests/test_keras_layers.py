"""Each Keras-compatible layer's forward pass against a direct NumPy computation in Keras's
weight layout, masks and their semantics, weight layout conversions, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.keras import initializers as I
from fastrnn.keras import layers as L
from fastrnn.keras.models import Sequential, set_random_seed

D = "float64"
TOL = {"rtol": 1e-12, "atol": 1e-13}


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _rand_weights(layer, seed=0):
    rs = np.random.default_rng(seed)
    layer.set_weights([rs.normal(0, 0.4, w.shape) for w in layer.get_weights()])
    return layer.get_weights()


def np_simple_rnn(x, k, r, b, act=np.tanh, h=None):
    h = np.zeros((x.shape[0], r.shape[0])) if h is None else h
    ys = []
    for t in range(x.shape[1]):
        h = act(x[:, t] @ k + h @ r + b)
        ys.append(h)
    return np.stack(ys, 1), h


def np_lstm(x, k, r, b):
    B, H = x.shape[0], r.shape[0]
    h, c, ys = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(x.shape[1]):
        z = x[:, t] @ k + h @ r + b
        i, f, g, o = _sig(z[:, :H]), _sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), _sig(
            z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        ys.append(h)
    return np.stack(ys, 1), h, c


def np_gru(x, k, r, b):
    """Keras's GRU with reset_after=True: gate blocks z, r, h; bias rows input / recurrent."""
    B, H = x.shape[0], r.shape[0]
    h, ys = np.zeros((B, H)), []
    for t in range(x.shape[1]):
        xi = x[:, t] @ k + b[0]
        hr = h @ r + b[1]
        z = _sig(xi[:, :H] + hr[:, :H])
        rr = _sig(xi[:, H:2 * H] + hr[:, H:2 * H])
        hh = np.tanh(xi[:, 2 * H:] + rr * hr[:, 2 * H:])
        h = z * h + (1 - z) * hh
        ys.append(h)
    return np.stack(ys, 1), h


X = np.random.default_rng(42).normal(size=(3, 6, 4))


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_simple_rnn_forward(act):
    layer = L.SimpleRNN(5, activation=act, return_sequences=True, dtype=D)
    layer(X)
    k, r, b = _rand_weights(layer)
    f = np.tanh if act == "tanh" else (lambda z: np.maximum(z, 0))
    ys, h = np_simple_rnn(X, k, r, b, f)
    np.testing.assert_allclose(layer(X), ys, **TOL)
    layer2 = L.SimpleRNN(5, activation=act, dtype=D)
    layer2(X)
    layer2.set_weights([k, r, b])
    np.testing.assert_allclose(layer2(X), h, **TOL)


def test_lstm_forward_return_state_and_go_backwards():
    layer = L.LSTM(5, return_sequences=True, return_state=True, dtype=D)
    layer(X)
    k, r, b = _rand_weights(layer)
    ys, h, c = np_lstm(X, k, r, b)
    out, h_n, c_n = layer(X)
    np.testing.assert_allclose(out, ys, **TOL)
    np.testing.assert_allclose(h_n, h, **TOL)
    np.testing.assert_allclose(c_n, c, **TOL)
    back = L.LSTM(5, return_sequences=True, go_backwards=True, dtype=D)
    back(X)
    back.set_weights([k, r, b])
    ys_b, _, _ = np_lstm(X[:, ::-1], k, r, b)
    np.testing.assert_allclose(back(X), ys_b, **TOL)  # Keras: outputs in processing order


def test_gru_forward_in_keras_layout():
    layer = L.GRU(5, return_sequences=True, dtype=D)
    layer(X)
    k, r, b = _rand_weights(layer)
    assert k.shape == (4, 15) and r.shape == (5, 15) and b.shape == (2, 15)
    ys, _ = np_gru(X, k, r, b)
    np.testing.assert_allclose(layer(X), ys, **TOL)
    # the stored (kernel) layout is PyTorch's r, z, n; Keras's z block is our second block
    np.testing.assert_array_equal(layer.kernel.value[5:10], k[:, :5].T)
    np.testing.assert_array_equal(layer.kernel.value[:5], k[:, 5:10].T)
    np.testing.assert_array_equal(layer.bias.value[1, 10:], b[1, 10:])


def test_gru_initial_state_argument():
    layer = L.GRU(3, return_state=True, dtype=D)
    layer(X)
    k, r, b = _rand_weights(layer, 3)
    h0 = np.random.default_rng(1).normal(size=(3, 3))
    out, h = layer(X[:, :1], initial_state=[h0])
    xi = X[:, 0] @ k + b[0]
    hr = h0 @ r + b[1]
    z, rr = _sig(xi[:, :3] + hr[:, :3]), _sig(xi[:, 3:6] + hr[:, 3:6])
    expected = z * h0 + (1 - z) * np.tanh(xi[:, 6:] + rr * hr[:, 6:])
    np.testing.assert_allclose(out, expected, **TOL)
    np.testing.assert_allclose(h, expected, **TOL)
    assert layer.states is None  # initial_state does not make the layer stateful


def test_unit_forget_bias_and_default_initializers():
    set_random_seed(0)
    layer = L.LSTM(6, dtype=D)
    layer(X)
    k, r, b = layer.get_weights()
    np.testing.assert_array_equal(b, np.r_[np.zeros(6), np.ones(6), np.zeros(12)])
    limit = np.sqrt(6 / (4 + 24))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.5 * limit
    np.testing.assert_allclose(r @ r.T, np.eye(6), atol=1e-12)  # orthogonal rows
    layer = L.LSTM(6, unit_forget_bias=False, bias_initializer="ones", dtype=D)
    layer(X)
    np.testing.assert_array_equal(layer.get_weights()[2], np.ones(24))


def test_bidirectional_merge_modes():
    for mode in ("concat", "sum", "mul", "ave"):
        layer = L.Bidirectional(L.LSTM(4, return_sequences=True, dtype=D), merge_mode=mode)
        layer(X)
        w = _rand_weights(layer)
        f, _, _ = np_lstm(X, *w[:3])
        b, _, _ = np_lstm(X[:, ::-1], *w[3:])
        b = b[:, ::-1]
        expected = {"concat": np.concatenate([f, b], -1), "sum": f + b, "mul": f * b,
                    "ave": (f + b) / 2}[mode]
        np.testing.assert_allclose(layer(X), expected, **TOL)
        assert "/forward_lstm" in layer.weights[0].path
        assert "/backward_lstm" in layer.weights[3].path


def test_masks_become_lengths_with_keras_output_semantics():
    ids = np.array([[3, 4, 5, 0, 0], [1, 2, 0, 0, 0], [6, 7, 8, 9, 1]])
    emb = L.Embedding(10, 3, mask_zero=True, dtype=D)
    rnn = L.SimpleRNN(2, return_sequences=True, dtype=D)
    m = Sequential([emb, rnn])
    k, r, b = _rand_weights(rnn)
    e = emb.get_weights()[0]
    out = m.predict(ids, verbose=0)
    for i, n in enumerate([3, 2, 5]):
        ys, h = np_simple_rnn(e[ids[i:i + 1, :n]], k, r, b)
        np.testing.assert_allclose(out[i, :n], ys[0], **TOL)
        np.testing.assert_allclose(out[i, n:], np.repeat(h, 5 - n, axis=0), **TOL)
    # zero_output_for_mask gives zeros on masked steps instead of repeating the last output
    rnn2 = L.SimpleRNN(2, return_sequences=True, zero_output_for_mask=True, dtype=D)
    m2 = Sequential([L.Embedding(10, 3, mask_zero=True, dtype=D), rnn2])
    m2.set_weights([e, k, r, b])
    out2 = m2.predict(ids, verbose=0)
    assert np.all(out2[0, 3:] == 0) and np.all(out2[1, 2:] == 0)
    np.testing.assert_allclose(out2[2], out[2], **TOL)


def test_masking_layer_zeroes_and_masks():
    x = np.ones((2, 4, 3))
    x[0, 2:] = -1.0
    mk = L.Masking(mask_value=-1.0, dtype=D)
    y, mask = mk.forward(x, None, False)
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0], [1, 1, 1, 1]])
    assert np.all(y[0, 2:] == 0) and np.all(y[0, :2] == 1)


def test_dense_on_2d_and_3d_and_embedding():
    d = L.Dense(3, activation="relu", dtype=D)
    x2 = np.random.default_rng(0).normal(size=(5, 4))
    d(x2)
    k, b = _rand_weights(d)
    np.testing.assert_allclose(d(x2), np.maximum(x2 @ k + b, 0), **TOL)
    x3 = np.random.default_rng(1).normal(size=(2, 7, 4))
    np.testing.assert_allclose(d(x3), np.maximum(x3 @ k + b, 0), **TOL)
    e = L.Embedding(6, 2, dtype=D)
    ids = np.array([[0, 5, 2], [1, 1, 3]])
    out = e(ids)
    np.testing.assert_array_equal(out, e.get_weights()[0][ids])
    np.testing.assert_array_equal(e(ids.astype(float)), out)


def test_dropout_layers():
    x = np.ones((200, 50))
    d = L.Dropout(0.3, seed=1, dtype=D)
    y, _ = d.forward(x, None, True)
    kept = y != 0
    assert 0.6 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    assert d.forward(x, None, False)[0] is x
    # recurrent input dropout: one mask over features per sequence, shared by all steps
    rnn = L.SimpleRNN(3, dropout=0.5, seed=0, return_sequences=True, dtype=D)
    rnn(np.ones((4, 5, 6)))
    rnn._core_forward(np.ones((5, 4, 6)), None, True)
    mask = rnn._dmask
    assert mask.shape == (4, 6) and set(np.unique(mask)) <= {0.0, 2.0}


def test_repeat_vector_flatten_reshape_time_distributed():
    x = np.arange(6.0).reshape(2, 3)
    y = L.RepeatVector(4)(x)
    assert y.shape == (2, 4, 3) and np.all(y[:, 2] == x)
    z = np.arange(24.0).reshape(2, 3, 4)
    assert L.Flatten()(z).shape == (2, 12)
    assert L.Reshape((4, 3))(z).shape == (2, 4, 3)
    td = L.TimeDistributed(L.Dense(2, dtype=D))
    out = td(z)
    k, b = td.get_weights()
    np.testing.assert_allclose(out, z @ k + b, **TOL)


def test_stateful_layers_carry_state_and_reset():
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    layer = L.GRU(3, stateful=True, dtype=D)
    ref = L.GRU(3, dtype=D)
    layer(x)
    ref(x)
    layer.reset_states()
    ref.set_weights(layer.get_weights())
    a = layer(x[:, :2])
    b = layer(x[:, 2:])
    np.testing.assert_allclose(b, ref(x), **TOL)
    np.testing.assert_allclose(a, ref(x[:, :2]), **TOL)
    with pytest.raises(ValueError, match="stateful"):
        layer(x[:1])
    layer.reset_states()
    np.testing.assert_allclose(layer(x[:1]), ref(x[:1]), **TOL)


def test_get_set_weights_roundtrip_is_exact():
    for layer in (L.SimpleRNN(3), L.LSTM(3), L.GRU(3), L.Bidirectional(L.GRU(3)), L.Dense(3)):
        layer(np.zeros((1, 2, 4), dtype=np.float32))
        w = [np.random.default_rng(0).normal(size=a.shape).astype(np.float32)
             for a in layer.get_weights()]
        layer.set_weights(w)
        for a, b in zip(layer.get_weights(), w, strict=True):
            assert a.dtype == np.float32
            np.testing.assert_array_equal(a, b)


def test_initializers():
    set_random_seed(3)
    assert I.get("zeros")((2, 3)).sum() == 0
    u = I.RandomUniform(-0.1, 0.1, seed=1)((1000,))
    assert u.min() >= -0.1 and u.max() < 0.1 and u.dtype == np.float32
    q = I.Orthogonal(seed=2)((8, 3), dtype="float64")
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-12)
    g = I.GlorotNormal(seed=0)((200, 300), "float64")
    assert abs(g.std() - np.sqrt(2 / 500)) < 0.1 * np.sqrt(2 / 500)
    assert I.deserialize(I.serialize(I.VarianceScaling(2.0, "fan_out"))).mode == "fan_out"
    with pytest.raises(ValueError, match="unknown initializer"):
        I.get("glorot_uniformm")


# -- clear errors -------------------------------------------------------------------------

def test_unknown_names_and_unsupported_options():
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        L.Dense(3, activation="tanhh")
    with pytest.raises(ValueError, match="activation='sigmoid' is not supported"):
        L.SimpleRNN(3, activation="sigmoid")
    with pytest.raises(ValueError, match="recurrent_activation"):
        L.LSTM(3, recurrent_activation="hard_sigmoid")
    with pytest.raises(NotImplementedError, match="reset_after=False"):
        L.GRU(3, reset_after=False)
    with pytest.raises(NotImplementedError, match="recurrent_dropout"):
        L.LSTM(3, recurrent_dropout=0.2)
    with pytest.raises(ValueError, match="merge_mode"):
        L.Bidirectional(L.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="wraps a SimpleRNN, LSTM or GRU"):
        L.Bidirectional(L.Dense(3))
    with pytest.raises(TypeError, match="unexpected keyword arguments: unitz"):
        L.LSTM(3, unitz=4)
    with pytest.raises(ValueError, match="units must be a positive int"):
        L.GRU(0)
    with pytest.raises(ValueError, match="rate must be in"):
        L.Dropout(1.5)


def test_wrong_input_ranks_and_sizes():
    with pytest.raises(ValueError, match=r"expects a 3-D input .*\(batch, timesteps, features\)"):
        L.LSTM(3)(np.zeros((2, 5)))
    m = Sequential([L.Input((5, 4)), L.LSTM(3)])
    with pytest.raises(ValueError, match="expects inputs of shape"):
        m.predict(np.zeros((2, 5, 7)), verbose=0)
    with pytest.raises(ValueError, match="expects inputs of shape"):
        m.predict(np.zeros((2, 5)), verbose=0)
    with pytest.raises(ValueError, match="RepeatVector.* expects a 2-D input"):
        Sequential([L.Input((5, 4)), L.RepeatVector(3)])
    with pytest.raises(ValueError, match=r"ids must be in \[0, 10\)"):
        L.Embedding(10, 2)(np.array([[1, 10]]))
    with pytest.raises(ValueError, match="return_state=True"):
        Sequential([L.Input((5, 4)), L.LSTM(3, return_state=True)])


def test_mask_not_at_the_end_is_a_clear_error():
    m = Sequential([L.Embedding(10, 2, mask_zero=True), L.LSTM(3)])
    with pytest.raises(ValueError, match="padding='post'"):
        m.predict(np.array([[0, 0, 3, 4]]), verbose=0)
    m.predict(np.array([[3, 4, 0, 0]]), verbose=0)  # post-padding is fine


def test_layer_configs_roundtrip_and_unknown_names():
    for layer in (L.LSTM(3, return_sequences=True, go_backwards=True, dropout=0.1),
                  L.GRU(2, stateful=True), L.Bidirectional(L.SimpleRNN(2), merge_mode="ave"),
                  L.Embedding(5, 2, mask_zero=True), L.Dense(2, activation="softmax"),
                  L.TimeDistributed(L.Dense(3))):
        clone = L.deserialize(L.serialize(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="unknown layer type 'LSTMM'"):
        L.deserialize({"class_name": "LSTMM", "config": {}})
    with pytest.raises(ValueError, match="invalid config for layer LSTM"):
        L.deserialize({"class_name": "LSTM", "config": {"units": 3, "bogus": 1}})


def test_set_ops_runs_the_recurrent_layers_on_the_reference():
    from fastrnn import functional, reference

    set_random_seed(4)
    m = Sequential([L.Input((5, 3)), L.Bidirectional(L.GRU(4, return_sequences=True)),
                    L.LSTM(3, return_sequences=True), L.SimpleRNN(2), L.Dense(2)])
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    native = m.predict(x, verbose=0)
    bi, lstm, rnn = m.layers[:3]
    layers = [bi.forward_layer, bi.backward_layer, lstm, rnn]
    assert all(layer.ops is functional for layer in layers)
    m.set_ops(reference)
    assert all(layer.ops is reference for layer in layers)
    np.testing.assert_allclose(m.predict(x, verbose=0), native, rtol=1e-5, atol=1e-6)
    # the choice is not part of the config: a copy starts on the native kernels
    assert all(layer.ops is functional for layer in Sequential.from_config(m.get_config()).layers
               if hasattr(layer, "ops"))
    with pytest.raises(TypeError, match="ops must provide"):
        m.set_ops(np)
    assert lstm.ops is reference
    m.set_ops(functional)
    assert all(layer.ops is functional for layer in layers)


def test_the_keras_package_exposes_its_modules_and_main_names(tmp_path):
    import fastrnn.keras as keras

    for name in ("layers", "models", "optimizers", "losses", "metrics", "callbacks",
                 "initializers", "activations", "saving", "base", "backend", "recurrent"):
        assert getattr(keras, name).__name__ == f"fastrnn.keras.{name}"
    assert keras.Sequential is keras.models.Sequential
    assert keras.load_model is keras.models.load_model
    assert keras.Input is keras.layers.Input
    keras.set_random_seed(0)
    m = keras.Sequential([keras.Input((4, 2)), keras.layers.LSTM(3), keras.layers.Dense(1)])
    m.save(tmp_path / "m.keras")
    x = np.ones((1, 4, 2), dtype=keras.floatx())
    np.testing.assert_array_equal(keras.load_model(tmp_path / "m.keras").predict(x, verbose=0),
                                  m.predict(x, verbose=0))
