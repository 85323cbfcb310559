"""The Embedding -> recurrent fold (``fastrnn.keras.recurrent._Tokens``) and the fused Adam
update: the same model trained with and without them gives the same results (float64), the fold
runs exactly when it pays, and its gradients pass finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.keras import layers as L
from fastrnn.keras import optimizers as O
from fastrnn.keras import recurrent
from fastrnn.keras.models import Sequential

D = "float64"


def _model(kind: str, vocab: int, mask_zero: bool, go_backwards: bool = False,
           dropout: float = 0.0) -> Sequential:
    rnn_kw = {"dtype": D, "go_backwards": go_backwards, "dropout": dropout, "seed": 3}
    if kind == "Bidirectional":
        rnn = L.Bidirectional(L.LSTM(5, return_sequences=True, **rnn_kw))
        head = [L.Dense(3, activation="softmax", dtype=D)]
    else:
        rnn = getattr(L, kind)(5, **rnn_kw)
        head = [L.Dense(3, activation="softmax", dtype=D)]
    m = Sequential([L.Input((7,), dtype="int64"),
                    L.Embedding(vocab, 4, mask_zero=mask_zero, dtype=D), rnn] + head)
    m.compile(optimizer=O.Adam(0.01), loss="sparse_categorical_crossentropy")
    g = np.random.default_rng(0)
    m.set_weights([g.normal(0, 0.4, w.shape) for w in m.get_weights()])
    return m


def _data(kind: str, vocab: int, n: int = 24):
    g = np.random.default_rng(1)
    x = g.integers(1, vocab, size=(n, 7))
    x[3, 4:] = 0  # padding at the end (a mask with mask_zero)
    x[5, 1:] = 0
    y = g.integers(0, 3, size=(n, 7) if kind == "Bidirectional" else n)
    return x, y


def _no_fold(monkeypatch) -> None:
    monkeypatch.setattr(recurrent._Tokens, "fold_pays", staticmethod(lambda *a: False))


def _embedding_forward_calls(monkeypatch) -> list:
    calls: list = []
    orig = L.Embedding.forward

    def spy(self, x, mask, training):
        calls.append(x.shape)
        return orig(self, x, mask, training)

    monkeypatch.setattr(L.Embedding, "forward", spy)
    return calls


CASES = [("LSTM", True, False), ("GRU", False, True), ("SimpleRNN", True, True),
         ("LSTM", False, True), ("Bidirectional", True, False), ("GRU", True, False)]


@pytest.mark.parametrize("kind,mask_zero,go_backwards", CASES)
def test_fold_trains_like_the_embedding_lookup(monkeypatch, kind, mask_zero, go_backwards):
    """Predictions, then weights after two epochs of Adam, equal with and without the fold."""
    x, y = _data(kind, 11)
    calls = _embedding_forward_calls(monkeypatch)
    folded = _model(kind, 11, mask_zero, go_backwards)
    p1 = folded.predict(x, batch_size=8, verbose=0)
    folded.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    assert calls == []  # 2*11 <= 7*8: every call folded the lookup
    with monkeypatch.context() as mp:
        _no_fold(mp)
        plain = _model(kind, 11, mask_zero, go_backwards)
        p0 = plain.predict(x, batch_size=8, verbose=0)
        plain.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    assert len(calls) == 3 + 3 * 2  # the unfolded model looked every batch up
    np.testing.assert_allclose(p1, p0, rtol=1e-12, atol=1e-13)
    for a, b in zip(folded.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_fold_only_when_it_pays_and_without_input_dropout(monkeypatch):
    calls = _embedding_forward_calls(monkeypatch)
    x, y = _data("LSTM", 40)
    m = _model("LSTM", 40, False)  # 2*40 > 7*8: the table would cost more than the tokens
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(calls) == 3
    x, y = _data("LSTM", 11)
    m = _model("LSTM", 11, False, dropout=0.3)  # input dropout needs the vectors
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(calls) == 6
    m = _model("LSTM", 11, False)
    m.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(calls) == 6
    m.predict(x[:1], verbose=0)  # a batch of 1: 2*11 > 7*1
    assert len(calls) == 7


def _loss(m, x, y):
    return m.evaluate(x, y, batch_size=len(x), verbose=0)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "Bidirectional"])
def test_folded_gradients_match_finite_differences(kind):
    """The Embedding's and W_ih's gradients that the fold computes, against central
    differences of the loss (float64), on a batch where the fold runs."""
    x, y = _data(kind, 11, n=8)
    m = _model(kind, 11, True)
    out, mask = m._forward(x, True)
    _, g = m._loss_obj.value_and_grad(y, out, None, mask)
    m._backward(g)
    emb = m.layers[0].embeddings
    rnn = m.layers[1]
    sub = rnn.forward_layer if kind == "Bidirectional" else rnn
    checks = [(emb, np.array(emb.grad)), (sub.kernel, np.array(sub.kernel.grad))]
    rs = np.random.default_rng(2)
    h = 1e-6
    for var, grad in checks:
        flat = var.value.reshape(-1)
        scale = max(np.abs(grad).max(), 1e-3)
        for i in rs.choice(flat.size, 10, replace=False):
            old = flat[i]
            flat[i] = old + h
            lp = _loss(m, x, y)
            flat[i] = old - h
            lm = _loss(m, x, y)
            flat[i] = old
            assert abs((lp - lm) / (2 * h) - grad.reshape(-1)[i]) <= 1e-6 * scale, (var.path, i)


def test_fused_adam_is_bitwise_the_numpy_adam(monkeypatch):
    x, y = _data("LSTM", 11)
    a = _model("LSTM", 11, True)
    a.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    with monkeypatch.context() as mp:
        calls = []
        mp.setattr(O, "_fusable", lambda *arrs: calls.append(1) or False)
        b = _model("LSTM", 11, True)
        b.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        assert calls  # the NumPy path ran
    for u, v in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)
