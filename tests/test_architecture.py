"""The package's layers import downwards only, and its pieces stay a size a reader can hold.

The imports are read from the source with ``ast`` (every ``import`` statement, at module
level, inside functions and under ``if TYPE_CHECKING:`` alike), so a cycle cannot hide
behind a lazy or a typing-only import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "antflow"
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 450


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The modules of the package that ``path`` imports. ``from pkg import name`` counts
    as importing ``pkg.name`` when that is a module, else ``pkg`` itself."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                submodule = f"{prefix}.{alias.name}"
                found.add(submodule if submodule in modules else prefix)
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imports_of(path, root, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph(PACKAGE)
    assert "antflow._executor" in graph  # the reader found the package
    # A package imports its own modules (antflow/__init__ re-exports); only cycles
    # among the modules below the top-level package matter here.
    graph = {m: {d for d in deps if d != "antflow"} for m, deps in graph.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_check_finds_a_reintroduced_cycle(tmp_path: Path) -> None:
    package = tmp_path / "antflow"
    package.mkdir()
    (package / "__init__.py").write_text("from ._executor import AsyncExecutor\n")
    (package / "_executor.py").write_text("from ._pool import Pool\n")
    (package / "_calls.py").write_text("from ._executor import AsyncExecutor\n")
    (package / "_pool.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import _calls\n"
    )
    graph = import_graph(package)
    graph = {m: {d for d in deps if d != "antflow"} for m, deps in graph.items()}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"antflow._calls", "antflow._executor", "antflow._pool"}


def test_the_layers_import_downwards() -> None:
    # The public executors above the calls, futures and waiting; those above the pool;
    # the pool above the options and errors. Each layer may import only lower ones.
    layers = [
        {"antflow._errors", "antflow._stats", "antflow._timing", "antflow._compat"},
        {"antflow._retry", "antflow._ratelimit", "antflow._loop", "antflow._inputs"},
        {"antflow._options"},
        {"antflow._future", "antflow._room"},
        {"antflow._slot", "antflow._waiting"},
        {"antflow._pool"},
        {"antflow._worker"},
        {"antflow._calls", "antflow._base"},
        {"antflow._mapiter"},
        {"antflow._progress"},
        {"antflow._executor"},
    ]
    level = {module: i for i, layer in enumerate(layers) for module in layer}
    graph = import_graph(PACKAGE)
    for module, i in level.items():
        for dep in graph[module]:
            assert dep in level and level[dep] < i, f"{module} imports {dep} (not below it)"


def test_no_module_or_class_is_longer_than_a_reader_can_hold() -> None:
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_long.append(f"{path.name}: class {node.name}, {size} lines")
    assert not too_long, too_long
