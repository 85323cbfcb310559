"""fastrnn float32 vs bfloat16 vs int8, beside torch's bf16 autocast and ONNX Runtime's int8
``DynamicQuantizeLSTM``, in one run.

Rows (T, B, I, H) of issue 20; per row: the median wall time of warm back-to-back calls of

* fastrnn ``functional.cell_forward`` in float32, bfloat16 and int8 (prepared weights);
* torch ``nn.LSTM``/``nn.GRU`` under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
* ONNX Runtime ``com.microsoft.DynamicQuantizeLSTM`` (LSTM only; per-channel symmetric int8
  weights, as fastrnn's);

and each one's max abs error of ``y`` against fastrnn's float32 on the same weights and inputs.
``--train`` adds forward + backward (float32, bfloat16, torch bf16 autocast) on the training rows.

    python bench/bench_precision.py [--cells lstm,gru] [--threads 2] [--repeats 20] [--train]
                                    [--rows 0,2] [--stat median|min]

The ratios are what matters (same run, same machine); absolute times vary with load.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastrnn import _native, functional, set_num_threads

ROWS = [(200, 1, 64, 64), (200, 1, 256, 256), (100, 32, 128, 128), (50, 16, 256, 256),
        (100, 64, 512, 512)]
TRAIN_ROWS = [(100, 32, 128, 128), (50, 16, 256, 256), (100, 64, 512, 512)]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


STAT = {"median": np.median, "min": np.min}
_stat = np.median


def _median_ms(fn, repeats: int) -> float:
    """The time of fn in ms: the median (or, with --stat min, the best) of repeats."""
    fn()
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(_stat(ts) * 1e3)


def _data(cell: str, T: int, B: int, I: int, H: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    k = 1 / np.sqrt(H)
    w = [rng.uniform(-k, k, s).astype(np.float32)
         for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return x, w


def _torch_module(cell: str, I: int, H: int, w):
    import torch
    mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](I, H)
    with torch.no_grad():
        for p, a in zip((mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0, mod.bias_hh_l0), w,
                        strict=True):
            p.copy_(torch.from_numpy(a))
    return mod


def _ort_session(I: int, H: int, w, threads: int):
    """DynamicQuantizeLSTM with per-channel symmetric int8 weights (ONNX gate order i, o, f, c)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    order = np.concatenate([np.arange(g * H, (g + 1) * H) for g in (0, 3, 1, 2)])

    def quant(m):  # m (4H, K) -> int8 (1, K, 4H), scale (1, 4H)
        amax = np.abs(m).max(axis=1)
        s = np.where(amax > 0, amax / 127, 1).astype(np.float32)
        q = np.clip(np.rint(m / s[:, None]), -127, 127).astype(np.int8)
        return q.T[None].copy(), s[None]

    wq, ws = quant(w[0][order])
    rq, rs = quant(w[1][order])
    b = np.concatenate([w[2][order], w[3][order]])[None].astype(np.float32)
    zp = np.zeros((1, 4 * H), np.int8)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (wq, "W"), (rq, "R"), (b, "B"), (ws, "W_scale"), (zp, "W_zp"), (rs, "R_scale"),
        (zp, "R_zp"))]
    node = helper.make_node(
        "DynamicQuantizeLSTM", ["X", "W", "R", "B", "", "", "", "", "W_scale", "W_zp",
                                "R_scale", "R_zp"], ["Y"], domain="com.microsoft",
        hidden_size=H)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def bench_inference(cell: str, row, repeats: int, threads: int) -> dict:
    import torch
    T, B, I, H = row
    x, w = _data(cell, T, B, I, H)
    res: dict = {}
    ref = None
    for prec in ("float32", "bfloat16", "int8"):
        pw = functional.prepare_weights(cell, *w, precision=prec, check="identity")

        def run(prec=prec, pw=pw):
            return functional.cell_forward(cell, x, None, None, *w, training=False,
                                           precision=prec, prepared=pw)[0]

        y = run()
        ref = y if ref is None else ref
        res[prec] = (_median_ms(run, repeats), float(np.abs(y - ref).max()))
    mod = _torch_module(cell, I, H, w)
    xt = torch.from_numpy(x)

    def torch_bf16():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return mod(xt)[0]

    y = torch_bf16().float().numpy()
    res["torch_bf16"] = (_median_ms(torch_bf16, repeats), float(np.abs(y - ref).max()))
    if cell == "lstm":
        try:
            sess = _ort_session(I, H, w, threads)
        except Exception as e:  # noqa: BLE001 - report, keep benchmarking
            print(f"  onnxruntime DynamicQuantizeLSTM unavailable: {e}")
        else:
            def ort_int8():
                return sess.run(None, {"X": x})[0]

            y = ort_int8()[:, 0]
            res["ort_int8"] = (_median_ms(ort_int8, repeats), float(np.abs(y - ref).max()))
    return res


def bench_training(cell: str, row, repeats: int) -> dict:
    import torch
    T, B, I, H = row
    x, w = _data(cell, T, B, I, H)
    dy = np.ones((T, B, H), np.float32)
    res = {}
    for prec in ("float32", "bfloat16"):
        pw = functional.prepare_weights(cell, *w, precision=prec, check="identity")

        def step(prec=prec, pw=pw):
            y, _, _, ctx = functional.cell_forward(cell, x, None, None, *w, training=True,
                                                   precision=prec, prepared=pw)
            return functional.cell_backward(ctx, dy, None, None)

        res[prec] = _median_ms(step, repeats)
    mod = _torch_module(cell, I, H, w)
    xt = torch.from_numpy(x).requires_grad_()

    def torch_step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = mod(xt)[0]
        y.float().sum().backward()

    res["torch_bf16"] = _median_ms(torch_step, repeats)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="lstm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--rows", default="", help="indices into the row list, e.g. 0,2")
    ap.add_argument("--stat", choices=tuple(STAT), default="median",
                    help="min: the best of the repeats (steadier on a loaded machine)")
    args = ap.parse_args()
    global _stat
    _stat = STAT[args.stat]
    import torch
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    info = _native.build_info()
    print(f"fastrnn {info['simd']} {info['precision']}; torch {torch.__version__}; "
          f"{args.threads} threads; {args.stat} of {args.repeats}")
    rows = [ROWS[int(i)] for i in args.rows.split(",")] if args.rows else ROWS
    for cell in args.cells.split(","):
        for row in rows:
            r = bench_inference(cell, row, args.repeats, args.threads)
            f32 = r["float32"][0]
            cols = "  ".join(f"{k} {t:8.3f} ms (x{f32 / t:4.2f}, err {e:.1e})"
                             for k, (t, e) in r.items())
            print(f"{cell} {row} inference: {cols}")
        if args.train:
            for row in TRAIN_ROWS:
                r = bench_training(cell, row, max(3, args.repeats // 4))
                f32 = r["float32"]
                cols = "  ".join(f"{k} {t:8.2f} ms (x{f32 / t:4.2f})" for k, t in r.items())
                print(f"{cell} {row} training: {cols}")


if __name__ == "__main__":
    main()
