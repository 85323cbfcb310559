"""What ``fastrnn train`` fits besides the network, and ``fastrnn predict`` applies again.

A forecaster sees a series ``values`` (time, columns) through a :class:`Preparation`:

1. a transform of each column, chosen on the training part: its levels (``none``), its
   differences ``v[t] - v[t-1]`` (``diff``) or its returns ``v[t] / v[t-1] - 1``
   (``return``); ``auto`` takes differences of a column that looks non-stationary (a
   Dickey-Fuller test on the training part cannot reject a unit root, as for a random walk
   or a trend) and levels of the others;
2. a scaling of each transformed column by the training part's mean and standard deviation.

Samples are windows of ``window`` scaled steps; the target is the scaled transform of the
next ``horizon`` steps of the target columns, and a prediction goes back to levels by the
inverse scaling and transform from the last observed value. The preparation is saved in the
model file (member ``fastrnn-forecast.json``), so new data is prepared exactly as in training.
Nothing here imports matplotlib unless a plot is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FORECAST_MEMBER", "TRANSFORMS", "Preparation", "compare_with_naive",
           "dickey_fuller", "naive_verdict", "plot_forecast"]

FORECAST_MEMBER = "fastrnn-forecast.json"
#: ``--transform`` choices (``auto`` resolves to ``none`` or ``diff`` for each column).
TRANSFORMS = ("auto", "none", "diff", "return")
#: The 5% critical value of the Dickey-Fuller t statistic with a constant (MacKinnon).
DF_CRITICAL_5 = -2.86
_NAMES = {"none": "levels", "diff": "differences", "return": "returns"}


class PreparationError(ValueError):
    """Data the preparation cannot apply to (e.g. returns of a value that is not positive)."""


def dickey_fuller(x: np.ndarray) -> float:
    """The Dickey-Fuller t statistic of ``dx[t] = a + b * x[t-1] + e[t]``.

    Below :data:`DF_CRITICAL_5` (-2.86) the series is stationary at the 5% level; above it a
    unit root (a random walk, a trend) cannot be rejected.

    Parameters
    ----------
    x : numpy.ndarray
        One series, at least 3 values.

    Returns
    -------
    float
        The t statistic of ``b``; ``-inf`` for a constant series, 0 for an exactly linear
        one.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 3 or np.ptp(x) == 0:
        return -math.inf
    dx, lag = np.diff(x), x[:-1]
    a = np.column_stack([np.ones_like(lag), lag])
    coef = np.linalg.lstsq(a, dx, rcond=None)[0]
    resid = dx - a @ coef
    rss = float(resid @ resid)
    if rss <= 1e-20 * max(float(dx @ dx), 1e-300):  # an exact fit: a line, or a geometric decay
        return 0.0 if abs(coef[1]) < 1e-9 else -math.inf
    var_b = rss / max(len(dx) - 2, 1) * np.linalg.pinv(a.T @ a)[1, 1]
    return float(coef[1] / math.sqrt(var_b))


def _apply(kind: str, v: np.ndarray) -> np.ndarray:
    """One column's transform; rows 1.. of ``v`` (row 0 is lost to diff and return)."""
    if kind == "diff":
        return v[1:] - v[:-1]
    if kind == "return":
        return v[1:] / v[:-1] - 1.0
    return v[1:]


