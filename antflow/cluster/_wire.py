"""The wire: batches on their way to the cluster and back, and cancels sent after them.

:class:`ClientSide` is the half of :class:`~antflow.cluster.ClusterExecutor` that talks to
Dask once a payload is ready: it submits one Dask task per batch, collects each batch's
outcome in a client task and settles the batch's futures (or hands the values to its
``map`` call), and it carries cancellations to the workers.

A cancel reaches the items in two ways at once. ``Client.cancel`` drops a batch that
Dask has not started. ``Client.run(cancel_items, ...)`` calls a plain function in every
worker's event loop thread (the thread that runs the batches), which cancels the items'
futures on that worker's executor: a queued item never starts, a running one has its
coroutine cancelled. A cancel that arrives before its batch is kept there as a tombstone
(see _runner). The cancels of one loop iteration travel in one ``Client.run``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from .._future import FINISHED, PENDING, AsyncFuture
from . import _runner
from ._batching import Batch, BatchSizer, encode_submit

if TYPE_CHECKING:
    from ._calls import MapCall

__all__ = ["CLOSE_TIMEOUT", "ClientSide", "Item"]

_log = logging.getLogger("antflow.cluster")

CLOSE_TIMEOUT = 30.0  # seconds for a background call, closing the client or the cluster


class Item:
    """Where a submitted future is: its options, and its batch once sent."""

    __slots__ = ("batch", "index", "opts")

    def __init__(self, opts: tuple[int, float, float | None] | None) -> None:
        self.opts = opts
        self.batch: Batch | None = None
        self.index = 0


class ClientSide:
    """Batches in flight, cancels for the workers, and the counters of the items."""

    def __init__(self, exec_id: str, name: str, max_workers: int) -> None:
        self._id = exec_id
        self._name = name
        self._max_workers = max_workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None  # the distributed.Client, once connected
        self._buffer: list[AsyncFuture[Any]] = []  # submitted, not sent yet
        self._flush_scheduled = False
        self._threads = 1  # batches the cluster runs at once (sum of nthreads), once known
        self._submit_sizer = BatchSizer(None)
        self._batches: dict[int, Batch] = {}
        self._batch_seq = 0
        self._calls: set[MapCall[Any]] = set()
        self._cancels: dict[int, list[int] | None] = {}  # to tell the workers
        self._told: set[int] = set()  # batches the workers were told of, not ended
        self._forget: list[int] = []  # ended batches whose tombstones the workers may drop
        self._tasks: set[asyncio.Task[Any]] = set()  # background tasks
        self._drained: asyncio.Future[None] | None = None
        self._quiet = False  # cancelling a future that its worker reported cancelled

        self._submitted = 0
        self._running = 0  # items in batches that were sent
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._retried = 0

    def _flush(self) -> None:
        """Send the submitted futures that wait on the client, in batches."""
        self._flush_scheduled = False
        if self._client is None:
            return  # not connected yet: _connect flushes
        buffer = [f for f in self._buffer if f._state == PENDING]
        self._buffer = []
        if not buffer:
            return
        # Small enough batches that every thread of the cluster gets some.
        size = max(1, min(self._submit_sizer.size, math.ceil(len(buffer) / self._threads)))
        for start in range(0, len(buffer), size):
            self._send_futures(buffer[start : start + size])

    def _send_futures(self, futures: list[AsyncFuture[Any]]) -> None:
        entries = [(f._fn, f._args, f._kwargs, f._opts.opts) for f in futures]
        payload, bad = encode_submit(entries)
        for i, error in bad.items():
            self._failed += 1
            futures[i]._set_exception(error)
        if bad:
            futures = [f for i, f in enumerate(futures) if i not in bad]
        if payload is None:
            return
        batch = self._send(payload, len(futures), futures, None)
        for i, future in enumerate(futures):
            future._opts.batch = batch
            future._opts.index = i

    def _send(
        self, payload: bytes, size: int, futures: list[AsyncFuture[Any]] | None, call: Any
    ) -> Batch:
        """Hand one batch to Dask; a client task collects its outcome."""
        assert self._client is not None and self._loop is not None
        self._batch_seq += 1
        sizer = call.sizer if call is not None else self._submit_sizer
        batch = Batch(self._batch_seq, size, futures, call, sizer)
        if call is not None:
            self._submitted += size
        self._running += size
        batch.dask = self._client.submit(
            _runner.run_batch,
            self._id,
            batch.id,
            self._max_workers,
            self._name,
            payload,
            key=f"{self._name}-batch-{batch.id}-{self._id[:12]}",
            pure=False,
        )
        batch.task = self._loop.create_task(self._collect(batch))
        self._batches[batch.id] = batch
        return batch

    async def _collect(self, batch: Batch) -> None:
        try:
            data = await batch.dask
            outcome = pickle.loads(data)
        except asyncio.CancelledError as exc:
            if batch.ended:
                return  # cancelled by this executor: already accounted for
            # Cancelled by Dask (or the loop is closing): the batch's items end cancelled.
            self._batch_ended(batch, None, exc)
            raise
        except Exception as exc:
            self._batch_ended(batch, None, exc)
        else:
            self._batch_ended(batch, outcome, None)

    def _batch_ended(self, batch: Batch, outcome: Any, failure: BaseException | None) -> None:
        if batch.ended:
            return
        batch.ended = True
        batch.dask = batch.task = None
        self._batches.pop(batch.id, None)
        if batch.id in self._told:
            self._told.discard(batch.id)
            self._forget.append(batch.id)
        if failure is not None:
            batch.failure = failure
            cancelled: list[int] = []
        else:
            values, errors, worker_cancelled, skipped, retried, elapsed = outcome
            batch.values, batch.errors, batch.worker_cancelled = values, errors, worker_cancelled
            self._retried += retried - batch.retried
            batch.sizer.observe(batch.size, elapsed)
            cancelled = (worker_cancelled or []) + (skipped or [])
        futures = batch.futures
        if futures is None:  # a map batch: counters now, values to the call
            self._running -= batch.size
            failed = batch.size if failure is not None else len(batch.errors or ())
            self._failed += failed
            self._cancelled += len(cancelled)
            self._completed += batch.size - failed - len(cancelled)
            if batch.call is not None:
                batch.call.batch_ended(batch)
        else:
            for i, future in enumerate(futures):
                if future._state >= FINISHED:
                    continue  # cancelled on the client, or streamed: counted then
                error = batch.error_at(i)
                if error is None:
                    self._running -= 1
                    self._completed += 1
                    future._set_result(batch.values[i])  # type: ignore[index]
                elif isinstance(error, asyncio.CancelledError):  # (counted by the cancel)
                    self._quiet = True
                    try:
                        future.cancel()  # it raised CancelledError itself, on the worker
                    finally:
                        self._quiet = False
                else:
                    self._running -= 1
                    self._failed += 1
                    future._set_exception(error)
            batch.futures = None
        self._maybe_drained()

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A submitted item's outcome, streamed by its worker as soon as it ended."""
        batch_id, retried, data = event[1]
        batch = self._batches.get(batch_id)
        if batch is None or batch.futures is None:
            return  # the batch's result came first
        self._retried += retried - batch.retried  # counted before the future ends
        batch.retried = retried
        index, ok, value = pickle.loads(data)
        future = batch.futures[index]
        if future._state >= FINISHED:
            return
        self._running -= 1
        if ok:
            self._completed += 1
            future._set_result(value)
        else:
            self._failed += 1
            future._set_exception(value)

    # -- cancelling --------------------------------------------------------------------

    def _future_cancelled(self, future: AsyncFuture[Any], queued: bool) -> None:
        """``future.cancel()``: a queued item never runs, a running one is cancelled."""
        self._cancelled += 1
        if self._quiet:
            self._running -= 1
            return
        item: Item = future._opts
        batch = item.batch
        if batch is None:
            return  # still on the client: the flush skips it
        self._running -= 1
        batch.live -= 1
        if batch.live == 0:
            self._cancel_batch(batch)
        else:
            self._tell_cancel(batch.id, item.index)

    def _cancel_batch(self, batch: Batch) -> None:
        """Cancel a whole batch: Dask drops it if it has not started, the worker cancels
        its items if it has."""
        if batch.ended:
            return
        batch.ended = True
        self._batches.pop(batch.id, None)
        if batch.futures is None:  # a map batch: its items are counted here
            self._running -= batch.size
            self._cancelled += batch.size
        else:  # its futures not ended yet count themselves as they are cancelled
            self._quiet = True
            try:
                for future in batch.futures:
                    if future._state < FINISHED:
                        future.cancel()
            finally:
                self._quiet = False
            batch.futures = None
        if batch.task is not None:
            batch.task.cancel()
        dask_future = batch.dask
        batch.dask = batch.task = None
        if dask_future is not None and self._client is not None:
            self._background(self._client.cancel([dask_future]))
        self._tell_cancel(batch.id, None)
        self._maybe_drained()

    def _tell_cancel(self, batch_id: int, index: int | None) -> None:
        """Queue a cancel for the workers; one ``Client.run`` per loop iteration."""
        if not self._cancels:
            assert self._loop is not None
            self._loop.call_soon(self._send_cancels)
        if index is None:
            self._cancels[batch_id] = None
        else:
            indices = self._cancels.setdefault(batch_id, [])
            if indices is not None:
                indices.append(index)

    def _send_cancels(self) -> None:
        entries = list(self._cancels.items())
        self._cancels.clear()
        if not entries or self._client is None:
            return
        forget, self._forget = self._forget, []
        self._told.update(batch_id for batch_id, _ in entries)
        self._background(
            self._client.run(_runner.cancel_items, self._id, entries, forget, on_error="ignore")
        )

    def _background(self, awaitable: Awaitable[Any]) -> None:
        """Run a coroutine of the client (a cancel, a close) without waiting for it."""

        async def run() -> None:
            try:
                await asyncio.wait_for(awaitable, CLOSE_TIMEOUT)
            except Exception as exc:  # the cluster went away: nothing left to cancel
                _log.debug("antflow.cluster: background call failed: %r", exc)

        assert self._loop is not None
        task = self._loop.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _track(self, task: asyncio.Task[Any]) -> None:
        """A task of a call's (an async input's feeder): shutdown waits for it too."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail_buffer(self, exc: BaseException) -> None:
        buffer, self._buffer = self._buffer, []
        for future in buffer:
            if future._state == PENDING:
                self._failed += 1
                future._set_exception(exc)

    def _maybe_drained(self) -> None:
        drained = self._drained
        if (
            drained is not None
            and not drained.done()
            and not self._batches
            and not self._calls
            and not self._buffer
        ):
            drained.set_result(None)
