"""Scale-out benchmark: antflow across processes (ClusterExecutor) against one process,
aiomultiprocess and Dask with a task per item.

    python perf/scaleout.py                  # every contender, then the memory row
    python perf/scaleout.py --contender 'cluster-*,antflow'
    python perf/scaleout.py --list           # the contenders and the sizes that would run
    python perf/scaleout.py --scale          # the arithmetic of docs/cluster.md, measured
    BENCH_QUICK=1 python perf/scaleout.py    # small sizes (under a minute): the smoke test
    python perf/scaleout.py --publish        # full run, then copy its tables into the docs

Two workloads: CPU+I/O items (~150 µs of pure-Python work, calibrated here at start, then
``await asyncio.sleep(0.001)``), reported in items per second, and no-op items, reported in
µs per item. Each contender runs in a fresh process: its pool or cluster is started and
warmed up untimed, then one run per workload is timed on the wall clock and its results are
checked item by item. The memory row drives ``map_iter`` over a generator through
``ClusterExecutor(processes=2)`` and reports the client's peak RSS growth.

Results: perf/results/scaleout.md (the tables), scaleout.json, scaleout.png; ``--scale``
writes scaleout-scale.md and scaleout-scale.json. The exit status is non-zero only when a
contender fails (an exception, wrong results, a timeout), never for a missed target; a
contender whose package is missing is reported as not available.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fnmatch
import functools
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERF = Path(__file__).resolve().parent
ROOT = PERF.parent
RESULTS = PERF / "results"

sys.path.insert(0, str(PERF))
sys.path.insert(1, str(ROOT))

import scaleout_items as items  # noqa: E402
from rss import reset_peak, status_kib  # noqa: E402

MAX_WORKERS = 100  # slots per process, for every contender
MB = 1_000_000
LOCALHOST = "127.0.0.1"


class Unavailable(Exception):
    """A contender's package is not installed: reported, never a failure."""


# -- sizes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    cpuio: int
    noop: int


def _quick() -> bool:
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def sizes(contender: str, quick: bool) -> Sizes:
    """Per contender: the slow ones run fewer items (their per-item figure is what counts)."""
    if contender.startswith("dask-"):
        return Sizes(1_000, 500) if quick else Sizes(5_000, 2_000)
    if contender.startswith("aiomultiprocess"):
        return Sizes(2_000, 2_000) if quick else Sizes(20_000, 10_000)
    return Sizes(2_000, 5_000) if quick else Sizes(20_000, 100_000)


def memory_n(quick: bool) -> int:
    return 100_000 if quick else 1_000_000


# -- the contenders, each run inside its own process ---------------------------------------

Timed = dict[str, Any]


def _check(name: str, got: list[Any], n: int) -> None:
    if got != list(range(n)):
        bad = next((i for i, x in enumerate(got) if x != i), len(got))
        raise AssertionError(f"{name}: wrong results ({len(got)} of {n}, first bad index {bad})")


async def _timed(name: str, run: Callable[[list[int]], Any], n: int) -> tuple[float, float]:
    """Wall-clock seconds of ``run(range(n))`` and the CPU seconds of this process meanwhile
    (the client's share: the workers of the other contenders are other processes)."""
    data = list(range(n))
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    got = await run(data)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    _check(name, list(got), n)
    return seconds, cpu


async def _measure(
    name: str, mapper: Callable[[Callable[..., Any], list[int]], Any], spins: int, sz: Sizes
) -> Timed:
    """Warm up, then time CPU+I/O and no-op runs through ``mapper(fn, data)``."""
    cpu_io = functools.partial(items.cpu_io, spins=spins)
    await _timed(name + " warm-up", lambda d: mapper(cpu_io, d), 200)
    cpu_s, cpu_c = await _timed(name + " cpuio", lambda d: mapper(cpu_io, d), sz.cpuio)
    noop_s, noop_c = await _timed(name + " noop", lambda d: mapper(items.noop, d), sz.noop)
    return {
        "cpuio": {
            "n": sz.cpuio,
            "seconds": cpu_s,
            "items_per_s": sz.cpuio / cpu_s,
            "client_cpu_us_per_item": cpu_c / sz.cpuio * 1e6,
        },
        "noop": {
            "n": sz.noop,
            "seconds": noop_s,
            "us_per_item": noop_s / sz.noop * 1e6,
            "client_cpu_us_per_item": noop_c / sz.noop * 1e6,
        },
    }


