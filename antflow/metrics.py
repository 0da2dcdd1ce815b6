"""Prometheus metrics for antflow executors.

Needs ``prometheus_client``: ``pip install "antflow[prometheus]"``. ``import antflow``
never imports this module, so the dependency stays optional.

::

    from prometheus_client import REGISTRY
    from antflow.metrics import PrometheusCollector

    REGISTRY.register(PrometheusCollector(executor))

Every value is read from ``executor.stats()`` when Prometheus scrapes, so exporting costs
nothing per task. The histograms come from executors made with ``timing=True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ImportError as exc:  # pragma: no cover - tested with the module hidden
    raise ImportError(
        'antflow.metrics needs prometheus_client: pip install "antflow[prometheus]"',
        name=exc.name,
    ) from exc

from ._stats import ExecutorStats
from ._timing import BUCKETS, HistogramSnapshot, TaskTimings

__all__ = ["PrometheusCollector"]

_LABELS = ("executor",)

# (stats() field, help text). Counters only grow; gauges are the state of the moment.
_COUNTERS = (
    ("submitted", "Tasks accepted by the executor."),
    ("completed", "Tasks that returned a value."),
    ("failed", "Tasks that raised an exception, timeouts included."),
    ("cancelled", "Tasks cancelled before they finished."),
    ("retried", "Extra attempts made by tasks with retries."),
)
_GAUGES = (
    ("pending", "Tasks accepted and waiting to start."),
    ("running", "Tasks in progress."),
)
_WORKERS_HELP = "How many tasks may run at once (max_workers)."
_QUEUE_HELP = "Seconds from a task's submit to its start."
_RUN_HELP = "Seconds from a task's start to its end."

# The ``le`` label of each bucket, as Prometheus writes it ("0.0001", ..., "10.0", "+Inf").
_LE = (*(repr(bound) for bound in BUCKETS), "+Inf")


class _Executor(Protocol):
    """What the collector needs of an executor (``AsyncExecutor`` and the others)."""

    @property
    def max_workers(self) -> int: ...

    def stats(self) -> ExecutorStats: ...


def _executor_name(executor: Any) -> str:
    name = getattr(executor, "name", None)
    if name is None:
        name = getattr(executor, "_name", None)
    if not isinstance(name, str):
        raise TypeError(f"{executor!r} has no name to label its metrics with")
    return name


class PrometheusCollector:
    """A Prometheus collector of one or more executors' counters, labelled by name.

    Register it once per registry: ``registry.register(PrometheusCollector(a, b))``. For
    each executor, each scrape reads ``stats()``, ``max_workers`` and, if the executor
    was made with ``timing=True``, its histograms; the samples carry the label
    ``executor="<its name>"``, so executors in one collector need different names. Pass
    all the executors of a registry to a single collector: a metric may appear only once
    in a scrape, so registering a second collector raises prometheus_client's
    ``DuplicateTimeseries`` (:meth:`describe` names the metrics, which lets the registry
    check this without collecting). Unregister the collector when its executors are
    done with: it keeps them alive, and goes on exporting their final counts.
    """

    def __init__(self, executor: _Executor, *more: _Executor) -> None:
        executors = (executor, *more)
        names = [_executor_name(each) for each in executors]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"executors in one collector need different names; repeated: {repeated}"
            )
        self._executors = tuple(zip(names, executors, strict=True))

    def describe(self) -> Iterator[Metric]:
        """The metric families this collector exports, without their samples."""
        return self._families(with_samples=False)

    def collect(self) -> Iterator[Metric]:
        """The metric families with the executors' values at this moment."""
        return self._families(with_samples=True)

    def _families(self, with_samples: bool) -> Iterator[Metric]:
        counters = {
            field: CounterMetricFamily(f"antflow_tasks_{field}", text, labels=_LABELS)
            for field, text in _COUNTERS
        }
        gauges = {
            field: GaugeMetricFamily(f"antflow_tasks_{field}", text, labels=_LABELS)
            for field, text in _GAUGES
        }
        workers = GaugeMetricFamily("antflow_workers", _WORKERS_HELP, labels=_LABELS)
        queue = HistogramMetricFamily("antflow_task_queue_seconds", _QUEUE_HELP, labels=_LABELS)
        run = HistogramMetricFamily("antflow_task_run_seconds", _RUN_HELP, labels=_LABELS)
        timed = not with_samples  # describe() names the histograms whatever the executors
        if with_samples:
            for name, executor in self._executors:
                label = [name]
                stats = executor.stats()
                for field, family in counters.items():
                    family.add_metric(label, getattr(stats, field))
                for field, gauge in gauges.items():
                    gauge.add_metric(label, getattr(stats, field))
                workers.add_metric(label, executor.max_workers)
                timings: TaskTimings | None = getattr(executor, "timings", None)
                if timings is not None:
                    timed = True
                    _add_histogram(queue, label, timings.queue_snapshot())
                    _add_histogram(run, label, timings.run_snapshot())
        yield from counters.values()
        yield from gauges.values()
        yield workers
        if timed:
            yield queue
            yield run

    def __repr__(self) -> str:
        return f"<PrometheusCollector executors={[name for name, _ in self._executors]}>"


def _add_histogram(
    family: HistogramMetricFamily, label: list[str], snap: HistogramSnapshot
) -> None:
    buckets, total, _count = snap  # the +Inf bucket is the count
    family.add_metric(label, [(le, n) for le, (_, n) in zip(_LE, buckets, strict=True)], total)
