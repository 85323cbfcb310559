"""valgrind memcheck of tools/memcheck_workload.py against the installed build.

Fails when any valgrind report (invalid read/write, use of uninitialised memory, definite leak)
has a frame in fastrnn's own code (the C kernels or the Cython bridge). CPython and numpy have
known start-up reports of their own under valgrind; those have no fastrnn frame and are listed
only as a count.

    python tools/memcheck.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OURS = re.compile(r"\b(fr_\w+|__pyx_\w+|_kernels\.c|csrc/)")


def main() -> int:
    if shutil.which("valgrind") is None:
        print("memcheck: valgrind is not installed")
        return 1
    cmd = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite", sys.executable,
           os.path.join(HERE, "memcheck_workload.py")]
    env = {**os.environ, "PYTHONMALLOC": "malloc", "OMP_NUM_THREADS": "2"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    if res.returncode != 0 or "ok" not in res.stdout:
        print(res.stdout, res.stderr[-4000:])
        print(f"memcheck: the workload failed under valgrind (exit {res.returncode})")
        return 1
    # split the report into blocks separated by "==PID== " blank lines
    blocks, cur = [], []
    for line in res.stderr.splitlines():
        if re.fullmatch(r"==\d+==\s*", line):
            if cur:
                blocks.append(cur)
            cur = []
        else:
            cur.append(line)
    if cur:
        blocks.append(cur)
    kinds = ("Invalid", "uninitialised", "definitely lost", "Mismatched", "overlap")
    reports = [b for b in blocks if any(k in b[0] for k in kinds)]
    ours = [b for b in reports if any(OURS.search(line) for line in b)]
    for b in ours:
        print("\n".join(b[:25]))
        print()
    print(f"memcheck: {len(reports)} valgrind reports, {len(ours)} with a fastrnn frame")
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main())
