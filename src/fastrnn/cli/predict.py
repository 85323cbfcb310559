"""``fastrnn predict``: apply a model saved by ``fastrnn train`` to a series.

The data file is read as ``train`` reads it, its columns are picked by the names the model
was trained on, and it is prepared as in training (the transforms and scaling stored in the
model file, :class:`fastrnn.cli.forecast.Preparation`). Every window of the series gets a
forecast of the next ``horizon`` steps, the last one beyond the end of the data; where the
file holds the truth, the forecasts are compared with the naive one.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from fastrnn.cli.demo import load_with_metadata
from fastrnn.cli.forecast import (
    FORECAST_MEMBER,
    Preparation,
    PreparationError,
    plot_forecast,
)
from fastrnn.cli.train import Series, TrainError, read_series, validation_report
from fastrnn.keras.models import ModelFileError, Sequential

__all__ = ["load_forecaster", "pick_columns", "run"]


def load_forecaster(path: str) -> tuple[Sequential, Preparation, dict]:
    """Read a model saved by ``fastrnn train`` and its preparation.

    Parameters
    ----------
    path : str
        The model file.

    Returns
    -------
    model : Sequential
    prep : Preparation
    meta : dict
        Everything saved beside the model (``label``, ``scale``, ...).

    Raises
    ------
    TrainError
        For a missing file, a file that is not a forecaster, or a broken description.
    """
    try:
        model, meta = load_with_metadata(path, FORECAST_MEMBER,
                                         "forecaster (make one with 'fastrnn train')")
    except FileNotFoundError:
        raise TrainError(f"{path}: no such model file (make one with 'fastrnn train')") \
            from None
    except ModelFileError as e:
        raise TrainError(str(e)) from None
    try:
        prep = Preparation.from_meta(meta)
    except (KeyError, ValueError, TypeError) as e:
        raise TrainError(f"{path}: its {FORECAST_MEMBER} is unreadable ({e})") from None
    shape = tuple(model.input_shape[1:])
    if shape != (prep.window, len(prep.columns)) \
            or model.output_shape[-1] != prep.horizon * len(prep.targets):
        raise TrainError(f"{path}: the model's input {shape} does not match its "
                         f"{FORECAST_MEMBER}")
    return model, prep, meta


def pick_columns(series: Series, columns: list[str], path: str) -> np.ndarray:
    """The model's columns of ``series``, in the model's order.

    By name when the data has every column the model was trained on; by position when the
    model's columns were unnamed (indices) and the data has as many.

    Parameters
    ----------
    series : Series
    columns : list of str
        The model's columns.
    path : str
        The data file (for messages).

    Returns
    -------
    numpy.ndarray
        (time, len(columns)).

    Raises
    ------
    TrainError
        For a column the data lacks.
    """
    if all(c in series.names for c in columns):
        return series.values[:, [series.names.index(c) for c in columns]]
    unnamed = columns == [str(i) for i in range(len(columns))]
    if unnamed and series.values.shape[1] == len(columns):
        return series.values
    missing = [c for c in columns if c not in series.names]
    if unnamed:
        raise TrainError(f"{path}: {series.values.shape[1]} column(s) of numbers, but the "
                         f"model was trained on {len(columns)}")
    raise TrainError(f"{path}: no column {missing[0]!r}, which the model was trained on "
                     f"(its columns: {', '.join(columns)}; the file's: "
                     f"{', '.join(series.names)})")


def _write_csv(path: str, prep: Preparation, origins: np.ndarray, levels: np.ndarray) -> None:
    names = [prep.columns[j] for j in prep.targets]
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["last_step"] + [f"{n}_t+{k}" for k in range(1, prep.horizon + 1)
                                    for n in names])
        for t, row in zip(origins, levels.reshape(len(origins), -1), strict=True):
            w.writerow([int(t)] + [f"{v:.10g}" for v in row])


def run(args: argparse.Namespace) -> dict:
    """Forecast as ``fastrnn predict`` does: print the summary, write ``--out`` and ``--plot``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``predict`` options (``model``, ``data``, ``out``, ``plot``).

    Returns
    -------
    dict
        ``origins`` (the last step of each window), ``forecast`` (levels, (n, horizon,
        targets)) and, where the truth is in the file, the losses of
        :func:`fastrnn.cli.train.validation_report`.

    Raises
    ------
    TrainError
        For an unusable model or data file.
    """
    model, prep, meta = load_forecaster(args.model)
    series = read_series(args.data)
    values = pick_columns(series, prep.columns, args.data)
    T = len(values)
    origins = prep.origins(T, known=False)
    if len(origins) < 1:
        lag = ", plus 1 for the differences or returns" if prep.lag else ""
        raise TrainError(f"{args.data}: {T} time step(s), but the model needs at least "
                         f"{prep.first_origin + 1} (its window of {prep.window}{lag})")
    try:
        x = prep.inputs(values, origins)
    except PreparationError as e:
        raise TrainError(f"{args.data}: {e}") from None
    pred = model.predict(x, batch_size=256, verbose=0)
    levels = prep.to_levels(pred, values, origins)
    label = str(meta.get("label", "model"))
    names = [prep.columns[j] for j in prep.targets]
    print(f"fastrnn predict: {args.model} ({label}; forecasts {', '.join(names)} "
          f"{prep.horizon} step(s) ahead from {prep.window} steps; {prep.describe()})")
    print(f"  data     {args.data}, {T:,} time steps: {len(origins):,} forecasts")
    result: dict = {"origins": origins, "forecast": levels}
    known = origins[origins <= T - 1 - prep.horizon]
    if len(known):
        scale = np.asarray(meta.get("scale", values[:, prep.targets].std(axis=0)), dtype=float)
        losses, lines = validation_report(
            prep, values, known, pred[:len(known)], scale, label,
            "for a random walk the last value is the best forecast there is")
        print(f"On the {len(known):,} windows whose next {prep.horizon} step(s) are in the "
              "file:")
        for line in lines:
            print(line)
        result.update(losses)
    print(f"Forecast after the last step ({T - 1}):")
    for i, n in enumerate(names):
        ahead = ", ".join(f"{v:.6g}" for v in levels[-1, :, i])
        print(f"  {n}: {ahead}")
    if args.out:
        _write_csv(args.out, prep, origins, levels)
        print(f"Wrote {len(origins):,} forecasts to {args.out} (one row per window, named by "
              "its last step; columns <target>_t+<k>, in the data's units).")
    if args.plot:
        steps = origins + prep.horizon
        truth = np.full(len(origins), np.nan)
        truth[:len(known)] = prep.truth(values, known)[:, -1, 0]
        plot_forecast(args.plot, steps, truth, levels[:, -1, 0], None, names[0],
                      prep.horizon, label, f"fastrnn predict: forecast of {names[0]!r}",
                      history=(np.arange(T), values[:, prep.targets[0]]))
        print(f"Plotted the forecast of {names[0]!r} to {args.plot}")
    return result
