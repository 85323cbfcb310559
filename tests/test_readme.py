"""The README's Python snippets run as a user runs them: pasted at the repository root.

Each ```python block of README.md runs in a fresh interpreter whose first import path is the
repository root (as a Python prompt or ``python -c`` started there has), with its working
directory in a temporary folder so that the files a snippet saves do not land in the checkout.
The package lives in ``src/``, so the root holds no ``fastrnn`` folder that could shadow the
installed package (a folder without the compiled extension: ``cannot import name
'_kernels'``).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

import fastrnn

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG_PARENT = str(pathlib.Path(fastrnn.__file__).resolve().parents[1])
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_root_does_not_shadow_the_package():
    assert not (ROOT / "fastrnn").exists()
    assert (ROOT / "src" / "fastrnn" / "__init__.py").is_file()


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("i", range(len(SNIPPETS)))
def test_readme_snippet_runs_at_the_repository_root(i, tmp_path):
    code = SNIPPETS[i]
    if "import torch" in code:
        pytest.importorskip("torch")
    prog = f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + code
    env = dict(os.environ)
    # where the package under test is installed (site-packages, or src/ of a checkout)
    env["PYTHONPATH"] = os.pathsep.join([PKG_PARENT, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("KERAS_BACKEND", "torch")
    proc = subprocess.run([sys.executable, "-c", prog], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
