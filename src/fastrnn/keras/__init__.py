"""The Keras-compatible API: Keras 3's models, layers and training loop on fastrnn's kernels.

Code written for Keras runs after changing one import::

    import fastrnn.keras as keras          # was: import keras
    from fastrnn.keras import layers       # was: from keras import layers

    inputs = keras.Input(shape=(None, 8))
    x = layers.LSTM(32)(inputs)
    model = keras.Model(inputs, layers.Dense(1)(x))

The submodules mirror Keras's:

- :mod:`~fastrnn.keras.models`: :class:`Sequential` and the functional :class:`Model`
  (``compile``/``fit``/``evaluate``/``predict``/``save``/``stream``), :func:`load_model`,
  the float type and the seed;
- :mod:`~fastrnn.keras.layers`: the layers (:mod:`~fastrnn.keras.recurrent` holds SimpleRNN,
  LSTM, GRU and Bidirectional, which run on :mod:`fastrnn.functional`) and :func:`Input`;
- :mod:`~fastrnn.keras.symbolic` and :mod:`~fastrnn.keras.functional`: symbolic tensors and the
  graph a functional model runs;
- :mod:`~fastrnn.keras.optimizers`, :mod:`~fastrnn.keras.losses`,
  :mod:`~fastrnn.keras.metrics`, :mod:`~fastrnn.keras.callbacks`,
  :mod:`~fastrnn.keras.initializers`, :mod:`~fastrnn.keras.activations`;
- :mod:`~fastrnn.keras.onnx_export`: export to ONNX (standard LSTM/GRU/RNN operators);
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
    functional,
    initializers,
    layers,
    losses,
    metrics,
    mixed_precision,
    models,
    optimizers,
    preprocessing,
    recurrent,
    saving,
    symbolic,
    utils,
)
from .layers import Input, InputLayer
from .models import (
    Model,
    ModelFileError,
    Sequential,
    floatx,
    load_model,
    set_floatx,
    set_random_seed,
)
from .symbolic import KerasTensor

__all__ = ["Input", "InputLayer", "KerasTensor", "Model", "ModelFileError", "Sequential",
           "activations", "backend", "base", "callbacks", "floatx", "functional",
           "initializers", "layers", "load_model", "losses", "metrics", "models", "optimizers",
           "mixed_precision", "preprocessing", "recurrent", "saving", "set_floatx",
           "set_random_seed", "symbolic", "utils"]
