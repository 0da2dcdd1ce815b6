"""Batches: how items travel to the cluster, and how ``map`` / ``map_iter`` feed them.

Dask's cost per task is hundreds of microseconds or more, so items travel in batches,
one Dask task each. A :class:`BatchSizer` picks the size: small at first, then aiming at
a batch of about :data:`TARGET_SECONDS` of work, from the time the worker reports for
each batch. A :class:`MapCall` reads its input lazily, a batch at a time, and keeps at
most ``window`` batches in flight (sent, or back and not yet handed to its caller), so
an endless input works and the client's memory follows the window.

Payloads are pickled here, on the client, before Dask sees them: a function or an
argument that cannot be pickled is then named in a :class:`TypeError` at the call,
instead of failing somewhere inside Dask.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._runner import MAP, STOP_AFTER, STOP_ALL, SUBMIT, dumps

if TYPE_CHECKING:
    from ._executor import ClusterExecutor

__all__ = ["Batch", "BatchSizer", "MapCall", "MapIterator", "encode_map", "encode_submit"]

_T = TypeVar("_T")

TARGET_SECONDS = 0.03  # the work a batch aims at: long enough to hide Dask's cost
FIRST_SIZE = 4  # the first batches of a call, before anything is measured
LARGEST_SIZE = 10_000  # bounds the memory of one batch (and of the window)
GROWTH = 8  # a batch is at most this many times larger than the previous one


class BatchSizer:
    """The number of items to put in the next batch; fixed when ``batch_size`` is given."""

    __slots__ = ("fixed", "size")

    def __init__(self, batch_size: int | None) -> None:
        self.fixed = batch_size is not None
        self.size = batch_size if batch_size is not None else FIRST_SIZE

    def observe(self, items: int, elapsed: float) -> None:
        """A batch of ``items`` took ``elapsed`` seconds on its worker."""
        if self.fixed or items <= 0:
            return
        per_item = elapsed / items
        wanted = TARGET_SECONDS / per_item if per_item > 0 else LARGEST_SIZE
        self.size = max(1, min(int(wanted), self.size * GROWTH, LARGEST_SIZE))


def check_batch_size(batch_size: object) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return batch_size


# -- pickling, with the culprit named ------------------------------------------------------


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unpicklable(obj: Any) -> Exception | None:
    try:
        dumps(obj)
    except Exception as exc:
        return exc
    return None


def _culprit(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None, where: str
) -> TypeError:
    """The TypeError for an item that cannot be pickled, naming what in it cannot."""
    name = _fn_name(fn)
    exc = _unpicklable(fn)
    if exc is not None:
        return TypeError(
            f"cannot send the function {name} to the cluster: it cannot be pickled ({exc})"
        )
    for i, arg in enumerate(args):
        exc = _unpicklable(arg)
        if exc is not None:
            return TypeError(
                f"cannot send argument {i} ({_short(arg)}) of {name}(){where} to the "
                f"cluster: it cannot be pickled ({exc})"
            )
    for key, arg in (kwargs or {}).items():
        exc = _unpicklable(arg)
        if exc is not None:
            return TypeError(
                f"cannot send argument {key}={_short(arg)} of {name}(){where} to the "
                f"cluster: it cannot be pickled ({exc})"
            )
    return TypeError(f"cannot send a call of {name}(){where} to the cluster: it cannot be pickled")


def encode_map(fn: Any, opts: Any, items: list[tuple[Any, ...]], first: int, stop: int) -> bytes:
    """The payload of a map batch; a TypeError naming the culprit if it cannot be pickled.
    ``first`` is the input position of the batch's first item (for the message)."""
    try:
        return dumps((MAP, fn, opts, items, stop))
    except Exception:
        for i, args in enumerate(items):
            if _unpicklable((fn, args)) is not None:
                raise _culprit(fn, args, None, f" for input {first + i}") from None
        raise  # pragma: no cover - the batch failed but none of its parts does


def encode_submit(
    entries: list[tuple[Any, tuple[Any, ...], dict[str, Any] | None, Any]],
) -> tuple[bytes | None, dict[int, TypeError]]:
    """The payload of a batch of submitted calls, and the calls that cannot be pickled
    (by index); those are left out of the payload."""
    try:
        return dumps((SUBMIT, None, None, entries, 0)), {}
    except Exception:
        pass
    bad: dict[int, TypeError] = {}
    for i, (fn, args, kwargs, _opts) in enumerate(entries):
        if _unpicklable((fn, args, kwargs)) is not None:
            bad[i] = _culprit(fn, args, kwargs, "")
    good = [entry for i, entry in enumerate(entries) if i not in bad]
    return (dumps((SUBMIT, None, None, good, 0)) if good else None), bad


