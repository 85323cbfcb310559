"""The package's layering (docs/architecture.md), read from the source's import statements.

* No import cycle among fastrnn's modules (imports at any depth of a module count).
* Only ``fastrnn._native`` imports the Cython bridge ``fastrnn._kernels``.
* Nothing below the top layer imports the Keras-style API, the drop-in, streaming, the CLI or
  the benchmark; the Keras-style API imports neither the drop-in nor the CLI.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import fastrnn

PKG = pathlib.Path(fastrnn.__file__).resolve().parent

#: The layers below the user-facing ones.
CORE = {"fastrnn", "fastrnn._cells", "fastrnn._threads", "fastrnn._validate", "fastrnn._native",
        "fastrnn.functional", "fastrnn.reference", "fastrnn._kernels"}
TOP = ("fastrnn.keras", "fastrnn.torch", "fastrnn.streaming", "fastrnn.cli", "fastrnn.bench")


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Each module's fastrnn imports (absolute names): ``from pkg import sub`` of a submodule
    depends on the submodule, a name defined in ``pkg`` on ``pkg`` itself."""
    graph: dict[str, set[str]] = {}
    files = sorted(PKG.rglob("*.py")) + sorted(PKG.rglob("*.pyx"))
    names = {_module_name(f) for f in files}
    for f in files:
        name = _module_name(f)
        if f.suffix == ".pyx":  # Cython: read its Python-level imports only
            src = "\n".join(line for line in f.read_text().splitlines()
                            if line.startswith(("import ", "from ")) and " cimport " not in line)
        else:
            src = f.read_text()
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("fastrnn"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if not mod.startswith("fastrnn"):
                    continue
                subs = {f"{mod}.{a.name}" for a in node.names} & names
                deps.update(subs)
                if len(subs) < len(node.names):  # names defined in mod itself
                    deps.add(mod)
        deps.discard(name)
        graph[name] = {d for d in deps if d in names}
    return graph


GRAPH = _imports()


def test_the_graph_is_read():
    assert "fastrnn._native" in GRAPH["fastrnn.functional"]
    assert "fastrnn._kernels" in GRAPH["fastrnn._native"]
    assert any(m.startswith("fastrnn.keras.") for m in GRAPH)


def test_no_import_cycle():
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(GRAPH.get(m, ())):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_only_native_imports_the_bridge():
    users = sorted(m for m, deps in GRAPH.items() if "fastrnn._kernels" in deps)
    assert users == ["fastrnn._native"]


@pytest.mark.parametrize("module", sorted(CORE - {"fastrnn"}))
def test_core_does_not_import_the_top_layers(module):
    bad = sorted(d for d in GRAPH.get(module, ()) if d.startswith(TOP))
    assert not bad, f"{module} imports {bad}"


def test_keras_api_imports_neither_the_dropin_nor_the_cli():
    for m, deps in GRAPH.items():
        if m.startswith("fastrnn.keras"):
            bad = sorted(d for d in deps if d.startswith(("fastrnn.torch", "fastrnn.cli",
                                                          "fastrnn.bench")))
            assert not bad, f"{m} imports {bad}"


@pytest.mark.parametrize("name", ["models", "layers", "optimizers", "callbacks", "utils"])
def test_keras_submodules_live_under_fastrnn_keras_only(name):
    """``keras.models`` is ``fastrnn.keras.models``; a guessed ``fastrnn.models`` fails loudly
    instead of resolving to something else (the README says so)."""
    import importlib

    assert importlib.import_module(f"fastrnn.keras.{name}").__name__ == f"fastrnn.keras.{name}"
    with pytest.raises(ModuleNotFoundError, match=f"fastrnn.{name}"):
        importlib.import_module(f"fastrnn.{name}")
