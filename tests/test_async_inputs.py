"""map and map_iter take async iterables as input, alone or mixed with sync ones.

They are read lazily, like sync inputs: no further ahead than the window of items in
flight, and they are closed when the call ends early.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from antflow import AsyncExecutor, ExecutorShutdownError


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def add(a: Any, b: Any) -> Any:
    await asyncio.sleep(0)
    return a + b


async def arange(n: int, *, delay: float = 0) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(delay)
        yield i


class Countdown:
    """An async iterable written by hand (not an async generator)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __aiter__(self) -> Countdown.Iterator:
        return Countdown.Iterator(self.start)

    class Iterator:
        def __init__(self, current: int) -> None:
            self.current = current

        def __aiter__(self) -> Countdown.Iterator:
            return self

        async def __anext__(self) -> int:
            if self.current <= 0:
                raise StopAsyncIteration
            self.current -= 1
            return self.current + 1


class Tracked:
    """An endless async generator that records how far it was read and whether it closed."""

    def __init__(self) -> None:
        self.read = 0
        self.closed = False

    async def __call__(self) -> AsyncIterator[int]:
        try:
            while True:
                await asyncio.sleep(0)
                self.read += 1
                yield self.read - 1
        finally:
            self.closed = True


async def test_map_accepts_an_async_generator() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        assert await executor.map(double, arange(10)) == [2 * i for i in range(10)]


async def test_map_iter_accepts_an_async_generator() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        results = [r async for r in executor.map_iter(double, arange(10))]
        assert results == [2 * i for i in range(10)]


async def test_map_accepts_an_async_iterable_that_is_not_a_generator() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        assert await executor.map(double, Countdown(4)) == [8, 6, 4, 2]


async def test_map_keeps_input_order_when_a_slow_async_input_meets_uneven_tasks() -> None:
    async def uneven(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))
        return i

    async with AsyncExecutor(max_workers=4) as executor:
        assert await executor.map(uneven, arange(12, delay=0.001)) == list(range(12))


async def test_map_zips_a_sync_and_an_async_input() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        assert await executor.map(add, [10, 20, 30], arange(3)) == [10, 21, 32]


async def test_map_iter_zips_an_async_and_a_sync_input() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        results = [r async for r in executor.map_iter(add, arange(3), [10, 20, 30])]
        assert results == [10, 21, 32]


@pytest.mark.parametrize("shorter", ["sync", "async"])
async def test_mixed_inputs_stop_at_the_shortest(shorter: str) -> None:
    sync_input = range(3) if shorter == "sync" else range(100)
    async_input = arange(100) if shorter == "sync" else arange(3)
    async with AsyncExecutor(max_workers=3) as executor:
        assert await executor.map(add, sync_input, async_input) == [0, 2, 4]


async def test_two_async_inputs_are_zipped() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        assert await executor.map(add, arange(4), Countdown(4)) == [4, 4, 4, 4]


async def test_an_empty_async_input_gives_no_results() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        assert await executor.map(double, arange(0)) == []
        assert [r async for r in executor.map_iter(double, arange(0))] == []


async def test_map_iter_reads_an_endless_async_input_only_a_window_ahead() -> None:
    source = Tracked()
    async with AsyncExecutor(max_workers=2) as executor:
        results = []
        async for result in executor.map_iter(double, source(), window=4):
            results.append(result)
            assert source.read <= len(results) + 4
            if len(results) == 20:
                break
        assert results == [2 * i for i in range(20)]


async def test_an_async_input_is_closed_when_map_iter_is_left_early() -> None:
    source = Tracked()
    async with AsyncExecutor(max_workers=2) as executor:
        iterator = executor.map_iter(double, source(), window=4)
        async for _ in iterator:
            break
        await iterator.aclose()  # type: ignore[attr-defined]
        assert source.closed