# -- a batch on its way ----------------------------------------------------------------------


class Batch:
    """One Dask task: ``size`` items, of one map call or of submitted futures."""

    __slots__ = (
        "call",
        "dask",
        "ended",
        "errors",
        "failure",
        "futures",
        "id",
        "live",
        "retried",
        "size",
        "sizer",
        "task",
        "values",
        "worker_cancelled",
    )

    def __init__(
        self, batch_id: int, size: int, futures: list[Any] | None, call: Any, sizer: BatchSizer
    ) -> None:
        self.id = batch_id
        self.size = size
        self.live = size  # items not cancelled by the client
        self.retried = 0  # the retries of its items counted so far
        self.futures = futures  # the AsyncFutures of submitted items, None for a map batch
        self.call: MapCall[Any] | None = call
        self.sizer = sizer
        self.dask: Any = None  # the distributed.Future
        self.task: asyncio.Task[None] | None = None  # the client task that collects it
        self.ended = False
        self.values: list[Any] | None = None
        self.errors: dict[int, BaseException] | None = None
        self.worker_cancelled: list[int] | None = None
        self.failure: BaseException | None = None  # the batch itself failed (Dask error)

    def error_at(self, index: int) -> BaseException | None:
        """The exception of item ``index``, or None if it returned a value."""
        if self.failure is not None:
            return self.failure
        if self.errors is not None and index in self.errors:
            return self.errors[index]
        if self.worker_cancelled is not None and index in self.worker_cancelled:
            return asyncio.CancelledError()
        return None

    def first_error(self) -> BaseException | None:
        if self.failure is not None:
            return self.failure
        indices = list(self.errors or ()) + list(self.worker_cancelled or ())
        return self.error_at(min(indices)) if indices else None


# -- map and map_iter ------------------------------------------------------------------------


async def _zip_async(iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]) -> Any:
    """``zip`` over sync and async iterables, as an async generator of tuples."""
    iterators: list[Any] = [
        aiter(it) if isinstance(it, AsyncIterable) else iter(it) for it in iterables
    ]
    try:
        while True:
            args = []
            for it in iterators:
                try:
                    args.append(await anext(it) if isinstance(it, AsyncIterator) else next(it))
                except (StopIteration, StopAsyncIteration):
                    return
            yield tuple(args)
    finally:
        for it in iterators:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()


class MapCall(Generic[_T]):
    """One ``map`` / ``map_iter`` call: its input, its batches in flight, its deadline."""

    def __init__(
        self,
        executor: ClusterExecutor,
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
            self._async = _zip_async(iterables)
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

    async def _take(self, n: int) -> list[tuple[Any, ...]]:
        if self._sync is not None:
            return list(islice(self._sync, n))
        items = []
        async for args in self._async:
            items.append(args)
            if len(items) >= n:
                break
        return items

    async def fill(self) -> None:
        """Send batches until the window is full or the input ends."""
        while not self._exhausted and len(self.inflight) < self._window and not self.closed:
            items = await self._take(self.sizer.size)
            if self.closed:  # aborted while an async input was being read
                return
            if len(items) < self.sizer.size:
                self._exhausted = True
            if not items:
                return
            stop = STOP_ALL if self.fail_fast else STOP_AFTER
            payload = encode_map(self.fn, self.opts, items, self._read, stop)
            self._read += len(items)
            self.inflight.append(self._executor._send(payload, len(items), None, self))

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
        if self._async is not None:
            executor._background(self._async.aclose())
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
                while inflight and inflight[0].ended:
                    batch = inflight.popleft()
                    error = batch.first_error()
                    if error is not None:
                        raise error
                    results.extend(batch.values or ())
                if self.error is not None:
                    raise self.error
                if self.finished:
                    return results
                if not inflight or not inflight[0].ended:
                    await self.sleep()
        finally:
            self.close()


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
                    raise StopAsyncIteration
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
            raise

    async def aclose(self) -> None:
        """Stop early: cancel the call's items on the cluster and read no more input."""
        self._call.close()

    def __del__(self) -> None:
        call = self._call
        if not call.closed and not call._loop.is_closed():
            call.close()
