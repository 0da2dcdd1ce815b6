"""shutdown: what runs, what is cancelled, what is refused, and what is left behind."""

from __future__ import annotations

import asyncio
import gc
import itertools
import warnings
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from _helpers import LOOPS, run_in_fresh_loop, wait_until

from antflow import AntFlowError, AsyncExecutor, ExecutorShutdownError

_T = TypeVar("_T")

_names = itertools.count()


def unique_name() -> str:
    return f"shutdowntest{next(_names)}"


def worker_tasks(name: str) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(name)]


class Recorder:
    """An async function that sleeps ``delay`` seconds (or until released) and records calls."""

    def __init__(self, delay: float | None = 0.01) -> None:
        self.delay = delay
        self.release = asyncio.Event()
        self.started: list[Any] = []
        self.finished: list[Any] = []

    async def __call__(self, x: Any) -> Any:
        self.started.append(x)
        if self.delay is None:
            await self.release.wait()
        else:
            await asyncio.sleep(self.delay)
        self.finished.append(x)
        return x


# -- what runs -----------------------------------------------------------------------------


async def test_shutdown_waits_for_every_queued_task_to_run() -> None:
    recorder = Recorder()
    executor = AsyncExecutor(max_workers=1)
    futures = [executor.submit(recorder, i) for i in range(5)]
    await executor.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [await f for f in futures] == [0, 1, 2, 3, 4]
    assert recorder.finished == [0, 1, 2, 3, 4]


async def test_cancel_futures_cancels_the_queued_tasks_and_lets_running_ones_finish() -> None:
    recorder = Recorder(delay=0.05)
    executor = AsyncExecutor(max_workers=2)
    futures = [executor.submit(recorder, i) for i in range(6)]
    await wait_until(lambda: len(recorder.started) == 2)
    await executor.shutdown(wait=True, cancel_futures=True)
    assert [await f for f in futures[:2]] == [0, 1]
    assert all(f.cancelled() for f in futures[2:])
    assert recorder.started == [0, 1]  # the queued ones were never called


async def test_shutdown_without_wait_returns_at_once_and_queued_work_still_runs() -> None:
    recorder = Recorder(delay=0.02)
    executor = AsyncExecutor(max_workers=1)
    futures = [executor.submit(recorder, i) for i in range(3)]
    await executor.shutdown(wait=False)
    assert not any(f.done() for f in futures)
    assert [await f for f in futures] == [0, 1, 2]


async def test_shutdown_without_wait_with_cancel_futures_cancels_the_queued_tasks() -> None:
    recorder = Recorder(delay=0.02)
    executor = AsyncExecutor(max_workers=1)
    futures = [executor.submit(recorder, i) for i in range(3)]
    await wait_until(lambda: recorder.started == [0])
    await executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in futures[1:])
    assert await futures[0] == 0
    await executor.shutdown()
    assert recorder.started == [0]


async def test_a_second_shutdown_is_harmless() -> None:
    recorder = Recorder()
    executor = AsyncExecutor(max_workers=2)
    future = executor.submit(recorder, 1)
    await executor.shutdown()
    await executor.shutdown()
    await executor.shutdown(wait=False, cancel_futures=True)
    assert await future == 1


async def test_shutdown_of_an_executor_never_used_returns_at_once() -> None:
    executor = AsyncExecutor()
    await asyncio.wait_for(executor.shutdown(), 1)
    with pytest.raises(ExecutorShutdownError):
        executor.submit(asyncio.sleep, 0)


async def test_leaving_the_context_manager_waits_for_the_queued_tasks() -> None:
    recorder = Recorder(delay=0.02)
    async with AsyncExecutor(max_workers=2) as executor:
        futures = [executor.submit(recorder, i) for i in range(5)]
    assert all(f.done() for f in futures)
    assert recorder.finished == [0, 1, 2, 3, 4]


async def test_leaving_the_context_manager_with_an_exception_still_waits_and_re_raises() -> None:
    recorder = Recorder(delay=0.02)
    with pytest.raises(LookupError):
        async with AsyncExecutor(max_workers=2) as executor:
            futures = [executor.submit(recorder, i) for i in range(3)]
            raise LookupError("in the body")
    assert all(f.done() and not f.cancelled() for f in futures)


# -- what is refused -----------------------------------------------------------------------


async def test_submit_after_shutdown_raises_executor_shutdown_error() -> None:
    executor = AsyncExecutor()
    await executor.shutdown()
    with pytest.raises(ExecutorShutdownError) as caught:
        executor.submit(asyncio.sleep, 0)
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value, AntFlowError)