@dataclass
class Preparation:
    """The transform and scaling of each column, the window and the forecast horizon.

    Parameters
    ----------
    columns : list of str
        The input columns, in order.
    targets : list of int
        The forecast columns (indices into ``columns``).
    transforms : list of str
        ``"none"``, ``"diff"`` or ``"return"`` for each column.
    mean, std : numpy.ndarray
        The scaling of each transformed column (training part).
    window, horizon : int
        Steps seen, steps forecast.
    """

    columns: list[str]
    targets: list[int]
    transforms: list[str]
    mean: np.ndarray
    std: np.ndarray
    window: int
    horizon: int

    @property
    def lag(self) -> int:
        """Steps lost at the start to the transform (1 if any column is differenced)."""
        return int(any(t != "none" for t in self.transforms))

    @property
    def first_origin(self) -> int:
        """The first step a window can end at."""
        return self.lag + self.window - 1

    @classmethod
    def fit(cls, values: np.ndarray, columns: list[str], targets: list[int], transform: str,
            window: int, horizon: int, split: int) -> Preparation:
        """Choose the transforms and fit the scaling on steps ``0 .. split - 1``.

        Parameters
        ----------
        values : numpy.ndarray
            The series (time, columns).
        columns : list of str
        targets : list of int
        transform : str
            One of :data:`TRANSFORMS`, for every column.
        window, horizon : int
        split : int
            The first validation step.

        Returns
        -------
        Preparation

        Raises
        ------
        PreparationError
            For returns of a column with a value that is not positive.
        """
        if transform == "auto":
            kinds = ["diff" if dickey_fuller(values[:split, j]) > DF_CRITICAL_5 else "none"
                     for j in range(values.shape[1])]
        else:
            kinds = [transform] * values.shape[1]
        prep = cls(list(columns), list(targets), kinds, np.zeros(values.shape[1]),
                   np.ones(values.shape[1]), window, horizon)
        u = prep.transformed(values[:split])
        std = u.std(axis=0)
        std[~(std > 0)] = 1.0
        prep.mean, prep.std = u.mean(axis=0), std
        return prep

    def transformed(self, values: np.ndarray) -> np.ndarray:
        """Each column's transform, rows for steps ``lag .. T - 1`` (unscaled).

        Parameters
        ----------
        values : numpy.ndarray
            The series (time, columns).

        Returns
        -------
        numpy.ndarray
            Shape ``(T - lag, columns)``.

        Raises
        ------
        PreparationError
            For returns of a column with a value that is not positive.
        """
        for j, kind in enumerate(self.transforms):
            if kind == "return" and not (values[:, j] > 0).all():
                t = int(np.argmin(values[:, j] > 0))
                raise PreparationError(
                    f"returns of column {self.columns[j]!r} need positive values, but time "
                    f"step {t} holds {values[t, j]:g} (try --transform diff)")
        if not self.lag:
            return values.astype(np.float64, copy=True)
        return np.column_stack([_apply(k, values[:, j])
                                for j, k in enumerate(self.transforms)])

    def scaled(self, values: np.ndarray) -> np.ndarray:
        """:meth:`transformed`, minus the training mean, over the training std.

        Parameters
        ----------
        values : numpy.ndarray
            The series (time, columns).

        Returns
        -------
        numpy.ndarray
            Shape ``(T - lag, columns)``.
        """
        return (self.transformed(values) - self.mean) / self.std

    def origins(self, n_steps: int, known: bool, start: int = 0) -> np.ndarray:
        """The steps windows end at: from ``max(start, first_origin)`` to the last step
        (``known``: the last whose ``horizon`` next steps are in the series).

        Parameters
        ----------
        n_steps : int
            The series' length.
        known : bool
            Only origins whose forecast steps are all in the series.
        start : int
            The first origin wanted.

        Returns
        -------
        numpy.ndarray
            int64 steps (maybe empty).
        """
        last = n_steps - 1 - (self.horizon if known else 0)
        return np.arange(max(start, self.first_origin), last + 1, dtype=np.int64)

    def inputs(self, values: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """The scaled windows ending at ``origins``: shape (n, window, columns), float32.

        Parameters
        ----------
        values : numpy.ndarray
            The series (time, columns).
        origins : numpy.ndarray
            Steps from :meth:`origins`.

        Returns
        -------
        numpy.ndarray
        """
        z = self.scaled(values)
        w = np.lib.stride_tricks.sliding_window_view(z, self.window, axis=0)  # (n, F, W)
        w = w[origins - self.first_origin].transpose(0, 2, 1)
        return np.ascontiguousarray(w, dtype=np.float32)

    def outputs(self, values: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """The training targets of windows ending at ``origins``: the scaled transform of
        the next ``horizon`` steps of the target columns, (n, horizon * targets) float32.

        Parameters
        ----------
        values : numpy.ndarray
        origins : numpy.ndarray
            Origins whose forecast steps are in ``values``.

        Returns
        -------
        numpy.ndarray
        """
        z = self.scaled(values)
        rows = origins[:, None] + np.arange(1, self.horizon + 1) - self.lag  # (n, H)
        y = z[rows][:, :, self.targets]
        return np.ascontiguousarray(y.reshape(len(origins), -1), dtype=np.float32)

    def to_levels(self, pred: np.ndarray, values: np.ndarray,
                  origins: np.ndarray) -> np.ndarray:
        """Predictions back in the data's units: (n, horizon, targets).

        Parameters
        ----------
        pred : numpy.ndarray
            The model's outputs (n, horizon * targets).
        values : numpy.ndarray
            The series the windows came from (for the last observed values).
        origins : numpy.ndarray

        Returns
        -------
        numpy.ndarray
            float64.
        """
        k = len(self.targets)
        p = pred.reshape(len(origins), self.horizon, k).astype(np.float64)
        p = p * self.std[self.targets] + self.mean[self.targets]
        last = values[origins][:, self.targets][:, None, :]       # (n, 1, K)
        out = np.empty_like(p)
        for i, j in enumerate(self.targets):
            kind = self.transforms[j]
            if kind == "diff":
                out[:, :, i] = last[:, :, i] + np.cumsum(p[:, :, i], axis=1)
            elif kind == "return":
                out[:, :, i] = last[:, :, i] * np.cumprod(1.0 + p[:, :, i], axis=1)
            else:
                out[:, :, i] = p[:, :, i]
        return out

    def truth(self, values: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """The target columns' next ``horizon`` values: (n, horizon, targets).

        Parameters
        ----------
        values : numpy.ndarray
        origins : numpy.ndarray
            Origins whose forecast steps are in ``values``.

        Returns
        -------
        numpy.ndarray
        """
        rows = origins[:, None] + np.arange(1, self.horizon + 1)
        return values[rows][:, :, self.targets].astype(np.float64)

    def naive(self, values: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """The "repeat the last value" forecast: (n, horizon, targets).

        Parameters
        ----------
        values : numpy.ndarray
        origins : numpy.ndarray

        Returns
        -------
        numpy.ndarray
        """
        last = values[origins][:, self.targets].astype(np.float64)
        return np.repeat(last[:, None, :], self.horizon, axis=1)

    def describe(self) -> str:
        """``differences of close; levels of volume``: the transform of each column.

        Returns
        -------
        str
        """
        groups: dict[str, list[str]] = {}
        for name, kind in zip(self.columns, self.transforms, strict=True):
            groups.setdefault(_NAMES[kind], []).append(name)
        return "; ".join(f"{k} of {', '.join(v)}" for k, v in groups.items())

    def to_meta(self) -> dict:
        """The JSON-serialisable description saved in the model file.

        Returns
        -------
        dict
        """
        return {"format": "fastrnn.forecast", "version": 2, "columns": self.columns,
                "targets": [self.columns[j] for j in self.targets],
                "transforms": self.transforms, "window": self.window,
                "horizon": self.horizon, "mean": self.mean.tolist(),
                "std": self.std.tolist(),
                "output_layout": "(horizon, targets) flattened, transformed and scaled"}

    @classmethod
    def from_meta(cls, meta: dict) -> Preparation:
        """Read :meth:`to_meta`'s output (version 1 files: levels, no transform).

        Parameters
        ----------
        meta : dict

        Returns
        -------
        Preparation

        Raises
        ------
        KeyError, ValueError, TypeError
            For a description that is incomplete or inconsistent.
        """
        columns = [str(c) for c in meta["columns"]]
        transforms = list(meta.get("transforms", ["none"] * len(columns)))
        mean = np.asarray(meta["mean"], dtype=np.float64)
        std = np.asarray(meta["std"], dtype=np.float64)
        if not (len(transforms) == len(mean) == len(std) == len(columns)) \
                or not set(transforms) <= {"none", "diff", "return"}:
            raise ValueError("the columns, transforms and scaling do not match")
        return cls(columns, [columns.index(str(t)) for t in meta["targets"]], transforms,
                   mean, std, int(meta["window"]), int(meta["horizon"]))


def compare_with_naive(pred: np.ndarray, truth: np.ndarray, naive: np.ndarray,
                       scale: np.ndarray) -> dict[str, float]:
    """The losses of a forecast and of the naive one, on levels.

    Parameters
    ----------
    pred, truth, naive : numpy.ndarray
        Levels (n, horizon, targets).
    scale : numpy.ndarray
        Each target's scale (its standard deviation on the training part): the MSE is of
        the errors divided by it, so targets of different units weigh alike.

    Returns
    -------
    dict
        ``mse``, ``naive_mse`` (scaled), ``mae``, ``naive_mae`` (data units).
    """
    s = np.where(scale > 0, scale, 1.0)
    return {"mse": float(np.mean(((pred - truth) / s) ** 2)),
            "naive_mse": float(np.mean(((naive - truth) / s) ** 2)),
            "mae": float(np.mean(np.abs(pred - truth))),
            "naive_mae": float(np.mean(np.abs(naive - truth)))}


def naive_verdict(losses: dict[str, float], hint: str) -> str:
    """One line: how the model's MSE compares with the naive forecast's, and why if worse.

    Parameters
    ----------
    losses : dict
        From :func:`compare_with_naive`.
    hint : str
        What may help, said when the model does not beat the naive forecast.

    Returns
    -------
    str
    """
    mse, naive = losses["mse"], losses["naive_mse"]
    if mse < naive:
        return (f"  -> the model beats the naive forecast: MSE {mse:.4g} against {naive:.4g} "
                f"({naive / mse if mse > 0 else math.inf:.2f}x lower)")
    ratio = mse / naive if naive > 0 else math.inf
    return (f"  -> the model does not beat the naive forecast: MSE {mse:.4g} against "
            f"{naive:.4g} for repeating the last value ({ratio:.2f}x); {hint}")


def plot_forecast(path: str, steps: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                  naive: np.ndarray | None, name: str, horizon: int, label: str, title: str,
                  history: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Plot a forecast ``horizon`` steps ahead against the truth (a PNG, via matplotlib).

    Parameters
    ----------
    path : str
        The PNG file.
    steps : numpy.ndarray
        The time step of each forecast value.
    truth : numpy.ndarray
        The true values at ``steps`` (NaN where unknown).
    pred : numpy.ndarray
        The forecast at ``steps``.
    naive : numpy.ndarray or None
        The naive forecast at ``steps`` (None: not drawn).
    name : str
        The column's name.
    horizon : int
        How far ahead each forecast value is.
    label : str
        The model's name in the legend.
    title : str
        The plot's title.
    history : tuple of numpy.ndarray, optional
        ``(steps, values)`` of the observed series, drawn in black behind everything.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4), dpi=110)
    if history is not None:
        ax.plot(*history, color="black", lw=1.2, label="truth")
    else:
        ax.plot(steps, truth, color="black", lw=1.2, label="truth")
    ax.plot(steps, pred, color="tab:blue", lw=1.2,
            label=f"{label} forecast, {horizon} step{'s' if horizon > 1 else ''} ahead")
    if naive is not None:
        ax.plot(steps, naive, color="tab:gray", lw=0.8, ls="--", label="last value (naive)")
    ax.set_xlabel("time step")
    ax.set_ylabel(name)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
