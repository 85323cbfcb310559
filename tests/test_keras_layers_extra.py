"""The layers RNN programs use beside the recurrent ones (issue 22): each against real Keras 3
(torch backend, float64) with the same weights -- outputs, input gradients, weight gradients,
BatchNormalization's moving statistics, masks -- plus a finite-difference check of every
backward, bad inputs, config round trips and save/load in a Sequential."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import torch

from fastrnn.keras import layers as L
from fastrnn.keras.models import Sequential, load_model

K = keras.layers

# Keras 3.15 on torch does not compute everything in float64 under floatx float64: its
# GlobalAveragePooling1D output equals the float32 mean exactly, its LayerNormalization and
# recurrent layers are ~1e-7 off the float64 maths. Against Keras: 1e-6 (a wrong formula is
# off by far more); the finite-difference checks below hold our gradients to float64.
KTOL = 1e-6


@pytest.fixture
def f64():
    # Keras fixes its global dtype policy from floatx at the first layer it builds: set and
    # restore both, so that later tests get float32 Keras layers again
    old, old_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(old)
    keras.config.set_dtype_policy(old_policy)


def _keras_run(kl, xs, r, masks=None, training=True, **kw):
    """Keras forward + autograd of sum(y * r): output, input grads, trainable weight grads.
    Masks ride on the input tensors, as Keras passes them between layers."""
    from keras.src.backend import set_keras_mask

    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    for t, m in zip(ts, masks or [], strict=False):
        if m is not None:
            set_keras_mask(t, torch.tensor(m))
    inp = ts if len(ts) > 1 else ts[0]
    y = kl(inp, training=training, **kw)
    (y * torch.tensor(r)).sum().backward()
    gw = [w.value.grad.numpy().copy() for w in kl.trainable_weights]
    return y.detach().numpy(), [t.grad.numpy() for t in ts], gw


def _ours_run(layer, xs, r, masks=None, training=True, **kw):
    multi = getattr(layer, "multi_input", False)
    if multi:
        layer._build_for([(None,) + x.shape[1:] for x in xs])
        y, _ = layer.forward(xs, masks, training, **kw)
    else:
        layer._build_for((None,) + xs[0].shape[1:])
        y, _ = layer.forward(xs[0], None if masks is None else masks[0], training, **kw)
    dx = layer.backward(r)
    dxs = dx if multi else [dx]
    # gradients in Keras's layout (the recurrent layers store weights transposed)
    return y, dxs, [v.grad if v._to_keras is None else v._to_keras(v.grad)
                    for v in layer.trainable_weights]


def _build_keras(kl, xs, masks=None, **kw):
    kl([torch.tensor(x) for x in xs] if len(xs) > 1 else torch.tensor(xs[0]), **kw)


def _compare(ours, kl, xs, masks=None, training=True, seed=0, tol=KTOL, **kw):
    """Random weights in ours copied to Keras, then outputs and gradients compared."""
    rng = np.random.default_rng(seed)
    _build_keras(kl, xs, masks, **kw)
    if getattr(ours, "multi_input", False):
        ours._build_for([(None,) + x.shape[1:] for x in xs])
    else:
        ours._build_for((None,) + xs[0].shape[1:])
    ws = [rng.normal(0, 0.5, size=v.shape) for v in ours.weights]
    ws = [np.abs(w) + 0.5 if v.name in ("gamma", "moving_variance") else w
          for w, v in zip(ws, ours.weights, strict=True)]
    ours.set_weights(ws)
    kl.set_weights(ours.get_weights())
    return _run_both(ours, kl, xs, masks, training, rng, tol, **kw)


def _run_both(ours, kl, xs, masks, training, rng, tol, **kw):
    multi = getattr(ours, "multi_input", False)
    if multi:
        y0, _ = ours.forward(xs, masks, False, **kw)
    else:
        y0, _ = ours.forward(xs[0], None if masks is None else masks[0], False, **kw)
    r = rng.normal(size=y0.shape)
    yk, dxk, gwk = _keras_run(kl, xs, r, masks, training, **kw)
    yo, dxo, gwo = _ours_run(ours, xs, r, masks, training, **kw)
    np.testing.assert_allclose(yo, yk, rtol=tol, atol=tol)
    assert len(dxo) == len(dxk)
    for a, b in zip(dxo, dxk, strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert len(gwo) == len(gwk)
    for a, b in zip(gwo, gwk, strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    return yo


def _x(*shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape)


POST_MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=bool)


# -- single-input layers -------------------------------------------------------------------
SINGLE = {
    "leaky_relu": (lambda: L.LeakyReLU(negative_slope=0.2, dtype="float64"),
                   lambda: K.LeakyReLU(negative_slope=0.2), [(3, 6, 4)]),
    "layer_norm": (lambda: L.LayerNormalization(dtype="float64"),
                   lambda: K.LayerNormalization(), [(3, 6, 4)]),
    "layer_norm_two_axes": (lambda: L.LayerNormalization(axis=[1, 2], epsilon=1e-5,
                                                         dtype="float64"),
                            lambda: K.LayerNormalization(axis=[1, 2], epsilon=1e-5),
                            [(3, 6, 4)]),
    "layer_norm_no_center": (lambda: L.LayerNormalization(center=False, dtype="float64"),
                             lambda: K.LayerNormalization(center=False), [(3, 4)]),
    "conv_valid": (lambda: L.Conv1D(5, 3, dtype="float64"), lambda: K.Conv1D(5, 3),
                   [(2, 9, 4)]),
    "conv_same_stride2": (lambda: L.Conv1D(5, 4, strides=2, padding="same", dtype="float64"),
                          lambda: K.Conv1D(5, 4, strides=2, padding="same"), [(2, 9, 3)]),
    "conv_same_odd": (lambda: L.Conv1D(3, 3, padding="same", activation="relu",
                                       dtype="float64"),
                      lambda: K.Conv1D(3, 3, padding="same", activation="relu"), [(2, 8, 3)]),
    "conv_causal_dilated": (lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2,
                                             activation="tanh", dtype="float64"),
                            lambda: K.Conv1D(4, 3, padding="causal", dilation_rate=2,
                                             activation="tanh"), [(2, 10, 3)]),
    "conv_strided_no_bias": (lambda: L.Conv1D(2, 2, strides=3, use_bias=False,
                                              dtype="float64"),
                             lambda: K.Conv1D(2, 2, strides=3, use_bias=False), [(2, 11, 3)]),
    "max_pool": (lambda: L.MaxPooling1D(dtype="float64"), lambda: K.MaxPooling1D(),
                 [(2, 9, 3)]),
    "max_pool_same": (lambda: L.MaxPooling1D(3, strides=2, padding="same", dtype="float64"),
                      lambda: K.MaxPooling1D(3, strides=2, padding="same"), [(2, 7, 3)]),
    "avg_pool": (lambda: L.AveragePooling1D(3, strides=1, dtype="float64"),
                 lambda: K.AveragePooling1D(3, strides=1), [(2, 7, 3)]),
    "avg_pool_same": (lambda: L.AveragePooling1D(3, strides=2, padding="same",
                                                 dtype="float64"),
                      lambda: K.AveragePooling1D(3, strides=2, padding="same"), [(2, 7, 3)]),
    "global_max": (lambda: L.GlobalMaxPooling1D(dtype="float64"),
                   lambda: K.GlobalMaxPooling1D(), [(3, 6, 4)]),
    "global_max_keepdims": (lambda: L.GlobalMaxPooling1D(keepdims=True, dtype="float64"),
                            lambda: K.GlobalMaxPooling1D(keepdims=True), [(3, 6, 4)]),
    "global_avg": (lambda: L.GlobalAveragePooling1D(dtype="float64"),
                   lambda: K.GlobalAveragePooling1D(), [(3, 6, 4)]),
    "rnn_lstm_cell": (lambda: L.RNN(L.LSTMCell(5, dtype="float64"), return_sequences=True),
                      lambda: K.RNN(K.LSTMCell(5), return_sequences=True), [(3, 6, 4)]),
    "rnn_gru_cell": (lambda: L.RNN(L.GRUCell(5, dtype="float64")),
                     lambda: K.RNN(K.GRUCell(5)), [(3, 6, 4)]),
    "rnn_simple_cell_backwards": (lambda: L.RNN(L.SimpleRNNCell(5, dtype="float64"),
                                                go_backwards=True, return_sequences=True),
                                  lambda: K.RNN(K.SimpleRNNCell(5), go_backwards=True,
                                                return_sequences=True), [(3, 6, 4)]),
    "rnn_stacked": (lambda: L.RNN(L.StackedRNNCells([L.LSTMCell(5, dtype="float64"),
                                                     L.GRUCell(3, dtype="float64")]),
                                  return_sequences=True),
                    lambda: K.RNN(K.StackedRNNCells([K.LSTMCell(5), K.GRUCell(3)]),
                                  return_sequences=True), [(3, 6, 4)]),
    "rnn_cell_list": (lambda: L.RNN([L.SimpleRNNCell(4, dtype="float64"),
                                     L.LSTMCell(3, dtype="float64")]),
                      lambda: K.RNN([K.SimpleRNNCell(4), K.LSTMCell(3)]), [(3, 6, 4)]),
}




@pytest.mark.parametrize("case", sorted(SINGLE))
def test_single_input_layer_matches_keras(case, f64):
    make_ours, make_keras, shapes = SINGLE[case]
    xs = [_x(*s) for s in shapes]
    _compare(make_ours(), make_keras(), xs, tol=KTOL)


MASKED = {
    "global_avg_masked": (lambda: L.GlobalAveragePooling1D(dtype="float64"),
                          lambda: K.GlobalAveragePooling1D()),
    "rnn_lstm_masked": (lambda: L.RNN(L.LSTMCell(4, dtype="float64"), return_sequences=True),
                        lambda: K.RNN(K.LSTMCell(4), return_sequences=True)),
    "rnn_stacked_masked": (lambda: L.RNN([L.GRUCell(4, dtype="float64"),
                                          L.LSTMCell(3, dtype="float64")]),
                           lambda: K.RNN([K.GRUCell(4), K.LSTMCell(3)])),
    "batch_norm_masked": (lambda: L.BatchNormalization(momentum=0.8, dtype="float64"),
                          lambda: K.BatchNormalization(momentum=0.8)),
}


@pytest.mark.parametrize("case", sorted(MASKED))
def test_masked_layer_matches_keras(case, f64):
    make_ours, make_keras = MASKED[case]
    ours, kl = make_ours(), make_keras()
    _compare(ours, kl, [_x(3, 6, 4)], masks=[POST_MASK], tol=KTOL)
    if isinstance(ours, L.BatchNormalization):
        for a, b in zip(ours.get_weights(), kl.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=KTOL, atol=KTOL)


@pytest.mark.parametrize("shape", [(5, 4), (3, 6, 4)])
def test_batch_normalization_training_and_inference_match_keras(shape, f64):
    ours = L.BatchNormalization(momentum=0.9, epsilon=1e-2, dtype="float64")
    kl = K.BatchNormalization(momentum=0.9, epsilon=1e-2)
    x = _x(*shape)
    _compare(ours, kl, [x], training=True)
    # the moving statistics moved the same way
    for a, b in zip(ours.get_weights(), kl.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=KTOL, atol=KTOL)
    assert not np.allclose(ours.moving_mean.numpy(), 0)
    # inference: the moving statistics are used (and not updated)
    before = ours.get_weights()
    x2 = x * 2 + 1
    np.testing.assert_allclose(ours(x2), kl(torch.tensor(x2), training=False).detach().numpy(),
                               rtol=KTOL, atol=KTOL)
    for a, b in zip(before, ours.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # frozen (trainable=False): inference mode inside fit, gradients through it match Keras
    ours.trainable = kl.trainable = False
    _run_both(ours, kl, [x2], None, True, np.random.default_rng(3), KTOL)
    for a, b in zip(before[2:], ours.get_weights()[2:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_normalization_frozen_runs_in_inference_mode():
    bn = L.BatchNormalization(dtype="float64")
    x = _x(6, 3)
    bn(x)
    bn.trainable = False
    before = bn.get_weights()
    y = bn(x, training=True)
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3))
    for a, b in zip(before, bn.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# -- multi-input layers --------------------------------------------------------------------
MULTI = {
    "concat_last": (lambda: L.Concatenate(dtype="float64"), lambda: K.Concatenate(),
                    [(3, 6, 4), (3, 6, 2)], {}),
    "concat_time": (lambda: L.Concatenate(axis=1, dtype="float64"),
                    lambda: K.Concatenate(axis=1), [(3, 6, 4), (3, 2, 4)], {}),
    "concat_2d_three": (lambda: L.Concatenate(dtype="float64"), lambda: K.Concatenate(),
                        [(3, 4), (3, 1), (3, 2)], {}),
    "add": (lambda: L.Add(dtype="float64"), lambda: K.Add(), [(3, 6, 4)] * 3, {}),
    "multiply": (lambda: L.Multiply(dtype="float64"), lambda: K.Multiply(),
                 [(3, 6, 4)] * 2, {}),
    "attention_dot": (lambda: L.Attention(dtype="float64"), lambda: K.Attention(),
                      [(3, 5, 4), (3, 6, 4)], {}),
    "attention_scaled_key": (lambda: L.Attention(use_scale=True, dtype="float64"),
                             lambda: K.Attention(use_scale=True),
                             [(3, 5, 4), (3, 6, 2), (3, 6, 4)], {}),
    "attention_concat": (lambda: L.Attention(score_mode="concat", dtype="float64"),
                         lambda: K.Attention(score_mode="concat"), [(3, 5, 4), (3, 6, 4)], {}),
    "attention_concat_scaled": (lambda: L.Attention(use_scale=True, score_mode="concat",
                                                    dtype="float64"),
                                lambda: K.Attention(use_scale=True, score_mode="concat"),
                                [(3, 5, 4), (3, 6, 4)], {}),
    "attention_causal": (lambda: L.Attention(dtype="float64"), lambda: K.Attention(),
                         [(3, 6, 4), (3, 6, 4)], {"use_causal_mask": True}),
    "additive": (lambda: L.AdditiveAttention(dtype="float64"), lambda: K.AdditiveAttention(),
                 [(3, 5, 4), (3, 6, 4)], {}),
    "additive_unscaled_key": (lambda: L.AdditiveAttention(use_scale=False, dtype="float64"),
                              lambda: K.AdditiveAttention(use_scale=False),
                              [(3, 5, 4), (3, 6, 3), (3, 6, 4)], {}),
}


@pytest.mark.parametrize("case", sorted(MULTI))
def test_multi_input_layer_matches_keras(case, f64):
    make_ours, make_keras, shapes, kw = MULTI[case]
    xs = [_x(*s, seed=i) for i, s in enumerate(shapes)]
    _compare(make_ours(), make_keras(), xs, tol=KTOL, **kw)


MASK_Q = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=bool)


@pytest.mark.parametrize("case", ["attention_dot", "attention_concat_scaled", "additive"])
def test_attention_masks_match_keras(case, f64):
    make_ours, make_keras, _, _ = MULTI[case]
    xs = [_x(3, 5, 4), _x(3, 6, 4, seed=2)]
    for causal in (False, True):
        if causal:
            xs = [_x(3, 6, 4), _x(3, 6, 4, seed=2)]
            masks = [POST_MASK, POST_MASK]
        else:
            masks = [MASK_Q, POST_MASK]
        ours = make_ours()
        y = _compare(ours, make_keras(), xs, masks=masks, tol=KTOL, use_causal_mask=causal)
        assert np.all(y[~masks[0]] == 0)
        _, out_mask = ours.forward(xs, masks, False, use_causal_mask=causal)
        np.testing.assert_array_equal(out_mask, masks[0])


@pytest.mark.parametrize("case", ["add", "multiply", "concat_last"])
def test_merge_masks_match_keras(case, f64):
    make_ours, make_keras, shapes, _ = MULTI[case]
    xs = [_x(*s, seed=i) for i, s in enumerate(shapes)]
    m2 = POST_MASK.copy()
    m2[2] = [1, 1, 0, 0, 0, 0]
    for masks in ([POST_MASK] + [m2] * (len(xs) - 1), [POST_MASK] + [None] * (len(xs) - 1)):
        ours, kl = make_ours(), make_keras()
        _compare(ours, kl, xs, masks=masks, tol=KTOL)
        _, om = ours.forward(xs, masks, False)
        km = kl.compute_mask([torch.tensor(x) for x in xs],
                             [None if m is None else torch.tensor(m) for m in masks])
        if km is None:
            assert om is None
        else:
            np.testing.assert_array_equal(om, km.numpy())


def test_attention_returns_scores_and_dropout_only_in_training():
    q, v = _x(2, 3, 4), _x(2, 5, 4)
    att = L.Attention(dropout=0.5, seed=1, dtype="float64")
    y, w = att([q, v], return_attention_scores=True)
    assert w.shape == (2, 3, 5)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    np.testing.assert_allclose(y, w @ v)
    yt = att([q, v], training=True)
    assert not np.allclose(yt, y)


# -- finite differences of every backward ---------------------------------------------------
def _fd_check(layer, xs, masks=None, eps=1e-6, n_probe=6, seed=0, **kw):
    rng = np.random.default_rng(seed)
    multi = getattr(layer, "multi_input", False)

    def fwd():
        if multi:
            return layer.forward(xs, masks, True, **kw)[0]
        return layer.forward(xs[0], None if masks is None else masks[0], True, **kw)[0]

    if multi:
        layer._build_for([(None,) + x.shape[1:] for x in xs])
    else:
        layer._build_for((None,) + xs[0].shape[1:])
    for v in layer.trainable_weights:  # non-trivial weights
        v.value[...] += rng.normal(0, 0.3, size=v.value.shape)
    r = rng.normal(size=fwd().shape)
    dx = layer.backward(r)
    dxs = dx if multi else [dx]
    grads = [v.grad.copy() for v in layer.trainable_weights]

    def loss():
        y = fwd()
        layer._cache = None
        return float((y * r).sum())

    targets = [(x, g) for x, g in zip(xs, dxs, strict=True)]
    targets += [(v.value, g) for v, g in zip(layer.trainable_weights, grads, strict=True)]
    for arr, g in targets:
        flat = arr.reshape(-1)
        for i in rng.choice(flat.size, size=min(n_probe, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            np.testing.assert_allclose(g.reshape(-1)[i], (up - down) / (2 * eps),
                                       rtol=1e-5, atol=1e-7)


FD = {
    "leaky_relu": lambda: (L.LeakyReLU(0.1, dtype="float64"), [_x(2, 5, 3)], None, {}),
    "batch_norm": lambda: (L.BatchNormalization(dtype="float64"), [_x(4, 5, 3)], None, {}),
    "batch_norm_masked": lambda: (L.BatchNormalization(dtype="float64"), [_x(3, 6, 3)],
                                  [POST_MASK], {}),
    "layer_norm": lambda: (L.LayerNormalization(dtype="float64"), [_x(2, 5, 3)], None, {}),
    "conv_same_strided": lambda: (L.Conv1D(3, 4, strides=2, padding="same",
                                           activation="tanh", dtype="float64"),
                                  [_x(2, 9, 3)], None, {}),
    "conv_causal": lambda: (L.Conv1D(3, 3, padding="causal", dilation_rate=2,
                                     dtype="float64"), [_x(2, 8, 2)], None, {}),
    "max_pool": lambda: (L.MaxPooling1D(3, 2, padding="same", dtype="float64"),
                         [_x(2, 8, 3)], None, {}),
    "avg_pool": lambda: (L.AveragePooling1D(3, 2, padding="same", dtype="float64"),
                         [_x(2, 8, 3)], None, {}),
    "global_max": lambda: (L.GlobalMaxPooling1D(dtype="float64"), [_x(2, 5, 3)], None, {}),
    "global_avg_masked": lambda: (L.GlobalAveragePooling1D(dtype="float64"), [_x(3, 6, 3)],
                                  [POST_MASK], {}),
    "concat": lambda: (L.Concatenate(axis=1, dtype="float64"), [_x(2, 3, 2), _x(2, 4, 2)],
                       None, {}),
    "add": lambda: (L.Add(dtype="float64"), [_x(2, 3), _x(2, 3, seed=2)], None, {}),
    "multiply_masked": lambda: (L.Multiply(dtype="float64"), [_x(3, 6, 2), _x(3, 6, 2, seed=3)],
                                [POST_MASK, POST_MASK], {}),
    "attention_dot_scaled": lambda: (L.Attention(use_scale=True, dtype="float64"),
                                     [_x(2, 3, 4), _x(2, 5, 4, seed=2)], None, {}),
    "attention_concat": lambda: (L.Attention(use_scale=True, score_mode="concat",
                                             dtype="float64"),
                                 [_x(2, 3, 4), _x(2, 5, 4, seed=2), _x(2, 5, 4, seed=3)],
                                 None, {}),
    "attention_causal_masked": lambda: (L.Attention(dtype="float64"),
                                        [_x(3, 6, 4), _x(3, 6, 4, seed=2)],
                                        [POST_MASK, POST_MASK], {"use_causal_mask": True}),
    "additive": lambda: (L.AdditiveAttention(dtype="float64"),
                         [_x(2, 3, 4), _x(2, 5, 4, seed=2)], None, {}),
    "rnn_stacked": lambda: (L.RNN([L.LSTMCell(3, dtype="float64"),
                                   L.GRUCell(2, dtype="float64")], return_sequences=True),
                            [_x(2, 4, 3)], None, {}),
}


@pytest.mark.parametrize("case", sorted(FD))
def test_backward_matches_finite_differences(case):
    layer, xs, masks, kw = FD[case]()
    _fd_check(layer, xs, masks, **kw)


# -- RNN(cell) is the fused layer ------------------------------------------------------------
@pytest.mark.parametrize("cell,layer", [(L.LSTMCell, L.LSTM), (L.GRUCell, L.GRU),
                                        (L.SimpleRNNCell, L.SimpleRNN)])
def test_rnn_of_a_builtin_cell_is_the_fused_layer(cell, layer):
    x = _x(4, 7, 3).astype(np.float32)
    rnn, ref = L.RNN(cell(6), return_sequences=True), layer(6, return_sequences=True)
    rnn(x)
    ref(x)
    assert [w.shape for w in rnn.weights] == [w.shape for w in ref.weights]
    assert [w.name for w in rnn.weights] == [w.name for w in ref.weights]
    ref.set_weights(rnn.get_weights())
    r = _x(4, 7, 6, seed=5).astype(np.float32)
    ya, _ = rnn.forward(x, None, True)
    yb, _ = ref.forward(x, None, True)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(rnn.backward(r), ref.backward(r))
    for a, b in zip(rnn.weights, ref.weights, strict=True):
        np.testing.assert_array_equal(a.grad, b.grad)
    assert rnn.count_params() == ref.count_params()
    assert rnn.kernel is rnn.cell.kernel
    # a Sequential trains them the same way
    ys = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    m1 = Sequential([L.Input((7, 3)), L.RNN(cell(6))])
    m2 = Sequential([L.Input((7, 3)), layer(6)])
    m2.set_weights(m1.get_weights())
    for m in (m1, m2):
        m.compile("adam", "mse")
        m.fit(x, ys, epochs=2, batch_size=2, shuffle=False, verbose=0)
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_rnn_return_state_and_initial_state_and_cell_step():
    x = _x(2, 5, 3)
    rnn = L.RNN([L.LSTMCell(4, dtype="float64"), L.GRUCell(3, dtype="float64")],
                return_state=True, dtype="float64")
    y, h1, c1, h2 = rnn(x)
    assert y.shape == (2, 3) and h1.shape == c1.shape == (2, 4) and h2.shape == (2, 3)
    np.testing.assert_array_equal(y, h2)
    init = [np.full((2, 4), 0.3), np.full((2, 4), -0.2), np.full((2, 3), 0.1)]
    y2 = rnn(x, initial_state=init)[0]
    assert not np.allclose(y2, y)
    with pytest.raises(ValueError, match=r"initial_state expects 3 states of shapes "
                                         r"\[\(None, 4\), \(None, 4\), \(None, 3\)\], "
                                         r"got \[\(2, 4\), \(2, 4\)\]"):
        rnn(x, initial_state=init[:2])
    # one cell step equals one timestep of the layer
    cell = L.LSTMCell(4, dtype="float64")
    out, (h, c) = cell(x[:, 0], [np.zeros((2, 4)), np.zeros((2, 4))])
    ref = L.RNN(cell, return_state=True)
    yr, hr, cr = ref(x[:, :1])
    np.testing.assert_allclose(out, yr)
    np.testing.assert_allclose(c, cr)


@pytest.mark.parametrize("make", [
    lambda: L.RNN([L.LSTMCell(3, dtype="float64"), L.GRUCell(2, dtype="float64")],
                  return_state=True, return_sequences=True, dtype="float64"),
    lambda: L.RNN(L.LSTMCell(3, dtype="float64"), return_state=True, dtype="float64"),
    lambda: L.RNN(MinimalCell(3, dtype="float64"), return_state=True, dtype="float64"),
])
def test_rnn_initial_state_and_return_state_gradients(make):
    """The recurrent layers' graph protocol: forward([x, *initial_states]) returns
    [output, *final_states]; backward([dy, *d_states]) returns [dx, *d_initial_states]; all
    checked against finite differences of sum(out * r) + sum(states * r_s)."""
    rnn = make()
    rng = np.random.default_rng(0)
    x = _x(2, 4, 3)
    rnn._build_for((None, 4, 3))
    init = [rng.normal(size=(2, s)) for s in rnn._sizes]
    outs, _ = rnn.forward([x, *init], [POST_MASK[1:, :4], None, None, None][:1 + len(init)],
                          True)
    rs = [rng.normal(size=o.shape) for o in outs]
    grads = rnn.backward(rs)
    assert len(grads) == 1 + len(init)

    def loss():
        o, _ = rnn.forward([x, *init], [POST_MASK[1:, :4]] + [None] * len(init), False)
        return sum(float((a * r).sum()) for a, r in zip(o, rs, strict=True))

    for arr, g in zip([x, *init], grads, strict=True):
        flat = arr.reshape(-1)
        for i in rng.choice(flat.size, size=min(5, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            up = loss()
            flat[i] = old - 1e-6
            down = loss()
            flat[i] = old
            np.testing.assert_allclose(g.reshape(-1)[i], (up - down) / 2e-6, rtol=1e-5,
                                       atol=1e-7)


class MinimalCell(L.Layer):
    """A user's cell, ``h = tanh(x W + h U)``, with its own per-step backward."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self._stack = []

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units), "glorot_uniform")
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, self.units),
                                                "orthogonal")

    def call(self, inputs, states):
        h = np.tanh(inputs @ self.kernel.value + states[0] @ self.recurrent_kernel.value)
        self._stack.append((inputs, states[0], h))
        return h, [h]

    def backward(self, d_out, d_states):
        x, h_prev, h = self._stack.pop()
        dz = (d_out + d_states[0]) * (1 - h * h)
        self.kernel.grad += x.T @ dz
        self.recurrent_kernel.grad += h_prev.T @ dz
        return dz @ self.kernel.value.T, [dz @ self.recurrent_kernel.value.T]


