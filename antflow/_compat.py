"""What differs between the Pythons antflow runs on (3.10 to 3.13), in one place."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

__all__ = ["HAS_UNCANCEL", "cancelling", "create_task", "uncancel"]

_T = TypeVar("_T")

# Task.uncancel() and Task.cancelling() count cancellations from 3.11 on. Without them
# (3.10) an own cancel cannot be told from a foreign one, and nothing needs undoing.
HAS_UNCANCEL: Final = sys.version_info >= (3, 11)

if sys.version_info >= (3, 11):

    def uncancel(task: asyncio.Task[Any]) -> int:
        return task.uncancel()

    def cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

    def create_task(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, _T],
        name: str,
        context: contextvars.Context,
    ) -> asyncio.Task[_T]:
        return loop.create_task(coro, name=name, context=context)

else:  # pragma: no cover - Python 3.10

    def uncancel(task: asyncio.Task[Any]) -> int:
        return 0

    def cancelling(task: asyncio.Task[Any]) -> int:
        return 1  # assume the worst: a foreign cancel

    def create_task(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, _T],
        name: str,
        context: contextvars.Context,
    ) -> asyncio.Task[_T]:
        return context.run(loop.create_task, coro, name=name)
