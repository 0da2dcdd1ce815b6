"""Helpers shared by the test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import uvloop

_T = TypeVar("_T")

# The two loops every test runs on (conftest.py parametrises the async tests with them).
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


async def wait_until(predicate: Any, timeout: float = 2.0) -> None:
    """Let the loop run until ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the condition never became true"
        await asyncio.sleep(0.001)


def run_in_fresh_loop(
    factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, _T]
) -> _T:
    """``asyncio.run(main)`` on a loop from ``factory``: leftover tasks cancelled, loop closed."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    loop = factory()  # pragma: no cover - Python 3.10
    try:
        return loop.run_until_complete(main)
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class CountingInput:
    """An input iterable that records how far it has been read (endless when n is None)."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.read = 0

    def __iter__(self) -> Iterator[int]:
        numbers = itertools.count() if self.n is None else range(self.n)
        for i in numbers:
            self.read += 1
            yield i
