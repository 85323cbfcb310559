"""``fastrnn train``: fit a forecasting model to time series read from a CSV or .npy file.

The series (rows = time steps, columns = series) is split by time: the first part trains,
the last ``--val-fraction`` validates. Each column is transformed (levels, differences or
returns, ``--transform``; by default differences of a column that looks non-stationary) and
scaled with the training part's mean and standard deviation
(:class:`fastrnn.cli.forecast.Preparation`). Samples are windows of ``--window`` past steps of
every column; targets are the next ``--horizon`` steps of the ``--target`` columns. The model
is ``[SimpleRNN|LSTM|GRU] x layers -> Dense(horizon * targets)`` trained with Adam on the
mean squared error. Its validation forecasts, back in the data's units, are compared with
the naive forecast that repeats the last observed value, with a hint when the model does
not beat it. The model file holds the preparation, for ``fastrnn predict``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from fastrnn.cli.demo import save_with_metadata
from fastrnn.cli.forecast import (
    DF_CRITICAL_5,
    FORECAST_MEMBER,
    Preparation,
    PreparationError,
    compare_with_naive,
    dickey_fuller,
    naive_verdict,
    plot_forecast,
)
from fastrnn.keras import optimizers
from fastrnn.keras.layers import GRU, LSTM, Dense, SimpleRNN
from fastrnn.keras.models import Sequential, set_random_seed

_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}


class TrainError(Exception):
    """A problem with the data file or the settings, reported as one line."""


@dataclass
class Series:
    """A multivariate series: ``values`` (time, columns) and the column names."""

    values: np.ndarray
    names: list[str]
    skipped: list[str]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv(path: str) -> Series:
    """Read a CSV of numbers: rows are time steps, columns are series.

    The delimiter (comma, semicolon, tab) is detected; a first row with any non-number is a
    header. Columns whose first data row is not a number (dates, labels) are left out.

    Parameters
    ----------
    path : str
        The CSV file.

    Returns
    -------
    Series

    Raises
    ------
    TrainError
        For a file that is not UTF-8, empty, ragged or holds a value that is not a number.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise TrainError(f"{path}: not a UTF-8 text file (expected a CSV)") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise TrainError(f"{path}: the file is empty")
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    numbered = [(i + 1, [c.strip() for c in r]) for i, r in enumerate(rows)
                if any(c.strip() for c in r)]
    first_no, first = numbered[0]
    header = None
    if not all(_is_number(c) for c in first):
        header = first
        numbered = numbered[1:]
    if not numbered:
        raise TrainError(f"{path}: no data rows after the header")
    width = len(numbered[0][1])
    names = header if header is not None and len(header) == width else \
        [str(i) for i in range(width)]
    keep = [j for j, c in enumerate(numbered[0][1]) if _is_number(c)]
    if not keep:
        raise TrainError(f"{path}: no column holds numbers")
    values = np.empty((len(numbered), len(keep)), dtype=np.float64)
    for r, (line_no, row) in enumerate(numbered):
        if len(row) != width:
            raise TrainError(f"{path}, line {line_no}: {len(row)} values, but the first data "
                             f"row has {width}")
        for k, j in enumerate(keep):
            try:
                values[r, k] = float(row[j])
            except ValueError:
                what = "an empty value (fill or drop missing values first)" if not row[j] \
                    else f"{row[j]!r} is not a number"
                raise TrainError(f"{path}, line {line_no}, column {names[j]!r}: {what}") \
                    from None
    skipped = [names[j] for j in range(width) if j not in keep]
    return Series(values, [names[j] for j in keep], skipped)