async def run_antflow(spins: int, sz: Sizes) -> Timed:
    from antflow import AsyncExecutor

    async with AsyncExecutor(max_workers=MAX_WORKERS) as ex:
        return await _measure("antflow", ex.map, spins, sz)


def _cluster_class() -> Any:
    try:
        from antflow.cluster import ClusterExecutor
    except ImportError as exc:
        raise Unavailable(f"antflow.cluster does not import: {exc}") from exc
    return ClusterExecutor


async def run_cluster(processes: int, batch_size: int | None, spins: int, sz: Sizes) -> Timed:
    cluster_executor = _cluster_class()
    async with cluster_executor(processes=processes, max_workers=MAX_WORKERS) as ex:

        async def mapper(fn: Callable[..., Any], data: list[int]) -> list[Any]:
            return await ex.map(fn, data, batch_size=batch_size)  # type: ignore[no-any-return]

        return await _measure(f"cluster-{processes}", mapper, spins, sz)


async def run_aiomultiprocess(uvloop_children: bool, spins: int, sz: Sizes) -> Timed:
    """aiomultiprocess's pool; its children on asyncio's loop (as bench.md measured it) or
    on uvloop (as ClusterExecutor's workers are)."""
    try:
        import aiomultiprocess
    except ImportError as exc:
        raise Unavailable(f"aiomultiprocess is not installed: {exc}") from exc
    loop_initializer: Any = None
    if uvloop_children:
        try:
            import uvloop
        except ImportError as exc:
            raise Unavailable(f"uvloop is not installed: {exc}") from exc
        loop_initializer = uvloop.new_event_loop
    pool = aiomultiprocess.Pool(
        processes=2, childconcurrency=MAX_WORKERS, loop_initializer=loop_initializer
    )
    try:

        async def mapper(fn: Callable[..., Any], data: list[int]) -> list[Any]:
            return await pool.map(fn, data)

        return await _measure("aiomultiprocess", mapper, spins, sz)
    finally:
        pool.terminate()
        await asyncio.wait_for(pool.join(), 30)


def _distributed() -> Any:
    """Dask distributed, or Unavailable (it comes with ``antflow[cluster]``)."""
    try:
        import distributed
    except ImportError as exc:
        raise Unavailable(f"distributed is not installed: {exc}") from exc
    return distributed


def _local_cluster(n_workers: int, threads: int) -> Any:
    return _distributed().LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        processes=True,
        host=LOCALHOST,
        dashboard_address=None,
        asynchronous=True,
    )


async def _dask_map(client: Any, fn: Callable[..., Any], data: list[int], **kw: Any) -> Any:
    futures = client.map(fn, data, pure=False, **kw)
    try:
        return await client.gather(futures)
    finally:
        del futures


async def run_dask(threads: int, spins: int, sz: Sizes) -> Timed:
    Client = _distributed().Client

    async with _local_cluster(2, threads) as cluster, Client(cluster, asynchronous=True) as c:
        await c.wait_for_workers(2, timeout=60)

        async def mapper(fn: Callable[..., Any], data: list[int]) -> Any:
            return await _dask_map(c, fn, data)

        return await _measure(f"dask-{threads}", mapper, spins, sz)


