"""Paired, interleaved timings of the PyTorch drop-in (issue 24).

``grid``: fastrnn.torch's drop-in against torch.nn on the benchmark's grid rows
(:data:`fastrnn.bench.cases.ROWS`), every cell, inference and training. ``compile``:
``torch.compile`` of an accelerated model against the same model eager, and, as torch's own
fixed cost, ``torch.compile`` of a trivial module with the same outputs (y, (h, c)) against
that module eager.

The two sides of a pair run back to back (the order alternates), so that a burst of load
hits both alike; a figure is the median over the pairs of one side's call time, and the
ratio is the median of the per-pair ratios. Inference runs under ``torch.no_grad()``;
training is a forward and ``backward`` of ``y.sum() + h.sum()`` (+ ``c.sum()``), all
gradients (input and weights).

    python bench/bench_torch_dropin.py grid --threads 2 --pairs 30
    python bench/bench_torch_dropin.py compile --threads 2 --pairs 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch
from torch import nn

import fastrnn
import fastrnn.torch as ft
from fastrnn.bench.cases import ROWS

KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
#: (T, B, I, H) rows of the compile comparison
COMPILE_ROWS = [(50, 1, 32, 32), (200, 1, 64, 64), (100, 32, 128, 128)]


def _loss(out) -> torch.Tensor:
    y, h = out
    return y.sum() + (h[0].sum() + h[1].sum() if isinstance(h, tuple) else h.sum())


def _call(module, x: torch.Tensor, mode: str) -> float:
    t = time.perf_counter()
    if mode == "inference":
        with torch.no_grad():
            module(x)
    else:
        _loss(module(x)).backward()
    return time.perf_counter() - t


def paired(a, b, x: torch.Tensor, mode: str, pairs: int, warmup: int = 3) -> tuple:
    """Median call times of ``a`` and ``b`` (s) and the median of per-pair ratios a/b."""
    xs = x.detach().requires_grad_(mode == "training")
    for _ in range(warmup):
        _call(a, xs, mode)
        _call(b, xs, mode)
    ta, tb = [], []
    for i in range(pairs):
        if i % 2:
            tb.append(_call(b, xs, mode))
            ta.append(_call(a, xs, mode))
        else:
            ta.append(_call(a, xs, mode))
            tb.append(_call(b, xs, mode))
    ratios = [p / q for p, q in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def _us(s: float) -> str:
    return f"{s * 1e6:.0f} µs" if s < 1e-2 else f"{s * 1e3:.1f} ms"


def grid(args) -> None:
    print("| row (T,B,I,H) | cell | mode | torch.nn | drop-in | torch.nn / drop-in |")
    print("|---|---|---|---|---|---|")
    for name in args.rows:
        T, B, I, H = ROWS[name]
        for cell in args.cells:
            torch.manual_seed(0)
            ref = KINDS[cell](I, H)
            fast = ft.accelerate(KINDS[cell](I, H))
            fast.load_state_dict(ref.state_dict())
            x = torch.randn(T, B, I)
            for mode in args.modes:
                n = args.pairs if T * B * H < 1_000_000 else max(5, args.pairs // 4)
                t_ref, t_fast, r = paired(ref, fast, x, mode, n)
                print(f"| {name} {ROWS[name]} | {cell} | {mode} | {_us(t_ref)} | "
                      f"{_us(t_fast)} | {r:.2f}x |", flush=True)


class _Trivial(nn.Module):
    """Outputs shaped as an LSTM's, from a few element-wise ops (torch.compile's own cost)."""

    def __init__(self, I: int, H: int) -> None:  # noqa: E741
        super().__init__()
        self.H = H
        self.w = nn.Parameter(torch.randn(4 * H, I))
        self.b = nn.Parameter(torch.randn(4 * H))

    def forward(self, x):
        y = torch.tanh(x[..., :1] * self.w[: self.H, 0] + self.b[: self.H])
        return y, (y[-1:] * 1.0, y[-1:] * 2.0)


def compile_(args) -> None:
    print("| (T,B,I,H) | mode | eager fastrnn | compiled fastrnn | compiled / eager | "
          "trivial module eager | compiled | compiled / eager |")
    print("|---|---|---|---|---|---|---|---|")
    for T, B, I, H in COMPILE_ROWS:
        torch.manual_seed(0)
        fast = ft.LSTM(I, H)
        compiled = torch.compile(fast)
        trivial = _Trivial(I, H)
        trivial_c = torch.compile(trivial)
        x = torch.randn(T, B, I)
        for mode in args.modes:
            n = args.pairs if T * B * H < 100_000 else max(20, args.pairs // 5)
            t_c, t_e, r = paired(compiled, fast, x, mode, n, warmup=10)
            u_c, u_e, s = paired(trivial_c, trivial, x, mode, n, warmup=10)
            print(f"| {(T, B, I, H)} | {mode} | {_us(t_e)} | {_us(t_c)} | {r:.2f} "
                  f"(+{(t_c - t_e) * 1e6:.0f} µs) | {_us(u_e)} | {_us(u_c)} | {s:.2f} "
                  f"(+{(u_c - u_e) * 1e6:.0f} µs) |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["grid", "compile"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--cells", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--modes", nargs="+", default=["inference", "training"],
                   choices=["inference", "training"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fastrnn.set_num_threads(args.threads)
    warnings.simplefilter("error", ft.FallbackWarning)
    print(f"threads {args.threads}, torch {torch.__version__}, load {os.getloadavg()}")
    (grid if args.what == "grid" else compile_)(args)
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
