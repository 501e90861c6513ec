"""The layering of ARCHITECTURE.md, checked: no import cycle between modules, no import upward.

Every `import` and `from … import` of every module is read with `ast`, at any depth — module
level, inside functions, under `if TYPE_CHECKING:` — so a function-level import cannot hide a
cycle. A module depends on the project modules it names; `from pkg import name` depends on
`pkg.name` when that is a module, else on `pkg`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("connectors", "db", "ingestion", "tacit", "training")

#: Bottom layer first (ARCHITECTURE.md); the most specific prefix wins. A module may import only
#: from its own layer or below.
LAYERS: list[tuple[str, ...]] = [
    ("connectors",),  # the connector contract and the pure vendor code
    ("db",),
    ("tacit.config", "tacit.context", "tacit.secrets", "tacit.errors", "tacit"),
    ("training",),
    ("ingestion.corpus",),
    ("ingestion.processing",),
    ("ingestion.worker",),
    ("ingestion.api", "ingestion"),
    ("connectors.notion.webhooks", "connectors.msgraph.webhooks"),  # vendors' platform halves
    ("connectors.sandbox",),  # local fake vendor servers, for the demo and the tests
    ("tacit.cli",),
]


def project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                deps.update(filter(None, (owner(alias.name) for alias in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    if found := owner(target):
                        deps.add(found)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(module: str) -> int:
    best, depth = -1, -1
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = level, prefix.count(".")
    assert best >= 0, f"{module} is in no layer of ARCHITECTURE.md"
    return best


def test_the_checker_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    a, b, init = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "__init__.py"
    init.write_text("")
    a.write_text("def f():\n    from pkg import b\n")
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    graph = import_graph({"pkg": init, "pkg.a": a, "pkg.b": b})
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_cycle_between_the_projects_modules() -> None:
    graph = import_graph(project_modules())
    assert len(graph) > 100
    assert cycles(graph) == []


def test_every_import_goes_to_the_same_layer_or_below() -> None:
    graph = import_graph(project_modules())
    upward = sorted(f"{module} → {dep}" for module, deps in graph.items() for dep in deps
                    if layer(dep) > layer(module))
    assert upward == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_folder_is_a_package(package: str) -> None:
    missing = [str(d.relative_to(ROOT)) for d in (ROOT / package).rglob("*") if d.is_dir()
               and d.name != "__pycache__" and any(d.glob("*.py")) and not (d / "__init__.py").exists()
               and "migrations" not in d.parts]
    assert missing == []
