"""GEMM throughput: numpy's ``a @ b`` (OpenBLAS) against fastrnn's packed GEMM.

For every row (T, B, I, H) of the public grid and G in {1, 3, 4} it times the two products an RNN
layer makes, float32, with the same thread count for both libraries:

- ``proj``: the input projection of all steps, (T*B, I) x (I, G*H);
- ``rec``: one recurrent step, (B, H) x (H, G*H);
- ``wgrad``: the backward's input-weight gradient over all steps, (T*B, G*H)^T x (T*B, I): op(A)
  transposed (numpy ``a.T @ b``, fastrnn ``gemm(a, b, transa=True)``).

Usage::

    python bench/bench_gemm.py --threads 2 --repeats 7

Each library's median over ``--rounds`` blocks of ``--repeats`` timed calls is reported (blocks
alternate between the libraries, with a pause in between so that neither library's idle worker
threads, which spin for a while after a call, steal cores from the other), and the best call,
which is what the code can do when no other process takes a core: on a shared machine the
median of a multi-threaded call swings with the load (printed at the start and the end).
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for both libraries")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per block")
    p.add_argument("--rounds", type=int, default=3, help="alternating blocks per library")
    p.add_argument("--pause", type=float, default=0.3, help="seconds between blocks")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--arch", default=None, help="fastrnn SIMD path (default: best)")
    return p.parse_args()


ARGS = _parse()
# numpy's OpenBLAS reads its thread count when it is loaded: set it before importing numpy.
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
if "numpy" in sys.modules:  # pragma: no cover - only when imported, not run as a script
    raise RuntimeError("bench_gemm must be run as a script (numpy already imported)")

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fastrnn import _kernels  # noqa: E402

GRID = [
    ("stream", 200, 1, 64, 64),
    ("small", 100, 32, 128, 128),
    ("medium", 50, 16, 256, 256),
    ("large", 100, 64, 512, 512),
    ("xlarge", 100, 64, 1024, 1024),
]
GATES = [1, 3, 4]


def _block(fn, repeats: int) -> list[float]:
    fn()
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    nt = ARGS.threads
    dt = np.dtype(ARGS.dtype)
    if ARGS.arch:
        _kernels.set_arch(ARGS.arch)
    info = _kernels.kernel_info()
    print(f"# cpu: {_cpu_name()}; fastrnn path {info['arch']} "
          f"(mr x nr = {info[dt.name]['mr']} x {info[dt.name]['nr']}); numpy {np.__version__}; "
          f"{dt.name}; threads {nt}; {ARGS.rounds} x {ARGS.repeats} calls; load {_load()}")
    print(f"{'':33s} {'----- median -----':>26s}   {'------ best ------':>26s}")
    print(f"{'row':8s} {'G':>1s} {'op':4s} {'M x K x N':>18s} {'numpy':>8s} {'fastrnn':>8s} "
          f"{'ratio':>6s}   {'numpy':>8s} {'fastrnn':>8s} {'ratio':>6s}   (GFLOP/s)")
    rng = np.random.default_rng(0)
    ratios, best = [], []
    for name, T, B, I, H in GRID:
        for G in GATES:
            for op, (M, K, N), ta in (("proj", (T * B, I, G * H), False),
                                      ("rec", (B, H, G * H), False),
                                      ("wgrad", (G * H, T * B, I), True)):
                a = rng.standard_normal((K, M) if ta else (M, K)).astype(dt)
                b = rng.standard_normal((K, N)).astype(dt)
                opa = a.T if ta else a
                ref = opa.astype(np.float64) @ b.astype(np.float64)
                got = _kernels.gemm(a, b, transa=ta, nthreads=nt)
                tol = 1e-4 if dt == np.float32 else 1e-12
                err = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30)
                if err > tol:
                    raise AssertionError(f"{name} G={G} {op}: relative error {err:.2e}")
                tn, tf = [], []
                for _ in range(ARGS.rounds):
                    tn += _block(lambda a=opa, b=b: a @ b, ARGS.repeats)
                    time.sleep(ARGS.pause)
                    tf += _block(lambda a=a, b=b, ta=ta: _kernels.gemm(a, b, transa=ta,
                                                                        nthreads=nt),
                                 ARGS.repeats)
                    time.sleep(ARGS.pause)
                flops = 2.0 * M * N * K
                gn, gf = flops / np.median(tn) / 1e9, flops / np.median(tf) / 1e9
                bn, bf = flops / min(tn) / 1e9, flops / min(tf) / 1e9
                ratios.append(gf / gn)
                best.append(bf / bn)
                print(f"{name:8s} {G:1d} {op:4s} {f'{M}x{K}x{N}':>18s} {gn:8.1f} {gf:8.1f} "
                      f"{gf / gn:6.2f}   {bn:8.1f} {bf:8.1f} {bf / bn:6.2f}", flush=True)
    for what, r in (("median", np.array(ratios)), ("best", np.array(best))):
        gmean = np.exp(np.log(r).mean())
        print(f"# {what} ratio fastrnn/numpy: min {r.min():.2f}, geometric mean {gmean:.2f}, "
              f"median {np.median(r):.2f}, rows >= 0.95: {int((r >= 0.95).sum())}/{r.size}")
    print(f"# load at the end: {_load()}")


if __name__ == "__main__":
    main()
