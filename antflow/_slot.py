"""How a worker settles an item's outcome when it is not a plain success.

The pool's worker inlines the success path of both kinds of entry; the rarer outcomes
(an exception, a cancellation, a cancel that the item swallowed) come here. They update
the pool's counters, which the functions see through :class:`Counters`, before they
resolve anything, so whoever sees an item ended sees it counted.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ._compat import cancelling, uncancel
from ._future import CANCELLED, RUNNING, AsyncFuture

__all__ = ["Counters", "Slot", "future_cancelled", "future_failed", "report_late_exception"]


class Counters(Protocol):
    _completed: int
    _failed: int
    _cancelled: int


class Slot:
    """What one worker runs for a map/map_iter call: the call can cancel it through this.

    ``call`` is the call whose item runs here now (None between items) and ``pos`` the
    item's place in the call's results; ``_runner`` is the Task to cancel (the worker, or
    an item Task with a context); ``cancelled`` is the Task that the call cancelled, until
    the worker has seen it.
    """

    __slots__ = ("_runner", "call", "cancelled", "pos")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._runner: asyncio.Task[Any] = task
        self.call: Any = None
        self.pos = 0
        self.cancelled: asyncio.Task[Any] | None = None

    def cancel(self, counts: Counters) -> None:
        """Cancel the item running here (its call is ending); it counts as cancelled.

        An item in a Task of its own may have ended already, its worker not yet told (it
        hears in a later loop iteration): then nothing is cancelled, and the item counts
        as what it did. Its outcome goes nowhere, as the call has ended.
        """
        call, runner = self.call, self._runner
        self.call = None
        if runner.done() and not runner.cancelled():
            if runner.exception() is not None:
                call._lost += 1
                counts._failed += 1
            elif not call._pull:
                counts._completed += 1  # (as the worker counts a pushed call's success)
            elif call._places:
                call._done += 1  # a pulled map_iter counts its successes
            # (a pulled map derives its successes from its reads: MapCall.counts)
            return
        call._lost += 1
        self.cancelled = runner
        counts._cancelled += 1
        runner.cancel()

    def settle_cancelled(self, task: asyncio.Task[Any], counts: Counters) -> bool:
        """A CancelledError came out of this slot's item; return False if the worker
        must stop (it was cancelled from outside as well)."""
        cancelled = self.cancelled
        if cancelled is not None:
            self.cancelled = None
            # Only a cancel of the worker itself needs undoing (not one of an item Task).
            return cancelled is not task or uncancel(task) == 0
        outside = cancelling(task) > 0
        if self.call is not None:
            self.ended_cancelled(counts)
        return not outside

    def ended_cancelled(self, counts: Counters) -> None:
        call = self.call
        self.call = None
        call._lost += 1
        counts._cancelled += 1
        call._item_failed(self.pos, asyncio.CancelledError())

    def failed(self, task: asyncio.Task[Any], exc: BaseException, counts: Counters) -> None:
        """An exception came out of this slot's item (``task`` is the worker)."""
        call = self.call
        if call is not None:
            self.call = None
            call._lost += 1
            counts._failed += 1
            call._item_failed(self.pos, exc)
        elif self.cancelled is not None:
            # Its call ended and cancelled it (counted as cancelled then), and it answered
            # with another exception: take back the cancel, or the worker would keep it
            # and take a later item's CancelledError or timeout for it.
            cancelled = self.cancelled
            self.cancelled = None
            if cancelled is task:
                uncancel(task)
            report_late_exception(task, exc, "its map call had ended and cancelled it")


def future_cancelled(item: AsyncFuture[Any], task: asyncio.Task[Any]) -> bool:
    """A CancelledError came out of a future's item; return False if the worker must stop."""
    if item._state == CANCELLED and item._runner is task:
        # Our own cancel, sent by item.cancel(): consume it. A cancel from outside
        # (loop teardown) may have come too; then the worker stops as asked.
        return uncancel(task) == 0
    # The item raised CancelledError itself, or the worker was cancelled from outside
    # while the item ran (3.10 cannot tell these apart: the worker stops on both).
    outside = cancelling(task) > 0
    if item._state == RUNNING:
        item._runner = None
        item.cancel()
    return not outside


def future_failed(
    item: AsyncFuture[Any], task: asyncio.Task[Any], exc: BaseException, counts: Counters
) -> None:
    """An exception came out of a future's item (``task`` is the worker)."""
    if item._state == RUNNING:
        counts._failed += 1
        item._set_exception(exc)
    elif item._state == CANCELLED:
        # Cancelled while it ran (its future is cancelled already), and it answered with
        # another exception: take back the cancel sent to the worker (see Slot.failed).
        if item._runner is task:
            uncancel(task)
        report_late_exception(task, exc, "its future had been cancelled")


def report_late_exception(task: asyncio.Task[Any], exc: BaseException, why: str) -> None:
    """An item that was cancelled answered with another exception, which no future or call
    can take any more: the loop's exception handler gets it, as asyncio does with an
    exception that nobody retrieved (decision 22).

    Only an exception raised while the item unwound from the CancelledError (in an
    ``except`` or ``finally`` around the await that got it) is reported. An item in a
    Task of its own may also have failed on its own just before the cancel came, its
    worker not yet told: that failure is dropped, as it is when it comes after its call
    has failed (the call's caller has its first error already) and as ``gather`` does.
    """
    if not isinstance(exc.__context__, asyncio.CancelledError):
        return
    # Not under the key "task": from 3.12 a handler runs in that task's context, which
    # is the one running now, and entering it again raises RuntimeError.
    task.get_loop().call_exception_handler(
        {
            "message": f"an antflow item raised {type(exc).__name__} after {why}",
            "exception": exc,
            "worker": task.get_name(),
        }
    )
