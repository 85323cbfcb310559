"""Streaming sessions (model.stream): equal to predict on the whole sequence, state handling,
unsupported layers and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fastrnn.keras.layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, SimpleRNN
from fastrnn.keras.models import Sequential


def _seq_model(dtype="float64"):
    m = Sequential([LSTM(12, return_sequences=True, input_shape=(None, 3), dtype=dtype),
                    Dropout(0.3), GRU(9, return_sequences=True, dtype=dtype),
                    SimpleRNN(7, activation="relu", return_sequences=True, dtype=dtype),
                    Dense(4, activation="softmax", dtype=dtype)])
    return m


def test_step_equals_predict_float64():
    rng = np.random.default_rng(0)
    m = _seq_model()
    x = rng.standard_normal((2, 11, 3))
    want = m.predict(x, verbose=0)
    s = m.stream(batch_size=2)
    got = np.stack([s.step(x[:, t]) for t in range(x.shape[1])], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    s.reset()
    np.testing.assert_allclose(s.run(x), want, rtol=1e-12, atol=1e-13)


def test_step_equals_predict_float32_many_to_one():
    rng = np.random.default_rng(1)
    m = Sequential([GRU(64, input_shape=(None, 1)), Dense(1)])
    x = rng.standard_normal((1, 50, 1)).astype(np.float32)
    want = m.predict(x, verbose=0)  # last step only
    s = m.stream()
    for t in range(49):
        s.step(x[0, t])
    last = s.step(x[0, 49])
    assert last.shape == (1,)
    np.testing.assert_allclose(last, want[0], rtol=1e-5, atol=1e-6)


def test_embedding_stream_and_chunks():
    rng = np.random.default_rng(2)
    m = Sequential([Embedding(20, 5, dtype="float64"),
                    LSTM(8, return_sequences=True, dtype="float64"), Dense(3, dtype="float64")])
    ids = rng.integers(0, 20, (3, 9))
    want = m.predict(ids, verbose=0)
    s = m.stream(batch_size=3)
    first = s.run(ids[:, :4])
    rest = s.run(ids[:, 4:])
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1), want, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="token id 20 out of range"):
        s.step(np.array([20, 1, 2]))


def test_state_checkpoint_and_resume():
    rng = np.random.default_rng(3)
    m = _seq_model()
    x = rng.standard_normal((1, 10, 3))
    s = m.stream()
    for t in range(5):
        s.step(x[0, t])
    saved = s.state
    assert [a.shape for a in saved] == [(1, 12), (1, 12), (1, 9), (1, 7)]
    tail = s.run(x[0, 5:])
    s.reset()
    assert all(not a.any() for a in s.state)
    s.state = saved
    np.testing.assert_array_equal(s.run(x[0, 5:]), tail)
    with pytest.raises(ValueError, match="list of 4 arrays"):
        s.state = saved[:2]
    with pytest.raises(ValueError, match=r"state\[1\] must have shape \(1, 12\)"):
        s.state = [saved[0], np.zeros((2, 12)), saved[2], saved[3]]


@pytest.mark.parametrize("layer,match", [
    (Bidirectional(LSTM(4, return_sequences=True)), "Bidirectional.*backwards in time"),
    (LSTM(4, go_backwards=True, return_sequences=True), "go_backwards=True"),
])
def test_unstreamable_layers_named(layer, match):
    m = Sequential([LSTM(5, return_sequences=True, input_shape=(None, 2)), layer])
    with pytest.raises(ValueError, match=match):
        m.stream()


def test_unbuilt_model_and_bad_batch():
    with pytest.raises(ValueError, match="no weights yet"):
        Sequential([LSTM(3), Dense(1)]).stream()
    m = Sequential([LSTM(3, input_shape=(None, 2))])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            m.stream(batch_size=bad)
    s = m.stream(batch_size=2)
    with pytest.raises(ValueError, match=r"x must have shape \(2, 2\)"):
        s.step(np.ones(3))
