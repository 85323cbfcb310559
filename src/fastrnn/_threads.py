"""Thread-count policy: resolved in Python, passed explicitly to every kernel call.

The count a call uses comes from, first to last: :func:`set_num_threads`; ``OMP_NUM_THREADS``;
every CPU this process may run on. Then:

* **Validation.** A setting must be an integer in 1..:data:`MAX_THREADS` (no Linux machine has
  more CPUs, so a larger number is a mistake, not a setting for a bigger machine); anything else
  is a ``ValueError`` that names the setting (``set_num_threads``, ``OMP_NUM_THREADS``,
  ``nthreads``, or the threadpoolctl limit) and this range. ``OMP_NUM_THREADS`` is read as
  OpenMP does: surrounding blanks are ignored, an empty value means unset, and a list such as
  ``4,2`` (counts for nested levels) gives its first entry, the only level fastrnn opens.
* **Cap.** A count above :func:`thread_cap` (:data:`THREADS_PER_CPU` per CPU this process may
  run on) is clamped to it, with a warning once per setting. More threads than CPUs never speed
  the kernels up (the team meets at a barrier every step), but a few per CPU still reproduce a
  bigger machine's results bit for bit (they depend on the thread count) and exercise the
  oversubscribed path; far beyond, they cost only memory and scheduling (1000 threads on 2
  cores). Clamping rather than failing keeps a script or a job's environment written for a
  bigger machine running on a smaller one.
* **threadpoolctl.** ``threadpoolctl.threadpool_limits(n)`` caps the count at n while it is in
  force (user API ``"openmp"``, internal API ``"fastrnn"``), and ``threadpool_info()`` lists
  fastrnn. threadpoolctl stays optional: fastrnn registers its controller once its kernels are
  loaded (``fastrnn._native`` calls :func:`enable_threadpoolctl`; threadpoolctl only sees loaded
  libraries) and threadpoolctl is imported, in either order, without importing it itself.
* **Fork.** A process forked from this one (``os.fork``, a ``multiprocessing`` pool with the fork
  start method, a torch ``DataLoader`` worker) starts single-threaded, as if it had called
  ``set_num_threads(1)``: forked workers usually share the machine with their parent and each
  other, and torch's DataLoader does the same with torch's threads. The child may set any count
  again; the C fork handlers (``csrc/fork.c``) let it start a fresh team.
"""

from __future__ import annotations

import operator
import os
import sys
import warnings

__all__ = ["MAX_THREADS", "THREADS_PER_CPU", "enable_threadpoolctl", "get_num_threads",
           "set_num_threads", "thread_cap", "threads_arg", "usable_cpus"]

#: The largest thread count a setting may name: Linux's largest CPU count (NR_CPUS).
MAX_THREADS = 8192
#: Threads per usable CPU before a count is clamped (see the module's docstring).
THREADS_PER_CPU = 4

_num_threads: int | None = None
#: threadpoolctl limits in force, innermost last: (the limit, the count before it).
_limits: list[tuple[int, int | None]] = []
#: (setting, value, cap) triples already warned about.
_warned: set[tuple[str, int, int]] = set()
#: Whether the kernels may start threads in this process (False in a child forked while its
#: parent's OpenMP pool could not be released: fastrnn._kernels.fork_pool_released()).
_may_thread = True


class ThreadSettingError(ValueError):
    """A thread count (an argument or ``OMP_NUM_THREADS``) that is not one fastrnn can use."""


def _check(n: object, what: str, hint: str = "") -> int:
    """n as an int if it is a valid thread count, else a ValueError naming `what`."""
    try:
        v = operator.index(n) if not isinstance(n, bool) else None
    except TypeError:
        v = None
    if v is None or not 1 <= v <= MAX_THREADS:
        raise ThreadSettingError(f"{what} must be a positive int in 1..{MAX_THREADS}{hint}; "
                                 f"got {n!r}")
    return v


def usable_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask; else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def thread_cap() -> int:
    """The most threads a call uses: :data:`THREADS_PER_CPU` per CPU this process may run on."""
    return THREADS_PER_CPU * usable_cpus()


def _env_threads() -> int | None:
    raw = os.environ.get("OMP_NUM_THREADS")
    if raw is None or not raw.strip():
        return None
    first = raw.split(",")[0].strip()
    if first.isascii() and first.isdigit() and len(first) <= 6 and 1 <= int(first) <= MAX_THREADS:
        return int(first)
    raise ThreadSettingError(
        f"OMP_NUM_THREADS={raw!r} is not a thread count: fastrnn needs a positive int in "
        f"1..{MAX_THREADS} (a list such as '4,2' gives its first entry); fix or unset it, or "
        f"call fastrnn.set_num_threads(n), which takes precedence")


