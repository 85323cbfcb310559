"""The guides' code: every script in ``docs/guides/`` runs with ``--quick`` and shows its point.

The documentation pages include these scripts verbatim (``literalinclude``), so what the
pages show is what runs here. The docs themselves are built by ``.ci/run``
(``python -m sphinx -W --keep-going -b html docs <out>``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import fastrnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDES = os.path.join(ROOT, "docs", "guides")
#: Where the package under test was imported from (src/ of a checkout, or site-packages).
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def _run(script: str, cwd: str | os.PathLike) -> str:
    """Run a guide with --quick from a scratch directory; its stdout (fails on a non-zero exit)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny problems: no thread start-up or contention
    env.setdefault("KERAS_BACKEND", "torch")
    proc = subprocess.run([sys.executable, os.path.join(GUIDES, script), "--quick"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _numbers(line: str) -> list[float]:
    return [float(v) for v in re.findall(r"\d+\.\d+(?:e[-+]\d+)?", line)]


def test_every_guide_is_tested_and_shown() -> None:
    scripts = sorted(f for f in os.listdir(GUIDES) if f.endswith(".py"))
    assert scripts == ["accelerate_pytorch.py", "bidirectional_deep.py", "io_configurations.py",
                       "long_dependencies.py", "seq2seq_functional.py", "streaming_realtime.py",
                       "variable_length.py"]
    for script in scripts:  # each script is shown by the page of the same name
        with open(os.path.join(GUIDES, script[:-3] + ".md"), encoding="utf-8") as f:
            assert f"```{{literalinclude}} {script}\n" in f.read()
    with open(os.path.join(GUIDES, "index.md"), encoding="utf-8") as f:
        toc = f.read()
    pages = sorted(f[:-3] for f in os.listdir(GUIDES) if f.endswith(".md") and f != "index.md")
    assert all(f"\n{page}\n" in toc for page in pages)


def test_seq2seq_functional(tmp_path) -> None:
    out = _run("seq2seq_functional.py", tmp_path)
    assert "Connected to" in out and "encoder[0][1]" in out
    acc = _numbers(next(l for l in out.splitlines() if l.startswith("teacher-forced")))
    assert acc[0] > 0.9  # chance is 1/6
    symbols, sequences = _numbers(next(l for l in out.splitlines()
                                       if l.startswith("greedy decoding")))
    assert symbols > 0.9 and sequences > 0.6


def test_io_configurations(tmp_path) -> None:
    out = _run("io_configurations.py", tmp_path)
    shapes = {"one-to-one": "x (1024, 1, 2) -> y (1024, 1)",
              "one-to-many": "x (1024, 2) -> y (1024, 12, 1)",
              "many-to-one": "x (1024, 12, 2) -> y (1024, 1)",
              "many-to-many": "x (1024, 12, 1) -> y (1024, 12, 1)"}
    for name, shape in shapes.items():
        line = next(l for l in out.splitlines() if l.strip().startswith(name + ":"))
        assert shape in line
        mse, baseline = _numbers(line.split("MSE")[1])
        assert mse < 0.5 * baseline, line  # every model learned something


def test_long_dependencies(tmp_path) -> None:
    out = _run("long_dependencies.py", tmp_path)
    baseline = _numbers(out.split("scores MSE")[1].splitlines()[0])[0]
    mse = {cell: _numbers(out.split(f"{cell}: validation MSE")[1].split()[0])[0]
           for cell in ("SimpleRNN", "LSTM", "GRU")}
    assert mse["SimpleRNN"] > 0.5 * baseline and "stays at the baseline" in out
    assert mse["LSTM"] < 0.25 * baseline and mse["GRU"] < 0.25 * baseline
    assert out.count("learned it") == 2


def test_bidirectional_deep(tmp_path) -> None:
    out = _run("bidirectional_deep.py", tmp_path)
    zero = _numbers(out.split("scores MSE")[1])[0]
    mse = {line.split(":")[0].strip(): _numbers(line.split("MSE")[1])[0]
           for line in out.splitlines() if "weights, validation MSE" in line}
    assert mse["LSTM"] > 0.8 * zero  # it cannot see the next step
    assert mse["Bidirectional(LSTM)"] < 0.1 * zero
    assert mse["2 x Bidirectional(LSTM)"] < 0.1 * zero
    assert "8,769 weights" in out  # LSTM(32) on 1 feature, both directions, + Dense(1)


def test_variable_length(tmp_path) -> None:
    out = _run("variable_length.py", tmp_path)
    padded = _numbers(out.split("each sequence alone: largest difference")[1])[0]
    unmasked = _numbers(out.split("without Masking: largest difference")[1])[0]
    assert padded < 1e-5 < 1e-2 < unmasked
    assert "pre-padding: ValueError: mask is not a padding mask at the end" in out


def test_streaming_realtime(tmp_path) -> None:
    out = _run("streaming_realtime.py", tmp_path)
    assert "streamed 300 readings" in out and "us per step" in out
    assert _numbers(out.split("whole sequence: largest difference")[1])[0] < 1e-4
    assert "restored state, same reading, same answer: True" in out
    assert "3 sensors at once: each step returns (3, 1)" in out


def test_accelerate_pytorch(tmp_path) -> None:
    pytest.importorskip("torch")
    out = _run("accelerate_pytorch.py", tmp_path)
    assert "model.gru is now fastrnn.torch.GRU" in out
    assert _numbers(out.split("differ by at most")[1])[0] < 1e-4
    assert "after restore: torch.nn.modules.rnn.GRU" in out
    assert "training step: torch" in out
    assert "output (16, 50, 128), h_n (2, 16, 64)" in out
