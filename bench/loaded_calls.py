"""Per-call times of one LSTM inference call on a loaded machine, over its quiet time.

Each round: the quiet time (median of 3 calls, after a pause), then 3 calls each right after a
numpy 2048x2048 matmul (OpenBLAS's worker still spinning), then 3 calls beside a process that
spins on one core. Figures: over all calls of a condition the median, mean and 90th percentile
of call time / the round's quiet time, and the median over rounds of the per-round median (the
``--pipeline`` figure). Uses only the public API, so that it runs against any checkout:

    PYTHONPATH=../base/src python bench/loaded_calls.py --shape 400,24,100,200 --rounds 8
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

import fastrnn
from fastrnn import functional as F


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", default="60,24,100,200", help="T,B,I,H")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    T, B, I, H = (int(v) for v in a.shape.split(","))
    fastrnn.set_num_threads(a.threads)
    r = np.random.default_rng(0)
    x = r.standard_normal((T, B, I)).astype(np.float32)
    w_ih = (r.standard_normal((4 * H, I)) * 0.1).astype(np.float32)
    w_hh = (r.standard_normal((4 * H, H)) * 0.1).astype(np.float32)
    b = np.zeros(4 * H, np.float32)
    m = r.standard_normal((2048, 2048)).astype(np.float32)

    def timed() -> float:
        t = time.perf_counter()
        F.lstm_forward(x, None, None, w_ih, w_hh, b, b, training=False)
        return time.perf_counter() - t

    calls: dict[str, list[float]] = {"after numpy": [], "busy process": []}
    rounds: dict[str, list[float]] = {"after numpy": [], "busy process": []}
    for _ in range(a.rounds):
        time.sleep(0.3)
        timed()
        quiet = statistics.median(timed() for _ in range(3))
        time.sleep(0.3)
        got = []
        for _ in range(3):
            m @ m
            got.append(timed() / quiet)
        calls["after numpy"] += got
        rounds["after numpy"].append(statistics.median(got))
        time.sleep(0.3)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.05)
            got = [timed() / quiet for _ in range(3)]
        finally:
            busy.kill()
            busy.wait()
        calls["busy process"] += got
        rounds["busy process"].append(statistics.median(got))
    print(f"LSTM inference {(T, B, I, H)}, {a.threads} threads, {a.rounds} rounds; "
          "time over the round's quiet time")
    for cond, v in calls.items():
        print(f"{cond:<13} calls: median {np.median(v):.2f} mean {np.mean(v):.2f} "
              f"p90 {np.percentile(v, 90):.2f}; per-round medians: median "
              f"{statistics.median(rounds[cond]):.2f} max {max(rounds[cond]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
