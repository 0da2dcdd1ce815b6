"""What can wrap an item beyond ``await fn(*args)``, and the checks of every option.

An item's options (retries, a semaphore, a per-task timeout, a start-rate limit, a copy of
its submitter's context) live in one :class:`Options` object that is None for a plain item,
so the pool's fast path pays one ``is None`` test for all of them. The slow path,
:func:`run_with_options`, is here too, with the argument checks that both executors share.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from inspect import isawaitable
from typing import Any, TypeVar

from ._compat import create_task, uncancel
from ._ratelimit import RateLimiter
from ._retry import call_with_retries

__all__ = [
    "ITEM_TASK",
    "Options",
    "check_callable",
    "check_map_args",
    "check_non_negative",
    "check_positive",
    "check_result_timeout",
    "check_retries",
    "check_timeout",
    "check_window",
    "failure",
    "not_awaitable",
    "run_with_options",
    "with_timeout",
]

_T = TypeVar("_T")

# In the context of an item's own Task (run_with_options): [that Task, its worker]. It is
# how shutdown() tells that it was called from an item of its own executor (Pool.runs).
# A list, filled once the Task exists: on 3.10 the Task runs in a copy of the context.
ITEM_TASK: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("antflow_item_task")


# -- checks: a clear error at the call that made the mistake ------------------------------


def check_non_negative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value >= 0:  # NaN too: the loops disagree on what a NaN delay means
        raise ValueError(f"{name} must not be negative or NaN, got {value!r}")


def check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be greater than 0, got {value!r}")


def check_timeout(timeout: object) -> None:
    """A wait timeout: None, or a number of seconds not below zero."""
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number or None, got {type(timeout).__name__}")
        if not timeout >= 0:  # NaN too (see check_non_negative)
            raise ValueError(f"timeout must not be negative or NaN, got {timeout!r}")


def check_result_timeout(timeout: object) -> None:
    """``result(timeout)``: a number of seconds; as in concurrent.futures, one at or below
    zero means "do not wait" (decisions.md 5), so only NaN is a bad value."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number or None, got {type(timeout).__name__}")
    if timeout != timeout:
        raise ValueError(f"timeout must not be NaN, got {timeout!r}")


def check_callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be an async callable, got {type(fn).__name__}: {fn!r}")


def check_map_args(
    fn: object, iterables: tuple[object, ...], timeout: object, method: str = "map"
) -> None:
    """The arguments of a ``map`` / ``map_iter`` call (``method``) that every executor
    checks alike."""
    check_callable(fn)
    if not iterables:
        raise TypeError(f"{method}() needs at least one iterable")
    for it in iterables:
        if not isinstance(it, (Iterable, AsyncIterable)):
            raise TypeError(f"{method}() arguments must be iterables, got {type(it).__name__}")
    check_timeout(timeout)


def check_retries(retries: object, retry_delay: object) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries must be an int, got {type(retries).__name__}")
    if retries < 0:
        raise ValueError(f"retries must not be negative, got {retries}")
    check_non_negative("retry_delay", retry_delay)


def check_window(window: object, default: int) -> int:
    if window is None:
        return default
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    return window


def not_awaitable(fn: Callable[..., Any], value: object) -> TypeError:
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return TypeError(
        f"{name}() returned {type(value).__name__}, which is not awaitable: "
        "antflow runs async functions (or callables returning an awaitable)"
    )


def failure(exc: BaseException, fn: Any, coro: object) -> BaseException:
    """What an item failed with. The hot path awaits what ``fn`` returned unchecked; if
    that was not awaitable, ``await`` raised a TypeError that does not name ``fn``, so it
    is replaced here by one that does. (``coro`` is None or awaitable unless this item's
    call returned it: the worker resets it after every failure.)"""
    if type(exc) is TypeError and coro is not None and not isawaitable(coro):
        return not_awaitable(fn, coro)
    return exc


# -- the options of an item ---------------------------------------------------------------


class Options:
    """What an item needs beyond ``await fn(*args)``; None on the fast path."""

    __slots__ = ("context", "limiter", "retries", "retry_delay", "semaphore", "task_timeout")

    def __init__(
        self,
        retries: int,
        retry_delay: float,
        semaphore: Any,
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


async def run_with_options(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    opts: Options,
    context: contextvars.Context | None,
    holder: Any,
    on_retry: Callable[[], None],
    give_back: bool = False,
) -> Any:
    """The slow path: context, retries, semaphore, rate limit and timeout.

    With a context the item runs in a Task of its own; ``holder._runner`` (an AsyncFuture
    or a pool slot) is then that Task, so that cancelling the item cancels it and not the
    worker. A slot outlives its item, so with ``give_back`` its runner is the worker again
    afterwards; a future keeps the item Task, which tells its worker that a cancel
    delivered there was not meant for the worker itself.
    """
    if context is None:
        return await _attempts(fn, args, kwargs, opts, on_retry)
    worker = asyncio.current_task()
    assert worker is not None
    loop = asyncio.get_running_loop()
    context = context.copy()  # one call's items must not share one context
    mark = [None, worker]
    context.run(ITEM_TASK.set, mark)
    inner = create_task(
        loop, _attempts(fn, args, kwargs, opts, on_retry), f"{worker.get_name()}-item", context
    )
    mark[0] = inner
    holder._runner = inner
    try:
        return await inner
    finally:
        if give_back:
            holder._runner = worker


async def _attempts(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    opts: Options,
    on_retry: Callable[[], None],
) -> Any:
    if opts.retries:
        return await call_with_retries(
            _attempt, (fn, args, kwargs, opts), opts.retries, opts.retry_delay, on_retry
        )
    return await _attempt(fn, args, kwargs, opts)


async def _attempt(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    opts: Options,
) -> Any:
    semaphore = opts.semaphore
    if semaphore is None:
        return await _start_attempt(fn, args, kwargs, opts)
    async with semaphore:
        return await _start_attempt(fn, args, kwargs, opts)


async def _start_attempt(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    opts: Options,
) -> Any:
    if opts.limiter is not None:
        await opts.limiter.acquire()
    coro = fn(*args, **kwargs) if kwargs else fn(*args)
    if not isawaitable(coro):
        raise not_awaitable(fn, coro)
    if opts.task_timeout is None:
        return await coro
    return await with_timeout(coro, opts.task_timeout)


async def with_timeout(coro: Awaitable[_T], timeout: float) -> _T:
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
        if uncancel(task) > 0:
            raise  # cancelled from outside as well
        raise asyncio.TimeoutError(f"the task ran longer than task_timeout={timeout}s") from None
    except BaseException:
        if expired:
            uncancel(task)  # the coroutine swallowed the timer's cancel, then raised
        raise
    finally:
        handle.cancel()
    if expired:
        uncancel(task)  # the coroutine swallowed the timer's cancel and returned anyway
    return result
