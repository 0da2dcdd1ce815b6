"""Memory is bounded by the work in flight, never by the work done or the input's length.

Finished work is not retained: after hundreds of thousands of tiny tasks the traced memory
is back where it started (within a constant far below one byte per task), and the
arguments, results and futures of finished work are freed as soon as the caller drops
them. ``map_iter`` over a long generator reads at most ``window`` items ahead of its
consumer, and its peak memory does not grow with the input's length.

The byte bounds are generous constants: they leave room for the allocator's and the
loop's own noise, and are still far below what a leak of a few bytes per task would add.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from _helpers import CountingInput

from antflow import AsyncExecutor

KiB = 1024
MiB = 1024 * KiB
MAP_TASKS = 200_000
SUBMIT_TASKS = 100_000
BATCH = 10_000
# 100,000 tasks that each left 4 bytes behind would retain 400 KB.
RETAINED_LIMIT = 256 * KiB


async def tiny(x: int) -> int:
    return x


class Payload:
    """An object that can be watched through a weak reference."""

    __slots__ = ("__weakref__", "value")

    def __init__(self, value: int) -> None:
        self.value = value


async def wrap(payload: Payload) -> Payload:
    return Payload(payload.value)


def collect() -> None:
    for _ in range(3):
        gc.collect()


async def traced_growth(run: Callable[[], Awaitable[None]]) -> int:
    """Run ``run`` under tracemalloc; return the traced bytes still held afterwards."""
    await run()  # warm-up: workers, free lists, caches
    collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await run()
        collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before


# -- finished work is not retained --------------------------------------------------------


async def test_two_hundred_thousand_tiny_tasks_through_map_leave_no_memory_behind() -> None:
    async with AsyncExecutor(max_workers=8) as executor:

        async def run() -> None:
            for start in range(0, MAP_TASKS, BATCH):
                results = await executor.map(tiny, range(start, start + BATCH), window=256)
                assert len(results) == BATCH
            del results

        growth = await traced_growth(run)
        assert executor.stats().completed == 2 * MAP_TASKS
    assert growth < RETAINED_LIMIT, f"{growth} bytes retained after {MAP_TASKS} tasks"


async def test_a_hundred_thousand_tiny_tasks_through_submit_leave_no_memory_behind() -> None:
    async with AsyncExecutor(max_workers=8) as executor:

        async def run() -> None:
            for start in range(0, SUBMIT_TASKS, BATCH):
                futures = [executor.submit(tiny, i) for i in range(start, start + BATCH)]
                await executor.wait(futures)
                assert futures[-1].done()
            del futures

        growth = await traced_growth(run)
        assert executor.stats().completed == 2 * SUBMIT_TASKS
    assert growth < RETAINED_LIMIT, f"{growth} bytes retained after {SUBMIT_TASKS} tasks"


async def test_a_finished_future_is_freed_once_its_caller_drops_it() -> None:
    async with AsyncExecutor(max_workers=4) as executor:
        futures = [executor.submit(wrap, Payload(i)) for i in range(100)]
        await executor.wait(futures)
        watched = [weakref.ref(f) for f in futures]
        results = [weakref.ref(await f) for f in futures]
        del futures
        collect()
        assert [ref for ref in watched if ref() is not None] == []
        assert [ref for ref in results if ref() is not None] == []


async def test_the_arguments_of_a_finished_task_are_freed_while_its_future_is_kept() -> None:
    async with AsyncExecutor(max_workers=4) as executor:
        payloads = [Payload(i) for i in range(100)]
        watched = [weakref.ref(p) for p in payloads]
        futures = [executor.submit(wrap, p) for p in payloads]
        del payloads
        await executor.wait(futures)
        collect()
        assert [ref for ref in watched if ref() is not None] == []
        assert all(f.done() for f in futures)


async def test_the_inputs_and_results_of_a_finished_map_are_freed_once_its_caller_drops_them() -> (
    None
):
    async with AsyncExecutor(max_workers=4) as executor:
        inputs = [Payload(i) for i in range(1000)]
        results = await executor.map(wrap, inputs)
        watched = [weakref.ref(p) for p in inputs + results]
        del inputs, results
        collect()
        alive = [ref() for ref in watched if ref() is not None]
        assert alive == [], f"{len(alive)} of {len(watched)} objects still referenced"


async def test_the_inputs_and_results_of_a_finished_map_iter_are_freed_once_consumed() -> None:
    async with AsyncExecutor(max_workers=4) as executor:
        inputs = [Payload(i) for i in range(1000)]
        watched = [weakref.ref(p) for p in inputs]
        async for result in executor.map_iter(wrap, inputs):
            watched.append(weakref.ref(result))
        del inputs, result
        collect()
        alive = [ref() for ref in watched if ref() is not None]
        assert alive == [], f"{len(alive)} of {len(watched)} objects still referenced"


async def test_an_abandoned_map_iter_frees_its_queued_inputs() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        inputs = [Payload(i) for i in range(100)]
        watched = [weakref.ref(p) for p in inputs]
        source = iter(inputs)
        del inputs
        async for _ in executor.map_iter(wrap, source, window=20):
            break
        del source, _
        collect()
        alive = [ref() for ref in watched if ref() is not None]
        assert alive == [], f"{len(alive)} of {len(watched)} objects still referenced"


# -- map_iter holds only its window -------------------------------------------------------


@pytest.mark.parametrize(("window", "length"), [(1, 50_000), (7, 50_000), (64, 300_000)])
async def test_map_iter_over_a_long_generator_never_reads_more_than_window_ahead(
    window: int, length: int
) -> None:
    source = CountingInput(length)
    consumed = 0
    furthest_ahead = 0
    async with AsyncExecutor(max_workers=8) as executor:
        async for value in executor.map_iter(tiny, source, window=window):
            assert value == consumed
            consumed += 1
            furthest_ahead = max(furthest_ahead, source.read - consumed)
    assert consumed == length
    assert furthest_ahead <= window


async def test_map_iter_over_an_endless_generator_reads_only_its_window_past_the_stop() -> None:
    source = CountingInput(None)
    async with AsyncExecutor(max_workers=4) as executor:
        async for value in executor.map_iter(tiny, source, window=16):
            if value == 10_000:
                break
        assert executor.stats().running == 0
    assert 10_001 <= source.read <= 10_001 + 16


async def test_map_never_reads_more_than_window_ahead_of_the_finished_items() -> None:
    source = CountingInput(100_000)
    finished = 0
    furthest_ahead = 0

    async def count(x: int) -> int:
        nonlocal finished, furthest_ahead
        furthest_ahead = max(furthest_ahead, source.read - finished)
        await asyncio.sleep(0)
        finished += 1
        return x

    async with AsyncExecutor(max_workers=8) as executor:
        results = await executor.map(count, source, window=32)
    assert results == list(range(100_000))
    assert furthest_ahead <= 32


async def map_iter_peak(n: int, window: int) -> int:
    """The peak of traced memory, above the start, while map_iter consumes ``n`` inputs."""

    async def consume(stream: AsyncIterator[int]) -> int:
        total = 0
        async for value in stream:
            total += value
        return total

    async with AsyncExecutor(max_workers=8) as executor:
        await consume(executor.map_iter(tiny, range(1000), window=window))  # warm-up
        collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            total = await consume(executor.map_iter(tiny, CountingInput(n), window=window))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert total == n * (n - 1) // 2
    return peak - base


async def test_map_iter_peak_memory_does_not_grow_with_the_input_length() -> None:
    short = await map_iter_peak(50_000, window=64)
    long = await map_iter_peak(300_000, window=64)
    # Six times the input, the same window: the peak may differ only by noise.
    assert long < 2 * short + 128 * KiB, f"peak {long} B for 300k vs {short} B for 50k"
    assert long < 1 * MiB
