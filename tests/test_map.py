"""map and map_iter: input order, lazy bounded input, deadlines, failing fast, cancelling."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _helpers import wait_until

from antflow import AsyncExecutor, ExecutorShutdownError


class Recorder:
    """An async function that records which items started, were cancelled and ended.

    Items in ``block`` (all of them by default) wait until ``release`` is set; the others
    return their argument at once.
    """

    def __init__(self, block: Any = None) -> None:
        self.block = block
        self.release = asyncio.Event()
        self.started: list[Any] = []
        self.cancelled: list[Any] = []
        self.finished: list[Any] = []

    async def __call__(self, x: Any) -> Any:
        self.started.append(x)
        try:
            if self.block is None or x in self.block:
                await self.release.wait()
            return x
        except asyncio.CancelledError:
            self.cancelled.append(x)
            raise
        finally:
            self.finished.append(x)


async def square(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


# -- results -------------------------------------------------------------------------------


async def test_map_returns_results_in_input_order_not_completion_order() -> None:
    async def later_for_smaller(x: int) -> int:
        await asyncio.sleep(0.01 * (5 - x))
        return x

    async with AsyncExecutor(max_workers=5) as executor:
        assert await executor.map(later_for_smaller, range(5)) == [0, 1, 2, 3, 4]


async def test_map_iter_yields_results_in_input_order() -> None:
    async def later_for_smaller(x: int) -> int:
        await asyncio.sleep(0.01 * (5 - x))
        return x

    async with AsyncExecutor(max_workers=5) as executor:
        assert [r async for r in executor.map_iter(later_for_smaller, range(5))] == [0, 1, 2, 3, 4]


async def test_map_over_more_items_than_workers_returns_every_result() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        assert await executor.map(square, range(100)) == [x * x for x in range(100)]


async def test_map_stops_at_the_shortest_iterable() -> None:
    async def add(x: int, y: int) -> int:
        return x + y

    async with AsyncExecutor() as executor:
        assert await executor.map(add, [1, 2, 3], [10, 20]) == [11, 22]
        assert [r async for r in executor.map_iter(add, [1, 2], [10, 20, 30])] == [11, 22]


async def test_map_passes_one_argument_from_each_iterable() -> None:
    async def triple(a: int, b: str, c: float) -> tuple[int, str, float]:
        return a, b, c

    async with AsyncExecutor() as executor:
        result = await executor.map(triple, [1, 2], "ab", (0.5, 1.5))
        assert result == [(1, "a", 0.5), (2, "b", 1.5)]


async def test_map_accepts_an_async_iterable_mixed_with_a_sync_one() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(4):
            await asyncio.sleep(0)
            yield i

    async def add(x: int, y: int) -> int:
        return x + y

    async with AsyncExecutor(max_workers=2) as executor:
        assert await executor.map(add, numbers(), [10, 20, 30, 40, 50]) == [10, 21, 32, 43]


async def test_map_of_an_empty_input_returns_an_empty_list_without_calling_fn() -> None:
    calls: list[Any] = []

    async def record(x: Any) -> Any:
        calls.append(x)
        return x

    async with AsyncExecutor() as executor:
        assert await executor.map(record, []) == []
        assert [r async for r in executor.map_iter(record, iter(()))] == []
    assert calls == []


# -- lazy input ----------------------------------------------------------------------------


async def test_map_reads_a_generator_no_more_than_window_items_ahead() -> None:
    window = 4
    recorder = Recorder()
    in_flight_when_read: list[int] = []

    def inputs() -> Iterator[int]:
        for i in range(20):
            # Items read so far, minus those that have ended: in flight when i is read.
            in_flight_when_read.append(i - len(recorder.finished))
            yield i

    async with AsyncExecutor(max_workers=2) as executor:
        call = asyncio.create_task(executor.map(recorder, inputs(), window=window))
        await wait_until(lambda: len(recorder.started) == 2)
        await asyncio.sleep(0.02)
        # The first items are still blocked: the generator was read at most a window ahead.
        assert 2 <= len(in_flight_when_read) <= window
        recorder.release.set()
        assert await call == list(range(20))
    assert len(in_flight_when_read) == 20
    assert max(in_flight_when_read) < window  # so at most `window` in flight with the new one


async def test_map_iter_reads_a_generator_no_more_than_window_items_ahead_of_the_consumer() -> None:
    window = 3
    consumed = 0
    ahead_when_read: list[int] = []

    def inputs() -> Iterator[int]:
        for i in range(15):
            ahead_when_read.append(i - consumed)
            yield i

    async with AsyncExecutor(max_workers=4) as executor:
        async for result in executor.map_iter(square, inputs(), window=window):
            assert result == consumed * consumed
            await asyncio.sleep(0.002)  # a slow consumer
            consumed += 1
    assert consumed == 15
    assert max(ahead_when_read) < window


async def test_map_iter_reads_ahead_again_before_the_consumer_drains_the_window() -> None:
    # The refill is due once half the window is free, also while every result the
    # consumer takes is already there: the workers never wait for an empty window.
    window = 8
    read = 0
    ahead: list[int] = []

    def inputs() -> Iterator[int]:
        nonlocal read
        for i in range(200):
            read += 1
            yield i

    async def suspend(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async with AsyncExecutor(max_workers=window) as executor:
        taken = 0
        async for result in executor.map_iter(suspend, inputs(), window=window):
            assert result == taken
            taken += 1
            ahead.append(read - taken)
            await asyncio.sleep(0)  # one loop turn per result
    assert taken == 200
    assert min(ahead[window : 200 - window]) > 0


async def test_map_iter_over_an_endless_generator_stops_when_the_consumer_breaks() -> None:
    window = 4
    read = 0

    def endless() -> Iterator[int]:
        nonlocal read
        for i in itertools.count():
            read += 1
            yield i

    results: list[int] = []
    async with AsyncExecutor(max_workers=2) as executor:
        async for result in executor.map_iter(square, endless(), window=window):
            results.append(result)
            if len(results) == 10:
                break
        await asyncio.sleep(0.01)
    assert results == [x * x for x in range(10)]
    assert read <= 10 + window


@pytest.mark.parametrize("window", [0, -1])
async def test_a_window_below_one_is_a_value_error(window: int) -> None:
    async with AsyncExecutor() as executor:
        with pytest.raises(ValueError, match="window"):
            await executor.map(square, range(3), window=window)
        with pytest.raises(ValueError, match="window"):
            executor.map_iter(square, range(3), window=window)


@pytest.mark.parametrize("window", [1.5, "2", True])
async def test_a_window_that_is_not_an_int_is_refused(window: Any) -> None:
    async with AsyncExecutor() as executor:
        with pytest.raises((TypeError, ValueError), match="window"):
            await executor.map(square, range(3), window=window)


async def test_a_window_of_one_runs_items_one_at_a_time() -> None:
    running = peak = 0

    async def track(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return x

    async with AsyncExecutor(max_workers=4) as executor:
        assert await executor.map(track, range(6), window=1) == list(range(6))
    assert peak == 1


# -- timeout -------------------------------------------------------------------------------


async def test_map_timeout_is_a_deadline_for_the_whole_call_not_per_item() -> None:
    async def short(x: int) -> int:
        await asyncio.sleep(0.04)  # each item well within the timeout
        return x

    async with AsyncExecutor(max_workers=1) as executor:
        with pytest.raises(asyncio.TimeoutError):
            await executor.map(short, range(5), timeout=0.1)


async def test_map_timeout_cancels_the_running_items_and_never_starts_the_rest() -> None:
    recorder = Recorder()
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(asyncio.TimeoutError):
            await executor.map(recorder, range(6), timeout=0.05)
        await wait_until(lambda: len(recorder.finished) == 2)
        assert sorted(recorder.cancelled) == [0, 1]
        await asyncio.sleep(0.02)
        assert sorted(recorder.started) == [0, 1]


async def test_map_iter_timeout_raises_timeout_error_and_cancels_its_items() -> None:
    recorder = Recorder(block={1})
    results: list[int] = []
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(asyncio.TimeoutError):
            async for result in executor.map_iter(recorder, range(6), timeout=0.05):
                results.append(result)
        await wait_until(lambda: recorder.cancelled == [1])
    assert results == [0]


async def test_map_iter_timeout_counts_from_the_call_not_from_the_first_iteration() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        iterator = executor.map_iter(square, range(3), timeout=0.05)
        await asyncio.sleep(0.2)  # past the deadline before the first result is asked for
        with pytest.raises(asyncio.TimeoutError):
            await iterator.__anext__()


async def test_map_finishing_within_its_timeout_returns_the_results() -> None:
    async with AsyncExecutor() as executor:
        assert await executor.map(square, range(4), timeout=5) == [0, 1, 4, 9]


# -- failing fast --------------------------------------------------------------------------


async def test_map_raises_the_first_exception_and_cancels_the_other_items() -> None:
    recorder = Recorder()
    error = ValueError("item 0 failed")

    async def fn(x: int) -> int:
        if x == 0:
            await wait_until(lambda: 1 in recorder.started)
            raise error
        return await recorder(x)

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(ValueError) as caught:
            await executor.map(fn, range(6))
        assert caught.value is error
        await wait_until(lambda: 1 in recorder.finished)
        assert 1 in recorder.cancelled
        assert sorted(recorder.cancelled) == sorted(recorder.started)  # none was left running


async def test_map_never_starts_the_items_still_queued_when_one_fails() -> None:
    recorder = Recorder()

    async def fn(x: int) -> int:
        if x == 0:
            await wait_until(lambda: 1 in recorder.started)
            raise ValueError("item 0 failed")
        return await recorder(x)

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(ValueError):
            await executor.map(fn, range(6))
        await asyncio.sleep(0.02)
    # Items 2..5 were queued when item 0 failed: none of them may start after that.
    assert recorder.started == [1]


async def test_map_iter_yields_the_earlier_results_then_raises_an_items_exception() -> None:
    async def fn(x: int) -> int:
        if x == 2:
            raise KeyError("item 2")  # fails first, but is reached third
        await asyncio.sleep(0.02)
        return x

    results: list[int] = []
    async with AsyncExecutor(max_workers=4) as executor:
        with pytest.raises(KeyError, match="item 2"):
            async for result in executor.map_iter(fn, range(4)):
                results.append(result)
    assert results == [0, 1]


async def test_map_retries_failing_items() -> None:
    attempts: dict[int, int] = {}

    async def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if attempts[x] == 1:
            raise ConnectionError(f"first attempt for {x}")
        return x * 10

    async with AsyncExecutor(max_workers=3) as executor:
        assert await executor.map(flaky, range(5), retries=1, retry_delay=0) == [0, 10, 20, 30, 40]
    assert attempts == {x: 2 for x in range(5)}


async def test_map_iter_retries_failing_items() -> None:
    attempts: dict[int, int] = {}

    async def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if attempts[x] <= 2:
            raise ConnectionError(f"attempt {attempts[x]} for {x}")
        return x

    async with AsyncExecutor(max_workers=3) as executor:
        results = [r async for r in executor.map_iter(flaky, range(4), retries=2, retry_delay=0)]
    assert results == [0, 1, 2, 3]
    assert attempts == {x: 3 for x in range(4)}


async def test_map_raises_the_exception_of_an_item_that_fails_every_retry() -> None:
    attempts = 0

    async def always_fails(x: int) -> int:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("down")

    async with AsyncExecutor() as executor:
        with pytest.raises(ConnectionError, match="down"):
            await executor.map(always_fails, [1], retries=2, retry_delay=0)
    assert attempts == 3


# -- cancelling the caller -----------------------------------------------------------------


async def test_cancelling_the_caller_of_map_cancels_its_items() -> None:
    recorder = Recorder()
    async with AsyncExecutor(max_workers=2) as executor:
        call = asyncio.create_task(executor.map(recorder, range(6)))
        await wait_until(lambda: len(recorder.started) == 2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(lambda: len(recorder.finished) == 2)
        assert sorted(recorder.cancelled) == [0, 1]
        await asyncio.sleep(0.02)
        assert sorted(recorder.started) == [0, 1]  # the queued items never started
        assert await executor.map(square, [1, 2, 3]) == [1, 4, 9]  # the executor works on


async def test_breaking_out_of_map_iter_cancels_its_items_at_once() -> None:
    recorder = Recorder(block=set(range(1, 10)))

    async def fn(x: int) -> int:
        if x == 0:  # returns once items 1 and 2 are running
            await wait_until(lambda: len(recorder.started) == 2)
            return 0
        return await recorder(x)

    async with AsyncExecutor(max_workers=3) as executor:
        async for _ in executor.map_iter(fn, range(10)):
            break
        running = sorted(recorder.started)
        assert running[:2] == [1, 2]
        assert recorder.cancelled == []
        await asyncio.sleep(0)  # one loop pass: the cancellations have been delivered
        assert sorted(recorder.cancelled) == running
        assert sorted(recorder.finished) == running
        await asyncio.sleep(0.02)
        assert sorted(recorder.started) == running  # the queued items never started


async def test_closing_map_iter_cancels_its_items_and_never_starts_the_queued_ones() -> None:
    recorder = Recorder(block=set(range(1, 10)))
    async with AsyncExecutor(max_workers=3) as executor:
        iterator = executor.map_iter(recorder, range(10))
        assert await anext(iterator) == 0
        await wait_until(lambda: len(recorder.started) == 4)  # item 0's worker took item 3
        await iterator.aclose()  # type: ignore[attr-defined]
        await wait_until(lambda: len(recorder.finished) == 4)
        assert sorted(recorder.cancelled) == [1, 2, 3]
        await asyncio.sleep(0.02)
        assert sorted(recorder.started) == [0, 1, 2, 3]
        assert await executor.map(square, [4]) == [16]


async def test_cancelling_the_consumer_of_map_iter_cancels_its_items() -> None:
    recorder = Recorder()

    async def consume() -> None:
        async for _ in executor.map_iter(recorder, range(10)):
            pass

    async with AsyncExecutor(max_workers=2) as executor:
        consumer = asyncio.create_task(consume())
        await wait_until(lambda: len(recorder.started) == 2)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await wait_until(lambda: len(recorder.finished) == 2)
        assert sorted(recorder.cancelled) == [0, 1]
        await asyncio.sleep(0.02)
        assert sorted(recorder.started) == [0, 1]


# -- bad calls -----------------------------------------------------------------------------


async def test_map_after_shutdown_raises_executor_shutdown_error() -> None:
    executor = AsyncExecutor()
    await executor.shutdown()
    with pytest.raises(ExecutorShutdownError):
        await executor.map(square, [1])
    with pytest.raises(ExecutorShutdownError):
        async for _ in executor.map_iter(square, [1]):
            pass


async def test_map_of_a_non_callable_is_a_type_error() -> None:
    async with AsyncExecutor() as executor:
        with pytest.raises(TypeError):
            await executor.map(None, [1])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            executor.map_iter("square", [1])  # type: ignore[arg-type]


async def test_map_of_a_non_iterable_is_a_type_error() -> None:
    async with AsyncExecutor() as executor:
        with pytest.raises(TypeError):
            await executor.map(square, 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await executor.map(square, [1, 2], None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            executor.map_iter(square, 5)  # type: ignore[arg-type]


async def test_map_with_negative_retries_is_a_value_error() -> None:
    async with AsyncExecutor() as executor:
        with pytest.raises(ValueError, match="retries"):
            await executor.map(square, [1], retries=-1)
        with pytest.raises(ValueError, match="retry_delay"):
            executor.map_iter(square, [1], retries=1, retry_delay=-0.1)


class Hinted:
    """An input whose length hint is wrong by as much as one likes."""

    def __init__(self, n: int, hint: int) -> None:
        self.n, self.hint = n, hint

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        if self.n == 0:
            raise StopIteration
        self.n -= 1
        return self.n

    def __length_hint__(self) -> int:
        return self.hint


@pytest.mark.parametrize(("n", "hint"), [(10, 1000), (3000, 5), (0, 50), (2500, 0)])
async def test_map_returns_exactly_one_result_per_input_whatever_its_length_hint(
    n: int, hint: int
) -> None:
    # Results go in place in a list sized from the input's hint and grown as needed.
    async def echo(x: int) -> int:
        return x

    async with AsyncExecutor(max_workers=7) as executor:
        assert await executor.map(echo, Hinted(n, hint)) == list(range(n - 1, -1, -1))
        generator = (i for i in range(n))
        assert await executor.map(echo, generator) == list(range(n))
