"""The command line: ``python -m fastrnn <command>`` (or the ``fastrnn`` console script).

Commands are registered in :data:`COMMANDS`; each is a name, a one-line help, a function
adding its options to an argparse parser and a function running it on the parsed
arguments (returning the exit status). Adding a command is one more entry.

Nothing heavy is imported before a command runs: the thread count must reach numpy's
OpenBLAS through the environment before numpy is loaded (see
:func:`fastrnn.bench.prepare_threads`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1 (2 for bad arguments)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class Command:
    """A subcommand of the CLI."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    examples: str = ""


# ---- info ----------------------------------------------------------------------------------------


def _info_arguments(p: argparse.ArgumentParser) -> None:
    from fastrnn.bench import _positive_int

    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for the check (default: OMP_NUM_THREADS or all cores)")


def _info_run(args: argparse.Namespace) -> int:
    from fastrnn.bench import prepare_threads

    prepare_threads(args.threads)
    import fastrnn

    try:
        info = fastrnn.info()
    except ImportError as e:
        raise CommandError(f"fastrnn's native extension cannot be loaded: {e}") from None
    import numpy as np

    avail = ", ".join(info.get("simd_available", [])) or "?"
    print(f"fastrnn {info['version']}")
    print(f"  SIMD path     {info.get('simd', '?')} (available: {avail})")
    print(f"  OpenMP        {'yes' if info.get('openmp') else 'no'}")
    print(f"  threads       {info['num_threads']} (max {info.get('max_threads', '?')})")
    print(f"  compiler      {info.get('compiler', '?')}")
    print(f"  numpy         {np.__version__}")
    sys.stdout.flush()
    return _info_check()


