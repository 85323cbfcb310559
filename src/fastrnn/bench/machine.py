"""The machine the benchmark runs on: one thread count for every library, and its description.

numpy is imported lazily on purpose: the thread count must reach OpenBLAS through the
environment before numpy loads it (see :func:`prepare_threads`).
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
from typing import Any

#: The environment variables that carry the thread count to OpenMP and the BLAS libraries.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


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
        for k in THREAD_ENV:
            os.environ[k] = str(n)
    fastrnn.set_num_threads(n)
    return n


def pin_blas_threads(n: int) -> str:
    """Set and check numpy's OpenBLAS thread count through its C API.

    Parameters
    ----------
    n : int
        The thread count.

    Returns
    -------
    str
        A short description such as ``"OpenBLAS, 2 thread(s)"``; ``"unknown BLAS"`` where
        no OpenBLAS is loaded (the environment set by :func:`prepare_threads` is then all
        we can do).
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


def cpu_model() -> str:
    """The CPU's model name, with family/model and L2 size where known.

    Returns
    -------
    str
        From /proc/cpuinfo or lscpu, else platform's guess.
    """
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


def cpu_flags() -> list[str]:
    """The CPU's SIMD features that matter to the kernels.

    Returns
    -------
    list of str
        Those of avx2, fma, avx512f, avx512bw, avx512_bf16, avx512_vnni, avx_vnni, amx_bf16,
        amx_int8 in /proc/cpuinfo (empty elsewhere): the last four are the int8 and AMX
        instructions of the reduced precisions.
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16",
                                        "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
                            if x in have]
    except OSError:
        pass
    return []


def versions() -> dict[str, str | None]:
    """The versions of Python, numpy and the anchors' libraries.

    Returns
    -------
    dict
        ``python``, ``numpy``, and ``torch``, ``onnxruntime``, ``onnx`` (None where not
        imported by the run).
    """
    import numpy as np

    out: dict[str, str | None] = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "onnxruntime", "onnx"):
        m = sys.modules.get(mod)
        out[mod] = getattr(m, "__version__", None) if m is not None else None
    return out


def fastrnn_info() -> dict[str, Any]:
    """:func:`fastrnn.info`, or the version and the error where the extension fails.

    Returns
    -------
    dict
    """
    import fastrnn

    try:
        return dict(fastrnn.info())
    except Exception as e:  # noqa: BLE001 - described, not fatal here
        return {"version": fastrnn.__version__, "error": f"{type(e).__name__}: {e}"}

