"""The benchmark's options and its run, behind ``python -m fastrnn bench``.

The parser and the dispatch of the command line are :mod:`fastrnn.cli.main`; this module adds
the ``bench`` options (:func:`add_arguments`) and runs them (:func:`run`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastrnn.bench.cases import (
    CELLS,
    DEFAULT_MODES,
    FASTRNN_OF,
    IMPL_ALIASES,
    IMPLS,
    MODES,
    OFF_GRID,
    PRECISION_ALIASES,
    PRECISION_OF,
    PRECISIONS,
    ROWS,
    Options,
    Result,
)
from fastrnn.bench.grid import run_grid
from fastrnn.bench.machine import pin_blas_threads, prepare_threads
from fastrnn.bench.memory import MEMORY_BIH, MemoryStudyError, memory_child, memory_study
from fastrnn.bench.plot import write_plot
from fastrnn.bench.report import (
    SCHEMA,
    build_report,
    format_markdown,
    format_text,
    worst_ratio,
)
from fastrnn.bench.runners import probe_impls
from fastrnn.bench.timing import GEMM_N, bf16_gemm_peak, gemm_peak


class BenchError(Exception):
    """A problem with the arguments or the environment, reported to the user as one line."""


def _csv(choices: Iterable[str], aliases: dict[str, str] | None = None,
         allow_none: bool = False) -> Callable[[str], list[str]]:
    choices = list(choices)
    aliases = aliases or {}

    def parse(text: str) -> list[str]:
        if text.strip() == "all":
            return list(choices)
        if allow_none and text.strip() == "none":
            return []
        out: list[str] = []
        for item in (t.strip() for t in text.split(",")):
            item = aliases.get(item, item)
            if item not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown value {item!r} (choose from {', '.join(choices)} or all)")
            if item not in out:
                out.append(item)
        if not out:
            raise argparse.ArgumentTypeError("empty list")
        return out

    return parse


def _shape(text: str) -> tuple[str, tuple[int, int, int, int]]:
    name, _, dims = text.rpartition("=")
    try:
        vals = tuple(int(v) for v in dims.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or min(vals) < 1:
        raise argparse.ArgumentTypeError(
            f"expected T,B,I,H (four positive ints, optionally NAME=T,B,I,H), got {text!r}")
    return (name or "custom"), vals  # type: ignore[return-value]


def _bih(text: str) -> tuple[int, int, int]:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected B,I,H (three positive ints), got {text!r}")
    return vals  # type: ignore[return-value]


def positive_int(text: str) -> int:
    """An argparse type: a positive integer.

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    int

    Raises
    ------
    argparse.ArgumentTypeError
        For anything else.
    """
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _budget(text: str) -> float | None:
    if text.strip().lower() in ("none", "inf", "0"):
        return None
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0 or 'none', got {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``p`` (used by ``python -m fastrnn bench``).

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser.
    """
    p.add_argument("--rows", type=_csv(ROWS), default=None,
                   help=f"comma-separated rows of the grid ({', '.join(ROWS)}; default all, "
                        "or none when --shape is given)")
    p.add_argument("--shape", type=_shape, action="append", default=[], metavar="T,B,I,H",
                   help="add a custom row (repeatable; NAME=T,B,I,H names it)")
    p.add_argument("--cells", type=_csv(CELLS), default=list(CELLS),
                   help="comma-separated cells: rnn, lstm, gru (default all)")
    p.add_argument("--modes", type=_csv(MODES), default=list(DEFAULT_MODES),
                   help="comma-separated modes: inference, training (all gradients incl. the "
                        "input's), training-data (the input is data that needs no gradient, as "
                        "into a first layer) (default inference,training)")
    p.add_argument("--precision", type=_csv(PRECISIONS, PRECISION_ALIASES), default=None,
                   help="comma-separated precisions: float32, bfloat16 (bf16), int8; each "
                        "runs fastrnn in it beside that precision's anchors (bfloat16: torch "
                        "bf16 autocast and the bf16 GEMM peak; int8, inference only: torch's "
                        "dynamic int8 LSTM/GRU and ONNX Runtime's DynamicQuantizeLSTM), its "
                        "error measured against fastrnn float32, which always runs "
                        "(default float32, or the precisions of --impls)")
    p.add_argument("--impls", type=_csv(IMPLS, IMPL_ALIASES), default=None,
                   help="comma-separated implementations: fastrnn, reference (numpy), torch, "
                        "dropin (fastrnn.torch), onnxruntime (ort), fastrnn-bf16, torch-bf16, "
                        "fastrnn-int8, torch-int8, ort-int8 (default: all installed ones of "
                        "the --precision)")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the (slow) numpy reference")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for every implementation (default: OMP_NUM_THREADS or all "
                        "cores)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed samples per measurement, after a warm-up (default 5)")
    p.add_argument("--budget", type=_budget, default=10.0, metavar="SECONDS",
                   help="time budget of one measurement incl. warm-up: fewer samples (at "
                        "least one after the warm-up); the numpy reference may be timed on its "
                        "warm-up call alone, or 'skipped (time budget)' when one call cannot "
                        "fit (default 10; 'none' for no limit)")
    p.add_argument("--stat", choices=["median", "min"], default="median",
                   help="headline time of a measurement: median (default) or min of the samples "
                        "(min resists load from other processes on a shared machine)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--json", metavar="FILE", help="write every measurement as JSON")
    p.add_argument("--markdown", metavar="FILE",
                   help="write the tables as Markdown with the command and the machine")
    p.add_argument("--plot", metavar="FILE.png",
                   help="bar chart of fastrnn's speed-ups (needs matplotlib)")
    p.add_argument("--memory", action="store_true",
                   help="also measure peak RSS of inference vs training at T=100 and T=1000 "
                        "(B=32, I=H=128; one subprocess per case)")
    p.add_argument("--memory-only", action="store_true",
                   help="run only the peak-memory study")
    p.add_argument("--load", metavar="FILE",
                   help="re-render --markdown/--plot/the table from a saved --json file "
                        "instead of measuring")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--pipeline", action="store_true",
                   help="time fastrnn and torch.nn LSTM calls where users run them (after a "
                        "numpy or other-library call, beside a busy process, 2 and 4 "
                        "concurrent callers, after 100 ms idle), --repeats rounds, with the "
                        "targets of issue 21; replaces the grid (one --shape sets the shape of "
                        "the quiet and disturbed calls)")
    p.add_argument("--offgrid", action="store_true",
                   help="the off-grid sweep (H and B not multiples of the tiles, I != H) "
                        "instead of the grid rows, with fastrnn's worst per-round ratio "
                        "against the faster of torch.nn and ONNX Runtime")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--gemm-size", type=positive_int, default=GEMM_N, help=argparse.SUPPRESS)
    p.add_argument("--memory-shape", type=_bih, default=MEMORY_BIH, help=argparse.SUPPRESS)


