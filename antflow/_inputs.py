"""Reading a call's inputs: ``zip`` over sync and async iterables, closing them, and the
task that reads an async input (``Feeder``).

Both executors' ``map`` / ``map_iter`` read their input lazily through these.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from typing import Any

__all__ = ["Feeder", "aclose", "zip_async"]

NEW, READING, CLOSING = 0, 1, 2


async def zip_async(iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]) -> Any:
    """``zip`` over a mix of sync and async iterables, as an async iterator of tuples.

    It stops at the shortest input, as ``zip`` does; closing it closes the async inputs.
    """
    iterators: list[Iterator[Any] | AsyncIterator[Any]] = [
        aiter(it) if isinstance(it, AsyncIterable) else iter(it) for it in iterables
    ]
    try:
        while True:
            args = []
            for it in iterators:
                try:
                    if isinstance(it, AsyncIterator):
                        args.append(await anext(it))
                    else:
                        args.append(next(it))
                except (StopIteration, StopAsyncIteration):
                    return
            yield tuple(args)
    finally:
        for it in iterators:
            await aclose(it)


async def aclose(iterator: object) -> None:
    """Close an async iterator (an async generator's ``finally`` runs now); else nothing."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


class Feeder:
    """The task that reads one call's async input, so that its caller never waits on it.

    The call runs its own reading loop in the task (``start``), marking it ``READING``,
    waits in ``room`` while its window is full (``more`` lets it go on), and closes the
    input at the end (``close_input``). When the call ends, ``stop`` cancels a read in
    progress but not the input's clean-up; ``wait_closed`` is what every task that ends
    the call awaits. ``track`` is told of each task (the executor waits for them when it
    shuts down).
    """

    __slots__ = ("_close_error", "_name", "_source", "_track", "_waiter", "state", "task")

    def __init__(self, source: Any, name: str, track: Callable[[asyncio.Task[None]], None]) -> None:
        self._source = source
        self._name = name
        self._track = track
        self._waiter: asyncio.Future[None] | None = None
        self._close_error: BaseException | None = None
        self.state = NEW  # NEW, READING (the end cancels it), CLOSING (it does not)
        self.task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as the feeder; a task inherits the caller's context (a copy)."""
        self.task = task = loop.create_task(coro, name=self._name)
        self._track(task)

    def more(self) -> None:
        """The window has room again: a feeder waiting in ``room`` reads on."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def room(self, loop: asyncio.AbstractEventLoop) -> None:
        self._waiter = waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The call has ended: cancel a read in progress; close an input never read."""
        task = self.task
        if self.state == READING and task is not asyncio.current_task():
            task.cancel()  # type: ignore[union-attr]  # (its ``finally`` closes the input)
        elif self.state == NEW and task is None:
            self.state = CLOSING
            self.start(loop, self.close_input())

    async def close_input(self) -> None:
        """Close the input, in the feeder's task; keep what closing raised for the caller."""
        self.state = CLOSING
        try:
            await aclose(self._source)
        except asyncio.CancelledError:
            pass  # a shutdown's deadline cut the input's clean-up short
        except BaseException as exc:
            self._close_error = exc

    async def wait_closed(self) -> None:
        """Wait until the input is closed (closing it now if nothing read it), then raise
        what closing it raised, as if the caller had closed it."""
        while True:
            task = self.task
            if task is not None and not task.done():
                await asyncio.wait((task,))
            elif self.state == NEW:  # never read (or its task never ran): close it now
                self.state = CLOSING
                self.start(asyncio.get_running_loop(), self.close_input())
            else:
                break
        error, self._close_error = self._close_error, None
        if error is not None:
            raise error
