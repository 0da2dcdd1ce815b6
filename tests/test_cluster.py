"""ClusterExecutor: the AsyncExecutor API over the processes of a Dask cluster.

Most tests share one cluster (a scheduler and two workers started with the dask command
line tools, see _cluster_fixtures) and connect to it by address.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import cluster_items as items
import pytest
from _helpers import CountingInput, StallingInput

import antflow
from antflow import AsyncExecutor, AsyncFuture, ExecutorShutdownError, WaitStrategy
from antflow.cluster import ClusterExecutor

pytestmark = pytest.mark.timeout(60, method="thread")  # (a signal cannot stop uvloop)


def test_importing_antflow_does_not_import_dask() -> None:
    code = (
        "import sys, antflow; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


async def test_items_run_on_the_workers_started_with_the_dask_command_line(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        pids = set(await executor.map(items.pid_after, range(64), itertools.repeat(0.02)))
    assert os.getpid() not in pids
    assert len(pids) == 2  # both worker processes ran items


async def test_submit_returns_a_pending_future_that_the_cluster_resolves(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        future = executor.submit(items.double, 21)
        assert isinstance(future, AsyncFuture)
        assert not future.done()
        assert await future.result() == 42
        assert future.done() and not future.cancelled() and future.exception() is None
        assert await executor.submit(items.add, 1, y=2) == 3


async def test_submit_works_before_the_executor_is_started(cluster_address: str) -> None:
    executor = ClusterExecutor(cluster_address)
    futures = [executor.submit(items.double, i) for i in range(5)]
    assert [await f for f in futures] == [0, 2, 4, 6, 8]
    await executor.shutdown()


async def test_futures_support_everything_an_async_future_does(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        slow = executor.submit(items.sleep_then, 7, 0.5)
        with pytest.raises(asyncio.TimeoutError):
            await slow.result(timeout=0.05)
        assert not slow.done() and not slow.cancelled()  # a wait timeout cancels nothing
        seen: list[AsyncFuture[int]] = []
        slow.add_done_callback(seen.append)
        assert await slow.result(timeout=10) == 7
        await asyncio.sleep(0)
        assert seen == [slow]

        failed = executor.submit(items.fail, 1)
        with pytest.raises(items.ItemError):
            await failed
        assert isinstance(failed.exception(), items.ItemError)

        cancelled = executor.submit(items.sleep_then, 1, 10)
        assert cancelled.cancel()
        assert cancelled.cancelled() and cancelled.done()
        assert not cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            cancelled.exception()
        with pytest.raises(asyncio.CancelledError):
            await cancelled


async def test_antflow_as_completed_and_wait_accept_cluster_futures(cluster_address: str) -> None:
    async with (
        ClusterExecutor(cluster_address) as cluster,
        AsyncExecutor(max_workers=2) as local,
    ):
        slow = cluster.submit(items.sleep_then, 1, 0.6)
        quick = cluster.submit(items.sleep_then, 2, 0.0)
        here = local.submit(asyncio.sleep, 0.3, result=3)
        order = [await f async for f in antflow.as_completed([slow, quick, here], timeout=20)]
        assert order == [2, 3, 1]

        first = cluster.submit(items.sleep_then, 4, 5.0)
        broken = cluster.submit(items.fail, 5)
        done, pending = await antflow.wait(
            [first, broken], timeout=20, return_when=WaitStrategy.FIRST_EXCEPTION
        )
        assert done == {broken} and pending == {first}
        first.cancel()


async def test_executor_as_completed_and_wait_work_on_its_futures(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        futures = [executor.submit(items.sleep_then, i, 0.3 - 0.1 * i) for i in range(3)]
        order = [await f async for f in executor.as_completed(futures, timeout=20)]
        assert order == [2, 1, 0]
        done, pending = await executor.wait(futures, timeout=20)
        assert done == set(futures) and not pending


async def test_map_returns_results_in_input_order(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        delays = [0.2 if i % 7 == 0 else 0.0 for i in range(50)]
        assert await executor.map(items.sleep_then, range(50), delays) == list(range(50))
        assert await executor.map(items.add, [1, 2, 3], [4, 5, 6, 7]) == [5, 7, 9]
        assert await executor.map(items.double, []) == []

        async def numbers():  # an async iterable input
            for i in range(5):
                await asyncio.sleep(0)
                yield i

        assert await executor.map(items.double, numbers()) == [0, 2, 4, 6, 8]


async def test_map_iter_yields_in_input_order_and_reads_an_endless_input_lazily(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        source = CountingInput(None)
        results = []
        async for value in executor.map_iter(items.double, source, window=3, batch_size=10):
            results.append(value)
            if len(results) == 25:
                break
        assert results == [2 * i for i in range(25)]
        # At most the window of batches was read beyond what was consumed.
        assert source.read <= 30 + 3 * 10
        assert executor.stats().running == 0


async def test_items_travel_in_batches_not_one_dask_task_per_item(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        assert await executor.map(items.double, range(2000)) == [2 * i for i in range(2000)]
        tasks = await _dask_tasks(executor)
        assert 2 <= tasks < 2000 // 4  # adaptive: small batches first, then larger ones
        assert await executor.map(items.double, range(100), batch_size=25) == [
            2 * i for i in range(100)
        ]
        assert await _dask_tasks(executor) == tasks + 4


async def test_submits_made_in_one_loop_iteration_travel_together(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        futures = [executor.submit(items.double, i) for i in range(40)]
        assert [await f for f in futures] == [2 * i for i in range(40)]
        assert await _dask_tasks(executor) <= 40 // 4  # a few batches, not a task per item


async def _dask_tasks(executor: ClusterExecutor) -> int:
    """How many Dask tasks this executor has started (its task keys end with its id)."""

    def count(dask_scheduler, suffix):  # type: ignore[no-untyped-def]
        return sum(
            1
            for event in dask_scheduler.transition_log
            if str(event[0]).endswith(suffix) and event[2] == "processing"
        )

    return int(await executor.client.run_on_scheduler(count, suffix=executor._id[:12]))


async def test_max_workers_bounds_the_items_running_in_each_worker_process(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address, max_workers=3) as executor:
        token = os.urandom(8).hex()
        seen = await executor.map(
            items.count_concurrency,
            itertools.repeat(token, 60),
            itertools.repeat(0.05),
            batch_size=5,
        )
    peaks: dict[int, int] = {}
    for pid, peak in seen:
        peaks[pid] = max(peaks.get(pid, 0), peak)
    assert max(peaks.values()) == 3  # several batches ran at once, yet never more than 3


async def test_an_item_exception_reaches_the_caller_with_its_type_and_message(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        with pytest.raises(items.ItemError, match="broken 3"):
            await executor.submit(items.fail, 3, message="broken")
        with pytest.raises(items.ItemError, match="item 5 failed"):
            await executor.map(items.fail_at, range(10), itertools.repeat(5))
        with pytest.raises(TypeError, match="not_async"):
            await executor.submit(items.not_async, 1)  # not awaitable, named


async def test_a_non_iterable_input_is_refused_naming_the_method(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        with pytest.raises(TypeError, match=r"^map\(\) arguments must be iterables"):
            await executor.map(items.double, 5)
        with pytest.raises(TypeError, match=r"^map_iter\(\) arguments must be iterables"):
            executor.map_iter(items.double, 5)


async def test_map_iter_raises_an_item_exception_when_it_reaches_it(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        got = []
        with pytest.raises(items.ItemError, match="item 5 failed"):
            async for value in executor.map_iter(
                items.fail_at, range(10), itertools.repeat(5), batch_size=3
            ):
                got.append(value)
        assert got == [0, 1, 2, 3, 4]


async def test_retries_run_on_the_worker(cluster_address: str, tmp_path) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        assert await executor.submit(items.flaky, str(tmp_path), 2, retries=2, retry_delay=0) == 3
        assert executor.stats().retried == 2
        assert await _dask_tasks(executor) == 1  # three attempts, all in one task
        (tmp_path / "attempts").unlink()
        with pytest.raises(items.ItemError, match="attempt 2 failed"):
            await executor.map(items.flaky, [str(tmp_path)], [5], retries=1, retry_delay=0)


async def test_task_timeout_runs_on_the_worker(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await executor.submit(items.sleep_then, 1, 30, task_timeout=0.2)
        with pytest.raises(asyncio.TimeoutError):
            await executor.map(items.sleep_then, [1, 2], [0, 30], task_timeout=0.2)
        assert loop.time() - start < 20
    async with ClusterExecutor(cluster_address, task_timeout=0.2) as executor:
        with pytest.raises(asyncio.TimeoutError):
            await executor.submit(items.sleep_then, 1, 30)
        assert await executor.submit(items.sleep_then, 1, 0.5, task_timeout=5) == 1


async def test_map_timeout_is_a_deadline_for_the_whole_call(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        with pytest.raises(asyncio.TimeoutError):
            await executor.map(items.sleep_then, range(4), itertools.repeat(30), timeout=0.3)
        assert await executor.map(items.double, range(3), timeout=20) == [0, 2, 4]


async def test_stats_count_every_item(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        await executor.map(items.double, range(30))
        with pytest.raises(items.ItemError):
            await executor.submit(items.fail, 1)
        f = executor.submit(items.sleep_then, 1, 10)
        f.cancel()
        stats = executor.stats()
    assert (stats.submitted, stats.completed, stats.failed, stats.cancelled) == (32, 30, 1, 1)
    assert stats.pending == stats.running == 0


async def test_shutdown_waits_for_accepted_work_then_refuses_new_work(
    cluster_address: str,
) -> None:
    executor = ClusterExecutor(cluster_address)
    futures = [executor.submit(items.sleep_then, i, 0.2) for i in range(3)]
    await executor.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [await f for f in futures] == [0, 1, 2]
    with pytest.raises(ExecutorShutdownError):
        executor.submit(items.double, 1)
    with pytest.raises(RuntimeError):
        await executor.map(items.double, [1])
    await executor.shutdown()  # a second shutdown is harmless


async def test_a_semaphore_is_refused_because_it_cannot_cross_processes(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        with pytest.raises(TypeError, match="semaphore"):
            executor.submit(items.double, 1, semaphore=asyncio.Semaphore(2))
        assert executor.stats().submitted == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_workers": 0}, ValueError),
        ({"max_workers": "3"}, TypeError),
        ({"max_workers": True}, TypeError),
        ({"task_timeout": 0}, ValueError),
        ({"task_timeout": "1"}, TypeError),
        ({"name": 3}, TypeError),
    ],
)
def test_bad_constructor_values_raise_the_same_errors_as_async_executor(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        AsyncExecutor(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(error):
        ClusterExecutor(**kwargs)  # type: ignore[arg-type]


def test_bad_cluster_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="processes"):
        ClusterExecutor(processes=0)
    with pytest.raises(ValueError, match="processes"):
        ClusterExecutor("tcp://127.0.0.1:8786", processes=2)
    with pytest.raises(TypeError, match="client"):
        ClusterExecutor(client="tcp://127.0.0.1:8786")  # type: ignore[arg-type]


async def test_bad_call_values_raise_the_same_errors_as_async_executor(
    cluster_address: str,
) -> None:
    calls = [
        lambda e: e.submit(items.double, 1, retries=-1),
        lambda e: e.submit(items.double, 1, retry_delay=-1),
        lambda e: e.submit(items.double, 1, task_timeout=0),
        lambda e: e.submit(42),
        lambda e: e.map(items.double, [1], timeout=-1),
        lambda e: e.map(items.double, [1], window=0),
        lambda e: e.map(items.double, 5),
        lambda e: e.map_iter(items.double, [1], window=0),
    ]
    async with (
        ClusterExecutor(cluster_address) as cluster,
        AsyncExecutor() as local,
    ):
        for call in calls:
            with pytest.raises(Exception) as expected:
                result = call(local)
                if asyncio.iscoroutine(result):
                    await result
            with pytest.raises(expected.type):
                result = call(cluster)
                if asyncio.iscoroutine(result):
                    await result
        with pytest.raises(ValueError, match="batch_size"):
            await cluster.map(items.double, [1], batch_size=0)
        with pytest.raises(ValueError, match="batch_size"):
            cluster.map_iter(items.double, [1], batch_size=1.5)


async def test_submitted_futures_end_as_each_item_finishes_not_with_their_batch(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        # 32 submits of one loop iteration: a few batches of several items each.
        futures = [executor.submit(items.sleep_then, i, 3.0 if i == 0 else 0.0) for i in range(32)]
        quick = futures[1]  # in the same batch as the slow futures[0]
        await asyncio.wait_for(quick, 2.5)
        assert not futures[0].done()
        assert await futures[0] == 0
        assert await _dask_tasks(executor) < 32


async def test_shutdown_without_wait_returns_at_once_and_the_work_still_ends(
    cluster_address: str,
) -> None:
    executor = ClusterExecutor(cluster_address)
    future = executor.submit(items.sleep_then, 1, 0.5)
    await executor.shutdown(wait=False)
    assert not future.done()
    assert await asyncio.wait_for(future, 20) == 1
    await asyncio.wait_for(executor.shutdown(), 20)  # waits for the disconnection
    assert executor.client.status == "closed"


async def test_map_iter_timeout_is_a_deadline_for_the_whole_iteration(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        got = []
        with pytest.raises(asyncio.TimeoutError):
            async for value in executor.map_iter(
                items.sleep_then, range(4), [0, 30, 30, 30], timeout=0.5, batch_size=1
            ):
                got.append(value)
        assert got == [0]
        assert executor.stats().running == 0


def test_an_executor_is_bound_to_the_loop_of_its_first_use(cluster_address: str) -> None:
    executor = ClusterExecutor(cluster_address)

    async def use() -> int:
        return await executor.submit(items.double, 2)

    async def close() -> None:
        await executor.shutdown()

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(use()) == 4
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(use())
        loop.run_until_complete(close())
    finally:
        loop.close()


async def test_map_reads_its_input_lazily_with_a_bounded_window_of_batches(
    cluster_address: str,
) -> None:
    source = CountingInput(400)
    ahead: list[int] = []  # how far the input was read beyond the items that ended

    async with ClusterExecutor(cluster_address) as executor:

        async def watch() -> None:
            while True:
                stats = executor.stats()
                ahead.append(source.read - stats.completed - stats.failed)
                await asyncio.sleep(0.005)

        watcher = asyncio.ensure_future(watch())
        try:
            results = await executor.map(
                items.sleep_then, source, itertools.repeat(0.01), window=2, batch_size=10
            )
        finally:
            watcher.cancel()
    assert results == list(range(400))
    assert len(ahead) > 10 and max(ahead) <= 2 * 10 + 10  # the window, and one batch read


def test_batch_size_starts_small_then_aims_at_tens_of_milliseconds_of_work() -> None:
    from antflow.cluster._batching import FIRST_SIZE, LARGEST_SIZE, TARGET_SECONDS, BatchSizer

    sizer = BatchSizer(None)
    assert sizer.size == FIRST_SIZE
    sizes = []
    for _ in range(10):  # items of 10 µs each
        sizer.observe(sizer.size, sizer.size * 10e-6)
        sizes.append(sizer.size)
    assert sizes == sorted(sizes) and sizes[0] <= 8 * FIRST_SIZE  # it grows, gradually
    assert sizes[-1] == min(LARGEST_SIZE, int(TARGET_SECONDS / 10e-6))
    sizer.observe(sizer.size, sizer.size * 0.1)  # items became slow: 100 ms each
    assert sizer.size == 1
    fixed = BatchSizer(7)
    fixed.observe(7, 100.0)
    assert fixed.size == 7


async def test_map_and_map_iter_give_every_result_for_any_window_and_batch_size(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        for n, window, batch_size in itertools.product((0, 1, 50), (1, 2, None), (1, 3, None)):
            inputs = range(n)
            expected = [2 * i for i in inputs]
            got = await asyncio.wait_for(
                executor.map(items.double, inputs, window=window, batch_size=batch_size), 20
            )
            assert got == expected, (n, window, batch_size)

            async def collect(inputs=inputs, window=window, batch_size=batch_size):  # type: ignore[no-untyped-def]
                return [
                    v
                    async for v in executor.map_iter(
                        items.double, inputs, window=window, batch_size=batch_size
                    )
                ]

            assert await asyncio.wait_for(collect(), 20) == expected, (n, window, batch_size)
        stats = executor.stats()
    assert stats.completed == stats.submitted and stats.running == stats.pending == 0


# -- an async input that stalls holds nothing up (it is read by a task of the call's own) ---


async def test_map_iter_hands_over_a_batch_while_its_async_input_stalls(
    cluster_address: str,
) -> None:
    stalls = StallingInput(first=1)
    got = []

    async def consume(executor: ClusterExecutor) -> None:
        async for value in executor.map_iter(items.double, stalls(), batch_size=1):
            got.append(value)
            stalls.go.set()  # the input's next item comes only once a result is here

    async with ClusterExecutor(cluster_address) as executor:
        try:
            await asyncio.wait_for(consume(executor), 10)
        finally:
            stalls.go.set()  # (whatever happened, nothing waits for the input any more)
    assert got == [0, 2]
    assert stalls.closed


@pytest.mark.parametrize("method", ["map", "map_iter"])
async def test_the_deadline_ends_a_cluster_call_while_its_async_input_stalls(
    cluster_address: str, method: str
) -> None:
    stalls = StallingInput(first=2)  # then never another item
    async with ClusterExecutor(cluster_address) as executor:

        async def call() -> list[int]:
            if method == "map":
                return await executor.map(items.double, stalls(), timeout=0.2, batch_size=1)
            iterator = executor.map_iter(items.double, stalls(), timeout=0.2, batch_size=1)
            return [value async for value in iterator]

        task = asyncio.create_task(call())
        try:
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done == {task}, "the caller still waits for its input"
            assert isinstance(task.exception(), asyncio.TimeoutError)
            assert stalls.closed  # the pending read was cancelled, the input closed
        finally:
            stalls.go.set()
            await asyncio.wait({task}, timeout=10)


async def test_an_async_input_at_any_pace_gives_every_result_in_order(
    cluster_address: str,
) -> None:
    # Pauses around the linger (none, shorter, longer), bursts, windows of 1 - 3 batches
    # and fixed or adaptive batch sizes: batches leave full, on their linger timer, or
    # due once the window has room, and no item is lost, doubled or reordered.
    rng = random.Random(2026)

    async def paced(pauses: list[float]) -> AsyncIterator[int]:
        for i, pause in enumerate(pauses):
            if pause:
                await asyncio.sleep(pause)
            yield i

    async with ClusterExecutor(cluster_address) as executor:
        for _ in range(12):
            n = rng.randint(1, 40)
            pauses = [rng.choice([0.0, 0.0, 0.001, 0.004, 0.008, 0.02]) for _ in range(n)]
            window = rng.choice([1, 2, 3])
            batch_size = rng.choice([None, 1, 3, 100])
            expected = [2 * i for i in range(n)]
            schedule = (n, window, batch_size)
            got = await asyncio.wait_for(
                executor.map(items.double, paced(pauses), window=window, batch_size=batch_size),
                20,
            )
            assert got == expected, schedule

            async def collect(pauses: list[float] = pauses, **kw: Any) -> list[int]:
                return [v async for v in executor.map_iter(items.double, paced(pauses), **kw)]

            got = await asyncio.wait_for(collect(window=window, batch_size=batch_size), 20)
            assert got == expected, schedule
        stats = executor.stats()
    assert stats.completed == stats.submitted and stats.running == stats.pending == 0


@pytest.mark.parametrize("batch_size", [None, 100])
async def test_a_slow_streams_item_leaves_without_waiting_for_its_batch_to_fill(
    cluster_address: str, batch_size: int | None
) -> None:
    stalls = StallingInput(first=1)  # one item, then nothing until a result is back
    got = []

    async def consume(executor: ClusterExecutor) -> None:
        async for value in executor.map_iter(items.double, stalls(), batch_size=batch_size):
            got.append(value)
            stalls.go.set()

    async with ClusterExecutor(cluster_address) as executor:
        try:
            await asyncio.wait_for(consume(executor), 10)
        finally:
            stalls.go.set()
    assert got == [0, 2]
    assert stalls.closed


async def test_a_lingering_batch_waits_for_room_in_the_window_then_leaves(
    cluster_address: str,
) -> None:
    # Item 0 is out (0.5 s on its worker) and fills window=1 when item 1 has waited its
    # linger: item 1 must leave once the caller takes item 0's batch, although the input
    # gives nothing more until item 1's result is back.
    go = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 0
        await asyncio.sleep(0.05)
        yield 1
        await go.wait()
        yield 2

    got = []

    async def consume(executor: ClusterExecutor) -> None:
        delays = [0.5, 0.0, 0.0]
        async for value in executor.map_iter(
            items.sleep_then, source(), delays, window=1, batch_size=100
        ):
            got.append(value)
            if value == 1:
                go.set()

    async with ClusterExecutor(cluster_address) as executor:
        try:
            await asyncio.wait_for(consume(executor), 10)
        finally:
            go.set()
    assert got == [0, 1, 2]


async def test_aclose_of_a_cluster_map_iter_returns_once_its_input_is_closed(
    cluster_address: str,
) -> None:
    stalls = StallingInput(first=1)
    async with ClusterExecutor(cluster_address) as executor:
        iterator = executor.map_iter(items.double, stalls(), batch_size=1)
        try:
            assert await asyncio.wait_for(iterator.__anext__(), 10) == 0
            await asyncio.wait_for(iterator.aclose(), 10)
            assert stalls.closed
        finally:
            stalls.go.set()
