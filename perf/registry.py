"""The benchmark's registry: workloads, contenders, paired comparisons and targets.

Everything the harness runs or reports is registered here, by ``workloads.py`` for the built-in
rows and by any ``perf/bench_*.py`` module for more (``load_plugins`` imports them, in both the
harness and every worker process). A plugin module looks like::

    import registry as reg

    async def my_body(fn, n):                    # run fn over range(n), 100 at a time
        ...
        return results                           # the n results, in input order

    reg.register_contender(reg.Contender("mine", "my executor", my_body), workloads=("noop",))

This module is imported by the pyperf worker processes too, including the ones of antflow
0.10.0's own virtual environment: it uses nothing but the standard library, never imports
antflow, and runs on Python 3.10+.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_WORKERS = 100
LOOPS = ("asyncio", "uvloop")
NO_LOOP = "-"  # the thread pool runs without an event loop
PERF = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Workload:
    """One kind of task, run by every contender registered for it."""

    name: str
    full: int  # tasks per batch at full sizes
    quick: int  # ... under BENCH_QUICK=1
    task: Callable[[int], Awaitable[Any]]  # the async task (x -> x)
    sync_task: Callable[[int], Any] | None = None  # its synchronous twin, for thread pools
    baseline: str = "antflow-map"  # the contender every row is divided by (same loop)
    about: str = ""  # one line for --list and the README
    kind: str = "time"  # "time": pyperf µs per task; "memory": peak RSS growth of one batch
    # contender key -> also measure it at n * this (e.g. to show linear growth)
    scaled: dict[str, int] = field(default_factory=dict)
    # contender key -> never more than this many tasks (a contender that is super-linear)
    caps: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Contender:
    """One way of running a workload's n tasks with at most MAX_WORKERS in flight.

    ``body(fn, n)`` (a coroutine function when ``is_async``) returns the n results: in input
    order when ``ordered``, in any order otherwise (``-drain`` contenders return ``[n]``).
    With ``setup``, ``setup(n)`` is an async (or, for a sync contender, plain) context manager
    entered before the clock starts and left after it stops; what it yields is passed as
    ``body(fn, n, state)``: pool or cluster start-up that is not timed.
    """

    key: str  # file names and the command line
    label: str  # the table
    body: Callable[..., Any]
    is_async: bool = True
    ordered: bool = True
    peer: bool = False  # runs on antflow 0.10.0's interpreter
    antflow: bool = False  # needs the repository's antflow
    matching: str = ""  # the antflow call a peer row is divided by ("": the workload's baseline)
    needs: tuple[int, int] = (3, 10)  # minimum Python version
    family: str = ""  # chart colour: antflow, peer, floor, threads, asyncio, or any other name
    setup: Callable[[int], Any] | None = None
    drain: bool = False  # results dropped: body returns [n]

    @property
    def group(self) -> str:
        if self.family:
            return self.family
        if self.peer:
            return "peer"
        if self.antflow:
            return "antflow"
        if self.key.startswith("floor"):
            return "floor"
        return "asyncio" if self.is_async else "threads"


@dataclass(frozen=True)
class Pair:
    """Measured in paired runs: num and den alternate in one warm process on one loop."""

    workload: str
    num: str
    den: str


@dataclass(frozen=True)
class Target:
    """A ratio (or, with den None, a value) the project aims for, on uvloop at full sizes.

    source "pyperf": num and den are rows of the workload's table (key, with -xK for a scaled
    row); "paired": the median of the paired ratios num/den; "value": num's own figure
    divided by ``scale`` (e.g. bytes -> MB).
    """

    text: str
    workload: str
    num: str
    den: str | None
    op: str  # ">=" or "<="
    limit: float
    source: str = "pyperf"
    unit: str = ""
    scale: float = 1.0


WORKLOADS: list[str] = []  # in report order
WORKLOAD: dict[str, Workload] = {}
CONTENDERS: dict[str, Contender] = {}
MATRIX: dict[str, list[str]] = {}  # workload -> contender keys, in table order
BASELINE: dict[str, str] = {}
FULL_SIZES: dict[str, int] = {}
QUICK_SIZES: dict[str, int] = {}
PAIRS: list[Pair] = []
TARGETS: list[Target] = []
PLUGIN_ERRORS: dict[str, str] = {}  # module -> why it could not be imported


def register_workload(w: Workload) -> Workload:
    if w.name in WORKLOAD:
        raise ValueError(f"workload {w.name!r} is registered twice")
    WORKLOAD[w.name] = w
    WORKLOADS.append(w.name)
    MATRIX[w.name] = []
    BASELINE[w.name] = w.baseline
    FULL_SIZES[w.name] = w.full
    QUICK_SIZES[w.name] = w.quick
    return w


def register_contender(c: Contender, workloads: tuple[str, ...] = ()) -> Contender:
    """Register a contender (once) and add it to the tables of ``workloads``."""
    known = CONTENDERS.setdefault(c.key, c)
    if known is not c:
        raise ValueError(f"contender {c.key!r} is registered twice")
    for w in workloads:
        add_to(w, c.key)
    return c


def add_to(workload: str, key: str) -> None:
    """Run the (registered) contender ``key`` in ``workload`` too."""
    if key not in CONTENDERS:
        raise KeyError(f"unknown contender {key!r}")
    if key not in MATRIX[workload]:
        MATRIX[workload].append(key)


def register_pair(workload: str, num: str, den: str = "floor") -> Pair:
    p = Pair(workload, num, den)
    for key in (num, den):
        if key not in CONTENDERS:
            raise KeyError(f"unknown contender {key!r}")
    if p not in PAIRS:
        PAIRS.append(p)
    return p


def register_target(t: Target) -> Target:
    TARGETS.append(t)
    return t


def load_plugins() -> None:
    """Import every perf/bench_*.py; one that fails is reported, never fatal here."""
    for path in sorted(PERF.glob("bench_*.py")):
        name = path.stem
        if name in sys.modules or name in PLUGIN_ERRORS:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken plugin must not hide the other rows
            PLUGIN_ERRORS[name] = f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------------------------
# Sizes, loops and one batch
# ----------------------------------------------------------------------------------------------


def quick() -> bool:
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def sizes() -> dict[str, int]:
    return dict(QUICK_SIZES if quick() else FULL_SIZES)


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


def loops_for(contender: Contender) -> tuple[str, ...]:
    return LOOPS if contender.is_async else (NO_LOOP,)


def unavailable(contender: Contender) -> str | None:
    """Why this contender cannot run on this interpreter (None when it can)."""
    if sys.version_info[:2] < contender.needs:
        need = ".".join(map(str, contender.needs))
        return f"needs Python {need}+ (this is {sys.version_info[0]}.{sys.version_info[1]})"
    return None


async def timed_batch(contender: Contender, workload: str, n: int) -> tuple[float, list[Any]]:
    """One batch on the running loop: (seconds, results); set-up is outside the clock."""
    fn = WORKLOAD[workload].task
    if contender.setup is None:
        t0 = time.perf_counter()
        res = await contender.body(fn, n)
        return time.perf_counter() - t0, res
    async with contender.setup(n) as state:
        t0 = time.perf_counter()
        res = await contender.body(fn, n, state)
        return time.perf_counter() - t0, res


def rotating_rounds(
    names: list[str], rounds: int, timed: Callable[[str], float]
) -> dict[str, list[float]]:
    """The seconds of ``timed(name)`` for every name, ``rounds`` times over.

    The order rotates from round to round and runs backwards every other round, so that
    the machine's drift and each name's neighbours spread over all of them; gc.collect()
    runs before every call, outside the clock (``timed`` times and checks one batch).
    """
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order if r % 2 == 0 else order[::-1]:
            gc.collect()
            seconds[name].append(timed(name))
    return seconds


def run_body(contender: Contender, workload: str, loop_name: str, n: int) -> tuple[float, list]:
    """Run one batch of n tasks on a fresh loop (or none, for threads): (seconds, results)."""
    if not contender.is_async:
        fn_sync = WORKLOAD[workload].sync_task
        if fn_sync is None:
            raise ValueError(f"workload {workload} has no synchronous task for {contender.key}")
        cm = contender.setup(n) if contender.setup else contextlib.nullcontext()
        with cm as state:
            args = (state,) if contender.setup else ()
            t0 = time.perf_counter()
            res = contender.body(fn_sync, n, *args)
            return time.perf_counter() - t0, res
    loop = new_loop(loop_name)
    try:
        return loop.run_until_complete(timed_batch(contender, workload, n))
    finally:
        loop.close()


def check_results(contender: Contender, n: int, res: list) -> None:
    """Every contender must really do the work: n results, the right ones."""
    if contender.drain:
        if list(res) != [n]:
            raise AssertionError(f"{contender.key}: {list(res)[:3]} items seen, expected [{n}]")
        return
    expected = list(range(n))
    got = list(res) if contender.ordered else sorted(res)
    if got != expected:
        raise AssertionError(f"{contender.key}: wrong results (len {len(res)}, expected {n})")
