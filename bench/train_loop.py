"""A user's training loop in a fresh process: fastrnn.functional forward, backward with dx,
an SGD step in numpy; the median time of each phase over the last steps.

    PYTHONPATH=../base/src python bench/train_loop.py --shape 50,20,70,130 --steps 300
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import fastrnn
from fastrnn import functional as F


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", default="50,20,70,130", help="T,B,I,H")
    p.add_argument("--cell", default="lstm", choices=("rnn", "lstm", "gru"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    T, B, I, H = (int(v) for v in a.shape.split(","))
    G = {"rnn": 1, "lstm": 4, "gru": 3}[a.cell]
    fastrnn.set_num_threads(a.threads)
    r = np.random.default_rng(0)
    k = 1 / np.sqrt(H)
    x = r.standard_normal((T, B, I)).astype(np.float32)
    w = [r.uniform(-k, k, s).astype(np.float32)
         for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    dy = r.standard_normal((T, B, H)).astype(np.float32)
    kw = {"nonlinearity": "tanh"} if a.cell == "rnn" else {}
    lr = np.float32(1e-6)
    phases: list[tuple[float, float, float]] = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        out = F.cell_forward(a.cell, x, None, None, *w, training=True, **kw)
        t1 = time.perf_counter()
        grads = F.cell_backward(out[-1], dy, *(None,) * (len(out) - 2), need_dx=True)
        t2 = time.perf_counter()
        for param, g in zip(w, grads[-4:], strict=True):
            g *= lr
            param -= g
        phases.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
    med = np.median(np.array(phases[a.steps // 6:]), axis=0) * 1e3
    print(f"{a.cell} {(T, B, I, H)}, {a.threads} threads: forward {med[0]:.3f} ms, backward "
          f"{med[1]:.3f} ms, SGD {med[2]:.3f} ms, step {med.sum():.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
