"""The machinery of ``map`` and ``map_iter``: lazy input, a bounded window, one waiter.

A call reads its input only as far as ``window`` items ahead of what has ended, so its
memory is O(window) whatever the input's length. Items are ordinary queue entries
(:class:`AsyncFuture`) whose ``_owner`` is the call; when one ends it tells the call
synchronously, and the call wakes its caller through one raw loop future, only when
the caller has something to do: a refill at half the window for ``map``, the next result
in input order for ``map_iter``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._future import CANCELLED, FINISHED, AsyncFuture

if TYPE_CHECKING:
    from ._executor import AsyncExecutor, _Options

__all__ = ["MapCall", "MapIterator"]

_T = TypeVar("_T")


async def _zip_async(iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]) -> Any:
    """``zip`` over a mix of sync and async iterables, as an async iterator of tuples."""
    iterators: list[Iterator[Any] | AsyncIterator[Any]] = [
        aiter(it) if isinstance(it, AsyncIterable) else iter(it) for it in iterables
    ]
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


class _Call(Generic[_T]):
    """What ``map`` and ``map_iter`` share: feeding the window, the deadline, cancelling."""

    def __init__(
        self,
        executor: AsyncExecutor,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        opts: _Options | None,
        window: int,
        timeout: float | None,
    ) -> None:
        self._executor = executor
        self._fn = fn
        self._opts = opts
        self._window = window
        self._timeout = timeout
        if any(isinstance(it, AsyncIterable) for it in iterables):
            self._source: Any = _zip_async(iterables)
            self._is_async = True
        else:
            self._source = zip(*iterables)  # noqa: B905 - zip to the shortest, as map() does
            self._is_async = False
        self._context = contextvars.copy_context() if opts is not None and opts.context else None
        self._count = 0  # items fed so far
        self._exhausted = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        self._open = False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} fn={getattr(self._fn, '__qualname__', self._fn)!r} "
            f"fed={self._count} in_flight={self._in_flight()} window={self._window}>"
        )

    def _in_flight(self) -> int:
        raise NotImplementedError

    def _live_items(self) -> Iterable[AsyncFuture[Any]]:
        raise NotImplementedError

    def _begin(self) -> asyncio.AbstractEventLoop:
        executor = self._executor
        loop = executor._bind()
        executor._check_open()
        executor._calls.add(self)
        self._open = True
        if self._timeout is not None:
            self._timer = loop.call_later(self._timeout, self._expire)
        return loop

    def _end(self) -> None:
        """Cancel what this call still has in flight and let the executor forget it."""
        if not self._open:
            return
        self._open = False
        if self._timer is not None:
            self._timer.cancel()
        for item in list(self._live_items()):
            item.cancel()
        executor = self._executor
        executor._calls.discard(self)
        executor._call_ended()

    def abort(self, error: BaseException) -> None:
        """Stop this call: its caller gets ``error`` at its next step."""
        if self._error is None:
            self._error = error
        self._wake()

    def _expire(self) -> None:
        self._timed_out = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until an item wakes us, then raise what ended the call, if anything."""
        self._waiter = waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        self._raise_if_stopped()

    def _raise_if_stopped(self) -> None:
        if self._error is not None:
            raise self._error
        if self._timed_out:
            raise asyncio.TimeoutError(f"map did not finish within timeout={self._timeout}s")

    def _new_item(self, args: tuple[Any, ...]) -> AsyncFuture[Any]:
        item: AsyncFuture[Any] = AsyncFuture(
            self._executor, self._fn, args, None, self._opts, self, self._count
        )
        if self._context is not None:
            item._context = self._context
        self._count += 1
        return item

    async def _fill(self, room: int) -> list[AsyncFuture[Any]]:
        """Read up to ``room`` more inputs and queue an item for each; return the items.

        Whatever stops the reading (the input raising, the caller cancelled while it
        waits for input or for room) is kept in ``_error`` rather than raised, so that
        the caller records the items already queued before it raises and cancels them.
        """
        executor = self._executor
        items: list[AsyncFuture[Any]] = []
        source = self._source
        max_pending = executor._max_pending
        try:
            while len(items) < room:
                if max_pending and executor._pending >= max_pending:
                    if items:
                        break  # let those run before waiting for room
                    await executor._wait_for_room(accepted=True)
                    if self._error is not None or self._timed_out:
                        break
                try:
                    args = await anext(source) if self._is_async else next(source)
                except (StopIteration, StopAsyncIteration):
                    self._exhausted = True
                    break
                item = self._new_item(args)
                items.append(item)
                executor._enqueue(item)
        except BaseException as exc:
            self._exhausted = True
            if self._error is None:
                self._error = exc
        return items

    async def _close_source(self) -> None:
        if self._is_async:
            await self._source.aclose()


