"""Training throughput of fastrnn's Keras API against Keras 3 on its torch backend.

Four cases, each built once from the same code for both libraries (``mod`` is ``keras`` or
``fastrnn.keras``), with the same data, batch size, optimizer and thread count:

- ``lstm_classifier``: Embedding(1000, 64) + LSTM(128) + Dense(10, softmax), sequences of
  length ``--timesteps``, sparse categorical cross-entropy, Adam;
- ``rnn_forecaster``: SimpleRNN(128) + Dense(1) on length-``--timesteps`` windows of a noisy
  sine, MSE, Adam;
- ``seq2seq``: the keras-io character-level translator's training model, scaled: one-hot
  source (length 16, 70 symbols) into LSTM(256, return_state=True) (``--seq2seq-units``),
  its states as the ``initial_state`` of a decoder LSTM(256, return_sequences=True) over a
  one-hot target (length 60, 90 symbols), Dense(90, softmax) on every step, categorical
  cross-entropy, Adam (functional API, two inputs);
- ``conv_lstm_forecaster``: Conv1D(32, 5, relu) + MaxPooling1D(2) + LSTM(64) + Dense(1) on
  length-``--timesteps`` windows of a noisy 7-variable series, MSE, Adam.

Each measurement is one epoch of ``model.fit`` over ``--samples`` samples (after a warm-up
epoch); the median over ``--repeats`` epochs gives samples per second. The two libraries'
epochs alternate (ours, Keras's, ours, ...), so that load from other processes on a shared
machine hits both alike; the ratio is the median of the per-pair ratios. Both models start
from the same weights (copied with get_weights/set_weights); before timing, the script checks
that both give the same predictions on a few samples (``initial_max_abs_diff`` in the JSON) and
stops if they differ by more than 1e-4.

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

CASES = ("lstm_classifier", "rnn_forecaster", "seq2seq", "conv_lstm_forecaster")
SEQ2SEQ = {"src_len": 16, "src_vocab": 70, "tgt_len": 60, "tgt_vocab": 90, "units": 256}


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per library and case")
    p.add_argument("--threads", type=int, default=2, help="threads for both libraries")
    p.add_argument("--batch-size", type=int, default=32, help="default: Keras's fit default")
    p.add_argument("--samples", type=int, default=1024, help="samples per timed epoch")
    p.add_argument("--timesteps", type=int, default=100)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--seq2seq-units", type=int, default=SEQ2SEQ["units"],
                   help="LSTM units of the seq2seq case (keras-io's translator: 256)")
    p.add_argument("--no-keras", action="store_true", help="measure fastrnn only")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    a = p.parse_args()
    unknown = sorted(set(c.strip() for c in a.cases.split(",") if c.strip()) - set(CASES))
    if unknown:
        p.error(f"--cases: unknown {unknown}; expected some of {list(CASES)}")
    SEQ2SEQ["units"] = a.seq2seq_units
    return a


ARGS = _parse()
# thread counts must be fixed before numpy / torch start their pools
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import fastrnn  # noqa: E402
import fastrnn.keras as fkeras  # noqa: E402


def _one_hot(rs, n: int, t: int, vocab: int) -> np.ndarray:
    return np.eye(vocab, dtype=np.float32)[rs.integers(0, vocab, size=(n, t))]


def _data(case: str, n: int, t: int, seed: int = 0):
    """Inputs and targets of ``n`` samples for ``case``."""
    rs = np.random.default_rng(seed)
    if case == "lstm_classifier":
        x = rs.integers(1, 1000, size=(n, t)).astype(np.int32)
        y = rs.integers(0, 10, size=n).astype(np.int64)
        return x, y
    if case == "seq2seq":
        c = SEQ2SEQ
        src = _one_hot(rs, n, c["src_len"], c["src_vocab"])
        tgt = _one_hot(rs, n, c["tgt_len"] + 1, c["tgt_vocab"])
        return [src, tgt[:, :-1]], tgt[:, 1:]  # teacher forcing: the target one step ahead
    if case == "conv_lstm_forecaster":
        steps = np.arange(t + 1)[None, :, None] * (0.05 + 0.03 * np.arange(7))[None, None, :]
        s = np.sin(rs.uniform(0, 2 * np.pi, size=(n, 1, 7)) + steps)
        s = s + 0.1 * rs.normal(size=s.shape)
        return s[:, :t].astype(np.float32), s[:, t, :1].astype(np.float32)
    phase = rs.uniform(0, 2 * np.pi, size=(n, 1))
    s = np.sin(phase + 0.1 * np.arange(t + 1)[None, :]) + 0.05 * rs.normal(size=(n, t + 1))
    return s[:, :t, None].astype(np.float32), s[:, t:].astype(np.float32)


def _build(mod, case: str, t: int):
    """The compiled model of ``case``, written once for ``mod`` = ``keras`` or
    ``fastrnn.keras``."""
    L = mod.layers
    if case == "seq2seq":
        c = SEQ2SEQ
        enc_in = mod.Input(shape=(None, c["src_vocab"]))
        _, h, cell = L.LSTM(c["units"], return_state=True)(enc_in)
        dec_in = mod.Input(shape=(None, c["tgt_vocab"]))
        dec = L.LSTM(c["units"], return_sequences=True)(dec_in, initial_state=[h, cell])
        out = L.Dense(c["tgt_vocab"], activation="softmax")(dec)
        model, loss = mod.Model([enc_in, dec_in], out), "categorical_crossentropy"
    else:
        if case == "lstm_classifier":
            head = [L.Input((t,), dtype="int32"), L.Embedding(1000, 64), L.LSTM(128),
                    L.Dense(10, activation="softmax")]
            loss = "sparse_categorical_crossentropy"
        elif case == "conv_lstm_forecaster":
            head = [L.Input((t, 7)), L.Conv1D(32, 5, activation="relu"), L.MaxPooling1D(2),
                    L.LSTM(64), L.Dense(1)]
            loss = "mse"
        else:
            head = [L.Input((t, 1)), L.SimpleRNN(128), L.Dense(1)]
            loss = "mse"
        model = mod.Sequential(head)
    model.compile(optimizer=mod.optimizers.Adam(), loss=loss)
    return model


def _max_abs_diff(ours, km, x) -> float:
    """Largest difference of the two models' predictions on the first 8 samples."""
    head = [a[:8] for a in x] if isinstance(x, list) else x[:8]
    p = np.asarray(ours.predict(head, verbose=0), dtype=np.float64)
    q = np.asarray(km.predict(head, verbose=0), dtype=np.float64)
    return float(np.max(np.abs(p - q)))


