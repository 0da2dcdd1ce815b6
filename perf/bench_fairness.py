"""Fair turns between callers (issue 10), and what ``timing=True`` costs.

One caller's ``map`` over 20,000 items of 10 ms (``await asyncio.sleep(0.01)``; 2,000 in
the script's quick mode) keeps a pool of 100 workers busy. Meanwhile:

* another caller's ``map`` of 10 such items: its time next to the large map over its time
  alone (target ≤ 1.5), against the same two callers sharing one ``asyncio.Semaphore(100)``
  with ``asyncio.gather``;
* lone ``submit``s of a no-op item: how long each waits, in item durations (target: p99 ≤ 2);
* ``timing=True`` against ``timing=False`` on ``map`` and ``submit`` + ``await result()`` of
  a no-op item, paired in one process: the cost per item.

``make bench`` runs the rows registered here (a module ``perf/bench_*.py`` is a plugin of
registry.py): the workload ``fair`` (the 10-item map, measured alone and beside the large
map; also paired, alone and beside alternating, for the target), ``lone-submit``
(back-to-back lone submits beside the large map) and the ``timing=True`` pairs on noop.
A pyperf value is one batch, so a quantile of many lone submits does not fit in a row:
the script itself reports the p50 and p99 of spaced lone submits, with everything else,
in one process::

    .venv/bin/python perf/bench_fairness.py            # uvloop, full sizes, ~15 s
    BENCH_QUICK=1 .venv/bin/python perf/bench_fairness.py
    .venv/bin/python perf/bench_fairness.py --loop asyncio --pairs 15

It writes perf/results/fairness.md and fairness.json.

Imported by every benchmark process (antflow 0.10.0's too): standard library only at
module level, antflow imported inside the bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import registry as reg
import workloads as wl
from registry import MAX_WORKERS

ITEM_S = 0.01  # one item of the scenario: await asyncio.sleep(ITEM_S)
SMALL = 10  # the second caller's map
# The first caller's map. The rows of `make bench` always use BIG (pyperf runs its worker
# processes in a scrubbed environment, where BENCH_QUICK is not seen, and the paired runs
# must match them); only the script's quick mode takes BIG_QUICK.
BIG, BIG_QUICK = 20_000, 2_000
LONE_FULL, LONE_QUICK = 20, 10  # back-to-back lone submits per batch (lone-submit workload)
# Before fair turns (one FIFO queue), as measured in issue 10: the 10-item map took 38 ms
# (3.8x its time alone) and lone submits waited up to 40 ms.
BEFORE_SMALL_MAP_S = 0.038
BEFORE_LONE_WAIT_S = 0.040

AsyncFn = Callable[[int], Awaitable[int]]


async def task_item(x: int) -> int:
    await asyncio.sleep(ITEM_S)
    return x


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout:g} s")
        await asyncio.sleep(0.0005)


async def _random_phase() -> None:
    """The big map's workers run in rounds (all 100 items start and end together): arrive
    at a random moment of a round, as a request would."""
    await asyncio.sleep(random.uniform(0, ITEM_S))


# ----------------------------------------------------------------------------------------------
# The two pools: antflow, and the hand-written asyncio.Semaphore(100) + gather
# ----------------------------------------------------------------------------------------------


class Busy:
    """What a setup yields: the shared pool, and the task of the large map (or None)."""

    def __init__(self, pool: Any, big: asyncio.Future[Any] | None, size: int) -> None:
        self.pool = pool
        self.big = big
        self.size = size

    def check(self) -> None:
        """A measurement that outlived the large map measured an idle pool: not valid."""
        if self.big is not None and self.big.done():
            raise RuntimeError(f"the {self.size:,}-item map ended before the measurement did")


@contextlib.asynccontextmanager
async def antflow_pool(busy: bool, size: int = BIG) -> AsyncIterator[Busy]:
    import antflow

    async with antflow.AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        await ex.map(wl.task_noop, range(2 * MAX_WORKERS))  # every worker started
        big = None
        if busy:
            big = asyncio.ensure_future(ex.map(task_item, range(size)))
            await _until(lambda: ex.stats().running >= MAX_WORKERS, "a busy pool")
            await _random_phase()
        try:
            yield Busy(ex, big, size)
        finally:
            if big is not None:
                big.cancel()
                await asyncio.gather(big, return_exceptions=True)


async def _guarded(sem: asyncio.Semaphore, fn: AsyncFn, x: int) -> int:
    async with sem:
        return await fn(x)


@contextlib.asynccontextmanager
async def gather_pool(busy: bool, size: int = BIG) -> AsyncIterator[Busy]:
    sem = asyncio.Semaphore(MAX_WORKERS)
    big = None
    if busy:
        big = asyncio.ensure_future(
            asyncio.gather(*(_guarded(sem, task_item, x) for x in range(size)))
        )
        await _until(lambda: sem.locked(), "a busy semaphore")
        await _random_phase()
    try:
        yield Busy(sem, big, size)
    finally:
        if big is not None:
            big.cancel()
            await asyncio.gather(big, return_exceptions=True)


# ----------------------------------------------------------------------------------------------
# Contenders (the workload's fn is the item; setup, not timed, makes the pool busy)
# ----------------------------------------------------------------------------------------------


async def antflow_small_map(fn: AsyncFn, n: int, state: Busy) -> list[int]:
    out = list(await state.pool.map(fn, range(n)))
    state.check()
    return out


async def gather_small_map(fn: AsyncFn, n: int, state: Busy) -> list[int]:
    # Checked at the start only: the semaphore serves its waiters in turn, so these items
    # start after every queued item of the large gather and end with its last ones.
    state.check()
    return list(await asyncio.gather(*(_guarded(state.pool, fn, x) for x in range(n))))


async def antflow_lone_submits(fn: AsyncFn, n: int, state: Busy) -> list[int]:
    """n lone submits, back to back: each made when the previous one's result came."""
    submit = state.pool.submit
    out = [await submit(fn, x) for x in range(n)]
    state.check()
    return out


