"""The four input/output configurations of a recurrent network, each a small Keras-style model.

    python docs/guides/io_configurations.py           # about 15 seconds
    python docs/guides/io_configurations.py --quick   # a few seconds
"""

import argparse

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras import layers
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
args = parser.parse_args()

N = 1024 if args.quick else 4096     # training samples
EPOCHS = 40 if args.quick else 60
T = 12                               # sequence length
set_random_seed(0)
rng = np.random.default_rng(0)


def report(name: str, model: keras.Sequential, x: np.ndarray, y: np.ndarray) -> None:
    """Train, then print the shapes and the loss beside the "always predict the mean" loss."""
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0)
    pred = model.predict(x, verbose=0)
    mse = float(np.mean((pred - y) ** 2))
    baseline = float(np.mean((y - y.mean(axis=0)) ** 2))
    print(f"{name:>12}: x {x.shape} -> y {pred.shape}   MSE {mse:.4f} "
          f"(predicting the mean: {baseline:.4f})")


# 1. One-to-one: one input, one output. A sequence of length 1: the RNN is a plain
#    feed-forward layer here (no earlier step to remember). Target: the product of 2 numbers.
x = rng.uniform(-1, 1, (N, 1, 2)).astype(np.float32)           # (samples, 1 step, 2 features)
y = x[:, 0, :1] * x[:, 0, 1:]                                  # (samples, 1)
report("one-to-one", keras.Sequential([
    keras.Input(shape=(1, 2)),
    layers.SimpleRNN(32),
    layers.Dense(1),
]), x, y)

# 2. One-to-many: one input, a sequence out. RepeatVector hands the same vector to every step;
#    the LSTM unrolls it into a sequence. Target: a sine wave of the given frequency and phase.
params = rng.uniform(0, 1, (N, 2)).astype(np.float32)          # (samples, 2): frequency, phase
t = np.arange(T)
freq, phase = 0.1 + 0.2 * params[:, :1], 2 * np.pi * params[:, 1:]
y = np.sin(2 * np.pi * freq * t + phase)[..., None].astype(np.float32)  # (samples, T, 1)
report("one-to-many", keras.Sequential([
    keras.Input(shape=(2,)),
    layers.Dense(32, activation="relu"),
    layers.RepeatVector(T),                # (samples, 32) -> (samples, T, 32)
    layers.LSTM(32, return_sequences=True),  # one output per step
    layers.TimeDistributed(layers.Dense(1)),  # the same Dense at every step
]), params, y)

# 3. Many-to-one: a sequence in, one output (classification, a forecast of the next value).
#    return_sequences=False (the default) keeps only the last step's output.
#    Target: the mean of the sequence's first feature minus the mean of its second.
x = rng.uniform(-1, 1, (N, T, 2)).astype(np.float32)           # (samples, T, 2)
y = (x[:, :, 0].mean(axis=1) - x[:, :, 1].mean(axis=1))[:, None]  # (samples, 1)
report("many-to-one", keras.Sequential([
    keras.Input(shape=(T, 2)),
    layers.LSTM(32),                       # (samples, T, 2) -> (samples, 32)
    layers.Dense(1),
]), x, y)

# 4. Many-to-many: a sequence in, a sequence of the same length out, one output per step
#    (tagging, denoising, "what is the running total now?"). Dense on a 3-D input acts on
#    every step. Target: the running sum of the inputs so far.
x = rng.uniform(-1, 1, (N, T, 1)).astype(np.float32)
y = np.cumsum(x, axis=1)                                       # (samples, T, 1)
report("many-to-many", keras.Sequential([
    keras.Input(shape=(T, 1)),
    layers.LSTM(32, return_sequences=True),  # (samples, T, 1) -> (samples, T, 32)
    layers.Dense(1),                       # -> (samples, T, 1)
]), x, y)

# Many-to-one followed by one-to-many is an encoder-decoder (a sequence in, a sequence of
# another length out): LSTM(64), RepeatVector(T_out), LSTM(64, return_sequences=True), Dense.
