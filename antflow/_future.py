"""AsyncFuture: one submitted item and, once it has run, its outcome.

An AsyncFuture is both the work item that waits in a queue and the handle the caller
awaits. It belongs to an *owner* (the pool of an :class:`AsyncExecutor`, or the client side
of a ``ClusterExecutor``), which runs it and is told when it is cancelled; the future knows
nothing else of executors. Waiting creates a raw loop future only when the item is still
pending, so an outcome collected after the item ended costs no loop future at all.

``await future.result()`` is the guide's idiom, so it costs what ``await future`` costs:
each runs in one frame, the wait inlined (see result). Measured with callgrind, a native
coroutine is the cheapest awaitable Python has: returning some non-coroutine awaitable
instead costs an extra call and the ``__await__`` slot dispatch, and would no longer be
a coroutine for ``asyncio.create_task(future.result())``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Generator
from functools import partial
from typing import Any, Final, Generic, Protocol, TypeVar

from ._options import check_result_timeout

__all__ = [
    "CANCELLED",
    "FINISHED",
    "PENDING",
    "RUNNING",
    "AsyncFuture",
    "ONE_ARG",
    "FutureOwner",
    "LoopFuture",
]

_T = TypeVar("_T")

# The states of an item. Ints compared by identity on the hot path; names for repr.
PENDING = 0  # queued, its function not called yet
RUNNING = 1  # a worker is running it
FINISHED = 2  # returned a value or raised an exception
CANCELLED = 3  # cancelled while queued or running
_STATE_NAMES = ("pending", "running", "finished", "cancelled")

LoopFuture: Any = asyncio.Future  # what loop.create_future() returns (the C Future)


class _OneArg:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ONE_ARG"


# The ``kwargs`` of a future whose call is ``fn(x)``, the commonest shape (``submit(fn,
# x)``, no keywords, no options): its ``args`` is then ``x`` itself, not the 1-tuple that
# ``*args`` made. That tuple is freed as ``submit`` returns instead of living as long as
# the future, which halves what the cyclic GC keeps track of per submitted item while
# many are alive (decisions.md 17).
ONE_ARG: Final[Any] = _OneArg()


class FutureOwner(Protocol):
    """What a future needs of whoever runs it."""

    _loop: asyncio.AbstractEventLoop | None  # the loop the owner is bound to

    def _future_cancelled(self, future: AsyncFuture[Any], queued: bool) -> None:
        """``future`` was cancelled (``queued``: before it started); count it, free room."""


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class AsyncFuture(Generic[_T]):
    """The eventual outcome of a callable submitted to an antflow executor.

    Await ``future.result(timeout)`` (or the future itself) for the value; it re-raises the
    task's exception, and raises :class:`asyncio.CancelledError` if the future was
    cancelled. ``result(timeout)`` is a wait timeout, as in ``concurrent.futures``: it
    raises :class:`asyncio.TimeoutError` and leaves the task running. A future ends exactly
    once: finished with a value, finished with an exception, or cancelled.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_context",
        "_exception",
        "_fn",
        "_kwargs",
        "_listeners",
        "_opts",
        "_owner",
        "_queued_at",
        "_result",
        "_runner",
        "_state",
    )

    def __init__(
        self,
        owner: FutureOwner,
        fn: Callable[..., Any],
        args: Any,
        kwargs: dict[str, Any] | None,
        opts: Any,
    ) -> None:
        # AsyncExecutor.submit inlines this for its fast path: a field set here is set
        # there too (tests/test_executor_basics.py checks that the two agree).
        self._owner = owner
        self._fn: Callable[..., Any] | None = fn
        # The call is fn(*args, **kwargs); or fn(args) when kwargs is ONE_ARG (above).
        self._args = args
        self._kwargs = kwargs
        self._opts = opts  # the item's options (see _options), None on the fast path
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        # Told synchronously when this future ends: internal waiters only. Each is a raw
        # loop future of asyncio's own type (a waiter of ``result()`` / ``await``:
        # resolved with True unless it is done already) or a callable (as_completed,
        # wait, add_done_callback, or a waiter of another future type wrapped by
        # _resolve), called with this future. None, one of them, or a list (most futures
        # have at most one waiter, which spares a list per future).
        self._listeners: Any = None
        # The task whose cancellation cancels this item while it runs.
        self._runner: asyncio.Task[Any] | None = None
        self._context: contextvars.Context | None = None
        # ``_queued_at`` (when it was queued) is set only by an executor with timing on,
        # and read only there: left unset, it costs the others nothing.
        self._queued_at: float

    # -- the public surface ------------------------------------------------------------

    def done(self) -> bool:
        """Return True if the future finished (with a value or an exception) or was cancelled."""
        return self._state >= FINISHED

    def running(self) -> bool:
        """Return True while a worker is running the task."""
        return self._state == RUNNING

    def cancelled(self) -> bool:
        """Return True if the future was cancelled."""
        return self._state == CANCELLED

    def exception(self) -> BaseException | None:
        """Return the task's exception: None while pending or after success.

        Unlike ``concurrent.futures`` this never waits; like it (and asyncio), it raises
        :class:`asyncio.CancelledError` for a cancelled future.
        """
        if self._state == CANCELLED:
            raise asyncio.CancelledError()
        return self._exception

    def cancel(self) -> bool:
        """Cancel the task; return False if it had already ended.

        A queued task never starts (its function is not called, so no coroutine is
        created). A running task's coroutine receives :class:`asyncio.CancelledError`;
        its worker slot is free again once the coroutine has unwound. Either way the
        future is cancelled at once.
        """
        state = self._state
        if state >= FINISHED:
            return False
        self._state = CANCELLED
        self._fn = self._args = self._kwargs = None
        self._owner._future_cancelled(self, state == PENDING)
        runner = self._runner
        if runner is not None:
            runner.cancel()
        self._ended()
        return True

    def add_done_callback(self, fn: Callable[[AsyncFuture[_T]], object]) -> None:
        """Call ``fn(future)`` once the future is done, through ``loop.call_soon``.

        If the future is already done the call is scheduled at once. An exception raised
        by ``fn`` goes to the loop's exception handler, as for asyncio futures.
        """
        loop = self._owner._loop
        if loop is None:  # pragma: no cover - a future exists only on a bound executor
            raise RuntimeError("the executor of this future is not bound to a loop")
        if self._state >= FINISHED:
            loop.call_soon(fn, self)
        else:
            self._listen(partial(_call_soon, loop, fn))

    async def result(self, timeout: float | None = None) -> _T:
        """Wait for the task and return its value, or raise its exception.

        With ``timeout`` (seconds), raise :class:`asyncio.TimeoutError` if the task has
        not ended by then; the task is not cancelled. Cancelling the waiting caller does
        not cancel the task either.
        """
        # This and __await__ mirror each other, each in one frame: the wait is inlined
        # (no inner coroutine), because every ``await future.result()`` runs it.
        if timeout is not None:
            check_result_timeout(timeout)  # even if the task has ended: a clear error
        if self._state < FINISHED:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[bool] = loop.create_future()
            handle = None if timeout is None else loop.call_later(timeout, _time_out, waiter)
            listener = waiter if type(waiter) is LoopFuture else partial(_resolve, waiter)
            self._listen(listener)
            try:
                ended = await waiter
            finally:
                if handle is not None:
                    handle.cancel()
                if self._state < FINISHED:
                    self._unlisten(listener)
            if not ended:
                raise asyncio.TimeoutError(f"the task did not end within {timeout} seconds")
        if self._state == CANCELLED:
            raise asyncio.CancelledError()
        exc = self._exception
        if exc is not None:
            raise exc
        return self._result  # type: ignore[no-any-return]

    def __await__(self) -> Generator[Any, None, _T]:
        # ``await future``: ``await future.result()`` without a timeout.
        if self._state < FINISHED:
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            listener = waiter if type(waiter) is LoopFuture else partial(_resolve, waiter)
            self._listen(listener)
            try:
                yield from waiter
            finally:
                if self._state < FINISHED:
                    self._unlisten(listener)
        if self._state == CANCELLED:
            raise asyncio.CancelledError()
        exc = self._exception
        if exc is not None:
            raise exc
        return self._result  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        state = _STATE_NAMES[self._state]
        if self._state == FINISHED:
            if self._exception is not None:
                state += f" raised {type(self._exception).__name__}"
            else:
                state += f" returned {type(self._result).__name__}"
        fn = self._fn
        name = getattr(fn, "__qualname__", None) or repr(fn) if fn is not None else None
        return f"<AsyncFuture {state}{f' fn={name}' if name else ''}>"

    # -- settling, for owners off the hot path (the pool's worker inlines these) ---------

    def _set_result(self, result: Any) -> None:
        self._state = FINISHED
        self._result = result
        self._fn = self._args = self._kwargs = self._runner = None
        self._ended()

    def _set_exception(self, exc: BaseException) -> None:
        self._state = FINISHED
        self._exception = exc
        self._fn = self._args = self._kwargs = self._runner = None
        self._ended()

    # -- internals ------------------------------------------------------------------------

    def _listen(self, listener: Callable[[AsyncFuture[Any]], None] | asyncio.Future[bool]) -> None:
        listeners = self._listeners
        if listeners is None:
            self._listeners = listener
        elif type(listeners) is list:
            listeners.append(listener)
        else:
            self._listeners = [listeners, listener]

    def _unlisten(
        self, listener: Callable[[AsyncFuture[Any]], None] | asyncio.Future[bool]
    ) -> None:
        listeners = self._listeners
        if type(listeners) is list:
            with contextlib.suppress(ValueError):
                listeners.remove(listener)
        elif listeners == listener:  # == : a bound method or partial is made anew
            self._listeners = None

    def _ended(self) -> None:
        """Tell whoever waits on this future that it has ended (state already set)."""
        listeners = self._listeners
        if listeners is not None:
            self._listeners = None
            if type(listeners) is list:
                for listener in listeners:
                    if type(listener) is LoopFuture:
                        _resolve(listener, self)
                    else:
                        listener(self)
            elif type(listeners) is LoopFuture:  # the one waiter of result()
                if not listeners.done():
                    listeners.set_result(True)
            else:
                listeners(self)  # the one callback (of as_completed, wait, ...)


def _resolve(waiter: asyncio.Future[bool], future: AsyncFuture[Any]) -> None:
    """Wake a waiter of ``result()``: ``future`` has ended."""
    if not waiter.done():  # (a waiter whose caller was cancelled or timed out)
        waiter.set_result(True)


def _call_soon(
    loop: asyncio.AbstractEventLoop, fn: Callable[[Any], object], future: AsyncFuture[Any]
) -> None:
    loop.call_soon(fn, future)
