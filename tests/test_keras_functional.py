"""The functional API: symbolic tensors, graphs, models with several inputs and outputs,
sub-models cut from trained graphs, saving, streaming, and the errors a Keras user meets."""

from __future__ import annotations

import numpy as np
import pytest
from _keras_helpers import SumForTest as _SumForTest

import fastrnn.keras as keras
from fastrnn.keras import layers


@pytest.fixture(autouse=True)
def _seed():
    keras.set_random_seed(0)


def _seq2seq(units=8, n_in=5, n_out=6):
    enc_in = keras.Input(shape=(None, n_in), name="encoder_inputs")
    _, h, c = layers.LSTM(units, return_state=True, name="encoder")(enc_in)
    dec_in = keras.Input(shape=(None, n_out), name="decoder_inputs")
    dec_lstm = layers.LSTM(units, return_sequences=True, return_state=True, name="decoder")
    seq, _, _ = dec_lstm(dec_in, initial_state=[h, c])
    dense = layers.Dense(n_out, activation="softmax", name="head")
    model = keras.Model([enc_in, dec_in], dense(seq))
    return model, (enc_in, h, c, dec_in, dec_lstm, dense)


def _data(n=24, t_in=7, t_out=4, n_in=5, n_out=6):
    rs = np.random.default_rng(0)
    x1 = rs.random((n, t_in, n_in)).astype(np.float32)
    x2 = rs.random((n, t_out, n_out)).astype(np.float32)
    y = np.eye(n_out, dtype=np.float32)[rs.integers(0, n_out, (n, t_out))]
    return x1, x2, y


def test_input_is_a_symbolic_tensor_that_refuses_numpy():
    x = keras.Input(shape=(None, 3), name="seq", dtype="float64")
    assert isinstance(x, keras.KerasTensor)
    assert x.shape == (None, None, 3) and x.dtype == "float64" and x.name == "seq"
    with pytest.raises(TypeError, match="symbolic tensor of the functional API"):
        np.asarray(x)
    with pytest.raises(TypeError, match="use layers"):
        x + x
    y = layers.LSTM(4)(x)
    assert y.shape == (None, 4)
    assert "KerasTensor" in repr(y)


def test_layer_called_on_input_builds_and_records_the_graph():
    x = keras.Input(shape=(6, 3))
    lstm = layers.LSTM(4, return_sequences=True)
    y = lstm(x)
    assert lstm.built and lstm.input is x and lstm.output is y
    assert x._keras_history[0].input is x and x._keras_history[0].output is x
    lstm(keras.Input(shape=(6, 3)))
    with pytest.raises(AttributeError, match="called 2 times"):
        _ = lstm.output
    assert y.shape == (None, 6, 4)
    out, h, c = layers.LSTM(2, return_state=True)(y)
    assert out.shape == h.shape == c.shape == (None, 2)


