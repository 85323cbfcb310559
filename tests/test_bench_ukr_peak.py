"""bench/ukr_peak.c (the microkernel alone against the core's FMA peak) builds warning-free
(-Wall -Wextra -Werror, C11), prints its three rates on the CPU's best path and rejects a bad
row count."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from fastrnn import _native

ROOT = Path(__file__).resolve().parents[1]


def test_ukr_peak_builds_and_reports(tmp_path: Path) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "a C compiler builds the package's extension, so one is on PATH here"
    exe = tmp_path / "ukr_peak"
    build = subprocess.run(
        [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Icsrc", "bench/ukr_peak.c",
         "csrc/gemm_ukr.c", "-o", str(exe)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), "37", "7", "3", "1"], capture_output=True, text=True,
                         timeout=120)
    simd = _native.build_info()["simd_available"][-1]  # the CPU's best path, whatever FASTRNN_ARCH
    if simd == "generic":  # no AVX2+FMA: the program says so instead of running
        assert run.returncode == 2 and "no AVX2+FMA" in run.stderr
        return
    assert run.returncode == 0, run.stderr
    assert f"path {simd}, H=37 B=7 mr=3" in run.stdout
    for name in ("peak", "l1", "step"):
        m = re.search(rf"^{name} +([0-9.]+) GFLOP/s", run.stdout, re.M)
        assert m and float(m.group(1)) > 0, run.stdout
    bad = subprocess.run([str(exe), "37", "7", "99"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "mr <=" in bad.stderr
