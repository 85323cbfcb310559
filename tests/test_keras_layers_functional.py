"""The issue-22 layers inside functional models, against real Keras 3 (torch backend,
float64): a two-input model with Concatenate, a seq2seq with Luong and Bahdanau attention
over masked encoder outputs, a Conv1D + BatchNormalization + RNN(LSTMCell) model (training
and inference modes), residual merges with LayerNormalization, an RNN(cell) encoder-decoder
with return_state/initial_state. Same weights in: same outputs, loss and gradients out
(gradients compared through one SGD step with learning rate 1)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from _keras_helpers import float64_everywhere
from _keras_helpers import sgd_delta as _sgd_delta

import fastrnn.keras as fk

# Keras 3.15 (torch) is ~1e-7 off float64 maths in several layers (see
# tests/test_keras_layers_extra.py); a wrong formula is off by far more
TOL = 1e-6


@pytest.fixture(autouse=True)
def _float64():
    with float64_everywhere():
        yield


def _check(build, x, y):
    km, om = build(keras), build(fk)
    assert [w.shape for w in om.get_weights()] == [w.shape for w in km.get_weights()]
    om.set_weights(km.get_weights())
    kp, op = km.predict(x, verbose=0), om.predict(x, verbose=0)
    np.testing.assert_allclose(op, np.asarray(kp), rtol=TOL, atol=TOL)
    kl, kd = _sgd_delta(km, x, y, keras.optimizers)
    ol, od = _sgd_delta(om, x, y, fk.optimizers)
    assert abs(kl - ol) < TOL * max(1.0, abs(kl))
    for a, b in zip(kd, od, strict=True):  # includes BatchNormalization's moving statistics
        np.testing.assert_allclose(b, a, rtol=TOL, atol=TOL)
    # inference after the step: same again
    np.testing.assert_allclose(om.predict(x, verbose=0), np.asarray(km.predict(x, verbose=0)),
                               rtol=TOL, atol=TOL)
    return om


def _rng():
    return np.random.default_rng(0)


def test_two_input_model_with_concatenate():
    def build(mod):
        L = mod.layers
        seq = mod.Input((6, 3), name="seq")
        static = mod.Input((4,), name="static")
        h = L.LSTM(5)(seq)
        s = L.Dense(3, activation="tanh")(static)
        z = L.Concatenate()([h, s])
        return mod.Model([seq, static], L.Dense(2)(z))

    r = _rng()
    x = [r.normal(size=(8, 6, 3)), r.normal(size=(8, 4))]
    _check(build, x, r.normal(size=(8, 2)))


@pytest.mark.parametrize("attention", ["Attention", "AdditiveAttention", "concat"])
def test_seq2seq_with_attention_over_masked_encoder_outputs(attention):
    def build(mod):
        L = mod.layers
        enc_in = mod.Input((7,), dtype="int32", name="enc")
        dec_in = mod.Input((5, 3), name="dec")
        e = L.Embedding(20, 4, mask_zero=True)(enc_in)
        enc_out, h, c = L.LSTM(6, return_sequences=True, return_state=True)(e)
        dec_out = L.LSTM(6, return_sequences=True)(dec_in, initial_state=[h, c])
        att = (L.Attention(score_mode="concat", use_scale=True) if attention == "concat"
               else getattr(L, attention)())
        ctx = att([dec_out, enc_out])
        z = L.Concatenate()([dec_out, ctx])
        return mod.Model([enc_in, dec_in], L.Dense(4, activation="softmax")(z))

    r = _rng()
    ids = r.integers(1, 20, size=(6, 7))
    for i, n in enumerate([7, 3, 5, 1, 7, 6]):
        ids[i, n:] = 0  # post-padding
    x = [ids, r.normal(size=(6, 5, 3))]
    _check(build, x, r.uniform(size=(6, 5, 4)))


def test_conv1d_batchnorm_rnn_cell_model_in_training_and_inference_modes():
    def build(mod):
        L = mod.layers
        x = mod.Input((12, 3))
        y = L.Conv1D(6, 3, padding="causal")(x)
        y = L.BatchNormalization(momentum=0.8)(y)
        y = L.LeakyReLU(negative_slope=0.1)(y)
        y = L.MaxPooling1D(2)(y)
        y = L.RNN(L.LSTMCell(5))(y)
        return mod.Model(x, L.Dense(1)(y))

    r = _rng()
    om = _check(build, r.normal(size=(8, 12, 3)), r.normal(size=(8, 1)))
    bn = next(la for la in om.layers if isinstance(la, fk.layers.BatchNormalization))
    assert not np.allclose(bn.moving_mean.numpy(), 0)  # the training step moved the stats


def test_residual_merges_with_layer_normalization_and_pooling():
    def build(mod):
        L = mod.layers
        x = mod.Input((6, 4))
        h = L.GRU(4, return_sequences=True)(x)
        a = L.Add()([x, h])
        a = L.LayerNormalization()(a)
        m = L.Multiply()([a, L.Dense(4, activation="sigmoid")(a)])
        p = L.Concatenate()([L.GlobalAveragePooling1D()(m), L.GlobalMaxPooling1D()(m)])
        return mod.Model(x, L.Dense(2)(p))

    r = _rng()
    _check(build, r.normal(size=(8, 6, 4)), r.normal(size=(8, 2)))


def test_rnn_cell_encoder_decoder_with_states():
    def build(mod):
        L = mod.layers
        enc_in, dec_in = mod.Input((5, 3)), mod.Input((4, 2))
        _, *states = L.RNN(L.StackedRNNCells([L.LSTMCell(4), L.GRUCell(3)]),
                           return_state=True)(enc_in)
        dec = L.RNN([L.LSTMCell(4), L.GRUCell(3)], return_sequences=True)(
            dec_in, initial_state=states)
        return mod.Model([enc_in, dec_in], L.Dense(2)(dec))

    r = _rng()
    x = [r.normal(size=(6, 5, 3)), r.normal(size=(6, 4, 2))]
    _check(build, x, r.normal(size=(6, 4, 2)))


def test_functional_model_with_new_layers_saves_and_loads(tmp_path):
    L = fk.layers
    a, b = fk.Input((6, 3)), fk.Input((6, 3))
    q = L.Conv1D(4, 3, padding="same")(a)
    v = L.RNN(L.GRUCell(4), return_sequences=True)(b)
    z = L.Concatenate()([L.AdditiveAttention()([q, v]), L.Attention(use_scale=True)([q, v])])
    z = L.BatchNormalization()(L.SpatialDropout1D(0.2)(z))
    m = fk.Model([a, b], L.Dense(1)(L.GlobalAveragePooling1D()(z)))
    r = _rng()
    x = [r.normal(size=(8, 6, 3)), r.normal(size=(8, 6, 3))]
    m.compile("adam", "mse")
    m.fit(x, r.normal(size=(8, 1)), epochs=2, verbose=0)
    p = tmp_path / "f.keras"
    m.save(p)
    m2 = fk.load_model(p)
    np.testing.assert_array_equal(m2.predict(x, verbose=0), m.predict(x, verbose=0))


def test_functional_model_fits_a_generator_of_multi_input_batches():
    L = fk.layers
    a, b = fk.Input((6, 3), name="a"), fk.Input((2,), name="b")
    out = L.Dense(1)(L.Concatenate()([L.LSTM(3)(a), b]))
    r = _rng()
    xa, xb, y = r.normal(size=(16, 6, 3)), r.normal(size=(16, 2)), r.normal(size=(16, 1))
    models = []
    for _ in range(2):
        m = fk.Model([a, b], out)
        m.compile(fk.optimizers.SGD(0.1), "mse")
        models.append(m)
    w0 = models[0].get_weights()
    models[1].set_weights(w0)
    h_arr = models[0].fit([xa, xb], y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    models[0].set_weights(w0)  # the two Model objects share layers: restart from w0

    def gen():
        while True:
            for i in range(0, 16, 8):
                yield {"a": xa[i:i + 8], "b": xb[i:i + 8]}, y[i:i + 8]

    h_gen = models[1].fit(gen(), steps_per_epoch=2, epochs=2, verbose=0)
    np.testing.assert_allclose(h_gen.history["loss"], h_arr.history["loss"], rtol=1e-12)


def test_causal_self_attention_call_argument_in_a_functional_model(tmp_path):
    def build(mod):
        L = mod.layers
        x = mod.Input((6, 4))
        h = L.LSTM(4, return_sequences=True)(x)
        a = L.Attention(use_scale=True)([h, h], use_causal_mask=True)
        return mod.Model(x, L.Dense(2)(L.Add()([h, a])))

    r = _rng()
    x = r.normal(size=(5, 6, 4))
    om = _check(build, x, r.normal(size=(5, 6, 2)))
    # causal: outputs at step t do not depend on later steps
    x2 = x.copy()
    x2[:, 4:] += 1.0
    np.testing.assert_allclose(om.predict(x2, verbose=0)[:, :4], om.predict(x, verbose=0)[:, :4],
                               rtol=1e-12, atol=1e-12)
    p = tmp_path / "c.keras"
    om.save(p)
    np.testing.assert_array_equal(fk.load_model(p).predict(x, verbose=0),
                                  om.predict(x, verbose=0))
    att = fk.layers.Attention()
    q = fk.Input((3, 2))
    att([q, q], use_causal_mask=True)
    with pytest.raises(ValueError, match="must use one setting"):
        att([q, q], use_causal_mask=False)
