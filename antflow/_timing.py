"""Histograms of how long tasks wait and run, for executors made with ``timing=True``.

This is the bottom layer: it imports nothing from antflow, and knows nothing of executors
or of Prometheus. An executor records into a :class:`TaskTimings`; an exporter (such as
:class:`antflow.metrics.PrometheusCollector`) reads its snapshots.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import TypeAlias

__all__ = ["BUCKETS", "HistogramSnapshot", "TaskTimings"]

# Upper bounds in seconds, 100 µs to 10 s in Prometheus's 1-2.5-5 steps. A value lands in
# the first bucket whose bound is >= the value (Prometheus's ``le``); larger values land in
# the +Inf bucket, one past the end.
BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# (cumulative counts as (upper bound, count) pairs ending with (inf, count), sum, count)
HistogramSnapshot: TypeAlias = tuple[list[tuple[float, int]], float, int]


class TaskTimings:
    """Two histograms: the queue time (submit to start) and the run time (start to end).

    ``observe_queue`` and ``observe_run`` are on the executor's hot path, so each is one
    ``bisect`` into :data:`BUCKETS`, one list increment and one float addition; the counts
    are kept per bucket (not cumulative) and the total count is their sum, worked out only
    when a snapshot is taken. Observations happen on the event loop's thread; a snapshot
    may be taken from any thread (a metrics server's), and is then consistent to within
    the observations made while it was being taken.
    """

    __slots__ = ("_queue_counts", "_queue_sum", "_run_counts", "_run_sum")

    def __init__(self) -> None:
        self._queue_counts: list[int] = [0] * (len(BUCKETS) + 1)
        self._queue_sum = 0.0
        self._run_counts: list[int] = [0] * (len(BUCKETS) + 1)
        self._run_sum = 0.0

    def observe(self, queue_seconds: float, run_seconds: float) -> None:
        """Record one task that waited ``queue_seconds``, then ran ``run_seconds``.

        The executor's worker calls this once per task, when the task ends: one call
        for both histograms."""
        self._queue_counts[bisect_left(BUCKETS, queue_seconds)] += 1
        self._queue_sum += queue_seconds
        self._run_counts[bisect_left(BUCKETS, run_seconds)] += 1
        self._run_sum += run_seconds

    def observe_queue(self, seconds: float) -> None:
        """Record that one task waited ``seconds`` between its submit and its start."""
        self._queue_counts[bisect_left(BUCKETS, seconds)] += 1
        self._queue_sum += seconds

    def observe_run(self, seconds: float) -> None:
        """Record that one task ran for ``seconds``, from its start to its end."""
        self._run_counts[bisect_left(BUCKETS, seconds)] += 1
        self._run_sum += seconds

    def queue_snapshot(self) -> HistogramSnapshot:
        """The queue-time histogram: cumulative buckets (ending with +Inf), sum, count."""
        return _snapshot(self._queue_counts, self._queue_sum)

    def run_snapshot(self) -> HistogramSnapshot:
        """The run-time histogram: cumulative buckets (ending with +Inf), sum, count."""
        return _snapshot(self._run_counts, self._run_sum)

    def __repr__(self) -> str:
        queued = sum(self._queue_counts)
        ran = sum(self._run_counts)
        return (
            f"<TaskTimings queued={queued} queue_sum={self._queue_sum:.6f}s "
            f"ran={ran} run_sum={self._run_sum:.6f}s>"
        )


def _snapshot(counts: list[int], total: float) -> HistogramSnapshot:
    counts = counts[:]  # one copy, so the buckets agree with each other even mid-update
    buckets: list[tuple[float, int]] = []
    running = 0
    for bound, count in zip((*BUCKETS, math.inf), counts, strict=True):
        running += count
        buckets.append((bound, running))
    return buckets, total, running
