"""A snapshot of an executor's counters."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExecutorStats"]


@dataclass(frozen=True, slots=True)
class ExecutorStats:
    """Counters of one executor at one moment, from :meth:`AsyncExecutor.stats`.

    Every accepted item is in exactly one of ``pending`` (queued, not started),
    ``running``, ``completed`` (returned a value), ``failed`` (raised) or ``cancelled``,
    so ``completed + failed + cancelled + running + pending == submitted`` always holds.
    ``retried`` counts the extra attempts made by items with ``retries``. Counters are
    updated before a future is resolved: whoever sees a future done sees it counted.
    """

    submitted: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int
    retried: int