class KerasMinimalCell(K.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                name="recurrent_kernel")

    def call(self, inputs, states):
        h = keras.ops.tanh(keras.ops.matmul(inputs, self.kernel)
                           + keras.ops.matmul(states[0], self.recurrent_kernel))
        return h, [h]


@pytest.mark.parametrize("kw", [{}, {"return_sequences": True},
                                {"return_sequences": True, "go_backwards": True}])
def test_a_users_cell_runs_per_step_and_matches_keras(kw, f64):
    ours = L.RNN(MinimalCell(4, dtype="float64"), dtype="float64", **kw)
    kl = K.RNN(KerasMinimalCell(4), **kw)
    _compare(ours, kl, [_x(3, 6, 2)], tol=KTOL)
    ours2 = L.RNN(MinimalCell(4, dtype="float64"), dtype="float64", **kw)
    _compare(ours2, K.RNN(KerasMinimalCell(4), **kw), [_x(3, 6, 2)], masks=[POST_MASK],
             tol=KTOL)
    _fd_check(L.RNN(MinimalCell(3, dtype="float64"), dtype="float64", **kw), [_x(3, 6, 2)],
              [POST_MASK])


def test_a_users_stacked_cells_and_a_cell_without_backward():
    x = _x(2, 5, 3)
    rnn = L.RNN(L.StackedRNNCells([MinimalCell(4, dtype="float64"),
                                   MinimalCell(2, dtype="float64")]), dtype="float64")
    _fd_check(rnn, [x])

    class NoBackward(L.Layer):
        state_size = 2

        def call(self, inputs, states):
            return states[0] + inputs[:, :2], [states[0] + inputs[:, :2]]

    layer = L.RNN(NoBackward())
    np.testing.assert_allclose(layer(x), x[:, :, :2].sum(1).astype(np.float32), rtol=1e-6)
    m = Sequential([L.Input((5, 3)), L.Dense(3), L.RNN(NoBackward())])
    m.compile("sgd", "mse")
    with pytest.raises(NotImplementedError, match="has no backward"):
        m.fit(x, np.zeros((2, 2)), verbose=0)
    with pytest.raises(ValueError, match="cannot serialize cell"):
        layer.get_config()
    with pytest.raises(ValueError, match="state_size"):
        L.RNN(object())


