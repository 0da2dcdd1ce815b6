"""What ``map`` and ``map_iter`` share, and ``map``'s call: lazy input, a bounded window.

A call reads its input lazily, at most ``window`` items ahead of what its caller has
consumed, so its memory is O(window) whatever the input's length. There are two ways in:

- *pulled* (a synchronous input): the call stands in the pool's ring and the workers whose
  turn it is read its input themselves, one item each when they are free for it (see the
  pulled-map turn in _worker's ``WorkerPool._work``, and ``WorkerPool._pull`` for
  map_iter). Nothing is queued, nothing is made per item, and the caller is woken only
  when it has something to do;
- *pushed* (an async input, a progress bar, a window smaller than the pool): up to a window
  ahead is read and queued as plain ``(call, place, args)`` tuples in the call's lane. The
  caller reads a synchronous input itself, woken to refill at half the window; an async
  input is read by a *feeder*, a task of the call's own (``BaseCall._feed``), so that the
  caller never waits on the input: a result, a failure or the deadline reach it while a
  read is pending.

Either way the worker hands a result over in place (``_results[place]``; failures go
through ``_item_failed``) and wakes the caller through one raw loop future. map_iter's
call is in _mapiter.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import operator
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from itertools import islice
from time import monotonic, perf_counter
from typing import Any, Generic, TypeVar

from ._inputs import READING, Feeder, zip_async
from ._options import Options
from ._pool import Pool

__all__ = ["MISSING", "BaseCall", "MapCall"]

_T = TypeVar("_T")
MISSING: Any = object()

# Iterators whose iteration runs no code of the user's: a pulled map reads them directly.
_EXAMPLES: tuple[Iterable[Any], ...] = ((), [], range(0), range(1 << 64), "", b"", bytearray())
_EXAMPLES += ({}, {}.values(), {}.items(), set())
_PLAIN_ITERATORS: frozenset[type] = frozenset(type(iter(example)) for example in _EXAMPLES)


class BaseCall(Generic[_T]):
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
        # The deadline counts from the call (map_iter starts at its first __anext__).
        self._deadline = None if timeout is None else monotonic() + timeout
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
        # A synchronous input can be *pulled*: the call stands in the pool's ring itself and
        # a worker whose turn it is reads the next input (see _worker), in a copy of the
        # caller's context, so the input's own code sees the caller's context variables.
        # An async input is pushed: the caller reads it and queues entries in its lane.
        # (MapCall and IterState decide whether they pull; a subclass that must see
        # results as they come, such as a progress bar, sets _can_pull False.)
        self._pull = False
        self._ctx_run: Any = contextvars.copy_context().run if not self._is_async else None
        self._limit = 0  # pulling: read no input at or beyond this count
        self._in_ring = False  # pulling: the call stands in the pool's ring
        self._ready_at = 0.0  # pulling, with timing on: since when its next item waits
        self._lost = 0  # items that failed or were cancelled (counted by _slot), for stats()
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
        self._room_waiter: tuple[int, asyncio.Future[None]] | None = None  # see Room.wait
        # An async input is read by a task of the call's own (see _feed).
        self._feeder: Feeder | None = None
        if self._is_async:
            self._feeder = Feeder(self._source, f"{pool._name}-input", pool.add_feeder)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} fn={getattr(self._fn, '__qualname__', self._fn)!r} "
            f"fed={self._count} in_flight={self._in_flight} window={self._window}"
            f"{' open' if self._open else ''}>"
        )

    # -- what the worker calls besides the hand-over -----------------------------------

    def _item_failed(self, pos: int, exc: BaseException) -> None:
        raise NotImplementedError

    def _input_ended(self, error: BaseException | None) -> None:
        """A worker found the input exhausted (``error`` None) or raising ``error``."""
        if self._in_ring:
            self._in_ring = False
            self._pool._ring.remove(self)
        self._exhausted = True
        if error is not None and self._error is None:
            self._error = error
        self._wake()

    def counts(self) -> tuple[int, int]:
        """Pulled: (items read, items that succeeded) so far; the pool adds these up."""
        raise NotImplementedError

    def _take_turns(self) -> None:
        """Pulling: stand in the pool's ring, so that workers read this call's input."""
        if not self._in_ring and self._open and not self._exhausted:
            self._in_ring = True
            if self._pool._timings is not None:
                self._ready_at = perf_counter()
            self._pool.add_lane(self)

    # -- life cycle --------------------------------------------------------------------

    def _begin(self) -> asyncio.AbstractEventLoop:
        pool = self._pool
        self._loop = loop = pool.bind()
        pool.check_open()
        if self._deadline is not None:
            # Armed before the call is registered: if the loop refuses the delay, no call
            # is left behind for shutdown to wait for.
            delay = max(0.0, self._deadline - monotonic())
            self._timer = loop.call_later(delay, self._expire)
        pool._calls.add(self)
        self._began = self._open = True
        return loop

    def _end(self) -> None:
        """Cancel what this call still has running; its queued items never start."""
        if not self._open:
            return
        self._open = False
        if self._timer is not None:
            self._timer.cancel()
        if self._feeder is not None:
            # Before the room's release below: a cancelled room waiter passes no place on.
            self._feeder.stop(self._loop)
        self._pool.end_call(self)
        if self._room_waiter is not None:
            # Its caller waits for room to queue more: it has none to queue now.
            self._pool._room.release(self._room_waiter)

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
        """Read up to ``room`` more inputs of a synchronous input and queue an item for each.

        Whatever stops the reading (the input raising, the caller cancelled while it
        waits for room) is kept in ``_error`` rather than raised, so that the items queued
        so far are accounted for before the caller raises it.
        """
        if room <= 0:
            return  # the window is full: wait for results, not for room in the queue
        pool = self._pool
        max_pending = pool._max_pending
        try:
            if max_pending:
                if pool.pending >= max_pending:
                    await pool.wait_for_room(self)
                    if self._error is not None or self._timed_out:
                        return
                room = min(room, max_pending - pool.pending)
            self._fill_sync(room)
        except BaseException as exc:
            self._exhausted = True
            if self._error is None:
                self._error = exc
        finally:
            # The room woke this caller for a free place, one per item taken from the
            # queue. If it filled fewer (its input or the call ended, or its window was
            # full), the places left go on to the next waiters.
            pool.pass_on_room()

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

    def _space(self) -> int:
        """How many more inputs the window has room for (map: items not yet ended)."""
        return self._window - self._in_flight

    def _feed_more(self) -> None:
        """An async input: let the feeder read on, starting it on the first call.

        Called by the caller where it would refill; the feeder inherits the caller's
        context, so the input sees the context variables set before the call began."""
        feeder: Feeder = self._feeder  # type: ignore[assignment]
        if feeder.task is None:
            if self._open:
                feeder.start(self._loop, self._feed())
        else:
            feeder.more()

    async def _feed(self) -> None:
        """The feeder: read the async input, one item at a time, while the window has space.

        Its own task, so that a pending read delays nothing the caller waits for; the
        call's end cancels it (``_end``). Under ``max_pending`` it reads an item only when
        the queue has room for it, and holds no place while it reads. What stops the
        reading other than the end of the input or of the call (the input raising) is kept
        in ``_error``, and the caller raises it.
        """
        feeder: Feeder = self._feeder  # type: ignore[assignment]
        feeder.state = READING
        pool = self._pool
        source = self._source
        max_pending = pool._max_pending
        try:
            while self._open:
                if self._space() <= 0:
                    await feeder.room(self._loop)  # the caller frees space: _feed_more
                    continue
                ticket = None  # its place in the line for room, once it has waited
                if max_pending and pool.pending >= max_pending:
                    ticket = await pool.wait_for_room(self)  # read only when there is room
                    if not self._open:
                        break
                    if pool._room_waiters:
                        # The read may stall: let the place go on to the next waiter
                        # rather than hold it idle, and wait again at its place if needed.
                        pool._room.wake_one()
                try:
                    args = await anext(source)
                except StopAsyncIteration:
                    break
                if max_pending and self._open and pool.pending >= max_pending:
                    # Others took the room while the input was awaited: wait for it again,
                    # the input in hand, so that no more than max_pending items wait.
                    await pool.wait_for_room(self, ticket)
                if not self._open:
                    break  # the call ended while its input was awaited: queue nothing more
                index = self._count
                self._lane.append((self, index % self._places if self._places else index, args))
                self._fed(1)
        except BaseException as exc:
            if self._open and self._error is None:
                self._error = exc
        finally:
            self._exhausted = True
            pool.pass_on_room()  # a room wake-up it did not use goes on (see Room)
            self._wake()
            await feeder.close_input()  # (which the call's end does not cut short)

    def _fed(self, n: int) -> None:
        """``n`` entries were added to the lane: count them, and let a worker know."""
        if n:
            pool = self._pool
            if pool._timings is not None:
                self._stamp(self._count, n)
            self._count += n
            self._limit = self._count  # (map_iter's fast path: see MapIterator.__anext__)
            self._in_flight += n
            pool._submitted += n
            if len(self._lane) == n:
                pool.add_lane(self._lane)  # the lane was empty: it takes turns again
            elif not pool._waking:
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
        # inputs are left as they are, as the built-in map() leaves them. An input that
        # the feeder read is closed by the feeder (``_end`` has cancelled it): wait for it.
        # Every task that ends the call (its caller, an aclose() from another task) waits
        # for the same close.
        if self._feeder is not None:
            await self._feeder.wait_closed()


class MapCall(BaseCall[_T]):
    """One ``await executor.map(...)``: results in input order, the first error raised."""

    _can_pull = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._low_water = self._window // 2  # refill when half the window has ended
        # Pulled, at most one item per worker is in flight; a window below the pool's size
        # is kept by pushing, as is an async input.
        if self._can_pull and not self._is_async and self._window >= self._pool._max_workers:
            self._pull = True
            # Results go in place; the list grows in steps (the worker catches the
            # IndexError: a check per item would cost more), from the input's own hint.
            hint = operator.length_hint(args[2][0], 0) if self._single else 0
            self._results = [None] * min(hint, 1 << 20)
            # Workers run ``for pos, args in _esrc`` (see WorkerPool._work); an input
            # whose iteration runs no code of the user's is read directly, any other
            # through the caller's context.
            source = self._source
            if type(source) not in _PLAIN_ITERATORS:
                source = iter(functools.partial(self._ctx_run, next, source), MISSING)
            self._esrc = enumerate(source)
            self._turns = 0  # workers holding a turn of this call (each runs one item)

    async def run(self) -> list[_T]:
        loop = self._begin()
        try:
            if self._pull:
                self._take_turns()
                while self._turns or not self._exhausted:
                    await self._sleep(loop)
                self._raise_if_stopped()  # the input raised with no item in flight
                del self._results[self._read() :]  # the places grown beyond the input
                return self._results
            while True:
                if not self._exhausted:
                    if self._is_async:
                        self._feed_more()  # (the feeder wakes this caller when it stops)
                    else:
                        await self._fill(self._window - self._in_flight)
                if self._exhausted:
                    self._low_water = 0  # wake when the last item ends
                self._raise_if_stopped()
                if not self._in_flight:
                    if self._exhausted:
                        return self._results
                    if not self._is_async:
                        continue  # room for more input
                await self._sleep(loop)
        finally:
            self._end()
            await self._close_source()

    def _fed(self, n: int) -> None:
        if n:
            self._results.extend([None] * n)
            super()._fed(n)

    def _grow_results(self, pos: int) -> None:
        """Pulled: make room for the result at ``pos`` (the worker found the list short)."""
        results = self._results
        results.extend([None] * max(pos + 1 - len(results), len(results) // 2 + 64))

    def _read(self) -> int:
        """Pulled: how many inputs the workers have read (the enumerate's next index)."""
        reduced: Any = self._esrc.__reduce__()  # (enumerate, (iterator, next index))
        return int(reduced[1][1])

    def counts(self) -> tuple[int, int]:
        # Derived, so that a success costs the worker nothing beyond its result: every
        # input read is running (its worker's slot holds this call), lost, or succeeded.
        read = self._read()
        running = sum(slot.call is self for slot in self._pool._slots.values())
        return read, read - running - self._lost

    def _item_failed(self, pos: int, exc: BaseException) -> None:
        # Fail fast, now rather than when the caller wakes: in between, the workers
        # would start more of this call's queued items.
        self._in_flight -= 1
        if self._error is None:
            self._error = exc
        self._end()
        self._wake()
