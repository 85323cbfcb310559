"""Paired A/B of two builds of fastrnn in a reduced precision (or float32): faster or slower?

Each checkout must have its extension built in place. For every case, subprocesses alternate
between the two checkouts (base, head, base, ...); each times the case's best of ``--calls``
calls after two warm-up calls. The figure is the median over the pairs of head's time / base's
time (below 1: head is faster), so that a burst of load from another process hits both sides
of a pair alike.

A case is ``cell:precision:mode:T,B,I,H`` with mode ``seq`` (``functional.cell_forward``,
inference, prepared weights), ``train`` (forward with the training cache + ``cell_backward``)
or ``stream`` (T batch-B steps of ``_native.Stream``)::

    python bench/ab_precision.py --base ../base --head . --threads 1 \\
        --cases "lstm:int8:seq:200,1,64,64;lstm:bfloat16:train:50,16,256,256"
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import sys, time
import numpy as np
cell, prec, mode = sys.argv[1], sys.argv[2], sys.argv[3]
T, B, I, H, calls, threads = map(int, sys.argv[4:10])
import fastrnn
from fastrnn import functional as F, _native
fastrnn.set_num_threads(threads)
G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
rng = np.random.default_rng(0)
k = 1 / np.sqrt(H)
w = [rng.uniform(-k, k, s).astype(np.float32)
     for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
x = rng.standard_normal((T, B, I)).astype(np.float32)
kw = {"nonlinearity": "tanh"} if cell == "rnn" else {}
if mode == "stream":
    st = _native.Stream([(cell, *w, "tanh")], B, np.float32, prec)
    def f():
        for t in range(T):
            st.step(x[t])
else:
    pw = F.prepare_weights(cell, *w, precision=prec, check="identity")
    dy = np.ones((T, B, H), np.float32)
    def f():
        out = F.cell_forward(cell, x, None, None, *w, training=mode == "train", precision=prec,
                             prepared=pw, **kw)
        if mode == "train":
            F.cell_backward(out[3], dy, None, None)
f()
f()
ts = []
for _ in range(calls):
    t0 = time.perf_counter()
    f()
    ts.append(time.perf_counter() - t0)
print(min(ts) * 1e3)
"""


def _time(root: str, case: str, calls: int, threads: int) -> float:
    cell, prec, mode, row = case.split(":")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(root), "src"))
    out = subprocess.run([sys.executable, "-c", _CHILD, cell, prec, mode, *row.split(","),
                          str(calls), str(threads)], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="checkout of the build to compare against")
    ap.add_argument("--head", required=True, help="checkout of the changed build")
    ap.add_argument("--cases", required=True, help="cell:precision:mode:T,B,I,H separated by ;")
    ap.add_argument("--pairs", type=int, default=5, help="alternating subprocess pairs")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per subprocess (best)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for case in args.cases.split(";"):
        tb, th, ratio = [], [], []
        for _ in range(args.pairs):
            b = _time(args.base, case, args.calls, args.threads)
            h = _time(args.head, case, args.calls, args.threads)
            tb.append(b)
            th.append(h)
            ratio.append(h / b)
        print(f"{case}: base {statistics.median(tb):.3f} ms, head {statistics.median(th):.3f} ms,"
              f" head/base {statistics.median(ratio):.2f} (load {os.getloadavg()[0]:.1f})",
              flush=True)


if __name__ == "__main__":
    main()
