"""Training throughput of fastrnn's Keras API against Keras 3 on its torch backend.

Two cases, the same model, data, batch size, optimizer and thread count in both libraries:

- ``lstm_classifier``: Embedding(1000, 64) + LSTM(128) + Dense(10, softmax), sequences of
  length 100, sparse categorical cross-entropy, Adam;
- ``rnn_forecaster``: SimpleRNN(128) + Dense(1) on length-100 windows of a noisy sine, MSE,
  Adam.

Each measurement is one epoch of ``model.fit`` over ``--samples`` samples (after a warm-up
epoch); the median over ``--repeats`` epochs gives samples per second. The two libraries'
epochs alternate (ours, Keras's, ours, ...), so that load from other processes on a shared
machine hits both alike; the ratio is the median of the per-pair ratios. Both models start
from the same weights (copied with get_weights/set_weights).

Usage::

    python bench/bench_keras.py --repeats 3 --threads 2
    python bench/bench_keras.py --repeats 1 --samples 256 --no-keras   # fastrnn only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per library and case")
    p.add_argument("--threads", type=int, default=2, help="threads for both libraries")
    p.add_argument("--batch-size", type=int, default=32, help="default: Keras's fit default")
    p.add_argument("--samples", type=int, default=1024, help="samples per timed epoch")
    p.add_argument("--timesteps", type=int, default=100)
    p.add_argument("--cases", default="lstm_classifier,rnn_forecaster")
    p.add_argument("--no-keras", action="store_true", help="measure fastrnn only")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args()


ARGS = _parse()
# thread counts must be fixed before numpy / torch start their pools
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import fastrnn  # noqa: E402
from fastrnn.keras import layers as L  # noqa: E402
from fastrnn.keras import optimizers as O  # noqa: E402
from fastrnn.keras.models import Sequential  # noqa: E402


def _data(case: str, n: int, t: int, seed: int = 0):
    rs = np.random.default_rng(seed)
    if case == "lstm_classifier":
        x = rs.integers(1, 1000, size=(n, t)).astype(np.int32)
        y = rs.integers(0, 10, size=n).astype(np.int64)
        return x, y
    phase = rs.uniform(0, 2 * np.pi, size=(n, 1))
    s = np.sin(phase + 0.1 * np.arange(t + 1)[None, :]) + 0.05 * rs.normal(size=(n, t + 1))
    return s[:, :t, None].astype(np.float32), s[:, t:].astype(np.float32)


def _build(mod, case: str, t: int):
    if case == "lstm_classifier":
        layers = [mod.Embedding(1000, 64), mod.LSTM(128), mod.Dense(10, activation="softmax")]
        loss = "sparse_categorical_crossentropy"
        shape, dtype = (t,), "int32"
    else:
        layers = [mod.SimpleRNN(128), mod.Dense(1)]
        loss = "mse"
        shape, dtype = (t, 1), "float32"
    return layers, loss, shape, dtype


def _warm_up(model, x, y, batch_size: int) -> None:
    model.fit(x[: 2 * batch_size], y[: 2 * batch_size], batch_size=batch_size, epochs=1,
              verbose=0, shuffle=False)  # allocations, thread pools


def _epoch(model, x, y, batch_size: int) -> float:
    """Samples per second of one epoch."""
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return len(x) / (time.perf_counter() - t0)


def main() -> None:
    a = ARGS
    fastrnn.set_num_threads(a.threads)
    keras = None
    if not a.no_keras:
        import keras  # noqa: F811
        import torch

        torch.set_num_threads(a.threads)
    results = []
    for case in [c.strip() for c in a.cases.split(",") if c.strip()]:
        x, y = _data(case, a.samples, a.timesteps)
        layers, loss, shape, dtype = _build(L, case, a.timesteps)
        ours = Sequential([L.Input(shape, dtype=dtype)] + layers)
        ours.compile(optimizer=O.Adam(), loss=loss)
        row = {"case": case, "samples": a.samples, "timesteps": a.timesteps,
               "batch_size": a.batch_size, "threads": a.threads}
        km = None
        if keras is not None:
            klayers, _, _, _ = _build(keras.layers, case, a.timesteps)
            km = keras.Sequential([keras.Input(shape, dtype=dtype)] + klayers)
            km.compile(optimizer=keras.optimizers.Adam(), loss=loss)
            km.set_weights(ours.get_weights())
        _warm_up(ours, x, y, a.batch_size)
        if km is not None:
            _warm_up(km, x, y, a.batch_size)
        row["fastrnn"], row["keras_torch"] = [], []
        for _ in range(a.repeats):  # alternate: both see the same machine conditions
            row["fastrnn"].append(_epoch(ours, x, y, a.batch_size))
            if km is not None:
                row["keras_torch"].append(_epoch(km, x, y, a.batch_size))
        results.append(row)
        f = statistics.median(row["fastrnn"])
        line = f"{case:16s} fastrnn {f:9.1f} samples/s"
        if km is not None:
            k = statistics.median(row["keras_torch"])
            row["ratio"] = statistics.median(
                [fr / kr for fr, kr in zip(row["fastrnn"], row["keras_torch"], strict=True)])
            line += (f" | keras-on-torch {k:8.1f} samples/s | ratio {row['ratio']:6.2f}x "
                     f"(median of {a.repeats} paired epochs; per pair: "
                     + ", ".join(f"{fr / kr:.2f}" for fr, kr in
                                 zip(row["fastrnn"], row["keras_torch"], strict=True)) + ")")
        else:
            del row["keras_torch"]
        print(line, flush=True)
    info = fastrnn.info()
    print(f"# threads={a.threads} batch_size={a.batch_size} samples={a.samples} "
          f"T={a.timesteps} repeats={a.repeats} simd={info.get('simd')} "
          f"machine={platform.machine()} {platform.processor() or ''}".rstrip())
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"results": results, "fastrnn_info": info}, fh, indent=1)


if __name__ == "__main__":
    main()
