"""fastrnn: fast RNN, LSTM and GRU training and inference on the CPU.

The heavy lifting happens in C (``csrc/``) through the Cython module
``fastrnn._kernels``; ``fastrnn.functional`` exposes the ops, ``fastrnn.reference`` is a
pure-NumPy oracle with the same signatures.
"""

from __future__ import annotations

from ._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = ["__version__", "get_num_threads", "info", "release_memory", "set_num_threads"]


def info() -> dict:
    """Describe the build and the machine: version, SIMD path, OpenMP, threads, compiler.

    Returns
    -------
    dict
        Keys ``version``, ``simd`` (the kernel path in use), ``simd_available``,
        ``openmp`` (bool), ``num_threads``, ``max_threads``, ``compiler``.
    """
    from . import _native

    d = _native.build_info()
    d["version"] = __version__
    d["num_threads"] = get_num_threads()
    return d


def release_memory() -> int:
    """Free the working memory the kernels keep between calls.

    A training step needs scratch memory of the order of the training cache (the gate
    gradients of the whole sequence), and its big outputs (``y``, ``dx``, the weight
    gradients, the training cache) live on the same kind of block. When a block is freed
    (for an output: when the array and all its views are gone), the kernels keep it (up to
    16 blocks, 1 GiB in all), so the next call of a similar size reuses it instead of
    page-faulting fresh memory (on the machines measured, ~30 ms per 50 MB; 5-9% of a small
    LSTM call). Call this after training to give the kept blocks back.

    Returns
    -------
    int
        The number of bytes freed.
    """
    from . import _native

    return _native.release_memory()
