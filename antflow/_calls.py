"""The machinery of ``map`` and ``map_iter``: lazy input, a bounded window, one waiter.

A call reads its input only as far as ``window`` items ahead of what its caller has
consumed, so its memory is O(window) whatever the input's length. Its items go into the
executor's queue as plain ``(call, place, args)`` tuples: no future and no object per
item. The worker that ends an item hands the result over in place (``_results[place]``;
failures go through ``_item_failed``) and wakes the caller through one raw loop future
only when the caller has something to do: a refill at half the window for ``map``, the
next result in input order for ``map_iter``.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
)
from itertools import islice
from time import perf_counter
from typing import Any, Generic, TypeVar

from ._inputs import aclose, zip_async
from ._options import Options
from ._pool import Pool

__all__ = ["IterState", "MapCall", "MapIterator"]

_T = TypeVar("_T")
_MISSING: Any = object()


@types.coroutine
def _ready(value: _T) -> Generator[Any, None, _T]:
    """An awaitable of a value at hand: awaiting it returns at once, without a loop turn."""
    return value
    yield  # unreachable: it makes this a generator, hence awaitable


class _Call(Generic[_T]):
    """What ``map`` and ``map_iter`` share: feeding the window, the deadline, ending."""

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        opts: Options | None,
        window: int,
        timeout: float | None,
    ) -> None:
        self._pool = pool
        self._fn = fn
        self._opts = opts
        self._window = window
        self._timeout = timeout
        # One iterable feeds its values bare (the worker calls fn(value)); several are
        # zipped to the shortest, as the built-in map() does.
        self._single = len(iterables) == 1
        self._plain = self._single and opts is None  # the worker's fastest path
        self._is_async = any(isinstance(it, AsyncIterable) for it in iterables)
        if self._single:
            (only,) = iterables
            self._source: Any = aiter(only) if self._is_async else iter(only)  # type: ignore[arg-type]
        elif self._is_async:
            self._source = zip_async(iterables)
        else:
            self._source = zip(*iterables)  # noqa: B905 - zip to the shortest, as map() does
        self._context = contextvars.copy_context() if opts is not None and opts.context else None
        self._count = 0  # items fed so far; the next item's index
        self._in_flight = 0  # items fed whose outcome the worker has not handed over
        # The worker hands a result over in place (see Pool._work):
        # ``_results[pos] = result``, then wakes the caller when ``_in_flight`` drops to
        # ``_low_water`` or ``pos`` is ``_head_pos`` (the result the caller waits for).
        self._results: list[Any] = []
        self._low_water = -1
        self._head_pos = -1
        # map_iter keeps results in a ring of ``window`` places (``_places``); map in a
        # list by input position (``_places`` 0).
        self._places = 0
        # The call's lane: its entries waiting for a worker (see Pool), and with timing
        # on, when each place's entry was queued.
        self._lane: deque[Any] = deque()
        self._queued_at: list[float] = []
        self._exhausted = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        self._began = False
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # see _begin
        self._open = False  # between _begin and _end: the executor runs its items

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} fn={getattr(self._fn, '__qualname__', self._fn)!r} "
            f"fed={self._count} in_flight={self._in_flight} window={self._window}"
            f"{' open' if self._open else ''}>"
        )

    # -- what the worker calls besides the hand-over -----------------------------------

    def _item_failed(self, pos: int, exc: BaseException) -> None:
        raise NotImplementedError

    # -- life cycle --------------------------------------------------------------------

    def _begin(self) -> asyncio.AbstractEventLoop:
        pool = self._pool
        self._loop = loop = pool.bind()
        pool.check_open()
        pool._calls.add(self)
        self._began = self._open = True
        if self._timeout is not None:
            self._timer = loop.call_later(self._timeout, self._expire)
        return loop

    def _end(self) -> None:
        """Cancel what this call still has running; its queued items never start."""
        if not self._open:
            return
        self._open = False
        if self._timer is not None:
            self._timer.cancel()
        self._pool.end_call(self)

    def abort(self, error: BaseException) -> None:
        """Stop this call now; its caller gets ``error`` at its next step."""
        if self._error is None:
            self._error = error
        self._end()
        self._wake()

    def _expire(self) -> None:
        self._timed_out = True
        self._end()  # no item of this call starts after its deadline
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

    # -- feeding -------------------------------------------------------------------------

    async def _fill(self, room: int) -> None:
        """Read up to ``room`` more inputs and queue an item for each.

        Whatever stops the reading (the input raising, the caller cancelled while it
        waits for input or for room) is kept in ``_error`` rather than raised, so that
        the items queued so far are accounted for before the caller raises it.
        """
        pool = self._pool
        try:
            max_pending = pool._max_pending
            if max_pending:
                if pool.pending >= max_pending:
                    await pool.wait_for_room(accepted=True)
                    if self._error is not None or self._timed_out:
                        return
                room = min(room, max_pending - pool.pending)
            if self._is_async:
                await self._fill_async(room)
            else:
                self._fill_sync(room)
        except BaseException as exc:
            self._exhausted = True
            if self._error is None:
                self._error = exc

    def _fill_sync(self, room: int) -> None:
        # No await here: the counters are settled once, after the loop.
        append = self._lane.append
        places = self._places
        start = index = self._count
        try:
            for args in islice(self._source, room):
                append((self, index % places if places else index, args))
                index += 1
        finally:
            self._fed(index - start)
        if index - start < room:
            self._exhausted = True

    async def _fill_async(self, room: int) -> None:
        # Workers may start items while this awaits input: count each item as it goes.
        source = self._source
        for _ in range(room):
            try:
                args = await anext(source)
            except StopAsyncIteration:
                self._exhausted = True
                return
            index = self._count
            self._lane.append((self, index % self._places if self._places else index, args))
            self._fed(1)

    def _fed(self, n: int) -> None:
        """``n`` entries were added to the lane: count them, and let a worker know."""
        if n:
            pool = self._pool
            if pool._timings is not None:
                self._stamp(self._count, n)
            self._count += n
            self._in_flight += n
            pool._submitted += n
            if len(self._lane) == n:
                pool._ring.append(self._lane)  # the lane was empty: it takes turns again
            if not pool._waking:
                pool.wake_worker()

    def _stamp(self, start: int, n: int) -> None:
        now = perf_counter()
        places = self._places
        if places:
            for index in range(start, start + n):
                self._queued_at[index % places] = now
        else:
            self._queued_at.extend([now] * n)  # map: one place per input, like _results

    async def _close_source(self) -> None:
        # A call that ends consumes no more of its input: close an async input (an async
        # generator would otherwise be finalised only when garbage collected). Sync
        # inputs are left as they are, as the built-in map() leaves them.
        if self._is_async:
            await aclose(self._source)


class MapCall(_Call[_T]):
    """One ``await executor.map(...)``: results in input order, the first error raised."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._low_water = self._window // 2  # refill when half the window has ended

    async def run(self) -> list[_T]:
        loop = self._begin()
        try:
            while True:
                if not self._exhausted:
                    await self._fill(self._window - self._in_flight)
                    if self._exhausted:
                        self._low_water = 0
                    self._raise_if_stopped()
                if not self._in_flight:
                    if self._exhausted:
                        return self._results
                    continue  # room for more input
                await self._sleep(loop)
        finally:
            self._end()
            await self._close_source()

    def _fed(self, n: int) -> None:
        if n:
            self._results.extend([None] * n)
            super()._fed(n)

    def _item_failed(self, pos: int, exc: BaseException) -> None:
        # Fail fast, now rather than when the caller wakes: in between, the workers
        # would start more of this call's queued items.
        self._in_flight -= 1
        if self._error is None:
            self._error = exc
        self._end()
        self._wake()


