"""``bench/bench_keras.py`` builds every case in fastrnn and in Keras 3 (torch backend) from
the same code, copies the weights, checks the two models agree, and times an epoch of each:
here with one tiny epoch per case (no timing is asserted), run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import fastrnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "bench_keras.py")
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, *filter(None, [env.get("PYTHONPATH")])])
    env["KERAS_BACKEND"] = "torch"
    return subprocess.run([sys.executable, SCRIPT, "--threads", "1", *args],
                          env=env, capture_output=True, text=True, timeout=300)


def test_every_case_builds_in_both_libraries_with_equal_weights_and_runs(tmp_path):
    out = tmp_path / "bench.json"
    r = _run("--repeats", "1", "--samples", "16", "--batch-size", "8", "--timesteps", "12",
             "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["case"]: row for row in json.loads(out.read_text())["results"]}
    assert set(rows) == {"lstm_classifier", "rnn_forecaster", "seq2seq",
                         "conv_lstm_forecaster"}
    for case, row in rows.items():
        # same weights in -> the same predictions before any training
        assert 0 <= row["initial_max_abs_diff"] <= 1e-4, case
        assert len(row["fastrnn"]) == len(row["keras_torch"]) == 1, case
        assert row["fastrnn"][0] > 0 and row["keras_torch"][0] > 0 and row["ratio"] > 0, case
        assert case in r.stdout


def test_an_unknown_case_is_refused_by_name():
    r = _run("--cases", "seq2seq,transformer", "--no-keras")
    assert r.returncode != 0
    assert "--cases" in r.stderr and "transformer" in r.stderr and "seq2seq" in r.stderr
