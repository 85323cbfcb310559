"""Whole-model gradients of the Keras-compatible API against central finite differences
(float64): every weight of every layer, and the input gradient where the input is float."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.keras import layers as L
from fastrnn.keras import losses
from fastrnn.keras.models import Sequential

RTOL = 1e-6  # relative to the largest gradient entry; central differences with h = 1e-6


def _loss_and_grads(model: Sequential, loss: losses.Loss, x, y):
    out, mask = model._forward(x, True)
    value, g = loss.value_and_grad(y, out, None, mask)
    dx = g
    for layer in reversed(model.layers):
        dx = layer.backward(dx)
        if dx is None:
            break
    grads = [np.array(v.grad, copy=True) for v in model.weights]
    return value, grads, dx


def _loss_only(model, loss, x, y):
    out, mask = model._forward(x, False)
    if mask is None:
        return loss(y, out)
    return loss.value_and_grad(y, out, None, mask)[0]


def _check(model: Sequential, loss: losses.Loss, x, y, n_entries: int = 12, seed: int = 0,
           check_dx: bool = True) -> None:
    model.build((None,) + x.shape[1:]) if not model.built else None
    value, grads, dx = _loss_and_grads(model, loss, x, y)
    assert np.isfinite(value)
    assert np.isclose(value, _loss_only(model, loss, x, y), rtol=1e-12, atol=0)
    g = np.random.default_rng(seed)
    h = 1e-6
    for v, grad in zip(model.weights, grads, strict=True):
        assert grad.shape == v.value.shape, v.path
        flat = v.value.reshape(-1)
        idx = g.choice(flat.size, size=min(n_entries, flat.size), replace=False)
        scale = max(np.abs(grad).max(), 1e-3)
        for i in idx:
            old = flat[i]
            flat[i] = old + h
            lp = _loss_only(model, loss, x, y)
            flat[i] = old - h
            lm = _loss_only(model, loss, x, y)
            flat[i] = old
            fd = (lp - lm) / (2 * h)
            assert abs(fd - grad.reshape(-1)[i]) <= RTOL * scale, (v.path, i, fd,
                                                                    grad.reshape(-1)[i])
    if check_dx and x.dtype.kind == "f":
        assert dx is not None and dx.shape == x.shape
        scale = max(np.abs(dx).max(), 1e-3)
        xf = x.reshape(-1)
        candidates = np.flatnonzero(xf != 0.0)  # zeros are padding for Masking: keep them
        for i in g.choice(candidates, size=min(n_entries, candidates.size), replace=False):
            old = xf[i]
            xf[i] = old + h
            lp = _loss_only(model, loss, x, y)
            xf[i] = old - h
            lm = _loss_only(model, loss, x, y)
            xf[i] = old
            assert abs((lp - lm) / (2 * h) - dx.reshape(-1)[i]) <= RTOL * scale, ("x", i)


def _rand_bias(model: Sequential, seed: int = 1) -> None:
    """Non-zero biases everywhere (zeros would hide bias-gradient bugs)."""
    g = np.random.default_rng(seed)
    for v in model.weights:
        if v.name == "bias":
            v.value[...] = g.normal(0, 0.3, v.value.shape)


D = "float64"


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_stacked_many_to_one_regression(cell):
    rs = np.random.default_rng(0)
    R = getattr(L, cell)
    m = Sequential([L.Input((5, 3)), R(4, return_sequences=True, dtype=D), R(3, dtype=D),
                    L.Dense(2, dtype=D)])
    _rand_bias(m)
    _check(m, losses.MeanSquaredError(), rs.normal(size=(3, 5, 3)), rs.normal(size=(3, 2)))


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_masked_embedding_many_to_many_tagging(cell):
    rs = np.random.default_rng(1)
    ids = rs.integers(1, 9, size=(4, 6))
    ids[0, 3:] = 0
    ids[2, 1:] = 0
    ids[3, :] = 0
    y = rs.integers(0, 5, size=(4, 6))
    m = Sequential([L.Embedding(9, 3, mask_zero=True, dtype=D),
                    getattr(L, cell)(4, return_sequences=True, dtype=D),
                    L.Dense(5, activation="softmax", dtype=D)])
    _rand_bias(m)
    _check(m, losses.SparseCategoricalCrossentropy(), ids, y)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_bidirectional_with_masking_layer(cell, merge_mode):
    rs = np.random.default_rng(2)
    x = rs.normal(size=(3, 5, 2))
    x[1, 3:] = 0.0
    x[2, 4:] = 0.0
    y = np.eye(3)[rs.integers(0, 3, size=(3, 5))]
    m = Sequential([L.Input((5, 2)), L.Masking(0.0, dtype=D),
                    L.Bidirectional(getattr(L, cell)(3, return_sequences=True, dtype=D),
                                    merge_mode=merge_mode),
                    L.Dense(3, activation="softmax", dtype=D)])
    _rand_bias(m)
    _check(m, losses.CategoricalCrossentropy(), x, y)


@pytest.mark.parametrize("merge_mode", ["concat", "mul"])
def test_bidirectional_last_output_binary(merge_mode):
    rs = np.random.default_rng(3)
    m = Sequential([L.Input((4, 3)),
                    L.Bidirectional(L.LSTM(3, dtype=D), merge_mode=merge_mode),
                    L.Dense(1, activation="sigmoid", dtype=D)])
    _rand_bias(m)
    _check(m, losses.BinaryCrossentropy(), rs.normal(size=(5, 4, 3)),
           rs.integers(0, 2, size=(5, 1)).astype(float))


def test_one_to_many_repeat_vector():
    rs = np.random.default_rng(4)
    m = Sequential([L.Input((3,)), L.Dense(4, activation="tanh", dtype=D), L.RepeatVector(5),
                    L.LSTM(4, return_sequences=True, dtype=D),
                    L.TimeDistributed(L.Dense(2, dtype=D))])
    _rand_bias(m)
    _check(m, losses.Huber(0.5), rs.normal(size=(3, 3)), rs.normal(size=(3, 5, 2)))


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("zero_output", [False, True])
def test_masked_go_backwards_and_last_output_fill(cell, zero_output):
    """Keras's masked-step outputs (repeat the last valid output, or zeros) and
    go_backwards' reversed output order, all differentiated."""
    rs = np.random.default_rng(5)
    ids = rs.integers(1, 7, size=(3, 5))
    ids[0, 2:] = 0
    ids[1, 4:] = 0
    R = getattr(L, cell)
    m = Sequential([L.Embedding(7, 2, mask_zero=True, dtype=D),
                    R(3, return_sequences=True, zero_output_for_mask=zero_output, dtype=D),
                    R(3, return_sequences=True, go_backwards=True, dtype=D),
                    R(2, zero_output_for_mask=zero_output, dtype=D)])
    _rand_bias(m)
    _check(m, losses.MeanSquaredError(), ids, rs.normal(size=(3, 2)))


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softmax", "softplus",
                                        "softsign", "elu", "selu", "swish", "exponential",
                                        "leaky_relu", "linear", "hard_sigmoid", "relu6"])
