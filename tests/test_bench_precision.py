"""``fastrnn bench --precision``: fastrnn's bfloat16 and int8 rows beside their anchors (torch
bf16 autocast, torch's dynamic int8, ONNX Runtime's DynamicQuantizeLSTM), each one's error
against float32, the bf16 GEMM peak and the issue's target ratios. No timing is asserted:
only what the report computes from the times it holds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn import bench
from fastrnn.bench import cases, report, runners

SRC = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def _torch_bf16_lstm_runs() -> bool:
    """Whether torch's own bfloat16 autocast of an LSTM runs on this CPU (oneDNN's bf16 RNN
    needs AVX-512: on an AVX2-only CPU torch 2.13 raises)."""
    import torch

    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(3, 4)(torch.zeros(2, 1, 3))
    except RuntimeError:
        return False
    return True


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "fastrnn", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_implementation_table() -> None:
    assert bench.IMPLS[0] == "fastrnn"
    for prec, impl in cases.FASTRNN_OF.items():
        assert cases.PRECISION_OF[impl] == prec
    assert cases.base_of("torch-bf16") == "fastrnn-bf16"
    assert cases.base_of("ort-int8") == "fastrnn-int8"
    assert cases.base_of("fastrnn-bf16") == "fastrnn" and cases.base_of("torch") == "fastrnn"
    assert cases.runs_case("ort-int8", "lstm", "inference")
    assert not cases.runs_case("ort-int8", "gru", "inference")
    assert not cases.runs_case("torch-int8", "rnn", "inference")  # torch.ao has no int8 RNN
    assert not cases.runs_case("fastrnn-int8", "lstm", "training")
    assert cases.runs_case("fastrnn-bf16", "gru", "training")
    assert cases.check_atol("torch") == bench.CHECK_ATOL
    assert cases.check_atol("torch-int8") == cases.REDUCED_ATOL


@pytest.mark.parametrize("impl, cells, bound", [
    ("torch-bf16", ("rnn", "lstm", "gru"), 0.05),
    ("torch-int8", ("lstm", "gru"), 0.1),
    ("ort-int8", ("lstm",), 0.1),
    ("fastrnn-bf16", ("rnn", "lstm", "gru"), 0.05),
    ("fastrnn-int8", ("rnn", "lstm", "gru"), 0.1),
])
def test_reduced_precision_anchors_compute_the_same_function(impl, cells, bound) -> None:
    """Each anchor's output is near fastrnn's float32 output on the same weights and inputs
    (a wrong gate order or quantized layout would be off by O(1)), and not equal to it."""
    for cell in cells:
        for mode in ("inference", "training"):
            if not cases.runs_case(impl, cell, mode):
                continue
            case = cases.Case("t", 12, 3, 10, 16, cell, mode)
            p = cases.make_params(case, seed=1)
            y32 = runners.build_runner("fastrnn", case, p, 1)()
            if impl == "torch-bf16" and cell == "lstm" and not _torch_bf16_lstm_runs():
                # the anchor says so instead of failing in its first timed call
                with pytest.raises(runners.Unavailable, match="bfloat16 LSTM .* this CPU"):
                    runners.build_runner(impl, case, p, 1)
                continue
            y = runners.build_runner(impl, case, p, 1)()
            err = float(np.abs(y - y32).max())
            assert y.shape == y32.shape and y.dtype == np.float32
            assert 0 < err < bound, (impl, cell, mode, err)


def test_ort_int8_model_holds_per_channel_int8_weights() -> None:
    import onnx

    case = cases.Case("t", 4, 2, 5, 6, "lstm", "inference")
    p = cases.make_params(case)
    model = onnx.load_from_string(runners.onnx_int8_lstm_bytes(case, p))
    node = model.graph.node[0]
    assert (node.op_type, node.domain) == ("DynamicQuantizeLSTM", "com.microsoft")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits["W"].dtype == np.int8 and inits["W"].shape == (1, 5, 24)
    assert inits["R"].shape == (1, 6, 24) and inits["R_scale"].shape == (1, 24)
    assert not inits["W_zero_point"].any()
    # dequantized, the weights are the float32 ones in ONNX's gate order, within half a step
    w = runners.to_onnx_gates("lstm", p["w_ih"])
    deq = inits["W"][0].T * inits["W_scale"][0][:, None]
    assert np.abs(deq - w).max() <= inits["W_scale"].max() / 2 + 1e-7
    with pytest.raises(ValueError, match="LSTM"):
        runners.onnx_int8_lstm_bytes(cases.Case("t", 4, 2, 5, 6, "gru", "inference"), p)


def test_quantize_per_channel() -> None:
    w = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]], np.float32)
    q, s = runners.quantize_per_channel(w)
    assert q.tolist() == [[64, -127, 32], [0, 0, 0]]
    assert s[0] == np.float32(1.0) / np.float32(127) and s[1] == 1.0


def test_bench_precision_run(tmp_path) -> None:
    out, md = tmp_path / "p.json", tmp_path / "p.md"
    proc = _cli("bench", "--shape", "tiny=6,2,5,8", "--cells", "lstm,gru", "--repeats", "3",
                "--threads", "1", "--gemm-size", "128", "--quiet", "--no-reference",
                "--precision", "float32,bf16,int8", "--json", str(out), "--markdown", str(md))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(out.read_text())
    assert rep["precisions"] == ["float32", "bfloat16", "int8"]
    assert rep["bf16_gemm_peak"]["n"] == 128 and rep["bf16_gemm_peak"]["gflops"] > 0
    res = rep["results"]
    by = {(d["cell"], d["mode"], d["impl"]): d for d in res}
    # torch's bf16 LSTM is unavailable (not an error) where this CPU cannot run it
    missing = {(d["cell"], d["mode"], d["impl"]) for d in res if d["status"] == "unavailable"}
    assert missing == (set() if _torch_bf16_lstm_runs() else
                       {("lstm", mode, "torch-bf16") for mode in ("inference", "training")})
    res = [d for d in res if d["status"] != "unavailable"]
    assert all(d["status"] == "ok" for d in res), [d["reason"] for d in res]
    assert ("lstm", "inference", "ort-int8") in by and ("gru", "inference", "ort-int8") not in by
    assert ("gru", "inference", "torch-int8") in by
    assert not any(d["mode"] == "training" and d["precision"] == "int8" for d in res)
    for d in res:
        assert d["precision"] == cases.PRECISION_OF[d["impl"]]
        if d["impl"] == "fastrnn":
            continue
        base = by[(d["cell"], d["mode"], cases.base_of(d["impl"]))]
        assert math.isclose(d["fastrnn_speedup"], d["time_ms"] / base["time_ms"], rel_tol=1e-9)
        err = d["max_abs_diff_vs_fastrnn"]
        if d["precision"] == "float32":
            assert err <= bench.CHECK_ATOL
        else:  # the error against float32: there, and within the rounding's reach
            assert 0 < err <= cases.REDUCED_ATOL
        if d["precision"] == "bfloat16":
            assert math.isclose(d["pct_peak"], 100 * d["gflops"] / rep["bf16_gemm_peak"][
                "gflops"], rel_tol=1e-9)
        if d["precision"] == "int8":
            assert d["pct_peak"] is None
    assert rep["warnings"] == []
    text = md.read_text()
    assert "bf16 GEMM peak" in text and "## Reduced-precision targets" in text
    assert "torch bf16 autocast ms (speed-up)" in text
    assert "ORT int8 DynamicQuantizeLSTM ms (speed-up)" in text
    assert "Targets of the reduced precisions" in proc.stdout
    # the targets in the markdown are those computed from the report
    targets = report.precision_targets(rep)
    assert {t["target"] for t in targets} >= {
        "bf16 error / torch bf16 autocast's error",
        "int8 error / ORT DynamicQuantizeLSTM's error",
        "int8 speed over ORT int8 DynamicQuantizeLSTM"}
    for t in targets:
        assert f"| {t['target']} | {t['need']} |" in text


def test_bench_precision_arguments() -> None:
    proc = _cli("bench", "--precision", "fp16")
    assert proc.returncode == 2 and "--precision: unknown value 'fp16'" in proc.stderr
    proc = _cli("bench", "--precision", "int8", "--impls", "torch-bf16", "--shape", "2,1,2,2")
    assert proc.returncode != 0 and "not in --precision" in proc.stderr
    assert "Traceback" not in proc.stderr


def _row(impl: str, ms: float, err: float | None = None, gflops: float = 1.0,
         pct: float | None = None, row: str = "large", cell: str = "lstm",
         mode: str = "inference") -> dict:
    return {"mode": mode, "row": row, "cell": cell, "impl": impl,
            "label": cases.LABELS[impl], "status": "ok", "time_ms": ms, "gflops": gflops,
            "pct_peak": pct, "max_abs_diff_vs_fastrnn": err, "precision":
            cases.PRECISION_OF[impl]}


def test_precision_targets_follow_the_issue() -> None:
    rep = {"bf16_gemm_peak": {"gflops": 400.0}, "results": [
        _row("fastrnn", 10.0),
        # the best anchor (torch bf16: 5 ms at 200 GFLOP/s, 50% of the peak: below 60%, so
        # 1.3x is needed); fastrnn bf16 at 4 ms: 1.25x, missed
        _row("torch-bf16", 5.0, err=0.01, gflops=200.0),
        _row("fastrnn-bf16", 4.0, err=0.012, pct=86.0),
        _row("fastrnn-int8", 2.0, err=0.03),
        _row("ort-int8", 2.2, err=0.02),
        _row("fastrnn", 8.0, cell="gru", row="medium"),
        _row("fastrnn-int8", 3.0, cell="gru", row="medium"),
        _row("fastrnn", 8.0, cell="rnn", row="small"),  # no x2 target on the small row
        _row("fastrnn-int8", 7.0, cell="rnn", row="small"),
    ]}
    got = {(t["cell"], t["target"]): (t["need"], round(t["value"], 3), t["met"])
           for t in report.precision_targets(rep)}
    assert got == {
        ("lstm", "bf16 speed over the best anchor (torch bf16 autocast)"):
            (">= 1.30x", 1.25, False),
        ("lstm", "bf16 % of the bf16 peak"): (">= 85%", 86.0, True),
        ("lstm", "bf16 error / torch bf16 autocast's error"): ("<= 1.50x", 1.2, True),
        ("lstm", "int8 speed over ORT int8 DynamicQuantizeLSTM"): (">= 1.00x", 1.1, True),
        ("lstm", "int8 error / ORT DynamicQuantizeLSTM's error"): ("<= 1.50x", 1.5, True),
        ("gru", "int8 speed over fastrnn float32"): (">= 2.00x", 2.667, True),
    }
    lines = report.format_targets(report.precision_targets(rep), markdown=False)
    assert lines[0].split()[:2] == ["mode", "row"] and any("NO" in ln for ln in lines)
