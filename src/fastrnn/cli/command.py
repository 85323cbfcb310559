"""What every command of the command line is made of.

A :class:`Command` names a subcommand and its two functions (adding the options to a parser,
running on the parsed arguments); :class:`CommandError` is the one-line failure every
command raises; the argument types and :func:`check_writable` are shared by the commands'
options. Nothing here imports numpy (see :mod:`fastrnn.cli.main`).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Command", "CommandError", "check_writable", "fraction", "int_at_least",
           "number_in", "positive", "positive_float"]


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1 (2 for bad arguments)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Command:
    """A subcommand of the CLI."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    examples: str = ""


def int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``lo`` (``_`` and ``,`` separators allowed).

    Parameters
    ----------
    lo : int
        The smallest value accepted.

    Returns
    -------
    callable
        Text -> int, raising ``argparse.ArgumentTypeError`` on anything else.
    """

    def parse(text: str) -> int:
        try:
            v = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return v

    return parse


#: An argparse type: a positive integer.
positive = int_at_least(1)


def number_in(low: float, high: float, expected: str) -> Callable[[str], float]:
    """An argparse type: a number strictly between ``low`` and ``high``.

    Parameters
    ----------
    low, high : float
        The open interval (``math.inf`` for no upper bound: infinity itself is refused).
    expected : str
        What the error message says is expected (``"a positive number"``).

    Returns
    -------
    callable
        Text -> float, raising ``argparse.ArgumentTypeError`` on anything else.
    """

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not low < v < high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return v

    return parse


#: An argparse type: a finite number above zero.
positive_float = number_in(0.0, math.inf, "a positive number")
#: An argparse type: a number strictly between 0 and 1.
fraction = number_in(0.0, 1.0, "a number between 0 and 1")


def check_writable(path: str, option: str) -> None:
    """Fail before the work, not after it, when an output file cannot be written.

    Parameters
    ----------
    path : str
        The file a command will write.
    option : str
        The option that named it (for the message, e.g. ``"--out"``).

    Raises
    ------
    CommandError
        With status 2 when ``path`` is a directory, or its directory is missing or not
        writable.
    """
    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CommandError(f"{option} {path}: is a directory", status=2)
    if not os.path.isdir(d):
        raise CommandError(f"{option} {path}: directory {d} does not exist", status=2)
    if not os.access(d, os.W_OK):
        raise CommandError(f"{option} {path}: directory {d} is not writable", status=2)
