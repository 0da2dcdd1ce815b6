"""Room in the queue, for ``max_pending``: who waits for it, and who is refused at once."""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any

__all__ = ["Room"]

_TICKET = itemgetter(0)  # a line entry is (ticket, waiter): the line is sorted by ticket


class Room:
    """Backpressure: at most ``limit`` items may wait for a worker.

    ``submit`` is refused at once with :class:`asyncio.QueueFull` (``check``); an awaiting
    caller (``asubmit``, a map call feeding its window) waits on a raw future (``wait``),
    and each item a worker takes from the queue lets one waiter go on (``wake_one``). A
    wake-up stands for one free place, so it is never dropped: a waiter cancelled after its
    wake-up passes it on, and so does a map call that queues less than it was woken for
    (``BaseCall._fill``, ``BaseCall._feed``); a call that ends while it waits leaves
    without one (``release``).

    Waiters are served in the order they came. Each has a ticket, its number in that
    order, and the line is kept sorted by ticket: a waiter woken for a place that a
    ``submit`` took before it ran goes back to its place, behind the waiters that came
    before it and ahead of the rest, however many were overtaken together.
    """

    __slots__ = ("_tickets", "limit", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # (ticket, waiter)
        self._tickets = itertools.count()

    def check(self, pending: int) -> None:
        if pending >= self.limit:
            raise asyncio.QueueFull(
                f"{pending} items are already waiting (max_pending={self.limit}); "
                "use 'await executor.asubmit(...)' to wait for room"
            )

    async def wait(
        self,
        loop: asyncio.AbstractEventLoop,
        full: Callable[[], bool],
        holder: Any = None,
        ticket: int | None = None,
    ) -> int:
        """Wait until ``full()`` is false, waking once per item taken from the queue.

        A ``holder`` (a map call) keeps its place in the line in ``holder._room_waiter``
        while it waits, so that it can stop waiting when it ends (``release``). Returns the
        caller's ticket: a caller that was woken, let its place go on and must wait again
        passes it back (``ticket``) to wait at its old place (see ``BaseCall._feed``)."""
        if ticket is None:
            ticket = next(self._tickets)
        while full():
            waiter: asyncio.Future[None] = loop.create_future()
            entry = (ticket, waiter)
            # In ticket order: a newcomer goes to the back, one woken and overtaken back to
            # its place near the front.
            bisect.insort(self.waiters, entry, key=_TICKET)
            if holder is not None:
                holder._room_waiter = entry
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self.wake_one()  # a wake-up this waiter cannot use goes to the next one
                elif entry in self.waiters:  # (wake_one drops cancelled waiters itself)
                    self.waiters.remove(entry)
                raise
            finally:
                if holder is not None:
                    holder._room_waiter = None
        return ticket

    def release(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        """Let one waiter go without a place (its call has ended): it takes no wake-up."""
        if entry in self.waiters:
            self.waiters.remove(entry)
            if not entry[1].done():
                entry[1].set_result(None)

    def wake_one(self) -> None:
        """An item left the queue: let the first waiter in line go on."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()[1]
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        """The executor is shutting down: every waiter goes on, to see it closed."""
        for _, waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
