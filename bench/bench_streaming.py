"""Per-step latency of streaming inference.

Models, batch 1, float32:
  A. LSTM(64) -> Dense(1), 1 input feature
  B. GRU(128) x 2 layers -> Dense(1), 1 input feature

For each: fastrnn's ``session.step(x_t)`` (median and 99th percentile, microseconds), torch's
``nn.LSTMCell``/``nn.GRUCell`` + ``nn.Linear`` stepped in a Python loop under
``torch.no_grad()`` with the same weights, and fastrnn's own full-sequence forward
(``model.predict``-free: the functional ops, training=False) divided by T.

    python bench/bench_streaming.py [--steps 20000] [--threads 1]
    python bench/bench_streaming.py --precisions float32,bfloat16,int8   # LSTM(256) per precision

``--precisions`` times instead one model, Embedding-free LSTM(256) -> Dense(1) with 256 input
features, stepped in each precision (bfloat16: the ``"mixed_bfloat16"`` policy; int8:
``model.quantize("int8")``), the precisions taking turns in blocks of 200 steps so that load
hits them alike; the table gives each one's median step and its speed-up over float32 (the
issue-20 target: int8 at least 2x float32).

Timings are per call with ``time.perf_counter_ns`` around each step; medians and p99 over all
steps after a warm-up. Both libraries use the same thread count.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _percentiles(ns: list[int]) -> tuple[float, float]:
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return float(np.median(a)), float(np.percentile(a, 99))


def _time_steps(fn, xs) -> tuple[float, float]:
    for x in xs[:500]:
        fn(x)
    ns = []
    for x in xs:
        t0 = time.perf_counter_ns()
        fn(x)
        ns.append(time.perf_counter_ns() - t0)
    return _percentiles(ns)


def build_models():
    from fastrnn.keras.layers import GRU, LSTM, Dense
    from fastrnn.keras.models import Sequential

    a = Sequential([LSTM(64, input_shape=(None, 1)), Dense(1)])
    b = Sequential([GRU(128, return_sequences=True, input_shape=(None, 1)), GRU(128), Dense(1)])
    return {"LSTM(64)->Dense(1)": a, "GRU(128)x2->Dense(1)": b}


def torch_stepper(model):
    """The same model as torch cells + Linear, stepped in a Python loop."""
    import torch

    cells = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("LSTM", "GRU"):
            I, H = layer.input_size, layer.units
            cell = (torch.nn.LSTMCell if kind == "LSTM" else torch.nn.GRUCell)(I, H)
            with torch.no_grad():
                cell.weight_ih.copy_(torch.from_numpy(layer.kernel.value))
                cell.weight_hh.copy_(torch.from_numpy(layer.recurrent_kernel.value))
                if kind == "LSTM":
                    cell.bias_ih.copy_(torch.from_numpy(layer.bias.value))
                    cell.bias_hh.zero_()
                else:
                    cell.bias_ih.copy_(torch.from_numpy(layer.bias.value[0]))
                    cell.bias_hh.copy_(torch.from_numpy(layer.bias.value[1]))
            cells.append((kind, cell))
        elif kind == "Dense":
            lin = torch.nn.Linear(layer.kernel.value.shape[0], layer.units)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.kernel.value.T.copy()))
                lin.bias.copy_(torch.from_numpy(layer.bias.value))
            cells.append(("Dense", lin))
    state = [None] * len(cells)

    def step(x):
        with torch.no_grad():
            h = torch.from_numpy(x).reshape(1, -1)
            for k, (kind, mod) in enumerate(cells):
                if kind == "LSTM":
                    state[k] = mod(h, state[k])
                    h = state[k][0]
                elif kind == "GRU":
                    state[k] = mod(h, state[k])
                    h = state[k]
                else:
                    h = mod(h)
            return h.numpy()

    return step


def precision_table(steps: int, precisions: list[str]) -> None:
    """Print the per-step latency of LSTM(256) -> Dense(1) in each precision (batch 1)."""
    from fastrnn.keras.layers import LSTM, Dense
    from fastrnn.keras.models import Sequential, set_random_seed

    rng = np.random.default_rng(0)
    xs = rng.standard_normal((steps, 256)).astype(np.float32)
    sessions, outs = {}, {}
    for prec in precisions:
        set_random_seed(0)  # the same weights in every precision
        policy = "mixed_bfloat16" if prec == "bfloat16" else "float32"
        model = Sequential([LSTM(256, input_shape=(None, 256), dtype=policy), Dense(1)])
        if prec == "int8":
            model.quantize("int8")
        sessions[prec] = model.stream(batch_size=1)
        outs[prec] = np.concatenate([sessions[prec].step(x) for x in xs[:200]])
        sessions[prec].reset()
    ns: dict[str, list[int]] = {p: [] for p in precisions}
    for start in range(0, steps, 200):  # blocks of 200 steps, precisions in turn
        for prec, session in sessions.items():
            for x in xs[start:start + 200]:
                t0 = time.perf_counter_ns()
                session.step(x)
                ns[prec].append(time.perf_counter_ns() - t0)
    base = _percentiles(ns[precisions[0]])[0]
    print("| precision | step median µs | p99 µs | speed-up over " + precisions[0]
          + " | max abs diff of the outputs vs " + precisions[0] + " |")
    print("|---|---|---|---|---|")
    for prec in precisions:
        med, p99 = _percentiles(ns[prec])
        diff = float(np.abs(outs[prec] - outs[precisions[0]]).max())
        print(f"| {prec} | {med:.2f} | {p99:.2f} | {base / med:.2f}x | {diff:.2e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=1000, help="T for the full-sequence forward")
    ap.add_argument("--precisions", default=None,
                    help="comma-separated precisions (float32,bfloat16,int8): time LSTM(256) "
                         "-> Dense(1) in each instead")
    args = ap.parse_args()

    import fastrnn

    fastrnn.set_num_threads(args.threads)
    if args.precisions:
        print(f"# streaming latency per precision, LSTM(256) -> Dense(1), batch 1, "
              f"{args.threads} thread(s), {platform.processor() or platform.machine()}")
        precision_table(args.steps, args.precisions.split(","))
        return
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((args.steps, 1)).astype(np.float32)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    print(f"# streaming latency, batch 1, float32, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, SIMD {fastrnn.info()['simd']}")
    print("| model | fastrnn step median µs | p99 µs | torch cell loop median µs | p99 µs "
          "| speed-up vs torch | fastrnn full-sequence µs/step |")
    print("|---|---|---|---|---|---|---|")
    for name, model in build_models().items():
        session = model.stream(batch_size=1)
        fr_med, fr_p99 = _time_steps(session.step, xs)
        # equality check with the torch loop on the first steps
        if torch is not None:
            tstep = torch_stepper(model)
            session.reset()
            a = np.concatenate([session.step(x) for x in xs[:50]])
            tstep_fresh = torch_stepper(model)
            b = np.concatenate([tstep_fresh(x).reshape(-1) for x in xs[:50]])
            if not np.allclose(a, b, rtol=1e-4, atol=1e-5):
                print(f"WARNING: {name}: torch cells disagree with the stream "
                      f"(max diff {np.abs(a - b).max():.2e})")
            t_med, t_p99 = _time_steps(tstep, xs)
            ratio = f"{t_med / fr_med:.1f}x"
            tcols = f"{t_med:.2f} | {t_p99:.2f}"
        else:
            tcols, ratio = "n/a | n/a", "n/a"
        # full-sequence forward of the same model, per step
        seq = xs[: args.seq_len].reshape(1, -1, 1)
        model.predict(seq, verbose=0)
        reps = []
        for _ in range(7):
            t0 = time.perf_counter_ns()
            model.predict(seq, verbose=0)
            reps.append((time.perf_counter_ns() - t0) / 1e3 / args.seq_len)
        print(f"| {name} | {fr_med:.2f} | {fr_p99:.2f} | {tcols} | {ratio} | "
              f"{float(np.median(reps)):.2f} |")
    print(f"\ncommand: python bench/bench_streaming.py --steps {args.steps} "
          f"--threads {args.threads}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}")


if __name__ == "__main__":
    main()
