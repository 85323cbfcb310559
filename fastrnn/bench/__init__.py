"""The benchmark behind ``python -m fastrnn bench``.

Times fastrnn's ops (``fastrnn.functional``) against the anchors on the public grid of
DESIGN.md §4, all in one process with one thread count:

- ``reference``: the pure-NumPy oracle ``fastrnn.reference`` (slow on big rows: every
  measurement has a time budget);
- ``torch``: ``torch.nn.RNN/LSTM/GRU`` (inference under ``torch.inference_mode()``,
  training = forward + ``y.backward(dy)`` + ``torch.optim.SGD`` step; training-data, on
  request, the same with an input that needs no gradient);
- ``dropin``: fastrnn's drop-in modules ``fastrnn.torch.RNN/LSTM/GRU``, measured exactly
  like ``torch``;
- ``onnxruntime``: a one-node ONNX model with the LSTM/GRU/RNN operator (inference only),
  its output checked against fastrnn's.

Training for the functional implementations (fastrnn, reference) is forward with
``training=True``, backward with the same random ``dy`` and an in-place SGD update of
the four parameter arrays, so that every training row does the same work.

Each measurement: warm-up, then the median (or ``--stat min``) of ``--repeats`` samples;
calls faster than about 20 ms are looped inside a sample. Within a case the samples of the
implementations interleave round-robin, so that load from other processes hits them alike.
GFLOP/s use DESIGN's counts (forward ``2*T*B*(I+H)*G*H``, training 3x) and are compared
with the fp32 GEMM peak (numpy ``a @ b`` on 2048x2048 float32, same threads, measured at
the start and at the end of the run, the better counting).

numpy is imported lazily on purpose: the thread count must reach OpenBLAS through the
environment before numpy loads it (see :func:`prepare_threads`).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# ---- the grid and the implementations ------------------------------------------------------------

#: Public grid (DESIGN.md §4): name -> (T, B, I, H).
ROWS: dict[str, tuple[int, int, int, int]] = {
    "stream": (200, 1, 64, 64),
    "small": (100, 32, 128, 128),
    "medium": (50, 16, 256, 256),
    "large": (100, 64, 512, 512),
    "xlarge": (100, 64, 1024, 1024),
}
CELLS: tuple[str, ...] = ("rnn", "lstm", "gru")
GATES: dict[str, int] = {"rnn": 1, "lstm": 4, "gru": 3}
MODES: tuple[str, ...] = ("inference", "training", "training-data")
# The default grid; "training-data" (the input is data that needs no gradient, as into a first
# layer: backward without dx) is on request (--modes).
DEFAULT_MODES: tuple[str, ...] = ("inference", "training")
IMPLS: tuple[str, ...] = ("fastrnn", "reference", "torch", "dropin", "onnxruntime")
IMPL_ALIASES: dict[str, str] = {
    "numpy": "reference",
    "ref": "reference",
    "fastrnn.torch": "dropin",
    "ort": "onnxruntime",
    "onnx": "onnxruntime",
}
LABELS: dict[str, str] = {
    "fastrnn": "fastrnn",
    "reference": "numpy reference",
    "torch": "torch.nn",
    "dropin": "fastrnn.torch",
    "onnxruntime": "ONNX Runtime",
}
#: Implementations skipped when one call cannot fit in the time budget (others always run).
SKIPPABLE: frozenset[str] = frozenset({"reference"})
#: Implementations that only run inference.
INFERENCE_ONLY: frozenset[str] = frozenset({"onnxruntime"})

NOISE_SPREAD = 0.20  # (max - min) / median above this gets a noise note
CHECK_ATOL = 1e-3  # max |y_impl - y_fastrnn| (float32, |y| <= 1) above this is a warning
MIN_SAMPLE_S = 0.02  # calls shorter than this are looped inside one timing sample
PAUSE_S = 0.15  # pause before each sample: idle ORT/OpenMP/OpenBLAS workers spin for tens of ms
LR = 1e-6  # SGD step of the training rows (tiny: the weights barely move between repeats)
GEMM_N = 2048
MEMORY_BIH = (32, 128, 128)  # (B, I, H) of the peak-memory study ("small" row)
MEMORY_TS = (100, 1000)
SCHEMA = "fastrnn-bench/1"


class BenchError(Exception):
    """A problem with the arguments or the environment, reported to the user as one line."""


def flop_count(cell: str, mode: str, T: int, B: int, I: int, H: int) -> float:
    """FLOPs of one layer-direction over a sequence (DESIGN.md §3).

    Forward ``2*T*B*(I+H)*G*H``; training (forward + backward) 3x that; training-data
    (no input gradient) 3x that less the dx GEMM ``2*T*B*I*G*H``.
    """
    f = 2.0 * T * B * (I + H) * GATES[cell] * H
    if mode == "training-data":
        return 3.0 * f - 2.0 * T * B * I * GATES[cell] * H
    return 3.0 * f if mode == "training" else f


@dataclass(frozen=True)
class Case:
    """One cell of the grid: a shape, a cell type and a mode."""

    row: str
    T: int
    B: int
    I: int
    H: int
    cell: str
    mode: str

    @property
    def flops(self) -> float:
        return flop_count(self.cell, self.mode, self.T, self.B, self.I, self.H)

    @property
    def shape(self) -> str:
        return f"{self.T},{self.B},{self.I},{self.H}"


@dataclass
class Result:
    """The measurement of one implementation on one case."""

    case: Case
    impl: str
    status: str  # "ok" | "skipped" | "unavailable" | "error"
    reason: str = ""
    times_s: list[float] = field(default_factory=list)
    number: int = 1  # calls per timing sample
    warmup_only: bool = False
    max_abs_diff: float | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times_s) if self.times_s else None

    def time_s(self, stat: str = "median") -> float | None:
        """The headline time: the median (default) or the minimum of the samples."""
        if not self.times_s:
            return None
        return min(self.times_s) if stat == "min" else statistics.median(self.times_s)

    @property
    def spread(self) -> float | None:
        if len(self.times_s) < 2:
            return None
        med = statistics.median(self.times_s)
        return (max(self.times_s) - min(self.times_s)) / med if med > 0 else None

    def gflops(self, stat: str = "median") -> float | None:
        t = self.time_s(stat)
        return self.case.flops / t / 1e9 if t else None


# ---- threads -------------------------------------------------------------------------------------

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def prepare_threads(n: int | None) -> int:
    """Resolve the thread count and hand it to every library that will be measured.

    OpenBLAS (numpy's BLAS) and the OpenMP runtimes read their thread count from the
    environment when they are loaded, so this sets ``OMP_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``BLIS_NUM_THREADS`` while numpy is
    not yet imported (``python -m fastrnn`` imports nothing heavy before it gets here).
    If numpy is already loaded, :func:`pin_blas_threads` fixes OpenBLAS through its API
    after the fact. fastrnn itself gets ``fastrnn.set_num_threads(n)``; torch and ONNX
    Runtime get ``n`` explicitly when they are set up.

    Parameters
    ----------
    n : int or None
        Thread count; None = fastrnn's default (``OMP_NUM_THREADS`` or every core
        this process may use).

    Returns
    -------
    int
        The resolved thread count.
    """
    import fastrnn

    if n is None:
        n = fastrnn.get_num_threads()
    if "numpy" not in sys.modules:
        for k in _THREAD_ENV:
            os.environ[k] = str(n)
    fastrnn.set_num_threads(n)
    return n


def pin_blas_threads(n: int) -> str:
    """Set and check numpy's OpenBLAS thread count through its C API.

    Returns a short description such as ``"OpenBLAS, 2 threads"``; ``"unknown BLAS"``
    where no OpenBLAS is loaded (the environment set by :func:`prepare_threads` is then
    all we can do).
    """
    import numpy  # noqa: F401  (loads the BLAS)

    try:
        with open("/proc/self/maps") as f:
            libs = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and "/" in ln})
    except OSError:
        libs = []
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                setter = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                if setter is None or getter is None:
                    continue
                setter.argtypes = [ctypes.c_int]
                setter(int(n))
                got = int(getter())
                if got != n:
                    return f"OpenBLAS, {got} thread(s) (asked for {n})"
                return f"OpenBLAS, {got} thread(s)"
    return "unknown BLAS (threads from the environment)"


# ---- machine description -------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (with family/model and L2 size where known) from /proc/cpuinfo
    or lscpu, else platform's guess."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
    except OSError:
        pass
    if "model name" in fields:
        extra = []
        if "cpu family" in fields and "model" in fields:
            extra.append(f"family {fields['cpu family']} model {fields['model']}")
        try:
            with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
                extra.append(f"L2 {f.read().strip()}")
        except OSError:
            pass
        return fields["model name"] + (f" ({', '.join(extra)})" if extra else "")
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16")
                            if x in have]
    except OSError:
        pass
    return []


def _versions() -> dict[str, str | None]:
    import numpy as np

    out: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "onnxruntime", "onnx"):
        m = sys.modules.get(mod)
        out[mod] = getattr(m, "__version__", None) if m is not None else None
    return out


def _fastrnn_info() -> dict[str, Any]:
    import fastrnn

    try:
        return dict(fastrnn.info())
    except Exception as e:  # noqa: BLE001 - described, not fatal here
        return {"version": fastrnn.__version__, "error": f"{type(e).__name__}: {e}"}


# ---- implementations -----------------------------------------------------------------------------

Runner = Callable[[], Any]  # one call of the measured work; returns the output sequence y


def fastrnn_ops() -> Any:
    """The module whose ops the ``fastrnn`` rows measure: ``fastrnn.functional``."""
    from fastrnn import functional

    return functional


def _reference_ops() -> Any:
    from fastrnn import reference

    return reference


def probe_impls(wanted: Sequence[str]) -> dict[str, str | None]:
    """Import what each implementation needs; map impl -> None (ready) or why not."""
    status: dict[str, str | None] = {}
    for impl in wanted:
        try:
            if impl == "fastrnn":
                fastrnn_ops()
            elif impl == "reference":
                _reference_ops()
            elif impl == "torch":
                import torch  # noqa: F401
            elif impl == "dropin":
                import fastrnn.torch  # noqa: F401
            elif impl == "onnxruntime":
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            status[impl] = None
        except ImportError as e:
            status[impl] = f"{type(e).__name__}: {e}"
    return status


def make_params(case: Case, seed: int = 0) -> dict[str, Any]:
    """Random float32 inputs shared by every implementation of a (row, cell).

    Weights and biases are uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (PyTorch's init), x and
    dy standard normal; initial states are zero (None) everywhere.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    T, B, I, H, G = case.T, case.B, case.I, case.H, GATES[case.cell]
    k = 1.0 / math.sqrt(H)

    def u(*shape: int) -> Any:
        return (rng.random(shape, dtype=np.float32) * np.float32(2 * k) - np.float32(k))

    return {
        "x": rng.standard_normal((T, B, I), dtype=np.float32),
        "w_ih": u(G * H, I),
        "w_hh": u(G * H, H),
        "b_ih": u(G * H),
        "b_hh": u(G * H),
        "dy": rng.standard_normal((T, B, H), dtype=np.float32),
    }


def _functional_runner(ops: Any, case: Case, p: dict[str, Any]) -> Runner:
    """fastrnn.functional or fastrnn.reference: forward, or forward + backward + SGD."""
    import numpy as np

    cell = case.cell
    fwd = getattr(ops, f"{cell}_forward")
    bwd = getattr(ops, f"{cell}_backward")
    x, dy = p["x"], p["dy"]
    w = [np.array(p[k]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")]  # own copies (SGD moves them)
    lr = np.float32(LR)

    def forward(training: bool) -> tuple:
        if cell == "lstm":
            return fwd(x, None, None, *w, training=training)
        if cell == "rnn":
            return fwd(x, None, *w, nonlinearity="tanh", training=training)
        return fwd(x, None, *w, training=training)

    if case.mode == "inference":

        def run() -> Any:
            return forward(False)[0]

        return run

    need_dx = case.mode == "training"

    def run_train() -> Any:
        out = forward(True)
        y, ctx = out[0], out[-1]
        grads = (bwd(ctx, dy, None, None, need_dx=need_dx) if cell == "lstm"
                 else bwd(ctx, dy, None, need_dx=need_dx))
        for param, g in zip(w, grads[-4:], strict=True):
            g *= lr
            param -= g
        return y

    return run_train


def _torch_runner(kind: str, case: Case, p: dict[str, Any], threads: int) -> Runner:
    """torch.nn modules (kind 'torch') or fastrnn.torch drop-ins (kind 'dropin')."""
    import torch

    torch.set_num_threads(threads)
    if kind == "dropin":
        import fastrnn.torch as ns
    else:
        ns = torch.nn
    I, H = case.I, case.H
    if case.cell == "rnn":
        mod = ns.RNN(I, H, nonlinearity="tanh")
    elif case.cell == "lstm":
        mod = ns.LSTM(I, H)
    else:
        mod = ns.GRU(I, H)
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            tname = {"w_ih": "weight_ih_l0", "w_hh": "weight_hh_l0",
                     "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}[name]
            getattr(mod, tname).copy_(torch.from_numpy(p[name]))
    x = torch.from_numpy(p["x"].copy())

    if case.mode == "inference":
        mod.eval()

        def run() -> Any:
            with torch.inference_mode():
                y, _ = mod(x)
            return y.numpy()

        return run

    mod.train()
    # training: every implementation computes dx; training-data: x is data (no gradient)
    x.requires_grad_(case.mode == "training")
    dy = torch.from_numpy(p["dy"])
    opt = torch.optim.SGD(mod.parameters(), lr=LR)

    def run_train() -> Any:
        opt.zero_grad(set_to_none=True)
        x.grad = None
        y, _ = mod(x)
        y.backward(dy)  # the gradient of (y * dy).sum(), without the extra elementwise ops
        opt.step()
        return y.detach().numpy()

    return run_train


_ONNX_GATE_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}  # from PyTorch's order


def to_onnx_gates(cell: str, a: Any) -> Any:
    """Reorder PyTorch gate blocks (LSTM i,f,g,o; GRU r,z,n) to ONNX's (i,o,f,c; z,r,h)."""
    import numpy as np

    blocks = np.split(a, GATES[cell], axis=0)
    return np.ascontiguousarray(np.concatenate([blocks[i] for i in _ONNX_GATE_ORDER[cell]], 0))


def onnx_model_bytes(case: Case, p: dict[str, Any]) -> bytes:
    """A one-node ONNX model (RNN/LSTM/GRU operator, weights as initializers)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    cell, T, B, I, H = case.cell, case.T, case.B, case.I, case.H
    W = to_onnx_gates(cell, p["w_ih"])[None]
    R = to_onnx_gates(cell, p["w_hh"])[None]
    bias = np.concatenate([to_onnx_gates(cell, p["b_ih"]), to_onnx_gates(cell, p["b_hh"])])[None]
    attrs: dict[str, Any] = {"hidden_size": H}
    if cell == "rnn":
        attrs["activations"] = ["Tanh"]
    if cell == "gru":
        attrs["linear_before_reset"] = 1  # PyTorch's GRU: r * (W_hn h + b_hn)
    outputs = ["Y", "Y_h"] + (["Y_c"] if cell == "lstm" else [])
    node = helper.make_node(
        {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell], ["X", "W", "R", "B"], outputs, **attrs
    )
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        f"fastrnn_bench_{cell}",
        [helper.make_tensor_value_info("X", f32, [T, B, I])],
        [helper.make_tensor_value_info("Y", f32, [T, 1, B, H])]
        + [helper.make_tensor_value_info(n, f32, [1, B, H]) for n in outputs[1:]],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (bias, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model.SerializeToString()


def _ort_runner(case: Case, p: dict[str, Any], threads: int) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(
        onnx_model_bytes(case, p), so, providers=["CPUExecutionProvider"]
    )
    feed = {"X": p["x"]}

    def run() -> Any:
        return sess.run(["Y"], feed)[0][:, 0]

    return run


def build_runner(impl: str, case: Case, p: dict[str, Any], threads: int) -> Runner:
    """Set up ``impl`` for ``case`` (weights loaded, sessions built) and return its call."""
    if impl == "fastrnn":
        return _functional_runner(fastrnn_ops(), case, p)
    if impl == "reference":
        return _functional_runner(_reference_ops(), case, p)
    if impl in ("torch", "dropin"):
        return _torch_runner(impl, case, p, threads)
    if impl == "onnxruntime":
        return _ort_runner(case, p, threads)
    raise ValueError(f"unknown implementation {impl!r}")


# ---- measuring -----------------------------------------------------------------------------------


class Timer:
    """Warm-up and timing samples of one runner; samples of several Timers can interleave.

    The constructor warms up: one call (two when it is fast: the first pays one-off costs),
    keeping a copy of the first output. Calls shorter than ``MIN_SAMPLE_S`` are repeated
    ``number`` times inside a sample (the sample is their mean). With a budget, fewer
    than ``repeats`` samples are planned so that warm-up and samples stay within it (but
    at least ``min_samples``); when the warm-up alone used it up, the first call is the
    only sample (``warmup_only``).
    """

    def __init__(self, run: Runner, repeats: int, budget_s: float | None,
                 min_samples: int = 0) -> None:
        import numpy as np

        self.run = run
        t = time.perf_counter()
        self.first_output = np.array(run(), copy=True)
        self.first = time.perf_counter() - t
        spent = est = self.first
        if self.first < 0.25:
            t = time.perf_counter()
            run()
            est = time.perf_counter() - t
            spent += est
        self.number = max(1, min(10_000, int(MIN_SAMPLE_S / max(est, 1e-9))))
        n = repeats
        if budget_s is not None:
            n = min(repeats, int((budget_s - spent) / max(est * self.number, 1e-9)))
        self.n = max(n, min(min_samples, repeats), 0)
        self.times: list[float] = []

    @property
    def pending(self) -> bool:
        """Whether planned samples remain."""
        return len(self.times) < self.n

    def sample(self) -> None:
        """Take one timing sample."""
        run, number = self.run, self.number
        t = time.perf_counter()
        for _ in range(number):
            run()
        self.times.append((time.perf_counter() - t) / number)

    def result(self) -> tuple[list[float], int, bool]:
        """(per-call seconds of each sample, calls per sample, warm-up only)."""
        if not self.times:
            return [self.first], 1, True
        return list(self.times), self.number, False


class _NoGC:
    """Collect, then keep the garbage collector off while timing."""

    def __enter__(self) -> None:
        self.was = gc.isenabled()
        gc.collect()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was:
            gc.enable()


def measure(
    run: Runner, repeats: int, budget_s: float | None
) -> tuple[list[float], int, bool, Any]:
    """Time one ``run`` alone: warm-up, then up to ``repeats`` samples (see :class:`Timer`).

    Returns
    -------
    (times_s, number, warmup_only, first_output)
        Per-call seconds of each sample, calls per sample, whether only the warm-up was
        timed, and a copy of the first call's output.
    """
    with _NoGC():
        tm = Timer(run, repeats, budget_s)
        while tm.pending:
            tm.sample()
    return (*tm.result(), tm.first_output)


def gemm_peak(n: int = GEMM_N, repeats: int = 10) -> dict[str, float]:
    """Measure numpy's float32 ``a @ b`` on n x n matrices (the machine's practical peak)."""
    import numpy as np

    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t)
    flops = 2.0 * n**3
    return {
        "n": n,
        "gflops": flops / min(times) / 1e9,
        "median_gflops": flops / statistics.median(times) / 1e9,
        "best_ms": min(times) * 1e3,
    }


class Progress:
    """A one-line text progress bar on stderr (a line per step when stderr is not a tty)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.current = 0  # 1-based index of the step running
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_len = 0

    def step(self, label: str) -> None:
        """Start the next step."""
        self.current += 1
        self._show(label, newline_ok=True)

    def note(self, label: str) -> None:
        """Change the label of the current step (shown on a tty only)."""
        self._show(label, newline_ok=False)

    def _show(self, label: str, newline_ok: bool) -> None:
        if not self.enabled or (not self.tty and not newline_ok):
            return
        width = 24
        fill = int(round((self.current - 1) / self.total * width))
        el = int(time.perf_counter() - self.t0)
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {self.current}/{self.total} "
                f"{el // 60}:{el % 60:02d}  {label}")
        if self.tty:
            pad = " " * max(0, self._last_len - len(line))
            sys.stderr.write("\r" + line + pad)
            self._last_len = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * self._last_len + "\r")
            sys.stderr.flush()


