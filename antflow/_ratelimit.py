"""A start-rate limit: at most ``rate`` task starts in any one-second window."""

from __future__ import annotations

import asyncio
import time
from collections import deque

__all__ = ["RateLimiter"]

# Added to every gap so that clock jitter between the moment a start is recorded here
# and the moment the task's first line runs can never squeeze ``rate + 1`` starts into
# one second as seen from inside the tasks.
_MARGIN = 1e-4


class RateLimiter:
    """Spaces task starts evenly, ``1 / rate`` seconds apart, first come first served.

    Starts are counted when they happen, not when they were planned: a start that was
    delayed (a busy loop) pushes the next one back, so no burst ever follows a stall.
    Hence any one-second window holds at most ``rate`` starts. A waiter that is
    cancelled gives its turn to the next one.
    """

    __slots__ = ("_busy", "_interval", "_last", "_waiters")

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate + _MARGIN
        self._last = -float("inf")
        self._busy = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        return f"<RateLimiter every {self._interval:.6f}s, waiters[{len(self._waiters)}]>"

    async def acquire(self) -> None:
        """Wait for this caller's turn and record its start."""
        if self._busy or self._waiters:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._pass_turn()  # the turn was ours: hand it on
                elif waiter in self._waiters:  # (_pass_turn drops cancelled waiters itself)
                    self._waiters.remove(waiter)
                raise
        self._busy = True
        try:
            # A timer may fire a little early (uvloop's have millisecond resolution).
            while (delay := self._last + self._interval - time.monotonic()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(delay)
            self._last = time.monotonic()
        finally:
            self._pass_turn()

    def _pass_turn(self) -> None:
        self._busy = False
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self._busy = True
                waiter.set_result(None)
                return
