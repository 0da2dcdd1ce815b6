"""submit_threadsafe: the one door from other threads into a bound executor.

It returns a concurrent.futures.Future that receives the task's result, exception or
cancellation; cancelling that future cancels the task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from antflow import AsyncExecutor, ExecutorShutdownError

GENEROUS = 10.0


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@asynccontextmanager
async def bound_executor(**options: Any) -> AsyncIterator[AsyncExecutor]:
    """An executor already bound to the running loop (so other threads may use it)."""
    async with AsyncExecutor(**options) as executor:
        await executor.submit(double, 0)
        yield executor


async def in_thread(fn: Any, *args: Any) -> Any:
    """Run a blocking function in a fresh thread and await its return value."""
    return await asyncio.to_thread(fn, *args)


async def test_a_result_reaches_the_future_returned_to_the_thread() -> None:
    async with bound_executor(max_workers=2) as executor:

        def from_a_thread() -> int:
            return executor.submit_threadsafe(double, 21).result(GENEROUS)

        assert await in_thread(from_a_thread) == 42


async def test_an_exception_reaches_the_future_returned_to_the_thread() -> None:
    async def fails() -> None:
        raise KeyError("lost")

    async with bound_executor(max_workers=1) as executor:

        def from_a_thread() -> BaseException | None:
            return executor.submit_threadsafe(fails).exception(GENEROUS)

        error = await in_thread(from_a_thread)
        assert isinstance(error, KeyError)
        assert error.args == ("lost",)


async def test_a_cancelled_task_cancels_the_future_returned_to_the_thread() -> None:
    async def cancels_itself() -> None:
        raise asyncio.CancelledError

    async with bound_executor(max_workers=1) as executor:

        def from_a_thread() -> concurrent.futures.Future[None]:
            future = executor.submit_threadsafe(cancels_itself)
            with pytest.raises(concurrent.futures.CancelledError):
                future.result(GENEROUS)
            return future

        assert (await in_thread(from_a_thread)).cancelled()


async def test_a_cancelled_tasks_future_is_seen_done_by_concurrent_futures_wait() -> None:
    # concurrent.futures.wait and as_completed see a cancelled future only once it has
    # been notified (set_running_or_notify_cancel), as executors do for their futures.
    async def cancels_itself() -> None:
        raise asyncio.CancelledError

    async with bound_executor(max_workers=1) as executor:

        def from_a_thread() -> set[concurrent.futures.Future[None]]:
            future = executor.submit_threadsafe(cancels_itself)
            done, _ = concurrent.futures.wait([future], timeout=GENEROUS)
            return done

        done = await in_thread(from_a_thread)
        assert len(done) == 1
        assert done.pop().cancelled()


async def test_shutdown_with_cancel_futures_cancels_a_queued_threadsafe_task() -> None:
    gate = asyncio.Event()
    started = asyncio.Event()

    async def holds() -> None:
        started.set()
        await gate.wait()

    calls: list[str] = []

    async def never_runs() -> None:
        calls.append("ran")

    async with bound_executor(max_workers=1) as executor:
        executor.submit(holds)
        await started.wait()
        future = executor.submit_threadsafe(never_runs)
        while executor.stats().pending == 0:  # the thread-safe hop takes a loop turn
            await asyncio.sleep(0)
        await executor.shutdown(wait=False, cancel_futures=True)
        gate.set()
        done, _ = await in_thread(concurrent.futures.wait, [future], GENEROUS)
        assert future in done
        assert future.cancelled()
    assert calls == []


async def test_cancelling_the_returned_future_cancels_the_running_task() -> None:
    started = threading.Event()
    unwound = asyncio.Event()

    async def runs_long() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            unwound.set()
            raise

    async with bound_executor(max_workers=1) as executor:

        def from_a_thread() -> bool:
            future = executor.submit_threadsafe(runs_long)
            assert started.wait(GENEROUS)
            return future.cancel()

        assert await in_thread(from_a_thread)
        await asyncio.wait_for(unwound.wait(), GENEROUS)
        assert executor.stats().cancelled == 1


async def test_cancelling_the_returned_future_before_the_task_starts_means_it_never_runs() -> None:
    gate = asyncio.Event()
    started = asyncio.Event()

    async def holds() -> None:
        started.set()
        await gate.wait()

    calls: list[str] = []

    async def never_runs() -> None:
        calls.append("ran")

    async with bound_executor(max_workers=1) as executor:
        executor.submit(holds)
        await started.wait()

        def from_a_thread() -> bool:
            return executor.submit_threadsafe(never_runs).cancel()

        assert await in_thread(from_a_thread)
        await asyncio.sleep(0.01)
        gate.set()
    assert calls == []


async def test_keyword_arguments_and_options_reach_the_task() -> None:
    attempts = 0

    async def flaky(a: int, *, b: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("transient")
        return a + b

    async with bound_executor(max_workers=1) as executor:

        def from_a_thread() -> int:
            future = executor.submit_threadsafe(flaky, 1, b=2, retries=1, retry_delay=0)
            return future.result(GENEROUS)

        assert await in_thread(from_a_thread) == 3
        assert attempts == 2


async def test_many_threads_can_submit_at_once() -> None:
    async with bound_executor(max_workers=4) as executor:

        def from_a_thread(base: int) -> list[int]:
            futures = [executor.submit_threadsafe(double, base + i) for i in range(25)]
            return [f.result(GENEROUS) for f in futures]

        results = await asyncio.gather(*(in_thread(from_a_thread, 100 * t) for t in range(8)))
        assert results == [[2 * (100 * t + i) for i in range(25)] for t in range(8)]
        assert executor.stats().completed == 1 + 8 * 25


async def test_submit_threadsafe_works_from_the_loops_own_thread() -> None:
    async with bound_executor(max_workers=1) as executor:
        future = executor.submit_threadsafe(double, 5)
        assert await asyncio.wait_for(asyncio.wrap_future(future), GENEROUS) == 10


async def test_a_full_queue_reaches_the_returned_future_as_queue_full() -> None:
    gate = asyncio.Event()
    started = asyncio.Event()

    async def holds() -> None:
        started.set()
        await gate.wait()

    async with bound_executor(max_workers=1, max_pending=1) as executor:
        executor.submit(holds)
        await started.wait()
        executor.submit(double, 1)

        def from_a_thread() -> BaseException | None:
            return executor.submit_threadsafe(double, 2).exception(GENEROUS)

        try:
            assert isinstance(await in_thread(from_a_thread), asyncio.QueueFull)
        finally:
            gate.set()


async def test_after_shutdown_the_returned_future_fails_with_executor_shutdown_error() -> None:
    async with bound_executor(max_workers=1) as executor:
        pass

    def from_a_thread() -> BaseException | None:
        return executor.submit_threadsafe(double, 1).exception(GENEROUS)

    assert isinstance(await in_thread(from_a_thread), ExecutorShutdownError)


def test_an_executor_that_was_never_used_refuses_with_runtime_error() -> None:
    executor = AsyncExecutor(max_workers=1)
    with pytest.raises(RuntimeError, match="bound"):
        executor.submit_threadsafe(double, 1)


async def test_a_non_callable_is_refused_in_the_calling_thread() -> None:
    async with bound_executor(max_workers=1) as executor:

        def from_a_thread() -> None:
            with pytest.raises(TypeError):
                executor.submit_threadsafe(42)  # type: ignore[arg-type]

        await in_thread(from_a_thread)
        assert executor.stats().submitted == 1


async def test_threadsafe_tasks_are_counted_in_stats() -> None:
    async with bound_executor(max_workers=2) as executor:

        def from_a_thread() -> list[int]:
            futures = [executor.submit_threadsafe(double, i) for i in range(10)]
            return [f.result(GENEROUS) for f in futures]

        await in_thread(from_a_thread)
        stats = executor.stats()
        assert (stats.submitted, stats.completed) == (11, 11)
