"""Fault and stress test: 20,000 tasks of every kind of ending through one executor.

The tasks mix plain successes (with and without a suspension), raised errors, tasks that
raise ``CancelledError`` themselves, hangs cut by ``task_timeout``, flaky tasks that succeed
on a retry, tasks that exhaust their retries, tasks behind a shared semaphore, and futures
that the caller cancels while they are queued or while they run; ``map`` calls run beside
them. Each task's expected outcome is known in advance, so the test checks that every
future ends exactly once with exactly that outcome, that the counters reconcile to the
expected numbers, that no more than ``max_workers`` items (and worker tasks) are ever
active, and that no task created by the executor outlives ``shutdown()``.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from typing import Any

import pytest

from antflow import AsyncExecutor, AsyncFuture

N_TASKS = 20_000
MAX_WORKERS = 16
SEMAPHORE_LIMIT = 3
MAP_CALLS = 4
MAP_ITEMS = 500
HANG_TIMEOUT = 0.01
# A task that should be cancelled or timed out gives up after this long, so that a
# regression fails the test instead of hanging it.
SAFETY_TIMEOUT = 20.0
SEED = 20_240_601

# kind: (weight, how the future must end)
KINDS: dict[str, tuple[int, str]] = {
    "ok": (25, "completed"),
    "ok_suspending": (15, "completed"),
    "error": (12, "failed"),
    "self_cancel": (6, "cancelled"),
    "self_cancel_suspended": (4, "cancelled"),
    "hang": (2, "failed"),
    "flaky": (10, "completed"),
    "exhausted": (4, "failed"),
    "limited": (6, "completed"),
    "limited_flaky": (4, "completed"),
    "cancel_queued": (6, "cancelled"),
    "cancel_running": (6, "cancelled"),
}


class Flaky(Exception):
    """Raised by the attempts that a flaky task fails before it succeeds."""


class Stress:
    """The tasks, and what they saw while they ran."""

    def __init__(self) -> None:
        self.calls: collections.Counter[int] = collections.Counter()
        self.got_cancelled: set[int] = set()
        self.active = 0
        self.peak = 0
        self.in_semaphore = 0
        self.peak_in_semaphore = 0
        self.futures: dict[int, AsyncFuture[Any]] = {}

    def _enter(self, i: int) -> None:
        self.calls[i] += 1
        self.active += 1
        self.peak = max(self.peak, self.active)

    async def ok(self, i: int) -> int:
        self._enter(i)
        self.active -= 1
        return i

    async def ok_suspending(self, i: int) -> int:
        self._enter(i)
        try:
            await asyncio.sleep(0)
            return i
        finally:
            self.active -= 1

    async def error(self, i: int) -> None:
        self._enter(i)
        self.active -= 1
        raise ValueError(i)

    async def self_cancel(self, i: int) -> None:
        self._enter(i)
        self.active -= 1
        raise asyncio.CancelledError()

    async def self_cancel_suspended(self, i: int) -> None:
        self._enter(i)
        try:
            await asyncio.sleep(0)
            raise asyncio.CancelledError()
        finally:
            self.active -= 1

    async def hang(self, i: int) -> None:
        self._enter(i)
        try:
            await asyncio.sleep(SAFETY_TIMEOUT)
        finally:
            self.active -= 1

    async def flaky(self, i: int) -> int:
        """Fail ``i % 3`` times, then return ``i``."""
        self._enter(i)
        try:
            await asyncio.sleep(0)
            if self.calls[i] <= i % 3:
                raise Flaky(i)
            return i
        finally:
            self.active -= 1

    async def exhausted(self, i: int) -> None:
        self._enter(i)
        self.active -= 1
        raise OSError(i, f"attempt {self.calls[i]}")

    async def limited(self, i: int) -> int:
        """Run behind the shared semaphore."""
        self.in_semaphore += 1
        self.peak_in_semaphore = max(self.peak_in_semaphore, self.in_semaphore)
        try:
            return await self.ok_suspending(i)
        finally:
            self.in_semaphore -= 1

    async def limited_flaky(self, i: int) -> int:
        self.in_semaphore += 1
        self.peak_in_semaphore = max(self.peak_in_semaphore, self.in_semaphore)
        try:
            return await self.flaky(i)
        finally:
            self.in_semaphore -= 1

    async def cancel_queued(self, i: int) -> None:
        self._enter(i)  # must never happen: the caller cancels the future before it starts
        self.active -= 1

    async def cancel_running(self, i: int) -> None:
        """Ask the caller's side to cancel this future, then wait to be cancelled."""
        self._enter(i)
        asyncio.get_running_loop().call_soon(self.futures[i].cancel)
        try:
            await asyncio.sleep(SAFETY_TIMEOUT)
        except asyncio.CancelledError:
            self.got_cancelled.add(i)
            raise
        finally:
            self.active -= 1

    async def mapped(self, x: int) -> int:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(0)
            return -x
        finally:
            self.active -= 1


def plan() -> list[str]:
    rng = random.Random(SEED)
    names = list(KINDS)
    weights = [KINDS[name][0] for name in names]
    return rng.choices(names, weights, k=N_TASKS)


def expected_calls(kind: str, i: int) -> int:
    return {
        "cancel_queued": 0,
        "flaky": i % 3 + 1,
        "limited_flaky": i % 3 + 1,
        "exhausted": 2,
    }.get(kind, 1)


