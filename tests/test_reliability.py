"""Reliability of the native ops under threads, repetition and streaming.

- the GIL is released while a kernel runs (another Python thread makes progress meanwhile);
- concurrent calls from 4 threads on shared weights give results identical to serial calls;
- set_num_threads between calls is safe;
- 10,000 forward+backward calls do not grow resident memory (after warm-up);
- the streaming path equals the sequence kernels, rejects bad input and cannot outlive a SIMD
  path change.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels
from fastrnn import functional as F


def _lstm_args(T, B, I, H, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    s = 1 / np.sqrt(H)
    return (rng.standard_normal((T, B, I)).astype(dtype), None, None,
            rng.uniform(-s, s, (4 * H, I)).astype(dtype),
            rng.uniform(-s, s, (4 * H, H)).astype(dtype),
            rng.uniform(-s, s, 4 * H).astype(dtype), rng.uniform(-s, s, 4 * H).astype(dtype))


@pytest.fixture
def one_thread():
    old = fastrnn.get_num_threads()
    fastrnn.set_num_threads(1)
    yield
    fastrnn.set_num_threads(old)


def test_gil_released_during_kernel(one_thread):
    """While a kernel runs, another Python thread keeps running. On a busy machine the
    spinner may get no processor during one call, so a few calls are tried; with the GIL held
    for the whole call it could run in none of them."""
    args = _lstm_args(100, 32, 64, 128)
    F.lstm_forward(*args, training=False)  # warm-up
    count = 0
    running = threading.Event()
    done = threading.Event()

    def spin():
        nonlocal count
        running.set()
        while not done.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    best = 0
    try:
        running.wait()
        for _ in range(5):
            before = count
            F.lstm_forward(*args, training=False)  # tens of milliseconds in C
            best = max(best, count - before)
            if best > 1000:
                break
    finally:
        done.set()
        t.join()
    assert best > 1000


def test_concurrent_calls_match_serial(one_thread):
    args = _lstm_args(30, 8, 24, 40, np.float64)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(args[0].shape) for _ in range(8)]
    dy = rng.standard_normal((30, 8, 40))

    def job(x):
        y, h, c, ctx = F.lstm_forward(x, *args[1:])
        return (y, h, c, *F.lstm_backward(ctx, dy, None, None))

    serial = [job(x) for x in xs]
    results: list = [None] * len(xs)

    def worker(k):
        for i in range(k, len(xs), 4):
            results[i] = job(xs[i])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial, strict=True):
        for a, b in zip(got, want, strict=True):
            assert np.array_equal(a, b)


def test_set_num_threads_between_calls():
    old = fastrnn.get_num_threads()
    args = _lstm_args(20, 16, 32, 96, np.float64)
    outs = []
    try:
        for n in (1, 2, 3, 1, 2):
            fastrnn.set_num_threads(n)
            outs.append(F.lstm_forward(*args, training=False)[0])
    finally:
        fastrnn.set_num_threads(old)
    for y in outs[1:]:
        np.testing.assert_allclose(y, outs[0], rtol=1e-13, atol=1e-14)
    assert np.array_equal(outs[0], outs[3]) and np.array_equal(outs[1], outs[4])


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_no_memory_growth():
    args = _lstm_args(4, 2, 4, 8)
    dy = np.ones((4, 2, 8), np.float32)

    def call():
        y, h, c, ctx = F.lstm_forward(*args)
        F.lstm_backward(ctx, dy, None, None)

    for _ in range(2000):  # warm-up: allocator pools, caches
        call()
    base = _rss_kb()
    for _ in range(10_000):
        call()
    assert _rss_kb() - base < 1024


# ---- streaming --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_stream_equals_sequence(cell, dtype, tol):
    rng = np.random.default_rng(2)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    T, B, I, H, O = 7, 3, 5, 37, 4
    w_ih = rng.uniform(-0.3, 0.3, (G * H, I)).astype(dtype)
    w_hh = rng.uniform(-0.3, 0.3, (G * H, H)).astype(dtype)
    b_ih, b_hh = rng.standard_normal(G * H).astype(dtype), rng.standard_normal(G * H).astype(dtype)
    w2 = rng.uniform(-0.3, 0.3, (4 * H, H)).astype(dtype)
    u2 = rng.uniform(-0.3, 0.3, (4 * H, H)).astype(dtype)
    kern = rng.standard_normal((H, O)).astype(dtype)
    bias = rng.standard_normal(O).astype(dtype)
    s = _kernels.Stream([(cell, w_ih, w_hh, b_ih, b_hh, "relu"), ("lstm", w2, u2, None, None, ""),
                         ("dense", kern, bias, "softmax")], B, dtype)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    got = np.stack([s.step(x[t]) for t in range(T)])
    if cell == "lstm":
        y1 = F.lstm_forward(x, None, None, w_ih, w_hh, b_ih, b_hh, training=False)[0]
    elif cell == "rnn":
        y1 = F.rnn_forward(x, None, w_ih, w_hh, b_ih, b_hh, nonlinearity="relu",
                           training=False)[0]
    else:
        y1 = F.gru_forward(x, None, w_ih, w_hh, b_ih, b_hh, training=False)[0]
    y2 = F.lstm_forward(y1, None, None, w2, u2, None, None, training=False)[0]
    z = y2 @ kern + bias
    z = np.exp(z - z.max(-1, keepdims=True))
    z /= z.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, z, rtol=tol, atol=tol)
    # reset() starts over
    s.reset()
    np.testing.assert_allclose(s.step(x[0]), z[0], rtol=tol, atol=tol)


def test_stream_embedding_and_errors():
    rng = np.random.default_rng(3)
    V, D, H = 11, 4, 6
    table = rng.standard_normal((V, D))
    w_ih, w_hh = rng.standard_normal((3 * H, D)), rng.standard_normal((3 * H, H))
    s = _kernels.Stream([("embedding", table), ("gru", w_ih, w_hh, None, None, "")], 2,
                        np.float64)
    ids = np.array([[3, 10], [0, 5]])
    got = np.stack([s.step(ids[t]) for t in range(2)])
    want = F.gru_forward(table[ids], None, w_ih, w_hh, None, None, training=False)[0]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="token id 11 out of range"):
        s.step(np.array([11, 0]))
    with pytest.raises(TypeError, match="integer token ids"):
        s.step(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"token ids of shape \(2,\)"):
        s.step(np.array([1, 2, 3]))
    dense = _kernels.Stream([("dense", np.ones((3, 2)), None, "relu")], 1, np.float32)
    with pytest.raises(ValueError, match=r"x must have shape \(1, 3\)"):
        dense.step(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="must be float32"):
        dense.step(np.ones(3, np.complex64))
    with pytest.raises(ValueError, match="layer 1 expects 5 inputs but layer 0 gives 2"):
        _kernels.Stream([("dense", np.ones((3, 2)), None, "relu"),
                         ("dense", np.ones((5, 2)), None, "relu")], 1, np.float32)
    with pytest.raises(ValueError, match="dense activation must be one of"):
        _kernels.Stream([("dense", np.ones((3, 2)), None, "swish")], 1, np.float32)


def test_stream_rejects_simd_path_change():
    arches = _kernels.available_arches()
    old = _kernels.get_arch()
    s = _kernels.Stream([("dense", np.ones((3, 2)), None, "linear")], 1, np.float32)
    s.step(np.ones(3, np.float32))
    other = [a for a in arches if a != old]
    for a in other:
        _kernels.set_arch(a)
        try:
            try:
                out = s.step(np.ones(3, np.float32))
            except RuntimeError as e:
                assert "SIMD path changed" in str(e)
            else:  # same panel width: the packed layout is still valid
                np.testing.assert_allclose(out, [[3.0, 3.0]])
        finally:
            _kernels.set_arch(old)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_reused_scratch_memory_never_leaks_into_results(cell):
    """The kernels keep their last scratch block for the next call; a dirty block from a bigger
    call must give bitwise the same results as fresh memory, and release_memory frees it."""
    rng = np.random.default_rng(7)

    def run(T, B, I, H, seed):
        r = np.random.default_rng(seed)
        G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
        x = r.standard_normal((T, B, I))
        w, u = r.standard_normal((G * H, I)) * 0.3, r.standard_normal((G * H, H)) * 0.3
        b1, b2 = r.standard_normal(G * H), r.standard_normal(G * H)
        dy = r.standard_normal((T, B, H))
        lengths = r.integers(0, T + 1, B)
        if cell == "lstm":
            *out, ctx = F.lstm_forward(x, None, None, w, u, b1, b2, lengths=lengths)
            grads = F.lstm_backward(ctx, dy, None, None)
        else:
            fw = F.rnn_forward if cell == "rnn" else F.gru_forward
            bw = F.rnn_backward if cell == "rnn" else F.gru_backward
            *out, ctx = fw(x, None, w, u, b1, b2, lengths=lengths)
            grads = bw(ctx, dy, None)
        return [a for a in (*out, *grads) if a is not None]

    fastrnn.release_memory()
    assert _kernels.scratch_kept() == 0
    fresh = run(7, 5, 6, 9, 1)
    assert _kernels.scratch_kept() > 0  # the block is kept for the next call
    # fill the kept block with another, bigger call's data, then rerun the small case on it
    run(20, 9, 11, 40, int(rng.integers(1 << 30)))
    dirty = run(7, 5, 6, 9, 1)
    for a, b in zip(fresh, dirty, strict=True):
        np.testing.assert_array_equal(a, b)
    assert fastrnn.release_memory() > 0
    assert _kernels.scratch_kept() == 0
    assert fastrnn.release_memory() == 0


def test_kept_blocks_are_reused_and_never_shared():
    """A dead array's block (training cache, output, gradient) serves the next call of its
    size (no fresh pages), is never handed out while the array or any view of it lives,
    gives the same results as fresh memory, and release_memory frees it."""
    import gc

    rng = np.random.default_rng(3)
    T, B, I, H = 64, 8, 5, 32  # y: 128 KiB in float64, the smallest output put on a block
    x = rng.standard_normal((T, B, I))
    w, u = rng.standard_normal((4 * H, I)) * 0.3, rng.standard_normal((4 * H, H)) * 0.3
    dy = rng.standard_normal((T, B, H))
    lengths = [T, 3, 0, 50, 9, T, 1, 2]

    def fwd(xx):
        return F.lstm_forward(xx, None, None, w, u, None, None, lengths=lengths)

    def blocks(*arrays):
        return {a.ctypes.data for a in arrays}

    fastrnn.release_memory()
    y1, _, _, ctx1 = fwd(x)
    g1 = F.lstm_backward(ctx1, dy, None, None)
    y2, _, _, ctx2 = fwd(x * 2)  # y1 and ctx1 alive: other blocks
    for old in (y1, ctx1.cache):
        assert not np.shares_memory(old, y2) and not np.shares_memory(old, ctx2.cache)
    del old
    # A view keeps its block out of reach even when the array it came from is gone.
    view = ctx1.cache[5:]
    saved = view.copy()
    dead_caches = {ctx1.cache.ctypes.data}
    del ctx1
    gc.collect()
    y3, _, _, ctx3 = fwd(x * 3)
    assert not np.shares_memory(view, ctx3.cache) and not np.shares_memory(view, y3)
    np.testing.assert_array_equal(view, saved)
    # Once nothing views them, the dead blocks serve the next calls of their sizes, dirty.
    dead_caches.add(ctx3.cache.ctypes.data)
    kept = _kernels.scratch_kept()
    del view, ctx3, y3
    gc.collect()
    assert _kernels.scratch_kept() >= kept + 2 * ctx2.cache.nbytes + y2.nbytes
    y4, _, _, ctx4 = fwd(x)
    assert ctx4.cache.ctypes.data in dead_caches  # no other kept block has this size
    np.testing.assert_array_equal(y4, y1)
    for a, b in zip(g1, F.lstm_backward(ctx4, dy, None, None), strict=True):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    # ctx2's cache was not touched by the forwards after it.
    g2 = F.lstm_backward(ctx2, dy, None, None)
    y2r, _, _, ctx2r = fwd(x * 2)
    np.testing.assert_array_equal(y2, y2r)
    for a, b in zip(g2, F.lstm_backward(ctx2r, dy, None, None), strict=True):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    del ctx2, ctx4, ctx2r
    gc.collect()
    assert fastrnn.release_memory() >= 8 * 7 * T * B * H  # at least one training cache
    assert fastrnn.release_memory() == 0


@pytest.mark.parametrize("how", ["train_on_batch", "fit"])
def test_no_memory_growth_in_model_training(how):
    """1,000 training steps of a Keras-style model (Embedding + LSTM + Dense, Adam with
    clipping, a metric) keep resident memory flat after warm-up, step by step or in one fit."""
    from fastrnn.keras import layers as L
    from fastrnn.keras import optimizers
    from fastrnn.keras.models import Sequential

    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, size=(8000, 12))
    y = rng.integers(0, 4, size=8000)
    m = Sequential([L.Embedding(50, 8, mask_zero=True), L.LSTM(16),
                    L.Dense(4, activation="softmax")])
    m.compile(optimizer=optimizers.Adam(0.01, clipnorm=1.0),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def train():
        if how == "fit":  # 1,000 batches of 8
            m.fit(x, y, batch_size=8, epochs=1, verbose=0)
        else:
            for i in range(1000):
                m.train_on_batch(x[8 * i:8 * i + 8], y[8 * i:8 * i + 8])

    for _ in range(2):  # warm-up: allocator pools, caches, optimizer slots
        train()
    base = _rss_kb()
    train()
    growth = _rss_kb() - base
    print(f"RSS growth over 1,000 {how} steps: {growth} KiB")
    assert growth < 1024, f"resident memory grew by {growth} KiB over 1,000 steps"
