"""Workloads, contenders and event loops of the antflow benchmark (see perf/README.md).

This module is imported by the pyperf worker processes, both by the repository's interpreter
(antflow under development) and by the peer's own virtual environment (antflow 0.10.0 from the
package index, which has the same import name). It must therefore never import antflow at module
level and must run on Python 3.10+ with nothing but the standard library (uvloop is optional).

Every contender is a function ``body(fn, n) -> list`` (a coroutine function for the async
contenders, a plain function for the thread pool) that runs ``fn`` over ``range(n)`` with at
most ``MAX_WORKERS`` in flight and returns the n results: in input order when the contender's
``ordered`` flag is set, in completion order otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

MAX_WORKERS = 100

# ----------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------

FULL_SIZES = {
    "noop": 100_000,
    "yield": 100_000,
    "io": 10_000,
    "as_completed": 10_000,
    "memory": 1_000_000,
}
QUICK_SIZES = {
    "noop": 5_000,
    "yield": 5_000,
    "io": 1_000,
    "as_completed": 2_000,
    "memory": 100_000,
}
# antflow 0.10.0's as_completed is super-linear: its size is capped at this many futures (the
# table shows the size measured, and per-task figures are compared at that size).
PEER_AS_COMPLETED_CAP = 10_000
# as_completed must grow linearly: antflow's is also measured at this multiple of the size.
AS_COMPLETED_SCALE = 10

WORKLOADS = ("noop", "yield", "io", "as_completed", "memory")


def quick() -> bool:
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def sizes() -> dict[str, int]:
    return dict(QUICK_SIZES if quick() else FULL_SIZES)


# ----------------------------------------------------------------------------------------------
# The tasks: async for the event-loop contenders, their synchronous twins for the thread pool
# ----------------------------------------------------------------------------------------------


async def task_noop(x: int) -> int:
    return x


async def task_yield(x: int) -> int:
    await asyncio.sleep(0)
    return x


async def task_io(x: int) -> int:
    await asyncio.sleep(0.001)
    return x


def sync_noop(x: int) -> int:
    return x


def sync_yield(x: int) -> int:
    time.sleep(0)
    return x


def sync_io(x: int) -> int:
    time.sleep(0.001)
    return x


ASYNC_TASKS: dict[str, Callable[[int], Awaitable[int]]] = {
    "noop": task_noop,
    "yield": task_yield,
    "io": task_io,
    "as_completed": task_noop,
    "memory": task_noop,
}
SYNC_TASKS: dict[str, Callable[[int], int]] = {
    "noop": sync_noop,
    "yield": sync_yield,
    "io": sync_io,
    "as_completed": sync_noop,
    "memory": sync_noop,
}


# ----------------------------------------------------------------------------------------------
# Event loops
# ----------------------------------------------------------------------------------------------

LOOPS = ("asyncio", "uvloop")
NO_LOOP = "-"  # the thread pool runs without an event loop


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of the named kind, made explicitly (never through a global policy)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name == "asyncio":
        if sys.platform == "win32":
            return asyncio.ProactorEventLoop()
        return asyncio.SelectorEventLoop()
    raise ValueError(f"unknown loop {name!r}")


# ----------------------------------------------------------------------------------------------
# Contenders
# ----------------------------------------------------------------------------------------------


def _antflow() -> Any:
    import antflow

    return antflow


async def antflow_submit(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        futures = [ex.submit(fn, x) for x in range(n)]
        return [await f.result() for f in futures]


async def antflow_map(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        return list(await ex.map(fn, range(n)))


async def antflow_map_iter(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        return [r async for r in ex.map_iter(fn, range(n))]


async def antflow_as_completed(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        futures = [ex.submit(fn, x) for x in range(n)]
        return [await f.result() async for f in ex.as_completed(futures)]


async def antflow_map_iter_drain(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    """map_iter over a generator, results dropped: what a batch job over huge input does."""
    count = 0
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        async for _ in ex.map_iter(fn, (x for x in range(n))):
            count += 1
    return [count]


async def gather_semaphore(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    sem = asyncio.Semaphore(MAX_WORKERS)

    async def guarded(x: int) -> int:
        async with sem:
            return await fn(x)

    return list(await asyncio.gather(*(guarded(x) for x in range(n))))


async def taskgroup_semaphore(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    sem = asyncio.Semaphore(MAX_WORKERS)

    async def guarded(x: int) -> int:
        async with sem:
            return await fn(x)

    async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
        tasks = [tg.create_task(guarded(x)) for x in range(n)]
    return [t.result() for t in tasks]


async def asyncio_as_completed(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    sem = asyncio.Semaphore(MAX_WORKERS)

    async def guarded(x: int) -> int:
        async with sem:
            return await fn(x)

    tasks = [asyncio.ensure_future(guarded(x)) for x in range(n)]
    return [await c for c in asyncio.as_completed(tasks)]


async def floor(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    """The hand-written floor: MAX_WORKERS coroutines pull from one iterator, no Task per item."""
    out: list[int] = [0] * n
    items = iter(enumerate(range(n)))

    async def worker() -> None:
        for i, x in items:
            out[i] = await fn(x)

    await asyncio.gather(*(worker() for _ in range(MAX_WORKERS)))
    return out


async def floor_drain(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
    """The floor over a generator with results dropped (the memory workload's reference)."""
    items = (x for x in range(n))
    counts = [0]

    async def worker() -> None:
        for x in items:
            await fn(x)
            counts[0] += 1

    await asyncio.gather(*(worker() for _ in range(MAX_WORKERS)))
    return counts


def threads_map(fn: Callable[[int], int], n: int) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(MAX_WORKERS) as pool:
        return list(pool.map(fn, range(n)))


def threads_as_completed(fn: Callable[[int], int], n: int) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(MAX_WORKERS) as pool:
        futures = [pool.submit(fn, x) for x in range(n)]
        return [f.result() for f in concurrent.futures.as_completed(futures)]


@dataclass(frozen=True)
class Contender:
    key: str  # used in file names and on the command line
    label: str  # shown in the table
    body: Callable[..., Any]
    is_async: bool = True
    ordered: bool = True
    peer: bool = False  # run by antflow 0.10.0's interpreter
    antflow: bool = False  # needs the repository's antflow
    matching: str = "antflow-map"  # the antflow call its ratio is taken against
    needs: tuple[int, int] = (3, 10)  # minimum Python version


def _c(key: str, label: str, body: Callable[..., Any], **kw: Any) -> Contender:
    return Contender(key, label, body, **kw)


CONTENDERS: dict[str, Contender] = {
    c.key: c
    for c in (
        _c(
            "antflow-submit",
            "antflow submit",
            antflow_submit,
            antflow=True,
            matching="antflow-submit",
        ),
        _c("antflow-map", "antflow map", antflow_map, antflow=True),
        _c(
            "antflow-map_iter",
            "antflow map_iter",
            antflow_map_iter,
            antflow=True,
            matching="antflow-map_iter",
        ),
        _c(
            "antflow-as_completed",
            "antflow as_completed",
            antflow_as_completed,
            antflow=True,
            ordered=False,
            matching="antflow-as_completed",
        ),
        _c("gather", "asyncio.gather + Semaphore", gather_semaphore),
        _c("taskgroup", "asyncio.TaskGroup + Semaphore", taskgroup_semaphore, needs=(3, 11)),
        _c(
            "asyncio-as_completed",
            "asyncio.as_completed + Semaphore",
            asyncio_as_completed,
            ordered=False,
            matching="antflow-as_completed",
        ),
        _c("floor", "floor (100 coroutines, 1 iterator)", floor),
        _c("threads", "ThreadPoolExecutor(100).map", threads_map, is_async=False),
        _c(
            "threads-as_completed",
            "ThreadPoolExecutor(100) + as_completed",
            threads_as_completed,
            is_async=False,
            ordered=False,
            matching="antflow-as_completed",
        ),
        _c(
            "peer-submit",
            "antflow 0.10.0 submit",
            antflow_submit,
            peer=True,
            matching="antflow-submit",
        ),
        _c("peer-map", "antflow 0.10.0 map", antflow_map, peer=True),
        _c(
            "peer-as_completed",
            "antflow 0.10.0 as_completed",
            antflow_as_completed,
            peer=True,
            ordered=False,
            matching="antflow-as_completed",
        ),
        # memory workload: lazy input, results dropped
        _c(
            "antflow-map_iter-drain",
            "antflow map_iter (generator input)",
            antflow_map_iter_drain,
            antflow=True,
            matching="antflow-map_iter-drain",
        ),
        _c(
            "floor-drain", "floor (generator input)", floor_drain, matching="antflow-map_iter-drain"
        ),
        _c(
            "peer-map_iter-drain",
            "antflow 0.10.0 map_iter (generator input)",
            antflow_map_iter_drain,
            peer=True,
            matching="antflow-map_iter-drain",
        ),
    )
}

_PER_ITEM = (
    "antflow-submit",
    "antflow-map",
    "antflow-map_iter",
    "gather",
    "taskgroup",
    "floor",
    "threads",
    "peer-submit",
    "peer-map",
)

# Which contenders run in which workload.
MATRIX: dict[str, tuple[str, ...]] = {
    "noop": _PER_ITEM,
    "yield": _PER_ITEM,
    "io": _PER_ITEM,
    "as_completed": (
        "antflow-as_completed",
        "asyncio-as_completed",
        "threads-as_completed",
        "peer-as_completed",
    ),
    "memory": ("antflow-map_iter-drain", "floor-drain", "peer-map_iter-drain"),
}

# The call every other row of a workload is divided by (on the same loop).
BASELINE = {
    "noop": "antflow-map",
    "yield": "antflow-map",
    "io": "antflow-map",
    "as_completed": "antflow-as_completed",
    "memory": "antflow-map_iter-drain",
}


def loops_for(contender: Contender) -> tuple[str, ...]:
    return LOOPS if contender.is_async else (NO_LOOP,)


def unavailable(contender: Contender) -> str | None:
    """Why this contender cannot run on this interpreter (None when it can)."""
    if sys.version_info[:2] < contender.needs:
        need = ".".join(map(str, contender.needs))
        return f"needs Python {need}+ (this is {sys.version_info[0]}.{sys.version_info[1]})"
    return None


def run_body(contender: Contender, workload: str, loop_name: str, n: int) -> tuple[float, list]:
    """Run one batch of n tasks on a fresh loop; returns (seconds, results)."""
    if not contender.is_async:
        fn_sync = SYNC_TASKS[workload]
        t0 = time.perf_counter()
        res = contender.body(fn_sync, n)
        return time.perf_counter() - t0, res
    fn = ASYNC_TASKS[workload]
    loop = new_loop(loop_name)

    async def timed() -> tuple[float, list]:
        t0 = time.perf_counter()
        res = await contender.body(fn, n)
        return time.perf_counter() - t0, res

    try:
        return loop.run_until_complete(timed())
    finally:
        loop.close()


def check_results(contender: Contender, n: int, res: list) -> None:
    """Every contender must really do the work: n results, the right ones."""
    if contender.key.endswith("-drain"):
        if res != [n]:
            raise AssertionError(f"{contender.key}: {res[:3]} items seen, expected [{n}]")
        return
    expected = list(range(n))
    got = list(res) if contender.ordered else sorted(res)
    if got != expected:
        raise AssertionError(f"{contender.key}: wrong results (len {len(res)}, expected {n})")