async def test_an_async_input_is_closed_when_an_item_fails() -> None:
    source = Tracked()

    async def fails_on_three(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(ValueError, match="three"):
            await executor.map(fails_on_three, source(), window=4)
        assert source.closed


async def test_an_async_input_is_not_read_further_once_map_has_failed() -> None:
    source = Tracked()

    async def fails_on_three(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(ValueError, match="three"):
            await executor.map(fails_on_three, source(), window=4)
        read = source.read
        for _ in range(20):
            await asyncio.sleep(0)
        assert source.read == read


async def test_an_error_raised_by_an_async_input_is_raised_by_map() -> None:
    async def breaks_after_two() -> AsyncIterator[int]:
        yield 0
        yield 1
        raise OSError("input broke")

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(OSError, match="input broke"):
            await executor.map(double, breaks_after_two())


async def test_an_error_raised_by_an_async_input_ends_map_iter_after_the_earlier_results() -> None:
    async def breaks_after_two() -> AsyncIterator[int]:
        yield 0
        yield 1
        raise OSError("input broke")

    async with AsyncExecutor(max_workers=2) as executor:
        results: list[int] = []
        with pytest.raises(OSError, match="input broke"):
            async for result in executor.map_iter(double, breaks_after_two(), window=1):
                results.append(result)
        assert results == [0, 2]


async def test_cancelling_a_map_over_an_async_input_cancels_its_items() -> None:
    started = asyncio.Event()

    async def runs_long(x: int) -> int:
        started.set()
        await asyncio.sleep(3600)
        return x

    async with AsyncExecutor(max_workers=2) as executor:
        call = asyncio.create_task(executor.map(runs_long, arange(10)))
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        stats = executor.stats()
        assert (stats.running, stats.pending) == (0, 0)


# -- a call that ends while its caller awaits the async input ---------------------------------

# How a call can end while its caller is in the input's __anext__. (An item's failure ends
# a map call at once; a map_iter call fails in order, when its consumer reaches the item.)
ENDINGS = [
    pytest.param("map", "an-item-fails", id="map-an-item-fails"),
    pytest.param("map", "timeout", id="map-timeout"),
    pytest.param("map", "shutdown-cancel-futures", id="map-shutdown-cancel-futures"),
    pytest.param("map_iter", "timeout", id="map_iter-timeout"),
    pytest.param("map_iter", "shutdown-cancel-futures", id="map_iter-shutdown-cancel-futures"),
]


@pytest.mark.parametrize(("kind", "ending"), ENDINGS)
async def test_a_call_that_ends_while_its_async_input_is_awaited_queues_nothing_more(
    kind: str, ending: str
) -> None:
    # The input hands over item 0, then keeps the caller waiting until the call has ended
    # (item 0 ends cancelled, or fails). What the input yields after that must not be
    # queued, let alone started.
    executor = AsyncExecutor(max_workers=4)
    ended = asyncio.Event()
    started: list[int] = []

    async def item(x: int) -> int:
        started.append(x)
        if x == 0:
            if ending == "an-item-fails":
                ended.set()
                raise ValueError("item 0 failed")
            try:
                await asyncio.Event().wait()  # until the call's end cancels it
            finally:
                ended.set()
        return x

    async def source() -> AsyncIterator[int]:
        yield 0
        await ended.wait()
        for i in range(1, 6):
            yield i

    timeout = 0.05 if ending == "timeout" else None

    async def call() -> list[int]:
        if kind == "map":
            return await executor.map(item, source(), timeout=timeout)
        return [r async for r in executor.map_iter(item, source(), timeout=timeout)]

    caller = asyncio.create_task(call())
    if ending == "shutdown-cancel-futures":
        while not started:
            await asyncio.sleep(0)
        await asyncio.wait_for(executor.shutdown(wait=True, cancel_futures=True), 10)
    expected = {
        "an-item-fails": ValueError,
        "timeout": asyncio.TimeoutError,
        "shutdown-cancel-futures": ExecutorShutdownError,
    }[ending]
    with pytest.raises(expected):
        await asyncio.wait_for(caller, 10)
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == [0]
    assert executor.stats().submitted == 1
    await asyncio.wait_for(executor.shutdown(), 10)