def _check_writable(path: str | None, what: str) -> None:
    if path is None:
        return
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise BenchError(f"{what}: directory {d} does not exist")
    if not os.access(d, os.W_OK):
        raise BenchError(f"{what}: directory {d} is not writable")


def _write_outputs(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json and not args.load:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if args.plot:
        write_plot(report, args.plot)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(report, args.plot, args.markdown))
    for what, path in (("JSON", args.json if not args.load else None),
                       ("Markdown", args.markdown), ("chart", args.plot)):
        if path:
            print(f"{what} written to {path}")


def _better_peak(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """The better of a peak measured at the start and at the end of the run."""
    return dict(max(first, again, key=lambda d: d["gflops"]),
                start_gflops=first["gflops"], end_gflops=again["gflops"])


def _bf16_peak(n: int, threads: int, precisions: Sequence[str],
               warnings: list[str]) -> dict[str, Any] | None:
    """torch's bf16 GEMM peak when the run covers bfloat16 (None otherwise or without torch)."""
    if "bfloat16" not in precisions:
        return None
    try:
        import torch
    except ImportError as e:
        warnings.append(f"no bf16 GEMM peak: torch cannot be imported ({e})")
        return None
    torch.set_num_threads(threads)
    return bf16_gemm_peak(n)


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Run the benchmark described by parsed ``args``.

    Parameters
    ----------
    args : argparse.Namespace
        The options of :func:`add_arguments`, parsed.
    argv : sequence of str
        The command line's words after ``bench`` (recorded in the report).

    Returns
    -------
    int
        The exit status: 0, or 130 when interrupted (the tables are then partial).

    Raises
    ------
    BenchError
        For an output that cannot be written, a missing matplotlib or fastrnn extension,
        an unreadable ``--load`` file or a failed memory measurement.
    """
    threads = prepare_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    for what, path in (("--json", args.json), ("--markdown", args.markdown),
                       ("--plot", args.plot)):
        _check_writable(path, what)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BenchError("--plot needs matplotlib, which is not installed "
                             "(pip install 'fastrnn[plot]', or drop --plot)") from None
    if args.load:
        try:
            with open(args.load) as f:
                report = json.load(f)
        except (OSError, ValueError) as e:
            raise BenchError(f"--load {args.load}: {e}") from None
        if not isinstance(report, dict) or report.get("schema") != SCHEMA:
            raise BenchError(f"--load {args.load}: not a {SCHEMA} file")
        report.setdefault("stat", "median")
        try:
            for d in report["results"]:
                d.setdefault("time_ms", d["median_ms"])
            print(format_text(report), end="")
            _write_outputs(args, report)
        except (KeyError, TypeError, ValueError) as e:
            raise BenchError(f"--load {args.load}: malformed report ({e!r})") from None
        return 0

    if args.pipeline:
        from fastrnn.bench.pipeline import format_pipeline, run_pipeline
        if len(args.shape) > 1:
            raise BenchError("--pipeline takes at most one --shape (that of its disturbed "
                             "conditions)")
        pin_blas_threads(threads)
        report = run_pipeline(threads, args.repeats, args.shape[0][1] if args.shape else None)
        print(format_pipeline(report), end="")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
                f.write("\n")
        return 0
    rows = dict(ROWS) if args.rows is None and not args.shape else {}
    if args.offgrid:
        rows = dict(OFF_GRID)
    for r in args.rows or []:
        rows[r] = ROWS[r]
    for name, dims in args.shape:
        rows[name] = dims
    precisions = args.precision
    if precisions is None:
        precisions = (["float32"] if args.impls is None else
                      list(dict.fromkeys(PRECISION_OF[i] for i in args.impls)))
    if args.impls is None:
        impls = [i for i in IMPLS if PRECISION_OF[i] in precisions]
        if "fastrnn" not in impls:  # the errors are measured against fastrnn float32
            impls.insert(0, "fastrnn")
    else:
        impls = list(args.impls)
        off = [i for i in impls if PRECISION_OF[i] not in precisions]
        if off:
            raise BenchError(f"--impls {','.join(off)} not in --precision "
                             f"{','.join(precisions)}")
    if args.no_reference and "reference" in impls:
        impls.remove("reference")
    opts = Options(rows=rows, cells=args.cells, modes=args.modes, impls=impls,
                   threads=threads, repeats=args.repeats, budget_s=args.budget, stat=args.stat,
                   seed=args.seed, quiet=args.quiet, precisions=precisions)

    t0 = time.perf_counter()
    blas = pin_blas_threads(threads)
    warnings: list[str] = []
    results: list[Result] = []
    peak = bf_peak = None
    memory = None
    want_memory = args.memory or args.memory_only
    available = probe_impls(["fastrnn"] if args.memory_only else impls)
    if ("fastrnn" in impls or want_memory) and available["fastrnn"] is not None:
        raise BenchError(f"fastrnn.functional cannot be imported ({available['fastrnn']}); "
                         "build the extension: python setup.py build_ext --inplace")
    if want_memory:  # before the grid, while this process is small
        try:
            memory = memory_study(opts.cells, threads, bih=args.memory_shape, quiet=opts.quiet)
        except MemoryStudyError as e:
            raise BenchError(str(e)) from None
    if not args.memory_only:
        if args.impls is None:  # default: every installed implementation, quietly
            opts.impls = [i for i in impls if available[i] is None]
            for prec in precisions:  # but a precision asked for that fastrnn lacks is said
                if available.get(FASTRNN_OF[prec]) is not None:
                    warnings.append(f"{FASTRNN_OF[prec]} not run: {available[FASTRNN_OF[prec]]}")
        if not opts.quiet:
            print(f"measuring the GEMM peak ({args.gemm_size}x{args.gemm_size} float32, "
                  f"{threads} threads)...", file=sys.stderr)
        peak = gemm_peak(args.gemm_size)
        bf_peak = _bf16_peak(args.gemm_size, threads, precisions, warnings)
        results = run_grid(opts, available, warnings)
        if results and not any(w.startswith("interrupted") for w in warnings):
            # measured again at the end: a peak disturbed by load once is not taken as the peak
            peak = _better_peak(peak, gemm_peak(args.gemm_size))
            if bf_peak is not None:
                again = _bf16_peak(args.gemm_size, threads, precisions, warnings)
                bf_peak = _better_peak(bf_peak, again) if again else bf_peak
    report = build_report(opts, argv, peak, results, memory, warnings, blas,
                          time.perf_counter() - t0, bf16_peak=bf_peak)
    print(format_text(report), end="")
    if args.offgrid:
        worst = worst_ratio(report)
        print("off-grid worst per-round ratio (faster of torch.nn/ONNX Runtime over fastrnn): "
              + (f"{worst[0]:.3f}x ({worst[1]})" if worst else "none (too few rounds)"))
    _write_outputs(args, report)
    return 130 if any(w.startswith("interrupted") for w in warnings) else 0

