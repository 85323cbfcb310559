"""Fuzz campaign for fastrnn's C kernels, through the lowest Python bridge and the functional ops.

Random and hostile calls of ``fastrnn._kernels`` (cell_forward / cell_backward, gemm, ukr,
sigmoid / tanh, cache_size, Stream) and of ``fastrnn.functional`` (forward and backward, with
mismatched or reused contexts): wrong shapes, huge and negative sizes, empty arrays, wrong
dtypes, None and non-arrays in odd places, non-contiguous and read-only buffers, NaN/inf
values, bad enums and thread counts.

The cases run in a child process, so a crash (segfault, abort) or a hang is caught: the runner
reports the case with its reproducer, starts a new child and goes on with the next case. Each
case is generated from (seed, index) alone and selects its SIMD path itself, so any case can be
replayed on its own::

    python tools/fuzz.py --cases 2000 --seed 1 --timeout 10     # a campaign
    python tools/fuzz.py --seed 1 --replay 137                  # one case, in this process

Outcomes: ``ok``, or the exception type raised. ValueError, TypeError, OverflowError and
MemoryError are expected for bad input (the message names the argument); any other exception
type is reported as unexpected. Exit status 1 on any crash, hang or unexpected exception.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import subprocess
import sys
import time
import traceback

import numpy as np

from fastrnn._cells import CELLS as CELL_TABLE

EXPECTED = ("ValueError", "TypeError", "OverflowError", "MemoryError")
#: Gate count of each cell, from the cell table.
CELLS = {name: c.gates for name, c in CELL_TABLE.items()}
HUGE = 2**40


# ------------------------------------------------------------------------------ case generation


class Gen:
    """Random arguments for one case; ``log`` records every choice for the reproducer."""

    def __init__(self, seed: int, index: int) -> None:
        self.rng = np.random.default_rng([seed, index])
        self.log: list[str] = []

    def pick(self, options, p=None):
        return options[self.rng.choice(len(options), p=p)]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def fill(self, shape, dtype) -> np.ndarray:
        size = int(np.prod(shape)) if len(shape) else 1
        if size > 10**7:  # huge sizes without their memory: a zero-stride (broadcast) view
            return np.broadcast_to(np.zeros((), dtype), shape)
        v = self.rng.standard_normal(size)
        mode = self.pick(["normal", "normal", "normal", "nan", "inf", "big"])
        if mode in ("nan", "inf") and size:
            v[self.rng.integers(0, size, max(1, size // 7))] = np.nan if mode == "nan" else np.inf
        elif mode == "big":
            v *= 1e30
        return v.reshape(shape).astype(dtype)

    def mutate(self, name: str, a, dtype, out: bool = False):
        """A hostile replacement for argument ``name`` (an array or None)."""
        kind = self.pick(["none", "shape", "dtype", "layout", "readonly", "list", "scalar",
                          "string", "empty-huge", "object", "0d"])
        shape = list(a.shape) if isinstance(a, np.ndarray) else [2, 3]
        self.log.append(f"{name}<-{kind}")
        if kind == "none":
            return None
        if kind == "shape":
            if shape and self.chance(0.7):
                k = int(self.rng.integers(len(shape)))
                shape[k] = max(0, shape[k] + self.pick([-1, 1, 5]))
            elif self.chance(0.5):
                shape.append(1)
            elif shape:
                shape.pop()
            return self.fill(tuple(shape), dtype)
        if kind == "dtype":
            bad = self.pick([np.int64, np.int32, np.float16, np.complex64, np.bool_, object,
                             np.float32 if np.dtype(dtype) == np.float64 else np.float64])
            if np.prod(shape) > 10**7:
                return np.broadcast_to(np.zeros((), bad), shape)
            return np.zeros(shape, bad)
        if kind == "layout":
            if not isinstance(a, np.ndarray) or a.ndim == 0 or max(a.shape) > 10**6:
                return a
            big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
            if self.chance(0.5):
                return big[tuple(slice(None, 2 * s, 2) for s in a.shape)]
            return np.asfortranarray(a) if self.chance(0.5) else a[..., ::-1]
        if kind == "readonly":
            if isinstance(a, np.ndarray):
                a = a.copy()
                a.flags.writeable = False
            return a
        if kind == "list":
            return a.tolist() if isinstance(a, np.ndarray) else [1, 2]
        if kind == "scalar":
            return self.pick([3.0, 0, -1, np.float64(2.0)])
        if kind == "string":
            return "abc"
        if kind == "empty-huge":  # no element, but huge sizes along the other axes
            n = max(1, len(shape))
            dims = [HUGE, 2**18, 0][-n:] if n <= 3 else [HUGE, 2**18] + [0] * (n - 2)
            return np.empty(tuple(dims[k] for k in self.rng.permutation(n)), dtype)
        if kind == "object":
            return object()
        return np.array(1.5, dtype)


def _sizes(g: Gen):
    T = g.pick([0, 1, 2, 3, 5, 17])
    B = g.pick([0, 1, 2, 3, 7])
    I = g.pick([0, 1, 3, 8])
    H = g.pick([1, 2, 5, 16, 17, 33])
    return T, B, I, H


def _cell_arrays(g: Gen, cell: str, dtype, T, B, I, H):
    G = CELLS[cell]
    from fastrnn import _kernels

    a = {
        "y": np.empty((T, B, H), dtype), "h_n": np.empty((B, H), dtype),
        "c_n": np.empty((B, H), dtype) if cell == "lstm" else None,
        "cache": np.empty(_kernels.cache_size(cell, T, B, H), dtype) if g.chance(0.7) else None,
        "x": g.fill((T, B, I), dtype), "h0": g.fill((B, H), dtype) if g.chance(0.7) else None,
        "c0": g.fill((B, H), dtype) if cell == "lstm" and g.chance(0.7) else None,
        "w_ih": g.fill((G * H, I), dtype), "w_hh": g.fill((G * H, H), dtype),
        "b_ih": g.fill((G * H,), dtype) if g.chance(0.7) else None,
        "b_hh": g.fill((G * H,), dtype) if g.chance(0.7) else None,
        "lengths": g.rng.integers(0, T + 1, B).astype(np.int64) if g.chance(0.5) else None,
    }
    return a


FWD_ORDER = ["y", "h_n", "c_n", "cache", "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh",
             "lengths"]
BWD_ORDER = ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh", "cache", "x", "w_ih",
             "w_hh", "dy", "dh_n", "dc_n", "lengths"]


def _scalars(g: Gen, cell: str):
    act = g.pick([0, 1]) if g.chance(0.9) else g.pick([-1, 2, 2**31 - 1, -(2**31)])
    rev = g.pick([False, True])
    nt = g.pick([1, 2]) if g.chance(0.9) else g.pick([0, -1, 64, 10**6])
    if g.chance(0.05):
        cell = g.pick(["bogus", "RNN", ""])
        g.log.append(f"cell<-{cell!r}")
    return cell, act, rev, nt


def case_cell(g: Gen, backward: bool):
    from fastrnn import _kernels

    cell = g.pick(list(CELLS))
    dtype = g.pick([np.float32, np.float64])
    T, B, I, H = _sizes(g)
    g.log.append(f"{'cell_backward' if backward else 'cell_forward'} {cell} "
                 f"{np.dtype(dtype).name} T={T} B={B} I={I} H={H}")
    a = _cell_arrays(g, cell, dtype, T, B, I, H)
    if backward:
        G = CELLS[cell]
        if a["cache"] is None or g.chance(0.5):  # garbage cache: any values are allowed
            a["cache"] = g.fill((_kernels.cache_size(cell, T, B, H),), dtype)
        else:
            _kernels.cell_forward(cell, a["y"], a["h_n"], a["c_n"], a["cache"], a["x"], a["h0"],
                                  a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                  a["lengths"], 0, False, 1)
        a.update(dx=np.empty((T, B, I), dtype), dh0=np.empty((B, H), dtype),
                 dc0=np.empty((B, H), dtype) if cell == "lstm" else None,
                 dw_ih=np.zeros((G * H, I), dtype), dw_hh=np.zeros((G * H, H), dtype),
                 db_ih=np.zeros(G * H, dtype) if g.chance(0.7) else None,
                 db_hh=np.zeros(G * H, dtype) if g.chance(0.7) else None,
                 dy=g.fill((T, B, H), dtype) if g.chance(0.8) else None,
                 dh_n=g.fill((B, H), dtype) if g.chance(0.8) else None,
                 dc_n=g.fill((B, H), dtype) if cell == "lstm" and g.chance(0.8) else None)
    order = BWD_ORDER if backward else FWD_ORDER
    for _ in range(g.pick([0, 0, 0, 1, 1, 2, 3])):
        n = g.pick(order)
        if n == "lengths" and g.chance(0.5):
            bad = g.pick([[-1], [T + 1], [2**62], [-(2**62)]]) * max(B, 1)
            a[n] = np.array(bad[:max(B, 1)], np.int64)
            g.log.append(f"lengths<-{a[n].tolist()}")
        else:
            a[n] = g.mutate(n, a[n], dtype)
    cell, act, rev, nt = _scalars(g, cell)
    g.log.append(f"act={act} reverse={rev} nthreads={nt}")
    fn = _kernels.cell_backward if backward else _kernels.cell_forward
    return lambda: fn(cell, *[a[n] for n in order], act, rev, nt)


def case_gemm(g: Gen):
    from fastrnn import _kernels

    dtype = g.pick([np.float32, np.float64])
    M, N, K = (g.pick([0, 1, 2, 5, 17, 65]) for _ in range(3))
    ta, tb = g.pick([False, True]), g.pick([False, True])
    A = g.fill((K, M) if ta else (M, K), dtype)
    B = g.fill((N, K) if tb else (K, N), dtype)
    C = g.fill((M, N), dtype) if g.chance(0.5) else None
    beta = g.pick([0.0, 1.0]) if g.chance(0.9) else g.pick([0.5, -1.0, np.nan])
    nt = g.pick([1, 2]) if g.chance(0.9) else g.pick([0, -3, 1000])
    g.log.append(f"gemm {np.dtype(dtype).name} M={M} N={N} K={K} ta={ta} tb={tb} beta={beta} "
                 f"C={'given' if C is not None else None} nthreads={nt}")
    args = {"A": A, "B": B, "C": C}
    for _ in range(g.pick([0, 1, 2])):
        n = g.pick(list(args))
        args[n] = g.mutate(n, args[n], dtype)
    if g.chance(0.2) and isinstance(args["C"], np.ndarray) and args["C"].ndim == 2:
        if isinstance(args["A"], np.ndarray) and args["A"].shape == args["C"].shape:
            args["C"] = args["A"]  # C aliases A
            g.log.append("C<-A (alias)")
    return lambda: _kernels.gemm(args["A"], args["B"], args["C"], transa=ta, transb=tb,
                                 beta=beta, nthreads=nt)


def case_ukr(g: Gen):
    from fastrnn import _kernels

    dtype = g.pick([np.float32, np.float64])
    k = _kernels.kernel_info()[np.dtype(dtype).name]
    m = g.pick([0, 1, k["mr"], k["mr"] + 1])
    K = g.pick([0, 1, 7])
    args = {"A": g.fill((m, K), dtype), "Bp": g.fill((K, k["nr"]), dtype),
            "C": g.fill((m, k["nr"]), dtype)}
    g.log.append(f"ukr {np.dtype(dtype).name} m={m} K={K} mr={k['mr']} nr={k['nr']}")
    for _ in range(g.pick([0, 1, 2])):
        n = g.pick(list(args))
        args[n] = g.mutate(n, args[n], dtype)
    acc = g.pick([False, True])
    return lambda: _kernels.ukr(args["A"], args["Bp"], args["C"], accumulate=acc)


def case_act(g: Gen):
    from fastrnn import _kernels

    dtype = g.pick([np.float32, np.float64])
    shape = tuple(g.pick([0, 1, 3, 33]) for _ in range(g.pick([0, 1, 2, 3])))
    x = g.fill(shape, dtype)
    if g.chance(0.3):
        x = g.mutate("x", x, dtype)
    fn = g.pick([_kernels.sigmoid, _kernels.tanh])
    g.log.append(f"{fn.__name__} shape={shape}")
    return lambda: fn(x)


def case_cache_size(g: Gen):
    from fastrnn import _kernels

    vals = [0, 1, -1, 2**31, 2**32 + 1, 2**62, 2**63 - 1, -(2**63), 2**64, 3]
    cell = g.pick(["rnn", "lstm", "gru", "bogus"])
    dims = [g.pick(vals) for _ in range(3)]
    g.log.append(f"cache_size {cell} {dims}")
    return lambda: _kernels.cache_size(cell, *dims)


def case_stream(g: Gen):
    from fastrnn import _kernels

    dtype = g.pick([np.float32, np.float64])
    B = g.pick([1, 2, 3]) if g.chance(0.9) else g.pick([0, -1])
    layers, width = [], g.pick([1, 4, 9])
    first_width = width
    if g.chance(0.2):
        V = g.pick([1, 5])
        layers.append(("embedding", g.fill((V, width), dtype)))
        first_width = V
    for _ in range(g.pick([1, 2, 3])):
        kind = g.pick(["rnn", "lstm", "gru", "dense"])
        H = g.pick([1, 5, 17])
        if kind == "dense":
            act = g.pick(["linear", "relu", "tanh", "sigmoid", "softmax"])
            layers.append(("dense", g.fill((width, H), dtype),
                           g.fill((H,), dtype) if g.chance(0.5) else None, act))
        else:
            G = CELLS[kind]
            layers.append((kind, g.fill((G * H, width), dtype), g.fill((G * H, H), dtype),
                           g.fill((G * H,), dtype) if g.chance(0.5) else None,
                           g.fill((G * H,), dtype) if g.chance(0.5) else None,
                           g.pick(["tanh", "relu"])))
        width = H
    if g.chance(0.3):  # a hostile layer spec
        i = int(g.rng.integers(len(layers)))
        spec = list(layers[i])
        j = int(g.rng.integers(len(spec)))
        spec[j] = g.mutate(f"layer{i}[{j}]", spec[j] if isinstance(spec[j], np.ndarray)
                           else None, dtype)
        layers[i] = tuple(spec) if g.chance(0.9) else tuple(spec[:-1])
    T = g.pick([0, 1, 4])
    embed = layers[0][0] == "embedding"
    if embed:
        xs = g.rng.integers(-1 if g.chance(0.2) else 0, first_width + 1, (T, max(B, 1)))
    else:
        xs = g.fill((T, max(B, 1), first_width), dtype)
    if g.chance(0.3):
        xs = g.mutate("xs", xs, dtype)
    g.log.append(f"Stream {[s[0] if isinstance(s[0], str) else '?' for s in layers]} B={B} "
                 f"T={T} {np.dtype(dtype).name}")

    def run():
        s = _kernels.Stream(layers, B, dtype)
        s.run(xs)
        if isinstance(xs, np.ndarray) and xs.ndim >= 1 and len(xs):
            s.step(xs[0])
        s.reset()
        s.states()

    return run


def case_functional(g: Gen):
    import fastrnn.functional as F
    import fastrnn.reference as R

    cell = g.pick(["rnn", "lstm", "gru"])
    dtype = g.pick([np.float32, np.float64])
    T, B, I, H = _sizes(g)
    G = CELLS[cell]
    a = {"x": g.fill((T, B, I), dtype), "h0": g.fill((B, H), dtype) if g.chance(0.6) else None,
         "c0": g.fill((B, H), dtype) if cell == "lstm" and g.chance(0.6) else None,
         "w_ih": g.fill((G * H, I), dtype), "w_hh": g.fill((G * H, H), dtype),
         "b_ih": g.fill((G * H,), dtype) if g.chance(0.7) else None,
         "b_hh": g.fill((G * H,), dtype) if g.chance(0.7) else None}
    kw = {"lengths": g.rng.integers(0, T + 1, B) if g.chance(0.5) else None,
          "reverse": g.pick([False, True]), "training": g.pick([True, True, False])}
    g.log.append(f"functional {cell} {np.dtype(dtype).name} T={T} B={B} I={I} H={H} {kw}")
    for _ in range(g.pick([0, 0, 1, 2])):
        n = g.pick([*a, "lengths", "reverse"])
        if n == "lengths":
            kw[n] = g.mutate(n, kw[n] if kw[n] is not None else np.zeros(B, np.int64), np.int64)
        elif n == "reverse":
            kw[n] = g.pick([2, "yes", None, np.array([1, 0])])
            g.log.append(f"reverse<-{kw[n]!r}")
        else:
            a[n] = g.mutate(n, a[n], dtype)
    d = {"dy": g.fill((T, B, H), dtype) if g.chance(0.8) else None,
         "dh_n": g.fill((B, H), dtype) if g.chance(0.8) else None,
         "dc_n": g.fill((B, H), dtype) if cell == "lstm" and g.chance(0.8) else None}
    for _ in range(g.pick([0, 0, 1])):
        n = g.pick(list(d))
        d[n] = g.mutate(n, d[n], dtype)
    ctx_kind = g.pick(["own", "own", "own", "twice", "other-cell", "reference", "none",
                       "object", "other-sizes"])
    g.log.append(f"ctx={ctx_kind}")

    def fwd(mod, c, args, kws):
        if c == "lstm":
            *outs, ctx = mod.lstm_forward(args["x"], args["h0"], args["c0"], args["w_ih"],
                                          args["w_hh"], args["b_ih"], args["b_hh"], **kws)
        elif c == "gru":
            *outs, ctx = mod.gru_forward(args["x"], args["h0"], args["w_ih"], args["w_hh"],
                                         args["b_ih"], args["b_hh"], **kws)
        else:
            *outs, ctx = mod.rnn_forward(args["x"], args["h0"], args["w_ih"], args["w_hh"],
                                         args["b_ih"], args["b_hh"], **kws)
        return outs, ctx

    def bwd(c, ctx):
        if c == "lstm":
            return F.lstm_backward(ctx, d["dy"], d["dh_n"], d["dc_n"])
        fn = F.gru_backward if c == "gru" else F.rnn_backward
        return fn(ctx, d["dy"], d["dh_n"])

    def run():
        _, ctx = fwd(F, cell, a, kw)
        if ctx_kind == "reference":
            _, ctx = fwd(R, cell, a, kw)
        elif ctx_kind == "none":
            ctx = None
        elif ctx_kind == "object":
            ctx = object()
        elif ctx_kind == "other-cell":
            other = "gru" if cell != "gru" else "lstm"
            Go = CELLS[other]
            _, ctx = fwd(F, other, {"x": np.zeros((2, 1, 3), dtype), "h0": None, "c0": None,
                                    "w_ih": np.zeros((Go * 4, 3), dtype),
                                    "w_hh": np.zeros((Go * 4, 4), dtype), "b_ih": None,
                                    "b_hh": None}, {})
        elif ctx_kind == "other-sizes":
            _, ctx = fwd(F, cell, {"x": np.zeros((T + 1, B + 1, I), dtype), "h0": None,
                                   "c0": None, "w_ih": a["w_ih"], "w_hh": a["w_hh"],
                                   "b_ih": None, "b_hh": None}, {})
        if kw.get("training") is False and ctx_kind in ("own", "twice"):
            ctx = None
        bwd(cell, ctx)
        if ctx_kind == "twice":
            bwd(cell, ctx)

    return run


def case_crash(g: Gen, how: str):
    g.log.append(f"self-test {how}")

    def run():
        if how == "segfault":
            import ctypes

            ctypes.string_at(0)
        elif how == "abort":
            os.abort()
        elif how == "hang":
            time.sleep(10**6)

    return run


def make_case(seed: int, index: int, inject: dict[int, str] | None = None):
    """The call of case ``index`` (a closure) and its description."""
    g = Gen(seed, index)
    from fastrnn import _kernels

    arch = g.pick(_kernels.available_arches())
    g.log.append(f"arch={arch}")
    if inject and index in inject:
        fn = case_crash(g, inject[index])
    else:
        kind = g.pick(["cell_forward", "cell_backward", "functional", "gemm", "ukr", "act",
                       "cache_size", "stream"], p=[0.2, 0.2, 0.25, 0.1, 0.05, 0.05, 0.05, 0.1])
        fn = {"cell_forward": lambda: case_cell(g, False),
              "cell_backward": lambda: case_cell(g, True), "functional": lambda: case_functional(g),
              "gemm": lambda: case_gemm(g), "ukr": lambda: case_ukr(g), "act": lambda: case_act(g),
              "cache_size": lambda: case_cache_size(g), "stream": lambda: case_stream(g)}[kind]()

    def call():
        _kernels.set_arch(arch)
        return fn()

    return call, "; ".join(g.log)


# ------------------------------------------------------------------------------ child and runner


def _outcome(call) -> str:
    try:
        call()
        return "ok"
    except Exception as e:  # noqa: BLE001 - every outcome is recorded
        return f"{type(e).__name__}: {str(e)[:160]}".replace("\n", " ")


def child(seed: int, start: int, stop: int, inject: dict[int, str]) -> None:
    out = sys.stdout
    for i in range(start, stop):
        try:
            call, desc = make_case(seed, i, inject)
        except Exception as e:  # noqa: BLE001 - a generator failure is itself an outcome
            call, desc = (lambda e=e: (_ for _ in ()).throw(e)), f"generation failed: {e!r}"
        out.write(json.dumps({"start": i, "desc": desc}) + "\n")
        out.flush()
        res = _outcome(call)
        out.write(json.dumps({"done": i, "outcome": res}) + "\n")
        out.flush()


def campaign(cases: int, seed: int, timeout: float, inject: dict[int, str],
             verbose: bool = False) -> dict:
    """Run cases [0, cases) in child processes; return the summary."""
    outcomes: collections.Counter = collections.Counter()
    crashes, hangs, unexpected = [], [], []
    examples: dict[str, str] = {}
    nxt, restarts = 0, 0
    inj = ",".join(f"{k}:{v}" for k, v in inject.items())
    while nxt < cases:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--seed", str(seed),
               "--start", str(nxt), "--cases", str(cases)] + (["--inject", inj] if inj else [])
        env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        buf, current, desc = b"", None, ""
        deadline = time.monotonic() + max(timeout, 60.0)  # the first case also imports
        while True:
            left = deadline - time.monotonic()
            ready = select.select([proc.stdout], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:  # hang: kill the child, report, continue after this case
                proc.kill()
                proc.wait()
                if current is None:
                    raise RuntimeError("fuzz child produced no output (start-up failed)")
                hangs.append({"case": current, "desc": desc, "repro": _repro(seed, current, inj)})
                nxt = current + 1
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:  # EOF: the child died (or finished)
                rc = proc.wait()
                err = proc.stderr.read().decode(errors="replace")
                if current is not None:
                    crashes.append({"case": current, "desc": desc, "returncode": rc,
                                    "repro": _repro(seed, current, inj), "stderr": err[-1500:]})
                    nxt = current + 1
                elif rc != 0 and nxt < cases:
                    raise RuntimeError(f"fuzz child failed (exit {rc}):\n{err[-3000:]}")
                else:
                    nxt = cases
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                if "start" in msg:
                    current, desc = msg["start"], msg["desc"]
                    deadline = time.monotonic() + timeout
                else:
                    kind = msg["outcome"].split(":")[0]
                    outcomes[kind] += 1
                    examples.setdefault(kind, f"case {current}: {desc} -> {msg['outcome']}")
                    if kind != "ok" and kind not in EXPECTED:
                        unexpected.append({"case": current, "desc": desc,
                                           "outcome": msg["outcome"],
                                           "repro": _repro(seed, current, inj)})
                    if verbose:
                        print(f"{current}: {msg['outcome'][:100]}  [{desc[:150]}]")
                    current = None
                    nxt = msg["done"] + 1
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if nxt < cases:
            restarts += 1
    return {"cases": cases, "seed": seed, "outcomes": dict(outcomes), "crashes": crashes,
            "hangs": hangs, "unexpected": unexpected, "restarts": restarts,
            "examples": examples}


def _repro(seed: int, case: int, inject: str = "") -> str:
    return (f"python tools/fuzz.py --seed {seed} --replay {case}"
            + (f" --inject {inject}" if inject else ""))


def print_summary(s: dict) -> None:
    done = sum(s["outcomes"].values())
    print(f"fuzz: {s['cases']} cases (seed {s['seed']}): {done} finished, "
          f"{len(s['crashes'])} crashed, {len(s['hangs'])} hung, "
          f"{len(s['unexpected'])} unexpected exceptions, {s['restarts']} child restarts")
    for kind, n in sorted(s["outcomes"].items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<16} {n:6d}   e.g. {s['examples'][kind][:220]}")
    for what in ("crashes", "hangs", "unexpected"):
        for c in s[what]:
            print(f"{what[:-1] if what != 'crashes' else 'crash'}: case {c['case']}: {c['desc']}")
            if "returncode" in c:
                print(f"  exit status {c['returncode']}; last stderr lines:")
                print("    " + "\n    ".join(c["stderr"].strip().splitlines()[-8:]))
            if "outcome" in c:
                print(f"  {c['outcome']}")
            print(f"  reproduce: {c['repro']}")


def _parse_inject(text: str | None) -> dict[int, str]:
    out = {}
    for item in (text or "").split(","):
        if item:
            k, v = item.split(":")
            if v not in ("segfault", "abort", "hang"):
                raise SystemExit(f"--inject: unknown failure {v!r}")
            out[int(k)] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000, help="number of cases (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="seconds a case may run before it counts as a hang (default 20)")
    ap.add_argument("--replay", type=int, metavar="CASE",
                    help="run one case in this process and show its outcome or traceback")
    ap.add_argument("--inject", metavar="CASE:KIND,...",
                    help="self-test: make these cases segfault, abort or hang")
    ap.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    inject = _parse_inject(args.inject)
    if args.child:
        child(args.seed, args.start, args.cases, inject)
        return 0
    if args.replay is not None:
        call, desc = make_case(args.seed, args.replay, inject)
        print(f"case {args.replay}: {desc}")
        try:
            call()
            print("outcome: ok")
        except Exception:  # noqa: BLE001
            traceback.print_exc()
        return 0
    t0 = time.monotonic()
    s = campaign(args.cases, args.seed, args.timeout, inject, args.verbose)
    print_summary(s)
    print(f"fuzz: {time.monotonic() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=1)
    return 1 if s["crashes"] or s["hangs"] or s["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
