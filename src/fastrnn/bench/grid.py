"""Running the grid: every implementation on every case, samples interleaved round-robin."""

from __future__ import annotations

import gc
import time
from typing import Any

from fastrnn.bench.cases import (
    LABELS,
    SKIPPABLE,
    Case,
    Options,
    Result,
    check_atol,
    grid_cases,
    make_params,
    runs_case,
)
from fastrnn.bench.progress import Progress
from fastrnn.bench.runners import Unavailable, build_runner
from fastrnn.bench.timing import NoGC, Timer

PAUSE_S = 0.15  # pause before each sample: idle ORT/OpenMP/OpenBLAS workers spin for tens of ms


def run_grid(opts: Options, available: dict[str, str | None],
             warnings: list[str]) -> list[Result]:
    """Measure every implementation on every case of the grid.

    Per case, every implementation is set up and warmed up in turn, its first output
    checked against fastrnn's; then the timing samples interleave round-robin (rotating
    the order each round, with a short pause before each sample), so that a burst of load
    from another process hits all implementations alike instead of one of them.

    Parameters
    ----------
    opts : Options
        What to run and how.
    available : dict
        impl -> None (ready) or why not (:func:`fastrnn.bench.runners.probe_impls`).
    warnings : list of str
        Failures, output mismatches and an interruption are appended here.

    Returns
    -------
    list of Result
        One per (case, implementation), in run order; partial after Ctrl-C.
    """
    cases = grid_cases(opts)
    progress = Progress(len(cases), enabled=not opts.quiet)
    best_gflops: dict[tuple[str, str, str], float] = {}
    results: list[Result] = []
    params: dict[str, Any] | None = None
    params_key: tuple | None = None
    try:
        for case in cases:
            what = f"{case.row} {case.cell} {case.mode}"
            progress.step(what)
            impls = [i for i in opts.impls if runs_case(i, case.cell, case.mode)]
            key = (case.row, case.cell)
            if params_key != key:
                params = None
                gc.collect()
                params = make_params(case, opts.seed)
                params_key = key
            case_results = {i: Result(case, i, "ok") for i in impls}
            timers: dict[str, Timer] = {}

            def fail(impl: str, e: Exception, res: dict[str, Result] = case_results,
                     tm: dict[str, Timer] = timers, what: str = what) -> None:
                res[impl].status, res[impl].reason = "error", f"{type(e).__name__}: {e}"
                tm.pop(impl, None)
                warnings.append(f"{LABELS[impl]} failed on {what}: {res[impl].reason}")

            with NoGC():
                for impl in impls:
                    res = case_results[impl]
                    if available.get(impl) is not None:
                        res.status, res.reason = "unavailable", available[impl] or ""
                        continue
                    # The slow reference is skipped (never extrapolated) when even its best
                    # throughput so far on this cell and mode could not finish one call
                    # within the budget; every other implementation gets a timed call after
                    # its warm-up.
                    best = best_gflops.get((impl, case.cell, case.mode))
                    if impl in SKIPPABLE and opts.budget_s is not None and best:
                        predicted = case.flops / (best * 1e9)
                        if predicted > opts.budget_s:
                            res.status = "skipped"
                            res.reason = (f"skipped (time budget): one call would take about "
                                          f"{predicted:.0f} s > --budget {opts.budget_s:g} s")
                            continue
                    progress.note(f"{what}: {LABELS[impl]} warm-up")
                    try:
                        runner = build_runner(impl, case, params, opts.threads)
                        time.sleep(PAUSE_S)
                        timers[impl] = Timer(runner, opts.repeats, opts.budget_s,
                                             min_samples=0 if impl in SKIPPABLE else 1)
                        del runner
                    except Unavailable as e:  # this machine cannot run it: not an error
                        res.status, res.reason = "unavailable", str(e)
                    except Exception as e:  # noqa: BLE001 - one failing anchor must not stop the run
                        fail(impl, e)
                _check_outputs(case, timers, case_results, warnings)
                rounds = max((tm.n for tm in timers.values()), default=0)
                for r in range(rounds):
                    progress.note(f"{what}: round {r + 1}/{rounds}")
                    order = list(timers)
                    order = order[r % len(order):] + order[:r % len(order)]
                    for impl in order:
                        tm = timers.get(impl)
                        if tm is None or not tm.pending:
                            continue
                        time.sleep(PAUSE_S)  # the previous library's idle workers stop spinning
                        try:
                            tm.sample()
                        except Exception as e:  # noqa: BLE001
                            fail(impl, e)
                for impl, tm in timers.items():
                    res = case_results[impl]
                    res.times_s, res.number, res.warmup_only = tm.result()
            timers.clear()
            for impl in impls:
                res = case_results[impl]
                results.append(res)
                g = res.gflops("min")
                if g:
                    k = (impl, case.cell, case.mode)
                    best_gflops[k] = max(best_gflops.get(k, 0.0), g)
    except KeyboardInterrupt:
        warnings.append(f"interrupted after {len({r.case for r in results})} of {len(cases)} "
                        "cases: the tables are partial")
    finally:
        progress.close()
    return results


def _check_outputs(case: Case, timers: dict[str, Timer], results: dict[str, Result],
                   warnings: list[str]) -> None:
    """Compare every implementation's first output with fastrnn's float32 one (same inputs,
    weights): a float32 implementation's difference is a check, a reduced precision's is its
    error against float32 (a warning only where rounding cannot explain it)."""
    fast = timers.get("fastrnn")
    if fast is None:
        return
    for impl, tm in timers.items():
        if impl == "fastrnn":
            continue
        diff = float(abs(tm.first_output - fast.first_output).max())
        results[impl].max_abs_diff = diff
        if not diff <= check_atol(impl):
            warnings.append(
                f"{LABELS[impl]} {case.cell} output differs from fastrnn's on {case.row} "
                f"{case.mode}: max |diff| = {diff:.3g} > {check_atol(impl):g}; this comparison "
                "may be invalid")

