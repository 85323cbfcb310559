"""Build script for fastrnn's native extension.

The C kernels in ``csrc/`` are compiled with strict C11 flags (``-Wall -Wextra``);
the Cython wrapper ``src/fastrnn/_kernels.pyx`` with the compiler's defaults. OpenMP is
probed by compiling a tiny program; ``FASTRNN_OPENMP=0|1`` forces the decision.

Environment switches (all optional):

- ``FASTRNN_OPENMP=0|1``  build without / insist on OpenMP.
- ``FASTRNN_NATIVE=1``    add ``-march=native`` (off by default: SIMD paths are chosen
  at run time through function-level target attributes).
- ``FASTRNN_SANITIZE=1``  build with AddressSanitizer and UndefinedBehaviorSanitizer, at
  ``-O2 -g1``: instrumented ``-O3`` of the unrolled microkernels compiles 2.5x slower
  (gemm_ukr.c 344 s against 138 s on a Zen 3 core); ``-O1`` compiles faster (70 s) but leaves
  the microkernels' loops rolled and made the sanitizer tests slower (6.5 against 4.5 min).
- ``FASTRNN_DEBUG=1``     build with ``-O0 -g``.

The C files and the Cython wrapper compile in parallel, one compiler process per CPU
(``build_ext -j N`` / ``--parallel N`` sets the count); the wrapper, the longest, starts
first. Python's default flags include ``-g``; the generated wrapper (40,000 lines) is built
with ``-g0`` (a third less compile time) unless ``FASTRNN_DEBUG=1`` or ``FASTRNN_SANITIZE=1``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.modified import newer_group

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def _env_flag(name: str) -> bool | None:
    val = os.environ.get(name)
    if val is None or val == "":
        return None
    return val.strip().lower() in ("1", "yes", "true", "on")


def _say(msg: str) -> None:
    print(f"fastrnn build: {msg}", file=sys.stderr, flush=True)


def _compiles(compiler_cmd: list[str], flags: list[str], source: str) -> bool:
    """Return True if ``source`` compiles and links with ``flags``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        cmd = [*compiler_cmd, src, "-o", os.path.join(tmp, "probe"), *flags]
        try:
            res = subprocess.run(cmd, capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return res.returncode == 0


OMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d %d\n", n, omp_get_max_threads());
    return 0;
}
"""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class BuildExt(build_ext):
    """Probe OpenMP, compile csrc/ (strict flags) and the Cython wrapper in parallel, link."""

    def build_extensions(self) -> None:
        compiler = self.compiler
        ctype = compiler.compiler_type
        if ctype == "msvc":
            base = ["/O2"]
            strict = []
            omp_c, omp_l = ["/openmp"], []
            cc_cmd = None
        else:
            base = ["-O3", "-fno-math-errno"]
            strict = ["-std=c11", "-Wall", "-Wextra", "-Wno-unknown-pragmas"]
            omp_c, omp_l = ["-fopenmp"], ["-fopenmp"]
            cc_cmd = list(compiler.compiler_so[:1])

        debug = _env_flag("FASTRNN_DEBUG")
        if debug:
            base = ["-O0", "-g"] if ctype != "msvc" else ["/Od", "/Zi"]
        if _env_flag("FASTRNN_NATIVE") and ctype != "msvc":
            base.append("-march=native")
            _say("FASTRNN_NATIVE=1: adding -march=native")
        link_extra: list[str] = []
        sanitize = _env_flag("FASTRNN_SANITIZE") and ctype != "msvc"
        if sanitize:
            # -g1: line tables for the reports' stack traces, not full debug information (the
            # wrapper's compile: 66 s against 195 s)
            san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g1"]
            base = [f for f in base if not f.startswith("-O")] + ["-O2"] + san
            link_extra += ["-fsanitize=address,undefined"]
            _say("FASTRNN_SANITIZE=1: building with ASan + UBSan")

        want_omp = _env_flag("FASTRNN_OPENMP")
        if want_omp is False:
            use_omp = False
            _say("OpenMP disabled by FASTRNN_OPENMP=0")
        else:
            ok = cc_cmd is not None and _compiles(cc_cmd, omp_c + omp_l, OMP_PROBE)
            if ctype == "msvc":
                ok = True
            if not ok and want_omp:
                raise RuntimeError("FASTRNN_OPENMP=1 but the compiler cannot build OpenMP code")
            use_omp = ok
            _say("OpenMP " + ("enabled (-fopenmp)" if use_omp else "not available: serial build"))
        if not use_omp:
            omp_c, omp_l = [], []

        wrapper_extra = [] if debug or sanitize or ctype == "msvc" else ["-g0"]
        jobs = self.parallel if isinstance(self.parallel, int) and self.parallel > 0 else None
        jobs = jobs or (1 if ctype == "msvc" else _cpu_count())
        _say("flags: " + " ".join(base + strict + omp_c))
        for ext in self.extensions:
            if not self.force and not newer_group([*ext.sources, *ext.depends],
                                                  self.get_ext_fullpath(ext.name), "newer"):
                _say(f"{ext.name} is up to date")
                continue  # build_extension skips it too
            c_sources = [s for s in ext.sources if s.startswith(CSRC + os.sep)]
            wrapper = [s for s in ext.sources if s not in c_sources]
            # (sources, keyword arguments of compiler.compile), longest first
            units = [(wrapper, {
                "macros": ext.define_macros, "include_dirs": ext.include_dirs,
                "extra_postargs": base + omp_c + wrapper_extra + list(ext.extra_compile_args or []),
                "depends": ext.depends})]
            units += [([src], {
                "include_dirs": [CSRC], "extra_postargs": base + strict + omp_c,
                "depends": glob.glob(os.path.join(CSRC, "*.h"))})
                for src in sorted(c_sources, key=os.path.getsize, reverse=True)]
            _say(f"compiling {len(c_sources) + len(wrapper)} files, {jobs} at a time")

            def compile_unit(unit: tuple[list[str], dict]) -> list[str]:
                srcs, kw = unit
                return compiler.compile(srcs, output_dir=self.build_temp, debug=self.debug, **kw)

            for obj in compiler.object_filenames(c_sources + wrapper, output_dir=self.build_temp):
                os.makedirs(os.path.dirname(obj) or ".", exist_ok=True)  # not from two threads
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                objects = [o for objs in pool.map(compile_unit, units) for o in objs]
            # compiled above: build_extension only links (when a source is newer than the .so)
            ext.depends = [*ext.depends, *wrapper, *c_sources]
            ext.sources = []
            ext.extra_objects = list(ext.extra_objects or []) + objects
            ext.extra_link_args = list(ext.extra_link_args or []) + omp_l + link_extra
        super().build_extensions()


def _extensions() -> list[Extension]:
    c_sources = sorted(glob.glob(os.path.join(CSRC, "*.c")))
    ext = Extension(
        "fastrnn._kernels",
        sources=[os.path.join("src", "fastrnn", "_kernels.pyx"), *c_sources],
        include_dirs=[CSRC, np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        depends=glob.glob(os.path.join(CSRC, "*.h")) + ["src/fastrnn/_kernels.pxd"],
    )
    return cythonize(
        [ext],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
        },
        quiet=True,
    )


if __name__ == "__main__":
    if shutil.which("cc") is None and os.name != "nt":
        _say("warning: no 'cc' on PATH; the build may fail")
    setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
