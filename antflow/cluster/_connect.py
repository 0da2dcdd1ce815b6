"""Reaching a Dask cluster: by address, or by starting the embedded LocalCluster."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import dask.config
import dask.utils
import distributed

__all__ = ["THREADS_PER_WORKER", "connect", "count_threads", "open_client", "start_embedded"]

# distributed is only partly typed: its entry points, as Any at the boundary.
_Client: Any = distributed.Client
_LocalCluster: Any = distributed.LocalCluster

THREADS_PER_WORKER = 4  # batches one embedded worker process runs at once


def connect_timeout() -> float:
    """Dask's connect timeout (``distributed.comm.timeouts.connect``), in seconds."""
    value = dask.config.get("distributed.comm.timeouts.connect")
    return float(dask.utils.parse_timedelta(value, default="seconds"))


async def open_client(address: str) -> Any:
    """An asynchronous Client of the scheduler at ``address``; a ConnectionError naming
    the address if it cannot be reached within the connect timeout."""
    timeout = connect_timeout()
    try:
        return await asyncio.wait_for(
            _Client(address, asynchronous=True, timeout=timeout), timeout + 5
        )
    except (OSError, asyncio.TimeoutError) as exc:
        raise ConnectionError(
            f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s "
            f"(distributed.comm.timeouts.connect): {exc}"
        ) from exc


async def start_embedded(processes: int | None) -> tuple[Any, Any]:
    """Start a LocalCluster of ``processes`` worker processes on 127.0.0.1 (default: one
    per core) whose workers run their event loop on uvloop where it is installed, and a
    Client of it; return ``(cluster, client)``."""
    config: dict[str, Any] = {}
    try:
        import uvloop  # noqa: F401

        config["distributed.admin.event-loop"] = "uvloop"  # the workers' loop
    except ImportError:  # pragma: no cover - uvloop is installed where it can be
        pass
    with dask.config.set(config):
        cluster = await _LocalCluster(
            n_workers=processes or os.cpu_count() or 1,
            threads_per_worker=THREADS_PER_WORKER,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # (its HTTP server, which also serves /health, then takes a free port)
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            asynchronous=True,
        )
    try:
        client = await _Client(cluster, asynchronous=True)
    except BaseException:
        await cluster.close()
        raise
    return cluster, client


async def count_threads(client: Any) -> int:
    """How many tasks the cluster runs at once: the sum of its workers' threads."""
    nthreads = await client.nthreads()
    return max(1, int(sum(nthreads.values())))


async def connect(client: Any, address: str | None, processes: int | None) -> tuple[Any, Any]:
    """Reach the cluster that a ClusterExecutor was given: its ``client`` (checked, and
    awaited if it has not started), else the scheduler at ``address``, else a new embedded
    cluster of ``processes`` workers. Return ``(cluster, client)``, where ``cluster`` is the
    embedded LocalCluster, or None when the cluster is not the executor's own."""
    if client is not None:
        if not client.asynchronous:
            raise TypeError(
                "client= must be an asynchronous distributed.Client "
                "(Client(..., asynchronous=True)) of this event loop"
            )
        if client.status != "running":
            await client
        return None, client
    if address is not None:
        return None, await open_client(address)
    return await start_embedded(processes)
