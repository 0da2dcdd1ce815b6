"""``map`` and ``map_iter`` on the cluster: lazy input, a bounded window of batches.

A :class:`MapCall` reads its input lazily, a batch at a time, and keeps at most ``window``
batches in flight (sent, or back and not yet handed to its caller), so an endless input
works and the client's memory follows the window. ``map`` raises the first failure as
soon as it is back; ``map_iter`` yields in input order and raises an item's failure when
it reaches it. Either way, a call that ends early cancels its batches still out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from itertools import islice
from typing import Any, Generic, Protocol, TypeVar

from .._inputs import READING, Feeder, zip_async
from ._batching import Batch, BatchSizer, encode_map
from ._runner import STOP_AFTER, STOP_ALL

__all__ = ["LINGER_SECONDS", "MapCall", "MapIterStart", "MapIterator"]

# How long the first item of a partly read batch of an async input may wait on the client
# for the batch to fill: over a slow stream, a batch leaves with what it has by then.
LINGER_SECONDS = 0.005

_T = TypeVar("_T")


class CallHost(Protocol):
    """What a call asks of its executor (ClusterExecutor): sending and cancelling its
    batches, tracking its input's feeder task, being told when it ends."""

    def _send(self, payload: bytes, size: int, futures: None, call: Any) -> Batch: ...
    def _cancel_batch(self, batch: Batch) -> None: ...
    def _track(self, task: asyncio.Task[Any]) -> None: ...
    def _call_ended(self, call: Any) -> None: ...
    async def _ready(self) -> None: ...
    async def _recount_threads(self) -> None: ...
    def _new_call(self, *args: Any) -> Any: ...


