"""stats(): a frozen snapshot of the executor's counters.

Every accepted item is in exactly one of pending, running, completed, failed, cancelled,
so ``completed + failed + cancelled + running + pending == submitted`` at every moment,
and the counters are updated before a future resolves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest
from _helpers import read_async

from antflow import AsyncExecutor, AsyncFuture, ExecutorStats

GENEROUS = 10.0


def reconciles(stats: ExecutorStats) -> bool:
    return (
        stats.completed + stats.failed + stats.cancelled + stats.running + stats.pending
        == stats.submitted
    )


async def echo(x: Any) -> Any:
    await asyncio.sleep(0)
    return x


async def fail(message: str) -> None:
    await asyncio.sleep(0)
    raise RuntimeError(message)


async def test_a_new_executors_counters_are_all_zero() -> None:
    assert AsyncExecutor(max_workers=2).stats() == ExecutorStats(0, 0, 0, 0, 0, 0, 0)


def test_stats_has_the_documented_fields_in_order() -> None:
    names = [f.name for f in dataclasses.fields(ExecutorStats)]
    assert names == [
        "submitted",
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "retried",
    ]


async def test_every_counter_is_an_int() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        await executor.map(echo, range(3))
        stats = executor.stats()
    assert all(type(getattr(stats, f.name)) is int for f in dataclasses.fields(stats))


async def test_a_snapshot_cannot_be_changed() -> None:
    stats = AsyncExecutor(max_workers=1).stats()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.submitted = 5  # type: ignore[misc]


async def test_a_snapshot_does_not_follow_later_work() -> None:
    async with AsyncExecutor(max_workers=1) as executor:
        before = executor.stats()
        await executor.submit(echo, 1)
        assert before == ExecutorStats(0, 0, 0, 0, 0, 0, 0)
        assert executor.stats().completed == 1


async def test_a_submitted_item_is_pending_until_a_worker_starts_it() -> None:
    seen_inside: list[ExecutorStats] = []

    async def task() -> None:
        seen_inside.append(executor.stats())

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(task)
        assert executor.stats() == ExecutorStats(1, 1, 0, 0, 0, 0, 0)
        await future
    assert seen_inside == [ExecutorStats(1, 0, 1, 0, 0, 0, 0)]


async def test_a_completed_future_is_counted_when_its_done_callback_runs() -> None:
    seen: list[ExecutorStats] = []
    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(echo, 1)
        future.add_done_callback(lambda _: seen.append(executor.stats()))
        await future
        await asyncio.sleep(0)
    assert seen == [ExecutorStats(1, 0, 0, 1, 0, 0, 0)]


async def test_a_failed_future_is_counted_when_its_done_callback_runs() -> None:
    seen: list[ExecutorStats] = []
    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(fail, "boom")
        future.add_done_callback(lambda _: seen.append(executor.stats()))
        with pytest.raises(RuntimeError):
            await future
        await asyncio.sleep(0)
    assert seen == [ExecutorStats(1, 0, 0, 0, 1, 0, 0)]


async def test_each_future_is_counted_as_soon_as_await_returns() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        futures = [executor.submit(echo, i) for i in range(9)]
        counted_at_return: list[int] = []
        async for future in executor.as_completed(futures):
            await future
            counted_at_return.append(executor.stats().completed)
        # The n-th future to come back is counted by then (others may be counted too).
        assert all(c >= n for n, c in enumerate(counted_at_return, start=1))


async def test_cancelling_a_queued_future_counts_it_at_once() -> None:
    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(echo, 1)
        assert future.cancel()
        assert executor.stats() == ExecutorStats(1, 0, 0, 0, 0, 1, 0)


async def test_cancelling_a_running_future_counts_it_at_once() -> None:
    started = asyncio.Event()

    async def runs_long() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(runs_long)
        await started.wait()
        assert future.cancel()
        assert executor.stats() == ExecutorStats(1, 0, 0, 0, 0, 1, 0)


async def test_a_task_that_cancels_itself_is_counted_cancelled() -> None:
    async def cancels_itself() -> None:
        raise asyncio.CancelledError

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(cancels_itself)
        with pytest.raises(asyncio.CancelledError):
            await future
        assert executor.stats() == ExecutorStats(1, 0, 0, 0, 0, 1, 0)


async def test_retries_are_counted_and_the_item_once() -> None:
    attempts = 0

    async def fails_twice() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("transient")
        return "ok"

    async with AsyncExecutor(max_workers=1) as executor:
        assert await executor.submit(fails_twice, retries=2, retry_delay=0) == "ok"
        assert executor.stats() == ExecutorStats(1, 0, 0, 1, 0, 0, 2)


async def test_an_item_that_fails_every_attempt_counts_once_as_failed() -> None:
    async with AsyncExecutor(max_workers=1) as executor:
        with pytest.raises(RuntimeError):
            await executor.submit(fail, "always", retries=2, retry_delay=0)
        assert executor.stats() == ExecutorStats(1, 0, 0, 0, 1, 0, 2)


async def test_an_item_retrying_during_its_backoff_is_still_running() -> None:
    failed = asyncio.Event()

    async def fails_once() -> str:
        if not failed.is_set():
            failed.set()
            raise ConnectionError("transient")
        return "ok"

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(fails_once, retries=1, retry_delay=0.05)
        await failed.wait()
        await asyncio.sleep(0)
        assert executor.stats() == ExecutorStats(1, 0, 1, 0, 0, 0, 1)
        assert await future == "ok"


async def test_a_task_that_times_out_counts_as_failed() -> None:
    async with AsyncExecutor(max_workers=1, task_timeout=0.05) as executor:
        future = executor.submit(asyncio.sleep, 3600)
        with pytest.raises(asyncio.TimeoutError):
            await future
        assert executor.stats() == ExecutorStats(1, 0, 0, 0, 1, 0, 0)


async def test_map_items_are_counted_like_submitted_ones() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        await executor.map(echo, range(10))
        assert executor.stats() == ExecutorStats(10, 0, 0, 10, 0, 0, 0)


async def test_a_map_that_fails_fast_leaves_nothing_running_or_pending() -> None:
    async def fails_on_two(i: int) -> int:
        await asyncio.sleep(0 if i == 2 else 3600)
        if i == 2:
            raise ValueError("two")
        return i

    async with AsyncExecutor(max_workers=3) as executor:
        with pytest.raises(ValueError):
            await executor.map(fails_on_two, range(8), window=6)
        stats = executor.stats()
        assert (stats.running, stats.pending, stats.failed) == (0, 0, 1)
        assert stats.cancelled == stats.submitted - 1
        assert reconciles(stats)


async def test_a_refused_submit_is_not_counted() -> None:
    async with AsyncExecutor(max_workers=1, max_pending=1) as executor:
        executor.submit(echo, 1)
        with pytest.raises(asyncio.QueueFull):
            executor.submit(echo, 2)
        assert executor.stats().submitted == 1


async def test_the_counters_reconcile_at_every_moment_of_a_mixed_workload() -> None:
    snapshots: list[tuple[str, ExecutorStats]] = []
    executor = AsyncExecutor(max_workers=4, task_timeout=1.0)

    def snap(where: str) -> None:
        snapshots.append((where, executor.stats()))

    failed_once: set[int] = set()

    async def work(i: int) -> int:
        snap("start")
        await asyncio.sleep(0.001 * (i % 3))
        snap("middle")
        kind = i % 6
        if kind == 1:
            raise ValueError(i)
        if kind == 2 and i not in failed_once:
            failed_once.add(i)
            raise ConnectionError(i)
        if kind == 3:
            raise asyncio.CancelledError
        if kind == 4:
            await asyncio.sleep(3600)  # cancelled below, or times out
        return i

    async def monitor() -> None:
        while True:
            snap("monitor")
            await asyncio.sleep(0)

    watcher = asyncio.create_task(monitor())
    try:
        async with executor:
            futures: list[AsyncFuture[int]] = []
            for i in range(36):
                future = executor.submit(work, i, retries=1, retry_delay=0)
                future.add_done_callback(lambda _: snap("callback"))
                futures.append(future)
                snap("submitted")
            futures[4].cancel()  # queued
            await asyncio.sleep(0.002)
            for future in futures[10::6]:
                future.cancel()  # running (or queued) kind-4 items
            snap("cancelled")
            done, _ = await executor.wait(futures, timeout=GENEROUS)
            assert len(done) == 36
            await asyncio.sleep(0)
            snap("end")
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is None:
                    assert await future in range(36)
            with pytest.raises(ValueError):
                await executor.map(work, [7, 13, 1], window=3)
            snap("after map")
    finally:
        watcher.cancel()

    bad = [(where, stats) for where, stats in snapshots if not reconciles(stats)]
    assert not bad, bad[:5]
    assert {where for where, _ in snapshots} >= {"start", "middle", "callback", "monitor", "end"}
    final = executor.stats()
    assert final.pending == final.running == 0
    assert final.submitted == 39
    assert final.retried >= 6


@pytest.mark.parametrize("method", ["map", "map_iter"])
async def test_the_counters_of_a_pulled_call_reconcile_at_every_moment(method: str) -> None:
    # A synchronous input is read by the workers, which count nothing per item: the
    # executor derives the call's counts when asked. They must add up all the same.
    snapshots: list[ExecutorStats] = []
    executor = AsyncExecutor(max_workers=3)

    async def work(i: int) -> int:
        snapshots.append(executor.stats())
        await asyncio.sleep(0.001 * (i % 3))
        snapshots.append(executor.stats())
        if method == "map_iter" and i == 30:
            raise ValueError(i)  # the consumer gets the results before it, then this
        return i

    async def monitor() -> None:
        while True:
            snapshots.append(executor.stats())
            await asyncio.sleep(0)

    watcher = asyncio.create_task(monitor())
    outcomes: list[Any] = []
    try:
        async with executor:
            if method == "map":
                outcomes = await executor.map(work, range(40))
            else:
                iterator = executor.map_iter(work, iter(range(40)), window=5)
                while True:
                    try:
                        outcomes.append(await iterator.__anext__())
                    except StopAsyncIteration:
                        break
                    except ValueError as exc:
                        outcomes.append(exc.args)
                        break
            snapshots.append(executor.stats())
    finally:
        watcher.cancel()
    assert all(reconciles(s) for s in snapshots), [s for s in snapshots if not reconciles(s)]
    assert all(0 <= s.running <= 3 and s.pending == 0 for s in snapshots)
    for before, after in itertools.pairwise(snapshots):
        for field in ("submitted", "completed", "failed", "cancelled"):
            assert getattr(before, field) <= getattr(after, field), (field, before, after)
    end = snapshots[-1]
    if method == "map":
        assert outcomes == list(range(40))
        assert end == ExecutorStats(40, 0, 0, 40, 0, 0, 0)
    else:
        # The failure ends the call: the items after it that had started are cancelled.
        assert outcomes == [*range(30), (30,)]
        assert (end.running, end.pending, end.failed, end.retried) == (0, 0, 1, 0)
        assert 31 <= end.submitted <= 30 + 5 and end.completed >= 30


@pytest.mark.parametrize("late", ["returns", "raises"])
@pytest.mark.parametrize("input_kind", ["list", "async"])
@pytest.mark.parametrize("method", ["map", "map_iter"])
async def test_an_item_that_ended_as_its_call_ended_counts_as_what_it_did(
    method: str, input_kind: str, late: str
) -> None:
    # In Tasks of their own, item 1 may end in the loop iteration before its call ends
    # (map: item 0 failed; map_iter: the consumer left after item 0), its worker not yet
    # told. Whether it ended first or was cancelled, the counters say what it did.
    # (A list is pulled by the workers, an async input pushed: both kinds of call.) Its
    # failure, if it raised, met the call's end rather than answering a cancel: the loop's
    # exception handler does not get it (decision 22).
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    for extra_steps in (0, 1, 2):  # the race needs 0 for map, 1 for map_iter
        did = {"returned": 0, "raised": 0}

        async def item(x: int, extra_steps: int = extra_steps, did: dict[str, int] = did) -> int:
            for _ in range(1 + (extra_steps if x == 1 else 0)):
                await asyncio.sleep(0)
            if x == 0 and method == "map":
                did["raised"] += 1
                raise ValueError("the first item fails")
            if x == 1 and late == "raises":
                did["raised"] += 1
                raise KeyError("a failure of its own")
            did["returned"] += 1
            return x

        inputs: Any = [0, 1] if input_kind == "list" else read_async([0, 1])
        async with AsyncExecutor(max_workers=2, propagate_context=True) as executor:
            if method == "map":
                with pytest.raises(ValueError):
                    await asyncio.wait_for(executor.map(item, inputs), GENEROUS)
            else:
                async for _ in executor.map_iter(item, inputs):
                    break
        stats = executor.stats()
        assert (stats.completed, stats.failed) == (did["returned"], did["raised"]), extra_steps
        assert stats.cancelled == 2 - sum(did.values()), extra_steps
        assert reconciles(stats)
    loop.set_exception_handler(None)
    assert reported == []
