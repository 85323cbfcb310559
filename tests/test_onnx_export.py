"""ONNX export: fastrnn's Keras-style models (:mod:`fastrnn.keras.onnx_export`), the torch
drop-in through ``torch.onnx.export``, and ``fastrnn export``.

Every exported model is checked by ``onnx.checker.check_model(full_check=True)`` and run by
ONNX Runtime on batch sizes and sequence lengths other than the ones the model was built or
exported with; its outputs must equal fastrnn's up to float32 rounding.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import fastrnn
import fastrnn.keras as keras
import fastrnn.torch as ft
from fastrnn.cli import export as cli_export
from fastrnn.cli.command import CommandError
from fastrnn.keras import Sequential
from fastrnn.keras import layers as L
from fastrnn.keras.activations import ACTIVATIONS
from fastrnn.keras.models import load_model
from fastrnn.keras.onnx_export import (
    DEFAULT_OPSET,
    MIN_OPSET,
    OnnxExportError,
    _Exporter,
    export_onnx,
)

RTOL = ATOL = 2e-5  # float32 rounding over a few steps
CELLS = {"SimpleRNN-tanh": lambda **kw: L.SimpleRNN(6, **kw),
         "SimpleRNN-relu": lambda **kw: L.SimpleRNN(6, activation="relu", **kw),
         "LSTM": lambda **kw: L.LSTM(6, **kw),
         "GRU": lambda **kw: L.GRU(6, **kw)}
# (batch, time) pairs run through the exported model: none is the export's
SHAPES = ((3, 5), (1, 9), (6, 2))
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    onnx.checker.check_model(proto, full_check=True)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _ops(proto: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in proto.graph.node}


def _padded(rng: np.random.Generator, b: int, t: int, f: int) -> np.ndarray:
    """A float batch whose sequences have lengths from t down to 0 (zeros pad the end)."""
    x = rng.standard_normal((b, t, f)).astype(np.float32)
    lengths = rng.integers(0, t + 1, b)
    lengths[0] = t
    if b > 2:
        lengths[-1] = 0  # an all-padding sequence
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    return x


def _check(model: Sequential, xs: list[np.ndarray], **kw) -> onnx.ModelProto:
    proto = export_onnx(model, **kw)
    sess = _session(proto)
    for x in xs:
        want = model.predict(x, verbose=0)
        got = sess.run(None, {"input": x})[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    return proto


# ---- each cell, direction, output kind and mask ---------------------------------------------

@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_recurrent_layer_matches(cell, go_backwards, return_sequences, masked):
    rng = np.random.default_rng(0)
    layers = [L.Input((None, 4))] + ([L.Masking()] if masked else [])
    model = Sequential(layers + [CELLS[cell](return_sequences=return_sequences,
                                             go_backwards=go_backwards)])
    make = _padded if masked else (lambda r, b, t, f: r.standard_normal((b, t, f))
                                   .astype(np.float32))
    proto = _check(model, [make(rng, b, t, 4) for b, t in SHAPES])
    op = {"S": "RNN", "L": "LSTM", "G": "GRU"}[cell[0]]
    assert op in _ops(proto)
    assert not _ops(proto) & {"Loop", "Scan"}
    node = next(n for n in proto.graph.node if n.op_type == op)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["direction"] == (b"reverse" if go_backwards else b"forward")
    assert (len(node.input) > 4 and node.input[4] != "") == masked  # sequence_lens: masks
    if op == "GRU":
        assert attrs["linear_before_reset"] == 1


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_zero_output_for_mask(go_backwards, return_sequences):
    rng = np.random.default_rng(1)
    model = Sequential([L.Input((None, 3)), L.Masking(),
                        L.LSTM(5, return_sequences=return_sequences, go_backwards=go_backwards,
                               zero_output_for_mask=True)])
    _check(model, [_padded(rng, b, t, 3) for b, t in SHAPES])


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_bidirectional_matches(cell, merge_mode, return_sequences, masked):
    rng = np.random.default_rng(2)
    layers = [L.Input((None, 4))] + ([L.Masking()] if masked else [])
    model = Sequential(layers + [L.Bidirectional(CELLS[cell](return_sequences=return_sequences),
                                                 merge_mode=merge_mode)])
    x = [(_padded(rng, b, t, 4) if masked else rng.standard_normal((b, t, 4))
          .astype(np.float32)) for b, t in SHAPES]
    proto = _check(model, x)
    rec = [n for n in proto.graph.node if n.op_type in ("RNN", "LSTM", "GRU")]
    assert len(rec) == 1
    assert onnx.helper.get_attribute_value(
        next(a for a in rec[0].attribute if a.name == "direction")) == b"bidirectional"


def test_bidirectional_with_another_backward_layer_is_two_nodes():
    rng = np.random.default_rng(3)
    model = Sequential([L.Input((None, 4)), L.Masking(),
                        L.Bidirectional(L.LSTM(5, return_sequences=True),
                                        backward_layer=L.GRU(3, return_sequences=True,
                                                             go_backwards=True))])
    proto = _check(model, [_padded(rng, b, t, 4) for b, t in SHAPES])
    assert {"LSTM", "GRU"} <= _ops(proto)


def test_embedding_mask_zero_stack():
    """Embedding(mask_zero) + LSTM + Dense: token ids padded with 0, lengths in the graph."""
    rng = np.random.default_rng(4)
    model = Sequential([L.Input((None,), dtype="int64"), L.Embedding(30, 8, mask_zero=True),
                        L.LSTM(12, return_sequences=True), L.Dropout(0.3),
                        L.Bidirectional(L.GRU(6)), L.Dense(4, activation="softmax")])
    xs = []
    for b, t in SHAPES:
        ids = rng.integers(1, 30, (b, t))
        for i, n in enumerate(rng.integers(1, t + 1, b)):
            ids[i, n:] = 0
        xs.append(ids.astype(np.int64))
    proto = _check(model, xs)
    assert {"Gather", "LSTM", "GRU", "MatMul", "Softmax"} <= _ops(proto)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_embedding_without_mask_and_timedistributed_dense():
    rng = np.random.default_rng(5)
    model = Sequential([L.Input((None,), dtype="int32"), L.Embedding(10, 4),
                        L.SimpleRNN(7, return_sequences=True),
                        L.TimeDistributed(L.Dense(3, activation="tanh"))])
    _check(model, [rng.integers(0, 10, (b, t)).astype(np.int64) for b, t in SHAPES])


def test_fixed_input_length_still_takes_other_lengths():
    """A model built for 5 steps exports with a dynamic time axis: compared on other lengths
    with a twin built for any length (fastrnn itself refuses them)."""
    rng = np.random.default_rng(6)

    def build(steps):
        return Sequential([L.Input((steps, 4)), L.GRU(6, return_sequences=True), L.GRU(3)])

    model, twin = build(5), build(None)
    twin.set_weights(model.get_weights())
    proto = export_onnx(model)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "time", 4]
    sess = _session(proto)
    for b, t in SHAPES:
        x = rng.standard_normal((b, t, 4)).astype(np.float32)
        np.testing.assert_allclose(sess.run(None, {"input": x})[0],
                                   twin.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


def test_flatten_reshape_repeatvector_keep_a_fixed_length():
    rng = np.random.default_rng(7)
    model = Sequential([L.Input((6, 2)), L.LSTM(4, return_sequences=True), L.Flatten(),
                        L.Dense(8, activation="relu"), L.RepeatVector(3),
                        L.GRU(5, return_sequences=True), L.Reshape((5, 3)),
                        L.Activation("sigmoid")])
    proto = _check(model, [rng.standard_normal((b, 6, 2)).astype(np.float32)
                           for b in (1, 4)])
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 6, 2]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_dense_activations(activation):
    rng = np.random.default_rng(8)
    model = Sequential([L.Input((5,)), L.Dense(7, activation=activation),
                        L.Dense(3, use_bias=False)])
    _check(model, [rng.standard_normal((b, 5)).astype(np.float32) * 3 for b in (1, 4)])


def test_float64_model_exports_in_float32():
    rng = np.random.default_rng(9)
    model = Sequential([L.Input((None, 3)), L.LSTM(5, dtype="float64"),
                        L.Dense(2, dtype="float64")])
    sess = _session(export_onnx(model))
    x = rng.standard_normal((4, 6, 3))
    got = sess.run(None, {"input": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


# ---- functional models ----------------------------------------------------------------------

def _check_model(model, feeds_list, proto=None):
    proto = proto or export_onnx(model)
    sess = _session(proto)
    names = [i.name for i in proto.graph.input]
    for feeds in feeds_list:
        want = model.predict([feeds[n] for n in names], verbose=0)
        want = want if isinstance(want, list) else [want]
        got = sess.run(None, feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    return proto


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN-relu"])
def test_functional_seq2seq_with_states(cell):
    """An encoder's final states start the decoder (initial_state, return_state); two inputs
    of different lengths, two outputs."""
    rng = np.random.default_rng(16)
    make = CELLS[cell]
    enc_in = keras.Input(shape=(None,), dtype="int64", name="source")
    dec_in = keras.Input(shape=(None, 3), name="target")
    x = L.Embedding(15, 5, mask_zero=True)(enc_in)
    enc_out, *states = make(return_state=True)(x)
    seq, *dec_states = make(return_sequences=True, return_state=True)(dec_in,
                                                                      initial_state=states)
    probs = L.Dense(4, activation="softmax", name="probs")(seq)
    model = keras.Model([enc_in, dec_in], [probs, dec_states[0]])
    feeds = []
    for (b, t), t2 in zip(SHAPES, (4, 1, 6), strict=True):
        ids = rng.integers(1, 15, (b, t))
        ids[0, max(1, t - 2):] = 0
        feeds.append({"source": ids.astype(np.int64),
                      "target": rng.standard_normal((b, t2, 3)).astype(np.float32)})
    proto = _check_model(model, feeds)
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in proto.graph.input]
    assert dims == [["batch", "source_time"], ["batch", "target_time", 3]]


def test_functional_nested_shared_and_bidirectional():
    rng = np.random.default_rng(17)
    inner_in = keras.Input(shape=(None, 4))
    inner = keras.Model(inner_in, L.Bidirectional(L.GRU(3, return_sequences=True),
                                                  merge_mode="ave")(L.Masking()(inner_in)),
                        name="inner")
    x = keras.Input(shape=(None, 4), name="x")
    h = inner(x)
    dense = L.Dense(3, activation="tanh")
    a = dense(L.LSTM(3, return_sequences=True)(h))
    b = dense(h)  # the same layer twice
    model = keras.Model(x, [L.LSTM(2, go_backwards=True)(a), L.SimpleRNN(2)(b)])
    _check_model(model, [{"x": _padded(rng, bb, t, 4)} for bb, t in SHAPES])


def test_functional_masked_decoder_with_initial_state_and_sequential_layers():
    """A decoder given initial_state runs unmasked (as fastrnn's graphs and Keras 3), its
    output carrying the mask on; Sequential models used as layers."""
    rng = np.random.default_rng(20)
    src = keras.Input(shape=(None,), dtype="int64", name="src")
    tgt = keras.Input(shape=(None,), dtype="int64", name="tgt")
    encoder = keras.Sequential([keras.Input(shape=(None,), dtype="int64"),
                                L.Embedding(12, 4, mask_zero=True),
                                L.GRU(5, return_sequences=True), L.Dropout(0.2)])
    _, h = L.GRU(5, return_state=True)(encoder(src))
    d = L.Embedding(12, 4, mask_zero=True)(tgt)
    seq, h2 = L.GRU(5, return_sequences=True, return_state=True)(d, initial_state=[h])
    seq = L.LSTM(3, return_sequences=True)(seq)  # takes the mask carried on
    # h2: the state after every step, padding included (the call is unmasked)
    model = keras.Model([src, tgt], [L.TimeDistributed(L.Dense(2))(seq), h2])
    feeds = []
    for (b, t), t2 in zip(SHAPES, (3, 5, 4), strict=True):
        a, c = rng.integers(1, 12, (b, t)), rng.integers(1, 12, (b, t2))
        a[0, max(1, t - 1):] = 0
        c[-1, 1:] = 0
        feeds.append({"src": a.astype(np.int64), "tgt": c.astype(np.int64)})
    _check_model(model, feeds)
    head = keras.Sequential([keras.Input(shape=(None, 3)), model.layers[-1]])
    _check(head, [rng.standard_normal((b, t, 3)).astype(np.float32) for b, t in SHAPES])


def test_functional_from_a_file_and_stateful(tmp_path):
    rng = np.random.default_rng(18)
    i = keras.Input(shape=(None, 2), batch_size=3, name="series")
    o = L.Dense(1)(L.GRU(4, stateful=True)(i))
    model = keras.Model(i, o)
    model.save(str(tmp_path / "f.fr"))
    loaded = load_model(str(tmp_path / "f.fr"))
    proto = export_onnx(loaded)
    gru = loaded.layers[1]
    assert [n.name for n in proto.graph.input] == ["series", f"{gru.name}_h0"]
    sess = _session(proto)
    h = np.zeros((3, 4), np.float32)
    for t in (5, 2):
        x = rng.standard_normal((3, t, 2)).astype(np.float32)
        got, h = sess.run(None, {"series": x, f"{gru.name}_h0": h})
        np.testing.assert_allclose(got, loaded.predict(x, batch_size=3, verbose=0),
                                   rtol=RTOL, atol=ATOL)


# ---- states ---------------------------------------------------------------------------------

def test_stateful_model_carries_states_through_inputs_and_outputs():
    rng = np.random.default_rng(10)
    model = Sequential([L.Input((None, 3), batch_size=2), L.LSTM(5, stateful=True,
                                                                  return_sequences=True),
                        L.Bidirectional(L.GRU(4, stateful=True)), L.Dense(2)])
    proto = export_onnx(model)  # states=True by default for a stateful model
    names = [i.name for i in proto.graph.input]
    lstm, bidi = model.layers[0], model.layers[1]
    fw, bw = bidi.forward_layer.name, bidi.backward_layer.name
    assert names == ["input", f"{lstm.name}_h0", f"{lstm.name}_c0", f"{fw}_h0", f"{bw}_h0"]
    sess = _session(proto)
    feeds = {n: np.zeros((2, s), np.float32) for n, s in zip(names[1:], (5, 5, 4, 4),
                                                              strict=True)}
    model.reset_states()
    for t in (4, 7, 1):  # three consecutive batches
        x = rng.standard_normal((2, t, 3)).astype(np.float32)
        want = model.predict(x, batch_size=2, verbose=0)
        outs = sess.run(None, {"input": x, **feeds})
        np.testing.assert_allclose(outs[0], want, rtol=RTOL, atol=ATOL)
        finals = dict(zip([o.name for o in proto.graph.output], outs, strict=True))
        feeds = {n: finals[n[:-1]] for n in feeds}
    np.testing.assert_allclose(feeds[f"{lstm.name}_h0"], lstm._states[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(feeds[f"{lstm.name}_c0"], lstm._states[1], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_initial_states_as_inputs(cell):
    rng = np.random.default_rng(11)
    layer = CELLS[cell](return_sequences=True, go_backwards=cell == "GRU")
    model = Sequential([L.Input((None, 4)), layer])
    sess = _session(export_onnx(model, states=True))
    for b, t in SHAPES:
        x = rng.standard_normal((b, t, 4)).astype(np.float32)
        init = [rng.standard_normal((b, 6)).astype(np.float32) for _ in range(layer._n_states)]
        want = layer(x, initial_state=init)
        feeds = dict(zip([f"{layer.name}_{s}0" for s in "hc"], init, strict=False))
        got = sess.run(None, {"input": x, **feeds})[0]
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("return_sequences", [False, True])
def test_initial_states_with_a_mask_and_an_empty_sequence(cell, return_sequences):
    """An all-padding sequence keeps its initial state, as in fastrnn."""
    rng = np.random.default_rng(15)
    layer = CELLS[cell](return_sequences=return_sequences)
    model = Sequential([L.Input((None, 2)), L.Masking(), layer])
    proto = export_onnx(model, states=True)
    sess = _session(proto)
    x = _padded(rng, 4, 5, 2)
    init = [rng.standard_normal((4, 6)).astype(np.float32) for _ in range(layer._n_states)]
    mask = np.any(x != 0, axis=-1)
    layer.return_state = True
    want = layer(x, mask=mask, initial_state=init)
    feeds = dict(zip([f"{layer.name}_{s}0" for s in "hc"], init, strict=False))
    got = sess.run(None, {"input": x, **feeds})
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


# ---- the layers of issue 22 ----------------------------------------------------------------

def _randomize(model, rng):
    """Random weights; variances (BatchNormalization's moving statistics) positive."""
    arrays = [rng.normal(scale=0.5, size=w.shape).astype(w.dtype) for w in model.get_weights()]
    for i, v in enumerate(model.weights):
        if "variance" in v.path:
            arrays[i] = np.abs(arrays[i]) + np.float32(0.5)
    model.set_weights(arrays)


# name -> (the layers after the Input (None, 4), whether the inputs end in padding)
LAYER_CASES = {
    "leaky_relu": (lambda: [L.Masking(), L.LeakyReLU(0.2), L.LSTM(5)], True),
    "batch_normalization": (lambda: [L.BatchNormalization(), L.LSTM(5, return_sequences=True),
                                     L.BatchNormalization(center=False, epsilon=0.01)], False),
    "layer_normalization": (lambda: [L.Masking(), L.LayerNormalization(),
                                     L.GRU(5, return_sequences=True),
                                     L.LayerNormalization(scale=False)], True),
    "conv_valid": (lambda: [L.Conv1D(5, 3, strides=2, activation="relu"), L.LSTM(4)], False),
    "conv_same": (lambda: [L.Conv1D(5, 3, padding="same", dilation_rate=2),
                           L.Conv1D(3, 4, strides=2, padding="same", use_bias=False)], False),
    "conv_causal": (lambda: [L.Conv1D(5, 3, padding="causal", dilation_rate=2,
                                      activation="tanh"), L.GRU(4, return_sequences=True)],
                    False),
    "pooling": (lambda: [L.MaxPooling1D(2), L.AveragePooling1D(3, strides=1, padding="same"),
                         L.MaxPooling1D(2, padding="same"), L.AveragePooling1D(1)], False),
    "global_max_masked": (lambda: [L.Masking(), L.LSTM(5, return_sequences=True),
                                   L.GlobalMaxPooling1D()], True),
    "global_average_masked": (lambda: [L.Masking(), L.GRU(5, return_sequences=True),
                                       L.GlobalAveragePooling1D(keepdims=True)], True),
    "global_average": (lambda: [L.GlobalAveragePooling1D()], False),
    "spatial_dropout": (lambda: [L.Masking(), L.SpatialDropout1D(0.4), L.GRU(4)], True),
    "rnn_cells": (lambda: [L.Masking(), L.RNN(L.LSTMCell(5), return_sequences=True),
                           L.RNN(L.StackedRNNCells([L.GRUCell(4), L.SimpleRNNCell(3)]),
                                 go_backwards=True)], True),
    "rnn_cell_list": (lambda: [L.RNN([L.SimpleRNNCell(4), L.LSTMCell(3)],
                                     return_sequences=True, zero_output_for_mask=True)],
                      False),
}
# (batch, time) pairs for them: long enough for the valid convolutions and poolings
LAYER_SHAPES = ((3, 9), (1, 12), (5, 7))


@pytest.mark.parametrize("opset", [MIN_OPSET, DEFAULT_OPSET, onnx.defs.onnx_opset_version()])
@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_issue22_layers_match(name, opset):
    rng = np.random.default_rng(30)
    make, masked = LAYER_CASES[name]
    model = Sequential([L.Input((None, 4))] + make())
    _randomize(model, rng)
    xs = [(_padded(rng, b, t, 4) if masked else rng.standard_normal((b, t, 4))
           .astype(np.float32)) for b, t in LAYER_SHAPES]
    proto = _check(model, xs, opset=opset)
    if name == "layer_normalization":
        assert ("LayerNormalization" in _ops(proto)) == (opset >= 17)
    if name.startswith("rnn_cell"):
        assert {"LSTM"} <= _ops(proto) and not _ops(proto) & {"Loop", "Scan"}


@pytest.mark.parametrize("opset", [MIN_OPSET, DEFAULT_OPSET])
def test_layer_normalization_over_two_axes(opset):
    rng = np.random.default_rng(33)
    model = Sequential([L.Input((6, 4)), L.LayerNormalization(axis=[1, 2]), L.LSTM(3)])
    _randomize(model, rng)
    _check(model, [rng.standard_normal((b, 6, 4)).astype(np.float32) for b in (1, 3)],
           opset=opset)


def _attention_seq2seq():
    """Encoder (Embedding mask) and decoder (RNN(LSTMCell) from the encoder's states),
    attention over the encoder with its mask, causal self-attention, merges."""
    src = keras.Input(shape=(None,), dtype="int64", name="source")
    tgt = keras.Input(shape=(None, 3), name="target")
    enc, h, c = L.LSTM(6, return_sequences=True, return_state=True)(
        L.Embedding(12, 5, mask_zero=True)(src))
    dec = L.RNN(L.LSTMCell(6), return_sequences=True)(tgt, initial_state=[h, c])
    ctx = L.Attention(use_scale=True)([dec, enc])
    cctx = L.Attention(score_mode="concat", use_scale=True)([dec, enc, enc])
    own = L.AdditiveAttention()([dec, dec], use_causal_mask=True)
    plain = L.AdditiveAttention(use_scale=False)([dec, enc])
    causal_dot = L.Attention()([dec, dec], use_causal_mask=True)
    x = L.Concatenate()([L.Add()([dec, own, causal_dot]), L.Multiply()([ctx, cctx]), plain])
    pooled = L.GlobalAveragePooling1D()(enc)
    return keras.Model([src, tgt], [L.Dense(4)(L.LeakyReLU(0.1)(x)), pooled])


def test_functional_attention_seq2seq_matches():
    rng = np.random.default_rng(31)
    model = _attention_seq2seq()
    _randomize(model, rng)
    feeds = []
    for b, ts, tt in ((3, 7, 4), (2, 3, 6), (4, 5, 1)):
        ids = rng.integers(1, 12, (b, ts)).astype(np.int64)
        for i in range(b):
            ids[i, rng.integers(1, ts + 1):] = 0  # at least one valid step
        feeds.append({"source": ids,
                      "target": rng.standard_normal((b, tt, 3)).astype(np.float32)})
    proto = _check_model(model, feeds)
    assert {"Softmax", "LSTM", "Concat", "Where"} <= _ops(proto)


def test_functional_merges_of_masked_inputs_match():
    """Add/Multiply/Concatenate (time and feature axes) of masked and unmasked inputs: the
    merged masks reach the recurrent layers as Keras's."""
    a, b = keras.Input(shape=(None, 3), name="a"), keras.Input(shape=(None, 3), name="b")
    ma, mb = L.Masking()(a), L.Masking()(b)
    outs = [L.LSTM(4)(L.Add()([ma, mb])), L.LSTM(4)(L.Multiply()([ma, mb])),
            L.GRU(4)(L.Multiply()([ma, b])),
            L.GlobalAveragePooling1D()(L.Concatenate(axis=1)([ma, b])),
            L.SimpleRNN(4)(L.Concatenate()([ma, mb])),
            L.GlobalAveragePooling1D()(L.Concatenate()([ma, b]))]
    model = keras.Model([a, b], outs)
    rng = np.random.default_rng(32)
    _randomize(model, rng)
    feeds = [{"a": _padded(rng, n, t, 3), "b": _padded(rng, n, t, 3)}
             for n, t in ((3, 5), (4, 2), (1, 6))]
    _check_model(model, feeds)


def test_lambda_custom_cells_and_dynamic_padding_are_named():
    model = Sequential([L.Input((None, 3)), L.Lambda(np.tanh, name="squash"), L.LSTM(2)])
    model.build()
    with pytest.raises(OnnxExportError, match=r"layer 'squash' \(Lambda\) has no ONNX form"):
        export_onnx(model)

    class Minimal(L.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.state_size = 2

        def call(self, x, states):
            h = np.tanh(x[:, :2] + states[0])
            return h, [h]

    model = Sequential([L.Input((None, 4)), L.Conv1D(3, 3, strides=2, dilation_rate=2,
                                                     padding="same", name="c")])
    with pytest.raises(OnnxExportError, match=r"layer 'c' \(Conv1D\): padding='same' with "
                                              r"both strides and dilation_rate above 1"):
        export_onnx(model)
    model = Sequential([L.Input((None, 3)), L.RNN(Minimal(name="mine"), name="loop")])
    model.predict(np.zeros((1, 2, 3), np.float32), verbose=0)
    with pytest.raises(OnnxExportError, match=r"layer 'loop' \(RNN\) runs the custom cell "
                                              r"'mine' \(Minimal\), which has no ONNX form"):
        export_onnx(model)


# ---- errors ---------------------------------------------------------------------------------

def test_a_layer_without_onnx_form_is_named():
    class Doubling(L.Layer):
        def forward(self, x, mask, training):
            return 2 * x, mask

    model = Sequential([L.Input((None, 3)), L.LSTM(4, return_sequences=True),
                        Doubling(name="doubler"), L.LSTM(2)])
    model.build()
    with pytest.raises(OnnxExportError, match=r"layer 'doubler' \(Doubling\) has no ONNX form"):
        export_onnx(model)


def test_a_layer_on_several_inputs_without_onnx_form_is_named():
    class Pair(L.Layer):
        multi_input = True

        def compute_output_shape(self, input_shape):
            return input_shape[0]

        def forward(self, xs, masks, training):
            return xs[0] + xs[1], None

    a, b = keras.Input(shape=(3,)), keras.Input(shape=(3,))
    model = keras.Model([a, b], L.Dense(2)(Pair(name="pair")([a, b])))
    with pytest.raises(OnnxExportError, match=r"layer 'pair' \(Pair\) called on 2 inputs"):
        export_onnx(model)


def test_a_subclass_of_a_recurrent_layer_is_not_taken_for_it():
    class MyLSTM(L.LSTM):
        pass

    model = Sequential([L.Input((None, 3)), MyLSTM(4, name="mine")])
    model.build()
    with pytest.raises(OnnxExportError, match=r"'mine' \(MyLSTM\)"):
        export_onnx(model)


def test_model_export_method(tmp_path, capsys):
    """Keras's ``model.export(path, format="onnx")``."""
    rng = np.random.default_rng(14)
    model = Sequential([L.Input((None, 3)), L.GRU(4, return_sequences=True), L.Dense(2)])
    model.export(str(tmp_path / "m.onnx"), format="onnx")
    assert capsys.readouterr().out.startswith("Saved the ONNX model to")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(_session(proto).run(None, {"input": x})[0],
                               model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="format must be 'onnx'"):
        model.export(str(tmp_path / "m"), format="tf_saved_model")


def test_bad_arguments():
    model = Sequential([L.Input((None, 3)), L.LSTM(4)])
    with pytest.raises(TypeError, match="Sequential"):
        export_onnx(object())
    for opset in (5, 10_000, "17", 17.0, True):
        with pytest.raises(ValueError, match="opset must be an int"):
            export_onnx(model, opset=opset)
    with pytest.raises(ValueError, match="input_name"):
        export_onnx(model, input_name="")
    with pytest.raises(OnnxExportError, match="not built"):
        export_onnx(Sequential([L.LSTM(4)]))


def test_missing_onnx_package_is_a_clear_error(monkeypatch, tmp_path):
    model = Sequential([L.Input((None, 3)), L.LSTM(4)])
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"needs the 'onnx' package: pip install onnx"):
        export_onnx(model)
    model.save(str(tmp_path / "m.fr"))
    args = cli_export.argparse.Namespace(model=str(tmp_path / "m.fr"),
                                         output=str(tmp_path / "m.onnx"), opset=None,
                                         states=False)
    with pytest.raises(CommandError, match="needs the 'onnx' package"):
        cli_export.run(args)


@pytest.mark.parametrize("opset", [13, 17, onnx.defs.onnx_opset_version()])
def test_opsets_and_file_output(opset, tmp_path):
    rng = np.random.default_rng(12)
    model = Sequential([L.Input((None, 3)), L.Masking(), L.GRU(4, return_sequences=True),
                        L.LSTM(2)])
    path = tmp_path / "m.onnx"
    export_onnx(model, path, opset=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    if opset <= 21:  # the newest opsets may be newer than ONNX Runtime's
        x = _padded(rng, 3, 5, 3)
        got = _session(proto).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


# ---- the torch drop-in through torch.onnx.export ---------------------------------------------

class _Net(torch.nn.Module):
    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 3)

    def forward(self, x, h0):
        y, h = self.rnn(x, h0)
        return self.head(y), h


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN-tanh", "RNN-relu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_torch_dropin_exports_standard_operators(kind, batch_first, tmp_path):
    torch.manual_seed(0)
    name, _, act = kind.partition("-")
    kw = {"nonlinearity": act} if act else {}
    rnn = getattr(ft, name)(4, 5, num_layers=2, bidirectional=True, batch_first=batch_first,
                            **kw)
    net = _Net(rnn).eval()
    lstm = name == "LSTM"

    def inputs(b, t):
        x = torch.randn((b, t, 4) if batch_first else (t, b, 4))
        h = torch.randn(4, b, 5)
        return x, ((h, torch.randn(4, b, 5)) if lstm else h)

    path = tmp_path / "net.onnx"
    bt = {0: "batch", 1: "time"} if batch_first else {0: "time", 1: "batch"}
    hs = ["h0", "c0"] if lstm else ["h0"]
    outs = ["y", "h_n", "c_n"] if lstm else ["y", "h_n"]
    axes = {"x": bt, "y": bt, **{n: {1: "batch"} for n in hs + outs[1:]}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ft.FallbackWarning)  # no fallback warning in export
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # dynamo=False's
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # torch's advice to make the states inputs, which they are here
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        torch.onnx.export(net, inputs(3, 6), str(path), dynamo=False, opset_version=17,
                          input_names=["x", *hs], output_names=outs, dynamic_axes=axes)
    proto = onnx.load(str(path))
    assert name in _ops(proto)
    assert sum(n.op_type == name for n in proto.graph.node) == 2  # one per layer
    sess = _session(proto)
    reference = copy.deepcopy(net)
    ft.restore(reference)  # torch.nn's own modules
    assert type(reference.rnn) is getattr(torch.nn, name)
    for b, t in SHAPES:
        x, h = inputs(b, t)
        with torch.no_grad():
            y, hn = net(x, h)  # fastrnn's kernels
            y_ref, hn_ref = reference(x, h)
        feeds = {"x": x.numpy(), **dict(zip(hs, [s.numpy() for s in (h if lstm else (h,))],
                                            strict=True))}
        got = sess.run(None, feeds)
        torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got[0], y.numpy(), rtol=RTOL, atol=ATOL)
        for g, w in zip(got[1:], hn if lstm else (hn,), strict=True):
            np.testing.assert_allclose(g, w.numpy(), rtol=RTOL, atol=ATOL)


# ---- the command line -----------------------------------------------------------------------

def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "fastrnn", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_round_trip(tmp_path):
    rng = np.random.default_rng(13)
    model = Sequential([L.Input((None,), dtype="int64"), L.Embedding(20, 6, mask_zero=True),
                        L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode="sum"),
                        L.GRU(4), L.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    ids = rng.integers(1, 20, (8, 6))
    ids[3, 2:] = 0
    model.fit(ids, rng.integers(0, 2, 8), epochs=1, verbose=0)
    model.save(str(tmp_path / "m.fr"))
    proc = _cli("export", "m.fr", "m.onnx", "--opset", "18", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote m.onnx: ONNX opset 18,")
    assert "recurrent: 1 LSTM, 1 GRU" in proc.stdout
    proto = onnx.load(str(tmp_path / "m.onnx"))
    loaded = load_model(str(tmp_path / "m.fr"))
    x = rng.integers(0, 20, (5, 9)).astype(np.int64)
    x[0, 4:] = 0
    np.testing.assert_allclose(_session(proto).run(None, {"input": x})[0],
                               loaded.predict(x, verbose=0), rtol=RTOL, atol=ATOL)


def test_cli_functional_seq2seq_file(tmp_path):
    rng = np.random.default_rng(19)
    enc_in = keras.Input(shape=(None, 3), name="enc")
    dec_in = keras.Input(shape=(None, 2), name="dec")
    _, h, c = L.LSTM(4, return_state=True)(enc_in)
    seq = L.LSTM(4, return_sequences=True)(dec_in, initial_state=[h, c])
    model = keras.Model([enc_in, dec_in], L.Dense(2)(seq))
    model.save(str(tmp_path / "s2s.fr"))
    proc = _cli("export", "s2s.fr", "s2s.onnx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "recurrent: 2 LSTM" in proc.stdout and "inputs: enc, dec;" in proc.stdout
    feeds = {"enc": rng.standard_normal((2, 7, 3)).astype(np.float32),
             "dec": rng.standard_normal((2, 3, 2)).astype(np.float32)}
    _check_model(load_model(str(tmp_path / "s2s.fr")), [feeds],
                 onnx.load(str(tmp_path / "s2s.onnx")))


def test_cli_errors(tmp_path, monkeypatch):
    proc = _cli("export", "missing.fr", "m.onnx", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "python -m fastrnn export: error: missing.fr: no such model file"
    Sequential([L.Input((None, 3)), L.Masking(), L.LSTM(2)]).save(str(tmp_path / "m.fr"))
    proc = _cli("export", "m.fr", "m.onnx", "--opset", "7", cwd=tmp_path)
    assert proc.returncode == 2
    assert "opset must be an int in [13," in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "junk.fr").write_bytes(b"not a model")
    proc = _cli("export", "junk.fr", "m.onnx", cwd=tmp_path)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "junk.fr" in proc.stderr and "Traceback" not in proc.stderr
    # a layer the exporter lacks (in process: every layer a file can hold has an ONNX form)
    monkeypatch.setattr(_Exporter, "_DISPATCH", {k: v for k, v in _Exporter._DISPATCH.items()
                                                 if k is not L.Masking})
    args = cli_export.argparse.Namespace(model=str(tmp_path / "m.fr"),
                                         output=str(tmp_path / "m.onnx"), opset=None,
                                         states=False)
    with pytest.raises(CommandError, match=r"cannot export to ONNX: layer 'masking\w*' "
                                           r"\(Masking\) has no ONNX form"):
        cli_export.run(args)