class MapCall(Generic[_T]):
    """One ``map`` / ``map_iter`` call: its input, its batches in flight, its deadline."""

    def __init__(
        self,
        executor: CallHost,
        fn: Any,
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        opts: Any,
        window: int,
        batch_size: int | None,
        timeout: float | None,
    ) -> None:
        self._executor = executor
        self.fn = fn
        self.opts = opts
        self._window = window
        self.sizer = BatchSizer(batch_size)
        self._sync: Iterator[tuple[Any, ...]] | None = None
        self._async: Any = None
        if any(isinstance(it, AsyncIterable) for it in iterables):
            self._async = zip_async(iterables)
        else:
            self._sync = zip(*iterables)  # noqa: B905 - the shortest input ends the call
        self._read = 0  # items read from the input so far
        self._exhausted = False
        self.inflight: deque[Batch] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None  # set by abort, or by a failed item (map)
        self.closed = False
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._deadline = None if timeout is None else loop.time() + timeout
        self._timeout = timeout
        # An async input is read by a task of the call's own (``_feed``), so that a
        # pending read holds up neither the results nor the deadline.
        self._feeder: Feeder | None = None
        self._partial: list[tuple[Any, ...]] = []  # read by the feeder, not yet sent
        # Armed at a batch's first item; None with items read once it has fired (due).
        self._linger: asyncio.TimerHandle | None = None
        if self._async is not None:
            self._feeder = Feeder(self._async, "antflow-cluster-input", executor._track)

    async def fill(self) -> None:
        """Send batches until the window is full or the input ends (an async input: let
        its feeder read on)."""
        if self._async is not None:
            self._feed_more()
            return
        while not self._exhausted and len(self.inflight) < self._window and not self.closed:
            size = self.sizer.size
            items = list(islice(self._sync, size))  # type: ignore[arg-type]
            if len(items) < size:
                self._exhausted = True
            if not items:
                return
            self._send_batch(items)

    def _send_batch(self, items: list[tuple[Any, ...]]) -> None:
        stop = STOP_ALL if self.fail_fast else STOP_AFTER
        payload = encode_map(self.fn, self.opts, items, self._read, stop)
        self._read += len(items)
        self.inflight.append(self._executor._send(payload, len(items), None, self))

    def _feed_more(self) -> None:
        feeder: Feeder = self._feeder  # type: ignore[assignment]
        if feeder.task is None:
            if not self.closed:
                feeder.start(self._loop, self._feed())
        else:
            feeder.more()

    async def _feed(self) -> None:
        """Read the async input while the window has room; send a batch once it is full,
        or once its first item has waited ``LINGER_SECONDS`` (``_linger_ended``)."""
        feeder: Feeder = self._feeder  # type: ignore[assignment]
        feeder.state = READING
        loop = self._loop
        source = self._async
        ended = False  # the input has no more items
        try:
            while not self.closed:
                items = self._partial
                if len(self.inflight) >= self._window:
                    await feeder.room(loop)  # the caller takes a batch: fill()
                elif items and (ended or self._linger is None or len(items) >= self.sizer.size):
                    self._send_partial()
                elif ended:
                    break
                else:
                    try:
                        args = await anext(source)
                    except StopAsyncIteration:
                        ended = True
                        continue
                    if self.closed:
                        return  # ended while the input was read: send nothing more
                    items = self._partial  # (a new list if the linger timer sent the last)
                    items.append(args)
                    if len(items) == 1:
                        self._linger = loop.call_later(LINGER_SECONDS, self._linger_ended)
        except BaseException as exc:  # the input raised: the caller raises it
            self._failed(exc)
        finally:
            if self._linger is not None:
                self._linger.cancel()
            self._exhausted = True
            self._wake()
            await feeder.close_input()  # (which the call's end does not cut short)

    def _send_partial(self) -> None:
        """Send the batch the feeder has read so far (it has room in the window)."""
        items, self._partial = self._partial, []
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._send_batch(items)
        self._wake()  # (a caller with no batch in flight waits for one)

    def _linger_ended(self) -> None:
        """A batch's first item has waited long enough: a slow stream's items leave now,
        while the feeder still waits for the next one (or once the window has room)."""
        self._linger = None
        if self.closed or not self._partial:
            return
        if len(self.inflight) >= self._window:
            return  # due: the feeder sends it once the caller takes a batch
        try:
            self._send_partial()
        except BaseException as exc:  # an item that cannot be pickled: the caller raises it
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if not self.closed and self.error is None:
            self.error = exc
        self._wake()

    async def wait_closed(self) -> None:
        """Wait until an async input is closed; raise what closing it raised."""
        if self._feeder is not None:
            await self._feeder.wait_closed()

    @property
    def finished(self) -> bool:
        return self._exhausted and not self.inflight

    def batch_ended(self, batch: Batch) -> None:
        """Called by the executor when one of this call's batches is back."""
        if self.error is None and self.fail_fast:
            error = batch.first_error()
            if error is not None:
                self.error = error
        self._wake()

    fail_fast = True  # map: the first failure anywhere ends the call

    def abort(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def sleep(self) -> None:
        """Wait for a batch to come back (or an abort); past the deadline, TimeoutError."""
        loop = self._loop
        self._waiter = waiter = loop.create_future()
        timer = None
        if self._deadline is not None:
            timer = loop.call_at(self._deadline, self._expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _expire(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(
                asyncio.TimeoutError(f"map did not finish within timeout={self._timeout}s")
            )

    def close(self) -> None:
        """End the call: cancel its batches still out, read no more input."""
        if self.closed:
            return
        self.closed = True
        self._exhausted = True
        executor = self._executor
        while self.inflight:
            batch = self.inflight.popleft()
            if not batch.ended:
                executor._cancel_batch(batch)
        if self._feeder is not None:
            self._feeder.stop(self._loop)  # (an input never read is closed now)
        executor._call_ended(self)

    async def run_map(self) -> list[_T]:
        """``map``: every result in input order; the first failure raises at once."""
        results: list[Any] = []
        inflight = self.inflight
        try:
            while True:
                if self.error is not None:
                    raise self.error
                await self.fill()
                if self.finished:
                    return results
                if not inflight:  # an async input is being read: wait for its batch
                    await self.sleep()
                    continue
                head = inflight[0]
                if not head.ended:
                    await self.sleep()
                    continue
                inflight.popleft()
                error = head.first_error()
                if error is not None:
                    raise error
                results.extend(head.values or ())
        finally:
            self.close()
            await self.wait_closed()


class MapIterator(AsyncIterator[_T]):
    """The async iterator of ``map_iter``: results in input order, a batch at a time.

    A shell around the call: dropping it (a ``break`` out of ``async for``) ends the call
    at once through ``__del__``, so its items on the cluster are cancelled without
    waiting for an ``aclose()`` or a garbage collection.
    """

    __slots__ = ("_batch", "_call", "_pos")

    def __init__(self, call: MapCall[_T]) -> None:
        self._call = call
        self._batch: Batch | None = None
        self._pos = 0

    def __aiter__(self) -> MapIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        call = self._call
        try:
            while True:
                batch = self._batch
                if batch is not None:
                    pos = self._pos
                    if pos < batch.size:
                        self._pos = pos + 1
                        error = batch.error_at(pos)
                        if error is not None:
                            raise error
                        value: _T = batch.values[pos]  # type: ignore[index]
                        return value
                    self._batch = None
                if call.error is not None:
                    raise call.error
                if call.closed:
                    raise StopAsyncIteration
                await call.fill()
                if call.finished:
                    call.close()
                    await call.wait_closed()
                    raise StopAsyncIteration
                if not call.inflight:  # an async input is being read: wait for its batch
                    await call.sleep()
                    continue
                head = call.inflight[0]
                if head.ended:
                    self._batch = call.inflight.popleft()
                    self._pos = 0
                else:
                    await call.sleep()
        except StopAsyncIteration:
            raise
        except BaseException:
            call.close()  # a failed item, the deadline, a cancelled consumer: end the call
            await call.wait_closed()
            raise

    async def aclose(self) -> None:
        """Stop early: cancel the call's items on the cluster and read no more input."""
        self._call.close()
        await self._call.wait_closed()

    def __del__(self) -> None:
        call = self._call
        if not call.closed and not call._loop.is_closed():
            call.close()


class MapIterStart(AsyncIterator[_T]):
    """``map_iter``'s iterator before its first step: the call starts there, once the
    executor is connected (``map_iter`` itself is not a coroutine)."""

    def __init__(self, executor: CallHost, *args: Any) -> None:
        self._executor = executor
        self._args = args
        self._inner: MapIterator[_T] | None = None
        self._closed = False

    def __aiter__(self) -> MapIterStart[_T]:
        return self

    async def __anext__(self) -> _T:
        inner = self._inner
        if inner is None:
            if self._closed:
                raise StopAsyncIteration
            await self._executor._ready()
            await self._executor._recount_threads()
            call: MapCall[_T] = self._executor._new_call(*self._args)
            call.fail_fast = False  # map_iter raises an item's error when it is reached
            inner = self._inner = MapIterator(call)
        return await inner.__anext__()

    async def aclose(self) -> None:
        """Stop early: cancel the call's items on the cluster and read no more input."""
        self._closed = True
        if self._inner is not None:
            await self._inner.aclose()
