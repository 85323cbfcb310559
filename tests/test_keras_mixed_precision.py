"""Keras's dtype policies on fastrnn's layers: mixed bfloat16 and int8 quantization.

The recurrent layers under ``"mixed_bfloat16"`` must compute what :mod:`reference`
computes with ``precision="bfloat16"`` (the same rounding), stay near float32, train, save
their policy; ``quantize("int8")`` likewise against the reference's int8 and blocks
training; the prepared weights are reused and never stale. Policy names and attributes are
checked against Keras 3's own.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fastrnn
from fastrnn import functional, reference
from fastrnn.keras import Sequential, load_model, mixed_precision
from fastrnn.keras import layers as L

RNG = np.random.default_rng(20)
X = RNG.standard_normal((5, 9, 6)).astype(np.float32)
Y = RNG.standard_normal((5, 3)).astype(np.float32)


@pytest.fixture(autouse=True)
def _default_policy():
    mixed_precision.set_global_policy(None)
    yield
    mixed_precision.set_global_policy(None)


def _model(cls, policy=None, bidirectional=False, seed=0):
    fastrnn.keras.set_random_seed(seed)
    rnn = cls(7, return_sequences=True, dtype=policy)
    if bidirectional:
        rnn = L.Bidirectional(rnn)
    return Sequential([L.Input((9, 6)), rnn, L.GRU(4, dtype=policy), L.Dense(3)])


CELLS = [L.SimpleRNN, L.LSTM, L.GRU]


# -- policies -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["float32", "float64", "mixed_bfloat16", "int8_from_float32",
                                  "int8_from_mixed_bfloat16"])
def test_policy_attributes_match_keras(name: str) -> None:
    ours = mixed_precision.get(name)
    theirs = keras.dtype_policies.get(name)
    assert ours.name == theirs.name
    assert ours.compute_dtype == theirs.compute_dtype
    assert ours.variable_dtype == theirs.variable_dtype
    assert ours.quantization_mode == getattr(theirs, "quantization_mode", None)
    assert type(ours).__name__ == type(theirs).__name__


def test_policy_classes_and_global_policy() -> None:
    assert mixed_precision.Policy is mixed_precision.DTypePolicy
    assert mixed_precision.global_policy().name == "float32"
    mixed_precision.set_global_policy("mixed_bfloat16")
    assert mixed_precision.global_policy() == mixed_precision.DTypePolicy("mixed_bfloat16")
    layer = L.LSTM(3)
    assert layer.dtype_policy.name == "mixed_bfloat16" and layer.dtype == "float32"
    assert layer.precision == "bfloat16"
    assert L.LSTM(3, dtype="float32").precision == "float32"  # a layer's dtype wins
    mixed_precision.set_dtype_policy(mixed_precision.DTypePolicy("float64"))
    assert L.GRU(3).dtype == "float64" and L.GRU(3).precision == "float32"
    mixed_precision.set_global_policy(None)
    assert L.GRU(3).dtype_policy.name == "float32"


def test_keras_global_policy_gives_the_same_layer_policy() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        k = keras.layers.LSTM(3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed_precision.set_global_policy("mixed_bfloat16")
    f = L.LSTM(3)
    assert (f.dtype_policy.name, f.dtype_policy.compute_dtype, f.dtype) == (
        k.dtype_policy.name, k.compute_dtype, k.variable_dtype)


@pytest.mark.parametrize("bad, err, needle", [
    ("mixed_float16", ValueError, "dtype must be 'float32' or"),
    ("bfloat16", ValueError, "mixed_bfloat16"),
    ("int4_from_float32", ValueError, "dtype must be"),
    (3, ValueError, "dtype must be"),
    ({"class_name": "DTypePolicy", "config": {}}, ValueError, "needs a 'name'"),
])
def test_bad_policies_are_clear_errors(bad, err, needle) -> None:
    with pytest.raises(err, match=needle):
        L.LSTM(3, dtype=bad)


def test_quantized_policy_cannot_be_global() -> None:
    with pytest.raises(ValueError, match="cannot be the global policy"):
        mixed_precision.set_global_policy("int8_from_float32")


def test_keras_serialized_policy_is_accepted() -> None:
    cfg = keras.layers.LSTM(3, dtype="mixed_bfloat16").get_config()["dtype"]
    assert L.LSTM(3, dtype=cfg).dtype_policy.name == "mixed_bfloat16"


# -- bfloat16 compute ---------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cls", CELLS)
def test_bf16_layers_match_the_reference_of_the_same_rounding(cls, bidirectional) -> None:
    m = _model(cls, "mixed_bfloat16", bidirectional)
    y = m.predict(X, verbose=0)
    m.set_ops(reference)
    y_ref = m.predict(X, verbose=0)
    np.testing.assert_allclose(y, y_ref, atol=2e-5, rtol=0)
    f32 = _model(cls, "float32", bidirectional)
    y32 = f32.predict(X, verbose=0)
    err = np.abs(y - y32).max()
    assert 0 < err < 0.05, err  # the rounding shows, within bfloat16's bounds


def test_bf16_layer_equals_the_reference_op() -> None:
    layer = L.LSTM(7, return_sequences=True, dtype="mixed_bfloat16")
    y = layer(X)
    w_ih, w_hh, b_ih, b_hh = layer.op_weights()
    xt = np.ascontiguousarray(X.transpose(1, 0, 2))
    y_ref = reference.cell_forward("lstm", xt, None, None, w_ih, w_hh, b_ih, b_hh,
                                           training=False, precision="bfloat16")[0]
    np.testing.assert_allclose(y, y_ref.transpose(1, 0, 2), atol=2e-5, rtol=0)


@pytest.mark.parametrize("cls", CELLS)
def test_bf16_training_gradients_match_the_reference(cls) -> None:
    grads = []
    for ops in (functional, reference):
        m = _model(cls, "mixed_bfloat16")
        m.set_ops(ops)
        m.compile("sgd", "mse")
        before = m.get_weights()
        m.train_on_batch(X, Y)
        grads.append([b - a for a, b in zip(before, m.get_weights(), strict=True)])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-3)


def test_bf16_training_reduces_the_loss_like_float32() -> None:
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        m = _model(L.LSTM, policy)
        m.compile(keras_optimizer(), "mse")
        h = m.fit(X, Y, epochs=30, batch_size=5, verbose=0, shuffle=False)
        losses[policy] = h.history["loss"]
    assert losses["mixed_bfloat16"][-1] < 0.5 * losses["mixed_bfloat16"][0]
    assert abs(losses["mixed_bfloat16"][-1] - losses["float32"][-1]) < 0.05 * losses[
        "float32"][0]


def keras_optimizer():
    from fastrnn.keras.optimizers import Adam

    return Adam(0.01)


# -- int8 quantization --------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cls", CELLS)
def test_quantized_layers_match_the_int8_reference(cls, bidirectional) -> None:
    m = _model(cls, None, bidirectional)
    y32 = m.predict(X, verbose=0)
    m.quantize("int8")
    names = {layer.dtype_policy.name for layer in m.layers}
    assert names == {"int8_from_float32", "float32"}  # Dense stays float32
    y = m.predict(X, verbose=0)
    m.set_ops(reference)
    np.testing.assert_allclose(y, m.predict(X, verbose=0), atol=2e-5, rtol=0)
    err = np.abs(y - y32).max()
    assert 0 < err < 0.05, err


def test_quantize_errors_are_keras_like() -> None:
    with pytest.raises(ValueError, match="isn't yet built"):
        Sequential([L.LSTM(3)]).quantize("int8")
    with pytest.raises(ValueError, match="isn't yet built"):
        L.LSTM(3).quantize("int8")
    m = _model(L.LSTM)
    with pytest.raises(ValueError, match="Invalid quantization mode"):
        m.quantize("int4")
    with pytest.raises(ValueError, match="config"):
        m.quantize("int8", config={"weight": "x"})
    with pytest.raises(ValueError, match="Unrecognized keyword"):
        m.quantize("int8", colour="blue")
    m.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        m.quantize("int8")
    m.compile("adam", "mse")
    with pytest.raises(ValueError, match="is quantized with dtype_policy='int8_from_float32'"):
        m.fit(X, Y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="needs a float32 layer"):
        m64 = Sequential([L.Input((9, 6)), L.LSTM(3, dtype="float64")])
        m64.quantize("int8")


def test_quantize_filters_select_layers() -> None:
    m = _model(L.LSTM)
    m.quantize("int8", filters="^lstm")
    assert [layer.precision for layer in m.layers[:2]] == ["int8", "float32"]
    m = _model(L.LSTM)
    m.quantize("int8", filters=lambda layer: isinstance(layer, L.GRU))
    assert [layer.precision for layer in m.layers[:2]] == ["float32", "int8"]


def test_quantize_after_mixed_bfloat16_names_the_source() -> None:
    m = _model(L.GRU, "mixed_bfloat16")
    m.quantize("int8")
    assert m.layers[0].dtype_policy.name == "int8_from_mixed_bfloat16"
    assert m.layers[0].dtype_policy.compute_dtype == "bfloat16"
    assert m.layers[0].precision == "int8"


# -- prepared weights: reused, never stale --------------------------------------------------
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "int8"])
def test_prepared_weights_are_reused_and_follow_weight_changes(policy) -> None:
    m = _model(L.LSTM, None if policy == "int8" else policy)
    if policy == "int8":
        m.quantize("int8")
    layer = m.layers[0]
    m.predict(X, verbose=0)
    pw = layer._prepared
    assert pw is not None and pw.version == layer._weights_version()
    m.predict(X, verbose=0)
    assert layer._prepared is pw and pw.version == layer._weights_version()
    # set_weights: the next call runs the new weights
    other = _model(L.LSTM, None if policy == "int8" else policy, seed=7)
    if policy == "int8":
        other.quantize("int8")
    m.set_weights(other.get_weights())
    np.testing.assert_array_equal(m.predict(X, verbose=0), other.predict(X, verbose=0))
    # one weight assigned in place
    k = layer.kernel.numpy()
    layer.kernel.assign(k * 0.5)
    other.layers[0].kernel.assign(k * 0.5)
    np.testing.assert_array_equal(m.predict(X, verbose=0), other.predict(X, verbose=0))


def test_optimizer_steps_invalidate_bf16_prepared_weights() -> None:
    m = _model(L.LSTM, "mixed_bfloat16")
    m.compile("adam", "mse")
    m.fit(X, Y, epochs=3, batch_size=5, verbose=0)
    fresh = _model(L.LSTM, "mixed_bfloat16", seed=3)
    fresh.set_weights(m.get_weights())
    np.testing.assert_array_equal(m.predict(X, verbose=0), fresh.predict(X, verbose=0))


# -- saving --------------------------------------------------------------------------------
@pytest.mark.parametrize("quantize", [False, True])
def test_saving_keeps_the_policy(tmp_path, quantize) -> None:
    m = _model(L.LSTM, "mixed_bfloat16", bidirectional=True)
    if quantize:
        m.quantize("int8")
    y = m.predict(X, verbose=0)
    m.save(tmp_path / "m.keras")
    m2 = load_model(tmp_path / "m.keras")
    assert [layer.dtype_policy.name for layer in m2.layers] == [
        layer.dtype_policy.name for layer in m.layers]
    assert m2.layers[0].forward_layer.precision == ("int8" if quantize else "bfloat16")
    np.testing.assert_array_equal(m2.predict(X, verbose=0), y)


# -- streaming ------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_stream_honours_the_policy_and_quantization(precision) -> None:
    fastrnn.keras.set_random_seed(1)
    policy = "mixed_bfloat16" if precision == "bfloat16" else None
    m = Sequential([L.Input((9, 6)), L.LSTM(7, return_sequences=True, dtype=policy),
                    L.GRU(5, return_sequences=True, dtype=policy), L.Dense(3)])
    y32 = m.predict(X[:1], verbose=0)[0]
    if precision == "int8":
        m.quantize("int8")
    y = m.predict(X[:1], verbose=0)[0]
    session = m.stream()
    assert session.precision == precision
    steps = np.stack([session.step(X[0, t]) for t in range(X.shape[1])])
    np.testing.assert_allclose(steps, y, atol=2e-5, rtol=0)
    assert np.abs(steps - y32).max() > 0  # not the float32 model


def test_stream_needs_one_precision() -> None:
    m = Sequential([L.Input((9, 6)), L.LSTM(7, return_sequences=True, name="first"),
                    L.GRU(5, dtype="mixed_bfloat16", name="second")])
    with pytest.raises(ValueError, match="one precision.*first: float32, second: bfloat16"):
        m.stream()


@pytest.mark.parametrize("cls", CELLS)
def test_bf16_error_against_float32_is_keras_mixed_bfloat16s_or_less(cls) -> None:
    """On the same weights, fastrnn's mixed_bfloat16 layer is no further from float32 than
    Keras 3's own mixed_bfloat16 layer (which also rounds the gate maths to bfloat16)."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(5).standard_normal((8, 30, 12)).astype(np.float32)
    kcls = getattr(keras.layers, cls.__name__)

    def out(t):
        return keras.ops.convert_to_numpy(keras.ops.cast(t, "float32"))

    k32 = kcls(16, return_sequences=True)
    y32 = out(k32(x))
    kbf = kcls(16, return_sequences=True, dtype="mixed_bfloat16")
    kbf.build(x.shape)
    kbf.set_weights(k32.get_weights())
    ours = cls(16, return_sequences=True, dtype="mixed_bfloat16")
    ours.build((None, 30, 12))
    ours.set_weights(k32.get_weights())
    assert ours.compute_dtype == kbf.compute_dtype and ours.variable_dtype == kbf.variable_dtype
    err_keras = np.abs(out(kbf(x)) - y32).max()
    err_ours = np.abs(ours(x) - y32).max()
    assert 0 < err_ours <= 1.5 * err_keras, (err_ours, err_keras)


# -- functional models ------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_functional_model_quantizes_and_streams_like_sequential(precision) -> None:
    """keras.Model shares quantize() and the stream's precision with Sequential: the same
    layers give the same outputs, step by step too."""
    import fastrnn.keras as fk

    policy = "mixed_bfloat16" if precision == "bfloat16" else None
    seq = _model(L.LSTM, policy)
    inp = fk.Input((9, 6))
    out = inp
    for layer in seq.layers:
        out = layer(out)
    model = fk.Model(inp, out)
    y32 = model.predict(X, verbose=0)
    if precision == "int8":
        model.quantize("int8")
        assert {layer.dtype_policy.name for layer in model.layers[1:]} == \
            {"int8_from_float32", "float32"}
    y = model.predict(X, verbose=0)
    np.testing.assert_array_equal(y, seq.predict(X, verbose=0))  # the same layer objects
    if precision == "int8":
        assert np.abs(y - y32).max() > 0  # not the float32 computation
    assert {getattr(layer, "precision", precision) for layer in model.layers} == {precision}
    session = model.stream()
    assert session.precision == precision
    steps = np.stack([session.step(X[0, t]) for t in range(X.shape[1])])
    np.testing.assert_allclose(steps[-1], y[0], atol=2e-5, rtol=0)
