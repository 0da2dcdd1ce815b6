"""docs/guarantees.md names, for each promise, the tests that hold it: they must exist.

A promise whose test was renamed or removed would otherwise still read as proved.
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
