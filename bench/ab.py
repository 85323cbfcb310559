"""Paired A/B of two builds of fastrnn: is a change faster, slower or neutral?

Each checkout must have its extension built in place (``python setup.py build_ext
--inplace``). For every case, subprocesses alternate between the two checkouts (base, head,
base, head, ...); each times the case's best of ``--calls`` calls after a warm-up through
``fastrnn.functional``'s per-cell ops (every version since the cell table has them). The
figure is the median over the pairs of head's time / base's time: below 1 is faster. A
burst of load from another process hits both sides of a pair alike, which a comparison of
two separate runs cannot promise on a shared machine.

    python bench/ab.py --base ../base-checkout --head . --pairs 9
    python bench/ab.py --base ../base --head . --cases lstm:inference:100,32,128,128
    python bench/ab.py --base ../base --head . --first --calls 10   # a new process's first calls
    python bench/ab.py --base ../base --head . --offgrid --threads 1 --clock cpu

``--offgrid`` runs shapes off the microkernel tiles (H and B not multiples of them, I != H).
``--clock cpu`` times with the process's CPU time instead of the wall clock: with one thread it
leaves out the time the process waits for a core on a loaded machine (with two, a spinning
thread's wait counts as CPU time, so use it with ``--threads 1``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

#: cell:mode:T,B,I,H — the small and medium grid rows, batch-1 stream rows and an off-grid one.
DEFAULT_CASES = [
    "lstm:inference:200,1,64,64", "lstm:training:200,1,64,64",
    "lstm:inference:100,32,128,128", "lstm:training:100,32,128,128",
    "lstm:inference:50,16,256,256", "lstm:training:50,16,256,256",
    "gru:inference:100,32,128,128", "gru:training:100,32,128,128",
    "rnn:inference:200,1,64,64", "rnn:training:100,32,128,128",
    "lstm:inference:60,24,100,200", "gru:training:40,48,300,300",
]

#: Off the tiles (AVX-512 float: 12 rows x 32 columns; AVX2: 6 x 16): the issue's H = 200 and
#: H = 300 rows and their B = 7, 24, 48 and H = 72, 100, 136 neighbours, LSTM and GRU.
OFFGRID_CASES = [
    "lstm:inference:60,24,100,200", "lstm:training:60,24,100,200",
    "gru:inference:60,24,100,200", "gru:training:60,24,100,200",
    "lstm:inference:40,48,300,300", "lstm:training:40,48,300,300",
    "lstm:inference:60,7,40,72", "gru:inference:60,24,40,72",
    "lstm:inference:60,24,70,136", "gru:training:60,48,70,136",
    "lstm:inference:60,7,50,100", "lstm:inference:100,1,100,200",
]

_CHILD = r"""
import sys, time
import numpy as np
from fastrnn import functional as F
cell, mode, T, B, I, H, calls, threads, first, fifo = (sys.argv[1], sys.argv[2],
                                                       *map(int, sys.argv[3:11]))
clock = time.process_time if sys.argv[11] == "cpu" else time.perf_counter
import fastrnn
fastrnn.set_num_threads(threads)
from fastrnn._cells import CELLS
G, has_c = CELLS[cell].gates, CELLS[cell].has_cell_state
rng = np.random.default_rng(0)
x = rng.standard_normal((T, B, I), dtype=np.float32)
w = rng.standard_normal((G * H, I), dtype=np.float32) * 0.1
u = rng.standard_normal((G * H, H), dtype=np.float32) * 0.1
b = np.zeros(G * H, np.float32)
dy = np.ones((T, B, H), np.float32)
if fifo:  # from here on (the calls; threads started later inherit it)
    import os
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
fw, bw = getattr(F, cell + "_forward"), getattr(F, cell + "_backward")
def run():
    if has_c:
        y, h, c, ctx = fw(x, None, None, w, u, b, b, training=mode == "training")
        if ctx is not None:
            bw(ctx, dy, None, None)
    else:
        y, h, ctx = fw(x, None, w, u, b, b, training=mode == "training")
        if ctx is not None:
            bw(ctx, dy, None)
if first:  # the process's first calls, no warm-up: their total time
    t0 = time.perf_counter()
    for _ in range(calls):
        run()
    print(time.perf_counter() - t0)
    sys.exit()
run(); run()
best = float("inf")
for _ in range(calls):
    t0 = clock(); run(); best = min(best, clock() - t0)
print(best)
"""


def _time(root: str, case: str, calls: int, threads: int, first: bool = False,
          fifo: bool = False, clock: str = "wall") -> float:
    cell, mode, shape = case.split(":")
    root = os.path.abspath(root)
    src = os.path.join(root, "src")  # the package's home: src/ (or the root, before src/)
    env = {**os.environ, "PYTHONPATH": src if os.path.isdir(src) else root}
    out = subprocess.run([sys.executable, "-c", _CHILD, cell, mode, *shape.split(","),
                          str(calls), str(threads), str(int(first)), str(int(fifo)), clock],
                         env=env, cwd=os.path.abspath(root), capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the A/B and print one line per case; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="checkout of the build to compare against")
    p.add_argument("--head", required=True, help="checkout of the changed build")
    p.add_argument("--cases", default=";".join(DEFAULT_CASES),
                   help="cell:mode:T,B,I,H cases separated by ';'")
    p.add_argument("--pairs", type=int, default=7, help="alternating subprocess pairs")
    p.add_argument("--calls", type=int, default=15, help="timed calls per subprocess (best)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--offgrid", action="store_true",
                   help="run the off-grid cases (OFFGRID_CASES) instead of --cases")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall clock, or the process's CPU time (for --threads 1)")
    p.add_argument("--first", action="store_true",
                   help="time the total of each fresh process's first --calls calls (no warm-up) "
                        "instead of the best call after a warm-up")
    p.add_argument("--fifo", action="store_true",
                   help="run each process's calls under SCHED_FIFO priority 1 (root only): a "
                        "stand-in for a quiet machine on a shared one, where other processes "
                        "would otherwise take the cores; keep such runs short")
    a = p.parse_args(argv)
    what = f"total of the first {a.calls} calls" if a.first else f"best of {a.calls} calls"
    what += ", SCHED_FIFO" if a.fifo else ""
    what += f", {a.clock} clock"
    print(f"A/B head={a.head} base={a.base}: median over {a.pairs} pairs of head/base "
          f"({what} each, {a.threads} threads)")
    cases = OFFGRID_CASES if a.offgrid else a.cases.split(";")
    for case in cases:
        ratios, base_t, head_t = [], [], []
        for _ in range(a.pairs):
            tb = _time(a.base, case, a.calls, a.threads, a.first, a.fifo, a.clock)
            th = _time(a.head, case, a.calls, a.threads, a.first, a.fifo, a.clock)
            ratios.append(th / tb)
            base_t.append(tb)
            head_t.append(th)
        # min/min: the two builds' quietest moments, which load spikes can only make rarer
        print(f"{case:34s} base {statistics.median(base_t) * 1e3:9.3f} ms   head/base "
              f"{statistics.median(ratios):.3f}  (range {min(ratios):.3f}-{max(ratios):.3f}, "
              f"min/min {min(head_t) / min(base_t):.3f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