class MapIterator(AsyncIterator[_T]):
    """The async iterator of ``executor.map_iter(...)``.

    A thin shell around the call state: the queue and the workers refer to the state,
    never to this object, so when the consumer drops the iterator (a ``break`` out of
    ``async for``) it is freed at once and ``__del__`` cancels the call's items without
    waiting for a garbage collection or an ``aclose()``.
    """

    __slots__ = ("_state",)

    def __init__(self, state: IterState[_T]) -> None:
        self._state = state

    def __aiter__(self) -> MapIterator[_T]:
        return self

    def __anext__(self) -> Awaitable[_T]:
        # The fast path of IterState.anext, inlined: this runs once per result.
        state = self._state
        pos = state._head_pos
        result = state._results[pos]
        if (
            result is not _MISSING
            and state._open
            and state._fast
            and (state._exhausted or state._count - state._head > state._refill_at)
        ):
            state._results[pos] = _MISSING
            state._head += 1
            state._head_pos = pos + 1 if pos + 1 < state._window else 0
            return _ready(result)
        return state.next()

    async def aclose(self) -> None:
        """Stop the iteration: cancel its running items; its queued ones never start."""
        await self._state.close()

    def __repr__(self) -> str:
        return repr(self._state)

    def __del__(self) -> None:
        state = self._state
        if state._open:
            loop = state._pool._loop
            if loop is not None and not loop.is_closed():
                state._end()


class IterState(_Call[_T]):
    """map_iter's call: results wait in a ring of ``window`` places until their turn."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._head = 0  # the input position of the next result to yield
        self._head_pos = 0  # its place in the ring
        self._results = [_MISSING] * self._window
        self._places = self._window
        if self._pool._timings is not None:
            self._queued_at = [0.0] * self._window
        self._failed: dict[int, BaseException] = {}  # by place in the ring
        self._finished = False
        self._refill_at = self._window // 2
        # MapIterator.__anext__ hands a result at hand over without a coroutine when the
        # call is open and needs no refill; a subclass that must see every result in
        # next() turns this off.
        self._fast = True

    async def next(self) -> _T:
        if self._finished:
            raise StopAsyncIteration
        loop = self._loop if self._began else self._begin()
        try:
            while True:
                if self._error is not None or self._timed_out:
                    self._raise_if_stopped()
                head = self._head
                # Refill when half the window is free: one read of the input per many items.
                if not self._exhausted and self._count - head <= self._refill_at:
                    await self._fill(self._window - (self._count - head))
                    self._raise_if_stopped()
                pos = self._head_pos
                result = self._results[pos]
                if result is not _MISSING:
                    self._results[pos] = _MISSING
                    self._head = head + 1
                    self._head_pos = pos + 1 if pos + 1 < self._window else 0
                    return result  # type: ignore[no-any-return]
                if pos in self._failed:
                    raise self._failed.pop(pos)
                if head == self._count and self._exhausted:
                    raise StopAsyncIteration
                await self._sleep(loop)
        except BaseException:
            self._finished = True
            self._end()
            await self._close_source()
            raise

    async def close(self) -> None:
        if not self._finished:
            self._finished = True
            self._end()
            await self._close_source()

    def _item_failed(self, pos: int, exc: BaseException) -> None:
        self._in_flight -= 1
        self._failed[pos] = exc
        if pos == self._head_pos:
            self._wake()
