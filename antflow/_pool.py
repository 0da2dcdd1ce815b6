"""The pool: ``max_workers`` slots, each a long-lived worker coroutine, on raw loop futures.

Work waits in *lanes*, one per caller: a deque for the stream of ``submit`` calls, and
one for each ``map`` / ``map_iter`` call in progress. The lanes that hold work stand in a
ring, and a worker that is free takes the next entry from the lane at the head of the
ring, then moves that lane to the back: callers get turns, round robin, so a small
request waits for about one freed worker, not behind another caller's whole window.
With one caller the ring has one lane and a turn costs a comparison or two.

A worker awaits each item's coroutine inline: no Task, no queue object and no lock per
item. A call over a synchronous input queues nothing: the call itself stands in the
ring, and a worker whose turn it is reads the call's next input itself (it *pulls*),
so no entry is made per item and nobody has to be woken to refill a queue (see
_worker). Other entries are an :class:`AsyncFuture` (from ``submit``) or a ``(call,
place, args)`` tuple, an item of a call over an async input, which its caller reads
ahead and queues (see _calls). An idle worker parks on a raw future from
``loop.create_future()``; new work wakes one parked worker when none is already on its
way, and a woken worker that finds more work wakes the next ones (see wake_worker). The
loop is single-threaded, so the pool's state lives in plain attributes that change only
between two awaits.

This module keeps the pool's books: the lanes, room for ``max_pending``, which workers
are parked or waking, the counters, ending a call, closing and draining. The loop that
each worker runs is in _worker (:class:`~antflow._worker.WorkerPool`). The pool knows
nothing of the public API, of progress bars or metrics; what it asks of a call is the
small set of attributes and methods listed in :class:`Call`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import Any, Final, Protocol

from ._compat import create_task
from ._errors import ExecutorShutdownError
from ._future import PENDING, AsyncFuture
from ._options import ITEM_TASK, Options
from ._room import Room
from ._slot import Slot
from ._stats import ExecutorStats
from ._timing import TaskTimings

__all__ = ["CLOSED", "CLOSING", "OPEN", "Call", "Pool"]

_get_running_loop = asyncio._get_running_loop  # C-fast, and returns None outside a loop

# The states of a pool.
OPEN: Final = 0
CLOSING: Final = 1  # shut down: no new work; queued work and calls in progress finish
CLOSED: Final = 2  # every worker has exited
STATE_NAMES: Final = ("open", "closing", "closed")

_NO_LOOP: Final = object()  # see Pool._unchecked_loop


class Call(Protocol):
    """What the worker uses of a map / map_iter call (see _calls.BaseCall)."""

    _fn: Any
    _opts: Options | None
    _plain: bool  # one iterable and no options: the entry holds the bare value
    _single: bool  # one iterable: fn takes the value as its one argument
    _context: contextvars.Context | None
    _lane: deque[Any]  # the call's entries waiting for a worker
    # A call that its workers pull from stands in the ring itself (see _worker):
    _source: Any  # its input (an iterator)
    _ctx_run: Any  # the caller's context's run(): reads an input there
    _count: int  # inputs read so far
    _limit: int  # read no input at or beyond this count (map_iter's window)
    _places: int  # map_iter's ring of result places; 0 for map (a list that grows)
    _in_ring: bool
    _ready_at: float  # with timing on: since when the call's next item waits for a worker
    _pull: bool  # workers read its input (it stands in the ring); else it queues entries
    _lost: int  # items that failed or were cancelled
    _open: bool  # between the call's start and its end
    _room_waiter: tuple[int, asyncio.Future[None]] | None  # its place in line: Room.wait

    def counts(self) -> tuple[int, int]: ...

    _queued_at: list[float]  # with timing on: when each place's entry was queued
    _results: list[Any]  # where the worker puts a result, at the entry's place
    _in_flight: int
    _low_water: int
    _head_pos: int

    def _wake(self) -> None: ...
    def _item_failed(self, pos: int, exc: BaseException) -> None: ...
    def _input_ended(self, error: BaseException | None) -> None: ...
    def abort(self, error: BaseException) -> None: ...


class Pool:
    """Run queued entries on at most ``max_workers`` worker coroutines of one loop.

    Binds to the running loop on first use. Counters are updated before a future is
    resolved, so whoever sees a future done sees it counted. ``close`` stops new work;
    the pool is closed once no worker and no call is left.
    """

    def __init__(
        self, max_workers: int, max_pending: int, name: str, timing: bool, plain_submits: bool
    ) -> None:
        self._max_workers: Final = max_workers
        self._max_pending: Final = max_pending
        self._name: Final = name
        self._timings: Final = TaskTimings() if timing else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = OPEN
        # The loop on which ``submit`` may skip its checks: the bound loop while the pool
        # is open, if it has neither max_pending nor timing and its submitted items have
        # no options unless their call gives some (``plain_submits``); else a marker that
        # is no loop. (One identity test instead of five per submitted item; see
        # AsyncExecutor.submit.)
        self._unchecked_loop: object = _NO_LOOP
        self._may_skip_checks: Final = plain_submits and not max_pending and not timing
        self._submits: deque[AsyncFuture[Any]] = deque()  # the lane of submit()
        # The lanes that hold entries, in turn (deques, or calls that workers pull from).
        # A list: the worker reads ring[0] per item, which is far cheaper on a list than
        # on a deque; rotating a few lanes is cheap.
        self._ring: list[Any] = []
        self._idle: deque[asyncio.Future[None]] = deque()  # parked workers' wake-up futures
        self._room = Room(max_pending)
        self._room_waiters = self._room.waiters  # callers waiting for room (max_pending)
        self._workers: set[asyncio.Task[None]] = set()
        self._slots: dict[asyncio.Task[Any], Slot] = {}
        self._full = False  # every slot has a worker
        self._worker_seq = 0
        self._waking = 0  # workers woken (or started) that have not looked at the queue yet
        self._calls: set[Any] = set()  # map / map_iter calls in progress
        self._feeders: set[asyncio.Task[None]] = set()  # tasks reading calls' async inputs
        self._drained: asyncio.Future[None] | None = None  # set when the last worker exits
        # Counters (see ExecutorStats). Entries that are dead (futures cancelled while
        # queued) stay in their lane until a worker skips them.
        self._submitted = 0
        self._dead = 0
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._retried = 0

    # -- state -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        # Items queued and not started: the lanes' entries less the dead ones (a call that
        # workers pull from queues nothing). Deriving the count (the ring holds a few
        # lanes) spares the hot path an update per item.
        return sum([len(lane) for lane in self._ring if type(lane) is deque]) - self._dead

    @property
    def running(self) -> int:
        # Every accepted item is in exactly one state, so the running ones are the rest;
        # deriving the count spares the hot path two updates per item.
        return self.stats().running

    def stats(self) -> ExecutorStats:
        # A pulled call counts its own items read and succeeded (see _worker._pull); the
        # pool adds them here while the call is in progress, and for good when it ends.
        submitted, completed = self._submitted, self._completed
        for call in self._calls:
            if call._pull:
                read, succeeded = call.counts()
                submitted += read
                completed += succeeded
        pending = self.pending
        running = submitted - pending - completed - self._failed - self._cancelled
        return ExecutorStats(
            submitted, pending, running, completed, self._failed, self._cancelled, self._retried
        )

    def __repr__(self) -> str:
        return (
            f"{STATE_NAMES[self._state]} max_workers={self._max_workers} "
            f"workers={len(self._workers)} idle={len(self._idle)} pending={self.pending} "
            f"running={self.running} calls={len(self._calls)} lanes={len(self._ring)}"
        )

    def bind(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, binding to it on first use."""
        loop = _get_running_loop()
        if loop is None:
            raise RuntimeError("AsyncExecutor must be used from a coroutine on a running loop")
        if self._loop is None:
            self._loop = loop
            if self._may_skip_checks and self._state == OPEN:
                self._unchecked_loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this AsyncExecutor is bound to another event loop (the loop of its first "
                "use); create one executor per event loop"
            )
        return loop

    def check_open(self) -> None:
        if self._state != OPEN:
            raise ExecutorShutdownError("cannot schedule new work after shutdown()")

    def count_retry(self) -> None:
        self._retried += 1

    # -- room (max_pending) ----------------------------------------------------------------

    def check_room(self) -> None:
        self._room.check(self.pending)

    async def wait_for_room(self, call: Call | None = None, ticket: int | None = None) -> int:
        """Wait until fewer than ``max_pending`` items are queued; return the caller's ticket.

        A ``call`` in progress (accepted work) may go on after shutdown, and stops waiting
        when it ends (``BaseCall._end``); new work (``asubmit``) raises
        ExecutorShutdownError instead. ``ticket``: wait at that place in line (Room.wait).
        """
        limit = self._max_pending
        if call is not None:
            full = lambda: self.pending >= limit and call._open  # noqa: E731
            return await self._room.wait(self.bind(), full, call, ticket)
        ticket = await self._room.wait(
            self.bind(), lambda: self.pending >= limit and self._state == OPEN
        )
        self.check_open()
        return ticket

    def pass_on_room(self) -> None:
        """Wake one room waiter per free place: a caller woken for room that queued less
        than it was woken for passes the places it left on (see Room)."""
        limit = self._max_pending
        if limit and self._room_waiters:
            for _ in range(min(limit - self.pending, len(self._room_waiters))):
                self._room.wake_one()

    def _future_cancelled(self, future: AsyncFuture[Any], queued: bool) -> None:
        # (FutureOwner) A queued future stays in the queue, dead, until a worker skips it.
        self._cancelled += 1
        if queued:
            self._dead += 1
            self._room.wake_one()

    # -- workers: wake, start, park ----------------------------------------------------------

    def wake_worker(self) -> bool:
        """Wake one parked worker, or start one if none is parked and a slot is free.

        At most a few workers are "waking" (woken, not yet running) at a time: a woken
        worker that still finds items queued wakes the next ones (see _work). Waking one
        worker per queued item would waste a wake-up on every item that a running worker
        reaches first, which for short items is nearly all of them.
        """
        if self._wake_idle():
            return True
        if len(self._workers) < self._max_workers:
            self._start_worker()
            return True
        return False

    def _spread(self) -> None:
        """A worker that has just woken found more work queued: bring in two more, so
        that a burst reaches the whole pool in a few loop iterations."""
        ring = self._ring
        if self.wake_worker() and (len(ring) > 1 or type(ring[0]) is not deque or len(ring[0]) > 1):
            self.wake_worker()

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
        task = create_task(loop, self._work(), name, contextvars.Context())
        # A worker parked in an executor that the program dropped without shutdown() is
        # collected with it; that is no error worth a log line (nothing was lost).
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        task.add_done_callback(self._worker_done)
        self._workers.add(task)
        self._full = len(self._workers) >= self._max_workers

    def runs(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` runs an item of this pool: a worker, or an item's own Task
        (one with a context; not a Task that an item started, see ITEM_TASK); or reads a
        call's async input (a feeder, which a closing pool waits for as well)."""
        if task in self._workers or task in self._feeders:
            return True
        mark = ITEM_TASK.get(None)
        return mark is not None and mark[0] is task and mark[1] in self._workers

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        """A worker Task has ended. Mark what ended it as seen: KeyboardInterrupt /
        SystemExit reach the loop already (and the item's future holds them), so a "never
        retrieved" log adds nothing. A worker cancelled before its first step (a drain's
        deadline in the iteration that started it) never ran _work, nor its ``finally``:
        let it go here, or the pool would wait for it forever."""
        if not task.cancelled():
            task.exception()
        if task in self._workers:
            self._waking -= 1  # (it never looked at the queue)
            self._worker_exited(task, False)

    def _worker_exited(self, task: asyncio.Task[None], replace: bool) -> None:
        self._workers.discard(task)
        self._full = False
        if replace and self._ring and self._state != CLOSED:
            self._start_worker()
        else:
            self._maybe_closed()

    def release_idle_workers(self) -> None:
        """If nothing is left to feed the queue, wake parked workers so that they exit."""
        if self._state == OPEN or self._calls or self._ring:
            return
        while self._wake_idle():
            pass

    def _wake_idle(self) -> bool:
        """Wake one parked worker (skipping any whose waiter is done); False if none is."""
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._waking += 1
                return True
        return False

    # -- the worker loop: see _worker -----------------------------------------------------

    async def _work(self) -> None:
        """What each worker runs: see WorkerPool, in _worker."""
        raise NotImplementedError

    # -- calls ---------------------------------------------------------------------------

    def add_lane(self, lane: Any) -> None:
        """A lane (a deque with entries, or a call to pull from) takes turns again."""
        self._ring.append(lane)
        if not self._waking:
            self.wake_worker()

    def end_call(self, call: Call) -> None:
        """A map/map_iter call ends: cancel its running items, drop its queued ones."""
        for slot in self._slots.values():
            if slot.call is call:
                slot.cancel(self)
        if call._in_ring:
            call._in_ring = False
            self._ring.remove(call)
        if call._pull and call in self._calls:
            read, succeeded = call.counts()  # its items count here from now on
            self._submitted += read
            self._completed += succeeded
        # Drop its queued entries now, so that their inputs are freed at once; they
        # count as cancelled.
        lane = call._lane
        if lane:
            queued = len(lane)
            lane.clear()
            self._ring.remove(lane)
            self._cancelled += queued
            for _ in range(min(queued, len(self._room_waiters))):
                self._room.wake_one()
        self._calls.discard(call)
        if self._state == CLOSING:
            self.release_idle_workers()
            self._maybe_closed()

    def add_feeder(self, task: asyncio.Task[None]) -> None:
        """A task that reads a call's async input: the pool closes only once it ends."""
        self._feeders.add(task)
        task.add_done_callback(self._feeder_done)

    def _feeder_done(self, task: asyncio.Task[None]) -> None:
        self._feeders.discard(task)
        self._maybe_closed()

    # -- closing -------------------------------------------------------------------------

    def close(self, cancel_futures: bool) -> None:
        """Stop accepting work; with ``cancel_futures`` drop every entry not started."""
        if self._state == OPEN:
            self._state = CLOSING
            self._unchecked_loop = _NO_LOOP
            self._room.wake_all()
        if cancel_futures:
            self._cancel_queued(
                ExecutorShutdownError("the executor was shut down with cancel_futures=True")
            )
        elif self._ring and not self._workers and self._loop is not None:
            # Queued work and no worker left (they were cancelled from outside): start
            # one, or the queued futures would never end.
            self.wake_worker()
        self.release_idle_workers()
        self._maybe_closed()

    def terminate(self) -> None:
        """End all work now (a shutdown's timeout ran out): stop every call with
        ExecutorShutdownError, cancel every queued future, and cancel the workers, whose
        running items end cancelled as their coroutines unwind, and the feeders."""
        self._cancel_queued(
            ExecutorShutdownError("the executor was shut down: its shutdown timeout ran out")
        )
        for task in [*self._workers, *self._feeders]:
            task.cancel()

    def _cancel_queued(self, error: BaseException) -> None:
        for call in list(self._calls):
            call.abort(error)  # each call takes its entries out of the ring
        lane = self._submits
        for future in list(lane):  # (a cancel's listeners must not see the lane change)
            if future._state == PENDING:
                future.cancel()
        lane.clear()  # all dead now
        self._ring.clear()
        self._dead = 0

    async def drained(self) -> None:
        """Return once a closing pool has no worker, no call and no feeder left."""
        if self._state == CLOSING:
            loop = self.bind()
            if self._drained is None:
                self._drained = loop.create_future()
            await asyncio.shield(self._drained)

    def _maybe_closed(self) -> None:
        """Mark a closing pool closed once no worker, no call and no feeder is left."""
        if self._state == CLOSING and not (self._workers or self._calls or self._feeders):
            self._state = CLOSED
            drained = self._drained
            if drained is not None and not drained.done():
                drained.set_result(None)
