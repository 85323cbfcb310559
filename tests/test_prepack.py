"""Weights packed once for the float32 forward (``fastrnn._kernels.prepack``, the float32
:func:`fastrnn.functional.prepare_weights`): the threads that run every hidden unit read the
packed slice instead of packing their own, with the same results bit for bit; a buffer made for
another call is never read."""

import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels
from fastrnn import functional as F

G = {"rnn": 1, "lstm": 4, "gru": 3}
ACT = {"rnn": _kernels.NONLINEARITIES["tanh"], "lstm": 0, "gru": 0}


@pytest.fixture
def team():
    """Team knobs and thread count restored after the test."""
    yield
    _kernels.set_team_threads(0)
    _kernels.set_batch_groups(0)
    fastrnn.set_num_threads(None)


def _weights(cell, I, H, dt, rng, identity=False):
    g = G[cell]
    w_ih = None if identity else (rng.standard_normal((g * H, I)) * 0.2).astype(dt)
    w_hh = (rng.standard_normal((g * H, H)) * 0.2).astype(dt)
    return [w_ih, w_hh, rng.standard_normal(g * H).astype(dt),
            rng.standard_normal(g * H).astype(dt)]


def _forward(cell, x, w, lengths, reverse, nthreads, packed):
    """One kernel forward with its training cache: (y, h_n, c_n, cache)."""
    T, B = x.shape[:2]
    H, dt = w[1].shape[1], x.dtype
    y, h_n = np.empty((T, B, H), dt), np.empty((B, H), dt)
    c_n = np.empty((B, H), dt) if cell == "lstm" else None
    # zeros: past a row's length the kernels leave cache elements they never read unwritten
    cache = np.zeros(_kernels.cache_size(cell, T, B, H), dt)
    _kernels.cell_forward(cell, y, h_n, c_n, cache, x, None, None, *w, lengths, ACT[cell],
                          reverse, nthreads, packed=packed)
    return y, h_n, c_n, cache


def _same(a, b):
    return all((u is None and v is None) or np.array_equal(u, v) for u, v in zip(a, b,
                                                                                 strict=True))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("shape", [(7, 24, 30, 50), (5, 13, 17, 100), (9, 48, 64, 70),
                                   (3, 6, 5, 300)], ids=lambda s: "-".join(map(str, s)))
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("nthreads,groups", [(1, 0), (2, 2), (2, 1)],
                         ids=["one-thread", "batch-groups", "hidden-split"])
@pytest.mark.parametrize("identity", [False, True], ids=["w_ih", "projected"])
def test_prepacked_forward_is_bit_identical(team, arch, cell, shape, dt, nthreads, groups,
                                            identity):
    """Outputs and training cache equal the per-call packing's bit for bit; the packed slice is
    read wherever a thread runs every unit (one thread, batch groups) and nowhere else."""
    T, B, I, H = shape
    rng = np.random.default_rng(sum(shape))
    w = _weights(cell, I, H, dt, rng, identity)
    x = rng.standard_normal((T, B, G[cell] * H if identity else I)).astype(dt)
    fastrnn.set_num_threads(nthreads)
    _kernels.set_team_threads(nthreads)
    _kernels.set_batch_groups(groups)
    want = _forward(cell, x, w, None, False, nthreads, None)
    packed = _kernels.prepack(cell, *w)
    n0 = _kernels.prepacked_reads()
    got = _forward(cell, x, w, None, False, nthreads, packed)
    reads = _kernels.prepacked_reads() - n0
    assert _same(got, want)
    assert reads == (0 if groups == 1 else nthreads)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_prepacked_with_lengths(team, cell, reverse):
    """Sequences of their own lengths (forward and reversed, batch groups) as without it."""
    rng = np.random.default_rng(5)
    T, B, I, H = 11, 24, 19, 45
    w = _weights(cell, I, H, np.float32, rng)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lengths = rng.integers(0, T + 1, B).astype(np.int64)
    fastrnn.set_num_threads(2)
    _kernels.set_team_threads(2)
    _kernels.set_batch_groups(2)
    want = _forward(cell, x, w, lengths, reverse, 2, None)
    got = _forward(cell, x, w, lengths, reverse, 2, _kernels.prepack(cell, *w))
    assert _same(got, want)


def _mangled(packed, how):
    if how == "magic":
        bad = packed.copy()
        bad[0] ^= 1
        return bad
    if how == "truncated":
        return packed[:-1]
    if how == "misaligned":
        raw = np.empty(packed.shape[0] + 64, np.uint8)
        off = (-raw.ctypes.data) % 64 + 4
        bad = raw[off:off + packed.shape[0]]
        bad[:] = packed
        return bad
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["other-H", "other-I", "other-cell", "identity", "magic",
                                 "truncated", "misaligned", "other-dtype"])
