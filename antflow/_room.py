"""Room in the queue, for ``max_pending``: who waits for it, and who is refused at once."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Room"]


class Room:
    """Backpressure: at most ``limit`` items may wait for a worker.

    ``submit`` is refused at once with :class:`asyncio.QueueFull` (``check``); an awaiting
    caller (``asubmit``, a map call feeding its window) waits on a raw future (``wait``),
    and each item a worker takes from the queue lets one waiter go on (``wake_one``). A
    wake-up stands for one free place, so it is never dropped: a waiter cancelled after its
    wake-up passes it on, and so does a map call that queues less than it was woken for
    (``BaseCall._fill``, ``BaseCall._feed``); a call that ends while it waits leaves
    without one (``release``).
    """

    __slots__ = ("limit", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiters: deque[asyncio.Future[None]] = deque()

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
        first: bool = False,
    ) -> None:
        """Wait until ``full()`` is false, waking once per item taken from the queue.

        A ``holder`` (a map call) keeps the waiter in ``holder._room_waiter`` while it
        waits, so that it can stop waiting when it ends (``release``). ``first``: wait at
        the front of the line (a caller that was woken first already and let the place go
        on, see ``BaseCall._feed``)."""
        woken = first
        while full():
            waiter: asyncio.Future[None] = loop.create_future()
            if woken:  # woken first in line, but others took the room: still first
                self.waiters.appendleft(waiter)
            else:
                self.waiters.append(waiter)
            woken = True
            if holder is not None:
                holder._room_waiter = waiter
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self.wake_one()  # a wake-up this waiter cannot use goes to the next one
                elif waiter in self.waiters:  # (wake_one drops cancelled waiters itself)
                    self.waiters.remove(waiter)
                raise
            finally:
                if holder is not None:
                    holder._room_waiter = None

    def release(self, waiter: asyncio.Future[None]) -> None:
        """Let one waiter go without a place (its call has ended): it takes no wake-up."""
        if waiter in self.waiters:
            self.waiters.remove(waiter)
            if not waiter.done():
                waiter.set_result(None)

    def wake_one(self) -> None:
        """An item left the queue: let one waiter go on."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        """The executor is shutting down: every waiter goes on, to see it closed."""
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
