"""The docs' references into the code must exist.

docs/guarantees.md names, for each promise, the tests that hold it: a promise whose test was
renamed or removed would otherwise still read as proved. docs/architecture.md, the map a
newcomer reads first, names where things live (``Pool.end_call``, ``_slot.future_failed``):
a name that was renamed or removed would send them to nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_test_that_the_guarantees_name_exists() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")
    named = set(REFERENCE.findall(text))
    assert len(named) > 100  # the page names its tests in this form
    missing = []
    for path, name in sorted(named):
        file = ROOT / path
        tree = ast.parse(file.read_text(encoding="utf-8")) if file.exists() else None
        defined = {
            node.name
            for node in (ast.walk(tree) if tree is not None else ())
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        if name not in defined:
            missing.append(f"{path}::{name}")
    assert missing == []


CODE_NAME = re.compile(r"`([A-Za-z_]\w*(?:\.\w+)+)`")  # `Module.name`, `Class.name`: dotted


def _package_names() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """What each module of antflow defines, and each class (methods, attributes, self.x)."""
    modules: dict[str, set[str]] = {}
    classes: dict[str, set[str]] = {}
    package = ROOT / "antflow"
    for file in package.rglob("*.py"):
        parts = file.relative_to(package).with_suffix("").parts
        # `_pool`, `cluster._calls`; `antflow` and `antflow.cluster` for the __init__ files
        module = ".".join(parts) if parts[-1] != "__init__" else ".".join(("antflow", *parts[:-1]))
        tree = ast.parse(file.read_text(encoding="utf-8"))
        defined = modules.setdefault(module, set())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.ImportFrom):  # what the package re-exports: antflow.run
                defined.update(alias.asname or alias.name for alias in node.names)
            if isinstance(node, ast.ClassDef):
                members = classes.setdefault(node.name, set())
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        members.add(inner.name)
                    elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                        members.add(inner.id)  # class attributes (and locals: harmless here)
                    elif (
                        isinstance(inner, ast.Attribute)
                        and isinstance(inner.ctx, ast.Store)
                        and isinstance(inner.value, ast.Name)
                        and inner.value.id == "self"
                    ):
                        members.add(inner.attr)
    for module in list(modules):  # `_runner` for cluster._runner, unless antflow has a _runner
        modules.setdefault(module.rpartition(".")[2], modules[module])
    return modules, classes


def test_every_code_name_that_the_architecture_page_gives_exists() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules, classes = _package_names()
    checked, missing = 0, []
    for name in sorted(set(CODE_NAME.findall(text))):
        owner, _, member = name.rpartition(".")
        if owner in modules:
            found = member in modules[owner]
        elif owner in classes:
            found = member in classes[owner]
        elif owner.rpartition(".")[2] in classes:  # `_calls.BaseCall.__init__`
            found = member in classes[owner.rpartition(".")[2]]
        else:
            continue  # not antflow's (`asyncio.Task`, `loop.call_soon`, `antflow.run`)
        checked += 1
        if not found:
            missing.append(name)
    assert checked > 40  # the page names the code in this form
    assert missing == []
