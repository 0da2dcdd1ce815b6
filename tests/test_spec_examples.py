"""The examples of the executor guide (the user's specification), one test each.

Each test makes the same calls as its example and checks what the example promises: the
printed values, input order for map, completion order for as_completed, and so on. Names
that an example leaves undefined (``process_api``, ``flaky_task``, ...) are defined here.
Delays of seconds are scaled down where the example's point survives the scaling (the
3.0 s / 0.5 s comparison keeps its ratio); waits between retries are recorded, not slept.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest

from antflow import AsyncExecutor, AsyncFuture, WaitStrategy


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the waits between retry attempts (tenacity calls asyncio.sleep); skip them."""
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(delay: float, result: Any = None) -> Any:
        sleeps.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", recorded_sleep)
    return sleeps


def make_flaky(failures: int) -> tuple[Any, dict[Any, int]]:
    """A task that fails ``failures`` times per argument, then returns it; and its call counts."""
    calls: dict[Any, int] = {}

    async def flaky_task(arg: Any) -> Any:
        calls[arg] = calls.get(arg, 0) + 1
        if calls[arg] <= failures:
            raise ConnectionError(f"attempt {calls[arg]} for {arg!r} failed")
        return arg

    return flaky_task, calls


# -- Creating an executor ----------------------------------------------------------------


async def test_executor_is_created_directly_or_as_a_context_manager() -> None:
    executor = AsyncExecutor(max_workers=5)
    assert executor.max_workers == 5

    async with AsyncExecutor(max_workers=5) as executor:
        pass
    with pytest.raises(RuntimeError):  # shut down on exit
        executor.submit(asyncio.sleep, 0)


# -- Submitting tasks --------------------------------------------------------------------


async def test_submit_returns_84_for_42(capsys: pytest.CaptureFixture[str]) -> None:
    async def process_data(x: int) -> int:
        await asyncio.sleep(0.1)
        return x * 2

    async with AsyncExecutor(max_workers=3) as executor:
        future = executor.submit(process_data, 42)
        result = await future.result()
        print(result)

    assert capsys.readouterr().out == "84\n"


