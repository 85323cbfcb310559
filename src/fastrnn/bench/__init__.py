"""The benchmark behind ``python -m fastrnn bench``.

Times fastrnn's ops (``fastrnn.functional``) against the anchors on the public grid
(:data:`ROWS`), all in one process with one thread count: the NumPy reference, ``torch.nn``,
fastrnn's drop-in ``fastrnn.torch`` and ONNX Runtime (see :mod:`fastrnn.bench.runners`).

Each measurement: warm-up, then the median (or ``--stat min``) of ``--repeats`` samples;
calls faster than about 20 ms are looped inside a sample. Within a case the samples of the
implementations interleave round-robin, so that load from other processes hits them alike.
GFLOP/s count forward ``2*T*B*(I+H)*G*H``, training 3x (:func:`flop_count`) and are
compared with the fp32 GEMM peak (numpy ``a @ b`` on 2048x2048 float32, same threads,
measured at the start and at the end of the run, the better counting).

The modules, from the bottom up:

- :mod:`~fastrnn.bench.cases`: the grid, the cells, modes and implementations, a case and
  its FLOP count, a result, the inputs;
- :mod:`~fastrnn.bench.machine`: one thread count for every library; the machine's
  description;
- :mod:`~fastrnn.bench.runners`: each implementation set up for a case as one call;
- :mod:`~fastrnn.bench.timing`: warm-up and samples of one call, the GEMM peak;
- :mod:`~fastrnn.bench.progress`: the progress bar;
- :mod:`~fastrnn.bench.grid`: every implementation on every case, interleaved;
- :mod:`~fastrnn.bench.memory`: the peak-memory study;
- :mod:`~fastrnn.bench.report`: the JSON report, the text and Markdown tables, per-round
  ratios;
- :mod:`~fastrnn.bench.plot`: the chart;
- :mod:`~fastrnn.bench.cli`: the options and the run.

numpy is imported lazily on purpose: the thread count must reach OpenBLAS through the
environment before numpy loads it (see :func:`prepare_threads`); importing this package
loads no numpy.
"""

from __future__ import annotations

from fastrnn.bench.cases import (
    CELLS,
    CHECK_ATOL,
    DEFAULT_MODES,
    IMPL_ALIASES,
    IMPLS,
    INFERENCE_ONLY,
    LABELS,
    MODES,
    ROWS,
    SKIPPABLE,
    Case,
    Options,
    Result,
    flop_count,
    grid_cases,
    make_params,
)
from fastrnn.bench.cli import BenchError, add_arguments, positive_int, run
from fastrnn.bench.grid import PAUSE_S, run_grid
from fastrnn.bench.machine import cpu_model, pin_blas_threads, prepare_threads
from fastrnn.bench.memory import (
    MEMORY_BIH,
    MEMORY_TS,
    MemoryStudyError,
    memory_child,
    memory_study,
)
from fastrnn.bench.plot import write_plot
from fastrnn.bench.progress import Progress
from fastrnn.bench.report import (
    NOISE_SPREAD,
    ROUND_MIN,
    SCHEMA,
    build_report,
    format_markdown,
    format_memory,
    format_text,
    round_ratio,
)
from fastrnn.bench.runners import (
    LR,
    Runner,
    build_runner,
    fastrnn_ops,
    onnx_model_bytes,
    probe_impls,
    to_onnx_gates,
)
from fastrnn.bench.timing import GEMM_N, MIN_SAMPLE_S, Timer, gemm_peak, measure

__all__ = [
    "CELLS", "CHECK_ATOL", "DEFAULT_MODES", "GEMM_N", "IMPLS", "IMPL_ALIASES",
    "INFERENCE_ONLY", "LABELS", "LR", "MEMORY_BIH", "MEMORY_TS", "MIN_SAMPLE_S", "MODES",
    "NOISE_SPREAD", "PAUSE_S", "ROUND_MIN", "ROWS", "SCHEMA", "SKIPPABLE", "BenchError", "Case",
    "MemoryStudyError", "Options", "Progress", "Result", "Runner", "Timer", "add_arguments",
    "build_report", "build_runner", "cpu_model", "fastrnn_ops", "flop_count", "format_markdown",
    "format_memory", "format_text", "gemm_peak", "grid_cases", "make_params", "measure",
    "memory_child", "memory_study", "onnx_model_bytes", "pin_blas_threads", "positive_int",
    "prepare_threads", "probe_impls", "round_ratio", "run", "run_grid", "to_onnx_gates",
    "write_plot",
]
