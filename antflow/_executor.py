"""AsyncExecutor: the public API of the in-loop executor. It checks, then hands over.

Everything that runs items lives below: the pool (_pool: slots, the queue, park/wake, the
worker loop), the calls of ``map`` / ``map_iter`` (_calls), futures (_future) and waiting
(_waiting), and what can wrap an item (_options). This module validates arguments, builds
an item's options once per call, and forwards; ``submit`` is the one method kept inline,
because it runs once per item.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from time import perf_counter
from typing import Any, Final, TypeVar

from ._base import BaseExecutor
from ._calls import MapCall
from ._future import CANCELLED, ONE_ARG, PENDING, AsyncFuture
from ._mapiter import IterState, MapIterator
from ._options import (
    Options,
    check_callable,
    check_map_args,
    check_positive,
    check_retries,
    check_timeout,
    check_window,
)
from ._ratelimit import RateLimiter
from ._stats import ExecutorStats
from ._timing import TaskTimings
from ._worker import WorkerPool

__all__ = ["AsyncExecutor"]

_T = TypeVar("_T")

_new_object: Final = object.__new__

_get_running_loop = asyncio._get_running_loop  # C-fast, and returns None outside a loop
# submit's default ``retries``. Its paths test for this very object, not for a false value:
# False, 0.0 or None must reach check_retries and be refused. (Any other int 0 is the same
# object in CPython; where it is not, it only takes the checked path.)
_NO_RETRIES: Final = 0


def _default_max_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)  # as concurrent.futures' thread pool


class AsyncExecutor(BaseExecutor):
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
        timing: bool = False,
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
            check_positive("max_per_second", max_per_second)
        if task_timeout is not None:
            check_positive("task_timeout", task_timeout)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")

        self._name: Final = name or "antflow"
        self._task_timeout: Final = task_timeout
        self._propagate_context: Final = bool(propagate_context)
        self._limiter = RateLimiter(max_per_second) if max_per_second is not None else None
        # The options every item gets unless its call gives its own; None = fast path.
        self._default_opts: Options | None = None
        if self._limiter is not None or task_timeout is not None or propagate_context:
            self._default_opts = Options(
                0, 0.1, None, task_timeout, self._limiter, bool(propagate_context)
            )
        self._pool: Final = WorkerPool(
            max_workers, max_pending, self._name, bool(timing), self._default_opts is None
        )

    # -- introspection ---------------------------------------------------------------------

    @property
    def max_workers(self) -> int:
        """How many items may run at once."""
        return self._pool._max_workers

    @property
    def name(self) -> str:
        """The executor's name: its worker tasks are ``<name>-worker-<n>``."""
        return self._name

    @property
    def timings(self) -> TaskTimings | None:
        """With ``timing=True``, the histograms of queue and run times; else None."""
        return self._pool._timings

    def stats(self) -> ExecutorStats:
        """Return a snapshot of the counters; cheap enough to call per request."""
        return self._pool.stats()

    def __repr__(self) -> str:
        return f"<AsyncExecutor {self._name!r} {self._pool!r}>"

    # -- submitting -------------------------------------------------------------------------

    def _options(
        self,
        retries: int,
        retry_delay: float,
        semaphore: asyncio.Semaphore | None,
        task_timeout: float | None,
    ) -> Options | None:
        """Validate one call's options and return the Options its items share."""
        check_retries(retries, retry_delay)
        if semaphore is not None and not (
            hasattr(semaphore, "__aenter__") and hasattr(semaphore, "__aexit__")
        ):
            raise TypeError(
                f"semaphore must be an asyncio.Semaphore (an async context manager), "
                f"got {type(semaphore).__name__}"
            )
        if task_timeout is not None:
            check_positive("task_timeout", task_timeout)
        else:
            task_timeout = self._task_timeout
        if not retries and semaphore is None and task_timeout == self._task_timeout:
            return self._default_opts
        return Options(
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
        pool = self._pool
        if (
            _get_running_loop() is pool._unchecked_loop  # bound, open, nothing to check
            and retries is _NO_RETRIES
            and semaphore is None
            and task_timeout is None
            and retry_delay == 0.1
            and callable(fn)
        ):
            # The fast path: nothing to check, no options. AsyncFuture.__init__ is
            # inlined: a frame less per item, about 600 instructions of some 13,000
            # (decisions.md 18). A test checks that both leave the same fields.
            future: AsyncFuture[_T] = _new_object(AsyncFuture)
            if not kwargs and len(args) == 1:
                future._args = args[0]  # fn(x): see _future.ONE_ARG
                future._kwargs = ONE_ARG
            else:
                future._args = args
                future._kwargs = kwargs or None
            future._owner = pool
            future._fn = fn
            future._opts = None
            future._state = PENDING
            future._result = None
            future._exception = None
            future._listeners = None
            future._runner = None
            future._context = None
        else:
            future = self._checked_future(
                fn, args, kwargs, retries, retry_delay, semaphore, task_timeout
            )
        lane = pool._submits
        if not lane:
            pool._ring.append(lane)  # the lane takes turns again
        lane.append(future)
        pool._submitted += 1
        if not pool._waking:
            pool.wake_worker()
        return future

    def _checked_future(
        self,
        fn: Callable[..., Awaitable[_T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
        retry_delay: float,
        semaphore: asyncio.Semaphore | None,
        task_timeout: float | None,
    ) -> AsyncFuture[_T]:
        """submit's other path: check everything, then make the future with its options.

        (Its arguments stay a tuple: ONE_ARG is for the fast path alone.)"""
        pool = self._pool
        loop = _get_running_loop()
        if loop is not pool._loop or loop is None:
            pool.bind()
        pool.check_open()
        check_callable(fn)
        if (
            retries is not _NO_RETRIES
            or semaphore is not None
            or task_timeout is not None
            or retry_delay != 0.1
        ):
            opts = self._options(retries, retry_delay, semaphore, task_timeout)
        else:
            opts = self._default_opts
        if pool._max_pending:
            pool.check_room()
        future: AsyncFuture[_T] = AsyncFuture(pool, fn, args, kwargs or None, opts)
        if opts is not None and opts.context:
            future._context = contextvars.copy_context()
        if pool._timings is not None:
            future._queued_at = perf_counter()
        return future

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
        pool = self._pool
        pool.bind()
        pool.check_open()
        if pool._max_pending:
            await pool.wait_for_room()
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
        loop = self._pool._loop
        if loop is None or loop.is_closed():
            raise RuntimeError(
                "submit_threadsafe needs an executor bound to a running loop: use it once "
                "from that loop first"
            )
        check_callable(fn)
        outer: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def on_end(inner: AsyncFuture[_T]) -> None:
            if inner._state == CANCELLED:
                outer.cancel()
                # Mark it notified, as executors do: only then do
                # concurrent.futures.wait / as_completed see it done.
                outer.set_running_or_notify_cancel()
            elif not outer.set_running_or_notify_cancel():
                return
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
            inner._listen(on_end)
            outer.add_done_callback(
                lambda f: loop.call_soon_threadsafe(inner.cancel) if f.cancelled() else None
            )

        loop.call_soon_threadsafe(start)
        return outer

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
        method: str = "map",
    ) -> tuple[Options | None, int]:
        self._pool.check_open()
        check_map_args(fn, iterables, timeout, method)
        window = check_window(window, 4 * self._pool._max_workers)
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
        self._pool.bind()
        opts, window = self._prepare_call(
            fn, iterables, timeout, retries, retry_delay, task_timeout, window
        )
        call: MapCall[_T]
        if progress:
            from ._progress import TrackedMapCall

            call = TrackedMapCall(self._pool, fn, iterables, opts, window, timeout)
        else:
            call = MapCall(self._pool, fn, iterables, opts, window, timeout)
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
            fn, iterables, timeout, retries, retry_delay, task_timeout, window, "map_iter"
        )
        state: IterState[_T]
        if progress:
            from ._progress import TrackedIterState

            state = TrackedIterState(self._pool, fn, iterables, opts, window, timeout)
        else:
            state = IterState(self._pool, fn, iterables, opts, window, timeout)
        return MapIterator(state)

    # -- shutdown ------------------------------------------------------------------------

    async def shutdown(
        self, wait: bool = True, cancel_futures: bool = False, timeout: float | None = None
    ) -> None:
        """Stop accepting work and release the workers once the accepted work is done.

        ``wait=True`` returns when every queued item, and every ``map``/``map_iter``
        call in progress, has finished and every worker has exited. ``cancel_futures``
        cancels the items that have not started (and stops the calls in progress with
        :class:`ExecutorShutdownError`); running items are left to finish. A second call
        is harmless (with ``wait=True`` it waits too).

        ``timeout`` (with ``wait=True``) bounds the wait, for a graceful drain: past it,
        the queued futures are cancelled, the calls in progress stop with
        :class:`ExecutorShutdownError`, the running items are cancelled, and the call
        returns once every worker has exited.
        """
        if timeout is not None:
            check_timeout(timeout)
            if not wait:
                raise ValueError("shutdown(timeout=...) bounds the wait: it needs wait=True")
        pool = self._pool
        if wait and pool.runs(asyncio.current_task()):
            # As concurrent.futures' pools refuse to join their own thread.
            raise RuntimeError(
                "shutdown(wait=True) was called from an item of this executor, so it would "
                "wait for itself forever; call shutdown(wait=False) there (with "
                "cancel_futures=True to drop what is queued)"
            )
        pool.close(cancel_futures)
        if not wait:
            return
        if timeout is None or pool._loop is None:
            await pool.drained()
            return
        handle = pool._loop.call_later(timeout, pool.terminate)
        try:
            await pool.drained()
        finally:
            handle.cancel()

    async def __aenter__(self) -> AsyncExecutor:
        self._pool.bind()
        return self
