"""The command line: ``python -m fastrnn <command>`` (or the ``fastrnn`` console script).

Commands are registered in :data:`COMMANDS`; each is a name, a one-line help, a function
adding its options to an argparse parser and a function running it on the parsed
arguments (returning the exit status). Adding a command is one more entry. The commands'
functions are in :mod:`fastrnn.cli.info`, :mod:`fastrnn.cli.export` and
:mod:`fastrnn.cli.commands`.

Nothing heavy is imported before a command runs: the thread count must reach numpy's
OpenBLAS through the environment before numpy is loaded (see
:func:`fastrnn.bench.prepare_threads`).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence

from fastrnn._threads import ThreadSettingError
from fastrnn.cli import commands, export, info
from fastrnn.cli.command import Command, CommandError

__all__ = ["COMMANDS", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


COMMANDS: list[Command] = [
    Command("demo", "train a character-level LSTM language model on Python's own source code "
            "(about a minute), watch it learn, compare its speed with NumPy",
            commands.demo_arguments, commands.demo_run, """\
examples:
  fastrnn demo                        # about a minute; saves fastrnn-demo-model.fr
  fastrnn demo --minutes 5 --units 512
  fastrnn demo --text shakespeare.txt   # saves shakespeare.fr; samples start from its text
  fastrnn demo --text shakespeare.txt --out shakespeare-long.fr --minutes 10
  fastrnn demo --epochs 3 --steps-per-epoch 100 --seed 1   # fixed work, repeatable
  fastrnn demo --tiny                 # everything in a few seconds
"""),
    Command("generate", "write text with a character model saved by 'fastrnn demo'",
            commands.generate_arguments, commands.generate_run, """\
examples:
  fastrnn generate fastrnn-demo-model.fr
  fastrnn generate fastrnn-demo-model.fr --prime 'class ' --length 1000 --temperature 0.5
  fastrnn generate shakespeare.fr --prime 'ROMEO:' --seed 7
"""),
    Command("train", "train a forecasting model (RNN, LSTM or GRU) on time series from a CSV "
            "or .npy file, report validation loss, save it",
            commands.train_arguments, commands.train_run, """\
examples:
  fastrnn train prices.csv                      # every column, next step, LSTM(32)
  fastrnn train prices.csv --target close --window 64 --horizon 5 --plot forecast.png
  fastrnn train prices.csv --target close --transform return   # model relative changes
  fastrnn train sensors.npy --cell gru --units 64 --layers 2 --epochs 50 --out sensors.fr

--plot needs matplotlib: pip install 'fastrnn[plot]'. A model that does not beat the naive
"repeat the last value" forecast on the validation part is told so, with a hint.
"""),
    Command("predict", "forecast a series with a model saved by 'fastrnn train' (the same "
            "columns, transforms and scaling as in training), optionally to a CSV and a plot",
            commands.predict_arguments, commands.predict_run, """\
examples:
  fastrnn predict prices.fr new_prices.csv      # the forecast after the last row
  fastrnn predict prices.fr new_prices.csv --out forecasts.csv --plot forecast.png
  fastrnn predict sensors.fr sensors.npy --threads 1
"""),
    Command("export", "convert a saved model file to ONNX (the standard LSTM/GRU/RNN operators; "
            "needs the onnx package)", export.add_arguments, export.run, """\
examples:
  fastrnn export model.fr model.onnx
  fastrnn export model.keras model.onnx --opset 18
  fastrnn export stateful.fr stateful.onnx --states
"""),
    Command("info", "show the build (version, SIMD path, OpenMP, threads) and run a quick "
            "self-check", info.add_arguments, info.run, """\
examples:
  fastrnn info
  fastrnn info --threads 1
"""),
    Command("bench", "benchmark fastrnn against the numpy reference, torch and ONNX Runtime",
            commands.bench_arguments, commands.bench_run, """\
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
    """The top-level parser with one subparser per registered command.

    Returns
    -------
    argparse.ArgumentParser
        Its errors are one line on stderr and exit status 2; ``command`` holds the chosen
        command's name (None when there is none).
    """
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv``.

    Parameters
    ----------
    argv : sequence of str, optional
        The words after the program's name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: the command's, 1 for a failure it reports, 2 for bad arguments
        (or no command), 130 when interrupted, 141 when the reader of its output went away
        (a closed pipe).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.command_argv = argv[1:]  # the words after the command's name (bench records them)
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        status = int(command.run(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return status
    except CommandError as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return e.status
    except ThreadSettingError as e:  # a malformed OMP_NUM_THREADS
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of the output went away (fastrnn info | head -3)
        devnull = os.open(os.devnull, os.O_WRONLY)  # so that the exit's flush does not fail too
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE
    except OSError as e:  # a file that cannot be read or written, a full disk, ...
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"{parser.prog} {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
