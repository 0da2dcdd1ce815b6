"""max_per_second: no more than that many task starts (retries included) in any one second.

Each task records ``time.monotonic()`` as its very first statement; for every start t the
test counts the starts in [t, t + 1.0) and compares with the limit. The limiter spaces
starts 1/rate + 0.1 ms apart, so no tolerance is needed on top.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from antflow import AsyncExecutor
from antflow._ratelimit import RateLimiter

GENEROUS = 30.0


def busiest_second(starts: Sequence[float]) -> int:
    """The largest number of starts found in any window [t, t + 1.0) that begins at a start."""
    ordered = sorted(starts)
    best = 0
    j = 0
    for i, t in enumerate(ordered):
        while j < len(ordered) and ordered[j] < t + 1.0:
            j += 1
        best = max(best, j - i)
    return best


def test_busiest_second_counts_a_half_open_window() -> None:
    assert busiest_second([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert busiest_second([0.0, 1.0, 2.0]) == 1
    assert busiest_second([]) == 0


# -- construction -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5])
def test_a_max_per_second_that_is_not_positive_is_refused_at_construction(value: float) -> None:
    with pytest.raises(ValueError, match="max_per_second"):
        AsyncExecutor(max_per_second=value)


@pytest.mark.parametrize("value", ["10", True])
def test_a_max_per_second_that_is_not_a_number_is_refused_at_construction(
    value: object,
) -> None:
    with pytest.raises(TypeError, match="max_per_second"):
        AsyncExecutor(max_per_second=value)  # type: ignore[arg-type]


# -- the limit --------------------------------------------------------------------------


async def test_no_second_holds_more_starts_than_max_per_second_retries_included() -> None:
    rate = 20
    starts: list[float] = []
    failed_once: set[int] = set()

    async def task(i: int) -> int:
        starts.append(time.monotonic())
        await asyncio.sleep(0)
        if i % 3 == 0 and i not in failed_once:  # 12 of the 35 items fail once
            failed_once.add(i)
            raise ConnectionError("transient")
        return i

    async with AsyncExecutor(max_workers=10, max_per_second=rate) as executor:
        futures = [executor.submit(task, i, retries=1, retry_delay=0) for i in range(35)]
        results = [await f.result(timeout=GENEROUS) for f in futures]
        assert results == list(range(35))
        assert executor.stats().retried == 12
    assert len(starts) == 47
    assert busiest_second(starts) <= rate


async def test_map_items_keep_to_max_per_second() -> None:
    rate = 10
    starts: list[float] = []

    async def task(i: int) -> int:
        starts.append(time.monotonic())
        return i

    async with AsyncExecutor(max_workers=4, max_per_second=rate) as executor:
        results = await asyncio.wait_for(executor.map(task, range(15)), GENEROUS)
        assert results == list(range(15))
    assert busiest_second(starts) <= rate


async def test_submitted_and_mapped_tasks_share_one_limit() -> None:
    rate = 10
    starts: list[float] = []

    async def task(i: int) -> int:
        starts.append(time.monotonic())
        return i

    async with AsyncExecutor(max_workers=6, max_per_second=rate) as executor:
        futures = [executor.submit(task, i) for i in range(8)]
        mapped = await asyncio.wait_for(executor.map(task, range(8)), GENEROUS)
        assert mapped == list(range(8))
        assert [await f for f in futures] == list(range(8))
    assert len(starts) == 16
    assert busiest_second(starts) <= rate


async def test_the_first_start_is_not_held_back() -> None:
    # The limit spaces starts out; a fresh executor does not wait an interval first.
    rate = 0.5  # one start every two seconds
    starts: list[float] = []

    async def task() -> None:
        starts.append(time.monotonic())

    async with AsyncExecutor(max_workers=1, max_per_second=rate) as executor:
        began = time.monotonic()
        await executor.submit(task)
    assert starts[0] - began < 1.0


async def test_a_task_cancelled_while_waiting_for_its_turn_never_calls_its_function() -> None:
    calls: list[int] = []

    async def task(i: int) -> int:
        calls.append(i)
        return i

    async with AsyncExecutor(max_workers=3, max_per_second=2) as executor:
        first = executor.submit(task, 0)
        await first
        waiting = executor.submit(task, 1)  # must wait about 1/2 s for its turn
        last = executor.submit(task, 2)
        await asyncio.sleep(0.01)
        assert calls == [0]
        assert waiting.cancel()
        assert await last.result(timeout=GENEROUS) == 2
    assert calls == [0, 2]


async def test_a_waiter_cancelled_as_the_turn_passes_over_it_ends_cancelled() -> None:
    # Three waiting starts: the first holds the turn (sleeping out the gap), the second and
    # third wait for it. In one iteration the first and then the second are cancelled: the
    # first, unwinding, passes the turn over the second (cancelled already) to the third,
    # before the second runs. The second must end cancelled, not with a ValueError.
    limiter = RateLimiter(rate=2)
    await limiter.acquire()  # the first start of all is not held back
    holder = asyncio.create_task(limiter.acquire())  # waits out about 1/2 s
    second = asyncio.create_task(limiter.acquire())
    third = asyncio.create_task(limiter.acquire())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not (holder.done() or second.done() or third.done())
    holder.cancel()
    second.cancel()
    for task in (holder, second):
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.wait_for(third, GENEROUS)  # it got the turn


async def test_a_limit_below_one_per_second_holds_the_next_start_past_one_second() -> None:
    rate = 0.5  # one start every two seconds
    starts: list[float] = []

    async def task() -> None:
        starts.append(time.monotonic())

    async with AsyncExecutor(max_workers=2, max_per_second=rate) as executor:
        first = executor.submit(task)
        second = executor.submit(task)
        await first
        await asyncio.sleep(1.2)
        assert len(starts) == 1
        second.cancel()
