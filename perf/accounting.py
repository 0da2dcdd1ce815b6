"""Where the microsecond goes: the cost of one item on each path, against the floor.

    python perf/accounting.py                # instructions (callgrind) and µs, noop + yield
    python perf/accounting.py --no-callgrind # µs only (seconds, not minutes)
    python perf/accounting.py --sim          # + simulated cache misses, mispredicted branches
    BENCH_QUICK=1 python perf/accounting.py  # small sizes, 3 rounds: the smoke test

What is measured for every program, on uvloop with 100 workers:

- **instructions per item**: each workload runs in a fresh process under
  ``valgrind --tool=callgrind``, which counts every instruction (the interpreter, uvloop, libc)
  and is unaffected by other processes. Each program runs a warm-up batch, then a batch of n
  and one of 2n items; ``--dump-before=getppid`` cuts the count at each ``os.getppid()`` that
  brackets a batch, and (I(2n) - I(n)) / n cancels start-up, imports and per-batch set-up.
- **µs per item**: every program in one warm process and loop, in K rounds; a round times one
  batch of each program, in an order that rotates from round to round, ``gc.collect()``
  before each batch, results checked. Per program: the median µs per item over the rounds and
  the median of its per-round ratios to the floor (drift lands on both sides and cancels).
- **loop events per item**, counted with sys.setprofile over batches of n and 2n: the loop
  resuming a worker, resuming the caller, and ``set_result`` on a loop future (a wake-up).
- with ``--sim``, callgrind's simulated L1 / last-level cache misses and mispredicted branches.

Without valgrind (a Debian package, not a pip one) the instructions are left out, with a note.

The programs are the real paths (the floor, ``map``, ``map_iter``, ``submit`` +
``await result()``, ``as_completed``; the bodies of perf/workloads.py) and a *ladder*: models
that add the executor's steps to the floor one at a time, written after antflow's worker
loop (antflow/_worker.py) and its ``map`` call (antflow/_calls.py). The difference between two
rungs is the cost of the step the upper one adds; ``map`` minus the top rung is what the model
leaves out. See perf/README.md, "Where the microsecond goes".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wl

RESULTS = Path(__file__).resolve().parent / "results"
YIELD_EVERY = 64  # the worker's loop turn every so many items (antflow/_worker.py)


# ------------------------------------------------------------------------------------------
# The ladder: the floor plus one step of the executor's path at a time
# ------------------------------------------------------------------------------------------


class _Call:
    """What a worker reads of a pulled map call (antflow/_calls.py)."""

    def __init__(self, fn: Any, n: int) -> None:
        self.fn, self.plain, self.opts = fn, True, None
        self.esrc = enumerate(iter(range(n)))
        self.results: list[Any] = [None] * n
        self.turns = 0
        self.exhausted = False


class _Slot:
    call: Any = None
    cancelled: Any = None


async def rung_enumerate(fn: Any, n: int) -> list[Any]:
    """Step 1: the worker takes each input's place from an enumerate of the input (the
    input is any iterable, not its own index)."""
    out = [None] * n
    it = enumerate(iter(range(n)))

    async def worker() -> None:
        for pos, x in it:
            out[pos] = await fn(x)

    await asyncio.gather(*(worker() for _ in range(wl.MAX_WORKERS)))
    return out


def _turns(steps: int) -> Any:
    """Steps 2-3: the worker loop of antflow/_worker.py with a pulled map call's turn inline
    (a turn begins and ends every 64 items), and the checks of every item (step 2); with
    the loop turn every 64 items (step 3)."""

    async def body(fn: Any, n: int) -> list[Any]:
        call, ring = _Call(fn, n), []
        ring.append(call)

        async def work() -> None:
            slot, ran, timings = _Slot(), 0, None
            while not call.exhausted:
                if len(ring) > 1:
                    raise AssertionError(ring)
                fn, results = call.fn, call.results
                kind = 0 if call.plain else 1 if call.opts is None else 2
                slot.call = call
                call.turns += 1
                try:
                    for pos, args in call.esrc:
                        if timings is not None:
                            pass
                        try:
                            if kind == 0:
                                coro = fn(args)
                                result = await coro
                            else:
                                raise AssertionError(kind)
                        except BaseException:
                            raise
                        else:
                            if slot.call is call:
                                try:
                                    results[pos] = result
                                except IndexError:
                                    raise
                        if timings is not None:
                            pass
                        ran += 1
                        if ran >= YIELD_EVERY or len(ring) > 1 or slot.call is not call:
                            break
                    else:
                        call.exhausted = True
                finally:
                    slot.call = None
                    call.turns -= 1
                if ran >= YIELD_EVERY:
                    ran = 0
                    if steps >= 3:
                        await asyncio.sleep(0)

        await asyncio.gather(*(work() for _ in range(wl.MAX_WORKERS)))
        return call.results

    return body


# name -> (body, what it adds); the ladder is cumulative, in this order
LADDER: dict[str, tuple[Any, str]] = {
    "floor": (wl.floor, "the floor: 100 coroutines, `for i in it: out[i] = await fn(i)`"),
    "+enumerate": (rung_enumerate, "each input's place from an enumerate of the input"),
    "+checks": (
        _turns(2),
        "the turn, inline in the worker's loop, and the checks of every item: timing off, the "
        "kind of call, the slot still holding the call, the result written under an "
        "IndexError guard, the count to 64, other lanes",
    ),
    "+yield64": (_turns(3), "a loop turn (`sleep(0)`) every 64 items"),
}
PATHS: dict[str, tuple[Any, str]] = {
    "map": (wl.antflow_map, "`await ex.map(fn, range(n))`"),
    "map_iter": (wl.antflow_map_iter, "`[r async for r in ex.map_iter(fn, range(n))]`"),
    "submit": (wl.antflow_submit, "`submit` each, then `await fut.result()` each"),
    "as_completed": (wl.antflow_as_completed, "`submit` each, then `as_completed`"),
}
PROGRAMS = {**LADDER, **PATHS}
ORDERED = {"as_completed": False}


def _check(name: str, n: int, res: list[Any]) -> None:
    got = list(res) if ORDERED.get(name, True) else sorted(res)
    if got != list(range(n)):
        raise AssertionError(f"{name}: wrong results (len {len(res)}, expected {n})")


def _batch(loop: Any, name: str, task: Any, n: int) -> tuple[float, list[Any]]:
    body = PROGRAMS[name][0]
    t0 = time.perf_counter()
    res = loop.run_until_complete(body(task, n))
    return time.perf_counter() - t0, res


# ------------------------------------------------------------------------------------------
# Measuring: instructions (the child under callgrind) and µs (rounds in one process)
# ------------------------------------------------------------------------------------------


def child(workload: str, names: list[str], n: int, labels_out: str) -> None:
    """Run under callgrind: every os.getppid() ends a dump part; labels name the parts."""
    loop, task = wl.new_loop("uvloop"), wl.WORKLOAD[workload].task
    labels: list[str] = []

    def mark(label: str) -> None:
        labels.append(label)
        os.getppid()

    try:
        for name in names:
            _check(name, n // 4, _batch(loop, name, task, n // 4)[1])  # warm-up
            for size in (n, 2 * n):
                res: list[Any] = []
                gc.collect()
                mark("-")
                res = _batch(loop, name, task, size)[1]
                mark(f"{name}:{size}")
                _check(name, size, res)
    finally:
        loop.close()
    with open(labels_out, "w", encoding="utf-8") as f:
        json.dump(labels, f)


def _events(path: Path) -> dict[str, int]:
    names: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith("totals:"):
            return dict(zip(names, map(int, line.split()[1:]), strict=True))
    raise ValueError(f"no totals in {path}")


def callgrind(workload: str, names: list[str], n: int, sim: bool, out: Path) -> subprocess.Popen:
    tool = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--dump-before=getppid"]
    if sim:
        tool += ["--cache-sim=yes", "--branch-sim=yes"]
    me = [__file__, *f"--child {workload} --programs {','.join(names)} --n {n}".split()]
    labels = str(out / f"labels.{workload}.json")
    cmd = [
        *tool,
        f"--callgrind-out-file={out}/cg.{workload}",
        sys.executable,
        *me,
        "--labels-out",
        labels,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def per_item_counts(workload: str, n: int, out: Path) -> dict[str, dict[str, float]]:
    labels = json.loads((out / f"labels.{workload}.json").read_text(encoding="utf-8"))
    parts: dict[str, dict[str, int]] = {}
    for k, label in enumerate(labels, 1):
        if label != "-":
            parts[label] = _events(out / f"cg.{workload}.{k}")
    result: dict[str, dict[str, float]] = {}
    for label in parts:
        name, size = label.rsplit(":", 1)
        if int(size) == n:
            small, big = parts[label], parts[f"{name}:{2 * n}"]
            result[name] = {e: (big[e] - small[e]) / n for e in small}
    return result


def time_rounds(workload: str, names: list[str], n: int, rounds: int) -> dict[str, Any]:
    """µs per item (median over rounds) and the median per-round ratio to the floor."""
    loop, task = wl.new_loop("uvloop"), wl.WORKLOAD[workload].task

    def timed(name: str) -> float:
        took, res = _batch(loop, name, task, n)
        _check(name, n, res)
        return took

    try:
        for name in names:  # warm-up
            _check(name, n, _batch(loop, name, task, n)[1])
        seconds = wl.rotating_rounds(names, rounds, timed)
    finally:
        loop.close()
    floor = seconds["floor"]
    return {
        name: {
            "us": statistics.median(s) / n * 1e6,
            "ratio": statistics.median(a / b for a, b in zip(s, floor, strict=True)),
        }
        for name, s in seconds.items()
    }


_CORO = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE
_WORKERS = ("_work", "worker", "work")  # antflow's worker loop, the floor's, the ladder's


def _count(loop: Any, name: str, task: Any, n: int) -> dict[str, int]:
    counts = dict.fromkeys(("worker steps", "other steps", "wake-ups"), 0)

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_flags & _CORO:
            back = frame.f_back
            if back is None or not back.f_code.co_flags & _CORO:
                counts["worker steps" if frame.f_code.co_name in _WORKERS else "other steps"] += 1
        elif event == "c_call" and getattr(arg, "__name__", "") == "set_result":
            counts["wake-ups"] += 1

    gc.collect()
    sys.setprofile(hook)
    try:
        res = _batch(loop, name, task, n)[1]
    finally:
        sys.setprofile(None)
    _check(name, n, res)
    return counts


def count_events(workload: str, names: list[str], n: int) -> dict[str, dict[str, float]]:
    """Loop-level events per item, counted with sys.setprofile: (count(2n) - count(n)) / n.

    A *step* is the loop resuming a task: a coroutine frame entered from a frame that is not
    a coroutine's (uvloop runs in C, so the Python frame below a task step is the one that
    called run_until_complete). A *wake-up* is a ``set_result`` on a loop future (a parked
    worker or a sleeping caller).
    """
    loop, task = wl.new_loop("uvloop"), wl.WORKLOAD[workload].task
    out: dict[str, dict[str, float]] = {}
    try:
        for name in names:
            _batch(loop, name, task, max(n // 4, 1))  # warm-up
            small, big = _count(loop, name, task, n), _count(loop, name, task, 2 * n)
            out[name] = {k: (big[k] - small[k]) / n for k in small}
    finally:
        loop.close()
    return out


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------


def _sim_cols(c: dict[str, float]) -> str:
    l1 = c.get("I1mr", 0) + c.get("D1mr", 0) + c.get("D1mw", 0)
    ll = c.get("ILmr", 0) + c.get("DLmr", 0) + c.get("DLmw", 0)
    return f" {l1:.1f} | {ll:.2f} | {c.get('Bcm', 0) + c.get('Bim', 0):.1f} |"


def _table(w: str, group: list[str], m: dict[str, Any], sim: bool, ladder: bool) -> list[str]:
    t, c, ev = m["times"][w], m["counts"].get(w, {}), m["events"].get(w, {})
    floor_us, floor_ir = t["floor"]["us"], c.get("floor", {}).get("Ir")
    cols = ["program", "µs/item", "ratio", "Δµs", "instr/item", "Δinstr"]
    cols += ["step µs", "step instr"] if ladder else []
    cols += ["worker steps", "other steps", "wake-ups"]
    cols += ["L1 miss", "LL miss", "mispredicts"] if sim else []
    lines = [f"### {w}: {'step ladder' if ladder else 'paths'}", "", "| " + " | ".join(cols) + " |"]
    lines.append("|" + " --- |" * len(cols))
    prev = None
    for name in group:
        if name not in t:
            continue
        # Δµs from the paired ratio: (ratio - 1) x the floor's µs, as in the paired runs
        d_us = (t[name]["ratio"] - 1) * floor_us
        ir = c.get(name, {}).get("Ir")
        row = [name, f"{t[name]['us']:.3f}", f"{t[name]['ratio']:.2f}", f"{d_us:+.3f}"]
        row += [f"{ir:,.0f}", f"{ir - floor_ir:+,.0f}"] if ir is not None else ["-", "-"]
        if ladder:
            if prev is None:
                row += ["", ""]
            else:
                row.append(f"{(t[name]['ratio'] - t[prev]['ratio']) * floor_us:+.3f}")
                p_ir = c.get(prev, {}).get("Ir")
                row.append(f"{ir - p_ir:+,.0f}" if ir is not None and p_ir is not None else "-")
        e = ev.get(name, {})
        row += [
            f"{e[k]:.3f}" if k in e else "-" for k in ("worker steps", "other steps", "wake-ups")
        ]
        line = "| " + " | ".join(row) + " |"
        lines.append(line + (_sim_cols(c.get(name, {})) if sim else ""))
        prev = name
    return [*lines, ""]


def _extra(m: dict[str, Any], w: str, name: str) -> dict[str, float]:
    """What ``name`` adds to the floor per item on workload ``w``."""
    t, c = m["times"][w], m["counts"].get(w, {})
    out = {"us": (t[name]["ratio"] - 1) * t["floor"]["us"]}
    if name in c:
        for key, events in (("instr", ("Ir",)), ("L1", ("I1mr", "D1mr", "D1mw"))):
            out[key] = sum(c[name].get(e, 0) - c["floor"].get(e, 0) for e in events)
    return out


def _suspending(m: dict[str, Any], sim: bool) -> list[str]:
    """The executor's extra per item when the task suspends (yield) and when not (noop)."""
    lines = ["### what the executor adds per item: yield / noop", ""]
    for name in [p for p in PATHS if p in m["times"]["noop"]] + ["+checks"]:
        if name not in m["times"]["noop"]:
            continue
        a, b = _extra(m, "noop", name), _extra(m, "yield", name)
        text = f"- {name}: {b['us']:.3f} / {a['us']:.3f} µs = {b['us'] / a['us']:.2f}x"
        if "instr" in a:
            text += f"; {b['instr']:,.0f} / {a['instr']:,.0f} instructions"
            text += (
                f" ({b['us'] * 1e3 / b['instr']:.3f} / {a['us'] * 1e3 / a['instr']:.3f} ns each)"
            )
        if sim and "L1" in a:
            text += f"; L1 misses {b['L1']:,.0f} / {a['L1']:,.0f}"
        lines.append(text)
    return [*lines, ""]


