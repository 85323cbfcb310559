"""fastrnn: fast RNN, LSTM and GRU training and inference on the CPU.

The heavy lifting happens in C (``csrc/``) through the Cython module
``fastrnn._kernels``; ``fastrnn.functional`` exposes the ops, ``fastrnn.reference`` is a
pure-NumPy oracle with the same signatures.
"""

from __future__ import annotations

from ._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = ["__version__", "get_num_threads", "info", "set_num_threads"]


def info() -> dict:
    """Describe the build and the machine: version, SIMD path, OpenMP, threads, compiler.

    Returns
    -------
    dict
        Keys ``version``, ``simd`` (the kernel path in use), ``simd_available``,
        ``openmp`` (bool), ``num_threads``, ``max_threads``, ``compiler``.
    """
    from . import _kernels

    d = dict(_kernels.build_info())
    d["version"] = __version__
    d["num_threads"] = get_num_threads()
    return d
