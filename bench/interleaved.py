"""fastrnn, torch.nn and ONNX Runtime in one process, a block of calls of each in turn.

On a shared, noisy machine the time of one call drifts by tens of percent within minutes, so a
comparison of two separate runs says little. Here every round times a block of calls of each
implementation (the bench's runners: fastrnn on weights prepared once, torch.nn under
``inference_mode``, an ONNX Runtime session), the order alternating between rounds, and the
figure is the median over rounds of the other implementation's time / fastrnn's in the same
round (> 1: fastrnn is faster), with the lowest round's ratio.

    python bench/interleaved.py --cases lstm:inference:50,20,70,130 --threads 1
    python bench/interleaved.py --cases "lstm:inference:60,24,100,200;gru:training:40,48,300,300"
    python bench/interleaved.py --pause 0.25 --impls fastrnn,onnxruntime

``--pause`` sleeps before each block (and makes one untimed call after it), so that the idle
worker threads of the library measured before stop spinning: ONNX Runtime's stay runnable for
30-100 ms after a call, libgomp's (torch's, fastrnn's) a few ms. Without it each block runs
right after another library's, which is a condition of its own (``fastrnn bench --pipeline``
measures those).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="lstm:inference:50,20,70,130",
                   help="cell:mode:T,B,I,H, separated by ';'")
    p.add_argument("--impls", default="fastrnn,torch,onnxruntime",
                   help="comma-separated, fastrnn first (ONNX Runtime: inference only)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--block-s", type=float, default=0.05, help="seconds of calls in a block")
    p.add_argument("--pause", type=float, default=0.0, help="seconds of sleep before a block")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print one line per case; returns the exit status."""
    args = _parse(argv)
    if args.threads < 1 or args.rounds < 1:
        print("--threads and --rounds must be >= 1", file=sys.stderr)
        return 2
    impls = args.impls.split(",")
    if impls[0] != "fastrnn":
        print("--impls must start with fastrnn", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from fastrnn.bench.machine import prepare_threads

    prepare_threads(args.threads)  # before numpy loads OpenBLAS
    from fastrnn.bench.cases import Case, make_params
    from fastrnn.bench.runners import build_runner

    for spec in args.cases.split(";"):
        cell, mode, shape = spec.split(":")
        T, B, I, H = map(int, shape.split(","))
        case = Case("case", T, B, I, H, cell, mode)
        p = make_params(case)
        runs = {im: build_runner(im, case, p, args.threads) for im in impls
                if im != "onnxruntime" or mode == "inference"}
        for run in runs.values():  # warm-up
            for _ in range(3):
                run()
        t0 = time.perf_counter()
        runs["fastrnn"]()
        n = max(1, int(args.block_s / max(time.perf_counter() - t0, 1e-6)))
        times: dict[str, list[float]] = {im: [] for im in runs}
        for r in range(args.rounds):
            order = list(runs) if r % 2 == 0 else list(runs)[::-1]
            for im in order:
                if args.pause:
                    time.sleep(args.pause)
                    runs[im]()
                t0 = time.perf_counter()
                for _ in range(n):
                    runs[im]()
                times[im].append((time.perf_counter() - t0) / n * 1e3)
        line = f"{spec}: fastrnn {statistics.median(times['fastrnn']):.3f} ms"
        for im, ts in times.items():
            if im == "fastrnn":
                continue
            ratios = [o / f for o, f in zip(ts, times["fastrnn"], strict=True)]
            line += (f" | {im} {statistics.median(ts):.3f} ms, x {statistics.median(ratios):.2f}"
                     f" (lowest round {min(ratios):.2f})")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
