"""Variable-length sequences: pad at the end, mask the padding.

    python docs/guides/variable_length.py           # about 5 seconds
    python docs/guides/variable_length.py --quick   # a second
"""

import argparse

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras import layers
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
args = parser.parse_args()

N = 1000 if args.quick else 4000
EPOCHS = 10 if args.quick else 30
MAX_LEN = 30
set_random_seed(0)
rng = np.random.default_rng(0)

# 1. Sequences of different lengths, 1 feature per step. The target: each one's mean.
seqs = [rng.uniform(-1, 1, (rng.integers(3, MAX_LEN + 1), 1)).astype(np.float32)
        for _ in range(N)]
y = np.array([[s.mean()] for s in seqs], dtype=np.float32)


def pad_post(seqs: list, length: int, value: float = 0.0) -> np.ndarray:
    """Stack sequences into one (batch, length, features) array, padding at the END."""
    out = np.full((len(seqs), length, seqs[0].shape[1]), value, dtype=np.float32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


x = pad_post(seqs, MAX_LEN)
print(f"{N} sequences of 3..{MAX_LEN} steps, padded at the end into one array {x.shape}")

# 2. Masking marks the steps whose features all equal mask_value as padding. The recurrent
#    layer then stops each sequence at its own last real step: its output is the state there,
#    and the padding never touches the weights or the gradient. (Padding with zeros needs
#    readings that are never exactly 0; pick another mask_value otherwise.)
#    With token ids, Embedding(vocab, dim, mask_zero=True) does the same for id 0.
model = keras.Sequential([
    keras.Input(shape=(None, 1)),          # any number of steps
    layers.Masking(mask_value=0.0),
    layers.LSTM(32),
    layers.Dense(1),
])
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, batch_size=32, epochs=EPOCHS, validation_split=0.2, verbose=0)
mse = model.evaluate(x[-N // 5:], y[-N // 5:], verbose=0)
print(f"masked LSTM: validation MSE {mse:.4f} (predicting 0: {np.mean(y[-N // 5:] ** 2):.4f})")

# 3. The padding changes nothing: a padded batch gives what each sequence gives alone.
batch = model.predict(x[:8], verbose=0)
alone = np.concatenate([model.predict(s[None], verbose=0) for s in seqs[:8]])
print(f"padded batch vs each sequence alone: largest difference "
      f"{np.max(np.abs(batch - alone)):.1e}")

# Without the mask, the same weights read the padding as real zeros and answer differently.
unmasked = keras.Sequential([keras.Input(shape=(None, 1)), layers.LSTM(32), layers.Dense(1)])
unmasked.set_weights(model.get_weights())
print(f"the same model without Masking: largest difference "
      f"{np.max(np.abs(unmasked.predict(x[:8], verbose=0) - alone)):.1e}")

# 4. Padding must be at the end ("post"). Padding at the front (keras.utils.pad_sequences'
#    default, "pre") is an error that says so, never a silently wrong answer.
x_pre = np.zeros_like(x[:2])
for i, s in enumerate(seqs[:2]):
    x_pre[i, MAX_LEN - len(s):] = s
try:
    model.predict(x_pre, verbose=0)
except ValueError as err:
    print(f"pre-padding: ValueError: {str(err).split(':')[0]}")