async def test_submit_during_a_waiting_shutdown_raises_executor_shutdown_error() -> None:
    recorder = Recorder(delay=None)
    executor = AsyncExecutor(max_workers=1)
    executor.submit(recorder, 0)
    shutting_down = asyncio.create_task(executor.shutdown(wait=True))
    await asyncio.sleep(0.01)
    assert not shutting_down.done()
    with pytest.raises(ExecutorShutdownError):
        executor.submit(recorder, 1)
    recorder.release.set()
    await shutting_down
    assert recorder.started == [0]


# -- what is left behind -------------------------------------------------------------------


async def test_no_worker_task_is_alive_after_shutdown() -> None:
    name = unique_name()
    recorder = Recorder()
    executor = AsyncExecutor(max_workers=3, name=name)
    await asyncio.gather(*(executor.submit(recorder, i).result() for i in range(6)))
    assert worker_tasks(name)  # workers are named after the executor
    await executor.shutdown()
    assert worker_tasks(name) == []


async def test_no_worker_task_is_alive_after_shutdown_with_cancel_futures() -> None:
    name = unique_name()
    recorder = Recorder()
    executor = AsyncExecutor(max_workers=2, name=name)
    for i in range(6):
        executor.submit(recorder, i)
    await wait_until(lambda: len(recorder.started) == 2)
    await executor.shutdown(cancel_futures=True)
    assert worker_tasks(name) == []


async def test_worker_tasks_end_soon_after_shutdown_without_wait() -> None:
    name = unique_name()
    recorder = Recorder()
    executor = AsyncExecutor(max_workers=2, name=name)
    futures = [executor.submit(recorder, i) for i in range(4)]
    await executor.shutdown(wait=False)
    await asyncio.gather(*(f.result() for f in futures))
    await wait_until(lambda: not worker_tasks(name))


@pytest.mark.parametrize("loop_name", LOOPS)
def test_an_executor_left_open_at_the_end_of_the_loop_gives_no_warning(loop_name: str) -> None:
    errors: list[dict[str, Any]] = []

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def main() -> list[int]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        executor = AsyncExecutor(max_workers=3)
        return await executor.map(double, range(10))  # no shutdown: workers are left parked

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_in_fresh_loop(LOOPS[loop_name], main()) == [2 * x for x in range(10)]
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert errors == []


@pytest.mark.parametrize("loop_name", LOOPS)
def test_an_executor_dropped_without_shutdown_gives_no_warning(loop_name: str) -> None:
    errors: list[dict[str, Any]] = []

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        executor = AsyncExecutor(max_workers=3)
        result = await executor.submit(double, 21)
        del executor  # dropped while its workers are parked
        gc.collect()
        await asyncio.sleep(0.01)
        return result

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_in_fresh_loop(LOOPS[loop_name], main()) == 42
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert [ctx.get("message") for ctx in errors] == []


# -- calls in progress ---------------------------------------------------------------------


async def test_a_map_in_progress_completes_before_shutdown_returns() -> None:
    recorder = Recorder(delay=0.002)
    executor = AsyncExecutor(max_workers=2)
    call = asyncio.create_task(executor.map(recorder, range(20), window=2))
    await wait_until(lambda: len(recorder.started) >= 1)
    await executor.shutdown(wait=True)
    assert call.done()
    assert call.result() == list(range(20))


async def test_a_map_iter_in_progress_keeps_yielding_after_shutdown() -> None:
    recorder = Recorder(delay=0.002)
    executor = AsyncExecutor(max_workers=2)
    iterator = executor.map_iter(recorder, range(10), window=2)
    results = [await anext(iterator)]
    shutting_down = asyncio.create_task(executor.shutdown(wait=True))
    await asyncio.sleep(0)
    results += [r async for r in iterator]
    await shutting_down
    assert results == list(range(10))


async def test_a_map_in_progress_raises_executor_shutdown_error_on_cancel_futures() -> None:
    recorder = Recorder(delay=0.02)
    executor = AsyncExecutor(max_workers=2)
    call = asyncio.create_task(executor.map(recorder, range(20), window=4))
    await wait_until(lambda: len(recorder.started) == 2)
    await executor.shutdown(wait=True, cancel_futures=True)
    with pytest.raises(ExecutorShutdownError):
        await call
    await asyncio.sleep(0.02)
    assert len(recorder.started) < 20  # the rest of the input was never started


async def test_a_map_iter_in_progress_raises_executor_shutdown_error_on_cancel_futures() -> None:
    recorder = Recorder(delay=0.01)
    executor = AsyncExecutor(max_workers=2)
    iterator = executor.map_iter(recorder, range(20), window=4)
    assert await anext(iterator) == 0
    await executor.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(ExecutorShutdownError):
        async for _ in iterator:
            pass
    await executor.shutdown()
    assert len(recorder.started) < 20


