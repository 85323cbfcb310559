"""Thread-count policy: resolved in Python, passed explicitly to every kernel call."""

from __future__ import annotations

import os

_num_threads: int | None = None


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
