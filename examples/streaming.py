"""Streaming inference: run a trained model on live data, one time step at a time.

A sensor sends one reading at a time and we want a prediction after each. Calling
``model.predict`` on the whole history at every new reading costs more and more as the
history grows; a streaming session keeps the recurrent state between calls instead, so
every new reading costs one step of the network, in one call into C.

We train a GRU to predict the next reading of a noisy oscillating signal at every step,
then open ``session = model.stream()`` and feed it readings one by one with
``session.step(x_t)``. The session gives exactly what ``predict`` gives on the whole
sequence; ``session.state`` saves and restores the memory and ``session.reset()`` forgets it.

    python examples/streaming.py           # about 15 seconds
    python examples/streaming.py --quick   # a few seconds, for smoke tests
"""

import argparse
import time

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras import layers
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny run for smoke tests")
args = parser.parse_args()

set_random_seed(0)
rng = np.random.default_rng(0)
T = 100                                  # training sequence length
N = 200 if args.quick else 2000          # training sequences
EPOCHS = 1 if args.quick else 10


def signal(n: int, length: int) -> np.ndarray:
    """n noisy waves of random period and phase, shape (n, length, 1)."""
    t = np.arange(length)[None, :]
    period = rng.uniform(15, 40, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    s = np.sin(2 * np.pi * t / period + phase) + 0.05 * rng.standard_normal((n, length))
    return s[..., None].astype(np.float32)


# 1. Train a causal model: at every step, predict the next reading.
seqs = signal(N, T + 1)
x, y = seqs[:, :-1], seqs[:, 1:]
model = keras.Sequential([
    keras.Input(shape=(None, 1)),         # sequences of any length
    layers.GRU(32, return_sequences=True),  # one output per step
    layers.Dense(1),
])
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=2)

# 2. A live stream: readings arrive one at a time.
live = signal(1, 500)[0]                  # (500, 1)
session = model.stream(batch_size=1)
predictions = []
latencies = []
for reading in live:
    start = time.perf_counter()
    nxt = session.step(reading)           # (1,): the predicted next reading
    latencies.append(time.perf_counter() - start)
    predictions.append(nxt[0])
predictions = np.array(predictions)
err = float(np.sqrt(np.mean((predictions[50:-1] - live[51:, 0]) ** 2)))
print(f"\nstreamed {len(live)} readings: {np.median(latencies) * 1e6:.1f} us per step "
      f"(median); RMS error of the next-reading prediction after warm-up {err:.3f}")

# 3. The same numbers as running the whole sequence at once.
full = model.predict(live[None], verbose=0)[0, :, 0]
print(f"largest difference from model.predict on the whole sequence: "
      f"{np.max(np.abs(full - predictions)):.1e}")

# 4. What streaming saves: predict() on the whole history at every new reading.
start = time.perf_counter()
for t in (100, 200, 300, 400, 500):
    model.predict(live[None, :t], verbose=0)
per_call = (time.perf_counter() - start) / 5
print(f"re-running predict() on the history instead: {per_call * 1e3:.2f} ms per reading on "
      f"average over histories of 100-500 steps, and growing with the history")

# 5. Save the memory, try alternatives, restore: "what if the next reading were ...?"
saved = session.state                     # copies of the recurrent state(s)
for reading in (-1.0, 0.0, 1.0):
    session.state = saved                 # back to the same moment each time
    guess = session.step(np.array([reading], dtype=np.float32))[0]
    print(f"if the next reading were {reading:+.1f}, the one after would be about {guess:+.3f}")
session.reset()                           # forget everything: a new stream starts
