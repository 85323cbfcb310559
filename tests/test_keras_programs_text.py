"""Two more keras-io-style recurrent programs, written as a Keras user would (our own
equivalents, with synthetic data and tiny sizes): character-level text generation with an LSTM
and temperature sampling, and the addition RNN (encoder LSTM, ``RepeatVector``, decoder LSTM
with ``return_sequences=True``, a softmax ``Dense`` on every step). The only change from the
Keras program is ``import fastrnn.keras as keras`` / ``from fastrnn.keras import layers``."""

from __future__ import annotations

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras import layers


def _synthetic_text(n_sentences: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    subjects, verbs, objects = ["the cat", "a dog", "my bird"], ["sees", "eats"], ["a fish",
                                                                                   "the seed"]
    return " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}."
                    for _ in range(n_sentences))


def test_character_level_text_generation_with_temperature_sampling():
    keras.utils.set_random_seed(0)
    text = _synthetic_text(120)
    chars = sorted(list(set(text)))
    char_indices = dict((c, i) for i, c in enumerate(chars))
    indices_char = dict((i, c) for i, c in enumerate(chars))

    # cut the text in semi-redundant sequences of maxlen characters
    maxlen, step = 12, 3
    sentences, next_chars = [], []
    for i in range(0, len(text) - maxlen, step):
        sentences.append(text[i: i + maxlen])
        next_chars.append(text[i + maxlen])
    x = np.zeros((len(sentences), maxlen, len(chars)), dtype="bool")
    y = np.zeros((len(sentences), len(chars)), dtype="bool")
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
        y[i, char_indices[next_chars[i]]] = 1

    model = keras.Sequential([
        keras.Input(shape=(maxlen, len(chars))),
        layers.LSTM(32),
        layers.Dense(len(chars), activation="softmax"),
    ])
    optimizer = keras.optimizers.RMSprop(learning_rate=0.01)
    model.compile(loss="categorical_crossentropy", optimizer=optimizer)

    def sample(preds, temperature=1.0):
        # helper function to sample an index from a probability array
        preds = np.asarray(preds).astype("float64")
        preds = np.log(preds) / temperature
        exp_preds = np.exp(preds)
        preds = exp_preds / np.sum(exp_preds)
        probas = np.random.multinomial(1, preds, 1)
        return np.argmax(probas)

    losses = []
    for _ in range(4):
        history = model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        losses.append(history.history["loss"][0])
        start_index = np.random.randint(0, len(text) - maxlen - 1)
        for diversity in [0.2, 1.0]:
            generated = ""
            sentence = text[start_index: start_index + maxlen]
            for _ in range(20):
                x_pred = np.zeros((1, maxlen, len(chars)))
                for t, char in enumerate(sentence):
                    x_pred[0, t, char_indices[char]] = 1.0
                preds = model.predict(x_pred, verbose=0)[0]
                next_index = sample(preds, diversity)
                next_char = indices_char[next_index]
                sentence = sentence[1:] + next_char
                generated += next_char
            assert len(generated) == 20 and set(generated) <= set(chars)

    # training worked: the loss fell, and well below a uniform guess over the characters
    assert losses[-1] < losses[0] and losses[-1] < 0.6 * np.log(len(chars))
    preds = model.predict(x[:1].astype("float32"), verbose=0)[0]
    assert preds.shape == (len(chars),) and abs(preds.sum() - 1) < 1e-5
    # a cold temperature samples the most likely character
    assert all(sample(preds, 0.01) == np.argmax(preds) for _ in range(5))


class CharacterTable:
    """Encode strings of a fixed alphabet as one-hot rows, and decode them back."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.char_indices = dict((c, i) for i, c in enumerate(self.chars))
        self.indices_char = dict((i, c) for i, c in enumerate(self.chars))

    def encode(self, C, num_rows):
        x = np.zeros((num_rows, len(self.chars)))
        for i, c in enumerate(C):
            x[i, self.char_indices[c]] = 1
        return x

    def decode(self, x, calc_argmax=True):
        if calc_argmax:
            x = x.argmax(axis=-1)
        return "".join(self.indices_char[x] for x in x)


def test_addition_rnn_sequence_to_sequence():
    keras.utils.set_random_seed(1)
    TRAINING_SIZE, DIGITS, REVERSE = 1200, 2, True
    MAXLEN = DIGITS + 1 + DIGITS  # "12+34" at most
    chars = "0123456789+ "
    ctable = CharacterTable(chars)

    questions, expected, seen = [], [], set()
    rng = np.random.default_rng(1)
    while len(questions) < TRAINING_SIZE:
        def f():
            return int("".join(rng.choice(list("0123456789"))
                               for _ in range(rng.integers(1, DIGITS + 1))))
        a, b = f(), f()
        key = tuple(sorted((a, b)))
        if key in seen and len(seen) < 4000:
            continue
        seen.add(key)
        q = f"{a}+{b}"
        query = q + " " * (MAXLEN - len(q))
        ans = str(a + b)
        ans += " " * (DIGITS + 1 - len(ans))
        if REVERSE:
            query = query[::-1]
        questions.append(query)
        expected.append(ans)

    x = np.zeros((len(questions), MAXLEN, len(chars)), dtype=bool)
    y = np.zeros((len(questions), DIGITS + 1, len(chars)), dtype=bool)
    for i, sentence in enumerate(questions):
        x[i] = ctable.encode(sentence, MAXLEN)
    for i, sentence in enumerate(expected):
        y[i] = ctable.encode(sentence, DIGITS + 1)
    indices = np.arange(len(y))
    np.random.shuffle(indices)
    x, y = x[indices], y[indices]
    split_at = len(x) - len(x) // 10
    (x_train, x_val), (y_train, y_val) = (x[:split_at], x[split_at:]), (y[:split_at], y[split_at:])

    num_layers = 1
    model = keras.Sequential()
    model.add(layers.Input((MAXLEN, len(chars))))
    model.add(layers.LSTM(64))
    model.add(layers.RepeatVector(DIGITS + 1))
    for _ in range(num_layers):
        model.add(layers.LSTM(64, return_sequences=True))
    model.add(layers.Dense(len(chars), activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    assert model.output_shape == (None, DIGITS + 1, len(chars))

    history = model.fit(x_train, y_train, batch_size=32, epochs=8,
                        validation_data=(x_val, y_val), verbose=0)
    loss, val_acc = history.history["loss"], history.history["val_accuracy"]
    assert loss[-1] < 0.8 * loss[0]
    assert val_acc[-1] > 0.3  # per character; a guess over 12 symbols scores ~0.08

    rowx, rowy = x_val[:10], y_val[:10]
    preds = np.argmax(model.predict(rowx, verbose=0), axis=-1)
    assert preds.shape == (10, DIGITS + 1)
    for i in range(10):
        q = ctable.decode(rowx[i])
        correct = ctable.decode(rowy[i])
        guess = ctable.decode(preds[i], calc_argmax=False)
        assert len(q) == MAXLEN and len(guess) == len(correct) == DIGITS + 1
        assert set(guess) <= set(chars)
