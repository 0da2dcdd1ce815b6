"""BaseExecutor: the one public surface that every antflow executor offers.

:class:`~antflow.AsyncExecutor` runs items on a pool of coroutines in this event loop;
``antflow.cluster.ClusterExecutor`` runs them on the processes of a Dask cluster. Both
are this class: the same methods, the same arguments, the same meaning, so a program can
move from one to the other by changing the line that makes the executor. Waiting on
futures (``as_completed`` / ``wait``) is shared outright: it works on the futures of any
antflow executor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

from ._future import AsyncFuture
from ._stats import ExecutorStats
from ._waiting import WaitStrategy, as_completed, wait

__all__ = ["BaseExecutor"]

_T = TypeVar("_T")
_E = TypeVar("_E", bound="BaseExecutor")


class BaseExecutor(ABC):
    """What every antflow executor does; see :class:`~antflow.AsyncExecutor` for the details.

    ``submit`` returns an :class:`AsyncFuture`; ``map`` returns the results in input
    order; ``map_iter`` yields them in input order with a bounded window in flight;
    ``as_completed`` and ``wait`` coordinate futures; ``shutdown`` (or leaving ``async
    with``) stops accepting work and releases the workers.
    """

    @property
    @abstractmethod
    def max_workers(self) -> int:
        """How many items may run at once (for a cluster: in each worker process)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The executor's name: its workers' names and its metrics' label."""

    @abstractmethod
    def submit(
        self,
        fn: Callable[..., Awaitable[_T]],
        /,
        *args: Any,
        retries: int = 0,
        retry_delay: float = 0.1,
        task_timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncFuture[_T]:
        """Queue ``fn(*args, **kwargs)``; return its future. It never runs before this returns."""

    @abstractmethod
    async def map(
        self,
        fn: Callable[..., Awaitable[_T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.1,
        task_timeout: float | None = None,
        window: int | None = None,
    ) -> list[_T]:
        """Return ``[await fn(*args) for args in zip(*iterables)]``, run concurrently."""

    @abstractmethod
    def map_iter(
        self,
        fn: Callable[..., Awaitable[_T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.1,
        task_timeout: float | None = None,
        window: int | None = None,
    ) -> AsyncIterator[_T]:
        """Yield ``await fn(*args)`` for each input, in input order, as each is ready."""

    @abstractmethod
    async def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop accepting work; with ``wait``, return once the accepted work is done."""

    @abstractmethod
    def stats(self) -> ExecutorStats:
        """A snapshot of the executor's counters."""

    def as_completed(
        self, futures: Iterable[AsyncFuture[_T]], timeout: float | None = None
    ) -> AsyncIterator[AsyncFuture[_T]]:
        """Yield the futures as they end, in completion order (see :func:`antflow.as_completed`).

        ``timeout`` is a deadline for the whole iteration: past it
        :class:`asyncio.TimeoutError` is raised. Duplicates are yielded once.
        """
        return as_completed(futures, timeout)

    async def wait(
        self,
        futures: Iterable[AsyncFuture[_T]],
        timeout: float | None = None,
        return_when: WaitStrategy | str = WaitStrategy.ALL_COMPLETED,
    ) -> tuple[set[AsyncFuture[_T]], set[AsyncFuture[_T]]]:
        """Wait for the futures and return ``(done, pending)``; never cancel anything.

        ``FIRST_COMPLETED`` and ``FIRST_EXCEPTION`` return when their condition holds or
        the timeout passes. ``ALL_COMPLETED`` raises :class:`asyncio.TimeoutError` if the
        timeout passes first (see :func:`antflow.wait`).
        """
        return await wait(futures, timeout, return_when)

    async def __aenter__(self: _E) -> _E:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown(wait=True)
