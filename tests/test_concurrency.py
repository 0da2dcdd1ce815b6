"""Concurrency: the worker bound, shared semaphores, cancellation inside tasks, retries."""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
import time
from typing import Any, TypeVar

import pytest
import tenacity
from _helpers import LOOPS, run_in_fresh_loop, wait_until

from antflow import AsyncExecutor

_T = TypeVar("_T")


class Gauge:
    """An async function that counts how many of its calls are active at once."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.active = 0
        self.peak = 0

    async def __call__(self, x: Any = None) -> Any:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        return x


# -- the worker bound ----------------------------------------------------------------------


async def test_no_more_than_max_workers_tasks_run_at_once_and_that_many_do() -> None:
    gauge = Gauge()
    async with AsyncExecutor(max_workers=3) as executor:
        futures = [executor.submit(gauge, i) for i in range(12)]
        assert [await f for f in futures] == list(range(12))
    assert gauge.peak == 3


async def test_map_runs_no_more_than_max_workers_items_at_once_and_that_many_do() -> None:
    gauge = Gauge(delay=0.002)
    async with AsyncExecutor(max_workers=4) as executor:
        assert await executor.map(gauge, range(40)) == list(range(40))
    assert gauge.peak == 4


async def test_submit_and_map_together_share_the_max_workers_bound() -> None:
    gauge = Gauge(delay=0.005)
    async with AsyncExecutor(max_workers=3) as executor:
        futures = [executor.submit(gauge, i) for i in range(5)]
        await executor.map(gauge, range(10))
        await asyncio.gather(*(f.result() for f in futures))
    assert gauge.peak == 3


async def test_a_shared_semaphore_bounds_concurrency_below_max_workers() -> None:
    gauge = Gauge()
    limit = asyncio.Semaphore(2)
    async with AsyncExecutor(max_workers=10) as executor:
        futures = [executor.submit(gauge, i, semaphore=limit) for i in range(10)]
        assert [await f for f in futures] == list(range(10))
    assert gauge.peak == 2


async def test_a_semaphore_shared_by_two_executors_bounds_them_together() -> None:
    gauge = Gauge()
    limit = asyncio.Semaphore(3)
    async with AsyncExecutor(max_workers=5) as first, AsyncExecutor(max_workers=5) as second:
        futures = [first.submit(gauge, i, semaphore=limit) for i in range(8)]
        futures += [second.submit(gauge, i, semaphore=limit) for i in range(8)]
        await asyncio.gather(*(f.result() for f in futures))
    assert gauge.peak == 3


async def test_tasks_without_the_semaphore_are_not_held_back_by_it() -> None:
    limit = asyncio.Semaphore(1)
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    async def free() -> str:
        return "free"

    async with AsyncExecutor(max_workers=3) as executor:
        holder = executor.submit(hold, semaphore=limit)
        waiting = executor.submit(hold, semaphore=limit)  # blocked on the semaphore
        assert await asyncio.wait_for(executor.submit(free).result(), 1) == "free"
        assert not waiting.done()
        release.set()
        await asyncio.gather(holder.result(), waiting.result())


# -- cancellation inside tasks -------------------------------------------------------------


async def test_a_task_that_raises_cancelled_error_itself_ends_cancelled() -> None:
    async def gives_up() -> None:
        await asyncio.sleep(0)
        raise asyncio.CancelledError()

    async def ok(x: int) -> int:
        return x

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(gives_up)
        with pytest.raises(asyncio.CancelledError):
            await future.result()
        assert future.cancelled()
        assert await executor.submit(ok, 1) == 1  # the pool keeps working
        assert await executor.map(ok, range(3)) == [0, 1, 2]


async def test_cancelling_one_running_task_cancels_only_that_task() -> None:
    release = asyncio.Event()
    started: list[int] = []
    cancelled: list[int] = []

    async def job(x: int) -> int:
        started.append(x)
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    async with AsyncExecutor(max_workers=3) as executor:
        futures = [executor.submit(job, i) for i in range(3)]
        await wait_until(lambda: len(started) == 3)
        futures[1].cancel()
        await wait_until(lambda: cancelled == [1])
        await asyncio.sleep(0.01)
        assert not futures[0].done()
        assert not futures[2].done()
        release.set()
        assert await futures[0] == 0
        assert await futures[2] == 2
        assert cancelled == [1]


async def test_a_task_that_swallows_its_cancellation_leaves_the_worker_usable() -> None:
    started = asyncio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    async def nap() -> str:
        await asyncio.sleep(0.01)
        return "napped"

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(stubborn)
        await started.wait()
        future.cancel()
        assert future.cancelled()
        assert await asyncio.wait_for(executor.submit(nap).result(), 1) == "napped"
        assert await asyncio.wait_for(executor.map(lambda _: nap(), range(3)), 1) == ["napped"] * 3


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is new in 3.11")
async def test_asyncio_timeout_inside_a_task_works() -> None:
    async def bounded() -> str:
        try:
            async with asyncio.timeout(0.02):
                await asyncio.sleep(1)
        except TimeoutError:
            return "timed out"
        return "slept"

    async with AsyncExecutor(max_workers=1) as executor:
        assert await executor.submit(bounded) == "timed out"
        assert await executor.map(lambda _: bounded(), range(3)) == ["timed out"] * 3


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is new in 3.11")
async def test_asyncio_timeout_works_in_a_task_that_follows_a_cancelled_one() -> None:
    started = asyncio.Event()

    async def blocked() -> None:
        started.set()
        await asyncio.sleep(10)

    async def bounded() -> tuple[int, str]:
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()  # a cancel left over from the previous task would show
        try:
            async with asyncio.timeout(0.02):
                await asyncio.sleep(1)
        except TimeoutError:
            return cancelling, "timed out"
        return cancelling, "slept"

    async with AsyncExecutor(max_workers=1) as executor:
        running = executor.submit(blocked)
        await started.wait()
        following = executor.submit(bounded)  # runs on the same (only) worker
        running.cancel()
        assert await asyncio.wait_for(following.result(), 2) == (0, "timed out")


async def test_current_task_inside_a_task_is_a_live_task() -> None:
    seen: list[asyncio.Task[Any] | None] = []

    async def look(x: int) -> int:
        await asyncio.sleep(0)
        task = asyncio.current_task()
        seen.append(task)
        assert task is not None
        assert not task.done()
        assert task in asyncio.all_tasks()
        return x

    async with AsyncExecutor(max_workers=2) as executor:
        assert await executor.map(look, range(6)) == list(range(6))
        assert await executor.submit(look, 7) == 7
    assert len(seen) == 7
    assert all(task is not None for task in seen)


async def test_current_task_inside_a_task_is_not_the_callers_task() -> None:
    async def look() -> asyncio.Task[Any] | None:
        return asyncio.current_task()

    async with AsyncExecutor() as executor:
        inner = await executor.submit(look)
    assert inner is not None
    assert inner is not asyncio.current_task()


@pytest.mark.parametrize("error_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("loop_name", LOOPS)
def test_keyboard_interrupt_and_system_exit_in_a_task_are_not_swallowed(
    loop_name: str, error_type: type[BaseException]
) -> None:
    error = error_type()
    futures: list[Any] = []

    async def interrupt() -> None:
        await asyncio.sleep(0)
        raise error

    async def main() -> None:
        # The worker task ends with the error, which nobody retrieves: keep asyncio's
        # "Task exception was never retrieved" report of it out of the test's output.
        asyncio.get_running_loop().set_exception_handler(lambda _loop, _context: None)
        executor = AsyncExecutor(max_workers=1)
        futures.append(executor.submit(interrupt))
        await asyncio.sleep(0.2)  # were the error swallowed, main would return normally

    with pytest.raises(error_type) as caught:
        run_in_fresh_loop(LOOPS[loop_name], main())
    gc.collect()  # report the worker task now, to the handler above
    assert caught.value is error
    (future,) = futures
    assert future.done()
    assert future.exception() is error


# -- results that are not awaitable --------------------------------------------------------


async def test_a_function_returning_a_non_awaitable_fails_its_future_with_a_type_error() -> None:
    def not_async_at_all(x: int) -> int:
        return x

    async def ok() -> str:
        return "ok"

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(not_async_at_all, 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not_async_at_all"):
            await future
        assert await executor.submit(ok) == "ok"


async def test_map_of_a_function_returning_a_non_awaitable_raises_a_type_error() -> None:
    def plain(x: int) -> int:
        return x

    async with AsyncExecutor() as executor:
        with pytest.raises(TypeError, match="plain"):
            await executor.map(plain, [1, 2])  # type: ignore[arg-type]


async def test_a_callable_returning_an_awaitable_is_accepted() -> None:
    async def body(x: int) -> int:
        return x + 1

    def factory(x: int) -> Any:
        return body(x)

    async with AsyncExecutor() as executor:
        assert await executor.submit(factory, 1) == 2
        assert await executor.map(factory, [1, 2]) == [2, 3]


# -- retries -------------------------------------------------------------------------------


async def test_retries_three_means_four_attempts() -> None:
    attempts = 0

    async def always_fails() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError(f"attempt {attempts}")

    async with AsyncExecutor() as executor:
        future = executor.submit(always_fails, retries=3, retry_delay=0)
        with pytest.raises(ConnectionError, match="attempt 4"):
            await future
    assert attempts == 4


async def test_a_retried_task_returns_the_value_of_its_first_successful_attempt() -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("not yet")
        return f"ok after {attempts}"

    async with AsyncExecutor() as executor:
        assert await executor.submit(flaky, retries=5, retry_delay=0) == "ok after 3"
    assert attempts == 3


async def test_the_waits_between_retries_double_from_retry_delay() -> None:
    delay = 0.05
    tolerance = 0.005  # timers may fire up to a clock tick early
    times: list[float] = []

    async def always_fails() -> None:
        times.append(time.monotonic())
        raise ConnectionError("down")

    async with AsyncExecutor() as executor:
        with pytest.raises(ConnectionError):
            await executor.submit(always_fails, retries=3, retry_delay=delay)
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    for k, gap in enumerate(gaps):
        assert gap >= delay * 2**k - tolerance, (k, gaps)


async def test_retries_re_raise_the_original_exception_not_a_retry_error() -> None:
    errors: list[Exception] = []

    async def always_fails() -> None:
        errors.append(OSError(f"attempt {len(errors) + 1}"))
        raise errors[-1]

    async with AsyncExecutor() as executor:
        future = executor.submit(always_fails, retries=2, retry_delay=0)
        with pytest.raises(OSError) as caught:
            await future
    assert not isinstance(caught.value, tenacity.RetryError)
    assert caught.value is errors[-1]
    assert future.exception() is errors[-1]


async def test_a_task_without_retries_is_attempted_once() -> None:
    attempts = 0

    async def fails() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError

    async with AsyncExecutor() as executor:
        with pytest.raises(ConnectionError):
            await executor.submit(fails)
    assert attempts == 1


async def test_cancelling_a_task_waiting_between_retries_stops_the_retries() -> None:
    attempts = 0

    async def fails() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError

    async with AsyncExecutor() as executor:
        future = executor.submit(fails, retries=5, retry_delay=0.05)
        await wait_until(lambda: attempts == 1)
        future.cancel()
        await asyncio.sleep(0.1)
    assert future.cancelled()
    assert attempts == 1


@pytest.mark.parametrize(
    ("option", "value"), [("retries", -1), ("retry_delay", -0.1), ("retry_delay", -1)]
)
async def test_a_negative_retry_option_is_a_value_error_at_submit(option: str, value: Any) -> None:
    called = False

    async def fn() -> None:
        nonlocal called
        called = True

    async with AsyncExecutor() as executor:
        with pytest.raises(ValueError, match=option):
            executor.submit(fn, **{option: value})
        await asyncio.sleep(0.01)
    assert not called
