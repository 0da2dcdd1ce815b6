"""The worker loop: what each of the pool's slots runs, top to bottom.

:class:`WorkerPool` is the :class:`~antflow._pool.Pool` (lanes, room, wake and park,
closing) plus the coroutine that each worker runs: take the next entry in turn, run it
inline, hand its outcome over, and park on a raw loop future when no lane has work. The
success path of both kinds of entry is inlined here; the rarer outcomes are settled by
_slot. Read ``_work`` from the top: each branch says why it is there.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import Any, Final

from ._compat import HAS_UNCANCEL, uncancel
from ._future import FINISHED, PENDING, RUNNING
from ._options import failure, run_with_options
from ._pool import OPEN, Pool
from ._slot import Slot, future_cancelled, future_failed

__all__ = ["WorkerPool"]

# Every how many items a worker lets the loop run other callbacks, so that a stream of
# items that never suspend cannot starve the loop.
_YIELD_EVERY: Final = 64


class WorkerPool(Pool):
    """A :class:`Pool` whose workers run its entries (see the module's docstring)."""

    async def _work(self) -> None:
        """One slot of the pool: run queued entries one after another until shutdown."""
        loop = self._loop
        assert loop is not None
        task = asyncio.current_task()
        assert task is not None
        slot = Slot(task)
        self._slots[task] = slot
        ring = self._ring
        timings = self._timings
        started = queued = 0.0  # with timing on: when the item started, was queued
        ran = 0
        coro: Any = None  # the item's coroutine, kept for failure()
        item: Any = None
        # Python 3.10 cannot tell an item's own CancelledError from a cancel of the
        # worker, so the worker stops on both; then it is replaced if work is left.
        replace = False
        self._waking -= 1  # this worker was counted as waking when it was started
        fresh = True
        try:
            while True:
                if not ring:
                    if self._state != OPEN and not self._calls:
                        self.release_idle_workers()  # the others have nothing left either
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
                # A turn: the next entry of the lane at the head of the ring; the lane
                # leaves the ring when empty, else goes to the back if others wait.
                lane = ring[0]
                item = lane.popleft()
                if not lane:
                    del ring[0]
                elif len(ring) > 1:
                    ring.append(ring.pop(0))
                if fresh:
                    # Just woken (or started), and work is left: bring in more workers.
                    # Every enqueue wakes a worker when none is waking, so only a worker
                    # that has just woken needs to look.
                    fresh = False
                    if ring and (self._idle or not self._full):
                        self._spread()
                # The two kinds of entry are run by two branches that mirror each other
                # (call, await, settle the outcome) on purpose: a shared helper would
                # cost a call or a coroutine per item on the hottest path of the library.
                if type(item) is tuple:
                    # -- an item of a map / map_iter call ------------------------------
                    call, pos, args = item
                    slot.item = item
                    if self._room_waiters:
                        self._room.wake_one()
                    if timings is not None:
                        started = perf_counter()
                        queued = call._queued_at[pos]
                    try:
                        if call._plain:
                            # No options, one iterable: the call fed the bare value.
                            coro = call._fn(args)
                            result = await coro  # not awaitable: see failure()
                        elif call._opts is None:
                            coro = call._fn(*args)
                            result = await coro
                        else:
                            result = await run_with_options(
                                call._fn,
                                (args,) if call._single else args,
                                None,
                                call._opts,
                                call._context,
                                slot,
                                self.count_retry,
                                give_back=True,
                            )
                    except asyncio.CancelledError:
                        if not slot.settle_cancelled(task, self):
                            replace = not HAS_UNCANCEL
                            raise
                    except (KeyboardInterrupt, SystemExit) as exc:
                        slot.failed(exc, self)
                        raise
                    except BaseException as exc:
                        slot.failed(failure(exc, call._fn, coro), self)
                        coro = None
                    else:
                        if slot.item is item:
                            slot.item = None
                            self._completed += 1
                            # Hand the result over in place (see _calls: a list for map,
                            # a ring of window places for map_iter).
                            call._results[pos] = result
                            call._in_flight -= 1
                            if call._in_flight <= call._low_water or pos == call._head_pos:
                                call._wake()
                        elif slot.cancelled is not None:
                            slot.settle_cancelled(task, self)  # it swallowed our cancel
                else:
                    # -- a submitted AsyncFuture ----------------------------------------
                    if item._state != PENDING:  # cancelled while queued: a dead entry
                        self._dead -= 1
                        continue
                    item._state = RUNNING
                    item._runner = task
                    if self._room_waiters:
                        self._room.wake_one()
                    if timings is not None:
                        started = perf_counter()
                        queued = item._queued_at
                    try:
                        if item._opts is None:
                            fn = item._fn
                            kwargs = item._kwargs
                            coro = fn(*item._args, **kwargs) if kwargs else fn(*item._args)
                            result = await coro  # not awaitable: see failure()
                        else:
                            result = await run_with_options(
                                item._fn,
                                item._args,
                                item._kwargs,
                                item._opts,
                                item._context,
                                item,
                                self.count_retry,
                            )
                    except asyncio.CancelledError:
                        if not future_cancelled(item, task):
                            replace = not HAS_UNCANCEL
                            raise
                    except (KeyboardInterrupt, SystemExit) as exc:
                        future_failed(item, exc, self)
                        raise
                    except BaseException as exc:
                        future_failed(item, failure(exc, item._fn, coro), self)
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
                            uncancel(task)
                if timings is not None:
                    timings.observe(started - queued, perf_counter() - started)
                ran += 1
                if ran == _YIELD_EVERY:
                    ran = 0
                    item = call = args = coro = result = None  # as when parking, above
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            # The worker itself was cancelled (loop teardown, or a shutdown whose timeout
            # ran out): its item ends cancelled.
            if type(item) is not tuple and item is not None:
                if item._state == RUNNING:
                    item._runner = None
                    item.cancel()
            elif slot.item is not None:
                slot.ended_cancelled(self)
            raise
        finally:
            del self._slots[task]
            self._worker_exited(task, replace)