async def antflow_map_timing(fn: AsyncFn, n: int) -> list[int]:
    import antflow

    async with antflow.AsyncExecutor(max_workers=MAX_WORKERS, timing=True) as ex:
        return list(await ex.map(fn, range(n)))


async def antflow_submit_timing(fn: AsyncFn, n: int) -> list[int]:
    import antflow

    async with antflow.AsyncExecutor(max_workers=MAX_WORKERS, timing=True) as ex:
        futures = [ex.submit(fn, x) for x in range(n)]
        return [await f.result() for f in futures]


def _setup(make: Callable[..., Any], busy: bool, size: int = BIG) -> Callable[[int], Any]:
    return lambda n: make(busy, size)


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------


def _register() -> None:
    C, T = reg.Contender, reg.Target
    reg.register_workload(
        reg.Workload(
            "fair",
            SMALL,
            SMALL,
            task_item,
            baseline="antflow-fair-alone",
            about=f"a {SMALL}-item map of 10 ms items, alone and beside a "
            f"{BIG:,}-item map of one other caller",
        )
    )
    reg.register_workload(
        reg.Workload(
            "lone-submit",
            LONE_FULL,
            LONE_QUICK,
            wl.task_noop,
            baseline="antflow-lone-busy",
            about="back-to-back lone submits of a no-op item beside the large map: µs per "
            "task = the mean wait from submit to result",
        )
    )
    for c, where in (
        (
            C(
                "antflow-fair-alone",
                f"antflow map of {SMALL}, pool idle",
                antflow_small_map,
                antflow=True,
                setup=_setup(antflow_pool, False),
            ),
            ("fair",),
        ),
        (
            C(
                "antflow-fair-busy",
                f"antflow map of {SMALL}, beside a large map",
                antflow_small_map,
                antflow=True,
                setup=_setup(antflow_pool, True),
            ),
            ("fair",),
        ),
        (
            C(
                "gather-fair-alone",
                f"gather + Semaphore of {SMALL}, semaphore idle",
                gather_small_map,
                setup=_setup(gather_pool, False),
            ),
            ("fair",),
        ),
        (
            C(
                "gather-fair-busy",
                f"gather + Semaphore of {SMALL}, beside a large gather on the same semaphore",
                gather_small_map,
                setup=_setup(gather_pool, True),
            ),
            ("fair",),
        ),
        (
            C(
                "antflow-lone-busy",
                "antflow lone submits, back to back, beside a large map",
                antflow_lone_submits,
                antflow=True,
                setup=_setup(antflow_pool, True),
            ),
            ("lone-submit",),
        ),
        # paired only (no pyperf rows): timing=True against the plain calls
        (C("antflow-map-timing", "antflow map, timing=True", antflow_map_timing, antflow=True), ()),
        (
            C(
                "antflow-submit-timing",
                "antflow submit, timing=True",
                antflow_submit_timing,
                antflow=True,
            ),
            (),
        ),
    ):
        reg.register_contender(c, where)

    reg.register_pair("fair", "antflow-fair-busy", "antflow-fair-alone")
    reg.register_pair("noop", "antflow-map-timing", "antflow-map")
    reg.register_pair("noop", "antflow-submit-timing", "antflow-submit")

    reg.register_target(
        T(
            f"antflow `map` of {SMALL} beside a {BIG:,}-item map / alone (issue 10)",
            "fair",
            "antflow-fair-busy",
            "antflow-fair-alone",
            "<=",
            1.5,
            source="paired",
        )
    )
    reg.register_target(
        T(
            "lone `submit`s beside it, back to back: mean wait in item durations (p99 of "
            "spaced ones: perf/bench_fairness.py)",
            "lone-submit",
            "antflow-lone-busy",
            None,
            "<=",
            2,
            source="value",
            unit="item durations",
            scale=ITEM_S,
        )
    )


