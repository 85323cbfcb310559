"""Bad input at the API level (Keras-style layers and models, optimizers, losses, metrics,
callbacks, streaming, the torch drop-in): every case raises a ValueError/TypeError naming the
argument and what it expects, or gives the documented result. Odd-but-valid inputs
(non-contiguous, read-only, other real dtypes) are accepted and never written through."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import fastrnn
from fastrnn.keras import callbacks, losses, metrics, optimizers
from fastrnn.keras import layers as L
from fastrnn.keras.models import Sequential

X = np.random.default_rng(0).standard_normal((8, 5, 3)).astype(np.float32)
Y = np.random.default_rng(1).standard_normal((8, 2)).astype(np.float32)


def lstm_model(compile: bool = True) -> Sequential:
    m = Sequential([L.Input((5, 3)), L.LSTM(4), L.Dense(2)])
    if compile:
        m.compile("adam", "mse")
    return m


def built_lstm() -> L.LSTM:
    layer = L.LSTM(3)
    layer(np.zeros((2, 4, 5), np.float32))
    return layer


def fit(**kw):
    args = {"x": X, "y": Y, "verbose": 0, **kw}
    return lstm_model().fit(**args)


def with_y(y):
    return lambda: lstm_model().fit(X, y, verbose=0)


def with_x(x):
    return lambda: lstm_model().fit(x, Y, verbose=0)


def nan_at(a, idx, v=np.nan):
    a = a.copy()
    a[idx] = v
    return a


# (id, thunk, exception type, regex the message must match)
CASES = [
    # -- layer constructors ----------------------------------------------------------------
    *[(f"{c.__name__}-units-{u!r}", (lambda c=c, u=u: c(u)), ValueError,
       "units must be a positive int")
      for c in (L.SimpleRNN, L.LSTM, L.GRU, L.Dense) for u in (0, -1, 2.5, "4", None, True)],
    ("dense-activation-unknown", lambda: L.Dense(3, activation="tanhh"), ValueError,
     "unknown activation 'tanhh'"),
    ("dense-activation-int", lambda: L.Dense(3, activation=3), ValueError, "unknown activation 3"),
    ("rnn-activation-unsupported", lambda: L.SimpleRNN(3, activation="sigmoid"), ValueError,
     "activation='sigmoid' is not supported"),
    ("lstm-dropout-1", lambda: L.LSTM(3, dropout=1.0), ValueError,
     r"LSTM: dropout must be in \[0, 1\)"),
    ("gru-dropout-neg", lambda: L.GRU(3, dropout=-0.1), ValueError, "dropout must be in"),
    ("lstm-dropout-nan", lambda: L.LSTM(3, dropout=float("nan")), ValueError,
     "dropout must be in"),
    ("lstm-dropout-str", lambda: L.LSTM(3, dropout="a"), TypeError, "dropout must be a number"),
    ("dropout-rate-1.5", lambda: L.Dropout(1.5), ValueError, r"rate must be in \[0, 1\)"),
    ("dropout-rate-None", lambda: L.Dropout(None), TypeError, "rate must be a number"),
    ("dropout-noise-shape", lambda: L.Dropout(0.5, noise_shape="ab"), ValueError,
     "noise_shape must be a tuple of ints"),
    ("bidirectional-merge-max", lambda: L.Bidirectional(L.LSTM(3), merge_mode="max"),
     ValueError, "merge_mode must be one of"),
    ("bidirectional-merge-int", lambda: L.Bidirectional(L.LSTM(3), merge_mode=5), ValueError,
     "merge_mode must be one of"),
    ("bidirectional-merge-None", lambda: L.Bidirectional(L.LSTM(3), merge_mode=None),
     NotImplementedError, "merge_mode=None"),
    ("bidirectional-wraps-dense", lambda: L.Bidirectional(L.Dense(3)), ValueError,
     "wraps a SimpleRNN, LSTM or GRU"),
    ("embedding-input-dim-0", lambda: L.Embedding(0, 3), ValueError,
     "input_dim must be a positive int"),
    ("embedding-output-dim-float", lambda: L.Embedding(3, 2.5), ValueError,
     "output_dim must be a positive int"),
    ("repeat-vector-0", lambda: L.RepeatVector(0), ValueError, "n must be a positive int"),
    ("reshape-str", lambda: L.Reshape("ab"), ValueError, "target_shape must be a tuple"),
    ("reshape-two-minus-one", lambda: L.Reshape((2, -1, -1)), ValueError, "at most one -1"),
    ("reshape-zero", lambda: L.Reshape((0,)), ValueError, "positive ints"),
    ("masking-value-str", lambda: L.Masking("a"), TypeError, "mask_value must be a number"),
    ("input-negative-shape", lambda: L.Input((-1, 3)), ValueError, "non-negative"),
    ("input-shape-str", lambda: L.Input("ab"), ValueError, "shape must be a tuple of ints"),
    ("input-dtype-complex", lambda: L.Input((3,), dtype="complex64"), TypeError,
     "Input: dtype must be a float type"),
    ("input-dtype-bogus", lambda: L.Input((3,), dtype="bogus"), TypeError,
     "Input: dtype must be a float or integer type"),
    ("layer-dtype-float16", lambda: L.LSTM(3, dtype="float16"), ValueError,
     "dtype must be 'float32' or 'float64'"),
    ("layer-name-int", lambda: L.LSTM(3, name=3), ValueError, "name must be a non-empty string"),
    ("layer-unknown-kwarg", lambda: L.LSTM(3, unitz=4), TypeError,
     "unexpected keyword arguments: unitz"),
    ("dense-zero-features", lambda: Sequential([L.Dense(2, input_shape=(0,))]), ValueError,
     "non-zero last dimension"),
    ("lstm-zero-features", lambda: Sequential([L.LSTM(2, input_shape=(5, 0))]), ValueError,
     "non-zero feature dimension"),
    # -- layer calls -----------------------------------------------------------------------
    ("lstm-call-features", lambda: built_lstm()(np.zeros((2, 4, 6))), ValueError,
     r"built for 5 input features, got input shape \(None, 4, 6\)"),
    ("lstm-call-rank2", lambda: built_lstm()(np.zeros((2, 4))), ValueError,
     r"expects a 3-D input \(batch, timesteps, features\)"),
    ("lstm-call-rank4", lambda: built_lstm()(np.zeros((2, 4, 5, 1))), ValueError,
     "expects a 3-D input"),
    ("lstm-call-complex", lambda: built_lstm()(np.zeros((2, 4, 5), complex)), TypeError,
     "expects a numeric array, got dtype complex128"),
    ("lstm-call-object", lambda: built_lstm()(np.zeros((2, 4, 5), object)), TypeError,
     "got dtype object"),
    ("lstm-call-str", lambda: built_lstm()("abc"), TypeError, "expects a numeric array"),
    ("lstm-call-mask-shape", lambda: built_lstm()(np.zeros((2, 4, 5)),
                                                  mask=np.ones((2, 3), bool)),
     ValueError, r"mask must have shape \(batch, timesteps\) = \(2, 4\)"),
    ("lstm-mask-pre-padding",
     lambda: built_lstm()(np.zeros((1, 4, 5)), mask=np.array([[0, 1, 1, 1]], bool)),
     ValueError, "padding='post'"),
    ("lstm-initial-state-units",
     lambda: built_lstm()(np.zeros((2, 4, 5)), initial_state=[np.zeros((2, 4))] * 2),
     ValueError, r"each state must have shape \(batch, 3\)"),
    ("lstm-initial-state-count",
     lambda: built_lstm()(np.zeros((2, 4, 5)), initial_state=[np.zeros((2, 3))]), ValueError,
     "expected 2 state arrays, got 1"),
    ("lstm-initial-state-batch",
     lambda: built_lstm()(np.zeros((2, 4, 5)), initial_state=[np.zeros((3, 3))] * 2),
     ValueError, "carries state for batch size 3, got a batch of 2"),
    ("lstm-initial-state-str",
     lambda: built_lstm()(np.zeros((2, 4, 5)), initial_state=["a", "b"]), TypeError,
     "states must be real arrays"),
    ("dense-call-features", lambda: (lambda d: (d(np.zeros((2, 3))), d(np.zeros((2, 4)))))(
        L.Dense(2)), ValueError, "built for 3 input features"),
    ("reshape-call-size", lambda: L.Reshape((3, 5))(np.zeros((2, 4, 2))), ValueError,
     r"cannot reshape inputs of shape \(None, 4, 2\) \(8 values per sample\)"),
    ("repeat-vector-rank3", lambda: Sequential([L.Input((5, 4)), L.RepeatVector(3)]),
     ValueError, "RepeatVector.* expects a 2-D input"),
    ("embedding-negative", lambda: L.Embedding(10, 3)(np.array([[1, -1]])), ValueError,
     r"ids must be in \[0, 10\), got values in \[-1, 1\]"),
    ("embedding-too-large", lambda: L.Embedding(10, 3)(np.array([[1, 10]])), ValueError,
     r"ids must be in \[0, 10\), got values in \[1, 10\]"),
    ("embedding-uint64-huge", lambda: L.Embedding(10, 3)(np.array([[2**63 + 5]], np.uint64)),
     ValueError, r"ids must be in \[0, 10\), got values in \[9223372036854775813"),
    ("embedding-fractional", lambda: L.Embedding(10, 3)(np.array([[1.5, 2.0]])), ValueError,
     "non-integer value 1.5"),
    ("embedding-nan", lambda: L.Embedding(10, 3)(np.array([[np.nan, 2.0]])), ValueError,
     "non-integer value nan"),
    ("embedding-inf", lambda: L.Embedding(10, 3)(np.array([[np.inf, 2.0]])), ValueError,
     "non-integer value inf"),
    ("embedding-complex", lambda: L.Embedding(10, 3)(np.array([[1j]])), TypeError,
     "expects integer ids, got dtype complex128"),
    ("embedding-bool", lambda: L.Embedding(10, 3)(np.array([[True]])), TypeError,
     "expects integer ids, got dtype bool"),
    ("embedding-str", lambda: L.Embedding(10, 3)(np.array([["a"]])), TypeError,
     "expects integer ids"),
    # -- set_weights -----------------------------------------------------------------------
    ("set-weights-count", lambda: lstm_model().set_weights([np.zeros(3)]), ValueError,
     "the model has 5 weight arrays, got 1"),
    ("set-weights-shape", lambda: lstm_model().set_weights(
        [np.zeros((3, 17))] + lstm_model().get_weights()[1:]), ValueError,
     r"lstm(_\d+)?/kernel' expects shape \(3, 16\), got \(3, 17\)"),
    ("set-weights-str", lambda: lstm_model().set_weights(
        [np.full((3, 16), "a")] + lstm_model().get_weights()[1:]), TypeError,
     "expects a real .* array, got dtype <U1"),
    ("set-weights-complex", lambda: lstm_model().set_weights(
        [np.zeros((3, 16), complex)] + lstm_model().get_weights()[1:]), TypeError,
     "got dtype complex128"),
    ("set-weights-None", lambda: lstm_model().set_weights(None), TypeError,
     "set_weights expects a list of arrays"),
    ("set-weights-int", lambda: lstm_model().set_weights(3), TypeError,
     "set_weights expects a list of arrays"),
    ("layer-set-weights-count", lambda: lstm_model().layers[0].set_weights([np.zeros(3)]),
     ValueError, r"has 3 weights \(kernel\(3, 16\), recurrent_kernel\(4, 16\), bias\(16,\)\)"),
    ("set-weights-unbuilt", lambda: Sequential([L.LSTM(3)]).set_weights([]), ValueError,
     "build the model"),
    # -- compile ---------------------------------------------------------------------------
    ("compile-optimizer-unknown", lambda: lstm_model(False).compile("adamx", "mse"),
     ValueError, "unknown optimizer 'adamx'"),
    ("compile-optimizer-int", lambda: lstm_model(False).compile(3, "mse"), ValueError,
     "could not interpret optimizer 3"),
    ("compile-optimizer-None", lambda: lstm_model(False).compile(None, "mse"), ValueError,
     "could not interpret optimizer None"),
    ("compile-loss-unknown", lambda: lstm_model(False).compile("adam", "msee"), ValueError,
     "unknown loss 'msee'"),
    ("compile-loss-int", lambda: lstm_model(False).compile("adam", 3), ValueError,
     "could not interpret loss 3"),
    ("compile-loss-lambda", lambda: lstm_model(False).compile("adam", lambda a, b: a - b),
     ValueError, "plain callables .* are not supported"),
    ("compile-metric-unknown", lambda: lstm_model(False).compile("adam", "mse", metrics=["foo"]),
     ValueError, "unknown metric 'foo'"),
    ("compile-metric-int-entry", lambda: lstm_model(False).compile("adam", "mse", metrics=[3]),
     TypeError, "metrics entries must be names"),
    ("compile-metrics-int", lambda: lstm_model(False).compile("adam", "mse", metrics=3),
     TypeError, "metrics must be a list"),
    ("fit-before-compile", lambda: lstm_model(False).fit(X, Y, verbose=0), RuntimeError,
     "compile"),
    # -- fit / evaluate / predict / train_on_batch -----------------------------------------
    ("fit-empty", lambda: fit(x=X[:0], y=Y[:0]), ValueError, r"fit: x is empty \(0 samples\)"),
    ("evaluate-empty", lambda: lstm_model().evaluate(X[:0], Y[:0], verbose=0), ValueError,
     "evaluate: x is empty"),
    ("train-on-batch-empty", lambda: lstm_model().train_on_batch(X[:0], Y[:0]), ValueError,
     "train_on_batch: x is empty"),
    ("fit-length-mismatch", lambda: fit(y=Y[:3]), ValueError,
     "same number of samples: x has 8, y has 3"),
    ("evaluate-length-mismatch", lambda: lstm_model().evaluate(X, Y[:2], verbose=0),
     ValueError, "same number of samples"),
    ("train-on-batch-mismatch", lambda: lstm_model().train_on_batch(X, Y[:2]), ValueError,
     "same number of samples"),
    ("fit-y-shape", with_y(Y[:, :1]), ValueError,
     r"mse: y has shape \(8, 1\) but the model's output has shape \(8, 2\)"),
    ("fit-y-1d", with_y(Y[:, 0]), ValueError, r"y has shape \(8,\)"),
    ("fit-y-missing", lambda: lstm_model().fit(X, verbose=0), ValueError, "y is required"),
    ("fit-y-str", with_y(np.array(["a"] * 8)), TypeError, "y must be numeric"),
    ("fit-x-None", lambda: fit(x=None), ValueError, "x is required"),
    ("fit-x-features", with_x(X[..., :2]), ValueError,
     r"expects inputs of shape \(None, 5, 3\) .* got x of shape \(8, 5, 2\)"),
    ("fit-x-rank", with_x(X[..., 0]), ValueError, "expects inputs of shape"),
    ("fit-x-ragged", with_x([[1, 2], [3]]), ValueError, "inhomogeneous"),
    ("fit-x-complex", with_x(X.astype(complex)), TypeError, "x must be numeric, got dtype"),
    ("fit-x-object", with_x(X.astype(object)), TypeError, "got dtype object"),
    ("fit-x-nan", with_x(nan_at(X, (2, 1, 0))), ValueError,
     r"fit: x contains nan at index \(2, 1, 0\)"),
    ("fit-x-inf", with_x(nan_at(X, (0, 0, 0), np.inf)), ValueError, "x contains inf"),
    ("fit-y-nan", with_y(nan_at(Y, (5, 1))), ValueError, r"y contains nan at index \(5, 1\)"),
    ("evaluate-x-nan", lambda: lstm_model().evaluate(nan_at(X, 0), Y, verbose=0), ValueError,
     "evaluate: x contains nan"),
    ("train-on-batch-y-inf", lambda: lstm_model().train_on_batch(X, nan_at(Y, 0, -np.inf)),
     ValueError, "train_on_batch: y contains -inf"),
    ("fit-sample-weight-length", lambda: fit(sample_weight=np.ones(3)), ValueError,
     r"sample_weight must have one entry per sample \(8\)"),
    ("fit-sample-weight-str", lambda: fit(sample_weight=np.array(["a"] * 8)), TypeError,
     "sample_weight must be numeric"),
    ("fit-sample-weight-nan", lambda: fit(sample_weight=np.full(8, np.nan)), ValueError,
     "sample_weight contains nan"),
    ("fit-class-weight-list", lambda: fit(class_weight=[1, 2]), TypeError,
     "class_weight must be a dict"),
    *[(f"fit-batch-size-{b!r}", (lambda b=b: fit(batch_size=b)), ValueError,
       "batch_size must be a positive int") for b in (0, -1, 2.5, True)],
    ("predict-batch-size-0", lambda: lstm_model().predict(X, batch_size=0, verbose=0),
     ValueError, "batch_size must be a positive int"),
    *[(f"fit-validation-split-{v!r}", (lambda v=v: fit(validation_split=v)), ValueError,
       r"validation_split must be in \[0, 1\)") for v in (1.0, -0.1, float("nan"), 2)],
    ("fit-validation-split-str", lambda: fit(validation_split="a"), TypeError,
     "validation_split must be a number"),
    ("fit-validation-split-empty", lambda: fit(validation_split=0.01), ValueError,
     "leaves no samples for validation"),
    ("fit-validation-data-shape", lambda: fit(validation_data=(X, Y[:3])), ValueError,
     "same number of samples"),
    ("fit-validation-data-form", lambda: fit(validation_data=X), ValueError,
     r"validation_data must be \(x_val, y_val\)"),
    ("fit-validation-data-empty", lambda: fit(validation_data=(X[:0], Y[:0])), ValueError,
     r"fit \(validation_data\): x is empty"),
    ("fit-epochs-negative", lambda: fit(epochs=-1), ValueError, "epochs must be an int >= 0"),
    ("fit-epochs-float", lambda: fit(epochs=1.5), TypeError, "epochs must be an int"),
    ("fit-initial-epoch-negative", lambda: fit(initial_epoch=-1), ValueError,
     "initial_epoch must be an int >= 0"),
    ("fit-validation-freq-0", lambda: fit(validation_freq=0, validation_split=0.5), ValueError,
     "validation_freq must be an int >= 1"),
    ("fit-verbose-str", lambda: fit(verbose="x"), ValueError, "verbose must be 'auto', 0, 1"),
    ("fit-callback-not-callback", lambda: fit(callbacks=[3]), TypeError,
     "callbacks must be fastrnn.keras.callbacks.Callback instances"),
    ("fit-steps-per-epoch", lambda: fit(steps_per_epoch=3), NotImplementedError,
     "steps_per_epoch"),
    ("predict-features", lambda: lstm_model().predict(X[..., :2], verbose=0), ValueError,
     "expects inputs of shape"),
    ("predict-str", lambda: lstm_model().predict("abc", verbose=0), TypeError,
     "x must be numeric"),
    ("predict-scalar", lambda: lstm_model().predict(3.0, verbose=0), ValueError,
     "must have a batch axis"),
    ("call-features", lambda: lstm_model()(X[..., :2]), ValueError, "expects inputs of shape"),
    ("test-on-batch-scalar", lambda: lstm_model().test_on_batch(3.0, 1.0), ValueError,
     "must have a batch axis"),
    ("sparse-cce-one-hot", lambda: _classifier("sparse_categorical_crossentropy").fit(
        X, np.eye(3)[np.zeros(8, int)], verbose=0), ValueError,
     "one-hot targets need 'categorical_crossentropy'"),
    ("sparse-cce-out-of-range", lambda: _classifier("sparse_categorical_crossentropy").fit(
        X, np.full(8, 3), verbose=0), ValueError, r"class ids must be in \[0, 3\)"),
    ("sparse-cce-fractional", lambda: _classifier("sparse_categorical_crossentropy").fit(
        X, np.full(8, 0.5), verbose=0), ValueError, "must hold integer class ids"),
    ("cce-sparse-targets", lambda: _classifier("categorical_crossentropy").fit(
        X, np.zeros(8, int), verbose=0), ValueError, "needs them equal"),
    # -- optimizers ------------------------------------------------------------------------
    *[(f"adam-lr-{v!r}", (lambda v=v: optimizers.Adam(v)), ValueError,
       "Adam: learning_rate must be >= 0") for v in (-1, float("nan"), float("inf"))],
    ("adam-lr-str", lambda: optimizers.Adam("a"), TypeError, "learning_rate must be a number"),
    ("adam-lr-None", lambda: optimizers.Adam(None), TypeError, "learning_rate must be a number"),
    *[(f"sgd-{k}-{v!r}", (lambda k=k, v=v: optimizers.SGD(**{k: v})), ValueError,
       f"SGD: {k} must be >= 0") for k in ("clipnorm", "clipvalue", "global_clipnorm",
                                            "weight_decay") for v in (-1, float("nan"))],
    ("sgd-clipnorm-str", lambda: optimizers.SGD(clipnorm="a"), TypeError,
     "clipnorm must be a number"),
    ("sgd-two-clips", lambda: optimizers.SGD(clipnorm=1.0, clipvalue=1.0), ValueError,
     "only one of clipnorm"),
    ("sgd-momentum-2", lambda: optimizers.SGD(momentum=2), ValueError,
     r"momentum must be in \[0, 1\]"),
    ("adam-beta-1-1", lambda: optimizers.Adam(beta_1=1.0), ValueError,
     r"beta_1 must be in \[0, 1\)"),
    ("adam-beta-2-neg", lambda: optimizers.Adam(beta_2=-1), ValueError, "beta_2 must be in"),
    ("adam-epsilon-neg", lambda: optimizers.Adam(epsilon=-1), ValueError,
     "epsilon must be >= 0"),
    ("rmsprop-rho-2", lambda: optimizers.RMSprop(rho=2), ValueError, "rho must be in"),
    ("adagrad-accumulator-neg", lambda: optimizers.Adagrad(initial_accumulator_value=-1),
     ValueError, "initial_accumulator_value must be >= 0"),
    ("optimizer-unknown-kwarg", lambda: optimizers.Adam(lr_decay=0.1), TypeError,
     "unexpected optimizer arguments: lr_decay"),
    ("optimizer-apply-shape", lambda: optimizers.SGD(0.1).apply([np.zeros(3)], [np.zeros(4)]),
     ValueError, r"gradient 0 has shape \(4,\) but its variable has shape \(3,\)"),
    ("optimizer-apply-count",
     lambda: optimizers.SGD(0.1).apply([np.zeros(3)], [np.zeros(3), np.zeros(3)]), ValueError,
     "got 2 gradients for 1 variables"),
    ("optimizer-apply-int-variable",
     lambda: optimizers.SGD(0.1).apply([np.zeros(3, int)], [np.zeros(3)]), TypeError,
     "variable 0 must be a float ndarray"),
    ("optimizer-schedule-returns-str",
     lambda: optimizers.SGD(lambda it: "a").apply([np.zeros(3)], [np.zeros(3)]), TypeError,
     "schedule must return a number"),
    ("optimizer-schedule-returns-nan",
     lambda: optimizers.SGD(lambda it: math.nan).apply([np.zeros(3)], [np.zeros(3)]),
     ValueError, "learning rate from the schedule must be >= 0"),
    ("optimizer-get-unknown-config", lambda: optimizers.get({"class_name": "Foo"}), ValueError,
     "unknown optimizer config"),
    # -- losses and metrics ----------------------------------------------------------------
    ("loss-unknown", lambda: losses.get("foo"), ValueError, "unknown loss 'foo'"),
    ("loss-int", lambda: losses.get(3), ValueError, "could not interpret loss 3"),
    ("loss-reduction", lambda: losses.MeanSquaredError(reduction="avg"), ValueError,
     "reduction must be one of"),
    ("loss-shape-mismatch", lambda: losses.MeanSquaredError()(np.zeros((2, 3)),
                                                              np.zeros((2, 4))),
     ValueError, r"y has shape \(2, 3\) but the model's output has shape \(2, 4\)"),
    ("loss-str-targets", lambda: losses.mse(np.array(["a"]), np.array([1.0])), TypeError,
     "loss targets must be real numbers"),
    ("huber-delta-0", lambda: losses.Huber(delta=0), ValueError, "Huber: delta must be > 0"),
    ("cce-label-smoothing-2", lambda: losses.CategoricalCrossentropy(label_smoothing=2),
     ValueError, r"label_smoothing must be in \[0, 1\]"),
    ("bce-label-smoothing-neg", lambda: losses.BinaryCrossentropy(label_smoothing=-1),
     ValueError, "label_smoothing must be in"),
    ("scce-ignore-class-str", lambda: losses.SparseCategoricalCrossentropy(ignore_class="a"),
     TypeError, "ignore_class must be an int or None"),
    ("metric-unknown", lambda: metrics.get("foo"), ValueError, "unknown metric 'foo'"),
    ("metric-int", lambda: metrics.get(3), ValueError, "could not interpret metric 3"),
    # -- callbacks -------------------------------------------------------------------------
    ("early-stopping-monitor-int", lambda: callbacks.EarlyStopping(monitor=3), TypeError,
     "monitor must be the name of a logged quantity"),
    ("early-stopping-monitor-None", lambda: callbacks.EarlyStopping(monitor=None), TypeError,
     "monitor must be the name"),
    ("early-stopping-patience-neg", lambda: callbacks.EarlyStopping(patience=-1), ValueError,
     "patience must be an int >= 0"),
    ("early-stopping-patience-str", lambda: callbacks.EarlyStopping(patience="a"), TypeError,
     "patience must be an int"),
    ("early-stopping-unknown-monitor-auto",
     lambda: fit(epochs=2, callbacks=[callbacks.EarlyStopping(monitor="foo")]), ValueError,
     "received monitor='foo', but cannot tell whether it should be maximized"),
    ("checkpoint-filepath-None", lambda: callbacks.ModelCheckpoint(None), TypeError,
     "filepath must be a str or PathLike"),
    ("checkpoint-save-freq-0", lambda: callbacks.ModelCheckpoint("m.keras", save_freq=0),
     ValueError, "save_freq must be 'epoch' or a positive int"),
    ("lr-scheduler-not-callable", lambda: callbacks.LearningRateScheduler(3), TypeError,
     "schedule must be a function"),
    *[(f"lr-scheduler-returns-{v!r}",
       (lambda v=v: fit(callbacks=[callbacks.LearningRateScheduler(lambda e: v)])), ValueError,
       "the schedule must return a finite non-negative float") for v in ("a", math.nan, -1.0)],
    ("lambda-callback-not-callable", lambda: callbacks.LambdaCallback(on_epoch_end=3),
     TypeError, "on_epoch_end must be a function"),
    ("lambda-callback-unknown-hook", lambda: callbacks.LambdaCallback(on_foo=print), TypeError,
     "unknown hook 'on_foo'"),
]


def _classifier(loss: str) -> Sequential:
    m = Sequential([L.Input((5, 3)), L.SimpleRNN(4), L.Dense(3, activation="softmax")])
    m.compile("adam", loss)
    return m


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("thunk, exc, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_clearly(thunk, exc, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no case may merely warn and go on
        with pytest.raises(exc, match=match) as info:
            thunk()
    assert type(info.value) is not AssertionError


# -- documented results (no error) ----------------------------------------------------------

def test_other_real_dtypes_are_cast_like_keras():
    m = lstm_model()
    ref = m.predict(X, verbose=0)
    for dt in (np.float16, np.float64):
        got = m.predict(X.astype(dt), verbose=0)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, m.predict(X.astype(dt).astype(np.float32), verbose=0),
                                   rtol=0, atol=0)
    xi = (X * 3).astype(np.int32)
    np.testing.assert_array_equal(m.predict(xi, verbose=0),
                                  m.predict(xi.astype(np.float32), verbose=0))
    np.testing.assert_array_equal(m.predict(X.astype(np.float64), verbose=0), ref)


def test_embedding_accepts_whole_floats_and_any_int_type():
    e = L.Embedding(10, 3)
    want = e(np.array([[1, 9]]))
    for ids in (np.array([[1.0, 9.0]]), np.array([[1, 9]], np.uint8),
                np.array([[1, 9]], np.int16)):
        np.testing.assert_array_equal(e(ids), want)


def test_predict_propagates_nan_per_sample_and_empty_predict_is_empty():
    m = lstm_model()
    x = nan_at(X, (3, 2, 1))
    out = m.predict(x, verbose=0)
    assert np.isnan(out[3]).all()
    assert np.isfinite(np.delete(out, 3, axis=0)).all()
    np.testing.assert_array_equal(np.delete(out, 3, axis=0),
                                  np.delete(m.predict(X, verbose=0), 3, axis=0))
    empty = m.predict(X[:0], verbose=0)
    assert empty.shape == (0, 2) and empty.dtype == np.float32


def test_zero_length_sequences_and_zero_epochs():
    layer = L.LSTM(3, return_sequences=True)
    y = layer(np.zeros((2, 0, 5), np.float32))
    assert y.shape == (2, 0, 3)
    h = L.GRU(3)(np.zeros((2, 0, 5), np.float32))
    np.testing.assert_array_equal(h, np.zeros((2, 3)))  # the initial state
    m = lstm_model()
    before = m.get_weights()
    assert m.fit(X, Y, epochs=0, verbose=0).history == {}
    for a, b in zip(before, m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_single_callback_is_accepted_like_keras():
    seen = []
    fit(epochs=2, callbacks=callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e)))
    assert seen == [0, 1]


def test_unknown_early_stopping_mode_warns_and_uses_auto():
    with pytest.warns(UserWarning, match="mode 'bad' is unknown, fallback to auto"):
        es = callbacks.EarlyStopping(mode="bad")
    assert es.mode == "auto"


def test_missing_monitored_quantity_warns_like_keras():
    with pytest.warns(UserWarning, match="conditioned on metric 'val_loss' which is not "
                                         "available"):
        fit(epochs=2, callbacks=[callbacks.EarlyStopping(monitor="val_loss", mode="min")])


def test_failed_initial_state_leaves_layer_not_stateful():
    layer = built_lstm()
    with pytest.raises(ValueError):
        layer(np.zeros((2, 4, 5)), initial_state=[np.zeros((2, 4))] * 2)
    assert layer.stateful is False and layer.states is None


@pytest.mark.parametrize("kind", ["noncontiguous", "readonly", "fortran"])
def test_odd_layouts_are_accepted_and_never_written(kind):
    base = np.random.default_rng(5).standard_normal((8, 5, 6)).astype(np.float32)
    if kind == "noncontiguous":
        x = base[:, :, ::2]
    elif kind == "readonly":
        x = base[:, :, :3].copy()
        x.flags.writeable = False
    else:
        x = np.asfortranarray(base[:, :, :3])
    y = Y.copy()
    y.flags.writeable = False
    x_before, y_before = x.copy(), y.copy()
    m = lstm_model()
    want = m.predict(np.ascontiguousarray(x), verbose=0)
    np.testing.assert_array_equal(m.predict(x, verbose=0), want)
    m.fit(x, y, batch_size=3, epochs=2, verbose=0, validation_split=0.25)
    m.train_on_batch(x, y)
    m.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    # float64 input cast to the float32 model: still never written
    x64 = x.astype(np.float64)
    x64.flags.writeable = False
    m.fit(x64, y, verbose=0)


def test_embedding_model_inputs_never_written():
    ids = np.random.default_rng(2).integers(1, 10, (6, 7))
    ids_t = np.ascontiguousarray(ids.T).T  # Fortran-ordered view
    ids_t.flags.writeable = False
    y = np.random.default_rng(3).integers(0, 2, 6)
    before = ids_t.copy()
    m = Sequential([L.Embedding(10, 4, mask_zero=True), L.LSTM(3), L.Dense(2)])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(ids_t, y, epochs=2, batch_size=4, verbose=0)
    m.predict(ids_t, verbose=0)
    np.testing.assert_array_equal(ids_t, before)


# -- streaming ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def session():
    m = Sequential([L.Input((None, 3)), L.LSTM(4, return_sequences=True), L.Dense(2)])
    return m.stream(2)


@pytest.fixture(scope="module")
def id_session():
    m = Sequential([L.Embedding(10, 3), L.GRU(4)])
    m.build((None, None))
    return m.stream(1)


STREAM_CASES = [
    ("step-features", lambda s: s.step(np.zeros((2, 4))), ValueError,
     r"x must have shape \(2, 3\)"),
    ("step-batch", lambda s: s.step(np.zeros((3, 3))), ValueError, r"x must have shape \(2, 3\)"),
    ("step-rank3", lambda s: s.step(np.zeros((2, 1, 3))), ValueError,
     "for one timestep, got .*use run"),
    ("step-complex", lambda s: s.step(np.zeros((2, 3), complex)), TypeError,
     "input must be real numbers, got dtype complex128"),
    ("step-object", lambda s: s.step(np.zeros((2, 3), object)), TypeError, "real numbers"),
    ("run-features", lambda s: s.run(np.zeros((2, 5, 4))), ValueError,
     r"x_chunk must have shape \(2, T, 3\)"),
    ("run-batch", lambda s: s.run(np.zeros((3, 5, 3))), ValueError,
     r"x_chunk must have shape \(2, T, 3\)"),
    ("run-rank2", lambda s: s.run(np.zeros((2, 3))), ValueError, "x_chunk must have shape"),
    ("state-count", lambda s: setattr(s, "state", [np.zeros((2, 4))]), ValueError,
     "state must be a list of 2 arrays"),
    ("state-shape", lambda s: setattr(s, "state", [np.zeros((2, 5)), np.zeros((2, 4))]),
     ValueError, r"state\[0\] must have shape \(2, 4\), got \(2, 5\)"),
    ("state-str", lambda s: setattr(s, "state", [np.full((2, 4), "a"), np.zeros((2, 4))]),
     TypeError, r"state\[0\] must be a real array"),
    ("state-complex", lambda s: setattr(s, "state", [np.zeros((2, 4), complex)] * 2),
     TypeError, "must be a real array, got dtype complex128"),
    ("state-None", lambda s: setattr(s, "state", None), TypeError,
     "state must be a list of 2 arrays"),
]


@pytest.mark.parametrize("thunk, exc, match", [c[1:] for c in STREAM_CASES],
                         ids=[c[0] for c in STREAM_CASES])
def test_stream_bad_input(session, thunk, exc, match):
    before = session.state
    with pytest.raises(exc, match=match):
        thunk(session)
    for a, b in zip(before, session.state, strict=True):  # a refused call changes nothing
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ids, exc, match", [
    (np.array([1.0]), TypeError, "integer token ids"),
    (-1, ValueError, r"token id -1 out of range \[0, 10\)"),
    (10, ValueError, r"token id 10 out of range \[0, 10\)"),
    (np.array([[1, 2]]), ValueError, "token ids"),
])
def test_stream_bad_token_ids(id_session, ids, exc, match):
    with pytest.raises(exc, match=match):
        id_session.step(ids)


def test_stream_bad_batch_size():
    m = Sequential([L.Input((None, 3)), L.LSTM(4)])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            m.stream(bad)


def test_stream_casts_other_real_dtypes_and_never_writes(session):
    session.reset()
    x = np.random.default_rng(4).standard_normal((2, 6, 3))
    x.flags.writeable = False
    want = session.run(x.astype(np.float32))
    session.reset()
    got = session.run(x[:, :, :])  # float64, read-only
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    session.reset()
    x16 = x[:, 0].astype(np.float16)
    got16 = session.step(x16)
    session.reset()
    np.testing.assert_array_equal(got16, session.step(x16.astype(np.float32)))
    assert not x.flags.writeable


# -- the torch drop-in: where torch raises, fastrnn raises the same ----------------------------

def _torch_cases(torch):
    def h(mod, shape, dtype=None):
        t = torch.zeros(*shape, dtype=dtype or torch.float32)
        return (t, t.clone()) if isinstance(mod, torch.nn.LSTM) else t

    return {
        "rank4": lambda m: m(torch.zeros(2, 3, 4, 1)),
        "rank1": lambda m: m(torch.zeros(4)),
        "features": lambda m: m(torch.zeros(5, 2, 7)),
        "h0-batch": lambda m: m(torch.zeros(5, 2, 4), h(m, (1, 3, 6))),
        "h0-layers": lambda m: m(torch.zeros(5, 2, 4), h(m, (2, 2, 6))),
        "h0-units": lambda m: m(torch.zeros(5, 2, 4), h(m, (1, 2, 5))),
        "float16-input": lambda m: m(torch.zeros(5, 2, 4, dtype=torch.float16)),
        "float64-input": lambda m: m(torch.zeros(5, 2, 4, dtype=torch.float64)),
        "int-input": lambda m: m(torch.zeros(5, 2, 4, dtype=torch.int64)),
        "numpy-input": lambda m: m(np.zeros((5, 2, 4), np.float32)),
        "zero-length": lambda m: m(torch.zeros(0, 2, 4)),
    }


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_torch_dropin_raises_like_torch(kind):
    torch = pytest.importorskip("torch")
    import fastrnn.torch as ft

    ours, theirs = getattr(ft, kind)(4, 6), getattr(torch.nn, kind)(4, 6)
    for name, call in _torch_cases(torch).items():
        with pytest.raises(Exception) as want:
            call(theirs)
        with pytest.raises(type(want.value)) as got:
            call(ours)
        assert type(got.value) is type(want.value), name
        assert str(got.value) == str(want.value), name


@pytest.mark.parametrize("kw", [{"input_size": 0}, {"hidden_size": 0}, {"hidden_size": 2.5},
                                {"num_layers": 0}, {"dropout": 1.5}, {"dropout": -0.1},
                                {"input_size": "a"}, {"nonlinearity": "sigmoid"}])
def test_torch_dropin_constructor_raises_like_torch(kw):
    torch = pytest.importorskip("torch")
    import fastrnn.torch as ft

    args = {"input_size": 3, "hidden_size": 4, **kw}
    with pytest.raises(Exception) as want:
        torch.nn.RNN(**args)
    with pytest.raises(type(want.value)) as got:
        ft.RNN(**args)
    assert str(got.value) == str(want.value)


# -- the command line: output paths are checked before minutes of work --------------------------

@pytest.mark.parametrize("args, needle", [
    (["bench", "--json", "{dir}"], "--json {dir}: is a directory"),
    (["bench", "--markdown", "nodir/x.md"], "--markdown nodir/x.md: directory"),
    (["bench", "--shape", "1,2,3"], "expected T,B,I,H"),
    (["train", "{dir}"], "is a directory, expected a .csv or .npy file"),
    (["generate", "{dir}"], "not a fastrnn model file"),
])
def test_cli_errors_are_one_line_and_immediate(tmp_path, args, needle):
    import os
    import subprocess
    import sys

    d = tmp_path / "adir"
    d.mkdir()
    args = [a.replace("{dir}", str(d)) for a in args]
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env = {**os.environ, "PYTHONPATH": pkg_parent + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "fastrnn", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle.replace("{dir}", str(d)) in lines[0], proc.stderr