def check_outcome(kind: str, i: int, future: AsyncFuture[Any]) -> str | None:
    """Return what is wrong with how ``future`` ended, or None."""
    if not future.done():
        return "not done"
    if KINDS[kind][1] == "cancelled":
        return None if future.cancelled() else f"not cancelled: {future!r}"
    if future.cancelled():
        return "cancelled"
    exc = future.exception()
    if kind == "error":
        ok = isinstance(exc, ValueError) and exc.args == (i,)
    elif kind == "hang":
        ok = isinstance(exc, asyncio.TimeoutError)
    elif kind == "exhausted":
        ok = isinstance(exc, OSError) and exc.args == (i, "attempt 2")
    else:
        ok = exc is None and future._result == i
    return None if ok else f"{future!r} exception={exc!r}"


async def run_stress(options: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    tasks_before = asyncio.all_tasks(loop)
    stress = Stress()
    kinds = plan()
    semaphore = asyncio.Semaphore(SEMAPHORE_LIMIT)
    prefix = f"stress-{id(stress)}"
    ended: collections.Counter[int] = collections.Counter()
    violations: list[str] = []
    executor = AsyncExecutor(max_workers=MAX_WORKERS, name=prefix, **options)

    def antflow_tasks() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks(loop) if t.get_name().startswith(f"{prefix}-")]

    def worker_tasks() -> list[asyncio.Task[Any]]:
        # With propagate_context each running item has a Task of its own as well,
        # named after its worker with an "-item" suffix: those are not workers.
        return [t for t in antflow_tasks() if not t.get_name().endswith("-item")]

    def on_done(i: int) -> Callable[[AsyncFuture[Any]], None]:
        def callback(future: AsyncFuture[Any]) -> None:
            ended[i] += 1
            if not future.done():
                violations.append(f"callback of task {i} ran before its future was done")

        return callback

    monitoring = True

    async def monitor() -> None:
        """Check the invariants that must hold at every moment, as often as possible."""
        while monitoring:
            s = executor.stats()
            if s.completed + s.failed + s.cancelled + s.running + s.pending != s.submitted:
                violations.append(f"counters do not reconcile: {s}")
            if s.running > MAX_WORKERS:
                violations.append(f"{s.running} items running")
            if len(worker_tasks()) > MAX_WORKERS:
                violations.append(f"{len(worker_tasks())} worker tasks alive")
            await asyncio.sleep(0.0005)

    watcher = asyncio.create_task(monitor())

    async def mapper(k: int) -> list[int]:
        return await executor.map(stress.mapped, range(k * MAP_ITEMS, (k + 1) * MAP_ITEMS))

    mappers = [asyncio.create_task(mapper(k)) for k in range(MAP_CALLS)]

    for start in range(0, N_TASKS, 500):
        for i in range(start, min(start + 500, N_TASKS)):
            kind = kinds[i]
            fn = getattr(stress, kind)
            if kind == "hang":
                future = executor.submit(fn, i, task_timeout=HANG_TIMEOUT)
            elif kind == "flaky":
                future = executor.submit(fn, i, retries=2, retry_delay=0)
            elif kind == "exhausted":
                future = executor.submit(fn, i, retries=1, retry_delay=0)
            elif kind == "limited":
                future = executor.submit(fn, i, semaphore=semaphore)
            elif kind == "limited_flaky":
                future = executor.submit(fn, i, semaphore=semaphore, retries=2, retry_delay=0)
            else:
                future = executor.submit(fn, i)
            stress.futures[i] = future
            future.add_done_callback(on_done(i))
            if kind == "cancel_queued":
                assert future.cancel()
        await asyncio.sleep(0)

    map_results = await asyncio.gather(*mappers)
    await executor.shutdown(wait=True)
    await asyncio.sleep(0)  # the done-callbacks of the last futures run
    monitoring = False
    await watcher

    assert violations == []
    assert map_results == [
        [-x for x in range(k * MAP_ITEMS, (k + 1) * MAP_ITEMS)] for k in range(MAP_CALLS)
    ]
    wrong = {
        i: problem
        for i, kind in enumerate(kinds)
        if (problem := check_outcome(kind, i, stress.futures[i])) is not None
    }
    assert wrong == {}
    assert [i for i in range(N_TASKS) if ended[i] != 1] == []
    wrong_calls = {
        i: (kind, stress.calls[i])
        for i, kind in enumerate(kinds)
        if stress.calls[i] != expected_calls(kind, i)
    }
    assert wrong_calls == {}
    assert stress.got_cancelled == {i for i, k in enumerate(kinds) if k == "cancel_running"}

    count = collections.Counter(KINDS[kind][1] for kind in kinds)
    retried = sum(
        expected_calls(kind, i) - 1 for i, kind in enumerate(kinds) if kind != "cancel_queued"
    )
    stats = executor.stats()
    assert stats.submitted == N_TASKS + MAP_CALLS * MAP_ITEMS
    assert (stats.pending, stats.running) == (0, 0)
    assert stats.completed == count["completed"] + MAP_CALLS * MAP_ITEMS
    assert stats.failed == count["failed"]
    assert stats.cancelled == count["cancelled"]
    assert stats.retried == retried

    assert stress.peak <= MAX_WORKERS
    assert stress.peak_in_semaphore <= SEMAPHORE_LIMIT
    assert stress.active == 0
    assert antflow_tasks() == []
    assert asyncio.all_tasks(loop) - tasks_before == set()

    # Once more, later: nothing ends twice.
    await asyncio.sleep(0.01)
    assert set(ended.values()) == {1}


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="inline"),
        pytest.param({"propagate_context": True}, id="task-per-item"),
        pytest.param({"task_timeout": SAFETY_TIMEOUT}, id="executor-task-timeout"),
    ],
)
async def test_twenty_thousand_mixed_tasks_each_end_once_as_expected_and_reconcile(
    options: dict[str, Any],
) -> None:
    await run_stress(options)
