"""A graceful drain: ``shutdown(wait=True, timeout=...)`` waits at most ``timeout`` for the
accepted work, then cancels what is left and returns once every worker has exited."""

from __future__ import annotations

import asyncio

import pytest

from antflow import AsyncExecutor, ExecutorShutdownError


async def forever() -> None:
    await asyncio.Event().wait()


async def quick(x: int) -> int:
    await asyncio.sleep(0.001)
    return x


async def test_a_drain_that_finishes_in_time_cancels_nothing() -> None:
    executor = AsyncExecutor(max_workers=2)
    futures = [executor.submit(quick, i) for i in range(10)]
    await executor.shutdown(timeout=5)
    assert [await f for f in futures] == list(range(10))
    assert executor.stats().cancelled == 0
    assert executor._pool._workers == set()


async def test_a_drain_past_its_timeout_cancels_running_and_queued_futures() -> None:
    executor = AsyncExecutor(max_workers=1)
    running = executor.submit(forever)
    queued = executor.submit(quick, 1)
    await asyncio.sleep(0)
    assert running.running()
    await asyncio.wait_for(executor.shutdown(timeout=0.05), 5)
    assert running.cancelled()
    assert queued.cancelled()
    assert executor._pool._workers == set()
    stats = executor.stats()
    assert stats.cancelled == 2 and stats.running == 0 and stats.pending == 0


async def test_a_map_caller_gets_executor_shutdown_error_when_the_drain_times_out() -> None:
    executor = AsyncExecutor(max_workers=2)
    started = asyncio.Event()

    async def slow(x: int) -> int:
        started.set()
        await forever()
        return x

    caller = asyncio.create_task(executor.map(slow, range(10)))
    await started.wait()
    await asyncio.wait_for(executor.shutdown(timeout=0.05), 5)
    with pytest.raises(ExecutorShutdownError):
        await asyncio.wait_for(caller, 5)
    assert executor._pool._calls == set()
    assert executor._pool._workers == set()


async def test_a_held_map_iter_no_longer_blocks_a_drain_with_a_timeout() -> None:
    executor = AsyncExecutor(max_workers=2)
    iterator = executor.map_iter(quick, range(100))
    assert await iterator.__anext__() == 0  # started, then held and never finished
    await asyncio.wait_for(executor.shutdown(timeout=0.05), 5)
    with pytest.raises(ExecutorShutdownError):
        await iterator.__anext__()
    assert executor._pool._calls == set()


async def test_a_drain_timeout_needs_wait_and_a_non_negative_number() -> None:
    executor = AsyncExecutor(max_workers=1)
    with pytest.raises(ValueError, match="wait=True"):
        await executor.shutdown(wait=False, timeout=1)
    with pytest.raises(ValueError, match="negative"):
        await executor.shutdown(timeout=-1)
    with pytest.raises(TypeError):
        await executor.shutdown(timeout="1")  # type: ignore[arg-type]
    await executor.shutdown(timeout=1)  # never used: returns at once


async def test_shutdown_returns_after_a_cancelled_item_has_unwound_its_clean_up() -> None:
    executor = AsyncExecutor(max_workers=1)
    finished = asyncio.Event()

    async def stubborn() -> str:
        try:
            await forever()
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # some clean-up after the cancel
            finished.set()
            raise
        return "never"

    future = executor.submit(stubborn)
    await asyncio.sleep(0)
    await asyncio.wait_for(executor.shutdown(timeout=0.02), 5)
    assert finished.is_set()  # shutdown returned after the item had unwound
    assert future.cancelled()
    assert executor._pool._workers == set()


async def test_a_drain_whose_deadline_cancels_a_worker_that_never_ran_still_returns() -> None:
    # With timeout=0 the deadline runs in the next loop iteration, right after a woken
    # worker has started another for the second item: that Task is cancelled before its
    # first step, so it never runs the worker's own clean-up. The pool lets it go anyway.
    executor = AsyncExecutor(max_workers=2)
    await executor.submit(asyncio.sleep, 0)  # one worker, parked
    first = executor.submit(forever)
    second = executor.submit(forever)
    # A watchdog rather than wait_for, which on 3.10 / 3.11 would start the shutdown an
    # iteration later, past the moment under test.
    me = asyncio.current_task()
    assert me is not None
    watchdog = asyncio.get_running_loop().call_later(10, me.cancel)
    try:
        await executor.shutdown(wait=True, timeout=0)
    finally:
        watchdog.cancel()
    assert first.cancelled() and second.cancelled()
    assert executor._pool._workers == set()
    assert executor._pool._waking == 0
