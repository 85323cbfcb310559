"""The peak-memory study: fastrnn's inference against training, one fresh process per case.

Inference keeps no per-timestep memory (O(B*G*H) beyond the inputs, outputs and weights);
training's cache grows with T.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from fastrnn._cells import CELLS as _CELL_TABLE
from fastrnn.bench.cases import DEFAULT_MODES, Case, make_params
from fastrnn.bench.machine import THREAD_ENV
from fastrnn.bench.progress import Progress
from fastrnn.bench.runners import fastrnn_ops, no_states

MEMORY_BIH = (32, 128, 128)  # (B, I, H) of the peak-memory study ("small" row)
MEMORY_TS = (100, 1000)


class MemoryStudyError(RuntimeError):
    """A measurement process of the memory study failed (its last line of stderr)."""


def _maxrss_bytes() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def _proc_status_bytes(field_name: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(spec: str) -> dict[str, Any]:
    """Measure one (cell, mode, T, B, I, H) in this fresh process; called in a subprocess.

    Allocates inputs, weights (and dy), warms the kernels up on one step, resets the peak
    RSS (Linux ``VmHWM`` through ``/proc/self/clear_refs``) and takes the RSS as the
    baseline, runs the op once (training: forward + backward), reads the peak RSS.
    Elsewhere ``ru_maxrss`` stands in (it counts the parent's RSS at fork time as well,
    which is why the study runs before the timing grid grows the parent).

    Parameters
    ----------
    spec : str
        ``"cell,mode,T,B,I,H"`` (mode ``inference`` or ``training``).

    Returns
    -------
    dict
        The case, ``method``, ``baseline_bytes``, ``peak_bytes``, ``returned_bytes``,
        ``inputs_bytes``, ``weights_bytes``, ``working_bytes`` (peak - baseline - returned)
        and ``bgh_bytes`` (B*G*H float32s).
    """
    import numpy as np

    cell, mode, *dims = spec.split(",")
    T, B, I, H = (int(d) for d in dims)
    ops = fastrnn_ops()
    case = Case("memory", T, B, I, H, cell, mode)
    p = make_params(case)
    w = [p[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    fwd = getattr(ops, f"{cell}_forward")
    bwd = getattr(ops, f"{cell}_backward")
    states = no_states(cell)
    training = mode == "training"

    def once(x: Any, dy: Any) -> list[Any]:
        out = fwd(x, *states, *w, training=training)
        arrays = [a for a in out[:-1]]
        if training:
            grads = bwd(out[-1], dy, *states)
            arrays += [g for g in grads if g is not None]
        return arrays

    once(p["x"][:1], p["dy"][:1])  # load everything, start the thread pool
    gc.collect()
    if _reset_peak_rss() and _proc_status_bytes("VmHWM") is not None:
        method = "VmHWM after clear_refs"
        base = _proc_status_bytes("VmRSS") or 0
        arrays = once(p["x"], p["dy"])
        peak = _proc_status_bytes("VmHWM") or 0
    else:
        method = "ru_maxrss"
        base = _maxrss_bytes()
        arrays = once(p["x"], p["dy"])
        peak = _maxrss_bytes()
    returned = int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))
    return {
        "cell": cell, "mode": mode, "T": T, "B": B, "I": I, "H": H, "method": method,
        "baseline_bytes": base, "peak_bytes": peak, "returned_bytes": returned,
        "inputs_bytes": int(p["x"].nbytes + (p["dy"].nbytes if training else 0)),
        "weights_bytes": int(sum(a.nbytes for a in w)),
        "working_bytes": peak - base - returned,
        "bgh_bytes": B * _CELL_TABLE[cell].gates * H * 4,
    }


def memory_study(cells: Sequence[str], threads: int, bih: tuple[int, int, int] = MEMORY_BIH,
                 Ts: Sequence[int] = MEMORY_TS, quiet: bool = False) -> list[dict[str, Any]]:
    """Peak RSS of fastrnn's inference vs training for each T, one fresh process per case.

    Parameters
    ----------
    cells : sequence of str
        The cells to measure.
    threads : int
        Threads of every measuring process.
    bih : tuple of int
        (B, I, H) of every case.
    Ts : sequence of int
        The sequence lengths.
    quiet : bool
        No progress bar.

    Returns
    -------
    list of dict
        :func:`memory_child`'s result per (cell, mode, T).

    Raises
    ------
    MemoryStudyError
        When a measuring process fails.
    """
    import fastrnn

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # big blocks via mmap: freed memory leaves the RSS
    for k in THREAD_ENV:
        env[k] = str(threads)
    B, I, H = bih
    plan = [(c, m, T) for c in cells for m in DEFAULT_MODES for T in Ts]
    progress = Progress(len(plan), enabled=not quiet)
    out = []
    try:
        for cell, mode, T in plan:
            progress.step(f"memory {cell} {mode} T={T}")
            spec = f"{cell},{mode},{T},{B},{I},{H}"
            proc = subprocess.run(
                [sys.executable, "-m", "fastrnn", "bench", "--memory-child", spec,
                 "--threads", str(threads)],
                capture_output=True, text=True, env=env, timeout=900)
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise MemoryStudyError(f"memory measurement {spec} failed: {err}")
            out.append(json.loads(lines[-1]))
    finally:
        progress.close()
    return out

