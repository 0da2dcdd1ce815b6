"""The worker loop: what each of the pool's slots runs, top to bottom.

:class:`WorkerPool` is the :class:`~antflow._pool.Pool` (lanes, room, wake and park,
closing) plus the coroutine that each worker runs: take a turn of the lane at the head of
the ring, run the item inline, hand its outcome over, and park on a raw loop future when
no lane has work. A turn of a pulled ``map`` call runs its items in a tight loop inline;
a pulled ``map_iter`` call's turn is ``_pull``; a lane's entry (a submitted future, or a
pushed call's item) is one item. The success path of each is inlined here; the rarer
outcomes are settled by _slot. Read ``_work`` from the top: each branch says why it is
there.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter
from typing import Any, Final

from ._compat import HAS_UNCANCEL, uncancel
from ._future import FINISHED, ONE_ARG, PENDING, RUNNING, LoopFuture
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
        submits = self._submits  # the lane of submit(): its entries are AsyncFutures
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
                    item = lane = call = args = coro = result = fn = results = None
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._idle.append(waiter)
                    try:
                        await waiter
                    finally:
                        if waiter.done() and not waiter.cancelled():
                            self._waking -= 1
                    fresh = True
                    continue
                # A turn: the lane at the head of the ring gives its next entry, then goes
                # to the back if others wait (and leaves the ring once it has no more).
                lane = ring[0]
                if lane is not submits and type(lane) is not deque:
                    # -- a call that its workers pull from: hold its turn (see _pull) ------
                    if fresh:
                        fresh = False
                        if self._idle or not self._full:
                            self._spread()
                    item = None
                    if lane._places:
                        try:
                            ran = await self._pull(lane, slot, task, ran)
                        except asyncio.CancelledError:
                            replace = not HAS_UNCANCEL  # (as below: an item's cancel, 3.10)
                            raise
                    else:
                        # -- a turn of a pulled map call: the tightest loop of the library.
                        # As the floor does, run `for pos, args in input: results[pos] =
                        # await fn(args)` over an enumerate of the call's input (read in
                        # its caller's context, see MapCall). A success writes its result
                        # and nothing else: the pool derives the call's counts when asked
                        # (MapCall.counts), and the call has ended when its input is
                        # exhausted and no worker holds a turn of it. The turn ends after
                        # an item if another lane waits (one item at least: the call goes
                        # to the back of the ring first), at the loop turn every 64 items,
                        # or when an item did not succeed. (Inline, not a coroutine of its
                        # own: every resumption of an item would pass through one more
                        # frame, measured at +4 % per item on items that suspend.)
                        if len(ring) > 1:
                            ring.append(ring.pop(0))
                        call = lane
                        fn = call._fn
                        results = call._results
                        kind = 0 if call._plain else 1 if call._opts is None else 2
                        slot.call = call
                        call._turns += 1
                        try:
                            for pos, args in call._esrc:
                                if timings is not None:
                                    started = perf_counter()
                                    queued = call._ready_at  # since its call was ready for it
                                    call._ready_at = started
                                try:
                                    if kind == 0:
                                        coro = fn(args)
                                        result = await coro  # not awaitable: see failure()
                                    elif kind == 1:
                                        coro = fn(*args)
                                        result = await coro
                                    else:
                                        result = await run_with_options(
                                            fn,
                                            (args,) if call._single else args,
                                            None,
                                            call._opts,
                                            call._context,
                                            slot,
                                            self.count_retry,
                                            give_back=True,
                                        )
                                except asyncio.CancelledError:
                                    slot.pos = pos
                                    if not slot.settle_cancelled(task, self):
                                        replace = not HAS_UNCANCEL
                                        raise
                                except (KeyboardInterrupt, SystemExit) as exc:
                                    slot.pos = pos
                                    slot.failed(task, exc, self)
                                    raise
                                except BaseException as exc:
                                    slot.pos = pos
                                    slot.failed(task, failure(exc, fn, coro), self)
                                else:
                                    # A success: the slot still holds the call (the one
                                    # check of the slot that a success pays for).
                                    if slot.call is call:
                                        try:
                                            results[pos] = result  # handed over in place
                                        except IndexError:
                                            call._grow_results(pos)
                                            results[pos] = result
                                        if timings is not None:
                                            took = perf_counter() - started
                                            timings.observe(started - queued, took)
                                        ran += 1
                                        if ran < _YIELD_EVERY and len(ring) == 1:
                                            continue
                                        break
                                    if slot.cancelled is not None:
                                        slot.settle_cancelled(task, self)  # swallowed it
                                # Every rarer outcome above leaves the slot without its call.
                                if timings is not None:
                                    timings.observe(started - queued, perf_counter() - started)
                                ran += 1
                                break
                            else:
                                call._input_ended(None)
                        except BaseException as exc:
                            if slot.call is not call:
                                raise  # from an item (above), which has settled it
                            call._input_ended(exc)  # reading the input raised
                        finally:
                            slot.call = None
                            call._turns -= 1
                            if not call._turns and call._exhausted:
                                call._wake()  # no item of the call is left in flight
                    lane = None
                    if ran >= _YIELD_EVERY:
                        ran = 0
                        await asyncio.sleep(0)
                    continue
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
                if lane is not submits:
                    # -- an item of a map / map_iter call: a (call, pos, args) tuple -----
                    call, pos, args = item
                    slot.call = call
                    slot.pos = pos
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
                        slot.failed(task, exc, self)
                        raise
                    except BaseException as exc:
                        slot.failed(task, failure(exc, call._fn, coro), self)
                        coro = None
                    else:
                        if slot.call is call:
                            slot.call = None
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
                            if kwargs is ONE_ARG:  # fn(x): see _future.ONE_ARG
                                coro = fn(item._args)
                            elif kwargs is None:
                                coro = fn(*item._args)
                            else:
                                coro = fn(*item._args, **kwargs)
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
                        future_failed(item, task, exc, self)
                        raise
                    except BaseException as exc:
                        future_failed(item, task, failure(exc, item._fn, coro), self)
                        coro = None
                    else:
                        if item._state == RUNNING:
                            self._completed += 1
                            item._state = FINISHED
                            item._result = result
                            item._fn = item._args = item._kwargs = item._runner = None
                            listeners = item._listeners
                            if listeners is not None:
                                # AsyncFuture._ended, inlined for one listener (one
                                # callback of as_completed, wait, ..., or one waiter of
                                # result()): a frame less per item.
                                if callable(listeners):
                                    item._listeners = None
                                    listeners(item)
                                elif type(listeners) is LoopFuture:
                                    item._listeners = None
                                    if not listeners.done():
                                        listeners.set_result(True)
                                else:
                                    item._ended()
                                listeners = None  # not kept while the next item runs
                        elif item._runner is task:
                            # Cancelled while it ran, but it swallowed the CancelledError.
                            uncancel(task)
                if timings is not None:
                    timings.observe(started - queued, perf_counter() - started)
                ran += 1
                if ran == _YIELD_EVERY:
                    ran = 0
                    item = lane = call = args = coro = result = fn = results = None  # as parking
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            # The worker itself was cancelled (loop teardown, or a shutdown whose timeout
            # ran out): its item ends cancelled.
            if type(item) is not tuple and item is not None:
                if item._state == RUNNING:
                    item._runner = None
                    item.cancel()
            elif slot.call is not None:
                slot.ended_cancelled(self)
            raise
        finally:
            del self._slots[task]
            self._worker_exited(task, replace)

    async def _pull(self, call: Any, slot: Slot, task: asyncio.Task[Any], ran: int) -> int:
        """A turn of a pulled map_iter call at the head of the ring: read its next input
        and run the item, again and again while no other lane waits; return the count
        towards the next loop turn (see _work).

        The call's fields live in locals for the whole turn, and a success touches only
        the call (its place in the ring of results, its count of successes: the pool adds
        the counts of its calls in progress when asked, see Pool.stats). Each pass reads
        one input (in the caller's context) unless the window is full, and gives the turn
        away first if another lane waits; the turn ends when the input ends, the window is
        full, the call ends, another lane takes the head of the ring, or an item did not
        succeed.
        """
        ring = self._ring
        timings = self._timings
        fn = call._fn
        read = call._ctx_run
        source = call._source
        results = call._results
        places = call._places
        kind = 0 if call._plain else 1 if call._opts is None else 2
        started = queued = 0.0
        coro: Any = None
        slot.call = call
        try:
            while True:
                pos = call._count
                if pos >= call._limit:
                    # map_iter's window is full: its consumer puts it back (_take_turns).
                    del ring[0]
                    call._in_ring = False
                    return ran
                try:
                    args = read(next, source)
                except BaseException as exc:  # StopIteration: the input is exhausted
                    call._input_ended(None if type(exc) is StopIteration else exc)
                    return ran
                call._count = pos + 1
                pos %= places  # its place in the ring of results
                if len(ring) > 1:
                    ring.append(ring.pop(0))  # fair turns: another lane waits
                if timings is not None:
                    # It waited from when its call was ready for it (stood in the ring,
                    # or its previous item started).
                    started = perf_counter()
                    queued = call._ready_at
                    call._ready_at = started
                try:
                    if kind == 0:
                        coro = fn(args)
                        result = await coro  # not awaitable: see failure()
                    elif kind == 1:
                        coro = fn(*args)
                        result = await coro
                    else:
                        result = await run_with_options(
                            fn,
                            (args,) if call._single else args,
                            None,
                            call._opts,
                            call._context,
                            slot,
                            self.count_retry,
                            give_back=True,
                        )
                except asyncio.CancelledError:
                    slot.pos = pos
                    if not slot.settle_cancelled(task, self):
                        raise
                except (KeyboardInterrupt, SystemExit) as exc:
                    slot.pos = pos
                    slot.failed(task, exc, self)
                    raise
                except BaseException as exc:
                    slot.pos = pos
                    slot.failed(task, failure(exc, fn, coro), self)
                    coro = None
                else:
                    if slot.call is call:  # a success, as in _work: one check of the slot
                        results[pos] = result  # handed over in place, as in _work
                        call._done += 1
                        if pos == call._head_pos:
                            call._wake()  # the result that the consumer waits for
                        if timings is not None:
                            timings.observe(started - queued, perf_counter() - started)
                        ran += 1
                        if ran < _YIELD_EVERY and ring and ring[0] is call:
                            continue
                        return ran
                    if slot.cancelled is not None:
                        slot.settle_cancelled(task, self)  # it swallowed our cancel
                # Every rarer outcome above leaves the slot without its call: the turn ends.
                if timings is not None:
                    timings.observe(started - queued, perf_counter() - started)
                return ran + 1
        finally:
            slot.call = None
