"""fastrnn: fast RNN, LSTM and GRU training and inference on the CPU.

The heavy lifting happens in C (``csrc/``) through the Cython module ``fastrnn._kernels``.
Where to start:

- :mod:`fastrnn.keras`: a Keras-compatible API (``Sequential``, ``SimpleRNN``/``LSTM``/``GRU``,
  ``Embedding``, ``Dense``, ``compile``/``fit``/``predict``/``save``); Keras code runs after
  changing its imports.
- :mod:`fastrnn.torch`: a PyTorch drop-in (``fastrnn.torch.LSTM`` etc. subclass ``torch.nn``'s;
  ``fastrnn.torch.accelerate(model)`` swaps them into an existing model in place).
- ``model.stream()``: streaming inference, one timestep at a time, for real-time data
  (:mod:`fastrnn.streaming`).
- :mod:`fastrnn.functional`: the ops over whole time-major (T, B, I) sequences, NumPy in and
  out; :mod:`fastrnn.reference` has the same functions in pure NumPy.
- The ``fastrnn`` command (also ``python -m fastrnn``): ``fastrnn demo`` trains a model in
  about a minute, ``fastrnn train`` fits a forecaster to a CSV, ``fastrnn bench`` and
  ``fastrnn info`` measure and check the build; ``fastrnn --help`` lists every command.
- :func:`info`, :func:`set_num_threads`, :func:`get_num_threads`, :func:`release_memory`.

Example::

    import numpy as np
    from fastrnn.keras import Sequential, layers
    model = Sequential([layers.Input(shape=(20, 3)), layers.LSTM(32), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.random.rand(256, 20, 3), np.random.rand(256, 1), epochs=2)
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