@dataclass
class Options:
    """What to run and how (the parsed command line)."""

    rows: dict[str, tuple[int, int, int, int]]
    cells: list[str]
    modes: list[str]
    impls: list[str]
    threads: int
    repeats: int = 5
    budget_s: float | None = 10.0
    stat: str = "median"
    seed: int = 0
    quiet: bool = False


def grid_cases(opts: Options) -> list[Case]:
    """Every (row, cell, mode) to run, in run order (small rows first)."""
    return [
        Case(row, *shape, cell, mode)
        for row, shape in opts.rows.items()
        for cell in opts.cells
        for mode in opts.modes
    ]


def run_grid(opts: Options, available: dict[str, str | None],
             warnings: list[str]) -> list[Result]:
    """Measure every implementation on every case of the grid.

    Per case, every implementation is set up and warmed up in turn, its first output
    checked against fastrnn's; then the timing samples interleave round-robin (rotating
    the order each round, with a short pause before each sample), so that a burst of load
    from another process hits all implementations alike instead of one of them.
    """
    cases = grid_cases(opts)
    progress = Progress(len(cases), enabled=not opts.quiet)
    best_gflops: dict[tuple[str, str, str], float] = {}
    results: list[Result] = []
    params: dict[str, Any] | None = None
    params_key: tuple | None = None
    try:
        for case in cases:
            what = f"{case.row} {case.cell} {case.mode}"
            progress.step(what)
            impls = [i for i in opts.impls
                     if not (i in INFERENCE_ONLY and case.mode != "inference")]
            key = (case.row, case.cell)
            if params_key != key:
                params = None
                gc.collect()
                params = make_params(case, opts.seed)
                params_key = key
            case_results = {i: Result(case, i, "ok") for i in impls}
            timers: dict[str, Timer] = {}

            def fail(impl: str, e: Exception, res: dict[str, Result] = case_results,
                     tm: dict[str, Timer] = timers, what: str = what) -> None:
                res[impl].status, res[impl].reason = "error", f"{type(e).__name__}: {e}"
                tm.pop(impl, None)
                warnings.append(f"{LABELS[impl]} failed on {what}: {res[impl].reason}")

            with _NoGC():
                for impl in impls:
                    res = case_results[impl]
                    if available.get(impl) is not None:
                        res.status, res.reason = "unavailable", available[impl] or ""
                        continue
                    # The slow reference is skipped (never extrapolated) when even its best
                    # throughput so far on this cell and mode could not finish one call
                    # within the budget; every other implementation gets a timed call after
                    # its warm-up.
                    best = best_gflops.get((impl, case.cell, case.mode))
                    if impl in SKIPPABLE and opts.budget_s is not None and best:
                        predicted = case.flops / (best * 1e9)
                        if predicted > opts.budget_s:
                            res.status = "skipped"
                            res.reason = (f"skipped (time budget): one call would take about "
                                          f"{predicted:.0f} s > --budget {opts.budget_s:g} s")
                            continue
                    progress.note(f"{what}: {LABELS[impl]} warm-up")
                    try:
                        runner = build_runner(impl, case, params, opts.threads)
                        time.sleep(PAUSE_S)
                        timers[impl] = Timer(runner, opts.repeats, opts.budget_s,
                                             min_samples=0 if impl in SKIPPABLE else 1)
                        del runner
                    except Exception as e:  # noqa: BLE001 - one failing anchor must not stop the run
                        fail(impl, e)
                _check_outputs(case, timers, case_results, warnings)
                rounds = max((tm.n for tm in timers.values()), default=0)
                for r in range(rounds):
                    progress.note(f"{what}: round {r + 1}/{rounds}")
                    order = list(timers)
                    order = order[r % len(order):] + order[:r % len(order)]
                    for impl in order:
                        tm = timers.get(impl)
                        if tm is None or not tm.pending:
                            continue
                        time.sleep(PAUSE_S)  # the previous library's idle workers stop spinning
                        try:
                            tm.sample()
                        except Exception as e:  # noqa: BLE001
                            fail(impl, e)
                for impl, tm in timers.items():
                    res = case_results[impl]
                    res.times_s, res.number, res.warmup_only = tm.result()
            timers.clear()
            for impl in impls:
                res = case_results[impl]
                results.append(res)
                g = res.gflops("min")
                if g:
                    k = (impl, case.cell, case.mode)
                    best_gflops[k] = max(best_gflops.get(k, 0.0), g)
    except KeyboardInterrupt:
        warnings.append(f"interrupted after {len({r.case for r in results})} of {len(cases)} "
                        "cases: the tables are partial")
    finally:
        progress.close()
    return results


