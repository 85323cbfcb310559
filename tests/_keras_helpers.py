"""Helpers shared by the fastrnn.keras tests: a float64 policy for real Keras and fastrnn,
a test-only two-input layer, and the weight change of one SGD step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

import fastrnn.keras as fk
from fastrnn.keras.base import Layer


@contextmanager
def float64_everywhere() -> Iterator[None]:
    """Keras (floatx and dtype policy) and fastrnn.keras in float64, seeded with 0; both
    restored after. Keras fixes its global dtype policy from floatx at the first layer it
    builds: set and restore both, so that later tests get float32 Keras layers again."""
    import keras

    old_k, old_p, old_f = keras.config.floatx(), keras.config.dtype_policy(), fk.floatx()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    fk.set_floatx("float64")
    keras.utils.set_random_seed(0)
    try:
        yield
    finally:
        keras.config.set_floatx(old_k)
        keras.config.set_dtype_policy(old_p)
        fk.set_floatx(old_f)


class SumForTest(Layer):
    """A test-only two-input layer (the sum), to build graphs with several inputs without
    depending on the merge layers of fastrnn.keras.layers."""

    multi_input = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def forward(self, xs, masks, training):
        return xs[0] + xs[1], None

    def backward(self, dy, need_dx=True):
        return [dy, dy]


def sgd_delta(model, x, y, optimizers: ModuleType) -> tuple[float, list[np.ndarray]]:
    """The loss and the weights after minus before one SGD step with learning rate 1 (minus
    the gradient); ``optimizers`` is ``keras.optimizers`` or ``fastrnn.keras.optimizers``."""
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=optimizers.SGD(1.0), loss="mse")
    loss = float(np.ravel(model.train_on_batch(x, y))[0])
    return loss, [a - b for a, b in zip(model.get_weights(), before, strict=True)]
