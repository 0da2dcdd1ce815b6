"""ClusterExecutor: cancellation keeps its meaning across processes.

Items leave marker files (see cluster_items.watched), the one record that every process of
the machine shares: ``started-<i>`` when an item starts, ``cancelled-<i>`` when its
coroutine receives the cancellation, ``done-<i>`` when it ends normally.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import cluster_items as items
import pytest
from _helpers import wait_until

from antflow import ExecutorShutdownError
from antflow.cluster import ClusterExecutor

pytestmark = pytest.mark.timeout(60, method="thread")  # (a signal cannot stop uvloop)

LONG = 30.0  # an item that would outlast the test unless it is cancelled


def markers(path: Path, kind: str) -> set[int]:
    return {int(p.name.split("-")[1]) for p in path.glob(f"{kind}-*")}


async def test_cancelling_a_queued_future_means_it_never_runs(
    cluster_address: str, tmp_path: Path
) -> None:
    async with ClusterExecutor(cluster_address, max_workers=1) as executor:
        # One slot per worker process, both taken by items that run a while.
        blockers = [executor.submit(items.watched, str(tmp_path), i, 1.0) for i in range(2)]
        await wait_until(lambda: len(markers(tmp_path, "started")) == 2, timeout=20)
        queued = [executor.submit(items.watched, str(tmp_path), 10 + i, 0.0) for i in range(4)]
        never_sent = executor.submit(items.watched, str(tmp_path), 20, 0.0)
        assert never_sent.cancel()  # still on the client
        await asyncio.sleep(0.3)  # the others reach the workers and wait for the slot
        for future in queued:
            assert future.cancel()
        assert [await f for f in blockers] == [0, 1]
        assert await executor.submit(items.double, 4) == 8  # the slots are free again
    assert markers(tmp_path, "started") == {0, 1}  # none of the cancelled ones ever ran
    assert executor.stats().cancelled == 5


async def test_cancelling_a_running_future_cancels_its_coroutine_on_the_worker(
    cluster_address: str, tmp_path: Path
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        future = executor.submit(items.watched, str(tmp_path), 1, LONG)
        neighbour = executor.submit(items.watched, str(tmp_path), 2, 0.5)  # same batch
        await wait_until(lambda: markers(tmp_path, "started") == {1, 2}, timeout=20)
        assert future.cancel()
        assert future.cancelled()
        await wait_until(lambda: markers(tmp_path, "cancelled") == {1}, timeout=20)
        assert await neighbour == 2  # only that item was cancelled
    assert markers(tmp_path, "done") == {2}


async def test_a_cancelled_caller_of_map_cancels_its_items_on_the_cluster(
    cluster_address: str, tmp_path: Path
) -> None:
    async with ClusterExecutor(cluster_address, max_workers=2) as executor:
        call = asyncio.ensure_future(
            executor.map(
                items.watched,
                itertools.repeat(str(tmp_path)),
                range(40),
                itertools.repeat(LONG),
                batch_size=2,
            )
        )
        await wait_until(lambda: len(markers(tmp_path, "started")) == 4, timeout=20)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        started = markers(tmp_path, "started")
        await wait_until(lambda: markers(tmp_path, "cancelled") == started, timeout=20)
        await asyncio.sleep(0.3)
        assert markers(tmp_path, "started") == started  # its queued batches never started
        assert executor.stats().running == 0
    assert not markers(tmp_path, "done")


async def test_leaving_a_map_iter_loop_early_cancels_its_items_on_the_cluster(
    cluster_address: str, tmp_path: Path
) -> None:
    async with ClusterExecutor(cluster_address, max_workers=2) as executor:
        delays = itertools.chain([0.0], itertools.repeat(LONG))
        async for value in executor.map_iter(
            items.watched,
            itertools.repeat(str(tmp_path)),
            itertools.count(),
            delays,
            batch_size=1,
        ):
            assert value == 0
            break
        await wait_until(
            lambda: markers(tmp_path, "cancelled") == markers(tmp_path, "started") - {0},
            timeout=20,
        )
        assert executor.stats().running == 0
    assert markers(tmp_path, "done") == {0}


async def test_a_failing_map_cancels_the_rest_of_its_items(
    cluster_address: str, tmp_path: Path
) -> None:
    async with ClusterExecutor(cluster_address, max_workers=2) as executor:
        with pytest.raises(items.ItemError):
            await executor.map(
                items.fail_after_marking, itertools.repeat(str(tmp_path)), range(20), batch_size=2
            )
        started = markers(tmp_path, "started") - {0}
        await wait_until(lambda: markers(tmp_path, "cancelled") >= started, timeout=20)
    assert not markers(tmp_path, "done")


async def test_shutdown_with_cancel_futures_cancels_everything_on_the_cluster(
    cluster_address: str, tmp_path: Path
) -> None:
    executor = ClusterExecutor(cluster_address, max_workers=1)
    await executor.start()
    futures = [executor.submit(items.watched, str(tmp_path), i, LONG) for i in range(6)]
    call = asyncio.ensure_future(
        executor.map(
            items.watched,
            itertools.repeat(str(tmp_path)),
            range(10, 20),
            itertools.repeat(LONG),
            batch_size=1,
        )
    )
    await wait_until(lambda: len(markers(tmp_path, "started")) == 2, timeout=20)
    await asyncio.wait_for(executor.shutdown(wait=True, cancel_futures=True), 30)
    assert all(f.cancelled() for f in futures)
    with pytest.raises(ExecutorShutdownError):
        await call
    assert markers(tmp_path, "cancelled") == markers(tmp_path, "started")
    assert not markers(tmp_path, "done")
    stats = executor.stats()
    assert stats.cancelled == stats.submitted and stats.running == stats.pending == 0


async def test_an_item_that_cancels_itself_ends_cancelled(cluster_address: str) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        future = executor.submit(items.cancel_myself)
        with pytest.raises(asyncio.CancelledError):
            await future
        assert future.cancelled()
        assert await executor.submit(items.double, 2) == 4
        stats = executor.stats()
        assert (stats.cancelled, stats.completed, stats.running, stats.pending) == (1, 1, 0, 0)
