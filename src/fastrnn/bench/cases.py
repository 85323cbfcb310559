"""What the benchmark measures: the grid of shapes, the cells, the modes and the implementations.

A :class:`Case` is one (row, cell, mode) of the grid with its FLOP count; a :class:`Result`
is the measurement of one implementation on one case; :class:`Options` is what a run
covers. The gate count of each cell comes from the cell table, :mod:`fastrnn._cells`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from fastrnn._cells import CELLS as _CELL_TABLE

#: The public grid: name -> (T, B, I, H).
ROWS: dict[str, tuple[int, int, int, int]] = {
    "stream": (200, 1, 64, 64),
    "small": (100, 32, 128, 128),
    "medium": (50, 16, 256, 256),
    "large": (100, 64, 512, 512),
    "xlarge": (100, 64, 1024, 1024),
}
#: The off-grid sweep (``--offgrid``): H and B not multiples of the microkernel tiles, I != H
#: (but for the issue's (40, 48, 300, 300)).
OFF_GRID: dict[str, tuple[int, int, int, int]] = {
    "off-60x24-I100-H200": (60, 24, 100, 200),
    "off-40x48-I300-H300": (40, 48, 300, 300),
    "off-50x20-I70-H130": (50, 20, 70, 130),
    "off-30x40-I200-H250": (30, 40, 200, 250),
    "off-100x7-I50-H100": (100, 7, 50, 100),
    # a small batch and a small layer: H = 72 is 2 blocks and a quarter, a step a few us
    "off-60x7-I40-H72": (60, 7, 40, 72),
    # a decode loop's call (beam search over 3 beams): one step, so nothing amortizes a per-call
    # cost such as packing the weights
    "off-1x3-I200-H300": (1, 3, 200, 300),
}
#: The cells, in the cell table's order (rnn, lstm, gru).
CELLS: tuple[str, ...] = tuple(_CELL_TABLE)
#: What a call does: forward only, training (all gradients), training on data (no dx).
MODES: tuple[str, ...] = ("inference", "training", "training-data")
#: The default grid's modes; "training-data" (the input is data that needs no gradient, as into
#: a first layer: backward without dx) is on request (--modes).
DEFAULT_MODES: tuple[str, ...] = ("inference", "training")
#: The precisions a run can cover (``--precision``); fastrnn's float32 is the default.
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16", "int8")
#: Other names accepted by ``--precision``.
PRECISION_ALIASES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "qint8": "int8"}


@dataclass(frozen=True)
class Impl:
    """One implementation the benchmark times (a row of :data:`IMPL_TABLE`).

    Attributes
    ----------
    name : str
        Its name on the command line and in the JSON report.
    label : str
        Its name in the tables.
    precision : str
        The precision it computes in (one of :data:`PRECISIONS`).
    inference_only : bool
        It has no training mode.
    cells : tuple of str
        The cells it implements.
    skippable : bool
        It may be skipped when one call cannot fit the time budget (the slow reference).
    """

    name: str
    label: str
    precision: str = "float32"
    inference_only: bool = False
    cells: tuple[str, ...] = tuple(_CELL_TABLE)
    skippable: bool = False


#: Every implementation, fastrnn first, then each precision's fastrnn row before its anchors.
#: A speed-up compares an implementation with fastrnn in the same precision; every output is
#: checked against fastrnn's float32 output on the same weights and inputs (for the reduced
#: precisions that difference is their error against float32).
IMPL_TABLE: tuple[Impl, ...] = (
    Impl("fastrnn", "fastrnn"),
    Impl("reference", "numpy reference", skippable=True),
    Impl("torch", "torch.nn"),
    Impl("dropin", "fastrnn.torch"),
    Impl("onnxruntime", "ONNX Runtime", inference_only=True),
    Impl("fastrnn-bf16", "fastrnn bf16", "bfloat16"),
    Impl("torch-bf16", "torch bf16 autocast", "bfloat16"),
    Impl("fastrnn-int8", "fastrnn int8", "int8", inference_only=True),
    Impl("torch-int8", "torch int8 dynamic", "int8", inference_only=True,
         cells=("lstm", "gru")),
    Impl("ort-int8", "ORT int8 DynamicQuantizeLSTM", "int8", inference_only=True,
         cells=("lstm",)),
)
#: The implementations (see :mod:`fastrnn.bench.runners`), fastrnn first.
IMPLS: tuple[str, ...] = tuple(i.name for i in IMPL_TABLE)
#: Other names accepted by ``--impls``.
IMPL_ALIASES: dict[str, str] = {
    "numpy": "reference",
    "ref": "reference",
    "fastrnn.torch": "dropin",
    "ort": "onnxruntime",
    "onnx": "onnxruntime",
    "fastrnn-bfloat16": "fastrnn-bf16",
    "torch-autocast": "torch-bf16",
    "torch-bfloat16": "torch-bf16",
    "torch-qint8": "torch-int8",
    "onnxruntime-int8": "ort-int8",
}
#: Each implementation's name in the tables.
LABELS: dict[str, str] = {i.name: i.label for i in IMPL_TABLE}
#: Each implementation's precision.
PRECISION_OF: dict[str, str] = {i.name: i.precision for i in IMPL_TABLE}
#: fastrnn's implementation in each precision (the base of that precision's speed-ups).
FASTRNN_OF: dict[str, str] = {"float32": "fastrnn", "bfloat16": "fastrnn-bf16",
                              "int8": "fastrnn-int8"}
#: Implementations skipped when one call cannot fit in the time budget (others always run).
SKIPPABLE: frozenset[str] = frozenset(i.name for i in IMPL_TABLE if i.skippable)
#: Implementations that only run inference.
INFERENCE_ONLY: frozenset[str] = frozenset(i.name for i in IMPL_TABLE if i.inference_only)


def base_of(impl: str) -> str:
    """The implementation ``impl``'s speed-up is measured against.

    Parameters
    ----------
    impl : str
        One of :data:`IMPLS`.

    Returns
    -------
    str
        fastrnn in the same precision; for fastrnn in a reduced precision, fastrnn's float32.
    """
    base = FASTRNN_OF[PRECISION_OF[impl]]
    return "fastrnn" if base == impl else base


def runs_case(impl: str, cell: str, mode: str) -> bool:
    """Whether ``impl`` implements ``cell`` in ``mode``.

    Parameters
    ----------
    impl : str
        One of :data:`IMPLS`.
    cell : str
        A cell of the cell table.
    mode : str
        One of :data:`MODES`.

    Returns
    -------
    bool
    """
    row = IMPL_TABLE[IMPLS.index(impl)]
    return cell in row.cells and not (row.inference_only and mode != "inference")


CHECK_ATOL = 1e-3  # max |y_impl - y_fastrnn| (float32, |y| <= 1) above this is a warning
#: The same check for an implementation in a reduced precision (its error against fastrnn's
#: float32 output): beyond this the rounding alone cannot explain it.
REDUCED_ATOL = 0.25


def check_atol(impl: str) -> float:
    """The largest max |y_impl - y_fastrnn float32| that is not reported as a mismatch.

    Parameters
    ----------
    impl : str
        One of :data:`IMPLS`.

    Returns
    -------
    float
        :data:`CHECK_ATOL` for a float32 implementation, :data:`REDUCED_ATOL` otherwise.
    """
    return CHECK_ATOL if PRECISION_OF[impl] == "float32" else REDUCED_ATOL


def flop_count(cell: str, mode: str, T: int, B: int, I: int, H: int) -> float:
    """FLOPs of one layer-direction over a sequence (the two GEMMs of every step).

    Forward ``2*T*B*(I+H)*G*H``; training (forward + backward) 3x that; training-data
    (no input gradient) 3x that less the dx GEMM ``2*T*B*I*G*H``.

    Parameters
    ----------
    cell : str
        A cell of the cell table (its gate count is G).
    mode : str
        One of :data:`MODES`.
    T, B, I, H : int
        Sequence length, batch, input size, hidden size.

    Returns
    -------
    float
    """
    G = _CELL_TABLE[cell].gates
    f = 2.0 * T * B * (I + H) * G * H
    if mode == "training-data":
        return 3.0 * f - 2.0 * T * B * I * G * H
    return 3.0 * f if mode == "training" else f


@dataclass(frozen=True)
class Case:
    """One cell of the grid: a shape, a cell type and a mode."""

    row: str
    T: int
    B: int
    I: int
    H: int
    cell: str
    mode: str

    @property
    def flops(self) -> float:
        """FLOPs of one call (:func:`flop_count`)."""
        return flop_count(self.cell, self.mode, self.T, self.B, self.I, self.H)

    @property
    def shape(self) -> str:
        """``"T,B,I,H"``."""
        return f"{self.T},{self.B},{self.I},{self.H}"


@dataclass
class Result:
    """The measurement of one implementation on one case."""

    case: Case
    impl: str
    status: str  # "ok" | "skipped" | "unavailable" | "error"
    reason: str = ""
    times_s: list[float] = field(default_factory=list)
    number: int = 1  # calls per timing sample
    warmup_only: bool = False
    max_abs_diff: float | None = None

    @property
    def median_s(self) -> float | None:
        """The median of the samples (None without samples)."""
        return statistics.median(self.times_s) if self.times_s else None

    def time_s(self, stat: str = "median") -> float | None:
        """The headline time: the median (default) or the minimum of the samples."""
        if not self.times_s:
            return None
        return min(self.times_s) if stat == "min" else statistics.median(self.times_s)

    @property
    def spread(self) -> float | None:
        """(max - min) / median of the samples (None with fewer than two)."""
        if len(self.times_s) < 2:
            return None
        med = statistics.median(self.times_s)
        return (max(self.times_s) - min(self.times_s)) / med if med > 0 else None

    def gflops(self, stat: str = "median") -> float | None:
        """GFLOP/s at the headline time (:meth:`time_s`); None without samples."""
        t = self.time_s(stat)
        return self.case.flops / t / 1e9 if t else None


@dataclass
class Options:
    """What to run and how (the parsed command line)."""

    rows: dict[str, tuple[int, int, int, int]]
    cells: list[str]
    modes: list[str]
    impls: list[str]
    threads: int
    repeats: int = 5
    budget_s: float | None = 10.0
    stat: str = "median"
    seed: int = 0
    quiet: bool = False
    precisions: list[str] = field(default_factory=lambda: ["float32"])


def grid_cases(opts: Options) -> list[Case]:
    """Every (row, cell, mode) to run, in run order (small rows first).

    Parameters
    ----------
    opts : Options
        The rows, cells and modes of the run.

    Returns
    -------
    list of Case
    """
    return [
        Case(row, *shape, cell, mode)
        for row, shape in opts.rows.items()
        for cell in opts.cells
        for mode in opts.modes
    ]


def make_params(case: Case, seed: int = 0) -> dict[str, Any]:
    """Random float32 inputs shared by every implementation of a (row, cell).

    Weights and biases are uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (PyTorch's init), x and
    dy standard normal; initial states are zero (None) everywhere.

    Parameters
    ----------
    case : Case
        Its shape and cell (the mode does not matter).
    seed : int
        Seed of the random generator.

    Returns
    -------
    dict
        ``x`` (T, B, I), ``w_ih`` (G*H, I), ``w_hh`` (G*H, H), ``b_ih``, ``b_hh`` (G*H,),
        ``dy`` (T, B, H), all float32.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    T, B, I, H, G = case.T, case.B, case.I, case.H, _CELL_TABLE[case.cell].gates
    k = 1.0 / math.sqrt(H)

    def u(*shape: int) -> Any:
        return (rng.random(shape, dtype=np.float32) * np.float32(2 * k) - np.float32(k))

    return {
        "x": rng.standard_normal((T, B, I), dtype=np.float32),
        "w_ih": u(G * H, I),
        "w_hh": u(G * H, H),
        "b_ih": u(G * H),
        "b_hh": u(G * H),
        "dy": rng.standard_normal((T, B, H), dtype=np.float32),
    }

