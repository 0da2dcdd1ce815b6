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
from typing import Any, Generic, TypeVar

from ._future import FINISHED, AsyncFuture
from ._options import check_timeout

__all__ = ["WaitStrategy", "as_completed", "wait"]

_T = TypeVar("_T")


class WaitStrategy(str, Enum):
    """When :meth:`AsyncExecutor.wait` returns. The values equal asyncio's constants."""

    FIRST_COMPLETED = "FIRST_COMPLETED"
    FIRST_EXCEPTION = "FIRST_EXCEPTION"
    ALL_COMPLETED = "ALL_COMPLETED"


def _unique_futures(futures: Iterable[AsyncFuture[_T]]) -> list[AsyncFuture[_T]]:
    unique = list(dict.fromkeys(futures))
    for kind in set(map(type, unique)):
        if kind is not AsyncFuture and not issubclass(kind, AsyncFuture):
            raise TypeError(f"expected AsyncFuture objects, got {kind.__name__}")
    return unique


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def as_completed(
    futures: Iterable[AsyncFuture[_T]], timeout: float | None = None
) -> AsyncIterator[AsyncFuture[_T]]:
    """Yield the futures (of any antflow executor) as they end, in completion order.

    ``async for future in antflow.as_completed(futures, timeout=...)``. ``timeout`` is a
    deadline for the whole iteration: past it :class:`asyncio.TimeoutError` is raised.
    Duplicates are yielded once. Linear in the number of futures: one internal callback
    per future, one wake-up per batch of endings. Breaking out of the loop removes the
    callbacks at once; nothing is cancelled.
    """
    check_timeout(timeout)
    return _AsCompleted(_AsCompletedState(_unique_futures(futures), timeout))


class _AsCompleted(AsyncIterator[AsyncFuture[_T]]):
    """The async iterator of ``as_completed``.

    A shell around the state, which the futures' listeners refer to: when the consumer
    drops the iterator (a ``break`` out of ``async for``) the shell is freed at once and
    ``__del__`` removes the listeners, without waiting for an ``aclose()`` or a garbage
    collection.
    """

    __slots__ = ("_ended", "_state")

    def __init__(self, state: _AsCompletedState[_T]) -> None:
        self._state = state
        self._ended = state._ended  # for the fast path of __anext__

    def __aiter__(self) -> _AsCompleted[_T]:
        return self

    async def __anext__(self) -> AsyncFuture[_T]:
        # The fast path of _AsCompletedState.next, inlined: a future has ended already.
        # (The deque holds futures only while the iteration is started and not closed.)
        # A coroutine costs less than a method that returns an awaitable: one frame per
        # future instead of two.
        ended = self._ended
        if ended:
            return ended.popleft()
        return await self._state.next()

    async def aclose(self) -> None:
        """Stop waiting: remove the listeners (the futures are left as they are)."""
        self._state.close()

    def __del__(self) -> None:
        self._state.close()


class _AsCompletedState(Generic[_T]):
    def __init__(self, futures: list[AsyncFuture[_T]], timeout: float | None) -> None:
        self._futures = futures
        self._timeout = timeout
        self._ended: deque[AsyncFuture[_T]] = deque()
        self._remaining = 0  # listened-to futures that have not ended
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False
        self._started = False
        self._closed = False

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._started = True
        on_end = self._on_end
        ended = self._ended
        for future in self._futures:
            if future._state >= FINISHED:
                ended.append(future)
            else:
                if future._listeners is None:  # _listen, inlined: the common case
                    future._listeners = on_end
                else:
                    future._listen(on_end)
        self._remaining = len(self._futures) - len(ended)
        if self._timeout is not None and self._remaining:
            self._timer = loop.call_later(self._timeout, self._expire)

    def _on_end(self, future: AsyncFuture[Any]) -> None:
        self._remaining -= 1
        self._ended.append(future)
        waiter = self._waiter  # _wake, inlined: this runs once per future
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _expire(self) -> None:
        self._expired = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next(self) -> AsyncFuture[_T]:
        if self._closed:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        if not self._started:
            self._start(loop)
        while True:
            if self._ended:
                return self._ended.popleft()
            if not self._remaining:
                self.close()
                raise StopAsyncIteration
            if self._expired:
                self.close()
                raise asyncio.TimeoutError(
                    f"{self._remaining} of {len(self._futures)} futures still pending "
                    f"after {self._timeout}s"
                )
            self._waiter = waiter = loop.create_future()
            try:
                await waiter
            except BaseException:
                self.close()  # the consumer was cancelled: leave nothing behind
                raise
            finally:
                self._waiter = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ended.clear()  # nothing more is yielded (see _AsCompleted.__anext__)
        if self._timer is not None:
            self._timer.cancel()
        if self._remaining:
            on_end = self._on_end
            for future in self._futures:
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
    """Wait for the futures (of any antflow executor); return ``(done, pending)`` sets.

    ``FIRST_COMPLETED`` and ``FIRST_EXCEPTION`` return when their condition holds or the
    timeout passes. ``ALL_COMPLETED`` raises :class:`asyncio.TimeoutError` if the timeout
    passes first. Never cancels anything.
    """
    strategy = _strategy(return_when)
    check_timeout(timeout)
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
