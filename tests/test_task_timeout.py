"""task_timeout: how long one attempt may run before its coroutine is cancelled.

On expiry the attempt's coroutine receives CancelledError, its slot is freed as soon as it
has unwound, and the attempt fails with asyncio.TimeoutError, which is retried like any
other exception when retries remain. The option is set per executor and per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from antflow import AsyncExecutor, AsyncFuture, WaitStrategy

SHORT = 0.05  # a task_timeout that expires quickly
GENEROUS = 10.0  # how long a test waits for something that should happen far sooner


async def ended(executor: AsyncExecutor, future: AsyncFuture[Any]) -> AsyncFuture[Any]:
    """Wait (generously) until ``future`` is done, without asking for its outcome."""
    await executor.wait([future], timeout=GENEROUS, return_when=WaitStrategy.FIRST_COMPLETED)
    assert future.done(), f"{future!r} did not end within {GENEROUS}s"
    return future


async def sleep_forever() -> None:
    await asyncio.sleep(3600)


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5])
def test_a_task_timeout_that_is_not_positive_is_refused_at_construction(value: float) -> None:
    with pytest.raises(ValueError, match="task_timeout"):
        AsyncExecutor(task_timeout=value)


@pytest.mark.parametrize("value", ["1", True])
def test_a_task_timeout_that_is_not_a_number_is_refused_at_construction(value: object) -> None:
    with pytest.raises(TypeError, match="task_timeout"):
        AsyncExecutor(task_timeout=value)  # type: ignore[arg-type]


async def test_submit_refuses_a_task_timeout_that_is_not_positive() -> None:
    async with AsyncExecutor(max_workers=1) as executor:
        with pytest.raises(ValueError, match="task_timeout"):
            executor.submit(sleep_forever, task_timeout=0)
        assert executor.stats().submitted == 0


async def test_map_refuses_a_task_timeout_that_is_not_positive() -> None:
    async with AsyncExecutor(max_workers=1) as executor:
        with pytest.raises(ValueError, match="task_timeout"):
            await executor.map(asyncio.sleep, [0], task_timeout=-1)


async def test_map_iter_refuses_a_task_timeout_that_is_not_positive_at_the_call() -> None:
    async with AsyncExecutor(max_workers=1) as executor:
        with pytest.raises(ValueError, match="task_timeout"):
            executor.map_iter(asyncio.sleep, [0], task_timeout=0)


# -- expiry -----------------------------------------------------------------------------


async def test_a_task_that_runs_past_task_timeout_fails_with_timeout_error() -> None:
    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        future = await ended(executor, executor.submit(sleep_forever))
        assert isinstance(future.exception(), asyncio.TimeoutError)
        with pytest.raises(asyncio.TimeoutError):
            await future


async def test_a_timed_out_coroutine_has_unwound_from_cancelled_error_when_its_future_ends() -> (
    None
):
    unwound: list[str] = []

    async def task() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            unwound.append("cancelled")
            raise

    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        future = executor.submit(task)
        seen_in_callback: list[list[str]] = []
        future.add_done_callback(lambda _: seen_in_callback.append(list(unwound)))
        await ended(executor, future)
        assert unwound == ["cancelled"]
        await asyncio.sleep(0)
        assert seen_in_callback == [["cancelled"]]


async def test_a_timed_out_task_frees_its_slot_for_the_next_one() -> None:
    async def quick() -> str:
        return "next"

    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        first = executor.submit(sleep_forever)
        second = executor.submit(quick)
        assert await second.result(timeout=GENEROUS) == "next"
        assert isinstance(first.exception(), asyncio.TimeoutError)


async def test_a_timed_out_attempt_is_cancelled_and_retried_when_retries_remain() -> None:
    attempts: list[str] = []

    async def hangs_the_first_time() -> str:
        attempts.append("started")
        if len(attempts) == 1:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                attempts.append("cancelled")
                raise
        return "ok"

    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        future = executor.submit(hangs_the_first_time, retries=1, retry_delay=0)
        assert await future.result(timeout=GENEROUS) == "ok"
        assert attempts == ["started", "cancelled", "started"]
        assert executor.stats().retried == 1


async def test_a_task_whose_every_attempt_times_out_fails_with_timeout_error() -> None:
    attempts = 0

    async def always_hangs() -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(3600)

    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        future = await ended(executor, executor.submit(always_hangs, retries=2, retry_delay=0))
        assert isinstance(future.exception(), asyncio.TimeoutError)
        assert attempts == 3


async def test_the_timeout_counts_from_the_start_of_each_attempt() -> None:
    # Each attempt runs for 0.6 timeouts: three of them together exceed one timeout,
    # but no single attempt does, so the last one succeeds.
    attempts = 0

    async def fails_twice() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.6 * 0.2)
        if attempts < 3:
            raise ConnectionError("transient")
        return "third time"

    async with AsyncExecutor(max_workers=1, task_timeout=0.2) as executor:
        future = executor.submit(fails_twice, retries=2, retry_delay=0)
        assert await future.result(timeout=GENEROUS) == "third time"


async def test_a_task_that_ends_in_time_keeps_its_value() -> None:
    async def quick(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async with AsyncExecutor(max_workers=2, task_timeout=1.0) as executor:
        assert await executor.submit(quick, 21) == 42


async def test_a_finished_tasks_timer_never_cancels_the_next_task_on_its_worker() -> None:
    async def quick() -> str:
        return "quick"

    async def outlives_the_first_timer() -> str:
        await asyncio.sleep(3 * SHORT)
        return "survived"

    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        assert await executor.submit(quick) == "quick"
        future = executor.submit(outlives_the_first_timer, task_timeout=GENEROUS)
        assert await future.result(timeout=GENEROUS) == "survived"


async def test_an_attempt_is_cancelled_about_task_timeout_after_it_starts() -> None:
    # Generous bounds: not long before task_timeout, and not at some much later point.
    async with AsyncExecutor(max_workers=1, task_timeout=0.1) as executor:
        start = time.monotonic()
        future = await ended(executor, executor.submit(sleep_forever))
        elapsed = time.monotonic() - start
        assert isinstance(future.exception(), asyncio.TimeoutError)
        assert 0.05 <= elapsed < 5.0


# -- per call -----------------------------------------------------------------------------


async def test_a_per_call_task_timeout_overrides_the_executors() -> None:
    async def slower_than_the_default() -> str:
        await asyncio.sleep(3 * SHORT)
        return "done"

    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        future = executor.submit(slower_than_the_default, task_timeout=GENEROUS)
        assert await future.result(timeout=GENEROUS) == "done"


async def test_a_per_call_task_timeout_applies_without_an_executor_default() -> None:
    async with AsyncExecutor(max_workers=1) as executor:
        future = await ended(executor, executor.submit(sleep_forever, task_timeout=SHORT))
        assert isinstance(future.exception(), asyncio.TimeoutError)


async def test_map_fails_with_timeout_error_when_an_item_runs_past_task_timeout() -> None:
    async def sleep_for(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(executor.map(sleep_for, [0, 3600], task_timeout=SHORT), GENEROUS)
        assert executor.stats().failed == 1


async def test_map_iter_yields_the_results_before_the_item_that_times_out() -> None:
    async def sleep_for(delay: float) -> float:
        # The quick items do not suspend, so that they cannot run past SHORT themselves
        # when a loaded machine stalls the loop (seen once in CI, with a sleep(0) here).
        if delay:
            await asyncio.sleep(delay)
        return delay

    async with AsyncExecutor(max_workers=3) as executor:
        results: list[float] = []
        with pytest.raises(asyncio.TimeoutError):
            async for result in executor.map_iter(sleep_for, [0, 0, 3600], task_timeout=SHORT):
                results.append(result)
        assert results == [0, 0]


async def test_map_retries_items_that_time_out() -> None:
    tried: set[int] = set()

    async def hangs_the_first_time(i: int) -> int:
        if i not in tried:
            tried.add(i)
            await asyncio.sleep(3600)
        return i

    async with AsyncExecutor(max_workers=4) as executor:
        results = await executor.map(
            hangs_the_first_time, range(6), task_timeout=SHORT, retries=1, retry_delay=0
        )
        assert results == list(range(6))
        assert executor.stats().retried == 6


# -- interplay with cancellation and the task's own timeouts ---------------------------------


async def test_cancelling_a_running_task_with_a_timeout_cancels_it_and_keeps_the_worker() -> None:
    started = asyncio.Event()

    async def task() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def after() -> str:
        return "after"

    async with AsyncExecutor(max_workers=1, task_timeout=GENEROUS) as executor:
        future = executor.submit(task)
        following = executor.submit(after)
        await started.wait()
        assert future.cancel()
        assert await following.result(timeout=GENEROUS) == "after"
        assert future.cancelled()


async def test_a_tasks_own_shorter_timeout_is_the_tasks_to_handle() -> None:
    async def handles_its_own_timeout() -> str:
        try:
            await asyncio.wait_for(asyncio.sleep(3600), 0.01)
        except asyncio.TimeoutError:
            return "handled"
        return "not reached"

    async with AsyncExecutor(max_workers=1, task_timeout=GENEROUS) as executor:
        future = executor.submit(handles_its_own_timeout)
        assert await future.result(timeout=GENEROUS) == "handled"


async def test_task_timeout_expires_inside_a_tasks_own_longer_timeout() -> None:
    async def has_a_longer_timeout() -> None:
        await asyncio.wait_for(asyncio.sleep(3600), 3600)

    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        future = await ended(executor, executor.submit(has_a_longer_timeout))
        assert isinstance(future.exception(), asyncio.TimeoutError)


async def test_task_timeout_cancels_a_task_that_runs_in_its_own_context() -> None:
    async with AsyncExecutor(max_workers=1, task_timeout=SHORT, propagate_context=True) as ex:
        future = await ended(ex, ex.submit(sleep_forever))
        assert isinstance(future.exception(), asyncio.TimeoutError)


async def test_a_task_that_swallows_its_timeouts_cancellation_leaves_its_worker_healthy() -> None:
    # A misbehaving task catches the timeout's CancelledError and returns anyway. The worker
    # must come out of it as it went in: a later task that cancels itself must end
    # cancelled without taking the only worker down with it.
    async def swallows_cancellation() -> str:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return "swallowed"

    async def cancels_itself() -> None:
        raise asyncio.CancelledError

    async def last() -> str:
        return "last"

    async with AsyncExecutor(max_workers=1, task_timeout=SHORT) as executor:
        await ended(executor, executor.submit(swallows_cancellation))
        self_cancelled = executor.submit(cancels_itself)
        following = executor.submit(last)
        assert await following.result(timeout=GENEROUS) == "last"
        assert self_cancelled.cancelled()
