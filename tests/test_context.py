"""propagate_context=True: each task runs in a copy of its submitter's contextvars context.

The copy is taken when the task is submitted (for map and map_iter: in the caller of the
call). A variable a task sets stays in that task: it reaches neither the submitter nor any
other task, the other items of the same map call included.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from antflow import AsyncExecutor

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")

GENEROUS = 10.0


async def read_request_id() -> str:
    await asyncio.sleep(0)
    return request_id.get()


async def test_a_variable_set_in_a_handler_is_visible_in_the_task_it_submits() -> None:
    async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:

        async def handler(rid: str) -> str:
            request_id.set(rid)
            return await executor.submit(read_request_id)

        # Concurrent handlers, one worker: each task still sees its own handler's id.
        seen = await asyncio.gather(*(handler(f"req-{i}") for i in range(5)))
        assert seen == [f"req-{i}" for i in range(5)]


async def test_a_task_sees_the_context_as_it_was_at_submit() -> None:
    async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:
        request_id.set("at submit")
        future = executor.submit(read_request_id)
        request_id.set("after submit")
        assert await future == "at submit"


async def test_a_variable_set_in_a_task_does_not_leak_to_its_submitter() -> None:
    async def sets_the_variable() -> None:
        request_id.set("set by the task")

    async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:
        request_id.set("submitter")
        await executor.submit(sets_the_variable)
        assert request_id.get() == "submitter"


async def test_a_variable_set_in_a_task_does_not_leak_to_the_next_task_on_its_worker() -> None:
    async def sets_the_variable() -> None:
        request_id.set("set by the first task")

    async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:
        request_id.set("submitter")
        first = executor.submit(sets_the_variable)
        second = executor.submit(read_request_id)
        await first
        assert await second == "submitter"


async def test_a_variable_set_in_a_task_does_not_leak_to_a_concurrent_task() -> None:
    both_set = asyncio.Barrier(2) if hasattr(asyncio, "Barrier") else None

    async def sets_then_reads(value: str) -> str:
        request_id.set(value)
        if both_set is not None:
            await both_set.wait()
        else:  # Python 3.10
            await asyncio.sleep(0.01)
        return request_id.get()

    async with AsyncExecutor(max_workers=2, propagate_context=True) as executor:
        a = executor.submit(sets_then_reads, "a")
        b = executor.submit(sets_then_reads, "b")
        assert [await a, await b] == ["a", "b"]


async def test_map_items_see_the_context_of_the_map_caller() -> None:
    async def read(_: int) -> str:
        return await read_request_id()

    async with AsyncExecutor(max_workers=3, propagate_context=True) as executor:
        request_id.set("map caller")
        assert await executor.map(read, range(6)) == ["map caller"] * 6


async def test_map_iter_items_see_the_context_of_the_map_iter_caller() -> None:
    async def read(_: int) -> str:
        return await read_request_id()

    async with AsyncExecutor(max_workers=3, propagate_context=True) as executor:
        request_id.set("map_iter caller")
        results = [r async for r in executor.map_iter(read, range(6))]
        assert results == ["map_iter caller"] * 6


async def sets_its_own_index(i: int) -> str:
    request_id.set(f"item-{i}")
    await asyncio.sleep(0.01)  # the other items set theirs meanwhile
    return request_id.get()


async def test_a_variable_set_in_a_map_item_does_not_leak_to_the_other_items() -> None:
    async with AsyncExecutor(max_workers=4, propagate_context=True) as executor:
        results = await executor.map(sets_its_own_index, range(4))
        assert results == [f"item-{i}" for i in range(4)]


async def test_a_variable_set_in_a_map_iter_item_does_not_leak_to_the_other_items() -> None:
    async with AsyncExecutor(max_workers=4, propagate_context=True) as executor:
        results = [r async for r in executor.map_iter(sets_its_own_index, range(4))]
        assert results == [f"item-{i}" for i in range(4)]


async def test_a_variable_set_in_a_map_item_does_not_leak_to_the_map_caller() -> None:
    async with AsyncExecutor(max_workers=4, propagate_context=True) as executor:
        request_id.set("map caller")
        await executor.map(sets_its_own_index, range(4))
        assert request_id.get() == "map caller"


async def test_retries_of_a_task_run_in_its_submitters_context() -> None:
    attempts: list[str] = []

    async def flaky() -> str:
        attempts.append(request_id.get())
        if len(attempts) == 1:
            raise ConnectionError("transient")
        return request_id.get()

    async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:
        request_id.set("submitter")
        assert await executor.submit(flaky, retries=1, retry_delay=0) == "submitter"
        assert attempts == ["submitter", "submitter"]


async def test_cancelling_a_running_task_in_its_own_context_cancels_its_coroutine() -> None:
    started = asyncio.Event()
    unwound: list[str] = []

    async def task() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            unwound.append("cancelled")
            raise

    async def after() -> str:
        return "after"

    async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:
        future = executor.submit(task)
        following = executor.submit(after)
        await started.wait()
        assert future.cancel()
        assert await following.result(timeout=GENEROUS) == "after"
        assert future.cancelled()
        assert unwound == ["cancelled"]


async def test_a_task_in_its_own_context_that_fails_fails_its_future() -> None:
    async def fails() -> None:
        raise LookupError("missing")

    async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:
        with pytest.raises(LookupError, match="missing"):
            await executor.submit(fails)


async def test_submit_threadsafe_carries_the_calling_threads_context() -> None:
    async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:
        await executor.submit(read_request_id)  # bind the executor to this loop

        def from_a_thread() -> str:
            request_id.set(f"thread {threading.get_ident()}")
            expected = request_id.get()
            assert executor.submit_threadsafe(read_request_id).result(GENEROUS) == expected
            return expected

        expected = await asyncio.to_thread(from_a_thread)
        assert expected.startswith("thread ")


async def test_without_propagation_a_task_sees_no_submitters_context_variables() -> None:
    # Workers start in an empty context: the request that happened to start a worker
    # does not leak its variables into the tasks of other requests.
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("rid", default="none")

    async def read() -> str:
        return request_id.get()

    async with AsyncExecutor(max_workers=1) as executor:
        request_id.set("first-request")
        first = await executor.submit(read)
        request_id.set("second-request")
        second = await executor.submit(read)
    assert (first, second) == ("none", "none")


# -- the input of map / map_iter -----------------------------------------------------------


@pytest.mark.parametrize("method", ["map", "map_iter"])
async def test_a_generator_input_is_read_in_its_callers_context(method: str) -> None:
    # The workers read a synchronous input themselves, as they free up; the input's own
    # code still sees the context of the call that passed it, not a worker's.
    seen: list[str] = []

    def inputs() -> Iterator[int]:
        for i in range(6):
            seen.append(request_id.get())
            yield i

    async def echo(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async with AsyncExecutor(max_workers=2) as executor:
        request_id.set("caller")
        if method == "map":
            results = await executor.map(echo, inputs())
        else:
            results = [r async for r in executor.map_iter(echo, inputs(), window=2)]
    assert results == list(range(6))
    assert seen == ["caller"] * 6
