"""Functions that the cluster tests run on Dask workers.

They live in a module of their own so that the worker processes import them by name
(the test folder is on their PYTHONPATH). Markers are files, the one channel that every
process of the test machine shares.
"""

# ruff: noqa: ASYNC240 - marker files are tiny, and only these test items write them

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class ItemError(Exception):
    """An exception of the test's own type, to check that type and message travel back."""


async def double(x: int) -> int:
    return 2 * x


async def add(x: int, y: int) -> int:
    return x + y


async def identity(x: object) -> object:
    return x


async def where() -> int:
    """The process that runs the item."""
    return os.getpid()


async def pid_after(_x: object, delay: float = 0.0) -> int:
    """The process that runs the item, after ``delay`` seconds."""
    await asyncio.sleep(delay)
    return os.getpid()


async def loop_name() -> str:
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"


async def fail(x: int, message: str = "bad item") -> int:
    raise ItemError(f"{message} {x}")


async def fail_at(x: int, bad: int) -> int:
    if x == bad:
        raise ItemError(f"item {x} failed")
    await asyncio.sleep(0.01)
    return x


async def sleep_then(x: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return x


async def mark(path: str, x: int, delay: float = 0.0) -> int:
    """Sleep ``delay`` seconds, then leave ``<path>/done-<x>``."""
    await asyncio.sleep(delay)
    Path(path, f"done-{x}").touch()
    return x


async def watched(path: str, x: int, delay: float) -> int:
    """Leave ``started-<x>``; sleep; leave ``done-<x>``, or ``cancelled-<x>`` if cancelled."""
    Path(path, f"started-{x}").touch()
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        Path(path, f"cancelled-{x}").touch()
        raise
    Path(path, f"done-{x}").touch()
    return x


async def flaky(path: str, failures: int) -> int:
    """Fail the first ``failures`` attempts (counted in a file), then return the count."""
    counter = Path(path, "attempts")
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    if attempts <= failures:
        raise ItemError(f"attempt {attempts} failed")
    return attempts


async def cancel_myself() -> None:
    raise asyncio.CancelledError()


_running: dict[str, int] = {}
_peak: dict[str, int] = {}


async def count_concurrency(token: str, delay: float) -> tuple[int, int]:
    """Return (this process, the most items of ``token`` seen running at once in it)."""
    _running[token] = _running.get(token, 0) + 1
    _peak[token] = max(_peak.get(token, 0), _running[token])
    try:
        await asyncio.sleep(delay)
    finally:
        _running[token] -= 1
    return os.getpid(), _peak[token]


def not_async(x: int) -> int:
    return x


async def fail_after_marking(path: str, x: int) -> int:
    """Item 0 fails at once; the others behave as ``watched(path, x, 30)``."""
    if x == 0:
        raise ItemError("item 0 failed")
    return await watched(path, x, 30.0)
