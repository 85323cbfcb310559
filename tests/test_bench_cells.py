"""Fine-grained pytest-benchmark cases: one cell, one phase, one implementation.

A plain test run calls each case once, as a test (see ``pytest_configure`` in
``tests/conftest.py``); to time them, run from the repository root (the extension built in
place)::

    python -m pytest tests/test_bench_cells.py --benchmark-only
    python -m pytest tests/test_bench_cells.py --benchmark-only -k "lstm and small" \
        --benchmark-compare

Phases: ``inference`` (forward, ``training=False``), ``forward_train`` (forward that
keeps the training cache) and ``backward`` (backward alone, on a fresh forward's
context each round). Rows are the two small rows of the public grid; the big ones and
the comparison table belong to ``python -m fastrnn bench``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastrnn
from fastrnn._cells import CELLS
from fastrnn.bench import ROWS

pytest.importorskip("pytest_benchmark")
F = pytest.importorskip("fastrnn.functional")

BENCH_ROWS = ("stream", "small")


def _params(cell: str, row: str) -> dict[str, np.ndarray]:
    T, B, I, H = ROWS[row]
    G = CELLS[cell].gates
    rng = np.random.default_rng(0)
    k = np.float32(1.0 / np.sqrt(H))

    def u(*shape: int) -> np.ndarray:
        return rng.random(shape, dtype=np.float32) * 2 * k - k

    return {
        "x": rng.standard_normal((T, B, I), dtype=np.float32),
        "w": [u(G * H, I), u(G * H, H), u(G * H), u(G * H)],
        "dy": rng.standard_normal((T, B, H), dtype=np.float32),
    }


def _forward(ops, cell: str, p: dict, training: bool):
    if cell == "lstm":
        return ops.lstm_forward(p["x"], None, None, *p["w"], training=training)
    return getattr(ops, f"{cell}_forward")(p["x"], None, *p["w"], training=training)


def _backward(ops, cell: str, ctx, dy):
    if cell == "lstm":
        return ops.lstm_backward(ctx, dy, None, None)
    return getattr(ops, f"{cell}_backward")(ctx, dy, None)


def _set_info(benchmark, cell: str, row: str, phase: str, impl: str) -> None:
    T, B, I, H = ROWS[row]
    flops = 2.0 * T * B * (I + H) * CELLS[cell].gates * H * (2 if phase == "backward" else 1)
    benchmark.extra_info.update({"cell": cell, "row": row, "phase": phase, "impl": impl,
                                 "shape": [T, B, I, H], "gflop": flops / 1e9,
                                 "threads": fastrnn.get_num_threads()})


@pytest.mark.parametrize("row", BENCH_ROWS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("phase", ["inference", "forward_train"])
def test_fastrnn_forward(benchmark, cell: str, row: str, phase: str) -> None:
    p = _params(cell, row)
    _set_info(benchmark, cell, row, phase, "fastrnn")
    out = benchmark(_forward, F, cell, p, phase == "forward_train")
    assert out[0].shape == p["dy"].shape


@pytest.mark.parametrize("row", BENCH_ROWS)
@pytest.mark.parametrize("cell", CELLS)
def test_fastrnn_backward(benchmark, cell: str, row: str) -> None:
    p = _params(cell, row)
    _set_info(benchmark, cell, row, "backward", "fastrnn")

    def setup():
        ctx = _forward(F, cell, p, True)[-1]
        return (F, cell, ctx, p["dy"]), {}

    grads = benchmark.pedantic(_backward, setup=setup, rounds=20, warmup_rounds=2)
    assert grads[0].shape == p["x"].shape


@pytest.mark.parametrize("row", BENCH_ROWS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("phase", ["inference", "training"])
def test_torch(benchmark, cell: str, row: str, phase: str) -> None:
    """torch.nn on the same shapes and threads, for side-by-side reading of the tables."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(fastrnn.get_num_threads())
    p = _params(cell, row)
    T, B, I, H = ROWS[row]
    mod = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H)
    x = torch.from_numpy(p["x"])
    _set_info(benchmark, cell, row, phase, "torch")
    if phase == "inference":

        def run():
            with torch.inference_mode():
                return mod(x)[0]

    else:
        x.requires_grad_(True)
        dy = torch.from_numpy(p["dy"])

        def run():
            mod.zero_grad(set_to_none=True)
            x.grad = None
            y = mod(x)[0]
            y.backward(dy)
            return y

    y = benchmark(run)
    assert tuple(y.shape) == (T, B, H)