# -- data/training programs ------------------------------------------------------------------
def test_conv1d_lstm_forecaster_matches_keras(f64):
    """A Conv1D+LSTM Sequential forecaster: same predictions, gradients and SGD trajectory."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 12, 3)), rng.normal(size=(16, 1))
    keras.utils.set_random_seed(0)
    km = keras.Sequential([keras.Input((12, 3)), K.Conv1D(8, 3, padding="causal",
                                                           activation="relu"),
                           K.MaxPooling1D(2), K.LSTM(6), K.BatchNormalization(),
                           K.Dense(1)])
    ours = Sequential([L.Input((12, 3)), L.Conv1D(8, 3, padding="causal", activation="relu"),
                       L.MaxPooling1D(2), L.LSTM(6), L.BatchNormalization(), L.Dense(1)])
    ours.set_weights(km.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), km.predict(x, verbose=0),
                               rtol=KTOL, atol=KTOL)
    km.compile(keras.optimizers.SGD(0.05), "mse")
    from fastrnn.keras import optimizers as fo
    ours.compile(fo.SGD(0.05), "mse")
    hk = km.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    ho = ours.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(ho, hk, rtol=KTOL)
    for a, b in zip(ours.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=KTOL)


def test_spatial_dropout_drops_whole_channels():
    x = np.ones((4, 6, 10))
    sd = L.SpatialDropout1D(0.5, seed=0, dtype="float64")
    np.testing.assert_array_equal(sd(x), x)
    y, _ = sd.forward(x, None, True)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert np.all(y == y[:, :1, :])  # one draw per sample and channel
    assert 0 < (y == 0).mean() < 1
    np.testing.assert_array_equal(sd.backward(np.ones_like(x)), y)


def test_leaky_relu_accepts_keras2_alpha():
    with pytest.warns(UserWarning, match="alpha"):
        lr = L.LeakyReLU(alpha=0.1)
    assert lr.negative_slope == 0.1
    assert L.LeakyReLU().negative_slope == 0.3
    with pytest.raises(ValueError, match="negative_slope"):
        L.LeakyReLU(-1)


def test_lambda_layer_forward_backward_and_gradient_error():
    x = _x(2, 5, 3)
    lam = L.Lambda(lambda t: t[:, -1, :] * 2)
    np.testing.assert_allclose(lam(x), (x[:, -1] * 2).astype(np.float32), rtol=1e-6)
    assert lam.compute_output_shape((None, None, 3)) == (None, 3)
    m = Sequential([L.Input((5, 3)), L.LSTM(4, return_sequences=True),
                    L.Lambda(lambda t: t[:, -1, :])])
    m.compile("sgd", "mse")
    with pytest.raises(NotImplementedError, match="Lambda layer .* has no gradient"):
        m.fit(x, np.zeros((2, 4)), verbose=0)
    m2 = Sequential([L.Input((5, 3)), L.LSTM(4, return_sequences=True),
                     L.Lambda(_last_step, backward=_last_step_backward), L.Dense(1)])
    m2.compile("sgd", "mse")
    h = m2.fit(x, np.zeros((2, 1)), epochs=3, verbose=0).history["loss"]
    assert h[-1] < h[0]


def _last_step(t):
    return t[:, -1, :]


def _last_step_backward(dy, x, y):
    dx = np.zeros_like(x)
    dx[:, -1, :] = dy
    return dx


def test_lambda_is_refused_by_load_model_unless_safe_mode_false(tmp_path):
    from fastrnn.keras import saving
    from fastrnn.keras.models import ModelFileError

    m = Sequential([L.Input((5, 3)), L.Lambda(_last_step, backward=_last_step_backward),
                    L.Dense(2)])
    p = tmp_path / "lam.fr"  # fastrnn's format: a .keras file (Keras's) holds no Lambda
    m.save(p)
    with pytest.raises(ModelFileError, match="safe_mode=False"):
        load_model(p)
    m2 = saving.load_model(p, {"Sequential": Sequential}, safe_mode=False)
    x = _x(2, 5, 3)
    np.testing.assert_allclose(m2.predict(x, verbose=0), m.predict(x, verbose=0))
    with pytest.raises(ValueError, match="anonymous or nested"):
        Sequential([L.Input((5, 3)), L.Lambda(lambda t: t)]).save(tmp_path / "anon.fr")


# -- bad inputs --------------------------------------------------------------------------------
@pytest.mark.parametrize("layer,x,match", [
    (lambda: L.Conv1D(2, 3), _x(4, 3), r"'conv1d.*' \(Conv1D\) expects a 3-D input "
                                       r"\(batch, steps, channels\)"),
    (lambda: L.Conv1D(2, 5), _x(2, 3, 2), r"fewer than the kernel's span 5"),
    (lambda: L.MaxPooling1D(4), _x(2, 3, 2), r"fewer than pool_size=4"),
    (lambda: L.GlobalAveragePooling1D(), _x(2, 3), r"GlobalAveragePooling1D\) expects a 3-D"),
    (lambda: L.SpatialDropout1D(0.1), _x(2, 3), r"SpatialDropout1D\) expects a 3-D"),
    (lambda: L.RNN(L.LSTMCell(3)), _x(2, 3), r"RNN\) expects a 3-D input"),
    (lambda: L.BatchNormalization(), _x(3), r"expects an input of rank >= 2"),
    (lambda: L.LayerNormalization(axis=3), _x(2, 3), r"axis=3 is not a non-batch axis"),
])
def test_wrong_rank_names_the_layer_and_the_shape(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer()(x)


def test_multi_input_bad_inputs():
    with pytest.raises(ValueError, match=r"Concatenate\) expects a list of inputs"):
        L.Concatenate()(_x(2, 3))
    with pytest.raises(ValueError, match=r"Add\) expects at least 2 inputs, got 1"):
        L.Add()([_x(2, 3)])
    with pytest.raises(ValueError, match=r"Add\) expects inputs of one shape, got \(None, 3\) "
                                         r"and \(None, 4\)"):
        L.Add()([_x(2, 3), _x(2, 4)])
    with pytest.raises(ValueError, match=r"shapes agree except on axis -1"):
        L.Concatenate()([_x(2, 3, 4), _x(2, 5, 4)])
    with pytest.raises(ValueError, match=r"Attention\) expects query of shape \(batch, steps, "
                                         r"dim\)"):
        L.Attention()([_x(2, 4), _x(2, 3, 4)])
    with pytest.raises(ValueError, match=r"query and key of one last dimension"):
        L.Attention()([_x(2, 3, 4), _x(2, 3, 5)])
    with pytest.raises(ValueError, match=r"expects 2 to 3 inputs, got 4"):
        L.Attention()([_x(2, 3, 4)] * 4)
    att = L.AdditiveAttention()
    att([_x(2, 3, 4), _x(2, 5, 4)])
    with pytest.raises(ValueError, match=r"AdditiveAttention\) .*got query"):
        att([_x(2, 3, 6), _x(2, 5, 4)])


def test_bad_arguments():
    for make, match in [(lambda: L.Conv1D(0, 3), "filters"), (lambda: L.Conv1D(2, 0),
                                                              "kernel_size"),
                        (lambda: L.Conv1D(2, 3, padding="full"), "padding"),
                        (lambda: L.Conv1D(2, 3, data_format="channels_first"), "data_format"),
                        (lambda: L.MaxPooling1D(2, padding="causal"), "padding"),
                        (lambda: L.Attention(score_mode="general"), "score_mode"),
                        (lambda: L.BatchNormalization(momentum=2), "momentum"),
                        (lambda: L.SpatialDropout1D(1.0), "rate"),
                        (lambda: L.Lambda(3), "callable"),
                        (lambda: L.LSTMCell(3, return_sequences=True), "RNN's arguments")]:
        with pytest.raises((ValueError, TypeError, NotImplementedError), match=match):
            make()


# -- configs and files ---------------------------------------------------------------------------
ROUNDTRIP = [
    lambda: L.LeakyReLU(0.2), lambda: L.BatchNormalization(momentum=0.9, center=False),
    lambda: L.LayerNormalization(epsilon=1e-5), lambda: L.Conv1D(4, 3, padding="causal",
                                                                 dilation_rate=2),
    lambda: L.MaxPooling1D(3, 2, padding="same"), lambda: L.AveragePooling1D(2),
    lambda: L.GlobalMaxPooling1D(keepdims=True), lambda: L.GlobalAveragePooling1D(),
    lambda: L.Concatenate(axis=1), lambda: L.Add(), lambda: L.Multiply(),
    lambda: L.Attention(use_scale=True, score_mode="concat"),
    lambda: L.AdditiveAttention(use_scale=False), lambda: L.SpatialDropout1D(0.3, seed=1),
    lambda: L.RNN(L.LSTMCell(3, unit_forget_bias=False), return_sequences=True),
    lambda: L.RNN(L.StackedRNNCells([L.GRUCell(3), L.SimpleRNNCell(2, activation="relu")]),
                  go_backwards=True),
]


@pytest.mark.parametrize("i", range(len(ROUNDTRIP)))
def test_config_roundtrip(i):
    layer = ROUNDTRIP[i]()
    cfg = L.serialize(layer)
    again = L.deserialize(cfg)
    assert type(again) is type(layer)
    assert L.serialize(again) == cfg


SEQUENTIALS = {
    "conv_bn_pool_lstm": lambda: [L.Input((12, 3)), L.Conv1D(6, 3, padding="same"),
                                  L.BatchNormalization(), L.LeakyReLU(0.1),
                                  L.MaxPooling1D(2), L.SpatialDropout1D(0.1),
                                  L.RNN(L.LSTMCell(5), return_sequences=True),
                                  L.LayerNormalization(), L.GlobalAveragePooling1D(),
                                  L.Dense(2)],
    "stacked_cells": lambda: [L.Input((12, 3)), L.RNN([L.GRUCell(4), L.LSTMCell(3)]),
                              L.Dense(1)],
    "avg_global_max": lambda: [L.Input((12, 3)), L.AveragePooling1D(3, 1), L.Conv1D(2, 2),
                               L.GlobalMaxPooling1D()],
}


@pytest.mark.parametrize("name", sorted(SEQUENTIALS))
def test_sequential_with_new_layers_trains_saves_and_loads(name, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12, 3)).astype(np.float32)
    m = Sequential(SEQUENTIALS[name]())
    y = rng.normal(size=(16,) + m.output_shape[1:]).astype(np.float32)
    from fastrnn.keras import optimizers as fo
    m.compile(fo.Adam(0.01), "mse")
    h = m.fit(x, y, epochs=15, batch_size=8, verbose=0).history["loss"]
    assert np.all(np.isfinite(h)) and h[-1] < h[0]
    p = tmp_path / "m.keras"
    m.save(p)
    m2 = load_model(p)
    np.testing.assert_array_equal(m2.predict(x, verbose=0), m.predict(x, verbose=0))
    assert [w.shape for w in m2.weights] == [w.shape for w in m.weights]
    assert os.path.getsize(p) > 0
