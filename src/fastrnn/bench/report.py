"""The benchmark's report: the JSON-ready dict, the text tables, the Markdown file and the
per-round ratios."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import statistics
from collections.abc import Sequence
from typing import Any

from fastrnn.bench.cases import (
    CHECK_ATOL,
    DEFAULT_MODES,
    FASTRNN_OF,
    IMPLS,
    LABELS,
    MODES,
    PRECISION_OF,
    REDUCED_ATOL,
    Options,
    Result,
    base_of,
    check_atol,
)
from fastrnn.bench.machine import cpu_flags, cpu_model, fastrnn_info, versions
from fastrnn.bench.timing import MIN_SAMPLE_S

NOISE_SPREAD = 0.20  # (max - min) / median above this gets a noise note
SCHEMA = "fastrnn-bench/1"


def build_report(opts: Options, argv: Sequence[str], peak: dict[str, float] | None,
                 results: list[Result], memory: list[dict[str, Any]] | None,
                 warnings: list[str], blas: str, elapsed_s: float,
                 bf16_peak: dict[str, float] | None = None) -> dict[str, Any]:
    """Everything measured, as a JSON-ready dict (the ``--json`` file).

    Parameters
    ----------
    opts : Options
        What was run and how.
    argv : sequence of str
        The command line's words after ``bench``.
    peak : dict or None
        The GEMM peak (:func:`fastrnn.bench.timing.gemm_peak`), None when not measured.
    results : list of Result
        The grid's measurements.
    memory : list of dict or None
        The peak-memory study's results.
    warnings : list of str
        What went wrong or looks wrong.
    blas : str
        numpy's BLAS and its threads (:func:`fastrnn.bench.machine.pin_blas_threads`).
    elapsed_s : float
        The run's duration.
    bf16_peak : dict, optional
        The bfloat16 GEMM peak (:func:`fastrnn.bench.timing.bf16_gemm_peak`) when the run
        covers bfloat16: the % of peak of the bfloat16 rows.

    Returns
    -------
    dict
        Schema :data:`SCHEMA`: the command, date, machine, versions, settings, one row per
        result (precision, times, GFLOP/s, % of its precision's peak, speed-up over fastrnn
        in the same precision, output check against fastrnn's float32 output), memory and
        warnings.
    """
    info = fastrnn_info()
    rows = []
    ok = {(r.case, r.impl): r for r in results if r.status == "ok"}
    stat = opts.stat
    peaks = {"float32": peak, "bfloat16": bf16_peak}
    for r in results:
        med = r.median_s
        t = r.time_s(stat)
        base = ok.get((r.case, base_of(r.impl))) if r.impl != "fastrnn" else None
        t_fast = base.time_s(stat) if base is not None else None
        gflops = r.gflops(stat)
        pk = peaks.get(PRECISION_OF[r.impl])
        d: dict[str, Any] = {
            "row": r.case.row, "T": r.case.T, "B": r.case.B, "I": r.case.I, "H": r.case.H,
            "cell": r.case.cell, "mode": r.case.mode, "impl": r.impl, "label": LABELS[r.impl],
            "precision": PRECISION_OF[r.impl],
            "status": r.status, "reason": r.reason or None,
            "gflop": r.case.flops / 1e9,
            "times_ms": [t * 1e3 for t in r.times_s],
            "calls_per_sample": r.number,
            "warmup_only": r.warmup_only,
            "time_ms": t * 1e3 if t else None,
            "median_ms": med * 1e3 if med else None,
            "min_ms": min(r.times_s) * 1e3 if r.times_s else None,
            "max_ms": max(r.times_s) * 1e3 if r.times_s else None,
            "spread": r.spread,
            "noisy": bool(r.spread is not None and r.spread > NOISE_SPREAD),
            "gflops": gflops,
            "pct_peak": (100.0 * gflops / pk["gflops"]) if (gflops and pk) else None,
            "fastrnn_speedup": (t / t_fast) if (t and t_fast) else None,
            "max_abs_diff_vs_fastrnn": r.max_abs_diff,
        }
        rows.append(d)
    return {
        "schema": SCHEMA,
        "command": "python -m fastrnn bench" + ("" if not argv else " " + shlex.join(argv)),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": cpu_model(),
            "cpu_flags": cpu_flags(),
            "logical_cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "fastrnn": info,
        "versions": versions(),
        "blas": blas,
        "threads": opts.threads,
        "repeats": opts.repeats,
        "stat": stat,
        "budget_s": opts.budget_s,
        "gemm_peak": peak,
        "bf16_gemm_peak": bf16_peak,
        "precisions": list(getattr(opts, "precisions", ["float32"])),
        "results": rows,
        "memory": memory,
        "warnings": list(warnings),
        "elapsed_s": elapsed_s,
    }


#: The heading of a row-name column: each name is followed by its shape.
ROW_HEAD = "row (T,B,I,H)"


def row_label(d: dict[str, Any]) -> str:
    """A result row's grid name with its shape, ``"small (100,32,128,128)"`` (T, B, I, H).

    Parameters
    ----------
    d : dict
        A result row of a report (:func:`build_report`); one without the sizes (a hand-made
        row) gives the name alone.

    Returns
    -------
    str
    """
    if all(k in d for k in ("T", "B", "I", "H")):
        return f"{d['row']} ({d['T']},{d['B']},{d['I']},{d['H']})"
    return str(d["row"])


def _fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _fmt_num(v: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{suffix}"


def _precision(d: dict[str, Any]) -> str:
    """A result row's precision (a report from before precisions: float32)."""
    return d.get("precision") or PRECISION_OF.get(d["impl"], "float32")


def _status_text(d: dict[str, Any]) -> str:
    if d["status"] == "ok":
        notes = []
        if d["warmup_only"]:
            notes.append("1 run (time budget)")
        if d["noisy"]:
            notes.append(f"noisy: spread {100 * d['spread']:.0f}%")
        diff = d["max_abs_diff_vs_fastrnn"]
        if diff is not None and not diff <= check_atol(d["impl"]):
            notes.append(f"OUTPUT MISMATCH {diff:.2g}")
        elif diff is not None and _precision(d) != "float32":
            notes.append(f"error vs float32 {diff:.2g}")
        return "; ".join(notes)
    if d["status"] == "unavailable":
        return "unavailable: " + (d["reason"] or "")
    return d["reason"] or d["status"]


#: How the tables compare the precisions (printed when a run has reduced-precision rows).
PRECISION_NOTE = (
    "Precisions: an anchor's speed-up is over fastrnn in the same precision (torch bf16 "
    "autocast over fastrnn bf16; torch int8 dynamic and ORT int8 DynamicQuantizeLSTM over "
    "fastrnn int8); fastrnn bf16's and int8's own over fastrnn float32 (< 1: the reduced "
    "precision is faster). Every output is compared with fastrnn's float32 output on the same "
    "weights and inputs: for a reduced precision that max abs difference is its error against "
    f"float32 (a mismatch above {REDUCED_ATOL:g}). The % peak of the bfloat16 rows is of the "
    "bf16 GEMM peak; the int8 rows have none.")

#: The issue's targets: (precision, mode or None for both, what, comparison, needed).
#: Kinds: "speed" (best anchor's time / fastrnn's time, >= needed; 1.3 where that anchor runs
#: below 60% of the bf16 peak), "peak" (% of the bf16 peak, >= needed; large and xlarge LSTM
#: and GRU), "speed-x2" (fastrnn float32's time / fastrnn int8's, >= needed; GRU and RNN,
#: medium to xlarge), "error" (fastrnn's error / the anchor's, <= needed).
BF16_PEAK_TARGET = {"inference": 85.0, "training": 75.0}
BIG_ROWS = ("large", "xlarge")


def precision_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The reduced-precision targets of issue 20, computed from one run's results.

    - bfloat16, every case: fastrnn bf16 at least as fast as the best anchor (torch bf16
      autocast, fastrnn float32), 1.3x where that anchor runs below 60% of the bf16 peak;
      large and xlarge LSTM and GRU at least 85% (inference) / 75% (training) of the bf16
      peak; error against float32 at most 1.5x torch bf16 autocast's.
    - int8, inference: LSTM at least as fast as ONNX Runtime's DynamicQuantizeLSTM with at
      most 1.5x its error; GRU and RNN at least 2x fastrnn float32 on medium, large, xlarge.

    Parameters
    ----------
    report : dict
        A report (:func:`build_report`).

    Returns
    -------
    list of dict
        One per target that the run measured: ``mode``, ``row`` (with its shape), ``cell``,
        ``target`` (what is compared), ``need`` (e.g. ``">= 1.30x"``), ``value`` (the
        measured ratio or %), ``met`` (bool).
    """
    bf_peak = (report.get("bf16_gemm_peak") or {}).get("gflops")
    out: list[dict[str, Any]] = []

    def add(ds: list[dict[str, Any]], target: str, value: float, need: float,
            at_most: bool = False, unit: str = "x") -> None:
        d = ds[0]
        fmt = ".0f" if unit == "%" else ".2f"
        out.append({"mode": d["mode"], "row": row_label(d), "cell": d["cell"], "target": target,
                    "need": f"{'<=' if at_most else '>='} {need:{fmt}}{unit}",
                    "value": value, "unit": unit,
                    "met": value <= need if at_most else value >= need})

    for mode, row, cell, ds in group_by_case(report):
        by = {d["impl"]: d for d in ds if d["status"] == "ok" and d["time_ms"]}
        bf, i8 = by.get("fastrnn-bf16"), by.get("fastrnn-int8")
        if bf:
            anchors = [by[a] for a in ("torch-bf16", "fastrnn") if a in by]
            if anchors:
                best = min(anchors, key=lambda d: d["time_ms"])
                need = 1.3 if (bf_peak and best["gflops"] < 0.6 * bf_peak) else 1.0
                add(ds, f"bf16 speed over the best anchor ({best['label']})",
                    best["time_ms"] / bf["time_ms"], need)
            if (bf["pct_peak"] is not None and row in BIG_ROWS and cell in ("lstm", "gru")
                    and mode in BF16_PEAK_TARGET):
                add(ds, "bf16 % of the bf16 peak", bf["pct_peak"], BF16_PEAK_TARGET[mode],
                    unit="%")
            tb = by.get("torch-bf16")
            if tb and tb["max_abs_diff_vs_fastrnn"] and bf["max_abs_diff_vs_fastrnn"] is not None:
                add(ds, "bf16 error / torch bf16 autocast's error",
                    bf["max_abs_diff_vs_fastrnn"] / tb["max_abs_diff_vs_fastrnn"], 1.5,
                    at_most=True)
        if i8 and mode == "inference":
            ort = by.get("ort-int8")
            if ort:
                add(ds, "int8 speed over ORT int8 DynamicQuantizeLSTM",
                    ort["time_ms"] / i8["time_ms"], 1.0)
                if ort["max_abs_diff_vs_fastrnn"] and i8["max_abs_diff_vs_fastrnn"] is not None:
                    add(ds, "int8 error / ORT DynamicQuantizeLSTM's error",
                        i8["max_abs_diff_vs_fastrnn"] / ort["max_abs_diff_vs_fastrnn"], 1.5,
                        at_most=True)
            f32 = by.get("fastrnn")
            if f32 and cell in ("gru", "rnn") and row in ("medium", *BIG_ROWS):
                add(ds, "int8 speed over fastrnn float32", f32["time_ms"] / i8["time_ms"], 2.0)
    return out


def format_targets(targets: list[dict[str, Any]], markdown: bool) -> list[str]:
    """The targets (:func:`precision_targets`) as table lines.

    Parameters
    ----------
    targets : list of dict
        The targets.
    markdown : bool
        A Markdown table instead of aligned text.

    Returns
    -------
    list of str
    """
    cols = ["mode", ROW_HEAD, "cell", "target", "needed", "measured", "met"]
    rows = [[t["mode"], t["row"], t["cell"], t["target"], t["need"],
             f"{t['value']:.0f}%" if t["unit"] == "%" else f"{t['value']:.2f}x",
             "yes" if t["met"] else "NO"] for t in targets]
    if markdown:
        return ["| " + " | ".join(cols) + " |", "|---|---|---|---|---:|---:|---|",
                *("| " + " | ".join(r) + " |" for r in rows)]
    w = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    return ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols)),
            *("  ".join(r[i].ljust(w[i]) for i in range(len(cols))) for r in rows)]


#: Rounds two implementations must share for a per-round ratio.
ROUND_MIN = 3


def round_ratio(other: dict[str, Any], base: dict[str, Any]) -> float | None:
    """Median over the rounds both were timed in of other's time / base's time.

    The samples of one round run back to back, so a phase of load from other processes slows
    both sides of a round's ratio alike, where a min or median per implementation compares
    samples taken minutes apart. Sample k of every implementation is from round k.

    Parameters
    ----------
    other, base : dict
        Two result rows of a report (same case).

    Returns
    -------
    float or None
        > 1: base is faster; None with fewer than ``ROUND_MIN`` shared rounds or a row that
        is not a full measurement.
    """
    if other.get("status") != "ok" or base.get("status") != "ok":
        return None
    if other.get("warmup_only") or base.get("warmup_only"):
        return None
    a, b = other.get("times_ms") or [], base.get("times_ms") or []
    n = min(len(a), len(b))
    if n < ROUND_MIN:
        return None
    return float(statistics.median(x / y for x, y in zip(a[:n], b[:n], strict=True)))


def _round_ratio_lines(report: dict[str, Any], anchors: list[str]) -> list[str]:
    """The markdown section of per-round ratios (empty when no case has enough rounds)."""
    present = {"fastrnn", *anchors}
    # (first-named, other): each anchor against fastrnn in its precision; fastrnn's reduced
    # precisions against its float32
    cols = [(a, base_of(a)) if a in FASTRNN_OF.values() else (base_of(a), a)
            for a in anchors if base_of(a) in present]
    if "dropin" in anchors and "torch" in anchors:
        cols.append(("dropin", "torch"))
    rows = []
    for mode, _row, cell, ds in group_by_case(report):
        by = {d["impl"]: d for d in ds}
        vals = [round_ratio(by[a], by[b]) if a in by and b in by else None for b, a in cols]
        if any(v is not None for v in vals):
            rows.append(f"| {mode} | {row_label(ds[0])} | {cell} | "
                        + " | ".join("" if v is None else f"{v:.3f}x" for v in vals) + " |")
    if not rows:
        return []
    head = [f"{LABELS[b]} over {LABELS[a]}" for b, a in cols]
    return ["", "## Per-round ratios", "",
            "The median over the rounds of (the other implementation's time / this one's): "
            "within a round the implementations run back to back, so this comparison holds "
            "through load that moves the per-implementation statistics above (> 1: the "
            "first-named is faster).", "",
            f"| mode | {ROW_HEAD} | cell | " + " | ".join(head) + " |",
            "|---|---|---|" + "---:|" * len(head), *rows]


def worst_ratio(report: dict[str, Any]) -> tuple[float, str] | None:
    """fastrnn's worst per-round ratio against the faster of torch.nn and ONNX Runtime.

    Per case: :func:`round_ratio` of each of ``torch`` and ``onnxruntime`` (inference only)
    over ``fastrnn``, the smaller of the two (the faster anchor); then the smallest over the
    cases (< 1: fastrnn is slower there).

    Parameters
    ----------
    report : dict
        A report (:func:`build_report`).

    Returns
    -------
    tuple or None
        ``(ratio, "mode cell row")`` of the worst case; None when no case has a ratio.
    """
    worst: tuple[float, str] | None = None
    for mode, row, cell, ds in group_by_case(report):
        by = {d["impl"]: d for d in ds}
        if "fastrnn" not in by:
            continue
        vals = [round_ratio(by[a], by["fastrnn"]) for a in ("torch", "onnxruntime") if a in by]
        vals = [v for v in vals if v is not None]
        if vals and (worst is None or min(vals) < worst[0]):
            worst = (min(vals), f"{mode} {cell} {row}")
    return worst


def _dropin_over_torch(by_impl: dict[str, dict[str, Any]]) -> float | None:
    """torch.nn's time / fastrnn.torch's time on one case (> 1: the drop-in is faster)."""
    t, d = by_impl.get("torch"), by_impl.get("dropin")
    if t and d and t["time_ms"] and d["time_ms"]:
        return t["time_ms"] / d["time_ms"]
    return None


def group_by_case(report: dict[str, Any]) -> list[tuple[str, str, str, list[dict[str, Any]]]]:
    """Results grouped by (mode, row, cell), in run order.

    Parameters
    ----------
    report : dict
        A report (:func:`build_report`).

    Returns
    -------
    list of tuple
        ``(mode, row, cell, rows)`` with that case's result rows.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for mode in MODES:
        for d in report["results"]:
            if d["mode"] == mode:
                groups.setdefault((mode, d["row"], d["cell"]), []).append(d)
    return [(m, r, c, v) for (m, r, c), v in groups.items()]


def format_text(report: dict[str, Any]) -> str:
    """The plain-text tables printed at the end of a run.

    Parameters
    ----------
    report : dict
        A report (:func:`build_report`).

    Returns
    -------
    str
    """
    peak = report.get("gemm_peak")
    info = report["fastrnn"]
    lines = [
        f"fastrnn {info.get('version')} bench: {report['machine']['cpu']}, "
        f"{report['threads']} thread(s), SIMD path {info.get('simd', '?')}, {report['blas']}",
    ]
    if peak:
        lines.append(f"GEMM peak: {peak['gflops']:.1f} GFLOP/s (numpy float32 "
                     f"{peak['n']}x{peak['n']} matmul, best of 10{_peak_when(peak)})")
    bf = report.get("bf16_gemm_peak")
    if bf:
        lines.append(f"bf16 GEMM peak: {bf['gflops']:.1f} GFLOP/s (torch bfloat16 "
                     f"{bf['n']}x{bf['n']} matmul, best of 10{_peak_when(bf)}): the % peak of "
                     "the bfloat16 rows")
    groups = group_by_case(report)
    w = max([len(ROW_HEAD), *(len(row_label(ds[0])) for _, _, _, ds in groups)])
    wl = max([16, *(len(d["label"]) for d in report["results"])])
    head = (f"{ROW_HEAD:<{w}} {'cell':<5} {'impl':<{wl}} {report['stat'] + ' ms':>10} "
            f"{'GFLOP/s':>8} {'% peak':>7} {'fastrnn x':>9}  notes")
    mode_now = None
    for mode, _row, cell, ds in groups:
        if mode != mode_now:
            lines += ["", f"== {mode} ==", head]
            mode_now = mode
        by = {d["impl"]: d for d in ds}
        for j, d in enumerate(ds):
            speed = "" if d["impl"] == "fastrnn" else _fmt_num(d["fastrnn_speedup"], ".2f", "x")
            note = _status_text(d)
            if d["impl"] == "dropin" and _dropin_over_torch(by) is not None:
                note = f"torch.nn time / this: {_dropin_over_torch(by):.2f}x" + (
                    f"; {note}" if note else "")
            lines.append(
                f"{row_label(d) if j == 0 else '':<{w}} {cell if j == 0 else '':<5} "
                f"{d['label']:<{wl}} "
                f"{_fmt_ms(d['time_ms']):>10} {_fmt_num(d['gflops']):>8} "
                f"{_fmt_num(d['pct_peak'], '.0f', '%'):>7} {speed:>9}  {note}")
    if report["results"]:
        lines.append("")
        lines.append("fastrnn x = the other implementation's time / fastrnn's time "
                     "(> 1: fastrnn is faster).")
        if any(_precision(d) != "float32" for d in report["results"]):
            lines.append(PRECISION_NOTE)
        targets = precision_targets(report)
        if targets:
            lines += ["", "Targets of the reduced precisions (issue 20):",
                      *format_targets(targets, markdown=False)]
    lines += _notes(report)
    if report.get("memory"):
        lines += ["", *format_memory(report["memory"], report["threads"], markdown=False)]
    lines.append(f"Run time: {_fmt_elapsed(report.get('elapsed_s'))}.")
    return "\n".join(lines) + "\n"


def _peak_when(peak: dict[str, Any]) -> str:
    if "start_gflops" in peak:
        return (f", the better of the start ({peak['start_gflops']:.1f}) and the end "
                f"({peak['end_gflops']:.1f}) of the run")
    return ""


def _fmt_elapsed(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def _notes(report: dict[str, Any]) -> list[str]:
    out = []
    noisy = [d for d in report["results"] if d["noisy"]]
    if noisy:
        out.append(f"Noise: {len(noisy)} measurement(s) spread more than "
                   f"{100 * NOISE_SPREAD:.0f}% between repeats ((max-min)/median), e.g. "
                   + ", ".join(f"{d['row']} {d['cell']} {d['mode']} {d['label']} "
                               f"{100 * d['spread']:.0f}%" for d in noisy[:4])
                   + ". Other load on the machine? Rerun with more --repeats.")
    over = [d for d in report["results"] if d["pct_peak"] and d["pct_peak"] > 100]
    if over:
        out.append(f"{len(over)} measurement(s) above 100% of the GEMM peak: the peak "
                   "measurement was probably slowed by other load on the machine.")
    skipped = [d for d in report["results"] if d["status"] == "skipped"]
    if skipped:
        out.append("Skipped (time budget, no number estimated): "
                   + ", ".join(f"{d['row']} {d['cell']} {d['mode']} {d['label']}"
                               for d in skipped) + ".")
    for w in report.get("warnings", []):
        out.append("WARNING: " + w)
    return out


def format_memory(mem: list[dict[str, Any]], threads: int, markdown: bool) -> list[str]:
    """The peak-memory table and its conclusion lines.

    Parameters
    ----------
    mem : list of dict
        The study's results (:func:`fastrnn.bench.memory.memory_study`).
    threads : int
        The threads they ran with.
    markdown : bool
        A Markdown table instead of aligned text.

    Returns
    -------
    list of str
        The lines (empty without results).
    """
    if not mem:
        return []
    m0 = mem[0]
    mib = 1024.0 * 1024.0
    title = (f"Peak memory of fastrnn (B={m0['B']}, I={m0['I']}, H={m0['H']}, float32, "
             f"{threads} thread(s), one fresh process per case, peak RSS from "
             f"{m0.get('method', 'ru_maxrss')}). working = peak RSS - RSS before the call "
             f"(inputs and weights allocated) - the arrays returned (y, h_n, c_n; in training "
             f"also the gradients).")
    cols = ["cell", "mode", "T", "peak RSS MiB", "returned MiB", "working MiB"]
    rows = [[m["cell"], m["mode"], str(m["T"]), f"{m['peak_bytes'] / mib:.1f}",
             f"{m['returned_bytes'] / mib:.1f}", f"{m['working_bytes'] / mib:.1f}"] for m in mem]
    out = [title, ""] if markdown else [title]
    if markdown:
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        out += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        w = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        out.append("  ".join(c.ljust(w[i]) for i, c in enumerate(cols)))
        out += ["  ".join(r[i].ljust(w[i]) for i in range(len(cols))) for r in rows]
    out.append("")
    by = {(m["cell"], m["mode"], m["T"]): m for m in mem}
    Ts = sorted({m["T"] for m in mem})
    if len(Ts) >= 2:
        lo, hi = Ts[0], Ts[-1]
        for cell in dict.fromkeys(m["cell"] for m in mem):
            parts = []
            for mode in DEFAULT_MODES:
                a, b = by.get((cell, mode, lo)), by.get((cell, mode, hi))
                if a and b:
                    parts.append(f"{mode} working memory {a['working_bytes'] / mib:.1f} MiB at "
                                 f"T={lo} vs {b['working_bytes'] / mib:.1f} MiB at T={hi}")
            bgh = by.get((cell, "inference", lo))
            tail = (f" (B*G*H*4 bytes = {bgh['bgh_bytes'] / mib:.2f} MiB)" if bgh else "")
            out.append(("- " if markdown else "") + f"{cell}: " + "; ".join(parts) + tail)
    return out


def format_markdown(report: dict[str, Any], plot_path: str | None = None,
                    md_path: str | None = None) -> str:
    """The ``--markdown`` file: command, machine, GEMM peak, summary and detail tables.

    Parameters
    ----------
    report : dict
        A report (:func:`build_report`).
    plot_path : str, optional
        A chart to show (linked relative to ``md_path``).
    md_path : str, optional
        Where the Markdown will be written.

    Returns
    -------
    str
    """
    info = report["fastrnn"]
    v = report["versions"]
    peak = report.get("gemm_peak")
    mach = report["machine"]
    anchors = [i for i in IMPLS[1:]
               if any(d["impl"] == i for d in report["results"])]
    out = [
        "# fastrnn benchmark results",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {report['date']}",
        f"- CPU: {mach['cpu']}; {mach['logical_cpus']} logical CPUs; "
        f"{', '.join(mach['cpu_flags']) or 'no AVX2'}; {mach['platform']}",
        f"- fastrnn {info.get('version')}: SIMD path **{info.get('simd', '?')}** (available: "
        f"{', '.join(info.get('simd_available', [])) or '?'}), OpenMP "
        f"{'yes' if info.get('openmp') else 'no'}, compiler {info.get('compiler', '?')}",
        f"- Threads: **{report['threads']}** for every implementation "
        f"(numpy: {report['blas']})",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
    ]
    if peak:
        out.append(f"- GEMM peak: **{peak['gflops']:.1f} GFLOP/s** (numpy float32 "
                   f"{peak['n']}x{peak['n']} `a @ b`, best of 10{_peak_when(peak)}; median "
                   f"{peak['median_gflops']:.1f})")
    bf = report.get("bf16_gemm_peak")
    if bf:
        out.append(f"- bf16 GEMM peak: **{bf['gflops']:.1f} GFLOP/s** (torch bfloat16 "
                   f"{bf['n']}x{bf['n']} `a @ b`, best of 10{_peak_when(bf)}; median "
                   f"{bf['median_gflops']:.1f})")
    out += [
        "",
        f"Times are the {report['stat']} of {report['repeats']} samples after a warm-up (calls "
        "shorter "
        f"than {MIN_SAMPLE_S * 1e3:.0f} ms are looped inside a sample), float32, zero initial "
        "states. GFLOP/s count one layer-direction: forward 2·T·B·(I+H)·G·H, training 3x "
        "that. Inference: forward without a training cache (`training=False`, "
        "`torch.inference_mode()`, ONNX Runtime session). Training: forward + backward with "
        "a random dy (all gradients incl. dx) + an SGD step on the weights (torch: "
        "`y.backward(dy)` + `torch.optim.SGD`). Training-data (when run): the same with an "
        "input that needs no gradient, as data into a first layer (torch: `x.requires_grad` "
        "False; fastrnn: `need_dx=False`), counted as 3x the forward less the dx GEMM "
        "2·T·B·I·G·H. A speed-up is the other implementation's "
        "time / fastrnn's time (> 1: fastrnn is faster). Every output is checked against "
        f"fastrnn's (max |diff| <= {CHECK_ATOL:g}).",
    ]
    reduced = any(_precision(d) != "float32" for d in report["results"])
    if reduced:
        out += ["", PRECISION_NOTE]
    if report.get("budget_s") is not None:
        out.append(f"Each measurement has a {report['budget_s']:g} s budget: fewer samples "
                   "(at least one timed call after the warm-up; the numpy reference may be "
                   "timed on its warm-up call alone, marked †, or skipped when one call cannot "
                   "fit); nothing is extrapolated.")
    out.append(f"The whole run took {_fmt_elapsed(report.get('elapsed_s'))}.")
    if plot_path:
        rel = plot_path
        if md_path:
            rel = os.path.relpath(os.path.abspath(plot_path),
                                  os.path.dirname(os.path.abspath(md_path)))
        out += ["", f"![fastrnn speed-up over each anchor]({rel})"]
    for mode in MODES:
        groups = [(r, c, ds) for m, r, c, ds in group_by_case(report) if m == mode]
        if not groups:
            continue
        mode_anchors = [a for a in anchors
                        if any(d["impl"] == a for _, _, ds in groups for d in ds)]
        out += ["", f"## {mode.capitalize()}", ""]
        head = [ROW_HEAD, "cell", "fastrnn ms", "GFLOP/s", "% peak"]
        head += [f"{LABELS[a]} ms (speed-up)" for a in mode_anchors]
        dropin_col = "dropin" in mode_anchors and "torch" in mode_anchors
        if dropin_col:
            head.append("fastrnn.torch over torch.nn")
        out.append("| " + " | ".join(head) + " |")
        out.append("|---|---|" + "---:|" * (len(head) - 2))
        for _row, cell, ds in groups:
            by = {d["impl"]: d for d in ds}
            f = by.get("fastrnn")
            cells = [row_label(ds[0]), cell]
            if f and f["status"] == "ok":
                cells += [_fmt_ms(f["time_ms"]), _fmt_num(f["gflops"]),
                          _fmt_num(f["pct_peak"], ".0f", "%")]
            else:
                cells += ["-", "-", "-"]
            for a in mode_anchors:
                d = by.get(a)
                if d is None:
                    cells.append("")
                elif d["status"] != "ok":
                    cells.append({"skipped": "skipped (time budget)",
                                  "unavailable": "n/a"}.get(d["status"], "error"))
                else:
                    s = _fmt_ms(d["time_ms"])
                    if d["fastrnn_speedup"] is not None:
                        s += f" ({d['fastrnn_speedup']:.2f}x)"
                    if d["warmup_only"]:
                        s += " †"
                    diff = d["max_abs_diff_vs_fastrnn"]
                    if diff is not None and not diff <= check_atol(d["impl"]):
                        s += " ⚠ mismatch"
                    cells.append(s)
            if dropin_col:
                r = _dropin_over_torch(by)
                cells.append("" if r is None else f"{r:.2f}x")
            out.append("| " + " | ".join(cells) + " |")
        if any(d["warmup_only"] for _, _, ds in groups for d in ds):
            out += ["", "† one timed call only (time budget)."]
    targets = precision_targets(report)
    if targets:
        out += ["", "## Reduced-precision targets", "",
                "The targets of issue 20, from this run's times (ratios of one run; a noisy "
                "machine moves them).", "", *format_targets(targets, markdown=True)]
    out += _round_ratio_lines(report, anchors)
    out += ["", "## Detail", "",
            f"| mode | {ROW_HEAD} | cell | implementation | {report['stat']} ms | min–max ms | "
            "GFLOP/s | "
            "% peak | fastrnn speed-up | max abs diff vs fastrnn float32 | notes |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for mode, _row, cell, ds in group_by_case(report):
        for d in ds:
            rng = (f"{_fmt_ms(d['min_ms'])}–{_fmt_ms(d['max_ms'])}"
                   if d["min_ms"] is not None else "-")
            diff = d["max_abs_diff_vs_fastrnn"]
            out.append(
                f"| {mode} | {row_label(d)} | {cell} | {d['label']} | {_fmt_ms(d['time_ms'])} | "
                f"{rng} | "
                f"{_fmt_num(d['gflops'])} | {_fmt_num(d['pct_peak'], '.0f', '%')} | "
                f"{'' if d['impl'] == 'fastrnn' else _fmt_num(d['fastrnn_speedup'], '.2f', 'x')}"
                f" | {'' if diff is None else f'{diff:.1e}'} | "
                f"{_status_text(d).replace('|', '/')} |")
    if report.get("memory"):
        out += ["", "## Peak memory", "",
                *format_memory(report["memory"], report["threads"], markdown=True)]
    notes = _notes(report)
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"

