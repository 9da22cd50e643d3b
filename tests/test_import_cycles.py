"""No module-level import cycles inside cgcbench's packages (issue 13: four existed).

A cycle makes import order matter: whichever module is imported first sees the other half
initialised. Imports inside functions and under ``TYPE_CHECKING`` are not cycles at import time
and are ignored; ``from pkg import submodule`` counts as an edge to ``pkg`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cgc", "baselines", "benchmarks")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            out.extend(n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom))
        elif isinstance(node, ast.Try):
            out.extend(n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom))
    return out


def import_graph() -> nx.DiGraph:
    mods = _modules()
    graph = nx.DiGraph()
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                # `from pkg import name`: the package itself, or its submodule `name`
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                if target in mods and target != name:
                    graph.add_edge(name, target)
    return graph


def test_import_graph_sees_known_edges() -> None:
    graph = import_graph()
    assert graph.has_edge("benchmarks.leaderboard.build", "benchmarks.leaderboard.html")
    assert graph.number_of_edges() > 100


def test_no_module_level_import_cycles() -> None:
    cycles = [" -> ".join([*c, c[0]]) for c in nx.simple_cycles(import_graph())]
    assert not cycles, "module-level import cycles:\n" + "\n".join(sorted(cycles)[:20])
