"""antflow.metrics.PrometheusCollector and the TaskTimings histograms behind timing=True."""

from __future__ import annotations

import ast
import asyncio
import math
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import DuplicateTimeseries
from prometheus_client.utils import floatToGoString

import antflow
from antflow import AsyncExecutor, ExecutorStats
from antflow._timing import BUCKETS, TaskTimings
from antflow.metrics import PrometheusCollector

COUNTERS = ("submitted", "completed", "failed", "cancelled", "retried")
GAUGES = ("pending", "running")
NAMES = (
    *(f"antflow_tasks_{field}_total" for field in COUNTERS),
    *(f"antflow_tasks_{field}" for field in GAUGES),
    "antflow_workers",
)
HISTOGRAMS = ("antflow_task_queue_seconds", "antflow_task_run_seconds")


def exported(registry: CollectorRegistry, executor: str) -> dict[str, float | None]:
    """The value of each counter and gauge for one executor label."""
    return {name: registry.get_sample_value(name, {"executor": executor}) for name in NAMES}


def expected(stats: ExecutorStats, workers: int) -> dict[str, float | None]:
    values = asdict(stats)
    return {
        **{f"antflow_tasks_{field}_total": values[field] for field in COUNTERS},
        **{f"antflow_tasks_{field}": values[field] for field in GAUGES},
        "antflow_workers": workers,
    }


def histogram(
    registry: CollectorRegistry, name: str, executor: str
) -> tuple[list[tuple[str, float | None]], float | None, float | None]:
    """(cumulative buckets by ``le``, sum, count) of one exported histogram."""
    bounds = [*(floatToGoString(bound) for bound in BUCKETS), "+Inf"]
    buckets = [
        (le, registry.get_sample_value(f"{name}_bucket", {"executor": executor, "le": le}))
        for le in bounds
    ]
    labels = {"executor": executor}
    return (
        buckets,
        registry.get_sample_value(f"{name}_sum", labels),
        registry.get_sample_value(f"{name}_count", labels),
    )


class FakeExecutor:
    """Anything with stats(), max_workers and a name can be exported."""

    def __init__(self, name: str, stats: ExecutorStats, max_workers: int = 3) -> None:
        self.name = name
        self.max_workers = max_workers
        self.snapshot = stats
        self.stats_calls = 0

    def stats(self) -> ExecutorStats:
        self.stats_calls += 1
        return self.snapshot


STATS = ExecutorStats(
    submitted=9, pending=1, running=2, completed=3, failed=2, cancelled=1, retried=4
)


# -- TaskTimings ---------------------------------------------------------------------------


def test_buckets_are_increasing_bounds_from_100_microseconds_to_10_seconds() -> None:
    assert BUCKETS[0] == 0.0001
    assert BUCKETS[-1] == 10.0
    assert list(BUCKETS) == sorted(set(BUCKETS))


def test_a_value_equal_to_a_bound_counts_in_that_bucket_and_one_above_in_the_next() -> None:
    for i, bound in enumerate(BUCKETS):
        timings = TaskTimings()
        timings.observe_queue(bound)
        timings.observe_run(math.nextafter(bound, math.inf))
        queue, _, _ = timings.queue_snapshot()
        run, _, _ = timings.run_snapshot()
        # Cumulative: 0 below the value's bucket, 1 from it on.
        assert [count for _, count in queue] == [0] * i + [1] * (len(BUCKETS) + 1 - i)
        assert [count for _, count in run] == [0] * (i + 1) + [1] * (len(BUCKETS) - i)


def test_one_observe_call_records_the_queue_time_and_the_run_time_of_a_task() -> None:
    timings = TaskTimings()
    timings.observe(0.0003, 2.0)  # what the worker records when a task ends
    queue, queue_sum, queue_count = timings.queue_snapshot()
    run, run_sum, run_count = timings.run_snapshot()
    assert (queue_sum, queue_count, run_sum, run_count) == (0.0003, 1, 2.0, 1)
    assert dict(queue)[0.00025] == 0 and dict(queue)[0.0005] == 1
    assert dict(run)[1.0] == 0 and dict(run)[2.5] == 1


def test_values_beyond_the_last_bound_count_only_in_the_inf_bucket() -> None:
    timings = TaskTimings()
    timings.observe_run(10.5)
    timings.observe_run(3600.0)
    buckets, total, count = timings.run_snapshot()
    assert buckets[-2] == (10.0, 0)
    assert buckets[-1] == (math.inf, 2)
    assert (total, count) == (3610.5, 2)


def test_snapshot_is_cumulative_with_inf_equal_to_the_count_and_the_sum_of_values() -> None:
    values = [0.00005, 0.0001, 0.0003, 0.004, 0.004, 0.02, 0.7, 3.0, 12.0]
    timings = TaskTimings()
    for value in values:
        timings.observe_queue(value)
    buckets, total, count = timings.queue_snapshot()

    assert [bound for bound, _ in buckets] == [*BUCKETS, math.inf]
    counts = [n for _, n in buckets]
    assert counts == sorted(counts)  # monotone
    for bound, n in buckets:
        assert n == sum(1 for value in values if value <= bound)
    assert count == counts[-1] == len(values)
    assert total == pytest.approx(sum(values))