def test_a_buffer_made_for_another_call_is_not_read(team, how):
    """A buffer whose header (or size, or alignment) does not match the call is ignored: the
    call packs as without one and gives the same results."""
    rng = np.random.default_rng(3)
    T, B, I, H = 6, 24, 20, 40
    w = _weights("lstm", I, H, np.float32, rng)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    packed = {
        "other-H": lambda: _kernels.prepack("lstm", *_weights("lstm", I, H + 8, np.float32, rng)),
        "other-I": lambda: _kernels.prepack("lstm", *_weights("lstm", I + 1, H, np.float32, rng)),
        "other-cell": lambda: _kernels.prepack("gru", *_weights("gru", I, H, np.float32, rng)),
        "identity": lambda: _kernels.prepack("lstm", None, *w[1:]),
        "other-dtype": lambda: _kernels.prepack("lstm", *(a.astype(np.float64) for a in w)),
    }.get(how, lambda: _mangled(_kernels.prepack("lstm", *w), how))()
    fastrnn.set_num_threads(1)
    want = _forward("lstm", x, w, None, False, 1, None)
    n0 = _kernels.prepacked_reads()
    got = _forward("lstm", x, w, None, False, 1, packed)
    assert _kernels.prepacked_reads() == n0
    assert _same(got, want)


def test_prepack_bad_arguments():
    """Clear errors for what is not prepack's buffer or weights."""
    rng = np.random.default_rng(0)
    w = _weights("lstm", 5, 8, np.float32, rng)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    y, h, c = (np.empty((2, 3, 8), np.float32), np.empty((3, 8), np.float32),
               np.empty((3, 8), np.float32))
    with pytest.raises(TypeError, match="packed"):
        _kernels.cell_forward("lstm", y, h, c, None, x, None, None, *w, None, 0, False, 1,
                              packed=np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="w_hh"):
        _kernels.prepack("lstm", w[0], w[1][:, :5], w[2], w[3])
    with pytest.raises(ValueError, match="w_ih"):
        _kernels.prepack("lstm", w[0][:4], w[1], w[2], w[3])
    with pytest.raises(ValueError, match="cell"):
        _kernels.prepack("cnn", *w)
    with pytest.raises(TypeError, match="float32 or float64"):
        _kernels.prepack("lstm", w[0], w[1].astype(np.int32), w[2], w[3])


@pytest.mark.parametrize("check", ["content", "identity"])
def test_prepared_float32_weights(team, check):
    """prepare_weights(precision="float32"): the packed slice is read, results equal the
    unprepared call's, training included; a change of the weights is seen (content check) or
    taken by update() (identity), and a change of SIMD path packs again."""
    rng = np.random.default_rng(11)
    T, B, I, H = 9, 24, 21, 37
    w = _weights("lstm", I, H, np.float32, rng)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    fastrnn.set_num_threads(1)
    pw = F.prepare_weights("lstm", *w, precision="float32", check=check)

    def both(training=False):
        a = F.cell_forward("lstm", x, None, None, *w, training=training)
        n0 = _kernels.prepacked_reads()
        b = F.cell_forward("lstm", x, None, None, *w, training=training, prepared=pw)
        assert _kernels.prepacked_reads() == n0 + 1
        return a, b

    a, b = both()
    assert _same(a[:3], b[:3])
    a, b = both(training=True)
    assert _same(a[:3], b[:3])
    assert _same(F.cell_backward(a[3], dy, None, None), F.cell_backward(b[3], dy, None, None))
    w[1][3, 2] += 0.5  # in place: the same array, other bytes
    if check == "identity":
        pw.update(*w)
    a, b = both()
    assert _same(a[:3], b[:3])
    old = _kernels.get_arch()
    for other in _kernels.available_arches():
        _kernels.set_arch(other)
        try:
            a, b = both()
            assert _same(a[:3], b[:3])
        finally:
            _kernels.set_arch(old)


def test_bench_inference_rows_run_on_prepared_weights(team):
    """The bench's fastrnn float32 inference rows run on weights packed once (as ONNX Runtime's
    session, and the bf16/int8 rows): the packed slice is read."""
    from fastrnn.bench.cases import Case, make_params
    from fastrnn.bench.runners import build_runner

    fastrnn.set_num_threads(1)
    case = Case(row="x", T=10, B=8, I=8, H=16, cell="lstm", mode="inference")
    run = build_runner("fastrnn", case, make_params(case), 1)
    n0 = _kernels.prepacked_reads()
    run()
    assert _kernels.prepacked_reads() == n0 + 1