def _info_check() -> int:
    """Time a tiny LSTM forward+backward through fastrnn.functional; compare to the reference."""
    import statistics
    import time

    import numpy as np

    try:
        from fastrnn import functional as F
    except ImportError as e:
        raise CommandError(f"fastrnn.functional cannot be imported: {e}") from None
    T, B, I, H = 20, 4, 16, 32
    rng = np.random.default_rng(0)
    k = 1.0 / np.sqrt(H)

    def args(dt: type) -> tuple:
        r = np.random.default_rng(0)
        x = r.standard_normal((T, B, I)).astype(dt)
        h0 = r.standard_normal((B, H)).astype(dt)
        c0 = r.standard_normal((B, H)).astype(dt)
        ws = [r.uniform(-k, k, s).astype(dt) for s in ((4 * H, I), (4 * H, H), (4 * H,), (4 * H,))]
        return x, h0, c0, *ws

    dy64 = rng.standard_normal((T, B, H))

    def step(ops: object, a: tuple, dy: np.ndarray) -> list[np.ndarray]:
        y, hn, cn, ctx = ops.lstm_forward(*a, training=True)  # type: ignore[attr-defined]
        grads = ops.lstm_backward(ctx, dy, None, None)  # type: ignore[attr-defined]
        return [y, hn, cn, *grads]

    a32 = args(np.float32)
    dy32 = dy64.astype(np.float32)
    step(F, a32, dy32)
    times = []
    for _ in range(20):
        t = time.perf_counter()
        step(F, a32, dy32)
        times.append(time.perf_counter() - t)
    print(f"LSTM T={T} B={B} I={I} H={H} float32 forward+backward through "
          f"fastrnn.functional: {statistics.median(times) * 1e3:.3f} ms (median of 20)")
    try:
        from fastrnn import reference as R
    except ImportError:
        print("check against fastrnn.reference: skipped (fastrnn.reference not available)")
        return 0
    a64 = args(np.float64)
    got, want = step(F, a64, dy64), step(R, a64, dy64)
    diff = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
    ok = diff <= 1e-9
    print(f"check against fastrnn.reference (float64, outputs and all gradients): "
          f"max |diff| = {diff:.2e} {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


# ---- bench ---------------------------------------------------------------------------------------


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    from fastrnn.bench import add_arguments

    add_arguments(p)


def _bench_run(args: argparse.Namespace) -> int:
    from fastrnn.bench import BenchError, run

    for option in ("--json", "--markdown", "--plot"):
        path = getattr(args, option[2:], None)
        if path and not (option == "--json" and getattr(args, "load", None)):
            _check_writable(path, option)  # before minutes of measuring, not after
    try:
        return run(args, args._argv)
    except BenchError as e:
        raise CommandError(str(e), status=2) from None


# ---- argument types ------------------------------------------------------------------------


def _int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return v

    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return v


_pos = _int_at_least(1)


# ---- demo ----------------------------------------------------------------------------------

_DEMO_DEFAULTS = {"max_chars": 1_000_000, "units": 256, "embed": 48, "layers": 1, "seq_len": 64,
                  "batch_size": 32, "lr": 5e-3, "epochs": 5, "minutes": 0.8,
                  "steps_per_epoch": None, "sample_length": 240, "compare_steps": 3}
# --tiny: the whole demo in a few seconds (to check that everything works)
_DEMO_TINY = {"max_chars": 30_000, "units": 32, "embed": 16, "layers": 1, "seq_len": 16,
              "batch_size": 8, "lr": 1e-2, "epochs": 2, "minutes": 0.8, "steps_per_epoch": 3,
              "sample_length": 40, "compare_steps": 1}


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    d = _DEMO_DEFAULTS
    g = p.add_argument_group("text and output")
    g.add_argument("--text", metavar="FILE",
                   help="train on this UTF-8 text file (default: the Python standard "
                        "library's own source code, found on every machine)")
    g.add_argument("--max-chars", type=_int_at_least(100), metavar="N",
                   help=f"use at most N characters of the text (default {d['max_chars']:,})")
    g.add_argument("--out", metavar="FILE", default="fastrnn-demo-model.fr",
                   help="where to save the trained model (default fastrnn-demo-model.fr)")
    g = p.add_argument_group("training time")
    g.add_argument("--minutes", type=_positive_float, metavar="M",
                   help=f"training time in minutes, split evenly over the epochs (default "
                        f"{d['minutes']}); the speed check and saving take a few seconds more")
    g.add_argument("--epochs", type=_pos, metavar="N",
                   help=f"epochs; a sample of generated text is shown after each "
                        f"(default {d['epochs']})")
    g.add_argument("--steps-per-epoch", type=_pos, metavar="N",
                   help="a fixed number of training steps per epoch instead of a time budget "
                        "(reproducible work on any machine)")
    g.add_argument("--tiny", action="store_true",
                   help="a tiny model and text, finished in seconds (checks that all works)")
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--units", type=_pos, metavar="H",
                   help=f"LSTM hidden units (default {d['units']})")
    g.add_argument("--layers", type=_pos, metavar="N",
                   help=f"stacked LSTM layers (default {d['layers']})")
    g.add_argument("--embed", type=_pos, metavar="D",
                   help=f"character embedding size (default {d['embed']})")
    g.add_argument("--seq-len", type=_int_at_least(2), metavar="T",
                   help=f"characters per training window (backpropagation through time; "
                        f"default {d['seq_len']})")
    g.add_argument("--batch-size", type=_pos, metavar="B",
                   help=f"windows per training step (default {d['batch_size']})")
    g.add_argument("--lr", type=_positive_float, metavar="RATE",
                   help=f"Adam learning rate (default {d['lr']:g})")
    g.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N",
                   help="random seed (default 0)")
    g.add_argument("--threads", type=_pos, default=None, metavar="N",
                   help="threads (default: OMP_NUM_THREADS, else all cores, or one if a quick "
                        "measurement finds one faster, as on a machine busy with other work)")
    g = p.add_argument_group("samples and speed check")
    g.add_argument("--temperature", type=_positive_float, default=0.7, metavar="T",
                   help="sampling temperature of the samples (default 0.7)")
    g.add_argument("--sample-length", type=_int_at_least(0), metavar="N",
                   help=f"characters per sample (default {d['sample_length']})")
    g.add_argument("--prime", default="def ", metavar="TEXT",
                   help="text each sample starts from (default 'def ')")
    g.add_argument("--compare-steps", type=_int_at_least(0), metavar="N",
                   help=f"training steps timed on the NumPy reference for the speed "
                        f"comparison; 0 skips it (default {d['compare_steps']})")