class MapCall(_Call[_T]):
    """One ``await executor.map(...)``: results in input order, raised on first error."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._results: list[Any] = []
        self._live: set[AsyncFuture[Any]] = set()
        self._low_water = self._window // 2

    def _in_flight(self) -> int:
        return len(self._live)

    def _live_items(self) -> Iterable[AsyncFuture[Any]]:
        return self._live

    async def run(self) -> list[_T]:
        loop = self._begin()
        try:
            live = self._live
            results = self._results
            while True:
                if not self._exhausted:
                    items = await self._fill(self._window - len(live))
                    live.update(items)
                    results.extend([None] * len(items))
                    if self._exhausted:
                        self._low_water = 0
                    self._raise_if_stopped()
                if not live:
                    if self._exhausted:
                        return results
                    continue  # room for more input
                await self._sleep(loop)
        finally:
            self._end()
            await self._close_source()

    def _item_ended(self, item: AsyncFuture[Any]) -> None:
        live = self._live
        live.discard(item)
        if item._state == FINISHED:
            exc = item._exception
            if exc is None:
                self._results[item._index] = item._result
                if len(live) > self._low_water:
                    return
            elif self._error is None:
                self._error = exc
        elif self._error is None:
            # Cancelled by no one this call knows: end the call the same way.
            self._error = asyncio.CancelledError()
        self._wake()


class MapIterator(AsyncIterator[_T]):
    """The async iterator of ``executor.map_iter(...)``.

    A thin shell around the call state: the items refer to the state, never to this
    object, so when the consumer drops the iterator (a ``break`` out of ``async for``)
    it is freed at once and ``__del__`` cancels the call's items without waiting for a
    garbage collection or an ``aclose()``.
    """

    __slots__ = ("_state",)

    def __init__(self, *args: Any) -> None:
        self._state: _IterState[_T] = _IterState(*args)

    def __aiter__(self) -> MapIterator[_T]:
        return self

    def __anext__(self) -> Any:
        return self._state.next()

    async def aclose(self) -> None:
        """Stop the iteration: cancel its running items; its queued ones never start."""
        await self._state.close()

    def __repr__(self) -> str:
        return repr(self._state)

    def __del__(self) -> None:
        state = self._state
        if state._open:
            loop = state._executor._loop
            if loop is not None and not loop.is_closed():
                state._end()


class _IterState(_Call[_T]):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._in_order: deque[AsyncFuture[Any]] = deque()
        self._finished = False

    def _in_flight(self) -> int:
        return len(self._in_order)

    def _live_items(self) -> Iterable[AsyncFuture[Any]]:
        return self._in_order

    async def next(self) -> _T:
        if self._finished:
            raise StopAsyncIteration
        loop = self._executor._loop if self._open else self._begin()
        assert loop is not None
        in_order = self._in_order
        try:
            while True:
                self._raise_if_stopped()
                if not self._exhausted and len(in_order) < self._window:
                    in_order.extend(await self._fill(self._window - len(in_order)))
                    self._raise_if_stopped()
                if not in_order:
                    if self._exhausted:
                        raise StopAsyncIteration
                    continue
                head = in_order[0]
                if head._state < FINISHED:
                    await self._sleep(loop)
                    continue
                in_order.popleft()
                if head._state == FINISHED and head._exception is None:
                    result: _T = head._result
                    return result
                if head._state == CANCELLED:
                    raise asyncio.CancelledError()
                assert head._exception is not None
                raise head._exception
        except BaseException:
            self._finished = True
            self._end()
            await self._close_source()
            raise

    async def close(self) -> None:
        if not self._finished:
            self._finished = True
            self._end()
            if self._count or self._is_async:
                await self._close_source()

    def _item_ended(self, item: AsyncFuture[Any]) -> None:
        in_order = self._in_order
        if in_order and item is in_order[0]:
            self._wake()
        elif item._state == CANCELLED and self._error is None and self._open:
            # Cancelled by no one this call knows (the worker's loop is going away).
            self._error = asyncio.CancelledError()
            self._wake()
