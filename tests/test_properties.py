"""Property-based tests: random schedules of work on small pools keep every invariant.

A schedule is a random sequence of operations on one executor: submit a task of some kind
(success, error, self-cancellation, a hang cut by ``task_timeout``, a flaky task retried),
cancel one of the futures so far, start a ``map`` call (possibly failing, possibly
cancelled later), let the loop run, and shut down with or without ``cancel_futures``.
Whatever the schedule, every future ends exactly once with an outcome its kind allows, the
counters reconcile exactly with what the tasks did, no more than ``max_workers`` tasks run
at once, work offered after shutdown is refused with ``ExecutorShutdownError``, and no
worker task outlives the shutdown.

Hypothesis drives synchronous tests; each example runs on a fresh event loop of each kind
(asyncio and uvloop), since pytest-asyncio's loop fixtures and hypothesis do not mix.
Examples are derandomized, so CI runs the same schedules every time.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antflow import AsyncExecutor, AsyncFuture, ExecutorShutdownError

LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="uvloop"),
]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]

PROPERTY_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

HANG_TIMEOUT = 0.005
# No example may take longer than this; a hang fails the test instead of the CI job.
EXAMPLE_TIMEOUT = 30.0

KINDS = ["ok", "error", "self_cancel", "hang", "flaky"]

# -- the schedules ------------------------------------------------------------------------

ticks = st.integers(min_value=0, max_value=3)
submit_op = st.tuples(st.just("submit"), st.sampled_from(KINDS), ticks)
cancel_op = st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=1000))
map_op = st.tuples(
    st.just("map"),
    st.integers(min_value=0, max_value=10),  # input length
    st.integers(min_value=-1, max_value=10),  # the failing input, or -1 for none
    st.integers(min_value=1, max_value=6),  # window
    ticks,
)
cancel_map_op = st.tuples(st.just("cancel_map"), st.integers(min_value=0, max_value=100))
sleep_op = st.tuples(st.just("sleep"), st.integers(min_value=0, max_value=4))
shutdown_op = st.tuples(st.just("shutdown"), st.booleans(), st.booleans())

schedules = st.lists(
    st.one_of(submit_op, submit_op, cancel_op, map_op, cancel_map_op, sleep_op, shutdown_op),
    max_size=30,
)
pool_sizes = st.integers(min_value=1, max_value=4)


@dataclass
class Submitted:
    kind: str
    key: int
    future: AsyncFuture[Any]
    cancel_requested: bool = False
    cancelled_while_queued: bool = False
    shutdown_cancel_after: bool = False  # shutdown(cancel_futures=True) came after it


@dataclass
class MapRun:
    length: int
    fail_at: int
    task: asyncio.Task[list[int]]
    read: int = 0
    cancel_requested: bool = False
    refusable: bool = False  # a shutdown came before it, or one with cancel_futures after


@dataclass
class Report:
    """What happened during one schedule, for the properties to check."""

    max_workers: int
    submitted: list[Submitted] = field(default_factory=list)
    maps: list[MapRun] = field(default_factory=list)
    ends: collections.Counter[int] = field(default_factory=collections.Counter)
    calls: collections.Counter[int] = field(default_factory=collections.Counter)
    flaky_failures: int = 0
    map_returned: int = 0
    map_raised: int = 0
    peak: int = 0
    wrong_refusals: list[str] = field(default_factory=list)
    shutdown_seen: bool = False
    stats: Any = None
    leftover_workers: list[str] = field(default_factory=list)
    refused_after_end: bool = False


async def run_schedule(max_workers: int, schedule: list[tuple[Any, ...]]) -> Report:
    loop = asyncio.get_running_loop()
    report = Report(max_workers)
    prefix = f"property-{id(report)}"
    executor = AsyncExecutor(max_workers=max_workers, name=prefix)
    active = 0
    keys = itertools.count()

    def enter(key: int) -> None:
        nonlocal active
        report.calls[key] += 1
        active += 1
        report.peak = max(report.peak, active)

    def leave() -> None:
        nonlocal active
        active -= 1

    async def task(kind: str, key: int, n_ticks: int) -> int:
        enter(key)
        try:
            for _ in range(n_ticks):
                await asyncio.sleep(0)
            if kind == "error":
                raise ValueError(key)
            if kind == "self_cancel":
                raise asyncio.CancelledError()
            if kind == "hang":
                await asyncio.sleep(EXAMPLE_TIMEOUT)
            if kind == "flaky" and report.calls[key] == 1:
                report.flaky_failures += 1  # tenacity counts a retry right after this
                raise ConnectionError(key)
            return key
        finally:
            leave()

    async def map_item(x: int, fail_at: int, n_ticks: int) -> int:
        enter(-1)
        try:
            for _ in range(n_ticks):
                await asyncio.sleep(0)
            if x == fail_at:
                report.map_raised += 1
                raise ValueError(x)
            report.map_returned += 1
            return 2 * x
        finally:
            leave()

    def counted(run: MapRun, length: int) -> Iterator[int]:
        for x in range(length):
            run.read += 1
            yield x

    def on_done(key: int) -> Callable[[AsyncFuture[Any]], None]:
        return lambda _future: report.ends.update([key])

    for op in schedule:
        name = op[0]
        if name == "submit":
            _, kind, n_ticks = op
            key = next(keys)
            options: dict[str, Any] = {}
            if kind == "hang":
                options["task_timeout"] = HANG_TIMEOUT
            elif kind == "flaky":
                options.update(retries=1, retry_delay=0)
            try:
                future = executor.submit(task, kind, key, n_ticks, **options)
            except ExecutorShutdownError:
                if not report.shutdown_seen:
                    report.wrong_refusals.append(f"submit {key} refused before shutdown")
                continue
            if report.shutdown_seen:
                report.wrong_refusals.append(f"submit {key} accepted after shutdown")
            future.add_done_callback(on_done(key))
            report.submitted.append(Submitted(kind, key, future))
        elif name == "cancel" and report.submitted:
            entry = report.submitted[op[1] % len(report.submitted)]
            queued = not entry.future.done() and not entry.future.running()
            if entry.future.cancel():
                entry.cancel_requested = True
                entry.cancelled_while_queued = entry.cancelled_while_queued or queued
        elif name == "map":
            _, length, fail_at, window, n_ticks = op
            run = MapRun(length, fail_at, task=None)  # type: ignore[arg-type]
            run.task = loop.create_task(
                executor.map(
                    map_item,
                    counted(run, length),
                    itertools.repeat(fail_at),
                    itertools.repeat(n_ticks),
                    window=window,
                )
            )
            run.refusable = report.shutdown_seen
            report.maps.append(run)
            await asyncio.sleep(0)  # the call begins before the next operation
        elif name == "cancel_map" and report.maps:
            run = report.maps[op[1] % len(report.maps)]
            run.cancel_requested = run.cancel_requested or run.task.cancel()
        elif name == "sleep":
            for _ in range(op[1]):
                await asyncio.sleep(0)
        elif name == "shutdown":
            _, wait, cancel_futures = op
            report.shutdown_seen = True
            if cancel_futures:
                for entry in report.submitted:
                    entry.shutdown_cancel_after = True
                for run in report.maps:
                    run.refusable = True
            await executor.shutdown(wait=wait, cancel_futures=cancel_futures)

    await executor.shutdown(wait=True)
    await asyncio.gather(*(run.task for run in report.maps), return_exceptions=True)
    await asyncio.sleep(0)  # the last done-callbacks run
    report.stats = executor.stats()
    report.leftover_workers = [
        t.get_name() for t in asyncio.all_tasks(loop) if t.get_name().startswith(f"{prefix}-")
    ]
    try:
        executor.submit(task, "ok", -2, 0)
    except ExecutorShutdownError:
        report.refused_after_end = True
    return report


def run_on(new_loop: LoopFactory, coro: Coroutine[Any, Any, Report]) -> Report:
    loop = new_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, EXAMPLE_TIMEOUT))
    finally:
        leftovers = asyncio.all_tasks(loop)
        for leftover in leftovers:
            leftover.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def allowed_outcomes(entry: Submitted) -> set[str]:
    natural = {
        "ok": "returned",
        "error": "ValueError",
        "self_cancel": "cancelled",
        "hang": "TimeoutError",
        "flaky": "returned",
    }[entry.kind]
    if entry.cancel_requested or entry.shutdown_cancel_after:
        return {natural, "cancelled"}
    return {natural}


def outcome(future: AsyncFuture[Any]) -> str:
    if not future.done():
        return "not done"
    if future.cancelled():
        return "cancelled"
    exc = future.exception()
    if exc is None:
        return "returned"
    if isinstance(exc, asyncio.TimeoutError):
        return "TimeoutError"
    return type(exc).__name__


# -- the properties -----------------------------------------------------------------------


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(max_workers=pool_sizes, schedule=schedules)
def test_every_future_of_a_random_schedule_ends_once_with_an_outcome_its_kind_allows(
    new_loop: LoopFactory, max_workers: int, schedule: list[tuple[Any, ...]]
) -> None:
    report = run_on(new_loop, run_schedule(max_workers, schedule))
    wrong = {
        e.key: (e.kind, outcome(e.future))
        for e in report.submitted
        if outcome(e.future) not in allowed_outcomes(e)
    }
    assert wrong == {}
    assert {e.key: report.ends[e.key] for e in report.submitted} == {
        e.key: 1 for e in report.submitted
    }


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(max_workers=pool_sizes, schedule=schedules)
def test_a_future_cancelled_while_queued_in_a_random_schedule_never_calls_its_function(
    new_loop: LoopFactory, max_workers: int, schedule: list[tuple[Any, ...]]
) -> None:
    report = run_on(new_loop, run_schedule(max_workers, schedule))
    called = [e.key for e in report.submitted if e.cancelled_while_queued and report.calls[e.key]]
    assert called == []


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(max_workers=pool_sizes, schedule=schedules)
def test_the_counters_of_a_random_schedule_reconcile_with_what_the_tasks_did(
    new_loop: LoopFactory, max_workers: int, schedule: list[tuple[Any, ...]]
) -> None:
    report = run_on(new_loop, run_schedule(max_workers, schedule))
    stats = report.stats
    outcomes = collections.Counter(outcome(e.future) for e in report.submitted)
    map_items = sum(run.read for run in report.maps)
    assert stats.completed + stats.failed + stats.cancelled + stats.running + stats.pending == (
        stats.submitted
    )
    assert stats.submitted == len(report.submitted) + map_items
    assert (stats.pending, stats.running) == (0, 0)
    assert stats.completed == outcomes["returned"] + report.map_returned
    assert stats.failed == (outcomes["ValueError"] + outcomes["TimeoutError"] + report.map_raised)
    assert stats.cancelled == (
        outcomes["cancelled"] + map_items - report.map_returned - report.map_raised
    )
    assert stats.retried == report.flaky_failures


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(max_workers=pool_sizes, schedule=schedules)
def test_a_random_schedule_never_runs_more_than_max_workers_tasks_at_once(
    new_loop: LoopFactory, max_workers: int, schedule: list[tuple[Any, ...]]
) -> None:
    report = run_on(new_loop, run_schedule(max_workers, schedule))
    assert report.peak <= max_workers


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(max_workers=pool_sizes, schedule=schedules)
def test_work_offered_after_a_random_shutdown_is_refused_and_only_then(
    new_loop: LoopFactory, max_workers: int, schedule: list[tuple[Any, ...]]
) -> None:
    report = run_on(new_loop, run_schedule(max_workers, schedule))
    assert report.wrong_refusals == []
    assert report.refused_after_end


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(max_workers=pool_sizes, schedule=schedules)
def test_map_calls_in_a_random_schedule_end_with_their_results_or_a_reason(
    new_loop: LoopFactory, max_workers: int, schedule: list[tuple[Any, ...]]
) -> None:
    report = run_on(new_loop, run_schedule(max_workers, schedule))
    for run in report.maps:
        assert run.task.done()
        if run.task.cancelled():
            assert run.cancel_requested
            continue
        exc = run.task.exception()
        if exc is None:
            assert run.task.result() == [2 * x for x in range(run.length)]
            assert not 0 <= run.fail_at < run.length
        elif isinstance(exc, ValueError):
            assert exc.args == (run.fail_at,)
        else:
            assert isinstance(exc, ExecutorShutdownError)
            assert run.refusable


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(max_workers=pool_sizes, schedule=schedules)
def test_no_worker_task_outlives_the_shutdown_of_a_random_schedule(
    new_loop: LoopFactory, max_workers: int, schedule: list[tuple[Any, ...]]
) -> None:
    report = run_on(new_loop, run_schedule(max_workers, schedule))
    assert report.leftover_workers == []


# -- map and map_iter over random inputs --------------------------------------------------


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(
    max_workers=pool_sizes,
    window=st.integers(min_value=1, max_value=8),
    delays=st.lists(ticks, max_size=40),
)
def test_map_returns_every_result_in_input_order_for_any_pool_and_window(
    new_loop: LoopFactory, max_workers: int, window: int, delays: list[int]
) -> None:
    async def delayed(i: int, n_ticks: int) -> int:
        for _ in range(n_ticks):
            await asyncio.sleep(0)
        return i

    async def main() -> list[int]:
        async with AsyncExecutor(max_workers=max_workers) as executor:
            return await executor.map(delayed, range(len(delays)), delays, window=window)

    assert run_on(new_loop, main()) == list(range(len(delays)))  # type: ignore[arg-type]


@pytest.mark.parametrize("new_loop", LOOPS)
@PROPERTY_SETTINGS
@given(
    max_workers=pool_sizes,
    window=st.integers(min_value=1, max_value=8),
    delays=st.lists(ticks, max_size=40),
    pauses=st.lists(ticks, max_size=40),
)
def test_map_iter_never_reads_more_than_window_ahead_of_its_consumer(
    new_loop: LoopFactory, max_workers: int, window: int, delays: list[int], pauses: list[int]
) -> None:
    read = 0

    def source() -> Iterator[tuple[int, int]]:
        nonlocal read
        for item in enumerate(delays):
            read += 1
            yield item

    async def delayed(pair: tuple[int, int]) -> int:
        for _ in range(pair[1]):
            await asyncio.sleep(0)
        return pair[0]

    async def main() -> tuple[list[int], int]:
        furthest = 0
        values = []
        async with AsyncExecutor(max_workers=max_workers) as executor:
            async for value in executor.map_iter(delayed, source(), window=window):
                values.append(value)
                furthest = max(furthest, read - len(values))
                for _ in range(pauses[len(values) - 1] if len(values) <= len(pauses) else 0):
                    await asyncio.sleep(0)
        return values, furthest

    values, furthest = run_on(new_loop, main())  # type: ignore[arg-type]
    assert values == list(range(len(delays)))
    assert furthest <= window
