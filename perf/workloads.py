"""The built-in workloads, contenders, paired comparisons and targets (see perf/README.md).

Imported by the harness and by every pyperf worker process, both the repository's interpreter
(antflow under development) and the peer's own virtual environment (antflow 0.10.0 from the
package index, which has the same import name): it never imports antflow at module level and
needs nothing but the standard library (uvloop is optional). The registry itself, and how to add
rows from another module, is in registry.py; this module re-exports its names, so
``import workloads as wl`` sees everything (``wl.CONTENDERS``, ``wl.run_body``, ...).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable
from typing import Any

import registry as reg
from registry import (  # noqa: F401  (re-exported for worker.py, profile.py and plugins)
    BASELINE,
    CONTENDERS,
    FULL_SIZES,
    LOOPS,
    MATRIX,
    MAX_WORKERS,
    NO_LOOP,
    PAIRS,
    QUICK_SIZES,
    TARGETS,
    WORKLOAD,
    WORKLOADS,
    Contender,
    Target,
    Workload,
    check_results,
    loops_for,
    new_loop,
    quick,
    rotating_rounds,
    run_body,
    sizes,
    unavailable,
)

AsyncFn = Callable[[int], Awaitable[int]]

# antflow 0.10.0's as_completed is super-linear: its size is capped at this many futures (the
# table shows the size measured, and per-task figures are compared at that size).
PEER_AS_COMPLETED_CAP = 10_000
# as_completed must grow linearly: antflow's is also measured at this multiple of the size.
AS_COMPLETED_SCALE = 10

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


# ----------------------------------------------------------------------------------------------
# Contenders
# ----------------------------------------------------------------------------------------------


def _antflow() -> Any:
    import antflow

    return antflow


async def antflow_submit(fn: AsyncFn, n: int) -> list[int]:
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        futures = [ex.submit(fn, x) for x in range(n)]
        return [await f.result() for f in futures]


async def antflow_map(fn: AsyncFn, n: int) -> list[int]:
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        return list(await ex.map(fn, range(n)))


async def antflow_map_iter(fn: AsyncFn, n: int) -> list[int]:
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        return [r async for r in ex.map_iter(fn, range(n))]


async def antflow_as_completed(fn: AsyncFn, n: int) -> list[int]:
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        futures = [ex.submit(fn, x) for x in range(n)]
        return [await f.result() async for f in ex.as_completed(futures)]


async def antflow_map_iter_drain(fn: AsyncFn, n: int) -> list[int]:
    """map_iter over a generator, results dropped: what a batch job over huge input does."""
    count = 0
    async with _antflow().AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        async for _ in ex.map_iter(fn, (x for x in range(n))):
            count += 1
    return [count]


async def gather_semaphore(fn: AsyncFn, n: int) -> list[int]:
    sem = asyncio.Semaphore(MAX_WORKERS)

    async def guarded(x: int) -> int:
        async with sem:
            return await fn(x)

    return list(await asyncio.gather(*(guarded(x) for x in range(n))))


async def taskgroup_semaphore(fn: AsyncFn, n: int) -> list[int]:
    sem = asyncio.Semaphore(MAX_WORKERS)

    async def guarded(x: int) -> int:
        async with sem:
            return await fn(x)

    async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
        tasks = [tg.create_task(guarded(x)) for x in range(n)]
    return [t.result() for t in tasks]


async def asyncio_as_completed(fn: AsyncFn, n: int) -> list[int]:
    sem = asyncio.Semaphore(MAX_WORKERS)

    async def guarded(x: int) -> int:
        async with sem:
            return await fn(x)

    tasks = [asyncio.ensure_future(guarded(x)) for x in range(n)]
    return [await c for c in asyncio.as_completed(tasks)]


async def floor(fn: AsyncFn, n: int) -> list[int]:
    """The honest floor: the cheapest correct hand-written loop.

    MAX_WORKERS coroutines share ONE iterator over the indices and store each result at its
    index: no Task, no future and no tuple per item. The inputs are range(n), so an index is
    its own input. Nothing general-purpose can beat it.
    """
    out: list[int] = [0] * n
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            out[i] = await fn(i)

    await asyncio.gather(*(worker() for _ in range(MAX_WORKERS)))
    return out


async def floor_drain(fn: AsyncFn, n: int) -> list[int]:
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


# ----------------------------------------------------------------------------------------------
# Registration: the table order is the order below
# ----------------------------------------------------------------------------------------------

C = reg.Contender
for _w in (
    Workload("noop", 100_000, 5_000, task_noop, sync_noop, about="pure executor overhead"),
    Workload("yield", 100_000, 5_000, task_yield, sync_yield, about="every task suspends once"),
    Workload("io", 10_000, 1_000, task_io, sync_io, about="scheduling under 1 ms timers"),
    Workload(
        "as_completed",
        10_000,
        2_000,
        task_noop,
        sync_noop,
        baseline="antflow-as_completed",
        about="the cost of waiting; must grow linearly",
        scaled={"antflow-as_completed": AS_COMPLETED_SCALE},
        caps={"peer-as_completed": PEER_AS_COMPLETED_CAP},
    ),
    Workload(
        "memory",
        1_000_000,
        100_000,
        task_noop,
        sync_noop,
        baseline="antflow-map_iter-drain",
        about="peak RSS growth over a generator",
        kind="memory",
    ),
):
    reg.register_workload(_w)

_PER_ITEM = ("noop", "yield", "io")
for _c, _in in (
    (C("antflow-submit", "antflow submit", antflow_submit, antflow=True), _PER_ITEM),
    (C("antflow-map", "antflow map", antflow_map, antflow=True), _PER_ITEM),
    (C("antflow-map_iter", "antflow map_iter", antflow_map_iter, antflow=True), _PER_ITEM),
    (C("gather", "asyncio.gather + Semaphore", gather_semaphore), _PER_ITEM),
    (
        C("taskgroup", "asyncio.TaskGroup + Semaphore", taskgroup_semaphore, needs=(3, 11)),
        _PER_ITEM,
    ),
    (C("floor", "floor (100 coroutines, 1 shared iterator)", floor), _PER_ITEM),
    (C("threads", "ThreadPoolExecutor(100).map", threads_map, is_async=False), _PER_ITEM),
    (
        C(
            "peer-submit",
            "antflow 0.10.0 submit",
            antflow_submit,
            peer=True,
            matching="antflow-submit",
        ),
        _PER_ITEM,
    ),
    (
        C("peer-map", "antflow 0.10.0 map", antflow_map, peer=True, matching="antflow-map"),
        _PER_ITEM,
    ),
    (
        C(
            "antflow-as_completed",
            "antflow as_completed",
            antflow_as_completed,
            antflow=True,
            ordered=False,
        ),
        ("as_completed",),
    ),
    (
        C(
            "asyncio-as_completed",
            "asyncio.as_completed + Semaphore",
            asyncio_as_completed,
            ordered=False,
        ),
        ("as_completed",),
    ),
    (
        C(
            "threads-as_completed",
            "ThreadPoolExecutor(100) + as_completed",
            threads_as_completed,
            is_async=False,
            ordered=False,
        ),
        ("as_completed",),
    ),
    (
        C(
            "peer-as_completed",
            "antflow 0.10.0 as_completed",
            antflow_as_completed,
            peer=True,
            ordered=False,
            matching="antflow-as_completed",
        ),
        ("as_completed",),
    ),
    # memory workload: lazy input, results dropped
    (
        C(
            "antflow-map_iter-drain",
            "antflow map_iter (generator input)",
            antflow_map_iter_drain,
            antflow=True,
            drain=True,
        ),
        ("memory",),
    ),
    (C("floor-drain", "floor (generator input)", floor_drain, drain=True), ("memory",)),
    (
        C(
            "peer-map_iter-drain",
            "antflow 0.10.0 map_iter (generator input)",
            antflow_map_iter_drain,
            peer=True,
            drain=True,
            matching="antflow-map_iter-drain",
        ),
        ("memory",),
    ),
):
    reg.register_contender(_c, _in)

# Paired runs (paired.py): the floor and antflow alternate in one warm process, one loop.
for _w in _PER_ITEM:
    reg.register_pair(_w, "antflow-map")
    reg.register_pair(_w, "antflow-map_iter")
reg.register_pair("noop", "antflow-submit")

# The targets of /work/shared/bench.md (uvloop, full sizes).
T = reg.Target
for _t in (
    T(
        "antflow 0.10.0 / antflow, `submit` + `await future.result()`, noop",
        "noop",
        "peer-submit",
        "antflow-submit",
        ">=",
        20,
    ),
    T("antflow 0.10.0 / antflow, `map`, noop", "noop", "peer-map", "antflow-map", ">=", 40),
    T("TaskGroup+Semaphore / antflow `map`, noop", "noop", "taskgroup", "antflow-map", ">=", 15),
    T("ThreadPoolExecutor / antflow `map`, noop", "noop", "threads", "antflow-map", ">=", 40),
    T("antflow `map` / floor, yield", "yield", "antflow-map", "floor", "<=", 1.2, source="paired"),
    T(
        "antflow `map_iter` / floor, yield",
        "yield",
        "antflow-map_iter",
        "floor",
        "<=",
        1.3,
        source="paired",
    ),
    T("antflow `map` / floor, io", "io", "antflow-map", "floor", "<=", 1.1, source="paired"),
    T(
        "antflow 0.10.0 / antflow, `as_completed` 10,000",
        "as_completed",
        "peer-as_completed",
        "antflow-as_completed",
        ">=",
        50,
    ),
    T(
        f"antflow `as_completed` per task, {AS_COMPLETED_SCALE}x n / n (linear waiting)",
        "as_completed",
        f"antflow-as_completed-x{AS_COMPLETED_SCALE}",
        "antflow-as_completed",
        "<=",
        1.5,
    ),
    T(
        "peak RSS growth, `map_iter` over the memory workload's inputs",
        "memory",
        "antflow-map_iter-drain",
        None,
        "<=",
        5,
        source="value",
        unit="MB",
        scale=1e6,
    ),
):
    reg.register_target(_t)

# Other modules' rows (perf/bench_*.py) come last, so they can use everything above.
reg.load_plugins()