def test_seq2seq_trains_and_inference_models_reuse_the_trained_layers():
    model, (enc_in, h, c, dec_in, dec_lstm, dense) = _seq2seq()
    x1, x2, y = _data()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit([x1, x2], y, batch_size=8, epochs=8, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    # the keras-io inference pattern: an encoder model and a step-by-step decoder model
    encoder = keras.Model(enc_in, [h, c])
    s_h, s_c = keras.Input(shape=(8,)), keras.Input(shape=(8,))
    o, h2, c2 = dec_lstm(dec_in, initial_state=[s_h, s_c])
    decoder = keras.Model([dec_in, s_h, s_c], [dense(o), h2, c2])
    states = encoder.predict(x1, verbose=0)
    outs = []
    for t in range(x2.shape[1]):  # teacher-forced steps, one at a time
        p, *states = decoder.predict([x2[:, t:t + 1], *states], verbose=0)
        outs.append(p)
    np.testing.assert_allclose(np.concatenate(outs, axis=1),
                               model.predict([x1, x2], verbose=0), atol=1e-5)


def test_data_as_dicts_keyed_by_input_and_output_names():
    model, _ = _seq2seq()
    x1, x2, y = _data()
    model.compile(optimizer="sgd", loss={"head": "categorical_crossentropy"})
    by_list = model.evaluate([x1, x2], y, verbose=0)
    by_dict = model.evaluate({"decoder_inputs": x2, "encoder_inputs": x1}, {"head": y},
                             verbose=0)
    assert by_list == by_dict
    with pytest.raises(ValueError, match=r"unknown keys \['decoder'\].*'encoder_inputs', "
                                         r"'decoder_inputs'"):
        model.predict({"encoder_inputs": x1, "decoder": x2})
    with pytest.raises(ValueError, match=r"lacks \['decoder_inputs'\]"):
        model.predict({"encoder_inputs": x1})
    with pytest.raises(ValueError, match="the model has 2 inputs"):
        model.predict(x1)


def test_multi_output_losses_metrics_and_logs():
    i = keras.Input(shape=(5, 3))
    h = layers.GRU(4)(i)
    a = layers.Dense(2, name="a")(h)
    b = layers.Dense(3, activation="softmax", name="b")(h)
    m = keras.Model(i, [a, b])
    m.compile("adam", loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[1.0, 0.5],
              metrics=[["mae"], ["accuracy"]])
    rs = np.random.default_rng(1)
    x, ya, yb = rs.random((16, 5, 3)), rs.random((16, 2)), rs.integers(0, 3, 16)
    h = m.fit(x, [ya, yb], epochs=2, verbose=0, validation_split=0.25).history
    assert set(h) == {"loss", "a_loss", "b_loss", "a_mae", "b_accuracy", "val_loss",
                      "val_a_loss", "val_b_loss", "val_a_mae", "val_b_accuracy"}
    np.testing.assert_allclose(h["loss"], np.array(h["a_loss"]) + 0.5 * np.array(h["b_loss"]),
                               rtol=1e-6)
    r = m.evaluate(x, [ya, yb], verbose=0, return_dict=True)
    assert r["loss"] == pytest.approx(r["a_loss"] + 0.5 * r["b_loss"])
    pa, pb = m.predict(x, verbose=0)
    assert pa.shape == (16, 2) and pb.shape == (16, 3)
    with pytest.raises(ValueError, match=r"keys \['c'\] that are not output names"):
        m.compile("adam", loss={"c": "mse"})
    with pytest.raises(ValueError, match="3 entries for 2 outputs"):
        m.compile("adam", loss=["mse"] * 3)


def test_masks_flow_through_the_graph():
    """Embedding(mask_zero) -> LSTM: padded steps do not change the result."""
    i = keras.Input(shape=(None,), dtype="int64")
    e = layers.Embedding(10, 4, mask_zero=True)(i)
    o = layers.LSTM(3)(layers.LSTM(5, return_sequences=True)(e))
    m = keras.Model(i, o)
    x = np.array([[3, 4, 5, 0, 0, 0]])
    np.testing.assert_allclose(m.predict(x, verbose=0), m.predict(x[:, :3], verbose=0),
                               atol=1e-6)


def test_shared_layer_gradients_sum_over_calls():
    """A Dense shared by two inputs: the gradient is the sum of both calls' (checked against
    the same maths written out)."""
    keras.set_floatx("float64")
    try:
        a, b = keras.Input(shape=(3,)), keras.Input(shape=(3,))
        d = layers.Dense(2, use_bias=False)
        m = keras.Model([a, b], _SumForTest()([d(a), layers.Activation("tanh")(d(b))]))
        m.compile(keras.optimizers.SGD(1.0), "mse")
        rs = np.random.default_rng(2)
        xa, xb, y = rs.random((4, 3)), rs.random((4, 3)), rs.random((4, 2))
        w = m.get_weights()[0]
        out = xa @ w + np.tanh(xb @ w)
        g = 2 * (out - y) / out.size
        expected = xa.T @ g + xb.T @ (g * (1 - np.tanh(xb @ w) ** 2))
        m.train_on_batch([xa, xb], y)
        np.testing.assert_allclose(w - m.get_weights()[0], expected, atol=1e-12)
    finally:
        keras.set_floatx("float32")


def test_model_as_layer_and_in_sequential_shapes():
    i = keras.Input(shape=(4, 2))
    inner = keras.Model(i, layers.LSTM(3)(i), name="inner")
    x = keras.Input(shape=(4, 2))
    outer = keras.Model(x, layers.Dense(1)(inner(x)))
    assert [l.name for l in outer.layers][1] == "inner"
    assert len(outer.weights) == 5
    outer.compile("adam", "mse")
    rs = np.random.default_rng(3)
    outer.fit(rs.random((8, 4, 2)), rs.random((8, 1)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"model 'inner' \(used as a layer\) expects input .* "
                                         r"shape \(None, 4, 2\), got \(None, 4, 5\)"):
        inner(keras.Input(shape=(4, 5)))


def test_save_and_load_functional_models(tmp_path):
    model, _ = _seq2seq()
    x1, x2, y = _data()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit([x1, x2], y, epochs=1, verbose=0)
    path = tmp_path / "s2s.keras"
    model.save(path)
    back = keras.load_model(path)
    assert isinstance(back, keras.Model)
    assert [l.name for l in back.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(back.predict([x1, x2], verbose=0),
                                  model.predict([x1, x2], verbose=0))
    assert back.evaluate([x1, x2], y, verbose=0) == model.evaluate([x1, x2], y, verbose=0)
    # training continues the same way (optimizer state restored)
    h1 = model.fit([x1, x2], y, epochs=1, shuffle=False, verbose=0).history
    h2 = back.fit([x1, x2], y, epochs=1, shuffle=False, verbose=0).history
    assert h1 == h2


def test_save_and_load_shared_layers_submodels_and_dict_outputs(tmp_path):
    a, b = keras.Input(shape=(5, 2), name="a"), keras.Input(shape=(5, 2), name="b")
    i = keras.Input(shape=(5, 2))
    sub = keras.Model(i, layers.GRU(3)(i), name="sub")
    dense = layers.Dense(2, name="shared")
    out = {"left": dense(sub(a)), "right": layers.Dense(1, name="r")(dense(sub(b)))}
    m = keras.Model({"a": a, "b": b}, out)
    m.compile("rmsprop", loss={"left": "mse", "right": "mae"}, loss_weights={"left": 2.0,
                                                                               "right": 1.0})
    rs = np.random.default_rng(4)
    x = {"a": rs.random((6, 5, 2)), "b": rs.random((6, 5, 2))}
    y = {"left": rs.random((6, 2)), "right": rs.random((6, 1))}
    m.fit(x, y, epochs=1, verbose=0)
    m.save(tmp_path / "m.fr")
    back = keras.load_model(tmp_path / "m.fr")
    p, q = m.predict(x, verbose=0), back.predict(x, verbose=0)
    assert set(q) == {"left", "right"}
    for k in p:
        np.testing.assert_array_equal(p[k], q[k])
    assert back.evaluate(x, y, verbose=0) == m.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["nodes"][0].update(layer="nope"), "invalid node"),
    (lambda c: c["nodes"][0].update(inputs=[["x", 9, 0]]), "names no earlier layer call"),
    (lambda c: c["outputs"].append(["lstm", 0, "0"]), "invalid tensor reference"),
    (lambda c: c["nodes"].reverse(), "names no earlier layer call"),
    (lambda c: c["layers"].append(c["layers"][-1]), "duplicate"),
    (lambda c: c["layers"][-1].update(class_name="Lambda2"), "unknown layer type"),
])
def test_hand_edited_configs_fail_cleanly(edit, match):
    i = keras.Input(shape=(3, 2), name="x")
    m = keras.Model(i, layers.Dense(1, name="d")(layers.LSTM(2, name="lstm")(i)))
    cfg = m.get_config()
    assert keras.Model.from_config(cfg).get_config() == cfg
    edit(cfg)
    with pytest.raises(ValueError, match=match):
        keras.Model.from_config(cfg)


