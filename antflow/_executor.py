"""AsyncExecutor: a bounded pool of worker coroutines on raw loop futures.

The pool has ``max_workers`` slots. A slot is a long-lived worker coroutine (started
lazily, when work finds every worker busy) that pops entries from one deque and awaits
each item's coroutine inline: no Task, no queue object and no lock per item. An idle
worker parks on a raw future from ``loop.create_future()``; new work wakes one parked
worker when none is already on its way, and a woken worker that finds more work wakes
the next ones (see _wake_worker). The loop is single-threaded, so the pool's state lives
in plain attributes that change only between two awaits; the one door from other threads
is submit_threadsafe (``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import sys
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from inspect import isawaitable
from types import TracebackType
from typing import Any, Final, TypeVar

from ._calls import IterState, MapCall, MapIterator
from ._errors import ExecutorShutdownError
from ._future import CANCELLED, FINISHED, PENDING, RUNNING, AsyncFuture
from ._ratelimit import RateLimiter
from ._retry import call_with_retries
from ._stats import ExecutorStats
from ._waiting import WaitStrategy, as_completed, wait

__all__ = ["AsyncExecutor"]

_T = TypeVar("_T")

_get_running_loop = asyncio._get_running_loop  # C-fast, and returns None outside a loop

# Task.uncancel() and Task.cancelling() count cancellations from 3.11 on. Without them
# (3.10) an own cancel cannot be told from a foreign one, and nothing needs undoing.
_HAS_UNCANCEL: Final = sys.version_info >= (3, 11)
if sys.version_info >= (3, 11):

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return task.uncancel()

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

else:  # pragma: no cover - Python 3.10

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return 0

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 1  # assume the worst: a foreign cancel


# The states of the executor.
_OPEN = 0
_CLOSING = 1  # shutdown() called: no new work; queued work and calls in progress finish
_CLOSED = 2  # every worker has exited
_STATE_NAMES = ("open", "closing", "closed")

# Every how many items a worker lets the loop run other callbacks, so that a stream of
# items that never suspend cannot starve the loop.
_YIELD_EVERY = 64


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark what ended a worker as seen: KeyboardInterrupt / SystemExit reach the loop
    already (and the item's future holds them), so a "never retrieved" log adds nothing."""
    if not task.cancelled():
        task.exception()


def _default_max_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)  # as concurrent.futures' thread pool


def _check_non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be greater than 0, got {value!r}")


def _check_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be an async callable, got {type(fn).__name__}: {fn!r}")


def _failure(exc: BaseException, fn: Any, coro: object) -> BaseException:
    """What an item failed with. The hot path awaits what ``fn`` returned unchecked; if
    that was not awaitable, ``await`` raised a TypeError that does not name ``fn``, so it
    is replaced here by one that does. (``coro`` is None or awaitable unless this item's
    call returned it: the worker resets it after every failure.)"""
    if type(exc) is TypeError and coro is not None and not isawaitable(coro):
        return _not_awaitable(fn, coro)
    return exc


def _not_awaitable(fn: Callable[..., Any], value: object) -> TypeError:
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return TypeError(
        f"{name}() returned {type(value).__name__}, which is not awaitable: "
        "antflow runs async functions (or callables returning an awaitable)"
    )


class _Options:
    """What an item needs beyond ``await fn(*args)``; None on the fast path."""

    __slots__ = ("context", "limiter", "retries", "retry_delay", "semaphore", "task_timeout")

    def __init__(
        self,
        retries: int,
        retry_delay: float,
        semaphore: asyncio.Semaphore | None,
        task_timeout: float | None,
        limiter: RateLimiter | None,
        context: bool,
    ) -> None:
        self.retries = retries
        self.retry_delay = retry_delay
        self.semaphore = semaphore
        self.task_timeout = task_timeout
        self.limiter = limiter
        self.context = context


class _Slot:
    """What one worker runs for a map/map_iter call: the call can cancel it through this."""

    __slots__ = ("_runner", "cancelled", "item")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._runner: asyncio.Task[Any] = task  # what to cancel: the worker, or an item Task
        self.item: Any = None  # the (call, place, args) entry running now, None between items
        self.cancelled: asyncio.Task[Any] | None = None  # what the call cancelled, if it did