def test_queue_and_run_times_are_separate_histograms() -> None:
    timings = TaskTimings()
    timings.observe_queue(0.001)
    timings.observe_queue(0.002)
    timings.observe_run(5.0)
    queue_buckets, queue_sum, queue_count = timings.queue_snapshot()
    run_buckets, run_sum, run_count = timings.run_snapshot()
    assert (queue_count, run_count) == (2, 1)
    assert queue_sum == pytest.approx(0.003)
    assert run_sum == 5.0
    assert dict(queue_buckets)[0.0025] == 2
    assert dict(run_buckets)[2.5] == 0
    assert dict(run_buckets)[5.0] == 1


def test_a_fresh_timings_has_empty_snapshots() -> None:
    buckets, total, count = TaskTimings().run_snapshot()
    assert all(n == 0 for _, n in buckets)
    assert (total, count) == (0.0, 0)


def test_a_snapshot_is_a_copy_that_later_observations_do_not_change() -> None:
    timings = TaskTimings()
    timings.observe_run(0.5)
    before = timings.run_snapshot()
    timings.observe_run(0.5)
    assert before[1:] == (0.5, 1)
    assert before[0][-1] == (math.inf, 1)


def test_timings_module_imports_nothing_from_antflow() -> None:
    source = Path(antflow.__file__).with_name("_timing.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import from {node.module!r}"
            assert not (node.module or "").startswith("antflow")
        elif isinstance(node, ast.Import):
            assert not any(alias.name.startswith("antflow") for alias in node.names)


# -- the collector, on any executor-like object ---------------------------------------------


def test_collector_exports_stats_and_pool_size_labelled_with_the_executor_name() -> None:
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(FakeExecutor("partner", STATS, max_workers=7)))
    assert exported(registry, "partner") == expected(STATS, 7)


def test_registering_the_collector_does_not_read_the_executor() -> None:
    fake = FakeExecutor("partner", STATS)
    registry = CollectorRegistry(auto_describe=True)  # like prometheus_client.REGISTRY
    registry.register(PrometheusCollector(fake))
    assert fake.stats_calls == 0
    generate_latest(registry)
    assert fake.stats_calls == 1


def test_each_scrape_reads_the_stats_of_that_moment() -> None:
    fake = FakeExecutor("partner", STATS)
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(fake))
    assert registry.get_sample_value("antflow_tasks_completed_total", {"executor": "partner"}) == 3
    fake.snapshot = ExecutorStats(10, 0, 0, 8, 2, 0, 0)
    assert registry.get_sample_value("antflow_tasks_completed_total", {"executor": "partner"}) == 8


def test_the_name_falls_back_to_the_private_attribute() -> None:
    class Unnamed:
        max_workers = 2

        def __init__(self) -> None:
            self._name = "legacy"

        def stats(self) -> ExecutorStats:
            return STATS

    registry = CollectorRegistry()
    registry.register(PrometheusCollector(Unnamed()))
    assert exported(registry, "legacy") == expected(STATS, 2)


def test_an_object_without_a_name_is_refused() -> None:
    class Nameless:
        max_workers = 2

        def stats(self) -> ExecutorStats:
            return STATS

    with pytest.raises(TypeError, match="no name"):
        PrometheusCollector(Nameless())


def test_one_collector_exports_several_executors_each_under_its_own_label() -> None:
    other = ExecutorStats(4, 0, 1, 2, 1, 0, 0)
    registry = CollectorRegistry()
    collector = PrometheusCollector(FakeExecutor("a", STATS, 3), FakeExecutor("b", other, 9))
    registry.register(collector)
    assert exported(registry, "a") == expected(STATS, 3)
    assert exported(registry, "b") == expected(other, 9)
    text = generate_latest(registry).decode()
    assert text.count("# TYPE antflow_workers gauge") == 1
    assert repr(collector) == "<PrometheusCollector executors=['a', 'b']>"


def test_executors_in_one_collector_must_have_different_names() -> None:
    with pytest.raises(ValueError, match="different names"):
        PrometheusCollector(FakeExecutor("same", STATS), FakeExecutor("same", STATS))


def test_a_second_collector_in_the_same_registry_is_refused() -> None:
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(FakeExecutor("a", STATS)))
    with pytest.raises(DuplicateTimeseries):
        registry.register(PrometheusCollector(FakeExecutor("b", STATS)))


def test_histograms_are_absent_for_an_executor_without_timings() -> None:
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(FakeExecutor("partner", STATS)))
    text = generate_latest(registry).decode()
    for name in HISTOGRAMS:
        assert name not in text
        assert registry.get_sample_value(f"{name}_count", {"executor": "partner"}) is None