def test_stream_a_functional_chain_and_refuse_other_graphs():
    i = keras.Input(shape=(None, 3))
    m = keras.Model(i, layers.Dense(2)(layers.GRU(4, return_sequences=True)(i)))
    x = np.random.default_rng(5).random((2, 6, 3)).astype(np.float32)
    s = m.stream(batch_size=2)
    steps = np.stack([s.step(x[:, t]) for t in range(6)], axis=1)
    np.testing.assert_allclose(steps, m.predict(x, verbose=0), atol=1e-5)
    model, _ = _seq2seq()
    with pytest.raises(ValueError, match="needs a functional model that is a chain"):
        model.stream()


def test_summary_of_a_chain_has_no_connected_to_column(capsys):
    i = keras.Input(shape=(5, 3))
    keras.Model(i, layers.Dense(1)(layers.LSTM(2)(i)), name="chain").summary()
    out = capsys.readouterr().out
    assert "Connected to" not in out and "input_layer" in out
    model, _ = _seq2seq()
    model.summary()
    out = capsys.readouterr().out
    assert "Connected to" in out and "encoder[0][1]" in out


@pytest.mark.parametrize("build, exc, match", [
    (lambda: layers.LSTM(3)(keras.Input(shape=(5,))), ValueError,
     r"layer 'lstm\w*' \(LSTM\) expects a 3-D input \(batch, timesteps, features\), got an "
     r"input of shape \(None, 5\)"),
    (lambda: (lambda d: (d(keras.Input(shape=(4,))), d(keras.Input(shape=(6,)))))(
        layers.Dense(2, name="proj")), ValueError,
     r"layer 'proj' \(Dense\) was built for 4 input features, got input shape \(None, 6\)"),
    (lambda: keras.Model(keras.Input(shape=(3,), name="a"),
                         layers.Dense(1)(keras.Input(shape=(3,), name="b"))), ValueError,
     r"Graph disconnected: .*name=b.*inputs \['a'\]"),
    (lambda: keras.Model(np.zeros((2, 3)), np.zeros((2, 1))), TypeError,
     "did you pass NumPy arrays"),
    (lambda: layers.LSTM(3)(keras.Input(shape=(5, 2)),
                            initial_state=[keras.Input(shape=(3,))]), ValueError,
     r"initial_state expected 2 state arrays, got 1"),
    (lambda: layers.GRU(3)(keras.Input(shape=(5, 2)), initial_state=[keras.Input(shape=(4,))]),
     ValueError, r"each state must have shape \(batch, 3\), got \(None, 4\)"),
    (lambda: layers.Dense(2)([keras.Input(shape=(3,)), keras.Input(shape=(3,))]), TypeError,
     r"layer 'dense\w*' \(Dense\) takes one input, got a list of 2"),
    (lambda: layers.Dense(2)([keras.Input(shape=(3,)), np.zeros((1, 3))]), TypeError,
     "takes one input"),
    (lambda: _SumForTest()([keras.Input(shape=(3,)), np.zeros((1, 3))]), TypeError,
     "mix of symbolic tensors"),
    (lambda: keras.Model(), NotImplementedError, "subclassing keras.Model"),
    (lambda: keras.Sequential([layers.LSTM(3)(keras.Input(shape=(2, 2)))]), TypeError,
     "build a keras.Model"),
])
def test_functional_errors_name_the_layer_and_the_shape(build, exc, match):
    with pytest.raises(exc, match=match):
        build()