@pytest.mark.parametrize("shape", [(1, 100, 8, 16), (3, 5, 8, 16)], ids=["one-step", "few-rows"])
def test_prepared_float32_few_rows_run_as_without(team, shape):
    """One step, or fewer than PACKED_MIN_ROWS rows, run as without prepared weights (nothing
    packed is read; the same results); prepared weights of another cell are still refused."""
    from fastrnn import _native

    T, B, I, H = shape
    assert T == 1 or T * B < _native.PACKED_MIN_ROWS
    rng = np.random.default_rng(2)
    w = _weights("lstm", I, H, np.float32, rng)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    pw = F.prepare_weights("lstm", *w, precision="float32", check="identity")
    n0 = _kernels.prepacked_reads()
    got = F.cell_forward("lstm", x, None, None, *w, training=False, prepared=pw)
    assert _kernels.prepacked_reads() == n0
    assert _same(got[:3], F.cell_forward("lstm", x, None, None, *w, training=False)[:3])
    gru = F.prepare_weights("gru", *_weights("gru", I, H, np.float32, rng), precision="float32")
    with pytest.raises(ValueError, match="cell 'gru'"):
        F.cell_forward("lstm", x, None, None, *w, training=False, prepared=gru)


@pytest.mark.parametrize("layer", ["LSTM", "GRU", "SimpleRNN"])
def test_keras_inference_runs_on_weights_packed_once(team, layer):
    """A fastrnn.keras recurrent layer's float32 inference reads its weights packed once (the
    same predictions as the unprepared op), and packs again after the weights change (an
    optimizer's step, set_weights): predictions equal a fresh model's with those weights."""
    from fastrnn.keras import Sequential
    from fastrnn.keras import layers as L

    rng = np.random.default_rng(4)
    X = rng.standard_normal((48, 12, 6)).astype(np.float32)
    Y = rng.standard_normal((48, 3)).astype(np.float32)

    def model(seed):
        fastrnn.keras.set_random_seed(seed)
        return Sequential([L.Input((12, 6)), getattr(L, layer)(20), L.Dense(3)])

    fastrnn.set_num_threads(1)
    m = model(1)
    rnn = m.layers[0]
    n0 = _kernels.prepacked_reads()
    got = m.predict(X, verbose=0)
    assert _kernels.prepacked_reads() > n0
    h = F.cell_forward(rnn.cell, X.transpose(1, 0, 2).copy(), None, None, *rnn.op_weights(),
                       nonlinearity=rnn.nonlinearity, training=False)[1]
    # the Dense layer on predict's batches of 32 rows (numpy's BLAS may round a row of a
    # product differently with another number of rows: OpenBLAS on Zen 3 does)
    want = np.concatenate([m.layers[1](h[i:i + 32]) for i in range(0, len(h), 32)])
    np.testing.assert_array_equal(got, want)
    m.compile("adam", "mse")
    m.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    fresh = model(2)
    fresh.set_weights(m.get_weights())
    np.testing.assert_array_equal(m.predict(X, verbose=0), fresh.predict(X, verbose=0))
    m.set_weights(model(3).get_weights())
    fresh.set_weights(m.get_weights())
    np.testing.assert_array_equal(m.predict(X, verbose=0), fresh.predict(X, verbose=0))


def test_prepack_read_says_where_a_team_reads_packed_weights(team):
    """prepack_read is False exactly where a team of 2 cannot read the packed slice (weights too
    large for batch groups: the team splits the units), and then a Keras layer makes no packed
    copy; one thread always reads it."""
    from fastrnn.keras import Sequential
    from fastrnn.keras import layers as L

    rng = np.random.default_rng(8)
    # batch groups while the LSTM's W_hh (16 H^2 bytes) is within 3/4 of a core's L2, 1 MiB at
    # least (recurrence.c's group_max_bytes)
    big = int((max(_kernels.l2_bytes() * 3 // 4, 1 << 20) / 16) ** 0.5) + 16
    for H, fits in ((64, True), (big, False)):
        assert _kernels.prepack_read("lstm", H, 2) is fits
        assert _kernels.prepack_read("lstm", H, 1) is True
        w = _weights("lstm", 16, H, np.float32, rng)
        x = rng.standard_normal((3, 48, 16)).astype(np.float32)
        fastrnn.set_num_threads(2)
        _kernels.set_team_threads(2)
        # where the weights fit, groups forced (the measured choice could try the split); where
        # they do not, the rule alone (a forced count overrides the weights' size)
        _kernels.set_batch_groups(2 if fits else 0)
        n0 = _kernels.prepacked_reads()
        _forward("lstm", x, w, None, False, 2, _kernels.prepack("lstm", *w))
        assert (_kernels.prepacked_reads() > n0) is fits
        _kernels.set_team_threads(0)
        _kernels.set_batch_groups(0)
        fastrnn.keras.set_random_seed(0)
        m = Sequential([L.Input((3, 16)), L.LSTM(H)])
        m.predict(x.transpose(1, 0, 2), verbose=0)
        assert (m.layers[0]._prepared is not None) is fits
