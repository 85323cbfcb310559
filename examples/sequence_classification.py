"""Sentence classification with Embedding + LSTM + Dense, where word order matters.

The sentences are generated, so nothing is downloaded: short movie reviews such as "the plot
was not very good" or "the acting was dull but the ending was great". The label is the
sentiment of the last clause, and "not" flips it, so counting good and bad words is not
enough: the model has to read in order. Sentences have different lengths; they are padded
with 0 and ``mask_zero=True`` tells the LSTM where each one ends.

    python examples/sequence_classification.py           # about 5 seconds
    python examples/sequence_classification.py --quick   # a few seconds, for smoke tests
    python examples/sequence_classification.py --precision bfloat16   # LSTM in bfloat16
"""

import argparse

import numpy as np

import fastrnn
import fastrnn.keras as keras
from fastrnn.keras import layers, mixed_precision
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                    help="what the recurrent layers compute in: bfloat16 sets Keras's "
                         "'mixed_bfloat16' policy (float32 weights)")
args = parser.parse_args()
if args.precision == "bfloat16":
    mixed_precision.set_global_policy("mixed_bfloat16")

# 64 units and batches of 32 are too small to share among threads: one thread is fastest, by
# far on a busy machine (and the results are the same on any thread count)
fastrnn.set_num_threads(1)
set_random_seed(0)
rng = np.random.default_rng(0)
N = 600 if args.quick else 8000
EPOCHS = 1 if args.quick else 8

SUBJECTS = ["the movie", "this film", "the plot", "the acting", "the music", "the ending",
            "it", "the cast", "the script"]
VERBS = ["was", "is", "felt", "seemed"]
ADVERBS = ["", "", "really", "very", "quite", "so", "truly"]
GOOD = ["good", "great", "wonderful", "fun", "brilliant", "moving", "clever", "charming"]
BAD = ["bad", "boring", "awful", "dull", "terrible", "weak", "silly", "clumsy"]
TAILS = ["", "", "", "overall", "to me", "honestly", "at times"]


def clause() -> tuple[str, int]:
    """One clause and its sentiment (1 positive, 0 negative)."""
    positive = rng.random() < 0.5
    negated = rng.random() < 0.4
    words = [rng.choice(SUBJECTS), rng.choice(VERBS)]
    words += ["not"] if negated else []
    words += [rng.choice(ADVERBS), rng.choice(GOOD if positive else BAD), rng.choice(TAILS)]
    return " ".join(w for w in words if w), int(positive != negated)


def review() -> tuple[str, int]:
    """One or two clauses; with two ("... but ..."), the last one decides."""
    text, label = clause()
    if rng.random() < 0.5:
        second, label = clause()
        text = f"{text} but {second}"
    return text, label


texts, labels = zip(*(review() for _ in range(N)), strict=True)

# Words -> ids (0 is the padding id), sentences -> a padded (N, max_len) array.
vocab = {w: i + 1 for i, w in enumerate(sorted({w for t in texts for w in t.split()}))}
max_len = max(len(t.split()) for t in texts)


def encode(sentences: list[str]) -> np.ndarray:
    ids = np.zeros((len(sentences), max_len), dtype=np.int64)
    for row, s in enumerate(sentences):
        words = [vocab[w] for w in s.split()][:max_len]
        ids[row, :len(words)] = words
    return ids


x = encode(list(texts))
y = np.array(labels, dtype=np.float32)[:, None]
print(f"{N:,} reviews, {len(vocab)} words, up to {max_len} words long; e.g.")
for t, label in list(zip(texts, labels, strict=True))[:3]:
    print(f"  {'positive' if label else 'negative'}: {t}")
print()

model = keras.Sequential([
    layers.Embedding(len(vocab) + 1, 32, mask_zero=True),
    layers.LSTM(64),
    layers.Dense(1, activation="sigmoid"),
])
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(x, y, batch_size=32, epochs=EPOCHS, validation_split=0.2, verbose=2)
model.summary()
print(f"validation accuracy {history.history['val_accuracy'][-1]:.4f} ({args.precision})")

# New sentences, some built to need word order.
tests = ["the movie was good", "the movie was not good", "the plot was boring",
         "the plot was not boring honestly", "the acting was great but the ending was dull",
         "the music was silly but the cast was really charming"]
tests = [" ".join(w for w in t.split() if w in vocab) for t in tests]  # known words only
probs = model.predict(encode(tests), verbose=0)[:, 0]
print()
for t, p in zip(tests, probs, strict=True):
    print(f"  {p:6.1%} positive  {t}")
