"""Sphinx configuration of fastrnn's documentation.

Build (from the repository root, after ``pip install -e .`` and
``pip install -r docs/requirements.txt``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference is generated from the docstrings (numpy style, rendered by
``sphinx.ext.napoleon``); the guides' code is the scripts in ``docs/guides/``, included with
``literalinclude`` and run by ``tests/test_docs.py``.
"""

from __future__ import annotations

import fastrnn

project = "fastrnn"
author = "the fastrnn developers"
copyright = "the fastrnn developers"
release = fastrnn.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# numpy-style docstrings only
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_inherit_docstrings = True

myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"fastrnn {release}"
html_static_path: list[str] = []