def test_dense_activations(activation):
    rs = np.random.default_rng(6)
    m = Sequential([L.Input((4,)), L.Dense(3, activation=activation, dtype=D), L.Dense(2, dtype=D)])
    _rand_bias(m)
    _check(m, losses.MeanSquaredError(), rs.normal(size=(5, 4)), rs.normal(size=(5, 2)))


@pytest.mark.parametrize("loss", [
    losses.MeanAbsoluteError(), losses.Huber(), losses.BinaryCrossentropy(from_logits=True),
    losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
    losses.SparseCategoricalCrossentropy(from_logits=True),
    losses.BinaryCrossentropy(label_smoothing=0.2)])
def test_losses_through_a_simple_rnn(loss):
    rs = np.random.default_rng(7)
    units = 3
    x = rs.normal(size=(4, 3, 2))
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        y = rs.integers(0, units, size=4)
    elif isinstance(loss, losses.CategoricalCrossentropy):
        y = np.eye(units)[rs.integers(0, units, size=4)]
    elif isinstance(loss, losses.BinaryCrossentropy):
        y = rs.integers(0, 2, size=(4, units)).astype(float)
    else:
        y = rs.normal(size=(4, units))
    act = "sigmoid" if isinstance(loss, losses.BinaryCrossentropy) and not loss.from_logits \
        else None
    m = Sequential([L.Input((3, 2)), L.SimpleRNN(4, activation="relu", dtype=D),
                    L.Dense(units, activation=act, dtype=D)])
    _rand_bias(m)
    _check(m, loss, x, y)