def test_subclassing_with_call_gets_a_keras_worded_error():
    class MyModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(1)

        def call(self, inputs):
            return self.dense(inputs)

    with pytest.raises(NotImplementedError, match="subclassing keras.Model with your own "
                                                  "call"):
        MyModel()


def test_predict_with_wrong_input_shape_names_the_input_and_the_layer():
    i = keras.Input(shape=(None, 3), name="chars")
    m = keras.Model(i, layers.LSTM(2, name="rnn")(i))
    with pytest.raises(ValueError, match=r"input 'chars' of model .* expects shape "
                                         r"\(None, None, 3\) \(it feeds layer 'rnn', LSTM\), got "
                                         r"an array of shape \(2, 5, 4\)"):
        m.predict(np.zeros((2, 5, 4)))


def test_no_message_about_object_dtype_for_a_functional_call():
    """The issue's first symptom: a layer called on keras.Input said 'expects a numeric array,
    got dtype object'."""
    y = layers.Dense(3)(keras.Input(shape=(4,)))
    assert isinstance(y, keras.KerasTensor)
    with pytest.raises(TypeError) as info:
        layers.Dense(3)(np.array([keras.Input(shape=(4,))], dtype=object))
    assert "functional" in str(info.value)


def test_keras_namespace_has_what_programs_import():
    import fastrnn.keras.models as km
    from fastrnn.keras.layers import LSTM  # noqa: F401
    from fastrnn.keras.models import Model, Sequential  # noqa: F401

    for name in ("Input", "Model", "Sequential", "layers", "models", "optimizers", "losses",
                 "metrics", "callbacks", "initializers", "saving", "load_model"):
        assert hasattr(keras, name), name
    assert km.Model is keras.Model


