"""The options of ``fastrnn demo``, ``generate``, ``train``, ``predict`` and ``bench``, and
their runners.

Each command is a pair: ``<name>_arguments`` adds its options to a parser (nothing heavy is
imported), ``<name>_run`` turns the parsed options into a call of the engine:
:mod:`fastrnn.cli.demo` (``demo`` and ``generate``), :mod:`fastrnn.cli.train` (``train``),
:mod:`fastrnn.cli.predict` (``predict``) and :mod:`fastrnn.bench` (``bench``). The thread
count is handed out before numpy loads (:func:`fastrnn.bench.prepare_threads`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from types import ModuleType

from fastrnn.cli.command import (
    CommandError,
    check_writable,
    fraction,
    int_at_least,
    positive,
    positive_float,
)

__all__ = ["add_threads", "bench_arguments", "bench_run", "demo_arguments", "demo_run",
           "generate_arguments", "generate_run", "predict_arguments", "predict_run",
           "require_matplotlib", "train_arguments", "train_run"]

def add_threads(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--threads N`` (default: ``OMP_NUM_THREADS`` or all cores) to ``p``.

    Parameters
    ----------
    p : argparse.ArgumentParser or argument group
        Where the option goes.
    """
    p.add_argument("--threads", type=positive, default=None, metavar="N",
                   help="threads (default: OMP_NUM_THREADS or all cores)")


# ---- demo ----------------------------------------------------------------------------------

_DEMO_DEFAULTS = {"max_chars": 1_000_000, "units": 256, "embed": 48, "layers": 1, "seq_len": 64,
                  "batch_size": 32, "lr": 5e-3, "epochs": 5, "minutes": 0.8,
                  "steps_per_epoch": None, "sample_length": 240, "compare_steps": 3}
# --tiny: the whole demo in a few seconds (to check that everything works)
_DEMO_TINY = {"max_chars": 30_000, "units": 32, "embed": 16, "layers": 1, "seq_len": 16,
              "batch_size": 8, "lr": 1e-2, "epochs": 2, "minutes": 0.8, "steps_per_epoch": 3,
              "sample_length": 40, "compare_steps": 1}