def read_npy(path: str) -> Series:
    """Read a .npy array of shape (time,) or (time, series) (no pickled objects).

    Parameters
    ----------
    path : str
        The .npy file.

    Returns
    -------
    Series
        Columns named by their index.

    Raises
    ------
    TrainError
        For an unreadable file, an array that does not hold numbers or of another shape.
    """
    try:
        a = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise TrainError(f"{path}: not a readable .npy array of numbers ({e})") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiub":
        raise TrainError(f"{path}: expected an array of numbers, got dtype "
                         f"{getattr(a, 'dtype', type(a).__name__)}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise TrainError(f"{path}: expected shape (time,) or (time, series), got {a.shape}")
    return Series(a.astype(np.float64), [str(i) for i in range(a.shape[1])], [])


def read_series(path: str) -> Series:
    """Read a .npy or CSV file (by extension; anything not .npy is read as CSV).

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    Series

    Raises
    ------
    TrainError
        For a missing file, a directory, unreadable data or a value that is not finite.
    """
    if os.path.isdir(path):
        raise TrainError(f"{path}: is a directory, expected a .csv or .npy file")
    if not os.path.exists(path):
        raise TrainError(f"{path}: no such file")
    s = read_npy(path) if path.lower().endswith(".npy") else read_csv(path)
    bad = np.argwhere(~np.isfinite(s.values))
    if len(bad):
        r, c = bad[0]
        raise TrainError(f"{path}: value {s.values[r, c]} at time step {r}, column "
                         f"{s.names[c]!r}; fill or drop missing values first")
    return s


def select_targets(series: Series, wanted: list[str] | None) -> list[int]:
    """Column indices of ``--target`` values (names, or 0-based indices).

    Parameters
    ----------
    series : Series
    wanted : list of str or None
        Column names or indices; None or empty: every column.

    Returns
    -------
    list of int
        Without repeats, in the order asked.

    Raises
    ------
    TrainError
        For a column that does not exist.
    """
    if not wanted:
        return list(range(len(series.names)))
    out: list[int] = []
    for w in wanted:
        if w in series.names:
            j = series.names.index(w)
        elif w.lstrip("-").isdigit() and -len(series.names) <= int(w) < len(series.names):
            j = int(w) % len(series.names)
        else:
            raise TrainError(f"--target {w!r}: no such column (columns: "
                             f"{', '.join(series.names)})")
        if j not in out:
            out.append(j)
    return out


def build_model(cell: str, units: int, layers: int, window: int, features: int,
                outputs: int, learning_rate: float) -> Sequential:
    """``cell x layers -> Dense(outputs)``, compiled with Adam on the mean squared error.

    Parameters
    ----------
    cell : str
        ``"lstm"``, ``"gru"`` or ``"rnn"``.
    units, layers : int
        Hidden units of each recurrent layer, and how many are stacked.
    window, features : int
        The input's shape (time steps, columns).
    outputs : int
        The Dense layer's units.
    learning_rate : float
        Adam's learning rate (gradients clipped to norm 1).

    Returns
    -------
    Sequential
    """
    model = Sequential(name=f"{cell}_forecaster")
    for k in range(layers):
        kw = {"input_shape": (window, features)} if k == 0 else {}
        model.add(_CELLS[cell](units, return_sequences=k < layers - 1, **kw))
    model.add(Dense(outputs))
    model.compile(optimizer=optimizers.Adam(learning_rate, clipnorm=1.0), loss="mse")
    return model


def _label(model: Sequential) -> str:
    """``LSTM(32) x 2``: the recurrent layers of a forecaster."""
    rec = [layer for layer in model.layers if type(layer).__name__ != "Dense"]
    if not rec:
        return "model"
    name = f"{type(rec[0]).__name__}({rec[0].units})"
    return name + (f" x {len(rec)}" if len(rec) > 1 else "")


def _hint(prep: Preparation, values: np.ndarray, split: int) -> str:
    """Why a model may not beat the naive forecast, and what to try (one clause)."""
    for j in prep.targets:
        name = prep.columns[j]
        if prep.transforms[j] != "none":
            continue
        lo, hi = values[:split, j].min(), values[:split, j].max()
        vlo, vhi = values[split:, j].min(), values[split:, j].max()
        if vlo < lo or vhi > hi:
            return (f"the validation values of {name!r} ({vlo:.4g} to {vhi:.4g}) leave the "
                    f"training range ({lo:.4g} to {hi:.4g}), which a model of levels cannot "
                    "forecast: try --transform diff (or return)")
        if dickey_fuller(values[:split, j]) > DF_CRITICAL_5:
            return (f"{name!r} looks non-stationary (a Dickey-Fuller test cannot reject a unit "
                    "root): try --transform diff (or return)")
    names = ", ".join(repr(prep.columns[j]) for j in prep.targets)
    return (f"the changes of {names} look unpredictable from the last {prep.window} steps (for "
            "a random walk the last value is the best forecast there is); a longer --window, "
            "more --epochs or more informative columns may help")


def validation_report(prep: Preparation, values: np.ndarray, origins: np.ndarray,
                      pred: np.ndarray, scale: np.ndarray, label: str,
                      hint: str) -> tuple[dict[str, float], list[str]]:
    """The model's losses beside the naive forecast's, as table lines and a verdict.

    Parameters
    ----------
    prep : Preparation
    values : numpy.ndarray
        The series (time, columns).
    origins : numpy.ndarray
        The windows' last steps (their forecast steps are in ``values``).
    pred : numpy.ndarray
        The model's outputs for them (n, horizon * targets).
    scale : numpy.ndarray
        Each target's scale for the MSE (its training standard deviation).
    label : str
        The model's name.
    hint : str
        What may help if the model does not beat the naive forecast.

    Returns
    -------
    losses : dict
        :func:`fastrnn.cli.forecast.compare_with_naive` of the levels.
    lines : list of str
    """
    losses = compare_with_naive(prep.to_levels(pred, values, origins),
                                prep.truth(values, origins), prep.naive(values, origins),
                                scale)
    lines = [f"  {'':22} {'MSE (scaled)':>13} {'MAE (data units)':>17}",
             f"  {label:22} {losses['mse']:13.5g} {losses['mae']:17.5g}",
             f"  {'last value (naive)':22} {losses['naive_mse']:13.5g} "
             f"{losses['naive_mae']:17.5g}",
             naive_verdict(losses, hint)]
    return losses, lines


def run(args: argparse.Namespace, out: str) -> dict:
    """Train, evaluate and save as ``fastrnn train`` does.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``train`` options.
    out : str
        Where to save the model.

    Returns
    -------
    dict
        ``mse``, ``naive_mse`` (levels, scaled by each target's training standard
        deviation), ``mae``, ``naive_mae`` (data units), ``n_train``, ``n_val``,
        ``transforms``.

    Raises
    ------
    TrainError
        For unusable data or a series too short for the settings.
    """
    series = read_series(args.data)
    targets = select_targets(series, args.target)
    values = series.values
    T, F = values.shape
    split = int(round(T * (1.0 - args.val_fraction)))
    try:
        prep = Preparation.fit(values, series.names, targets, args.transform, args.window,
                               args.horizon, max(split, 3))
    except PreparationError as e:
        raise TrainError(f"{args.data}: {e}") from None
    train_at = prep.origins(split, known=True)
    val_at = prep.origins(T, known=True, start=split - 1)
    if len(train_at) < 1 or len(val_at) < 1:
        need = math.ceil((prep.lag + args.window + args.horizon)
                         / min(args.val_fraction, 1 - args.val_fraction))
        raise TrainError(f"{args.data}: {T} time steps is too short for --window {args.window} "
                         f"--horizon {args.horizon} --val-fraction {args.val_fraction:g} "
                         f"(needs about {need})")
    x_train, y_train = prep.inputs(values, train_at), prep.outputs(values, train_at)
    x_val, y_val = prep.inputs(values, val_at), prep.outputs(values, val_at)

    set_random_seed(args.seed)
    model = build_model(args.cell, args.units, args.layers, args.window, F,
                        args.horizon * len(targets), args.lr)
    label = _label(model)
    tnames = ", ".join(series.names[j] for j in targets)
    print(f"fastrnn train: {args.data}, {T:,} time steps x {F} column(s)"
          + (f" (left out, not numbers: {', '.join(series.skipped)})" if series.skipped else ""))
    print(f"  task     forecast {tnames} {args.horizon} step(s) ahead from the last "
          f"{args.window} steps of every column")
    why = " (auto: differences where a Dickey-Fuller test finds no stationarity)" \
        if args.transform == "auto" else ""
    print(f"  inputs   {prep.describe()}{why}, scaled by the training part's mean and std")
    print(f"  data     {len(x_train):,} training windows (steps 0-{split - 1}), "
          f"{len(x_val):,} validation windows (steps {split}-{T - 1})")
    print(f"  model    {label} -> Dense({args.horizon * len(targets)}), "
          f"{model.count_params():,} parameters, Adam(lr={args.lr:g}), loss mse")
    print()
    sys.stdout.flush()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_data=(x_val, y_val), verbose=0 if args.quiet else 1)

    pred = model.predict(x_val, batch_size=256, verbose=0)
    scale = values[:split][:, targets].std(axis=0)
    losses, lines = validation_report(prep, values, val_at, pred, scale, label,
                                      _hint(prep, values, split))
    print()
    print(f"Validation on the last {args.val_fraction:.0%} of the series "
          f"({len(x_val):,} windows; forecasts in data units, MSE of errors divided by each "
          "target's training std):")
    for line in lines:
        print(line)

    meta = {**prep.to_meta(), "label": label, "scale": scale.tolist()}
    save_with_metadata(model, out, FORECAST_MEMBER, meta)
    print()
    print(f"Saved the model to {out}, with its inputs' transforms and scaling (apply it to "
          f"new data with: fastrnn predict {out} FILE).")
    if args.plot:
        j = 0  # the first target, its last forecast step
        levels = prep.to_levels(pred, values, val_at)[:, -1, j]
        steps = val_at + args.horizon
        plot_forecast(args.plot, steps, prep.truth(values, val_at)[:, -1, j], levels,
                      prep.naive(values, val_at)[:, -1, j], series.names[targets[j]],
                      args.horizon, label,
                      f"fastrnn train: validation forecast of {series.names[targets[j]]!r}")
        print(f"Plotted the validation forecast of {series.names[targets[j]]!r} to {args.plot}")
    return {**losses, "n_train": len(x_train), "n_val": len(x_val),
            "transforms": prep.transforms}