def _n(x) -> int:
    return len(x[0]) if isinstance(x, list) else len(x)


def _head(x, n: int):
    return [a[:n] for a in x] if isinstance(x, list) else x[:n]


def _warm_up(model, x, y, batch_size: int) -> None:
    model.fit(_head(x, 2 * batch_size), y[: 2 * batch_size], batch_size=batch_size, epochs=1,
              verbose=0, shuffle=False)  # allocations, thread pools


def _epoch(model, x, y, batch_size: int) -> float:
    """Samples per second of one epoch."""
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return _n(x) / (time.perf_counter() - t0)


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
        ours = _build(fkeras, case, a.timesteps)
        row = {"case": case, "samples": a.samples, "timesteps": a.timesteps,
               "batch_size": a.batch_size, "threads": a.threads}
        if case == "seq2seq":
            row["seq2seq"] = dict(SEQ2SEQ)
        km = None
        if keras is not None:
            km = _build(keras, case, a.timesteps)
            km.set_weights(ours.get_weights())
            row["initial_max_abs_diff"] = _max_abs_diff(ours, km, x)
            if not row["initial_max_abs_diff"] <= 1e-4:
                sys.exit(f"{case}: fastrnn and Keras differ by {row['initial_max_abs_diff']:.3g} "
                         "with the same weights; not timing different models")
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
        line = f"{case:20s} fastrnn {f:9.1f} samples/s"
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
