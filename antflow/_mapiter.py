"""map_iter: results handed to the consumer in input order, from a ring of window places.

:class:`IterState` is the call (feeding, or letting workers pull, up to ``window`` inputs
ahead of the consumer; see _calls for what it shares with ``map``), :class:`MapIterator`
the thin async iterator the caller holds. A result at hand is handed over by
``__anext__`` itself, without a second coroutine; the consumer sleeps on one raw loop
future only when the result it needs next has not ended yet.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any, Final, TypeVar

from ._calls import MISSING, BaseCall

__all__ = ["IterState", "MapIterator"]

_T = TypeVar("_T")

_NO_REFILL: Final = sys.maxsize  # the input has ended: no refill is ever due


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

    async def __anext__(self) -> _T:
        # The fast path of IterState.next, inlined: this runs once per result. (A coroutine:
        # one frame per result, where a method that returned an awaitable cost two.)
        state = self._state
        pos = state._head_pos
        result = state._results[pos]
        head = state._head
        if result is not MISSING and head < state._fast_until:
            state._results[pos] = MISSING
            state._head = head + 1
            state._head_pos = pos + 1 if pos + 1 < state._window else 0
            return result  # type: ignore[no-any-return]
        return await state.next()

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


class IterState(BaseCall[_T]):
    """map_iter's call: results wait in a ring of ``window`` places until their turn."""

    _can_pull = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._head = 0  # the input position of the next result to yield
        self._head_pos = 0  # its place in the ring
        self._results = [MISSING] * self._window
        self._places = self._window
        if self._pool._timings is not None:
            self._queued_at = [0.0] * self._window
        self._failed: dict[int, BaseException] = {}  # by place in the ring
        self._finished = False
        self._refill_at = self._window // 2
        # MapIterator.__anext__ hands a result at hand over itself, without next(), while
        # the head is below _fast_until: while the call is open and needs no refill. next()
        # sets it whenever it returns a result, _end sets it to 0; in between it may only
        # be lower than the truth (the input may end, the limit may grow), which costs a
        # call of next() and nothing else. A subclass that must see every result in next()
        # turns _fast off.
        self._fast = True
        self._fast_until = 0
        # Pulled, workers read inputs up to ``_limit``, which next() moves to the head plus
        # the window whenever half of it is free (a refill without reading anything).
        self._pull = self._can_pull and not self._is_async
        self._done = 0  # pulled: items that succeeded (counted by WorkerPool._pull)

    def counts(self) -> tuple[int, int]:
        return self._count, self._done

    def _space(self) -> int:
        return self._window - (self._count - self._head)  # results wait for the consumer too

    async def next(self) -> _T:
        if self._finished:
            raise StopAsyncIteration
        loop = self._loop if self._began else self._begin()
        try:
            while True:
                if self._error is not None or self._timed_out:
                    self._raise_if_stopped()
                if self._finished:
                    raise StopAsyncIteration  # closed by another task while this one waited
                head = self._head
                # Refill when half the window is free: one read of the input per many items
                # (pulled: let the workers read up to a window ahead again).
                if not self._exhausted and self._limit - head <= self._refill_at:
                    if self._pull:
                        self._limit = head + self._window
                        self._take_turns()
                    elif self._is_async:
                        self._feed_more()  # the feeder reads; a result at hand is not held up
                    else:
                        await self._fill(self._window - (self._count - head))
                        self._raise_if_stopped()
                pos = self._head_pos
                result = self._results[pos]
                if result is not MISSING:
                    self._results[pos] = MISSING
                    self._head = head + 1
                    self._head_pos = pos + 1 if pos + 1 < self._window else 0
                    if self._fast and self._open:  # where MapIterator's fast path stops
                        self._fast_until = (
                            _NO_REFILL if self._exhausted else self._limit - self._refill_at
                        )
                    return result  # type: ignore[no-any-return]
                if pos in self._failed:
                    raise self._failed.pop(pos)
                if head == self._count and self._exhausted:
                    raise StopAsyncIteration
                await self._sleep(loop)
        except BaseException:
            if not self._finished:  # (or closed meanwhile by another task: wait for it)
                self._finished = True
                self._end()
            await self._close_source()
            raise

    def _end(self) -> None:
        self._fast_until = 0  # every result goes through next() again
        super()._end()

    async def close(self) -> None:
        if not self._finished:
            self._finished = True
            self._end()
            self._wake()  # a consumer waiting in next() (another task) stops too
        await self._close_source()  # (also when another task is ending the call)

    def _item_failed(self, pos: int, exc: BaseException) -> None:
        self._in_flight -= 1
        self._failed[pos] = exc
        if pos == self._head_pos:
            self._wake()
