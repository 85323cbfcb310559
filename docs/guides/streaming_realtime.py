"""Streaming: run a trained model on live data, one reading at a time.

    python docs/guides/streaming_realtime.py           # a few seconds
    python docs/guides/streaming_realtime.py --quick   # a second
"""

import argparse
import time

import numpy as np

import fastrnn.keras as keras
from fastrnn.keras import layers
from fastrnn.keras.models import set_random_seed

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
args = parser.parse_args()

N = 200 if args.quick else 2000
EPOCHS = 2 if args.quick else 10
set_random_seed(0)
rng = np.random.default_rng(0)


def waves(n: int, length: int) -> np.ndarray:
    """n noisy waves of random period and phase: (n, length, 1)."""
    t = np.arange(length)[None, :]
    period, phase = rng.uniform(15, 40, (n, 1)), rng.uniform(0, 2 * np.pi, (n, 1))
    s = np.sin(2 * np.pi * t / period + phase) + 0.05 * rng.standard_normal((n, length))
    return s[..., None].astype(np.float32)


# 1. Train a causal model on whole sequences: at every step, predict the next reading.
#    Streaming needs layers that only look back: SimpleRNN/LSTM/GRU (not Bidirectional),
#    Dense, Embedding, Dropout.
data = waves(N, 101)
model = keras.Sequential([
    keras.Input(shape=(None, 1)),
    layers.GRU(32, return_sequences=True),
    layers.Dense(1),
])
model.compile(optimizer="adam", loss="mse")
model.fit(data[:, :-1], data[:, 1:], batch_size=32, epochs=EPOCHS, verbose=0)

# 2. Open a session: the weights are packed once; each step() is one call into C that
#    advances the recurrent state by one step and returns the model's output for it.
live = waves(1, 300)[0]                          # (300 steps, 1 feature), arriving one by one
session = model.stream(batch_size=1)
outputs, latencies = [], []
for reading in live:                             # reading: shape (1,), one feature
    start = time.perf_counter()
    outputs.append(session.step(reading)[0])     # step() returns shape (1,): the prediction
    latencies.append(time.perf_counter() - start)
print(f"streamed {len(live)} readings, {np.median(latencies) * 1e6:.1f} us per step (median)")

# 3. It computes exactly what predict() computes on the whole sequence at once.
whole = model.predict(live[None], verbose=0)[0, :, 0]
print(f"stream vs predict on the whole sequence: largest difference "
      f"{np.max(np.abs(whole - np.array(outputs))):.1e}")

# 4. The state is the stream's memory: save it, try something, put it back; reset() forgets.
saved = session.state
guess_a = session.step(np.array([1.0], np.float32))[0]
session.state = saved
guess_b = session.step(np.array([1.0], np.float32))[0]
print(f"restored state, same reading, same answer: {guess_a == guess_b}")
session.reset()

# 5. Several streams at once (e.g. one per sensor): batch_size=k, readings of shape (k, 1).
sensors = model.stream(batch_size=3)
for reading in waves(3, 50).transpose(1, 0, 2):  # 50 steps of (3 sensors, 1 feature)
    predictions = sensors.step(reading)           # (3, 1): one prediction per sensor
print(f"3 sensors at once: each step returns {predictions.shape}")