def report(workloads: list[str], m: dict[str, Any], sim: bool, sizes: dict[str, int]) -> str:
    lines = [
        f"## Where the microsecond goes (uvloop, {wl.MAX_WORKERS} workers)",
        "",
        f"- µs/item: batches of {sizes['time']:,} items, median of {sizes['rounds']} rounds in "
        "one warm loop; ratio: median of the per-round ratios to the floor; Δµs = (ratio - 1) "
        "x the floor's µs/item",
        f"- instr/item: callgrind, (I(2n) - I(n)) / n, n = {sizes['instr']:,}; Δ: over the floor"
        if m["counts"]
        else "- instr/item: not measured (--no-callgrind, or valgrind is missing)",
        f"- per item, counted with sys.setprofile, (count(2n) - count(n)) / n, n = "
        f"{sizes['events']:,}: worker steps "
        "(the loop resuming a worker), other steps (resuming the caller), wake-ups (set_result "
        "on a loop future)",
        "- step µs / step instr (ladder): the rung's cost over the previous rung (the row above)",
    ]
    if sim:
        lines.append(
            "- L1 / LL miss, mispredicts: per item, callgrind's cache and branch simulation"
        )
    lines.append("")
    for w in workloads:
        lines += _table(w, ["floor", *PATHS], m, sim, ladder=False)
        lines += _table(w, list(LADDER), m, sim, ladder=True)
    lines += _suspending(m, sim) if {"noop", "yield"} <= set(workloads) else []
    lines += [
        "ladder (each rung adds one step to the one above):",
        *(f"- {k}: {v[1]}" for k, v in LADDER.items()),
        "paths:",
        *(f"- {k}: {v[1]}" for k, v in PATHS.items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(__doc__ or "").split("\n\n", 1)[1],
    )
    p.add_argument("--workload", default="noop,yield", help="comma list (default noop,yield)")
    p.add_argument("--programs", help=f"comma list of {', '.join(PROGRAMS)} (default: all)")
    p.add_argument("--rounds", type=int, help="timed rounds (default 7, quick 3)")
    p.add_argument("--n", type=int, help="items per timed batch (default 100,000, quick 5,000)")
    p.add_argument(
        "--n-instr",
        type=int,
        help="n of the callgrind batches n and 2n (default 20,000, quick 2,000)",
    )
    p.add_argument("--no-callgrind", action="store_true", help="µs only")
    p.add_argument("--sim", action="store_true", help="callgrind with cache and branch simulation")
    p.add_argument("--quick", action="store_true", help="same as BENCH_QUICK=1")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--labels-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names = args.programs.split(",") if args.programs else list(PROGRAMS)
    if args.child:
        child(args.child, names, args.n, args.labels_out)
        return 0
    if "floor" not in names:
        names.insert(0, "floor")
    quick = args.quick or wl.quick()
    sizes = {
        "rounds": args.rounds or (3 if quick else 7),
        "time": args.n or (5_000 if quick else 100_000),
        "instr": args.n_instr or (2_000 if quick else 20_000),
        "events": 2_000 if quick else 10_000,
    }
    workloads = args.workload.split(",")
    started = time.perf_counter()
    use_cg = not args.no_callgrind and shutil.which("valgrind") is not None
    # Timing first: the callgrind processes (one per workload, side by side) would slow it.
    m: dict[str, Any] = {"counts": {}}
    m["times"] = {w: time_rounds(w, names, sizes["time"], sizes["rounds"]) for w in workloads}
    m["events"] = {w: count_events(w, names, sizes["events"]) for w in workloads}
    with tempfile.TemporaryDirectory(prefix="accounting-") as tmp:
        procs = {}
        if use_cg:
            procs = {w: callgrind(w, names, sizes["instr"], args.sim, Path(tmp)) for w in workloads}
        for w, proc in procs.items():
            try:
                _, err = proc.communicate(timeout=900)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            if proc.returncode:
                print(f"callgrind run of {w} failed:\n{err[-2000:]}", file=sys.stderr)
                return 1
            m["counts"][w] = per_item_counts(w, sizes["instr"], Path(tmp))
    text = report(workloads, m, args.sim, sizes)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "accounting.md").write_text(text + "\n", encoding="utf-8")
    (RESULTS / "accounting.json").write_text(json.dumps({**m, "sizes": sizes}, indent=1))
    print(
        f"written: perf/results/accounting.md, accounting.json "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
