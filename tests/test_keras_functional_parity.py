"""The functional API against real Keras 3 (torch backend, float64): the same graphs with the
same weights give the same outputs, the same loss and the same gradients (compared through one
SGD step with learning rate 1, whose weight change is minus the gradient)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from _keras_helpers import SumForTest as _SumForTest  # noqa: E402
from _keras_helpers import float64_everywhere, sgd_delta  # noqa: E402

import fastrnn.keras as fk  # noqa: E402

K = keras.layers
# Keras's Dense on a 3-D input (torch backend) is float32-accurate even in float64 (1e-7
# away from NumPy's product, which ours equals); everything else agrees to ~1e-15
TOL = 1e-6


@pytest.fixture(autouse=True)
def _float64():
    with float64_everywhere():
        yield


def _sgd_step(model, x, y, keras_side):
    """Loss and weights after minus before one SGD step with learning rate 1."""
    return sgd_delta(model, x, y, keras.optimizers if keras_side else fk.optimizers)


def _check_same(km, om, x, y):
    """Weights copied Keras -> ours in Keras's order; same outputs, loss and gradients."""
    assert [w.shape for w in om.get_weights()] == [w.shape for w in km.get_weights()]
    om.set_weights(km.get_weights())
    kp = km.predict(x, verbose=0)
    op = om.predict(x, verbose=0)
    for a, b in zip(kp if isinstance(kp, list) else [kp], op if isinstance(op, list) else [op],
                    strict=True):
        np.testing.assert_allclose(b, np.asarray(a), atol=TOL, rtol=TOL)
    kl, kd = _sgd_step(km, x, y, True)
    ol, od = _sgd_step(om, x, y, False)
    assert abs(kl - ol) < TOL * max(1.0, abs(kl))
    for a, b in zip(kd, od, strict=True):
        np.testing.assert_allclose(b, a, atol=TOL, rtol=TOL)


def _encoder_decoder(mod, cell, units=6):
    enc_in = mod.Input(shape=(None, 5), name="enc_in")
    dec_in = mod.Input(shape=(None, 4), name="dec_in")
    R = getattr(mod.layers, cell)
    _, *states = R(units, return_state=True, name="encoder")(enc_in)
    dec = R(units, return_sequences=True, return_state=True, name="decoder")
    seq, *_ = dec(dec_in, initial_state=states)
    out = mod.layers.Dense(3, activation="softmax", name="head")(seq)
    return mod.Model([enc_in, dec_in], out)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_encoder_decoder_with_states_matches_keras(cell):
    rs = np.random.default_rng(0)
    x = [rs.standard_normal((6, 7, 5)), rs.standard_normal((6, 4, 4))]
    y = rs.random((6, 4, 3))
    _check_same(_encoder_decoder(keras, cell), _encoder_decoder(fk, cell), x, y)


def test_state_outputs_and_initial_state_gradients_match_keras():
    """A model whose outputs include the final states (h and c), trained on all of them: the
    gradient into the states flows back through the initial state into the encoder."""
    def build(mod):
        a = mod.Input(shape=(5, 3))
        b = mod.Input(shape=(4, 2))
        _, h, c = mod.layers.LSTM(4, return_state=True)(a)
        o, h2, c2 = mod.layers.LSTM(4, return_state=True, go_backwards=True)(
            b, initial_state=[h, c])
        return mod.Model([a, b], [o, c2])

    rs = np.random.default_rng(1)
    x = [rs.standard_normal((5, 5, 3)), rs.standard_normal((5, 4, 2))]
    y = [rs.random((5, 4)), rs.random((5, 4))]
    _check_same(build(keras), build(fk), x, y)


def test_two_input_model_matches_keras():
    def build(mod, merge):
        a = mod.Input(shape=(6, 3), name="a")
        b = mod.Input(shape=(5,), name="b")
        ha = mod.layers.GRU(4, name="gru")(a)
        hb = mod.layers.Dense(4, activation="tanh", name="proj")(b)
        out = mod.layers.Dense(2, name="out")(merge(name="sum")([ha, hb]))
        return mod.Model(inputs=[a, b], outputs=out)

    rs = np.random.default_rng(2)
    x = [rs.standard_normal((7, 6, 3)), rs.standard_normal((7, 5))]
    y = rs.standard_normal((7, 2))
    _check_same(build(keras, K.Add), build(fk, _SumForTest), x, y)