def test_embedding_lookup_folds_into_the_recurrent_layer_in_a_graph(monkeypatch):
    """As in Sequential, an Embedding feeding one recurrent call hands it the ids (the
    Embedding's own forward does not run), with the same training result as without."""
    from fastrnn import reference

    def build():
        keras.set_random_seed(3)
        i = keras.Input(shape=(12,), dtype="int64")
        h = layers.GRU(4)(layers.Embedding(5, 3, mask_zero=True)(i))
        m = keras.Model(i, layers.Dense(1)(h))
        m.compile(keras.optimizers.SGD(0.5), "mse")
        return m

    rs = np.random.default_rng(6)
    x, y = rs.integers(1, 5, (16, 12)), rs.random((16, 1))
    x[:4, 8:] = 0
    unfolded = build()
    unfolded.set_ops(reference)  # the reference ops take vectors: no fold
    unfolded.fit(x, y, batch_size=16, epochs=2, verbose=0)
    folded = build()
    monkeypatch.setattr(layers.Embedding, "forward", lambda *a: pytest.fail("not folded"))
    folded.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for a, b in zip(folded.get_weights(), unfolded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_training_flag_at_a_call_and_eager_model_calls():
    """``layer(x, training=True)`` keeps that layer in training mode (Monte-Carlo dropout);
    calling a model on arrays runs it eagerly."""
    i = keras.Input(shape=(64,))
    mc = keras.Model(i, layers.Dropout(0.5)(i, training=True))
    plain = keras.Model(i, layers.Dropout(0.5)(i))
    x = np.ones((2, 64), dtype=np.float32)
    assert (mc.predict(x, verbose=0) == 0).any()
    np.testing.assert_array_equal(plain.predict(x, verbose=0), x)
    np.testing.assert_array_equal(plain(x), x)
    a, b = keras.Input(shape=(3,)), keras.Input(shape=(3,))
    two = keras.Model([a, b], [layers.Dense(2)(a), b])
    out = two([np.ones((4, 3)), np.zeros((4, 3))])
    assert isinstance(out, list) and out[0].shape == (4, 2)


def test_sequential_used_as_a_layer_trains():
    keras.set_floatx("float64")
    try:
        body = keras.Sequential([keras.Input(shape=(5, 3)), layers.GRU(4), layers.Dense(2)])
        x = keras.Input(shape=(5, 3))
        m = keras.Model(x, layers.Dense(1)(body(x)))
        assert m.count_params() == body.count_params() + 3
        m.compile(keras.optimizers.SGD(0.1), "mse")
        rs = np.random.default_rng(8)
        xs, ys = rs.random((8, 5, 3)), rs.random((8, 1))
        before = [w.copy() for w in body.get_weights()]
        m.train_on_batch(xs, ys)
        assert all(not np.array_equal(a, b) for a, b in zip(before, body.get_weights(),
                                                            strict=True))
        np.testing.assert_allclose(m.predict(xs, verbose=0),
                                   m.layers[-1](body.predict(xs, verbose=0)), atol=1e-12)
    finally:
        keras.set_floatx("float32")


def test_model_cut_from_an_intermediate_tensor(tmp_path):
    i = keras.Input(shape=(5, 3))
    h = layers.LSTM(4)(i)
    o = layers.Dense(2)(layers.Dense(3)(h))
    full, head = keras.Model(i, o), keras.Model(h, o)
    assert len(head.layers) == 2 and head.input_shape == (None, 4)
    x = np.random.default_rng(9).random((3, 5, 3)).astype(np.float32)
    hv = keras.Model(i, h).predict(x, verbose=0)
    np.testing.assert_array_equal(head.predict(hv, verbose=0), full.predict(x, verbose=0))
    with pytest.raises(ValueError, match="intermediate tensor"):
        head.save(tmp_path / "head.keras")


def test_one_output_takes_a_list_of_one_loss_and_a_loss_weight():
    i = keras.Input(shape=(3,))
    m = keras.Model(i, layers.Dense(1)(i))
    x, y = np.ones((2, 3)), np.zeros((2, 1))
    m.compile("sgd", loss="mse")
    plain = m.evaluate(x, y, verbose=0)
    m.compile("sgd", loss=["mse"], loss_weights=[2.0])
    assert m.evaluate(x, y, verbose=0) == pytest.approx(2 * plain)
