"""Timing one call: warm-up, samples (looped when the call is short), the GEMM peak."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from fastrnn.bench.runners import Runner

MIN_SAMPLE_S = 0.02  # calls shorter than this are looped inside one timing sample
# A call shorter than this gets one untimed call before each sample. The grid pauses before
# every sample (idle workers of the library measured before stop spinning), and the first call
# after a pause pays for waking the threads and caches: on the 2-vCPU development VM 1-2 ms more
# for every library (ORT's first LSTM call 1.8-2.1 ms against 0.9-1.3 ms warm, torch's up to
# 15 ms), which swamped samples of a few calls. Time after idle is `bench --pipeline`'s measure.
WARM_CALL_MAX_S = 0.05
EST_CALLS = 5  # warm-up calls after the first that a fast call's loop count is taken from
GEMM_N = 2048


class Timer:
    """Warm-up and timing samples of one runner; samples of several Timers can interleave.

    The constructor warms up: one call, then for a fast call up to ``EST_CALLS`` more whose
    least time sets the loop count (the first calls pay one-off costs), keeping a copy of the
    first output. Calls shorter than ``MIN_SAMPLE_S`` are repeated
    ``number`` times inside a sample (the sample is their mean); calls shorter than
    ``WARM_CALL_MAX_S`` get one untimed call before each sample. With a budget, fewer
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
            # the loop count comes from the least of up to EST_CALLS more calls: a single early
            # call can pay a one-off cost (fastrnn's second call started its thread pool: 400 us
            # against 7 warm, which made samples of 48 calls, each swamped by the wake-up after
            # the grid's pause)
            times = []
            while len(times) < EST_CALLS and spent < 0.25:
                t = time.perf_counter()
                run()
                times.append(time.perf_counter() - t)
                spent += times[-1]
            est = min(times)
        self.est = est
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
        if self.est < WARM_CALL_MAX_S:  # after the grid's pause: the sample times warm calls
            run()
        t = time.perf_counter()
        for _ in range(number):
            run()
        self.times.append((time.perf_counter() - t) / number)

    def result(self) -> tuple[list[float], int, bool]:
        """(per-call seconds of each sample, calls per sample, warm-up only)."""
        if not self.times:
            return [self.first], 1, True
        return list(self.times), self.number, False


class NoGC:
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

    Parameters
    ----------
    run : Runner
        The call to time.
    repeats : int
        Samples at most.
    budget_s : float or None
        Seconds for warm-up and samples (None: no limit).

    Returns
    -------
    (times_s, number, warmup_only, first_output)
        Per-call seconds of each sample, calls per sample, whether only the warm-up was
        timed, and a copy of the first call's output.
    """
    with NoGC():
        tm = Timer(run, repeats, budget_s)
        while tm.pending:
            tm.sample()
    return (*tm.result(), tm.first_output)


def gemm_peak(n: int = GEMM_N, repeats: int = 10) -> dict[str, float]:
    """Measure numpy's float32 ``a @ b`` on n x n matrices (the machine's practical peak).

    Parameters
    ----------
    n : int
        The matrices' size.
    repeats : int
        Timed products (after one warm-up).

    Returns
    -------
    dict
        ``n``, ``gflops`` (the best), ``median_gflops``, ``best_ms``.
    """
    import numpy as np

    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    return _matmul_peak(lambda: np.matmul(a, b, out=c), n, repeats)



def bf16_gemm_peak(n: int = GEMM_N, repeats: int = 10) -> dict[str, float]:
    """Measure torch's bfloat16 ``a @ b`` on n x n matrices (the bf16 peak of the run).

    torch runs it with oneDNN's bf16 kernels (``vdpbf16ps`` where the CPU has AVX512_BF16),
    with the threads set by ``torch.set_num_threads``.

    Parameters
    ----------
    n : int
        The matrices' size.
    repeats : int
        Timed products (after one warm-up).

    Returns
    -------
    dict
        ``n``, ``gflops`` (the best), ``median_gflops``, ``best_ms``, ``what``.

    Raises
    ------
    ImportError
        Without torch.
    """
    import torch

    g = torch.Generator().manual_seed(1)
    a = torch.randn((n, n), generator=g).to(torch.bfloat16)
    b = torch.randn((n, n), generator=g).to(torch.bfloat16)
    c = torch.empty((n, n), dtype=torch.bfloat16)
    return {**_matmul_peak(lambda: torch.matmul(a, b, out=c), n, repeats),
            "what": "torch bfloat16 matmul"}


def _matmul_peak(product: Callable[[], object], n: int, repeats: int) -> dict:
    """Time ``product`` (an n x n x n matrix product) after one warm-up: the best and median
    GFLOP/s of ``repeats`` calls, and the best call's milliseconds."""
    product()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        product()
        times.append(time.perf_counter() - t)
    flops = 2.0 * n**3
    return {
        "n": n,
        "gflops": flops / min(times) / 1e9,
        "median_gflops": flops / statistics.median(times) / 1e9,
        "best_ms": min(times) * 1e3,
    }
