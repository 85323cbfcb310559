"""Smoke tests of the command line (``python -m fastrnn info|bench``) on tiny shapes.

The real benchmark lives in ``bench/`` and behind ``python -m fastrnn bench``; here we only
check that the CLI runs, writes well-formed JSON/Markdown, checks its anchors against
fastrnn, and reports argument errors as one line.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

import fastrnn
from fastrnn import bench
from fastrnn.bench import report as bench_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Where the package under test was imported from (src/ of a checkout, or site-packages).
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "fastrnn", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_info_runs() -> None:
    pytest.importorskip("fastrnn.functional")
    proc = _cli("info", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    import fastrnn

    assert f"fastrnn {fastrnn.__version__}" in proc.stdout
    assert "SIMD path" in proc.stdout and "OpenMP" in proc.stdout
    assert "forward+backward through fastrnn.functional" in proc.stdout
    assert "MISMATCH" not in proc.stdout


def test_bench_tiny_json_and_markdown(tmp_path) -> None:
    pytest.importorskip("fastrnn.functional")
    out, md = tmp_path / "out.json", tmp_path / "out.md"
    proc = _cli("bench", "--shape", "tiny=6,2,5,8", "--cells", "lstm", "--repeats", "1",
                "--threads", "1", "--gemm-size", "256", "--quiet",
                "--json", str(out), "--markdown", str(md))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(out.read_text())
    assert rep["schema"] == bench.SCHEMA
    assert rep["threads"] == 1 and rep["repeats"] == 1 and rep["stat"] == "median"
    assert rep["gemm_peak"]["n"] == 256 and rep["gemm_peak"]["gflops"] > 0
    assert rep["machine"]["cpu"] and rep["fastrnn"]["version"]
    # numpy's BLAS runs with the same thread count (or is not an OpenBLAS we can query)
    assert rep["blas"].startswith(("OpenBLAS, 1 thread(s)", "unknown BLAS")), rep["blas"]
    res = rep["results"]
    assert {(d["row"], d["cell"]) for d in res} == {("tiny", "lstm")}
    assert {d["mode"] for d in res} == {"inference", "training"}
    fast = {d["mode"]: d for d in res if d["impl"] == "fastrnn"}
    assert set(fast) == {"inference", "training"}
    flops = bench.flop_count("lstm", "inference", 6, 2, 5, 8)
    for mode, d in fast.items():
        assert d["status"] == "ok" and d["median_ms"] > 0 and len(d["times_ms"]) == 1
        assert d["time_ms"] == d["median_ms"]  # the default headline statistic
        want = flops * (3 if mode == "training" else 1)
        assert math.isclose(d["gflop"] * 1e9, want, rel_tol=1e-12)
        assert math.isclose(d["gflops"], want / (d["time_ms"] * 1e-3) / 1e9, rel_tol=1e-9)
        assert math.isclose(d["pct_peak"], 100 * d["gflops"] / rep["gemm_peak"]["gflops"],
                            rel_tol=1e-9)
    for d in res:
        assert d["impl"] in bench.IMPLS
        assert d["status"] in ("ok", "unavailable", "skipped", "error")
        assert d["status"] != "error", d["reason"]
        if d["impl"] == "onnxruntime":
            assert d["mode"] == "inference"
        if d["status"] == "ok" and d["impl"] != "fastrnn":
            # every anchor computed the same function as fastrnn, and its ratio is consistent
            assert d["max_abs_diff_vs_fastrnn"] <= bench.CHECK_ATOL
            ratio = d["time_ms"] / fast[d["mode"]]["time_ms"]
            assert math.isclose(d["fastrnn_speedup"], ratio, rel_tol=1e-9)
    assert rep["warnings"] == []
    text = md.read_text()
    assert text.startswith("# fastrnn benchmark results")
    assert "--shape tiny=6,2,5,8" in text and "GEMM peak" in text
    assert "## Inference" in text and "## Training" in text
    assert "| tiny (6,2,5,8) | lstm |" in text
    # every table names each row's shape (T, B, I, H): summary, detail
    assert "| inference | tiny (6,2,5,8) | lstm | fastrnn |" in text
    assert text.count("row (T,B,I,H)") == 3  # two summaries and the detail table
    assert "## Per-round ratios" not in text  # one round: no per-round ratios
    # the saved JSON renders again without measuring
    md2 = tmp_path / "again.md"
    proc = _cli("bench", "--load", str(out), "--markdown", str(md2))
    assert proc.returncode == 0, proc.stderr
    assert md2.read_text() == text
    # the text tables (printed at the end of a run, and on --load) too
    table = proc.stdout.splitlines()
    assert any(ln.startswith("row (T,B,I,H) ") for ln in table), proc.stdout
    assert sum(ln.startswith("tiny (6,2,5,8) ") and " lstm " in ln for ln in table) == 2


def test_bench_memory_study(tmp_path) -> None:
    """Inference keeps no per-timestep memory, training's cache grows with T."""
    pytest.importorskip("fastrnn.functional")
    out = tmp_path / "mem.json"
    B, I, H = 16, 32, 64
    proc = _cli("bench", "--memory-only", "--cells", "lstm", "--memory-shape", f"{B},{I},{H}",
                "--threads", "1", "--quiet", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(out.read_text())
    assert rep["results"] == [] and rep["gemm_peak"] is None
    mem = {(m["mode"], m["T"]): m for m in rep["memory"]}
    assert set(mem) == {(mode, T) for mode in bench.DEFAULT_MODES for T in bench.MEMORY_TS}
    per_step = B * 4 * H * 4  # bytes of one timestep's gates
    for m in mem.values():
        assert (m["cell"], m["B"], m["I"], m["H"]) == ("lstm", B, I, H)
        assert m["peak_bytes"] >= m["baseline_bytes"] > 0
        assert m["working_bytes"] == m["peak_bytes"] - m["baseline_bytes"] - m["returned_bytes"]
    T_hi = max(bench.MEMORY_TS)
    # inference: far less than one cache entry per timestep
    assert mem[("inference", T_hi)]["working_bytes"] < 0.25 * T_hi * per_step
    # training: at least the gates of every step are kept
    assert mem[("training", T_hi)]["working_bytes"] > T_hi * per_step
    assert "inference working memory" in proc.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "--rows", "nope"], "--rows: unknown value 'nope'"),
        (["bench", "--threads", "0"], "--threads: expected a positive integer"),
        (["bench", "--shape", "1,2,3"], "--shape: expected T,B,I,H"),
        (["bench", "--impls", "tf"], "--impls: unknown value 'tf'"),
        (["bench", "--json", "/nonexistent-dir/x.json", "--shape", "2,1,2,2"],
         "does not exist"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_argument_errors_are_one_line(args: list[str], needle: str) -> None:
    proc = _cli(*args, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_bench_training_data_mode(tmp_path) -> None:
    """--modes training-data: every implementation trains on an input that needs no gradient
    (fastrnn without its dx GEMM), FLOPs count 3x the forward less that GEMM, and the
    outputs are still checked against fastrnn's."""
    pytest.importorskip("fastrnn.functional")
    out = tmp_path / "out.json"
    proc = _cli("bench", "--shape", "tiny=6,2,5,8", "--cells", "gru", "--modes", "training-data",
                "--repeats", "1", "--threads", "1", "--gemm-size", "128", "--quiet",
                "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())["results"]
    assert {d["mode"] for d in res} == {"training-data"}
    fast = next(d for d in res if d["impl"] == "fastrnn")
    want = 3 * bench.flop_count("gru", "inference", 6, 2, 5, 8) - 2 * 6 * 2 * 5 * 3 * 8
    assert fast["status"] == "ok" and math.isclose(fast["gflop"] * 1e9, want, rel_tol=1e-12)
    assert not any(d["impl"] == "onnxruntime" for d in res)  # inference only
    for d in res:
        assert d["status"] != "error", d["reason"]
        if d["status"] == "ok" and d["impl"] != "fastrnn":
            assert d["max_abs_diff_vs_fastrnn"] <= bench.CHECK_ATOL


def test_round_ratio_pairs_samples_of_the_same_round() -> None:
    """The per-round ratio pairs sample k with sample k (the same round), takes the median,
    and declines with too few shared rounds, a warm-up-only time or a failed measurement."""
    fast = {"status": "ok", "warmup_only": False, "times_ms": [1.0, 4.0, 2.0, 8.0, 1.0]}
    # a load phase in rounds 1 and 3 slows both: per-round ratios 2, 2, 3, 2 (round 4 unshared)
    other = {"status": "ok", "warmup_only": False, "times_ms": [2.0, 8.0, 6.0, 16.0]}
    assert bench.round_ratio(other, fast) == 2.0
    assert bench.round_ratio(fast, other) == 0.5
    assert bench.round_ratio({**other, "times_ms": [2.0, 8.0]}, fast) is None
    assert bench.round_ratio({**other, "warmup_only": True}, fast) is None
    assert bench.round_ratio({**other, "status": "error"}, fast) is None
    # in the markdown: a section with one row per case that has the rounds
    report = {"results": [
        {"mode": "training", "row": "r", "cell": "lstm", "impl": "fastrnn", **fast},
        {"mode": "training", "row": "r", "cell": "lstm", "impl": "torch", **other},
        {"mode": "training", "row": "r", "cell": "lstm", "impl": "dropin", "status": "ok",
         "warmup_only": False, "times_ms": [1.0, 4.0, 3.0, 4.0]},
    ]}
    lines = bench_report._round_ratio_lines(report, ["torch", "dropin"])
    assert "## Per-round ratios" in lines
    assert lines[-1] == "| training | r | lstm | 2.000x | 1.000x | 2.000x |"


def test_flop_count_matches_design() -> None:
    # forward 2*T*B*(I+H)*G*H, training 3x
    assert bench.flop_count("lstm", "inference", 100, 64, 512, 512) == 2 * 100 * 64 * 1024 * 4 * 512
    assert bench.flop_count("gru", "training", 3, 2, 5, 7) == 3 * 2 * 3 * 2 * 12 * 3 * 7
    assert bench.flop_count("rnn", "inference", 1, 1, 1, 1) == 4


def test_onnx_gate_order() -> None:
    np = pytest.importorskip("numpy")
    H = 2
    a = np.arange(4 * H, dtype=np.float32)  # torch LSTM blocks i, f, g, o
    i, f, g, o = np.split(a, 4)
    assert np.array_equal(bench.to_onnx_gates("lstm", a), np.concatenate([i, o, f, g]))
    r, z, n = np.split(np.arange(3 * H, dtype=np.float32), 3)  # torch GRU r, z, n
    assert np.array_equal(bench.to_onnx_gates("gru", np.concatenate([r, z, n])),
                          np.concatenate([z, r, n]))


def test_measure_respects_budget() -> None:
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.3)
        return [0.0]

    times, number, warm_only, out = bench.measure(slow, repeats=5, budget_s=0.4)
    assert warm_only and len(times) == 1 and number == 1 and len(calls) == 1
    assert times[0] >= 0.3
    times, number, warm_only, _ = bench.measure(lambda: [1.0], repeats=3, budget_s=None)
    assert not warm_only and len(times) == 3 and number > 1
    calls.clear()
    tm = bench.Timer(slow, repeats=5, budget_s=0.4, min_samples=1)  # anchors: one timed call
    assert tm.n == 1 and len(calls) == 1
    tm.sample()
    times, number, warm_only = tm.result()
    assert not warm_only and len(times) == 1 and len(calls) == 2


def test_a_sample_of_short_calls_times_warm_calls_only() -> None:
    """The grid pauses before every sample; a call shorter than WARM_CALL_MAX_S gets one untimed
    call first (the first call after a pause pays the wake-up, for every library alike), so
    that a sample times warm calls only; a long call does not (its wake-up is a small part)."""
    from fastrnn.bench.timing import EST_CALLS, WARM_CALL_MAX_S

    calls: list[float] = []
    slow_at = 2 + EST_CALLS  # the first call after the warm-up, as after a pause: slow

    def fast():
        calls.append(time.perf_counter())
        if len(calls) == slow_at:
            time.sleep(0.2)
        return [0.0]

    tm = bench.Timer(fast, repeats=1, budget_s=None)
    assert len(calls) == 1 + EST_CALLS and tm.number > 1
    tm.sample()
    assert len(calls) == slow_at + tm.number
    assert tm.result()[0][0] < 0.2 / tm.number  # the slow call was not timed

    calls.clear()

    def slow():
        calls.append(1)
        time.sleep(WARM_CALL_MAX_S * 1.5)
        return [0.0]

    tm = bench.Timer(slow, repeats=1, budget_s=None)
    n0 = len(calls)
    tm.sample()
    assert len(calls) == n0 + tm.number


def test_the_loop_count_comes_from_the_least_early_call() -> None:
    """One slow early call (a thread pool's start) does not set the loop count: the least of
    the warm-up calls after the first does."""
    from fastrnn.bench.timing import EST_CALLS, MIN_SAMPLE_S

    calls: list[int] = []

    def pool_start_on_second_call():
        calls.append(1)
        time.sleep(0.01 if len(calls) == 2 else 0.0005)
        return [0.0]

    tm = bench.Timer(pool_start_on_second_call, repeats=1, budget_s=None)
    assert len(calls) == 1 + EST_CALLS
    assert tm.est < 0.005
    assert tm.number > MIN_SAMPLE_S / 0.01  # not the count a 10 ms call would get


def test_plot_without_matplotlib_names_the_extra(tmp_path) -> None:
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(stub), PKG_PARENT])
    proc = subprocess.run([sys.executable, "-m", "fastrnn", "bench", "--rows", "stream",
                           "--cells", "rnn", "--plot", str(tmp_path / "p.png")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "pip install 'fastrnn[plot]'" in proc.stderr
    assert not (tmp_path / "p.png").exists()


def test_interleaved_script_prints_per_round_ratios() -> None:
    """bench/interleaved.py: one line per case, each implementation's median time and its
    median per-round ratio to fastrnn's; bad settings exit with status 2."""
    import re

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, *filter(None, [env.get("PYTHONPATH")])])
    script = os.path.join(ROOT, "bench", "interleaved.py")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    proc = run("--cases", "lstm:inference:3,2,4,5;gru:training:3,2,4,5", "--impls",
               "fastrnn,reference", "--threads", "1", "--rounds", "2", "--block-s", "0.001")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["lstm", "gru"]
    for ln in lines:
        m = re.search(r"reference ([\d.]+) ms, x ([\d.]+) \(lowest round ([\d.]+)\)", ln)
        assert m and float(m[1]) > 0 and float(m[2]) >= float(m[3]) > 0, ln
    assert run("--rounds", "0").returncode == 2
    assert run("--impls", "reference,fastrnn").returncode == 2
