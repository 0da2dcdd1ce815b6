"""as_completed and wait: one callback per future, one raw future to sleep on.

Both register a listener on each pending future and then sleep on a single loop future
that a listener (or the deadline timer, scheduled with ``loop.call_at``) resolves. So
waiting for n futures costs O(n), with no Task per future and no polling. Listeners are
removed on every way out, a cancelled caller included.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from enum import Enum
from typing import Any, TypeVar

from ._future import FINISHED, AsyncFuture

__all__ = ["WaitStrategy", "as_completed", "wait"]

_T = TypeVar("_T")


class WaitStrategy(str, Enum):
    """When :meth:`AsyncExecutor.wait` returns. The values equal asyncio's constants."""

    FIRST_COMPLETED = "FIRST_COMPLETED"
    FIRST_EXCEPTION = "FIRST_EXCEPTION"
    ALL_COMPLETED = "ALL_COMPLETED"


def _unique_futures(futures: Iterable[AsyncFuture[_T]]) -> list[AsyncFuture[_T]]:
    unique = list(dict.fromkeys(futures))
    for future in unique:
        if not isinstance(future, AsyncFuture):
            raise TypeError(f"expected AsyncFuture objects, got {type(future).__name__}")
    return unique


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number or None, got {type(timeout).__name__}")
        if timeout < 0:
            raise ValueError(f"timeout must not be negative, got {timeout!r}")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def as_completed(
    futures: Iterable[AsyncFuture[_T]], timeout: float | None = None
) -> AsyncIterator[AsyncFuture[_T]]:
    _check_timeout(timeout)
    return _as_completed(_unique_futures(futures), timeout)


async def _as_completed(
    futures: list[AsyncFuture[_T]], timeout: float | None
) -> AsyncIterator[AsyncFuture[_T]]:
    loop = asyncio.get_running_loop()
    ended: deque[AsyncFuture[_T]] = deque()
    waiter: asyncio.Future[None] | None = None
    remaining = 0
    expired = False

    def on_end(future: AsyncFuture[Any]) -> None:
        nonlocal remaining
        remaining -= 1
        ended.append(future)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire() -> None:
        nonlocal expired
        expired = True
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    for future in futures:
        if future._state >= FINISHED:
            ended.append(future)
        else:
            future._listen(on_end)
            remaining += 1
    timer = None if timeout is None or not remaining else loop.call_later(timeout, expire)
    try:
        while True:
            while ended:
                yield ended.popleft()
            if not remaining:
                return
            if expired:
                raise asyncio.TimeoutError(
                    f"{remaining} of {len(futures)} futures still pending after {timeout}s"
                )
            waiter = loop.create_future()
            await waiter
            waiter = None
    finally:
        if timer is not None:
            timer.cancel()
        if remaining:
            for future in futures:
                if future._state < FINISHED:
                    future._unlisten(on_end)


def _strategy(return_when: WaitStrategy | str) -> WaitStrategy:
    try:
        return WaitStrategy(return_when)
    except ValueError:
        raise ValueError(
            f"return_when must be one of {', '.join(s.name for s in WaitStrategy)}, "
            f"got {return_when!r}"
        ) from None


def _failed(future: AsyncFuture[Any]) -> bool:
    return future._state == FINISHED and future._exception is not None


async def wait(
    futures: Iterable[AsyncFuture[_T]],
    timeout: float | None = None,
    return_when: WaitStrategy | str = WaitStrategy.ALL_COMPLETED,
) -> tuple[set[AsyncFuture[_T]], set[AsyncFuture[_T]]]:
    strategy = _strategy(return_when)
    _check_timeout(timeout)
    unique = _unique_futures(futures)
    loop = asyncio.get_running_loop()
    pending = {f for f in unique if f._state < FINISHED}
    if pending and not (
        (strategy is WaitStrategy.FIRST_COMPLETED and len(pending) < len(unique))
        or (strategy is WaitStrategy.FIRST_EXCEPTION and any(map(_failed, unique)))
    ):
        waiter: asyncio.Future[None] = loop.create_future()
        left = len(pending)

        def on_end(future: AsyncFuture[Any]) -> None:
            nonlocal left
            left -= 1
            if (
                not left
                or strategy is WaitStrategy.FIRST_COMPLETED
                or (strategy is WaitStrategy.FIRST_EXCEPTION and _failed(future))
            ) and not waiter.done():
                waiter.set_result(None)

        for future in pending:
            future._listen(on_end)
        timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            for future in pending:
                if future._state < FINISHED:
                    future._unlisten(on_end)
        pending = {f for f in pending if f._state < FINISHED}
    if pending and strategy is WaitStrategy.ALL_COMPLETED and timeout is not None:
        raise asyncio.TimeoutError(
            f"{len(pending)} of {len(unique)} futures still pending after {timeout}s"
        )
    done = {f for f in unique if f._state >= FINISHED}
    return done, pending
