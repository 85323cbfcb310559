"""Min / median / mean over 300 calls of the batch-1 stream row, 1 and 2 threads alternating
(the tail a best-of-N hides): python bench/stream_tail.py."""

import time

import numpy as np

import fastrnn
from fastrnn import functional as F

r = np.random.default_rng(0)
T, B, I, H = 200, 1, 64, 64
x = r.standard_normal((T, B, I)).astype(np.float32)
w = (r.standard_normal((4 * H, I)) * 0.1).astype(np.float32)
u = (r.standard_normal((4 * H, H)) * 0.1).astype(np.float32)
b = np.zeros(4 * H, np.float32)
for n in (1, 2, 1, 2):
    fastrnn.set_num_threads(n)
    for _ in range(20):
        F.lstm_forward(x, None, None, w, u, b, b, training=False)
    ts = []
    for _ in range(300):
        t = time.perf_counter()
        F.lstm_forward(x, None, None, w, u, b, b, training=False)
        ts.append(time.perf_counter() - t)
    ts.sort()
    print(
        n,
        f"min {ts[0] * 1e3:.3f} med {ts[len(ts) // 2] * 1e3:.3f} "
        f"mean {sum(ts) / len(ts) * 1e3:.3f} ms",
        end="; ",
    )
try:
    from fastrnn import _native

    print(_native.team_load())
except AttributeError:
    print()
