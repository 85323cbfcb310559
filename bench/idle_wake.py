"""Wake cost after 100 ms idle: a batch-1 LSTM call forced onto 2 threads (big enough that the
team always wakes) vs the same call on 1 thread; and fastrnn's own estimate."""

import statistics
import time

import numpy as np

import fastrnn
from fastrnn import functional as F

r = np.random.default_rng(0)


def mk(T, B, I, H):
    x = r.standard_normal((T, B, I)).astype(np.float32)
    w = (r.standard_normal((4 * H, I)) * 0.1).astype(np.float32)
    wh = (r.standard_normal((4 * H, H)) * 0.1).astype(np.float32)
    b = np.zeros(4 * H, np.float32)
    return lambda: F.lstm_forward(x, None, None, w, wh, b, b, training=False)


for shape in [(100, 1, 64, 64), (20, 32, 128, 128)]:
    f = mk(*shape)
    f()
    res = {1: [], 2: []}
    for _rep in range(10):
        for n in (1, 2):
            fastrnn.set_num_threads(n)
            time.sleep(0.1)
            t = time.perf_counter()
            f()
            res[n].append(time.perf_counter() - t)
    print(
        shape,
        "after 100 ms idle: 1 thread {:.3f} ms, 2 threads {:.3f} ms".format(
            *(statistics.median(res[n]) * 1e3 for n in (1, 2))
        ),
    )
try:
    from fastrnn import _native

    print(_native.team_load())
except AttributeError:
    pass