class AsyncExecutor:
    """Run async callables on a bounded pool of workers, the ``concurrent.futures`` way.

    ``submit`` queues one call and returns an :class:`AsyncFuture`; ``map`` and
    ``map_iter`` run a callable over iterables in input order, reading the input lazily
    with a bounded window of items in flight; ``as_completed`` and ``wait`` coordinate
    futures. At most ``max_workers`` calls run at once.

    Creating an executor does nothing: it binds to the running loop on first use, and
    using it from another loop raises :class:`RuntimeError`. Use it as ``async with``
    (the exit waits for queued work) or call :meth:`shutdown`.
    """

    def __init__(
        self,
        max_workers: int | None = 5,
        *,
        max_pending: int = 0,
        max_per_second: float | None = None,
        task_timeout: float | None = None,
        propagate_context: bool = False,
        name: str | None = None,
    ) -> None:
        if max_workers is None:
            max_workers = _default_max_workers()
        elif isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"max_workers must be an int, got {type(max_workers).__name__}")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int):
            raise TypeError(f"max_pending must be an int, got {type(max_pending).__name__}")
        if max_pending < 0:
            raise ValueError(f"max_pending must not be negative (0 = no bound), got {max_pending}")
        if max_per_second is not None:
            _check_positive("max_per_second", max_per_second)
        if task_timeout is not None:
            _check_positive("task_timeout", task_timeout)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")

        self._max_workers: Final = max_workers
        self._max_pending: Final = max_pending
        self._max_per_second: Final = max_per_second
        self._task_timeout: Final = task_timeout
        self._propagate_context: Final = bool(propagate_context)
        self._name: Final = name or "antflow"
        self._limiter = RateLimiter(max_per_second) if max_per_second is not None else None
        # The options every item gets unless its call gives its own; None = fast path.
        self._default_opts: _Options | None = None
        if self._limiter is not None or task_timeout is not None or propagate_context:
            self._default_opts = _Options(
                0, 0.1, None, task_timeout, self._limiter, bool(propagate_context)
            )

        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _OPEN
        self._queue: deque[Any] = deque()  # AsyncFuture or (call, index, args)
        self._idle: deque[asyncio.Future[None]] = deque()  # parked workers' wake-up futures
        self._room_waiters: deque[asyncio.Future[None]] = deque()  # asubmit/map waiting for room
        self._workers: set[asyncio.Task[None]] = set()
        self._slots: dict[asyncio.Task[Any], _Slot] = {}
        self._full = False  # every slot has a worker
        self._worker_seq = 0
        self._waking = 0  # workers woken (or started) that have not looked at the queue yet
        self._calls: set[Any] = set()  # map / map_iter calls in progress
        self._drained: asyncio.Future[None] | None = None  # set when the last worker exits
        # Counters (see ExecutorStats); updated before a future is resolved.
        self._submitted = 0
        # Queue entries that are dead: futures cancelled while queued. A worker skips them.
        self._dead = 0
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._retried = 0

    # -- introspection ---------------------------------------------------------------------

    @property
    def _pending(self) -> int:
        # Items queued and not started: the queue less its dead entries. Deriving the
        # count spares the hot path an update per item.
        return len(self._queue) - self._dead

    @property
    def _running(self) -> int:
        # Every accepted item is in exactly one state, so the running ones are the rest;
        # deriving the count spares the hot path two updates per item.
        return self._submitted - self._pending - self._completed - self._failed - self._cancelled

    @property
    def max_workers(self) -> int:
        """How many items may run at once."""
        return self._max_workers

    def stats(self) -> ExecutorStats:
        """Return a snapshot of the counters; cheap enough to call per request."""
        return ExecutorStats(
            self._submitted,
            self._pending,
            self._running,
            self._completed,
            self._failed,
            self._cancelled,
            self._retried,
        )

    def __repr__(self) -> str:
        return (
            f"<AsyncExecutor {self._name!r} {_STATE_NAMES[self._state]} "
            f"max_workers={self._max_workers} workers={len(self._workers)} "
            f"idle={len(self._idle)} pending={self._pending} running={self._running} "
            f"calls={len(self._calls)}>"
        )

    # -- binding ----------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, binding to it on first use."""
        loop = _get_running_loop()
        if loop is None:
            raise RuntimeError("AsyncExecutor must be used from a coroutine on a running loop")
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this AsyncExecutor is bound to another event loop (the loop of its first "
                "use); create one executor per event loop"
            )
        return loop

    def _check_open(self) -> None:
        if self._state != _OPEN:
            raise ExecutorShutdownError("cannot schedule new work after shutdown()")

    # -- submitting -------------------------------------------------------------------------

    def _options(
        self,
        retries: int,
        retry_delay: float,
        semaphore: asyncio.Semaphore | None,
        task_timeout: float | None,
    ) -> _Options | None:
        """Validate one call's options and return the _Options its items share."""
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"retries must be an int, got {type(retries).__name__}")
        if retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        _check_non_negative("retry_delay", retry_delay)
        if semaphore is not None and not (
            hasattr(semaphore, "__aenter__") and hasattr(semaphore, "__aexit__")
        ):
            raise TypeError(
                f"semaphore must be an asyncio.Semaphore (an async context manager), "
                f"got {type(semaphore).__name__}"
            )
        if task_timeout is not None:
            _check_positive("task_timeout", task_timeout)
        else:
            task_timeout = self._task_timeout
        if not retries and semaphore is None and task_timeout == self._task_timeout:
            return self._default_opts
        return _Options(
            retries, retry_delay, semaphore, task_timeout, self._limiter, self._propagate_context
        )

    def submit(
        self,
        fn: Callable[..., Awaitable[_T]],
        /,
        *args: Any,
        retries: int = 0,
        retry_delay: float = 0.1,
        semaphore: asyncio.Semaphore | None = None,
        task_timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncFuture[_T]:
        """Queue ``fn(*args, **kwargs)`` and return its :class:`AsyncFuture`.

        The call never runs before ``submit`` returns. ``retries`` extra attempts are made
        on exceptions, waiting ``retry_delay * 2**k`` seconds before the k-th retry.
        ``semaphore`` is acquired around each attempt, so a limit can be shared by tasks
        of several executors. ``task_timeout`` cancels an attempt that runs longer (it
        then fails with :class:`asyncio.TimeoutError`, and is retried if retries remain).
        Raises :class:`ExecutorShutdownError` after shutdown and
        :class:`asyncio.QueueFull` when ``max_pending`` items are already waiting.
        """
        # The fast path: a bound, open executor and a call without options of its own.
        loop = _get_running_loop()
        if loop is None or loop is not self._loop:
            self._bind()
        if self._state:  # not _OPEN
            self._check_open()
        if not callable(fn):
            _check_callable(fn)
        if retries or semaphore is not None or task_timeout is not None or retry_delay != 0.1:
            opts = self._options(retries, retry_delay, semaphore, task_timeout)
        else:
            opts = self._default_opts
        if self._max_pending:
            self._check_room()
        future: AsyncFuture[_T] = AsyncFuture(self, fn, args, kwargs or None, opts)
        if opts is not None and opts.context:
            future._context = contextvars.copy_context()
        self._queue.append(future)
        self._submitted += 1
        if not self._waking:
            self._wake_worker()
        return future

    def _check_room(self) -> None:
        pending = self._pending
        if pending >= self._max_pending:
            raise asyncio.QueueFull(
                f"{pending} items are already waiting (max_pending={self._max_pending}); "
                "use 'await executor.asubmit(...)' to wait for room"
            )

    async def asubmit(
        self,
        fn: Callable[..., Awaitable[_T]],
        /,
        *args: Any,
        retries: int = 0,
        retry_delay: float = 0.1,
        semaphore: asyncio.Semaphore | None = None,
        task_timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncFuture[_T]:
        """Like :meth:`submit`, but wait for room when ``max_pending`` items are waiting."""
        self._bind()
        self._check_open()
        if self._max_pending:
            await self._wait_for_room()
        return self.submit(
            fn,
            *args,
            retries=retries,
            retry_delay=retry_delay,
            semaphore=semaphore,
            task_timeout=task_timeout,
            **kwargs,
        )

    def submit_threadsafe(
        self, fn: Callable[..., Awaitable[_T]], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[_T]:
        """Submit from another thread; return a :class:`concurrent.futures.Future`.

        The executor must already be bound to a running loop (used once from it). The
        call's result, exception or cancellation reaches the returned future; cancelling
        the returned future cancels the task. Keyword arguments are those of
        :meth:`submit`. This is the executor's one door from other threads.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError(
                "submit_threadsafe needs an executor bound to a running loop: use it once "
                "from that loop first"
            )
        _check_callable(fn)
        outer: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def relay(inner: AsyncFuture[_T]) -> None:
            if not outer.set_running_or_notify_cancel():
                return
            if inner._state == CANCELLED:
                outer.cancel()  # pragma: no cover - a RUNNING cf future cannot be cancelled
            elif inner._exception is not None:
                outer.set_exception(inner._exception)
            else:
                outer.set_result(inner._result)

        def start() -> None:
            if outer.cancelled():
                outer.set_running_or_notify_cancel()  # cancelled by its thread: notify it
                return
            try:
                inner = self.submit(fn, *args, **kwargs)
            except BaseException as exc:
                if outer.set_running_or_notify_cancel():
                    outer.set_exception(exc)
                return

            def on_end(inner: AsyncFuture[_T]) -> None:
                if inner._state == CANCELLED:
                    outer.cancel()
                    # Mark it notified, as executors do: only then do
                    # concurrent.futures.wait / as_completed see it done.
                    outer.set_running_or_notify_cancel()
                else:
                    relay(inner)

            inner._listen(on_end)
            outer.add_done_callback(
                lambda f: loop.call_soon_threadsafe(inner.cancel) if f.cancelled() else None
            )

        loop.call_soon_threadsafe(start)
        return outer

    def _wake_worker(self) -> bool:
        """Wake one parked worker, or start one if none is parked and a slot is free.

        At most a few workers are "waking" (woken, not yet running) at a time: a woken
        worker that still finds items queued wakes the next ones (see _work). Waking one
        worker per queued item would waste a wake-up on every item that a running worker
        reaches first, which for short items is nearly all of them.
        """
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._waking += 1
                return True
        if len(self._workers) < self._max_workers:
            self._start_worker()
            return True
        return False

    def _spread(self) -> None:
        """A worker that has just woken found more work queued: bring in two more, so
        that a burst reaches the whole pool in a few loop iterations."""
        if self._wake_worker() and len(self._queue) > 1:
            self._wake_worker()

    def _start_worker(self) -> None:
        """Start a worker; it counts as waking until it first looks at the queue."""
        self._waking += 1
        loop = self._loop
        assert loop is not None
        self._worker_seq += 1
        # A worker runs in a fresh, empty context, not in a copy of whichever submitter
        # happened to start it: no request's context variables leak into other requests'
        # tasks (propagate_context=True gives each task its submitter's context).
        name = f"{self._name}-worker-{self._worker_seq}"
        if sys.version_info >= (3, 11):
            task = loop.create_task(self._work(), name=name, context=contextvars.Context())
        else:  # pragma: no cover - Python 3.10
            task = contextvars.Context().run(loop.create_task, self._work(), name=name)
        # A worker parked in an executor that the program dropped without shutdown() is
        # collected with it; that is no error worth a log line (nothing was lost).
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        task.add_done_callback(_retrieve)
        self._workers.add(task)
        self._full = len(self._workers) >= self._max_workers

    async def _wait_for_room(self, accepted: bool = False) -> None:
        """Wait until fewer than ``max_pending`` items are queued.

        ``accepted`` work (a map call in progress) may go on after shutdown; new work
        (``asubmit``) raises ExecutorShutdownError instead.
        """
        loop = self._bind()
        while self._pending >= self._max_pending and (accepted or self._state == _OPEN):
            waiter: asyncio.Future[None] = loop.create_future()
            self._room_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._on_room()  # a wake-up this waiter cannot use goes to the next one
                else:
                    self._room_waiters.remove(waiter)
                raise
        if not accepted:
            self._check_open()

    def _on_room(self) -> None:
        """A pending item left the queue: let one waiter for room go on."""
        waiters = self._room_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- the worker ----------------------------------------------------------------------

    async def _work(self) -> None:
        """One slot of the pool: run queued items one after another until shutdown.

        A queue entry is either an AsyncFuture (from submit) or a ``(call, index, args)``
        tuple (an item of a map/map_iter call, which needs no future of its own). The
        worker's _Slot tells a call which of its items this worker runs, so that the
        call can cancel it.
        """
        loop = self._loop
        assert loop is not None
        task = asyncio.current_task()
        assert task is not None
        slot = _Slot(task)
        self._slots[task] = slot
        queue = self._queue
        ran = 0
        yield_every = _YIELD_EVERY
        coro: Any = None  # the item's coroutine, kept for _failure
        item: Any = None
        # Python 3.10 cannot tell an item's own CancelledError from a cancel of the
        # worker, so the worker stops on both; then it is replaced if work is left.
        replace = False
        self._waking -= 1  # this worker was counted as waking when it was started
        fresh = True
        try:
            while True:
                if not queue:
                    if self._state != _OPEN and not self._calls:
                        self._release_idle_workers()  # the others have nothing left either
                        return
                    # Suspended between items, a worker must not keep the last item's
                    # objects alive: finished work is not retained.
                    item = call = args = coro = result = None
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._idle.append(waiter)
                    try:
                        await waiter
                    finally:
                        if waiter.done() and not waiter.cancelled():
                            self._waking -= 1
                    fresh = True
                    continue
                item = queue.popleft()
                if fresh:
                    # Just woken (or started), and work is left: bring in more workers.
                    # Every enqueue wakes a worker when none is waking, so only a worker
                    # that has just woken needs to look (see _wake_worker).
                    fresh = False
                    if queue and (self._idle or not self._full):
                        self._spread()
                # The two kinds of entry are run by two branches that mirror each other
                # (call, await, settle the outcome) on purpose: a shared helper would
                # cost a call or a coroutine per item on the hottest path of the library.
                if type(item) is tuple:
                    # -- an item of a map / map_iter call ------------------------------
                    call, pos, args = item
                    slot.item = item
                    if self._room_waiters:
                        self._on_room()
                    try:
                        if call._plain:
                            # No options, one iterable: the call fed the bare value.
                            coro = call._fn(args)
                            result = await coro  # not awaitable: see _failure
                        elif call._opts is None:
                            coro = call._fn(*args)
                            result = await coro
                        else:
                            result = await self._run_with_options(
                                call._fn,
                                (args,) if call._single else args,
                                None,
                                call._opts,
                                call._context,
                                slot,
                            )
                    except asyncio.CancelledError:
                        if not self._slot_cancelled(slot, task):
                            replace = not _HAS_UNCANCEL
                            raise
                    except (KeyboardInterrupt, SystemExit) as exc:
                        self._slot_failed(slot, exc)
                        raise
                    except BaseException as exc:
                        self._slot_failed(slot, _failure(exc, call._fn, coro))
                        coro = None
                    else:
                        if slot.item is item:
                            slot.item = None
                            self._completed += 1
                            # Hand the result over (see _calls: a list for map, a ring
                            # of window places for map_iter).
                            call._results[pos] = result
                            call._in_flight -= 1
                            if call._in_flight <= call._low_water or pos == call._head_pos:
                                call._wake()
                        elif slot.cancelled is not None:
                            self._slot_cancelled(slot, task)  # it swallowed our cancel
                else:
                    # -- a submitted AsyncFuture ----------------------------------------
                    if item._state != PENDING:  # cancelled while queued: a dead entry
                        self._dead -= 1
                        continue
                    item._state = RUNNING
                    item._runner = task
                    if self._room_waiters:
                        self._on_room()
                    try:
                        if item._opts is None:
                            fn = item._fn
                            kwargs = item._kwargs
                            coro = fn(*item._args, **kwargs) if kwargs else fn(*item._args)
                            result = await coro  # not awaitable: see _failure
                        else:
                            result = await self._run_with_options(
                                item._fn, item._args, item._kwargs, item._opts, item._context, item
                            )
                    except asyncio.CancelledError:
                        if not self._item_cancelled(item, task):
                            replace = not _HAS_UNCANCEL
                            raise
                    except (KeyboardInterrupt, SystemExit) as exc:
                        self._item_failed(item, exc)
                        raise
                    except BaseException as exc:
                        self._item_failed(item, _failure(exc, item._fn, coro))
                        coro = None
                    else:
                        if item._state == RUNNING:
                            self._completed += 1
                            item._state = FINISHED
                            item._result = result
                            item._fn = item._args = item._kwargs = item._runner = None
                            if item._listeners is not None:
                                item._ended()
                        elif item._runner is task:
                            # Cancelled while it ran, but it swallowed the CancelledError.
                            _uncancel(task)
                ran += 1
                if ran == yield_every:
                    ran = 0
                    item = call = args = coro = result = None  # as when parking, below
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            # The worker itself was cancelled (loop teardown): its item ends cancelled.
            if isinstance(item, AsyncFuture):
                if item._state == RUNNING:
                    item._runner = None
                    item.cancel()
            elif slot.item is not None:
                self._slot_ended_cancelled(slot)
            raise
        finally:
            del self._slots[task]
            self._worker_exited(task, replace)

    def _item_cancelled(self, item: AsyncFuture[Any], task: asyncio.Task[Any]) -> bool:
        """Settle a CancelledError out of an item; return False if the worker must stop."""
        if item._state == CANCELLED and item._runner is task:
            # Our own cancel, sent by item.cancel(): consume it. A cancel from outside
            # (loop teardown) may have come too; then the worker stops as asked.
            return _uncancel(task) == 0
        # The item raised CancelledError itself, or the worker was cancelled from
        # outside while the item ran (3.10 cannot tell these apart, see _work).
        outside = _cancelling(task) > 0
        if item._state == RUNNING:
            item._runner = None
            item.cancel()
        return not outside

    def _item_failed(self, item: AsyncFuture[Any], exc: BaseException) -> None:
        if item._state == RUNNING:
            self._failed += 1
            item._state = FINISHED
            item._exception = exc
            item._fn = item._args = item._kwargs = item._runner = None  # type: ignore[assignment]
            item._ended()

    # A map item's outcome, settled through the worker's slot (see _work).

    def _cancel_slot(self, slot: _Slot) -> None:
        """Cancel the call item a slot runs (its call is ending)."""
        slot.item = None
        slot.cancelled = slot._runner
        self._cancelled += 1
        slot._runner.cancel()

    def _slot_cancelled(self, slot: _Slot, task: asyncio.Task[Any]) -> bool:
        """Like _item_cancelled, for a call item."""
        cancelled = slot.cancelled
        if cancelled is not None:
            slot.cancelled = None
            # Only a cancel of the worker itself needs undoing (not one of an item Task).
            return cancelled is not task or _uncancel(task) == 0
        outside = _cancelling(task) > 0
        if slot.item is not None:
            self._slot_ended_cancelled(slot)
        return not outside

    def _slot_ended_cancelled(self, slot: _Slot) -> None:
        call, pos, _ = slot.item
        slot.item = None
        self._cancelled += 1
        call._item_failed(pos, asyncio.CancelledError())

    def _slot_failed(self, slot: _Slot, exc: BaseException) -> None:
        item = slot.item
        if item is not None:
            slot.item = None
            self._failed += 1
            call, pos, _ = item
            call._item_failed(pos, exc)

    def _end_call(self, call: Any) -> None:
        """A map/map_iter call ends: cancel its running items, drop its queued ones."""
        for slot in self._slots.values():
            item = slot.item
            if item is not None and item[0] is call:
                self._cancel_slot(slot)
        # Drop its queued entries now (in place: workers hold the deque), so that their
        # inputs are freed at once; they count as cancelled.
        queue = self._queue
        if queue:
            kept = [entry for entry in queue if type(entry) is not tuple or entry[0] is not call]
            queued = len(queue) - len(kept)
            if queued:
                queue.clear()
                queue.extend(kept)
                self._cancelled += queued
                for _ in range(min(queued, len(self._room_waiters))):
                    self._on_room()
        self._calls.discard(call)
        self._call_ended()

    def _worker_exited(self, task: asyncio.Task[None], replace: bool) -> None:
        self._workers.discard(task)
        self._full = False
        if replace and self._queue and self._state != _CLOSED:
            self._start_worker()
        else:
            self._maybe_closed()

    async def _run_with_options(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        opts: _Options,
        context: contextvars.Context | None,
        holder: AsyncFuture[Any] | _Slot,
    ) -> Any:
        """The slow path: context, retries, semaphore, rate limit and timeout.

        With a context the item runs in a Task of its own; ``holder._runner`` is then
        that Task, so that cancelling the item cancels it and not the worker.
        """
        if context is not None:
            loop = self._loop
            assert loop is not None
            coro = self._attempts(fn, args, kwargs, opts)
            context = context.copy()  # one call's items must not share one context
            worker = asyncio.current_task()
            name = f"{worker.get_name() if worker else self._name}-item"
            if sys.version_info >= (3, 11):
                inner = loop.create_task(coro, name=name, context=context)
            else:  # pragma: no cover - Python 3.10
                inner = context.run(loop.create_task, coro, name=name)
            holder._runner = inner
            try:
                return await inner
            finally:
                if isinstance(holder, _Slot):
                    holder._runner = asyncio.current_task()  # type: ignore[assignment]
        return await self._attempts(fn, args, kwargs, opts)

    async def _attempts(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        opts: _Options,
    ) -> Any:
        if opts.retries:
            return await call_with_retries(
                self._attempt,
                (fn, args, kwargs, opts),
                opts.retries,
                opts.retry_delay,
                self._count_retry,
            )
        return await self._attempt(fn, args, kwargs, opts)

    def _count_retry(self) -> None:
        self._retried += 1

    async def _attempt(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        opts: _Options,
    ) -> Any:
        semaphore = opts.semaphore
        if semaphore is None:
            return await self._start_attempt(fn, args, kwargs, opts)
        async with semaphore:
            return await self._start_attempt(fn, args, kwargs, opts)

    async def _start_attempt(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        opts: _Options,
    ) -> Any:
        if opts.limiter is not None:
            await opts.limiter.acquire()
        coro = fn(*args, **kwargs) if kwargs else fn(*args)
        if not isawaitable(coro):
            raise _not_awaitable(fn, coro)
        if opts.task_timeout is None:
            return await coro
        return await _with_timeout(coro, opts.task_timeout)

    # -- map and map_iter ----------------------------------------------------------------

    def _prepare_call(
        self,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        timeout: float | None,
        retries: int,
        retry_delay: float,
        task_timeout: float | None,
        window: int | None,
    ) -> tuple[_Options | None, int]:
        self._check_open()
        _check_callable(fn)
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        for it in iterables:
            if not isinstance(it, (Iterable, AsyncIterable)):
                raise TypeError(f"map() arguments must be iterables, got {type(it).__name__}")
        if timeout is not None:
            _check_non_negative("timeout", timeout)
        if window is None:
            window = 4 * self._max_workers
        elif isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        opts = self._options(retries, retry_delay, None, task_timeout)
        return opts, window

    async def map(
        self,
        fn: Callable[..., Awaitable[_T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.1,
        task_timeout: float | None = None,
        window: int | None = None,
        progress: bool = False,
    ) -> list[_T]:
        """Return ``[await fn(*args) for args in zip(*iterables)]``, run concurrently.

        Results are in input order; input stops at the shortest iterable. The input is
        read lazily, ``window`` items in flight at most (default ``4 * max_workers``).
        ``timeout`` is a deadline from the call, as in ``concurrent.futures``: past it
        :class:`asyncio.TimeoutError` is raised. The first exception of any item is
        raised at once. Either way, and if the caller is cancelled, the call's running
        items are cancelled and its unstarted ones never start.
        """
        self._bind()
        opts, window = self._prepare_call(
            fn, iterables, timeout, retries, retry_delay, task_timeout, window
        )
        call: MapCall[_T]
        if progress:
            from ._progress import TrackedMapCall

            call = TrackedMapCall(self, fn, iterables, opts, window, timeout)
        else:
            call = MapCall(self, fn, iterables, opts, window, timeout)
        return await call.run()

    def map_iter(
        self,
        fn: Callable[..., Awaitable[_T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.1,
        task_timeout: float | None = None,
        window: int | None = None,
        progress: bool = False,
    ) -> AsyncIterator[_T]:
        """Like :meth:`map`, but yield each result, in input order, as it is ready.

        Memory stays at ``window`` items whatever the input's length, so an endless
        generator works. An item's exception is raised when the iteration reaches it.
        When the consumer stops early (break, exception, ``aclose()``), the call's
        running items are cancelled and its unstarted ones never start.
        """
        opts, window = self._prepare_call(
            fn, iterables, timeout, retries, retry_delay, task_timeout, window
        )
        state: IterState[_T]
        if progress:
            from ._progress import TrackedIterState

            state = TrackedIterState(self, fn, iterables, opts, window, timeout)
        else:
            state = IterState(self, fn, iterables, opts, window, timeout)
        return MapIterator(state)

    # -- waiting -------------------------------------------------------------------------

    def as_completed(
        self, futures: Iterable[AsyncFuture[_T]], timeout: float | None = None
    ) -> AsyncIterator[AsyncFuture[_T]]:
        """Yield the futures as they end, in completion order.

        ``timeout`` is a deadline for the whole iteration: past it
        :class:`asyncio.TimeoutError` is raised. Duplicates are yielded once. Linear in
        the number of futures: one internal callback per future, one wake-up per batch.
        """
        return as_completed(futures, timeout)

    async def wait(
        self,
        futures: Iterable[AsyncFuture[_T]],
        timeout: float | None = None,
        return_when: WaitStrategy | str = WaitStrategy.ALL_COMPLETED,
    ) -> tuple[set[AsyncFuture[_T]], set[AsyncFuture[_T]]]:
        """Wait for the futures and return ``(done, pending)`` sets; never cancel anything.

        ``FIRST_COMPLETED`` and ``FIRST_EXCEPTION`` return when their condition holds or
        the timeout passes. ``ALL_COMPLETED`` raises :class:`asyncio.TimeoutError` if the
        timeout passes first.
        """
        return await wait(futures, timeout, return_when)

    # -- shutdown ------------------------------------------------------------------------

    async def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop accepting work and release the workers once the accepted work is done.

        ``wait=True`` returns when every queued item, and every ``map``/``map_iter``
        call in progress, has finished and every worker has exited. ``cancel_futures``
        cancels the items that have not started (and stops the calls in progress with
        :class:`ExecutorShutdownError`); running items are left to finish. A second call
        is harmless (with ``wait=True`` it waits too).
        """
        if self._state == _OPEN:
            self._state = _CLOSING
            for room_waiter in self._room_waiters:
                if not room_waiter.done():
                    room_waiter.set_result(None)  # they will see the executor closed
        if cancel_futures:
            self._abort_calls()  # each call takes its entries out of the queue
            queue = self._queue
            for future in list(queue):  # (a cancel's listeners must not see it change)
                if future._state == PENDING:
                    future.cancel()
            queue.clear()  # all dead now
            self._dead = 0
        elif self._queue and not self._workers and self._loop is not None:
            # Queued work and no worker left (they were cancelled from outside): start
            # one, or the queued futures would never end.
            self._wake_worker()
        self._release_idle_workers()
        self._maybe_closed()
        if wait and self._state == _CLOSING:
            loop = self._bind()
            if self._drained is None:
                self._drained = loop.create_future()
            await asyncio.shield(self._drained)

    def _abort_calls(self) -> None:
        for call in list(self._calls):
            call.abort(ExecutorShutdownError("the executor was shut down with cancel_futures=True"))

    def _call_ended(self) -> None:
        if self._state == _CLOSING:
            self._release_idle_workers()
            self._maybe_closed()

    def _maybe_closed(self) -> None:
        """Mark a closing executor closed once no worker and no call is left."""
        if self._state == _CLOSING and not self._workers and not self._calls:
            self._state = _CLOSED
            drained = self._drained
            if drained is not None and not drained.done():
                drained.set_result(None)

    def _release_idle_workers(self) -> None:
        """If nothing is left to feed the queue, wake parked workers so that they exit."""
        if self._state == _OPEN or self._calls or self._queue:
            return
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._waking += 1

    async def __aenter__(self) -> AsyncExecutor:
        self._bind()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown(wait=True)


async def _with_timeout(coro: Awaitable[_T], timeout: float) -> _T:
    """Await ``coro`` in the current task; past ``timeout`` cancel it and raise TimeoutError.

    A timer cancels the current task; the CancelledError it causes is told apart from any
    other by the ``expired`` flag (and, on 3.11+, consumed with ``uncancel``), so an outer
    cancellation still propagates. Works the same for inline workers and item tasks.
    """
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        result = await coro
    except asyncio.CancelledError:
        if not expired:
            raise
        if _uncancel(task) > 0:
            raise  # cancelled from outside as well
        raise asyncio.TimeoutError(f"the task ran longer than task_timeout={timeout}s") from None
    except BaseException:
        if expired:
            _uncancel(task)  # the coroutine swallowed the timer's cancel, then raised
        raise
    finally:
        handle.cancel()
    if expired:
        _uncancel(task)  # the coroutine swallowed the timer's cancel and returned anyway
    return result