def test_sample_weights_and_class_weights_enter_the_gradient():
    rs = np.random.default_rng(8)
    m = Sequential([L.Input((3, 2)), L.GRU(3, dtype=D), L.Dense(1, dtype=D)])
    x, y = rs.normal(size=(4, 3, 2)), rs.normal(size=(4, 1))
    loss = losses.MeanSquaredError()
    sw = np.array([1.0, 0.0, 2.0, 0.5])
    out, _ = m._forward(x, True)
    v, g = loss.value_and_grad(y, out, sw)
    per = ((out - y) ** 2)[:, 0]
    assert np.isclose(v, np.sum(per * sw) / 4, rtol=1e-14)
    assert np.allclose(g[:, 0], 2 * (out - y)[:, 0] * sw / 4, rtol=1e-14)
    assert g[1, 0] == 0.0


@pytest.mark.parametrize("first", ["lstm", "gru", "simplernn", "bidirectional", "masking"])
def test_model_backward_skips_the_data_input_gradient(first, monkeypatch):
    """In Sequential's backward the first recurrent layer (no trainable weight before it) asks
    the kernels for no dx; the weight gradients equal a backward that computes it, and the
    choice is that call's (a layer's backward on its own, need_dx's default, returns its
    dx)."""
    from fastrnn import functional as F

    asked = []
    real = F.cell_backward

    def spy(*a, **kw):
        asked.append(kw.get("need_dx", True))
        return real(*a, **kw)

    monkeypatch.setattr(F, "cell_backward", spy)

    def build():
        rec = {"lstm": lambda: L.LSTM(5, return_sequences=True),
               "gru": lambda: L.GRU(5, return_sequences=True),
               "simplernn": lambda: L.SimpleRNN(5, return_sequences=True),
               "bidirectional": lambda: L.Bidirectional(L.LSTM(5, return_sequences=True)),
               "masking": lambda: L.LSTM(5, return_sequences=True)}[first]
        layers = [L.Masking(0.0)] if first == "masking" else []
        layers += [rec(), L.GRU(4), L.Dense(2)]
        return Sequential(layers)

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 6, 4))
    x[1, 4:] = 0.0  # a padded tail for Masking
    y = rng.standard_normal((3, 2))
    model = build()
    model.build((None, 6, 4))
    out, mask = model._forward(x.astype(model.layers[0].dtype), True)
    loss = losses.get("mse")
    _, g = loss.value_and_grad(y.astype(out.dtype), out, None, mask)
    asked.clear()
    model._backward(g)
    n_first = 2 if first == "bidirectional" else 1
    # the second recurrent layer (GRU) needs its dx, the first does not
    assert asked == [True] + [False] * n_first, asked
    skipped = [np.array(v.grad, copy=True) for v in model.weights]
    # the same step with every dx computed (the layer-by-layer loop of _loss_and_grads)
    asked.clear()
    _, full, dx = _loss_and_grads(model, loss, x.astype(out.dtype), y.astype(out.dtype))
    assert dx is not None and asked == [True] * (1 + n_first), asked
    for a, b in zip(skipped, full, strict=True):
        np.testing.assert_array_equal(a, b)
