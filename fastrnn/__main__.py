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

    try:
        return run(args, args._argv)
    except BenchError as e:
        raise CommandError(str(e), status=2) from None


COMMANDS: list[Command] = [
    Command("info", "show the build (version, SIMD path, OpenMP, threads) and run a quick "
            "self-check", _info_arguments, _info_run),
    Command("bench", "benchmark fastrnn against the numpy reference, torch and ONNX Runtime",
            _bench_arguments, _bench_run),
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered command."""
    p = _Parser(prog="python -m fastrnn",
                description="fastrnn: fast RNN, LSTM and GRU on the CPU.")
    sub = p.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    for cmd in COMMANDS:
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
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
        print(f"python -m fastrnn {args.command}: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print(f"python -m fastrnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