def test_shared_layer_model_matches_keras():
    """One LSTM and one Dense applied to two inputs: the weight gradients of the two calls
    add up, each call's backward using its own cache."""
    def build(mod, merge):
        a = mod.Input(shape=(5, 3))
        b = mod.Input(shape=(7, 3))
        lstm = mod.layers.LSTM(4, name="shared_lstm")
        dense = mod.layers.Dense(4, activation="tanh", name="shared_dense")
        ya, yb = dense(lstm(a)), dense(lstm(b))
        return mod.Model([a, b], mod.layers.Dense(1, name="out")(merge()([ya, yb])))

    rs = np.random.default_rng(3)
    x = [rs.standard_normal((4, 5, 3)), rs.standard_normal((4, 7, 3))]
    y = rs.standard_normal((4, 1))
    _check_same(build(keras, K.Add), build(fk, _SumForTest), x, y)


def test_model_used_as_a_layer_matches_keras():
    def build(mod):
        i = mod.Input(shape=(6, 3))
        inner = mod.Model(i, mod.layers.Dense(3, name="inner_dense")(
            mod.layers.LSTM(5, return_sequences=True, name="inner_lstm")(i)), name="inner")
        x = mod.Input(shape=(6, 3))
        h = inner(x)
        h = mod.layers.GRU(2, name="outer_gru")(h)
        return mod.Model(x, h)

    rs = np.random.default_rng(4)
    x = rs.standard_normal((5, 6, 3))
    y = rs.standard_normal((5, 2))
    _check_same(build(keras), build(fk), x, y)


def test_shared_submodel_matches_keras():
    """A model called twice inside another: its inner layers keep a cache per call."""
    def build(mod, merge):
        i = mod.Input(shape=(4, 2))
        enc = mod.Model(i, mod.layers.LSTM(3, name="enc_lstm")(i), name="enc")
        a = mod.Input(shape=(4, 2))
        b = mod.Input(shape=(4, 2))
        return mod.Model([a, b], mod.layers.Dense(1, name="out")(merge()([enc(a), enc(b)])))

    rs = np.random.default_rng(5)
    x = [rs.standard_normal((3, 4, 2)), rs.standard_normal((3, 4, 2))]
    y = rs.standard_normal((3, 1))
    _check_same(build(keras, K.Add), build(fk, _SumForTest), x, y)


def test_masked_embedding_into_lstm_matches_keras():
    def build(mod):
        i = mod.Input(shape=(None,), dtype="int32")
        e = mod.layers.Embedding(20, 4, mask_zero=True, name="emb")(i)
        h = mod.layers.LSTM(5, return_sequences=True, name="l1")(e)
        h = mod.layers.LSTM(3, name="l2")(h)
        return mod.Model(i, mod.layers.Dense(2, name="out")(h))

    rs = np.random.default_rng(6)
    x = rs.integers(1, 20, (6, 8))
    for r, n in enumerate([8, 5, 3, 1, 6, 2]):
        x[r, n:] = 0  # post-padding
    y = rs.standard_normal((6, 2))
    _check_same(build(keras), build(fk), x, y)