async def test_shutdown_runs_queued_work_even_after_its_workers_were_cancelled_from_outside() -> (
    None
):
    async def slow(x: int) -> int:
        await asyncio.sleep(0.02)
        return x

    executor = AsyncExecutor(max_workers=2, name="outside")
    futures = [executor.submit(slow, i) for i in range(6)]
    await asyncio.sleep(0.005)  # the first two are running
    for task in asyncio.all_tasks():
        if task.get_name().startswith("outside-worker-"):
            task.cancel()
    await asyncio.sleep(0)
    await asyncio.wait_for(executor.shutdown(wait=True), timeout=5)
    assert [f.cancelled() for f in futures[:2]] == [True, True]
    assert [await f for f in futures[2:]] == [2, 3, 4, 5]


# -- shutdown called from an item of the executor itself ------------------------------------

# concurrent.futures' pools refuse to join their own thread. An item that awaits
# shutdown(wait=True) would wait for itself forever: it gets RuntimeError instead, and the
# executor is left as it was.
SELF_SHUTDOWN = [
    pytest.param(False, id="in-the-worker"),
    pytest.param(True, id="in-its-own-task"),  # propagate_context: a Task per item
]


@pytest.mark.parametrize("own_task", SELF_SHUTDOWN)
async def test_an_item_that_waits_for_its_own_executors_shutdown_gets_runtime_error(
    own_task: bool,
) -> None:
    executor = AsyncExecutor(max_workers=2, propagate_context=own_task)

    async def shut(x: int) -> int:
        if x == 1:
            await executor.shutdown()
        return x

    async def drain_in_async_with() -> None:
        async with executor:
            pass

    future = executor.submit(shut, 1)
    with pytest.raises(RuntimeError, match="wait for itself"):
        await asyncio.wait_for(future.result(), 10)
    with pytest.raises(RuntimeError, match="wait for itself"):
        await asyncio.wait_for(executor.map(shut, range(3)), 10)
    with pytest.raises(RuntimeError, match="wait for itself"):
        await asyncio.wait_for(executor.submit(drain_in_async_with).result(), 10)
    # Nothing was closed: the executor takes work, and shuts down from outside.
    assert await executor.submit(shut, 5).result() == 5
    await asyncio.wait_for(executor.shutdown(), 10)
    with pytest.raises(ExecutorShutdownError):
        executor.submit(shut, 0)


@pytest.mark.parametrize("own_task", SELF_SHUTDOWN)
async def test_an_item_may_shut_its_executor_down_without_waiting(own_task: bool) -> None:
    executor = AsyncExecutor(max_workers=1, propagate_context=own_task)
    recorder = Recorder()

    async def stop() -> str:
        await executor.shutdown(wait=False)
        return "stopped"

    first = executor.submit(stop)
    queued = executor.submit(recorder, "queued")  # accepted before the shutdown: it runs
    assert await asyncio.wait_for(first.result(), 10) == "stopped"
    with pytest.raises(ExecutorShutdownError):
        executor.submit(recorder, "late")
    assert await asyncio.wait_for(queued.result(), 10) == "queued"
    await asyncio.wait_for(executor.shutdown(), 10)
    assert recorder.finished == ["queued"]


async def test_a_task_that_an_item_started_may_wait_for_the_shutdown() -> None:
    # Not an item itself: it waits for the pool, the item that started it included.
    executor = AsyncExecutor(max_workers=2, propagate_context=True)
    waiting: list[asyncio.Task[None]] = []

    async def start_waiter() -> str:
        waiting.append(asyncio.ensure_future(executor.shutdown()))
        return "started"

    assert await executor.submit(start_waiter).result() == "started"
    await asyncio.wait_for(waiting[0], 10)  # returned: no RuntimeError, no deadlock
    with pytest.raises(ExecutorShutdownError):
        executor.submit(start_waiter)


async def test_an_async_input_that_waits_for_its_executors_shutdown_gets_runtime_error() -> None:
    # An async input is read by a task of its call's own, which a closing executor waits
    # for: awaiting shutdown() there would wait for itself, as an item would.
    executor = AsyncExecutor(max_workers=2)

    async def shuts_down() -> AsyncIterator[int]:
        yield 1
        await executor.shutdown()
        yield 2

    async def echo(x: int) -> int:
        return x

    with pytest.raises(RuntimeError, match="wait for itself"):
        await asyncio.wait_for(executor.map(echo, shuts_down()), 10)
    assert await executor.submit(echo, 5).result() == 5  # nothing was closed
    await asyncio.wait_for(executor.shutdown(), 10)