def _check_outputs(case: Case, timers: dict[str, Timer], results: dict[str, Result],
                   warnings: list[str]) -> None:
    """Compare every implementation's first output with fastrnn's (same inputs, weights)."""
    fast = timers.get("fastrnn")
    if fast is None:
        return
    for impl, tm in timers.items():
        if impl == "fastrnn":
            continue
        diff = float(abs(tm.first_output - fast.first_output).max())
        results[impl].max_abs_diff = diff
        if not diff <= CHECK_ATOL:
            warnings.append(
                f"{LABELS[impl]} {case.cell} output differs from fastrnn's on {case.row} "
                f"{case.mode}: max |diff| = {diff:.3g} > {CHECK_ATOL:g}; this comparison may be "
                "invalid")


# ---- peak memory (issue 4: inference memory is O(B*G*H) beyond inputs/outputs/weights) ----------


def _maxrss_bytes() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def _proc_status_bytes(field_name: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(spec: str) -> dict[str, Any]:
    """Measure one (cell, mode, T, B, I, H) in this fresh process; called in a subprocess.

    Allocates inputs, weights (and dy), warms the kernels up on one step, resets the peak
    RSS (Linux ``VmHWM`` through ``/proc/self/clear_refs``) and takes the RSS as the
    baseline, runs the op once (training: forward + backward), reads the peak RSS.
    Elsewhere ``ru_maxrss`` stands in (it counts the parent's RSS at fork time as well,
    which is why the study runs before the timing grid grows the parent).
    """
    import numpy as np

    cell, mode, *dims = spec.split(",")
    T, B, I, H = (int(d) for d in dims)
    ops = fastrnn_ops()
    case = Case("memory", T, B, I, H, cell, mode)
    p = make_params(case)
    w = [p[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    fwd = getattr(ops, f"{cell}_forward")
    bwd = getattr(ops, f"{cell}_backward")
    training = mode == "training"

    def once(x: Any, dy: Any) -> list[Any]:
        out = fwd(x, None, None, *w, training=training) if cell == "lstm" else \
            fwd(x, None, *w, training=training)
        arrays = [a for a in out[:-1]]
        if training:
            grads = bwd(out[-1], dy, None, None) if cell == "lstm" else bwd(out[-1], dy, None)
            arrays += [g for g in grads if g is not None]
        return arrays

    once(p["x"][:1], p["dy"][:1])  # load everything, start the thread pool
    gc.collect()
    if _reset_peak_rss() and _proc_status_bytes("VmHWM") is not None:
        method = "VmHWM after clear_refs"
        base = _proc_status_bytes("VmRSS") or 0
        arrays = once(p["x"], p["dy"])
        peak = _proc_status_bytes("VmHWM") or 0
    else:
        method = "ru_maxrss"
        base = _maxrss_bytes()
        arrays = once(p["x"], p["dy"])
        peak = _maxrss_bytes()
    returned = int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))
    return {
        "cell": cell, "mode": mode, "T": T, "B": B, "I": I, "H": H, "method": method,
        "baseline_bytes": base, "peak_bytes": peak, "returned_bytes": returned,
        "inputs_bytes": int(p["x"].nbytes + (p["dy"].nbytes if training else 0)),
        "weights_bytes": int(sum(a.nbytes for a in w)),
        "working_bytes": peak - base - returned,
        "bgh_bytes": B * GATES[cell] * H * 4,
    }


def memory_study(cells: Sequence[str], threads: int, bih: tuple[int, int, int] = MEMORY_BIH,
                 Ts: Sequence[int] = MEMORY_TS, quiet: bool = False) -> list[dict[str, Any]]:
    """Peak RSS of fastrnn's inference vs training for each T, one fresh process per case."""
    import fastrnn

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # big blocks via mmap: freed memory leaves the RSS
    for k in _THREAD_ENV:
        env[k] = str(threads)
    B, I, H = bih
    plan = [(c, m, T) for c in cells for m in DEFAULT_MODES for T in Ts]
    progress = Progress(len(plan), enabled=not quiet)
    out = []
    try:
        for cell, mode, T in plan:
            progress.step(f"memory {cell} {mode} T={T}")
            spec = f"{cell},{mode},{T},{B},{I},{H}"
            proc = subprocess.run(
                [sys.executable, "-m", "fastrnn", "bench", "--memory-child", spec,
                 "--threads", str(threads)],
                capture_output=True, text=True, env=env, timeout=900)
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise BenchError(f"memory measurement {spec} failed: {err}")
            out.append(json.loads(lines[-1]))
    finally:
        progress.close()
    return out


# ---- reports -------------------------------------------------------------------------------------


def build_report(opts: Options, argv: Sequence[str], peak: dict[str, float] | None,
                 results: list[Result], memory: list[dict[str, Any]] | None,
                 warnings: list[str], blas: str, elapsed_s: float) -> dict[str, Any]:
    """Everything measured, as a JSON-ready dict (the ``--json`` file)."""
    info = _fastrnn_info()
    rows = []
    fast = {r.case: r for r in results if r.impl == "fastrnn" and r.status == "ok"}
    stat = opts.stat
    for r in results:
        med = r.median_s
        t = r.time_s(stat)
        t_fast = fast[r.case].time_s(stat) if r.case in fast else None
        gflops = r.gflops(stat)
        d: dict[str, Any] = {
            "row": r.case.row, "T": r.case.T, "B": r.case.B, "I": r.case.I, "H": r.case.H,
            "cell": r.case.cell, "mode": r.case.mode, "impl": r.impl, "label": LABELS[r.impl],
            "status": r.status, "reason": r.reason or None,
            "gflop": r.case.flops / 1e9,
            "times_ms": [t * 1e3 for t in r.times_s],
            "calls_per_sample": r.number,
            "warmup_only": r.warmup_only,
            "time_ms": t * 1e3 if t else None,
            "median_ms": med * 1e3 if med else None,
            "min_ms": min(r.times_s) * 1e3 if r.times_s else None,
            "max_ms": max(r.times_s) * 1e3 if r.times_s else None,
            "spread": r.spread,
            "noisy": bool(r.spread is not None and r.spread > NOISE_SPREAD),
            "gflops": gflops,
            "pct_peak": (100.0 * gflops / peak["gflops"]) if (gflops and peak) else None,
            "fastrnn_speedup": (t / t_fast) if (t and t_fast) else None,
            "max_abs_diff_vs_fastrnn": r.max_abs_diff,
        }
        rows.append(d)
    return {
        "schema": SCHEMA,
        "command": "python -m fastrnn bench" + ("" if not argv else " " + shlex.join(argv)),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": cpu_model(),
            "cpu_flags": _cpu_flags(),
            "logical_cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "fastrnn": info,
        "versions": _versions(),
        "blas": blas,
        "threads": opts.threads,
        "repeats": opts.repeats,
        "stat": stat,
        "budget_s": opts.budget_s,
        "gemm_peak": peak,
        "results": rows,
        "memory": memory,
        "warnings": list(warnings),
        "elapsed_s": elapsed_s,
    }


def _fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _fmt_num(v: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{suffix}"


def _status_text(d: dict[str, Any]) -> str:
    if d["status"] == "ok":
        notes = []
        if d["warmup_only"]:
            notes.append("1 run (time budget)")
        if d["noisy"]:
            notes.append(f"noisy: spread {100 * d['spread']:.0f}%")
        diff = d["max_abs_diff_vs_fastrnn"]
        if diff is not None and not diff <= CHECK_ATOL:
            notes.append(f"OUTPUT MISMATCH {diff:.2g}")
        return "; ".join(notes)
    if d["status"] == "unavailable":
        return "unavailable: " + (d["reason"] or "")
    return d["reason"] or d["status"]


#: Rounds two implementations must share for a per-round ratio.
ROUND_MIN = 3


def round_ratio(other: dict[str, Any], base: dict[str, Any]) -> float | None:
    """Median over the rounds both were timed in of other's time / base's time (> 1: base is
    faster); None with fewer than ``ROUND_MIN`` shared rounds.

    The samples of one round run back to back, so a phase of load from other processes slows
    both sides of a round's ratio alike, where a min or median per implementation compares
    samples taken minutes apart. Sample k of every implementation is from round k.
    """
    if other.get("status") != "ok" or base.get("status") != "ok":
        return None
    if other.get("warmup_only") or base.get("warmup_only"):
        return None
    a, b = other.get("times_ms") or [], base.get("times_ms") or []
    n = min(len(a), len(b))
    if n < ROUND_MIN:
        return None
    return float(statistics.median(x / y for x, y in zip(a[:n], b[:n], strict=True)))


def _round_ratio_lines(report: dict[str, Any], anchors: list[str]) -> list[str]:
    """The markdown section of per-round ratios (empty when no case has enough rounds)."""
    cols = [("fastrnn", a) for a in anchors]
    if "dropin" in anchors and "torch" in anchors:
        cols.append(("dropin", "torch"))
    rows = []
    for mode, row, cell, ds in _group(report):
        by = {d["impl"]: d for d in ds}
        vals = [round_ratio(by[a], by[b]) if a in by and b in by else None for b, a in cols]
        if any(v is not None for v in vals):
            rows.append(f"| {mode} | {row} | {cell} | "
                        + " | ".join("" if v is None else f"{v:.3f}x" for v in vals) + " |")
    if not rows:
        return []
    head = [f"{LABELS[b]} over {LABELS[a]}" for b, a in cols]
    return ["", "## Per-round ratios", "",
            "The median over the rounds of (the other implementation's time / this one's): "
            "within a round the implementations run back to back, so this comparison holds "
            "through load that moves the per-implementation statistics above (> 1: the "
            "first-named is faster).", "",
            "| mode | row | cell | " + " | ".join(head) + " |",
            "|---|---|---|" + "---:|" * len(head), *rows]


def _dropin_over_torch(by_impl: dict[str, dict[str, Any]]) -> float | None:
    """torch.nn's time / fastrnn.torch's time on one case (> 1: the drop-in is faster)."""
    t, d = by_impl.get("torch"), by_impl.get("dropin")
    if t and d and t["time_ms"] and d["time_ms"]:
        return t["time_ms"] / d["time_ms"]
    return None


def _group(report: dict[str, Any]) -> list[tuple[str, str, str, list[dict[str, Any]]]]:
    """Results grouped by (mode, row, cell), in run order."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for mode in MODES:
        for d in report["results"]:
            if d["mode"] == mode:
                groups.setdefault((mode, d["row"], d["cell"]), []).append(d)
    return [(m, r, c, v) for (m, r, c), v in groups.items()]


def format_text(report: dict[str, Any]) -> str:
    """The plain-text tables printed at the end of a run."""
    peak = report.get("gemm_peak")
    info = report["fastrnn"]
    lines = [
        f"fastrnn {info.get('version')} bench: {report['machine']['cpu']}, "
        f"{report['threads']} thread(s), SIMD path {info.get('simd', '?')}, {report['blas']}",
    ]
    if peak:
        lines.append(f"GEMM peak: {peak['gflops']:.1f} GFLOP/s (numpy float32 "
                     f"{peak['n']}x{peak['n']} matmul, best of 10{_peak_when(peak)})")
    head = (f"{'row':<8} {'cell':<5} {'impl':<16} {report['stat'] + ' ms':>10} {'GFLOP/s':>8} "
            f"{'% peak':>7} {'fastrnn x':>9}  notes")
    mode_now = None
    for mode, row, cell, ds in _group(report):
        if mode != mode_now:
            lines += ["", f"== {mode} ==", head]
            mode_now = mode
        by = {d["impl"]: d for d in ds}
        for j, d in enumerate(ds):
            speed = "" if d["impl"] == "fastrnn" else _fmt_num(d["fastrnn_speedup"], ".2f", "x")
            note = _status_text(d)
            if d["impl"] == "dropin" and _dropin_over_torch(by) is not None:
                note = f"torch.nn time / this: {_dropin_over_torch(by):.2f}x" + (
                    f"; {note}" if note else "")
            lines.append(
                f"{row if j == 0 else '':<8} {cell if j == 0 else '':<5} {d['label']:<16} "
                f"{_fmt_ms(d['time_ms']):>10} {_fmt_num(d['gflops']):>8} "
                f"{_fmt_num(d['pct_peak'], '.0f', '%'):>7} {speed:>9}  {note}")
    if report["results"]:
        lines.append("")
        lines.append("fastrnn x = the other implementation's time / fastrnn's time "
                     "(> 1: fastrnn is faster).")
    lines += _notes(report)
    if report.get("memory"):
        lines += ["", *format_memory(report["memory"], report["threads"], markdown=False)]
    lines.append(f"Run time: {_fmt_elapsed(report.get('elapsed_s'))}.")
    return "\n".join(lines) + "\n"


def _peak_when(peak: dict[str, Any]) -> str:
    if "start_gflops" in peak:
        return (f", the better of the start ({peak['start_gflops']:.1f}) and the end "
                f"({peak['end_gflops']:.1f}) of the run")
    return ""


def _fmt_elapsed(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def _notes(report: dict[str, Any]) -> list[str]:
    out = []
    noisy = [d for d in report["results"] if d["noisy"]]
    if noisy:
        out.append(f"Noise: {len(noisy)} measurement(s) spread more than "
                   f"{100 * NOISE_SPREAD:.0f}% between repeats ((max-min)/median), e.g. "
                   + ", ".join(f"{d['row']} {d['cell']} {d['mode']} {d['label']} "
                               f"{100 * d['spread']:.0f}%" for d in noisy[:4])
                   + ". Other load on the machine? Rerun with more --repeats.")
    over = [d for d in report["results"] if d["pct_peak"] and d["pct_peak"] > 100]
    if over:
        out.append(f"{len(over)} measurement(s) above 100% of the GEMM peak: the peak "
                   "measurement was probably slowed by other load on the machine.")
    skipped = [d for d in report["results"] if d["status"] == "skipped"]
    if skipped:
        out.append("Skipped (time budget, no number estimated): "
                   + ", ".join(f"{d['row']} {d['cell']} {d['mode']} {d['label']}"
                               for d in skipped) + ".")
    for w in report.get("warnings", []):
        out.append("WARNING: " + w)
    return out


def format_memory(mem: list[dict[str, Any]], threads: int, markdown: bool) -> list[str]:
    """The peak-memory table and its conclusion lines."""
    if not mem:
        return []
    m0 = mem[0]
    mib = 1024.0 * 1024.0
    title = (f"Peak memory of fastrnn (B={m0['B']}, I={m0['I']}, H={m0['H']}, float32, "
             f"{threads} thread(s), one fresh process per case, peak RSS from "
             f"{m0.get('method', 'ru_maxrss')}). working = peak RSS - RSS before the call "
             f"(inputs and weights allocated) - the arrays returned (y, h_n, c_n; in training "
             f"also the gradients).")
    cols = ["cell", "mode", "T", "peak RSS MiB", "returned MiB", "working MiB"]
    rows = [[m["cell"], m["mode"], str(m["T"]), f"{m['peak_bytes'] / mib:.1f}",
             f"{m['returned_bytes'] / mib:.1f}", f"{m['working_bytes'] / mib:.1f}"] for m in mem]
    out = [title, ""] if markdown else [title]
    if markdown:
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        out += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        w = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        out.append("  ".join(c.ljust(w[i]) for i, c in enumerate(cols)))
        out += ["  ".join(r[i].ljust(w[i]) for i in range(len(cols))) for r in rows]
    out.append("")
    by = {(m["cell"], m["mode"], m["T"]): m for m in mem}
    Ts = sorted({m["T"] for m in mem})
    if len(Ts) >= 2:
        lo, hi = Ts[0], Ts[-1]
        for cell in dict.fromkeys(m["cell"] for m in mem):
            parts = []
            for mode in DEFAULT_MODES:
                a, b = by.get((cell, mode, lo)), by.get((cell, mode, hi))
                if a and b:
                    parts.append(f"{mode} working memory {a['working_bytes'] / mib:.1f} MiB at "
                                 f"T={lo} vs {b['working_bytes'] / mib:.1f} MiB at T={hi}")
            bgh = by.get((cell, "inference", lo))
            tail = (f" (B*G*H*4 bytes = {bgh['bgh_bytes'] / mib:.2f} MiB)" if bgh else "")
            out.append(("- " if markdown else "") + f"{cell}: " + "; ".join(parts) + tail)
    return out


def format_markdown(report: dict[str, Any], plot_path: str | None = None,
                    md_path: str | None = None) -> str:
    """The ``--markdown`` file: command, machine, GEMM peak, summary and detail tables."""
    info = report["fastrnn"]
    v = report["versions"]
    peak = report.get("gemm_peak")
    mach = report["machine"]
    anchors = [i for i in IMPLS[1:]
               if any(d["impl"] == i for d in report["results"])]
    out = [
        "# fastrnn benchmark results",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {report['date']}",
        f"- CPU: {mach['cpu']}; {mach['logical_cpus']} logical CPUs; "
        f"{', '.join(mach['cpu_flags']) or 'no AVX2'}; {mach['platform']}",
        f"- fastrnn {info.get('version')}: SIMD path **{info.get('simd', '?')}** (available: "
        f"{', '.join(info.get('simd_available', [])) or '?'}), OpenMP "
        f"{'yes' if info.get('openmp') else 'no'}, compiler {info.get('compiler', '?')}",
        f"- Threads: **{report['threads']}** for every implementation "
        f"(numpy: {report['blas']})",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
    ]
    if peak:
        out.append(f"- GEMM peak: **{peak['gflops']:.1f} GFLOP/s** (numpy float32 "
                   f"{peak['n']}x{peak['n']} `a @ b`, best of 10{_peak_when(peak)}; median "
                   f"{peak['median_gflops']:.1f})")
    out += [
        "",
        f"Times are the {report['stat']} of {report['repeats']} samples after a warm-up (calls "
        "shorter "
        f"than {MIN_SAMPLE_S * 1e3:.0f} ms are looped inside a sample), float32, zero initial "
        "states. GFLOP/s count one layer-direction: forward 2·T·B·(I+H)·G·H, training 3x "
        "that. Inference: forward without a training cache (`training=False`, "
        "`torch.inference_mode()`, ONNX Runtime session). Training: forward + backward with "
        "a random dy (all gradients incl. dx) + an SGD step on the weights (torch: "
        "`y.backward(dy)` + `torch.optim.SGD`). Training-data (when run): the same with an "
        "input that needs no gradient, as data into a first layer (torch: `x.requires_grad` "
        "False; fastrnn: `need_dx=False`), counted as 3x the forward less the dx GEMM "
        "2·T·B·I·G·H. A speed-up is the other implementation's "
        "time / fastrnn's time (> 1: fastrnn is faster). Every output is checked against "
        f"fastrnn's (max |diff| <= {CHECK_ATOL:g}).",
    ]
    if report.get("budget_s") is not None:
        out.append(f"Each measurement has a {report['budget_s']:g} s budget: fewer samples "
                   "(at least one timed call after the warm-up; the numpy reference may be "
                   "timed on its warm-up call alone, marked †, or skipped when one call cannot "
                   "fit); nothing is extrapolated.")
    out.append(f"The whole run took {_fmt_elapsed(report.get('elapsed_s'))}.")
    if plot_path:
        rel = plot_path
        if md_path:
            rel = os.path.relpath(os.path.abspath(plot_path),
                                  os.path.dirname(os.path.abspath(md_path)))
        out += ["", f"![fastrnn speed-up over each anchor]({rel})"]
    for mode in MODES:
        groups = [(r, c, ds) for m, r, c, ds in _group(report) if m == mode]
        if not groups:
            continue
        mode_anchors = [a for a in anchors
                        if any(d["impl"] == a for _, _, ds in groups for d in ds)]
        out += ["", f"## {mode.capitalize()}", ""]
        head = ["row (T,B,I,H)", "cell", "fastrnn ms", "GFLOP/s", "% peak"]
        head += [f"{LABELS[a]} ms (speed-up)" for a in mode_anchors]
        dropin_col = "dropin" in mode_anchors and "torch" in mode_anchors
        if dropin_col:
            head.append("fastrnn.torch over torch.nn")
        out.append("| " + " | ".join(head) + " |")
        out.append("|---|---|" + "---:|" * (len(head) - 2))
        for row, cell, ds in groups:
            by = {d["impl"]: d for d in ds}
            f = by.get("fastrnn")
            first = ds[0]
            cells = [f"{row} ({first['T']},{first['B']},{first['I']},{first['H']})", cell]
            if f and f["status"] == "ok":
                cells += [_fmt_ms(f["time_ms"]), _fmt_num(f["gflops"]),
                          _fmt_num(f["pct_peak"], ".0f", "%")]
            else:
                cells += ["-", "-", "-"]
            for a in mode_anchors:
                d = by.get(a)
                if d is None:
                    cells.append("")
                elif d["status"] != "ok":
                    cells.append({"skipped": "skipped (time budget)",
                                  "unavailable": "n/a"}.get(d["status"], "error"))
                else:
                    s = _fmt_ms(d["time_ms"])
                    if d["fastrnn_speedup"] is not None:
                        s += f" ({d['fastrnn_speedup']:.2f}x)"
                    if d["warmup_only"]:
                        s += " †"
                    diff = d["max_abs_diff_vs_fastrnn"]
                    if diff is not None and not diff <= CHECK_ATOL:
                        s += " ⚠ mismatch"
                    cells.append(s)
            if dropin_col:
                r = _dropin_over_torch(by)
                cells.append("" if r is None else f"{r:.2f}x")
            out.append("| " + " | ".join(cells) + " |")
        if any(d["warmup_only"] for _, _, ds in groups for d in ds):
            out += ["", "† one timed call only (time budget)."]
    out += _round_ratio_lines(report, anchors)
    out += ["", "## Detail", "",
            f"| mode | row | cell | implementation | {report['stat']} ms | min–max ms | GFLOP/s | "
            "% peak | fastrnn speed-up | max abs diff vs fastrnn | notes |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for mode, row, cell, ds in _group(report):
        for d in ds:
            rng = (f"{_fmt_ms(d['min_ms'])}–{_fmt_ms(d['max_ms'])}"
                   if d["min_ms"] is not None else "-")
            diff = d["max_abs_diff_vs_fastrnn"]
            out.append(
                f"| {mode} | {row} | {cell} | {d['label']} | {_fmt_ms(d['time_ms'])} | {rng} | "
                f"{_fmt_num(d['gflops'])} | {_fmt_num(d['pct_peak'], '.0f', '%')} | "
                f"{'' if d['impl'] == 'fastrnn' else _fmt_num(d['fastrnn_speedup'], '.2f', 'x')}"
                f" | {'' if diff is None else f'{diff:.1e}'} | "
                f"{_status_text(d).replace('|', '/')} |")
    if report.get("memory"):
        out += ["", "## Peak memory", "",
                *format_memory(report["memory"], report["threads"], markdown=True)]
    notes = _notes(report)
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def write_plot(report: dict[str, Any], path: str) -> None:
    """Bar chart of fastrnn's speed-up over each anchor, per row and cell, one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    modes = [m for m in MODES if any(d["mode"] == m for d in report["results"])]
    n_groups = max((len([1 for m, *_ in _group(report) if m == mode]) for mode in modes),
                   default=1)
    fig, axes = plt.subplots(len(modes), 1, squeeze=False,
                             figsize=(max(10.0, 3.0 + 1.0 * n_groups), 4.5 * max(len(modes), 1)))
    colors = {a: f"C{k}" for k, a in enumerate(IMPLS[1:])}
    for ax, mode in zip(axes[:, 0], modes, strict=True):
        groups = [(r, c, ds) for m, r, c, ds in _group(report) if m == mode]
        anchors = [a for a in IMPLS[1:]
                   if any(d["impl"] == a and d["fastrnn_speedup"] for _, _, ds in groups
                          for d in ds)]
        width = 0.8 / max(len(anchors), 1)
        for k, a in enumerate(anchors):
            xs, ys = [], []
            for j, (_, _, ds) in enumerate(groups):
                d = next((d for d in ds if d["impl"] == a), None)
                if d and d["fastrnn_speedup"]:
                    xs.append(j + (k - (len(anchors) - 1) / 2) * width)
                    ys.append(d["fastrnn_speedup"])
            # bars grow from 1x: up where fastrnn is faster, down where it is slower
            ax.bar(xs, [y - 1.0 for y in ys], bottom=1.0, width=width, color=colors[a],
                   label=f"vs {LABELS[a]}")
            for xv, yv in zip(xs, ys, strict=True):
                ax.annotate(f"{yv:.2g}", (xv, yv), ha="center", fontsize=6,
                            va="bottom" if yv >= 1 else "top",
                            xytext=(0, 1 if yv >= 1 else -1), textcoords="offset points")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{r}\n{c}" for r, c, _ in groups], fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel("fastrnn speed-up")
        ax.set_title(f"{mode}: other implementation's time / fastrnn's time "
                     "(above 1x: fastrnn is faster)", fontsize=10)
        if anchors:
            ax.legend(fontsize=8)
        ax.grid(axis="y", which="major", alpha=0.3)
    fig.suptitle(f"fastrnn {report['fastrnn'].get('version')} on {report['machine']['cpu']}, "
                 f"{report['threads']} thread(s), {report['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- command line --------------------------------------------------------------------------------


def _csv(choices: Iterable[str], aliases: dict[str, str] | None = None,
         allow_none: bool = False) -> Callable[[str], list[str]]:
    choices = list(choices)
    aliases = aliases or {}

    def parse(text: str) -> list[str]:
        if text.strip() == "all":
            return list(choices)
        if allow_none and text.strip() == "none":
            return []
        out: list[str] = []
        for item in (t.strip() for t in text.split(",")):
            item = aliases.get(item, item)
            if item not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown value {item!r} (choose from {', '.join(choices)} or all)")
            if item not in out:
                out.append(item)
        if not out:
            raise argparse.ArgumentTypeError("empty list")
        return out

    return parse


def _shape(text: str) -> tuple[str, tuple[int, int, int, int]]:
    name, _, dims = text.rpartition("=")
    try:
        vals = tuple(int(v) for v in dims.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or min(vals) < 1:
        raise argparse.ArgumentTypeError(
            f"expected T,B,I,H (four positive ints, optionally NAME=T,B,I,H), got {text!r}")
    return (name or "custom"), vals  # type: ignore[return-value]


def _bih(text: str) -> tuple[int, int, int]:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected B,I,H (three positive ints), got {text!r}")
    return vals  # type: ignore[return-value]


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _budget(text: str) -> float | None:
    if text.strip().lower() in ("none", "inf", "0"):
        return None
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0 or 'none', got {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``p`` (used by ``python -m fastrnn bench``)."""
    p.add_argument("--rows", type=_csv(ROWS), default=None,
                   help=f"comma-separated rows of the grid ({', '.join(ROWS)}; default all, "
                        "or none when --shape is given)")
    p.add_argument("--shape", type=_shape, action="append", default=[], metavar="T,B,I,H",
                   help="add a custom row (repeatable; NAME=T,B,I,H names it)")
    p.add_argument("--cells", type=_csv(CELLS), default=list(CELLS),
                   help="comma-separated cells: rnn, lstm, gru (default all)")
    p.add_argument("--modes", type=_csv(MODES), default=list(DEFAULT_MODES),
                   help="comma-separated modes: inference, training (all gradients incl. the "
                        "input's), training-data (the input is data that needs no gradient, as "
                        "into a first layer) (default inference,training)")
    p.add_argument("--impls", type=_csv(IMPLS, IMPL_ALIASES), default=None,
                   help="comma-separated implementations: fastrnn, reference (numpy), torch, "
                        "dropin (fastrnn.torch), onnxruntime (ort) (default: all installed)")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the (slow) numpy reference")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for every implementation (default: OMP_NUM_THREADS or all "
                        "cores)")
    p.add_argument("--repeats", type=_positive_int, default=5,
                   help="timed samples per measurement, after a warm-up (default 5)")
    p.add_argument("--budget", type=_budget, default=10.0, metavar="SECONDS",
                   help="time budget of one measurement incl. warm-up: fewer samples (at "
                        "least one after the warm-up); the numpy reference may be timed on its "
                        "warm-up call alone, or 'skipped (time budget)' when one call cannot "
                        "fit (default 10; 'none' for no limit)")
    p.add_argument("--stat", choices=["median", "min"], default="median",
                   help="headline time of a measurement: median (default) or min of the samples "
                        "(min resists load from other processes on a shared machine)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--json", metavar="FILE", help="write every measurement as JSON")
    p.add_argument("--markdown", metavar="FILE",
                   help="write the tables as Markdown with the command and the machine")
    p.add_argument("--plot", metavar="FILE.png",
                   help="bar chart of fastrnn's speed-ups (needs matplotlib)")
    p.add_argument("--memory", action="store_true",
                   help="also measure peak RSS of inference vs training at T=100 and T=1000 "
                        "(B=32, I=H=128; one subprocess per case)")
    p.add_argument("--memory-only", action="store_true",
                   help="run only the peak-memory study")
    p.add_argument("--load", metavar="FILE",
                   help="re-render --markdown/--plot/the table from a saved --json file "
                        "instead of measuring")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--gemm-size", type=_positive_int, default=GEMM_N, help=argparse.SUPPRESS)
    p.add_argument("--memory-shape", type=_bih, default=MEMORY_BIH, help=argparse.SUPPRESS)


def _check_writable(path: str | None, what: str) -> None:
    if path is None:
        return
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise BenchError(f"{what}: directory {d} does not exist")
    if not os.access(d, os.W_OK):
        raise BenchError(f"{what}: directory {d} is not writable")


def _write_outputs(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json and not args.load:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if args.plot:
        write_plot(report, args.plot)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(report, args.plot, args.markdown))
    for what, path in (("JSON", args.json if not args.load else None),
                       ("Markdown", args.markdown), ("chart", args.plot)):
        if path:
            print(f"{what} written to {path}")


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Run the benchmark described by parsed ``args``; return the exit status."""
    threads = prepare_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    for what, path in (("--json", args.json), ("--markdown", args.markdown),
                       ("--plot", args.plot)):
        _check_writable(path, what)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BenchError("--plot needs matplotlib, which is not installed "
                             "(pip install matplotlib, or drop --plot)") from None
    if args.load:
        try:
            with open(args.load) as f:
                report = json.load(f)
        except (OSError, ValueError) as e:
            raise BenchError(f"--load {args.load}: {e}") from None
        if not isinstance(report, dict) or report.get("schema") != SCHEMA:
            raise BenchError(f"--load {args.load}: not a {SCHEMA} file")
        report.setdefault("stat", "median")
        try:
            for d in report["results"]:
                d.setdefault("time_ms", d["median_ms"])
            print(format_text(report), end="")
            _write_outputs(args, report)
        except (KeyError, TypeError, ValueError) as e:
            raise BenchError(f"--load {args.load}: malformed report ({e!r})") from None
        return 0

    rows = dict(ROWS) if args.rows is None and not args.shape else {}
    for r in args.rows or []:
        rows[r] = ROWS[r]
    for name, dims in args.shape:
        rows[name] = dims
    impls = list(args.impls) if args.impls is not None else list(IMPLS)
    if args.no_reference and "reference" in impls:
        impls.remove("reference")
    opts = Options(rows=rows, cells=args.cells, modes=args.modes, impls=impls,
                   threads=threads, repeats=args.repeats, budget_s=args.budget, stat=args.stat,
                   seed=args.seed, quiet=args.quiet)

    t0 = time.perf_counter()
    blas = pin_blas_threads(threads)
    warnings: list[str] = []
    results: list[Result] = []
    peak = None
    memory = None
    want_memory = args.memory or args.memory_only
    available = probe_impls(["fastrnn"] if args.memory_only else impls)
    if ("fastrnn" in impls or want_memory) and available["fastrnn"] is not None:
        raise BenchError(f"fastrnn.functional cannot be imported ({available['fastrnn']}); "
                         "build the extension: python setup.py build_ext --inplace")
    if want_memory:  # before the grid, while this process is small
        memory = memory_study(opts.cells, threads, bih=args.memory_shape, quiet=opts.quiet)
    if not args.memory_only:
        if args.impls is None:  # default: every installed implementation, quietly
            opts.impls = [i for i in impls if available[i] is None]
        if not opts.quiet:
            print(f"measuring the GEMM peak ({args.gemm_size}x{args.gemm_size} float32, "
                  f"{threads} threads)...", file=sys.stderr)
        peak = gemm_peak(args.gemm_size)
        results = run_grid(opts, available, warnings)
        if results and not any(w.startswith("interrupted") for w in warnings):
            # measured again at the end: a peak disturbed by load once is not taken as the peak
            again = gemm_peak(args.gemm_size)
            peak = dict(max(peak, again, key=lambda d: d["gflops"]),
                        start_gflops=peak["gflops"], end_gflops=again["gflops"])
    report = build_report(opts, argv, peak, results, memory, warnings, blas,
                          time.perf_counter() - t0)
    print(format_text(report), end="")
    _write_outputs(args, report)
    return 130 if any(w.startswith("interrupted") for w in warnings) else 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(prog: str = "python -m fastrnn bench") -> argparse.ArgumentParser:
    """The stand-alone parser of ``bench`` (``python -m fastrnn bench --help``)."""
    p = _Parser(prog=prog, description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fastrnn bench``: parse ``argv``, run, return the status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return run(args, argv)
    except BenchError as e:
        print(f"fastrnn bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastrnn bench: interrupted", file=sys.stderr)
        return 130