def test_multi_output_fit_with_loss_weights_matches_keras():
    def build(mod):
        i = mod.Input(shape=(5, 3), name="seq")
        h = mod.layers.LSTM(4, name="body")(i)
        reg = mod.layers.Dense(2, name="reg")(h)
        cls = mod.layers.Dense(3, activation="softmax", name="cls")(h)
        return mod.Model(i, {"reg": reg, "cls": cls})

    rs = np.random.default_rng(7)
    x = rs.standard_normal((8, 5, 3))
    y = {"reg": rs.standard_normal((8, 2)), "cls": rs.integers(0, 3, 8)}
    km, om = build(keras), build(fk)
    om.set_weights(km.get_weights())
    kw = {"loss": {"reg": "mse", "cls": "sparse_categorical_crossentropy"},
          "loss_weights": {"reg": 0.3, "cls": 2.0}}
    km.compile(optimizer=keras.optimizers.SGD(0.1), metrics={"cls": ["accuracy"]}, **kw)
    om.compile(optimizer=fk.optimizers.SGD(0.1), metrics={"cls": ["accuracy"]}, **kw)
    kh = km.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history
    oh = om.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history
    np.testing.assert_allclose(oh["loss"], kh["loss"], rtol=TOL)
    np.testing.assert_allclose(oh["cls_accuracy"], kh["cls_accuracy"])
    for a, b in zip(km.get_weights(), om.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, atol=TOL)
    ke = km.evaluate(x, y, verbose=0, return_dict=True)
    oe = om.evaluate(x, y, verbose=0, return_dict=True)
    assert abs(ke["loss"] - oe["loss"]) < TOL
    kp, op = km.predict(x, verbose=0), om.predict(x, verbose=0)
    assert set(op) == {"reg", "cls"}
    for k in op:
        np.testing.assert_allclose(op[k], np.asarray(kp[k]), atol=TOL)


def test_summary_with_connected_to_matches_keras_text():
    def build(mod, merge):
        a = mod.Input(shape=(6, 3), name="a")
        b = mod.Input(shape=(6, 3), name="b")
        lstm = mod.layers.LSTM(4, return_state=True, name="enc")
        _, h, c = lstm(a)
        o = mod.layers.LSTM(4, name="dec")(b, initial_state=[h, c])
        return mod.Model([a, b], mod.layers.Dense(2, name="head")(merge(name="sum")([o, h])),
                         name="seq2seq")

    # the test-only sum layer, under Keras's class name for the table
    km, om = build(keras, K.Add), build(fk, type("Add", (_SumForTest,), {}))
    for width in (80, 70):
        kt, ot = [], []
        km.summary(line_length=width, print_fn=lambda s, _kt=kt, **kw: _kt.append(s))
        om.summary(line_length=width, print_fn=ot.append)
        assert ot[0].rstrip("\n") == kt[0].rstrip("\n")


def test_sequential_used_as_a_layer_matches_keras():
    """A Sequential inside a functional model, after a trainable layer: the gradient flows
    through the Sequential into the layer before it."""
    def build(mod):
        body = mod.Sequential([mod.Input(shape=(6, 4)), mod.layers.LSTM(3, name="body_lstm"),
                               mod.layers.Dense(2, name="body_dense")], name="body")
        x = mod.Input(shape=(6, 3))
        h = mod.layers.Dense(4, activation="tanh", name="pre")(x)
        return mod.Model(x, mod.layers.Dense(1, name="post")(body(h)))

    rs = np.random.default_rng(9)
    x = rs.standard_normal((5, 6, 3))
    y = rs.standard_normal((5, 1))
    _check_same(build(keras), build(fk), x, y)


def test_masked_encoder_decoder_matches_keras():
    """Embedding(mask_zero=True) on both sides of an encoder-decoder: the encoder's final
    states are those of each sequence's last real token, and the decoder starts from them."""
    def build(mod):
        enc_in = mod.Input(shape=(None,), dtype="int32")
        dec_in = mod.Input(shape=(None,), dtype="int32")
        e = mod.layers.Embedding(12, 4, mask_zero=True, name="enc_emb")(enc_in)
        _, h, c = mod.layers.LSTM(5, return_state=True, name="enc")(e)
        d = mod.layers.Embedding(9, 3, mask_zero=True, name="dec_emb")(dec_in)
        seq = mod.layers.LSTM(5, return_sequences=True, name="dec")(d, initial_state=[h, c])
        return mod.Model([enc_in, dec_in], mod.layers.Dense(2, name="out")(seq))

    rs = np.random.default_rng(10)
    xe, xd = rs.integers(1, 12, (6, 7)), rs.integers(1, 9, (6, 5))
    for r, (ne, nd) in enumerate([(7, 5), (3, 2), (5, 5), (1, 3), (6, 1), (2, 4)]):
        xe[r, ne:] = 0
        xd[r, nd:] = 0
    y = rs.standard_normal((6, 5, 2))
    _check_same(build(keras), build(fk), [xe, xd], y)
