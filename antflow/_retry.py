"""Retries through tenacity: ``retries=n`` means ``n + 1`` attempts with exponential waits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_exponential

__all__ = ["call_with_retries"]

_T = TypeVar("_T")


async def call_with_retries(
    attempt: Callable[..., Awaitable[_T]],
    args: tuple[Any, ...],
    retries: int,
    retry_delay: float,
    on_retry: Callable[[], None],
) -> _T:
    """Await ``attempt(*args)`` (an async function) up to ``retries + 1`` times until one returns.

    The k-th wait (k = 0, 1, ...) is ``retry_delay * 2**k`` seconds. Only ``Exception``
    is retried (cancellation, KeyboardInterrupt and SystemExit pass straight through),
    and the last attempt's own exception is re-raised, never tenacity's RetryError.
    """

    def before_sleep(_state: RetryCallState) -> None:
        on_retry()

    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=retry_delay),
        before_sleep=before_sleep,
        reraise=True,
    )
    result: Any = await retrying(attempt, *args)
    return result  # type: ignore[no-any-return]
