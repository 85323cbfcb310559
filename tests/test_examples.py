"""Smoke tests of ``examples/``: each script runs to the end with ``--quick``.

The examples are what a newcomer reads first; these tests make sure they keep working as
the library changes (run as subprocesses from a scratch directory, as a user would).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fastrnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
#: Where the package under test was imported from (src/ of a checkout, or site-packages).
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def _run(script: str, *args: str, cwd: str | os.PathLike) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny problems: no thread start-up or contention
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--quick", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _plot_args(name: str) -> list[str]:
    """``--plot NAME`` where matplotlib is installed (the examples run without it too)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    return ["--plot", name]


def test_every_example_is_smoke_tested() -> None:
    scripts = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert scripts == ["adding_problem.py", "sequence_classification.py", "sine_forecast.py",
                       "streaming.py", "torch_accelerate.py"]


def test_sine_forecast(tmp_path) -> None:
    plot = _plot_args("sine.png")
    proc = _run("sine_forecast.py", *plot, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "simple_rnn (SimpleRNN)" in proc.stdout and "Epoch 2/2" in proc.stdout
    assert "validation MSE: SimpleRNN" in proc.stdout
    assert "-step forecast: RMS error" in proc.stdout
    assert not plot or (tmp_path / "sine.png").stat().st_size > 1000


def test_adding_problem(tmp_path) -> None:
    plot = _plot_args("adding.png")
    proc = _run("adding_problem.py", *plot, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for cell in ("SimpleRNN", "LSTM", "GRU"):
        assert f"{cell}: validation MSE by epoch" in proc.stdout
    assert proc.stdout.count("learned it") + proc.stdout.count("did not learn it") == 3
    assert not plot or (tmp_path / "adding.png").stat().st_size > 1000


def test_sequence_classification(tmp_path) -> None:
    proc = _run("sequence_classification.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "embedding (Embedding)" in proc.stdout and "lstm (LSTM)" in proc.stdout
    assert "val_accuracy" in proc.stdout
    assert proc.stdout.count("% positive") == 6


def test_streaming(tmp_path) -> None:
    proc = _run("streaming.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "streamed 500 readings" in proc.stdout and "us per step" in proc.stdout
    diff = float(proc.stdout.split("whole sequence: ")[1].split()[0])
    assert diff < 1e-4  # streaming gives predict's numbers
    assert proc.stdout.count("if the next reading were") == 3


def test_torch_accelerate(tmp_path) -> None:
    pytest.importorskip("torch")
    proc = _run("torch_accelerate.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "model.gru is now fastrnn.torch.GRU" in proc.stdout
    diff = float(proc.stdout.split("differ from torch's by at most ")[1].split()[0])
    assert diff < 1e-4
    assert "torch's GRU" in proc.stdout and "fastrnn's GRU" in proc.stdout
    assert "loads unchanged into the plain torch model" in proc.stdout