# ----------------------------------------------------------------------------------------------
# The script: the whole scenario in one process, with the quantiles a pyperf row cannot hold
# ----------------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


async def _paired(num: reg.Contender, den: reg.Contender, workload: str, n: int, pairs: int):
    """(num seconds, den seconds) per pair, alternating, gc outside the clock, checked."""
    times: dict[str, list[float]] = {num.key: [], den.key: []}
    for c in (den, num):  # warm-up
        _, res = await reg.timed_batch(c, workload, n)
        reg.check_results(c, n, res)
    for i in range(pairs):
        for c in (den, num) if i % 2 == 0 else (num, den):
            res = []
            gc.collect()
            seconds, res = await reg.timed_batch(c, workload, n)
            reg.check_results(c, n, res)
            times[c.key].append(seconds)
    return times[num.key], times[den.key]


async def _spaced_lone_waits(count: int, size: int) -> tuple[list[float], list[float]]:
    """Lone submits of a no-op, 1-4 ms apart, beside the large map: (to start, to result)."""
    clock = time.perf_counter
    to_start: list[float] = []
    to_result: list[float] = []

    async def stamp(_: int) -> float:
        return clock()

    async with antflow_pool(True, size) as state:
        ex = state.pool
        for _ in range(count):
            await asyncio.sleep(random.uniform(0.001, 0.004))
            if state.big is not None and state.big.done():
                break
            t0 = clock()
            started = await ex.submit(stamp, 0)
            to_result.append(clock() - t0)
            to_start.append(started - t0)
        state.check()
    return to_start, to_result


async def _gather_lone_waits(count: int, size: int) -> list[float]:
    """One guarded no-op call beside a large gather, each beside a fresh one: the first
    call waits for the whole queue, after which the semaphore is no longer busy."""
    waits = []
    for _ in range(count):
        async with gather_pool(True, size) as state:
            state.check()
            t0 = time.perf_counter()
            await _guarded(state.pool, wl.task_noop, 0)
            waits.append(time.perf_counter() - t0)
    return waits


def _sized(key: str, size: int) -> reg.Contender:
    """The registered contender ``key``, with a large call of ``size`` items."""
    make = gather_pool if key.startswith("gather") else antflow_pool
    return dataclasses.replace(wl.CONTENDERS[key], setup=_setup(make, key.endswith("-busy"), size))


async def scenario(pairs: int, lone: int, size: int) -> dict[str, Any]:
    c = wl.CONTENDERS
    out: dict[str, Any] = {"item_s": ITEM_S, "big_n": size, "small_n": SMALL, "pairs": pairs}
    busy, alone = await _paired(
        _sized("antflow-fair-busy", size), _sized("antflow-fair-alone", size), "fair", SMALL, pairs
    )
    out["antflow_small_map"] = {"busy_s": busy, "alone_s": alone}
    gbusy, galone = await _paired(
        _sized("gather-fair-busy", size), _sized("gather-fair-alone", size), "fair", SMALL, 1
    )
    out["gather_small_map"] = {"busy_s": gbusy, "alone_s": galone}
    to_start, to_result = await _spaced_lone_waits(lone, size)
    out["antflow_lone"] = {"to_start_s": to_start, "to_result_s": to_result}
    out["gather_lone"] = {"to_result_s": await _gather_lone_waits(2, size)}
    n = wl.sizes()["noop"]
    out["timing_n"] = n
    for call in ("map", "submit"):
        on, off = await _paired(c[f"antflow-{call}-timing"], c[f"antflow-{call}"], "noop", n, pairs)
        out[f"timing_{call}"] = {"on_s": on, "off_s": off}
    return out