def _demo_run(args: argparse.Namespace) -> int:
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
        out=args.out, seed=args.seed,
        threads_fixed=threads_fixed)
    _check_writable(args.out, "--out")
    try:
        demo.run_demo(settings, print_fn=_print)
    except demo.CorpusError as e:
        raise CommandError(str(e)) from None
    return 0


def _print(text: str) -> None:
    print(text, flush=True)


def _check_writable(path: str, option: str) -> None:
    """Fail before the work, not after it, when an output file cannot be written."""
    import os

    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CommandError(f"{option} {path}: is a directory", status=2)
    if not os.path.isdir(d):
        raise CommandError(f"{option} {path}: directory {d} does not exist", status=2)
    if not os.access(d, os.W_OK):
        raise CommandError(f"{option} {path}: directory {d} is not writable", status=2)


# ---- generate ------------------------------------------------------------------------------


def _generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="a model saved by 'fastrnn demo' (e.g. fastrnn-demo-model.fr)")
    p.add_argument("--prime", default="", metavar="TEXT",
                   help="text to start from (default: the start of a line)")
    p.add_argument("--length", type=_int_at_least(0), default=500, metavar="N",
                   help="characters to generate (default 500)")
    p.add_argument("--temperature", type=_positive_float, default=0.7, metavar="T",
                   help="below 1: safer, more repetitive; above 1: more surprising "
                        "(default 0.7)")
    p.add_argument("--seed", type=_int_at_least(0), default=None, metavar="N",
                   help="random seed, for a repeatable text (default: different each run)")
    p.add_argument("--threads", type=_pos, default=None, metavar="N",
                   help="threads (default: OMP_NUM_THREADS or all cores)")


def _generate_run(args: argparse.Namespace) -> int:
    from fastrnn.bench import prepare_threads

    prepare_threads(args.threads)
    import time

    import numpy as np

    from fastrnn.cli import demo
    from fastrnn.models import ModelFileError

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
    t = time.perf_counter()
    text = demo.generate(model, vocab, args.prime, args.length, args.temperature,
                         np.random.default_rng(args.seed))
    dt = time.perf_counter() - t
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    sys.stdout.flush()
    print(f"({args.length:,} characters in {dt:.2f} s, {args.length / max(dt, 1e-9):,.0f} "
          "characters/s, one streaming step each)", file=sys.stderr)
    return 0


