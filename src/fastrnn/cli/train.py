"""``fastrnn train``: fit a forecasting model to time series read from a CSV or .npy file.

The series (rows = time steps, columns = series) is split by time: the first part trains,
the last ``--val-fraction`` validates. Each column is standardised with the training part's
mean and standard deviation. Samples are windows of ``--window`` past steps of every column;
targets are the next ``--horizon`` steps of the ``--target`` columns. The model is
``[SimpleRNN|LSTM|GRU] x layers -> Dense(horizon * targets)`` trained with Adam on the mean
squared error, and its validation loss is reported beside the naive forecast that repeats
the last observed value.
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
from fastrnn.keras import optimizers
from fastrnn.keras.layers import GRU, LSTM, Dense, SimpleRNN
from fastrnn.keras.models import Sequential, set_random_seed

FORECAST_MEMBER = "fastrnn-forecast.json"
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


def make_windows(values: np.ndarray, window: int, horizon: int, targets: list[int],
                 start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``x`` (n, window, columns) and targets ``y`` (n, horizon * len(targets)).

    Sample ``i`` sees steps ``start + i - window .. start + i - 1`` and predicts steps
    ``start + i .. start + i + horizon - 1`` (``start >= window``).

    Parameters
    ----------
    values : numpy.ndarray
        The series (time, columns).
    window, horizon : int
        Past steps seen, future steps predicted.
    targets : list of int
        The predicted columns.
    start : int
        The first predicted step.

    Returns
    -------
    x, y : numpy.ndarray
        float32, contiguous.
    """
    v = values[start - window:]
    w = np.lib.stride_tricks.sliding_window_view(v, window + horizon, axis=0)  # (n, F, W+K)
    w = w.transpose(0, 2, 1)
    x = np.ascontiguousarray(w[:, :window, :], dtype=np.float32)
    y = np.ascontiguousarray(w[:, window:, targets], dtype=np.float32).reshape(len(w), -1)
    return x, y


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


def _plot(path: str, truth: np.ndarray, pred: np.ndarray, naive: np.ndarray, start: int,
          name: str, horizon: int, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4), dpi=110)
    t = np.arange(start, start + len(truth))
    ax.plot(t, truth, color="black", lw=1.2, label="truth")
    ax.plot(t, pred, color="tab:blue", lw=1.2,
            label=f"{label} forecast, {horizon} step{'s' if horizon > 1 else ''} ahead")
    ax.plot(t, naive, color="tab:gray", lw=0.8, ls="--", label="last value (naive)")
    ax.set_xlabel("time step")
    ax.set_ylabel(name)
    ax.set_title(f"fastrnn train: validation forecast of {name!r}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
        ``val_loss``, ``naive_loss`` (standardised MSE), ``mae``, ``naive_mae`` (data
        units), ``n_train``, ``n_val``.

    Raises
    ------
    TrainError
        For unusable data or a series too short for the settings.
    """
    series = read_series(args.data)
    targets = select_targets(series, args.target)
    T, F = series.values.shape
    split = int(round(T * (1.0 - args.val_fraction)))
    n_train = split - args.window - args.horizon + 1
    n_val = T - max(split, args.window) - args.horizon + 1
    if n_train < 1 or n_val < 1 or split < args.window:
        need = math.ceil((args.window + args.horizon) / min(args.val_fraction,
                                                            1 - args.val_fraction))
        raise TrainError(f"{args.data}: {T} time steps is too short for --window {args.window} "
                         f"--horizon {args.horizon} --val-fraction {args.val_fraction:g} "
                         f"(needs about {need})")

    mean = series.values[:split].mean(axis=0)
    std = series.values[:split].std(axis=0)
    std[std == 0] = 1.0
    z = (series.values - mean) / std
    x_train, y_train = make_windows(z[:split], args.window, args.horizon, targets,
                                    start=args.window)
    x_val, y_val = make_windows(z, args.window, args.horizon, targets, start=split)

    set_random_seed(args.seed)
    model = build_model(args.cell, args.units, args.layers, args.window, F,
                        args.horizon * len(targets), args.lr)
    cell_name = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}[args.cell]
    label = f"{cell_name}({args.units})" + (f" x {args.layers}" if args.layers > 1 else "")
    tnames = ", ".join(series.names[j] for j in targets)
    print(f"fastrnn train: {args.data}, {T:,} time steps x {F} column(s)"
          + (f" (left out, not numbers: {', '.join(series.skipped)})" if series.skipped else ""))
    print(f"  task     forecast {tnames} {args.horizon} step(s) ahead from the last "
          f"{args.window} steps of every column")
    print(f"  data     {len(x_train):,} training windows (steps 0-{split - 1}), "
          f"{len(x_val):,} validation windows (steps {split}-{T - 1})")
    print(f"  model    {label} -> Dense({args.horizon * len(targets)}), "
          f"{model.count_params():,} parameters, Adam(lr={args.lr:g}), loss mse")
    print()
    sys.stdout.flush()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              validation_data=(x_val, y_val), verbose=0 if args.quiet else 1)

    pred = model.predict(x_val, batch_size=256, verbose=0)
    last = x_val[:, -1, targets]                                  # (n, targets)
    naive = np.tile(last, (1, args.horizon))                       # same layout as y
    mse = float(np.mean((pred - y_val) ** 2))
    mse_naive = float(np.mean((naive - y_val) ** 2))
    scale = np.tile(std[targets], args.horizon)
    mae = float(np.mean(np.abs(pred - y_val) * scale))
    mae_naive = float(np.mean(np.abs(naive - y_val) * scale))
    print()
    print(f"Validation on the last {args.val_fraction:.0%} of the series "
          f"({len(x_val):,} windows):")
    print(f"  {'':22} {'MSE (standardised)':>19} {'MAE (data units)':>17}")
    print(f"  {label:22} {mse:19.5f} {mae:17.5g}")
    print(f"  {'last value (naive)':22} {mse_naive:19.5f} {mae_naive:17.5g}")
    if mse_naive > 0:
        ratio = mse_naive / mse if mse > 0 else math.inf
        verdict = (f"{ratio:.1f}x lower than" if ratio >= 1.05 else
                   "about the same as" if ratio > 0.95 else f"{1 / ratio:.1f}x higher than")
        print(f"  -> the model's validation loss is {verdict} the naive forecast's")

    meta = {"format": "fastrnn.forecast", "version": 1, "columns": series.names,
            "targets": [series.names[j] for j in targets], "window": args.window,
            "horizon": args.horizon, "mean": mean.tolist(), "std": std.tolist(),
            "output_layout": "(horizon, targets) flattened, standardised"}
    save_with_metadata(model, out, FORECAST_MEMBER, meta)
    print()
    print(f"Saved the model to {out} (its inputs are windows of shape ({args.window}, {F}), "
          f"standardised with the mean and std stored in the file's {FORECAST_MEMBER}).")
    if args.plot:
        j = 0  # the first target, its last forecast step
        col = (args.horizon - 1) * len(targets) + j
        t0 = split + args.horizon - 1
        _plot(args.plot, y_val[:, col] * std[targets[j]] + mean[targets[j]],
              pred[:, col] * std[targets[j]] + mean[targets[j]],
              naive[:, col] * std[targets[j]] + mean[targets[j]], t0,
              series.names[targets[j]], args.horizon, label)
        print(f"Plotted the validation forecast of {series.names[targets[j]]!r} to {args.plot}")
    return {"val_loss": mse, "naive_loss": mse_naive, "mae": mae, "naive_mae": mae_naive,
            "n_train": len(x_train), "n_val": len(x_val)}