def report(data: dict[str, Any], loop: str, quick: bool, took: float) -> str:
    d = data["item_s"]
    med = statistics.median
    small = data["antflow_small_map"]
    ratios = [b / a for b, a in zip(small["busy_s"], small["alone_s"], strict=True)]
    gsmall = data["gather_small_map"]
    lone = data["antflow_lone"]
    start, result = lone["to_start_s"], lone["to_result_s"]
    glone = data["gather_lone"]["to_result_s"]
    lines = [
        "# Fair turns between callers (perf/bench_fairness.py)",
        "",
        f"- {time.strftime('%Y-%m-%d %H:%M %Z')}; {loop}; "
        f"{'QUICK sizes' if quick else 'full sizes'}; took {took:.0f} s; "
        f"machine: {_machine()}",
        f"- max_workers = {MAX_WORKERS}; item = `await asyncio.sleep({d})`; one caller's map "
        f"of {data['big_n']:,} items keeps the pool busy; measured beside it at random "
        "moments of its rounds",
        "",
        "| measure | antflow (fair turns) | gather + shared Semaphore(100) | before (one FIFO "
        "queue, issue 10) | target |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| {SMALL}-item map beside it, ms (median of {len(ratios)}) | "
        f"{med(small['busy_s']) * 1e3:.1f} | {med(gsmall['busy_s']) * 1e3:,.0f} | "
        f"{BEFORE_SMALL_MAP_S * 1e3:.0f} | |",
        f"| the same alone, ms | {med(small['alone_s']) * 1e3:.1f} | "
        f"{med(gsmall['alone_s']) * 1e3:.1f} | ~10 | |",
        f"| ratio beside / alone (antflow: median of {len(ratios)} pairs, "
        f"{min(ratios):.2f} - {max(ratios):.2f}) | {med(ratios):.2f} | "
        f"{med(gsmall['busy_s']) / med(gsmall['alone_s']):.1f} | 3.8 | ≤ 1.5 |",
        f"| lone submit, wait to start: p50 / p99 / max, item durations ({len(start)} "
        f"submits) | {_pct(start, 0.5) / d:.2f} / {_pct(start, 0.99) / d:.2f} / "
        f"{max(start) / d:.2f} | — | up to {BEFORE_LONE_WAIT_S / d:.0f} | p99 ≤ 2 |",
        f"| lone submit, wait to result: p50 / p99, item durations | "
        f"{_pct(result, 0.5) / d:.2f} / {_pct(result, 0.99) / d:.2f} | "
        f"{_pct(glone, 0.5) / d:.0f} / {max(glone) / d:.0f} ({len(glone)} calls) | | |",
        "",
        f"timing=True against timing=False, noop, n = {data['timing_n']:,} per batch, "
        f"{data['pairs']} pairs alternating in this process:",
        "",
        "| call | off, µs per item | on, µs per item | cost, µs per item (median of pairs) | "
        "ratio on / off (median, min - max) |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    n = data["timing_n"]
    for call, label in (("map", "`map`"), ("submit", "`submit` + `await result()`")):
        t = data[f"timing_{call}"]
        r = [a / b for a, b in zip(t["on_s"], t["off_s"], strict=True)]
        cost = [(a - b) / n * 1e6 for a, b in zip(t["on_s"], t["off_s"], strict=True)]
        lines.append(
            f"| {label} | {med(t['off_s']) / n * 1e6:.2f} | {med(t['on_s']) / n * 1e6:.2f} | "
            f"{med(cost):.2f} | {med(r):.2f} ({min(r):.2f} - {max(r):.2f}) |"
        )
    return "\n".join(lines) + "\n"


def _machine() -> str:
    try:
        import report as rp

        return rp.machine()
    except Exception:  # the report module needs the harness; only a label is lost
        import platform

        return f"{platform.machine()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--loop", default="uvloop", choices=reg.LOOPS)
    p.add_argument("--pairs", type=int, help="pairs per paired comparison (7; quick 3)")
    p.add_argument("--lone", type=int, help="spaced lone submits (200; quick 20)")
    p.add_argument("--quick", action="store_true", help="same as BENCH_QUICK=1")
    p.add_argument("-o", "--output", default=str(reg.PERF / "results" / "fairness.md"))
    args = p.parse_args(argv)
    if args.quick:
        import os

        os.environ["BENCH_QUICK"] = "1"
    quick = reg.quick()
    pairs = args.pairs or (3 if quick else 7)
    lone = args.lone or (20 if quick else 200)
    started = time.perf_counter()
    loop = reg.new_loop(args.loop)
    try:
        data = loop.run_until_complete(scenario(pairs, lone, BIG_QUICK if quick else BIG))
    finally:
        loop.close()
    text = report(data, args.loop, quick, time.perf_counter() - started)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(text)
    print(f"written: {out} and {out.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    # Run as a script, this file is __main__; workloads imports it again as the plugin
    # bench_fairness (which registers the rows), and that module runs the scenario.
    import bench_fairness

    sys.exit(bench_fairness.main())
else:
    _register()