_PRECISIONS = {"float32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "int8": "int8"}


def demo_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``demo`` options to ``p`` (defaults shown from the full-size settings).

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser.
    """
    d = _DEMO_DEFAULTS
    g = p.add_argument_group("text and output")
    g.add_argument("--text", metavar="FILE",
                   help="train on this UTF-8 text file (default: the Python standard "
                        "library's own source code, found on every machine)")
    g.add_argument("--max-chars", type=int_at_least(100), metavar="N",
                   help=f"use at most N characters of the text (default {d['max_chars']:,})")
    g.add_argument("--out", metavar="FILE",
                   help="where to save the trained model (default: fastrnn-demo-model.fr, or "
                        "for --text my_book.txt my_book.fr; a model of another text there is "
                        "kept unless --out names it or --force is given)")
    g.add_argument("--force", action="store_true",
                   help="replace the default output file even when it holds a model of "
                        "another text")
    g = p.add_argument_group("training time")
    g.add_argument("--minutes", type=positive_float, metavar="M",
                   help=f"training time in minutes, split evenly over the epochs (default "
                        f"{d['minutes']}); the speed check and saving take a few seconds more")
    g.add_argument("--epochs", type=positive, metavar="N",
                   help=f"epochs; a sample of generated text is shown after each "
                        f"(default {d['epochs']})")
    g.add_argument("--steps-per-epoch", type=positive, metavar="N",
                   help="a fixed number of training steps per epoch instead of a time budget "
                        "(reproducible work on any machine)")
    g.add_argument("--tiny", action="store_true",
                   help="a tiny model and text, finished in seconds (checks that all works)")
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--units", type=positive, metavar="H",
                   help=f"LSTM hidden units (default {d['units']})")
    g.add_argument("--layers", type=positive, metavar="N",
                   help=f"stacked LSTM layers (default {d['layers']})")
    g.add_argument("--embed", type=positive, metavar="D",
                   help=f"character embedding size (default {d['embed']})")
    g.add_argument("--seq-len", type=int_at_least(2), metavar="T",
                   help=f"characters per training window (backpropagation through time; "
                        f"default {d['seq_len']})")
    g.add_argument("--batch-size", type=positive, metavar="B",
                   help=f"windows per training step (default {d['batch_size']})")
    g.add_argument("--lr", type=positive_float, metavar="RATE",
                   help=f"Adam learning rate (default {d['lr']:g})")
    g.add_argument("--seed", type=int_at_least(0), default=0, metavar="N",
                   help="random seed (default 0)")
    g.add_argument("--threads", type=positive, default=None, metavar="N",
                   help="threads (default: OMP_NUM_THREADS, else all cores, or one if a quick "
                        "measurement finds one faster, as on a machine busy with other work)")
    g.add_argument("--precision", choices=["float32", "bfloat16", "bf16"], default="float32",
                   help="what the LSTM computes in while training: float32 (default) or "
                        "bfloat16 (Keras's 'mixed_bfloat16' policy: float32 weights)")
    g = p.add_argument_group("samples and speed check")
    g.add_argument("--temperature", type=positive_float, default=0.7, metavar="T",
                   help="sampling temperature of the samples (default 0.7)")
    g.add_argument("--sample-length", type=int_at_least(0), metavar="N",
                   help=f"characters per sample (default {d['sample_length']})")
    g.add_argument("--prime", default=None, metavar="TEXT",
                   help="text each sample starts from (default: 'def ' for the Python "
                        "source; for --text, the start of the text's first line)")
    g.add_argument("--compare-steps", type=int_at_least(0), metavar="N",
                   help=f"training steps timed on the NumPy reference for the speed "
                        f"comparison; 0 skips it (default {d['compare_steps']})")
    g.add_argument("--no-precisions", action="store_true",
                   help="skip the table of the trained model's inference in float32, bfloat16 "
                        "and int8 (validation perplexity, predict and generation speed)")


def demo_run(args: argparse.Namespace) -> int:
    """Fill in the defaults (``--tiny``: the tiny ones), check the output, run the demo.

    The model goes to ``--out``, else :func:`fastrnn.cli.demo.default_out` (named after
    ``--text``) unless that file holds another text's model
    (:func:`fastrnn.cli.demo.other_run`) and ``--force`` is not given. The demo is
    :func:`fastrnn.cli.demo.run_demo`.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``demo`` options.

    Returns
    -------
    int
        The exit status (0).

    Raises
    ------
    CommandError
        When the output cannot be written, would replace another text's model without
        ``--out`` or ``--force``, or there is no usable text.
    """
    import os

    from fastrnn.bench import prepare_threads

    threads_fixed = args.threads is not None or bool(os.environ.get("OMP_NUM_THREADS"))
    prepare_threads(args.threads)
    from fastrnn.cli import demo

    base = _DEMO_TINY if args.tiny else _DEMO_DEFAULTS
    val = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}
    settings = demo.DemoSettings(
        text=args.text, max_chars=val["max_chars"], units=val["units"], embed=val["embed"],
        layers=val["layers"], seq_len=val["seq_len"], batch_size=val["batch_size"],
        learning_rate=val["lr"], epochs=val["epochs"], minutes=val["minutes"],
        steps_per_epoch=val["steps_per_epoch"], sample_length=val["sample_length"],
        temperature=args.temperature, prime=args.prime, compare_steps=val["compare_steps"],
        out=args.out or demo.default_out(args.text), seed=args.seed,
        threads_fixed=threads_fixed, precision=_PRECISIONS[args.precision],
        compare_precisions=not args.no_precisions)
    check_writable(settings.out, "--out")
    clash = "" if args.out or args.force else demo.other_run(settings.out, args.text)
    if clash:
        raise CommandError(f"{settings.out} holds {clash}; to keep it, name another file "
                           f"with --out FILE, or replace it with --force", status=2)
    try:
        demo.run_demo(settings, print_fn=_print)
    except demo.CorpusError as e:
        raise CommandError(str(e)) from None
    return 0


def _print(text: str) -> None:
    print(text, flush=True)


# ---- generate ------------------------------------------------------------------------------


def generate_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``generate`` options to ``p``.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser.
    """
    p.add_argument("model", metavar="MODEL",
                   help="a model saved by 'fastrnn demo' (e.g. fastrnn-demo-model.fr)")
    p.add_argument("--prime", default="", metavar="TEXT",
                   help="text to start from (default: the start of a line)")
    p.add_argument("--length", type=int_at_least(0), default=500, metavar="N",
                   help="characters to generate (default 500)")
    p.add_argument("--temperature", type=positive_float, default=0.7, metavar="T",
                   help="below 1: safer, more repetitive; above 1: more surprising "
                        "(default 0.7)")
    p.add_argument("--seed", type=int_at_least(0), default=None, metavar="N",
                   help="random seed, for a repeatable text (default: different each run)")
    p.add_argument("--precision", choices=["float32", "bfloat16", "bf16", "int8"], default=None,
                   help="what the LSTM computes in: float32, bfloat16, or int8 (weights "
                        "quantized: model.quantize('int8')) (default: as the model was trained)")
    add_threads(p)


def generate_run(args: argparse.Namespace) -> int:
    """Load a character model, write ``--length`` characters to stdout, the speed to stderr.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``generate`` options.

    Returns
    -------
    int
        The exit status (0).

    Raises
    ------
    CommandError
        When the model file is missing or not a character model, or ``--prime``
        holds characters the model does not know.
    """
    from fastrnn.bench import prepare_threads

    prepare_threads(args.threads)
    import time

    import numpy as np

    from fastrnn.cli import demo
    from fastrnn.keras.models import ModelFileError

    try:
        model, vocab, _ = demo.load_char_model(args.model)
    except FileNotFoundError:
        raise CommandError(f"{args.model}: no such model file (make one with 'fastrnn demo')") \
            from None
    except ModelFileError as e:
        raise CommandError(str(e)) from None
    missing = sorted({c for c in args.prime if c not in vocab})
    if missing:
        raise CommandError(f"--prime: the model does not know the character(s) "
                           f"{', '.join(repr(c) for c in missing)}", status=2)
    if args.precision is not None:
        model = demo.with_precision(model, _PRECISIONS[args.precision])
    precision = demo.model_precision(model)
    t = time.perf_counter()
    text = demo.generate(model, vocab, args.prime, args.length, args.temperature,
                         np.random.default_rng(args.seed))
    dt = time.perf_counter() - t
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    sys.stdout.flush()
    print(f"({args.length:,} characters in {dt:.2f} s, {args.length / max(dt, 1e-9):,.0f} "
          f"characters/s, one streaming step each, {precision})", file=sys.stderr)
    return 0


# ---- train ---------------------------------------------------------------------------------


def train_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to ``p``.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser.
    """
    p.add_argument("data", metavar="FILE",
                   help="the series: a .csv (rows are time steps, columns are series; an "
                        "optional header row names them) or a .npy array of shape (time,) "
                        "or (time, series)")
    g = p.add_argument_group("the forecasting task")
    g.add_argument("--target", action="append", default=None, metavar="COLUMN",
                   help="column to forecast, by header name or 0-based index (repeatable; "
                        "default: every column)")
    g.add_argument("--window", type=positive, default=32, metavar="W",
                   help="past time steps the model sees (default 32)")
    g.add_argument("--horizon", type=positive, default=1, metavar="K",
                   help="future time steps it predicts (default 1)")
    g.add_argument("--val-fraction", type=fraction, default=0.2, metavar="F",
                   help="the last fraction of the series held out for validation "
                        "(default 0.2)")
    g.add_argument("--transform", choices=["auto", "none", "diff", "return"], default="auto",
                   help="what the model sees and forecasts of each column: its levels "
                        "(none), its differences from step to step (diff) or its relative "
                        "changes (return, positive values only); auto (default): differences "
                        "of a column that looks non-stationary, such as a price (a "
                        "Dickey-Fuller test on the training part), levels of the others. "
                        "Forecasts are always given in the data's units")
    g = p.add_argument_group("model and training")
    g.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm",
                   help="recurrent cell (default lstm)")
    g.add_argument("--units", type=positive, default=32, metavar="H",
                   help="hidden units (default 32)")
    g.add_argument("--layers", type=positive, default=1, metavar="N",
                   help="stacked layers (default 1)")
    g.add_argument("--epochs", type=positive, default=20, metavar="N", help="epochs (default 20)")
    g.add_argument("--batch-size", type=positive, default=32, metavar="B",
                   help="batch size (default 32)")
    g.add_argument("--lr", type=positive_float, default=3e-3, metavar="RATE",
                   help="Adam learning rate (default 0.003)")
    g.add_argument("--seed", type=int_at_least(0), default=0, metavar="N",
                   help="random seed (default 0)")
    add_threads(g)
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="FILE",
                   help="where to save the model (default: FILE's name with .fr)")
    g.add_argument("--plot", metavar="PNG",
                   help="plot the validation forecast against the truth (needs matplotlib: "
                        "pip install 'fastrnn[plot]')")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def train_run(args: argparse.Namespace) -> int:
    """Check the outputs can be written, then run :func:`fastrnn.cli.train.run`.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``train`` options.

    Returns
    -------
    int
        The exit status (0).

    Raises
    ------
    CommandError
        When an output cannot be written, ``--plot`` lacks matplotlib, or the data
        or settings are unusable.
    """
    import os

    out = args.out or os.path.splitext(os.path.basename(args.data))[0] + ".fr"
    _forecast_run(args, out, lambda train: train.run(args, out))
    return 0


def _forecast_run(args: argparse.Namespace, out: str | None,
                  run: Callable[[ModuleType], object]) -> None:
    """What ``train`` and ``predict`` do around their engine: check ``out`` and ``--plot``
    can be written and drawn, set the threads, then ``run(fastrnn.cli.train)`` with its
    ``TrainError`` as a one-line failure."""
    from fastrnn.bench import prepare_threads

    for path, option in ((out, "--out"), (args.plot, "--plot")):
        if path:
            check_writable(path, option)
    prepare_threads(args.threads)  # before numpy is imported (matplotlib imports it)
    if args.plot:
        require_matplotlib()
    from fastrnn.cli import train

    try:
        run(train)
    except train.TrainError as e:
        raise CommandError(str(e)) from None


def require_matplotlib() -> None:
    """Fail before the work when ``--plot`` cannot be drawn.

    Raises
    ------
    CommandError
        With status 2 when matplotlib cannot be imported; the message says how to get it.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise CommandError(f"--plot needs matplotlib, which cannot be imported ({e}): "
                           "pip install 'fastrnn[plot]' (or pip install matplotlib)",
                           status=2) from None


# ---- predict -------------------------------------------------------------------------------


def predict_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``predict`` options to ``p``.

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser.
    """
    p.add_argument("model", metavar="MODEL",
                   help="a model saved by 'fastrnn train' (e.g. prices.fr)")
    p.add_argument("data", metavar="FILE",
                   help="the series to forecast: a .csv or .npy file like the one the model "
                        "was trained on (the same columns, by header name; more rows or "
                        "fewer, at least the model's window)")
    p.add_argument("--out", metavar="CSV",
                   help="write every window's forecast to this CSV (one row per window, "
                        "named by its last time step; columns <target>_t+<k>)")
    p.add_argument("--plot", metavar="PNG",
                   help="plot the series and the forecast of the first target (needs "
                        "matplotlib: pip install 'fastrnn[plot]')")
    add_threads(p)


def predict_run(args: argparse.Namespace) -> int:
    """Check the outputs can be written, then run :func:`fastrnn.cli.predict.run`.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``predict`` options.

    Returns
    -------
    int
        The exit status (0).

    Raises
    ------
    CommandError
        When an output cannot be written, ``--plot`` lacks matplotlib, or the model or
        the data is unusable.
    """
    def run(_train: ModuleType) -> None:
        from fastrnn.cli import predict

        predict.run(args)

    _forecast_run(args, args.out, run)
    return 0


# ---- bench ---------------------------------------------------------------------------------------


def bench_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``p`` (:func:`fastrnn.bench.add_arguments`).

    Parameters
    ----------
    p : argparse.ArgumentParser
        The command's parser.
    """
    from fastrnn.bench import add_arguments

    add_arguments(p)


def bench_run(args: argparse.Namespace) -> int:
    """Check the output files can be written, then run :func:`fastrnn.bench.run`.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``bench`` options, with ``command_argv`` (the words after ``bench``,
        recorded in the report).

    Returns
    -------
    int
        The benchmark's exit status.

    Raises
    ------
    CommandError
        With status 2 for an output that cannot be written or a ``BenchError``.
    """
    from fastrnn.bench import BenchError, run

    for option in ("--json", "--markdown", "--plot"):
        path = getattr(args, option[2:], None)
        if path and not (option == "--json" and getattr(args, "load", None)):
            check_writable(path, option)  # before minutes of measuring, not after
    try:
        return run(args, args.command_argv)
    except BenchError as e:
        raise CommandError(str(e), status=2) from None