# ---- train ---------------------------------------------------------------------------------


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="FILE",
                   help="the series: a .csv (rows are time steps, columns are series; an "
                        "optional header row names them) or a .npy array of shape (time,) "
                        "or (time, series)")
    g = p.add_argument_group("the forecasting task")
    g.add_argument("--target", action="append", default=None, metavar="COLUMN",
                   help="column to forecast, by header name or 0-based index (repeatable; "
                        "default: every column)")
    g.add_argument("--window", type=_pos, default=32, metavar="W",
                   help="past time steps the model sees (default 32)")
    g.add_argument("--horizon", type=_pos, default=1, metavar="K",
                   help="future time steps it predicts (default 1)")
    g.add_argument("--val-fraction", type=_fraction, default=0.2, metavar="F",
                   help="the last fraction of the series held out for validation "
                        "(default 0.2)")
    g = p.add_argument_group("model and training")
    g.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm",
                   help="recurrent cell (default lstm)")
    g.add_argument("--units", type=_pos, default=32, metavar="H",
                   help="hidden units (default 32)")
    g.add_argument("--layers", type=_pos, default=1, metavar="N",
                   help="stacked layers (default 1)")
    g.add_argument("--epochs", type=_pos, default=20, metavar="N", help="epochs (default 20)")
    g.add_argument("--batch-size", type=_pos, default=32, metavar="B",
                   help="batch size (default 32)")
    g.add_argument("--lr", type=_positive_float, default=3e-3, metavar="RATE",
                   help="Adam learning rate (default 0.003)")
    g.add_argument("--seed", type=_int_at_least(0), default=0, metavar="N",
                   help="random seed (default 0)")
    g.add_argument("--threads", type=_pos, default=None, metavar="N",
                   help="threads (default: OMP_NUM_THREADS or all cores)")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="FILE",
                   help="where to save the model (default: FILE's name with .fr)")
    g.add_argument("--plot", metavar="PNG",
                   help="plot the validation forecast against the truth (needs matplotlib)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_run(args: argparse.Namespace) -> int:
    import os

    from fastrnn.bench import prepare_threads

    out = args.out or os.path.splitext(os.path.basename(args.data))[0] + ".fr"
    _check_writable(out, "--out")
    if args.plot:
        _check_writable(args.plot, "--plot")
    prepare_threads(args.threads)  # before numpy is imported (matplotlib imports it)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError as e:
            raise CommandError(f"--plot needs matplotlib, which cannot be imported ({e}; "
                               "pip install matplotlib)", status=2) from None
    from fastrnn.cli import train as _cli_train

    try:
        _cli_train.run(args, out)
    except _cli_train.TrainError as e:
        raise CommandError(str(e)) from None
    return 0


# ---- the registry --------------------------------------------------------------------------

COMMANDS: list[Command] = [
    Command("demo", "train a character-level LSTM language model on Python's own source code "
            "(about a minute), watch it learn, compare its speed with NumPy",
            _demo_arguments, _demo_run, """\
examples:
  fastrnn demo                        # about a minute; saves fastrnn-demo-model.fr
  fastrnn demo --minutes 5 --units 512
  fastrnn demo --text shakespeare.txt --out shakespeare.fr
  fastrnn demo --epochs 3 --steps-per-epoch 100 --seed 1   # fixed work, repeatable
  fastrnn demo --tiny                 # everything in a few seconds
"""),
    Command("generate", "write text with a character model saved by 'fastrnn demo'",
            _generate_arguments, _generate_run, """\
examples:
  fastrnn generate fastrnn-demo-model.fr
  fastrnn generate fastrnn-demo-model.fr --prime 'class ' --length 1000 --temperature 0.5
  fastrnn generate shakespeare.fr --prime 'ROMEO:' --seed 7
"""),
    Command("train", "train a forecasting model (RNN, LSTM or GRU) on time series from a CSV "
            "or .npy file, report validation loss, save it",
            _train_arguments, _train_run, """\
examples:
  fastrnn train prices.csv                      # every column, next step, LSTM(32)
  fastrnn train prices.csv --target close --window 64 --horizon 5 --plot forecast.png
  fastrnn train sensors.npy --cell gru --units 64 --layers 2 --epochs 50 --out sensors.fr
"""),
    Command("info", "show the build (version, SIMD path, OpenMP, threads) and run a quick "
            "self-check", _info_arguments, _info_run, """\
examples:
  fastrnn info
  fastrnn info --threads 1
"""),
    Command("bench", "benchmark fastrnn against the numpy reference, torch and ONNX Runtime",
            _bench_arguments, _bench_run, """\
examples:
  fastrnn bench --rows small,medium --cells lstm
  fastrnn bench --shape 100,1,64,64 --impls fastrnn,torch --threads 1
  fastrnn bench --json results.json --markdown RESULTS.md
"""),
]


def _prog() -> str:
    """``fastrnn`` when run as the console script, ``python -m fastrnn`` otherwise."""
    import os

    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "fastrnn" if name in ("fastrnn", "fastrnn.exe") else "python -m fastrnn"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered command."""
    p = _Parser(prog=_prog(),
                description="fastrnn: fast RNN, LSTM and GRU on the CPU.",
                epilog="start here:\n  fastrnn demo      train a language model in about a "
                       "minute\n\n'fastrnn <command> --help' shows each command's options "
                       "and examples.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    for cmd in COMMANDS:
        sp = sub.add_parser(cmd.name, help=cmd.help, description=textwrap.fill(cmd.help, 90),
                            epilog=cmd.examples,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(sp)
        sp.set_defaults(_run=cmd.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args._argv = argv[1:]
    try:
        return int(args._run(args))
    except CommandError as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return e.status
    except OSError as e:  # a file that cannot be read or written, a full disk, ...
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"{parser.prog} {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
