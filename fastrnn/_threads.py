"""Thread-count policy: resolved in Python, passed explicitly to every kernel call."""

from __future__ import annotations

import os

_num_threads: int | None = None

# How long an idle OpenMP thread spins before it sleeps (libgomp iterations). The kernels
# synchronise their threads once per time step; libgomp's default (300,000 spins) keeps a
# waiting thread on its core for ~0.1-1 ms, which is harmless on an idle machine but, when
# another process wants that core, stalls each step until the scheduler intervenes: measured
# here with two busy processes beside a 2-thread LSTM (100,32,128,128), forward median
# 407 ms with the default against 20 ms with 1,000 spins. A short spin keeps per-step
# barriers cheap when both threads run and gives the core away quickly when they do not.
SPINCOUNT = "1000"
_spincount: str | None = None


def _load_kernels_with_short_spin() -> str | None:
    """Load the extension (and libgomp) with a short spin-wait unless the user chose one.

    libgomp reads its environment once, when it is loaded, so ``GOMP_SPINCOUNT`` is set only
    around the extension's import and removed again: torch's own OpenMP runtime and child
    processes keep their defaults. ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` set by the user
    win. Returns the spin count in effect for fastrnn (None: libgomp's default policy).
    """
    global _spincount
    user = os.environ.get("GOMP_SPINCOUNT")
    if user is not None or "OMP_WAIT_POLICY" in os.environ:
        _spincount = user
        return _spincount
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        from . import _kernels  # noqa: F401  (an unsupported build raises again on first use)
        _spincount = SPINCOUNT
    except ImportError:
        _spincount = None
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    return _spincount


def openmp_spincount() -> str | None:
    """The libgomp spin count fastrnn's threads use (None: libgomp's default policy)."""
    return _spincount


def _default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_num_threads(n: int | None) -> None:
    """Set the number of threads fastrnn's kernels use.

    Parameters
    ----------
    n : int or None
        A positive thread count, or None to go back to the default (``OMP_NUM_THREADS``
        when set, else every core this process may run on).
    """
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    _num_threads = n


def get_num_threads() -> int:
    """Return the number of threads the kernels will use on the next call."""
    return _num_threads if _num_threads is not None else _default_threads()
