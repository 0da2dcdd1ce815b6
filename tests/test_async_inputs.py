"""map and map_iter take async iterables as input, alone or mixed with sync ones.

They are read lazily, like sync inputs: no further ahead than the window of items in
flight, and they are closed when the call ends early.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _helpers import StallingInput

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


# -- a pending read of the input holds nothing up ------------------------------------------
#
# An async input is read by a task of the call's own (the feeder), not by the caller: while a
# read is pending, a ready result still reaches a map_iter consumer, and whatever ends the
# call (its deadline, a failure, a shutdown) still reaches its caller.

GENEROUS = 10.0


def leftover_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]


async def test_map_iter_hands_over_a_ready_result_while_its_async_input_stalls() -> None:
    # The input's next item comes only once the consumer has the first result: a consumer
    # that had to wait for that read first would wait forever.
    stalls = StallingInput()
    results: list[int] = []

    async def consume(executor: AsyncExecutor) -> None:
        async for result in executor.map_iter(double, stalls()):
            results.append(result)
            stalls.go.set()

    async with AsyncExecutor(max_workers=4) as executor:
        await asyncio.wait_for(consume(executor), GENEROUS)
    assert results == [0, 2]


# How a call can end while its input stalls, and what its caller raises.
STALLED_ENDINGS = [
    pytest.param("map", "timeout", asyncio.TimeoutError, id="map-timeout"),
    pytest.param("map", "an-item-fails", ValueError, id="map-an-item-fails"),
    pytest.param("map", "shutdown", ExecutorShutdownError, id="map-shutdown-cancel-futures"),
    pytest.param("map_iter", "timeout", asyncio.TimeoutError, id="map_iter-timeout"),
    pytest.param("map_iter", "an-item-fails", ValueError, id="map_iter-an-item-fails"),
    pytest.param(
        "map_iter", "shutdown", ExecutorShutdownError, id="map_iter-shutdown-cancel-futures"
    ),
]


@pytest.mark.parametrize(("kind", "ending", "error"), STALLED_ENDINGS)
async def test_a_call_ends_at_once_while_its_async_input_stalls(
    kind: str, ending: str, error: type[BaseException]
) -> None:
    stalls = StallingInput(first=2)  # then never another item
    executor = AsyncExecutor(max_workers=4)
    started = asyncio.Event()

    async def item(x: int) -> int:
        started.set()
        if ending == "an-item-fails" and x == 1:
            raise ValueError("item 1 failed")
        return x

    timeout = 0.05 if ending == "timeout" else None

    async def call() -> list[int]:
        if kind == "map":
            return await executor.map(item, stalls(), timeout=timeout)
        return [r async for r in executor.map_iter(item, stalls(), timeout=timeout)]

    caller = asyncio.create_task(call())
    await asyncio.wait_for(started.wait(), GENEROUS)
    if ending == "shutdown":
        await asyncio.wait_for(executor.shutdown(cancel_futures=True), GENEROUS)
    done, _ = await asyncio.wait({caller}, timeout=GENEROUS)
    assert done == {caller}, "the caller still waits for its input"
    assert isinstance(caller.exception(), error)
    assert stalls.closed  # the pending read was cancelled and the input closed
    await asyncio.wait_for(executor.shutdown(), GENEROUS)
    assert leftover_tasks() == []


async def test_shutdown_waits_for_an_async_input_to_close() -> None:
    # A dropped map_iter ends its call; the input's clean-up (which awaits) runs in the
    # feeder, and shutdown returns only once it has finished.
    cleaned = []

    async def slow_to_close() -> AsyncIterator[int]:
        try:
            yield 0
            await asyncio.Event().wait()
            yield 1
        finally:
            await asyncio.sleep(0.01)
            cleaned.append(True)

    executor = AsyncExecutor(max_workers=2)
    it = executor.map_iter(double, slow_to_close())
    assert await asyncio.wait_for(it.__anext__(), GENEROUS) == 0
    del it  # no aclose(): the call ends when the iterator is freed
    await asyncio.wait_for(executor.shutdown(), GENEROUS)
    assert cleaned == [True]
    assert leftover_tasks() == []


@pytest.mark.parametrize("method", ["map", "map_iter"])
async def test_an_async_input_sees_its_callers_context(method: str) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    seen: list[str] = []

    async def inputs() -> AsyncIterator[int]:
        for i in range(6):
            await asyncio.sleep(0)
            seen.append(request_id.get("none"))
            yield i

    async with AsyncExecutor(max_workers=2) as executor:
        request_id.set("caller")
        if method == "map":
            results = await executor.map(double, inputs())
        else:
            results = [r async for r in executor.map_iter(double, inputs(), window=2)]
    assert results == [2 * i for i in range(6)]
    assert seen == ["caller"] * 6


@pytest.mark.parametrize("method", ["map", "map_iter"])
async def test_an_async_input_that_raises_is_closed_to_the_end(method: str) -> None:
    # The input raises, then its aclose() awaits: the call's end must not cut that short.
    class BreaksThenClosesSlowly:
        def __init__(self) -> None:
            self.read = 0
            self.closed = False

        def __aiter__(self) -> BreaksThenClosesSlowly:
            return self

        async def __anext__(self) -> int:
            self.read += 1
            if self.read > 2:
                raise OSError("input broke")
            return self.read

        async def aclose(self) -> None:
            await asyncio.sleep(0.01)
            self.closed = True

    source = BreaksThenClosesSlowly()
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(OSError, match="input broke"):
            if method == "map":
                await asyncio.wait_for(executor.map(double, source), GENEROUS)
            else:
                async for _ in executor.map_iter(double, source):
                    pass
    assert source.closed


@pytest.mark.parametrize("first", ["consumer-cancelled", "aclose"])
async def test_aclose_returns_after_the_input_closed_while_another_task_ends_the_call(
    first: str,
) -> None:
    # Another task is already ending the call (its consumer was cancelled, or it called
    # aclose() first) when aclose() is called: it must still wait for the input's clean-up.
    closed = []
    release = asyncio.Event()

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            await asyncio.sleep(0.01)  # a clean-up that awaits
            closed.append(True)

    async def hold(x: int) -> int:
        await release.wait()
        return x

    executor = AsyncExecutor(max_workers=1)
    iterator = executor.map_iter(hold, numbers(), window=1)

    async def consume() -> None:
        async for _ in iterator:
            pass

    consumer = asyncio.create_task(consume())
    for _ in range(20):
        await asyncio.sleep(0)  # the consumer waits for item 0, which holds
    if first == "consumer-cancelled":
        consumer.cancel()  # its __anext__ ends the call, then waits for the input to close
        other = None
    else:
        other = asyncio.create_task(iterator.aclose())
    await asyncio.sleep(0)  # (that task is now waiting for the input's clean-up)
    await asyncio.wait_for(iterator.aclose(), GENEROUS)
    assert closed == [True]
    release.set()
    await asyncio.wait({consumer, *([other] if other else [])}, timeout=GENEROUS)
    await asyncio.wait_for(executor.shutdown(), GENEROUS)
    assert leftover_tasks() == []
