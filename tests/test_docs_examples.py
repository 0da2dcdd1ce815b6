"""Every ```python block of README.md and docs/*.md runs here, so the docs cannot rot.

How a block runs:

- It is compiled with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``, so top-level ``await`` and
  ``async with`` work as in the docs, and awaited on the test's own loop (asyncio and uvloop,
  from tests/conftest.py). Line numbers in tracebacks are those of the Markdown file.
- A statement ``asyncio.run(main())`` (or ``antflow.run(...)``) outside any function becomes
  ``await main()``: a loop cannot be started inside the running one, and this way the
  program still runs on the loop under test.
- Names that examples use without defining them (``process_api``, ``items``, ``executor``,
  ...) come from small, fast stand-ins in :func:`stand_ins`.
- A ``print(...)`` call with a trailing comment must print that comment's text. A print that
  runs several times (in a loop) must print the comment's items, joined by ", ".
  Prose comments therefore go on their own line, never after a print.

Directives, an HTML comment on the line(s) just above the block:

- ``<!-- docs-test: skip (reason) -->``: the block is only compiled, then reported as
  skipped with that reason (network access, optional packages).
- ``<!-- docs-test: scale-sleep 0.01 (reason) -->``: ``asyncio.sleep`` waits that factor of
  the delay it is given, for examples whose delays are meant for humans (seconds).
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
import io
import re
import sys
import tokenize
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from antflow import AsyncExecutor

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE_OPEN = re.compile(r"^```python\s*$")
_FENCE_CLOSE = re.compile(r"^```\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(?P<what>[\w-]+)\s*(?P<rest>.*?)\s*-->\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    source: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:L{self.line}"


def collect_blocks(path: Path) -> list[Block]:
    """The ```python blocks of one Markdown file, with the directives just above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not _FENCE_OPEN.match(lines[i]):
            i += 1
            continue
        start = i
        directives: dict[str, str] = {}
        j = start - 1
        while j >= 0 and (match := _DIRECTIVE.match(lines[j].strip())):
            directives[match["what"]] = match["rest"]
            j -= 1
        i += 1
        body: list[str] = []
        while i < len(lines) and not _FENCE_CLOSE.match(lines[i]):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start + 1}: unterminated ```python block")
        blocks.append(Block(path, start + 1, "\n".join(body) + "\n", directives))
        i += 1
    return blocks


BLOCKS = [block for path in DOC_FILES if path.exists() for block in collect_blocks(path)]


# -- compiling a block -------------------------------------------------------------------


class _AwaitInsteadOfRun(ast.NodeTransformer):
    """Outside functions, turn ``asyncio.run(x)`` or ``antflow.run(x)`` into ``await x``."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return node  # a run() inside a function is left alone

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        is_run = (
            isinstance(func, ast.Attribute)
            and func.attr == "run"
            and isinstance(func.value, ast.Name)
            and func.value.id in {"asyncio", "antflow"}
        ) or (isinstance(func, ast.Name) and func.id == "run")
        if is_run and len(node.args) == 1 and not node.keywords:
            return ast.copy_location(ast.Await(value=self.visit(node.args[0])), node)
        return self.generic_visit(node)


def compile_block(block: Block) -> Any:
    tree = ast.parse(block.source, filename=str(block.path))
    tree = ast.fix_missing_locations(_AwaitInsteadOfRun().visit(tree))
    ast.increment_lineno(tree, block.line)  # line 1 of the source is the line after the fence
    return compile(tree, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def expected_prints(block: Block) -> dict[tuple[int, int], str]:
    """Map the line span (in the Markdown file) of each commented print call to its comment."""
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(block.source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string[1:].strip()
    expected: dict[tuple[int, int], str] = {}
    for node in ast.walk(ast.parse(block.source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
            and node.end_lineno in comments
        ):
            assert node.end_lineno is not None
            span = (node.lineno + block.line, node.end_lineno + block.line)
            expected[span] = comments[node.end_lineno]
    return expected


# -- what the examples leave undefined -----------------------------------------------------


class _Database:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    async def bulk_insert(self, records: list[Any]) -> None:
        await asyncio.sleep(0)
        self.rows.extend(records)


@dataclass
class _SearchResult:
    source: str
    found: bool

    def __str__(self) -> str:
        return f"match in {self.source}"


def stand_ins() -> dict[str, Any]:
    """Fresh stand-ins for one block: quick coroutine functions and small inputs."""
    failed_once: set[Any] = set()

    async def process_api(i: int) -> int:
        await asyncio.sleep(0.001)
        return i

    async def long_task(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 4))
        return i

    async def flaky_task(x: Any) -> Any:
        # Fails on its first call for each argument, then succeeds: one retry each.
        await asyncio.sleep(0)
        if x not in failed_once:
            failed_once.add(x)
            raise ConnectionError(f"transient failure for {x!r}")
        return x

    async def some_task(x: Any) -> Any:
        await asyncio.sleep(0)
        return x

    async def slow_task(x: Any) -> Any:
        await asyncio.sleep(0.02)
        return x

    async def task(x: Any) -> Any:
        await asyncio.sleep(0.001)
        return x * 2

    async def process_item(item: int) -> int:
        await asyncio.sleep(0)
        return item + 1

    async def fetch_record(record_id: int) -> dict[str, int]:
        await asyncio.sleep(0.001 * (3 - record_id % 3))
        return {"id": record_id}

    async def search(source: str) -> _SearchResult:
        await asyncio.sleep(0.001)
        return _SearchResult(source, found=source == "archive")

    return {
        "process_api": process_api,
        "long_task": long_task,
        "flaky_task": flaky_task,
        "some_task": some_task,
        "slow_task": slow_task,
        "task": task,
        "process_item": process_item,
        "fetch_record": fetch_record,
        "search": search,
        "items": list(range(10)),
        "arg": 7,
        "large_item_list": list(range(1_000)),
        "record_ids": list(range(12)),
        "database": _Database(),
        "sources": ["web", "archive", "mirror"],
    }


# -- the test ------------------------------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
async def test_docs_example(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    code = compile_block(block)  # skipped blocks must still be valid Python
    if "skip" in block.directives:
        pytest.skip(block.directives["skip"].strip("() ") or "marked docs-test: skip")

    if "scale-sleep" in block.directives:
        factor = float(block.directives["scale-sleep"].split()[0])
        real_sleep = asyncio.sleep

        async def scaled_sleep(delay: float, result: Any = None) -> Any:
            return await real_sleep(delay * factor, result)

        monkeypatch.setattr(asyncio, "sleep", scaled_sleep)

    expected = expected_prints(block)
    printed: dict[tuple[int, int], list[str]] = defaultdict(list)

    def recording_print(*args: Any, sep: str | None = " ", **kwargs: Any) -> None:
        if kwargs.get("file") is None:
            line = sys._getframe(1).f_lineno
            for span in expected:
                if span[0] <= line <= span[1]:
                    printed[span].append((" " if sep is None else sep).join(map(str, args)))
        builtins.print(*args, sep=sep, **kwargs)

    executor = AsyncExecutor(max_workers=5)  # for blocks that use one they did not create
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "print": recording_print,
        "executor": executor,
        **stand_ins(),
    }
    try:
        outcome = eval(code, namespace)
        if inspect.iscoroutine(outcome):
            await outcome
    finally:
        await executor.shutdown(cancel_futures=True)

    for span, comment in sorted(expected.items()):
        where = f"{block.path.relative_to(ROOT).as_posix()}:{span[0]}"
        assert ", ".join(printed[span]) == comment, f"{where}: printed {printed[span]!r}"
