"""ClusterExecutor: the client side, on one event loop of the program.

It binds to the running loop on first use, like :class:`~antflow.AsyncExecutor`, and
connects (or starts its embedded ``LocalCluster``) in the background from there, so a
plain ``submit`` works at once: its items wait on the client until the connection is up.
``async with`` and :meth:`ClusterExecutor.start` wait for the connection and raise its
error, if any.

Items leave in batches (see _batching): the ``submit`` calls of one loop iteration are
gathered by a ``call_soon`` flush, a ``map`` call sends a window of batches. Each batch is
one Dask task running :func:`~antflow.cluster._runner.run_batch`; a client task per batch
awaits its Dask future and settles the batch's futures (or hands the values to its call).
Cancelling reaches the workers through ``Client.run`` (see _runner).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

import distributed

from .._base import BaseExecutor
from .._errors import ExecutorShutdownError
from .._future import AsyncFuture
from .._options import (
    check_callable,
    check_map_args,
    check_positive,
    check_retries,
    check_window,
)
from .._stats import ExecutorStats
from . import _runner
from ._batching import check_batch_size
from ._calls import MapCall, MapIterStart
from ._connect import connect, count_threads
from ._wire import CLOSE_TIMEOUT, ClientSide, Item

__all__ = ["ClusterExecutor"]

_T = TypeVar("_T")
_log = logging.getLogger("antflow.cluster")

_OPEN = 0
_CLOSING = 1  # shutdown() called: no new work; what was accepted still runs
_CLOSED = 2  # disconnected (and the embedded cluster closed)
_STATE_NAMES = ("open", "closing", "closed")

RECOUNT_SECONDS = 5.0  # how long the count of the cluster's threads is trusted


class ClusterExecutor(ClientSide, BaseExecutor):
    """Run async callables on the processes of a Dask cluster, the antflow way.

    The same methods as :class:`~antflow.AsyncExecutor` with the same meaning; each Dask
    worker process runs the items on an antflow ``AsyncExecutor`` with ``max_workers``
    slots, so ``max_workers`` bounds the items running at once **in each worker
    process**. Items travel in batches, one Dask task per batch.

    - no ``address`` and no ``client``: an embedded ``LocalCluster`` of ``processes``
      worker processes (default: one per core) on 127.0.0.1, started on first use and
      closed by :meth:`shutdown`;
    - ``address="tcp://host:8786"``: a running scheduler; shutdown disconnects and
      leaves the cluster running. An unreachable scheduler raises :class:`ConnectionError`
      naming the address after Dask's connect timeout
      (``distributed.comm.timeouts.connect``);
    - ``client=``: an asynchronous ``distributed.Client`` of this program, left open.

    The executor binds to the running loop on first use and connects in the background
    from there: ``submit`` may be called at once (its items wait on the client until the
    connection is up). ``async with ClusterExecutor() as executor`` (or ``await
    executor.start()``) waits for the connection and raises its error.

    Delivery is at least once: when a worker process dies, Dask runs its batches again
    elsewhere, so an item may run more than once (its future still ends exactly once).

    Because items run in other processes, functions, arguments, results and exceptions
    are pickled (a value that cannot be fails with a :class:`TypeError` naming it);
    ``semaphore=`` is refused; ``window`` counts batches and ``batch_size`` fixes their
    size; ``stats()`` counts items handed to the cluster as running; and a script that
    starts the embedded cluster needs the ``if __name__ == "__main__":`` guard of
    multiprocessing. docs/cluster.md ("What differs from AsyncExecutor") has the whole
    list, with the event loop the workers run.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        client: distributed.Client | None = None,
        processes: int | None = None,
        max_workers: int = 5,
        task_timeout: float | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"max_workers must be an int, got {type(max_workers).__name__}")
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if task_timeout is not None:
            check_positive("task_timeout", task_timeout)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address must be a str such as 'tcp://host:8786', got {address!r}")
        if address is not None and client is not None:
            raise ValueError("give either address= or client=, not both")
        if client is not None and not isinstance(client, distributed.Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        if processes is not None:
            if isinstance(processes, bool) or not isinstance(processes, int):
                raise TypeError(f"processes must be an int, got {type(processes).__name__}")
            if processes < 1:
                raise ValueError(f"processes must be at least 1, got {processes}")
            if address is not None or client is not None:
                raise ValueError(
                    "processes= is for the embedded cluster, not with address= or client="
                )

        super().__init__(uuid.uuid4().hex, name or "antflow", max_workers)
        self._address: Final = address
        self._given_client: Final = client
        self._processes: Final = processes
        self._task_timeout: Final = task_timeout
        self._state = _OPEN
        self._cluster: Any = None  # the embedded LocalCluster
        self._connecting: asyncio.Task[None] | None = None
        self._connect_error: BaseException | None = None
        self._threads_checked = 0.0
        self._closer: asyncio.Task[None] | None = None

    # -- introspection -----------------------------------------------------------------

    @property
    def max_workers(self) -> int:
        """How many items run at once in each worker process."""
        return self._max_workers

    @property
    def name(self) -> str:
        """The executor's name (it labels its Dask tasks and its workers' executors)."""
        return self._name

    @property
    def client(self) -> distributed.Client | None:
        """The ``distributed.Client`` in use, once connected."""
        client: distributed.Client | None = self._client
        return client

    def stats(self) -> ExecutorStats:
        """A snapshot of the counters. ``pending`` are items held on the client (not
        sent yet), ``running`` the items of batches handed to the cluster."""
        done = self._completed + self._failed + self._cancelled
        return ExecutorStats(
            self._submitted,
            self._submitted - done - self._running,
            self._running,
            self._completed,
            self._failed,
            self._cancelled,
            self._retried,
        )

    def __repr__(self) -> str:
        where = self._address or ("client" if self._given_client is not None else "embedded")
        return (
            f"<ClusterExecutor {self._name!r} {_STATE_NAMES[self._state]} {where} "
            f"max_workers={self._max_workers} batches={len(self._batches)} "
            f"calls={len(self._calls)}>"
        )

    # -- connecting --------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, binding to it (and starting to connect) on first use."""
        loop = asyncio._get_running_loop()
        if loop is None:
            raise RuntimeError("ClusterExecutor must be used from a coroutine on a running loop")
        if self._loop is None:
            self._loop = loop
            self._connecting = loop.create_task(self._connect(), name=f"{self._name}-connect")
        elif self._loop is not loop:
            raise RuntimeError(
                "this ClusterExecutor is bound to another event loop (the loop of its first "
                "use); create one executor per event loop"
            )
        return loop

    async def start(self) -> ClusterExecutor:
        """Connect (or start the embedded cluster) now; raise if that fails."""
        self._bind()
        assert self._connecting is not None
        await asyncio.shield(self._connecting)
        if self._connect_error is not None:
            raise self._connect_error
        return self

    async def __aenter__(self) -> ClusterExecutor:
        return await self.start()

    async def _connect(self) -> None:
        try:
            self._cluster, self._client = await connect(
                self._given_client, self._address, self._processes
            )
            await self._recount_threads(max_age=-1.0)  # the first count
            self._client.subscribe_topic(_runner.TOPIC + self._id, self._on_event)
        except BaseException as exc:
            self._connect_error = exc
            self._fail_buffer(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._flush()

    async def _recount_threads(self, max_age: float = RECOUNT_SECONDS) -> None:
        """Learn how many tasks the cluster runs at once (it sizes windows and batches),
        again when the count is older than ``max_age`` seconds: workers come and go."""
        assert self._loop is not None
        now = self._loop.time()
        if now - self._threads_checked > max_age:
            self._threads_checked = now
            self._threads = await count_threads(self._client)

    # -- submitting --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != _OPEN:
            raise ExecutorShutdownError("cannot schedule new work after shutdown()")
        if self._connect_error is not None:
            raise self._connect_error

    def _opts(
        self, retries: int, retry_delay: float, task_timeout: float | None
    ) -> tuple[int, float, float | None] | None:
        check_retries(retries, retry_delay)
        if task_timeout is not None:
            check_positive("task_timeout", task_timeout)
        else:
            task_timeout = self._task_timeout
        if not retries and task_timeout is None:
            return None
        return (retries, float(retry_delay), task_timeout)

    def submit(
        self,
        fn: Callable[..., Awaitable[_T]],
        /,
        *args: Any,
        retries: int = 0,
        retry_delay: float = 0.1,
        semaphore: Any = None,
        task_timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncFuture[_T]:
        """Queue ``fn(*args, **kwargs)`` to run on a worker process; return its future.

        The calls submitted in one loop iteration travel to the cluster together, in
        batches. ``retries``, ``retry_delay`` and ``task_timeout`` mean what they mean
        for :meth:`AsyncExecutor.submit` and run on the worker. ``semaphore=`` is
        refused with a :class:`TypeError`: an asyncio semaphore belongs to this process
        and cannot limit items that run in other processes.
        """
        self._bind()
        self._check_open()
        check_callable(fn)
        if semaphore is not None:
            raise TypeError(
                "semaphore= cannot be used with ClusterExecutor: an asyncio.Semaphore "
                "belongs to this process's event loop and cannot limit items running in "
                "other processes; max_workers bounds the items of each worker process"
            )
        future: AsyncFuture[_T] = AsyncFuture(
            self, fn, args, kwargs or None, Item(self._opts(retries, retry_delay, task_timeout))
        )
        self._buffer.append(future)
        self._submitted += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]
        return future

    # -- map and map_iter --------------------------------------------------------------

    def _prepare_call(
        self,
        fn: Callable[..., Any],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        timeout: float | None,
        retries: int,
        retry_delay: float,
        task_timeout: float | None,
        window: int | None,
        batch_size: int | None,
        method: str = "map",
    ) -> tuple[Any, int, int | None]:
        self._bind()
        self._check_open()
        check_map_args(fn, iterables, timeout, method)
        window = check_window(window, 0)
        batch_size = check_batch_size(batch_size)
        return self._opts(retries, retry_delay, task_timeout), window, batch_size

    def _new_call(
        self,
        fn: Any,
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        opts: Any,
        window: int,
        batch_size: int | None,
        timeout: float | None,
    ) -> MapCall[Any]:
        # The default window: two batches for every batch the cluster runs at once.
        call: MapCall[Any] = MapCall(
            self, fn, iterables, opts, window or 2 * self._threads, batch_size, timeout
        )
        self._calls.add(call)
        return call

    async def map(
        self,
        fn: Callable[..., Awaitable[_T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.1,
        task_timeout: float | None = None,
        window: int | None = None,
        batch_size: int | None = None,
    ) -> list[_T]:
        """Return ``[await fn(*args) for args in zip(*iterables)]``, run on the cluster.

        As :meth:`AsyncExecutor.map`: results in input order, the input read lazily,
        ``timeout`` a deadline from the call, the first exception raised at once. Items
        travel in batches of ``batch_size`` (None: adaptive, aiming at tens of
        milliseconds of work per batch); at most ``window`` batches are in flight
        (default: twice the number of tasks the cluster runs at once). When the call
        ends early (an exception, the deadline, the caller cancelled) its items on the
        cluster are cancelled and its queued batches never start.
        """
        opts, window, batch_size = self._prepare_call(
            fn, iterables, timeout, retries, retry_delay, task_timeout, window, batch_size
        )
        await self._ready()
        await self._recount_threads()
        call: MapCall[_T] = self._new_call(fn, iterables, opts, window, batch_size, timeout)
        return await call.run_map()

    def map_iter(
        self,
        fn: Callable[..., Awaitable[_T]],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        retries: int = 0,
        retry_delay: float = 0.1,
        task_timeout: float | None = None,
        window: int | None = None,
        batch_size: int | None = None,
    ) -> AsyncIterator[_T]:
        """Like :meth:`map`, but yield each result, in input order, as it is ready.

        Results come back a batch at a time. Memory follows ``window`` batches whatever
        the input's length, so an endless generator works. An item's exception is raised
        when the iteration reaches it. When the consumer stops early (break, exception,
        ``aclose()``) the call's items on the cluster are cancelled.
        """
        opts, window, batch_size = self._prepare_call(
            fn,
            iterables,
            timeout,
            retries,
            retry_delay,
            task_timeout,
            window,
            batch_size,
            "map_iter",
        )
        return MapIterStart(self, fn, iterables, opts, window, batch_size, timeout)

    async def _ready(self) -> None:
        """Wait for the connection; raise its error."""
        connecting = self._connecting
        if connecting is not None and not connecting.done():
            await asyncio.shield(connecting)
        if self._connect_error is not None:
            raise self._connect_error

    def _call_ended(self, call: MapCall[Any]) -> None:
        self._calls.discard(call)
        self._maybe_drained()

    # -- shutdown ----------------------------------------------------------------------

    async def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop accepting work; with ``wait``, return once the accepted work is done and
        the executor has let go of the cluster.

        ``wait=True`` runs everything already accepted, ``map``/``map_iter`` calls in
        progress included. ``cancel_futures=True`` cancels everything this executor still
        has on the cluster, queued or running, and stops the calls in progress with
        :class:`ExecutorShutdownError`. Then the executor forgets its state on the
        workers, disconnects, and closes the embedded cluster (a cluster reached by
        ``address`` keeps running; a ``client`` passed in stays open). A second call is
        harmless.
        """
        if self._state == _OPEN:
            self._state = _CLOSING
        if self._loop is None:  # never used: nothing to let go of
            self._state = _CLOSED
            return
        loop = self._bind()
        if cancel_futures:
            for future in list(self._buffer):
                future.cancel()
            self._buffer = []
            for call in list(self._calls):
                call.abort(
                    ExecutorShutdownError("the executor was shut down with cancel_futures=True")
                )
                call.close()
            for batch in list(self._batches.values()):
                self._cancel_batch(batch)
        if self._closer is None:
            self._closer = loop.create_task(self._close(), name=f"{self._name}-shutdown")
        if wait:
            await asyncio.shield(self._closer)

    async def _close(self) -> None:
        connecting = self._connecting
        if connecting is not None and not connecting.done():
            await asyncio.shield(connecting)
        self._flush()
        if self._batches or self._calls or self._buffer:
            assert self._loop is not None
            self._drained = self._loop.create_future()
            await self._drained
        self._send_cancels()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT)
        client = self._client
        try:
            if client is not None and client.status == "running":
                client.unsubscribe_topic(_runner.TOPIC + self._id)
                await asyncio.wait_for(
                    client.run(_runner.forget_executor, self._id, on_error="ignore"),
                    CLOSE_TIMEOUT,
                )
        except Exception as exc:  # pragma: no cover - the cluster is gone already
            _log.debug("antflow.cluster: could not clear the workers: %r", exc)
        finally:
            if client is not None and client is not self._given_client:
                await asyncio.wait_for(client.close(), CLOSE_TIMEOUT)
            if self._cluster is not None:
                await asyncio.wait_for(self._cluster.close(), CLOSE_TIMEOUT)
                self._cluster = None
            self._state = _CLOSED