async def run_processpool(spins: int, sz: Sizes) -> Timed:
    """The hand-written reference: ProcessPoolExecutor(2), 20 chunks, each an antflow map."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    try:

        async def mapper(fn: Callable[..., Any], data: list[int]) -> list[Any]:
            step = -(-len(data) // 20)
            chunks = [data[i : i + step] for i in range(0, len(data), step)]
            parts = await asyncio.gather(
                *(loop.run_in_executor(pool, items.map_chunk, fn, c, MAX_WORKERS) for c in chunks)
            )
            return [r for part in parts for r in part]

        return await _measure("processpool", mapper, spins, sz)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


CONTENDERS: dict[str, tuple[str, Callable[[int, Sizes], Any]]] = {
    "antflow": ("antflow AsyncExecutor(100), one process", run_antflow),
    "cluster-1": (
        "ClusterExecutor(processes=1, max_workers=100)",
        functools.partial(run_cluster, 1, None),
    ),
    "cluster-2": (
        "ClusterExecutor(processes=2, max_workers=100)",
        functools.partial(run_cluster, 2, None),
    ),
    "cluster-2-batch1000": (
        "the same, map(..., batch_size=1000) instead of adaptive batches",
        functools.partial(run_cluster, 2, 1000),
    ),
    "aiomultiprocess": (
        "aiomultiprocess Pool(processes=2, childconcurrency=100).map",
        functools.partial(run_aiomultiprocess, False),
    ),
    "aiomultiprocess-uvloop": (
        "aiomultiprocess, the same with its children on uvloop",
        functools.partial(run_aiomultiprocess, True),
    ),
    "dask-1": (
        "Dask client.map, a task per item, 2 workers x 1 thread",
        functools.partial(run_dask, 1),
    ),
    "dask-100": (
        "Dask client.map, a task per item, 2 workers x 100 threads",
        functools.partial(run_dask, 100),
    ),
    "processpool": (
        "reference: ProcessPoolExecutor(2), 20 chunks, each an AsyncExecutor(100).map",
        run_processpool,
    ),
}


# -- the memory row ------------------------------------------------------------------------


async def run_memory(n: int) -> Timed:
    cluster_executor = _cluster_class()

    def inputs(count: int) -> Iterator[int]:
        yield from range(count)

    async with cluster_executor(processes=2, max_workers=MAX_WORKERS) as ex:
        async for _ in ex.map_iter(items.noop, inputs(2_000)):  # warm-up, untimed
            pass
        gc.collect()
        exact = reset_peak()
        before = status_kib("VmRSS")
        if not exact or before is None:
            raise Unavailable("needs Linux's /proc/self/clear_refs and /proc/self/status")
        expected = 0
        t0 = time.perf_counter()
        async for r in ex.map_iter(items.noop, inputs(n)):
            if r != expected:
                raise AssertionError(f"memory: result {r!r} at index {expected}")
            expected += 1
        seconds = time.perf_counter() - t0
        peak = status_kib("VmHWM")
        assert peak is not None
        if expected != n:
            raise AssertionError(f"memory: {expected} results of {n}")
    return {
        "memory": {
            "n": n,
            "seconds": seconds,
            "us_per_item": seconds / n * 1e6,
            "rss_before_mb": before * 1024 / MB,
            "growth_mb": max(0, peak - before) * 1024 / MB,
        }
    }


# -- --scale: the arithmetic of docs/cluster.md, measured -----------------------------------


def scale_n(quick: bool) -> dict[str, int]:
    return (
        {"sched": 1_000, "cluster": 8_000, "dask": 1_000}
        if quick
        else {"sched": 5_000, "cluster": 40_000, "dask": 4_000}
    )


SLEEP_S = 0.01


async def run_scale_sched(n: int) -> Timed:
    """Dask's scheduler rate here: n tiny synchronous tasks, 2 workers x 1 thread.

    Worker saturation is unbounded so that every task is sent at once: the figure is then
    what the scheduler (in this process, as in any LocalCluster) and the workers get through
    per second, not one round trip per task (2 tasks per 1-thread worker at a time, Dask's
    default, measures the latency instead: about a third of the rate here).
    """
    Client = _distributed().Client
    import dask

    saturation = {"distributed.scheduler.worker-saturation": float("inf")}
    with dask.config.set(saturation):  # this process only: it is the child of one job
        async with _local_cluster(2, 1) as cluster, Client(cluster, asynchronous=True) as c:
            await c.wait_for_workers(2, timeout=60)
            await _dask_map(c, items.tiny, list(range(200)))
            t0 = time.perf_counter()
            got = await _dask_map(c, items.tiny, list(range(n)))
            seconds = time.perf_counter() - t0
            _check("sched", list(got), n)
    return {"sched": {"n": n, "seconds": seconds, "tasks_per_s": n / seconds}}


async def _cpu_seconds(client: Any) -> tuple[float, float]:
    """CPU seconds so far of this process (client and, in a LocalCluster, the scheduler)
    and of all the Dask worker processes together."""
    workers = await client.run(time.process_time)
    return time.process_time(), float(sum(workers.values()))


async def _scale_run(client: Any, label: str, processes: int, n: int, run: Awaitable[Any]) -> Timed:
    """Await ``run`` (a map over range(n)), counting the Dask tasks it took (the task
    stream) and the CPU time of the client and the workers meanwhile."""
    from distributed import get_task_stream

    c0, w0 = await _cpu_seconds(client)
    t0 = time.perf_counter()
    async with get_task_stream(client) as stream:
        got = await run
    seconds = time.perf_counter() - t0
    c1, w1 = await _cpu_seconds(client)
    _check(label, list(got), n)
    tasks = len(stream.data)
    return {
        "label": label,
        "processes": processes,
        "n": n,
        "seconds": seconds,
        "items_per_s": n / seconds,
        "tasks": tasks,
        "tasks_per_s": tasks / seconds,
        "items_per_task": n / tasks if tasks else None,
        "client_cpu_us_per_item": (c1 - c0) / n * 1e6,
        "workers_cpu_us_per_item": (w1 - w0) / n * 1e6,
        "cores_busy": (c1 - c0 + w1 - w0) / seconds,
    }


SWEEP = (1, 8, 64)  # fixed batch sizes tried on 2 processes, to see the scheduler bound


async def run_scale_cluster(processes: int, n: int, quick: bool) -> Timed:
    """Sleep-bound items through ClusterExecutor(processes): adaptive batches, and on 2
    processes also fixed batch sizes, each run counting the Dask tasks it took."""
    cluster_executor = _cluster_class()
    sleeper = functools.partial(items.sleeper, seconds=SLEEP_S)
    rows = []
    async with cluster_executor(processes=processes, max_workers=MAX_WORKERS) as ex:
        await ex.map(sleeper, list(range(2_000)))
        runs: list[int | None] = [None, *(SWEEP if processes == 2 else ())]
        for batch_size in runs:
            size = n if batch_size is None else min(n, max(1_000, batch_size * 1_000))
            if quick and batch_size is not None:
                size = min(size, 2_000)
            how = "adaptive batches" if batch_size is None else f"batch_size={batch_size}"
            label = f"ClusterExecutor(processes={processes}), {how}"
            run = ex.map(sleeper, list(range(size)), batch_size=batch_size)
            rows.append(await _scale_run(ex.client, label, processes, size, run))
    return {"scale": rows}


async def run_scale_dask(workers: int, n: int) -> Timed:
    Client = _distributed().Client

    sleeper = functools.partial(items.sleeper, seconds=SLEEP_S)
    async with (
        _local_cluster(workers, MAX_WORKERS) as cluster,
        Client(cluster, asynchronous=True) as c,
    ):
        await c.wait_for_workers(workers, timeout=60)
        await _dask_map(c, sleeper, list(range(200)))
        label = f"Dask task per item, {workers} workers x {MAX_WORKERS} threads"
        row = await _scale_run(c, label, workers, n, _dask_map(c, sleeper, list(range(n))))
    return {"scale": [row]}


SCALE_JOBS = [
    ("sched", "Dask scheduler: tiny sync tasks, 2 workers x 1 thread, all sent at once"),
    *((f"scale-cluster-{p}", f"ClusterExecutor(processes={p}), sleep items") for p in (1, 2, 4)),
    *((f"scale-dask-{p}", f"Dask task per item, {p} workers x 100 threads") for p in (1, 2, 4)),
]


# -- the child process ---------------------------------------------------------------------


def child_main(job: str, spins: int, quick: bool) -> int:
    """Run one job and print one JSON line: its figures, or why it could not run."""
    import antflow

    async def one() -> Timed:
        if job in CONTENDERS:
            return await CONTENDERS[job][1](spins, sizes(job, quick))  # type: ignore[no-any-return]
        if job == "memory":
            return await run_memory(memory_n(quick))
        n = scale_n(quick)
        if job == "sched":
            return await run_scale_sched(n["sched"])
        if job.startswith("scale-cluster-"):
            return await run_scale_cluster(int(job.rsplit("-", 1)[1]), n["cluster"], quick)
        if job.startswith("scale-dask-"):
            return await run_scale_dask(int(job.rsplit("-", 1)[1]), n["dask"])
        raise SystemExit(f"unknown job {job!r}")

    try:
        out: Timed = {"ok": True, **antflow.run(one())}
    except Unavailable as exc:
        out = {"ok": True, "unavailable": str(exc)}
    except BaseException as exc:  # reported to the parent, which fails the run
        import traceback

        traceback.print_exc()
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


# -- the parent: one process per job, then the report --------------------------------------


def run_child(job: str, spins: int, quick: bool, timeout: float) -> Timed:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PERF), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", job, "--spins", str(spins)]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout ends the workers too
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return {"ok": False, "error": f"timed out after {timeout:.0f} s", "stderr": stderr}
    finally:
        if proc.poll() is None:  # interrupted while waiting
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        return {"ok": False, "error": f"exit status {proc.returncode}, no result", "stderr": stderr}
    out: Timed = json.loads(lines[-1][len("RESULT ") :])
    out["wall_s"] = time.perf_counter() - t0
    if not out["ok"]:
        out["stderr"] = stderr
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _status(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def _figure(res: dict[str, Timed], key: str, workload: str, field: str) -> float | None:
    r = res.get(key, {})
    w = r.get(workload)
    return None if w is None else float(w[field])


def report(res: dict[str, Timed], meta: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    out = [
        "# Scale-out (perf/scaleout.py)",
        "",
        f"- date: {meta['date']}; {'BENCH_QUICK sizes' if meta['quick'] else 'full sizes'}; "
        f"took {meta['took_s']:.0f} s",
        f"- machine: {meta['machine']}; load average at start {meta['load']}",
        f"- CPU+I/O item: spin({meta['spins']}) (~150 µs of pure Python, calibrated at start) "
        "then `await asyncio.sleep(0.001)`; no-op item: `async def noop(x): return x`",
        f"- {MAX_WORKERS} slots per process everywhere; one timed run each, wall clock, pool "
        "or cluster start-up and a 200-item warm-up not timed; results checked",
        "- client CPU: the CPU time of the process that calls `map`, per item (all the work "
        "for the one-process row; with a LocalCluster it includes the scheduler's)",
        "",
        "| contender | CPU+I/O items/s | n | no-op µs per item | n | client CPU µs per no-op |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, (label, _) in CONTENDERS.items():
        r = res.get(key)
        if r is None:
            continue
        if not r.get("ok") or "unavailable" in r:
            why = r.get("unavailable") or f"FAILED: {r.get('error')}"
            out.append(f"| {label} | {why} | | | | |")
            continue
        c, z = r["cpuio"], r["noop"]
        out.append(
            f"| {label} | {c['items_per_s']:,.0f} | {c['n']:,} | "
            f"{_fmt(z['us_per_item'])} | {z['n']:,} | {_fmt(z['client_cpu_us_per_item'])} |"
        )
    mem = res.get("memory")
    if mem is not None:
        out += ["", "| memory: `map_iter` through ClusterExecutor(processes=2) | value |"]
        out += ["| --- | ---: |"]
        if mem.get("ok") and "memory" in mem:
            m = mem["memory"]
            out += [
                f"| inputs (a generator of no-op items) | {m['n']:,} |",
                f"| client's peak RSS growth (MB) | {m['growth_mb']:.1f} |",
                f"| client's RSS before (MB) | {m['rss_before_mb']:.1f} |",
                f"| µs per item | {_fmt(m['us_per_item'])} |",
            ]
        else:
            out.append(
                f"| result | {mem.get('unavailable') or 'FAILED: ' + str(mem.get('error'))} |"
            )

    targets = []
    c2 = _figure(res, "cluster-2", "cpuio", "items_per_s")

    def ratio_row(name: str, other: float | None, other_label: str, goal: float) -> None:
        value = None if c2 is None or not other else c2 / other
        targets.append(
            {
                "target": name,
                "goal": f"≥ {goal}",
                "value": value,
                "shown": "not available" if value is None else f"{value:.2f}",
                "detail": f"{_fmt(c2)} / {_fmt(other)} items/s ({other_label})",
                "met": None if value is None else value >= goal,
            }
        )

    ratio_row(
        "ClusterExecutor(2) / AsyncExecutor, CPU+I/O",
        _figure(res, "antflow", "cpuio", "items_per_s"),
        "one process",
        1.6,
    )
    ratio_row(
        "ClusterExecutor(2) / aiomultiprocess, CPU+I/O",
        _figure(res, "aiomultiprocess", "cpuio", "items_per_s"),
        "aiomultiprocess",
        1.6,
    )
    ratio_row(
        "... / aiomultiprocess with its children on uvloop (stricter, not in bench.md)",
        _figure(res, "aiomultiprocess-uvloop", "cpuio", "items_per_s"),
        "aiomultiprocess on uvloop",
        1.6,
    )
    ratio_row(
        "ClusterExecutor(2) / Dask task per item, 1 thread per worker, CPU+I/O",
        _figure(res, "dask-1", "cpuio", "items_per_s"),
        "dask-1",
        10,
    )
    ratio_row(
        "... / Dask task per item, 100 threads per worker (stricter, not in bench.md)",
        _figure(res, "dask-100", "cpuio", "items_per_s"),
        "dask-100",
        10,
    )
    noop = _figure(res, "cluster-2", "noop", "us_per_item")
    targets.append(
        {
            "target": "no-op items through ClusterExecutor(2), µs per item",
            "goal": "≤ 5",
            "value": noop,
            "shown": "not available" if noop is None else _fmt(noop),
            "detail": "",
            "met": None if noop is None else noop <= 5,
        }
    )
    growth = mem["memory"]["growth_mb"] if mem and "memory" in mem else None
    targets.append(
        {
            "target": f"client's peak RSS growth, map_iter over "
            f"{memory_n(meta['quick']):,} inputs (MB)",
            "goal": "≤ 50",
            "value": growth,
            "shown": "not available" if growth is None else f"{growth:.1f}",
            "detail": "",
            "met": None if growth is None else growth <= 50,
        }
    )
    out += ["", "| target | goal | measured | status |", "| --- | --- | ---: | --- |"]
    for t in targets:
        shown = t["shown"] + (f" ({t['detail']})" if t["detail"] and t["value"] else "")
        status = "-" if t["met"] is None else _status(t["met"])
        out.append(f"| {t['target']} | {t['goal']} | {shown} | {status} |")
    measured = [t for t in targets if t["met"] is not None]
    out += ["", f"{sum(t['met'] for t in measured)} of {len(measured)} measured targets met."]
    if meta["quick"]:
        out.append("BENCH_QUICK sizes: the targets are indicative only.")
    return "\n".join(out) + "\n", targets


def chart(res: dict[str, Timed], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [
        (key, r) for key, r in res.items() if key in CONTENDERS and r.get("ok") and "cpuio" in r
    ]
    if not rows:
        return False
    names = [key for key, _ in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.55 * len(rows) + 1.6))
    colors = ["tab:blue" if k.startswith("cluster") else "tab:gray" for k in names]
    rates = [r["cpuio"]["items_per_s"] for _, r in rows]
    costs = [r["noop"]["us_per_item"] for _, r in rows]
    left.barh(names, rates, color=colors)
    left.bar_label(left.containers[0], labels=[f" {v:,.0f}" for v in rates], fontsize=8)
    left.set_xlim(0, max(rates) * 1.2)
    left.set_xlabel("CPU+I/O items per second (higher is better)")
    right.barh(names, costs, color=colors)
    right.bar_label(right.containers[0], labels=[f" {_fmt(v)}" for v in costs], fontsize=8)
    right.set_xlim(min(costs) / 2, max(costs) * 8)
    right.set_xscale("log")
    right.set_xlabel("no-op µs per item, log scale (lower is better)")
    right.set_yticklabels([])
    for ax in (left, right):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("antflow scale-out, 2 cores (perf/scaleout.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def scale_report(res: dict[str, Timed], meta: dict[str, Any]) -> str:
    cores = os.cpu_count() or 1
    sched = res.get("sched", {}).get("sched")
    rate = sched["tasks_per_s"] if sched else None
    out = [
        "# Scale-out arithmetic, measured (perf/scaleout.py --scale)",
        "",
        f"- date: {meta['date']}; {'BENCH_QUICK sizes' if meta['quick'] else 'full sizes'}; "
        f"machine: {meta['machine']}; load average at start {meta['load']}",
        f"- sleep-bound items: `await asyncio.sleep({SLEEP_S})`, {MAX_WORKERS} slots per "
        f"process: at most {MAX_WORKERS / SLEEP_S:,.0f} items/s per process (slot ceiling)",
        "- R, Dask's rate here: "
        + (
            f"{rate:,.0f} tasks/s ({sched['n']:,} tiny synchronous tasks, 2 workers x 1 "
            "thread, all sent at once)"
            if rate
            else "not measured"
        ),
        f"- predicted = the smallest of: the slot ceiling; R x items per task (the scheduler); "
        f"the CPU ceiling, {cores} cores / (client + workers CPU per item), the cores being "
        "shared by the client, the scheduler (in the client's process, as in any LocalCluster) "
        "and every worker. *cores busy*: their CPU seconds per second of the run",
        "",
        "| run | processes | n | items/s | Dask tasks | tasks/s | items per task "
        "| client CPU µs/item | workers CPU µs/item | cores busy | slot ceiling "
        "| R x items per task | CPU ceiling | measured / predicted |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: |",
    ]
    for job, label in SCALE_JOBS[1:]:
        r = res.get(job)
        if r is None:
            continue
        if not r.get("ok") or "unavailable" in r:
            why = r.get("unavailable") or "FAILED: " + str(r.get("error"))
            out.append(f"| {label} | {why} |" + " |" * 11)
            continue
        for row in r["scale"]:
            per_task = row["items_per_task"]
            slots = row["processes"] * MAX_WORKERS / SLEEP_S
            sched_bound = rate * per_task if rate and per_task else None
            cpu_per_item = (row["client_cpu_us_per_item"] + row["workers_cpu_us_per_item"]) / 1e6
            cpu_bound = cores / cpu_per_item if cpu_per_item > 0 else None
            bounds = [x for x in (slots, sched_bound, cpu_bound) if x]
            predicted = min(bounds)
            out.append(
                f"| {row['label']} | {row['processes']} | {row['n']:,} | "
                f"{row['items_per_s']:,.0f} | {row['tasks'] or '-'} | "
                f"{_fmt(row['tasks_per_s'])} | {_fmt(per_task)} | "
                f"{_fmt(row['client_cpu_us_per_item'])} | "
                f"{_fmt(row['workers_cpu_us_per_item'])} | {row['cores_busy']:.2f} | "
                f"{slots:,.0f} | {_fmt(sched_bound)} | {_fmt(cpu_bound)} | "
                f"{row['items_per_s'] / predicted:.2f} |"
            )
    return "\n".join(out) + "\n"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, " + (
        f"Python {platform.python_version()}"
    )


def _load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--contender",
        help="comma list or globs of: " + ", ".join([*CONTENDERS, "memory"]) + " (default: all)",
    )
    p.add_argument("--scale", action="store_true", help="run the --scale measurements instead")
    p.add_argument("--list", action="store_true", help="print what would run, then exit")
    p.add_argument("--quick", action="store_true", help="small sizes (same as BENCH_QUICK=1)")
    p.add_argument(
        "--publish",
        action="store_true",
        help="after a full, successful run of everything: copy its tables into perf/README.md "
        "and docs/cluster.md (--scale: into docs/cluster.md) and its chart to "
        "perf/scaleout-latest.png",
    )
    p.add_argument("--timeout", type=float, help="seconds per contender (600; 120 when quick)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spins", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def select(pattern: str | None) -> list[str]:
    names = [*CONTENDERS, "memory"]
    if not pattern:
        return names
    wanted = [w.strip() for w in pattern.split(",") if w.strip()]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, w) for w in wanted)]
    if not chosen:
        raise SystemExit(f"no contender matches {pattern!r}; choose from {names}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick or _quick()
    if args.child:
        return child_main(args.child, args.spins or 1, quick)

    if args.scale:
        jobs = [(job, label) for job, label in SCALE_JOBS]
    else:
        jobs = [
            (k, CONTENDERS[k][0] if k in CONTENDERS else "memory") for k in select(args.contender)
        ]
    if args.list:
        for job, label in jobs:
            if job in CONTENDERS:
                sz = sizes(job, quick)
                what = f"CPU+I/O {sz.cpuio:,}, no-op {sz.noop:,}"
            elif job == "memory":
                what = f"map_iter over {memory_n(quick):,} inputs, ClusterExecutor(processes=2)"
            else:
                n = scale_n(quick)
                what = f"{n['sched'] if job == 'sched' else n[job.split('-')[1]]:,} items"
            print(f"{job:22} {label}: {what}")
        return 0

    if args.publish and (quick or args.contender):
        raise SystemExit("--publish needs a full run of every contender (no --quick, no filter)")
    timeout = args.timeout or (120.0 if quick else 600.0)
    started = time.perf_counter()
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "machine": _machine(),
        "load": _load(),
    }
    spins = items.calibrate()
    meta["spins"] = spins
    print(f"calibrated: spin({spins}) ~ 150 µs; load average {meta['load']}", flush=True)

    res: dict[str, Timed] = {}
    failed = []
    for job, label in jobs:
        print(f"{job:22} {label} ...", end=" ", flush=True)
        r = run_child(job, spins, quick, timeout)
        res[job] = r
        if not r["ok"]:
            failed.append(job)
            print(f"FAILED ({r['error']})")
            sys.stderr.write((r.get("stderr") or "")[-3000:])
        elif "unavailable" in r:
            print(f"not available ({r['unavailable']})")
        else:
            print(f"done in {r.get('wall_s', 0):.1f} s")
    meta["took_s"] = time.perf_counter() - started

    RESULTS.mkdir(parents=True, exist_ok=True)
    clean = {k: {f: v for f, v in r.items() if f != "stderr"} for k, r in res.items()}
    if args.scale:
        text = scale_report(res, meta)
        (RESULTS / "scaleout-scale.md").write_text(text)
        (RESULTS / "scaleout-scale.json").write_text(
            json.dumps({"meta": meta, "results": clean}, indent=2) + "\n"
        )
        written = ["scaleout-scale.md", "scaleout-scale.json"]
    else:
        text, targets = report(res, meta)
        (RESULTS / "scaleout.md").write_text(text)
        (RESULTS / "scaleout.json").write_text(
            json.dumps({"meta": meta, "results": clean, "targets": targets}, indent=2) + "\n"
        )
        written = ["scaleout.md", "scaleout.json"]
        if chart(res, RESULTS / "scaleout.png"):
            written.append("scaleout.png")
    print()
    print(text)
    print("written: " + ", ".join(f"perf/results/{w}" for w in written))
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    if args.publish:
        publish(text, scale=args.scale)
    return 0


def _replace_between(path: Path, marker: str, body: str) -> None:
    """Replace what lies between ``<!-- marker:begin -->`` and ``<!-- marker:end -->``."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    text = path.read_text(encoding="utf-8")
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise SystemExit(f"{path}: no {begin} ... {end} block to publish into")
    path.write_text(f"{head}{begin}\n{body.strip()}\n{end}{tail}", encoding="utf-8")


def publish(text: str, *, scale: bool) -> None:
    """Copy a full run's report (without its title) into the docs, and its chart."""
    body = (text.split("\n", 2)[2] if text.startswith("# ") else text).strip()
    if scale:
        _replace_between(ROOT / "docs" / "cluster.md", "scale", body)
        print("published into docs/cluster.md")
        return
    chart_file = RESULTS / "scaleout.png"
    if chart_file.exists():
        (PERF / "scaleout-latest.png").write_bytes(chart_file.read_bytes())
        readme_chart = "\n\n![scale-out chart](scaleout-latest.png)"
        docs_chart = "\n\n![scale-out chart](../perf/scaleout-latest.png)"
    else:
        readme_chart = docs_chart = ""
    _replace_between(PERF / "README.md", "scaleout", body + readme_chart)
    _replace_between(ROOT / "docs" / "cluster.md", "scaleout", body + docs_chart)
    print("published into perf/README.md and docs/cluster.md (chart: perf/scaleout-latest.png)")


if __name__ == "__main__":
    sys.exit(main())