def test_histograms_are_exported_from_an_executors_timings() -> None:
    fake: Any = FakeExecutor("partner", STATS)
    fake.timings = TaskTimings()
    for value in (0.0002, 0.003, 0.003, 20.0):
        fake.timings.observe_queue(value)
    fake.timings.observe_run(0.07)
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(fake))

    buckets, total, count = histogram(registry, "antflow_task_queue_seconds", "partner")
    assert dict(buckets)["0.0001"] == 0
    assert dict(buckets)["0.00025"] == 1
    assert dict(buckets)["0.0025"] == 1
    assert dict(buckets)["0.005"] == 3
    assert dict(buckets)["10.0"] == 3
    assert dict(buckets)["+Inf"] == count == 4
    assert total == pytest.approx(20.0062)

    buckets, total, count = histogram(registry, "antflow_task_run_seconds", "partner")
    assert dict(buckets)["0.05"] == 0
    assert dict(buckets)["0.1"] == 1
    assert (total, count) == (0.07, 1)


# -- the collector on a real AsyncExecutor -------------------------------------------------


async def test_exported_values_equal_the_executors_stats_after_real_work() -> None:
    attempts: dict[int, int] = {}
    release = asyncio.Event()

    async def job(n: int) -> int:
        attempts[n] = attempts.get(n, 0) + 1
        await asyncio.sleep(0)
        if n == 2 and attempts[n] == 1:
            raise ConnectionError("transient")  # retried once, then succeeds
        if n in (3, 4):
            raise ValueError(n)
        return n

    registry = CollectorRegistry()
    async with AsyncExecutor(max_workers=1, name="images") as executor:
        registry.register(PrometheusCollector(executor))
        blocker = executor.submit(release.wait)
        queued = executor.submit(job, 0)
        queued.cancel()  # cancelled while waiting to start
        futures = [executor.submit(job, n, retries=1, retry_delay=0) for n in range(1, 5)]

        # While the only worker is held: one running, four pending (the cancelled one left).
        await asyncio.sleep(0.01)
        assert exported(registry, "images") == expected(executor.stats(), 1)
        assert registry.get_sample_value("antflow_tasks_running", {"executor": "images"}) == 1
        assert registry.get_sample_value("antflow_tasks_pending", {"executor": "images"}) == 4

        release.set()
        await executor.wait([blocker, *futures])

    stats = executor.stats()
    assert (stats.completed, stats.failed, stats.cancelled) == (3, 2, 1)
    assert stats.retried == 3  # job 2 once, jobs 3 and 4 once each
    assert exported(registry, "images") == expected(stats, 1)


async def test_the_scrape_text_names_every_metric() -> None:
    registry = CollectorRegistry()
    async with AsyncExecutor(max_workers=2, name="scraped") as executor:
        registry.register(PrometheusCollector(executor))
        await executor.map(asyncio.sleep, [0, 0, 0])
    text = generate_latest(registry).decode()
    for name in NAMES:
        assert f'\n{name}{{executor="scraped"}} ' in f"\n{text}"


async def test_timing_exports_queue_and_run_histograms_of_the_finished_tasks() -> None:
    async def job(n: int) -> int:
        await asyncio.sleep(0.01)
        if n == 0:
            raise ValueError("a failed task is timed too")
        return n

    registry = CollectorRegistry()
    async with AsyncExecutor(max_workers=1, name="timed", timing=True) as executor:
        registry.register(PrometheusCollector(executor))
        futures = [executor.submit(job, n) for n in range(4)]
        await executor.wait(futures)
        stats = executor.stats()
        finished = stats.completed + stats.failed
        assert finished == 4

        for name in HISTOGRAMS:
            buckets, total, count = histogram(registry, name, "timed")
            assert count == finished
            counts = [n for _, n in buckets]
            assert None not in counts
            assert counts == sorted(counts)  # cumulative, so monotone
            assert counts[-1] == count
            assert total is not None

        # Each task slept 10 ms, so none ran in under 5 ms (a generous bound).
        buckets, total, count = histogram(registry, "antflow_task_run_seconds", "timed")
        assert dict(buckets)["0.005"] == 0
        assert total is not None and total >= 4 * 0.005
        # One worker: the second task waited for the first, the third for two, ...
        _, queue_total, _ = histogram(registry, "antflow_task_queue_seconds", "timed")
        assert queue_total is not None and queue_total >= 0.005


async def test_an_executor_without_timing_exports_no_histograms() -> None:
    registry = CollectorRegistry()
    async with AsyncExecutor(max_workers=2, name="untimed") as executor:
        registry.register(PrometheusCollector(executor))
        await executor.map(asyncio.sleep, [0.001] * 3)
    assert getattr(executor, "timings", None) is None
    text = generate_latest(registry).decode()
    assert not any(name in text for name in HISTOGRAMS)


# -- the optional dependency ---------------------------------------------------------------


def test_importing_antflow_does_not_import_prometheus_client() -> None:
    code = "import sys, antflow; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_importing_metrics_without_prometheus_client_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(sys.modules):
        if name == "prometheus_client" or name.startswith("prometheus_client."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "antflow.metrics")
    with pytest.raises(ImportError, match=r'pip install "antflow\[prometheus\]"'):
        import antflow.metrics  # noqa: F401
