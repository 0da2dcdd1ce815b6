"""progress=True: map and map_iter draw a rich progress bar (the antflow[progress] extra).

With rich installed the call returns exactly what it returns without a bar; the bar
counts the items and is stopped when the call ends. Without rich the call itself raises
an ImportError that names the extra.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
import rich.progress

from antflow import AsyncExecutor

GENEROUS = 10.0


async def square(x: int) -> int:
    await asyncio.sleep(0.001 * (x % 3))
    return x * x


class SpyProgress(rich.progress.Progress):
    """A real rich Progress that remembers the instances the executor created."""

    created: ClassVar[list[SpyProgress]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        SpyProgress.created.append(self)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SpyProgress]]:
    SpyProgress.created = []
    monkeypatch.setattr(rich.progress, "Progress", SpyProgress)
    yield SpyProgress.created


def the_bar(spy: list[SpyProgress]) -> SpyProgress:
    """The one Progress that drew a bar (any others were never given a task)."""
    [progress] = [p for p in spy if p.tasks]
    return progress


@pytest.fixture
def without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich.progress", None)


async def arange(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


# -- with rich ------------------------------------------------------------------------------


async def test_map_with_progress_returns_the_same_results_as_without() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        plain = await executor.map(square, range(20))
        with_bar = await executor.map(square, range(20), progress=True)
        assert with_bar == plain == [x * x for x in range(20)]


async def test_map_iter_with_progress_yields_the_same_results_in_order() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        results = [r async for r in executor.map_iter(square, range(20), progress=True)]
        assert results == [x * x for x in range(20)]


async def test_the_bar_of_map_counts_every_item_against_the_inputs_length(
    spy: list[SpyProgress],
) -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        await executor.map(square, range(7), progress=True)
    [task] = the_bar(spy).tasks
    assert (task.total, task.completed) == (7, 7)


async def test_the_bar_of_map_iter_counts_every_item_against_the_inputs_length(
    spy: list[SpyProgress],
) -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        async for _ in executor.map_iter(square, range(7), progress=True):
            pass
    [task] = the_bar(spy).tasks
    assert (task.total, task.completed) == (7, 7)


async def test_the_bar_of_an_input_without_length_has_no_total(spy: list[SpyProgress]) -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        assert await executor.map(square, arange(5), progress=True) == [0, 1, 4, 9, 16]
    [task] = the_bar(spy).tasks
    assert (task.total, task.completed) == (None, 5)


async def test_the_bar_is_stopped_when_map_fails(spy: list[SpyProgress]) -> None:
    async def fails_on_three(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    async with AsyncExecutor(max_workers=3) as executor:
        with pytest.raises(ValueError, match="three"):
            await executor.map(fails_on_three, range(10), progress=True)
    assert not the_bar(spy).live.is_started


async def test_the_bar_is_stopped_when_map_iter_is_exhausted(spy: list[SpyProgress]) -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        async for _ in executor.map_iter(square, range(5), progress=True):
            pass
        assert not the_bar(spy).live.is_started


async def test_leaving_a_map_iter_with_progress_early_cancels_its_running_items_at_once() -> None:
    # As without a bar: a break drops the iterator and its running items are cancelled
    # right away, not whenever the garbage collector gets to it.
    async def first_is_quick(i: int) -> int:
        await asyncio.sleep(0 if i == 0 else 3600)
        return i

    async with AsyncExecutor(max_workers=4) as executor:
        async for _ in executor.map_iter(first_is_quick, range(4), progress=True):
            break
        stats = executor.stats()
        assert (stats.running, stats.cancelled) == (0, 3)


async def test_closing_a_map_iter_with_progress_cancels_its_running_items() -> None:
    async def first_is_quick(i: int) -> int:
        await asyncio.sleep(0 if i == 0 else 3600)
        return i

    async with AsyncExecutor(max_workers=4) as executor:
        iterator = executor.map_iter(first_is_quick, range(4), progress=True)
        assert await iterator.__anext__() == 0
        await iterator.aclose()  # type: ignore[attr-defined]
        stats = executor.stats()
        assert (stats.running, stats.cancelled) == (0, 3)


# -- without rich ---------------------------------------------------------------------------


@pytest.mark.usefixtures("without_rich")
async def test_without_rich_map_with_progress_raises_an_import_error_naming_the_extra() -> None:
    calls: list[int] = []

    async def record(x: int) -> int:
        calls.append(x)
        return x

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(ImportError, match=r"antflow\[progress\]"):
            await executor.map(record, range(5), progress=True)
        assert executor.stats().submitted == 0
    assert calls == []


@pytest.mark.usefixtures("without_rich")
async def test_without_rich_map_iter_with_progress_raises_at_the_call() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(ImportError, match=r"antflow\[progress\]"):
            executor.map_iter(square, range(5), progress=True)
        assert executor.stats().submitted == 0


@pytest.mark.usefixtures("without_rich")
async def test_without_rich_map_and_map_iter_without_progress_work() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        assert await executor.map(square, range(4)) == [0, 1, 4, 9]
        assert [r async for r in executor.map_iter(square, range(4))] == [0, 1, 4, 9]
