"""The items of the scale-out benchmark (perf/scaleout.py), importable by worker processes.

Dask's and aiomultiprocess's workers are started with ``spawn``: they import a function by
its module and name, so the items live here, in a small module with no dependencies, and
``perf/`` is on the workers' ``sys.path`` (the script puts it on ``PYTHONPATH``).

- :func:`cpu_io`: ``spins`` rounds of pure-Python arithmetic (calibrated by
  :func:`calibrate` to ~150 µs on the machine at hand), then ``await asyncio.sleep(0.001)``;
- :func:`noop`: returns its argument, the cost of the machinery alone;
- :func:`sleeper`: ``await asyncio.sleep(seconds)``, the sleep-bound items of ``--scale``;
- :func:`tiny`: a synchronous no-op, for measuring Dask's scheduler in tasks per second;
- :func:`map_chunk`: one chunk of the hand-written ProcessPoolExecutor reference.

Each returns its argument, so a contender's results can be checked item by item.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["calibrate", "cpu_io", "map_chunk", "noop", "sleeper", "spin", "tiny"]


def spin(rounds: int) -> int:
    """Pure-Python work that holds the GIL: ``rounds`` steps of an integer recurrence."""
    acc = 1
    for i in range(rounds):
        acc = (acc * 1_103_515_245 + i) & 0xFFFF_FFFF
    return acc


async def cpu_io(x: int, spins: int) -> int:
    """~150 µs of CPU (``spin(spins)``), then 1 ms of waiting, like a parse then a call."""
    spin(spins)
    await asyncio.sleep(0.001)
    return x


async def noop(x: int) -> int:
    return x


async def sleeper(x: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return x


def tiny(x: int) -> int:
    return x


def map_chunk(fn: Any, chunk: list[int], max_workers: int) -> list[Any]:
    """One chunk of the hand-written reference: an antflow map on a fresh loop."""
    import antflow

    async def run() -> list[Any]:
        async with antflow.AsyncExecutor(max_workers=max_workers) as ex:
            return await ex.map(fn, chunk)

    return antflow.run(run())


def calibrate(target_s: float = 150e-6, trials: int = 15) -> int:
    """The number of ``spin`` rounds that take ``target_s`` here.

    Timed in CPU time, the fastest of ``trials``: on a shared machine, wall-clock timings
    would count the time other processes hold the core, and make the items lighter
    whenever the machine is busy."""
    rounds = 20_000
    best = float("inf")
    for _ in range(trials):
        t0 = time.process_time()
        spin(rounds)
        best = min(best, time.process_time() - t0)
    return max(1, round(target_s * rounds / best))
