"""name: the prefix of the worker tasks' names, so they can be told apart in
asyncio.all_tasks(), py-spy dumps and debuggers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from antflow import AsyncExecutor


def task_names(prefix: str) -> set[str]:
    return {t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(prefix)}


@asynccontextmanager
async def busy(executor: AsyncExecutor, n: int) -> AsyncIterator[None]:
    """Keep ``n`` workers of ``executor`` busy for the duration of the block."""
    gate = asyncio.Event()
    started = [asyncio.Event() for _ in range(n)]

    async def hold(i: int) -> None:
        started[i].set()
        await gate.wait()

    try:
        for i in range(n):
            executor.submit(hold, i)
            await started[i].wait()
        yield
    finally:
        gate.set()


async def test_worker_tasks_carry_the_executors_name() -> None:
    async with AsyncExecutor(max_workers=3, name="ingest") as executor, busy(executor, 3):
        assert task_names("ingest-") == {
            "ingest-worker-1",
            "ingest-worker-2",
            "ingest-worker-3",
        }


async def test_without_a_name_workers_are_called_antflow_worker_n() -> None:
    async with AsyncExecutor(max_workers=2) as executor, busy(executor, 2):
        assert task_names("antflow-") == {"antflow-worker-1", "antflow-worker-2"}


async def test_a_task_can_read_the_name_of_the_worker_running_it() -> None:
    async def my_task_name() -> str:
        task = asyncio.current_task()
        assert task is not None
        return task.get_name()

    async with AsyncExecutor(max_workers=1, name="billing") as executor:
        assert await executor.submit(my_task_name) == "billing-worker-1"


async def test_a_task_running_in_its_own_context_carries_the_executors_name() -> None:
    # With propagate_context each item runs in a Task of its own; that Task is what
    # asyncio.all_tasks() and py-spy show running the item, so it carries the prefix too.
    async def my_task_name() -> str:
        task = asyncio.current_task()
        assert task is not None
        return task.get_name()

    async with AsyncExecutor(max_workers=1, name="billing", propagate_context=True) as executor:
        assert (await executor.submit(my_task_name)).startswith("billing-")


async def test_two_executors_name_their_workers_apart() -> None:
    async with (
        AsyncExecutor(max_workers=1, name="fast") as fast,
        AsyncExecutor(max_workers=1, name="slow") as slow,
        busy(fast, 1),
        busy(slow, 1),
    ):
        assert task_names("fast-") == {"fast-worker-1"}
        assert task_names("slow-") == {"slow-worker-1"}


async def test_creating_a_named_executor_starts_no_worker_task() -> None:
    executor = AsyncExecutor(max_workers=4, name="lazy")
    await asyncio.sleep(0)
    assert task_names("lazy-") == set()
    await executor.shutdown()


async def test_no_more_workers_are_started_than_max_workers() -> None:
    async def quick(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async with AsyncExecutor(max_workers=3, name="bounded") as executor:
        names: set[str] = set()

        async def note_worker(i: int) -> int:
            task = asyncio.current_task()
            assert task is not None
            names.add(task.get_name())
            return await quick(i)

        await executor.map(note_worker, range(50))
        assert len(names) <= 3
        assert all(name.startswith("bounded-worker-") for name in names)


async def test_worker_tasks_are_gone_after_shutdown() -> None:
    executor = AsyncExecutor(max_workers=2, name="finished")
    async with busy(executor, 2):
        assert len(task_names("finished-")) == 2
    await executor.shutdown()
    await asyncio.sleep(0)
    assert task_names("finished-") == set()


@pytest.mark.parametrize("value", [42, b"bytes"])
def test_a_name_that_is_not_a_string_is_refused_at_construction(value: object) -> None:
    with pytest.raises(TypeError, match="name"):
        AsyncExecutor(name=value)  # type: ignore[arg-type]