def set_num_threads(n: int | None) -> None:
    """Set the number of threads fastrnn's kernels use.

    Parameters
    ----------
    n : int or None
        A thread count in 1..``MAX_THREADS`` (8192), or None to go back to the default
        (``OMP_NUM_THREADS`` when set, else every CPU this process may run on). A count above
        :func:`thread_cap` (4 per usable CPU) is clamped to it, with a warning once.

    Raises
    ------
    ValueError
        If n is not an int in 1..8192 (bool included) or None.
    """
    global _num_threads
    if n is None:
        _num_threads = None
        return
    _num_threads = _check(n, "set_num_threads: n", " or None")


def _requested(cpus: int) -> tuple[int, str]:
    """The count asked for before the cap and limits, and the setting that asked for it."""
    if _num_threads is not None:
        return _num_threads, "set_num_threads"
    env = _env_threads()
    if env is not None:
        return env, "OMP_NUM_THREADS"
    return cpus, ""


def _capped(n: int, setting: str, cpus: int) -> int:
    cap = THREADS_PER_CPU * cpus
    if n > cap:
        if (setting, n, cap) not in _warned:
            _warned.add((setting, n, cap))
            warnings.warn(f"fastrnn: {setting} asks for {n} threads; using {cap} ("
                          f"{THREADS_PER_CPU} per CPU this process may run on, the cap)",
                          RuntimeWarning, stacklevel=3)
        n = cap
    return n


def get_num_threads() -> int:
    """Return the number of threads the kernels will use on the next call.

    Raises
    ------
    ValueError
        If no count was set and ``OMP_NUM_THREADS`` is set to something other than a thread
        count (the message names it and the accepted range).
    """
    if not _may_thread:
        return 1
    cpus = usable_cpus()
    n = _capped(*_requested(cpus), cpus)
    if _limits:
        n = min(n, _limits[-1][0])
    return n


def threads_arg(nthreads: int | None) -> int:
    """An explicit ``nthreads`` argument, validated and capped; None gives the current count."""
    if nthreads is None:
        return get_num_threads()
    n = _capped(_check(nthreads, "nthreads"), "nthreads", usable_cpus())
    return n if _may_thread else 1


# ---- fork ----------------------------------------------------------------------------------------

def _after_fork_in_child() -> None:
    global _num_threads, _may_thread
    _num_threads = 1
    kernels = sys.modules.get("fastrnn._kernels")
    _may_thread = kernels is None or kernels.fork_pool_released()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- threadpoolctl ---------------------------------------------------------------------------

def _limit_get() -> int | None:
    try:
        return get_num_threads()
    except ValueError:  # a bad OMP_NUM_THREADS: threadpool_info() must still work
        return None


def _limit_set(n: int | None) -> None:
    """threadpoolctl sets a limit, then, when it ends, the count it found before: that one ends
    the innermost limit (whatever set_num_threads did in between takes effect again)."""
    if _limits and _limits[-1][1] == n:
        _limits.pop()
    elif n is not None:
        _limits.append((_check(n, "threadpoolctl limit for fastrnn"), _limit_get()))


def _register_threadpoolctl(tpc) -> None:
    """Register fastrnn's controller with a threadpoolctl module (3.x; older ones lack the API)."""
    base, register = getattr(tpc, "LibController", None), getattr(tpc, "register", None)
    if base is None or register is None:
        return

    class FastrnnController(base):
        """fastrnn's kernels (``fastrnn._kernels``), as threadpoolctl sees them."""

        user_api = "openmp"
        internal_api = "fastrnn"
        filename_prefixes = ("_kernels",)
        check_symbols = ("fr_fork_guard_install",)

        def get_num_threads(self):
            return _limit_get()

        def set_num_threads(self, num_threads):
            _limit_set(num_threads)

        def get_version(self):
            return getattr(sys.modules.get("fastrnn"), "__version__", None)

    register(FastrnnController)


class _RegisterOnImport:
    """Registers fastrnn with threadpoolctl when threadpoolctl is imported after fastrnn
    (importing it here would add ~15 ms to ``import fastrnn``)."""

    def find_spec(self, name, path=None, target=None):
        if name != "threadpoolctl":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader:
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register_safely(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _register_safely(tpc) -> None:
    try:
        _register_threadpoolctl(tpc)
    except Exception as e:  # never break threadpoolctl's import
        warnings.warn(f"fastrnn: could not register with threadpoolctl: {e!r}", RuntimeWarning,
                      stacklevel=2)


def enable_threadpoolctl() -> None:
    """Register with threadpoolctl now if it is imported, else the moment it is. Called once,
    by fastrnn._native, when the kernels' library is loaded."""
    if "threadpoolctl" in sys.modules:
        _register_safely(sys.modules["threadpoolctl"])
    elif not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())