async def test_shared_semaphore_caps_50_tasks_at_5_of_100_workers() -> None:
    running = peak = 0

    async def process_api(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return i

    api_limit = asyncio.Semaphore(5)
    async with AsyncExecutor(max_workers=100) as executor:
        futures = [executor.submit(process_api, i, semaphore=api_limit) for i in range(50)]
        results = await asyncio.gather(*[f.result() for f in futures])

    assert results == list(range(50))
    assert peak == 5


# -- Mapping -----------------------------------------------------------------------------


async def square(x: int) -> int:
    await asyncio.sleep(0.1)
    return x * x


async def test_map_returns_the_squares_of_range_10_as_a_list_in_input_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with AsyncExecutor(max_workers=5) as executor:
        results = await executor.map(square, range(10))
        print(results)

    assert isinstance(results, list)
    assert capsys.readouterr().out == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"


async def test_map_iter_streams_each_square_in_input_order() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    arrivals: list[tuple[int, float]] = []
    async with AsyncExecutor(max_workers=5) as executor:
        async for result in executor.map_iter(square, range(10)):
            arrivals.append((result, loop.time() - start))

    assert [r for r, _ in arrivals] == [x * x for x in range(10)]
    # Streaming: the first five results arrive a round (0.1 s) before the last five.
    assert arrivals[0][1] < arrivals[-1][1] - 0.05


async def test_map_iter_allows_an_early_exit() -> None:
    started: list[int] = []

    async def record(x: int) -> int:
        started.append(x)
        await asyncio.sleep(0.01)
        return x

    async with AsyncExecutor(max_workers=5) as executor:
        async for result in executor.map_iter(record, itertools.count()):
            if result == 3:
                break
    assert len(started) <= 3 + 2 * 5  # at most the window beyond the exit point


async def test_map_accepts_several_iterables_like_the_builtin_map(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def add(x: int, y: int) -> int:
        return x + y

    async with AsyncExecutor(max_workers=3) as executor:
        results = await executor.map(add, [1, 2, 3], [4, 5, 6])
        print(results)

    assert capsys.readouterr().out == "[5, 7, 9]\n"


# -- as_completed and wait ---------------------------------------------------------------


async def test_as_completed_yields_each_future_when_it_finishes() -> None:
    finished: list[str] = []

    async def fetch_url(url: str) -> str:
        await asyncio.sleep(random.uniform(0.1, 0.5))
        finished.append(url)
        return f"Content from {url}"

    yielded: list[str] = []
    async with AsyncExecutor(max_workers=5) as executor:
        urls = [f"http://example.com/page{i}" for i in range(10)]
        futures = [executor.submit(fetch_url, url) for url in urls]

        async for future in executor.as_completed(futures):
            assert future.done()
            result = await future.result()
            yielded.append(result)

    assert yielded == [f"Content from {url}" for url in finished]
    assert sorted(yielded) == sorted(f"Content from {url}" for url in urls)


async def long_task(i: int) -> int:
    await asyncio.sleep(0.01 * (i % 5))
    return i


async def test_wait_all_completed_then_first_completed_then_first_exception() -> None:
    async with AsyncExecutor(max_workers=5) as executor:
        futures = [executor.submit(long_task, i) for i in range(10)]

        done, pending = await executor.wait(futures, return_when=WaitStrategy.ALL_COMPLETED)
        assert done == set(futures) and pending == set()

        done, pending = await executor.wait(futures, return_when=WaitStrategy.FIRST_COMPLETED)
        assert done == set(futures) and pending == set()

        done, pending = await executor.wait(futures, return_when=WaitStrategy.FIRST_EXCEPTION)
        assert done == set(futures) and pending == set()


async def test_wait_all_completed_is_the_default() -> None:
    async with AsyncExecutor(max_workers=5) as executor:
        futures = [executor.submit(long_task, i) for i in range(10)]
        done, pending = await executor.wait(futures)
    assert done == set(futures) and not pending


async def test_wait_first_completed_returns_when_one_future_has_finished() -> None:
    async def sleep_for(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async with AsyncExecutor(max_workers=5) as executor:
        quick = executor.submit(sleep_for, 0.01)
        slow = executor.submit(sleep_for, 10)
        done, pending = await executor.wait([quick, slow], return_when=WaitStrategy.FIRST_COMPLETED)
        assert done == {quick} and pending == {slow}
        slow.cancel()


async def test_wait_first_exception_returns_when_a_future_raises() -> None:
    async def fail_after(seconds: float) -> None:
        await asyncio.sleep(seconds)
        raise ValueError("boom")

    async def sleep_for(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async with AsyncExecutor(max_workers=5) as executor:
        ok = executor.submit(sleep_for, 0.01)
        broken = executor.submit(fail_after, 0.03)
        slow = executor.submit(sleep_for, 10)
        done, pending = await executor.wait(
            [ok, broken, slow], return_when=WaitStrategy.FIRST_EXCEPTION
        )
        assert done == {ok, broken} and pending == {slow}
        assert isinstance(broken.exception(), ValueError)
        slow.cancel()


# -- map() vs as_completed() -------------------------------------------------------------


async def test_map_keeps_input_order_while_as_completed_yields_in_completion_order() -> None:
    # The guide's 3.0 s / 0.5 s example, scaled down by 10.
    async def process(x: int) -> str:
        delay = 0.3 if x == 0 else 0.05
        await asyncio.sleep(delay)
        return f"Result-{x}"

    loop = asyncio.get_running_loop()
    async with AsyncExecutor(max_workers=5) as executor:
        start = loop.time()
        results = await executor.map(process, range(5))
        map_elapsed = loop.time() - start
        assert results == ["Result-0", "Result-1", "Result-2", "Result-3", "Result-4"]
        assert map_elapsed >= 0.25  # all at once, after the slow one (timers are ms-rounded)

        start = loop.time()
        arrivals: list[tuple[str, float]] = []
        futures = [executor.submit(process, i) for i in range(5)]
        async for future in executor.as_completed(futures):
            arrivals.append((await future.result(), loop.time() - start))

    order = [r for r, _ in arrivals]
    assert sorted(order[:4]) == ["Result-1", "Result-2", "Result-3", "Result-4"]
    assert order[4] == "Result-0"
    assert all(t < 0.25 for _, t in arrivals[:4])  # seen long before the slow one
    assert arrivals[4][1] >= 0.25


async def test_map_keeps_records_aligned_with_their_ids_for_a_bulk_insert() -> None:
    async def fetch_record(record_id: int) -> dict[str, int]:
        await asyncio.sleep(0.001 * (5 - record_id % 5))  # later ids finish first
        return {"id": record_id}

    inserted: list[dict[str, int]] = []

    class Database:
        async def bulk_insert(self, records: list[dict[str, int]]) -> None:
            inserted.extend(records)

    database = Database()
    record_ids = list(range(20))
    async with AsyncExecutor(max_workers=5) as executor:
        records = await executor.map(fetch_record, record_ids)
        await database.bulk_insert(records)

    assert [r["id"] for r in inserted] == record_ids


async def test_as_completed_allows_stopping_at_the_first_match(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Result:
        def __init__(self, source: str, found: bool) -> None:
            self.source, self.found = source, found

        def __str__(self) -> str:
            return self.source

    async def search(source: str) -> Result:
        await asyncio.sleep({"slow-mirror": 1.0, "archive": 0.01}.get(source, 0.02))
        return Result(source, found=source in {"archive", "slow-mirror"})

    sources = ["slow-mirror", "web", "archive", "cache"]
    async with AsyncExecutor(max_workers=5) as executor:
        futures = [executor.submit(search, source) for source in sources]
        async for future in executor.as_completed(futures):
            result = await future.result()
            if result.found:
                print(f"Found: {result}")
                break
        futures[0].cancel()  # the slow one is no longer needed

    assert capsys.readouterr().out == "Found: archive\n"


# -- Retries -----------------------------------------------------------------------------


async def test_submit_with_retries_3_makes_up_to_4_attempts_with_exponential_waits(
    retry_sleeps: list[float],
) -> None:
    flaky_task, calls = make_flaky(failures=3)
    arg = "x"
    async with AsyncExecutor(max_workers=3) as executor:
        future = executor.submit(flaky_task, arg, retries=3, retry_delay=0.5)
        result = await future.result()

    assert result == "x"
    assert calls == {"x": 4}
    assert [d for d in retry_sleeps if d] == [0.5, 1.0, 2.0]


async def test_submit_with_retries_raises_the_last_original_exception(
    retry_sleeps: list[float],
) -> None:
    flaky_task, calls = make_flaky(failures=10)
    async with AsyncExecutor(max_workers=3) as executor:
        future = executor.submit(flaky_task, "x", retries=3, retry_delay=0.5)
        with pytest.raises(ConnectionError, match="attempt 4"):
            await future.result()
    assert calls == {"x": 4}


async def test_map_with_retries_retries_every_item(retry_sleeps: list[float]) -> None:
    flaky_task, calls = make_flaky(failures=2)
    items = list(range(8))
    async with AsyncExecutor(max_workers=5) as executor:
        results = await executor.map(flaky_task, items, retries=3, retry_delay=1.0)

    assert results == items
    assert calls == {i: 3 for i in items}
    assert sorted(d for d in retry_sleeps if d) == [1.0] * 8 + [2.0] * 8


# -- AsyncFuture -------------------------------------------------------------------------


async def test_future_done_and_exception_answer_without_waiting() -> None:
    async def some_task(arg: int) -> int:
        await asyncio.sleep(0.01)
        if arg < 0:
            raise ValueError("negative")
        return arg

    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(some_task, 1)
        assert isinstance(future, AsyncFuture)
        assert not future.done()
        assert future.exception() is None  # pending: no exception yet, and no waiting
        assert await future.result() == 1
        assert future.done() and future.exception() is None

        failing = executor.submit(some_task, -1)
        await executor.wait([failing])
        exc = failing.exception()
        assert isinstance(exc, ValueError) and str(exc) == "negative"


# -- Error handling ----------------------------------------------------------------------


async def test_a_task_exception_is_raised_again_by_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def failing_task(x: int) -> int:
        if x < 0:
            raise ValueError("Negative value not allowed")
        return x * 2

    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(failing_task, -5)
        try:
            await future.result()
        except ValueError as e:
            print(f"Task failed: {e}")

    assert capsys.readouterr().out == "Task failed: Negative value not allowed\n"


# -- Shutdown ----------------------------------------------------------------------------


async def some_task(arg: int) -> int:
    await asyncio.sleep(0.01)
    return arg


async def test_manual_shutdown_after_collecting_a_result() -> None:
    executor = AsyncExecutor(max_workers=3)
    future = executor.submit(some_task, 7)
    assert await future.result() == 7
    await executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        executor.submit(some_task, 8)


async def test_shutdown_wait_true_lets_queued_tasks_complete() -> None:
    executor = AsyncExecutor(max_workers=1)
    futures = [executor.submit(some_task, i) for i in range(4)]
    await executor.shutdown(wait=True)
    assert all(f.done() and not f.cancelled() for f in futures)
    assert [f.exception() for f in futures] == [None] * 4


async def test_shutdown_cancel_futures_cancels_the_tasks_not_started() -> None:
    executor = AsyncExecutor(max_workers=1)
    futures = [executor.submit(some_task, i) for i in range(4)]
    await asyncio.sleep(0)  # the single worker takes the first task
    await executor.shutdown(wait=False, cancel_futures=True)
    assert [f.cancelled() for f in futures] == [False, True, True, True]
    assert await futures[0] == 0


async def test_context_manager_waits_for_the_tasks_on_exit() -> None:
    async def task(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 2

    items = list(range(10))
    async with AsyncExecutor(max_workers=5) as executor:
        results = await executor.map(task, items)
        leftover = executor.submit(task, 100)
    assert results == [x * 2 for x in items]
    assert leftover.done() and await leftover == 200


# -- Timeouts ----------------------------------------------------------------------------


async def test_result_timeout_raises_timeout_error_when_the_task_is_slow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The guide waits 5.0 s; scaled down to 0.05 s against a task of 10 s.
    async def slow_task(arg: int) -> int:
        await asyncio.sleep(10)
        return arg

    async with AsyncExecutor(max_workers=3) as executor:
        future = executor.submit(slow_task, 1)
        try:
            await future.result(timeout=0.05)
        except asyncio.TimeoutError:
            print("Task took too long")
        still_running = not future.done()
        future.cancel()

    assert capsys.readouterr().out == "Task took too long\n"
    assert still_running  # a wait timeout leaves the task running


async def test_result_timeout_returns_the_value_of_a_task_that_finishes_in_time() -> None:
    async with AsyncExecutor(max_workers=3) as executor:
        future = executor.submit(some_task, 3)
        assert await future.result(timeout=5.0) == 3


async def test_map_timeout_raises_timeout_error_when_the_items_take_too_long(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The guide's 10.0 s deadline, scaled down to 0.1 s.
    async def task(x: int) -> int:
        await asyncio.sleep(10 if x == 3 else 0.001)
        return x

    items = list(range(10))
    async with AsyncExecutor(max_workers=5) as executor:
        try:
            results = await executor.map(task, items, timeout=0.1)
            print(results)
        except asyncio.TimeoutError:
            print("One of the tasks timed out")

    assert capsys.readouterr().out == "One of the tasks timed out\n"


async def test_map_timeout_returns_the_results_when_they_are_in_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def task(x: int) -> int:
        await asyncio.sleep(0.001)
        return x * 2

    async with AsyncExecutor(max_workers=5) as executor:
        results = await executor.map(task, range(5), timeout=10.0)
        print(results)

    assert capsys.readouterr().out == "[0, 2, 4, 6, 8]\n"


# -- Performance tips --------------------------------------------------------------------


async def test_worker_counts_of_the_performance_tips() -> None:
    for workers in (50, 10, 5):
        executor = AsyncExecutor(max_workers=workers)
        assert executor.max_workers == workers
        async with executor:
            running = peak = 0

            async def probe(_: int) -> None:
                nonlocal running, peak
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.005)
                running -= 1

            await executor.map(probe, range(2 * workers))
        assert peak == workers


async def test_batching_with_chunks_of_100_returns_every_result_in_order() -> None:
    async def process_item(item: int) -> int:
        await asyncio.sleep(0)
        return item * 10

    async def process_batch(items: list[int]) -> list[int]:
        return [await process_item(item) for item in items]

    def chunks(iterable: Any, size: int) -> Any:
        iterator = iter(iterable)
        while batch := list(itertools.islice(iterator, size)):
            yield batch

    large_item_list = list(range(1_050))
    async with AsyncExecutor(max_workers=5) as executor:
        batches = list(chunks(large_item_list, size=100))
        all_results = await executor.map(process_batch, batches)
        results = [item for batch in all_results for item in batch]

    assert len(batches) == 11 and len(batches[-1]) == 50
    assert results == [item * 10 for item in large_item_list]


# -- Comparison with concurrent.futures --------------------------------------------------


async def test_each_call_of_the_concurrent_futures_comparison_table() -> None:
    async def fn(x: int, y: int = 0) -> int:
        await asyncio.sleep(0.001)
        return x + y

    executor = AsyncExecutor(max_workers=4)
    future = executor.submit(fn, 1, 2)
    assert await future.result() == 3
    assert await executor.map(fn, [1, 2], [10, 20]) == [11, 22]  # a list, no list() needed
    futures = [executor.submit(fn, i) for i in range(3)]
    assert sorted([await f.result() async for f in executor.as_completed(futures)]) == [0, 1, 2]
    assert [x async for x in executor.map_iter(fn, range(3))] == [0, 1, 2]
    await executor.shutdown(wait=True)


# -- Complete example --------------------------------------------------------------------


async def test_complete_example_reports_lengths_in_url_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pages = {"http://example.com": 1256, "http://python.org": 50_000, "http://github.com": 300}

    async def fetch_and_process(url: str) -> int:
        # Stands in for the aiohttp download: the example needs the network.
        await asyncio.sleep(pages[url] / 1_000_000)
        return pages[url]

    async def main() -> None:
        urls = ["http://example.com", "http://python.org", "http://github.com"]
        async with AsyncExecutor(max_workers=10) as executor:
            print("Fetching URLs...")
            results = await executor.map(fetch_and_process, urls)
            for url, length in zip(urls, results):  # noqa: B905 - as in the guide
                print(f"{url}: {length} chars")

    await main()

    assert capsys.readouterr().out.splitlines() == [
        "Fetching URLs...",
        "http://example.com: 1256 chars",
        "http://python.org: 50000 chars",
        "http://github.com: 300 chars",
    ]
