"""What a newcomer reads before any code: ``help(fastrnn)``, the licence, the package metadata
and what ``git status`` shows after the README's commands."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fastrnn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_package_docstring_is_a_map_of_the_apis() -> None:
    doc = fastrnn.__doc__
    for name in ("fastrnn.keras", "fastrnn.torch", "fastrnn.functional", "fastrnn.reference",
                 "model.stream()", "fastrnn demo", "fastrnn --help", "python -m fastrnn"):
        assert name in doc, name


def test_package_docstring_example_runs() -> None:
    """The example in ``help(fastrnn)`` runs as printed (in a fresh process, like a user)."""
    doc = fastrnn.__doc__
    code = doc[doc.index("Example::") + len("Example::"):]
    lines = [ln[4:] for ln in code.splitlines() if ln.startswith("    ")]
    assert len(lines) == 5
    env = dict(os.environ, OMP_NUM_THREADS="1")
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-c", "\n".join(lines)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Epoch 2/2" in proc.stdout


def test_license_file_matches_the_metadata() -> None:
    meta = _pyproject()["project"]
    assert meta["license"] == "BSD-3-Clause"
    assert meta["license-files"] == ["LICENSE"]
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the fastrnn developers" in text
    assert "Neither the name of the copyright holder" in text


def test_authors_and_no_made_up_urls() -> None:
    meta = _pyproject()["project"]
    assert meta["authors"] == [{"name": "fastrnn developers"}]
    # a Project-URL must be an absolute URL (a relative "docs/" means nothing on an index or
    # in site-packages); the repository has no public address yet, so there are none
    for label, url in meta.get("urls", {}).items():
        assert url.startswith("https://"), (label, url)


def test_torch_extra_keeps_a_users_torch() -> None:
    """``pip install 'fastrnn[torch]'`` accepts any torch the drop-in works with (CI pins its
    own), so it never replaces the torch a user already has. 2.6: torch.library's
    register_vmap, which the drop-in's custom operators use."""
    (req,) = _pyproject()["project"]["optional-dependencies"]["torch"]
    assert req.replace(" ", "") == "torch>=2.6", req
    assert "==" not in req


def test_gitignore_hides_saved_models_but_no_tracked_file() -> None:
    if not os.path.isdir(os.path.join(ROOT, ".git")) and not os.path.isfile(
            os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")

    def ignored(*paths: str) -> set[str]:
        proc = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT,
                              capture_output=True, text=True)
        return set(proc.stdout.split())

    names = ["fastrnn-demo-model.fr", "prices.fr", "sub/dir/shakespeare.fr",
             ".fastrnn-demo-model.fr.abc123.tmp"]
    assert ignored(*names) == set(names)
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert "bench/results.png" in tracked
    assert ignored(*tracked) == set()
