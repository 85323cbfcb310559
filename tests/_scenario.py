"""Run a test scenario in a fresh interpreter, guarded against hangs (shared by the thread tests).

The scenario runs in a session of its own; a hang kills the session (forked children included)
and fails the test with what the scenario printed. The guard is never a timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import fastrnn

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))


def run_scenario(code: str, env: dict | None = None, guard_s: float = 120) -> str:
    """Run ``code`` (dedented) with fastrnn importable and OMP_NUM_THREADS unset; return stdout."""
    e = dict(os.environ, **(env or {}))
    e.pop("OMP_NUM_THREADS", None)
    e["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, *filter(None, [e.get("PYTHONPATH")])])
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=e, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=guard_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"scenario hung (killed after {guard_s} s)\n{out[-3000:]}\n{err[-3000:]}")
    assert p.returncode == 0, f"exit {p.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    return out
