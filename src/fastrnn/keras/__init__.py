"""The Keras-compatible API: Keras 3's models, layers and training loop on fastrnn's kernels.

Code written for Keras runs after changing its imports::

    from fastrnn.keras import Sequential
    from fastrnn.keras.layers import LSTM, Dense, Embedding

The submodules mirror Keras's:

- :mod:`~fastrnn.keras.models`: :class:`Sequential` (``compile``/``fit``/``evaluate``/
  ``predict``/``save``/``stream``), :func:`load_model`, the float type and the seed;
- :mod:`~fastrnn.keras.layers`: the layers (:mod:`~fastrnn.keras.recurrent` holds SimpleRNN,
  LSTM, GRU and Bidirectional, which run on :mod:`fastrnn.functional`);
- :mod:`~fastrnn.keras.optimizers`, :mod:`~fastrnn.keras.losses`,
  :mod:`~fastrnn.keras.metrics`, :mod:`~fastrnn.keras.callbacks`,
  :mod:`~fastrnn.keras.initializers`, :mod:`~fastrnn.keras.activations`;
- :mod:`~fastrnn.keras.mixed_precision`: dtype policies (``set_global_policy(
  "mixed_bfloat16")``; the int8 policy of ``Sequential.quantize("int8")``);
- :mod:`~fastrnn.keras.saving`: the model file format (a zip of JSON config and ``.npy``
  arrays);
- :mod:`~fastrnn.keras.base` (``Layer``, ``Variable``) and :mod:`~fastrnn.keras.backend`
  (shared state: float type, random generator, layer names).
"""

from __future__ import annotations

from . import (
    activations,
    backend,
    base,
    callbacks,
    initializers,
    layers,
    losses,
    metrics,
    mixed_precision,
    models,
    optimizers,
    recurrent,
    saving,
)
from .layers import Input
from .models import (
    ModelFileError,
    Sequential,
    floatx,
    load_model,
    set_floatx,
    set_random_seed,
)

__all__ = ["Input", "ModelFileError", "Sequential", "activations", "backend", "base",
           "callbacks", "floatx", "initializers", "layers", "load_model", "losses", "metrics",
           "mixed_precision", "models", "optimizers", "recurrent", "saving", "set_floatx",
           "set_random_seed"]
