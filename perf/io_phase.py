"""The io row's phase: the floor and antflow's map over `sleep(0.001)` items, with k µs of work.

    python perf/io_phase.py [--loop uvloop] [--steps 13] [--step 0.2] [--rounds 7]
                            [--peer DIR] [-n 10000]

The `map` / floor, io row of `make bench` divides two times that are set by where uvloop's
whole-millisecond timers fall, not by what each contender costs (perf/README, "What the
figures say"). This sweep shows it: every item first spins for k µs (the same for every
contender), then sleeps 1 ms; each k is a row of the table, each contender a column (ms
for n items, the median of --rounds batches; the contenders rotate within a round, in one
warm process, gc.collect() before each batch outside the clock: registry.rotating_rounds).

The floor's own column is a sawtooth in k, and each executor's column is the floor's moved
along k by the executor's cost per item. The last lines estimate that shift: the c that
best lays the floor's column at k + c over the contender's column at k. So the io ratio of
a contender is floor(k + c) / floor(k) at the machine's k = 0: above or below 1 depending
on where the sawtooth happens to sit, whichever contender is cheaper.

``--peer DIR`` adds another antflow package (DIR/antflow, e.g. a ``git worktree`` of an
older commit) under another name, to compare two versions in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads as wl

Body = Callable[[Callable[[int], Awaitable[int]], int], Awaitable[list[int]]]


def io_task(k_us: float) -> Callable[[int], Awaitable[int]]:
    """The io workload's task with k µs of busy work before its sleep (k = 0: the task itself)."""
    if k_us <= 0:
        return wl.task_io
    span = k_us / 1e6
    clock = time.perf_counter

    async def task(x: int) -> int:
        end = clock() + span
        while clock() < end:
            pass
        await asyncio.sleep(0.001)
        return x

    return task


def load_peer(folder: str) -> Any:
    """Import DIR/antflow as ``antflow_peer`` (its imports inside the package are relative)."""
    init = os.path.join(folder, "antflow", "__init__.py")
    if not os.path.isfile(init):
        raise SystemExit(f"--peer: no antflow package in {folder}")
    spec = importlib.util.spec_from_file_location(
        "antflow_peer", init, submodule_search_locations=[os.path.dirname(init)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["antflow_peer"] = module
    spec.loader.exec_module(module)
    return module


def map_of(package: Any) -> Body:
    async def body(fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
        async with package.AsyncExecutor(max_workers=wl.MAX_WORKERS) as ex:
            return list(await ex.map(fn, range(n)))

    return body


def shift(floor: list[float], other: list[float], step: float) -> float:
    """The c (a multiple of step / 4) for which floor(k + c), interpolated, best fits other(k).

    The fit is the mean squared difference over the values of k that floor(k + c) reaches;
    c goes up to half the swept range, so that at least half the values are compared.
    """
    best, best_err = 0.0, float("inf")
    for q in range(2 * (len(floor) - 1) + 1):
        c = q / 4  # in steps of k
        errors = []
        for i, value in enumerate(other):
            at = i + c
            lo = int(at)
            if lo + 1 >= len(floor):
                break
            errors.append((floor[lo] + (floor[lo + 1] - floor[lo]) * (at - lo) - value) ** 2)
        if errors and statistics.fmean(errors) < best_err:
            best, best_err = c * step, statistics.fmean(errors)
    return best


def timer(
    loop: asyncio.AbstractEventLoop, bodies: dict[str, Body], k: float, n: int
) -> Callable[[str], float]:
    """Times one batch of n items with k µs of work each, by contender name, and checks it."""
    fn, expected = io_task(k), list(range(n))

    def timed(name: str) -> float:
        t0 = time.perf_counter()
        res = loop.run_until_complete(bodies[name](fn, n))
        took = time.perf_counter() - t0
        if res != expected:
            raise SystemExit(f"{name} returned wrong results at k = {k}")
        return took

    return timed


def sweep(
    loop: asyncio.AbstractEventLoop, bodies: dict[str, Body], ks: list[float], n: int, rounds: int
) -> list[dict[str, float]]:
    rows = []
    names = list(bodies)
    for k in ks:
        timed = timer(loop, bodies, k, n)
        for name in names:  # warm-up
            timed(name)
        times = wl.rotating_rounds(names, rounds, timed)
        rows.append({"k": k, **{name: statistics.median(v) * 1e3 for name, v in times.items()}})
        line = "  ".join(f"{name} {rows[-1][name]:7.1f}" for name in names)
        print(f"k = {k:4.1f} µs   {line}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", default="uvloop", choices=wl.LOOPS)
    p.add_argument("--steps", type=int, default=13, help="values of k (default 13)")
    p.add_argument("--step", type=float, default=0.2, help="µs between values of k")
    p.add_argument("--rounds", type=int, default=7, help="batches per contender and k")
    p.add_argument("-n", type=int, default=wl.sizes()["io"], help="items per batch")
    p.add_argument("--peer", metavar="DIR", help="also time DIR/antflow's map")
    args = p.parse_args(argv)
    import antflow

    bodies: dict[str, Body] = {"floor": wl.floor, "antflow": map_of(antflow)}
    if args.peer:
        bodies["peer"] = map_of(load_peer(args.peer))
    ks = [round(i * args.step, 3) for i in range(args.steps)]
    loop = wl.new_loop(args.loop)
    try:
        rows = sweep(loop, bodies, ks, args.n, args.rounds)
    finally:
        loop.close()
    names = list(bodies)
    others = names[1:]
    print(f"ms for {args.n:,} io items, {args.loop}, median of {args.rounds}")
    print("| k (µs) | " + " | ".join(names + [f"{m} / floor" for m in others]) + " |")
    print("| ---: " * (1 + len(names) + len(others)) + "|")
    for row in rows:
        cells = [f"{row[m]:.1f}" for m in names] + [f"{row[m] / row['floor']:.2f}" for m in others]
        print(f"| {row['k']:.1f} | " + " | ".join(cells) + " |")
    floor = [row["floor"] for row in rows]
    for m in others:
        c = shift(floor, [row[m] for row in rows], args.step)
        print(f"{m}: its column is the floor's moved by about {c:.2f} µs of k")
    return 0


if __name__ == "__main__":
    sys.exit(main())
