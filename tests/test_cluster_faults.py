"""ClusterExecutor: connections, the embedded cluster, dead workers and unpicklable work."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import _cluster_fixtures
import cluster_items as items
import dask.config
import distributed
import psutil
import pytest
from _helpers import wait_until

from antflow.cluster import ClusterExecutor

pytestmark = pytest.mark.timeout(120, method="thread")  # (a signal cannot stop uvloop)


@pytest.fixture
def importable_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes of an embedded cluster import cluster_items by name, like ours."""
    monkeypatch.setenv("PYTHONPATH", _cluster_fixtures.worker_env()["PYTHONPATH"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_scheduler_raises_a_clear_error_naming_the_address() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    loop = asyncio.get_running_loop()
    start = loop.time()
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        executor = ClusterExecutor(address)
        with pytest.raises(ConnectionError, match=address):
            await asyncio.wait_for(executor.start(), 30)
        with pytest.raises(ConnectionError, match=address):
            executor.submit(items.double, 1)
        await executor.shutdown()
    assert loop.time() - start < 20


async def test_a_function_that_cannot_be_pickled_fails_with_a_type_error_naming_it(
    cluster_address: str,
) -> None:
    lock = threading.Lock()

    async def holds_a_lock(x: int) -> int:
        with lock:
            return x

    async with ClusterExecutor(cluster_address) as executor:
        good = executor.submit(items.double, 1)
        bad = executor.submit(holds_a_lock, 1)  # the same batch as `good`
        with pytest.raises(TypeError, match="holds_a_lock"):
            await bad
        assert await good == 2
        with pytest.raises(TypeError, match="holds_a_lock"):
            await executor.map(holds_a_lock, range(3))
        assert await executor.map(items.double, range(3)) == [0, 2, 4]  # still working


async def test_an_argument_that_cannot_be_pickled_fails_with_a_type_error_naming_it(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        with socket.socket() as sock:
            with pytest.raises(TypeError, match=r"argument 0 \(<socket.*of identity"):
                await executor.submit(items.identity, sock)
            with pytest.raises(TypeError, match=r"argument 0 .* for input 2"):
                await executor.map(items.identity, [1, 2, sock, 4])
        assert await executor.submit(items.identity, "fine") == "fine"


async def test_an_argument_that_cannot_be_pickled_in_a_lingering_batch_fails_the_call(
    cluster_address: str,
) -> None:
    # The input stalls after its second item, so their batch leaves on its linger timer,
    # outside the feeder's task: the pickling error must still reach the caller.
    go = asyncio.Event()

    async def source(sock: socket.socket) -> AsyncIterator[object]:
        yield 1
        yield sock
        await go.wait()  # (never set: the call fails first, and its end closes the input)
        yield 3

    async with ClusterExecutor(cluster_address) as executor:
        with socket.socket() as sock, pytest.raises(TypeError, match=r"argument 0 .* for input 1"):
            await asyncio.wait_for(executor.map(items.identity, source(sock), batch_size=100), 10)
        assert await executor.map(items.double, range(3)) == [0, 2, 4]  # still working


async def test_a_client_passed_in_is_used_and_left_open(cluster_address: str) -> None:
    async with distributed.Client(cluster_address, asynchronous=True) as client:
        async with ClusterExecutor(client=client) as executor:
            assert executor.client is client
            assert await executor.map(items.double, range(4)) == [0, 2, 4, 6]
        assert client.status == "running"
        assert await client.submit(sum, [1, 2]) == 3


async def test_shutdown_leaves_a_cluster_reached_by_address_running(
    cluster_address: str,
) -> None:
    async with ClusterExecutor(cluster_address) as executor:
        assert await executor.submit(items.double, 1) == 2
    assert executor.client.status == "closed"
    async with distributed.Client(cluster_address, asynchronous=True) as client:
        assert len(await client.nthreads()) == _cluster_fixtures.WORKERS


async def test_the_embedded_cluster_runs_items_on_uvloop_and_leaves_no_process_behind(
    importable_items: None,
) -> None:
    before = set(psutil.Process().children(recursive=True))
    async with ClusterExecutor(processes=1) as executor:
        pids = list((await executor.client.run(os.getpid)).values())
        assert len(pids) == 1 and pids[0] != os.getpid()
        assert await executor.submit(items.where) == pids[0]
        assert await executor.submit(items.loop_name) == "uvloop.Loop"
        assert await executor.map(items.double, range(5)) == [0, 2, 4, 6, 8]
        started = {
            p
            for p in set(psutil.Process().children(recursive=True)) - before
            # (multiprocessing's resource tracker serves the test process for its life)
            if "resource_tracker" not in " ".join(p.cmdline())
        }
        assert pids[0] in {p.pid for p in started}
    await wait_until(lambda: not any(p.is_running() for p in started), timeout=20)


async def test_a_worker_process_that_dies_mid_batch_costs_only_time(
    importable_items: None, tmp_path: Path
) -> None:
    async with ClusterExecutor(processes=2, max_workers=4) as executor:
        pids = list((await executor.client.run(os.getpid)).values())
        call = asyncio.ensure_future(
            executor.map(
                items.mark,
                itertools.repeat(str(tmp_path)),
                range(40),
                itertools.repeat(0.05),
                batch_size=4,
            )
        )
        futures = [executor.submit(items.mark, str(tmp_path), 100 + i, 0.3) for i in range(16)]
        endings: list[object] = []
        for future in futures:
            future.add_done_callback(endings.append)
        await wait_until(lambda: len(list(tmp_path.glob("done-*"))) >= 4, timeout=30)
        os.kill(pids[0], signal.SIGKILL)
        results = await asyncio.wait_for(call, 60)
        assert results == list(range(40))  # every result, in order
        assert [await f for f in futures] == [100 + i for i in range(16)]
        await asyncio.sleep(0.1)
        assert sorted(map(id, endings)) == sorted(map(id, futures))  # each ended once
        # The nanny started a replacement and the executor keeps working.
        assert await executor.map(items.double, range(8)) == [2 * i for i in range(8)]


async def test_the_count_of_the_clusters_threads_is_taken_again_only_once_it_is_old(
    cluster_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from antflow.cluster import _executor as cluster_executor

    counted: list[int] = []
    real = cluster_executor.count_threads

    async def counting(client: object) -> int:
        counted.append(1)
        return await real(client)

    monkeypatch.setattr(cluster_executor, "count_threads", counting)
    async with ClusterExecutor(cluster_address) as executor:
        assert len(counted) == 1  # on connecting
        assert await executor.map(items.double, range(3)) == [0, 2, 4]
        assert len(counted) == 1  # the count is fresh: not taken again
        executor._threads_checked -= cluster_executor.RECOUNT_SECONDS + 1  # now it is old
        assert await executor.map(items.double, range(3)) == [0, 2, 4]
        assert len(counted) == 2
